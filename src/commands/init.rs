//! `stackctl init`: a commented first stack to start from.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

/// A log group, a metric filter and an alarm on it, a topic the alarm
/// notifies and a queue subscribed to it with the policy that lets it:
/// every link `check` proves, every line commented. `NAME` is the stack's.
const FIRST_STACK: &str = include_str!("../templates/first-stack.yaml");

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The file to write; an existing one is never overwritten.
    #[arg(short = 'f', long = "file", default_value = "stack.yaml")]
    pub file: PathBuf,
    /// The stack's name (its state, its tags, the prefix of every name).
    #[arg(long, default_value = "my-first-stack")]
    pub name: String,
}

/// The first stack with `name` filled in.
pub fn first_stack(name: &str) -> Result<String> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("--name {name:?}: use 1 to 40 lowercase letters, digits and '-', starting with a letter (it prefixes AWS names)");
    }
    Ok(FIRST_STACK.replace("NAME", name))
}

pub fn run(a: InitArgs) -> Result<ExitCode> {
    let text = first_stack(&a.name)?;
    let path = a.file.display().to_string();
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{path} exists; init never overwrites a stack file (give another with -f FILE)")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {path}")),
    };
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {path}"))?;
    println!("Wrote {path}: a log group, a metric filter, an alarm, a topic, a queue, its policy and its subscription.");
    println!("Next: stackctl validate -f {path}, stackctl check -f {path}, stackctl plan -f {path} (docs/first-stack.md walks through it).");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stack;
    use std::path::Path;

    #[test]
    fn the_first_stack_is_valid_and_check_proves_every_link() {
        let text = first_stack("demo-app").unwrap();
        let stack = Stack::parse(Path::new("stack.yaml"), &text).unwrap();
        let v = crate::validate::validate(stack, &[], Some("us-east-2")).unwrap();
        assert_eq!(v.stack.name, "demo-app");
        assert_eq!(v.stack.decls.len(), 7);
        let report = crate::check::check(&v, Some("us-east-2"), &[]);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!(
            report.edges.iter().filter(|e| e.allowed).count(),
            report.edges.len()
        );
        assert!(report.edges.len() >= 4);
    }

    #[test]
    fn a_name_that_cannot_prefix_aws_names_is_refused() {
        let err = first_stack("My Stack").unwrap_err().to_string();
        assert_contains!(err, "use 1 to 40 lowercase letters");
    }
}
