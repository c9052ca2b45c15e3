//! End-to-end tests: the real binary against moto behind the recording proxy.
#![allow(clippy::unwrap_used)]

mod backends;
mod census;
mod envs;
mod firewall;
mod fleet;
mod function;
mod hostile;
mod import;
mod lambda;
mod messaging;
mod perf;
mod permissions;
mod review;
mod review_page;
mod roles;
mod secrets;
mod seed;
mod simulate;
mod support;
mod teams;
mod trust;
