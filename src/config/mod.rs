//! The stack file: its structure, with the position of everything in it.

mod env;
mod expand;
pub mod expr;
mod modules;
pub mod yaml;

pub use env::{env_file, env_names, with_env_tags, Environment};
pub use expand::expand;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml::{Node, NodeKind, Span};

pub use expr::is_address;

/// One problem in the stack file, located precisely enough to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub span: Span,
    pub resource: Option<String>,
    pub property: Option<String>,
    pub message: String,
    /// Set when the span is in a module's file.
    pub origin: Option<Origin>,
}

/// Where a module's declaration came from: its file, and the module
/// instance that made it, declared at `at` in the stack file.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub file: PathBuf,
    pub module: String,
    pub at: Span,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            resource: None,
            property: None,
            message: message.into(),
            origin: None,
        }
    }
    pub fn at(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_string());
        self
    }
    pub fn prop(mut self, property: &str) -> Self {
        self.property = Some(property.to_string());
        self
    }
}

/// All problems found in one stack file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = d.origin.as_ref().map_or(&self.file, |o| &o.file);
            write!(f, "{}:{}: ", file.display(), d.span.line)?;
            match (&d.resource, &d.property) {
                (Some(r), Some(p)) => write!(f, "`{r}`, property `{p}`: ")?,
                (Some(r), None) => write!(f, "`{r}`: ")?,
                (None, Some(p)) => write!(f, "`{p}`: ")?,
                (None, None) => {}
            }
            write!(f, "{}", d.message)?;
            if let Some(o) = &d.origin {
                let stack = self.file.display();
                write!(f, " (in `{}`, declared at {stack}:{})", o.module, o.at.line)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub default: Option<Node>,
    pub span: Span,
    /// Its value never appears in plans, output, errors or logs.
    pub sensitive: bool,
    /// `type: string|number|bool|list|map`, or the kind of its default.
    pub kind: Option<VarKind>,
}

/// What a variable holds: `--var` values are read as this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    String,
    Number,
    Bool,
    List,
    Map,
}

impl VarKind {
    const NAMES: &[&str] = &["string", "number", "bool", "list", "map"];

    fn named(name: &str) -> Option<VarKind> {
        let kinds = [
            VarKind::String,
            VarKind::Number,
            VarKind::Bool,
            VarKind::List,
            VarKind::Map,
        ];
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| kinds[i])
    }

    pub fn of(v: &serde_json::Value) -> Option<VarKind> {
        use serde_json::Value;
        match v {
            Value::String(_) => Some(VarKind::String),
            Value::Number(_) => Some(VarKind::Number),
            Value::Bool(_) => Some(VarKind::Bool),
            Value::Array(_) => Some(VarKind::List),
            Value::Object(_) => Some(VarKind::Map),
            Value::Null => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Property {
    pub name: String,
    pub key_span: Span,
    pub value: Node,
}

/// A resource or data source as written.
#[derive(Debug, Clone)]
pub struct Decl {
    pub id: String,
    pub type_name: String,
    pub is_data: bool,
    pub span: Span,
    pub type_span: Span,
    pub depends_on: Vec<(String, Span)>,
    pub properties: Vec<Property>,
    /// What the resource's code does in AWS (`needs:`), for `stackctl check`
    /// to prove its role allows it.
    pub needs: Vec<Need>,
    /// `sensitive: false` or `sensitive: [NAME, ...]`: which keys of the
    /// type's sensitive-by-default maps (a function's environment variables)
    /// stay sensitive; `None` keeps them all sensitive.
    pub sensitive_keys: Option<Vec<String>>,
    /// `for_each: LIST | MAP | ${var.NAME}`: one instance per key. Gone
    /// from the declarations of an expanded stack.
    pub for_each: Option<Node>,
    /// For a declaration a module made: where it was written.
    pub origin: Option<Origin>,
}

/// `modules: {NAME: {source: ./dir, inputs: {...}, for_each: ...}}`.
#[derive(Debug, Clone)]
pub struct ModuleDecl {
    pub name: String,
    pub source: String,
    pub span: Span,
    pub inputs: Vec<(String, Span, Node)>,
    pub for_each: Option<Node>,
}

/// One declared need: these actions on this resource (a template with
/// references, such as `${dev_instance.arn}`, or `*`).
#[derive(Debug, Clone)]
pub struct Need {
    pub actions: Vec<String>,
    pub resource: Node,
    pub span: Span,
}

impl Decl {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub path: PathBuf,
    /// The file as read: saved plans carry it so they apply exactly what was planned.
    pub source: String,
    pub name: String,
    pub region: Option<String>,
    pub variables: BTreeMap<String, Variable>,
    /// Resources and data sources share one namespace of logical ids.
    pub decls: BTreeMap<String, Decl>,
    pub outputs: BTreeMap<String, Node>,
    /// Where the state lives: `backend: {s3: {bucket, key, region, kms_key_id}}`
    /// as settings (`bucket` ...); empty for the local file.
    pub backend: BTreeMap<String, String>,
    /// Once expanded: each declaration with `for_each`, and its keys.
    pub collections: BTreeMap<String, Vec<String>>,
    /// `moved: [{from: ADDRESS, to: ADDRESS}]`: records renamed, objects kept.
    pub moves: Vec<Move>,
    /// The environment overlaid (`--env`), if any.
    pub env: Option<Environment>,
    /// The modules instantiated; expanded into `decls`.
    pub modules: BTreeMap<String, ModuleDecl>,
}

/// One `moved:` entry: the record at `from` now belongs to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub span: Span,
}

impl Stack {
    pub fn load(path: &Path) -> Result<Stack, ConfigError> {
        // Refused before it is read: a huge file costs neither time nor memory.
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > yaml::MAX_FILE_BYTES as u64 {
            return Err(ConfigError {
                file: path.to_path_buf(),
                diagnostics: vec![Diagnostic::new(
                    Span { line: 1, col: 1 },
                    format!(
                        "the file is {} MB; stack files are limited to {} MB",
                        size >> 20,
                        yaml::MAX_FILE_BYTES >> 20
                    ),
                )],
            });
        }
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            diagnostics: vec![Diagnostic::new(
                Span { line: 0, col: 0 },
                format!("cannot read the stack file: {e} (pass another one with -f FILE)"),
            )],
        })?;
        Stack::parse(path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Stack, ConfigError> {
        let fail = |diagnostics| ConfigError {
            file: path.to_path_buf(),
            diagnostics,
        };
        let root =
            yaml::parse(source).map_err(|e| fail(vec![Diagnostic::new(e.span, e.message)]))?;
        let mut diags = Vec::new();
        let stack = structure(&root, &mut diags);
        let backend = root
            .get("backend")
            .map(|b| backend(b, &mut diags))
            .unwrap_or_default();
        let moves = root
            .get("moved")
            .map(|m| moves(m, &mut diags))
            .unwrap_or_default();
        let modules = root
            .get("modules")
            .map(|m| modules(m, &mut diags))
            .unwrap_or_default();
        if !diags.is_empty() {
            return Err(fail(diags));
        }
        let (name, region, variables, decls, outputs) = stack;
        Ok(Stack {
            path: path.to_path_buf(),
            source: source.to_string(),
            name,
            region,
            variables,
            decls,
            outputs,
            backend,
            collections: BTreeMap::new(),
            moves,
            env: None,
            modules,
        })
    }

    /// The stack file's directory: state lives in `state/` beside it.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

type Parsed = (
    String,
    Option<String>,
    BTreeMap<String, Variable>,
    BTreeMap<String, Decl>,
    BTreeMap<String, Node>,
);

pub(crate) const TOP_KEYS: &[&str] = &[
    "stack",
    "region",
    "variables",
    "resources",
    "data",
    "outputs",
    "backend",
    "moved",
    "modules",
];
const BACKEND_KEYS: &[&str] = &["bucket", "key", "region", "kms_key_id"];

/// `backend: {s3: {bucket: ..., key: ..., region: ..., kms_key_id: ...}}` or
/// `backend: {local: {}}`, as settings with `type`.
fn backend(value: &Node, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let entries = value.as_map().filter(|m| m.len() == 1);
    let Some([(kind, settings)]) = entries else {
        diags.push(
            Diagnostic::new(value.span, "`backend` names one backend: `s3: {bucket: ..., key: ..., region: ...}` or `local: {}`")
                .prop("backend"),
        );
        return out;
    };
    let kind = kind.key_text();
    if kind != "s3" && kind != "local" {
        diags.push(
            Diagnostic::new(
                value.span,
                format!("unknown backend `{kind}` (expected s3 or local)"),
            )
            .prop("backend"),
        );
        return out;
    }
    out.insert("type".into(), kind.clone());
    for (k, v) in settings.as_map().unwrap_or_default() {
        let name = k.key_text();
        let prop = format!("backend.{kind}.{name}");
        if kind == "local" || !BACKEND_KEYS.contains(&name.as_str()) {
            diags.push(
                Diagnostic::new(
                    k.span,
                    format!(
                        "unknown setting `{name}` of the {kind} backend (expected {})",
                        if kind == "local" {
                            "none".to_string()
                        } else {
                            BACKEND_KEYS.join(", ")
                        }
                    ),
                )
                .prop(&prop),
            );
            continue;
        }
        match v.as_str() {
            Some(s) if !s.is_empty() => {
                out.insert(name, s.to_string());
            }
            _ => diags.push(Diagnostic::new(v.span, "must be a non-empty string (variables are not allowed here: the state is read before they are)").prop(&prop)),
        }
    }
    if kind == "s3" && !out.contains_key("bucket") {
        diags.push(
            Diagnostic::new(
                value.span,
                "the s3 backend needs `bucket` (and usually `key`)",
            )
            .prop("backend.s3"),
        );
    }
    out
}
const MODULE_KEYS: &[&str] = &["source", "inputs", "for_each"];

/// `modules: {NAME: {source: ./path, inputs: {...}, for_each: ...}}`.
fn modules(value: &Node, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, ModuleDecl> {
    let mut out = BTreeMap::new();
    let message = "must be a map of module names to `{source: ./path, inputs: {...}}`";
    for (k, v) in map_entries(value, message, "modules", diags) {
        let name = k.key_text();
        let at = format!("modules.{name}");
        if !is_logical_id(&name) {
            diags
                .push(Diagnostic::new(k.span, "module names must match [a-z][a-z0-9_]*").prop(&at));
            continue;
        }
        let mut m = ModuleDecl {
            name: name.clone(),
            source: String::new(),
            span: k.span,
            inputs: Vec::new(),
            for_each: None,
        };
        for (mk, mv) in v.as_map().unwrap_or_default() {
            match mk.key_text().as_str() {
                "source" => m.source = mv.as_str().unwrap_or_default().to_string(),
                "for_each" => m.for_each = Some(mv.clone()),
                "inputs" => {
                    let entries = mv.as_map().unwrap_or_default().iter();
                    m.inputs = entries
                        .map(|(ik, iv)| (ik.key_text(), ik.span, iv.clone()))
                        .collect();
                }
                other => diags.push(
                    Diagnostic::new(mk.span, unknown_key(other, "key", MODULE_KEYS)).prop(&at),
                ),
            }
        }
        if m.source.is_empty() {
            diags.push(
                Diagnostic::new(
                    k.span,
                    "a module needs `source: ./DIR` (a directory holding a stack.yaml)",
                )
                .prop(&at),
            );
        }
        out.insert(name, m);
    }
    out
}

/// `moved: [{from: alarm, to: 'alarm["web-1"]'}, ...]`.
fn moves(value: &Node, diags: &mut Vec<Diagnostic>) -> Vec<Move> {
    let message =
        "`moved` lists `{from: ADDRESS, to: ADDRESS}`, an address being `id` or `id[\"key\"]`";
    let NodeKind::Seq(items) = &value.kind else {
        diags.push(Diagnostic::new(value.span, message).prop("moved"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let address = |k: &str| item.get(k).and_then(Node::as_str).filter(|a| is_address(a));
        match (
            address("from"),
            address("to"),
            item.as_map().map(<[_]>::len),
        ) {
            (Some(from), Some(to), Some(2)) if from != to => out.push(Move {
                from: from.to_string(),
                to: to.to_string(),
                span: item.span,
            }),
            _ => diags.push(Diagnostic::new(item.span, message).prop("moved")),
        }
    }
    out
}

pub(crate) const DECL_KEYS: &[&str] = &[
    "type",
    "properties",
    "depends_on",
    "sensitive",
    "needs",
    "for_each",
];

/// `needs: [{actions: [...], resource: ...}, ...]`.
fn needs(id: &str, value: &Node, diags: &mut Vec<Diagnostic>) -> Vec<Need> {
    let bad = |span, diags: &mut Vec<Diagnostic>| {
        diags.push(
            Diagnostic::new(
                span,
                "`needs` lists `{actions: [service:Action, ...], resource: ARN or ${id.arn}}`",
            )
            .at(id),
        )
    };
    let NodeKind::Seq(items) = &value.kind else {
        bad(value.span, diags);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let actions = match item
            .get("actions")
            .or_else(|| item.get("action"))
            .map(|a| &a.kind)
        {
            Some(NodeKind::Str(a)) => vec![a.clone()],
            Some(NodeKind::Seq(list)) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        match (actions.is_empty(), item.get("resource")) {
            (false, Some(resource)) => out.push(Need {
                actions,
                resource: resource.clone(),
                span: item.span,
            }),
            _ => bad(item.span, diags),
        }
    }
    out
}
const VARIABLE_KEYS: &[&str] = &["default", "sensitive", "description", "type"];

/// `name: default`, or `name: {default: ..., sensitive: true, description: ...}`.
fn variable(key: &Node, value: &Node, name: &str, diags: &mut Vec<Diagnostic>) -> Variable {
    let declaration = value.as_map().filter(|m| {
        !m.is_empty()
            && m.iter()
                .all(|(k, _)| k.as_str().is_some_and(|k| VARIABLE_KEYS.contains(&k)))
    });
    let Some(entries) = declaration else {
        let default = (value.kind != NodeKind::Null).then(|| value.clone());
        return Variable {
            kind: default.as_ref().and_then(|d| VarKind::of(&d.to_json())),
            default,
            span: key.span,
            sensitive: false,
        };
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(ek, _)| ek.as_str() == Some(k))
            .map(|(_, v)| v)
    };
    let sensitive = match get("sensitive").map(|n| &n.kind) {
        None | Some(NodeKind::Bool(false)) => false,
        Some(NodeKind::Bool(true)) => true,
        Some(_) => {
            diags.push(
                Diagnostic::new(key.span, "`sensitive` must be true or false")
                    .prop(&format!("variables.{name}")),
            );
            false
        }
    };
    let default = get("default").filter(|d| d.kind != NodeKind::Null).cloned();
    let of_default = default.as_ref().and_then(|d| VarKind::of(&d.to_json()));
    let kind = match get("type") {
        None => of_default,
        Some(t) => {
            let named = t.as_str().and_then(VarKind::named);
            let problem = match (named, of_default) {
                (None, _) => Some(format!("`type` is one of {}", VarKind::NAMES.join(", "))),
                (Some(k), Some(d)) if k != d => Some(format!(
                    "the default is a {} but `type` says {}",
                    d.name(),
                    k.name()
                )),
                _ => None,
            };
            if let Some(message) = problem {
                diags.push(Diagnostic::new(t.span, message).prop(&format!("variables.{name}")));
            }
            named.or(of_default)
        }
    };
    Variable {
        default,
        span: key.span,
        sensitive,
        kind,
    }
}

pub fn is_logical_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn structure(root: &Node, diags: &mut Vec<Diagnostic>) -> Parsed {
    let mut name = String::new();
    let mut region = None;
    let mut variables = BTreeMap::new();
    let mut decls = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let Some(entries) = root.as_map() else {
        let message = "the stack file must be a map with `stack:` and `resources:`";
        diags.push(Diagnostic::new(root.span, message));
        return (name, region, variables, decls, outputs);
    };
    for (key, value) in entries {
        match key.as_str().unwrap_or_default() {
            "stack" => name = stack_name(value, diags),
            "region" => match value.as_str() {
                Some(s) if !s.is_empty() => region = Some(s.to_string()),
                _ => {
                    let message = "must be an AWS region such as us-east-2";
                    diags.push(Diagnostic::new(value.span, message).prop("region"));
                }
            },
            "variables" => {
                let message = "must be a map of variable names to default values";
                for (k, v) in map_entries(value, message, "variables", diags) {
                    let var = k.key_text();
                    if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        let message =
                            format!("variable name `{var}` may hold only letters, digits and `_`");
                        diags.push(Diagnostic::new(k.span, message));
                    }
                    variables.insert(var.clone(), variable(k, v, &var, diags));
                }
            }
            "resources" | "data" => {
                let is_data = key.as_str() == Some("data");
                let message = "must be a map of logical ids to declarations";
                for (k, v) in map_entries(value, message, &key.key_text(), diags) {
                    if let Some(decl) = declaration(k, v, is_data, diags) {
                        add_declaration(&mut decls, decl, k.span, diags);
                    }
                }
            }
            // Read by `backend` (the state's place is not part of the graph).
            "backend" => {}
            // Read by `moves` (records, not declarations) and `modules`.
            "moved" | "modules" => {}
            "outputs" => {
                let message = "must be a map of output names to values";
                for (k, v) in map_entries(value, message, "outputs", diags) {
                    outputs.insert(k.key_text(), v.clone());
                }
            }
            other => diags.push(Diagnostic::new(
                key.span,
                unknown_key(other, "top-level key", TOP_KEYS),
            )),
        }
    }
    if name.is_empty() && !diags.iter().any(|d| d.property.as_deref() == Some("stack")) {
        let message = "missing `stack: <name>` (it names the state file and tags every resource)";
        diags.push(Diagnostic::new(root.span, message));
    }
    (name, region, variables, decls, outputs)
}

fn stack_name(value: &Node, diags: &mut Vec<Diagnostic>) -> String {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match value.as_str() {
        Some(s) if valid(s) => s.to_string(),
        _ => {
            let message =
                "must be a name of letters, digits, `-` and `_` (it names the state file)";
            diags.push(Diagnostic::new(value.span, message).prop("stack"));
            String::new()
        }
    }
}

/// The entries of a map; none of an empty value; and a diagnostic (`message`
/// at `prop`) for anything else.
fn map_entries<'n>(
    value: &'n Node,
    message: &str,
    prop: &str,
    diags: &mut Vec<Diagnostic>,
) -> &'n [(Node, Node)] {
    match &value.kind {
        NodeKind::Map(entries) => entries,
        NodeKind::Null => &[],
        _ => {
            diags.push(Diagnostic::new(value.span, message).prop(prop));
            &[]
        }
    }
}

fn add_declaration(
    decls: &mut BTreeMap<String, Decl>,
    decl: Decl,
    at: Span,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some(prev) = decls.get(&decl.id) {
        let message = format!("logical id already used on line {}", prev.span.line);
        diags.push(Diagnostic::new(at, message).at(&decl.id));
    } else {
        decls.insert(decl.id.clone(), decl);
    }
}

/// "unknown key `x` (did you mean `y`?)", or the keys there are.
fn unknown_key(other: &str, what: &str, known: &[&str]) -> String {
    match crate::spelling::nearest(other, known) {
        Some(near) => format!("unknown {what} `{other}` (did you mean `{near}`?)"),
        None => format!(
            "unknown {what} `{other}` (expected one of {})",
            known.join(", ")
        ),
    }
}

fn declaration(
    key: &Node,
    value: &Node,
    is_data: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Decl> {
    let id = key.key_text();
    if !is_logical_id(&id) {
        diags.push(Diagnostic::new(key.span, "logical ids must match [a-z][a-z0-9_]*").at(&id));
        return None;
    }
    let Some(entries) = value.as_map() else {
        let message = "must be a map with `type:` and `properties:`";
        diags.push(Diagnostic::new(value.span, message).at(&id));
        return None;
    };
    let mut decl = Decl {
        id: id.clone(),
        type_name: String::new(),
        is_data,
        span: key.span,
        type_span: key.span,
        depends_on: Vec::new(),
        properties: Vec::new(),
        needs: Vec::new(),
        sensitive_keys: None,
        for_each: None,
        origin: None,
    };
    for (k, v) in entries {
        declaration_entry(&mut decl, k, v, diags);
    }
    if decl.type_name.is_empty() && !diags.iter().any(|d| d.resource.as_deref() == Some(&id)) {
        diags.push(Diagnostic::new(key.span, "missing `type:`").at(&id));
    }
    Some(decl)
}

/// One key of a declaration (`type`, `properties`, `depends_on`, ...).
fn declaration_entry(decl: &mut Decl, k: &Node, v: &Node, diags: &mut Vec<Diagnostic>) {
    let id = decl.id.clone();
    let at = |span: Span, message: &str| Diagnostic::new(span, message).at(&id);
    match k.as_str().unwrap_or_default() {
        "type" => match v.as_str() {
            Some(t) => {
                decl.type_name = t.to_string();
                decl.type_span = v.span;
            }
            None => diags.push(at(
                v.span,
                "`type` must be a resource type name such as aws_sns_topic",
            )),
        },
        "properties" => match &v.kind {
            NodeKind::Map(props) => {
                let props = props.iter().map(|(pk, pv)| Property {
                    name: pk.key_text(),
                    key_span: pk.span,
                    value: pv.clone(),
                });
                decl.properties = props.collect();
            }
            NodeKind::Null => {}
            _ => diags.push(at(v.span, "`properties` must be a map")),
        },
        "depends_on" => match &v.kind {
            NodeKind::Seq(items) => {
                for item in items {
                    match item.as_str() {
                        Some(dep) => decl.depends_on.push((dep.to_string(), item.span)),
                        None => diags.push(at(item.span, "`depends_on` lists logical ids")),
                    }
                }
            }
            NodeKind::Null => {}
            NodeKind::Str(one) => diags.push(at(
                v.span,
                &format!("`depends_on` must be a list of logical ids: `depends_on: [{one}]`"),
            )),
            _ => diags.push(at(v.span, "`depends_on` must be a list of logical ids")),
        },
        "needs" => decl.needs = needs(&id, v, diags),
        "for_each" if decl.is_data => diags.push(at(k.span, "data sources take no `for_each`")),
        "for_each" => decl.for_each = Some(v.clone()),
        "sensitive" => match &v.kind {
            NodeKind::Bool(true) => decl.sensitive_keys = None,
            NodeKind::Bool(false) => decl.sensitive_keys = Some(Vec::new()),
            NodeKind::Seq(items) if items.iter().all(|i| i.as_str().is_some()) => {
                let keys = items.iter().filter_map(|i| i.as_str().map(str::to_string));
                decl.sensitive_keys = Some(keys.collect())
            }
            _ => diags.push(at(
                v.span,
                "`sensitive` must be true, false, or the list of names whose values stay sensitive",
            )),
        },
        other => diags.push(at(k.span, &unknown_key(other, "key", DECL_KEYS))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Stack, ConfigError> {
        Stack::parse(Path::new("stack.yaml"), src)
    }

    #[test]
    fn parses_the_documented_shape() {
        let s = parse(
            "stack: demo\nregion: us-east-2\nvariables:\n  n: 3\nresources:\n  alerts:\n    type: aws_sns_topic\n    depends_on: []\n    properties:\n      name: t\noutputs:\n  arn: ${alerts.arn}\n",
        )
        .unwrap();
        assert_eq!(s.name, "demo");
        assert_eq!(s.region.as_deref(), Some("us-east-2"));
        let alerts = &s.decls["alerts"];
        assert_eq!(alerts.type_name, "aws_sns_topic");
        assert_eq!(alerts.property("name").unwrap().key_span.line, 10);
        assert!(s.outputs.contains_key("arn"));
    }

    #[test]
    fn structural_errors_name_resource_and_line() {
        let err = parse("stack: demo\nresources:\n  Bad-Id:\n    type: x\n  ok:\n    typo: 1\n")
            .unwrap_err();
        let text = err.to_string();
        assert_contains!(text, "stack.yaml:3: `Bad-Id`: logical ids must match");
        assert_contains!(text, "stack.yaml:6: `ok`: unknown key `typo`");
    }

    #[test]
    fn missing_stack_name_is_reported() {
        let err = parse("resources: {}\n").unwrap_err();
        assert!(err.to_string().contains("missing `stack: <name>`"), "{err}");
    }

    #[test]
    fn malformed_yaml_reports_line() {
        let err = parse("stack: demo\nresources:\n  a: {type: x\n").unwrap_err();
        let d = &err.diagnostics[0];
        assert!(d.message.starts_with("malformed YAML"), "{err}");
        assert!(d.span.line >= 3, "{err}");
    }
}
