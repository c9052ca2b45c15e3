//! Environments: `env/NAME.yaml` beside the stack file overlays its
//! variables, region, state backend and tags, and names the account the
//! run's credentials must reach (and a role to assume to reach it). Each
//! environment is its own stack, `<stack>-<env>`: its own state, and
//! ownership tags no other environment's run takes for its own.

use std::path::{Path, PathBuf};

use super::yaml::{self, Node, NodeKind, Span};
use super::{unknown_key, ConfigError, Diagnostic, Stack, VarKind};

/// The environment a stack was loaded for.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    /// The account the credentials must reach; every command refuses others.
    pub account: Option<String>,
    /// A role the run assumes (through the standard credential chain).
    pub assume_role: Option<String>,
    /// Tags on every taggable resource (a resource's own win).
    pub tags: Vec<(String, String)>,
    /// The file as read: a saved plan carries it.
    pub source: String,
}

const ENV_KEYS: &[&str] = &[
    "region",
    "account",
    "assume_role",
    "variables",
    "backend",
    "tags",
];

/// `env/NAME.yaml` beside the stack file.
pub fn env_file(stack_dir: &Path, name: &str) -> PathBuf {
    stack_dir.join("env").join(format!("{name}.yaml"))
}

/// An environment's name: it names a file, a state and ownership tags.
fn is_env_name(name: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    !name.is_empty() && name.len() <= 64 && name.chars().all(valid)
}

/// The environments beside a stack file, by name.
pub fn env_names(stack_dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(stack_dir.join("env"))
        .into_iter()
        .flatten();
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
        .collect();
    names.sort();
    names
}

impl Stack {
    /// The stack file, with the environment `env` overlaid when one is named.
    pub fn load_in(path: &Path, env: Option<&str>) -> Result<Stack, ConfigError> {
        let stack = Stack::load(path)?;
        let Some(name) = env else {
            return Ok(stack);
        };
        let file = env_file(&stack.dir(), name);
        if !is_env_name(name) {
            let message =
                format!("environment names hold letters, digits, `-` and `_`; got `{name}`");
            let diagnostics = vec![Diagnostic::new(Span::default(), message)];
            return Err(ConfigError { file, diagnostics });
        }
        let source = std::fs::read_to_string(&file).map_err(|e| {
            let known = env_names(&stack.dir()).join(", ");
            let message = format!(
                "environment `{name}`: cannot read {}: {e} (environments here: {})",
                file.display(),
                if known.is_empty() { "none" } else { &known }
            );
            ConfigError {
                file: file.clone(),
                diagnostics: vec![Diagnostic::new(Span::default(), message)],
            }
        })?;
        stack.overlay(name, &file, &source)
    }

    /// This stack as environment `name` (its file `file` holding `source`)
    /// makes it.
    pub fn overlay(mut self, name: &str, file: &Path, source: &str) -> Result<Stack, ConfigError> {
        let fail = |diagnostics| ConfigError {
            file: file.to_path_buf(),
            diagnostics,
        };
        if !is_env_name(name) {
            let message =
                format!("environment names hold letters, digits, `-` and `_`; got `{name}`");
            return Err(fail(vec![Diagnostic::new(Span::default(), message)]));
        }
        let root =
            yaml::parse(source).map_err(|e| fail(vec![Diagnostic::new(e.span, e.message)]))?;
        let mut diags = Vec::new();
        let mut env = Environment {
            name: name.to_string(),
            account: None,
            assume_role: None,
            tags: Vec::new(),
            source: source.to_string(),
        };
        for (k, v) in root.as_map().unwrap_or_default() {
            self.overlay_entry(&mut env, &k.key_text(), k, v, &mut diags);
        }
        if !diags.is_empty() {
            return Err(fail(diags));
        }
        self.name = format!("{}-{name}", self.name);
        self.env = Some(env);
        Ok(self)
    }

    fn overlay_entry(
        &mut self,
        env: &mut Environment,
        key: &str,
        k: &Node,
        v: &Node,
        diags: &mut Vec<Diagnostic>,
    ) {
        let text = |diags: &mut Vec<Diagnostic>, what: &str| match v.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                diags.push(Diagnostic::new(v.span, format!("must be {what}")).prop(key));
                None
            }
        };
        match key {
            "region" => {
                self.region = text(diags, "an AWS region such as us-west-2").or(self.region.take())
            }
            "account" => {
                let id = match &v.kind {
                    NodeKind::Str(s) => Some(s.clone()),
                    NodeKind::Int(n) => Some(format!("{n:012}")),
                    _ => None,
                };
                match id.filter(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())) {
                    Some(a) => env.account = Some(a),
                    None => diags.push(
                        Diagnostic::new(v.span, "must be a 12-digit AWS account id").prop(key),
                    ),
                }
            }
            "assume_role" => {
                env.assume_role = text(
                    diags,
                    "a role ARN such as arn:aws:iam::012345678901:role/deployer",
                )
            }
            "variables" => self.overlay_variables(v, diags),
            "backend" => self.overlay_backend(v, diags),
            "tags" => env.tags = string_pairs(v, "tags", diags),
            other => diags.push(Diagnostic::new(k.span, unknown_key(other, "key", ENV_KEYS))),
        }
    }

    /// The environment's values stand as the variables' defaults: `--var`
    /// still wins.
    fn overlay_variables(&mut self, v: &Node, diags: &mut Vec<Diagnostic>) {
        for (k, value) in v.as_map().unwrap_or_default() {
            let name = k.key_text();
            let at = format!("variables.{name}");
            let Some(var) = self.variables.get_mut(&name) else {
                let message = format!("the stack declares no variable `{name}`");
                diags.push(Diagnostic::new(k.span, message).prop(&at));
                continue;
            };
            let kind = VarKind::of(&value.to_json());
            if let (Some(want), Some(got)) = (var.kind, kind) {
                let collection = |k: VarKind| matches!(k, VarKind::List | VarKind::Map);
                if want != got && (collection(want) || collection(got)) {
                    let message = format!(
                        "`{name}` is a {}, and this is a {}",
                        want.name(),
                        got.name()
                    );
                    diags.push(Diagnostic::new(value.span, message).prop(&at));
                    continue;
                }
            }
            var.default = Some(value.clone());
        }
    }

    /// `backend: {key: ..., bucket: ...}`: settings of the stack's backend
    /// (an S3 backend when it names a bucket).
    fn overlay_backend(&mut self, v: &Node, diags: &mut Vec<Diagnostic>) {
        for (k, value) in string_pairs(v, "backend", diags) {
            if !["bucket", "key", "region", "kms_key_id"].contains(&k.as_str()) {
                let message =
                    format!("unknown setting `{k}` (expected bucket, key, region or kms_key_id)");
                diags.push(Diagnostic::new(v.span, message).prop("backend"));
                continue;
            }
            if k == "bucket" {
                self.backend.insert("type".into(), "s3".into());
            }
            self.backend.insert(k, value);
        }
    }
}

/// A map of strings to strings, in file order.
fn string_pairs(v: &Node, prop: &str, diags: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let NodeKind::Map(entries) = &v.kind else {
        diags.push(Diagnostic::new(v.span, "must be a map of names to strings").prop(prop));
        return out;
    };
    for (k, value) in entries {
        match value.as_str() {
            Some(s) => out.push((k.key_text(), s.to_string())),
            None => diags.push(
                Diagnostic::new(value.span, "must be a string")
                    .prop(&format!("{prop}.{}", k.key_text())),
            ),
        }
    }
    out
}

/// The environments' tags merged under a declaration's own `tags`.
pub fn with_env_tags(own: Option<&Node>, env: &[(String, String)], at: Span) -> Node {
    let mut entries: Vec<(Node, Node)> = match own.map(|n| &n.kind) {
        Some(NodeKind::Map(m)) => m.clone(),
        _ => Vec::new(),
    };
    let str_node = |s: &str| Node {
        kind: NodeKind::Str(s.replace("${", "$${")),
        span: at,
    };
    let own_keys: Vec<String> = entries.iter().map(|(k, _)| k.key_text()).collect();
    for (k, v) in env.iter().rev().filter(|(k, _)| !own_keys.contains(k)) {
        entries.insert(0, (str_node(k), str_node(v)));
    }
    Node {
        kind: NodeKind::Map(entries),
        span: own.map_or(at, |n| n.span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_name_that_is_a_path_is_refused_before_any_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.yaml");
        std::fs::write(&path, "stack: s\nresources: {}\n").unwrap();
        let err = Stack::load_in(&path, Some("../secrets"))
            .unwrap_err()
            .to_string();
        assert_contains!(err, "environment names hold letters, digits");
        assert!(!err.contains("cannot read"), "{err}");
    }
}
