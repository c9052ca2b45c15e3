//! End-to-end tests: the real binary against moto behind the recording proxy.

mod lambda;
mod messaging;
mod seed;
mod support;
