//! `stackctl check`: proves, offline, that each link of the stack's dataflow
//! will work once deployed, and lints what AWS accepts but works against the
//! pipeline. No AWS call.
//!
//! Links: an alarm invoking a function (its permission for
//! `lambda.alarms.cloudwatch.amazonaws.com` with the alarm's ARN), a topic
//! delivering to a queue (the queue policy letting that topic send), a
//! function doing what its code needs (the policies attached to its role), and
//! Lambda assuming the role. Each is evaluated with IAM's semantics
//! (`crate::iam`) on the stack's own policies, with values not known before
//! apply (ids, the account) as unknowns that only a wildcard matches.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::expr;
use crate::config::Diagnostic;
use crate::iam::{self, Decision, Kind, Policy, Principal, Request};
use crate::model::{self, StackValues};
use crate::schema::{is_unknown, Part, Props};
use crate::validate::Validated;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The pipeline will not work as written, or is dangerously exposed.
    Error,
    /// It works, but against good practice or the pipeline's own intent.
    Warning,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub resource: String,
    pub property: Option<String>,
    pub line: usize,
    pub message: String,
    pub fix: String,
}

/// One link of the dataflow and whether the stack's policies allow it.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub action: String,
    pub resource: String,
    pub allowed: bool,
    pub by: Vec<String>,
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub edges: Vec<Edge>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// The stack as the checks see it: every property resolved offline, with
/// what only AWS will know as named unknowns.
pub(crate) struct Model<'a> {
    pub(crate) v: &'a Validated,
    region: String,
    props: BTreeMap<String, Props>,
    /// The resources of each dataflow part, in the order of their ids.
    parts: Vec<(Part, Vec<&'a str>)>,
    /// Per part, the resource each name (ARN, URL, name, id) names first:
    /// a link's target is found without comparing it with every resource.
    named: HashMap<(Part, String), &'a str>,
}

const ACCOUNT: &str = "account";

impl<'a> Model<'a> {
    pub(crate) fn build(v: &'a Validated, region: Option<&str>) -> Model<'a> {
        let region = region
            .map(str::to_string)
            .or_else(|| v.stack.region.clone())
            .unwrap_or_else(|| iam::unknown("region"));
        let mut model = Model {
            v,
            region,
            props: BTreeMap::new(),
            parts: Vec::new(),
            named: HashMap::new(),
        };
        let account = Some(iam::unknown(ACCOUNT));
        let values = StackValues::offline(v, Some(model.region.clone()), account);
        for id in &v.graph.order {
            let props =
                model::declared_props(v, id, &values, &|dep, attr| Some(model.attr(dep, attr)));
            model.props.insert(id.clone(), props);
        }
        model.index();
        model
    }

    fn index(&mut self) {
        for decl in self.v.stack.decls.values() {
            let (id, schema) = (decl.id.as_str(), self.v.schema(&decl.id));
            match self.parts.iter_mut().find(|(p, _)| *p == schema.part) {
                Some((_, ids)) => ids.push(id),
                None => self.parts.push((schema.part, vec![id])),
            }
            for (attr, _) in schema.names {
                if let Some(name) = self.attr(id, attr).as_str() {
                    self.named
                        .entry((schema.part, name.to_string()))
                        .or_insert(id);
                }
            }
        }
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    fn part_of(&self, id: &str) -> Part {
        self.v.schema(id).part
    }

    /// The resources that play this part in the dataflow.
    fn of_part(&self, part: Part) -> Vec<&'a str> {
        let ids = self.parts.iter().find(|(p, _)| *p == part);
        ids.map(|(_, ids)| ids.clone()).unwrap_or_default()
    }

    /// A resource's attribute or property as far as it is known offline.
    pub(crate) fn attr(&self, id: &str, attr: &str) -> Value {
        let decl = &self.v.stack.decls[id];
        let schema = self.v.schema(id);
        // `${q.id}` and `${q.url}` name the queue alike: one spelling per form.
        let attr = schema
            .names_as(attr)
            .and_then(|form| schema.name_in(form))
            .unwrap_or(attr);
        if attr == "arn" && !decl.is_data {
            if let Some(arn) = self.arn(id) {
                return Value::from(arn);
            }
        }
        if schema.attr(attr).is_none() {
            if let Some(v) = self.props.get(id).and_then(|p| p.get(attr)) {
                if !is_unknown(v) {
                    return v.clone();
                }
            }
        }
        Value::from(iam::unknown(&format!("{id}.{attr}")))
    }

    pub(crate) fn text(&self, id: &str, prop: &str) -> Option<String> {
        self.props
            .get(id)?
            .get(prop)
            .filter(|v| !is_unknown(v))
            .and_then(|v| v.as_str().map(str::to_string))
    }

    pub(crate) fn int(&self, id: &str, prop: &str) -> Option<i64> {
        self.prop(id, prop).and_then(Value::as_i64)
    }

    /// The resource's ARN from its type's format.
    pub(crate) fn arn(&self, id: &str) -> Option<String> {
        let format = self.v.schema(id).arn_format?;
        crate::schema::fill_format(format, |field| {
            Some(match field {
                "region" => self.region.clone(),
                "account" => iam::unknown(ACCOUNT),
                _ => self
                    .text(id, field)
                    .unwrap_or_else(|| iam::unknown(&format!("{id}.{field}"))),
            })
        })
    }

    /// The resource of one of `types` this value names, in any of the forms
    /// its schema says name it (ARN, URL, name, id).
    pub(crate) fn target(&self, value: &str, parts: &[Part]) -> Option<&'a str> {
        parts
            .iter()
            .find_map(|p| self.named.get(&(*p, value.to_string())).copied())
    }

    fn line(&self, id: &str, prop: Option<&str>) -> usize {
        let decl = &self.v.stack.decls[id];
        prop.and_then(|p| decl.property(p))
            .map_or(decl.span.line, |p| p.key_span.line)
    }

    fn prop(&self, id: &str, prop: &str) -> Option<&Value> {
        self.props.get(id)?.get(prop)
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// A policy document property as JSON (written as a map or a JSON string).
/// A JSON string's references resolve into its text, the unknown ones as
/// tokens whose marker character JSON only takes escaped.
fn document(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => {
            serde_json::from_str(&iam::escape_unknowns(s)).unwrap_or(Value::Null)
        }
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// Runs every check over a validated stack. `rules` are the values AWS would
/// refuse (from lenient validation): reported as findings too.
pub fn check(v: &Validated, region: Option<&str>, rules: &[Diagnostic]) -> Report {
    let m = Model::build(v, region);
    let mut report = Report::default();
    for d in rules {
        report.findings.push(Finding {
            rule: "SC001",
            severity: Severity::Error,
            resource: d.resource.clone().unwrap_or_default(),
            property: d.property.clone(),
            line: d.span.line,
            message: format!("AWS would refuse this: {}", d.message),
            fix: "change the value as the message says".into(),
        });
    }
    metric_links(&m, &mut report);
    alarm_links(&m, &mut report);
    topic_links(&m, &mut report);
    function_links(&m, &mut report);
    lint_policies(&m, &mut report);
    lint_security_groups(&m, &mut report);
    lint_alarms(&m, &mut report);
    lint_functions(&m, &mut report);
    lint_log_groups(&m, &mut report);
    report
        .findings
        .sort_by(|a, b| (&a.resource, a.line, a.rule).cmp(&(&b.resource, b.line, b.rule)));
    report
}

fn edge(from: &str, to: &str, request: &Request, decision: &Decision, missing: String) -> Edge {
    let (allowed, by, missing) = match decision {
        Decision::Allow(by) => (true, by.clone(), None),
        Decision::Deny(by) => (
            false,
            Vec::new(),
            Some(format!(
                "{} denies it explicitly: remove or narrow that statement",
                by.join(", ")
            )),
        ),
        Decision::Implicit => (false, Vec::new(), Some(missing)),
    };
    Edge {
        from: from.into(),
        to: to.into(),
        action: request.action.clone(),
        resource: iam::readable(&request.resource),
        allowed,
        by,
        missing,
    }
}

/// A broken link as a finding on the resource that must change.
fn broken(
    report: &mut Report,
    m: &Model,
    rule: &'static str,
    on: &str,
    prop: Option<&str>,
    e: &Edge,
) {
    if e.allowed {
        return;
    }
    report.findings.push(Finding {
        rule,
        severity: Severity::Error,
        resource: on.into(),
        property: prop.map(str::to_string),
        line: m.line(on, prop),
        message: format!(
            "{} → {}: {} on {} is not allowed, so the link will not work once deployed",
            e.from, e.to, e.action, e.resource
        ),
        fix: e.missing.clone().unwrap_or_default(),
    });
}

/// The function's resource policy, one statement per `aws_lambda_permission`.
fn function_policy(m: &Model, function: &str) -> Vec<Policy> {
    let name = m.text(function, "function_name").unwrap_or_default();
    let arn = m.arn(function).unwrap_or_default();
    m.of_part(Part::Invocation)
        .into_iter()
        .filter(|p| {
            let target = m.text(p, "function_name").unwrap_or_default();
            target == name || target == arn
        })
        .map(|p| {
            let mut condition = serde_json::Map::new();
            if let Some(src) = m.text(p, "source_arn") {
                condition.insert("ArnLike".into(), json!({"AWS:SourceArn": src}));
            }
            if let Some(acct) = m.text(p, "source_account") {
                condition.insert("StringEquals".into(), json!({"AWS:SourceAccount": acct}));
            }
            Policy {
                name: format!("permission {p}"),
                kind: Kind::Resource,
                document: json!({"Version": "2012-10-17", "Statement": [{
                    "Sid": m.text(p, "statement_id").unwrap_or_default(),
                    "Effect": "Allow",
                    "Principal": {"Service": m.text(p, "principal").unwrap_or_default()},
                    "Action": m.text(p, "action").unwrap_or_else(|| "lambda:InvokeFunction".into()),
                    "Resource": arn,
                    "Condition": condition,
                }]}),
            }
        })
        .collect()
}

const SNS: &str = "sns.amazonaws.com";
const ALARMS: &str = "lambda.alarms.cloudwatch.amazonaws.com";
const INVOKE: &str = "lambda:InvokeFunction";

/// A service acting for a resource of the stack: AWS sets the source's ARN
/// and account as condition keys.
fn from_service(service: &str, action: &str, resource: Option<String>, source: &str) -> Request {
    Request {
        principal: Principal::Service(service.into()),
        action: action.into(),
        resource: resource.unwrap_or_default(),
        context: [
            ("aws:SourceArn".to_string(), source.to_string()),
            ("aws:SourceAccount".to_string(), iam::unknown(ACCOUNT)),
        ]
        .into(),
    }
}

/// The access policies the stack sets on a queue.
fn queue_policies(m: &Model, queue: &str) -> Vec<Policy> {
    m.of_part(Part::QueuePolicy)
        .into_iter()
        .filter(|p| {
            m.target(&m.text(p, "queue_url").unwrap_or_default(), &[Part::Queue]) == Some(queue)
        })
        .map(|p| Policy {
            name: format!("queue policy {p}"),
            kind: Kind::Resource,
            document: document(m.prop(p, "policy")),
        })
        .collect()
}

fn alarm_links(m: &Model, report: &mut Report) {
    for alarm in m.of_part(Part::Alarm) {
        let alarm_arn = m.arn(alarm).unwrap_or_default();
        for prop in ["alarm_actions", "ok_actions", "insufficient_data_actions"] {
            for action in strings(m.prop(alarm, prop)) {
                if let Some(function) = m.target(&action, &[Part::Function]) {
                    let request = from_service(ALARMS, INVOKE, m.arn(function), &alarm_arn);
                    let decision = iam::evaluate(&request, &function_policy(m, function));
                    let missing = format!(
                        "an aws_lambda_permission on `{function}` with principal lambda.alarms.cloudwatch.amazonaws.com, action lambda:InvokeFunction and source_arn ${{{alarm}.arn}} (CloudWatch invokes nothing without it)"
                    );
                    let e = edge(alarm, function, &request, &decision, missing);
                    broken(report, m, "SC601", alarm, Some(prop), &e);
                    report.edges.push(e);
                } else if let Some(topic) = m.target(&action, &[Part::Topic]) {
                    // The topic's default access policy lets alarms of its own
                    // account publish; a stack declares no other topic policy.
                    report.edges.push(Edge {
                        from: alarm.into(),
                        to: topic.into(),
                        action: "sns:Publish".into(),
                        resource: iam::readable(&m.arn(topic).unwrap_or_default()),
                        allowed: true,
                        by: vec!["the topic's default access policy (its own account)".into()],
                        missing: None,
                    });
                }
            }
        }
    }
}

fn topic_links(m: &Model, report: &mut Report) {
    for sub in m.of_part(Part::Subscription) {
        let protocol = m.text(sub, "protocol").unwrap_or_default();
        let topic_arn = m.text(sub, "topic_arn").unwrap_or_default();
        let endpoint = m.text(sub, "endpoint").unwrap_or_default();
        let topic = m.target(&topic_arn, &[Part::Topic]).unwrap_or(sub);
        let (target, request, policies, missing) = match protocol.as_str() {
            "sqs" => {
                let Some(queue) = m.target(&endpoint, &[Part::Queue]) else {
                    continue;
                };
                let missing = format!(
                    "an aws_sqs_queue_policy on `{queue}` allowing Principal {{Service: sns.amazonaws.com}} sqs:SendMessage on ${{{queue}.arn}} with Condition ArnEquals aws:SourceArn ${{{topic}.arn}} (SNS drops the messages silently without it)"
                );
                let request = from_service(SNS, "sqs:SendMessage", m.arn(queue), &topic_arn);
                (queue, request, queue_policies(m, queue), missing)
            }
            "lambda" => {
                let Some(function) = m.target(&endpoint, &[Part::Function]) else {
                    continue;
                };
                let missing = format!(
                    "an aws_lambda_permission on `{function}` with principal sns.amazonaws.com and source_arn ${{{topic}.arn}}"
                );
                let request = from_service(SNS, INVOKE, m.arn(function), &topic_arn);
                (function, request, function_policy(m, function), missing)
            }
            _ => continue,
        };
        let decision = iam::evaluate(&request, &policies);
        let e = edge(topic, target, &request, &decision, missing);
        broken(report, m, "SC602", sub, Some("endpoint"), &e);
        report.edges.push(e);
    }
}

/// The role's identity policies: every policy attached to it.
fn role_policies(m: &Model, role: &str) -> (Vec<Policy>, Vec<String>) {
    let role_name = m.text(role, "name").unwrap_or_default();
    let mut policies = Vec::new();
    let mut unknown = Vec::new();
    for att in m.of_part(Part::PolicyAttachment) {
        if m.text(att, "role").as_deref() != Some(role_name.as_str()) {
            continue;
        }
        let arn = m.text(att, "policy_arn").unwrap_or_default();
        match m.target(&arn, &[Part::Policy]) {
            Some(p) => policies.push(Policy {
                name: format!("policy {p}"),
                kind: Kind::Identity,
                document: document(m.prop(p, "policy")),
            }),
            None => match iam::managed_policy(&arn) {
                Some(doc) => policies.push(Policy {
                    name: arn.rsplit('/').next().unwrap_or_default().to_string(),
                    kind: Kind::Identity,
                    document: doc,
                }),
                None => unknown.push(arn),
            },
        }
    }
    (policies, unknown)
}

/// What a function declared it does: `needs:` beside it, or the manifest of
/// the crate it is built from (`[package.metadata.stackctl] needs`).
fn needs_of(m: &Model, function: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let decl = &m.v.stack.decls[function];
    let account = Some(iam::unknown(ACCOUNT));
    let values = StackValues::offline(m.v, Some(m.region.clone()), account);
    let mut out: Vec<(Vec<String>, Vec<String>)> = decl
        .needs
        .iter()
        .map(|need| {
            let attr = |id: &str, attr: &str| Some(m.attr(id, attr));
            let account = iam::unknown(ACCOUNT);
            let scope = expr::Scope {
                vars: &m.v.vars,
                stack_name: &values.name,
                region: Some(&m.region),
                account_id: Some(&account),
                resource: &attr,
            };
            let resource = scope.resolve(&need.resource);
            (need.actions.clone(), strings(Some(&resource)))
        })
        .collect();
    if let Some(source) = m.text(function, "source") {
        out.extend(manifest_needs(m, function, &m.v.stack.dir().join(source)));
    }
    if in_a_vpc(m, function) {
        // Lambda makes the function's network interfaces with its role's
        // rights, and refuses a function whose role lacks them.
        out.push((
            iam::VPC_ACCESS.iter().map(|a| a.to_string()).collect(),
            vec!["*".into()],
        ));
    }
    out
}

fn in_a_vpc(m: &Model, function: &str) -> bool {
    m.prop(function, "vpc_config")
        .and_then(|v| v.get("subnet_ids"))
        .and_then(Value::as_array)
        .is_some_and(|subnets| !subnets.is_empty())
}

fn manifest_needs(m: &Model, function: &str, crate_dir: &Path) -> Vec<(Vec<String>, Vec<String>)> {
    let Ok(text) = std::fs::read_to_string(crate_dir.join("Cargo.toml")) else {
        return Vec::new();
    };
    let Ok(manifest) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let needs = manifest
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|p| p.get("stackctl"))
        .and_then(|p| p.get("needs"))
        .and_then(|n| n.as_array())
        .cloned()
        .unwrap_or_default();
    let env = m
        .prop(function, "environment")
        .and_then(|e| e.get("variables"))
        .cloned()
        .unwrap_or(Value::Null);
    // `when = "NAME"`: the need of a feature the environment variable turns on.
    let wanted = |need: &&toml::Value| {
        let when = need.get("when").and_then(|w| w.as_str());
        when.is_none_or(|name| env.get(name).is_some())
    };
    needs
        .iter()
        .filter(wanted)
        .map(|need| {
            let actions: Vec<String> = need
                .get("actions")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let template = need.get("resource").and_then(|r| r.as_str()).unwrap_or("*");
            (actions, expand_manifest(m, function, template, &env))
        })
        .collect()
}

/// A manifest resource with `${env.NAME}` (one resource per comma-separated
/// value), `${function_name}`, `${region}` and `${account}` filled in.
fn expand_manifest(m: &Model, function: &str, template: &str, env: &Value) -> Vec<String> {
    let base = template
        .replace("${region}", &m.region)
        .replace("${account}", &iam::unknown(ACCOUNT))
        .replace(
            "${function_name}",
            &m.text(function, "function_name").unwrap_or_default(),
        );
    let Some(start) = base.find("${env.") else {
        return vec![base];
    };
    let Some(end) = base[start..].find('}').map(|e| e + start) else {
        return vec![base];
    };
    let name = &base[start + 6..end];
    match env.get(name).and_then(Value::as_str) {
        Some(value) => value
            .split(',')
            .map(|v| format!("{}{}{}", &base[..start], v.trim(), &base[end + 1..]))
            .collect(),
        None => vec![format!(
            "{}{}{}",
            &base[..start],
            iam::unknown(&format!("{function}.env.{name}")),
            &base[end + 1..]
        )],
    }
}

fn function_links(m: &Model, report: &mut Report) {
    for function in m.of_part(Part::Function) {
        let role_arn = m.text(function, "role").unwrap_or_default();
        let Some(role) = m.target(&role_arn, &[Part::Role]) else {
            continue;
        };
        // Lambda assumes the role: its trust policy must let it.
        let request = Request {
            principal: Principal::Service("lambda.amazonaws.com".into()),
            action: "sts:AssumeRole".into(),
            resource: role_arn.clone(),
            context: BTreeMap::new(),
        };
        let trust = Policy {
            name: format!("role {role} trust policy"),
            kind: Kind::Resource,
            document: document(m.prop(role, "assume_role_policy")),
        };
        let e = edge(
            function,
            role,
            &request,
            &iam::evaluate(&request, &[trust]),
            format!("`{role}`'s assume_role_policy must allow Principal {{Service: lambda.amazonaws.com}} sts:AssumeRole"),
        );
        broken(report, m, "SC604", role, Some("assume_role_policy"), &e);
        report.edges.push(e);

        let (policies, unknown_managed) = role_policies(m, role);
        let boundary = boundary_of(m, role, report);
        for (actions, resources) in needs_of(m, function) {
            for resource in resources {
                for action in &actions {
                    let request = Request {
                        principal: Principal::Role(role_arn.clone()),
                        action: action.clone(),
                        resource: resource.clone(),
                        context: BTreeMap::new(),
                    };
                    let mut target_policies = policies.clone();
                    let target = m.target(
                        &resource,
                        &[Part::Queue, Part::Topic, Part::Instance, Part::LogGroup],
                    );
                    if let Some(queue) = target.filter(|t| m.part_of(t) == Part::Queue) {
                        target_policies.extend(queue_policies(m, queue));
                    }
                    let decision = iam::evaluate(&request, &target_policies);
                    let (decision, missing) = match within(decision, &request, boundary.as_ref()) {
                        Ok(decision) => {
                            (decision, need_missing(m, role, &request, &unknown_managed))
                        }
                        Err((decision, missing)) => (decision, missing),
                    };
                    let to = target.map_or_else(|| iam::readable(&resource), str::to_string);
                    let e = edge(function, &to, &request, &decision, missing);
                    broken(report, m, "SC603", function, None, &e);
                    report.edges.push(e);
                }
            }
        }
    }
}

/// The role's permissions boundary where stackctl can read it: a policy of
/// the stack or an AWS managed one it knows. One it cannot read is a warning,
/// and the role's links are proven by its policies alone.
fn boundary_of(m: &Model, role: &str, report: &mut Report) -> Option<Policy> {
    let arn = m.text(role, "permissions_boundary")?;
    let (name, document) = match m.target(&arn, &[Part::Policy]) {
        Some(p) => (format!("`{p}`"), document(m.prop(p, "policy"))),
        None => match iam::managed_policy(&arn) {
            Some(doc) => (arn.clone(), doc),
            None => {
                // Once per role, however many functions run as it.
                if report
                    .findings
                    .iter()
                    .any(|f| f.rule == "SC606" && f.resource == role)
                {
                    return None;
                }
                report.findings.push(finding(m, "SC606", Severity::Warning, role, "permissions_boundary",
                    format!("`{role}`'s permissions boundary {arn} is not in the stack: what the role's policies grant is proven without it"),
                    "declare the boundary policy in the stack, or make sure by hand that it allows what the function needs"));
                return None;
            }
        },
    };
    let name = format!("permissions boundary {name}");
    Some(Policy {
        name,
        kind: Kind::Identity,
        document,
    })
}

/// A decision of the role's policies, bounded: the boundary must allow what
/// they allow. `Err` carries the refusal and what would lift it.
fn within(
    decision: Decision,
    request: &Request,
    boundary: Option<&Policy>,
) -> Result<Decision, (Decision, String)> {
    let (Decision::Allow(mut by), Some(boundary)) = (decision.clone(), boundary) else {
        return Ok(decision);
    };
    let lift = format!(
        "the role's {} must allow {} on {} too",
        boundary.name,
        request.action,
        iam::readable(&request.resource)
    );
    match iam::evaluate(request, std::slice::from_ref(boundary)) {
        Decision::Allow(bounds) => {
            by.extend(bounds);
            Ok(Decision::Allow(by))
        }
        Decision::Deny(denied) => Err((Decision::Deny(denied), lift)),
        Decision::Implicit => Err((Decision::Implicit, lift)),
    }
}

/// What would let a role do something: a statement, or attaching the policy
/// of the stack that already grants it.
fn need_missing(m: &Model, role: &str, request: &Request, unknown_managed: &[String]) -> String {
    let detached: Vec<&str> = m
        .of_part(Part::Policy)
        .into_iter()
        .filter(|p| {
            let policy = Policy {
                name: p.to_string(),
                kind: Kind::Identity,
                document: document(m.prop(p, "policy")),
            };
            matches!(iam::evaluate(request, &[policy]), Decision::Allow(_))
        })
        .collect();
    if let Some(p) = detached.first() {
        return format!(
            "policy `{p}` grants it but is not attached to `{role}`: add an aws_iam_role_policy_attachment of ${{{p}.arn}} to ${{{role}.name}}"
        );
    }
    let mut text = format!(
        "a statement allowing {} on {} in a policy attached to `{role}`",
        request.action,
        iam::readable(&request.resource)
    );
    if iam::VPC_ACCESS.contains(&request.action.as_str()) {
        text.push_str(" (for a function in a VPC: attach arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole)");
    }
    if !unknown_managed.is_empty() {
        text.push_str(&format!(
            " (stackctl cannot read {}: not in its table of AWS managed policies)",
            unknown_managed.join(", ")
        ));
    }
    text
}

fn finding(
    m: &Model,
    rule: &'static str,
    severity: Severity,
    id: &str,
    prop: &str,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        rule,
        severity,
        resource: id.into(),
        property: Some(prop.into()),
        line: m.line(id, Some(prop)),
        message,
        fix: fix.into(),
    }
}

fn read_only(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or(action);
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| verb.starts_with(p))
        && !verb.contains('*')
}

fn lint_policies(m: &Model, report: &mut Report) {
    for p in m.of_part(Part::Policy) {
        let doc = document(m.prop(p, "policy"));
        let statements = match doc.get("Statement") {
            Some(Value::Array(s)) => s.clone(),
            Some(s) => vec![s.clone()],
            None => Vec::new(),
        };
        for st in statements
            .iter()
            .filter(|s| s.get("Effect") == Some(&json!("Allow")))
        {
            let actions = strings(st.get("Action"));
            let sid = st
                .get("Sid")
                .and_then(Value::as_str)
                .map_or(String::new(), |s| format!(" ({s})"));
            if let Some(wild) = actions.iter().find(|a| a.contains('*')) {
                report.findings.push(finding(m, "SC101", Severity::Warning, p, "policy",
                    format!("a statement{sid} allows the wildcard action `{wild}`: every present and future action it matches"),
                    "list the actions the code calls"));
            }
            if st.get("NotAction").is_some() {
                report.findings.push(finding(
                    m,
                    "SC101",
                    Severity::Warning,
                    p,
                    "policy",
                    format!("a statement{sid} allows NotAction: every action but those listed"),
                    "list the actions the code calls with Action",
                ));
            }
            let everywhere = strings(st.get("Resource")).iter().any(|r| r == "*");
            if let Some(mutating) = actions
                .iter()
                .find(|a| !read_only(a))
                .filter(|_| everywhere)
            {
                report.findings.push(finding(m, "SC102", Severity::Warning, p, "policy",
                    format!("a statement{sid} allows `{mutating}` on every resource (`Resource: \"*\"`)"),
                    "scope it to the resources the code acts on, e.g. ${instance.arn}"));
            }
        }
    }
}

fn lint_security_groups(m: &Model, report: &mut Report) {
    for sg in m.of_part(Part::Firewall) {
        let Some(Value::Array(rules)) = m.prop(sg, "ingress") else {
            continue;
        };
        for rule in rules {
            let from = rule.get("from_port").and_then(Value::as_i64).unwrap_or(0);
            let to = rule.get("to_port").and_then(Value::as_i64).unwrap_or(0);
            let all = rule.get("protocol").and_then(Value::as_str) == Some("-1");
            let cidrs = [rule.get("cidr_blocks"), rule.get("ipv6_cidr_blocks")];
            for cidr in cidrs.into_iter().flat_map(strings) {
                if cidr != "0.0.0.0/0" && cidr != "::/0" {
                    continue;
                }
                let what = if all {
                    Some("every port")
                } else if (from..=to).contains(&22) {
                    Some("SSH (22)")
                } else if (from..=to).contains(&3389) {
                    Some("RDP (3389)")
                } else {
                    None
                };
                if let Some(what) = what {
                    report.findings.push(finding(m, "SC201", Severity::Error, sg, "ingress",
                        format!("{what} is open to the whole internet ({cidr})"),
                        "allow only the operators' network, e.g. cidr_blocks: [\"${var.ssh_cidr}\"] with a /32"));
                }
            }
        }
    }
}

/// A metric as CloudWatch keys it: namespace, name and the names of its
/// dimensions (a filter's dimension values come from the lines it matches).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Metric {
    namespace: String,
    name: String,
    dimensions: Vec<String>,
}

impl Metric {
    fn of(
        namespace: Option<&Value>,
        name: Option<&Value>,
        dimensions: Option<&Value>,
    ) -> Option<Metric> {
        Some(Metric {
            namespace: namespace?.as_str()?.to_string(),
            name: name?.as_str()?.to_string(),
            dimensions: dimensions
                .and_then(Value::as_object)
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        })
    }

    fn watched_by(m: &Model, alarm: &str) -> Option<Metric> {
        Metric::of(
            m.prop(alarm, "namespace"),
            m.prop(alarm, "metric_name"),
            m.prop(alarm, "dimensions"),
        )
    }

    fn published_by(m: &Model, filter: &str) -> Option<Metric> {
        let t = m.prop(filter, "metric_transformation")?;
        Metric::of(t.get("namespace"), t.get("name"), t.get("dimensions"))
    }

    fn path(&self) -> String {
        let mut text = format!("{}/{}", self.namespace, self.name);
        if !self.dimensions.is_empty() {
            text.push_str(&format!(" {{{}}}", self.dimensions.join(", ")));
        }
        text
    }

    /// How far apart two metrics are, for the nearest one to a typo.
    fn distance(&self, other: &Metric) -> usize {
        crate::spelling::edit_distance(&self.namespace, &other.namespace)
            + crate::spelling::edit_distance(&self.name, &other.name)
            + usize::from(self.dimensions != other.dimensions) * 3
    }
}

/// The stack's metric filters by the metric each publishes.
fn publishing<'a>(m: &Model<'a>) -> HashMap<Metric, Vec<&'a str>> {
    let mut by_metric: HashMap<Metric, Vec<&str>> = HashMap::new();
    for f in m.of_part(Part::MetricFilter) {
        if let Some(metric) = Metric::published_by(m, f) {
            by_metric.entry(metric).or_default().push(f);
        }
    }
    by_metric
}

/// The first links of the pipeline: a log group's events through a metric
/// filter, and the metric the filter publishes to the alarms that watch
/// exactly it (same namespace, name and dimensions) with a statistic that
/// can pass their threshold.
fn metric_links(m: &Model, report: &mut Report) {
    let filters: Vec<(&str, Metric)> = m
        .of_part(Part::MetricFilter)
        .into_iter()
        .filter_map(|f| Some((f, Metric::published_by(m, f)?)))
        .collect();
    for (f, _) in &filters {
        let group = m.text(f, "log_group_name").unwrap_or_default();
        if let Some(g) = m.target(&group, &[Part::LogGroup]) {
            report.edges.push(Edge {
                from: g.into(),
                to: f.to_string(),
                action: "log events".into(),
                resource: iam::readable(&group),
                allowed: true,
                by: vec![format!(
                    "metric filter {f} on log group {}",
                    iam::readable(&group)
                )],
                missing: None,
            });
        }
    }
    let publishing = publishing(m);
    for alarm in m.of_part(Part::Alarm) {
        let Some(watched) = Metric::watched_by(m, alarm) else {
            continue;
        };
        // AWS's own metrics, or none of the stack's filters: published elsewhere.
        if watched.namespace.starts_with("AWS/") || filters.is_empty() {
            continue;
        }
        let feeding = publishing.get(&watched).cloned().unwrap_or_default();
        for f in &feeding {
            let why_not = never_fires(m, alarm, f);
            if let Some(why) = &why_not {
                report.findings.push(finding(
                    m,
                    "SC302",
                    Severity::Error,
                    alarm,
                    "statistic",
                    why.clone(),
                    "use statistic: Sum to count matches against the threshold",
                ));
            }
            report.edges.push(Edge {
                from: f.to_string(),
                to: alarm.into(),
                action: format!("metric {}/{}", watched.namespace, watched.name),
                resource: watched.path(),
                allowed: why_not.is_none(),
                by: vec![format!("metric filter {f}'s metric_transformation")],
                missing: why_not,
            });
            counts_defaults(m, alarm, f, report);
        }
        if feeding.is_empty() {
            unfed(m, alarm, &watched, &filters, report);
        }
    }
}

/// An alarm on a custom metric no filter of the stack publishes: a typo in
/// the namespace, the name or the dimensions, or a metric the application
/// publishes itself.
fn unfed(
    m: &Model,
    alarm: &str,
    watched: &Metric,
    filters: &[(&str, Metric)],
    report: &mut Report,
) {
    let Some((f, nearest)) = filters.iter().min_by_key(|(_, p)| p.distance(watched)) else {
        return;
    };
    let property = if nearest.namespace != watched.namespace {
        "namespace"
    } else if nearest.name != watched.name {
        "metric_name"
    } else {
        "dimensions"
    };
    let typo = nearest.namespace == watched.namespace
        || nearest.name == watched.name
        || nearest.distance(watched) <= 4;
    let fix = format!(
        "an alarm on what `{f}` publishes ({}), or a metric_transformation publishing {}",
        nearest.path(),
        watched.path()
    );
    if typo {
        let e = Edge {
            from: f.to_string(),
            to: alarm.into(),
            action: format!("metric {}/{}", watched.namespace, watched.name),
            resource: watched.path(),
            allowed: false,
            by: Vec::new(),
            missing: Some(fix.clone()),
        };
        report.findings.push(finding(m, "SC605", Severity::Error, alarm, property,
            format!("the alarm watches {}, which no metric filter publishes (`{f}` publishes {}): it can never fire", watched.path(), nearest.path()),
            &fix));
        report.edges.push(e);
    } else {
        report.findings.push(finding(m, "SC605", Severity::Warning, alarm, "metric_name",
            format!("no metric filter of this stack publishes {}: unless the application publishes it, the alarm never fires", watched.path()),
            &fix));
    }
}

/// Maximum, Minimum and Average of a filter's values never pass the largest
/// (or smallest) value it emits. Why the alarm can never fire, if it cannot.
fn never_fires(m: &Model, alarm: &str, filter: &str) -> Option<String> {
    let stat = m.text(alarm, "statistic").unwrap_or_default();
    if !["Maximum", "Minimum", "Average"].contains(&stat.as_str()) {
        return None;
    }
    let t = m.prop(filter, "metric_transformation")?;
    let value = t.get("value")?.as_str()?.parse::<f64>().ok()?;
    let default = t
        .get("default_value")
        .and_then(Value::as_f64)
        .unwrap_or(value);
    let (lo, hi) = (value.min(default), value.max(default));
    let threshold = m.prop(alarm, "threshold").and_then(Value::as_f64)?;
    let op = m.text(alarm, "comparison_operator").unwrap_or_default();
    let never = match op.as_str() {
        "GreaterThanThreshold" => hi <= threshold,
        "GreaterThanOrEqualToThreshold" => hi < threshold,
        "LessThanThreshold" => lo >= threshold,
        "LessThanOrEqualToThreshold" => lo > threshold,
        _ => false,
    };
    never.then(|| format!(
        "`{filter}` emits {value} per match (default {default}): the {stat} of those is never {op} {threshold}, so the alarm can never fire"
    ))
}

/// SampleCount counts samples, and a default value is one sample a minute
/// for every minute with logs but no match.
fn counts_defaults(m: &Model, alarm: &str, filter: &str, report: &mut Report) {
    let stat = m.text(alarm, "statistic").unwrap_or_default();
    let default = m
        .prop(filter, "metric_transformation")
        .and_then(|t| t.get("default_value"));
    if stat == "SampleCount" && default.is_some() {
        report.findings.push(finding(m, "SC304", Severity::Warning, alarm, "statistic",
            format!("`{filter}` publishes its default value for every minute with logs but no match, and SampleCount counts those samples too: the alarm counts minutes with traffic, not matches"),
            "statistic: Sum (each match adds its value; the default adds 0)"));
    }
}

fn lint_alarms(m: &Model, report: &mut Report) {
    let publishing = publishing(m);
    for alarm in m.of_part(Part::Alarm) {
        let missing = m
            .text(alarm, "treat_missing_data")
            .unwrap_or_else(|| "missing".into());
        if let Some(watched) = Metric::watched_by(m, alarm) {
            for &filter in publishing.get(&watched).into_iter().flatten() {
                let no_default = m
                    .prop(filter, "metric_transformation")
                    .is_some_and(|t| t.get("default_value").is_none());
                if no_default && (missing == "missing" || missing == "ignore") {
                    report.findings.push(finding(m, "SC301", Severity::Error, alarm, "treat_missing_data",
                        format!("`{filter}` reports {}/{} only when a line matches (no default_value), and missing data is `{missing}`: after the first alarm the metric goes quiet and the alarm stays in ALARM, so it never fires again", watched.namespace, watched.name),
                        &format!("set metric_transformation.default_value: 0 on `{filter}` and treat_missing_data: notBreaching")));
                }
            }
        }
        text_disagrees(m, alarm, report);
    }
}

/// The description says one window, the settings another.
fn text_disagrees(m: &Model, alarm: &str, report: &mut Report) {
    let Some(text) = m.text(alarm, "alarm_description") else {
        return;
    };
    let period = m.int(alarm, "period").unwrap_or(0);
    let periods = m.int(alarm, "evaluation_periods").unwrap_or(1);
    let datapoints = m.int(alarm, "datapoints_to_alarm").unwrap_or(periods);
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let Ok(n) = pair[0].parse::<i64>() else {
            continue;
        };
        let window = period * periods;
        let said = match pair[1] {
            "minute" | "minutes" => Some(n * 60),
            "hour" | "hours" => Some(n * 3600),
            "second" | "seconds" => Some(n),
            _ => None,
        };
        if said.is_some_and(|s| s != window && s != period) {
            report.findings.push(finding(m, "SC303", Severity::Warning, alarm, "period",
                format!("the description says {} {}, but the alarm looks at {} s (period {period} × evaluation_periods {periods})", pair[0], pair[1], window),
                "make period × evaluation_periods match what the description promises, or fix the description"));
        }
        if matches!(pair[1], "datapoints" | "periods") && n != datapoints {
            report.findings.push(finding(
                m,
                "SC303",
                Severity::Warning,
                alarm,
                "datapoints_to_alarm",
                format!(
                    "the description says {n} {}, but the alarm fires on {datapoints} of {periods}",
                    pair[1]
                ),
                "make datapoints_to_alarm and evaluation_periods match the description",
            ));
        }
    }
}

fn lint_functions(m: &Model, report: &mut Report) {
    for function in m.of_part(Part::Function) {
        if m.int(function, "reserved_concurrent_executions") == Some(0) {
            report.findings.push(finding(m, "SC403", Severity::Error, function, "reserved_concurrent_executions",
                "its reserved concurrency is 0: Lambda throttles every invocation, so it never runs".into(),
                "leave reserved_concurrent_executions out, or reserve at least 1"));
        }
        let timeout = m.int(function, "timeout").unwrap_or(3);
        let needs = needs_of(m, function);
        let does = |a: &str| {
            needs
                .iter()
                .any(|(actions, _)| actions.iter().any(|x| x.eq_ignore_ascii_case(a)))
        };
        if does("ec2:StopInstances") && does("ec2:StartInstances") && timeout < 120 {
            report.findings.push(finding(m, "SC401", Severity::Error, function, "timeout",
                format!("the function stops and starts an instance, which takes minutes, but times out after {timeout} s"),
                "timeout: 300 (and wait on the instance's state, within the deadline)"));
        }
        for (actions, resources) in &needs {
            if !actions
                .iter()
                .any(|a| a.eq_ignore_ascii_case("sqs:ReceiveMessage"))
            {
                continue;
            }
            for queue in resources.iter().filter_map(|r| m.target(r, &[Part::Queue])) {
                let visibility = m.int(queue, "visibility_timeout_seconds").unwrap_or(30);
                if visibility < timeout {
                    report.findings.push(finding(m, "SC402", Severity::Warning, queue, "visibility_timeout_seconds",
                        format!("`{function}` may work on a message for {timeout} s, but it becomes visible again after {visibility} s and is handled twice"),
                        &format!("visibility_timeout_seconds: {} (at least the function's timeout; AWS suggests six times)", timeout * 6)));
                }
            }
        }
    }
}

fn lint_log_groups(m: &Model, report: &mut Report) {
    for group in m.of_part(Part::LogGroup) {
        let days = m.int(group, "retention_in_days").unwrap_or(0);
        if days == 0 {
            report.findings.push(finding(
                m,
                "SC501",
                Severity::Warning,
                group,
                "retention_in_days",
                "the log group keeps its logs forever (and bills for them)".into(),
                "retention_in_days: 14 (or what your retention policy says)",
            ));
        }
    }
}

/// The report as text, findings grouped by resource, then the links.
pub fn render(report: &Report, file: &str) -> String {
    render_with(report, file, true)
}

/// The findings and the summary, without the list of links (what
/// `validate` prints).
pub fn render_findings(report: &Report, file: &str) -> String {
    render_with(report, file, false)
}

fn render_with(report: &Report, file: &str, links: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut current = None;
    for f in &report.findings {
        if current != Some(&f.resource) {
            let _ = writeln!(out, "\n{}:", f.resource);
            current = Some(&f.resource);
        }
        let _ = writeln!(
            out,
            "  {file}:{} {} {} {}{}\n      fix: {}",
            f.line,
            match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            f.rule,
            f.property
                .as_ref()
                .map_or(String::new(), |p| format!("`{p}`: ")),
            f.message,
            f.fix
        );
    }
    if links && !report.edges.is_empty() {
        let _ = writeln!(out, "\nLinks:");
        for e in &report.edges {
            // A metric link's action names its metric already.
            let on = if e.action.ends_with(&e.resource) {
                String::new()
            } else {
                format!(" on {}", e.resource)
            };
            let _ = writeln!(
                out,
                "  {} {} → {}: {}{on}{}",
                if e.allowed { "✓" } else { "✗" },
                e.from,
                e.to,
                e.action,
                if e.allowed {
                    format!(" (allowed by {})", e.by.join(", "))
                } else {
                    format!(" — missing {}", e.missing.clone().unwrap_or_default())
                }
            );
        }
    }
    let errors = report.errors();
    let warnings = report.findings.len() - errors;
    let proven = report.edges.iter().filter(|e| e.allowed).count();
    let _ = writeln!(
        out,
        "\n{errors} error(s), {warnings} warning(s); {proven} of {} links proven.",
        report.edges.len()
    );
    out
}

/// The findings as a Markdown list, for a pull request comment.
pub fn render_markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in &report.findings {
        let _ = writeln!(
            out,
            "- {} **{} {}** `{}`{} (line {}): {} *Fix:* {}",
            if f.severity == Severity::Error {
                "❌"
            } else {
                "⚠️"
            },
            if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            },
            f.rule,
            f.resource,
            f.property
                .as_ref()
                .map_or(String::new(), |p| format!(" `{p}`")),
            f.line,
            f.message,
            f.fix
        );
    }
    let proven = report.edges.iter().filter(|e| e.allowed).count();
    let _ = writeln!(
        out,
        "{}{proven} of {} links proven.",
        if report.findings.is_empty() {
            "No findings. "
        } else {
            "\n"
        },
        report.edges.len()
    );
    out
}

#[cfg(test)]
mod corpus;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stack;

    const SEED: &str = include_str!("../../tests/fixtures/seed/stack.yaml");
    const TUTORIAL: &str = include_str!("../../tests/fixtures/tutorial.yaml");

    const TWO: &str =
        "{dev: {name: dev-instance, prefix: ''}, web-2: {name: web-2, prefix: web-2-}}";

    /// The repository's stack.yaml (as `src` has it) with a second instance.
    fn repository_with_two_instances(src: &str) -> Report {
        repository_with(src, TWO)
    }

    fn repository_with(src: &str, fleet: &str) -> Report {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
        let stack = Stack::parse(&path, src).unwrap();
        let vars = [("fleet".to_string(), fleet.to_string())];
        let (v, rules) =
            crate::validate::validate_lenient(stack, &vars, Some("us-east-2")).unwrap();
        check(&v, Some("us-east-2"), &rules)
    }

    const REPOSITORY: &str = include_str!("../../stack.yaml");

    /// Every link of each instance's watch is proven, and the function's to
    /// each instance.
    #[test]
    fn the_repository_stack_proves_every_link_of_every_instance() {
        let report = repository_with_two_instances(REPOSITORY);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert!(
            report.edges.iter().all(|e| e.allowed),
            "{:#?}",
            report.edges
        );
        for key in ["dev", "web-2"] {
            let alarm = format!("module.watch[\"{key}\"].slow_response_alarm");
            let instance = format!("dev_instance[\"{key}\"]");
            let proven =
                |from: &str, to: &str| report.edges.iter().any(|e| e.from == from && e.to == to);
            assert!(proven(&alarm, "remediation"), "{key}");
            assert!(proven("remediation", &instance), "{key}");
        }
    }

    /// Its `moved:` entries and outputs do not tie it to its first key.
    #[test]
    fn the_repository_stack_takes_a_fleet_without_its_first_key() {
        let report = repository_with(REPOSITORY, "{web-2: {name: web-2, prefix: web-2-}}");
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert!(report
            .edges
            .iter()
            .any(|e| e.to == "dev_instance[\"web-2\"]" && e.allowed));
    }

    /// The same, its function's policy written as a JSON string with the
    /// fleet's instances spliced in (`"Resource": ${dev_instance[*].arn}`).
    #[test]
    fn a_json_string_policy_over_a_fleet_proves_every_instance() {
        let policy = REPOSITORY.find("  lambda_policy:").unwrap();
        let start = policy + REPOSITORY[policy..].find("      policy:\n").unwrap();
        let end = REPOSITORY.find("  lambda_policy_attachment:").unwrap();
        let json = r#"      policy: |
        {"Version": "2012-10-17", "Statement": [
          {"Sid": "RestartTheInstance", "Effect": "Allow", "Action": ["ec2:StopInstances", "ec2:StartInstances", "ec2:RebootInstances", "ec2:CreateTags"], "Resource": ${dev_instance[*].arn}},
          {"Sid": "WhichInstance", "Effect": "Allow", "Action": "cloudwatch:ListTagsForResource", "Resource": "arn:aws:cloudwatch:${stack.region}:${stack.account_id}:alarm:*"},
          {"Sid": "WatchItsState", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
          {"Sid": "Report", "Effect": "Allow", "Action": "sns:Publish", "Resource": "${lambda_topic.arn}"}]}

"#;
        let mut src = REPOSITORY.to_string();
        src.replace_range(start..end, json);
        let report = repository_with_two_instances(&src);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        let proven = |to: &str| report.edges.iter().any(|e| e.to == to && e.allowed);
        assert!(proven("dev_instance[\"dev\"]") && proven("dev_instance[\"web-2\"]"));
    }

    fn report(src: &str) -> Report {
        let stack = Stack::parse(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("stack.yaml")
                .as_path(),
            src,
        )
        .unwrap();
        let (v, rules) = crate::validate::validate_lenient(stack, &[], Some("us-east-2")).unwrap();
        check(&v, Some("us-east-2"), &rules)
    }

    /// Asserts that `rule` is found on `resource`, and shows every finding
    /// when it is not.
    fn assert_finding(r: &Report, rule: &str, resource: &str) {
        let found = r
            .findings
            .iter()
            .any(|f| f.rule == rule && f.resource == resource);
        assert!(found, "no {rule} on {resource} in {:#?}", r.findings);
    }

    /// The link is refused, and what it misses says `missing`.
    fn assert_broken(r: &Report, from: &str, action: &str, missing: &str) {
        let e = edge(r, from, action);
        assert!(!e.allowed, "{e:?}");
        let said = e.missing.as_deref().unwrap_or_default();
        assert!(said.contains(missing), "{missing:?} not in {e:?}");
    }

    fn rules_of(r: &Report) -> Vec<(&'static str, String)> {
        r.findings
            .iter()
            .map(|f| (f.rule, f.resource.clone()))
            .collect()
    }

    /// The one edge from `from` doing `action`.
    fn edge<'r>(r: &'r Report, from: &str, action: &str) -> &'r Edge {
        r.edges
            .iter()
            .find(|e| e.from == from && e.action == action)
            .unwrap_or_else(|| panic!("no edge {from} {action}: {:#?}", r.edges))
    }

    #[test]
    fn the_seed_stack_is_proven_wired_and_clean() {
        let r = report(SEED);
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!(r.edges.len(), 13);
        assert!(r.edges.iter().all(|e| e.allowed), "{:#?}", r.edges);
        let e = edge(&r, "slow_response_alarm", "lambda:InvokeFunction");
        assert_eq!(e.to, "remediation");
        assert_eq!(
            e.by,
            ["permission alarm_invoke_permission statement AllowSlowResponseAlarm"]
        );
        assert_eq!(
            e.resource,
            "arn:aws:lambda:us-east-2:<account>:function:lambda_function01"
        );
        let e = edge(&r, "remediation", "ec2:StopInstances");
        assert_eq!(e.to, "dev_instance");
        assert_eq!(
            e.resource,
            "arn:aws:ec2:us-east-2:<account>:instance/<dev_instance.id>"
        );
    }

    #[test]
    fn the_tutorial_as_written_gets_every_finding() {
        // The tutorial's zip is the reader's; any file at the root stands in.
        let r = report(&TUTORIAL.replace("filename: fn.zip", "filename: Cargo.toml"));
        let found = rules_of(&r);
        for expected in [
            ("SC001", "response_time_alarm"), // 5 datapoints of 1 period
            ("SC301", "response_time_alarm"), // no default value, missing data ignored
            ("SC201", "ssh"),                 // SSH from anywhere
            ("SC102", "lambda_policy"),       // stop/start on Resource "*"
            ("SC602", "subscription"),        // no queue policy
            ("SC601", "response_time_alarm"), // no Lambda permission
            ("SC401", "lambda_function"),     // 3 s for a stop and a start
            ("SC501", "app_logs"),            // logs kept forever
        ] {
            assert!(
                found.contains(&(expected.0, expected.1.to_string())),
                "{expected:?} missing from {found:#?}"
            );
        }
        let permission = r.findings.iter().find(|f| f.rule == "SC601").unwrap();
        assert!(
            permission
                .fix
                .contains("principal lambda.alarms.cloudwatch.amazonaws.com"),
            "{}",
            permission.fix
        );
        assert_eq!(
            permission.line,
            TUTORIAL
                .lines()
                .position(|l| l.contains("alarm_actions"))
                .unwrap()
                + 1
        );
    }

    #[test]
    fn a_function_with_no_concurrency_never_runs() {
        let throttled = SEED.replace(
            "      timeout: 300\n",
            "      timeout: 300\n      reserved_concurrent_executions: 0\n",
        );
        assert_finding(&report(&throttled), "SC403", "remediation");
        assert!(!rules_of(&report(SEED))
            .iter()
            .any(|(rule, _)| *rule == "SC403"));
    }

    #[test]
    fn a_function_in_a_vpc_needs_its_role_to_make_network_interfaces() {
        let in_a_vpc = SEED.replace(
            "      timeout: 300\n",
            "      timeout: 300\n      vpc_config: {subnet_ids: [subnet-1], security_group_ids: [sg-1]}\n",
        );
        let r = report(&in_a_vpc);
        assert_broken(
            &r,
            "remediation",
            "ec2:CreateNetworkInterface",
            "attach arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        );
        let vpc_access = in_a_vpc.replace(
            "service-role/AWSLambdaBasicExecutionRole",
            "service-role/AWSLambdaVPCAccessExecutionRole",
        );
        assert!(
            edge(
                &report(&vpc_access),
                "remediation",
                "ec2:CreateNetworkInterface"
            )
            .allowed
        );
    }

    /// The seed stack, its role bounded by `arn`, and a boundary policy of the
    /// stack allowing `actions`.
    fn bounded(arn: &str, actions: &str) -> String {
        let policy = format!("  boundary:\n    type: aws_iam_policy\n    properties:\n      name: boundary\n      policy:\n        Version: \"2012-10-17\"\n        Statement:\n          - {{Effect: Allow, Action: {actions}, Resource: \"*\"}}\n\n  lambda_role:\n");
        SEED.replacen("  lambda_role:\n", &policy, 1).replacen(
            "      name: lambda_iam_role01\n",
            &format!("      name: lambda_iam_role01\n      permissions_boundary: {arn}\n"),
            1,
        )
    }

    #[test]
    fn a_permissions_boundary_takes_what_it_does_not_allow() {
        let r = report(&bounded("${boundary.arn}", "[\"sns:Publish\", \"logs:*\"]"));
        assert_broken(
            &r,
            "remediation",
            "ec2:StopInstances",
            "the role's permissions boundary `boundary` must allow ec2:StopInstances",
        );
        assert!(edge(&r, "remediation", "sns:Publish").allowed);
    }

    #[test]
    fn a_permissions_boundary_allowing_everything_needed_breaks_no_link() {
        let r = report(&bounded("${boundary.arn}", "\"*\""));
        assert!(
            !rules_of(&r).iter().any(|(rule, _)| rule.starts_with("SC6")),
            "{:#?}",
            r.findings
        );
        let stop = edge(&r, "remediation", "ec2:StopInstances");
        assert!(
            stop.by
                .iter()
                .any(|by| by.contains("permissions boundary `boundary`")),
            "{stop:?}"
        );
    }

    #[test]
    fn a_permissions_boundary_outside_the_stack_is_a_warning() {
        let r = report(&bounded(
            "arn:aws:iam::123456789012:policy/org-boundary",
            "\"*\"",
        ));
        assert_finding(&r, "SC606", "lambda_role");
        let second = "  second:\n    type: aws_lambda_function\n    properties: {function_name: second, role: \"${lambda_role.arn}\", runtime: provided.al2023, filename: Cargo.toml}\n\n  boundary:\n";
        let two = bounded("arn:aws:iam::123456789012:policy/org-boundary", "\"*\"").replacen(
            "  boundary:\n",
            second,
            1,
        );
        let said = report(&two)
            .findings
            .iter()
            .filter(|f| f.rule == "SC606")
            .count();
        assert_eq!(said, 1, "once for the role its two functions share");
        assert!(edge(&r, "remediation", "ec2:StopInstances").allowed);
    }

    #[test]
    fn ssh_open_to_every_ipv6_address_is_open_to_the_internet() {
        let r = report(
            &TUTORIAL
                .replace("filename: fn.zip", "filename: Cargo.toml")
                .replace("cidr_blocks: [0.0.0.0/0]}", "ipv6_cidr_blocks: [\"::/0\"]}"),
        );
        assert_finding(&r, "SC201", "ssh");
    }

    #[test]
    fn a_permission_for_another_alarm_breaks_the_link() {
        let r = report(&SEED.replace(
            "source_arn: ${slow_response_alarm.arn}",
            "source_arn: arn:aws:cloudwatch:us-east-2:123456789012:alarm:other",
        ));
        assert_broken(
            &r,
            "slow_response_alarm",
            "lambda:InvokeFunction",
            "source_arn ${slow_response_alarm.arn}",
        );
        assert_finding(&r, "SC601", "slow_response_alarm");
    }

    #[test]
    fn a_queue_policy_for_another_topic_breaks_the_link() {
        let r = report(&SEED.replace(
            r#"ArnEquals: {"aws:SourceArn": "${lambda_topic.arn}"}"#,
            r#"ArnEquals: {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:other"}"#,
        ));
        assert_broken(
            &r,
            "lambda_topic",
            "sqs:SendMessage",
            "ArnEquals aws:SourceArn ${lambda_topic.arn}",
        );
    }

    #[test]
    fn an_explicit_deny_breaks_the_link_and_is_named() {
        let r = report(&SEED.replace(
            "          - Sid: Report
",
            "          - Sid: NoStopping
            Effect: Deny
            Action: ec2:StopInstances
            Resource: \"*\"
          - Sid: Report
",
        ));
        assert_broken(
            &r,
            "remediation",
            "ec2:StopInstances",
            "policy lambda_policy statement NoStopping denies it",
        );
        assert!(edge(&r, "remediation", "ec2:StartInstances").allowed);
    }

    #[test]
    fn not_action_leaves_out_what_it_lists() {
        let r = report(&SEED.replace(
            "            Action: sns:Publish
",
            "            NotAction: sns:Publish
",
        ));
        assert!(!edge(&r, "remediation", "sns:Publish").allowed);
        assert_finding(&r, "SC101", "lambda_policy");
    }

    #[test]
    fn a_policy_not_attached_grants_nothing_and_the_fix_says_attach_it() {
        let start = SEED.find("  lambda_policy_attachment:").unwrap();
        let end = SEED.find("  # Lets the function write its logs").unwrap();
        let mut src = SEED.to_string();
        src.replace_range(start..end, "");
        let src = src.replace(
            "depends_on: [lambda_policy_attachment, lambda_logging]",
            "depends_on: [lambda_logging]",
        );
        let r = report(&src);
        assert_broken(
            &r,
            "remediation",
            "ec2:StopInstances",
            "policy `lambda_policy` grants it but is not attached to `lambda_role`",
        );
    }

    #[test]
    fn a_queue_named_by_its_id_is_the_queue_its_policy_governs() {
        let r = report(&SEED.replace(
            "queue_url: ${notifications.url}",
            "queue_url: ${notifications.id}",
        ));
        assert!(
            edge(&r, "lambda_topic", "sqs:SendMessage").allowed,
            "{:#?}",
            r.edges
        );
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
    }

    /// The seed's queue policy as one JSON string, references inside.
    fn json_string_queue_policy(statement_extra: &str) -> String {
        let start = SEED.find("      policy:\n        Version: \"2012-10-17\"\n        Statement:\n          - Sid: AllowOnlyTheRemediationTopic").unwrap();
        let end = SEED.find("  notifications_subscription:").unwrap();
        let mut src = SEED.to_string();
        src.replace_range(
            start..end,
            &format!(
                "      policy: '{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Sid\": \"AllowOnlyTheRemediationTopic\", \"Effect\": \"Allow\", \"Principal\": {{\"Service\": \"sns.amazonaws.com\"}}, \"Action\": \"sqs:SendMessage\", \"Resource\": \"${{notifications.arn}}\", \"Condition\": {{\"ArnEquals\": {{\"aws:SourceArn\": \"${{lambda_topic.arn}}\"}}}}}}{statement_extra}]}}'\n\n"
            ),
        );
        src
    }

    #[test]
    fn a_policy_written_as_a_json_string_with_references_is_evaluated() {
        let r = report(&json_string_queue_policy(""));
        let e = edge(&r, "lambda_topic", "sqs:SendMessage");
        assert!(e.allowed, "{e:?}");
        assert_eq!(
            e.by,
            ["queue policy notifications_policy statement AllowOnlyTheRemediationTopic"]
        );
        let denied =
            r#", {"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"}"#;
        assert!(
            !edge(
                &report(&json_string_queue_policy(denied)),
                "lambda_topic",
                "sqs:SendMessage"
            )
            .allowed
        );
    }

    #[test]
    fn the_metric_an_alarm_watches_is_proven_published_by_a_filter() {
        let r = report(SEED);
        let e = edge(&r, "slow_responses", "metric MyApp/SlowResponses");
        assert_eq!((e.to.as_str(), e.allowed), ("slow_response_alarm", true));
        assert!(edge(&r, "app_logs", "log events").allowed);
        for (typo, property) in [
            ("metric_name: SlowResponses", "metric_name: SlowResponse"),
            (
                "namespace: MyApp\n      metric_name",
                "namespace: MyAp\n      metric_name",
            ),
            (
                "      metric_name: SlowResponses\n",
                "      metric_name: SlowResponses\n      dimensions: {Endpoint: /api/data}\n",
            ),
        ] {
            let r = report(&SEED.replace(typo, property));
            let f = r
                .findings
                .iter()
                .find(|f| f.rule == "SC605")
                .unwrap_or_else(|| panic!("{property}: {:#?}", r.findings));
            assert_eq!(
                (f.severity, f.resource.as_str()),
                (Severity::Error, "slow_response_alarm")
            );
            assert!(
                f.message
                    .contains("`slow_responses` publishes MyApp/SlowResponses"),
                "{}",
                f.message
            );
            let e = r
                .edges
                .iter()
                .find(|e| e.to == "slow_response_alarm" && e.from == "slow_responses")
                .unwrap();
            assert!(!e.allowed);
        }
    }

    #[test]
    fn an_alarm_counting_samples_of_a_metric_with_a_default_counts_quiet_minutes() {
        let r = report(&SEED.replace("      statistic: Sum\n", "      statistic: SampleCount\n"));
        assert_finding(&r, "SC304", "slow_response_alarm");
    }

    /// Every rule reasons on the value AWS will use: left out, a property is
    /// at its default (AWS's), and the rules see that.
    #[test]
    fn rules_see_the_defaults_of_what_is_left_out() {
        let no_timeout = SEED.replace("      timeout: 300\n", "");
        assert!(rules_of(&report(&no_timeout)).contains(&("SC401", "remediation".into())));
        let no_retention = SEED.replace("      retention_in_days: 14\n", "");
        assert!(rules_of(&report(&no_retention)).contains(&("SC501", "app_logs".into())));
        let no_default_missing_left_out = SEED
            .replace("        default_value: 0\n", "")
            .replace("      treat_missing_data: notBreaching\n", "");
        assert!(rules_of(&report(&no_default_missing_left_out))
            .contains(&("SC301", "slow_response_alarm".into())));
        // A function taking messages for 60 s from a queue left at AWS's 30 s.
        let consumer = SEED.replace("      timeout: 300\n", "      timeout: 60\n").replace(
            "    sensitive: false\n",
            "    sensitive: false\n    needs:\n      - {actions: [sqs:ReceiveMessage], resource: \"${notifications.arn}\"}\n",
        );
        assert!(rules_of(&report(&consumer)).contains(&("SC402", "notifications".into())));
    }

    #[test]
    fn a_count_metric_under_maximum_can_never_pass_its_threshold() {
        let r = report(&SEED.replace(
            "      statistic: Sum
",
            "      statistic: Maximum
",
        ));
        assert_finding(&r, "SC302", "slow_response_alarm");
    }

    #[test]
    fn a_description_promising_another_window_is_flagged() {
        let r = report(&SEED.replace("period: 600", "period: 300"));
        assert_finding(&r, "SC303", "slow_response_alarm");
    }
}
