//! `stackctl build`: every function's `source:` crate, built or reused.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::{load, Printer};
use crate::model::{self, StackValues};

pub fn run(file: &super::FileArgs, vars: &[(String, String)]) -> Result<ExitCode> {
    let v = load(file, vars)?;
    let values = StackValues {
        name: v.stack.name.clone(),
        ..StackValues::default()
    };
    let mut any = false;
    for decl in v.stack.decls.values() {
        let props = model::resolve_props(&v, &decl.id, &values, &|_, _| None);
        let Some(source) = props.get("source").and_then(Value::as_str) else {
            continue;
        };
        let arch = crate::providers::str_list(props.get("architectures"))
            .into_iter()
            .next()
            .unwrap_or_else(|| "x86_64".into());
        let started = std::time::Instant::now();
        let artifact = crate::build::build(
            &v.stack.dir().join(source),
            &arch,
            &Printer(v.redactor.clone()),
        )?;
        any = true;
        println!("{}: {}", decl.id, artifact.zip_path.display());
        println!("  zip size:   {} bytes", artifact.zip.len());
        if artifact.built {
            println!("  bootstrap:  {} bytes", artifact.bootstrap_size);
        }
        println!("  CodeSha256: {}", artifact.code_sha256);
        let how = match artifact.built {
            true => "built",
            false => "unchanged sources: reused, nothing built",
        };
        println!("  {how} in {:.1}s", started.elapsed().as_secs_f64());
    }
    if !any {
        println!(
            "No aws_lambda_function with `source:` in {}.",
            v.stack.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
