//! `stackctl plan`, and the plan apply makes the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::{
    context, load, masked, runtime, shown, stack_values, FileArgs, PlanFile, Session, VarArgs,
};
use crate::check;
use crate::model::StackValues;
use crate::plan::{self, Plan};
use crate::providers::Ctx;
use crate::state::{Backend, State};
use crate::validate::Validated;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Save the plan to apply it later exactly as shown.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (format in docs/plan-json.md); the same as
    /// --format json.
    #[arg(long)]
    pub json: bool,
    /// text (coloured on a terminal unless NO_COLOR is set), json, or
    /// markdown (for a pull request comment, with the check findings).
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Read recorded resources from AWS first (--refresh=false to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    /// How many AWS reads run at once (AWS throttles beyond its rate
    /// limits; throttled reads back off and retry).
    #[arg(long, visible_alias = "parallelism", default_value_t = 32)]
    pub read_parallelism: usize,
}

pub fn run(r: PlanArgs) -> Result<ExitCode> {
    let format = if r.json { PlanFormat::Json } else { r.format };
    // Read once: a saved plan carries exactly the values this plan used.
    let vars = r.vars.pairs()?;
    let v = load(&r.file, &vars)?;
    let result = runtime()?.block_on(async {
        let mut session = Session::open(&v.stack, &r.file.backend_config, "plan").await?;
        let cx = context(&v).await;
        let (plan, _) = pinned_plan(
            &v,
            &mut session.state,
            &cx,
            session.backend.as_ref(),
            r.refresh,
            r.read_parallelism,
        )
        .await?;
        print_plan(&v, &cx, &plan, format)?;
        if let Some(out) = &r.out {
            save(&v, &cx, &plan, &vars, session.backend.as_ref(), out)?;
            if format != PlanFormat::Json {
                println!(
                    "\nSaved the plan to {}; apply it with `stackctl apply {}`.",
                    out.display(),
                    out.display()
                );
            }
        }
        session.release().await?;
        Ok(if r.detailed_exitcode && plan.has_changes() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    });
    result.map_err(|e| masked(&v.redactor, e))
}

fn print_plan(v: &Validated, cx: &Ctx, plan: &Plan, format: PlanFormat) -> Result<()> {
    match format {
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&plan::to_json(plan))?),
        PlanFormat::Markdown => {
            let report = check::check(v, Some(cx.region().as_str()), &[]);
            print!(
                "{}",
                plan::render_markdown(plan, &check::render_markdown(&report))
            );
        }
        PlanFormat::Text => print!("{}", shown(&v.redactor, &plan::render(plan))),
    }
    Ok(())
}

/// The plan with everything needed to apply exactly it: it holds every
/// value the apply needs, sensitive ones too, so it is private, and
/// encrypted like the state when a key is set.
fn save(
    v: &Validated,
    cx: &Ctx,
    plan: &Plan,
    vars: &[(String, String)],
    backend: &dyn Backend,
    out: &Path,
) -> Result<()> {
    let saved = PlanFile {
        plan: plan.clone(),
        stack_path: v.stack.path.clone(),
        stack_source: v.stack.source.clone(),
        env: v
            .stack
            .env
            .as_ref()
            .map(|e| (e.name.clone(), e.source.clone())),
        vars: vars.to_vec(),
        region: Some(cx.region()),
    };
    let body = crate::seal::seal(
        backend.keys(),
        &serde_json::to_vec_pretty(&saved)?,
        &out.display().to_string(),
        crate::state::PLAN_CONTEXT,
    )?;
    crate::state::local::write_private(out, &body)
        .with_context(|| format!("cannot write the plan to {}", out.display()))
}

/// The plan, made while STS says which account and region this run uses;
/// a state of another one is refused before anything changes.
pub(crate) async fn pinned_plan(
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
    let (state, moves) = plan::with_moves(v, state).map_err(anyhow::Error::msg)?;
    let state = &state;
    let refreshed = async {
        match refresh {
            true => plan::refresh(cx, state, reads).await,
            false => Ok(BTreeMap::new()),
        }
    };
    let values_and_data = async {
        let values = stack_values(v, cx).await?;
        let data = plan::read_data(cx, v, &values).await?;
        Ok::<_, anyhow::Error>((values, data))
    };
    let (values_and_data, live) = tokio::join!(values_and_data, refreshed);
    let (values, data) = values_and_data?;
    let live = live?;
    let mut plan = plan::make(v, state, &live, &data, &values);
    plan.moves = moves;
    if let Some(problem) = plan::blocked_replacements(&plan).first() {
        bail!("{problem}");
    }
    Ok((plan, values))
}

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Where to write the page.
    #[arg(long)]
    pub out: PathBuf,
    /// The plan to show: a file of `plan --json`, or a plan saved by `plan
    /// --out`. Without it the plan is made as `stackctl plan` makes it.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Log lines to simulate (as `stackctl simulate --events` takes them):
    /// the page shows the run's timeline.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Make no AWS call: no plan unless --plan is given, and the events go
    /// through the filters and alarms as written, no action run.
    #[arg(long)]
    pub offline: bool,
}

/// `stackctl review`: the page, written to `--out`.
pub fn review(a: ReviewArgs) -> Result<ExitCode> {
    let vars = a.vars.pairs()?;
    let v = load(&a.file, &vars)?;
    let region = crate::providers::effective_region(v.stack.region.as_deref());
    let report = check::check(&v, region.as_deref(), &[]);
    let events = match &a.events {
        Some(path) => Some(
            crate::sim::parse_events(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let given = a.plan.as_deref().map(plan_json).transpose()?;
    let (plan, timeline) = match (given, a.offline) {
        (Some(p), true) => (Ok(p), None),
        (None, true) => (Err("--offline".to_string()), None),
        (given, false) => {
            let made = runtime()?.block_on(live_review(&v, &a, given.is_none(), &events, &report));
            match made {
                Ok((made, timeline)) => (given.or(made).ok_or_else(String::new), timeline),
                Err(e) => (
                    given.ok_or_else(|| v.redactor.redact(&format!("{e:#}"))),
                    None,
                ),
            }
        }
    };
    let region_name = region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let timeline = match (timeline, &events) {
        (Some(t), _) => Some(t),
        (None, Some(events)) => {
            let state = State::new(&v.stack.name);
            Some(crate::review_page::Timeline {
                outcome: crate::sim::evaluate_offline(&v, &state, &region_name, events)?,
                series: crate::sim::series(&v, &state, &region_name, events)?,
            })
        }
        (None, None) => None,
    };
    let inputs = crate::review_page::Inputs {
        v: &v,
        report: &report,
        region,
        plan,
        timeline,
    };
    let html = crate::review_page::page(&inputs);
    std::fs::write(&a.out, html).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("Wrote the review page to {}.", a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// A plan given to `review`: `plan --json`'s output, or a saved plan.
fn plan_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_slice::<serde_json::Value>(&text) {
        Ok(v) if v.get("changes").is_some() => Ok(v),
        _ => Ok(plan::to_json(&super::apply::read_plan(path)?.plan)),
    }
}

/// The plan (when `make_plan`) and the simulation, against AWS: the state
/// locked and read as `plan` does.
async fn live_review(
    v: &Validated,
    a: &ReviewArgs,
    make_plan: bool,
    events: &Option<Vec<crate::sim::LogEvent>>,
    report: &check::Report,
) -> Result<(
    Option<serde_json::Value>,
    Option<crate::review_page::Timeline>,
)> {
    let mut session = Session::open(&v.stack, &a.file.backend_config, "review").await?;
    let cx = context(v).await;
    let made = match make_plan {
        true => {
            let backend = session.backend.as_ref();
            let (plan, _) = pinned_plan(v, &mut session.state, &cx, backend, true, 32).await?;
            Some(plan::to_json(&plan))
        }
        false => None,
    };
    let timeline = match events {
        Some(events) => {
            let options = crate::sim::Options { live: false };
            let state = &session.state;
            let outcome = crate::sim::run(v, state, &cx, report, events, options).await?;
            let series = crate::sim::series(v, state, &cx.region(), events)?;
            Some(crate::review_page::Timeline { outcome, series })
        }
        None => None,
    };
    session.release().await?;
    Ok((made, timeline))
}
