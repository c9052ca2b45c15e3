//! Import: resources that already exist (made in the console, or by another
//! tool) become the stack's own. Import reads; the only change it makes in
//! AWS is the ownership tags on taggable types.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::model::{self, StackValues};
use crate::providers::{self, Ctx, Observed, Provider, ProviderError, Resource};
use crate::schema::{contains_unknown, Props};
use crate::state::{ResourceState, State};
use crate::validate::Validated;

/// One resource taken into the state.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: String,
    pub type_name: String,
    pub physical_id: String,
    /// Whether the ownership tags were added (false: untaggable type, or
    /// already tagged as this stack's).
    pub tagged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("`{0}` is not a resource of the stack file{1}")]
    NotDeclared(String, String),
    #[error("`{id}` is already in the state as {physical_id}: `stackctl state rm {id}` first to import another")]
    AlreadyManaged { id: String, physical_id: String },
    #[error("{physical_id} is already in the state as `{other}`")]
    Twice { physical_id: String, other: String },
    #[error("no {type_name} `{physical_id}` exists in {location}")]
    Missing {
        type_name: String,
        physical_id: String,
        location: String,
    },
    #[error("{physical_id} belongs to stackctl stack `{stack}` (as `{id}`), not this one: `stackctl state rm {id}` in that stack first")]
    OwnedElsewhere {
        physical_id: String,
        stack: String,
        id: String,
    },
    #[error("`{id}`: {error}")]
    Aws { id: String, error: ProviderError },
}

/// Reads `physical_id` as the stack's resource `id` and records it.
pub async fn one(
    v: &Validated,
    cx: &Ctx,
    state: &mut State,
    values: &StackValues,
    data: &BTreeMap<String, Map<String, Value>>,
    id: &str,
    physical_id: &str,
) -> Result<Imported, ImportError> {
    let decl = declared(v, id)?;
    refuse_recorded(state, id, physical_id)?;
    let p = providers::lookup(&decl.type_name)
        .ok_or_else(|| ImportError::NotDeclared(id.into(), String::new()))?;
    let aws = |error| ImportError::Aws {
        id: id.into(),
        error,
    };
    let read = p.read(cx, physical_id).await.map_err(aws)?;
    let observed = read.ok_or_else(|| ImportError::Missing {
        type_name: decl.type_name.clone(),
        physical_id: physical_id.into(),
        location: cx.region(),
    })?;
    let tagged = match &observed.owner {
        Some(o) if o.stack == cx.stack && o.id == providers::id_tag(id) => false,
        Some(o) => {
            return Err(ImportError::OwnedElsewhere {
                physical_id: physical_id.into(),
                stack: o.stack.clone(),
                id: o.id.clone(),
            })
        }
        None if p.schema().taggable() => {
            let claimed = providers::claim(p, cx, physical_id, id, &observed).await;
            claimed.map_err(aws)?;
            true
        }
        None => false,
    };
    let desired = {
        let known = crate::apply::known_from_state(v, state, data);
        model::resolve_props(v, id, values, &known)
    };
    let record = record(v, p, id, physical_id, observed, &desired);
    state.resources.insert(id.to_string(), record.into());
    Ok(Imported {
        id: id.into(),
        type_name: decl.type_name.clone(),
        physical_id: physical_id.into(),
        tagged,
    })
}

/// The declared resource (not data source) `id`.
fn declared<'v>(v: &'v Validated, id: &str) -> Result<&'v crate::config::Decl, ImportError> {
    let resources = || v.stack.decls.values().filter(|d| !d.is_data);
    resources().find(|d| d.id == id).ok_or_else(|| {
        let ids: Vec<&str> = resources().map(|d| d.id.as_str()).collect();
        let hint = crate::spelling::nearest(id, &ids)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        ImportError::NotDeclared(id.to_string(), hint)
    })
}

/// Refuses an id that already has an object, and an object recorded twice.
fn refuse_recorded(state: &State, id: &str, physical_id: &str) -> Result<(), ImportError> {
    if let Some(pid) = state.resources.get(id).and_then(|r| r.physical_id.clone()) {
        return Err(ImportError::AlreadyManaged {
            id: id.into(),
            physical_id: pid,
        });
    }
    let recorded = state.resources.iter();
    let mut recorded = recorded.filter(|(_, r)| r.physical_id.as_deref() == Some(physical_id));
    match recorded.next() {
        Some((other, _)) => Err(ImportError::Twice {
            physical_id: physical_id.into(),
            other: other.clone(),
        }),
        None => Ok(()),
    }
}

/// The state record of an imported resource: its properties as read, so the
/// next plan shows the real differences from the file.
fn record(
    v: &Validated,
    p: &dyn Provider,
    id: &str,
    physical_id: &str,
    observed: Observed,
    desired: &Props,
) -> ResourceState {
    let mut props = observed.props;
    // A name made from a declared prefix stays made from it (no replacement).
    for prop in p.schema().props {
        let Some(from) = prop.derived_from else {
            continue;
        };
        if let (Some(Value::String(prefix)), Some(Value::String(value))) =
            (desired.get(from), props.get(prop.name))
        {
            if value.starts_with(prefix.as_str()) {
                props.insert(from.to_string(), Value::from(prefix.clone()));
            }
        }
    }
    ResourceState {
        type_name: p.schema().type_name.to_string(),
        physical_id: Some(physical_id.to_string()),
        props,
        attrs: observed.attrs,
        depends_on: v
            .graph
            .deps
            .get(id)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default(),
        create_token: None,
        sensitive: v.sensitive_paths(id, desired),
        unfinished: None,
    }
}

/// Why a declared resource was not imported by `--all`.
#[derive(Debug, Clone)]
pub struct Missed {
    pub id: String,
    pub why: String,
}

/// Looks up every declared resource the state does not record, in
/// dependency order, by the same identity the crash recovery uses, and
/// imports what it finds. `save` makes each import durable as it happens.
pub async fn all(
    v: &Validated,
    cx: &Ctx,
    state: &mut State,
    values: &StackValues,
    data: &BTreeMap<String, Map<String, Value>>,
    backend: &mut dyn crate::state::Backend,
) -> Result<(Vec<Imported>, Vec<Missed>), crate::state::StateError> {
    let (mut imported, mut missed) = (Vec::new(), Vec::new());
    for id in &v.graph.order {
        let decl = &v.stack.decls[id];
        if decl.is_data || state.resources.get(id).is_some_and(|r| !r.is_pending()) {
            continue;
        }
        let miss = |why: String| Missed {
            id: id.clone(),
            why,
        };
        let desired = model::resolve_props(
            v,
            id,
            values,
            &crate::apply::known_from_state(v, state, data),
        );
        let Some(p) = providers::lookup(&decl.type_name) else {
            continue;
        };
        let unresolved: Vec<&str> = p
            .schema()
            .identity
            .iter()
            .copied()
            .filter(|k| desired.get(*k).is_some_and(contains_unknown))
            // A name generated from a prefix is looked up by the prefix.
            .filter(|k| {
                let from = p.schema().prop(k).and_then(|prop| prop.derived_from);
                from.is_none_or(|f| desired.get(f).is_none_or(contains_unknown))
            })
            .collect();
        if !unresolved.is_empty() {
            missed.push(miss(format!(
                "its {} refers to a resource that was not found",
                unresolved.join(", ")
            )));
            continue;
        }
        let r = Resource {
            logical_id: id,
            props: &desired,
            token: "",
            replacing: &[],
        };
        let found = match p.find_existing(cx, &r).await {
            Ok(Some(pid)) => pid,
            Ok(None) => {
                missed.push(miss("nothing of that identity exists".into()));
                continue;
            }
            Err(e) => {
                missed.push(miss(format!("looking it up failed: {e}")));
                continue;
            }
        };
        // A pending intent of an interrupted create is replaced by the import.
        let pending = state.resources.remove(id);
        match one(v, cx, state, values, data, id, &found).await {
            Ok(i) => imported.push(i),
            Err(e) => {
                if let Some(rec) = pending {
                    state.resources.insert(id.clone(), rec);
                }
                missed.push(miss(e.to_string()));
            }
        }
        backend.save(state).await?;
    }
    Ok((imported, missed))
}
