//! The command line: argument parsing and the glue between the layers.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apply::{self, Walk};
use crate::check;
use crate::config::Stack;
use crate::events::{Event, Events};
use crate::plan::{self, Plan, Refreshed, StackValues};
use crate::providers::{effective_region, Ctx};
use crate::state::{Backend, Held, State};
use crate::validate::{self, Validated};

#[derive(Parser, Debug)]
#[command(
    name = "stackctl",
    version,
    about = "Infrastructure as code for AWS: stack.yaml -> plan -> apply"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct FileArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.yaml")]
    file: PathBuf,
    /// Override a setting of the stack's state backend, as CI does:
    /// --backend-config bucket=NAME (also key, region, kms_key_id; repeatable).
    #[arg(long = "backend-config", value_name = "KEY=VALUE", value_parser = validate::parse_var)]
    backend_config: Vec<(String, String)>,
}

#[derive(Args, Debug, Clone)]
struct VarArgs {
    /// Set a variable: --var name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = validate::parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the stack file offline: schema, types, references, cycles, AWS's rules.
    Validate {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Prove the stack's links (alarm → function, topic → queue, function →
    /// what its code needs) and lint it, offline. Exit 1 on an error finding
    /// (or any, with --strict).
    Check {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        /// Print {"findings": [...], "edges": [...]} as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 1 on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Drive log lines through the deployed pipeline on a virtual clock: metric
    /// filters, alarms, the function (run locally under a Runtime API), the
    /// instance, the topic and the queue; print the timeline.
    Simulate {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        /// JSON Lines of {"timestamp": epoch-ms, "message": "..."}, or - for stdin.
        #[arg(long)]
        events: PathBuf,
        /// {"timeline": [...], "alarms": {...}, "invocations": [...], "messages": [...]}.
        #[arg(long)]
        json: bool,
        /// Let actions reach real AWS (without an endpoint override they are
        /// only described).
        #[arg(long)]
        live: bool,
    },
    /// Try a filter pattern on log lines, as AWS's TestMetricFilter does.
    TestFilter {
        #[arg(long)]
        pattern: String,
        /// A file of log lines, one per line.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Log lines.
        lines: Vec<String>,
        /// {"matches": [{"eventNumber", "eventMessage", "extractedValues"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Draw the stack: resources by service, dependencies dotted, dataflow
    /// links green when proven and red when not.
    Graph {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Show what apply would change.
    Plan {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        /// Save the plan to apply it later exactly as shown.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the plan as JSON (format in docs/plan-json.md); the same as
        /// --format json.
        #[arg(long)]
        json: bool,
        /// text (coloured on a terminal unless NO_COLOR is set), json, or
        /// markdown (for a pull request comment, with the check findings).
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Read recorded resources from AWS first (--refresh=false to skip).
        #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        refresh: bool,
        /// How many AWS reads run at once (AWS throttles beyond its rate
        /// limits; throttled reads back off and retry).
        #[arg(long, visible_alias = "parallelism", default_value_t = 32)]
        read_parallelism: usize,
    },
    /// Make AWS match the stack file (or apply a saved plan).
    Apply {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// How many resources are changed at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// How many AWS reads of the refresh run at once.
        #[arg(long, default_value_t = 32)]
        read_parallelism: usize,
        /// A plan saved by `stackctl plan --out`.
        plan: Option<PathBuf>,
    },
    /// Delete every resource recorded in the state, dependents first.
    Destroy {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        #[arg(long)]
        auto_approve: bool,
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// How many AWS reads run at once.
        #[arg(long, default_value_t = 32)]
        read_parallelism: usize,
    },
    /// Build the code of every function with `source:`; print each artifact.
    Build {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Print the stack's outputs.
    Output {
        #[command(flatten)]
        file: FileArgs,
        /// One output, printed raw.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of stack.yaml (for editors), or with --markdown
    /// the resource types' reference (docs/resources.md).
    Schema {
        #[arg(long)]
        markdown: bool,
    },
    /// Print shell completions: stackctl completions bash|zsh|fish.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Inspect the state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Take resources that already exist into the state as the stack's own. It
    /// reads them; the only change in AWS is their ownership tags.
    ///
    ///   stackctl import LOGICAL_ID PHYSICAL_ID
    ///   stackctl import --all
    ///   stackctl import --generate-config FILE TYPE.ID=PHYSICAL_ID...
    Import {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
        /// Look up every resource of the stack file by its name (as a run
        /// after a crash does) and import what exists; list what does not.
        #[arg(long)]
        all: bool,
        /// Write a stack file for existing resources instead (no state change).
        #[arg(long, value_name = "FILE", conflicts_with = "all")]
        generate_config: Option<PathBuf>,
        /// With --generate-config: the `stack:` name of the new file.
        #[arg(long, default_value = "imported")]
        stack_name: String,
        /// LOGICAL_ID PHYSICAL_ID; with --generate-config, TYPE.ID=PHYSICAL_ID...
        args: Vec<String>,
    },
    /// Clear the lock of a run that ended without releasing it, by the lock id
    /// its error printed.
    ForceUnlock {
        #[command(flatten)]
        file: FileArgs,
        /// The lock id, as the "state is locked" error printed it.
        lock_id: String,
        /// Remove a lock whose holder may still be running without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq)]
enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum GraphFormat {
    Mermaid,
    Dot,
    Json,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// List the recorded resources.
    List {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Show one recorded resource (sensitive values masked).
    Show {
        #[command(flatten)]
        file: FileArgs,
        id: String,
    },
    /// Encrypt the state and its backups with STACKCTL_STATE_KEY, reading them
    /// with it or STACKCTL_STATE_KEY_PREVIOUS: the last step of a key rotation.
    Rekey {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Print the state as JSON (from any backend; decrypted).
    Pull {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Replace the state with a file written by `state pull`. Refuses a state
    /// of another lineage, or older than the one it replaces, unless --force.
    Push {
        #[command(flatten)]
        file: FileArgs,
        path: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Copy the state to another backend: --to s3://BUCKET/KEY or --to local.
    /// The source is left as it was.
    Migrate {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long)]
        to: String,
        /// The destination's region (S3), if not the stack's.
        #[arg(long)]
        to_region: Option<String>,
        /// Overwrite a destination that holds another stack history.
        #[arg(long)]
        force: bool,
    },
    /// Forget resources without deleting them.
    Rm {
        #[command(flatten)]
        file: FileArgs,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Rename a logical id in the state (after renaming it in the stack file),
    /// without touching AWS.
    Mv {
        #[command(flatten)]
        file: FileArgs,
        old: String,
        new: String,
    },
}

/// A plan saved with `--out`: the plan plus everything needed to apply exactly it.
#[derive(Debug, Serialize, Deserialize)]
struct PlanFile {
    plan: Plan,
    stack_path: PathBuf,
    stack_source: String,
    vars: Vec<(String, String)>,
    region: Option<String>,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { file, vars } => {
            let v = load(&file.file, &vars.vars)?;
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
        Command::TestFilter {
            pattern,
            file,
            lines,
            json,
        } => {
            let pattern = crate::sim::filter::parse(&pattern)
                .map_err(|e| anyhow::anyhow!("the pattern: {e}"))?;
            let mut all = lines;
            if let Some(f) = file {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                all.extend(text.lines().map(str::to_string));
            }
            let found = crate::sim::filter::test(&pattern, &all);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"matches": found}))?
                );
            } else {
                for m in &found {
                    let values: Vec<String> = m
                        .extracted_values
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "{}: {}{}",
                        m.event_number,
                        m.event_message,
                        if values.is_empty() {
                            String::new()
                        } else {
                            format!("  [{}]", values.join(", "))
                        }
                    );
                }
                println!("{} of {} lines match.", found.len(), all.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            file,
            vars,
            events,
            json,
            live,
        } => {
            let text = if events.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(&events)
                    .with_context(|| format!("cannot read {}", events.display()))?
            };
            let events = crate::sim::parse_events(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", events.display()))?;
            let v = load(&file.file, &vars.vars)?;
            runtime()?.block_on(async {
                let (_backend, lock, state) = locked_state(&v.stack, &file, "simulate").await?;
                let cx = context(&v).await;
                let report = check::check(&v, Some(cx.region().as_str()), &[]);
                let outcome = crate::sim::run(
                    &v,
                    &state,
                    &cx,
                    &report,
                    &events,
                    crate::sim::Options { live },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&outcome)?);
                } else {
                    print!(
                        "{}",
                        crate::sensitive::redact(&crate::sim::render(&outcome))
                    );
                }
                lock.release().await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Schema { markdown } => {
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "stackctl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { file, vars, format } => {
            let stack = Stack::load(&file.file)?;
            let region = effective_region(stack.region.as_deref());
            let (v, rules) = validate::validate_lenient(stack, &vars.vars, region.as_deref())?;
            let report = check::check(&v, region.as_deref(), &rules);
            match format {
                GraphFormat::Mermaid => print!("{}", crate::diagram::mermaid(&v, &report)),
                GraphFormat::Dot => print!("{}", crate::diagram::dot(&v, &report)),
                GraphFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::diagram::json(&v, &report))?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            file,
            vars,
            json,
            strict,
        } => {
            let stack = Stack::load(&file.file)?;
            let region = effective_region(stack.region.as_deref());
            let (v, rules) = validate::validate_lenient(stack, &vars.vars, region.as_deref())?;
            let report = check::check(&v, region.as_deref(), &rules);
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
        Command::Plan {
            file,
            vars,
            out,
            json,
            format,
            detailed_exitcode,
            refresh,
            read_parallelism,
        } => {
            let format = if json { PlanFormat::Json } else { format };
            let json = format == PlanFormat::Json;
            let v = load(&file.file, &vars.vars)?;
            runtime()?.block_on(async {
                let (backend, lock, mut state) = locked_state(&v.stack, &file, "plan").await?;
                let cx = context(&v).await;
                let (plan, _) = pinned_plan(
                    &v,
                    &mut state,
                    &cx,
                    backend.as_ref(),
                    refresh,
                    read_parallelism,
                )
                .await?;
                match format {
                    PlanFormat::Json => {
                        println!("{}", serde_json::to_string_pretty(&plan::to_json(&plan))?)
                    }
                    PlanFormat::Markdown => {
                        let region = cx.region();
                        let report = check::check(&v, Some(region.as_str()), &[]);
                        print!(
                            "{}",
                            plan::render_markdown(&plan, &check::render_markdown(&report))
                        );
                    }
                    PlanFormat::Text => print!("{}", shown(&plan::render(&plan))),
                }
                if let Some(out) = out {
                    let saved = PlanFile {
                        plan: plan.clone(),
                        stack_path: v.stack.path.clone(),
                        stack_source: v.stack.source.clone(),
                        vars: vars.vars.clone(),
                        region: Some(cx.region()),
                    };
                    // It holds every value the apply needs, sensitive ones too:
                    // private, and encrypted like the state when a key is set.
                    let body = crate::seal::seal(
                        backend.keys(),
                        &serde_json::to_vec_pretty(&saved)?,
                        &out.display().to_string(),
                        crate::state::PLAN_CONTEXT,
                    )?;
                    crate::state::local::write_private(&out, &body)
                        .with_context(|| format!("cannot write the plan to {}", out.display()))?;
                    if !json {
                        println!(
                            "\nSaved the plan to {}; apply it with `stackctl apply {}`.",
                            out.display(),
                            out.display()
                        );
                    }
                }
                lock.release().await?;
                Ok(if detailed_exitcode && plan.has_changes() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                })
            })
        }
        Command::Apply {
            file,
            vars,
            auto_approve,
            parallelism,
            read_parallelism,
            plan: saved,
        } => {
            let (v, saved) = match saved {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read plan {}", path.display()))?;
                    let keys = crate::seal::Keys::from_env()?;
                    let bytes = crate::seal::open(
                        &keys,
                        &bytes,
                        &path.display().to_string(),
                        crate::state::PLAN_CONTEXT,
                    )?;
                    let saved: PlanFile = serde_json::from_slice(&bytes).with_context(|| {
                        format!(
                            "{} is not a plan saved by `stackctl plan --out`",
                            path.display()
                        )
                    })?;
                    let stack = Stack::parse(&saved.stack_path, &saved.stack_source)?;
                    (
                        validate::validate(stack, &saved.vars, effective_region(None).as_deref())?,
                        Some(saved),
                    )
                }
                None => (load(&file.file, &vars.vars)?, None),
            };
            let widths = Widths {
                writes: parallelism,
                reads: read_parallelism,
            };
            runtime()?.block_on(apply_command(v, &file, saved, auto_approve, widths))
        }
        Command::Destroy {
            file,
            vars,
            auto_approve,
            parallelism,
            read_parallelism,
        } => {
            let v = load(&file.file, &vars.vars)?;
            let widths = Widths {
                writes: parallelism,
                reads: read_parallelism,
            };
            runtime()?.block_on(destroy_command(v, &file, auto_approve, widths))
        }
        Command::Build { file, vars } => {
            let v = load(&file.file, &vars.vars)?;
            let values = StackValues {
                name: v.stack.name.clone(),
                ..StackValues::default()
            };
            let mut any = false;
            for decl in v
                .stack
                .decls
                .values()
                .filter(|d| d.type_name == "aws_lambda_function")
            {
                let props = plan::resolve_props(&v, &decl.id, &values, &|_, _| None);
                let Some(source) = props.get("source").and_then(Value::as_str) else {
                    continue;
                };
                let arch = props
                    .get("architectures")
                    .and_then(|a| a.get(0))
                    .and_then(Value::as_str)
                    .unwrap_or("x86_64")
                    .to_string();
                let started = std::time::Instant::now();
                let artifact = crate::build::build(&v.stack.dir().join(source), &arch, &Printer)?;
                any = true;
                println!("{}: {}", decl.id, artifact.zip_path.display());
                println!("  zip size:   {} bytes", artifact.zip.len());
                if artifact.built {
                    println!("  bootstrap:  {} bytes", artifact.bootstrap_size);
                }
                println!("  CodeSha256: {}", artifact.code_sha256);
                println!(
                    "  {} in {:.1}s",
                    if artifact.built {
                        "built"
                    } else {
                        "unchanged sources: reused, nothing built"
                    },
                    started.elapsed().as_secs_f64()
                );
            }
            if !any {
                println!(
                    "No aws_lambda_function with `source:` in {}.",
                    v.stack.path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Output { file, name, json } => {
            let state = read_state(&file)?;
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
                None if json => {
                    println!("{}", serde_json::to_string_pretty(&shown_outputs(&state))?)
                }
                None => {
                    for (k, v) in shown_outputs(&state) {
                        println!("{k} = {}", shown_output(&v));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State {
            command: StateCommand::List { file },
        } => {
            let state = read_state(&file)?;
            for (id, rec) in &state.resources {
                let pid = rec.physical_id.as_deref().unwrap_or("-");
                let note = rec
                    .unfinished_text()
                    .map_or(String::new(), |t| format!("\t({t})"));
                println!("{id}\t{}\t{pid}{note}", rec.type_name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State {
            command: StateCommand::Show { file, id },
        } => {
            let state = read_state(&file)?;
            let rec = state.resources.get(&id).with_context(|| {
                format!(
                    "no resource `{id}` in the state (recorded: {})",
                    keys(&state.resources)
                )
            })?;
            let mut shown = rec.clone();
            shown.props = crate::sensitive::mask(&rec.props, &rec.sensitive);
            let text = serde_json::to_string_pretty(&shown)?.replace("\\u0000", "");
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::State {
            command: StateCommand::Rekey { file },
        } => {
            let stack = Stack::load(&file.file)?;
            runtime()?.block_on(async {
                let mut backend = crate::state::open(&stack, &file.backend_config).await?;
                let lock = take_lock(backend.as_ref(), "state rekey").await?;
                let n = backend.rekey(&stack.name).await?;
                warn_of_cleanup(backend.as_mut());
                match &backend.keys().current {
                    Some(key) => println!("Rewrote {n} object(s) encrypted with key {}.", key.id),
                    None => println!(
                        "Rewrote {n} object(s) unencrypted (no STACKCTL_STATE_KEY is set)."
                    ),
                }
                lock.release().await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Import {
            file,
            vars,
            all,
            generate_config,
            stack_name,
            args,
        } => match generate_config {
            Some(out) => {
                runtime()?.block_on(generate_config_command(&file, &out, &stack_name, &args))
            }
            None => {
                let v = load(&file.file, &vars.vars)?;
                runtime()?.block_on(import_command(v, &file, all, &args))
            }
        },
        Command::State { command } => runtime()?.block_on(state_command(command)),
        Command::ForceUnlock { file, lock_id, yes } => {
            let stack = Stack::load(&file.file)?;
            runtime()?.block_on(async {
                let backend = crate::state::open(&stack, &file.backend_config).await?;
                let holder = backend.holder().await?;
                let alive = holder.filter(|h| !h.gone).and_then(|h| h.info);
                if let Some(info) = alive.filter(|i| i.id == lock_id && !yes) {
                    let question = format!(
                        "{} may still be running: nothing proves from here that it ended (another machine or container). If it runs, it stops before its next change once its lock is gone; a call it has in flight still finishes, and what it writes after is left out of the state.\nRemove the lock?",
                        info.describe()
                    );
                    if !confirm(&question, "--yes")? {
                        eprintln!("The lock is left in place.");
                        return Ok(ExitCode::FAILURE);
                    }
                }
                println!("{}", backend.force_unlock(&lock_id).await?);
                Ok(ExitCode::SUCCESS)
            })
        }
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

fn shown_output(v: &Value) -> String {
    match v {
        Value::String(s) if s == "(sensitive)" => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Takes the state's lock, saying so when it was left by a run that ended.
async fn take_lock(backend: &dyn Backend, operation: &str) -> Result<Box<dyn Held>> {
    let lock = backend.lock(operation).await?;
    if let Some(stale) = lock.took_over() {
        eprintln!(
            "note: took over the lock of {}, which ended without releasing it",
            stale.describe()
        );
    }
    Ok(lock)
}

/// A stack's state backend, its lock taken for `operation`, and the state.
async fn locked_state(
    stack: &Stack,
    file: &FileArgs,
    operation: &str,
) -> Result<(Box<dyn Backend>, Box<dyn Held>, State)> {
    let mut backend = crate::state::open(stack, &file.backend_config).await?;
    let lock = take_lock(backend.as_ref(), operation).await?;
    for note in backend.notes().await {
        eprintln!("note: {note}");
    }
    let state = backend.load(&stack.name).await?;
    Ok((backend, lock, state))
}

/// Writes the state whole at the end of a run. What failed after it was
/// saved is only told: the run's changes are recorded.
async fn compact(backend: &mut dyn Backend, state: &mut State) -> Result<()> {
    backend.compact(state).await?;
    warn_of_cleanup(backend);
    Ok(())
}

fn warn_of_cleanup(backend: &mut dyn Backend) {
    for warning in backend.take_warnings() {
        eprintln!("warning: {warning}");
    }
}

/// The AWS clients of a run, reporting progress on the terminal.
async fn context(v: &Validated) -> Ctx {
    let mut cx = Ctx::new(&v.stack.name, v.stack.region.as_deref(), &v.stack.dir()).await;
    cx.events = Arc::new(Printer);
    cx
}

/// Renders the engine's events as the lines people read: steps on stdout,
/// failures, waits and builds on stderr, sensitive values masked.
struct Printer;

impl Events for Printer {
    fn emit(&self, event: Event) {
        let redact = crate::sensitive::redact;
        match event {
            Event::Started { id, verb, detail: Some(d) } => println!("{id}: {verb} ({d})..."),
            Event::Started { id, verb, detail: None } => println!("{id}: {verb}..."),
            Event::Finished { id, verb, physical_id, seconds } => println!(
                "{id}: {verb}{} [{seconds:.2}s]",
                physical_id.map(|p| format!(" {p}")).unwrap_or_default()
            ),
            Event::Failed { id, message } => eprintln!("{id}: {}", redact(&message)),
            Event::Waiting { what, seconds } => eprintln!("  still waiting for {what} [{seconds:.0}s]"),
            Event::Building { crate_dir, target } => eprintln!("building {crate_dir} for {target}..."),
            Event::BuildOutput { line } => eprintln!("  | {line}"),
            Event::Interrupted { in_flight } => eprintln!("\nInterrupted: waiting for {in_flight} operation(s) in flight to finish; no new ones start. Interrupt again to stop waiting."),
            Event::Aborting { in_flight } => eprintln!("\nAborting {in_flight} operation(s) in flight; the creates among them stay recorded as intents for the next run to look for."),
        }
    }
}

/// A rendered plan as printed: redacted, and coloured like Terraform's on a
/// terminal (+ green, - red, ~ yellow, replacements magenta) unless NO_COLOR
/// is set.
fn shown(text: &str) -> String {
    let text = crate::sensitive::redact(text);
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if !colour {
        return text;
    }
    text.lines()
        .map(|line| {
            let code = match line.trim_start() {
                l if l.starts_with("-/+") || l.starts_with("+/-") => "35",
                l if l.starts_with('+') => "32",
                l if l.starts_with('-') => "31",
                l if l.starts_with('~') => "33",
                l if l.starts_with("Plan:") || l.starts_with('#') => "1",
                _ => return format!("{line}\n"),
            };
            format!("\x1b[{code}m{line}\x1b[0m\n")
        })
        .collect()
}

fn keys<V>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        "none".into()
    } else {
        m.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn load(path: &Path, vars: &[(String, String)]) -> Result<Validated> {
    let stack = Stack::load(path)?;
    let region = effective_region(stack.region.as_deref());
    Ok(validate::validate(stack, vars, region.as_deref())?)
}

/// The state as recorded, read without the lock (as `terraform output` does).
fn read_state(file: &FileArgs) -> Result<State> {
    let stack = Stack::load(&file.file)?;
    runtime()?.block_on(async {
        let mut backend = crate::state::open(&stack, &file.backend_config).await?;
        Ok(backend.load(&stack.name).await?)
    })
}

/// Refuses to go on with credentials or a region other than those the state's
/// resources live in (before any change: with them, everything would look
/// deleted and be created again).
async fn pin_location(state: &mut State, cx: &Ctx, backend: &dyn Backend) -> Result<()> {
    let here = cx
        .location()
        .await
        .context("asking STS which account these credentials belong to")?;
    state.pin_location(&here, &backend.location())?;
    Ok(())
}

async fn stack_values(v: &Validated, cx: &Ctx) -> Result<StackValues> {
    let account_id = if v.uses_account_id() {
        Some(cx.account_id().await.context("looking up the account id")?)
    } else {
        None
    };
    Ok(StackValues {
        name: v.stack.name.clone(),
        region: Some(cx.region()),
        account_id,
    })
}

/// How many changes and how many reads run at once.
#[derive(Debug, Clone, Copy)]
struct Widths {
    writes: usize,
    reads: usize,
}

/// The plan, made while STS says which account and region this run uses;
/// a state of another one is refused before anything changes.
async fn pinned_plan(
    v: &Validated,
    state: &mut State,
    cx: &Ctx,
    backend: &dyn Backend,
    refresh: bool,
    reads: usize,
) -> Result<(Plan, StackValues)> {
    // Reads need not wait for STS to build ARNs: the location is checked
    // before the plan is used.
    if let Some(account) = state.pinned_account() {
        cx.presume_account(account);
    }
    let (here, planned) = tokio::join!(cx.location(), make_plan(v, state, cx, refresh, reads));
    let here = here.context("asking STS which account these credentials belong to")?;
    state.pin_location(&here, &backend.location())?;
    planned
}

/// Refresh, data sources and stack values are read at the same time: a
/// plan takes about as long as its slowest read.
async fn make_plan(
    v: &Validated,
    state: &State,
    cx: &Ctx,
    refresh: bool,
    reads: usize,
) -> Result<(Plan, StackValues)> {
    let refreshed = async {
        match refresh {
            true => plan::refresh(cx, state, reads).await,
            false => Ok(BTreeMap::new()),
        }
    };
    let values_and_data = async {
        let values = stack_values(v, cx).await?;
        let data = plan::read_data(cx, v, &values)
            .await
            .map_err(|(id, e)| anyhow::anyhow!("reading data source `{id}`: {e}"))?;
        Ok::<_, anyhow::Error>((values, data))
    };
    let (values_and_data, live) = tokio::join!(values_and_data, refreshed);
    let (values, data) = values_and_data?;
    let live = live.map_err(|(id, e)| anyhow::anyhow!("refreshing `{id}` from AWS: {e}"))?;
    let plan = plan::make(v, state, &live, &data, &values);
    if let Some(problem) = plan::blocked_replacements(&plan).first() {
        bail!("{problem}");
    }
    Ok((plan, values))
}

/// Asks on the terminal; `skip` is the flag that answers yes beforehand.
fn confirm(question: &str, skip: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question}\nrefusing without confirmation: stdin is not a terminal; pass {skip}");
    }
    print!("\n{question}\n  Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

async fn apply_command(
    v: Validated,
    file: &FileArgs,
    saved: Option<PlanFile>,
    auto_approve: bool,
    widths: Widths,
) -> Result<ExitCode> {
    let (mut backend, lock, mut state) = locked_state(&v.stack, file, "apply").await?;
    let cx = Arc::new(context(&v).await);
    let (plan, values) = match saved {
        Some(saved) => {
            pin_location(&mut state, &cx, backend.as_ref()).await?;
            if saved.plan.lineage != state.lineage || saved.plan.serial != state.serial {
                bail!(
                    "the saved plan is stale: it was made against state serial {} but the state is now at serial {}{}; run `stackctl plan --out` again",
                    saved.plan.serial,
                    state.serial,
                    if saved.plan.lineage != state.lineage { " of another lineage" } else { "" }
                );
            }
            if saved.region.as_deref() != Some(cx.region().as_str()) {
                bail!(
                    "the saved plan was made for region {:?}, this run uses {}",
                    saved.region,
                    cx.region()
                );
            }
            let values = stack_values(&v, &cx).await?;
            print!("{}", shown(&plan::render(&saved.plan)));
            (saved.plan, values)
        }
        None => {
            let (plan, values) =
                pinned_plan(&v, &mut state, &cx, backend.as_ref(), true, widths.reads).await?;
            print!("{}", shown(&plan::render(&plan)));
            if plan.has_changes()
                && !auto_approve
                && !confirm("Do you want to perform these actions?", "--auto-approve")?
            {
                println!("Apply cancelled.");
                lock.release().await?;
                return Ok(ExitCode::from(1));
            }
            (plan, values)
        }
    };
    if let Some((id, prop)) = apply::stale_sources(&v, &state, &values, &plan).first() {
        bail!("`{id}`: `{prop}` is no longer what the plan showed (its sources changed since); run `stackctl plan` again");
    }
    let changed = plan.has_changes();
    if changed {
        println!();
    }
    let started = std::time::Instant::now();
    let outcome = Walk {
        v: &v,
        values: &values,
        cx,
        file: backend.as_mut(),
        state: &mut state,
        parallelism: widths.writes,
    }
    .run(&plan)
    .await?;
    let outputs = apply::outputs(&v, &state, &values, &plan.data);
    if !changed && state.outputs != outputs {
        // Outputs added or edited without any resource change still land in the state.
        state.outputs = outputs;
        state.sensitive_outputs = apply::sensitive_outputs(&v, &state);
    }
    // The run's journal folds into the state: the next read is one object.
    compact(backend.as_mut(), &mut state).await?;
    lock.release().await?;
    finish(&outcome, &plan, started.elapsed().as_secs_f64(), "Apply")?;
    if !state.outputs.is_empty() {
        println!("\nOutputs:\n");
        for (k, val) in shown_outputs(&state) {
            println!("{k} = {}", shown_output(&val));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn finish(outcome: &apply::Outcome, plan: &Plan, secs: f64, what: &str) -> Result<()> {
    if outcome.ok() {
        let s = &plan.summary;
        println!(
            "\n{what} complete! Resources: {} added, {} changed, {} destroyed. [{secs:.2}s]",
            s.add, s.change, s.destroy
        );
        return Ok(());
    }
    let mut msg = String::new();
    for (_, m) in &outcome.failed {
        msg.push_str(&format!("\n  error {m}"));
    }
    if !outcome.abandoned.is_empty() {
        msg.push_str(&format!(
            "\n  in flight when the run stopped waiting (each is recorded as such; the next run looks for what it did): {}",
            outcome.abandoned.join(", ")
        ));
    }
    if !outcome.skipped.is_empty() {
        msg.push_str(&format!(
            "\n  not attempted (their dependencies failed or the run was interrupted): {}",
            outcome.skipped.join(", ")
        ));
    }
    if outcome.interrupted {
        bail!("{what} interrupted; the state records everything done so far.{msg}");
    }
    bail!("{what} failed; the state records everything that succeeded, run the command again once fixed:{msg}")
}

async fn destroy_command(
    v: Validated,
    file: &FileArgs,
    auto_approve: bool,
    widths: Widths,
) -> Result<ExitCode> {
    let (mut backend, lock, mut state) = locked_state(&v.stack, file, "destroy").await?;
    if state.resources.is_empty() && state.deposed.is_empty() {
        println!("Nothing to destroy: the state records no resources.");
        lock.release().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let cx = Arc::new(context(&v).await);
    pin_location(&mut state, &cx, backend.as_ref()).await?;
    // Only creates that were interrupted need a look in AWS: they may exist.
    let mut pending = state.clone();
    pending.resources.retain(|_, r| r.is_pending());
    let live: BTreeMap<String, Refreshed> = plan::refresh(&cx, &pending, widths.reads)
        .await
        .map_err(|(id, e)| anyhow::anyhow!("looking for `{id}` in AWS: {e}"))?;
    let plan = plan::destroy(&state, &live);
    print!("{}", shown(&plan::render(&plan)));
    if !auto_approve
        && !confirm(
            "Do you really want to destroy all resources of this stack?",
            "--auto-approve",
        )?
    {
        println!("Destroy cancelled.");
        lock.release().await?;
        return Ok(ExitCode::from(1));
    }
    println!();
    let values = stack_values(&v, &cx).await.unwrap_or_default();
    let started = std::time::Instant::now();
    let outcome = Walk {
        v: &v,
        values: &values,
        cx,
        file: backend.as_mut(),
        state: &mut state,
        parallelism: widths.writes,
    }
    .run(&plan)
    .await?;
    if outcome.ok() {
        state.outputs.clear();
    }
    compact(backend.as_mut(), &mut state).await?;
    lock.release().await?;
    finish(&outcome, &plan, started.elapsed().as_secs_f64(), "Destroy")?;
    Ok(ExitCode::SUCCESS)
}

async fn import_command(
    v: Validated,
    file: &FileArgs,
    all: bool,
    args: &[String],
) -> Result<ExitCode> {
    let single = match (all, args) {
        (true, []) => None,
        (false, [id, physical_id]) => Some((id.clone(), physical_id.clone())),
        _ => bail!("give LOGICAL_ID PHYSICAL_ID, or --all (or --generate-config FILE TYPE.ID=PHYSICAL_ID...)"),
    };
    let (mut backend, lock, mut state) = locked_state(&v.stack, file, "import").await?;
    let cx = context(&v).await;
    pin_location(&mut state, &cx, backend.as_ref()).await?;
    let values = stack_values(&v, &cx).await?;
    let data = plan::read_data(&cx, &v, &values)
        .await
        .map_err(|(id, e)| anyhow::anyhow!("reading data source `{id}`: {e}"))?;
    let (imported, missed) = match single {
        Some((id, physical_id)) => {
            let one =
                crate::import::one(&v, &cx, &mut state, &values, &data, &id, &physical_id).await;
            backend.save(&mut state).await?;
            (vec![one?], Vec::new())
        }
        None => crate::import::all(&v, &cx, &mut state, &values, &data, backend.as_mut()).await?,
    };
    compact(backend.as_mut(), &mut state).await?;
    lock.release().await?;
    for i in &imported {
        let tags = if i.tagged {
            ", tagged stackctl:stack and stackctl:id"
        } else {
            ""
        };
        println!(
            "{}: imported {} ({}{tags})",
            i.id, i.physical_id, i.type_name
        );
    }
    for m in &missed {
        println!("{}: not imported: {}", m.id, m.why);
    }
    let tagged = imported.iter().filter(|i| i.tagged).count();
    println!(
        "\nImported {} resource(s); {} not found. Nothing was created, changed or deleted in AWS but the ownership tags of {tagged} resource(s).\nRun `stackctl plan` to see how what exists differs from the stack file.",
        imported.len(),
        missed.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn generate_config_command(
    file: &FileArgs,
    out: &Path,
    stack_name: &str,
    args: &[String],
) -> Result<ExitCode> {
    let targets = args
        .iter()
        .map(|a| crate::generate::parse_target(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    if targets.is_empty() {
        bail!("--generate-config needs TYPE.LOGICAL_ID=PHYSICAL_ID arguments, such as aws_sns_topic.alerts=arn:aws:sns:...");
    }
    if out.exists() {
        bail!(
            "{} exists: --generate-config writes a new file and never overwrites one",
            out.display()
        );
    }
    let dir = file
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut cx = Ctx::new(stack_name, None, &dir).await;
    cx.events = Arc::new(Printer);
    let text = crate::generate::generate(&cx, stack_name, &targets)
        .await
        .map_err(|(id, e)| anyhow::anyhow!("reading `{id}`: {e}"))?;
    // Only its owner reads it, as the state: it describes what exists.
    crate::state::local::write_private(out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "Wrote {} resource(s) to {}; nothing was changed in AWS. Review it, then `stackctl import --all -f {}`.",
        targets.len(),
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn state_command(command: StateCommand) -> Result<ExitCode> {
    match command {
        StateCommand::Pull { file } => {
            let stack = Stack::load(&file.file)?;
            let mut backend = crate::state::open(&stack, &file.backend_config).await?;
            let state = backend.load(&stack.name).await?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        StateCommand::Push { file, path, force } => {
            let stack = Stack::load(&file.file)?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            // What `state pull` prints is plain: the user's own file, read
            // as given (encrypted when the backend writes it).
            let keys = crate::seal::Keys {
                accept_plain: true,
                ..crate::seal::Keys::from_env()?
            };
            let plain = crate::seal::open(
                &keys,
                &bytes,
                &path.display().to_string(),
                &crate::state::state_context(&stack.name),
            )?;
            let mut pushed: State = serde_json::from_slice(&plain).with_context(|| {
                format!(
                    "{} is not a stackctl state (as `stackctl state pull` prints it)",
                    path.display()
                )
            })?;
            let (mut backend, lock, current) = locked_state(&stack, &file, "state push").await?;
            if let Some(problem) = current.refuses_replacement_by(&pushed) {
                if !force || pushed.stack != stack.name {
                    bail!("the file: {problem}; nothing was written");
                }
                eprintln!("warning: the file: {problem}; written anyway (--force)");
            }
            compact(backend.as_mut(), &mut pushed).await?;
            lock.release().await?;
            println!(
                "Wrote the state to {} (serial {}, {} resources).",
                backend.location(),
                pushed.serial,
                pushed.resources.len()
            );
        }
        StateCommand::Migrate {
            file,
            to,
            to_region,
            force,
        } => {
            let stack = Stack::load(&file.file)?;
            let (from, from_lock, mut state) = locked_state(&stack, &file, "state migrate").await?;
            let mut settings = crate::state::settings_of(&to);
            if let Some(region) = to_region {
                settings.insert("region".into(), region);
            }
            let mut target_stack = stack.clone();
            target_stack.backend = settings;
            let mut target = crate::state::open(&target_stack, &[]).await?;
            if target.location() == from.location() {
                bail!("the state is already at {}", from.location());
            }
            let target_lock = take_lock(target.as_ref(), "state migrate").await?;
            let existing = target.load(&stack.name).await?;
            if let Some(problem) = existing.refuses_replacement_by(&state) {
                if !force {
                    bail!("the state at {}: {problem}; nothing was copied (--force overwrites it; its bucket versions keep it)", target.location());
                }
                eprintln!(
                    "warning: the state at {}: {problem}; copied anyway (--force)",
                    target.location()
                );
            }
            compact(target.as_mut(), &mut state).await?;
            target_lock.release().await?;
            from_lock.release().await?;
            println!(
                "Copied the state ({} resources, lineage {}) from {} to {}.",
                state.resources.len(),
                state.lineage,
                from.location(),
                target.location()
            );
            println!(
                "The state at {} is left as it was. Point the stack file at the new place:\n{}",
                from.location(),
                backend_yaml(&target_stack.backend)
            );
        }
        StateCommand::Rm { file, ids } => {
            let stack = Stack::load(&file.file)?;
            let (mut backend, lock, mut state) = locked_state(&stack, &file, "state rm").await?;
            for id in &ids {
                if !state.resources.contains_key(id) {
                    bail!(
                        "no resource `{id}` in the state (recorded: {}); nothing was removed",
                        keys(&state.resources)
                    );
                }
            }
            for id in &ids {
                let rec = state.resources.remove(id).unwrap_or_else(|| unreachable!());
                println!(
                    "{id}: forgotten; {} still exists in AWS",
                    rec.physical_id
                        .as_deref()
                        .unwrap_or("(an interrupted create)")
                );
            }
            compact(backend.as_mut(), &mut state).await?;
            lock.release().await?;
            println!("The resources keep their stackctl tags: while the stack file declares them, the next apply finds and takes them back. Remove them from the file to leave them alone.");
        }
        StateCommand::Mv { file, old, new } => {
            let stack = Stack::load(&file.file)?;
            let (mut backend, lock, mut state) = locked_state(&stack, &file, "state mv").await?;
            move_record(&mut state, &old, &new)?;
            let retagged = retag(&stack, &mut state, backend.as_ref(), &new).await?;
            compact(backend.as_mut(), &mut state).await?;
            lock.release().await?;
            println!(
                "Moved `{old}` to `{new}` in the state; {}",
                match retagged {
                    Some(pid) => format!(
                        "{pid}'s stackctl:id tag now says `{new}` (nothing else changed in AWS)."
                    ),
                    None => "nothing changed in AWS.".into(),
                }
            );
        }
        StateCommand::List { .. } | StateCommand::Show { .. } | StateCommand::Rekey { .. } => {
            unreachable!()
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Gives a moved resource's object the ownership tag of its new id, so that
/// whatever finds it by its tags (a create after `state rm`, a run after a
/// crash) knows it as `id`. Types without tags have nothing to change.
async fn retag(
    stack: &Stack,
    state: &mut State,
    backend: &dyn Backend,
    id: &str,
) -> Result<Option<String>> {
    let rec = &state.resources[id];
    let provider = crate::providers::lookup(&rec.type_name)
        .with_context(|| format!("unknown type `{}`", rec.type_name))?;
    let Some(pid) = rec
        .physical_id
        .clone()
        .filter(|_| provider.schema().taggable)
    else {
        return Ok(None);
    };
    let cx = Ctx::new(&stack.name, stack.region.as_deref(), &stack.dir()).await;
    pin_location(state, &cx, backend).await?;
    let Some(observed) = provider.read(&cx, &pid).await.map_err(|e| {
        anyhow::anyhow!("reading `{id}` ({pid}) to retag it: {e}; nothing was moved")
    })?
    else {
        return Ok(None);
    };
    crate::providers::claim(provider, &cx, &pid, id, &observed)
        .await
        .map_err(|e| anyhow::anyhow!("retagging `{id}` ({pid}): {e}; nothing was moved"))?;
    Ok(Some(pid))
}

/// Renames a logical id in the state, with every record that depends on it.
fn move_record(state: &mut State, old: &str, new: &str) -> Result<()> {
    if state.resources.contains_key(new) {
        bail!("`{new}` is already in the state; nothing was moved");
    }
    if !crate::config::is_logical_id(new) {
        bail!("`{new}`: logical ids must match [a-z][a-z0-9_]*");
    }
    let rec = state.resources.remove(old).with_context(|| {
        format!(
            "no resource `{old}` in the state (recorded: {})",
            keys(&state.resources)
        )
    })?;
    state.resources.insert(new.to_string(), rec);
    for r in state.resources.values_mut() {
        for d in r.depends_on.iter_mut().filter(|d| *d == old) {
            *d = new.to_string();
        }
    }
    for d in state.deposed.iter_mut().filter(|d| d.id == old) {
        d.id = new.to_string();
    }
    Ok(())
}

fn backend_yaml(settings: &BTreeMap<String, String>) -> String {
    match settings.get("type").map(String::as_str) {
        Some("s3") => {
            let mut out = String::from("  backend:\n    s3:\n");
            for k in ["bucket", "key", "region"] {
                if let Some(v) = settings.get(k) {
                    out.push_str(&format!("      {k}: {v}\n"));
                }
            }
            out
        }
        _ => "  (remove `backend:` from the stack file)".into(),
    }
}
