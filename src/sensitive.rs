//! Values that are never shown: what a schema marks sensitive (a function's
//! environment variables, unless its declaration says otherwise) and whatever
//! a sensitive variable flows into. Plans, JSON plans and `state show` mask
//! them by path and say only whether they changed; every other text stackctl
//! prints (errors, progress, AWS's own messages) goes through `redact`, which
//! masks their text wherever it occurs.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use crate::config::expr::{self, Ref};
use crate::config::yaml::{Node, NodeKind};
use crate::config::Decl;
use crate::schema::{Props, Schema, Type};

/// Where a sensitive value sits: a property, then map keys or list indexes;
/// `*` stands for every key of a map, whichever exist (sensitivity belongs to
/// the property, not to the keys the stack file happens to name).
pub type Path = Vec<String>;

/// Every key of a map, in a path.
pub const ANY: &str = "*";

/// The markers a masked value becomes; they print without quotes.
const MASK: &str = "\u{0}(sensitive)";
const MASK_CHANGED: &str = "\u{0}(sensitive, changed)";

/// The sensitive paths of a declared resource (a sensitive map is masked key
/// by key, so keys stay readable).
pub fn paths(decl: &Decl, schema: &Schema, sensitive_vars: &BTreeSet<String>) -> Vec<Path> {
    let mut out: Vec<Path> = schema_paths(schema)
        .into_iter()
        .flat_map(|path| match (&decl.sensitive_keys, path.last()) {
            // `sensitive: [KEY, ...]`: only those keys of the map.
            (Some(keys), Some(last)) if last == ANY => keys
                .iter()
                .map(|k| {
                    let mut p = path[..path.len() - 1].to_vec();
                    p.push(k.clone());
                    p
                })
                .collect(),
            _ => vec![path],
        })
        .collect();
    for prop in &decl.properties {
        tainted(
            &prop.value,
            &mut vec![prop.name.clone()],
            sensitive_vars,
            &mut out,
        );
    }
    out.sort();
    out.dedup();
    out
}

/// What a type's schema says is sensitive: whole properties, and every key
/// of a sensitive map within a block (`environment.variables.*`).
pub fn schema_paths(schema: &Schema) -> Vec<Path> {
    let mut out = Vec::new();
    for p in schema.props {
        if p.sensitive {
            out.push(vec![p.name.to_string()]);
            continue;
        }
        let Type::Object(sub) = p.ty else { continue };
        for sp in sub.iter().filter(|sp| sp.sensitive) {
            let mut path = vec![p.name.to_string(), sp.name.to_string()];
            if matches!(sp.ty, Type::StringMap) {
                path.push(ANY.to_string());
            }
            out.push(path);
        }
    }
    out
}

/// The paths with `*` expanded over the keys (or indexes) `value` has.
pub fn expand(paths: &[Path], value: &Value) -> Vec<Path> {
    fn walk(prefix: &mut Path, rest: &[String], v: &Value, out: &mut Vec<Path>) {
        let Some((step, rest)) = rest.split_first() else {
            out.push(prefix.clone());
            return;
        };
        let children: Vec<(String, &Value)> = match (step.as_str(), v) {
            (ANY, Value::Object(m)) => m.iter().map(|(k, x)| (k.clone(), x)).collect(),
            (ANY, Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (i.to_string(), x))
                .collect(),
            (_, Value::Object(m)) => m.get(step).map(|x| (step.clone(), x)).into_iter().collect(),
            (_, Value::Array(a)) => step
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .map(|x| (step.clone(), x))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            prefix.push(key);
            walk(prefix, rest, child, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    for path in paths {
        walk(&mut Vec::new(), path, value, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The paths of the values that a sensitive variable flows into.
fn tainted(node: &Node, path: &mut Path, vars: &BTreeSet<String>, out: &mut Vec<Path>) {
    match &node.kind {
        NodeKind::Str(_) => {
            let from_secret = expr::refs_in(node)
                .iter()
                .any(|(r, _)| matches!(r, Ref::Var(v) if vars.contains(v)));
            if from_secret {
                out.push(path.clone());
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                tainted(item, path, vars, out);
                path.pop();
            }
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                path.push(k.key_text());
                tainted(v, path, vars, out);
                path.pop();
            }
        }
        _ => {}
    }
}

pub(crate) fn at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, step| match v {
        Value::Object(m) => m.get(step),
        Value::Array(items) => items.get(step.parse::<usize>().ok()?),
        _ => None,
    })
}

pub(crate) fn at_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match v {
        Value::Object(m) => m.get_mut(step),
        Value::Array(items) => items.get_mut(step.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Properties with every sensitive value masked.
pub fn mask(props: &Props, paths: &[Path]) -> Props {
    mask_pair(Some(props), None, paths).0.unwrap_or_default()
}

/// Before and after with their sensitive values masked; an after value that
/// differs from the before one says so, and nothing more.
pub fn mask_pair(
    before: Option<&Props>,
    after: Option<&Props>,
    paths: &[Path],
) -> (Option<Props>, Option<Props>) {
    let mut old = before.map(|p| Value::Object(p.clone()));
    let mut new = after.map(|p| Value::Object(p.clone()));
    let mut concrete: Vec<Path> = [&old, &new]
        .into_iter()
        .flatten()
        .flat_map(|v| expand(paths, v))
        .collect();
    concrete.sort();
    concrete.dedup();
    for path in &concrete {
        let changed = match (&old, &new) {
            (Some(o), Some(n)) => at(o, path) != at(n, path),
            _ => false,
        };
        if let Some(v) = old.as_mut().and_then(|o| at_mut(o, path)) {
            *v = Value::from(MASK);
        }
        if let Some(v) = new.as_mut().and_then(|n| at_mut(n, path)) {
            *v = Value::from(if changed { MASK_CHANGED } else { MASK });
        }
    }
    let unwrap = |v: Option<Value>| match v {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    (unwrap(old), unwrap(new))
}

/// The text a marker value stands for, if it is one.
pub fn marker_text(v: &Value) -> Option<&str> {
    v.as_str()
        .filter(|s| *s == MASK || *s == MASK_CHANGED)
        .map(|s| &s[1..])
}

/// Marker strings inside rendered JSON, shown without quotes.
pub fn unquote_markers(text: &str) -> String {
    text.replace("\"\\u0000(sensitive, changed)\"", "(sensitive, changed)")
        .replace("\"\\u0000(sensitive)\"", "(sensitive)")
}

/// Whether a value built from these references is sensitive: a sensitive
/// variable, or a resource value under one of that resource's sensitive paths.
pub fn flows_from_secret(
    node: &Node,
    sensitive_vars: &BTreeSet<String>,
    paths_of: &dyn Fn(&str) -> Vec<Path>,
) -> bool {
    expr::refs_in(node).iter().any(|(r, _)| match r {
        Ref::Var(v) => sensitive_vars.contains(v),
        Ref::Resource { id, attr } => paths_of(id).iter().any(|p| p.first() == Some(attr)),
        // Expanded before anything asks.
        Ref::Stack(_)
        | Ref::Each(_)
        | Ref::Instances { .. }
        | Ref::Module { .. }
        | Ref::Join { .. } => false,
    })
}

/// The sensitive values of one run, and the values it shows anyway: what
/// it masks in everything it prints. Validation makes it (the sensitive
/// variables), the plan adds each resource's sensitive values; whatever
/// produces output holds it.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Mutex<Vec<String>>,
    /// Values stackctl shows anyway (non-sensitive properties and
    /// attributes): a sensitive value equal to one (a topic's ARN in a
    /// function's environment) is masked where the schema says, but not in
    /// every text that quotes the public one.
    public: Mutex<BTreeSet<String>>,
}

/// Shorter values are not masked in free text: a two-letter secret would
/// garble every message (plans and JSON mask by path, whatever the length).
const MIN_REDACTED_LEN: usize = 3;

impl Redactor {
    /// Remembers the text of values that are shown anyway.
    pub fn register_public(&self, value: &Value) {
        let mut leaves = Vec::new();
        collect_strings(value, &mut leaves);
        let mut public = self.public.lock().unwrap_or_else(|e| e.into_inner());
        public.extend(leaves);
    }

    /// Remembers what of these properties is not under a sensitive path, and
    /// these attributes, as shown anyway.
    pub fn register_public_props(
        &self,
        props: &Props,
        attrs: &serde_json::Map<String, Value>,
        paths: &[Path],
    ) {
        let (masked, _) = mask_pair(Some(props), None, paths);
        if let Some(masked) = masked {
            self.register_public(&Value::Object(masked));
        }
        self.register_public(&Value::Object(attrs.clone()));
    }

    /// Remembers the text of sensitive values, to mask them in anything printed.
    pub fn register(&self, value: &Value) {
        let mut leaves = Vec::new();
        collect_strings(value, &mut leaves);
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        for s in leaves {
            if s.chars().count() >= MIN_REDACTED_LEN && !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Registers the values at `paths` of these properties.
    pub fn register_at(&self, props: &Props, paths: &[Path]) {
        let whole = Value::Object(props.clone());
        for path in &expand(paths, &whole) {
            if let Some(v) = at(&whole, path) {
                self.register(v);
            }
        }
    }

    /// `text` with every registered sensitive value masked (but those shown
    /// anyway, as another resource's property or attribute).
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let public = self.public.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in secrets.iter().filter(|s| !public.contains(*s)) {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "(sensitive)");
            }
        }
        out
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if marker_text(v).is_none() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::props;
    use serde_json::json;

    #[test]
    fn masking_says_only_whether_a_value_changed() {
        let before =
            props(json!({"environment": {"variables": {"A": "old", "B": "same"}}, "timeout": 3}));
        let after =
            props(json!({"environment": {"variables": {"A": "new", "B": "same"}}, "timeout": 3}));
        let paths = vec![
            vec!["environment".into(), "variables".into(), "A".into()],
            vec!["environment".into(), "variables".into(), "B".into()],
        ];
        let (old, new) = mask_pair(Some(&before), Some(&after), &paths);
        let (old, new) = (Value::Object(old.unwrap()), Value::Object(new.unwrap()));
        assert_eq!(old["environment"]["variables"]["A"], json!(MASK));
        assert_eq!(new["environment"]["variables"]["A"], json!(MASK_CHANGED));
        assert_eq!(new["environment"]["variables"]["B"], json!(MASK));
        assert_eq!(new["timeout"], json!(3));
        assert!(!new.to_string().contains("new") && !old.to_string().contains("old"));
    }

    #[test]
    fn registered_values_are_redacted_from_any_text() {
        let r = Redactor::default();
        r.register(&json!("hunter2-secret"));
        r.register(&json!("ab")); // too short to mask in free text
        assert_eq!(
            r.redact("error: password hunter2-secret rejected (ab)"),
            "error: password (sensitive) rejected (ab)"
        );
    }

    #[test]
    fn a_value_shown_anyway_is_not_masked_in_free_text() {
        let r = Redactor::default();
        r.register(&json!("arn:aws:sns:us-east-2:123456789012:alerts"));
        r.register_public(&json!({"arn": "arn:aws:sns:us-east-2:123456789012:alerts"}));
        let text = "topic arn:aws:sns:us-east-2:123456789012:alerts";
        assert_eq!(r.redact(text), text);
    }

    #[test]
    fn two_runs_do_not_share_their_secrets() {
        let (a, b) = (Redactor::default(), Redactor::default());
        a.register(&json!("only-in-a"));
        assert_eq!(b.redact("only-in-a"), "only-in-a");
    }
}
