//! The messaging part of the seed stack through its whole life.

use aws_sdk_sqs::types::QueueAttributeName;
use localaws::Fault;
use serde_json::Value;

use crate::support::{count, mutating, mutating_operations, Env};

const STACK: &str = r#"stack: messaging
region: us-east-2
resources:
  alerts:
    type: aws_sns_topic
    properties:
      name: lambda_topic01
      tags: {team: sre}
  inbox:
    type: aws_sqs_queue
    properties:
      name: lambda_inbox01
      visibility_timeout_seconds: 60
  inbox_policy:
    type: aws_sqs_queue_policy
    properties:
      queue_url: ${inbox.url}
      policy:
        Version: "2012-10-17"
        Statement:
          - Sid: AllowAlertsTopic
            Effect: Allow
            Principal: {Service: sns.amazonaws.com}
            Action: sqs:SendMessage
            Resource: ${inbox.arn}
            Condition:
              ArnEquals: {"aws:SourceArn": "${alerts.arn}"}
  inbox_subscription:
    type: aws_sns_topic_subscription
    depends_on: [inbox_policy]
    properties:
      topic_arn: ${alerts.arn}
      protocol: sqs
      endpoint: ${inbox.arn}
      raw_message_delivery: true
outputs:
  topic_arn: ${alerts.arn}
  queue_url: ${inbox.url}
"#;

fn queue_attr(env: &Env, url: &str, name: QueueAttributeName) -> Option<String> {
    let out = env
        .rt
        .block_on(
            env.sqs()
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(name.clone())
                .send(),
        )
        .ok()?;
    out.attributes?.remove(&name)
}

fn topic_exists(env: &Env, arn: &str) -> bool {
    env.rt
        .block_on(env.sns().get_topic_attributes().topic_arn(arn).send())
        .is_ok()
}

fn subscription(env: &Env, arn: &str) -> std::collections::HashMap<String, String> {
    env.rt
        .block_on(
            env.sns()
                .get_subscription_attributes()
                .subscription_arn(arn)
                .send(),
        )
        .expect("subscription exists")
        .attributes
        .unwrap_or_default()
}

#[test]
fn messaging_stack_lifecycle() {
    let env = Env::new();
    env.write_stack(STACK);

    // Apply: everything exists and is linked.
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("Apply complete! Resources: 4 added, 0 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    let topic_arn = env.physical_id("messaging", "alerts");
    let queue_url = env.physical_id("messaging", "inbox");
    let sub_arn = env.physical_id("messaging", "inbox_subscription");
    let queue_arn = queue_attr(&env, &queue_url, QueueAttributeName::QueueArn).unwrap();
    let sub = subscription(&env, &sub_arn);
    assert_eq!(sub["Endpoint"], queue_arn);
    assert_eq!(sub["TopicArn"], topic_arn);
    assert_eq!(sub["RawMessageDelivery"], "true");
    let policy: Value =
        serde_json::from_str(&queue_attr(&env, &queue_url, QueueAttributeName::Policy).unwrap())
            .unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "sns.amazonaws.com");
    assert_eq!(
        statement["Condition"]["ArnEquals"]["aws:SourceArn"],
        topic_arn.as_str()
    );
    assert_eq!(statement["Resource"], queue_arn.as_str());
    let tags = env
        .rt
        .block_on(
            env.sns()
                .list_tags_for_resource()
                .resource_arn(&topic_arn)
                .send(),
        )
        .unwrap()
        .tags
        .unwrap();
    let tag = |k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
    assert_eq!(tag("stackctl:stack").as_deref(), Some("messaging"));
    assert_eq!(tag("stackctl:id").as_deref(), Some("alerts"));
    assert_eq!(tag("team").as_deref(), Some("sre"));
    assert_eq!(
        env.stackctl(&["output", "topic_arn"]).ok().stdout.trim(),
        topic_arn
    );

    // No change: plan says so, exits 0 with --detailed-exitcode, and neither plan
    // nor apply makes a mutating call.
    env.take_calls();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    assert!(!calls.is_empty(), "the refresh reads from AWS");
    assert!(
        mutating(&calls).is_empty(),
        "no-op plan+apply mutated: {:?}",
        mutating(&calls)
    );

    // A property changes: updated in place, same queue.
    env.write_stack(&STACK.replace(
        "visibility_timeout_seconds: 60",
        "visibility_timeout_seconds: 90",
    ));
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("~ visibility_timeout_seconds = 60 -> 90"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        out.stdout
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        env.state("messaging")["resources"]["inbox"]["physical_id"],
        queue_url.as_str()
    );
    assert_eq!(
        queue_attr(&env, &queue_url, QueueAttributeName::VisibilityTimeout).as_deref(),
        Some("90")
    );

    // A name changes: the topic is replaced and the subscription follows it.
    let renamed = STACK
        .replace(
            "visibility_timeout_seconds: 60",
            "visibility_timeout_seconds: 90",
        )
        .replace("name: lambda_topic01", "name: lambda_topic02");
    env.write_stack(&renamed);
    let out = env.stackctl(&["plan"]).ok();
    assert!(
        out.stdout
            .contains("~ name = \"lambda_topic01\" -> \"lambda_topic02\" # forces replacement"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("# inbox_subscription (aws_sns_topic_subscription) must be replaced"),
        "{}",
        out.stdout
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let state = env.state("messaging");
    let new_topic = state["resources"]["alerts"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(new_topic.ends_with(":lambda_topic02"));
    assert!(!topic_exists(&env, &topic_arn), "the old topic is deleted");
    let sub_arn = state["resources"]["inbox_subscription"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(subscription(&env, &sub_arn)["TopicArn"], new_topic);
    let policy: Value =
        serde_json::from_str(&queue_attr(&env, &queue_url, QueueAttributeName::Policy).unwrap())
            .unwrap();
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        new_topic.as_str()
    );

    // Deleted and changed outside stackctl: the plan shows it, apply restores it.
    env.rt
        .block_on(env.sns().unsubscribe().subscription_arn(&sub_arn).send())
        .unwrap();
    env.rt
        .block_on(
            env.sqs()
                .set_queue_attributes()
                .queue_url(&queue_url)
                .attributes(QueueAttributeName::VisibilityTimeout, "5")
                .send(),
        )
        .unwrap();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains(
            "inbox_subscription (aws_sns_topic_subscription): it no longer exists in AWS"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("inbox (aws_sqs_queue): visibility_timeout_seconds changed outside stackctl"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("~ visibility_timeout_seconds = 5 -> 90"),
        "{}",
        out.stdout
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let sub_arn = env.state("messaging")["resources"]["inbox_subscription"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(subscription(&env, &sub_arn)["Endpoint"], queue_arn);
    assert_eq!(
        queue_attr(&env, &queue_url, QueueAttributeName::VisibilityTimeout).as_deref(),
        Some("90")
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);

    // Destroy removes what the stack made and nothing else.
    let bystander = env
        .rt
        .block_on(env.sqs().create_queue().queue_name("not-ours").send())
        .unwrap()
        .queue_url
        .unwrap();
    let out = env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(out.stdout.contains("4 destroyed"), "{}", out.stdout);
    assert!(!topic_exists(&env, &new_topic));
    assert!(
        queue_attr(&env, &queue_url, QueueAttributeName::QueueArn).is_none(),
        "queue deleted"
    );
    assert!(
        queue_attr(&env, &bystander, QueueAttributeName::QueueArn).is_some(),
        "bystander untouched"
    );
    let state = env.state("messaging");
    assert_eq!(state["resources"], serde_json::json!({}));
    env.take_calls();
    let out = env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(out.stdout.contains("Nothing to destroy"), "{}", out.stdout);
    assert!(
        env.take_calls().is_empty(),
        "destroying an empty state calls nothing"
    );
}

#[test]
fn bad_stack_never_reaches_aws_and_names_resource_and_line() {
    let env = Env::new();
    env.write_stack(
        &STACK
            .replace(
                "visibility_timeout_seconds: 60",
                "visibility_timeout_seconds: 99999",
            )
            .replace("protocol: sqs", "protocol: carrier-pigeon"),
    );
    for cmd in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let out = env.stackctl(cmd);
        assert_eq!(out.code, 1, "{cmd:?}");
        assert!(
            out.stderr.contains("stack.yaml:13: `inbox`, property `visibility_timeout_seconds`: must be between 0 and 43200, got 99999"),
            "{cmd:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(
                "stack.yaml:33: `inbox_subscription`, property `protocol`: must be one of"
            ),
            "{}",
            out.stderr
        );
    }
    env.write_stack("stack: messaging\nresources:\n  alerts:\n    type: aws_sns_topic\n    properties: name: lambda_topic01\n");
    let out = env.stackctl(&["plan"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("stack.yaml:5: malformed YAML"),
        "{}",
        out.stderr
    );
    assert!(
        env.take_calls().is_empty(),
        "no AWS call for an invalid stack"
    );

    env.write_stack(STACK);
    let out = env.stackctl(&["validate"]).ok();
    assert!(out.stdout.contains("valid: 4 resources"), "{}", out.stdout);
    assert!(env.take_calls().is_empty(), "validate makes no AWS call");
}

#[test]
fn a_failure_stops_dependents_lets_others_finish_and_is_resumed() {
    let env = Env::new();
    env.write_stack(STACK);
    env.aws.inject(Fault::coded(
        "sqs",
        "CreateQueue",
        400,
        "InvalidParameterValue",
        "Value for parameter is invalid.",
    ));
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("error creating `inbox` (aws_sqs_queue): InvalidParameterValue: Value for parameter is invalid."), "{}", out.stderr);
    assert!(out.stderr.contains("not attempted (their dependencies failed or the run was interrupted): inbox_policy, inbox_subscription"), "{}", out.stderr);
    let state = env.state("messaging");
    assert!(
        state["resources"]["alerts"]["physical_id"].is_string(),
        "the independent topic was created and recorded"
    );
    assert!(
        state["resources"]["inbox"]["physical_id"].is_null()
            && state["resources"]["inbox"]["create_token"].is_string(),
        "a create that reached AWS keeps its intent until a later run has looked: {state}"
    );

    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    assert_eq!(
        count(&calls, "CreateTopic"),
        0,
        "the topic is not created twice"
    );
    assert_eq!(count(&calls, "CreateQueue"), 1);
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn throttling_is_retried_and_an_interrupted_create_is_adopted() {
    let env = Env::new();
    env.write_stack(STACK);
    env.aws.inject(Fault::throttle("sns", "CreateTopic", 2));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        count(&env.take_calls(), "CreateTopic"),
        3,
        "two throttled attempts, then success"
    );

    // A crash between CreateQueue and the state write leaves only the intent.
    let state_path = env.path("state/messaging.json");
    let mut state = env.state("messaging");
    state["resources"]["inbox"]["physical_id"] = Value::Null;
    state["resources"]["inbox"]["attrs"] = serde_json::json!({});
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let out = env.stackctl(&["plan"]).ok();
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        count(&env.take_calls(), "CreateQueue"),
        0,
        "adopted, not created again"
    );
    assert!(env.state("messaging")["resources"]["inbox"]["physical_id"]
        .as_str()
        .unwrap()
        .ends_with("/lambda_inbox01"));
}

#[test]
fn saved_plans_locks_and_json() {
    let env = Env::new();
    env.write_stack(STACK);

    let out = env.stackctl(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan --json is JSON");
    assert_eq!(plan["format_version"], 1);
    assert_eq!(
        plan["summary"],
        serde_json::json!({"add": 4, "change": 0, "destroy": 0})
    );
    let sub = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "inbox_subscription")
        .unwrap();
    assert_eq!(sub["after"]["topic_arn"], "(known after apply)");

    env.stackctl(&["plan", "--out", "first.plan"]).ok();
    env.stackctl(&["plan", "--out", "second.plan"]).ok();
    let out = env.stackctl(&["apply", "first.plan"]).ok();
    assert!(out.stdout.contains("4 added"), "{}", out.stdout);
    let out = env.stackctl(&["apply", "second.plan"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the saved plan is stale"),
        "{}",
        out.stderr
    );

    let out = env.stackctl(&["state", "list"]).ok();
    assert!(
        out.stdout.contains("alerts\taws_sns_topic\tarn:aws:sns:"),
        "{}",
        out.stdout
    );
    let out = env.stackctl(&["output", "--json"]).ok();
    let outputs: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(outputs["queue_url"]
        .as_str()
        .unwrap()
        .ends_with("/lambda_inbox01"));
}

/// Renaming a logical id plans a destroy and a create of the same object;
/// the plan says how to keep it (`moved:` or `state mv`).
#[test]
fn a_renamed_logical_id_gets_a_hint_to_move_it() {
    let env = Env::new();
    env.write_stack(STACK);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.write_stack(
        &STACK
            .replace("  alerts:\n", "  topic:\n")
            .replace("${alerts.arn}", "${topic.arn}"),
    );
    let out = env.stackctl(&["plan"]).ok().stdout;
    assert!(
        out.contains("Note: `alerts` leaves the stack and `topic` of the same type (aws_sns_topic) comes in.")
            && out.contains("add `moved: [{from: alerts, to: topic}]`")
            && out.contains("`stackctl state mv alerts topic`"),
        "{out}"
    );
}

/// `stackctl init` writes a first stack that applies as written, shows no
/// change after, and destroys; it never overwrites a stack file.
#[test]
fn the_stack_init_writes_applies_and_destroys_as_written() {
    let env = Env::new();
    env.stackctl(&["init", "--name", "first"]).ok();
    let again = env.stackctl(&["init"]);
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("stack.yaml exists; init never overwrites"),
        "{}",
        again.stderr
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]).ok().stdout;
    assert!(out.contains("No changes"), "{out}");
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(env.state("first")["resources"]
        .as_object()
        .unwrap()
        .is_empty());
}

const FIFO: &str = r#"stack: fifo
region: us-east-2
resources:
  jobs:
    type: aws_sns_topic
    properties:
      name: jobs.fifo
      fifo_topic: true
  work:
    type: aws_sqs_queue
    properties:
      name: work.fifo
      fifo_queue: true
"#;

fn topic_attr(env: &Env, arn: &str, name: &str) -> Option<String> {
    let out = env
        .rt
        .block_on(env.sns().get_topic_attributes().topic_arn(arn).send())
        .ok()?;
    out.attributes?.remove(name)
}

/// A FIFO topic and queue are made FIFO (a `.fifo` name alone makes AWS refuse
/// the topic, and the queue where moto does not), read back as written, and
/// switch content-based deduplication in place.
#[test]
fn fifo_topics_and_queues_are_created_fifo_and_deduplicate_in_place() {
    let env = Env::new();
    env.write_stack(FIFO);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let topic = env.physical_id("fifo", "jobs");
    let queue = env.physical_id("fifo", "work");
    assert_eq!(
        topic_attr(&env, &topic, "FifoTopic").as_deref(),
        Some("true")
    );
    assert_eq!(
        queue_attr(&env, &queue, QueueAttributeName::FifoQueue).as_deref(),
        Some("true")
    );
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "read back as written: {}", out.stdout);

    let deduplicating = FIFO
        .replace(
            "fifo_topic: true",
            "fifo_topic: true\n      content_based_deduplication: true",
        )
        .replace(
            "fifo_queue: true",
            "fifo_queue: true\n      content_based_deduplication: true",
        );
    env.write_stack(&deduplicating);
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout.contains("0 added, 2 changed, 0 destroyed"),
        "{}",
        out.stdout
    );
    let calls = env.take_calls();
    let names = mutating_operations(&calls);
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        count(&calls, "SetTopicAttributes") + count(&calls, "SetQueueAttributes"),
        2
    );
    assert_eq!(
        topic_attr(&env, &topic, "ContentBasedDeduplication").as_deref(),
        Some("true")
    );
    assert_eq!(
        queue_attr(&env, &queue, QueueAttributeName::ContentBasedDeduplication).as_deref(),
        Some("true")
    );
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}

const ALARM: &str = r#"stack: alarm
region: us-east-2
resources:
  alerts:
    type: aws_sns_topic
    properties: {name: alarm-alerts}
  slow:
    type: aws_cloudwatch_metric_alarm
    properties:
      alarm_name: slow
      namespace: App
      metric_name: Slow
      statistic: Sum
      period: 60
      evaluation_periods: 1
      threshold: 1
      comparison_operator: GreaterThanOrEqualToThreshold
      alarm_actions: ["${alerts.arn}"]
"#;

/// ALARM's `slow` as its stack file writes it (but its evaluation periods),
/// for a change by hand to start from.
fn alarm_as_written(
    env: &Env,
    topic: &str,
) -> aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder {
    env.cloudwatch()
        .put_metric_alarm()
        .alarm_name("slow")
        .namespace("App")
        .metric_name("Slow")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .threshold(1.0)
        .comparison_operator(
            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
        )
        .alarm_actions(topic)
}

/// OK and INSUFFICIENT_DATA actions the stack file never names, added by hand:
/// the plan shows them, and apply takes them away.
#[test]
fn alarm_actions_added_by_hand_are_drift() {
    let env = Env::new();
    env.write_stack(ALARM);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let topic = env.physical_id("alarm", "alerts");
    let by_hand = alarm_as_written(&env, &topic)
        .evaluation_periods(1)
        .ok_actions(&topic)
        .insufficient_data_actions(&topic);
    env.rt.block_on(by_hand.send()).unwrap();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("ok_actions, insufficient_data_actions changed outside")
            || out
                .stdout
                .contains("insufficient_data_actions, ok_actions changed outside"),
        "{}",
        out.stdout
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}

/// "2 out of 3" set by hand on an alarm whose stack file says every period
/// must breach: the plan shows it, and apply puts AWS's "none" back.
#[test]
fn datapoints_to_alarm_set_by_hand_is_drift() {
    let env = Env::new();
    env.write_stack(&ALARM.replace("evaluation_periods: 1", "evaluation_periods: 3"));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let topic = env.physical_id("alarm", "alerts");
    let by_hand = alarm_as_written(&env, &topic)
        .evaluation_periods(3)
        .datapoints_to_alarm(2);
    env.rt.block_on(by_hand.send()).unwrap();
    let plan = env.plan_shows_drift(
        "slow (aws_cloudwatch_metric_alarm): datapoints_to_alarm changed outside",
    );
    assert!(plan.contains("datapoints_to_alarm = 2 -> null"), "{plan}");
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let alarms = env.rt.block_on(
        env.cloudwatch()
            .describe_alarms()
            .alarm_names("slow")
            .send(),
    );
    let alarm = &alarms.unwrap().metric_alarms.unwrap()[0];
    assert_eq!(alarm.datapoints_to_alarm, None);
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
}

const DEAD_LETTERS: &str = r#"stack: dlq
region: us-east-2
resources:
  dead:
    type: aws_sqs_queue
    properties: {name: jobs-dead}
  jobs:
    type: aws_sqs_queue
    properties:
      name: jobs
      receive_wait_time_seconds: 20
      redrive_policy:
        deadLetterTargetArn: ${dead.arn}
        maxReceiveCount: 5
"#;

/// A queue's dead-letter queue and long polling are applied and read back as
/// written; set by hand on a queue that names neither, they are drift.
#[test]
fn a_dead_letter_queue_and_long_polling_are_managed() {
    let env = Env::new();
    env.write_stack(DEAD_LETTERS);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let jobs = env.physical_id("dlq", "jobs");
    let dead = env.physical_id("dlq", "dead");
    let redrive = queue_attr(&env, &jobs, QueueAttributeName::RedrivePolicy).unwrap();
    let redrive: Value = serde_json::from_str(&redrive).unwrap();
    let dead_arn = queue_attr(&env, &dead, QueueAttributeName::QueueArn).unwrap();
    let jobs_arn = queue_attr(&env, &jobs, QueueAttributeName::QueueArn).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dead_arn.as_str());
    assert_eq!(
        queue_attr(
            &env,
            &jobs,
            QueueAttributeName::ReceiveMessageWaitTimeSeconds
        )
        .as_deref(),
        Some("20")
    );
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "read back as written: {}", out.stdout);

    let by_hand = env
        .sqs()
        .set_queue_attributes()
        .queue_url(&dead)
        .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "10")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{jobs_arn}","maxReceiveCount":3}}"#),
        );
    env.rt.block_on(by_hand.send()).unwrap();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "dead (aws_sqs_queue): receive_wait_time_seconds, redrive_policy changed outside"
        ),
        "{}",
        out.stdout
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        queue_attr(&env, &dead, QueueAttributeName::RedrivePolicy).unwrap_or_default(),
        ""
    );
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}
