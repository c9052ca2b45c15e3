//! The commands, one module per command or group, each with one entry point
//! the CLI's dispatch calls, and what they share: the session over a stack's
//! state (opened, locked, loaded and pinned once; committed once), the
//! terminal (the printer of the engine's events, confirmation, colour), and
//! loading a stack file.

pub mod apply;
pub mod build;
pub mod env;
pub mod import;
pub mod init;
pub mod output;
pub mod plan;
pub mod review;
pub mod simulate;
pub mod state;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Stack;
use crate::events::{Event, Events};
use crate::model::StackValues;
use crate::plan::Plan;
use crate::providers::{effective_region, Ctx};
use crate::sensitive::Redactor;
use crate::state::{Backend, Held, State};
use crate::validate::{self, Validated};

#[derive(clap::Args, Debug, Clone)]
pub struct FileArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.yaml")]
    pub file: PathBuf,
    /// Override a setting of the stack's state backend, as CI does:
    /// --backend-config bucket=NAME (also key, region, kms_key_id; repeatable).
    #[arg(long = "backend-config", value_name = "KEY=VALUE", value_parser = validate::parse_var)]
    pub backend_config: Vec<(String, String)>,
    /// The environment: env/NAME.yaml beside the stack file overlays it,
    /// with its own state (default: $STACKCTL_ENV).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
}

impl FileArgs {
    /// `--env`, else `STACKCTL_ENV`.
    pub fn env_name(&self) -> Option<String> {
        let from_env = || std::env::var("STACKCTL_ENV").ok().filter(|e| !e.is_empty());
        self.env.clone().or_else(from_env)
    }

    /// The stack file, as the environment makes it.
    pub fn stack(&self) -> Result<Stack> {
        Ok(Stack::load_in(&self.file, self.env_name().as_deref())?)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct VarArgs {
    /// Set a variable: --var name=value (repeatable). A list or map variable
    /// takes YAML or JSON: --var 'fleet=[web-1, web-2]'.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = validate::parse_var)]
    vars: Vec<(String, String)>,
    /// Read variables from a YAML file of `name: value` (repeatable; --var
    /// wins over a file, a later file over an earlier one).
    #[arg(long = "var-file", value_name = "FILE")]
    var_files: Vec<PathBuf>,
}

impl VarArgs {
    /// Every variable given, as `name=value` text: a file's lists and maps as
    /// JSON, which validation reads back by the variable's kind.
    pub fn pairs(&self) -> Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for file in &self.var_files {
            pairs.extend(var_file(file)?);
        }
        pairs.extend(self.vars.iter().cloned());
        Ok(pairs)
    }
}

fn var_file(file: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the variables file {}", file.display()))?;
    let node = crate::config::yaml::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let Some(entries) = node.as_map() else {
        bail!(
            "{}: a variables file is a map of `name: value`",
            file.display()
        );
    };
    Ok(entries
        .iter()
        .map(|(k, v)| {
            let text = match v.to_json() {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k.key_text(), text)
        })
        .collect())
}

/// A command's hold on a stack's state: the backend opened, its lock taken
/// (a lock a crashed run left taken over, with a note), the state loaded.
/// `commit` writes it whole, tells what failed after it was saved, and
/// releases the lock; `release` only releases it.
pub(crate) struct Session {
    pub backend: Box<dyn Backend>,
    lock: Box<dyn Held>,
    pub state: State,
}

impl Session {
    pub async fn open(
        stack: &Stack,
        backend_config: &[(String, String)],
        operation: &str,
    ) -> Result<Session> {
        let backend = crate::state::open(stack, backend_config).await?;
        Session::on(backend, &stack.name, operation).await
    }

    /// A session over a backend already opened (another place of the state).
    pub async fn on(
        mut backend: Box<dyn Backend>,
        stack: &str,
        operation: &str,
    ) -> Result<Session> {
        let lock = backend.lock(operation).await?;
        if let Some(stale) = lock.holding().took_over.as_ref() {
            eprintln!(
                "note: took over the lock of {}, which ended without releasing it",
                stale.describe()
            );
        }
        for note in backend.notes().await {
            eprintln!("note: {note}");
        }
        let state = backend.load(stack).await?;
        Ok(Session {
            backend,
            lock,
            state,
        })
    }

    /// Refuses to go on with credentials or a region other than those the
    /// state's resources live in (before any change: with them, everything
    /// would look deleted and be created again).
    pub async fn pin(&mut self, cx: &Ctx) -> Result<()> {
        let here = cx
            .location()
            .await
            .context("asking STS which account these credentials belong to")?;
        self.state.pin_location(&here, &self.backend.location())?;
        Ok(())
    }

    /// Makes the state durable (the run's journal folded into it when the
    /// backend finds that due), tells what failed after it was saved, and
    /// releases the lock. Returns the state as written.
    pub async fn commit(mut self) -> Result<State> {
        self.backend.settle(&mut self.state).await?;
        warn_of_cleanup(self.backend.as_mut());
        self.lock.release().await?;
        Ok(self.state)
    }

    pub async fn release(self) -> Result<()> {
        Ok(self.lock.release().await?)
    }
}

/// What failed after the state was saved is only told: it is recorded.
pub(crate) fn warn_of_cleanup(backend: &mut dyn Backend) {
    for warning in backend.take_warnings() {
        eprintln!("warning: {warning}");
    }
}

/// A plan saved with `--out`: the plan plus everything needed to apply exactly it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PlanFile {
    pub plan: Plan,
    pub stack_path: PathBuf,
    pub stack_source: String,
    /// The environment overlaid: its name and its file as read.
    #[serde(default)]
    pub env: Option<(String, String)>,
    pub vars: Vec<(String, String)>,
    pub region: Option<String>,
}

/// How many changes and how many reads run at once.
#[derive(Debug, Clone, Copy)]
pub struct Widths {
    pub writes: usize,
    pub reads: usize,
}

/// The AWS clients of a run, reporting progress on the terminal.
pub(crate) async fn context(v: &Validated) -> Ctx {
    let stack = &v.stack;
    let mut cx = Ctx::new(
        &stack.name,
        stack.region.as_deref(),
        &stack.dir(),
        stack.env.as_ref(),
    )
    .await;
    cx.events = Arc::new(Printer(v.redactor.clone()));
    cx
}

/// Renders the engine's events as the lines people read: steps on stdout,
/// failures, waits and builds on stderr, sensitive values masked.
pub(crate) struct Printer(pub Arc<Redactor>);

impl Events for Printer {
    fn emit(&self, event: Event) {
        let redact = |text: &str| self.0.redact(text);
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
pub(crate) fn shown(redactor: &Redactor, text: &str) -> String {
    let text = redactor.redact(text);
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

/// Asks on the terminal; `skip` is the flag that answers yes beforehand.
/// Asks `question` and reads the answer from standard input, a terminal or
/// not (`echo yes | stackctl apply`, as Terraform reads it); a closed input
/// gives no answer and is a refusal that says how to skip the question.
pub(crate) fn confirm(question: &str, skip: &str) -> Result<bool> {
    print!("\n{question}\n  Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer)? == 0 {
        bail!("{question}\nrefusing without confirmation: standard input is closed; answer yes on it, or pass {skip}");
    }
    Ok(answer.trim() == "yes")
}

/// `a, b, c`, or `none`.
pub(crate) fn keys<V>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        "none".into()
    } else {
        m.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The stack file, parsed and validated (what AWS would refuse is an error).
/// An error as it may be shown: the stack's sensitive values masked (AWS's
/// messages can quote what was sent).
pub(crate) fn masked(redactor: &Redactor, error: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(redactor.redact(&format!("{error:#}")))
}

pub(crate) fn load(file: &FileArgs, vars: &[(String, String)]) -> Result<Validated> {
    let stack = file.stack()?;
    let region = effective_region(stack.region.as_deref());
    Ok(validate::validate(stack, vars, region.as_deref())?)
}

/// The state as recorded, read without the lock (as `terraform output` does).
pub(crate) fn read_state(file: &FileArgs) -> Result<State> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let mut backend = crate::state::open(&stack, &file.backend_config).await?;
        Ok(backend.load(&stack.name).await?)
    })
}

/// `${stack.*}` for this run (the account only when the stack uses it).
pub(crate) async fn stack_values(v: &Validated, cx: &Ctx) -> Result<StackValues> {
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
