//! Modules: `modules: {NAME: {source: ./dir, inputs: {...}, for_each: ...}}`
//! instantiates the `stack.yaml` of variables, resources and outputs in
//! `dir`, once or once per key. Its resources join the stack at
//! `module.NAME.ID` (`module.NAME["key"].ID`), their references to the
//! module's variables replaced by the inputs and to its resources by those
//! addresses; `${module.NAME.OUTPUT}` reads an output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::expand::{collection, Rewriter};
use super::expr::{self, Part, Ref};
use super::yaml::{self, Node, NodeKind, Span};
use super::{Decl, Diagnostic, ModuleDecl, Origin, Stack};

/// The outputs of every module instance, by module name and key (`None`
/// for a module without `for_each`), as templates of the stack's scope.
#[derive(Debug, Default)]
pub struct Outputs {
    pub keys: BTreeMap<String, Option<Vec<String>>>,
    pub values: BTreeMap<(String, Option<String>), BTreeMap<String, Node>>,
}

const MODULE_TOP_KEYS: &[&str] = &["variables", "resources", "data", "outputs"];

/// Adds every module instance's declarations to `stack`; returns their
/// outputs.
pub fn instantiate(
    stack: &mut Stack,
    vars: &BTreeMap<String, Value>,
    diags: &mut Vec<Diagnostic>,
) -> Outputs {
    let mut outputs = Outputs::default();
    for m in &in_input_order(stack, diags) {
        let file = stack
            .dir()
            .join(m.source.trim_start_matches("./"))
            .join("stack.yaml");
        let Some(module) = load(&file, m, diags) else {
            continue;
        };
        let instances: Vec<(Option<String>, Value)> = match &m.for_each {
            None => vec![(None, Value::Null)],
            Some(node) => {
                let owner = format!("module.{}", m.name);
                let entries = collection(stack, &owner, node, vars, diags).unwrap_or_default();
                entries.into_iter().map(|(k, v)| (Some(k), v)).collect()
            }
        };
        let keys = m
            .for_each
            .as_ref()
            .map(|_| instances.iter().filter_map(|(k, _)| k.clone()).collect());
        outputs.keys.insert(m.name.clone(), keys);
        for (i, (key, value)) in instances.iter().enumerate() {
            let this = (key.as_deref(), value, i == 0);
            let instance = Instance::new(stack, m, &module, &file, this, &outputs, diags);
            let (expanded, collections) = instance.expanded(stack, vars, diags);
            let instance = Instance {
                module: &expanded,
                collections,
                ..instance
            };
            for decl in expanded.decls.values() {
                let d = instance.decl(decl, diags);
                stack.decls.insert(d.id.clone(), d);
            }
            let values = expanded.outputs.iter().map(|(name, node)| {
                let owner = format!("{}.outputs.{name}", instance.prefix);
                (name.clone(), instance.value(node, &owner, None, diags))
            });
            outputs
                .values
                .insert((m.name.clone(), key.clone()), values.collect());
        }
    }
    outputs
}

/// The modules, each after those whose outputs its inputs read; a cycle of
/// them is refused.
fn in_input_order(stack: &Stack, diags: &mut Vec<Diagnostic>) -> Vec<ModuleDecl> {
    let reads: BTreeMap<&str, BTreeSet<String>> = stack
        .modules
        .values()
        .map(|m| {
            let mut names = BTreeSet::new();
            for (_, _, node) in &m.inputs {
                modules_read(node, &mut names);
            }
            (m.name.as_str(), names)
        })
        .collect();
    let mut order: Vec<ModuleDecl> = Vec::new();
    let mut path: Vec<&str> = Vec::new();
    for name in reads.keys() {
        visit(stack, &reads, name, &mut path, &mut order, diags);
    }
    order
}

fn visit<'s>(
    stack: &Stack,
    reads: &BTreeMap<&'s str, BTreeSet<String>>,
    name: &'s str,
    path: &mut Vec<&'s str>,
    order: &mut Vec<ModuleDecl>,
    diags: &mut Vec<Diagnostic>,
) {
    if order.iter().any(|m| m.name == name) {
        return;
    }
    if let Some(at) = path.iter().position(|n| *n == name) {
        let cycle = [&path[at..], &[name]].concat().join(" -> ");
        let message = format!("modules read each other's outputs in a cycle: {cycle}");
        let m = &stack.modules[name];
        diags.push(Diagnostic::new(m.span, message).prop(&format!("modules.{name}.inputs")));
        return;
    }
    path.push(name);
    for read in reads[name].iter() {
        if let Some((dep, _)) = reads.get_key_value(read.as_str()) {
            visit(stack, reads, dep, path, order, diags);
        }
    }
    path.pop();
    if !order.iter().any(|m| m.name == name) && !path.contains(&name) {
        order.push(stack.modules[name].clone());
    }
}

/// The modules whose outputs a node's templates read.
fn modules_read(node: &Node, names: &mut BTreeSet<String>) {
    match &node.kind {
        NodeKind::Str(s) => {
            for part in expr::parse_template(s).unwrap_or_default() {
                if let Part::Ref(Ref::Module { name, .. }) = part {
                    names.insert(name);
                }
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| modules_read(i, names)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| modules_read(v, names)),
        _ => {}
    }
}

/// The module's file, parsed: variables, resources, data and outputs.
fn load(file: &Path, m: &ModuleDecl, diags: &mut Vec<Diagnostic>) -> Option<Stack> {
    let at = format!("modules.{}", m.name);
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("source `{}`: cannot read {}: {e}", m.source, file.display());
            diags.push(Diagnostic::new(m.span, message).prop(&at));
            return None;
        }
    };
    let origin = Origin {
        file: file.to_path_buf(),
        module: format!("module.{}", m.name),
        at: m.span,
    };
    let in_module = |mut d: Diagnostic| {
        d.origin = Some(origin.clone());
        d
    };
    let root = match yaml::parse(&source) {
        Ok(root) => root,
        Err(e) => {
            diags.push(in_module(Diagnostic::new(e.span, e.message)));
            return None;
        }
    };
    let mut found = Vec::new();
    let parsed = super::structure(&root, &mut found);
    found.retain(|d| !d.message.starts_with("missing `stack:"));
    for (k, _) in root.as_map().unwrap_or_default() {
        let key = k.key_text();
        if !MODULE_TOP_KEYS.contains(&key.as_str()) {
            let message = format!(
                "a module holds only {}; `{key}` belongs in the stack file",
                MODULE_TOP_KEYS.join(", ")
            );
            found.push(Diagnostic::new(k.span, message));
        }
    }
    let ok = found.is_empty();
    diags.extend(found.into_iter().map(in_module));
    let (_, _, variables, decls, outputs) = parsed;
    ok.then(|| Stack {
        path: file.to_path_buf(),
        source,
        name: m.name.clone(),
        region: None,
        variables,
        decls,
        outputs,
        backend: BTreeMap::new(),
        collections: BTreeMap::new(),
        moves: Vec::new(),
        env: None,
        modules: BTreeMap::new(),
    })
}

/// One instance of a module: its address prefix, and its variables' values
/// as nodes of the stack's scope.
struct Instance<'a> {
    module: &'a Stack,
    /// The module's own collections (`for_each` on its resources), by id.
    collections: BTreeMap<String, Vec<String>>,
    name: &'a str,
    key: Option<&'a str>,
    prefix: String,
    inputs: BTreeMap<String, Node>,
    origin: Origin,
}

impl<'a> Instance<'a> {
    fn new(
        stack: &Stack,
        m: &'a ModuleDecl,
        module: &'a Stack,
        file: &Path,
        (key, value, first): (Option<&'a str>, &Value, bool),
        outputs: &Outputs,
        diags: &mut Vec<Diagnostic>,
    ) -> Instance<'a> {
        let prefix = match key {
            Some(k) => format!("module.{}", expr::address(&m.name, k)),
            None => format!("module.{}", m.name),
        };
        let at = format!("modules.{}.inputs", m.name);
        // Inputs may name the stack's resources and collections, and the
        // outputs of the modules instantiated before this one.
        let rewriter = Rewriter::new(
            &stack.collections,
            outputs,
            &prefix,
            key.map(|k| (k, value)),
        );
        let mut inputs = BTreeMap::new();
        for (name, span, node) in &m.inputs {
            if !module.variables.contains_key(name) {
                let declared: Vec<&str> = module.variables.keys().map(String::as_str).collect();
                let message = format!(
                    "input `{name}`: the module declares no such variable (its variables: {})",
                    declared.join(", ")
                );
                diags.push(Diagnostic::new(*span, message).prop(&at));
                continue;
            }
            let value = rewriter.value(node, &mut |span, message| {
                diags.push(Diagnostic::new(span, message).prop(&at))
            });
            inputs.insert(name.clone(), value);
        }
        for (name, var) in &module.variables {
            match (&var.default, inputs.contains_key(name)) {
                (Some(default), false) => {
                    inputs.insert(
                        name.clone(),
                        Node::literal(&default.to_json(), default.span),
                    );
                }
                // Said once, not once per instance.
                (None, false) if first => {
                    let message =
                        format!("input `{name}` is missing: the module's variable has no default");
                    diags.push(Diagnostic::new(m.span, message).prop(&at));
                }
                _ => {}
            }
        }
        let origin = Origin {
            file: file.to_path_buf(),
            module: prefix.clone(),
            at: m.span,
        };
        Instance {
            module,
            collections: BTreeMap::new(),
            name: &m.name,
            key,
            prefix,
            inputs,
            origin,
        }
    }

    /// The module with its own `for_each`es written out in its scope: `q`
    /// becomes `q["a"]` and `q["b"]`, and `${each.*}`, `${q[each.key].*}`
    /// and `${q[*].*}` become references to those; the keys come from the
    /// inputs, known before any AWS call.
    fn expanded(
        &self,
        stack: &Stack,
        vars: &BTreeMap<String, Value>,
        diags: &mut Vec<Diagnostic>,
    ) -> (Stack, BTreeMap<String, Vec<String>>) {
        let mut members = BTreeMap::new();
        for decl in self.module.decls.values() {
            let Some(node) = &decl.for_each else {
                continue;
            };
            let owner = expr::module_address(self.name, self.key, &decl.id);
            let mut over = self.value(node, &owner, Some("for_each"), diags);
            over.span = node.span;
            let mut found = Vec::new();
            let entries = collection(stack, &owner, &over, vars, &mut found).unwrap_or_default();
            diags.extend(found.into_iter().map(|d| self.diagnostic(d)));
            members.insert(decl.id.clone(), entries);
        }
        let collections: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|(id, entries)| (id.clone(), entries.iter().map(|(k, _)| k.clone()).collect()))
            .collect();
        let mut found = Vec::new();
        let mut module = self.module.clone();
        module.decls.clear();
        for (id, decl) in &self.module.decls {
            let Some(entries) = members.get(id) else {
                let plain = Rewriter::in_module(&collections, id, None);
                module
                    .decls
                    .insert(id.clone(), plain.decl(decl, &mut found));
                continue;
            };
            for (key, value) in entries {
                let address = expr::address(id, key);
                let instance = Rewriter::in_module(&collections, &address, Some((key, value)));
                module
                    .decls
                    .insert(address.clone(), instance.decl(decl, &mut found));
            }
        }
        for (name, node) in module.outputs.iter_mut() {
            *node = Rewriter::in_module(&collections, name, None).output(node, &mut found);
        }
        diags.extend(found.into_iter().map(|mut d| {
            d.resource = d
                .resource
                .map(|id| expr::module_address(self.name, self.key, &id));
            if d.resource.is_none() {
                let output = d.property.take().unwrap_or_default();
                d.resource = Some(format!("{}.outputs.{output}", self.prefix));
            }
            self.diagnostic(d)
        }));
        (module, collections)
    }

    fn decl(&self, decl: &Decl, diags: &mut Vec<Diagnostic>) -> Decl {
        let mut d = decl.clone();
        d.id = expr::module_address(self.name, self.key, &decl.id);
        d.origin = Some(self.origin.clone());
        for p in &mut d.properties {
            p.value = self.value(&p.value, &d.id, Some(&p.name), diags);
        }
        for need in &mut d.needs {
            need.resource = self.value(&need.resource, &d.id, Some("needs"), diags);
        }
        for (dep, _) in &mut d.depends_on {
            if self.module.decls.contains_key(dep.as_str()) {
                *dep = expr::module_address(self.name, self.key, dep);
            }
        }
        d
    }

    fn diagnostic(&self, mut d: Diagnostic) -> Diagnostic {
        d.origin = Some(self.origin.clone());
        d
    }

    /// A node of the module, in the stack's scope.
    fn value(
        &self,
        node: &Node,
        owner: &str,
        prop: Option<&str>,
        diags: &mut Vec<Diagnostic>,
    ) -> Node {
        let kind = match &node.kind {
            NodeKind::Str(s) => match self.string(s, node.span) {
                Ok(n) => return n,
                Err(message) => {
                    let d = Diagnostic::new(node.span, message).at(owner);
                    diags.push(self.diagnostic(match prop {
                        Some(p) => d.prop(p),
                        None => d,
                    }));
                    // Said once: nothing of it is left to be refused again.
                    return Node {
                        kind: NodeKind::Str(String::new()),
                        span: node.span,
                    };
                }
            },
            NodeKind::Seq(items) => NodeKind::Seq(
                items
                    .iter()
                    .map(|i| self.value(i, owner, prop, diags))
                    .collect(),
            ),
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), self.value(v, owner, prop, diags)))
                    .collect(),
            ),
            _ => return node.clone(),
        };
        Node {
            kind,
            span: node.span,
        }
    }

    fn string(&self, s: &str, span: Span) -> Result<Node, String> {
        let Ok(parts) = expr::parse_template(s) else {
            return Ok(Node {
                kind: NodeKind::Str(s.to_string()),
                span,
            });
        };
        if let [Part::Ref(Ref::Var(name))] = parts.as_slice() {
            if let Some(input) = self.inputs.get(name) {
                return Ok(input.clone());
            }
        }
        let mut text = String::new();
        for part in &parts {
            text.push_str(&self.part(part)?);
        }
        Ok(Node {
            kind: NodeKind::Str(text),
            span,
        })
    }

    fn part(&self, part: &Part) -> Result<String, String> {
        Ok(match part {
            Part::Lit(l) => l.replace("${", "$${"),
            Part::Ref(Ref::Var(name)) => match self.inputs.get(name).map(|n| &n.kind) {
                Some(NodeKind::Str(s)) => s.clone(),
                Some(NodeKind::Seq(_) | NodeKind::Map(_)) => {
                    return Err(format!(
                        "`${{var.{name}}}` is a list or map: it must be the whole value"
                    ))
                }
                Some(_) => self.inputs[name].to_json().to_string(),
                // Missing: said once, where the module is declared.
                None => String::new(),
            },
            Part::Ref(Ref::Resource { id, attr }) if self.module.decls.contains_key(id) => {
                let id = expr::module_address(self.name, self.key, id);
                Ref::Resource {
                    id,
                    attr: attr.clone(),
                }
                .to_string()
            }
            Part::Ref(r @ Ref::Resource { id, .. }) => return Err(self.no_such_resource(r, id)),
            Part::Ref(r @ Ref::Stack(_)) => r.to_string(),
            // Refused already by the module's expansion, which left it as it was.
            Part::Ref(r) => r.to_string(),
        })
    }

    /// Why a reference names none of the module's resources.
    fn no_such_resource(&self, r: &Ref, id: &str) -> String {
        let (base, key) = expr::split_address(id);
        match (self.collections.get(base), key) {
            (Some(keys), Some(key)) if keys.is_empty() => {
                format!("`{r}`: `{base}` has no key `{key}` (its for_each gives none)")
            }
            (Some(keys), Some(key)) => format!(
                "`{r}`: `{base}` has no key `{key}` (its keys: {})",
                keys.join(", ")
            ),
            (Some(_), None) => format!(
                "`{r}`: `{base}` is a collection (for_each): name one instance, `${{{base}[\"KEY\"].ATTRIBUTE}}`, or all of them, `${{{base}[*].ATTRIBUTE}}`"
            ),
            (None, _) => format!(
                "`{r}`: a module refers only to its own resources; pass others in as inputs"
            ),
        }
    }
}
