//! `stackctl permissions`: the IAM policy the identity that runs stackctl
//! needs for one stack, made from the actions each type's schema declares
//! (the table a test holds every provider's SDK calls to), scoped to the
//! stack's ARNs where its names are known and to its ownership tag where AWS
//! makes the ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::check::Model;
use crate::providers::TAG_STACK;
use crate::schema::{ActsOn, Schema};
use crate::validate::Validated;

/// What the identity will be used for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Plan,
    Apply,
    Destroy,
    All,
}

/// Calls the engine makes for every stack, whatever its types (the bulk tag
/// read; without it, reads fall back to one tag call per resource).
const STACK_READS: &[&str] = &["tag:GetResources"];

/// One statement of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: String,
    pub actions: BTreeSet<String>,
    pub resources: BTreeSet<String>,
    pub condition: Option<Value>,
}

impl Statement {
    fn new<'a>(
        sid: &str,
        actions: impl IntoIterator<Item = &'a str>,
        resources: &[String],
    ) -> Self {
        Statement {
            sid: sid.to_string(),
            actions: actions.into_iter().map(str::to_string).collect(),
            resources: resources.iter().cloned().collect(),
            condition: None,
        }
    }

    fn when(mut self, condition: Value) -> Statement {
        self.condition = Some(condition);
        self
    }

    fn to_json(&self) -> Value {
        let one_or_many = |set: &BTreeSet<String>| match set.len() {
            1 => json!(set.iter().next()),
            _ => json!(set),
        };
        let mut s = json!({
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": one_or_many(&self.actions),
            "Resource": one_or_many(&self.resources),
        });
        if let Some(c) = &self.condition {
            s["Condition"] = c.clone();
        }
        s
    }
}

/// The policy document of these statements.
pub fn document(statements: &[Statement]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements.iter().map(Statement::to_json).collect::<Vec<_>>(),
    })
}

/// The statements the stack needs for `phase`: reads on `*` (they change
/// nothing, and most Describe and List calls take no resource), then each
/// type's writes on what they act on, then the state bucket's objects.
pub fn statements(
    v: &Validated,
    region: Option<&str>,
    backend: &BTreeMap<String, String>,
    phase: Phase,
) -> Vec<Statement> {
    let m = Model::build(v, region);
    let mut out = vec![reads(v)];
    if phase != Phase::Plan {
        let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for decl in v.stack.decls.values().filter(|d| !d.is_data) {
            by_type.entry(&decl.type_name).or_default().push(&decl.id);
        }
        for ids in by_type.values() {
            let schema = v.schema(ids[0]);
            out.extend(writes(&m, schema, ids, phase, &v.stack.name));
        }
        // A role is passed on create and update, never on delete.
        if phase != Phase::Destroy {
            out.extend(pass_role(&m, v));
        }
    }
    out.extend(state_bucket(backend, &v.stack.name));
    if let Some(account) = v.stack.env.as_ref().and_then(|e| e.account.as_deref()) {
        out.iter_mut()
            .for_each(|s| s.resources = in_account(&s.resources, account));
    }
    without_redundant(out)
}

/// ARNs whose account is a wildcard, in the one account the environment
/// names.
fn in_account(resources: &BTreeSet<String>, account: &str) -> BTreeSet<String> {
    let scoped = |arn: &String| {
        let mut fields: Vec<&str> = arn.splitn(6, ':').collect();
        if fields.len() == 6 && fields[4] == "*" {
            fields[4] = account;
        }
        fields.join(":")
    };
    resources.iter().map(scoped).collect()
}

/// Every read of the stack's types, and of their tags.
fn reads(v: &Validated) -> Statement {
    let schemas = v.stack.decls.keys().map(|id| v.schema(id));
    let actions = schemas.flat_map(|s| s.actions.read.iter().chain(s.tagging.actions().0));
    let all = actions.copied().chain(STACK_READS.iter().copied());
    Statement::new("Read", all, &["*".to_string()])
}

/// The actions a type's writes send in this phase (PassRole aside: it is
/// authorized on the role, not on the type's resource).
fn write_actions(schema: &Schema, phase: Phase) -> Vec<&'static str> {
    let a = schema.actions;
    let mut actions: Vec<&str> = match phase {
        Phase::Plan => vec![],
        Phase::Destroy => a.delete.to_vec(),
        Phase::Apply | Phase::All => {
            [a.create, a.update, a.delete, schema.tagging.actions().1].concat()
        }
    };
    actions.retain(|a| *a != "iam:PassRole");
    actions.sort_unstable();
    actions.dedup();
    actions
}

fn sid(schema: &Schema) -> String {
    let words = schema.type_name.trim_start_matches("aws_").split('_');
    let title = |w: &str| w[..1].to_uppercase() + &w[1..];
    format!("Write{}", words.map(title).collect::<String>())
}

fn writes(m: &Model, schema: &Schema, ids: &[&str], phase: Phase, stack: &str) -> Vec<Statement> {
    let actions = write_actions(schema, phase);
    if actions.is_empty() {
        return vec![];
    }
    match schema.actions.on {
        ActsOn::Itself => {
            let arns: Vec<String> = ids
                .iter()
                .flat_map(|id| with_logs_form(own_arn(m, id)))
                .collect();
            vec![Statement::new(&sid(schema), actions, &arns)]
        }
        ActsOn::Parent(prop, parent) => {
            let arns: Vec<String> = ids
                .iter()
                .flat_map(|id| parent_arns(m, id, prop, parent))
                .collect();
            vec![Statement::new(&sid(schema), actions, &arns)]
        }
        ActsOn::Tagged => ec2_writes(m, schema, actions, stack),
    }
}

/// The resource's ARN, any part unknown before apply a wildcard.
fn own_arn(m: &Model, id: &str) -> String {
    match m.arn(id) {
        Some(arn) => crate::iam::wildcard_unknowns(&arn),
        // No ARN: its actions take no resource-level permissions.
        None => "*".to_string(),
    }
}

/// The ARN of the resource `prop` names (one of the stack's, or one named
/// by its name or ARN), and what lies under it (a group's streams, a
/// topic's subscriptions).
fn parent_arns(m: &Model, id: &str, prop: &str, parent: &str) -> Vec<String> {
    let schema = crate::providers::lookup(parent)
        .expect("registered")
        .schema();
    let value = m.text(id, prop).unwrap_or_default();
    let arn = match m.target(&value, &[schema.part]) {
        Some(id) => own_arn(m, id),
        None if value.starts_with("arn:") => value,
        None => named_arn(m, schema, &value),
    };
    with_logs_form(crate::iam::wildcard_unknowns(&arn))
}

/// An ARN, and for a log group its `:*` form too: CloudWatch Logs writes a
/// group's ARN that way (DescribeLogGroups' `arn`) and authorizes its streams
/// under it (`log-group:NAME:log-stream:S`).
fn with_logs_form(arn: String) -> Vec<String> {
    match arn.starts_with("arn:aws:logs:") && arn.contains(":log-group:") {
        true => vec![format!("{arn}:*"), arn],
        false => vec![arn],
    }
}

/// The statements without any whose every action on every resource another
/// statement with the same condition already allows (a queue policy's
/// SetQueueAttributes on a queue of the stack, which the queue's own
/// statement holds): each statement left is needed.
fn without_redundant(statements: Vec<Statement>) -> Vec<Statement> {
    let covers = |t: &Statement, s: &Statement| {
        t.condition == s.condition
            && s.actions.is_subset(&t.actions)
            && s.resources
                .iter()
                .all(|r| t.resources.contains(r) || t.resources.contains("*"))
    };
    let mut kept: Vec<Statement> = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        let covered = statements
            .iter()
            .enumerate()
            .any(|(j, t)| j != i && covers(t, s) && !(covers(s, t) && j > i));
        if !covered {
            kept.push(s.clone());
        }
    }
    kept
}

/// The ARN of a resource outside the stack known by its name (or URL).
fn named_arn(m: &Model, schema: &Schema, value: &str) -> String {
    let name = value.rsplit('/').next().unwrap_or(value);
    let format = schema.arn_format.unwrap_or("*");
    crate::schema::fill_format(format, |field| {
        Some(match field {
            "region" => m.region().to_string(),
            "account" => "*".to_string(),
            _ if name.is_empty() => "*".to_string(),
            _ => name.to_string(),
        })
    })
    .unwrap_or_else(|| "*".to_string())
}

/// EC2 makes the ids: creates are allowed when they tag what they make with
/// the stack's name (and on what they use: images, subnets, groups), and
/// every other write only on what carries that tag.
fn ec2_writes(m: &Model, schema: &Schema, actions: Vec<&str>, stack: &str) -> Vec<Statement> {
    let region = m.region();
    let ec2 = |kind: &str| format!("arn:aws:ec2:{region}:*:{kind}/*");
    // What each create makes, and what else it is authorized on.
    let (own, used): (&str, &[&str]) = match schema.type_name {
        "aws_instance" => (
            "instance",
            &[
                "image",
                "subnet",
                "security-group",
                "network-interface",
                "volume",
                "key-pair",
            ],
        ),
        _ => ("security-group", &["vpc"]),
    };
    let name = sid(schema);
    let creates: Vec<&str> = actions
        .iter()
        .copied()
        .filter(|a| {
            schema.actions.create.contains(a) && !a.contains("Authorize") && !a.contains("Revoke")
        })
        .collect();
    let others: Vec<&str> = actions
        .iter()
        .copied()
        .filter(|a| !creates.contains(a))
        .collect();
    let tag = format!("aws:RequestTag/{TAG_STACK}");
    let mut out = vec![];
    if !creates.is_empty() {
        out.push(
            Statement::new(&format!("{name}Create"), creates.clone(), &[ec2(own)])
                .when(json!({"StringEquals": {tag: stack}})),
        );
        let used: Vec<String> = used.iter().map(|k| ec2(k)).collect();
        out.push(Statement::new(
            &format!("{name}Uses"),
            creates.clone(),
            &used,
        ));
        let made_by: Vec<&str> = creates
            .iter()
            .map(|a| a.trim_start_matches("ec2:"))
            .collect();
        out.push(
            Statement::new(
                &format!("{name}TagOnCreate"),
                ["ec2:CreateTags"],
                &["*".to_string()],
            )
            .when(json!({"StringEquals": {"ec2:CreateAction": made_by}})),
        );
    }
    if !others.is_empty() {
        // An instance's groups are authorized too when they change: the stack's.
        let tag = format!("aws:ResourceTag/{TAG_STACK}");
        let resources = [ec2(own), ec2("security-group")];
        out.push(
            Statement::new(&name, others, &resources).when(json!({"StringEquals": {tag: stack}})),
        );
    }
    out
}

/// A function's role is passed to Lambda on create and on update.
fn pass_role(m: &Model, v: &Validated) -> Option<Statement> {
    let passing = v
        .stack
        .decls
        .values()
        .filter(|d| !d.is_data && v.schema(&d.id).actions.create.contains(&"iam:PassRole"));
    let roles: Vec<String> = passing
        .flat_map(|d| parent_arns(m, &d.id, "role", "aws_iam_role").pop())
        .collect();
    (!roles.is_empty()).then(|| {
        Statement::new("PassTheFunctionsRole", ["iam:PassRole"], &roles)
            .when(json!({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}))
    })
}

/// The S3 backend: the state object, its lock and journal (all under its
/// key), the bucket's listing and versioning, and the KMS key if one is set.
fn state_bucket(backend: &BTreeMap<String, String>, stack: &str) -> Vec<Statement> {
    let kind = backend.get("type").map(String::as_str);
    if kind != Some("s3") && (kind.is_some() || !backend.contains_key("bucket")) {
        return vec![];
    }
    let bucket = backend.get("bucket").cloned().unwrap_or_else(|| "*".into());
    let key = (backend.get("key").cloned()).unwrap_or_else(|| format!("stackctl/{stack}.json"));
    let objects = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"];
    let mut out = vec![
        Statement::new(
            "StateObjects",
            objects,
            &[format!("arn:aws:s3:::{bucket}/{key}*")],
        ),
        Statement::new(
            "StateBucket",
            ["s3:ListBucket", "s3:GetBucketVersioning"],
            &[format!("arn:aws:s3:::{bucket}")],
        ),
    ];
    if let Some(kms) = backend.get("kms_key_id") {
        out.push(Statement::new(
            "StateEncryption",
            ["kms:GenerateDataKey", "kms:Decrypt"],
            std::slice::from_ref(kms),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backend: &[(&str, &str)]) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
        let seed = include_str!("../tests/fixtures/seed/stack.yaml");
        let stack = crate::config::Stack::parse(&path, seed).unwrap();
        let v = crate::validate::validate(stack, &[], Some("us-east-2")).unwrap();
        let backend = backend
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        document(&statements(&v, Some("us-east-2"), &backend, Phase::Apply))
    }

    fn statement<'p>(policy: &'p Value, sid: &str) -> &'p Value {
        let all = policy["Statement"].as_array().unwrap();
        all.iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("{sid}: {policy:#}"))
    }

    /// Writes are scoped: to the stack's ARNs where its names are known, and
    /// by its ownership tag where AWS makes the ids; only reads (and what IAM
    /// takes no resource for) are on `*`.
    #[test]
    fn writes_are_scoped_to_the_stacks_names_and_tag() {
        let p = policy(&[]);
        let queue = &statement(&p, "WriteSqsQueue")["Resource"];
        assert_eq!(queue, "arn:aws:sqs:us-east-2:*:lambda_notifications01");
        let instance = &statement(&p, "WriteInstance")["Condition"]["StringEquals"];
        assert_eq!(
            instance["aws:ResourceTag/stackctl:stack"],
            "automate-monitoring"
        );
        let pass = &statement(&p, "PassTheFunctionsRole")["Resource"];
        assert_eq!(pass, "arn:aws:iam::*:role/lambda_iam_role01");
        let stream = &statement(&p, "WriteCloudwatchLogStream")["Resource"];
        assert_eq!(stream[0], "arn:aws:logs:us-east-2:*:log-group:myloggroup");
        let open: Vec<&Value> = (p["Statement"].as_array().unwrap().iter())
            .filter(|s| s["Resource"] == "*" && s["Condition"].is_null())
            .map(|s| &s["Sid"])
            .collect();
        assert_eq!(open, ["Read", "WriteCloudwatchQueryDefinition"]);
    }

    #[test]
    fn an_environments_account_replaces_the_wildcard_account() {
        let arns: BTreeSet<String> = [
            "arn:aws:sqs:us-east-2:*:q",
            "arn:aws:iam::*:role/r",
            "arn:aws:s3:::b/k*",
            "*",
        ]
        .map(String::from)
        .into();
        let scoped: Vec<String> = in_account(&arns, "111111111111").into_iter().collect();
        assert_eq!(
            scoped,
            [
                "*",
                "arn:aws:iam::111111111111:role/r",
                "arn:aws:s3:::b/k*",
                "arn:aws:sqs:us-east-2:111111111111:q"
            ]
        );
    }

    #[test]
    fn an_s3_state_adds_its_objects_its_bucket_and_its_key() {
        let p = policy(&[
            ("type", "s3"),
            ("bucket", "tf-state"),
            ("key", "prod/app.json"),
            ("kms_key_id", "arn:aws:kms:us-east-2:1:key/k"),
        ]);
        let objects = &statement(&p, "StateObjects")["Resource"];
        assert_eq!(objects, "arn:aws:s3:::tf-state/prod/app.json*");
        assert_eq!(
            statement(&p, "StateBucket")["Resource"],
            "arn:aws:s3:::tf-state"
        );
        assert_eq!(
            statement(&p, "StateEncryption")["Resource"],
            "arn:aws:kms:us-east-2:1:key/k"
        );
    }
}
