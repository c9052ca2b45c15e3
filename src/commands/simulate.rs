//! `stackctl simulate`: log lines through the deployed pipeline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{context, load, masked, runtime, FileArgs, Session, VarArgs};
use crate::check;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// JSON Lines of {"timestamp": epoch-ms, "message": "..."}, or - for stdin.
    #[arg(long)]
    pub events: PathBuf,
    /// {"timeline": [...], "alarms": {...}, "invocations": [...], "messages": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Let actions reach real AWS (without an endpoint override they are
    /// only described).
    #[arg(long)]
    pub live: bool,
}

/// Reads the events (JSON Lines, `-` for stdin) and runs them through the
/// stack as deployed.
pub fn run(a: SimulateArgs) -> Result<ExitCode> {
    let (events, json, live) = (&a.events, a.json, a.live);
    let text = if events.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(events)
            .with_context(|| format!("cannot read {}", events.display()))?
    };
    let parsed = crate::sim::parse_events(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", events.display()))?;
    let v = load(&a.file, &a.vars.pairs()?)?;
    let result = runtime()?.block_on(async {
        let session = Session::open(&v.stack, &a.file.backend_config, "simulate").await?;
        let cx = context(&v).await;
        let report = check::check(&v, Some(cx.region().as_str()), &[]);
        let options = crate::sim::Options { live };
        let outcome = crate::sim::run(&v, &session.state, &cx, &report, &parsed, options).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        } else {
            print!("{}", v.redactor.redact(&crate::sim::render(&outcome)));
        }
        session.release().await?;
        Ok(ExitCode::SUCCESS)
    });
    result.map_err(|e| masked(&v.redactor, e))
}
