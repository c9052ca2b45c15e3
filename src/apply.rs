//! Executes a plan: a walk of the dependency graph that starts each step as
//! soon as the steps it needs have finished, at most `parallelism` at a time.
//! The state is written after every AWS call that changed something, and the
//! intent of a create is written before the call.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::config::expr::{self, Ref, StackField};
use crate::plan::{self, Action, Change, Plan, StackValues};
use crate::providers::{self, AwsError, Ctx, Resource};
use crate::schema::{contains_unknown, Props};
use crate::state::{ResourceState, State, StateError, StateFile};
use crate::validate::Validated;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum StepKind {
    Delete,
    Apply,
}

type Step = (StepKind, String);

#[derive(Debug, Default)]
pub struct Outcome {
    pub failed: Vec<(String, String)>,
    pub skipped: Vec<String>,
    pub interrupted: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.interrupted
    }
}

/// One step's AWS calls, ready to run on the runtime.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Done, AwsError>> + Send>>;

/// What a finished AWS step reports back to the walk.
enum Done {
    Created {
        physical_id: String,
        attrs: Map<String, Value>,
        props: Props,
    },
    Updated {
        physical_id: String,
        attrs: Map<String, Value>,
        props: Props,
    },
    Deleted,
}

/// The order constraints between steps: who must finish before whom.
fn build_steps(plan: &Plan, state: &State) -> (Vec<Step>, HashMap<Step, HashSet<Step>>) {
    let mut steps = Vec::new();
    for c in &plan.changes {
        match c.action {
            Action::Delete => steps.push((StepKind::Delete, c.id.clone())),
            Action::Replace => {
                steps.push((StepKind::Delete, c.id.clone()));
                steps.push((StepKind::Apply, c.id.clone()));
            }
            Action::Create | Action::Update => steps.push((StepKind::Apply, c.id.clone())),
            Action::NoOp => {}
        }
    }
    let has: HashSet<Step> = steps.iter().cloned().collect();
    let changes: HashMap<&str, &Change> = plan.changes.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut needs: HashMap<Step, HashSet<Step>> =
        steps.iter().map(|s| (s.clone(), HashSet::new())).collect();
    for step in &steps {
        let (kind, id) = step;
        let mut add = |other: Step| {
            if has.contains(&other) {
                needs.entry(step.clone()).or_default().insert(other);
            }
        };
        match kind {
            StepKind::Apply => {
                add((StepKind::Delete, id.clone())); // a replacement deletes first
                for d in &changes[id.as_str()].depends_on {
                    add((StepKind::Apply, d.clone()));
                }
            }
            StepKind::Delete => {
                // Whatever depended on this resource when it was applied goes first:
                // deleted itself, or updated so that it no longer refers to it.
                for (other, rec) in &state.resources {
                    if !rec.depends_on.contains(id) {
                        continue;
                    }
                    if has.contains(&(StepKind::Delete, other.clone())) {
                        add((StepKind::Delete, other.clone()));
                    } else if changes
                        .get(other.as_str())
                        .is_some_and(|c| !c.depends_on.contains(id))
                    {
                        add((StepKind::Apply, other.clone()));
                    }
                }
            }
        }
    }
    (steps, needs)
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
fn known_from_state<'a>(
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
    pub file: &'a mut StateFile,
    pub state: &'a mut State,
    pub parallelism: usize,
}

impl Walk<'_> {
    fn save(&mut self) -> Result<(), StateError> {
        // A few KB written and fsynced: cheap next to the AWS call it records.
        tokio::task::block_in_place(|| self.file.save(self.state))
    }

    pub async fn run(mut self, plan: &Plan) -> Result<Outcome, StateError> {
        let changes: HashMap<String, Change> = plan
            .changes
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        self.adopt(plan)?;
        let (steps, mut needs) = build_steps(plan, self.state);
        let dependents = dependents_of(&needs);
        let mut ready: Vec<Step> = steps
            .iter()
            .filter(|s| needs[*s].is_empty())
            .cloned()
            .collect();
        let mut outcome = Outcome::default();
        let mut running: JoinSet<(Step, Result<Done, AwsError>, Instant)> = JoinSet::new();
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);

        let priority = priorities(&steps, &dependents);
        loop {
            // `pop` below takes the last: the highest priority.
            ready.sort_by_key(|s| priority.get(s).copied());
            while running.len() < self.parallelism.max(1) && !outcome.interrupted {
                let Some(step) = ready.pop() else { break };
                let change = &changes[&step.1];
                match self.start(&step, change, &plan.data) {
                    Ok(job) => {
                        let started = Instant::now();
                        running.spawn(async move { (step, job.await, started) });
                    }
                    Err(e) => {
                        self.fail(&step, change, e, &mut outcome, &dependents, &mut needs);
                    }
                }
                self.save()?;
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                j = running.join_next() => j,
                _ = &mut interrupt, if !outcome.interrupted => {
                    outcome.interrupted = true;
                    eprintln!("\nInterrupted: waiting for {} operation(s) in flight to finish; no new ones start.", running.len());
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (step, result, started) = match joined {
                Ok(r) => r,
                Err(e) => {
                    return Err(StateError::Write {
                        path: self.file.path.clone(),
                        source: std::io::Error::other(e),
                    })
                }
            };
            let change = &changes[&step.1];
            let elapsed = started.elapsed().as_secs_f64();
            match result {
                Ok(done) => {
                    self.record(&step, change, done, elapsed);
                    self.save()?;
                    for d in dependents.get(&step).cloned().unwrap_or_default() {
                        if let Some(ns) = needs.get_mut(&d) {
                            ns.remove(&step);
                            if ns.is_empty() && !outcome.skipped.contains(&d.1) {
                                ready.push(d);
                            }
                        }
                    }
                }
                Err(e) => {
                    self.fail(&step, change, e, &mut outcome, &dependents, &mut needs);
                    self.save()?;
                }
            }
        }
        if outcome.interrupted {
            for step in ready {
                outcome.skipped.push(step.1);
            }
        }
        outcome.skipped.sort();
        outcome.skipped.dedup();
        if outcome.ok() {
            self.state.outputs = outputs(self.v, self.state, self.values, &plan.data);
            self.save()?;
        }
        Ok(outcome)
    }

    /// Records the physical ids of resources adopted from an interrupted run.
    fn adopt(&mut self, plan: &Plan) -> Result<(), StateError> {
        let mut changed = false;
        for c in &plan.changes {
            let Some(rec) = self.state.resources.get_mut(&c.id) else {
                continue;
            };
            if rec.is_pending()
                && c.physical_id.is_some()
                && matches!(c.action, Action::NoOp | Action::Update)
            {
                rec.physical_id = c.physical_id.clone();
                rec.attrs.extend(c.adopted_attrs.clone());
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// Prepares one step: resolves its properties and, for a create, records the
    /// intent in the state (saved by the caller before the call starts).
    fn start(
        &mut self,
        step: &Step,
        change: &Change,
        data: &BTreeMap<String, Map<String, Value>>,
    ) -> Result<Job, AwsError> {
        let provider = providers::lookup(&change.type_name)
            .ok_or_else(|| AwsError::local(format!("unknown type `{}`", change.type_name)))?;
        let cx = self.cx.clone();
        let id = change.id.clone();
        match step.0 {
            StepKind::Delete => {
                let rec = self.state.resources.get(&id);
                let physical_id = rec.and_then(|r| r.physical_id.clone());
                let props = rec.map(|r| r.props.clone()).unwrap_or_default();
                println!("{id}: destroying...");
                Ok(Box::pin(async move {
                    if let Some(pid) = physical_id {
                        provider.delete(&cx, &pid, &props).await?;
                    }
                    Ok(Done::Deleted)
                }))
            }
            StepKind::Apply => {
                let props = plan::resolve_props(
                    self.v,
                    &id,
                    self.values,
                    &known_from_state(self.v, self.state, data),
                );
                if let Some((name, _)) = props.iter().find(|(_, v)| contains_unknown(v)) {
                    return Err(AwsError::local(format!(
                        "property `{name}` is still unknown after its dependencies were applied"
                    )));
                }
                let existing = self
                    .state
                    .resources
                    .get(&id)
                    .and_then(|r| r.physical_id.clone());
                let create =
                    matches!(change.action, Action::Create | Action::Replace) || existing.is_none();
                if create {
                    self.state.resources.insert(
                        id.clone(),
                        ResourceState {
                            type_name: change.type_name.clone(),
                            physical_id: None,
                            props: props.clone(),
                            attrs: Map::new(),
                            depends_on: change.depends_on.clone(),
                        },
                    );
                    println!("{id}: creating...");
                    Ok(Box::pin(async move {
                        let created = provider
                            .create(
                                &cx,
                                &Resource {
                                    logical_id: &id,
                                    props: &props,
                                },
                            )
                            .await?;
                        Ok(Done::Created {
                            physical_id: created.physical_id,
                            attrs: created.attrs,
                            props,
                        })
                    }))
                } else {
                    let physical_id = existing.unwrap_or_default();
                    let before = change.before.clone().unwrap_or_default();
                    let (changed, _) = plan::diff(self.v.schema(&id), &props, &before);
                    println!("{id}: updating ({})...", changed.join(", "));
                    Ok(Box::pin(async move {
                        let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
                        let r = Resource {
                            logical_id: &id,
                            props: &props,
                        };
                        let attrs = provider
                            .update(&cx, &physical_id, &before, &r, &changed)
                            .await?;
                        Ok(Done::Updated {
                            physical_id,
                            attrs,
                            props,
                        })
                    }))
                }
            }
        }
    }

    fn record(&mut self, step: &Step, change: &Change, done: Done, elapsed: f64) {
        let id = &step.1;
        match done {
            Done::Deleted => {
                self.state.resources.remove(id);
                println!("{id}: destroyed [{elapsed:.1}s]");
            }
            Done::Created {
                physical_id,
                attrs,
                props,
            }
            | Done::Updated {
                physical_id,
                attrs,
                props,
            } => {
                let verb = if self.state.resources.get(id).is_some_and(|r| r.is_pending()) {
                    "created"
                } else {
                    "updated"
                };
                println!("{id}: {verb} {physical_id} [{elapsed:.1}s]");
                let rec = self
                    .state
                    .resources
                    .entry(id.clone())
                    .or_insert_with(|| ResourceState {
                        type_name: change.type_name.clone(),
                        physical_id: None,
                        props: Props::new(),
                        attrs: Map::new(),
                        depends_on: Vec::new(),
                    });
                rec.physical_id = Some(physical_id);
                rec.props = props;
                rec.attrs.extend(attrs);
                rec.depends_on = change.depends_on.clone();
            }
        }
    }

    fn fail(
        &mut self,
        step: &Step,
        change: &Change,
        err: AwsError,
        outcome: &mut Outcome,
        dependents: &HashMap<Step, Vec<Step>>,
        needs: &mut HashMap<Step, HashSet<Step>>,
    ) {
        let id = &step.1;
        let verb = match (step.0, change.action) {
            (StepKind::Delete, _) => "destroying",
            (_, Action::Update) => "updating",
            _ => "creating",
        };
        // AWS refused the create outright: nothing was made, so drop the intent.
        // Without an error code (timeout, connection lost) the outcome is unknown
        // and the intent stays for the next run to look for.
        if step.0 == StepKind::Apply
            && err.code.is_some()
            && self.state.resources.get(id).is_some_and(|r| r.is_pending())
        {
            self.state.resources.remove(id);
        }
        eprintln!("{id}: error {verb} {}: {err}", change.type_name);
        outcome.failed.push((
            id.clone(),
            format!("{verb} `{id}` ({}): {err}", change.type_name),
        ));
        let mut stack = vec![step.clone()];
        while let Some(s) = stack.pop() {
            for d in dependents.get(&s).cloned().unwrap_or_default() {
                if needs.remove(&d).is_some() {
                    if !outcome.skipped.contains(&d.1) {
                        outcome.skipped.push(d.1.clone());
                    }
                    stack.push(d);
                }
            }
        }
    }
}

/// The stack's outputs, resolved against the state.
pub fn outputs(
    v: &Validated,
    state: &State,
    values: &StackValues,
    data: &BTreeMap<String, Map<String, Value>>,
) -> BTreeMap<String, Value> {
    let known = known_from_state(v, state, data);
    v.stack
        .outputs
        .iter()
        .map(|(name, node)| {
            let mut lookup = |r: &Ref| -> Result<Value, ()> {
                Ok(match r {
                    Ref::Var(n) => v.vars.get(n).cloned().unwrap_or(Value::Null),
                    Ref::Stack(StackField::Name) => Value::String(values.name.clone()),
                    Ref::Stack(StackField::Region) => {
                        values.region.clone().map_or(Value::Null, Value::String)
                    }
                    Ref::Stack(StackField::AccountId) => {
                        values.account_id.clone().map_or(Value::Null, Value::String)
                    }
                    Ref::Resource { id, attr } => known(id, attr).unwrap_or(Value::Null),
                })
            };
            (
                name.clone(),
                expr::resolve(node, &mut lookup).unwrap_or(Value::Null),
            )
        })
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
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            adopted_attrs: Map::new(),
        }
    }

    fn recorded(state: &mut State, id: &str, deps: &[&str]) {
        state.resources.insert(
            id.into(),
            ResourceState {
                type_name: "aws_sns_topic".into(),
                physical_id: Some(id.into()),
                props: Props::new(),
                attrs: Map::new(),
                depends_on: deps.iter().map(|s| s.to_string()).collect(),
            },
        );
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
        }
    }

    #[test]
    fn replacement_deletes_dependents_first_and_recreates_dependencies_first() {
        let mut state = State::new("s");
        recorded(&mut state, "topic", &[]);
        recorded(&mut state, "sub", &["topic"]);
        let plan = plan_of(vec![
            change("topic", Action::Replace, &[]),
            change("sub", Action::Replace, &["topic"]),
        ]);
        let (_, needs) = build_steps(&plan, &state);
        let del = |id: &str| (StepKind::Delete, id.to_string());
        let app = |id: &str| (StepKind::Apply, id.to_string());
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
        let app = |id: &str| (StepKind::Apply, id.to_string());
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
        let mut state = State::new("s");
        recorded(&mut state, "old", &[]);
        recorded(&mut state, "policy", &["old"]);
        // `policy` no longer refers to `old`, which is removed from the file.
        let plan = plan_of(vec![
            change("policy", Action::Update, &[]),
            change("old", Action::Delete, &[]),
        ]);
        let (_, needs) = build_steps(&plan, &state);
        assert!(needs[&(StepKind::Delete, "old".to_string())]
            .contains(&(StepKind::Apply, "policy".to_string())));
    }
}
