//! End-to-end tests: the real binary against moto behind the recording proxy.
#![allow(clippy::unwrap_used)]

mod census;
mod hostile;
mod lambda;
mod messaging;
mod review;
mod secrets;
mod seed;
mod simulate;
mod support;
mod trust;
