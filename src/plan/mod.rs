//! Diffing: what the stack file asks for against what AWS has and the state
//! recorded, decided per resource by the type's schema.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::FutureExt;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::graph::Graph;
use crate::model::{resolve_props, StackValues};
use crate::providers::{self, Ctx, Found, Observed, ProviderError, Resource};
use crate::schema::{self, contains_unknown, is_unknown, unknown, Props, Schema};
use crate::sensitive;
use crate::state::{ResourceState, State};
use crate::validate::Validated;

mod render;
pub use render::{as_shown, render, render_drift, render_markdown, to_json, MARKDOWN_LIMIT};

pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
}

/// What will happen to one resource, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub action: Action,
    /// Why a resource that exists in the state is created again, or adopted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The physical id the change acts on (for a replace: the old one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    /// Properties as AWS has them now (`null` for a create).
    pub before: Option<Props>,
    /// Properties as they will be (`null` for a delete); unknown values render
    /// as "(known after apply)".
    pub after: Option<Props>,
    /// Properties whose value changes.
    pub changed: Vec<String>,
    /// The changed properties that force a replacement.
    pub replace_because: Vec<String>,
    /// Properties changed outside stackctl since the last apply.
    pub drift: Vec<String>,
    /// A change of stackctl's own on it that did not finish, and what became
    /// of it: not drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<String>,
    pub depends_on: Vec<String>,
    /// Attributes as the refresh read them (an instance's address after a
    /// restart, a resource an interrupted run created): the state takes them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub refreshed_attrs: Map<String, Value>,
    /// A replacement whose new object can exist beside the old one (their
    /// identities differ): it is created first, whatever uses the old one
    /// moves over, and then the old one is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_first: bool,
    /// The deletion of an object replaced create-before-destroy by an earlier
    /// run that did not finish: its physical id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposed: Option<String>,
    /// Where its sensitive values sit: shown only as `(sensitive)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<sensitive::Path>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub stack: String,
    /// The state this plan was made against: applying it to any other is refused.
    pub lineage: String,
    pub serial: u64,
    /// In dependency order; deletions last, dependents first.
    pub changes: Vec<Change>,
    pub summary: Summary,
    /// Attributes of the data sources as read for this plan.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Map<String, Value>>,
    /// Records the stack file's `moved:` renames, before any change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Moved>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.moves.is_empty() || self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

/// A record a `moved:` entry renames in this run; its object stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub from: String,
    pub to: String,
}

/// The state as it is once the stack's moves are made, and the moves that
/// were made (one already made, or of a record never made, is none). A move
/// onto a record the state has is refused: it would lose one of them.
pub fn with_moves(v: &Validated, state: &State) -> Result<(State, Vec<Moved>), String> {
    let mut moved = state.clone();
    let mut moves = Vec::new();
    for m in v
        .stack
        .moves
        .iter()
        .filter(|m| state.resources.contains_key(&m.from))
    {
        if !v.stack.decls.contains_key(&m.to) {
            return Err(format!(
                "`moved`: the state records `{}`, which would move to `{}`, and the stack does not declare it; declare it, or remove the entry to destroy `{}`",
                m.from, m.to, m.from
            ));
        }
        if moved.resources.contains_key(&m.to) {
            return Err(format!(
                "`moved`: `{}` cannot move to `{}`, which the state already records; remove one of them with `stackctl state rm` first",
                m.from, m.to
            ));
        }
        moved.move_record(&m.from, &m.to)?;
        moves.push(Moved {
            from: m.from.clone(),
            to: m.to.clone(),
        });
    }
    Ok((moved, moves))
}

/// What a refresh learned about one recorded resource.
#[derive(Debug, Clone)]
pub enum Refreshed {
    Live {
        physical_id: String,
        observed: Box<Observed>,
    },
    Gone,
}

/// A resource or data source AWS could not be asked about, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("refreshing `{id}` from AWS: {error}")]
    Refresh { id: String, error: ProviderError },
    #[error("reading data source `{id}`: {error}")]
    DataSource { id: String, error: ProviderError },
    #[error("reading `{id}`: {error}")]
    Import { id: String, error: ProviderError },
}

/// Reads every recorded resource from AWS, `parallelism` calls at a time.
/// Types AWS reads in batches (alarms by 100 names, log groups a page at a
/// time) are read in batches, and the tags of many resources come from the
/// Resource Groups Tagging API in a few calls instead of one per resource.
/// Entries left by an interrupted create are looked up by identity with the
/// properties and token of their intent; only what is provably this stack's
/// is adopted.
pub async fn refresh(
    cx: &Ctx,
    state: &State,
    parallelism: usize,
) -> Result<BTreeMap<String, Refreshed>, ReadError> {
    trust_bulk_tags(cx, state).await;
    let mut batches: BTreeMap<&str, Vec<(&String, String)>> = BTreeMap::new();
    let mut singles = Vec::new();
    for (id, rec) in &state.resources {
        let Some(provider) = cx.provider(&rec.type_name) else {
            continue;
        };
        match &rec.physical_id {
            Some(pid) if provider.schema().batch_read => batches
                .entry(provider.schema().type_name)
                .or_default()
                .push((id, pid.clone())),
            _ => singles.push((id, rec, provider, state.deposed_ids(id))),
        }
    }
    let batch_jobs = batches.into_iter().map(|(type_name, members)| {
        async move {
            let provider = cx.provider(type_name).expect("registered");
            let ids: Vec<String> = members.iter().map(|(_, pid)| pid.clone()).collect();
            let first = members
                .first()
                .map(|(id, _)| (*id).clone())
                .unwrap_or_default();
            let read = match provider.read_many(cx, &ids).await {
                Ok(read) => read,
                Err(e) => return vec![(first, Err(e))],
            };
            members
                .into_iter()
                .map(|(id, pid)| {
                    let found = match read.get(&pid).cloned().flatten() {
                        Some(observed) => Refreshed::Live {
                            physical_id: pid,
                            observed: Box::new(observed),
                        },
                        None => Refreshed::Gone,
                    };
                    (id.clone(), Ok(found))
                })
                .collect::<Vec<_>>()
        }
        .boxed()
    });
    let single_jobs = singles.into_iter().map(|(id, rec, provider, replacing)| {
        async move {
            let found = refresh_one(cx, id, rec, provider, &replacing).await;
            vec![(id.clone(), found)]
        }
        .boxed()
    });
    let results: Vec<_> = stream::iter(batch_jobs.chain(single_jobs))
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    results
        .into_iter()
        .flatten()
        .map(|(id, r)| match r {
            Ok(found) => Ok((id, found)),
            Err(error) => Err(ReadError::Refresh { id, error }),
        })
        .collect()
}

async fn refresh_one(
    cx: &Ctx,
    id: &str,
    rec: &ResourceState,
    provider: &'static dyn providers::Provider,
    replacing: &[String],
) -> Result<Refreshed, ProviderError> {
    let found = match &rec.physical_id {
        Some(pid) => provider
            .read_recorded(cx, pid, &rec.attrs)
            .await?
            .map(|observed| (pid.clone(), observed)),
        None => {
            let r = Resource {
                logical_id: id,
                props: &rec.props,
                token: rec.create_token.as_deref().unwrap_or_default(),
                replacing,
            };
            match providers::locate(provider, cx, &r, true).await? {
                Found::Ours(pid, observed) => Some((pid, observed)),
                Found::Foreign(_) | Found::Absent => None,
            }
        }
    };
    Ok(match found {
        Some((physical_id, observed)) => Refreshed::Live {
            physical_id,
            observed: Box::new(observed),
        },
        None => Refreshed::Gone,
    })
}

/// Below this many resources whose tags the Tagging API can give, one tag
/// call each costs less than the bulk read's extra round trip first.
const BULK_TAGS_FROM: usize = 20;

/// Reads the tags of the stack's resources in bulk and lets reads use those
/// that match what the state records. The Tagging API is eventually
/// consistent: a resource whose bulk tags differ from the record (a change
/// that has not reached it yet, or drift) is read with its own tag call.
/// Without permission for the Tagging API, every resource is read that way.
async fn trust_bulk_tags(cx: &Ctx, state: &State) {
    #[cfg(test)]
    if cx.model.is_some() {
        return; // the model's reads carry their tags
    }
    let mut services = BTreeSet::new();
    let mut expected = HashMap::new();
    for (id, rec) in &state.resources {
        let Some(service) =
            providers::lookup(&rec.type_name).and_then(|p| p.schema().tagging.bulk_service())
        else {
            continue;
        };
        let arn = rec
            .attrs
            .get("arn")
            .and_then(Value::as_str)
            .or(rec.physical_id.as_deref());
        let Some(arn) = arn.filter(|_| !rec.is_pending()) else {
            continue;
        };
        let mut tags = providers::string_map(rec.props.get("tags"));
        tags.push((providers::TAG_STACK.to_string(), cx.stack.clone()));
        tags.push((providers::TAG_ID.to_string(), providers::id_tag(id)));
        tags.sort();
        services.insert(service);
        expected.insert(arn.trim_end_matches(":*").to_string(), tags);
    }
    if expected.len() < BULK_TAGS_FROM {
        return;
    }
    let services: Vec<&str> = services.into_iter().collect();
    let Ok(bulk) = cx.tagged_resources(&services).await else {
        return;
    };
    let trusted = bulk
        .into_iter()
        .filter_map(|(arn, mut tags)| {
            tags.sort();
            (expected.get(&arn) == Some(&tags)).then_some((arn, tags))
        })
        .collect();
    cx.trust_tags(trusted);
}

/// Reads every data source. Their properties may only use variables and stack
/// values (validation enforces it), so they are known before anything exists.
pub async fn read_data(
    cx: &Ctx,
    v: &Validated,
    values: &StackValues,
) -> Result<BTreeMap<String, Map<String, Value>>, ReadError> {
    let mut out = BTreeMap::new();
    for decl in v.stack.decls.values().filter(|d| d.is_data) {
        let props = resolve_props(v, &decl.id, values, &|_, _| None);
        let failed = |error| ReadError::DataSource {
            id: decl.id.clone(),
            error,
        };
        let provider = providers::lookup(&decl.type_name)
            .ok_or_else(|| failed(ProviderError::refused("unknown data source type")))?;
        let attrs = provider.read_data(cx, &props).await.map_err(failed)?;
        out.insert(decl.id.clone(), attrs);
    }
    Ok(out)
}

/// A computed value that is still unknown (the code hash of sources not built
/// on this machine) keeps what the last apply recorded, as long as the
/// property it is derived from (the source hash) is unchanged.
pub fn keep_derived(schema: &Schema, desired: &mut Props, record: Option<&ResourceState>) {
    let Some(rec) = record.filter(|r| !r.is_pending()) else {
        return;
    };
    for p in schema.props {
        let Some(from) = p.derived_from else { continue };
        let unchanged = desired.get(from).is_some() && desired.get(from) == rec.props.get(from);
        if unchanged && desired.get(p.name).is_some_and(is_unknown) {
            if let Some(v) = rec.props.get(p.name) {
                desired.insert(p.name.to_string(), v.clone());
            }
        }
    }
}

/// A replacement is a new object: values generated for the old one (a name
/// made from a prefix) are made afresh. Returns the properties that were.
pub fn regenerate(schema: &Schema, desired: &mut Props) -> Vec<String> {
    let mut fresh = Vec::new();
    for p in schema.props {
        let generated = p
            .derived_from
            .is_some_and(|from| desired.contains_key(from));
        if generated && p.force_new && desired.contains_key(p.name) {
            desired.insert(p.name.to_string(), unknown());
            fresh.push(p.name.to_string());
        }
    }
    fresh
}

/// The properties whose desired value differs from `before`, and which of those
/// force a replacement.
pub fn diff(schema: &Schema, desired: &Props, before: &Props) -> (Vec<String>, Vec<String>) {
    let mut changed = Vec::new();
    let mut replace = Vec::new();
    for prop in schema.props {
        let differs = match (desired.get(prop.name), before.get(prop.name)) {
            (None, have) => prop.unset_when_absent() && have.is_some(),
            (Some(want), _) if contains_unknown(want) => true,
            (Some(want), Some(have)) => !schema::equivalent(prop.compare, want, have),
            (Some(_), None) => true,
        };
        if differs {
            changed.push(prop.name.to_string());
            if prop.force_new {
                replace.push(prop.name.to_string());
            }
        }
    }
    (changed, replace)
}

/// Whether the replacement of a resource can be created while the old one
/// still exists: some part of its identity is known to differ, or is
/// generated unique (a name from a prefix).
fn can_create_first(schema: &Schema, desired: &Props, before: &Props) -> bool {
    schema.identity.is_empty()
        || schema.identity.iter().any(|k| match desired.get(*k) {
            Some(v) if is_unknown(v) => schema
                .prop(k)
                .and_then(|p| p.derived_from)
                .is_some_and(|from| desired.contains_key(from)),
            Some(v) => before.get(*k).is_some_and(|old| old != v),
            None => false,
        })
}

/// What later resources may resolve references against: each resource's
/// action, desired properties and known attributes.
type Resolved = HashMap<String, (Action, Props, Map<String, Value>)>;

/// Decides the action for every resource. Pure: the AWS side comes in `live`.
pub fn make(
    v: &Validated,
    state: &State,
    live: &BTreeMap<String, Refreshed>,
    data: &BTreeMap<String, Map<String, Value>>,
    values: &StackValues,
) -> Plan {
    let mut changes: Vec<Change> = Vec::new();
    let mut resolved = Resolved::new();
    for id in &v.graph.order {
        if v.stack.decls[id].is_data {
            let props = resolve_props(v, id, values, &|_, _| None);
            let attrs = data.get(id).cloned().unwrap_or_default();
            resolved.insert(id.clone(), (Action::NoOp, props, attrs));
            continue;
        }
        let (record, refreshed) = (state.record(id), live.get(id));
        let (change, attrs) = change_of(v, id, record, refreshed, values, &resolved);
        let desired = change.after.clone().unwrap_or_default();
        resolved.insert(id.clone(), (change.action, desired, attrs));
        changes.push(change);
    }
    changes.extend(deletions(state, live, &|id| {
        !v.stack.decls.contains_key(id)
    }));
    let mut plan = finish(v.stack.name.clone(), state, changes);
    plan.data = data.clone();
    plan
}

/// One declared resource's change, and the attributes known of it now.
fn change_of(
    v: &Validated,
    id: &str,
    record: Option<&ResourceState>,
    refreshed: Option<&Refreshed>,
    values: &StackValues,
    resolved: &Resolved,
) -> (Change, Map<String, Value>) {
    let schema = v.schema(id);
    let known = |dep: &str, attr: &str| -> Option<Value> {
        let (action, props, attrs) = resolved.get(dep)?;
        if v.schema(dep).attr(attr).is_none() {
            return props.get(attr).cloned();
        }
        match action {
            Action::Create | Action::Replace => None,
            _ => attrs.get(attr).cloned(),
        }
    };
    let mut desired = resolve_props(v, id, values, &known);
    keep_derived(schema, &mut desired, record);
    let mut current = current_of(record, refreshed);
    let drift = drift_of(schema, record, refreshed, &mut current);
    let sensitive = sensitive_of(v, id, &desired, record, &current.existing);
    let mut change = Change {
        id: id.to_string(),
        type_name: schema.type_name.to_string(),
        action: Action::Create,
        reason: current.reason,
        physical_id: None,
        before: None,
        changed: desired.keys().cloned().collect(),
        after: Some(desired.clone()),
        replace_because: Vec::new(),
        drift,
        unfinished: current.unfinished,
        depends_on: v
            .graph
            .deps
            .get(id)
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        refreshed_attrs: Map::new(),
        create_first: false,
        deposed: None,
        sensitive,
    };
    let Some((physical_id, before, attrs)) = current.existing else {
        return (change, Map::new());
    };
    if matches!(refreshed, Some(Refreshed::Live { .. })) {
        change.refreshed_attrs = attrs.clone();
    }
    let (mut changed, replace_because) = diff(schema, &desired, &before);
    change.action = if !replace_because.is_empty() {
        Action::Replace
    } else if !changed.is_empty() {
        Action::Update
    } else {
        Action::NoOp
    };
    if change.action == Action::Replace {
        for p in regenerate(schema, &mut desired) {
            if !changed.contains(&p) {
                changed.push(p);
            }
        }
        change.create_first = can_create_first(schema, &desired, &before);
    }
    change.physical_id = physical_id;
    change.before = Some(before);
    change.after = Some(desired);
    change.changed = changed;
    change.replace_because = replace_because;
    (change, attrs)
}

/// What exists of a resource now, as far as its record and the refresh tell:
/// its physical id, properties and attributes; and why, when that is news.
struct Current {
    existing: Option<(Option<String>, Props, Map<String, Value>)>,
    reason: Option<String>,
    unfinished: Option<String>,
}

fn current_of(record: Option<&ResourceState>, refreshed: Option<&Refreshed>) -> Current {
    let mut current = Current {
        existing: None,
        reason: None,
        unfinished: None,
    };
    current.existing = match (record, refreshed) {
        (None, _) => None,
        (Some(rec), Some(Refreshed::Gone)) => {
            current.reason = Some(gone_reason(rec));
            current.unfinished = rec
                .unfinished_text()
                .filter(|_| !reason_blames(&current.reason));
            None
        }
        (
            Some(rec),
            Some(Refreshed::Live {
                physical_id,
                observed,
            }),
        ) => {
            if rec.is_pending() {
                current.reason = Some(format!(
                    "adopting {physical_id}, created by an interrupted run"
                ));
            }
            let mut props = rec.props.clone();
            props.extend(observed.props.clone());
            let mut attrs = rec.attrs.clone();
            attrs.extend(observed.attrs.clone());
            Some((Some(physical_id.clone()), props, attrs))
        }
        (Some(rec), None) if rec.is_pending() => {
            current.reason = Some(
                "an earlier create did not finish and nothing it may have made was found; it is created now"
                    .to_string(),
            );
            None
        }
        (Some(rec), None) => Some((
            rec.physical_id.clone(),
            rec.props.clone(),
            rec.attrs.clone(),
        )),
    };
    current
}

/// The properties changed outside stackctl. Where what AWS has is what an
/// unfinished update of stackctl's own sent, that is said instead.
fn drift_of(
    schema: &Schema,
    record: Option<&ResourceState>,
    refreshed: Option<&Refreshed>,
    current: &mut Current,
) -> Vec<String> {
    let (Some(rec), Some(Refreshed::Live { observed, .. })) = (record, refreshed) else {
        return Vec::new();
    };
    if rec.is_pending() {
        return Vec::new();
    }
    let (drift, finished) = drifted(schema, rec, &observed.props);
    if !finished.is_empty() {
        current.reason = Some(format!(
            "its {}: AWS has what it sent ({})",
            rec.unfinished_text().unwrap_or_default(),
            finished.join(", ")
        ));
        current.unfinished = current.reason.clone();
    }
    drift
}

/// The paths of a resource's sensitive values; registers the values for
/// masking, and what is shown anyway as not to be masked in free text.
fn sensitive_of(
    v: &Validated,
    id: &str,
    desired: &Props,
    record: Option<&ResourceState>,
    existing: &Option<(Option<String>, Props, Map<String, Value>)>,
) -> Vec<Vec<String>> {
    let mut paths = v.sensitive_paths(id, desired);
    if let Some(rec) = record {
        paths.extend(rec.sensitive.iter().cloned());
        v.redactor.register_at(&rec.props, &rec.sensitive);
    }
    paths.sort();
    paths.dedup();
    v.redactor
        .register_public_props(desired, &Map::new(), &paths);
    if let Some((physical_id, before, attrs)) = existing {
        v.redactor.register_public_props(before, attrs, &paths);
        v.redactor
            .register_public(&Value::from(physical_id.clone()));
    }
    paths
}

fn reason_blames(reason: &Option<String>) -> bool {
    reason
        .as_deref()
        .is_some_and(|r| r.contains("outside stackctl"))
}

/// Why a recorded resource is not in AWS: gone outside stackctl, or never
/// made, or deleted, by a change of stackctl's own that did not finish.
fn gone_reason(rec: &ResourceState) -> String {
    use crate::state::Operation;
    match (
        rec.is_pending(),
        rec.unfinished.as_ref().map(|u| u.operation),
    ) {
        (true, _) => format!(
            "its {}, and nothing it may have made was found",
            rec.unfinished_text().unwrap_or_default()
        ),
        (false, Some(Operation::Delete)) => format!(
            "its {}, and it is gone: deleted by this stack",
            rec.unfinished_text().unwrap_or_default()
        ),
        _ => "it no longer exists in AWS (deleted outside stackctl)".to_string(),
    }
}

/// The properties AWS reports otherwise than the record: drift (changed
/// outside stackctl), and those an update of stackctl's own sent and did not
/// get to record (not drift).
fn drifted(schema: &Schema, rec: &ResourceState, observed: &Props) -> (Vec<String>, Vec<String>) {
    let sent = rec.unfinished.as_ref().and_then(|u| u.props.as_ref());
    let mut drift = Vec::new();
    let mut finished = Vec::new();
    for p in schema.props {
        let (applied, now) = match (rec.props.get(p.name), observed.get(p.name)) {
            (Some(applied), Some(now)) => (applied, now),
            (None, Some(now)) if p.unset_when_absent() => (&Value::Null, now),
            _ => continue,
        };
        if schema::equivalent(p.compare, applied, now) {
            continue;
        }
        match sent.and_then(|s| s.get(p.name)) {
            Some(v) if schema::equivalent(p.compare, v, now) => finished.push(p.name.to_string()),
            _ => drift.push(p.name.to_string()),
        }
    }
    (drift, finished)
}

/// A plan that deletes everything in the state, dependents first.
pub fn destroy(state: &State, live: &BTreeMap<String, Refreshed>) -> Plan {
    finish(
        state.stack.clone(),
        state,
        deletions(state, live, &|_| true),
    )
}

fn finish(stack: String, state: &State, changes: Vec<Change>) -> Plan {
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1;
            }
            Action::Delete => summary.destroy += 1,
            Action::NoOp => {}
        }
    }
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        stack,
        lineage: state.lineage.clone(),
        serial: state.serial,
        changes,
        summary,
        data: BTreeMap::new(),
        moves: Vec::new(),
    }
}

/// Deletions of the recorded resources `doomed` picks, dependents first.
fn deletions(
    state: &State,
    live: &BTreeMap<String, Refreshed>,
    doomed: &dyn Fn(&str) -> bool,
) -> Vec<Change> {
    let gone: BTreeMap<String, BTreeSet<String>> = state
        .resources
        .iter()
        .filter(|(id, _)| doomed(id))
        .map(|(id, rec)| (id.clone(), rec.depends_on.iter().cloned().collect()))
        .collect();
    let restricted = gone.iter().map(|(id, ds)| {
        let ds = ds.iter().filter(|d| gone.contains_key(*d));
        (id.clone(), ds.cloned().collect())
    });
    // The state's recorded dependencies cannot form a cycle; fall back to name order.
    let order = Graph::build(restricted.collect(), &|_| 0)
        .map(|g| g.order)
        .unwrap_or_else(|_| gone.keys().cloned().collect());
    let recorded = order.into_iter().rev().map(|id| {
        let mut change = Change::deletion(&id, &state.resources[&id]);
        match live.get(&id) {
            Some(Refreshed::Gone) => {
                change.physical_id = None;
                change.reason =
                    Some("it is already gone from AWS; only its record is removed".to_string());
            }
            Some(Refreshed::Live {
                physical_id,
                observed,
            }) => {
                change.physical_id = Some(physical_id.clone());
                change.before = Some(observed.props.clone());
            }
            None => {}
        }
        change
    });
    let deposed = state.deposed.iter().map(|d| Change {
        reason: Some(
            "it was replaced by an earlier run, which ended before deleting it".to_string(),
        ),
        unfinished: None,
        deposed: d.record.physical_id.clone(),
        ..Change::deletion(&d.id, &d.record)
    });
    recorded.chain(deposed).collect()
}

impl Change {
    /// The deletion of a recorded object, as its record has it.
    fn deletion(id: &str, rec: &ResourceState) -> Change {
        Change {
            id: id.to_string(),
            type_name: rec.type_name.clone(),
            action: Action::Delete,
            reason: None,
            physical_id: rec.physical_id.clone(),
            before: Some(rec.props.clone()),
            after: None,
            changed: Vec::new(),
            replace_because: Vec::new(),
            drift: Vec::new(),
            unfinished: rec.unfinished_text(),
            depends_on: rec.depends_on.clone(),
            refreshed_attrs: Map::new(),
            create_first: false,
            deposed: None,
            sensitive: rec.sensitive.clone(),
        }
    }
}

/// Replacements AWS would refuse to carry out: the old object must go first
/// (its successor needs its name) but AWS will not delete it while a resource
/// that stays still uses it. Said before anything changes, with the way out.
pub fn blocked_replacements(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Replace && !c.create_first)
        .filter(|c| providers::lookup(&c.type_name).is_some_and(|p| p.schema().in_use_blocks_delete))
        .filter_map(|c| {
            let users: Vec<&str> = plan
                .changes
                .iter()
                .filter(|u| matches!(u.action, Action::NoOp | Action::Update))
                .filter(|u| u.depends_on.contains(&c.id))
                .map(|u| u.id.as_str())
                .collect();
            (!users.is_empty()).then(|| {
                format!(
                    "`{}` must be replaced ({} changed) but keeps its identity ({}), so the new one can only be created after the old one is deleted, and AWS will not delete it while {} uses it. Set `name_prefix` instead of `name` (a unique name lets stackctl create the new one first and move {} over), or change the name as well",
                    c.id,
                    c.replace_because.join(", "),
                    providers::lookup(&c.type_name)
                        .map(|p| p.schema().identity.join(", "))
                        .unwrap_or_default(),
                    users.join(", "),
                    users.join(", "),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stack;
    use serde_json::json;
    use std::path::Path;

    const STACK: &str = "stack: demo\nregion: us-east-2\nresources:\n  topic:\n    type: aws_sns_topic\n    properties: {name: t1}\n  queue:\n    type: aws_sqs_queue\n    properties: {name: q1, visibility_timeout_seconds: 60}\n  sub:\n    type: aws_sns_topic_subscription\n    properties:\n      topic_arn: ${topic.arn}\n      protocol: sqs\n      endpoint: ${queue.arn}\n";

    fn validated(src: &str) -> Validated {
        crate::validate::validate(
            Stack::parse(Path::new("stack.yaml"), src).unwrap(),
            &[],
            None,
        )
        .unwrap()
    }

    fn values() -> StackValues {
        StackValues {
            name: "demo".into(),
            region: Some("us-east-2".into()),
            account_id: None,
        }
    }

    /// The plan with nothing refreshed from AWS.
    fn planned(v: &Validated, state: &State) -> Plan {
        make(v, state, &BTreeMap::new(), &BTreeMap::new(), &values())
    }

    fn applied(v: &Validated) -> State {
        let mut state = State::new("demo");
        let plan = planned(v, &state);
        for c in &plan.changes {
            let mut props = c.after.clone().unwrap();
            for val in props.values_mut() {
                if is_unknown(val) {
                    *val = json!(format!("arn:{}", c.id == "sub"));
                }
            }
            if c.id == "sub" {
                props.insert("topic_arn".into(), json!("arn:aws:sns:us-east-2:1:t1"));
                props.insert("endpoint".into(), json!("arn:aws:sqs:us-east-2:1:q1"));
            }
            let arn = match c.id.as_str() {
                "topic" => "arn:aws:sns:us-east-2:1:t1",
                "queue" => "arn:aws:sqs:us-east-2:1:q1",
                _ => "arn:aws:sns:us-east-2:1:t1:sub",
            };
            state.resources.insert(
                c.id.clone(),
                crate::state::Rec::from(ResourceState {
                    type_name: c.type_name.clone(),
                    physical_id: Some(arn.into()),
                    props,
                    attrs: [("arn".to_string(), json!(arn))].into_iter().collect(),
                    depends_on: c.depends_on.clone(),
                    create_token: None,
                    sensitive: Vec::new(),
                    unfinished: None,
                }),
            );
        }
        state
    }

    #[test]
    fn first_plan_creates_everything_with_unknown_references() {
        let v = validated(STACK);
        let plan = planned(&v, &State::new("demo"));
        assert_eq!(
            plan.summary,
            Summary {
                add: 3,
                change: 0,
                destroy: 0
            }
        );
        let sub = plan.changes.iter().find(|c| c.id == "sub").unwrap();
        assert!(is_unknown(&sub.after.as_ref().unwrap()["topic_arn"]));
        let text = render(&plan);
        assert_contains!(text, "+ topic_arn            = (known after apply)");
        assert_contains!(text, "Plan: 3 to add, 0 to change, 0 to destroy.");
        let queue = plan.changes.iter().find(|c| c.id == "queue").unwrap();
        assert_eq!(
            queue.after.as_ref().unwrap()["delay_seconds"],
            json!(0),
            "defaults are filled"
        );
    }

    #[test]
    fn a_property_unset_when_left_out_differs_only_where_aws_holds_a_value() {
        let alarm = providers::lookup("aws_cloudwatch_metric_alarm")
            .unwrap()
            .schema();
        let written = crate::schema::props(json!({"evaluation_periods": 3}));
        let at_aws = |extra: Value| {
            let mut p = written.clone();
            p.extend(crate::schema::props(extra));
            p
        };
        let changed = |before: &Props| diff(alarm, &written, before).0;
        assert!(changed(&at_aws(json!({}))).is_empty());
        assert_eq!(
            changed(&at_aws(json!({"datapoints_to_alarm": 2}))),
            ["datapoints_to_alarm"]
        );
        // Not so for one AWS chooses when the file does not.
        let group = providers::lookup("aws_security_group").unwrap().schema();
        let vpc = crate::schema::props(json!({"vpc_id": "vpc-1"}));
        assert!(diff(group, &Props::new(), &vpc).0.is_empty());
    }

    #[test]
    fn unchanged_stack_plans_no_changes() {
        let v = validated(STACK);
        let state = applied(&v);
        let plan = planned(&v, &state);
        assert!(!plan.has_changes(), "{}", render(&plan));
        assert!(render(&plan).contains("No changes."));
    }

    #[test]
    fn a_changed_property_updates_in_place_and_a_name_replaces() {
        let v = validated(&STACK.replace(
            "visibility_timeout_seconds: 60",
            "visibility_timeout_seconds: 90",
        ));
        let state = applied(&validated(STACK));
        let plan = planned(&v, &state);
        let queue = plan.changes.iter().find(|c| c.id == "queue").unwrap();
        assert_eq!(queue.action, Action::Update);
        assert_eq!(queue.changed, vec!["visibility_timeout_seconds"]);
        assert!(
            render(&plan).contains("~ visibility_timeout_seconds = 60 -> 90"),
            "{}",
            render(&plan)
        );

        let v = validated(&STACK.replace("name: t1", "name: t2"));
        let plan = planned(&v, &state);
        let topic = plan.changes.iter().find(|c| c.id == "topic").unwrap();
        assert_eq!(topic.action, Action::Replace);
        assert_eq!(topic.replace_because, vec!["name"]);
        // The subscription's topic_arn becomes unknown and forces it to follow.
        let sub = plan.changes.iter().find(|c| c.id == "sub").unwrap();
        assert_eq!(sub.action, Action::Replace);
        assert_eq!(
            plan.summary,
            Summary {
                add: 2,
                change: 0,
                destroy: 2
            }
        );
        let text = render(&plan);
        // A new name can exist beside the old one: the new topic comes first.
        assert!(topic.create_first);
        assert_contains!(text, "+/- resource \"aws_sns_topic\" \"topic\"");
        // The subscription keeps topic, protocol and endpoint as far as is
        // known: it cannot be made beside the old one.
        assert!(!sub.create_first);
        assert_contains!(text, "-/+ resource \"aws_sns_topic_subscription\" \"sub\"");
        assert_contains!(text, "~ name = \"t1\" -> \"t2\" # forces replacement");
    }

    #[test]
    fn resource_gone_from_aws_is_recreated_and_removed_one_is_deleted_dependents_first() {
        let v = validated(STACK);
        let state = applied(&v);
        let live: BTreeMap<_, _> = [("queue".to_string(), Refreshed::Gone)]
            .into_iter()
            .collect();
        let plan = make(&v, &state, &live, &BTreeMap::new(), &values());
        let queue = plan.changes.iter().find(|c| c.id == "queue").unwrap();
        assert_eq!(queue.action, Action::Create);
        assert!(queue.reason.as_deref().unwrap().contains("deleted outside"));
        assert!(render(&plan).contains("deleted outside stackctl"));

        let only_topic = validated("stack: demo\nresources:\n  topic:\n    type: aws_sns_topic\n    properties: {name: t1}\n");
        let plan = planned(&only_topic, &state);
        let deletes: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(deletes, vec!["sub", "queue"]);
    }

    #[test]
    fn drift_is_reported_and_corrected() {
        let v = validated(STACK);
        let state = applied(&v);
        let mut observed_props = state.resources["queue"].props.clone();
        observed_props.insert("visibility_timeout_seconds".into(), json!(5));
        let live: BTreeMap<_, _> = [(
            "queue".to_string(),
            Refreshed::Live {
                physical_id: "q".into(),
                observed: Box::new(Observed {
                    props: observed_props,
                    ..Observed::default()
                }),
            },
        )]
        .into_iter()
        .collect();
        let plan = make(&v, &state, &live, &BTreeMap::new(), &values());
        let queue = plan.changes.iter().find(|c| c.id == "queue").unwrap();
        assert_eq!(queue.drift, vec!["visibility_timeout_seconds"]);
        assert_eq!(queue.action, Action::Update);
        assert!(render(&plan).contains("visibility_timeout_seconds changed outside stackctl"));
    }

    #[test]
    fn policy_written_differently_is_not_a_change() {
        let src = "stack: demo\nresources:\n  p:\n    type: aws_sqs_queue_policy\n    properties:\n      queue_url: https://q\n      policy:\n        Version: '2012-10-17'\n        Statement:\n          - Effect: Allow\n            Principal: {Service: sns.amazonaws.com}\n            Action: [sqs:SendMessage]\n            Resource: arn:q\n";
        let v = validated(src);
        let mut state = State::new("demo");
        let aws_text = r#"{"Version":"2012-10-17","Statement":[{"Resource":"arn:q","Action":"sqs:SendMessage","Principal":{"Service":"sns.amazonaws.com"},"Effect":"Allow"}]}"#;
        state.resources.insert(
            "p".into(),
            crate::state::Rec::from(ResourceState {
                type_name: "aws_sqs_queue_policy".into(),
                physical_id: Some("https://q".into()),
                props: [
                    ("queue_url".to_string(), json!("https://q")),
                    ("policy".to_string(), json!(aws_text)),
                ]
                .into_iter()
                .collect(),
                attrs: Map::new(),
                depends_on: vec![],
                create_token: None,
                sensitive: Vec::new(),
                unfinished: None,
            }),
        );
        let plan = planned(&v, &state);
        assert!(!plan.has_changes(), "{}", render(&plan));
    }

    /// The lines of a rendered diff marked - or +, whitespace collapsed.
    fn marked_lines(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.trim_start().starts_with(['-', '+']))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn a_changed_policy_renders_as_a_line_diff_of_what_changed() {
        let src = "stack: demo\nresources:\n  p:\n    type: aws_sqs_queue_policy\n    properties:\n      queue_url: https://q\n      policy:\n        Version: '2012-10-17'\n        Statement:\n          - Effect: Allow\n            Principal: {Service: sns.amazonaws.com}\n            Action: sqs:SendMessage\n            Resource: arn:q\n";
        let state = applied(&validated(src));
        let v = validated(&src.replace("Resource: arn:q", "Resource: arn:q2"));
        let plan = planned(&v, &state);
        let text = render(&plan);
        assert_eq!(
            marked_lines(&text),
            [r#"- "Resource": "arn:q""#, r#"+ "Resource": "arn:q2""#],
            "{text}"
        );
        assert_contains!(text, r#"  "Effect": "Allow","#);

        // A member added at the end: only its line is marked, not the one
        // before it that gained a comma.
        let v = validated(&src.replace(
            "Resource: arn:q\n",
            "Resource: arn:q\n            Sid: FromTopic\n",
        ));
        let text = render(&planned(&v, &state));
        assert_eq!(marked_lines(&text), [r#"+ "Sid": "FromTopic""#], "{text}");
    }

    #[test]
    fn a_short_list_change_stays_on_one_line() {
        let src = "stack: demo\nresources:\n  q:\n    type: aws_cloudwatch_query_definition\n    properties:\n      name: q\n      log_group_names: [a]\n      query_string: fields @message\n";
        let state = applied(&validated(src));
        let v = validated(&src.replace("[a]", "[a, b]"));
        let text = render(&planned(&v, &state));
        assert_contains!(text, r#"~ log_group_names = ["a"] -> ["a","b"]"#);
    }

    #[test]
    fn a_markdown_plan_stays_under_the_comment_limit() {
        let mut src = String::from("stack: demo\nresources:\n");
        for i in 0..2000 {
            src.push_str(&format!(
                "  t{i}:\n    type: aws_sns_topic\n    properties: {{name: topic-{i}}}\n"
            ));
        }
        let plan = planned(&validated(&src), &State::new("demo"));
        let md = render_markdown(&plan, "- a finding\n");
        assert!(md.len() <= MARKDOWN_LIMIT, "{}", md.len());
        assert!(md.starts_with("**Plan: 2000 to add, 0 to change, 0 to destroy.**"));
        assert!(
            md.contains("more resource change(s), left out"),
            "summarised beyond the limit"
        );
        assert!(md.ends_with("- a finding\n"), "the findings stay");
    }

    #[test]
    fn json_plan_is_stable_and_masks_unknowns() {
        let v = validated(STACK);
        let plan = planned(&v, &State::new("demo"));
        let j = to_json(&plan);
        assert_eq!(j["format_version"], json!(1));
        assert_eq!(j["summary"], json!({"add": 3, "change": 0, "destroy": 0}));
        let sub = j["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "sub")
            .unwrap();
        assert_eq!(sub["action"], json!("create"));
        assert_eq!(sub["after"]["topic_arn"], json!("(known after apply)"));
    }
}
