//! `for_each`: a declaration with it becomes one declaration per key,
//! addressed `id["key"]`, before anything else reads the stack, so that
//! plans, state, apply, check and simulate see ordinary resources. References
//! to a collection's instances (`${id[each.key].attr}`, `${id[*].attr}`) and
//! to the instance's own key and value (`${each.key}`, `${each.value.FIELD}`)
//! are written out here; what is left is ordinary references.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::expr::{self, Each, Index, ModuleKey, Part, Ref};
use super::modules::{self, Outputs};
use super::yaml::{Node, NodeKind, Span};
use super::{Decl, Diagnostic, Stack};

/// Expands every `for_each` of `stack` with these variable values; problems
/// are diagnostics. A collection whose `for_each` is refused has no
/// instances.
pub fn expand(stack: &mut Stack, vars: &BTreeMap<String, Value>, diags: &mut Vec<Diagnostic>) {
    let mut members = BTreeMap::new();
    for decl in stack.decls.values() {
        if let Some(node) = &decl.for_each {
            let entries = collection(stack, &decl.id, node, vars, diags).unwrap_or_default();
            members.insert(decl.id.clone(), entries);
        }
    }
    stack.collections = members
        .iter()
        .map(|(id, entries)| (id.clone(), entries.iter().map(|(k, _)| k.clone()).collect()))
        .collect();
    let outputs = modules::instantiate(stack, vars, diags);
    let decls = std::mem::take(&mut stack.decls);
    for (id, decl) in decls {
        if decl.origin.is_some() {
            // A module's: written out already.
            stack.decls.insert(id, decl);
            continue;
        }
        let Some(entries) = members.get(&id) else {
            let plain = Rewriter::new(&stack.collections, &outputs, &id, None);
            stack.decls.insert(id.clone(), plain.decl(&decl, diags));
            continue;
        };
        for (key, value) in entries {
            let address = expr::address(&id, key);
            let instance =
                Rewriter::new(&stack.collections, &outputs, &address, Some((key, value)));
            let decl = instance.decl(&decl, diags);
            stack.decls.insert(address, decl);
        }
    }
    for (name, node) in stack.outputs.iter_mut() {
        let owner = format!("outputs.{name}");
        *node = Rewriter::new(&stack.collections, &outputs, &owner, None).output(node, diags);
    }
}

/// The keys and values a `for_each` names, checked.
pub(super) fn collection(
    stack: &Stack,
    owner: &str,
    node: &Node,
    vars: &BTreeMap<String, Value>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(String, Value)>> {
    let mut refuse = |message: String| {
        diags.push(
            Diagnostic::new(node.span, message)
                .at(owner)
                .prop("for_each"),
        );
    };
    let resolved = expr::resolve(node, &mut |r: &Ref| match r {
        Ref::Var(name) if stack.variables.get(name).is_some_and(|v| !v.sensitive) => {
            vars.get(name).cloned().ok_or(None)
        }
        other => Err(Some(other.clone())),
    });
    let value = match resolved {
        Ok(value) => value,
        // The variable has no value: said once, at the variable.
        Err(None) => return None,
        Err(Some(r)) => {
            refuse(format!(
                "`{r}`: for_each must be known before any AWS call and not secret: a list of strings, a map, or `${{var.NAME}}` of a variable that is not sensitive"
            ));
            return None;
        }
    };
    let entries: Vec<(String, Value)> = match value {
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .into_iter()
            .map(|i| (i.as_str().unwrap_or_default().to_string(), i))
            .collect(),
        Value::Object(m) => m.into_iter().collect(),
        other => {
            let kind = Node::literal(&other, node.span).kind_name();
            refuse(format!(
                "for_each must be a list of strings or a map; this is {kind}"
            ));
            return None;
        }
    };
    let mut seen = BTreeSet::new();
    for (key, _) in &entries {
        if !expr::is_key(key) {
            refuse(format!(
                "key `{key}`: keys name AWS objects, so they may hold only letters, digits, `-` and `_` (up to 64)"
            ));
            return None;
        }
        if !seen.insert(key) {
            refuse(format!("key `{key}` is listed twice"));
            return None;
        }
    }
    Some(entries)
}

/// A string rewritten: one value, or (a whole `${id[*].attr}`) the
/// references to every instance, which a list takes as its items.
enum Rewritten {
    One(Node),
    Many(Vec<Node>),
}

/// Rewrites the references of one declaration (or instance) or output.
pub(super) struct Rewriter<'a> {
    collections: &'a BTreeMap<String, Vec<String>>,
    /// `None` inside a module, which reads no module's outputs.
    outputs: Option<&'a Outputs>,
    /// Who the diagnostics name: the instance's address, or `outputs.NAME`.
    owner: &'a str,
    instance: Option<(&'a str, &'a Value)>,
}

impl<'a> Rewriter<'a> {
    pub(super) fn new(
        collections: &'a BTreeMap<String, Vec<String>>,
        outputs: &'a Outputs,
        owner: &'a str,
        instance: Option<(&'a str, &'a Value)>,
    ) -> Self {
        Rewriter {
            collections,
            outputs: Some(outputs),
            owner,
            instance,
        }
    }

    /// A rewriter of a module's declaration (or output) in the module's own
    /// scope: its collections, and the instance of one of them.
    pub(super) fn in_module(
        collections: &'a BTreeMap<String, Vec<String>>,
        owner: &'a str,
        instance: Option<(&'a str, &'a Value)>,
    ) -> Self {
        Rewriter {
            collections,
            outputs: None,
            owner,
            instance,
        }
    }

    pub(super) fn decl(&self, decl: &Decl, diags: &mut Vec<Diagnostic>) -> Decl {
        let mut d = decl.clone();
        d.id = self.owner.to_string();
        d.for_each = None;
        for p in &mut d.properties {
            p.value = self.value(&p.value, &mut |span, message| {
                diags.push(Diagnostic::new(span, message).at(self.owner).prop(&p.name))
            });
        }
        for need in &mut d.needs {
            need.resource = self.value(&need.resource, &mut |span, message| {
                diags.push(Diagnostic::new(span, message).at(self.owner).prop("needs"))
            });
        }
        d.depends_on = decl
            .depends_on
            .iter()
            .flat_map(|(dep, span)| match self.collections.get(dep) {
                Some(keys) => keys
                    .iter()
                    .map(|k| (expr::address(dep, k), *span))
                    .collect(),
                None => vec![(dep.clone(), *span)],
            })
            .collect();
        d
    }

    pub(super) fn output(&self, node: &Node, diags: &mut Vec<Diagnostic>) -> Node {
        self.value(node, &mut |span, message| {
            diags.push(Diagnostic::new(span, message).prop(self.owner))
        })
    }

    pub(super) fn value(&self, node: &Node, refuse: &mut dyn FnMut(Span, String)) -> Node {
        let kind = match &node.kind {
            NodeKind::Str(_) => match self.items(node, refuse).as_slice() {
                [one] if !self.is_splat(node) => return one.clone(),
                many => NodeKind::Seq(many.to_vec()),
            },
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.iter().flat_map(|i| self.items(i, refuse)).collect())
            }
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), self.value(v, refuse)))
                    .collect(),
            ),
            _ => return node.clone(),
        };
        Node {
            kind,
            span: node.span,
        }
    }

    fn is_splat(&self, node: &Node) -> bool {
        let parts = node.as_str().and_then(|s| expr::parse_template(s).ok());
        matches!(
            parts.as_deref(),
            Some(
                [Part::Ref(Ref::Instances {
                    index: Index::All,
                    ..
                })] | [Part::Ref(Ref::Module {
                    key: Some(ModuleKey::All),
                    ..
                })]
            )
        )
    }

    /// What a node becomes as an item of a list: a splat gives many.
    fn items(&self, node: &Node, refuse: &mut dyn FnMut(Span, String)) -> Vec<Node> {
        let NodeKind::Str(s) = &node.kind else {
            return vec![self.value(node, refuse)];
        };
        match self.string(s, node.span) {
            Ok(Rewritten::One(n)) => vec![n],
            Ok(Rewritten::Many(items)) => items,
            Err(message) => {
                refuse(node.span, message);
                vec![node.clone()]
            }
        }
    }

    fn string(&self, s: &str, span: Span) -> Result<Rewritten, String> {
        let unchanged = || Node {
            kind: NodeKind::Str(s.to_string()),
            span,
        };
        // Syntax errors are validation's to report.
        let Ok(parts) = expr::parse_template(s) else {
            return Ok(Rewritten::One(unchanged()));
        };
        let local = |p: &Part| {
            matches!(
                p,
                Part::Ref(
                    Ref::Each(_) | Ref::Instances { .. } | Ref::Module { .. } | Ref::Join { .. }
                )
            )
        };
        if !parts.iter().any(local) {
            return Ok(Rewritten::One(unchanged()));
        }
        if let [Part::Ref(r)] = parts.as_slice() {
            if let Some(whole) = self.whole(r, span)? {
                return Ok(whole);
            }
        }
        // A bare splat is a JSON list only in a JSON document's text.
        let json_text = s.trim_start().starts_with('{') && s.trim_end().ends_with('}');
        let mut text = String::new();
        for (i, part) in parts.iter().enumerate() {
            let around = (i.checked_sub(1).map(|p| &parts[p]), parts.get(i + 1));
            let position = json_position(around).filter(|_| json_text);
            match (part, position) {
                (Part::Ref(r @ Ref::Instances { id, index: Index::All, attr }), Some(true)) => {
                    text.push_str(&self.json_list(r, id, attr)?)
                }
                (Part::Ref(r @ Ref::Instances { index: Index::All, .. }), Some(false)) => {
                    return Err(format!("`{r}` is a list: in a JSON document, write it without quotes (`\"Resource\": {r}`) for a JSON list of its values"))
                }
                _ => text.push_str(&self.part(part)?),
            }
        }
        let kind = NodeKind::Str(text);
        Ok(Rewritten::One(Node { kind, span }))
    }

    /// A reference that is a whole value and keeps its type: a list over a
    /// collection's instances, a module's output, `each.value` that is not
    /// text. `None`: it is text like any other.
    fn whole(&self, r: &Ref, span: Span) -> Result<Option<Rewritten>, String> {
        let text = |s: String| Node {
            kind: NodeKind::Str(s),
            span,
        };
        Ok(Some(match r {
            Ref::Instances {
                id,
                index: Index::All,
                attr,
            } => Rewritten::Many(
                self.instance_refs(r, id, attr)?
                    .into_iter()
                    .map(text)
                    .collect(),
            ),
            Ref::Module {
                key: Some(ModuleKey::All),
                name,
                output,
            } => {
                let Some(outputs) = self.outputs else {
                    return Err(format!("`{r}` cannot be used inside a module"));
                };
                let keys = outputs.keys.get(name).cloned().flatten();
                let each = keys.unwrap_or_default().into_iter().map(|k| {
                    let one = Ref::Module {
                        name: name.clone(),
                        key: Some(ModuleKey::Key(k)),
                        output: output.clone(),
                    };
                    self.module_output(&one).map_err(|e| format!("`{r}`: {e}"))
                });
                Rewritten::Many(each.collect::<Result<_, _>>()?)
            }
            Ref::Module { .. } => Rewritten::One(self.module_output(r)?),
            Ref::Each(each) => match self.each(each)? {
                Value::String(_) => return Ok(None),
                value => Rewritten::One(Node::literal(&value, span)),
            },
            _ => return Ok(None),
        }))
    }

    /// `${id[*].attr}` where a JSON document has a value: the JSON list of
    /// the instances' values (`["${id["a"].attr}", ...]`; names and ARNs
    /// hold no quotes).
    fn json_list(&self, r: &Ref, id: &str, attr: &str) -> Result<String, String> {
        let quoted: Vec<String> = self
            .instance_refs(r, id, attr)?
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect();
        Ok(format!("[{}]", quoted.join(", ")))
    }

    /// `${id["key"].attr}` for each key of the collection `id`, in key order.
    fn instance_refs(&self, r: &Ref, id: &str, attr: &str) -> Result<Vec<String>, String> {
        let one = |key: &String| {
            let (id, attr) = (expr::address(id, key), attr.to_string());
            Ref::Resource { id, attr }.to_string()
        };
        Ok(self.keys(id, r)?.iter().map(one).collect())
    }

    /// One part of a longer string, as template text.
    fn part(&self, part: &Part) -> Result<String, String> {
        let escaped = |s: &str| s.replace("${", "$${");
        Ok(match part {
            Part::Lit(l) => escaped(l),
            Part::Ref(r @ Ref::Each(each)) => match self.each(each)? {
                Value::String(s) => escaped(&s),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                v => {
                    let kind = Node::literal(&v, Span::default()).kind_name();
                    return Err(format!(
                        "`{r}` is {kind}: name one of its fields, `${{each.value.FIELD}}`"
                    ));
                }
            },
            Part::Ref(
                r @ Ref::Instances {
                    id,
                    index: Index::EachKey,
                    attr,
                },
            ) => {
                let key = self.key(r)?;
                if !self.keys(id, r)?.iter().any(|k| k == key) {
                    let keys = self.keys(id, r)?.join(", ");
                    return Err(format!(
                        "`{r}`: `{id}` has no key `{key}` (its keys: {keys})"
                    ));
                }
                let id = expr::address(id, key);
                Ref::Resource {
                    id,
                    attr: attr.clone(),
                }
                .to_string()
            }
            Part::Ref(r @ Ref::Join { sep, id, attr }) => self
                .instance_refs(r, id, attr)?
                .join(&sep.replace("${", "$${")),
            Part::Ref(r @ Ref::Module { .. }) => match self.module_output(r)?.kind {
                NodeKind::Str(s) => s,
                NodeKind::Seq(_) | NodeKind::Map(_) => {
                    return Err(format!(
                        "`{r}` is a list or map: it must be the whole value"
                    ))
                }
                other => Node {
                    kind: other,
                    span: Span::default(),
                }
                .to_json()
                .to_string(),
            },
            Part::Ref(r @ Ref::Instances { .. }) => {
                return Err(format!(
                    "`{r}` is a list: it must be the whole value, or an item of a list"
                ))
            }
            Part::Ref(r) => r.to_string(),
        })
    }

    /// What `${module.NAME[KEY].OUTPUT}` stands for, in the stack's scope.
    fn module_output(&self, r: &Ref) -> Result<Node, String> {
        let Ref::Module { name, key, output } = r else {
            return Err(format!("`{r}` is not a module's output"));
        };
        let Some(outputs) = self.outputs else {
            return Err(format!("`{r}` cannot be used inside a module"));
        };
        let Some(keys) = outputs.keys.get(name) else {
            let names: Vec<&str> = outputs.keys.keys().map(String::as_str).collect();
            return Err(format!(
                "`{r}`: no module `{name}` is declared (modules: {})",
                names.join(", ")
            ));
        };
        let key = match (key, keys) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(format!("`{r}`: module `{name}` has `for_each`: name one instance, `${{module.{name}[\"KEY\"].{output}}}`, or all, `${{module.{name}[*].{output}}}`"))
            }
            (Some(_), None) => return Err(format!("`{r}`: module `{name}` has no `for_each`; use `${{module.{name}.{output}}}`")),
            (Some(ModuleKey::Key(k)), Some(_)) => Some(k.clone()),
            (Some(ModuleKey::EachKey), Some(_)) => Some(self.key(r)?.to_string()),
            (Some(ModuleKey::All), Some(_)) => {
                return Err(format!("`{r}` is a list: it must be the whole value, or an item of a list"))
            }
        };
        if let (Some(k), Some(keys)) = (&key, keys) {
            if !keys.contains(k) {
                return Err(format!(
                    "`{r}`: module `{name}` has no key `{k}` (its keys: {})",
                    keys.join(", ")
                ));
            }
        }
        let values = outputs.values.get(&(name.clone(), key));
        values.and_then(|o| o.get(output)).cloned().ok_or_else(|| {
            let outputs: Vec<&str> = values
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            format!(
                "`{r}`: module `{name}` has no output `{output}` (its outputs: {})",
                outputs.join(", ")
            )
        })
    }

    fn key(&self, r: &Ref) -> Result<&'a str, String> {
        self.instance
            .map(|(key, _)| key)
            .ok_or_else(|| format!("`{r}`: `each` is defined only in a resource with `for_each`"))
    }

    fn each(&self, each: &Each) -> Result<Value, String> {
        let r = Ref::Each(each.clone());
        let key = self.key(&r)?;
        let value = self.instance.map(|(_, v)| v).unwrap_or(&Value::Null);
        match each {
            Each::Key => Ok(Value::from(key)),
            Each::Value => Ok(value.clone()),
            Each::Field(field) => match value {
                Value::Object(m) => m.get(field).cloned().ok_or_else(|| {
                    let fields: Vec<&str> = m.keys().map(String::as_str).collect();
                    format!(
                        "`{r}`: the value of key `{key}` has no field `{field}` (its fields: {})",
                        fields.join(", ")
                    )
                }),
                _ => Err(format!(
                    "`{r}`: the value of key `{key}` is not a map; use `${{each.value}}`"
                )),
            },
        }
    }

    fn keys(&self, id: &str, r: &dyn std::fmt::Display) -> Result<&'a [String], String> {
        self.collections.get(id).map(Vec::as_slice).ok_or_else(|| {
            format!("`{r}`: `{id}` has no `for_each`; refer to it as `${{{id}.ATTRIBUTE}}`")
        })
    }
}

/// Whether a reference between these parts stands where a JSON document
/// has a value: `Some(true)` bare (after `:`, `[` or `,`, before `,`, `]` or
/// `}`), `Some(false)` in quotes there, `None` elsewhere (plain text).
fn json_position((before, after): (Option<&Part>, Option<&Part>)) -> Option<bool> {
    let text = |p: Option<&Part>| match p {
        Some(Part::Lit(l)) => l.clone(),
        _ => String::new(),
    };
    let (before, after) = (text(before), text(after));
    let (before, after) = (before.trim_end(), after.trim_start());
    let opens = |b: &str| b.ends_with(':') || b.ends_with('[') || b.ends_with(',');
    let closes = |a: &str| a.starts_with(',') || a.starts_with(']') || a.starts_with('}');
    if opens(before) && closes(after) {
        return Some(true);
    }
    let quoted = before
        .strip_suffix('"')
        .is_some_and(|b| opens(b.trim_end()))
        && after
            .strip_prefix('"')
            .is_some_and(|a| closes(a.trim_start()));
    quoted.then_some(false)
}
