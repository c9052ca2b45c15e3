//! A fleet: one stack file, one set of resources per instance key.

use crate::support::{mutating_operations, Env};

/// Per key: an instance, its log group, the filter that counts its slow
/// responses and the alarm on that count; one topic for all of them.
const FLEET: &str = r#"stack: fleet
region: us-east-2
variables:
  fleet:
    default:
      web-1: {size: t3.micro}
      web-2: {size: t3.micro}
      web-3: {size: t3.small}
resources:
  alerts:
    type: aws_sns_topic
    properties: {name: fleet-alerts}
  server:
    type: aws_instance
    for_each: ${var.fleet}
    properties:
      ami: ami-12c6146b
      instance_type: ${each.value.size}
      tags: {Name: "${each.key}"}
  logs:
    type: aws_cloudwatch_log_group
    for_each: ${var.fleet}
    properties:
      name: /fleet/${each.key}
      retention_in_days: 7
  slow:
    type: aws_cloudwatch_log_metric_filter
    for_each: ${var.fleet}
    properties:
      name: slow-${each.key}
      log_group_name: ${logs[each.key].name}
      pattern: "[w1=High, w2=response, w3=time, w4=for, endpoint, response_time>3000, unit=ms]"
      metric_transformation:
        name: SlowResponses-${each.key}
        namespace: Fleet
        value: "1"
  alarm:
    type: aws_cloudwatch_metric_alarm
    for_each: ${var.fleet}
    properties:
      alarm_name: slow-${each.key}
      namespace: Fleet
      metric_name: SlowResponses-${each.key}
      statistic: Sum
      period: 600
      evaluation_periods: 1
      threshold: 5
      comparison_operator: GreaterThanThreshold
      treat_missing_data: notBreaching
      alarm_actions: ["${alerts.arn}"]
      tags: {InstanceId: "${server[each.key].id}"}
outputs:
  instances: ${server[*].id}
"#;

fn applied_fleet() -> Env {
    let env = Env::new();
    env.write_stack(FLEET);
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("Resources: 13 added, 0 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    env.take_calls();
    env
}

fn fleet_var(keys: &[&str]) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|k| match *k {
            "web-3" => format!("{k}: {{size: t3.small}}"),
            _ => format!("{k}: {{size: t3.micro}}"),
        })
        .collect();
    format!("fleet={{{}}}", entries.join(", "))
}

#[test]
fn each_key_is_recorded_at_its_address_and_a_second_plan_is_empty() {
    let env = applied_fleet();
    let state = env.state("fleet");
    for key in ["web-1", "web-2", "web-3"] {
        for id in ["server", "logs", "slow", "alarm"] {
            let address = format!("{id}[\"{key}\"]");
            assert!(
                state["resources"][&address]["physical_id"].is_string(),
                "{address}"
            );
        }
    }
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let shown = env.stackctl(&["state", "show", "logs[\"web-2\"]"]).ok();
    assert!(shown.stdout.contains("/fleet/web-2"), "{}", shown.stdout);
}

#[test]
fn one_more_key_creates_only_its_resources() {
    let env = applied_fleet();
    let four = fleet_var(&["web-1", "web-2", "web-3", "web-4"]);
    let out = env
        .stackctl(&["apply", "--auto-approve", "--var", &four])
        .ok();
    assert!(
        out.stdout
            .contains("Resources: 4 added, 0 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    let calls = env.take_calls();
    let mut sent = mutating_operations(&calls);
    sent.sort();
    assert_eq!(
        sent,
        [
            "CreateLogGroup",
            "PutMetricAlarm",
            "PutMetricFilter",
            "PutRetentionPolicy",
            "RunInstances"
        ],
        "only web-4's resources are made"
    );
}

#[test]
fn removing_a_key_destroys_only_its_resources() {
    let env = applied_fleet();
    let before = env.state("fleet");
    let two = fleet_var(&["web-1", "web-3"]);
    let out = env
        .stackctl(&["apply", "--auto-approve", "--var", &two])
        .ok();
    assert!(
        out.stdout
            .contains("Resources: 0 added, 0 changed, 4 destroyed."),
        "{}",
        out.stdout
    );
    let after = env.state("fleet");
    for address in ["server[\"web-1\"]", "alarm[\"web-3\"]", "alerts"] {
        assert_eq!(
            after["resources"][address]["physical_id"], before["resources"][address]["physical_id"],
            "{address} is untouched"
        );
    }
    assert!(after["resources"]["server[\"web-2\"]"].is_null());
}

#[test]
fn an_instance_is_tagged_with_its_address_in_a_form_aws_takes() {
    let env = applied_fleet();
    let state = env.state("fleet");
    let group = state["resources"]["logs[\"web-1\"]"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    #[allow(deprecated)]
    let tags = env
        .rt
        .block_on(
            env.logs()
                .list_tags_log_group()
                .log_group_name(&group)
                .send(),
        )
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(
        tags.get("stackctl:id").map(String::as_str),
        Some("logs.web-1")
    );
}

const ONE_GROUP: &str = "stack: fleet\nregion: us-east-2\nresources:\n  logs:\n    type: aws_cloudwatch_log_group\n    properties: {name: /fleet/web-1}\n";

const GROUP_PER_KEY: &str = "stack: fleet\nregion: us-east-2\nresources:\n  logs:\n    type: aws_cloudwatch_log_group\n    for_each: [web-1]\n    properties: {name: \"/fleet/${each.key}\"}\nmoved:\n  - {from: logs, to: 'logs[\"web-1\"]'}\n";

#[test]
fn a_move_into_a_collection_renames_the_record_and_rebuilds_nothing() {
    let env = Env::new();
    env.write_stack(ONE_GROUP);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let before = env.state("fleet")["resources"]["logs"]["physical_id"].clone();
    env.write_stack(GROUP_PER_KEY);
    let plan = env.stackctl(&["plan"]).ok();
    assert!(
        plan.stdout.contains("# logs has moved to logs[\"web-1\"]"),
        "{}",
        plan.stdout
    );
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("Resources: 0 added, 0 changed, 0 destroyed."),
        "{}",
        out.stdout
    );
    let calls = env.take_calls();
    let sent = mutating_operations(&calls);
    assert_eq!(sent, ["TagLogGroup"], "only the ownership tag changes");
    let after = env.state("fleet");
    assert_eq!(after["resources"]["logs[\"web-1\"]"]["physical_id"], before);
    assert!(after["resources"]["logs"].is_null());
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn a_move_onto_a_recorded_resource_is_refused() {
    let env = Env::new();
    let (per_key, _) = GROUP_PER_KEY.split_once("moved:").unwrap();
    env.write_stack(&format!(
        "{per_key}  old:\n    type: aws_cloudwatch_log_group\n    properties: {{name: /fleet/old}}\n"
    ));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.write_stack(&GROUP_PER_KEY.replace("from: logs,", "from: old,"));
    let out = env.stackctl(&["plan"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("`old` cannot move to `logs[\"web-1\"]`, which the state already records"),
        "{}",
        out.stderr
    );
}

/// How many of each of the fleet's objects exist, found by name or tags.
fn fleet_census(env: &Env) -> [usize; 5] {
    let rt = &env.rt;
    let instances = crate::census::live_instances(env, "fleet");
    let groups = rt
        .block_on(
            env.logs()
                .describe_log_groups()
                .log_group_name_prefix("/fleet/")
                .send(),
        )
        .unwrap()
        .log_groups()
        .to_vec();
    let mut filters = 0;
    for g in &groups {
        let name = g.log_group_name().unwrap_or_default();
        filters += rt
            .block_on(
                env.logs()
                    .describe_metric_filters()
                    .log_group_name(name)
                    .send(),
            )
            .unwrap()
            .metric_filters()
            .len();
    }
    let alarms = rt
        .block_on(
            env.cloudwatch()
                .describe_alarms()
                .alarm_name_prefix("slow-")
                .send(),
        )
        .unwrap()
        .metric_alarms()
        .len();
    let topics = rt
        .block_on(env.sns().list_topics().send())
        .unwrap()
        .topics()
        .iter()
        .filter(|t| t.topic_arn().is_some_and(|a| a.ends_with(":fleet-alerts")))
        .count();
    [instances, groups.len(), filters, alarms, topics]
}

/// The next apply converges to exactly the fleet, a plan after it is empty,
/// and destroy leaves nothing.
#[track_caller]
fn fleet_converges_then_destroys(env: &Env, what: &str) {
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 0, "{what}: {}\n{}", out.stdout, out.stderr);
    assert_eq!(
        fleet_census(env),
        [3, 3, 3, 3, 1],
        "{what}: one of each per key"
    );
    let plan = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{what}: no change after\n{}", plan.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        fleet_census(env),
        [0, 0, 0, 0, 0],
        "{what}: destroy leaves nothing"
    );
}

/// Killed after each mutating call of the three-instance apply (a spread in
/// CI, every call with the full sweep), the next apply converges.
#[test]
fn kill_9_during_a_fleet_apply_at_any_call_then_apply_converges() {
    let mut points = 0;
    for k in crate::trust::crash_points() {
        let env = Env::new();
        env.write_stack(FLEET);
        if !crate::trust::killed_after(&env, k, &["apply", "--auto-approve"]) {
            break;
        }
        fleet_converges_then_destroys(&env, &format!("fleet apply killed after mutating call {k}"));
        points += 1;
    }
    eprintln!("crash sweep, fleet apply: {points} points, each converged, destroyed to nothing");
}

/// The answer to the first create of each kind is lost (AWS acted); the next
/// apply converges to one of each per key.
#[test]
fn a_lost_answer_to_a_fleet_create_converges() {
    let creates = [
        ("ec2", "RunInstances"),
        ("logs", "CreateLogGroup"),
        ("logs", "PutMetricFilter"),
        ("monitoring", "PutMetricAlarm"),
        ("sns", "CreateTopic"),
    ];
    for (service, op) in creates {
        if !crate::trust::full_sweep() && op != "RunInstances" {
            continue;
        }
        let env = Env::new();
        env.write_stack(FLEET);
        env.aws.inject(localaws::Fault::lose_answer(service, op));
        let first = env.stackctl(&["apply", "--auto-approve"]);
        eprintln!("{op}: answer lost; first apply exited {}", first.code);
        fleet_converges_then_destroys(&env, &format!("{op}: answer lost"));
    }
}

#[test]
fn an_instance_of_a_collection_is_forgotten_and_imported_by_its_address() {
    let env = applied_fleet();
    let address = "logs[\"web-2\"]";
    let group = env.state("fleet")["resources"][address]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.stackctl(&["state", "rm", address]).ok();
    assert!(env.state("fleet")["resources"][address].is_null());
    let out = env.stackctl(&["import", address, &group]).ok();
    assert!(out.stdout.contains(address), "{}", out.stdout);
    assert_eq!(
        env.state("fleet")["resources"][address]["physical_id"],
        group.as_str()
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

/// The applied single-instance seed stack, then the repository's stack.yaml:
/// its per-instance part in a module under for_each, with `moved:` entries.
#[test]
fn the_seed_stack_moves_into_a_module_per_instance_without_rebuilding_anything() {
    let env = Env::new();
    env.write_stack(&crate::support::seed_stack_with_zip(&env));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let before = env.state("automate-monitoring");
    let repo = localaws::repo_root();
    let stack = std::fs::read_to_string(repo.join("stack.yaml"))
        .unwrap()
        .replace("      source: lambda\n", "      filename: fn.zip\n");
    env.write_stack(&stack);
    std::fs::create_dir_all(env.path("modules/watch")).unwrap();
    let module = repo.join("modules/watch/stack.yaml");
    std::fs::copy(module, env.path("modules/watch/stack.yaml")).unwrap();
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(
        out.stdout
            .contains("slow_response_alarm: moved to module.watch[\"dev\"].slow_response_alarm"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Resources: 0 added,"), "{}", out.stdout);
    assert!(out.stdout.contains(", 0 destroyed."), "{}", out.stdout);
    let calls = env.take_calls();
    let made: Vec<&str> = mutating_operations(&calls)
        .into_iter()
        .filter(|o| {
            o.starts_with("Create")
                || o.starts_with("Delete")
                || *o == "RunInstances"
                || *o == "TerminateInstances"
        })
        .collect();
    assert!(
        made.iter().all(|o| *o == "CreateTags"
            || *o == "CreatePolicyVersion"
            || *o == "DeletePolicyVersion"),
        "{made:?}"
    );
    let after = env.state("automate-monitoring");
    for (from, to) in [
        ("dev_instance", "dev_instance[\"dev\"]"),
        ("app_logs", "module.watch[\"dev\"].app_logs"),
        (
            "slow_response_alarm",
            "module.watch[\"dev\"].slow_response_alarm",
        ),
        (
            "alarm_invoke_permission",
            "module.watch[\"dev\"].alarm_invoke_permission",
        ),
    ] {
        assert_eq!(
            after["resources"][to]["physical_id"], before["resources"][from]["physical_id"],
            "{from} → {to} is the same object"
        );
    }
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

/// `"Resource": ${server[*].arn}` in a policy written as a JSON string is
/// the JSON list of the instances' ARNs in the document IAM receives.
#[test]
fn a_json_string_policy_names_every_instance_of_a_splat() {
    let env = Env::new();
    env.write_stack(
        r#"stack: splat
region: us-east-2
resources:
  server:
    type: aws_instance
    for_each: [a, b]
    properties: {ami: ami-12c6146b, instance_type: t3.micro}
  restart:
    type: aws_iam_policy
    properties:
      name: restart-the-fleet
      policy: |
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": ${server[*].arn}}]}
"#,
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let state = env.state("splat");
    let arn = |key: &str| state["resources"][format!("server[\"{key}\"]")]["attrs"]["arn"].clone();
    let written = state["resources"]["restart"]["props"]["policy"]
        .as_str()
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(written).unwrap();
    assert_eq!(
        policy["Statement"][0]["Resource"],
        serde_json::json!([arn("a"), arn("b")]),
        "{policy}"
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

/// A module whose queues are a collection of their own: each instance of the
/// module makes one queue per name it is given.
const QUEUE_MODULE: &str = r#"variables:
  team:
  names: {default: [jobs]}
resources:
  queue:
    type: aws_sqs_queue
    for_each: ${var.names}
    properties: {name: "${var.team}-${each.key}"}
outputs:
  urls: ${queue[*].url}
"#;

fn queues_stack(names: &str) -> String {
    format!(
        r#"stack: teams
region: us-east-2
modules:
  team:
    source: ./modules/queues
    for_each: [blue, green]
    inputs: {{team: "${{each.key}}", names: {names}}}
outputs:
  blue: ${{module.team["blue"].urls}}
"#
    )
}

#[test]
fn a_collection_inside_a_module_is_recorded_at_its_nested_address() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("modules/queues")).unwrap();
    std::fs::write(env.path("modules/queues/stack.yaml"), QUEUE_MODULE).unwrap();
    env.write_stack(&queues_stack("[jobs, mail]"));
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    let added = "Resources: 4 added, 0 changed, 0 destroyed.";
    assert!(out.stdout.contains(added), "{}", out.stdout);
    let address = r#"module.team["green"].queue["mail"]"#;
    let shown = env.stackctl(&["state", "show", address]).ok();
    assert!(shown.stdout.contains("green-mail"), "{}", shown.stdout);
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
    // One more name: a queue more in each instance of the module, and nothing else.
    env.take_calls();
    env.write_stack(&queues_stack("[jobs, mail, audit]"));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    let sent = mutating_operations(&calls);
    assert_eq!(sent, ["CreateQueue", "CreateQueue"]);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}
