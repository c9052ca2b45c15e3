//! The stack as everything that reasons about it reads it: `${stack.*}`
//! values and each resource's properties resolved against what is known.
//! The plan, `check`, `simulate` and the diagram share this view.

use serde_json::Value;

use crate::config::expr;
use crate::providers;
use crate::schema::{self, Props};
use crate::validate::Validated;

/// The values of `${stack.*}`.
#[derive(Debug, Clone, Default)]
pub struct StackValues {
    pub name: String,
    pub region: Option<String>,
    pub account_id: Option<String>,
}

impl StackValues {
    /// The values as far as they are known without asking AWS.
    pub fn offline(v: &Validated, region: Option<String>, account_id: Option<String>) -> Self {
        StackValues {
            name: v.stack.name.clone(),
            region,
            account_id,
        }
    }
}

/// Resolves a resource's properties against what is known so far.
pub fn resolve_props(
    v: &Validated,
    id: &str,
    values: &StackValues,
    known: &dyn Fn(&str, &str) -> Option<Value>,
) -> Props {
    let mut props = declared_props(v, id, values, known);
    if let Some(provider) = providers::lookup(&v.stack.decls[id].type_name) {
        // A failure here was reported by validation; the create will say it again.
        let _ = provider.derive(&mut props, &v.stack.dir());
    }
    props
}

/// The properties as written and defaulted, without what providers derive
/// from local files (code hashes): what the offline checks read.
pub fn declared_props(
    v: &Validated,
    id: &str,
    values: &StackValues,
    known: &dyn Fn(&str, &str) -> Option<Value>,
) -> Props {
    let decl = &v.stack.decls[id];
    let schema = v.schema(id);
    let scope = expr::Scope {
        vars: &v.vars,
        stack_name: &values.name,
        region: values.region.as_deref(),
        account_id: values.account_id.as_deref(),
        resource: known,
    };
    let mut written = Props::new();
    for p in &decl.properties {
        let value = scope.resolve(&p.value);
        let prop = schema.prop(&p.name);
        // Validation already checked what was knowable offline; a value that only
        // now became known and is mistyped fails at the AWS call instead.
        let value = match prop {
            Some(prop) => schema::coerce(&prop.ty, value.clone()).unwrap_or(value),
            None => value,
        };
        written.insert(p.name.clone(), value);
    }
    // Schema order, so plans and state list properties the same way every time.
    let mut all = schema.with_defaults(&written);
    let mut props: Props = schema
        .props
        .iter()
        .filter_map(|p| all.remove_entry(p.name))
        .collect();
    props.extend(all);
    props
}
