//! The seed stack (tests/fixtures/seed, the single-instance form of the
//! repository's stack.yaml): the whole monitoring pipeline.

use aws_sdk_cloudwatch::types::MetricAlarm;
use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::support::{mutating, seed_stack_with_zip, Env};

fn rid(state: &Value, id: &str) -> String {
    state["resources"][id]["physical_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} in state"))
        .to_string()
}

fn attr(state: &Value, id: &str, name: &str) -> String {
    state["resources"][id]["attrs"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{id}.{name}"))
        .to_string()
}

/// The seed stack's alarm as CloudWatch has it, if it exists.
fn slow_responses_alarm(env: &Env) -> Option<MetricAlarm> {
    env.rt
        .block_on(
            env.cloudwatch()
                .describe_alarms()
                .alarm_names("slow-responses")
                .send(),
        )
        .unwrap()
        .metric_alarms
        .unwrap_or_default()
        .into_iter()
        .next()
}

fn security_group(env: &Env, id: &str) -> SecurityGroup {
    env.rt
        .block_on(env.ec2().describe_security_groups().group_ids(id).send())
        .unwrap()
        .security_groups
        .unwrap()
        .remove(0)
}

/// What a Logs Insights glob `parse` captures: each `*` is a lazy `(.*?)`, the
/// last one greedy when nothing follows it; an unanchored search.
fn glob_parse(glob: &str, line: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = glob.split('*').collect();
    let mut pos = line.find(parts[0])? + parts[0].len();
    let mut captures = Vec::new();
    for (i, lit) in parts.iter().enumerate().skip(1) {
        if lit.is_empty() && i == parts.len() - 1 {
            captures.push(line[pos..].to_string());
            return Some(captures);
        }
        let at = line[pos..].find(lit)? + pos;
        captures.push(line[pos..at].to_string());
        pos = at + lit.len();
    }
    Some(captures)
}

/// The seed stack, applied: each test below reads one part of it.
struct Applied {
    env: Env,
    state: Value,
    calls: Vec<localaws::Call>,
}

fn applied() -> Applied {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("Apply complete! Resources: 17 added, 0 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    let calls = env.take_calls();
    let state = env.state("automate-monitoring");
    Applied { env, state, calls }
}

/// The alarm: more than 5 slow responses in 10 minutes invokes the function.
#[test]
fn the_alarm_counts_slow_responses_over_ten_minutes_and_invokes_the_function() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let function_arn = attr(state, "remediation", "arn");
    let alarm = slow_responses_alarm(env).expect("the alarm exists");
    assert_eq!(
        alarm.alarm_actions.as_deref(),
        Some(&[function_arn.clone()][..])
    );
    assert_eq!(
        (
            alarm.period,
            alarm.evaluation_periods,
            alarm.datapoints_to_alarm
        ),
        (Some(600), Some(1), Some(1))
    );
    assert_eq!(alarm.threshold, Some(5.0));
    assert_eq!(
        alarm.comparison_operator.as_ref().map(|c| c.as_str()),
        Some("GreaterThanThreshold")
    );
    assert_eq!(alarm.statistic.as_ref().map(|s| s.as_str()), Some("Sum"));
    assert_eq!(alarm.treat_missing_data.as_deref(), Some("notBreaching"));
    assert_eq!(
        (alarm.namespace.as_deref(), alarm.metric_name.as_deref()),
        (Some("MyApp"), Some("SlowResponses"))
    );
}

/// The alarm may invoke the function, and only that alarm.
#[test]
fn only_the_alarm_may_invoke_the_function() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let alarm_arn = attr(state, "slow_response_alarm", "arn");
    let policy = rt
        .block_on(
            env.lambda()
                .get_policy()
                .function_name("lambda_function01")
                .send(),
        )
        .unwrap()
        .policy
        .unwrap();
    let policy: Value = serde_json::from_str(&policy).unwrap();
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AllowSlowResponseAlarm")
        .unwrap()
        .clone();
    assert_eq!(
        statement["Principal"]["Service"],
        "lambda.alarms.cloudwatch.amazonaws.com"
    );
    assert_eq!(statement["Action"], "lambda:InvokeFunction");
    assert_eq!(
        statement["Condition"]["ArnLike"]["AWS:SourceArn"],
        alarm_arn.as_str()
    );
}

/// The function: its role, its code, and the instance and topic by reference.
#[test]
fn the_function_runs_as_its_role_with_the_instance_and_topic_by_reference() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let topic_arn = rid(state, "lambda_topic");
    let instance_id = rid(state, "dev_instance");
    let function = rt
        .block_on(
            env.lambda()
                .get_function()
                .function_name("lambda_function01")
                .send(),
        )
        .unwrap();
    let config = function.configuration.unwrap();
    let vars = config.environment.unwrap().variables.unwrap();
    assert_eq!(vars["INSTANCE_IDS"], instance_id);
    assert_eq!(vars["TOPIC_ARN"], topic_arn);
    assert_eq!(config.runtime.unwrap().as_str(), "provided.al2023");
    assert_eq!(config.handler.as_deref(), Some("bootstrap"));
    assert_eq!(config.timeout, Some(300));
    let role_arn = config.role.unwrap();
    assert!(role_arn.ends_with(":role/lambda_iam_role01"), "{role_arn}");
}

/// The role: trusted by Lambda, with exactly the policy it needs plus logging.
#[test]
fn the_role_is_trusted_by_lambda_and_granted_only_what_the_function_needs() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let topic_arn = rid(state, "lambda_topic");
    let instance_arn = attr(state, "dev_instance", "arn");
    let role = rt
        .block_on(env.iam().get_role().role_name("lambda_iam_role01").send())
        .unwrap()
        .role
        .unwrap();
    let trust = stackctl::providers::decode_policy(&role.assume_role_policy_document.unwrap());
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "lambda.amazonaws.com"
    );
    assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    let attached = rt
        .block_on(
            env.iam()
                .list_attached_role_policies()
                .role_name("lambda_iam_role01")
                .send(),
        )
        .unwrap();
    let mut attached: Vec<String> = attached
        .attached_policies
        .unwrap()
        .into_iter()
        .filter_map(|p| p.policy_arn)
        .collect();
    attached.sort();
    assert_eq!(
        attached,
        vec![
            "arn:aws:iam::123456789012:policy/lambda_policy01".to_string(),
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole".to_string(),
        ]
    );
    let policy_arn = rid(state, "lambda_policy");
    let version = rt
        .block_on(env.iam().get_policy().policy_arn(&policy_arn).send())
        .unwrap()
        .policy
        .unwrap()
        .default_version_id
        .unwrap();
    let doc = rt
        .block_on(
            env.iam()
                .get_policy_version()
                .policy_arn(&policy_arn)
                .version_id(version)
                .send(),
        )
        .unwrap();
    let doc = stackctl::providers::decode_policy(&doc.policy_version.unwrap().document.unwrap());
    for st in doc["Statement"].as_array().unwrap() {
        let actions: Vec<&str> = match &st["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => panic!("{other}"),
        };
        for action in actions {
            let expected = match action {
                "ec2:StopInstances"
                | "ec2:StartInstances"
                | "ec2:RebootInstances"
                | "ec2:CreateTags" => instance_arn.as_str(),
                "ec2:DescribeInstances" => "*",
                "sns:Publish" => topic_arn.as_str(),
                other => panic!("the function is granted {other}, which it does not need"),
            };
            assert_eq!(st["Resource"], expected, "{action}");
        }
    }
}

/// Messaging: the queue subscribes to the topic and only that topic may send.
#[test]
fn the_queue_subscribes_to_the_topic_and_only_that_topic_may_send() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let topic_arn = rid(state, "lambda_topic");
    let queue_url = rid(state, "notifications");
    let queue_attrs = rt
        .block_on(
            env.sqs()
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::All)
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap();
    let queue_arn = queue_attrs[&QueueAttributeName::QueueArn].clone();
    let qpolicy: Value = serde_json::from_str(&queue_attrs[&QueueAttributeName::Policy]).unwrap();
    assert_eq!(
        qpolicy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        topic_arn.as_str()
    );
    assert_eq!(
        qpolicy["Statement"][0]["Principal"]["Service"],
        "sns.amazonaws.com"
    );
    let sub = rt
        .block_on(
            env.sns()
                .get_subscription_attributes()
                .subscription_arn(rid(state, "notifications_subscription"))
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        (sub["TopicArn"].as_str(), sub["Endpoint"].as_str()),
        (topic_arn.as_str(), queue_arn.as_str())
    );
}

/// The instance: tagged, in its security group; SSH only from the variable's range.
#[test]
fn the_instance_is_tagged_and_in_its_group_with_ssh_only_from_the_variables_range() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let instance_id = rid(state, "dev_instance");
    let instances = rt
        .block_on(
            env.ec2()
                .describe_instances()
                .instance_ids(&instance_id)
                .send(),
        )
        .unwrap();
    let instance = instances.reservations.unwrap()[0]
        .instances
        .clone()
        .unwrap()[0]
        .clone();
    let tags: Vec<(String, String)> = instance
        .tags
        .unwrap()
        .into_iter()
        .map(|t| (t.key.unwrap(), t.value.unwrap()))
        .collect();
    assert!(
        tags.contains(&("Name".into(), "dev-instance".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("stackctl:stack".into(), "automate-monitoring".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("stackctl:id".into(), "dev_instance".into())),
        "{tags:?}"
    );
    let sg_id = rid(state, "ssh_access");
    assert_eq!(
        instance.security_groups.unwrap()[0].group_id.as_deref(),
        Some(sg_id.as_str())
    );
    let sg = security_group(env, &sg_id);
    let ingress = sg.ip_permissions.unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        (ingress[0].from_port, ingress[0].to_port),
        (Some(22), Some(22))
    );
    let cidrs: Vec<_> = ingress[0]
        .ip_ranges
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|r| r.cidr_ip)
        .collect();
    assert_eq!(
        cidrs,
        vec!["203.0.113.0/24"],
        "never 0.0.0.0/0 for SSH by default"
    );
}

/// Logs: the group and stream, the metric filter, and a saved query that finds
/// the slow lines and extracts the number.
#[test]
fn the_logs_filter_and_saved_query_find_the_slow_lines() {
    let applied = applied();
    let env = &applied.env;
    let rt = &env.rt;
    let filters = rt
        .block_on(
            env.logs()
                .describe_metric_filters()
                .log_group_name("myloggroup")
                .send(),
        )
        .unwrap();
    let filter = &filters.metric_filters.unwrap()[0];
    let t = &filter.metric_transformations.as_ref().unwrap()[0];
    assert_eq!(
        (
            t.metric_name.as_str(),
            t.metric_namespace.as_str(),
            t.metric_value.as_str()
        ),
        ("SlowResponses", "MyApp", "1")
    );
    assert_eq!(t.default_value, Some(0.0));
    let streams = rt
        .block_on(
            env.logs()
                .describe_log_streams()
                .log_group_name("myloggroup")
                .send(),
        )
        .unwrap();
    assert_eq!(
        streams.log_streams.unwrap()[0].log_stream_name.as_deref(),
        Some("mystream")
    );
    let queries = rt
        .block_on(
            env.logs()
                .describe_query_definitions()
                .query_definition_name_prefix("ResponseTime")
                .send(),
        )
        .unwrap();
    let query = queries.query_definitions.unwrap()[0].clone();
    assert_eq!(query.log_group_names.unwrap(), vec!["myloggroup"]);
    let text = query.query_string.unwrap();
    let glob = text.split('"').nth(1).unwrap();
    assert_eq!(
        glob_parse(glob, "High response time for /api/data: 3500 ms"),
        Some(vec!["/api/data".to_string(), "3500".to_string()])
    );
    assert!(text.contains("filter responseTime > 3000"));
}

/// No change: no perpetual diff from policy formatting, tags, defaults or
/// normalised values, and no mutating call.
#[test]
fn a_second_plan_and_apply_change_nothing_and_only_read() {
    let applied = applied();
    let env = &applied.env;
    let apply_calls = &applied.calls;
    env.take_calls();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let noop_calls = env.take_calls();
    assert!(
        mutating(&noop_calls).is_empty(),
        "{:?}",
        mutating(&noop_calls)
    );
    eprintln!(
        "seed stack: apply made {} AWS calls; a no-op plan+apply {} (all reads)",
        apply_calls.len(),
        noop_calls.len()
    );
}

/// Every type that AWS can change in place is changed in place.
#[test]
fn every_type_aws_changes_in_place_is_updated_in_place() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let instance_id = rid(state, "dev_instance");
    let sg_id = rid(state, "ssh_access");
    let edited = seed_stack_with_zip(env)
        .replace("retention_in_days: 14", "retention_in_days: 30")
        .replace("| sort @timestamp desc", "| sort responseTime desc")
        .replace("response_time>3000", "response_time>3500")
        .replace("threshold: 5\n", "threshold: 6\n")
        .replace(
            "display_name: Remediation",
            "display_name: Remediation notices",
        )
        .replace(
            "message_retention_seconds: 1209600",
            "message_retention_seconds: 604800",
        )
        .replace(
            "description: Execution role of the remediation function",
            "description: Runs the remediation",
        )
        .replace("ec2:RebootInstances, ec2:CreateTags", "ec2:CreateTags")
        .replace("timeout: 300", "timeout: 240")
        .replace(
            "      endpoint: ${notifications.arn}\n",
            "      endpoint: ${notifications.arn}\n      raw_message_delivery: true\n",
        )
        .replace(
            "Sid: AllowOnlyTheRemediationTopic",
            "Sid: OnlyTheRemediationTopic",
        );
    env.write_stack(&edited);
    let vars = [
        "--var",
        "ssh_cidr=198.51.100.7/32",
        "--var",
        "instance_name=dev2",
    ];
    let out = env.stackctl(&[&["plan"][..], &vars].concat()).ok();
    assert!(
        out.stdout
            .contains("Plan: 0 to add, 13 to change, 0 to destroy."),
        "{}",
        out.stdout
    );
    env.stackctl(&[&["apply", "--auto-approve"][..], &vars].concat())
        .ok();
    assert_eq!(
        env.stackctl(&[&["plan", "--detailed-exitcode"][..], &vars].concat())
            .code,
        0
    );
    let state = env.state("automate-monitoring");
    assert_eq!(
        rid(&state, "dev_instance"),
        instance_id,
        "the instance was updated, not replaced"
    );
    assert_eq!(rid(&state, "remediation"), "lambda_function01");
    let config = env.function_config();
    assert_eq!(config.timeout, Some(240));
    let alarm = slow_responses_alarm(env).expect("the alarm exists");
    assert_eq!(alarm.threshold, Some(6.0));
    let sg = security_group(env, &sg_id);
    let cidrs: Vec<_> = sg.ip_permissions.unwrap()[0]
        .ip_ranges
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|r| r.cidr_ip)
        .collect();
    assert_eq!(cidrs, vec!["198.51.100.7/32"]);
    let group = rt
        .block_on(
            env.logs()
                .describe_log_groups()
                .log_group_name_prefix("myloggroup")
                .send(),
        )
        .unwrap()
        .log_groups
        .unwrap()
        .remove(0);
    assert_eq!(group.retention_in_days, Some(30));
}

/// A tag added to every taggable resource is synced in place, on the ARN
/// where the family tags by ARN (alarms, functions), and then reads back.
/// A change that replaces the instance (its type) makes the new one before
/// the old one goes, and both carry the stack's ownership tags: the look
/// before the create must not take the old one for what the create made
/// (then terminate it as "the object it replaced", leaving none).
#[test]
fn a_replaced_instance_is_a_new_one_and_only_the_old_one_is_terminated() {
    let env = crate::support::applied_seed_stack();
    let old = rid(&env.state("automate-monitoring"), "dev_instance");
    let bigger = ["--var", "instance_type=t3.small"];
    env.stackctl(&[&["apply", "--auto-approve"][..], &bigger].concat())
        .ok();
    let new = rid(&env.state("automate-monitoring"), "dev_instance");
    assert_ne!(new, old);
    assert_eq!(env.instance_state(&new), "running");
    assert_eq!(env.instance_state(&old), "terminated");
    let plan = env.stackctl(&[&["plan", "--detailed-exitcode"][..], &bigger].concat());
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

#[test]
fn a_tag_added_to_every_taggable_resource_is_synced_in_place() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let mut edited = seed_stack_with_zip(env).replace(
        "        Name: ${var.instance_name}",
        "        Name: ${var.instance_name}\n        team: sre",
    );
    for kind in [
        "aws_cloudwatch_log_group",
        "aws_cloudwatch_metric_alarm",
        "aws_sns_topic",
        "aws_sqs_queue",
        "aws_iam_role",
        "aws_iam_policy",
        "aws_lambda_function",
        "aws_security_group",
    ] {
        let at = edited.find(&format!("    type: {kind}\n")).expect(kind);
        let properties = at + edited[at..].find("    properties:\n").unwrap();
        edited.insert_str(properties + 16, "      tags: {team: sre}\n");
    }
    env.write_stack(&edited);
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("Resources: 0 added, 9 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    let rt = &env.rt;
    let alarm_arn = attr(state, "slow_response_alarm", "arn");
    let alarm_tags = rt
        .block_on(
            env.cloudwatch()
                .list_tags_for_resource()
                .resource_arn(&alarm_arn)
                .send(),
        )
        .unwrap()
        .tags
        .unwrap_or_default();
    assert!(alarm_tags
        .iter()
        .any(|t| t.key() == Some("team") && t.value() == Some("sre")));
    let function_arn = attr(state, "remediation", "arn");
    let function_tags = rt
        .block_on(env.lambda().list_tags().resource(&function_arn).send())
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(function_tags.get("team").map(String::as_str), Some("sre"));
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

/// Destroy in an order AWS accepts; nothing is left.
#[test]
fn destroy_deletes_in_an_order_aws_accepts_and_leaves_nothing() {
    let applied = applied();
    let (env, state) = (&applied.env, &applied.state);
    let rt = &env.rt;
    let instance_id = rid(state, "dev_instance");
    let sg_id = rid(state, "ssh_access");
    let out = env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(out.stdout.contains("17 destroyed"), "{}", out.stdout);
    assert!(rt
        .block_on(
            env.lambda()
                .get_function()
                .function_name("lambda_function01")
                .send()
        )
        .is_err());
    assert!(rt
        .block_on(env.iam().get_role().role_name("lambda_iam_role01").send())
        .is_err());
    assert!(slow_responses_alarm(env).is_none());
    let groups = rt
        .block_on(
            env.logs()
                .describe_log_groups()
                .log_group_name_prefix("myloggroup")
                .send(),
        )
        .unwrap();
    assert!(groups.log_groups.unwrap_or_default().is_empty());
    let instances = rt
        .block_on(
            env.ec2()
                .describe_instances()
                .instance_ids(&instance_id)
                .send(),
        )
        .unwrap();
    let state_name = instances
        .reservations
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .next()
        .and_then(|i| i.state)
        .and_then(|s| s.name);
    assert!(
        matches!(
            state_name.as_ref().map(|s| s.as_str()),
            None | Some("terminated")
        ),
        "{state_name:?}"
    );
    assert!(rt
        .block_on(
            env.ec2()
                .describe_security_groups()
                .group_ids(&sg_id)
                .send()
        )
        .is_err());
    assert_eq!(
        env.state("automate-monitoring")["resources"],
        serde_json::json!({})
    );
}

#[test]
fn seed_stack_rules_are_enforced_before_any_call() {
    let env = Env::new();
    let good = seed_stack_with_zip(&env);
    let cases: &[(&str, &str, &str)] = &[
        (
            "      evaluation_periods: 1\n      datapoints_to_alarm: 1\n",
            "      evaluation_periods: 1\n      datapoints_to_alarm: 5\n",
            "`slow_response_alarm`, property `datapoints_to_alarm`: DatapointsToAlarm must be less than or equal to EvaluationPeriods (5 > 1)",
        ),
        ("      period: 600\n", "      period: 90\n", "`slow_response_alarm`, property `period`: must be 10, 20, 30 or a multiple of 60 seconds"),
        ("treat_missing_data: notBreaching", "treat_missing_data: zero", "property `treat_missing_data`: must be one of breaching, notBreaching, ignore, missing"),
        ("      statistic: Sum\n", "      statistic: Sum\n      extended_statistic: p99\n", "set either `statistic` or `extended_statistic`, not both"),
        ("retention_in_days: 14", "retention_in_days: 15", "`app_logs`, property `retention_in_days`: must be 0 (never expire) or one of 1, 3, 5"),
        ("timeout: 300", "timeout: 901", "`remediation`, property `timeout`: must be between 1 and 900, got 901"),
        ("memory_size: 128", "memory_size: 64", "`remediation`, property `memory_size`: must be between 128 and 10240, got 64"),
        ("comparison_operator: GreaterThanThreshold", "comparison_operator: Above", "property `comparison_operator`: must be one of"),
        ("        Version: \"2012-10-17\"\n        Statement:\n          - Sid: RestartTheInstance", "        Statement:\n          - Sid: RestartTheInstance", "`lambda_policy`, property `policy`: must have `Version: \"2012-10-17\"`"),
        ("name: lambda_iam_role01", "name: lambda iam role", "`lambda_role`, property `name`: contains ` `"),
        ("      filename: fn.zip\n", "      filename: missing.zip\n", "`remediation`, property `filename`: cannot read"),
    ];
    for (from, to, expected) in cases {
        assert!(good.contains(from), "{from}");
        env.write_stack(&good.replacen(from, to, 1));
        let out = env.stackctl(&["validate"]);
        assert_eq!(out.code, 1, "{to}");
        assert!(
            out.stderr.contains(expected),
            "expected {expected:?} in:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("error: stack.yaml:"),
            "names the line: {}",
            out.stderr
        );
    }
    // The line is the offending one.
    env.write_stack(&good.replace(
        "      datapoints_to_alarm: 1\n",
        "      datapoints_to_alarm: 5\n",
    ));
    let line = good
        .lines()
        .position(|l| l == "      datapoints_to_alarm: 1")
        .unwrap()
        + 1;
    let out = env.stackctl(&["plan"]);
    assert!(
        out.stderr
            .contains(&format!("stack.yaml:{line}: `slow_response_alarm`")),
        "{}",
        out.stderr
    );
    assert!(env.take_calls().is_empty(), "nothing reached AWS");
}

/// Everything a provider reads from AWS or reports after a create is declared
/// in its schema: a property or attribute the schema does not know is one the
/// diff, the docs and the references never see.
#[test]
fn every_property_and_attribute_a_provider_emits_is_in_its_schema() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let state = env.state("automate-monitoring");
    let cx =
        stackctl::providers::Ctx::with_config(env.sdk(), "automate-monitoring", env.dir.path());
    let mut checked = 0;
    for (id, rec) in state["resources"].as_object().unwrap() {
        let provider = stackctl::providers::lookup(rec["type"].as_str().unwrap()).unwrap();
        let schema = provider.schema();
        let pid = rec["physical_id"].as_str().unwrap();
        let observed = env.rt.block_on(provider.read(&cx, pid)).unwrap().unwrap();
        let declared_prop = |k: &str| schema.prop(k).is_some();
        let declared = |k: &str| schema.attr(k).is_some() || schema.prop(k).is_some();
        for k in observed.props.keys() {
            assert!(
                declared_prop(k),
                "{id}: read() emits property `{k}`, not in the schema"
            );
        }
        for k in observed
            .attrs
            .keys()
            .chain(rec["attrs"].as_object().unwrap().keys())
        {
            assert!(declared(k), "{id}: attribute `{k}` is not in the schema");
        }
        for k in rec["props"].as_object().unwrap().keys() {
            assert!(
                declared_prop(k),
                "{id}: recorded property `{k}` is not in the schema"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 17);
}

/// The seed stack grants each link only what it needs: no wildcard action,
/// every action that changes something scoped to resources, and SSH never
/// open to the internet by default. (Offline: no AWS call.)
#[test]
fn the_seed_stack_is_least_privilege() {
    let stack = stackctl::config::Stack::parse(
        std::path::Path::new("stack.yaml"),
        include_str!("../../stack.yaml"),
    )
    .unwrap();
    let v = stackctl::validate::validate(stack, &[], Some("us-east-2")).unwrap();
    let values = stackctl::model::StackValues {
        name: v.stack.name.clone(),
        region: Some("us-east-2".into()),
        account_id: Some("123456789012".into()),
    };
    let mut policies = 0;
    let mut rules = 0;
    for decl in v.stack.decls.values() {
        let props = stackctl::model::resolve_props(&v, &decl.id, &values, &|_, _| None);
        if let Some(doc) = props
            .get("policy")
            .filter(|_| decl.type_name == "aws_iam_policy")
        {
            policies += 1;
            let statements = doc["Statement"].as_array().unwrap();
            for st in statements {
                let actions: Vec<&str> = match &st["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{}: Action {other}", decl.id),
                };
                assert!(
                    st.get("NotAction").is_none(),
                    "{}: NotAction grants everything else",
                    decl.id
                );
                for action in &actions {
                    assert!(
                        *action != "*" && !action.ends_with(":*"),
                        "{}: wildcard action {action}",
                        decl.id
                    );
                    let verb = action.split(':').nth(1).unwrap_or_default();
                    let read_only = ["Describe", "Get", "List"]
                        .iter()
                        .any(|p| verb.starts_with(p));
                    assert!(
                        read_only || st["Resource"] != "*",
                        "{}: {action} on every resource",
                        decl.id
                    );
                }
            }
        }
        if decl.type_name == "aws_security_group" {
            for rule in props["ingress"].as_array().unwrap() {
                rules += 1;
                let (from, to) = (
                    rule["from_port"].as_i64().unwrap(),
                    rule["to_port"].as_i64().unwrap(),
                );
                let all_ports = rule["protocol"] == "-1";
                for cidr in rule["cidr_blocks"].as_array().unwrap() {
                    let open = cidr == "0.0.0.0/0" || cidr == "::/0";
                    assert!(
                        !(open
                            && (all_ports
                                || (from..=to).contains(&22)
                                || (from..=to).contains(&3389))),
                        "{}: {cidr} may reach SSH/RDP",
                        decl.id
                    );
                }
            }
        }
    }
    assert_eq!((policies, rules), (1, 1));
}

/// `echo yes | stackctl apply`: the confirmation is read from a pipe too, as
/// Terraform reads it.
#[test]
fn apply_and_destroy_read_their_confirmation_from_a_pipe() {
    use std::io::Write as _;
    use std::process::Stdio;
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    for command in ["apply", "destroy"] {
        let mut child = env
            .command(&[command])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
        let run = crate::support::Run::from_output(child.wait_with_output().unwrap()).ok();
        assert!(
            run.stdout.contains("Only 'yes' will be accepted"),
            "{}",
            run.stdout
        );
    }
    assert!(env.state("automate-monitoring")["resources"]
        .as_object()
        .unwrap()
        .is_empty());
}

/// A closed standard input answers nothing: a refusal that changes nothing.
#[test]
fn a_closed_input_is_a_refusal_that_says_how_to_skip_the_question() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    env.take_calls();
    let run = env.stackctl(&["apply"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("standard input is closed; answer yes on it, or pass --auto-approve"),
        "{}",
        run.stderr
    );
    assert!(mutating(&env.take_calls()).is_empty());
}
