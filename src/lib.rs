//! stackctl: infrastructure as code for AWS, without Terraform underneath.
//!
//! Layers, each depending only on those before it: `config` (the YAML with
//! positions and `${...}` references) → `validate` + `graph` → `plan` (diff) →
//! `apply` (the graph walk) → `providers` (AWS); `schema` describes resource
//! types for all of them and `state` records what exists.

// Whatever stackctl prints goes through these, crate-wide (they shadow the
// standard macros): a write to a closed stdout or stderr (`| head`, a pager
// or log collector that exited) is dropped instead of panicking, so an apply
// never stops halfway because its reader did.
macro_rules! print_to {
    ($write:ident, $stream:expr, $($t:tt)*) => {{
        use std::io::Write as _;
        let _ = $write!($stream, $($t)*);
    }};
}
macro_rules! println { ($($t:tt)*) => { print_to!(writeln, std::io::stdout(), $($t)*) }; }
macro_rules! print { ($($t:tt)*) => { print_to!(write, std::io::stdout(), $($t)*) }; }
macro_rules! eprintln { ($($t:tt)*) => { print_to!(writeln, std::io::stderr(), $($t)*) }; }
macro_rules! eprint { ($($t:tt)*) => { print_to!(write, std::io::stderr(), $($t)*) }; }

/// Asserts that `$text` contains `$part`, and shows the whole text when not.
#[cfg(test)]
macro_rules! assert_contains {
    ($text:expr, $part:expr $(,)?) => {{
        let (text, part) = (&$text, $part);
        assert!(text.contains(part), "{part:?} is not in:\n{text}");
    }};
}

pub mod apply;
#[cfg(test)]
mod architecture_tests;
pub mod build;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagram;
pub mod docs;
#[cfg(test)]
mod dst;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod generate;
pub mod graph;
pub mod iam;
pub mod import;
pub mod model;
pub mod package;
pub mod permissions;
pub mod plan;
pub mod providers;
pub mod review_page;
#[cfg(test)]
mod rng;
pub mod schema;
pub mod seal;
pub mod sensitive;
pub mod sim;
pub mod spelling;
pub mod state;
pub mod validate;
