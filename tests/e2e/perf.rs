//! How many calls a plan makes: reads in batches where AWS allows it, tags in
//! bulk, and drift still seen on every property.

use std::time::Duration;

use localaws::Fault;

use crate::support::{applied_seed_stack, count, mutating, Env};

/// n each of topics, queues, log groups and alarms acting on the topics.
fn many(n: usize) -> String {
    let mut s = String::from("stack: many\nregion: us-east-2\nresources:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  topic_{i}:\n    type: aws_sns_topic\n    properties: {{name: many-topic-{i}}}\n  \
             queue_{i}:\n    type: aws_sqs_queue\n    properties: {{name: many-queue-{i}, tags: {{team: sre}}}}\n  \
             logs_{i}:\n    type: aws_cloudwatch_log_group\n    properties: {{name: many-logs-{i}, retention_in_days: 7}}\n  \
             alarm_{i}:\n    type: aws_cloudwatch_metric_alarm\n    properties:\n      alarm_name: many-alarm-{i}\n      \
             namespace: Many\n      metric_name: Errors\n      statistic: Sum\n      period: 60\n      evaluation_periods: 1\n      \
             threshold: 1\n      comparison_operator: GreaterThanThreshold\n      alarm_actions: [\"${{topic_{i}.arn}}\"]\n"
        ));
    }
    s
}

#[test]
fn a_no_op_plan_reads_alarms_and_log_groups_in_batches_and_tags_in_bulk() {
    let env = Env::new();
    env.write_stack(&many(25));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.take_calls();
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
    let calls = env.take_calls();
    assert!(mutating(&calls).is_empty());
    assert_eq!(count(&calls, "DescribeAlarms"), 1, "25 alarms in one call");
    assert!(
        count(&calls, "DescribeLogGroups") <= 1,
        "25 groups in one page"
    );
    assert!(count(&calls, "GetResources") >= 1, "tags in bulk");
    for per_resource_tag_call in ["ListTagsForResource", "ListQueueTags", "ListTagsLogGroup"] {
        assert_eq!(
            count(&calls, per_resource_tag_call),
            0,
            "{per_resource_tag_call}"
        );
    }
    let reads = calls.len() as f64 / 100.0;
    assert!(reads <= 0.6, "{reads} calls per resource: {calls:?}");
}

#[test]
fn drift_in_tags_is_seen_when_tags_are_read_in_bulk() {
    let env = Env::new();
    env.write_stack(&many(6));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let url = env
        .rt
        .block_on(env.sqs().get_queue_url().queue_name("many-queue-3").send())
        .unwrap()
        .queue_url
        .unwrap();
    env.rt
        .block_on(
            env.sqs()
                .tag_queue()
                .queue_url(url)
                .tags("team", "payments")
                .send(),
        )
        .unwrap();
    env.take_calls();
    let plan = env.stackctl(&["plan"]).ok().stdout;
    assert!(
        plan.contains("queue_3 (aws_sqs_queue) will be updated in place"),
        "{plan}"
    );
    assert!(
        plan.contains("\"payments\" -> \"sre\"") || plan.contains("payments"),
        "{plan}"
    );
    assert!(plan.contains("1 to change"), "{plan}");
    assert!(
        count(&env.take_calls(), "GetResources") >= 1,
        "tags were read in bulk"
    );
}

/// Reads whose second call needs something from a first (the policy's
/// version id, an alarm's ARN, the account for `${stack.account_id}`) send it
/// at once from what the state records: with each first call held back, the
/// second still answers before it.
#[test]
fn a_no_op_plan_sends_no_read_that_waits_for_another() {
    let env = applied_seed_stack();
    let pairs = [
        (("iam", "GetPolicy"), ("iam", "GetPolicyVersion")),
        (
            ("monitoring", "DescribeAlarms"),
            ("monitoring", "ListTagsForResource"),
        ),
        (("logs", "DescribeLogGroups"), ("logs", "ListTagsLogGroup")),
        (("sts", "GetCallerIdentity"), ("ec2", "DescribeImages")),
    ];
    for ((service, operation), _) in pairs {
        env.aws
            .inject(Fault::delay(service, operation, Duration::from_secs(2)));
    }
    env.take_calls();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answered: Vec<String> = env
        .take_calls()
        .into_iter()
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    for ((s1, o1), (s2, o2)) in pairs {
        let (first, second) = (format!("{s1}:{o1}"), format!("{s2}:{o2}"));
        let held = answered.iter().rposition(|c| *c == first);
        let next = answered.iter().position(|c| *c == second);
        assert!(
            next.is_some() && next < held,
            "{second:?} waited for {first:?}: {answered:?}"
        );
    }
}

/// The version the state records is read beside GetPolicy, and kept only if
/// GetPolicy says it is still the default: a version made default by hand
/// shows as drift.
#[test]
fn a_policy_version_made_default_by_hand_shows_as_drift() {
    let env = applied_seed_stack();
    let arn = env.state("automate-monitoring")["resources"]["lambda_policy"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_hand = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"}]}"#;
    env.rt
        .block_on(
            env.iam()
                .create_policy_version()
                .policy_arn(&arn)
                .policy_document(by_hand)
                .set_as_default(true)
                .send(),
        )
        .unwrap();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("~ lambda_policy"), "{}", out.stdout);
}
