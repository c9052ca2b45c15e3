//! Executes a plan: a walk of the dependency graph that starts each step as
//! soon as the steps it needs have finished, at most `parallelism` at a time.
//!
//! Whatever fails, nothing is lost, made twice or taken over: the intent of a
//! create (with its idempotency token) is written, fsynced, before the call is
//! sent, and stays until this run or a later one has found what the call made
//! or proved it absent; a create first looks for the resource by its identity
//! and refuses to take over one this stack did not make; every other change
//! is written to the state as soon as AWS confirmed it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::config::expr;
use crate::events::Event;
use crate::model::{self, StackValues};
use crate::plan::{self, Action, Change, Plan};
use crate::providers::{self, Ctx, Found, Provider, ProviderError, Reach, Resource};
use crate::schema::{self, contains_unknown, Compare, Props, Schema};
use crate::state::{
    Backend, Deposed, Lease, Operation, Outcome as Ending, Rec, ResourceState, State, StateError,
    Unfinished, LEASE_AGE,
};
use crate::validate::Validated;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum StepKind {
    /// Deletes the recorded object (a removal, or a replacement that must
    /// free its identity first).
    Delete,
    /// Creates or updates.
    Apply,
    /// Deletes the objects a create-before-destroy replacement superseded.
    DeleteDeposed,
}

type Step = (StepKind, String);

#[derive(Debug, Default)]
pub struct Outcome {
    pub failed: Vec<(String, String)>,
    /// Not started: their dependencies failed, or the run was interrupted.
    pub skipped: Vec<String>,
    /// Started, and no longer waited for (a second interrupt): their calls
    /// may have been sent.
    pub abandoned: Vec<String>,
    pub interrupted: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && self.abandoned.is_empty()
            && !self.interrupted
    }
}

/// One step's AWS calls, ready to run on the runtime.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Done, ProviderError>> + Send>>;

/// What a finished AWS step reports back to the walk.
enum Done {
    Created {
        physical_id: String,
        attrs: Map<String, Value>,
        props: Props,
        /// Found by identity rather than made by this step's call.
        adopted: bool,
    },
    Updated {
        physical_id: String,
        attrs: Map<String, Value>,
        props: Props,
    },
    Deleted,
    DeposedDeleted(Vec<String>),
}

/// The order constraints between steps: who must finish before whom.
fn build_steps(plan: &Plan, state: &State) -> (Vec<Step>, HashMap<Step, HashSet<Step>>) {
    let steps = steps_of(plan);
    let has: HashSet<&Step> = steps.iter().collect();
    let changes: HashMap<&str, &Change> = plan
        .changes
        .iter()
        .filter(|c| c.deposed.is_none())
        .map(|c| (c.id.as_str(), c))
        .collect();
    let users = |id: &str| users_of(state, &changes, id);
    let needs = steps.iter().map(|step| {
        let before = before_step(step, &changes, &users).into_iter();
        let before = before.filter(|other| has.contains(other) && other != step);
        (step.clone(), before.collect())
    });
    let needs = needs.collect();
    (steps, needs)
}

/// The steps of a plan: a replacement is two (create then delete the deposed
/// object, or delete then create), a no-op none.
fn steps_of(plan: &Plan) -> Vec<Step> {
    let mut steps = Vec::new();
    for c in &plan.changes {
        let id = c.id.clone();
        match (c.action, c.create_first, c.deposed.is_some()) {
            (Action::Delete, _, true) => steps.push((StepKind::DeleteDeposed, id)),
            (Action::Delete, _, false) => steps.push((StepKind::Delete, id)),
            (Action::Replace, true, _) => {
                steps.push((StepKind::Apply, id.clone()));
                steps.push((StepKind::DeleteDeposed, id));
            }
            (Action::Replace, false, _) => {
                steps.push((StepKind::Delete, id.clone()));
                steps.push((StepKind::Apply, id));
            }
            (Action::Create | Action::Update, _, _) => steps.push((StepKind::Apply, id)),
            (Action::NoOp, _, _) => {}
        }
    }
    steps.dedup();
    steps
}

/// Who used a resource: as recorded, and as the plan will have it.
fn users_of(state: &State, changes: &HashMap<&str, &Change>, id: &str) -> Vec<String> {
    let recorded = state.resources.iter();
    let recorded = recorded.filter(|(_, r)| r.depends_on.iter().any(|d| d == id));
    let planned = changes.values();
    let planned = planned.filter(|c| c.depends_on.iter().any(|d| d == id));
    let mut all: Vec<String> = recorded
        .map(|(o, _)| o.clone())
        .chain(planned.map(|c| c.id.clone()))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The steps that must finish before this one, if the plan has them.
fn before_step(
    (kind, id): &Step,
    changes: &HashMap<&str, &Change>,
    users_of: &dyn Fn(&str) -> Vec<String>,
) -> Vec<Step> {
    let mut before = Vec::new();
    match kind {
        StepKind::Apply => {
            before.push((StepKind::Delete, id.clone())); // a replacement that frees its identity first
            let deps = changes
                .get(id.as_str())
                .map_or(&[][..], |c| &c.depends_on[..]);
            before.extend(deps.iter().map(|d| (StepKind::Apply, d.clone())));
        }
        StepKind::Delete => {
            // Whatever used this resource goes first: deleted itself, or
            // updated so that it no longer refers to it.
            for other in users_of(id) {
                before.push((StepKind::Delete, other.clone()));
                before.push((StepKind::DeleteDeposed, other.clone()));
                if changes
                    .get(other.as_str())
                    .is_some_and(|c| !c.depends_on.contains(id))
                {
                    before.push((StepKind::Apply, other));
                }
            }
        }
        StepKind::DeleteDeposed => {
            // The successor exists, and everything that used the old object
            // has moved to it or gone.
            before.push((StepKind::Apply, id.clone()));
            for other in users_of(id) {
                before.push((StepKind::Apply, other.clone()));
                before.push((StepKind::Delete, other.clone()));
                before.push((StepKind::DeleteDeposed, other));
            }
        }
    }
    before
}

/// For each step, the steps that wait on it.
fn dependents_of(needs: &HashMap<Step, HashSet<Step>>) -> HashMap<Step, Vec<Step>> {
    let mut dependents: HashMap<Step, Vec<Step>> = HashMap::new();
    for (step, ns) in needs {
        for n in ns {
            dependents.entry(n.clone()).or_default().push(step.clone());
        }
    }
    dependents
}

/// The length of the longest chain of steps a step heads, then its place in
/// the plan (earlier first).
/// What stops a run before its outcome can be told.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state could not be written, or the lock was lost.
    #[error(transparent)]
    State(#[from] StateError),
    /// A step's task ended without an answer (a defect in stackctl).
    #[error("a step of the run failed unexpectedly: {0}")]
    Crashed(String),
}

/// A step's result, and the moment it was sent.
type Sent = (Result<Done, ProviderError>, Instant);

/// How many intents a finished state write holds.
/// How many of the run's intents the finished state writes hold, and a wake-up
/// for the steps waiting on them. (Not a `watch` channel: it wakes its
/// waiters in a random order, and a run's interleaving must follow from its
/// inputs alone for the simulation to replay a seed.)
#[derive(Default)]
struct Durable {
    written: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicBool,
    grew: tokio::sync::Notify,
}

impl Durable {
    fn advance(&self, written: u64) {
        self.written
            .fetch_max(written, std::sync::atomic::Ordering::SeqCst);
        self.grew.notify_waiters();
    }

    fn fail(&self) {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.grew.notify_waiters();
    }

    /// Whether the writes came to hold `intent`; false once one failed.
    async fn reached(&self, intent: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let grew = self.grew.notified();
            tokio::pin!(grew);
            grew.as_mut().enable();
            if self.written.load(SeqCst) >= intent {
                return true;
            }
            if self.failed.load(SeqCst) {
                return false;
            }
            grew.await;
        }
    }
}

/// Where a run's steps are: what each needs, which are ready, which run.
struct Schedule {
    changes: HashMap<String, Change>,
    needs: HashMap<Step, HashSet<Step>>,
    dependents: HashMap<Step, Vec<Step>>,
    priority: HashMap<Step, Priority>,
    ready: Vec<Step>,
    running: JoinSet<Sent>,
    in_flight: HashMap<tokio::task::Id, Step>,
    /// Creates next in line whose intents are recorded, waiting for a slot.
    prepared: VecDeque<(Step, Job, Event)>,
    outcome: Outcome,
}

impl Schedule {
    fn new(plan: &Plan, state: &State) -> Schedule {
        let changes = plan.changes.iter().filter(|c| c.deposed.is_none());
        let changes = changes.map(|c| (c.id.clone(), c.clone())).collect();
        let (steps, needs) = build_steps(plan, state);
        let dependents = dependents_of(&needs);
        let ready = steps
            .iter()
            .filter(|s| needs[*s].is_empty())
            .cloned()
            .collect();
        Schedule {
            changes,
            priority: priorities(&steps, &dependents),
            needs,
            dependents,
            ready,
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            prepared: VecDeque::new(),
            outcome: Outcome::default(),
        }
    }
}

/// What a step waits for before its first change to AWS: the state write
/// holding its intent (when it recorded one) and a confirmed lease.
struct Gate {
    intent: Option<u64>,
    durable: Arc<Durable>,
    lease: Option<Arc<dyn Lease>>,
}

impl Gate {
    async fn open(self) -> Result<(), ProviderError> {
        if let Some(intent) = self.intent {
            if !self.durable.reached(intent).await {
                return Err(ProviderError::withheld(
                    "the state could not be written: not sent",
                ));
            }
        }
        if let Some(lease) = self.lease {
            if let Err(e) = lease.confirm(LEASE_AGE).await {
                return Err(ProviderError::withheld(format!("not sent: {e}")));
            }
        }
        Ok(())
    }
}

/// A step's job, with the moment it started.
async fn timed(job: Job) -> Sent {
    let started = Instant::now();
    (job.await, started)
}

/// The dependents of a finished step that now need nothing more.
fn released(
    step: &Step,
    dependents: &HashMap<Step, Vec<Step>>,
    needs: &mut HashMap<Step, HashSet<Step>>,
    outcome: &Outcome,
) -> Vec<Step> {
    let mut ready = Vec::new();
    for d in dependents.get(step).into_iter().flatten() {
        if let Some(ns) = needs.get_mut(d) {
            ns.remove(step);
            if ns.is_empty() && !outcome.skipped.contains(&d.1) {
                ready.push(d.clone());
            }
        }
    }
    ready
}

type Priority = (usize, Reverse<usize>);

/// Which ready step starts first: the head of the longest chain of steps that
/// wait on it, then the one earlier in the plan (dependency order, then file
/// order). When more steps are ready than may run, starting the longest chains
/// first shortens the whole walk.
fn priorities(steps: &[Step], dependents: &HashMap<Step, Vec<Step>>) -> HashMap<Step, Priority> {
    fn chain(
        step: &Step,
        dependents: &HashMap<Step, Vec<Step>>,
        memo: &mut HashMap<Step, usize>,
    ) -> usize {
        if let Some(&n) = memo.get(step) {
            return n;
        }
        let below = dependents.get(step).map_or(0, |ds| {
            ds.iter()
                .map(|d| chain(d, dependents, memo))
                .max()
                .unwrap_or(0)
        });
        memo.insert(step.clone(), below + 1);
        below + 1
    }
    let mut memo = HashMap::new();
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            (
                step.clone(),
                (chain(step, dependents, &mut memo), Reverse(i)),
            )
        })
        .collect()
}

/// Resolves a reference against what the state holds now.
pub(crate) fn known_from_state<'a>(
    v: &'a Validated,
    state: &'a State,
    data: &'a BTreeMap<String, Map<String, Value>>,
) -> impl Fn(&str, &str) -> Option<Value> + 'a {
    move |dep: &str, attr: &str| {
        if let Some(attrs) = data.get(dep) {
            return attrs.get(attr).cloned();
        }
        let rec = state.resources.get(dep).filter(|r| !r.is_pending())?;
        if v.schema(dep).attr(attr).is_some() {
            rec.attrs.get(attr).cloned()
        } else {
            rec.props.get(attr).cloned()
        }
    }
}

pub struct Walk<'a> {
    pub v: &'a Validated,
    pub values: &'a StackValues,
    pub cx: Arc<Ctx>,
    pub file: &'a mut dyn Backend,
    pub state: &'a mut State,
    pub parallelism: usize,
}

/// The record a create leaves while its call is in flight.
struct Intent {
    props: Props,
    token: String,
    /// An earlier run's intent: what its call made may be found and adopted.
    inherited: bool,
    /// What this create replaces: never what it made.
    replacing: Vec<String>,
}

impl Walk<'_> {
    /// Applies the plan in dependency order. The state's writes form a
    /// pipeline: one write at a time, each carrying every change made since
    /// the last; a create waits only for the write of its own intent, so the
    /// walk never stands still while the backend (a remote bucket) answers.
    pub async fn run(self, plan: &Plan) -> Result<Outcome, ApplyError> {
        let Walk {
            v,
            values,
            cx,
            file,
            state,
            parallelism,
        } = self;
        let mut steps = Steps {
            v,
            values,
            cx,
            state,
            parallelism,
            intents: 0,
            lease: file.lease(),
            durable: Arc::default(),
            announced: None,
        };
        steps.adopt(plan);
        file.save(steps.state).await?;
        let _gate = match file.lease() {
            Some(lease) => Some(LeaseGate::open(&steps.cx, lease).await?),
            None => None,
        };
        steps.walk(plan, file).await
    }
}

/// While a run holds a lock another run can force away, every AWS call asks
/// whether the lock was confirmed within `LEASE_AGE` (a task confirms it
/// every second): a run that stalled, its lock forced away meanwhile, sends
/// nothing more, not even the next call of a step it was in.
struct LeaseGate {
    cx: Arc<Ctx>,
    refresher: tokio::task::JoinHandle<()>,
}

impl LeaseGate {
    async fn open(cx: &Arc<Ctx>, lease: Arc<dyn Lease>) -> Result<LeaseGate, StateError> {
        lease.confirm(std::time::Duration::ZERO).await?;
        let asked = lease.clone();
        cx.set_gate(Some(Arc::new(move || match asked.fresh(LEASE_AGE) {
            true => Ok(()),
            false if asked.is_lost() => Err("not sent: the lock on the state is no longer this run's".into()),
            false => Err(format!("not sent: this run's lock on the state was not confirmed in the last {} s (it may have been forced away while the run stalled)", LEASE_AGE.as_secs())),
        })));
        let refresher = tokio::spawn(async move {
            while !lease.is_lost() {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let _ = lease.confirm(std::time::Duration::from_millis(900)).await;
            }
        });
        Ok(LeaseGate {
            cx: cx.clone(),
            refresher,
        })
    }
}

impl Drop for LeaseGate {
    fn drop(&mut self) {
        self.refresher.abort();
        self.cx.set_gate(None);
    }
}

/// A state write in flight: it owns the backend until it is done and gives
/// it back with the generation of changes it made durable.
type Write<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (&'a mut dyn Backend, u64, u64, Result<(), StateError>)>
            + Send
            + 'a,
    >,
>;

fn write<'a>(file: &'a mut dyn Backend, mut snapshot: State, generation: u64) -> Write<'a> {
    Box::pin(async move {
        let written = file.save(&mut snapshot).await;
        (file, generation, snapshot.serial, written)
    })
}

/// The walk's state and the steps it takes.
struct Steps<'a> {
    v: &'a Validated,
    values: &'a StackValues,
    cx: Arc<Ctx>,
    state: &'a mut State,
    parallelism: usize,
    /// How many create intents were recorded: each must be durable before
    /// its call is sent.
    intents: u64,
    /// A lock another run can force away: confirmed before each step's calls.
    lease: Option<Arc<dyn Lease>>,
    /// The pipeline of state writes: announces how many of the intents a
    /// finished write holds.
    durable: Arc<Durable>,
    /// The event of the step last prepared.
    announced: Option<Event>,
}

impl<'a> Steps<'a> {
    /// The gate of a step just prepared: `recorded` when it recorded an
    /// intent (the last one so far), which must be durable before it acts.
    fn gate(&self, recorded: bool) -> Gate {
        Gate {
            intent: recorded.then_some(self.intents),
            durable: self.durable.clone(),
            lease: self.lease.clone(),
        }
    }

    /// Announces the step being prepared (emitted when it is sent).
    fn started(&mut self, id: &str, verb: &str, detail: Option<String>) {
        self.announced = Some(Event::Started {
            id: id.to_string(),
            verb: verb.to_string(),
            detail,
        });
    }

    fn finished(&self, id: &str, verb: &str, physical_id: Option<String>, seconds: f64) {
        self.cx.events.emit(Event::Finished {
            id: id.to_string(),
            verb: verb.to_string(),
            physical_id,
            seconds,
        });
    }

    async fn walk(mut self, plan: &Plan, file: &'a mut dyn Backend) -> Result<Outcome, ApplyError> {
        let mut run = Schedule::new(plan, self.state);
        let mut signals = Signals::new();
        let mut idle: Option<&'a mut dyn Backend> = Some(file);
        let mut writing: Option<Write<'a>> = None;
        let mut written = 0u64;
        loop {
            self.launch(&mut run, plan);
            if writing.is_none() && written < self.intents {
                if let Some(file) = idle.take() {
                    writing = Some(write(file, self.state.clone(), self.intents));
                }
            }
            if run.running.is_empty() && writing.is_none() {
                break;
            }
            // In a fixed order, not tokio's random one, so that a run's
            // interleaving follows from its inputs alone (the simulation
            // replays a seed exactly): an interrupt first, then a finished
            // write (it releases creates), then a finished step.
            tokio::select! {
                biased;
                _ = signals.next() => self.interrupt(&mut run),
                done = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    let (file, generation, serial, result) = done;
                    writing = None;
                    idle = Some(file);
                    if let Err(e) = result {
                        self.durable.fail();
                        return Err(e.into());
                    }
                    written = generation;
                    self.state.serial = self.state.serial.max(serial);
                    self.durable.advance(generation);
                }
                joined = run.running.join_next_with_id(), if !run.running.is_empty() => {
                    if let Some(joined) = joined {
                        self.joined(&mut run, joined)?;
                    }
                }
            }
        }
        if run.outcome.interrupted || self.lease.as_ref().is_some_and(|l| l.is_lost()) {
            let ready = std::mem::take(&mut run.ready);
            run.outcome.skipped.extend(ready.into_iter().map(|s| s.1));
            // A prepared create was never sent: its intent goes.
            for ((_, id), _, _) in run.prepared.drain(..) {
                self.state.resources.remove(&id);
                run.outcome.skipped.push(id);
            }
        }
        let file = idle.expect("no write in flight after the loop");
        self.conclude(run.outcome, plan, file).await
    }

    /// Starts the ready steps of highest priority, as many as may run. The
    /// creates of new resources next in line record their intents at once, so
    /// the state write under way carries them and each is durable, or nearly,
    /// when a slot frees.
    fn launch(&mut self, run: &mut Schedule, plan: &Plan) {
        // `pop` below takes the last: the highest priority.
        run.ready.sort_by_key(|s| run.priority.get(s).copied());
        if run.outcome.interrupted || self.lease.as_ref().is_some_and(|l| l.is_lost()) {
            return;
        }
        let slots = self.parallelism.max(1);
        while run.running.len() < slots {
            let (step, job, started) = match run.prepared.pop_front() {
                Some(prepared) => prepared,
                None => {
                    let Some(step) = run.ready.pop() else { break };
                    let Some((job, started)) = self.prepare(run, &step, plan) else {
                        continue;
                    };
                    (step, job, started)
                }
            };
            self.cx.events.emit(started);
            run.in_flight
                .insert(run.running.spawn(timed(job)).id(), step);
        }
        while run.prepared.len() < slots
            && run.ready.last().is_some_and(|s| self.creates_anew(run, s))
        {
            let step = run.ready.pop().expect("checked");
            if let Some((job, started)) = self.prepare(run, &step, plan) {
                run.prepared.push_back((step, job, started));
            }
        }
    }

    /// A create of a resource the state has no record of.
    fn creates_anew(&self, run: &Schedule, step: &Step) -> bool {
        step.0 == StepKind::Apply
            && run
                .changes
                .get(&step.1)
                .is_some_and(|c| c.action == Action::Create)
            && self.state.record(&step.1).is_none()
    }

    /// A step's job and the event that announces it, or its failure recorded.
    fn prepare(&mut self, run: &mut Schedule, step: &Step, plan: &Plan) -> Option<(Job, Event)> {
        let change = run.changes.get(&step.1);
        match self.start(step, change, plan) {
            Ok(job) => Some((
                job,
                self.announced.take().expect("every step announces itself"),
            )),
            Err(e) => {
                let (outcome, needs) = (&mut run.outcome, &mut run.needs);
                self.fail(step, change, false, e, outcome, &run.dependents, needs);
                None
            }
        }
    }

    /// Takes in a finished step: records it and releases its dependents, or
    /// fails it and skips theirs.
    fn joined(
        &mut self,
        run: &mut Schedule,
        joined: Result<(tokio::task::Id, Sent), tokio::task::JoinError>,
    ) -> Result<(), ApplyError> {
        let (task, (result, started)) = match joined {
            Ok(finished) => finished,
            Err(e) if e.is_cancelled() => {
                if let Some(step) = run.in_flight.remove(&e.id()) {
                    run.outcome.abandoned.push(step.1);
                }
                return Ok(());
            }
            Err(e) => return Err(ApplyError::Crashed(e.to_string())),
        };
        let Some(step) = run.in_flight.remove(&task) else {
            return Ok(());
        };
        let change = run.changes.get(&step.1);
        match result {
            Ok(done) => {
                self.record(&step, change, done, started.elapsed().as_secs_f64());
                let released = released(&step, &run.dependents, &mut run.needs, &run.outcome);
                run.ready.extend(released);
            }
            Err(e) => {
                let (outcome, needs) = (&mut run.outcome, &mut run.needs);
                self.fail(&step, change, true, e, outcome, &run.dependents, needs);
            }
        }
        Ok(())
    }

    /// The first interrupt lets the steps in flight finish; the second
    /// abandons them.
    fn interrupt(&mut self, run: &mut Schedule) {
        let in_flight = run.running.len();
        if run.outcome.interrupted {
            self.cx.events.emit(Event::Aborting { in_flight });
            run.running.abort_all();
        } else {
            run.outcome.interrupted = true;
            self.cx.events.emit(Event::Interrupted { in_flight });
        }
    }

    /// Records the outputs of a run that succeeded, and saves everything the
    /// run did since the last write of an intent.
    async fn conclude(
        &mut self,
        mut outcome: Outcome,
        plan: &Plan,
        file: &mut dyn Backend,
    ) -> Result<Outcome, ApplyError> {
        outcome.skipped.sort();
        outcome.skipped.dedup();
        if outcome.ok() {
            self.state.outputs = outputs(self.v, self.state, self.values, &plan.data);
            self.state.sensitive_outputs = sensitive_outputs(self.v, self.state);
        }
        file.save(self.state).await?;
        Ok(outcome)
    }

    /// Takes what the refresh read into the state: attributes that changed
    /// (an address after a restart), and the physical ids of resources an
    /// interrupted run created, so that whatever the plan does next (keep,
    /// update, replace, destroy) acts on them.
    fn adopt(&mut self, plan: &Plan) {
        for c in plan.changes.iter().filter(|c| c.deposed.is_none()) {
            let Some(rec) = self.state.resources.get_mut(&c.id) else {
                continue;
            };
            if rec.is_pending() && c.physical_id.is_some() && c.action != Action::Create {
                rec.physical_id = c.physical_id.clone();
                rec.create_token = None;
            }
            rec.attrs.extend(c.refreshed_attrs.clone());
            // A change of stackctl's own that did not finish: what AWS took of
            // an update is what was last applied; a delete that did not happen
            // leaves the object as it is.
            if rec.is_pending() || c.physical_id.is_none() {
                continue;
            }
            if let Some(u) = rec.unfinished.take() {
                let (Some(sent), Some(now), Some(p)) = (
                    u.props,
                    c.before.as_ref(),
                    providers::lookup(&rec.type_name),
                ) else {
                    continue;
                };
                for (k, v) in sent {
                    let compare = p.schema().prop(&k).map_or(Compare::Exact, |p| p.compare);
                    if now
                        .get(&k)
                        .is_some_and(|n| schema::equivalent(compare, n, &v))
                    {
                        rec.props.insert(k, v);
                    }
                }
            }
        }
    }

    /// Prepares one step: resolves its properties and, for a create, records the
    /// intent in the state (saved by the caller before the call starts).
    fn start(
        &mut self,
        step: &Step,
        change: Option<&Change>,
        plan: &Plan,
    ) -> Result<Job, ProviderError> {
        let id = step.1.clone();
        match step.0 {
            StepKind::Delete => self.start_delete(id),
            StepKind::DeleteDeposed => self.start_delete_deposed(id),
            StepKind::Apply => {
                let change = change.ok_or_else(|| {
                    ProviderError::refused(format!("no change planned for `{id}`"))
                })?;
                self.start_apply(change, &plan.data)
            }
        }
    }

    fn provider(&self, type_name: &str) -> Result<&'static dyn Provider, ProviderError> {
        self.cx
            .provider(type_name)
            .ok_or_else(|| ProviderError::refused(format!("unknown type `{type_name}`")))
    }

    fn start_delete(&mut self, id: String) -> Result<Job, ProviderError> {
        let rec = self
            .state
            .resources
            .get(&id)
            .cloned()
            .ok_or_else(|| ProviderError::refused(format!("`{id}` is not in the state")))?;
        let provider = self.provider(&rec.type_name)?;
        let cx = self.cx.clone();
        let recorded = rec.physical_id.is_some() && self.in_flight(&id, Operation::Delete, None);
        let gate = self.gate(recorded);
        self.started(&id, "destroying", None);
        Ok(Box::pin(async move {
            gate.open().await?;
            if let Some(pid) = &rec.physical_id {
                provider.delete(&cx, pid, &rec.props).await?;
            }
            Ok(Done::Deleted)
        }))
    }

    /// Records a change of stackctl's own before its call is sent (the call
    /// waits for the write): a run after a crash tells it from drift.
    /// Returns whether there was a record to mark.
    fn in_flight(&mut self, id: &str, operation: Operation, props: Option<Props>) -> bool {
        let Some(rec) = self.state.resources.get_mut(id) else {
            return false;
        };
        rec.unfinished = Some(Unfinished {
            operation,
            outcome: Ending::InFlight,
            props,
        });
        self.intents += 1;
        true
    }

    fn start_delete_deposed(&mut self, id: String) -> Result<Job, ProviderError> {
        let deposed: Vec<ResourceState> = self
            .state
            .deposed
            .iter()
            .filter(|d| d.id == id)
            .map(|d| d.record.clone())
            .collect();
        let cx = self.cx.clone();
        let gate = self.gate(false);
        self.started(&id, "destroying the object it replaced", None);
        Ok(Box::pin(async move {
            gate.open().await?;
            let mut gone = Vec::new();
            for rec in deposed {
                let provider = cx.provider(&rec.type_name).ok_or_else(|| {
                    ProviderError::refused(format!("unknown type `{}`", rec.type_name))
                })?;
                if let Some(pid) = &rec.physical_id {
                    provider.delete(&cx, pid, &rec.props).await?;
                    gone.push(pid.clone());
                }
            }
            Ok(Done::DeposedDeleted(gone))
        }))
    }

    fn start_apply(
        &mut self,
        change: &Change,
        data: &BTreeMap<String, Map<String, Value>>,
    ) -> Result<Job, ProviderError> {
        let id = change.id.clone();
        let provider = self.provider(&change.type_name)?;
        let schema = provider.schema();
        let mut props = model::resolve_props(
            self.v,
            &id,
            self.values,
            &known_from_state(self.v, self.state, data),
        );
        plan::keep_derived(schema, &mut props, self.state.record(&id));
        if change.action == Action::Replace {
            plan::regenerate(schema, &mut props);
        }
        // Computed values (a code hash, a generated name) become known in the
        // step itself.
        let settles = |name: &str| {
            schema
                .prop(name)
                .is_some_and(|p| p.computed || p.derived_from.is_some())
        };
        if let Some((name, _)) = props
            .iter()
            .find(|(k, v)| contains_unknown(v) && !settles(k))
        {
            return Err(ProviderError::refused(format!(
                "property `{name}` is still unknown after its dependencies were applied"
            )));
        }
        if let Some(name) = differs_from_plan(schema, change, &props) {
            return Err(ProviderError::refused(format!(
                "`{name}` is no longer what the plan showed (its sources or inputs changed since); run `stackctl plan` again"
            )));
        }
        let existing = self.state.record(&id).cloned();
        let create = matches!(change.action, Action::Create | Action::Replace)
            || existing.as_ref().is_none_or(|r| r.is_pending());
        if !create {
            return Ok(self.start_update(change, provider, props, existing));
        }
        let cx = self.cx.clone();
        let intent = self.record_intent(change, existing, &props);
        self.intents += 1;
        let gate = self.gate(true);
        self.started(&id, "creating", None);
        Ok(Box::pin(async move {
            create_or_adopt(provider, &cx, &id, props, intent, gate).await
        }))
    }

    /// An update in place of what `existing` records.
    fn start_update(
        &mut self,
        change: &Change,
        provider: &'static dyn Provider,
        props: Props,
        existing: Option<ResourceState>,
    ) -> Job {
        let (id, cx) = (change.id.clone(), self.cx.clone());
        let physical_id = existing.and_then(|r| r.physical_id).unwrap_or_default();
        let before = change.before.clone().unwrap_or_default();
        let (changed, _) = plan::diff(provider.schema(), &props, &before);
        let mut sent = props.clone();
        sent.retain(|_, v| !contains_unknown(v));
        let recorded = self.in_flight(&id, Operation::Update, Some(sent));
        let gate = self.gate(recorded);
        self.started(&id, "updating", Some(changed.join(", ")));
        Box::pin(async move {
            gate.open().await?;
            let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
            let r = Resource {
                logical_id: &id,
                props: &props,
                token: "",
                replacing: &[],
            };
            let u = providers::Update {
                id: &physical_id,
                old: &before,
                r: &r,
                changed: &changed,
            };
            let attrs = providers::update(provider, &cx, &u).await?;
            Ok(Done::Updated {
                physical_id,
                attrs,
                props,
            })
        })
    }

    /// Writes the intent of a create into the state: the properties, and the
    /// token every retry of this create (in this run or a later one) uses. A
    /// replacement created first moves the old object aside as deposed.
    fn record_intent(
        &mut self,
        change: &Change,
        existing: Option<ResourceState>,
        props: &Props,
    ) -> Intent {
        let id = &change.id;
        let inherited = existing.as_ref().filter(|r| r.is_pending());
        let token = inherited
            .and_then(|r| r.create_token.clone())
            .unwrap_or_else(|| self.state.new_create_token(id));
        let inherited = inherited.is_some();
        if let Some(old) = existing.filter(|r| !r.is_pending() && change.create_first) {
            self.state.deposed.push(Deposed {
                id: id.clone(),
                record: old,
            });
        }
        let intent = Intent {
            props: props.clone(),
            token: token.clone(),
            inherited,
            replacing: self.state.deposed_ids(id),
        };
        let mut recorded = props.clone();
        recorded.retain(|_, v| !contains_unknown(v));
        self.state.resources.insert(
            id.clone(),
            Rec::from(ResourceState {
                type_name: change.type_name.clone(),
                physical_id: None,
                props: recorded,
                attrs: Map::new(),
                depends_on: change.depends_on.clone(),
                create_token: Some(token),
                sensitive: change.sensitive.clone(),
                unfinished: None,
            }),
        );
        intent
    }

    fn record(&mut self, step: &Step, change: Option<&Change>, done: Done, elapsed: f64) {
        let id = &step.1;
        match done {
            Done::Deleted => {
                self.state.resources.remove(id);
                self.finished(id, "destroyed", None, elapsed);
            }
            Done::DeposedDeleted(gone) => {
                self.state.deposed.retain(|d| {
                    !(d.id == *id
                        && d.record
                            .physical_id
                            .as_ref()
                            .is_some_and(|p| gone.contains(p)))
                });
                self.finished(
                    id,
                    "destroyed the object it replaced",
                    Some(gone.join(", ")),
                    elapsed,
                );
            }
            Done::Created {
                physical_id,
                attrs,
                props,
                adopted,
            } => {
                let verb = if adopted {
                    "found and adopted"
                } else {
                    "created"
                };
                self.finished(id, verb, Some(physical_id.clone()), elapsed);
                self.set_record(id, change, physical_id, props, attrs);
            }
            Done::Updated {
                physical_id,
                attrs,
                props,
            } => {
                self.finished(id, "updated", Some(physical_id.clone()), elapsed);
                self.set_record(id, change, physical_id, props, attrs);
            }
        }
    }

    fn set_record(
        &mut self,
        id: &str,
        change: Option<&Change>,
        physical_id: String,
        props: Props,
        mut attrs: Map<String, Value>,
    ) {
        let type_name = change.map(|c| c.type_name.clone()).unwrap_or_default();
        let props = settle_computed(&type_name, props, &mut attrs, &self.cx.stack_dir);
        let rec = self
            .state
            .resources
            .entry(id.to_string())
            .or_insert_with(|| {
                Rec::from(ResourceState {
                    type_name: type_name.clone(),
                    physical_id: None,
                    props: Props::new(),
                    attrs: Map::new(),
                    depends_on: Vec::new(),
                    create_token: None,
                    sensitive: Vec::new(),
                    unfinished: None,
                })
            });
        rec.physical_id = Some(physical_id);
        rec.props = props;
        rec.attrs.extend(attrs);
        rec.create_token = None;
        rec.unfinished = None;
        if let Some(c) = change {
            rec.depends_on = c.depends_on.clone();
            rec.sensitive = c.sensitive.clone();
        }
    }

    /// Records a failed step. `ran` says whether its job ran (a step can also
    /// fail while being prepared, before any intent of its own was written).
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        step: &Step,
        change: Option<&Change>,
        ran: bool,
        err: ProviderError,
        outcome: &mut Outcome,
        dependents: &HashMap<Step, Vec<Step>>,
        needs: &mut HashMap<Step, HashSet<Step>>,
    ) {
        let id = &step.1;
        let type_name = self.type_of(id, change);
        let pending = self.state.resources.get(id).is_some_and(|r| r.is_pending());
        let verb = match (step.0, change.map(|c| c.action)) {
            (StepKind::Delete | StepKind::DeleteDeposed, _) => "destroying",
            (StepKind::Apply, Some(Action::Update)) if !pending => "updating",
            (StepKind::Apply, _) => "creating",
        };
        if ran && !pending {
            self.keep_unfinished(id, &err);
        }
        let note = match step.0 == StepKind::Apply && pending && ran {
            true => self.keep_create_intent(id, &err),
            false => String::new(),
        };
        // AWS's messages can quote what was sent: masked like everything printed.
        let err = self.v.redactor.redact(&err.to_string());
        self.cx.events.emit(Event::Failed {
            id: id.clone(),
            message: format!("error {verb} {type_name}: {err}{note}"),
        });
        let message = format!("{verb} `{id}` ({type_name}): {err}{note}");
        outcome.failed.push((id.clone(), message));
        skip_dependents(step, dependents, needs, outcome);
    }

    /// The type of what a step acts on: planned, recorded or deposed.
    fn type_of(&self, id: &str, change: Option<&Change>) -> String {
        let deposed = || self.state.deposed.iter().find(|d| d.id == *id);
        change
            .map(|c| c.type_name.clone())
            .or_else(|| self.state.resources.get(id).map(|r| r.type_name.clone()))
            .or_else(|| deposed().map(|d| d.record.type_name.clone()))
            .unwrap_or_default()
    }

    /// After a failed update or delete: what AWS may have done to the object.
    fn keep_unfinished(&mut self, id: &str, err: &ProviderError) {
        if let Some(rec) = self.state.resources.get_mut(id) {
            rec.unfinished = match err.reach {
                Reach::Unknown => rec.unfinished.take().map(|u| Unfinished {
                    outcome: Ending::MaybeSent(err.message.clone()),
                    ..u
                }),
                Reach::NotSent | Reach::Refused => None,
            };
        }
    }

    /// After a failed create: records what it made, or drops the intent when
    /// nothing reached AWS, or keeps it for the next run to look for. Returns
    /// what to add to the error.
    fn keep_create_intent(&mut self, id: &str, err: &ProviderError) -> String {
        if let Some(pid) = err.created.clone() {
            // The resource exists; a later step of its create failed.
            if let Some(rec) = self.state.resources.get_mut(id) {
                rec.physical_id = Some(pid.clone());
                rec.create_token = None;
            }
            return format!(" ({pid} was created and is recorded; the next apply finishes it)");
        }
        if err.reach == Reach::NotSent {
            // The intent goes, and an object moved aside for a replacement
            // is the live one again.
            self.state.resources.remove(id);
            if let Some(pos) = self.state.deposed.iter().rposition(|d| d.id == *id) {
                let d = self.state.deposed.remove(pos);
                self.state.resources.insert(d.id, d.record.into());
            }
            return String::new();
        }
        if let Some(rec) = self.state.resources.get_mut(id) {
            rec.unfinished = Some(Unfinished {
                operation: Operation::Create,
                outcome: match err.reach {
                    Reach::Refused => Ending::Refused(err.message.clone()),
                    _ => Ending::MaybeSent(err.message.clone()),
                },
                props: None,
            });
        }
        " (its intent stays recorded: the next run looks for what the call may have made before creating anything)".into()
    }
}

/// Skips everything that waits, directly or not, on a failed step.
fn skip_dependents(
    step: &Step,
    dependents: &HashMap<Step, Vec<Step>>,
    needs: &mut HashMap<Step, HashSet<Step>>,
    outcome: &mut Outcome,
) {
    let mut stack = vec![step.clone()];
    while let Some(s) = stack.pop() {
        for d in dependents.get(&s).into_iter().flatten() {
            if needs.remove(d).is_some() {
                if !outcome.skipped.contains(&d.1) {
                    outcome.skipped.push(d.1.clone());
                }
                stack.push(d.clone());
            }
        }
    }
}

/// A create that never takes over and never makes twice: it looks first for
/// the resource by its identity (adopting what an earlier run of this stack
/// made, refusing what someone else made), creates, and when the answer is
/// lost looks again for what the call made. The look-up, a read, goes out
/// while the write of the intent is under way; nothing that changes AWS
/// goes before the gate opens.
async fn create_or_adopt(
    provider: &'static dyn Provider,
    cx: &Ctx,
    id: &str,
    props: Props,
    intent: Intent,
    gate: Gate,
) -> Result<Done, ProviderError> {
    let r = Resource {
        logical_id: id,
        props: &props,
        token: &intent.token,
        replacing: &intent.replacing,
    };
    let (found, opened) = tokio::join!(
        providers::locate(provider, cx, &r, intent.inherited),
        gate.open()
    );
    opened?;
    match found? {
        Found::Ours(pid, observed) => return finish_adopted(provider, cx, &r, pid, observed).await,
        Found::Foreign(pid) => {
            return Err(ProviderError::refused(format!(
                "a {} with this identity ({}) already exists and was not created by this stack: {pid}. stackctl does not take over what it did not make; import it with `stackctl import {id} {pid}`, or give `{id}` another name",
                provider.schema().type_name,
                identity_of(provider.schema(), &props),
            )))
        }
        Found::Absent => {}
    }
    match provider.create(cx, &r).await {
        Ok(c) => Ok(Done::Created {
            physical_id: c.physical_id,
            attrs: c.attrs,
            props: intent.props,
            adopted: false,
        }),
        Err(e) if e.created.is_some() || e.reach == Reach::NotSent => Err(e),
        Err(e) => match providers::locate(provider, cx, &r, true).await {
            // The call reached AWS after all (its answer was lost, or a retry
            // met "already exists"): what it made is this stack's.
            Ok(Found::Ours(pid, observed)) => finish_adopted(provider, cx, &r, pid, observed).await,
            _ => Err(e),
        },
    }
}

/// A resource this stack made whose create did not finish here (an earlier
/// run's, or a call whose answer was lost) may lack what the create does after
/// its first call (a retention, rules): brings it to the desired properties in
/// place. What cannot change in place is recorded as it is, so the next plan
/// replaces it.
async fn finish_adopted(
    provider: &'static dyn Provider,
    cx: &Ctx,
    r: &Resource<'_>,
    pid: String,
    observed: providers::Observed,
) -> Result<Done, ProviderError> {
    let schema = provider.schema();
    // Values the create would have generated are what the object has.
    let mut want = r.props.clone();
    want.retain(|_, v| !contains_unknown(v));
    let (changed, replace) = plan::diff(schema, &want, &observed.props);
    let mut attrs = observed.attrs;
    let props = if changed.is_empty() {
        r.props.clone()
    } else if !replace.is_empty() {
        observed.props
    } else {
        let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
        let u = providers::Update {
            id: &pid,
            old: &observed.props,
            r,
            changed: &changed,
        };
        let updated = providers::update(provider, cx, &u)
            .await
            .map_err(|e| e.after_create(&pid))?;
        attrs.extend(updated);
        r.props.clone()
    };
    Ok(Done::Created {
        physical_id: pid,
        attrs,
        props,
        adopted: true,
    })
}

/// `name = "x", vpc_id = "y"` for an error message.
fn identity_of(schema: &Schema, props: &Props) -> String {
    schema
        .identity
        .iter()
        .filter_map(|k| props.get(*k).map(|v| format!("{k} = {v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SIGINT and SIGTERM, however many arrive.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => {}
            _ = recv(&mut self.term) => {}
        }
    }
}

/// The first computed property (a hash of local sources) whose value the plan
/// showed and that now is something else: applying it would not deploy what
/// was reviewed.
fn differs_from_plan(schema: &Schema, change: &Change, props: &Props) -> Option<String> {
    let shown = change.after.as_ref()?;
    shown
        .iter()
        .filter(|(k, _)| schema.prop(k).is_some_and(|p| p.computed))
        .find(|(k, planned)| {
            !contains_unknown(planned)
                && props
                    .get(*k)
                    .is_some_and(|now| !schema::equivalent(Compare::Exact, now, planned))
        })
        .map(|(k, _)| k.clone())
}

/// Before anything is changed: the resources whose sources changed since the
/// plan was made, with the property that shows it.
pub fn stale_sources(
    v: &Validated,
    state: &State,
    values: &StackValues,
    plan: &Plan,
) -> Vec<(String, String)> {
    let known = known_from_state(v, state, &plan.data);
    plan.changes
        .iter()
        .filter(|c| c.after.is_some() && v.stack.decls.contains_key(&c.id))
        .filter_map(|c| {
            let props = model::resolve_props(v, &c.id, values, &known);
            differs_from_plan(v.schema(&c.id), c, &props).map(|p| (c.id.clone(), p))
        })
        .collect()
}

/// Computed values the step made known (the code hash once built, a name
/// generated from a prefix) go into the recorded properties: derived again,
/// or as the step reported them; any still unknown is left out.
fn settle_computed(
    type_name: &str,
    mut props: Props,
    attrs: &mut Map<String, Value>,
    stack_dir: &std::path::Path,
) -> Props {
    if !props.values().any(contains_unknown) {
        return props;
    }
    if let Some(provider) = providers::lookup(type_name) {
        let _ = provider.derive(&mut props, stack_dir);
    }
    for (k, v) in props.iter_mut() {
        if contains_unknown(v) {
            if let Some(reported) = attrs.get(k) {
                *v = reported.clone();
            }
        }
    }
    props.retain(|_, v| !contains_unknown(v));
    props
}

/// The stack's outputs, resolved against the state.
pub fn outputs(
    v: &Validated,
    state: &State,
    values: &StackValues,
    data: &BTreeMap<String, Map<String, Value>>,
) -> BTreeMap<String, Value> {
    let known = known_from_state(v, state, data);
    let scope = expr::Scope {
        vars: &v.vars,
        stack_name: &values.name,
        region: values.region.as_deref(),
        account_id: values.account_id.as_deref(),
        resource: &known,
    };
    v.stack
        .outputs
        .iter()
        .map(|(name, node)| {
            // An output not known (yet) is null.
            let value = scope.resolve(node);
            let value = if contains_unknown(&value) {
                Value::Null
            } else {
                value
            };
            (name.clone(), value)
        })
        .collect()
}

/// The outputs whose values come from sensitive ones.
pub fn sensitive_outputs(v: &Validated, state: &State) -> Vec<String> {
    let paths_of = |id: &str| -> Vec<crate::sensitive::Path> {
        state
            .resources
            .get(id)
            .map(|r| r.sensitive.clone())
            .unwrap_or_default()
    };
    v.stack
        .outputs
        .iter()
        .filter(|(_, node)| crate::sensitive::flows_from_secret(node, &v.sensitive_vars, &paths_of))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, action: Action, deps: &[&str]) -> Change {
        Change {
            id: id.into(),
            type_name: "aws_sns_topic".into(),
            action,
            reason: None,
            physical_id: None,
            before: None,
            after: None,
            changed: vec![],
            replace_because: vec![],
            drift: vec![],
            unfinished: None,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            refreshed_attrs: Map::new(),
            create_first: false,
            deposed: None,
            sensitive: Vec::new(),
        }
    }

    /// A state that records these resources, each with its dependencies.
    fn state_of(records: &[(&str, &[&str])]) -> State {
        let mut state = State::new("s");
        for &(id, deps) in records {
            state.resources.insert(
                id.into(),
                Rec::from(ResourceState {
                    type_name: "aws_sns_topic".into(),
                    physical_id: Some(id.into()),
                    props: Props::new(),
                    attrs: Map::new(),
                    depends_on: deps.iter().map(|s| s.to_string()).collect(),
                    create_token: None,
                    sensitive: Vec::new(),
                    unfinished: None,
                }),
            );
        }
        state
    }

    fn del(id: &str) -> (StepKind, String) {
        (StepKind::Delete, id.to_string())
    }

    fn app(id: &str) -> (StepKind, String) {
        (StepKind::Apply, id.to_string())
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: 1,
            stack: "s".into(),
            lineage: "l".into(),
            serial: 0,
            changes,
            summary: Default::default(),
            data: BTreeMap::new(),
            moves: Vec::new(),
        }
    }

    #[test]
    fn replacement_deletes_dependents_first_and_recreates_dependencies_first() {
        let state = state_of(&[("topic", &[]), ("sub", &["topic"])]);
        let plan = plan_of(vec![
            change("topic", Action::Replace, &[]),
            change("sub", Action::Replace, &["topic"]),
        ]);
        let (_, needs) = build_steps(&plan, &state);
        assert!(needs[&del("topic")].contains(&del("sub")));
        assert!(needs[&app("topic")].contains(&del("topic")));
        assert!(needs[&app("sub")].contains(&app("topic")));
        assert!(needs[&app("sub")].contains(&del("sub")));
    }

    #[test]
    fn the_head_of_the_longest_chain_starts_first() {
        let state = State::new("s");
        let plan = plan_of(vec![
            change("alone", Action::Create, &[]),
            change("role", Action::Create, &[]),
            change("function", Action::Create, &["role"]),
            change("permission", Action::Create, &["function"]),
        ]);
        let (steps, needs) = build_steps(&plan, &state);
        let priority = priorities(&steps, &dependents_of(&needs));
        assert_eq!(priority[&app("role")].0, 3);
        assert_eq!(priority[&app("alone")].0, 1);
        assert!(priority[&app("role")] > priority[&app("alone")]);
        // Equal chains: the one earlier in the plan first.
        let plan = plan_of(vec![
            change("b", Action::Create, &[]),
            change("a", Action::Create, &[]),
        ]);
        let (steps, _) = build_steps(&plan, &state);
        let priority = priorities(&steps, &HashMap::new());
        assert!(priority[&app("b")] > priority[&app("a")]);
    }

    #[test]
    fn a_dependency_is_deleted_only_after_its_former_dependent_lets_go() {
        let state = state_of(&[("old", &[]), ("policy", &["old"])]);
        // `policy` no longer refers to `old`, which is removed from the file.
        let plan = plan_of(vec![
            change("policy", Action::Update, &[]),
            change("old", Action::Delete, &[]),
        ]);
        let (_, needs) = build_steps(&plan, &state);
        assert!(needs[&del("old")].contains(&app("policy")));
    }
}
