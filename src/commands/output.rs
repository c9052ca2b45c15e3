//! `stackctl output`: the outputs the last apply recorded.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{keys, read_state};
use crate::state::State;

pub fn run(file: &super::FileArgs, name: Option<String>, json: bool) -> Result<ExitCode> {
    let state = read_state(file)?;
    match name {
        Some(name) => {
            let value = state.outputs.get(&name).with_context(|| {
                format!("no output `{name}` (outputs: {})", keys(&state.outputs))
            })?;
            match (json, value) {
                (false, Value::String(s)) => println!("{s}"),
                _ => println!("{}", serde_json::to_string_pretty(value)?),
            }
        }
        None if json => println!("{}", serde_json::to_string_pretty(&shown_outputs(&state))?),
        None => print_outputs(&state),
    }
    Ok(ExitCode::SUCCESS)
}

/// `name = value` lines, sensitive ones masked.
pub(crate) fn print_outputs(state: &State) {
    for (k, v) in shown_outputs(state) {
        let shown = match &v {
            Value::String(s) if s == "(sensitive)" => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        println!("{k} = {shown}");
    }
}

/// The outputs as listings show them: sensitive ones masked (`stackctl output
/// NAME` prints one in clear, when asked for by name).
fn shown_outputs(state: &State) -> BTreeMap<String, Value> {
    state
        .outputs
        .iter()
        .map(|(k, v)| {
            let shown = if state.sensitive_outputs.contains(k) {
                Value::from("(sensitive)")
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}
