//! The seed stack's links written the ways users write them: policies as
//! YAML maps or JSON strings, `.id`, `.url` or `.arn` where they name the
//! same thing, defaults written out or left out, one-item lists or scalars,
//! statements in any order, irrelevant statements beside the ones that
//! matter. `check` must give the same links and findings for every spelling,
//! and the opposite answer for each single-point break.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{check, Report};
use crate::config::Stack;

const SEED: &str = include_str!("../../tests/fixtures/seed/stack.yaml");

#[derive(Debug, Clone)]
struct Spelling {
    /// The queue policy, the function's policy and the role's trust policy
    /// as JSON strings (else YAML maps).
    json_strings: [bool; 3],
    /// One-item lists written as scalars.
    scalars: bool,
    /// Statements and actions reordered by this seed.
    order: u64,
    /// Statements that concern none of the links added.
    extras: bool,
    arn_like: bool,
    /// One statement per action where the seed lists four.
    split: bool,
    queue_by_id: bool,
    topic_by_id: bool,
    /// The permission names its function by name, ARN or id.
    function_by: &'static str,
    /// AWS's defaults written out (else left out).
    defaults: bool,
    source_account: bool,
}

/// One change that breaks exactly one link, and that link.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Break {
    QueueForAnotherTopic,
    QueueDenies,
    QueueStatementMissing,
    StopDenied,
    TrustForAnotherService,
    PermissionForAnotherPrincipal,
    PermissionForAnotherAlarm,
    MetricTypo,
}

impl Break {
    /// The link it breaks (from, action) and the finding that says so.
    fn breaks(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Break::QueueForAnotherTopic | Break::QueueDenies | Break::QueueStatementMissing => {
                ("lambda_topic", "sqs:SendMessage", "SC602")
            }
            Break::StopDenied => ("remediation", "ec2:StopInstances", "SC603"),
            Break::TrustForAnotherService => ("remediation", "sts:AssumeRole", "SC604"),
            Break::PermissionForAnotherPrincipal | Break::PermissionForAnotherAlarm => {
                ("slow_response_alarm", "lambda:InvokeFunction", "SC601")
            }
            Break::MetricTypo => ("slow_responses", "metric MyApp/SlowResponse", "SC605"),
        }
    }
}

prop_compose! {
    fn spelling()(
        json_strings in any::<[bool; 3]>(),
        scalars in any::<bool>(),
        order in any::<u64>(),
        extras in any::<bool>(),
        arn_like in any::<bool>(),
        split in any::<bool>(),
        (queue_by_id, topic_by_id) in (any::<bool>(), any::<bool>()),
        function_by in prop::sample::select(vec!["function_name", "arn", "id"]),
        defaults in any::<bool>(),
        source_account in any::<bool>(),
    ) -> Spelling {
        Spelling {
            json_strings,
            scalars,
            order,
            extras,
            arn_like,
            split,
            queue_by_id,
            topic_by_id,
            function_by,
            defaults,
            source_account,
        }
    }
}

fn one_break() -> impl Strategy<Value = Break> {
    prop::sample::select(vec![
        Break::QueueForAnotherTopic,
        Break::QueueDenies,
        Break::QueueStatementMissing,
        Break::StopDenied,
        Break::TrustForAnotherService,
        Break::PermissionForAnotherPrincipal,
        Break::PermissionForAnotherAlarm,
        Break::MetricTypo,
    ])
}

/// A repeatable shuffle (the order must not matter, so any will do).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

impl Spelling {
    /// A one-item list, or its item.
    fn one(&self, item: &str) -> Value {
        if self.scalars {
            json!(item)
        } else {
            json!([item])
        }
    }

    fn many(&self, items: &[&str]) -> Value {
        let mut items = items.to_vec();
        shuffle(&mut items, self.order);
        json!(items)
    }

    fn document(&self, mut statements: Vec<Value>) -> Value {
        shuffle(&mut statements, self.order.rotate_left(17));
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    fn queue_policy(&self, b: Option<Break>) -> Value {
        let source = match b {
            Some(Break::QueueForAnotherTopic) => "arn:aws:sns:us-east-2:123456789012:another-topic",
            _ => "${lambda_topic.arn}",
        };
        let op = if self.arn_like {
            "ArnLike"
        } else {
            "ArnEquals"
        };
        let mut statements = Vec::new();
        if b != Some(Break::QueueStatementMissing) {
            statements.push(json!({"Sid": "AllowOnlyTheRemediationTopic", "Effect": "Allow",
                "Principal": {"Service": self.one("sns.amazonaws.com")}, "Action": self.one("sqs:SendMessage"),
                "Resource": self.one("${notifications.arn}"), "Condition": {op: {"aws:SourceArn": source}}}));
        }
        if self.extras || b == Some(Break::QueueStatementMissing) {
            statements.push(json!({"Sid": "AccountReadsAttributes", "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sqs:GetQueueAttributes",
                "Resource": "${notifications.arn}"}));
        }
        if b == Some(Break::QueueDenies) {
            statements.push(
                json!({"Sid": "NoOneSends", "Effect": "Deny", "Principal": "*",
                "Action": "sqs:SendMessage", "Resource": "*"}),
            );
        }
        self.document(statements)
    }

    fn function_policy(&self, b: Option<Break>) -> Value {
        let restart = [
            "ec2:StopInstances",
            "ec2:StartInstances",
            "ec2:RebootInstances",
            "ec2:CreateTags",
        ];
        let mut statements: Vec<Value> = if self.split {
            restart
                .iter()
                .enumerate()
                .map(|(i, a)| json!({"Sid": format!("Restart{i}"), "Effect": "Allow", "Action": self.one(a), "Resource": self.one("${dev_instance.arn}")}))
                .collect()
        } else {
            vec![
                json!({"Sid": "RestartTheInstance", "Effect": "Allow", "Action": self.many(&restart), "Resource": self.one("${dev_instance.arn}")}),
            ]
        };
        statements.push(json!({"Sid": "WatchItsState", "Effect": "Allow", "Action": self.one("ec2:DescribeInstances"), "Resource": "*"}));
        statements.push(json!({"Sid": "Report", "Effect": "Allow", "Action": self.one("sns:Publish"), "Resource": self.one("${lambda_topic.arn}")}));
        if self.extras {
            statements.push(json!({"Sid": "ReadLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}));
            statements.push(json!({"Sid": "NeverTerminate", "Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*"}));
        }
        if b == Some(Break::StopDenied) {
            statements.push(json!({"Sid": "NoStopping", "Effect": "Deny", "Action": "ec2:StopInstances", "Resource": "*"}));
        }
        self.document(statements)
    }

    fn trust_policy(&self, b: Option<Break>) -> Value {
        let service = match b {
            Some(Break::TrustForAnotherService) => "ec2.amazonaws.com",
            _ => "lambda.amazonaws.com",
        };
        let mut statements = vec![
            json!({"Effect": "Allow", "Principal": {"Service": self.one(service)}, "Action": self.one("sts:AssumeRole")}),
        ];
        if self.extras {
            statements.push(json!({"Effect": "Allow", "Principal": {"Service": "edgelambda.amazonaws.com"}, "Action": "sts:AssumeRole"}));
        }
        self.document(statements)
    }

    /// A document as a JSON string or, JSON being YAML, as a YAML map.
    fn written(&self, which: usize, doc: &Value) -> String {
        if self.json_strings[which] {
            format!("'{doc}'")
        } else {
            doc.to_string()
        }
    }

    fn stack(&self, b: Option<Break>) -> String {
        let mut src = SEED.to_string();
        replace_block(
            &mut src,
            "notifications_policy",
            "policy",
            &self.written(0, &self.queue_policy(b)),
        );
        replace_block(
            &mut src,
            "lambda_policy",
            "policy",
            &self.written(1, &self.function_policy(b)),
        );
        replace_block(
            &mut src,
            "lambda_role",
            "assume_role_policy",
            &self.written(2, &self.trust_policy(b)),
        );
        let mut edits: Vec<(&str, String)> = Vec::new();
        if self.queue_by_id {
            edits.push((
                "queue_url: ${notifications.url}",
                "queue_url: ${notifications.id}".into(),
            ));
        }
        if self.topic_by_id {
            edits.push((
                "topic_arn: ${lambda_topic.arn}",
                "topic_arn: ${lambda_topic.id}".into(),
            ));
        }
        edits.push((
            "function_name: ${remediation.function_name}",
            format!("function_name: ${{remediation.{}}}", self.function_by),
        ));
        if !self.source_account {
            edits.push(("      source_account: ${stack.account_id}\n", String::new()));
        }
        if self.defaults {
            edits.push(("      treat_missing_data: notBreaching\n", "      treat_missing_data: notBreaching\n      actions_enabled: true\n      dimensions: {}\n".into()));
            edits.push(("      message_retention_seconds: 1209600\n", "      message_retention_seconds: 1209600\n      visibility_timeout_seconds: 30\n      delay_seconds: 0\n".into()));
        } else {
            for default in [
                "      datapoints_to_alarm: 1\n",
                "      handler: bootstrap\n",
                "      memory_size: 128\n",
                "      action: lambda:InvokeFunction\n",
            ] {
                edits.push((default, String::new()));
            }
        }
        match b {
            Some(Break::PermissionForAnotherPrincipal) => edits.push((
                "principal: lambda.alarms.cloudwatch.amazonaws.com",
                "principal: lambda.amazonaws.com".into(),
            )),
            Some(Break::PermissionForAnotherAlarm) => edits.push((
                "source_arn: ${slow_response_alarm.arn}",
                "source_arn: arn:aws:cloudwatch:us-east-2:123456789012:alarm:another-alarm".into(),
            )),
            Some(Break::MetricTypo) => edits.push((
                "metric_name: SlowResponses",
                "metric_name: SlowResponse".into(),
            )),
            _ => {}
        }
        for (from, to) in edits {
            assert!(src.contains(from), "the seed stack no longer has {from:?}");
            src = src.replace(from, &to);
        }
        src
    }
}

/// Replaces `key:` of resource `id` and the lines indented under it.
fn replace_block(src: &mut String, id: &str, key: &str, value: &str) {
    let resource = src.find(&format!("\n  {id}:\n")).expect("the resource");
    let start = resource
        + src[resource..]
            .find(&format!("\n      {key}:"))
            .expect("the key")
        + 1;
    let mut end = start + src[start..].find('\n').expect("a line") + 1;
    while src[end..].starts_with("        ") {
        end += src[end..].find('\n').expect("a line") + 1;
    }
    src.replace_range(start..end, &format!("      {key}: {value}\n"));
}

fn report(src: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
    let stack = Stack::parse(&path, src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let (v, rules) = crate::validate::validate_lenient(stack, &[], Some("us-east-2"))
        .unwrap_or_else(|e| panic!("{e}\n{src}"));
    check(&v, Some("us-east-2"), &rules)
}

/// What a spelling must not change: each link and whether it is proven, and
/// each finding (not where it is, nor which statement a link is proven by:
/// lines and unnamed statements' positions move with the spelling).
fn answer(r: &Report) -> (Vec<String>, Vec<String>) {
    let mut edges: Vec<String> = r
        .edges
        .iter()
        .map(|e| {
            format!(
                "{} → {}: {} on {} {}",
                e.from, e.to, e.action, e.resource, e.allowed
            )
        })
        .collect();
    let mut findings: Vec<String> = r
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {:?} {} {:?}",
                f.rule, f.severity, f.resource, f.property
            )
        })
        .collect();
    edges.sort();
    findings.sort();
    (edges, findings)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_spelling_of_the_seed_stack_gets_the_same_answer(s in spelling()) {
        let seed = answer(&report(SEED));
        prop_assert_eq!(answer(&report(&s.stack(None))), seed);
    }

    #[test]
    fn every_spelling_of_a_break_breaks_that_link(s in spelling(), b in one_break()) {
        let r = report(&s.stack(Some(b)));
        let (from, action, rule) = b.breaks();
        let e = r.edges.iter().find(|e| e.from == from && e.action == action);
        prop_assert!(e.is_some_and(|e| !e.allowed), "{:?}: {:#?}", b, r.edges);
        prop_assert!(r.findings.iter().any(|f| f.rule == rule), "{:?}: {:#?}", b, r.findings);
        let unbroken = |r: &Report| r.edges.iter().filter(|e| !(e.from == from && e.action == action)).map(|e| e.allowed).collect::<Vec<_>>();
        prop_assert!(unbroken(&r).iter().all(|ok| *ok), "{:?} broke more than one link: {:#?}", b, r.edges);
    }
}

#[test]
fn the_seed_itself_is_one_of_the_spellings() {
    // Guards the generator: written the seed's way, it is the seed.
    let s = Spelling {
        json_strings: [false; 3],
        scalars: true,
        order: 0,
        extras: false,
        arn_like: false,
        split: false,
        queue_by_id: false,
        topic_by_id: false,
        function_by: "function_name",
        defaults: true,
        source_account: true,
    };
    assert_eq!(answer(&report(&s.stack(None))), answer(&report(SEED)));
    assert!(report(SEED).edges.iter().all(|e| e.allowed));
}
