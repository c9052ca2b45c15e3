//! Everything that can be checked without AWS: types, properties, references,
//! cycles and AWS's own rules for values. Runs before any AWS call.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::config::expr::{self, Ref, StackField};
use crate::config::yaml::{Node, NodeKind, Span};
use crate::config::{ConfigError, Decl, Diagnostic, Stack, VarKind};
use crate::graph::Graph;
use crate::providers;
use crate::schema::{self, contains_unknown, Kind, Props, Schema, Target};
use crate::spelling::nearest;

/// A stack that passed validation, with its variables and dependency graph.
#[derive(Debug, Clone)]
pub struct Validated {
    pub stack: Stack,
    pub vars: BTreeMap<String, Value>,
    pub graph: Graph,
    /// Variables declared `sensitive: true`.
    pub sensitive_vars: BTreeSet<String>,
    /// What this run masks in everything it prints.
    pub redactor: std::sync::Arc<crate::sensitive::Redactor>,
}

impl Validated {
    pub fn schema(&self, id: &str) -> &'static Schema {
        let decl = &self.stack.decls[id];
        providers::lookup(&decl.type_name)
            .map(|p| p.schema())
            .unwrap_or_else(|| unreachable!("validated type {}", decl.type_name))
    }

    /// The sensitive paths of a declared resource with these resolved
    /// properties; their values are remembered for redaction.
    pub fn sensitive_paths(&self, id: &str, props: &Props) -> Vec<crate::sensitive::Path> {
        let paths =
            crate::sensitive::paths(&self.stack.decls[id], self.schema(id), &self.sensitive_vars);
        self.redactor.register_at(props, &paths);
        paths
    }

    pub fn uses_account_id(&self) -> bool {
        let all_nodes = self
            .stack
            .decls
            .values()
            .flat_map(|d| d.properties.iter().map(|p| &p.value))
            .chain(self.stack.outputs.values());
        all_nodes
            .flat_map(expr::refs_in)
            .any(|(r, _)| r == Ref::Stack(StackField::AccountId))
    }
}

/// "did you mean `x`?", or the whole list when nothing is close.
fn suggest(word: &str, known: &[&str], what: &str) -> String {
    match nearest(word, known) {
        Some(near) => format!("did you mean `{near}`?"),
        None if known.is_empty() => format!("{what}: none"),
        None => format!("{what}: {}", known.join(", ")),
    }
}

/// `--var name=value` pairs, parsed.
pub fn parse_var(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`--var {arg}` must be `--var name=value`"))
}

pub fn validate(
    stack: Stack,
    cli_vars: &[(String, String)],
    region: Option<&str>,
) -> Result<Validated, ConfigError> {
    let (v, rules) = validate_lenient(stack, cli_vars, region)?;
    if rules.is_empty() {
        Ok(v)
    } else {
        Err(ConfigError {
            file: v.stack.path.clone(),
            diagnostics: rules,
        })
    }
}

/// A property expansion refused is told once: what expansion left of it
/// would be refused again by the checks and rules after it.
fn told_once(diags: &mut Vec<Diagnostic>, rules: &mut Vec<Diagnostic>, expansion: usize) {
    let key = |d: &Diagnostic| (d.resource.clone(), d.property.clone());
    let refused: BTreeSet<_> = diags[..expansion]
        .iter()
        .filter(|d| d.property.is_some())
        .map(key)
        .collect();
    let mut at = 0;
    diags.retain(|d| {
        at += 1;
        at <= expansion || !refused.contains(&key(d))
    });
    rules.retain(|d| !refused.contains(&key(d)));
}

/// Validation that lets a structurally sound stack through with the values
/// AWS would refuse listed beside it (what `stackctl check` reports among its
/// findings); anything else wrong is an error.
pub fn validate_lenient(
    stack: Stack,
    cli_vars: &[(String, String)],
    region: Option<&str>,
) -> Result<(Validated, Vec<Diagnostic>), ConfigError> {
    let mut diags = Vec::new();
    let mut rules = Vec::new();
    let vars = variables(&stack, cli_vars, &mut diags);
    let mut stack = stack;
    crate::config::expand(&mut stack, &vars, &mut diags);
    let refused_in_expansion = diags.len();
    add_env_tags(&mut stack);
    let mut deps = BTreeMap::new();
    for decl in stack.decls.values() {
        let Some(schema) = known_type(decl, &mut diags) else {
            continue;
        };
        check_properties(&stack, decl, schema, &vars, region, &mut diags, &mut rules);
        deps.insert(
            decl.id.clone(),
            dependencies(&stack, decl, &vars, &mut diags),
        );
    }
    check_outputs(&stack, &vars, &mut diags);
    check_moves(&stack, &mut diags);
    check_identities(&stack, &vars, region, &mut diags);
    let graph = graph_of(&stack, deps, &mut diags);
    told_once(&mut diags, &mut rules, refused_in_expansion);
    for d in diags.iter_mut().chain(rules.iter_mut()) {
        let decl = d.resource.as_ref().and_then(|id| stack.decls.get(id));
        if let Some(origin) = decl
            .and_then(|decl| decl.origin.clone())
            .filter(|_| d.origin.is_none())
        {
            d.origin = Some(origin);
        }
    }
    rules.sort_by_key(|d| (d.span.line, d.span.col));
    if !diags.is_empty() {
        diags.extend(rules);
        diags.sort_by_key(|d| (d.span.line, d.span.col));
        return Err(ConfigError {
            file: stack.path.clone(),
            diagnostics: diags,
        });
    }
    let sensitive_vars: BTreeSet<String> = stack
        .variables
        .iter()
        .filter(|(_, var)| var.sensitive)
        .map(|(name, _)| name.clone())
        .collect();
    let redactor = std::sync::Arc::new(crate::sensitive::Redactor::default());
    for value in sensitive_vars.iter().filter_map(|name| vars.get(name)) {
        redactor.register(value);
    }
    let v = Validated {
        stack,
        vars,
        graph,
        sensitive_vars,
        redactor,
    };
    Ok((v, rules))
}

/// The environment's tags, under each taggable resource's own.
fn add_env_tags(stack: &mut Stack) {
    let Some(env) = stack.env.as_ref().filter(|e| !e.tags.is_empty()) else {
        return;
    };
    for decl in stack.decls.values_mut().filter(|d| !d.is_data) {
        let taggable = providers::lookup(&decl.type_name).is_some_and(|p| p.schema().taggable());
        if !taggable {
            continue;
        }
        let tags = crate::config::with_env_tags(
            decl.property("tags").map(|p| &p.value),
            &env.tags,
            decl.span,
        );
        match decl.properties.iter_mut().find(|p| p.name == "tags") {
            Some(p) => p.value = tags,
            None => decl.properties.push(crate::config::Property {
                name: "tags".into(),
                key_span: decl.span,
                value: tags,
            }),
        }
    }
}

/// The schema of a declaration's type, if the type exists and is declared
/// where it belongs (resources or data).
fn known_type(decl: &Decl, diags: &mut Vec<Diagnostic>) -> Option<&'static Schema> {
    let Some(schema) = providers::lookup(&decl.type_name).map(|p| p.schema()) else {
        let known: Vec<_> = providers::all().map(|p| p.schema().type_name).collect();
        let hint = suggest(&decl.type_name, &known, "known types");
        let message = format!("unknown type `{}` ({hint})", decl.type_name);
        diags.push(Diagnostic::new(decl.type_span, message).at(&decl.id));
        return None;
    };
    let misplaced = match (schema.kind, decl.is_data) {
        (Kind::Data, false) => Some("a data source; declare it under `data:`"),
        (Kind::Resource, true) => Some("a resource; declare it under `resources:`"),
        _ => None,
    };
    if let Some(what) = misplaced {
        let message = format!("`{}` is {what}", schema.type_name);
        diags.push(Diagnostic::new(decl.type_span, message).at(&decl.id));
    }
    Some(schema)
}

/// What a declaration depends on: the resources its properties refer to and
/// those its `depends_on` names; references in `needs` are checked.
fn dependencies(
    stack: &Stack,
    decl: &Decl,
    vars: &BTreeMap<String, Value>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    for need in &decl.needs {
        for (r, n) in expr::refs_in(&need.resource) {
            if let Some(message) = reference_error(stack, &r, None, vars) {
                diags.push(Diagnostic::new(n.span, message).at(&decl.id).prop("needs"));
            }
        }
    }
    let mut deps: BTreeSet<String> = decl
        .properties
        .iter()
        .flat_map(|p| expr::refs_in(&p.value))
        .filter_map(|(r, _)| match r {
            Ref::Resource { id, .. } if stack.decls.contains_key(&id) => Some(id),
            _ => None,
        })
        .collect();
    for (dep, span) in &decl.depends_on {
        if stack.decls.contains_key(dep) {
            deps.insert(dep.clone());
        } else {
            let mut message = format!("`depends_on` names `{dep}`, which is not declared");
            if let Some(id) =
                expr::terraform_address(dep).filter(|id| stack.decls.contains_key(*id))
            {
                message.push_str(&format!(" (a resource is named by its id alone: `{id}`)"));
            }
            diags.push(Diagnostic::new(*span, message).at(&decl.id));
        }
    }
    deps
}

fn check_outputs(stack: &Stack, vars: &BTreeMap<String, Value>, diags: &mut Vec<Diagnostic>) {
    for (name, node) in &stack.outputs {
        let at = format!("outputs.{name}");
        for (message, n) in expr::template_errors(node) {
            diags.push(Diagnostic::new(n.span, message).prop(&at));
        }
        for (r, n) in expr::refs_in(node) {
            if let Some(message) = reference_error(stack, &r, None, vars) {
                diags.push(Diagnostic::new(n.span, message).prop(&at));
            }
        }
    }
}

/// A move names where a record goes, a resource the stack declares, from
/// what it no longer declares; each record moves once.
/// A move's `to` need not be declared: an entry applies only to a state that
/// records its `from` (an old state brought over), and the plan refuses it
/// then if `to` is not declared; so a fleet may drop the key its old
/// resources were moved to.
fn check_moves(stack: &Stack, diags: &mut Vec<Diagnostic>) {
    let mut from_seen = BTreeSet::new();
    for m in &stack.moves {
        let problem = if stack.decls.contains_key(&m.from) {
            Some(format!(
                "moves `{}`, which the stack still declares; remove its declaration",
                m.from
            ))
        } else if !from_seen.insert(&m.from) {
            Some(format!("`{}` is moved twice", m.from))
        } else {
            None
        };
        if let Some(message) = problem {
            diags.push(Diagnostic::new(m.span, message).prop("moved"));
        }
    }
}

/// Two declarations whose identities (the names AWS keys an object by) are
/// the same offline would be one object in AWS: a fleet's keys given the same
/// names, say. Said at the later one; identities that depend on another
/// resource's attributes are not known until apply and not compared.
fn check_identities(
    stack: &Stack,
    vars: &BTreeMap<String, Value>,
    region: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut seen: BTreeMap<(&str, Vec<String>), &str> = BTreeMap::new();
    let mut decls: Vec<&Decl> = stack.decls.values().filter(|d| !d.is_data).collect();
    decls.sort_by_key(|d| (d.span.line, d.span.col, &d.id));
    for decl in decls {
        let Some(schema) = providers::lookup(&decl.type_name).map(|p| p.schema()) else {
            continue;
        };
        let Some(identity) = known_identity(stack, decl, schema, vars, region) else {
            continue;
        };
        let names: Vec<String> = identity
            .iter()
            .filter(|v| !v.is_null())
            .map(plain)
            .collect();
        let key = (
            schema.type_name,
            identity.iter().map(Value::to_string).collect(),
        );
        if let Some(first) = seen.get(&key) {
            let message = format!(
                "names the same {} as `{first}` ({}): two resources would be one object in AWS; give each its own name",
                schema.type_name,
                names.join(", ")
            );
            let prop = decl
                .property(schema.identity[0])
                .map_or(decl.span, |p| p.key_span);
            diags.push(
                Diagnostic::new(prop, message)
                    .at(&decl.id)
                    .prop(schema.identity[0]),
            );
        } else {
            seen.insert(key, &decl.id);
        }
    }
}

/// The values of a declaration's identity properties where each is known
/// offline (an absent one is null) and at least one is a string.
fn known_identity(
    stack: &Stack,
    decl: &Decl,
    schema: &Schema,
    vars: &BTreeMap<String, Value>,
    region: Option<&str>,
) -> Option<Vec<Value>> {
    let values: Vec<Value> = schema
        .identity
        .iter()
        .map(|name| match decl.property(name) {
            Some(p) => offline_value(stack, &p.value, vars, region),
            None => Value::Null,
        })
        .collect();
    let known = !values.iter().any(contains_unknown);
    (known && values.iter().any(Value::is_string)).then_some(values)
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The dependency graph over the declarations of known types; a cycle is a
/// diagnostic.
fn graph_of(
    stack: &Stack,
    mut deps: BTreeMap<String, BTreeSet<String>>,
    diags: &mut Vec<Diagnostic>,
) -> Graph {
    let known: BTreeSet<String> = deps.keys().cloned().collect();
    for ds in deps.values_mut() {
        ds.retain(|d| known.contains(d));
    }
    let rank = |id: &str| stack.decls.get(id).map_or(usize::MAX, |d| d.span.line);
    Graph::build(deps, &rank).unwrap_or_else(|cycle| {
        let first = cycle.0.first().cloned().unwrap_or_default();
        let span = stack.decls.get(&first).map(|d| d.span).unwrap_or_default();
        diags.push(Diagnostic::new(span, format!("dependency cycle: {cycle}")).at(&first));
        Graph::default()
    })
}

fn variables(
    stack: &Stack,
    cli_vars: &[(String, String)],
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut vars = BTreeMap::new();
    for (name, value) in cli_vars {
        if !stack.variables.contains_key(name) {
            let declared: Vec<_> = stack.variables.keys().map(String::as_str).collect();
            diags.push(Diagnostic::new(
                Span { line: 0, col: 0 },
                format!(
                    "--var {name}: the stack declares no variable `{name}` ({})",
                    suggest(name, &declared, "declared")
                ),
            ));
        }
        let kind = stack.variables.get(name).and_then(|v| v.kind);
        vars.insert(name.clone(), cli_value(name, value, kind, diags));
    }
    for (name, var) in &stack.variables {
        if vars.contains_key(name) {
            continue;
        }
        match &var.default {
            Some(node) => {
                vars.insert(name.clone(), node.to_json());
            }
            None => diags.push(Diagnostic::new(
                var.span,
                format!("variable `{name}` has no default; pass --var {name}=VALUE"),
            )),
        }
    }
    vars
}

/// A `--var` value: text, or for a list or map variable the collection it
/// spells in YAML or JSON.
fn cli_value(name: &str, text: &str, kind: Option<VarKind>, diags: &mut Vec<Diagnostic>) -> Value {
    let Some(kind @ (VarKind::List | VarKind::Map)) = kind else {
        return Value::String(text.to_string());
    };
    let parsed = crate::config::yaml::parse(text).map(|n| n.to_json());
    match parsed {
        Ok(v) if VarKind::of(&v) == Some(kind) => v,
        _ => {
            let example = match kind {
                VarKind::List => "[web-1, web-2]",
                _ => "{web-1: {size: t3.micro}}",
            };
            let message = format!(
                "--var {name}: must be a {} (in YAML or JSON, such as {example})",
                kind.name()
            );
            diags.push(Diagnostic::new(Span { line: 0, col: 0 }, message));
            Value::Null
        }
    }
}

fn reference_error(
    stack: &Stack,
    r: &Ref,
    this: Option<&str>,
    vars: &BTreeMap<String, Value>,
) -> Option<String> {
    match r {
        Ref::Var(name) if !stack.variables.contains_key(name) => {
            let declared: Vec<&str> = stack.variables.keys().map(String::as_str).collect();
            Some(match nearest(name, &declared) {
                Some(near) => {
                    format!("`{r}` names an undeclared variable (did you mean `{near}`?)")
                }
                None => {
                    format!("`{r}` names an undeclared variable; declare it under `variables:`")
                }
            })
        }
        Ref::Var(name) if !vars.contains_key(name) => None, // reported once, at the variable
        Ref::Resource { id, .. } if Some(id.as_str()) == this => {
            Some(format!("`{r}` refers to the resource itself"))
        }
        Ref::Resource { id, attr } => {
            match stack.decls.get(id) {
                None if collection_error(stack, r, id).is_some() => collection_error(stack, r, id),
                None => {
                    let ids: Vec<&str> = stack.decls.keys().map(String::as_str).collect();
                    Some(match nearest(id, &ids) {
                    Some(near) => format!("`{r}` refers to `{id}`, which is not declared (did you mean `{near}`?)"),
                    None => format!("`{r}` refers to `{id}`, which is not declared"),
                })
                }
                Some(target) => match providers::lookup(&target.type_name).map(|p| p.schema()) {
                    Some(schema) if !schema.is_referenceable(attr) => {
                        let names: Vec<&str> = schema
                            .attrs
                            .iter()
                            .map(|a| a.name)
                            .chain(schema.props.iter().map(|p| p.name))
                            .collect();
                        let attrs: Vec<&str> = schema.attrs.iter().map(|a| a.name).collect();
                        Some(format!(
                            "`{r}`: `{}` has no attribute `{attr}` ({})",
                            schema.type_name,
                            match nearest(attr, &names) {
                                Some(near) => format!("did you mean `{near}`?"),
                                None => format!("attributes: {}", attrs.join(", ")),
                            }
                        ))
                    }
                    _ => None,
                },
            }
        }
        _ => None,
    }
}

/// Why a reference to `id` names no instance: a key the collection does
/// not have, an index on what has no `for_each`, or no index on what has.
fn collection_error(stack: &Stack, r: &Ref, id: &str) -> Option<String> {
    let (base, key) = expr::split_address(id);
    match (stack.collections.get(base), key) {
        (Some(keys), Some(key)) => Some(format!(
            "`{r}`: `{base}` has no key `{key}` (its keys: {})",
            keys.join(", ")
        )),
        (Some(keys), None) => Some(format!(
            "`{r}`: `{base}` is a collection (for_each): name one instance, `${{{}.ATTRIBUTE}}`, or all of them, `${{{base}[*].ATTRIBUTE}}`",
            expr::address(base, keys.first().map_or("KEY", String::as_str))
        )),
        (None, Some(_)) if stack.decls.contains_key(base) => Some(format!(
            "`{r}`: `{base}` has no `for_each`; refer to it as `${{{base}.ATTRIBUTE}}`"
        )),
        _ => None,
    }
}

/// The references of a property that names resources (`queue_url`,
/// `alarm_actions`) which name one of another type or in another form
/// (`${q.arn}` where the queue's URL belongs), with the attribute that fits.
/// `misnamed` for a property and, inside a block or a list of blocks, for
/// each of its fields that takes a resource (`vpc_config.security_group_ids`).
fn misnamed_within<'n>(
    stack: &Stack,
    name: &str,
    prop: &schema::Prop,
    node: &'n Node,
) -> Vec<(String, &'n Node)> {
    let mut out = misnamed(stack, name, prop.takes, node);
    let (schema::Type::Object(fields) | schema::Type::List(&schema::Type::Object(fields))) =
        prop.ty
    else {
        return out;
    };
    let blocks: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    for (block, field) in blocks
        .into_iter()
        .flat_map(|b| fields.iter().map(move |f| (b, f)))
    {
        if let Some(value) = block.get(field.name) {
            let name = format!("{name}.{}", field.name);
            out.extend(misnamed_within(stack, &name, field, value));
        }
    }
    out
}

/// Only a string that is wholly a reference is judged: text around one
/// builds a value of its own.
fn misnamed<'n>(
    stack: &Stack,
    prop: &str,
    takes: &[Target],
    node: &'n Node,
) -> Vec<(String, &'n Node)> {
    if takes.is_empty() {
        return Vec::new();
    }
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for n in items {
        let NodeKind::Str(text) = &n.kind else {
            continue;
        };
        let parts = expr::parse_template(text).unwrap_or_default();
        let [expr::Part::Ref(r @ Ref::Resource { id, attr })] = parts.as_slice() else {
            continue;
        };
        let Some(schema) = stack
            .decls
            .get(id)
            .and_then(|d| providers::lookup(&d.type_name))
            .map(|p| p.schema())
        else {
            continue;
        };
        let Some(form) = schema.names_as(attr) else {
            continue;
        };
        let fits = |t: &str| t == "*" || t == schema.type_name;
        if takes.iter().any(|(t, f)| fits(t) && *f == form) {
            continue;
        }
        let wanted = takes.iter().find(|(t, _)| fits(t));
        let message = match wanted.and_then(|(_, f)| Some((*f, schema.name_in(*f)?))) {
            Some((f, fit)) => format!(
                "`{prop}` takes the {} of {}, and `{r}` is its {}: use `${{{id}.{fit}}}`",
                f.describe(),
                article(schema.type_name),
                form.describe(),
            ),
            None => format!(
                "`{prop}` takes {}, and `{r}` names {}",
                takes
                    .iter()
                    .map(|(t, f)| format!("the {} of {}", f.describe(), article(t)))
                    .collect::<Vec<_>>()
                    .join(" or "),
                article(schema.type_name)
            ),
        };
        out.push((message, n));
    }
    out
}

/// `an aws_sqs_queue`; `*` is any resource.
fn article(type_name: &str) -> String {
    match type_name {
        "*" => "a resource".into(),
        t if t.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {t}"),
        t => format!("a {t}"),
    }
}

/// A document written as a JSON string with references in it, each one not
/// known offline stood in for by `0` (valid inside a JSON string and as a
/// number): its syntax and shape are checked before anything exists, as AWS
/// will see them once the references are filled in.
fn document_text(
    stack: &Stack,
    node: &Node,
    vars: &BTreeMap<String, Value>,
    region: Option<&str>,
) -> Value {
    let scope = expr::Scope {
        vars,
        stack_name: &stack.name,
        region,
        account_id: None,
        resource: &|_, _| None,
    };
    expr::resolve(node, &mut |r| {
        let v = scope.lookup(r);
        Ok::<_, ()>(if schema::is_unknown(&v) {
            Value::from(0)
        } else {
            v
        })
    })
    .unwrap_or_else(|()| schema::unknown())
}

/// The value as far as it is known offline: variables and the stack's name and
/// region resolve, everything from AWS is unknown.
fn offline_value(
    stack: &Stack,
    node: &Node,
    vars: &BTreeMap<String, Value>,
    region: Option<&str>,
) -> Value {
    expr::Scope {
        vars,
        stack_name: &stack.name,
        region,
        account_id: None,
        resource: &|_, _| None,
    }
    .resolve(node)
}

fn check_properties(
    stack: &Stack,
    decl: &Decl,
    schema: &'static Schema,
    vars: &BTreeMap<String, Value>,
    region: Option<&str>,
    diags: &mut Vec<Diagnostic>,
    rules: &mut Vec<Diagnostic>,
) {
    let mut c = PropertyCheck {
        stack,
        decl,
        schema,
        vars,
        region,
        diags,
        rules,
    };
    let mut props = Props::new();
    for p in &decl.properties {
        let Some(prop) = c.declared(p) else { continue };
        if c.expressions_ok(p, prop) {
            if let Some(value) = c.value(p, prop) {
                props.insert(p.name.clone(), value);
            }
        }
    }
    c.whole(props);
}

/// The checks of one declaration's properties, with where their findings go:
/// errors (`diags`) and AWS's rules (`rules`).
struct PropertyCheck<'a> {
    stack: &'a Stack,
    decl: &'a Decl,
    schema: &'static Schema,
    vars: &'a BTreeMap<String, Value>,
    region: Option<&'a str>,
    diags: &'a mut Vec<Diagnostic>,
    rules: &'a mut Vec<Diagnostic>,
}

impl PropertyCheck<'_> {
    fn error(&mut self, span: Span, message: String, prop: &str) {
        let d = Diagnostic::new(span, message).at(&self.decl.id).prop(prop);
        self.diags.push(d);
    }

    fn rule(&mut self, span: Span, message: String, prop: &str) {
        let d = Diagnostic::new(span, message).at(&self.decl.id).prop(prop);
        self.rules.push(d);
    }

    /// The schema's property a written one is, unless it has none or
    /// stackctl computes it.
    fn declared(&mut self, p: &crate::config::Property) -> Option<&'static schema::Prop> {
        let schema = self.schema;
        let Some(prop) = schema.prop(&p.name) else {
            let names: Vec<_> = schema.props.iter().map(|p| p.name).collect();
            let hint = suggest(&p.name, &names, "properties");
            let message = format!(
                "`{}` has no property `{}` ({hint})",
                schema.type_name, p.name
            );
            self.error(p.key_span, message, &p.name);
            return None;
        };
        if prop.computed {
            let why = prop.doc.trim_end_matches('.');
            let message = format!("`{}` is computed by stackctl ({why}); remove it", p.name);
            self.error(p.key_span, message, &p.name);
            return None;
        }
        Some(prop)
    }

    /// Whether its templates parse and its references name what exists, in
    /// the form the property takes.
    fn expressions_ok(&mut self, p: &crate::config::Property, prop: &schema::Prop) -> bool {
        let mut ok = true;
        for (message, n) in expr::template_errors(&p.value) {
            self.error(n.span, message, &p.name);
            ok = false;
        }
        for (r, n) in expr::refs_in(&p.value) {
            let id = Some(self.decl.id.as_str());
            if let Some(message) = reference_error(self.stack, &r, id, self.vars) {
                self.error(n.span, message, &p.name);
                ok = false;
            } else if self.decl.is_data && matches!(r, Ref::Resource { .. }) {
                let message = format!("`{r}`: data sources are read before anything is created, so they may only use variables and stack values");
                self.error(n.span, message, &p.name);
                ok = false;
            }
        }
        for (message, n) in misnamed_within(self.stack, &p.name, prop, &p.value) {
            self.error(n.span, message, &p.name);
            ok = false;
        }
        ok
    }

    /// Its value as far as it is known offline, of the property's type; AWS's
    /// rule for it checked where the value is known.
    fn value(&mut self, p: &crate::config::Property, prop: &schema::Prop) -> Option<Value> {
        let (stack, vars, region) = (self.stack, self.vars, self.region);
        let is_document = matches!(prop.ty, schema::Type::Policy | schema::Type::Json);
        let mut value = offline_value(stack, &p.value, vars, region);
        if is_document && schema::is_unknown(&value) {
            value = document_text(stack, &p.value, vars, region);
        }
        let v = match schema::coerce(&prop.ty, value) {
            Ok(v) => v,
            Err(message) => {
                self.error(p.value.span, message, &p.name);
                return None;
            }
        };
        // A document's shape can be checked while some of its values are
        // still unknown; other rules need the whole value.
        let checkable = match is_document {
            true => !schema::is_unknown(&v),
            false => !contains_unknown(&v),
        };
        if let (Some(check), true) = (prop.check, checkable) {
            if let Err(message) = check(&v) {
                self.rule(p.value.span, message, &p.name);
            }
        }
        Some(v)
    }

    /// The rules over the whole declaration: required properties, rules
    /// between properties, and what the type derives from them.
    fn whole(&mut self, props: Props) {
        let (decl, schema) = (self.decl, self.schema);
        for prop in schema.props.iter().filter(|p| p.required) {
            if decl.property(prop.name).is_none() {
                let message = format!("missing required property `{}` ({})", prop.name, prop.doc);
                self.error(decl.span, message, prop.name);
            }
        }
        let span_of = |name: &str| decl.property(name).map_or(decl.span, |p| p.value.span);
        let mut props = schema.with_defaults(&props);
        if let Some(cross) = schema.cross_check {
            for (name, message) in cross(&props) {
                self.rule(span_of(name), message, name);
            }
        }
        // What derive reads is on this machine (a zip, a crate): a file it
        // cannot read is the stack's error, not a value AWS would refuse.
        if let Some(provider) = providers::lookup(&decl.type_name) {
            if let Err((name, message)) = provider.derive(&mut props, &self.stack.dir()) {
                self.error(span_of(name), message, name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(src: &str) -> Result<Validated, String> {
        let stack = Stack::parse(Path::new("stack.yaml"), src).map_err(|e| e.to_string())?;
        validate(stack, &[], Some("us-east-2")).map_err(|e| e.to_string())
    }

    /// Validation refuses `result`'s stack with a message containing `expected`.
    #[track_caller]
    fn refused(result: Result<Validated, String>, expected: &str) {
        match result {
            Ok(_) => panic!("accepted; expected a refusal containing {expected:?}"),
            Err(err) => assert!(err.contains(expected), "{err}"),
        }
    }

    #[test]
    fn a_missing_local_file_is_the_stacks_error_even_to_check() {
        let src = format!("{HEAD}resources:\n  f:\n    type: aws_lambda_function\n    properties:\n      function_name: f1\n      role: arn:aws:iam::123456789012:role/r\n      runtime: provided.al2023\n      handler: bootstrap\n      filename: missing.zip\n");
        let stack = Stack::parse(Path::new("stack.yaml"), &src).unwrap();
        let err = validate_lenient(stack, &[], Some("us-east-2"))
            .err()
            .unwrap()
            .to_string();
        assert_contains!(
            err,
            "stack.yaml:11: `f`, property `filename`: cannot read ./missing.zip"
        );
        assert!(!err.contains("AWS would refuse"), "{err}");
    }

    const HEAD: &str = "stack: demo\nregion: us-east-2\n";

    #[test]
    fn a_valid_messaging_stack_passes() {
        let v = check(&format!(
            "{HEAD}resources:\n  topic:\n    type: aws_sns_topic\n    properties: {{name: t1}}\n  queue:\n    type: aws_sqs_queue\n    properties: {{name: q1}}\n  sub:\n    type: aws_sns_topic_subscription\n    properties:\n      topic_arn: ${{topic.arn}}\n      protocol: sqs\n      endpoint: ${{queue.arn}}\n"
        ))
        .unwrap();
        let pos = |id: &str| v.graph.order.iter().position(|x| x == id).unwrap();
        assert!(pos("topic") < pos("sub") && pos("queue") < pos("sub"));
    }

    #[test]
    fn unknown_type_names_resource_and_line() {
        refused(
            check(&format!(
                "{HEAD}resources:\n  t:\n    type: aws_sns_topik\n"
            )),
            "stack.yaml:5: `t`: unknown type `aws_sns_topik`",
        );
    }

    #[test]
    fn unknown_and_missing_properties() {
        let err = check(&format!(
            "{HEAD}resources:\n  t:\n    type: aws_sns_topic\n    properties:\n      nam: x\n"
        ))
        .unwrap_err();
        assert_contains!(
            err,
            "stack.yaml:7: `t`, property `nam`: `aws_sns_topic` has no property `nam`"
        );
        assert_contains!(
            err,
            "stack.yaml:4: `t`, property `name`: missing required property `name`"
        );
    }

    #[test]
    fn misspelt_names_get_the_nearest_known_one() {
        let err = check(&format!(
            "{HEAD}variables:\n  ssh_cidr: 10.0.0.0/8\nresources:\n  inbox:\n    type: aws_sqs_queue\n    properties:\n      name: q\n      visibilty_timeout_seconds: 60\n  topik:\n    type: aws_sns_topik\n  sub:\n    type: aws_sns_topic_subscription\n    properties:\n      topic_arn: ${{inbx.arn}}\n      protocol: sqs\n      endpoint: ${{inbox.urll}}\n      raw_message_delivery: ${{var.ssh_cdir}}\n"
        ))
        .unwrap_err();
        for expected in [
            "`aws_sqs_queue` has no property `visibilty_timeout_seconds` (did you mean `visibility_timeout_seconds`?)",
            "unknown type `aws_sns_topik` (did you mean `aws_sns_topic`?)",
            "refers to `inbx`, which is not declared (did you mean `inbox`?)",
            "`aws_sqs_queue` has no attribute `urll` (did you mean `url`?)",
            "`${var.ssh_cdir}` names an undeclared variable (did you mean `ssh_cidr`?)",
        ] {
            assert!(err.contains(expected), "{expected}\n{err}");
        }
        assert!(
            !err.contains("properties: `name`"),
            "no whole list when one name is close: {err}"
        );
    }

    #[test]
    fn a_security_group_rules_fields_are_checked_as_aws_would() {
        let group = |rule: &str| {
            check(&format!("{HEAD}resources:\n  web:\n    type: aws_security_group\n    properties:\n      name: web\n      ingress:\n        - {{{rule}}}\n"))
        };
        refused(
            group("from_port: 443, to_port: 443, protocol: TCP, cidr_blocks: [10.0.0.0/8]"),
            "stack.yaml:9: `web`, property `ingress`: item 1: `protocol` must be tcp, udp, icmp, icmpv6 or -1",
        );
        refused(
            group("from_port: 443, to_port: 443, protocol: tcp, cidr_blocks: [nonsense]"),
            "item 1: `cidr_blocks` must be CIDR blocks such as 203.0.113.0/24 (`nonsense` is not)",
        );
        refused(
            group("from_port: 443, to_port: 443, protocol: tcp, ipv6_cidr_blocks: [10.0.0.0/8]"),
            "item 1: `ipv6_cidr_blocks` must be IPv6 CIDR blocks such as 2001:db8::/32 (`10.0.0.0/8` is not)",
        );
        refused(
            group("from_port: 443, to_port: 443, protocol: tcp"),
            "rule 1 allows no one: give it cidr_blocks, ipv6_cidr_blocks, security_groups, prefix_list_ids or self: true",
        );
        refused(
            group("from_port: 0, to_port: 65535, protocol: \"-1\", cidr_blocks: [10.0.0.0/8]"),
            "rule 1: with protocol -1 (all traffic) from_port and to_port are 0",
        );
        assert!(group("from_port: 22, to_port: 22, protocol: tcp, ipv6_cidr_blocks: [\"2001:db8::/32\"], security_groups: [sg-0123456789abcdef0]").is_ok());
    }

    #[test]
    fn a_functions_layers_and_vpc_are_checked_as_lambda_would() {
        // Any file stands for the zip: validation only hashes it.
        let function = |props: &str| {
            check(&format!("{HEAD}resources:\n  f:\n    type: aws_lambda_function\n    properties: {{function_name: f, role: \"arn:aws:iam::123456789012:role/r\", runtime: provided.al2023, filename: Cargo.toml, {props}}}\n"))
        };
        let layer = |n: u32| format!("arn:aws:lambda:us-east-2:123456789012:layer:tools:{n}");
        let six: Vec<String> = (1..=6).map(layer).collect();
        refused(
            function(&format!("layers: [{}]", six.join(", "))),
            "property `layers`: names 6 layers; a function takes at most 5",
        );
        refused(
            function("layers: [\"arn:aws:lambda:us-east-2:123456789012:layer:tools\"]"),
            "must be a layer version ARN: arn:aws:lambda:<region>:<account>:layer:<name>:<version>",
        );
        refused(
            function("vpc_config: {subnet_ids: [subnet-1], security_group_ids: []}"),
            "property `vpc_config`: must name subnets and security groups both, or neither (no VPC)",
        );
        refused(
            function("vpc_config: {subnet_ids: [10.0.1.0/24], security_group_ids: [sg-1]}"),
            "`subnet_ids` must be subnet ids (subnet-...; `10.0.1.0/24` is not)",
        );
        refused(
            function("vpc_config: {subnet_ids: [subnet-1]}"),
            "property `vpc_config`: is missing required key `security_group_ids`",
        );
        assert!(function(&format!(
            "layers: [{}], vpc_config: {{subnet_ids: [subnet-1], security_group_ids: [sg-1]}}",
            layer(3)
        ))
        .is_ok());
    }

    #[test]
    fn a_reference_inside_a_block_is_checked_for_the_form_its_field_takes() {
        let sg =
            "  sg:\n    type: aws_security_group\n    properties: {name: sg, description: d}\n";
        let function = format!("{HEAD}resources:\n{sg}  f:\n    type: aws_lambda_function\n    properties: {{function_name: f, role: \"arn:aws:iam::123456789012:role/r\", runtime: provided.al2023, filename: Cargo.toml, vpc_config: {{subnet_ids: [subnet-1], security_group_ids: [\"${{sg.arn}}\"]}}}}\n");
        refused(
            check(&function),
            "`vpc_config.security_group_ids` takes the id of an aws_security_group, and `${sg.arn}` is its ARN: use `${sg.id}`",
        );
        let rule = format!("{HEAD}resources:\n{sg}  web:\n    type: aws_security_group\n    properties:\n      name: web\n      ingress:\n        - {{from_port: 443, to_port: 443, protocol: tcp, security_groups: [\"${{sg.arn}}\"]}}\n");
        refused(
            check(&rule),
            "`ingress.security_groups` takes the id of an aws_security_group, and `${sg.arn}` is its ARN: use `${sg.id}`",
        );
    }

    #[test]
    fn depends_on_written_as_one_id_is_answered_with_the_list() {
        let src = format!("{HEAD}resources:\n  alerts:\n    type: aws_sns_topic\n    properties: {{name: a}}\n  q:\n    type: aws_sqs_queue\n    depends_on: alerts\n    properties: {{name: q}}\n");
        refused(
            check(&src),
            "stack.yaml:9: `q`: `depends_on` must be a list of logical ids: `depends_on: [alerts]`",
        );
    }

    #[test]
    fn terraforms_type_dot_name_is_answered_with_the_id_alone() {
        let src = format!("{HEAD}resources:\n  alerts:\n    type: aws_sns_topic\n    properties: {{name: a}}\n  q:\n    type: aws_sqs_queue\n    depends_on: [aws_sns_topic.alerts]\n    properties: {{name: q}}\n");
        refused(
            check(&src),
            "stack.yaml:9: `q`: `depends_on` names `aws_sns_topic.alerts`, which is not declared (a resource is named by its id alone: `alerts`)",
        );
    }

    #[test]
    fn a_fifo_name_and_the_fifo_setting_go_together() {
        let queue = |props: &str| {
            check(&format!(
                "{HEAD}resources:\n  q:\n    type: aws_sqs_queue\n    properties: {{{props}}}\n"
            ))
        };
        refused(
            queue("name: jobs.fifo"),
            "stack.yaml:6: `q`, property `name`: ends in .fifo, as a FIFO queue's does: set `fifo_queue: true`, or drop the suffix",
        );
        refused(
            queue("name: jobs, fifo_queue: true"),
            "property `name`: a FIFO queue's name ends in .fifo",
        );
        refused(
            queue("name: jobs, content_based_deduplication: true"),
            "property `content_based_deduplication`: is for FIFO queues only: set `fifo_queue: true`",
        );
        assert!(
            queue("name: jobs.fifo, fifo_queue: true, content_based_deduplication: true").is_ok()
        );
        let topic = |props: &str| {
            check(&format!(
                "{HEAD}resources:\n  t:\n    type: aws_sns_topic\n    properties: {{{props}}}\n"
            ))
        };
        refused(topic("name: jobs.fifo"), "set `fifo_topic: true`");
        assert!(topic("name: jobs.fifo, fifo_topic: true").is_ok());
    }

    #[test]
    fn wrong_type_and_aws_rule_violations() {
        let err = check(&format!(
            "{HEAD}resources:\n  q:\n    type: aws_sqs_queue\n    properties:\n      name: \"bad name\"\n      visibility_timeout_seconds: soon\n      delay_seconds: 901\n"
        ))
        .unwrap_err();
        assert_contains!(err, "stack.yaml:7: `q`, property `name`: contains ` `");
        assert_contains!(err, "stack.yaml:8: `q`, property `visibility_timeout_seconds`: must be an integer, got a string");
        assert_contains!(
            err,
            "stack.yaml:9: `q`, property `delay_seconds`: must be between 0 and 900, got 901"
        );
    }

    #[test]
    fn references_to_missing_resources_and_attributes() {
        let err = check(&format!(
            "{HEAD}resources:\n  t:\n    type: aws_sns_topic\n    properties: {{name: t}}\n  s:\n    type: aws_sns_topic_subscription\n    properties:\n      topic_arn: ${{t.url}}\n      protocol: sqs\n      endpoint: ${{nope.arn}}\noutputs:\n  x: ${{var.missing}}\n"
        ))
        .unwrap_err();
        assert_contains!(err, "stack.yaml:10: `s`, property `topic_arn`: `${t.url}`: `aws_sns_topic` has no attribute `url`");
        assert_contains!(err, "stack.yaml:12: `s`, property `endpoint`: `${nope.arn}` refers to `nope`, which is not declared");
        assert_contains!(
            err,
            "stack.yaml:14: `outputs.x`: `${var.missing}` names an undeclared variable"
        );
    }

    #[test]
    fn cycles_are_printed() {
        refused(check(&format!(
            "{HEAD}resources:\n  a:\n    type: aws_sqs_queue\n    properties: {{name: \"${{b.name}}\"}}\n  b:\n    type: aws_sqs_queue\n    properties: {{name: \"${{a.name}}\"}}\n"
        )), "stack.yaml:4: `a`: dependency cycle: a -> b -> a");
    }

    #[test]
    fn variables_resolve_and_are_checked() {
        let stack = Stack::parse(
            Path::new("stack.yaml"),
            &format!("{HEAD}variables:\n  vis: 30\n  need:\nresources:\n  q:\n    type: aws_sqs_queue\n    properties:\n      name: q\n      visibility_timeout_seconds: ${{var.vis}}\n"),
        )
        .unwrap();
        let err = validate(stack.clone(), &[], None).unwrap_err().to_string();
        assert!(
            err.contains("stack.yaml:5: variable `need` has no default; pass --var need=VALUE"),
            "{err}"
        );
        let vars = vec![
            ("need".to_string(), "x".to_string()),
            ("vis".to_string(), "99999".to_string()),
        ];
        let err = validate(stack.clone(), &vars, None)
            .unwrap_err()
            .to_string();
        assert_contains!(err, "must be between 0 and 43200, got 99999");
        let err = validate(stack, &[("nope".into(), "1".into())], None)
            .unwrap_err()
            .to_string();
        assert_contains!(err, "--var nope: the stack declares no variable `nope`");
    }

    /// A queue, a topic, and `policy_queue` naming the queue by `QUEUE_REF`.
    fn messaging(queue_ref: &str, policy: &str) -> Result<Validated, String> {
        check(&format!(
            "{HEAD}resources:\n  q:\n    type: aws_sqs_queue\n    properties: {{name: q}}\n  t:\n    type: aws_sns_topic\n    properties: {{name: t}}\n  p:\n    type: aws_sqs_queue_policy\n    properties:\n      queue_url: {queue_ref}\n      policy: {policy}\n"
        ))
    }

    const POLICY: &str = r#"'{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": "${q.arn}", "Condition": {"ArnEquals": {"aws:SourceArn": "${t.arn}"}}}]}'"#;

    #[test]
    fn a_reference_of_the_wrong_form_is_refused_naming_the_one_that_fits() {
        refused(messaging("${q.arn}", POLICY), "stack.yaml:13: `p`, property `queue_url`: `queue_url` takes the URL of an aws_sqs_queue, and `${q.arn}` is its ARN: use `${q.url}`");
        refused(
            messaging("${t.arn}", POLICY),
            "`queue_url` takes the URL of an aws_sqs_queue, and `${t.arn}` names an aws_sns_topic",
        );
        // The queue's id is its URL.
        messaging("${q.id}", POLICY).unwrap();
        messaging("${q.url}", POLICY).unwrap();
    }

    #[test]
    fn a_json_string_policy_with_references_is_parsed_as_aws_will_see_it() {
        let trailing_comma = POLICY.replace("}}}]}", "}}},]}");
        refused(
            messaging("${q.url}", &trailing_comma),
            "stack.yaml:14: `p`, property `policy`: must be valid JSON",
        );
        let no_effect = POLICY.replace(r#""Effect": "Allow", "#, "");
        refused(
            messaging("${q.url}", &no_effect),
            "statement 1 must have `Effect: Allow`",
        );
    }

    #[test]
    fn policies_must_have_version_and_statement() {
        refused(check(&format!(
            "{HEAD}resources:\n  q:\n    type: aws_sqs_queue\n    properties: {{name: q}}\n  p:\n    type: aws_sqs_queue_policy\n    properties:\n      queue_url: ${{q.url}}\n      policy: {{Statement: []}}\n"
        )), "stack.yaml:11: `p`, property `policy`: must have `Version: \"2012-10-17\"`");
    }
}

#[cfg(test)]
#[path = "for_each_tests.rs"]
mod for_each_tests;

#[cfg(test)]
#[path = "module_tests.rs"]
mod module_tests;
