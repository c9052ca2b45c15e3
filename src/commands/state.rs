//! `stackctl state ...` and `stackctl force-unlock`: the state read, moved,
//! edited and unlocked. What changes the state goes through a session:
//! locked, with a backup, committed once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::{confirm, keys, read_state, runtime, warn_of_cleanup, FileArgs, Session};
use crate::config::Stack;
use crate::providers::Ctx;
use crate::state::State;

#[derive(Subcommand, Debug)]
pub enum StateCommand {
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
    /// Rename a logical id in the state (after renaming it in the stack file);
    /// the object's ownership tag names the new id.
    Mv {
        #[command(flatten)]
        file: FileArgs,
        old: String,
        new: String,
    },
}

/// Dispatches a `state` subcommand.
pub fn run(command: StateCommand) -> Result<ExitCode> {
    match command {
        StateCommand::List { file } => list(&file),
        StateCommand::Show { file, id } => show(&file, &id),
        StateCommand::Rekey { file } => rekey(&file),
        StateCommand::Pull { file } => pull(&file),
        StateCommand::Push { file, path, force } => push(&file, &path, force),
        StateCommand::Migrate {
            file,
            to,
            to_region,
            force,
        } => migrate(
            &file,
            Target {
                url: to,
                region: to_region,
                force,
            },
        ),
        StateCommand::Rm { file, ids } => rm(&file, &ids),
        StateCommand::Mv { file, old, new } => mv(&file, &old, &new),
    }
}

/// `state list`: each record, and what became of a change still unfinished.
pub fn list(file: &FileArgs) -> Result<ExitCode> {
    let state = read_state(file)?;
    for (id, rec) in &state.resources {
        let pid = rec.physical_id.as_deref().unwrap_or("-");
        let note = rec
            .unfinished_text()
            .map_or(String::new(), |t| format!("\t({t})"));
        println!("{id}\t{}\t{pid}{note}", rec.type_name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `state show ID`, sensitive values masked.
pub fn show(file: &FileArgs, id: &str) -> Result<ExitCode> {
    let state = read_state(file)?;
    let rec = state.resources.get(id).with_context(|| {
        format!(
            "no resource `{id}` in the state (recorded: {})",
            keys(&state.resources)
        )
    })?;
    let mut shown = rec.clone();
    shown.props = crate::sensitive::mask(&rec.props, &rec.sensitive);
    println!(
        "{}",
        serde_json::to_string_pretty(&shown)?.replace("\\u0000", "")
    );
    Ok(ExitCode::SUCCESS)
}

/// `state pull`: the state as JSON (as the next run reads it).
pub fn pull(file: &FileArgs) -> Result<ExitCode> {
    let state = read_state(file)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(ExitCode::SUCCESS)
}

/// `state rekey`: everything the backend keeps, rewritten with the current key.
pub fn rekey(file: &FileArgs) -> Result<ExitCode> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let mut backend = crate::state::open(&stack, &file.backend_config).await?;
        let lock = backend.lock("state rekey").await?;
        let n = backend.rekey(&stack.name).await?;
        warn_of_cleanup(backend.as_mut());
        match &backend.keys().current {
            Some(key) => println!("Rewrote {n} object(s) encrypted with key {}.", key.id),
            None => println!("Rewrote {n} object(s) unencrypted (no STACKCTL_STATE_KEY is set)."),
        }
        lock.release().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `state push FILE`: refused over a newer state or another lineage unless
/// `force`.
pub fn push(file: &FileArgs, path: &Path, force: bool) -> Result<ExitCode> {
    let stack = file.stack()?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // What `state pull` prints is plain: the user's own file, read as given
    // (encrypted when the backend writes it).
    let keys = crate::seal::Keys {
        accept_plain: true,
        ..crate::seal::Keys::from_env()?
    };
    let context = crate::state::state_context(&stack.name);
    let plain = crate::seal::open(&keys, &bytes, &path.display().to_string(), &context)?;
    let pushed: State = serde_json::from_slice(&plain).with_context(|| {
        format!(
            "{} is not a stackctl state (as `stackctl state pull` prints it)",
            path.display()
        )
    })?;
    runtime()?.block_on(async {
        let mut session = Session::open(&stack, &file.backend_config, "state push").await?;
        if let Some(problem) = session.state.refuses_replacement_by(&pushed) {
            if !force || pushed.stack != stack.name {
                bail!("the file: {problem}; nothing was written");
            }
            eprintln!("warning: the file: {problem}; written anyway (--force)");
        }
        session.state = pushed;
        let location = session.backend.location();
        let written = session.commit().await?;
        println!(
            "Wrote the state to {location} (serial {}, {} resources).",
            written.serial,
            written.resources.len()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Where `state migrate` copies to.
pub struct Target {
    pub url: String,
    pub region: Option<String>,
    pub force: bool,
}

/// `state migrate --to URL`: the state copied; the source left as it was.
pub fn migrate(file: &FileArgs, to: Target) -> Result<ExitCode> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let from = Session::open(&stack, &file.backend_config, "state migrate").await?;
        let mut settings = crate::state::settings_of(&to.url);
        if let Some(region) = to.region {
            settings.insert("region".into(), region);
        }
        let mut target_stack = stack.clone();
        target_stack.backend = settings;
        let target = crate::state::open(&target_stack, &[]).await?;
        if target.location() == from.backend.location() {
            bail!("the state is already at {}", target.location());
        }
        let mut target = Session::on(target, &stack.name, "state migrate").await?;
        let location = target.backend.location();
        if let Some(problem) = target.state.refuses_replacement_by(&from.state) {
            if !to.force {
                bail!("the state at {location}: {problem}; nothing was copied (--force overwrites it; its bucket versions keep it)");
            }
            eprintln!("warning: the state at {location}: {problem}; copied anyway (--force)");
        }
        target.state = from.state.clone();
        let (resources, lineage) = (from.state.resources.len(), from.state.lineage.clone());
        let source = from.backend.location();
        target.commit().await?;
        from.release().await?;
        println!("Copied the state ({resources} resources, lineage {lineage}) from {source} to {location}.");
        println!(
            "The state at {source} is left as it was. Point the stack file at the new place:\n{}",
            backend_yaml(&target_stack.backend)
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `state rm ID...`: forgotten, left in AWS.
pub fn rm(file: &FileArgs, ids: &[String]) -> Result<ExitCode> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let mut session = Session::open(&stack, &file.backend_config, "state rm").await?;
        let forgotten = session
            .state
            .forget(ids)
            .map_err(|e| anyhow::anyhow!("{e}; nothing was removed"))?;
        session.commit().await?;
        for (id, rec) in forgotten {
            let pid = rec.physical_id.as_deref().unwrap_or("(an interrupted create)");
            println!("{id}: forgotten; {pid} still exists in AWS");
        }
        println!("The resources keep their stackctl tags: while the stack file declares them, the next apply finds and takes them back. Remove them from the file to leave them alone.");
        Ok(ExitCode::SUCCESS)
    })
}

/// `state mv OLD NEW`: renamed, and the object retagged with its new id.
pub fn mv(file: &FileArgs, old: &str, new: &str) -> Result<ExitCode> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let mut session = Session::open(&stack, &file.backend_config, "state mv").await?;
        session
            .state
            .move_record(old, new)
            .map_err(|e| anyhow::anyhow!("{e}; nothing was moved"))?;
        let retagged = retag(&stack, &mut session, new).await?;
        session.commit().await?;
        let aws = match retagged {
            Some(pid) => {
                format!("{pid}'s stackctl:id tag now says `{new}` (nothing else changed in AWS).")
            }
            None => "nothing changed in AWS.".into(),
        };
        println!("Moved `{old}` to `{new}` in the state; {aws}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Gives a moved resource's object the ownership tag of its new id, so that
/// whatever finds it by its tags (a create after `state rm`, a run after a
/// crash) knows it as `id`. Types without tags have nothing to change.
pub(crate) async fn retag(
    stack: &Stack,
    session: &mut Session,
    id: &str,
) -> Result<Option<String>> {
    let rec = &session.state.resources[id];
    let provider = crate::providers::lookup(&rec.type_name)
        .with_context(|| format!("unknown type `{}`", rec.type_name))?;
    let Some(pid) = rec
        .physical_id
        .clone()
        .filter(|_| provider.schema().taggable())
    else {
        return Ok(None);
    };
    let cx = Ctx::new(
        &stack.name,
        stack.region.as_deref(),
        &stack.dir(),
        stack.env.as_ref(),
    )
    .await;
    session.pin(&cx).await?;
    let read = provider.read(&cx, &pid).await.map_err(|e| {
        anyhow::anyhow!("reading `{id}` ({pid}) to retag it: {e}; nothing was moved")
    })?;
    let Some(observed) = read else {
        return Ok(None);
    };
    crate::providers::claim(provider, &cx, &pid, id, &observed)
        .await
        .map_err(|e| anyhow::anyhow!("retagging `{id}` ({pid}): {e}; nothing was moved"))?;
    Ok(Some(pid))
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

/// `force-unlock ID`: a lock whose holder may still run is removed only
/// after a yes.
pub fn force_unlock(file: &FileArgs, lock_id: &str, yes: bool) -> Result<ExitCode> {
    let stack = file.stack()?;
    runtime()?.block_on(async {
        let mut backend = crate::state::open(&stack, &file.backend_config).await?;
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
        println!("{}", backend.force_unlock(lock_id).await?);
        Ok(ExitCode::SUCCESS)
    })
}
