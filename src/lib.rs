//! stackctl: infrastructure as code for AWS, without Terraform underneath.
//!
//! Layers, each depending only on those before it: `config` (the YAML with
//! positions and `${...}` references) → `validate` + `graph` → `plan` (diff) →
//! `apply` (the graph walk) → `providers` (AWS); `schema` describes resource
//! types for all of them and `state` records what exists.

pub mod apply;
pub mod build;
pub mod check;
pub mod cli;
pub mod config;
pub mod diagram;
pub mod docs;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod generate;
pub mod graph;
pub mod iam;
pub mod import;
pub mod package;
pub mod plan;
pub mod providers;
pub mod schema;
pub mod seal;
pub mod sensitive;
pub mod sim;
pub mod state;
pub mod validate;
