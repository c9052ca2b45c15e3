//! IAM policy evaluation for the links of a stack, offline
//! (`../shared/spec/iam-evaluation.md`): explicit Deny over Allow, Allow from
//! either an identity policy or the target's resource policy, Action /
//! NotAction, Resource / NotResource with wildcards, Principal, and the
//! condition operators a stack uses on `aws:SourceArn` / `aws:SourceAccount`.
//!
//! Values may be only partly known before anything exists (an instance's id,
//! the account): an unknown part is a token that only `*` in a pattern, or the
//! same token, matches. So a statement is reported as allowing a request only
//! when it allows it whatever the unknown parts turn out to be.

use std::collections::BTreeMap;

use serde_json::Value;

/// Marks the start and end of an unknown part of a value.
const TOKEN: char = '\u{1}';

/// An unknown part, named (`dev_instance.id`, `account`).
pub fn unknown(name: &str) -> String {
    format!("{TOKEN}{name}{TOKEN}")
}

/// JSON text with unknown tokens in its strings, made parseable: the
/// token's marker is a control character, which JSON takes only escaped.
pub fn escape_unknowns(json_text: &str) -> String {
    // An unknown's name may hold quotes (`server["a"].id`): escaped, so the
    // string it stands in stays one JSON string.
    let mut out = String::with_capacity(json_text.len());
    let mut inside = false;
    for c in json_text.chars() {
        match c {
            TOKEN => {
                inside = !inside;
                out.push_str("\\u0001");
            }
            '"' | '\\' if inside => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value with each unknown part a wildcard: an ARN whose account is not
/// known before apply still names the stack's resource, in any account.
pub fn wildcard_unknowns(value: &str) -> String {
    let mut out = String::new();
    for (i, part) in value.split(TOKEN).enumerate() {
        out.push_str(if i % 2 == 1 { "*" } else { part });
    }
    out
}

/// A value as people read it: unknown parts as `<name>`.
pub fn readable(value: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in value.chars() {
        if c == TOKEN {
            out.push(if inside { '>' } else { '<' });
            inside = !inside;
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Char(char),
    Unknown(String),
}

fn items(s: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for c in s.chars() {
        match (c, &mut token) {
            (TOKEN, None) => token = Some(String::new()),
            (TOKEN, Some(_)) => out.push(Item::Unknown(token.take().unwrap_or_default())),
            (c, Some(t)) => t.push(c),
            (c, None) => out.push(Item::Char(c)),
        }
    }
    out
}

/// Whether `pattern` (with `*` and `?`) surely matches `value`. `*` crosses
/// anything except, when `within` is given, that character (an ARN part's
/// `:`); an unknown part of the value is matched only by `*` or by the same
/// unknown part of the pattern.
fn glob(pattern: &str, value: &str, fold_case: bool, within: Option<char>) -> bool {
    let p = items(pattern);
    let v = items(value);
    let same = |a: &Item, b: &Item| match (a, b) {
        (Item::Char(x), Item::Char(y)) if fold_case => x.eq_ignore_ascii_case(y),
        _ => a == b,
    };
    // Classic two-pointer wildcard match with backtracking to the last star.
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        let crosses = |item: &Item| within.is_some_and(|w| *item == Item::Char(w));
        match p.get(pi) {
            Some(Item::Char('*')) => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(Item::Char('?')) if matches!(v[vi], Item::Char(_)) && !crosses(&v[vi]) => {
                pi += 1;
                vi += 1;
            }
            Some(item) if item != &Item::Char('?') && same(item, &v[vi]) => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) if !crosses(&v[sv]) => {
                    star = Some((sp, sv + 1));
                    pi = sp + 1;
                    vi = sv + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|i| *i == Item::Char('*'))
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// An AWS service (`sns.amazonaws.com`): only resource policies can allow it.
    Service(String),
    /// A role, by ARN: its identity policies, and resource policies naming it.
    Role(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub principal: Principal,
    pub action: String,
    pub resource: String,
    /// Condition keys (any case) and their values.
    pub context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Attached to the principal (a role's policies).
    Identity,
    /// The target's own (a queue policy, a function's permissions, a trust policy).
    Resource,
}

/// A policy document and what to call it in a report.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub kind: Kind,
    pub document: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, by these statements.
    Allow(Vec<String>),
    /// Denied outright, by these statements.
    Deny(Vec<String>),
    /// No statement allows it.
    Implicit,
}

/// A string or list of strings, as policies write either.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(s)) => s.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

fn action_matches(st: &Value, action: &str) -> bool {
    let any = |list: Vec<String>| list.iter().any(|p| glob(p, action, true, None));
    match (st.get("Action"), st.get("NotAction")) {
        (Some(a), _) => any(strings(Some(a))),
        (None, Some(n)) => !any(strings(Some(n))),
        _ => false,
    }
}

fn resource_matches(st: &Value, resource: &str, kind: Kind) -> bool {
    let any = |list: Vec<String>| list.iter().any(|p| glob(p, resource, false, None));
    match (st.get("Resource"), st.get("NotResource")) {
        (Some(r), _) => any(strings(Some(r))),
        // NotResource: allowed only where the resource is surely outside the list.
        (None, Some(n)) => strings(Some(n)).iter().all(|p| !could_match(p, resource)),
        // A resource policy may leave Resource out: it is about its own resource.
        (None, None) => kind == Kind::Resource,
    }
}

/// Whether a pattern might match the value once its unknown parts are known
/// (assumed so when any part is unknown: negations are proven only on known
/// values).
fn could_match(pattern: &str, value: &str) -> bool {
    value.contains(TOKEN) || glob(pattern, value, false, None)
}

fn principal_matches(st: &Value, who: &Principal) -> bool {
    let Some(p) = st.get("Principal") else {
        return false;
    };
    if p == "*" {
        return true;
    }
    match who {
        Principal::Service(s) => strings(p.get("Service")).iter().any(|x| x == s),
        Principal::Role(arn) => strings(p.get("AWS")).iter().any(|x| x == "*" || x == arn),
    }
}

/// Whether every condition of a statement holds for the request.
fn conditions_hold(st: &Value, context: &BTreeMap<String, String>) -> bool {
    let Some(Value::Object(ops)) = st.get("Condition") else {
        return true;
    };
    let get = |key: &str| -> Option<&String> {
        context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    ops.iter().all(|(op, keys)| {
        let Value::Object(keys) = keys else {
            return false;
        };
        keys.iter().all(|(key, wanted)| {
            let wanted = strings(Some(wanted));
            let (base, if_exists) = match op.strip_suffix("IfExists") {
                Some(b) => (b, true),
                None => (op.as_str(), false),
            };
            if base == "Null" {
                let absent = get(key).is_none();
                return wanted.iter().any(|w| w == &absent.to_string());
            }
            let Some(have) = get(key) else {
                // Absent key: positive operators fail, negated ones hold.
                return if_exists || base.contains("Not");
            };
            let one = |w: &String| match base.trim_start_matches("String").trim_start_matches("Arn")
            {
                "Equals" if base.starts_with("Arn") => glob(w, have, false, Some(':')),
                "Like" => glob(
                    w,
                    have,
                    false,
                    if base.starts_with("Arn") {
                        Some(':')
                    } else {
                        None
                    },
                ),
                "Equals" => w == have,
                "EqualsIgnoreCase" => w.eq_ignore_ascii_case(have),
                "NotEquals" if base.starts_with("Arn") => !could_match(w, have),
                "NotLike" => !could_match(w, have),
                "NotEquals" => !have.contains(TOKEN) && w != have,
                "NotEqualsIgnoreCase" => !w.eq_ignore_ascii_case(have),
                _ => false,
            };
            if base.contains("Not") {
                wanted.iter().all(one)
            } else {
                wanted.iter().any(one)
            }
        })
    })
}

/// A statement's name for a report: the policy and its Sid (or position).
fn label(policy: &Policy, st: &Value, n: usize) -> String {
    match st.get("Sid").and_then(Value::as_str) {
        Some(sid) => format!("{} statement {sid}", policy.name),
        None => format!("{} statement {}", policy.name, n + 1),
    }
}

/// Decides one request against the policies that apply to it.
pub fn evaluate(request: &Request, policies: &[Policy]) -> Decision {
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    for policy in policies {
        // A service has no identity: only resource policies speak for it.
        if policy.kind == Kind::Identity && matches!(request.principal, Principal::Service(_)) {
            continue;
        }
        for (n, st) in statements(&policy.document).into_iter().enumerate() {
            let applies = (policy.kind == Kind::Identity
                || principal_matches(st, &request.principal))
                && action_matches(st, &request.action)
                && resource_matches(st, &request.resource, policy.kind)
                && conditions_hold(st, &request.context);
            if !applies {
                continue;
            }
            match st.get("Effect").and_then(Value::as_str) {
                Some("Deny") => deny.push(label(policy, st, n)),
                Some("Allow") => allow.push(label(policy, st, n)),
                _ => {}
            }
        }
    }
    if !deny.is_empty() {
        Decision::Deny(deny)
    } else if !allow.is_empty() {
        Decision::Allow(allow)
    } else {
        Decision::Implicit
    }
}

/// AWS managed policies a stack may attach, as AWS publishes them (only the
/// statements that matter for the pipeline's links).
/// What a function in a VPC needs for Lambda to make its network interfaces
/// (AWS's AWSLambdaVPCAccessExecutionRole grants them, with the logs).
pub const VPC_ACCESS: &[&str] = &[
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

pub fn managed_policy(arn: &str) -> Option<Value> {
    let name = arn.rsplit('/').next()?;
    let doc = match name {
        "AWSLambdaVPCAccessExecutionRole" => {
            let mut actions = vec![
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ];
            actions.extend(VPC_ACCESS);
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
            })
        }
        "AWSLambdaBasicExecutionRole" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*"}]
        }),
        "CloudWatchLogsFullAccess" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["logs:*"], "Resource": "*"}]
        }),
        "AmazonEC2ReadOnlyAccess" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}]
        }),
        "AmazonSNSFullAccess" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["sns:*"], "Resource": "*"}]
        }),
        _ => return None,
    };
    arn.starts_with("arn:aws:iam::aws:policy/").then_some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(r: &Request, policies: &[Policy]) -> bool {
        matches!(evaluate(r, policies), Decision::Allow(_))
    }
    use serde_json::json;

    fn request(
        principal: Principal,
        action: &str,
        resource: &str,
        context: &[(&str, &str)],
    ) -> Request {
        Request {
            principal,
            action: action.into(),
            resource: resource.into(),
            context: context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn identity(statements: Value) -> Policy {
        Policy {
            name: "p".into(),
            kind: Kind::Identity,
            document: json!({"Version": "2012-10-17", "Statement": statements}),
        }
    }

    fn resource_policy(statements: Value) -> Policy {
        Policy {
            name: "rp".into(),
            kind: Kind::Resource,
            document: json!({"Version": "2012-10-17", "Statement": statements}),
        }
    }

    fn role() -> Principal {
        Principal::Role("arn:aws:iam::1:role/r".into())
    }

    #[test]
    fn nothing_allows_by_default() {
        let r = request(role(), "sns:Publish", "arn:aws:sns:us-east-2:1:t", &[]);
        assert_eq!(evaluate(&r, &[]), Decision::Implicit);
    }

    #[test]
    fn an_explicit_deny_wins_over_an_allow() {
        let r = request(role(), "sns:Publish", "arn:aws:sns:us-east-2:1:t", &[]);
        let p = identity(json!([
            {"Sid": "A", "Effect": "Allow", "Action": "sns:*", "Resource": "*"},
            {"Sid": "D", "Effect": "Deny", "Action": "sns:Publish", "Resource": "*"}
        ]));
        assert_eq!(
            evaluate(&r, &[p]),
            Decision::Deny(vec!["p statement D".into()])
        );
    }

    #[test]
    fn actions_match_case_insensitively_with_wildcards() {
        let p = |a: &str| identity(json!([{"Effect": "Allow", "Action": a, "Resource": "*"}]));
        let r = request(role(), "ec2:StartInstances", "*", &[]);
        for pattern in [
            "ec2:StartInstances",
            "EC2:startinstances",
            "ec2:Start*",
            "ec2:*",
            "*",
            "ec2:Start?nstances",
        ] {
            assert!(
                matches!(evaluate(&r, &[p(pattern)]), Decision::Allow(_)),
                "{pattern}"
            );
        }
        assert_eq!(evaluate(&r, &[p("ec2:Stop*")]), Decision::Implicit);
    }

    #[test]
    fn not_action_allows_everything_else() {
        let p = identity(json!([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]));
        assert!(allowed(
            &request(role(), "sns:Publish", "x", &[]),
            std::slice::from_ref(&p)
        ));
        assert_eq!(
            evaluate(&request(role(), "iam:CreateUser", "x", &[]), &[p]),
            Decision::Implicit
        );
    }

    #[test]
    fn resources_match_with_wildcards_and_case() {
        let p = |res: &str| {
            identity(json!([{"Effect": "Allow", "Action": "sns:Publish", "Resource": res}]))
        };
        let r = request(role(), "sns:Publish", "arn:aws:sns:us-east-2:1:alerts", &[]);
        assert!(allowed(&r, &[p("arn:aws:sns:*:*:alerts")]));
        assert!(allowed(&r, &[p("arn:aws:sns:us-east-2:1:*")]));
        assert_eq!(
            evaluate(&r, &[p("arn:aws:sns:us-east-2:1:Alerts")]),
            Decision::Implicit
        );
    }

    #[test]
    fn not_resource_allows_only_what_is_surely_outside() {
        let p = identity(
            json!([{"Effect": "Allow", "Action": "sns:Publish", "NotResource": "arn:aws:sns:*:*:secret"}]),
        );
        let open = request(role(), "sns:Publish", "arn:aws:sns:us-east-2:1:alerts", &[]);
        let secret = request(role(), "sns:Publish", "arn:aws:sns:us-east-2:1:secret", &[]);
        assert!(allowed(&open, std::slice::from_ref(&p)));
        assert_eq!(
            evaluate(&secret, std::slice::from_ref(&p)),
            Decision::Implicit
        );
        let unknown_name = request(
            role(),
            "sns:Publish",
            &format!("arn:aws:sns:us-east-2:1:{}", unknown("t.name")),
            &[],
        );
        assert_eq!(
            evaluate(&unknown_name, &[p]),
            Decision::Implicit,
            "might be the excluded one"
        );
    }

    #[test]
    fn unknown_parts_match_only_a_star_or_themselves() {
        let instance = format!(
            "arn:aws:ec2:us-east-2:{}:instance/{}",
            unknown("account"),
            unknown("vm.id")
        );
        let p = |res: &str| {
            identity(json!([{"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": res}]))
        };
        let r = request(role(), "ec2:StopInstances", &instance, &[]);
        assert!(allowed(&r, &[p(&instance)]));
        assert!(allowed(&r, &[p("arn:aws:ec2:*:*:instance/*")]));
        assert_eq!(
            evaluate(&r, &[p("arn:aws:ec2:us-east-2:*:instance/i-0123")]),
            Decision::Implicit
        );
        let other = format!(
            "arn:aws:ec2:us-east-2:{}:instance/{}",
            unknown("account"),
            unknown("other.id")
        );
        assert_eq!(evaluate(&r, &[p(&other)]), Decision::Implicit);
    }

    #[test]
    fn a_service_is_allowed_only_by_a_resource_policy_naming_it() {
        let sns = Principal::Service("sns.amazonaws.com".into());
        let r = request(
            sns,
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-2:1:q",
            &[("aws:SourceArn", "arn:aws:sns:us-east-2:1:t")],
        );
        let wide_identity = identity(json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}]));
        assert_eq!(evaluate(&r, &[wide_identity]), Decision::Implicit);
        let other_service = resource_policy(
            json!([{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": "*"}]),
        );
        assert_eq!(evaluate(&r, &[other_service]), Decision::Implicit);
        let everyone = resource_policy(
            json!([{"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}]),
        );
        assert!(allowed(&r, &[everyone]));
    }

    #[test]
    fn source_arn_conditions_scope_the_allow() {
        let sns = Principal::Service("sns.amazonaws.com".into());
        let topic = "arn:aws:sns:us-east-2:1:alerts";
        let r = request(
            sns,
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-2:1:q",
            &[("aws:SourceArn", topic), ("aws:SourceAccount", "1")],
        );
        let with = |cond: Value| {
            resource_policy(
                json!([{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-2:1:q", "Condition": cond}]),
            )
        };
        // The policy only allows: what it does not allow is an implicit deny.
        let allows = |condition: Value| allowed(&r, &[with(condition)]);
        assert!(allows(json!({"ArnEquals": {"aws:SourceArn": topic}})));
        assert!(
            allows(json!({"ArnLike": {"AWS:SOURCEARN": "arn:aws:sns:*:1:alerts"}})),
            "a key in any case"
        );
        assert!(!allows(
            json!({"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-2:1:other"}})
        ));
        assert!(allows(json!({"StringEquals": {"aws:SourceAccount": "1"}})));
        assert!(!allows(json!({"StringEquals": {"aws:SourceAccount": "2"}})));
        assert!(
            allows(json!({"StringLike": {"aws:SourceArn": "arn:aws:sns:*"}})),
            "* spans colons"
        );
        assert!(
            !allows(json!({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*"}})),
            "part by part"
        );
        assert!(!allows(json!({"ArnNotEquals": {"aws:SourceArn": topic}})));
        let account = json!({"aws:SourceAccount": "2"});
        let both = json!({"ArnEquals": {"aws:SourceArn": topic}, "StringEquals": account});
        assert!(!allows(both), "operators AND");
        let either = json!(["arn:aws:sns:us-east-2:1:x", topic]);
        assert!(
            allows(json!({"ArnEquals": {"aws:SourceArn": either}})),
            "values OR"
        );
    }

    #[test]
    fn an_absent_key_fails_positive_operators_and_passes_negated_ones() {
        let r = request(
            Principal::Service("sns.amazonaws.com".into()),
            "sqs:SendMessage",
            "q",
            &[],
        );
        let with = |cond: Value| {
            resource_policy(
                json!([{"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Condition": cond}]),
            )
        };
        assert_eq!(
            evaluate(&r, &[with(json!({"ArnEquals": {"aws:SourceArn": "x"}}))]),
            Decision::Implicit
        );
        assert!(allowed(
            &r,
            &[with(json!({"ArnEqualsIfExists": {"aws:SourceArn": "x"}}))]
        ));
        assert!(allowed(
            &r,
            &[with(json!({"Null": {"aws:SourceArn": "true"}}))]
        ));
    }

    #[test]
    fn the_bundled_basic_execution_role_grants_logs() {
        let doc =
            managed_policy("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
                .unwrap();
        let p = Policy {
            name: "AWSLambdaBasicExecutionRole".into(),
            kind: Kind::Identity,
            document: doc,
        };
        let r = request(
            role(),
            "logs:PutLogEvents",
            "arn:aws:logs:us-east-2:1:log-group:/aws/lambda/f:*",
            &[],
        );
        assert!(allowed(&r, &[p]));
        assert!(managed_policy("arn:aws:iam::aws:policy/SomethingElse").is_none());
    }
}
