//! `stackctl apply` and `stackctl destroy`: a plan walked, the state
//! committed, the outcome told.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::plan::pinned_plan;
use super::{
    confirm, context, load, masked, runtime, shown, stack_values, FileArgs, PlanFile, Session,
    VarArgs, Widths,
};
use crate::apply::{self, Walk};
use crate::config::Stack;
use crate::model::StackValues;
use crate::plan::{self, Plan, Refreshed};
use crate::providers::{effective_region, Ctx};
use crate::validate::{self, Validated};

/// What `stackctl apply` and `stackctl destroy` share.
#[derive(clap::Args, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many resources are changed at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// How many AWS reads (of the refresh) run at once.
    #[arg(long, default_value_t = 32)]
    pub read_parallelism: usize,
}

/// What `stackctl apply` was asked: a saved plan, or the stack file's.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// A plan saved by `stackctl plan --out`.
    pub plan: Option<PathBuf>,
}

pub fn run(r: ApplyArgs) -> Result<ExitCode> {
    let (v, saved) = match &r.plan {
        Some(path) => {
            let saved = read_plan(path)?;
            let mut stack = Stack::parse(&saved.stack_path, &saved.stack_source)?;
            if let Some((name, source)) = &saved.env {
                let file = crate::config::env_file(&stack.dir(), name);
                stack = stack.overlay(name, &file, source)?;
            }
            let region = effective_region(None);
            let v = validate::validate(stack, &saved.vars, region.as_deref())?;
            (v, Some(saved))
        }
        None => (load(&r.change.file, &r.change.vars.pairs()?)?, None),
    };
    let redactor = v.redactor.clone();
    let result = runtime()?.block_on(apply(v, &r, saved));
    result.map_err(|e| masked(&redactor, e))
}

/// A plan saved by `plan --out` (encrypted like the state when a key is set).
pub(crate) fn read_plan(path: &Path) -> Result<PlanFile> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read plan {}", path.display()))?;
    let keys = crate::seal::Keys::from_env()?;
    let what = path.display().to_string();
    let bytes = crate::seal::open(&keys, &bytes, &what, crate::state::PLAN_CONTEXT)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{what} is not a plan saved by `stackctl plan --out`"))
}

async fn apply(v: Validated, r: &ApplyArgs, saved: Option<PlanFile>) -> Result<ExitCode> {
    let mut session = Session::open(&v.stack, &r.change.file.backend_config, "apply").await?;
    let cx = Arc::new(context(&v).await);
    let (plan, values) = match saved {
        Some(saved) => {
            session.pin(&cx).await?;
            check_saved(&saved, &session, &cx)?;
            print!("{}", shown(&v.redactor, &plan::render(&saved.plan)));
            (saved.plan, stack_values(&v, &cx).await?)
        }
        None => {
            let (plan, values) = pinned_plan(
                &v,
                &mut session.state,
                &cx,
                session.backend.as_ref(),
                true,
                r.change.read_parallelism,
            )
            .await?;
            print!("{}", shown(&v.redactor, &plan::render(&plan)));
            if plan.has_changes()
                && !r.change.auto_approve
                && !confirm("Do you want to perform these actions?", "--auto-approve")?
            {
                return cancelled(session, Walking::Apply).await;
            }
            (plan, values)
        }
    };
    make_moves(&v, &mut session, &plan.moves).await?;
    if let Some((id, prop)) = apply::stale_sources(&v, &session.state, &values, &plan).first() {
        bail!("`{id}`: `{prop}` is no longer what the plan showed (its sources changed since); run `stackctl plan` again");
    }
    walk_and_commit(
        &v,
        session,
        cx,
        &plan,
        &values,
        r.change.parallelism,
        Walking::Apply,
    )
    .await
}

/// The plan's moves, made in the state (written with the walk's first
/// save), each object retagged with its new address.
async fn make_moves(v: &Validated, session: &mut Session, moves: &[plan::Moved]) -> Result<()> {
    for m in moves {
        let moved = session.state.move_record(&m.from, &m.to);
        moved.map_err(|e| anyhow::anyhow!("moving `{}`: {e}; nothing was moved", m.from))?;
        super::state::retag(&v.stack, session, &m.to).await?;
        println!("{}: moved to {}", m.from, m.to);
    }
    Ok(())
}

/// A saved plan applies only to the state and region it was made against.
fn check_saved(saved: &PlanFile, session: &Session, cx: &Ctx) -> Result<()> {
    let state = &session.state;
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
    Ok(())
}

/// Which of the two walks: they differ in what becomes of the outputs.
#[derive(Clone, Copy, PartialEq)]
enum Walking {
    Apply,
    Destroy,
}

impl Walking {
    fn name(self) -> &'static str {
        match self {
            Walking::Apply => "Apply",
            Walking::Destroy => "Destroy",
        }
    }
}

/// The user said no: nothing was changed, and the lock is let go.
async fn cancelled(session: Session, walking: Walking) -> Result<ExitCode> {
    println!("{} cancelled.", walking.name());
    session.release().await?;
    Ok(ExitCode::from(1))
}

/// Walks the plan, records the outputs, commits the state, tells the outcome.
async fn walk_and_commit(
    v: &Validated,
    mut session: Session,
    cx: Arc<Ctx>,
    plan: &Plan,
    values: &StackValues,
    parallelism: usize,
    walking: Walking,
) -> Result<ExitCode> {
    let changed = plan.has_changes();
    if changed {
        println!();
    }
    let started = std::time::Instant::now();
    let outcome = Walk {
        v,
        values,
        cx,
        file: session.backend.as_mut(),
        state: &mut session.state,
        parallelism,
    }
    .run(plan)
    .await?;
    let state = &mut session.state;
    match walking {
        Walking::Destroy if outcome.ok() => state.outputs.clear(),
        Walking::Destroy => {}
        Walking::Apply => {
            let outputs = apply::outputs(v, state, values, &plan.data);
            if !changed && state.outputs != outputs {
                // Outputs added or edited without any resource change still land in the state.
                state.outputs = outputs;
                state.sensitive_outputs = apply::sensitive_outputs(v, state);
            }
        }
    }
    let recorded = session.commit().await?;
    let secs = started.elapsed().as_secs_f64();
    finish(&outcome, plan, secs, walking.name())?;
    if walking == Walking::Apply && !recorded.outputs.is_empty() {
        println!("\nOutputs:\n");
        super::output::print_outputs(&recorded);
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

/// `stackctl destroy`: every resource the state records, dependents first.
pub fn destroy(a: ChangeArgs) -> Result<ExitCode> {
    let widths = Widths {
        writes: a.parallelism,
        reads: a.read_parallelism,
    };
    let auto_approve = a.auto_approve;
    let v = load(&a.file, &a.vars.pairs()?)?;
    let result = runtime()?.block_on(async {
        let mut session = Session::open(&v.stack, &a.file.backend_config, "destroy").await?;
        if session.state.resources.is_empty() && session.state.deposed.is_empty() {
            println!("Nothing to destroy: the state records no resources.");
            session.release().await?;
            return Ok(ExitCode::SUCCESS);
        }
        let cx = Arc::new(context(&v).await);
        session.pin(&cx).await?;
        // Only creates that were interrupted need a look in AWS: they may exist.
        let mut pending = session.state.clone();
        pending.resources.retain(|_, r| r.is_pending());
        let live: BTreeMap<String, Refreshed> = plan::refresh(&cx, &pending, widths.reads).await?;
        let plan = plan::destroy(&session.state, &live);
        print!("{}", shown(&v.redactor, &plan::render(&plan)));
        let question = "Do you really want to destroy all resources of this stack?";
        if !auto_approve && !confirm(question, "--auto-approve")? {
            return cancelled(session, Walking::Destroy).await;
        }
        println!();
        let values = stack_values(&v, &cx).await.unwrap_or_default();
        walk_and_commit(
            &v,
            session,
            cx,
            &plan,
            &values,
            widths.writes,
            Walking::Destroy,
        )
        .await
    });
    result.map_err(|e| masked(&v.redactor, e))
}
