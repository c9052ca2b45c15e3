//! What reviewers run, offline: validate, check, graph, test-filter, schema.

use std::path::PathBuf;

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{load, FileArgs, VarArgs};
use crate::check;
use crate::providers::effective_region;
use crate::validate::{self, Validated};

/// `stackctl validate`: the stack file as AWS would take it, and what
/// `check` finds, as warnings.
pub fn validate(file: &FileArgs, vars: &[(String, String)]) -> Result<ExitCode> {
    let v = load(file, vars)?;
    let resources = v.stack.decls.values().filter(|d| !d.is_data).count();
    let data = v.stack.decls.len() - resources;
    // The checks, as warnings: `stackctl check` makes them an exit code.
    let report = check::check(
        &v,
        effective_region(v.stack.region.as_deref()).as_deref(),
        &[],
    );
    let verdict = match report.errors() {
        0 => String::new(),
        n => format!(" AWS would accept it, but `stackctl check` finds {n} error(s): the pipeline will not work as written."),
    };
    println!(
        "The stack file is valid: {resources} resources, {data} data sources, {} outputs.{verdict}",
        v.stack.outputs.len()
    );
    if !report.findings.is_empty() {
        eprint!(
            "warning: `stackctl check` finds:{}",
            check::render_findings(&report, &v.stack.path.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The stack validated leniently (values AWS would refuse become findings)
/// and its check report.
fn checked(file: &FileArgs, vars: &[(String, String)]) -> Result<(Validated, check::Report)> {
    let stack = file.stack()?;
    let region = effective_region(stack.region.as_deref());
    let (v, rules) = validate::validate_lenient(stack, vars, region.as_deref())?;
    let report = check::check(&v, region.as_deref(), &rules);
    Ok((v, report))
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Print {"findings": [...], "edges": [...]} as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub strict: bool,
}

/// `stackctl check`: exit 1 on an error finding (`strict`: on any).
pub fn check(a: CheckArgs) -> Result<ExitCode> {
    let (json, strict) = (a.json, a.strict);
    let (v, report) = checked(&a.file, &a.vars.pairs()?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            check::render(&report, &v.stack.path.display().to_string())
        );
    }
    let failed = report.errors() > 0 || (strict && !report.findings.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
}

/// `stackctl graph`.
pub fn graph(a: GraphArgs) -> Result<ExitCode> {
    let (v, report) = checked(&a.file, &a.vars.pairs()?)?;
    match a.format {
        GraphFormat::Mermaid => print!("{}", crate::diagram::mermaid(&v, &report)),
        GraphFormat::Dot => print!("{}", crate::diagram::dot(&v, &report)),
        GraphFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::diagram::json(&v, &report))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct PermissionsArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// What the identity will run: plan (reads and the state), apply,
    /// destroy, or all of them.
    #[arg(long = "for", value_enum, default_value = "all")]
    pub phase: crate::permissions::Phase,
    /// Print the policy document only (what IAM takes).
    #[arg(long)]
    pub json: bool,
}

/// `stackctl permissions`: the IAM policy that running stackctl on this
/// stack needs, offline.
pub fn permissions(a: PermissionsArgs) -> Result<ExitCode> {
    let v = load(&a.file, &a.vars.pairs()?)?;
    let mut backend = v.stack.backend.clone();
    backend.extend(a.file.backend_config.iter().cloned());
    let region = effective_region(v.stack.region.as_deref());
    let statements = crate::permissions::statements(&v, region.as_deref(), &backend, a.phase);
    let document = serde_json::to_string_pretty(&crate::permissions::document(&statements))?;
    if !a.json {
        println!(
            "# The IAM policy that `stackctl {}` on stack `{}` needs ({} statements).",
            format!("{:?}", a.phase).to_lowercase(),
            v.stack.name,
            statements.len()
        );
        println!("# Unknown parts of ARNs (the account, names AWS makes) are wildcards.");
        if let Some(role) = v.stack.env.as_ref().and_then(|e| e.assume_role.as_deref()) {
            println!("# It is the policy of {role}, which the environment assumes: the identity that runs stackctl needs sts:AssumeRole on it.");
        }
    }
    println!("{document}");
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct TestFilterArgs {
    #[arg(long)]
    pub pattern: String,
    /// A file of log lines, one per line.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Log lines.
    pub lines: Vec<String>,
    /// {"matches": [{"eventNumber", "eventMessage", "extractedValues"}]}.
    #[arg(long)]
    pub json: bool,
}

/// `stackctl test-filter`: a pattern tried on lines, as TestMetricFilter answers.
pub fn test_filter(a: TestFilterArgs) -> Result<ExitCode> {
    let (json, mut lines) = (a.json, a.lines);
    let pattern =
        crate::sim::filter::parse(&a.pattern).map_err(|e| anyhow::anyhow!("the pattern: {e}"))?;
    if let Some(f) = a.file {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    let found = crate::sim::filter::test(&pattern, &lines);
    if json {
        let answer = serde_json::json!({"matches": found});
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &found {
        let values: Vec<String> = m
            .extracted_values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let values = match values.is_empty() {
            true => String::new(),
            false => format!("  [{}]", values.join(", ")),
        };
        println!("{}: {}{values}", m.event_number, m.event_message);
    }
    println!("{} of {} lines match.", found.len(), lines.len());
    Ok(ExitCode::SUCCESS)
}

/// `stackctl schema`: the JSON Schema of stack files, or docs/resources.md.
pub fn schema(markdown: bool) -> Result<ExitCode> {
    if markdown {
        print!("{}", crate::docs::markdown());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::docs::json_schema())?
        );
    }
    Ok(ExitCode::SUCCESS)
}
