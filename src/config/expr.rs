//! `${...}` references inside string values, and the "known after apply" marker.

use serde_json::Value;

use super::yaml::{Node, NodeKind};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ref {
    /// `${id.attribute}`: an attribute or property of a resource or data source.
    Resource { id: String, attr: String },
    /// `${var.NAME}`
    Var(String),
    /// `${stack.name}`, `${stack.region}`, `${stack.account_id}`
    Stack(StackField),
    /// `${each.key}`, `${each.value}`, `${each.value.FIELD}`: inside a
    /// resource with `for_each`, replaced by the instance's key and value.
    Each(Each),
    /// `${id[each.key].attr}` (the instance of `id` with this one's key) or
    /// `${id[*].attr}` (the list over all of them): replaced when the stack's
    /// collections are expanded.
    Instances {
        id: String,
        index: Index,
        attr: String,
    },
    /// `${join("SEP", id[*].attr)}`: the attribute of every instance, in
    /// key order, as one string (an environment variable's list).
    Join {
        sep: String,
        id: String,
        attr: String,
    },
    /// `${module.NAME.OUTPUT}`, or of one instance of a module with
    /// `for_each`, or all of them: replaced by the output's value when the
    /// stack's modules are expanded.
    Module {
        name: String,
        key: Option<ModuleKey>,
        output: String,
    },
}

/// Which instance of a module a reference names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleKey {
    Key(String),
    EachKey,
    All,
}

/// The address of a resource inside (one instance of) a module:
/// `module.NAME.ID`, `module.NAME["key"].ID`.
pub fn module_address(name: &str, key: Option<&str>, id: &str) -> String {
    match key {
        Some(key) => format!("module.{}.{id}", address(name, key)),
        None => format!("module.{name}.{id}"),
    }
}

/// What `${each...}` names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Each {
    Key,
    Value,
    Field(String),
}

/// What an instance reference's brackets hold before expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Index {
    EachKey,
    All,
}

/// The address of one instance of a collection: `id["key"]`.
pub fn address(id: &str, key: &str) -> String {
    format!("{id}[\"{key}\"]")
}

/// A `for_each` key: what may stand in the AWS names made from it (queue and
/// function names take no more than letters, digits, `-` and `_`).
pub fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `id` or `id["key"]`: a logical id, or one instance of a collection; or
/// either inside a module, `module.NAME.id`, `module.NAME["key"].id`.
pub fn is_address(s: &str) -> bool {
    match s.strip_prefix("module.") {
        Some(rest) => rest
            .rsplit_once('.')
            .is_some_and(|(m, id)| is_instance(m) && is_instance(id)),
        None => is_instance(s),
    }
}

/// `id` or `id["key"]` (keys hold no `.`, so an address splits at its dots).
fn is_instance(s: &str) -> bool {
    match s.split_once("[\"") {
        None => is_ident(s),
        Some((id, rest)) => is_ident(id) && rest.strip_suffix("\"]").is_some_and(is_key),
    }
}

/// The collection an address is an instance of, and its key (an address
/// inside a module is its own).
pub fn split_address(s: &str) -> (&str, Option<&str>) {
    match s.split_once("[\"").filter(|_| !s.starts_with("module.")) {
        Some((id, rest)) => (id, rest.strip_suffix("\"]")),
        None => (s, None),
    }
}

/// The name a resource is declared under, without its module or key:
/// `app_logs` for `module.watch["dev"].app_logs`, `server` for `server["a"]`.
pub fn local_name(s: &str) -> &str {
    match s
        .strip_prefix("module.")
        .and_then(|rest| rest.rsplit_once('.'))
    {
        Some((_, id)) => split_address(id).0,
        None => split_address(s).0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackField {
    Name,
    Region,
    AccountId,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Resource { id, attr } => write!(f, "${{{id}.{attr}}}"),
            Ref::Var(name) => write!(f, "${{var.{name}}}"),
            Ref::Stack(StackField::Name) => write!(f, "${{stack.name}}"),
            Ref::Stack(StackField::Region) => write!(f, "${{stack.region}}"),
            Ref::Stack(StackField::AccountId) => write!(f, "${{stack.account_id}}"),
            Ref::Each(Each::Key) => write!(f, "${{each.key}}"),
            Ref::Each(Each::Value) => write!(f, "${{each.value}}"),
            Ref::Each(Each::Field(field)) => write!(f, "${{each.value.{field}}}"),
            Ref::Join { sep, id, attr } => write!(f, "${{join({sep:?}, {id}[*].{attr})}}"),
            Ref::Module { name, key, output } => match key {
                None => write!(f, "${{module.{name}.{output}}}"),
                Some(ModuleKey::Key(k)) => write!(f, "${{module.{}.{output}}}", address(name, k)),
                Some(ModuleKey::EachKey) => write!(f, "${{module.{name}[each.key].{output}}}"),
                Some(ModuleKey::All) => write!(f, "${{module.{name}[*].{output}}}"),
            },
            Ref::Instances { id, index, attr } => {
                let index = match index {
                    Index::EachKey => "each.key",
                    Index::All => "*",
                };
                write!(f, "${{{id}[{index}].{attr}}}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    Ref(Ref),
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `each.key`, `each.value`, `each.value.FIELD`.
fn parse_each(inner: &str, tail: &str) -> Result<Ref, String> {
    match tail {
        "key" => Ok(Ref::Each(Each::Key)),
        "value" => Ok(Ref::Each(Each::Value)),
        _ => match tail.strip_prefix("value.") {
            Some(field) if is_key(field) => Ok(Ref::Each(Each::Field(field.to_string()))),
            _ => Err(format!(
                "`${{{inner}}}` is not a valid reference; use each.key, each.value or each.value.FIELD"
            )),
        },
    }
}

/// `id["key"].attr`, `id[each.key].attr` or `id[*].attr`.
fn parse_indexed(inner: &str, open: usize) -> Result<Ref, String> {
    let bad = || {
        format!(
            "`${{{inner}}}` is not a valid reference; an instance is `id[\"key\"].attribute`, `id[each.key].attribute` or `id[*].attribute`"
        )
    };
    let id = &inner[..open];
    let close = inner[open..].find(']').ok_or_else(bad)? + open;
    let (index, attr) = (&inner[open + 1..close], &inner[close + 1..]);
    let attr = attr
        .strip_prefix('.')
        .filter(|a| is_ident(a))
        .ok_or_else(bad)?;
    if !is_ident(id) {
        return Err(bad());
    }
    let (id, attr) = (id.to_string(), attr.to_string());
    match index {
        "*" => Ok(Ref::Instances {
            id,
            index: Index::All,
            attr,
        }),
        "each.key" => Ok(Ref::Instances {
            id,
            index: Index::EachKey,
            attr,
        }),
        quoted => match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
            Some(key) if is_key(key) => Ok(Ref::Resource {
                id: address(&id, key),
                attr,
            }),
            Some(key) => Err(format!(
                "`${{{inner}}}`: key `{key}` may hold only letters, digits, `-` and `_`"
            )),
            None => Err(bad()),
        },
    }
}

/// `module.NAME[INDEX]?.OUTPUT`, or a resource inside a module,
/// `module.NAME["key"]?.ID.ATTRIBUTE`.
fn parse_module(inner: &str, rest: &str) -> Result<Ref, String> {
    let bad = || {
        format!("`${{{inner}}}` is not a valid reference; a module's output is `module.NAME.OUTPUT`, `module.NAME[\"key\"].OUTPUT`, `module.NAME[each.key].OUTPUT` or `module.NAME[*].OUTPUT`")
    };
    let end = rest.find(['[', '.']).ok_or_else(bad)?;
    let name = &rest[..end];
    let (key, after) = match rest[end..].strip_prefix('[') {
        Some(indexed) => {
            let close = indexed.find(']').ok_or_else(bad)?;
            let key = match &indexed[..close] {
                "*" => ModuleKey::All,
                "each.key" => ModuleKey::EachKey,
                quoted => match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                    Some(k) if is_key(k) => ModuleKey::Key(k.to_string()),
                    _ => return Err(bad()),
                },
            };
            (Some(key), &indexed[close + 1..])
        }
        None => (None, &rest[end..]),
    };
    let segments: Vec<&str> = after
        .strip_prefix('.')
        .ok_or_else(bad)?
        .split('.')
        .collect();
    let fits = match segments.as_slice() {
        [id, attr] => is_instance(id) && is_ident(attr),
        other => other.iter().all(|s| is_ident(s)),
    };
    if !is_ident(name) || !fits {
        return Err(bad());
    }
    match (segments.as_slice(), key) {
        ([output], key) => Ok(Ref::Module {
            name: name.to_string(),
            key,
            output: output.to_string(),
        }),
        ([id, attr], None) => Ok(Ref::Resource {
            id: module_address(name, None, id),
            attr: attr.to_string(),
        }),
        ([id, attr], Some(ModuleKey::Key(k))) => Ok(Ref::Resource {
            id: module_address(name, Some(&k), id),
            attr: attr.to_string(),
        }),
        _ => Err(bad()),
    }
}

/// `join("SEP", id[*].attr)`.
fn parse_join(inner: &str, args: &str) -> Result<Ref, String> {
    let bad = || {
        format!("`${{{inner}}}`: join takes a quoted separator and all instances of a collection, `join(\",\", id[*].attribute)`")
    };
    let args = args.strip_suffix(')').ok_or_else(bad)?.trim_start();
    let quoted = args.strip_prefix('"').ok_or_else(bad)?;
    let close = quoted.find('"').ok_or_else(bad)?;
    let sep = quoted[..close].to_string();
    let list = quoted[close + 1..]
        .trim_start()
        .strip_prefix(',')
        .ok_or_else(bad)?;
    match parse_ref(list)? {
        Ref::Instances {
            id,
            index: Index::All,
            attr,
        } => Ok(Ref::Join { sep, id, attr }),
        _ => Err(bad()),
    }
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    let inner = inner.trim();
    if let Some(args) = inner.strip_prefix("join(") {
        return parse_join(inner, args);
    }
    if let Some(rest) = inner.strip_prefix("module.") {
        return parse_module(inner, rest);
    }
    if let Some(open) = inner.find('[') {
        return parse_indexed(inner, open);
    }
    if let Some(tail) = inner.strip_prefix("each.") {
        return parse_each(inner, tail);
    }
    let Some((head, tail)) = inner.split_once('.') else {
        return Err(format!(
            "reference `${{{inner}}}` must be `${{resource.attribute}}`, `${{var.NAME}}` or `${{stack.name|region|account_id}}`"
        ));
    };
    match head {
        "var" if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(Ref::Var(tail.to_string()))
        }
        "stack" => match tail {
            "name" => Ok(Ref::Stack(StackField::Name)),
            "region" => Ok(Ref::Stack(StackField::Region)),
            "account_id" => Ok(Ref::Stack(StackField::AccountId)),
            other => Err(format!(
                "`${{stack.{other}}}` is not a stack value; use stack.name, stack.region or stack.account_id"
            )),
        },
        id if is_ident(id) && is_ident(tail) => Ok(Ref::Resource {
            id: id.to_string(),
            attr: tail.to_string(),
        }),
        _ => Err(match terraform_address(inner) {
            Some(short) => format!("`${{{inner}}}` is not a valid reference; a resource is named by its id alone, without its type: `${{{short}}}`"),
            None => format!("`${{{inner}}}` is not a valid reference"),
        }),
    }
}

/// Terraform's `aws_sns_topic.alerts.arn` (or `data.aws_ami.base.id`) as this
/// tool spells it: `alerts.arn`.
pub fn terraform_address(text: &str) -> Option<&str> {
    let text = text.strip_prefix("data.").unwrap_or(text);
    let (kind, rest) = text.split_once('.')?;
    (kind.starts_with("aws_") && rest.split('.').all(is_ident)).then_some(rest)
}

/// Splits a string into literal text and references. `$${` is a literal `${`.
pub fn parse_template(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        lit.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix("${") {
            let end = open
                .find('}')
                .ok_or_else(|| format!("unterminated reference in `{s}`: missing `}}`"))?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref(parse_ref(&open[..end])?));
            rest = &open[end + 1..];
        } else {
            lit.push('$');
            rest = &after[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// Every reference in a node tree, with the node that holds it.
pub fn refs_in(node: &Node) -> Vec<(Ref, &Node)> {
    let mut out = Vec::new();
    collect(node, &mut out);
    out
}

fn collect<'a>(node: &'a Node, out: &mut Vec<(Ref, &'a Node)>) {
    match &node.kind {
        NodeKind::Str(s) => {
            if let Ok(parts) = parse_template(s) {
                out.extend(parts.into_iter().filter_map(|p| match p {
                    Part::Ref(r) => Some((r, node)),
                    Part::Lit(_) => None,
                }));
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|n| collect(n, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| collect(v, out)),
        _ => {}
    }
}

/// Syntax errors of every template in a node tree.
pub fn template_errors(node: &Node) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    walk_strings(node, &mut |s, n| {
        if let Err(e) = parse_template(s) {
            out.push((e, n));
        }
    });
    out
}

fn walk_strings<'a>(node: &'a Node, f: &mut dyn FnMut(&'a str, &'a Node)) {
    match &node.kind {
        NodeKind::Str(s) => f(s, node),
        NodeKind::Seq(items) => items.iter().for_each(|n| walk_strings(n, f)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| walk_strings(v, f)),
        _ => {}
    }
}

pub use crate::schema::{contains_unknown, is_unknown, unknown};

/// What references resolve against: the one set of rules every command uses.
/// Whatever is not known is unknown, never null: a variable without a value,
/// the region or account before a run has asked, a resource's attribute
/// before it exists.
pub struct Scope<'a> {
    pub vars: &'a std::collections::BTreeMap<String, Value>,
    pub stack_name: &'a str,
    pub region: Option<&'a str>,
    pub account_id: Option<&'a str>,
    /// A resource's attribute or property, if known.
    pub resource: &'a dyn Fn(&str, &str) -> Option<Value>,
}

impl Scope<'_> {
    pub fn lookup(&self, r: &Ref) -> Value {
        let known = |v: Option<&str>| v.map_or_else(unknown, Value::from);
        match r {
            Ref::Var(name) => self.vars.get(name).cloned().unwrap_or_else(unknown),
            Ref::Stack(StackField::Name) => Value::from(self.stack_name),
            Ref::Stack(StackField::Region) => known(self.region),
            Ref::Stack(StackField::AccountId) => known(self.account_id),
            Ref::Resource { id, attr } => (self.resource)(id, attr).unwrap_or_else(unknown),
            // Expansion replaced these; validation refuses any left over.
            Ref::Each(_) | Ref::Instances { .. } | Ref::Module { .. } | Ref::Join { .. } => {
                unknown()
            }
        }
    }

    pub fn resolve(&self, node: &Node) -> Value {
        resolve(node, &mut |r| Ok::<_, ()>(self.lookup(r))).unwrap_or_else(|()| unknown())
    }
}

/// Resolves every reference in `node`. A string that is only a reference keeps
/// the referenced value's type; references inside longer strings become text. A
/// string with any unknown part is unknown as a whole.
pub fn resolve<E>(
    node: &Node,
    lookup: &mut dyn FnMut(&Ref) -> Result<Value, E>,
) -> Result<Value, E> {
    Ok(match &node.kind {
        NodeKind::Str(s) => {
            let parts = match parse_template(s) {
                Ok(p) => p,
                // Syntax was checked by validation; keep the text as written.
                Err(_) => return Ok(Value::String(s.clone())),
            };
            match parts.as_slice() {
                [Part::Ref(r)] => lookup(r)?,
                _ => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            Part::Lit(l) => text.push_str(&l),
                            Part::Ref(r) => {
                                let v = lookup(&r)?;
                                if contains_unknown(&v) {
                                    return Ok(unknown());
                                }
                                match v {
                                    Value::String(s) => text.push_str(&s),
                                    Value::Null => {}
                                    other => text.push_str(&other.to_string()),
                                }
                            }
                        }
                    }
                    Value::String(text)
                }
            }
        }
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .map(|n| resolve(n, lookup))
                .collect::<Result<_, _>>()?,
        ),
        NodeKind::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                m.insert(k.key_text(), resolve(v, lookup)?);
            }
            Value::Object(m)
        }
        _ => node.to_json(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_local_name_drops_the_module_and_the_key() {
        for (address, name) in [
            ("alarm", "alarm"),
            ("server[\"web-1\"]", "server"),
            ("module.watch.alarm", "alarm"),
            ("module.watch[\"web-1\"].alarm", "alarm"),
            ("module.watch[\"web-1\"].alarm[\"a\"]", "alarm"),
        ] {
            assert_eq!(super::local_name(address), name);
            assert!(super::is_address(address), "{address}");
        }
        for not_one in ["module.watch", "a[\"b c\"]", "module.w.a.b", "Alarm"] {
            assert!(!super::is_address(not_one), "{not_one}");
        }
    }

    use super::*;
    use crate::config::yaml;
    use serde_json::json;

    fn r(id: &str, attr: &str) -> Ref {
        Ref::Resource {
            id: id.into(),
            attr: attr.into(),
        }
    }

    #[test]
    fn templates_split_literals_and_refs() {
        assert_eq!(
            parse_template("arn:${stack.region}:${topic.arn}/x").unwrap(),
            vec![
                Part::Lit("arn:".into()),
                Part::Ref(Ref::Stack(StackField::Region)),
                Part::Lit(":".into()),
                Part::Ref(r("topic", "arn")),
                Part::Lit("/x".into()),
            ]
        );
        assert_eq!(
            parse_template("cost $5 $${raw}").unwrap(),
            vec![Part::Lit("cost $5 ${raw}".into())]
        );
        assert_eq!(
            parse_template("${var.instance_name}").unwrap(),
            vec![Part::Ref(Ref::Var("instance_name".into()))]
        );
    }

    #[test]
    fn bad_references_are_explained() {
        for (text, says) in [
            ("${topic}", "resource.attribute"),
            ("${topic.arn", "unterminated"),
            ("${stack.owner}", "not a stack value"),
            ("${Topic.arn}", "not a valid reference"),
            (
                "${aws_sns_topic.alerts.arn}",
                "a resource is named by its id alone, without its type: `${alerts.arn}`",
            ),
            (
                "${data.aws_ami.base.id}",
                "a resource is named by its id alone, without its type: `${base.id}`",
            ),
        ] {
            let err = parse_template(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn whole_reference_keeps_type_and_partial_becomes_text() {
        let node = yaml::parse("a: ${var.n}\nb: \"n=${var.n}\"\nc: [\"${q.arn}\"]\n").unwrap();
        let mut lookup = |r: &Ref| -> Result<Value, ()> {
            Ok(match r {
                Ref::Var(_) => json!(30),
                _ => unknown(),
            })
        };
        let v = resolve(&node, &mut lookup).unwrap();
        assert_eq!(v["a"], json!(30));
        assert_eq!(v["b"], json!("n=30"));
        assert!(is_unknown(&v["c"][0]));
        assert!(contains_unknown(&v));
    }

    #[test]
    fn unknown_inside_a_longer_string_makes_it_unknown() {
        let node = yaml::parse("x: \"prefix-${q.arn}\"").unwrap();
        let v = resolve(&node, &mut |_: &Ref| -> Result<Value, ()> { Ok(unknown()) }).unwrap();
        assert!(is_unknown(&v["x"]));
    }
}
