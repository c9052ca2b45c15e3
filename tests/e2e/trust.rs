//! Whatever fails (a lost answer, a coded error halfway through a create, a
//! kill -9, throttling, a second run), stackctl never loses track of what it
//! made, never makes anything twice and never takes over or deletes what it
//! did not make.
//!
//! The sweeps here run a reduced set of points; `scripts/sweep` (or
//! STACKCTL_FULL_SWEEP=1) runs every point. docs/reliability.md has the figures.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use localaws::{Chaos, Fault};
use serde_json::Value;

use crate::census;
use crate::support::{count, mutating, recorded_state, seed_stack_with_zip, Env};

pub(crate) fn full_sweep() -> bool {
    std::env::var_os("STACKCTL_FULL_SWEEP").is_some()
}

fn seeded() -> Env {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    env
}

/// The next apply converges to exactly one of each object, a plan after it
/// shows no change, and destroy leaves nothing.
#[track_caller]
fn converges_then_destroys(env: &Env, what: &str) {
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(
        out.code, 0,
        "{what}: the next apply converges\n{}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(census::count(env), census::converged(), "{what}");
    let plan = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{what}: no change after\n{}", plan.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        census::count(env),
        census::nothing(),
        "{what}: destroy leaves nothing"
    );
}

/// Every call of the seed stack's apply that makes something.
const SEED_CREATES: &[(&str, &str)] = &[
    ("logs", "CreateLogGroup"),
    ("logs", "CreateLogStream"),
    ("logs", "PutQueryDefinition"),
    ("logs", "PutMetricFilter"),
    ("monitoring", "PutMetricAlarm"),
    ("sns", "CreateTopic"),
    ("sns", "Subscribe"),
    ("sqs", "CreateQueue"),
    ("sqs", "SetQueueAttributes"),
    ("iam", "CreateRole"),
    ("iam", "CreatePolicy"),
    ("iam", "AttachRolePolicy"),
    ("lambda", "CreateFunction"),
    ("lambda", "AddPermission"),
    ("ec2", "CreateSecurityGroup"),
    ("ec2", "AuthorizeSecurityGroupIngress"),
    ("ec2", "RunInstances"),
];

/// The creates CI tries (the rest with the full sweep): those that once made
/// duplicates or wedged the stack.
const CI_CREATES: &[&str] = &[
    "RunInstances",
    "AddPermission",
    "PutQueryDefinition",
    "CreateRole",
    "CreateSecurityGroup",
];

fn lost_answer_converges(fault: Fault, what: &str) {
    let env = seeded();
    env.aws.inject(fault);
    let first = env.stackctl(&["apply", "--auto-approve"]);
    eprintln!("{what}: first apply exited {}", first.code);
    converges_then_destroys(&env, what);
}

#[test]
fn a_lost_answer_to_any_create_converges_to_one_of_each() {
    for (service, op) in SEED_CREATES {
        if full_sweep() || CI_CREATES.contains(op) {
            lost_answer_converges(
                Fault::lose_answer(service, op),
                &format!("{op}: answer lost (500 after AWS acted)"),
            );
        }
    }
}

/// A create AWS acted on whose answer came back without its content (no id)
/// is not taken for one that never reached AWS: its intent stays recorded,
/// and the next run finds what it made instead of making a second.
#[test]
fn an_empty_answer_to_any_create_converges_to_one_of_each() {
    for (service, op) in SEED_CREATES {
        if full_sweep() || CI_CREATES.contains(op) {
            lost_answer_converges(
                Fault::empty_answer(service, op),
                &format!("{op}: success answered without content"),
            );
        }
    }
}

#[test]
fn a_dropped_connection_after_any_create_converges_to_one_of_each() {
    for (service, op) in SEED_CREATES {
        if full_sweep() || CI_CREATES.contains(op) {
            lost_answer_converges(
                Fault::drop_connection(service, op),
                &format!("{op}: connection dropped after AWS acted"),
            );
        }
    }
}

/// The seed stack with a reservation, whose create is a second call.
fn seeded_with_reserved_concurrency() -> Env {
    let env = Env::new();
    let stack = seed_stack_with_zip(&env);
    assert!(stack.contains("      timeout: 300\n"));
    env.write_stack(&stack.replace(
        "      timeout: 300\n",
        "      timeout: 300\n      reserved_concurrent_executions: 5\n",
    ));
    env
}

/// Applies with the network going down right after AWS acted on `op`: its
/// answer is lost and its retries cannot connect, so the apply fails; then
/// the outage ends.
fn apply_through_an_outage_after(env: &Env, service: &str, op: &str) {
    let outage = Duration::from_secs(8);
    env.aws
        .inject(Fault::lose_answer_then_outage(service, op, outage));
    // Three attempts fit in the outage (the default six take up to 31 s).
    let first = env
        .command(&["apply", "--auto-approve"])
        .env("AWS_MAX_ATTEMPTS", "3")
        .output()
        .unwrap();
    assert_ne!(first.status.code(), Some(0), "{op}: the network went down");
    env.aws.wait_for_outage_to_end();
}

/// A function's create is two calls when it reserves concurrency, and the
/// second one's answer is lost. The function stays recorded, and the next
/// run settles the reservation instead of making a second function.
#[test]
fn a_lost_answer_to_a_functions_reservation_converges() {
    let env = seeded_with_reserved_concurrency();
    apply_through_an_outage_after(&env, "lambda", "PutFunctionConcurrency");
    converges_then_destroys(&env, "PutFunctionConcurrency: answer lost, then no network");
}

/// Two faults in one run: the answer to CreateFunction is lost (the SDK's
/// retry finds the function made), then the reservation's.
#[test]
fn lost_answers_to_a_functions_create_and_its_reservation_converge() {
    let env = seeded_with_reserved_concurrency();
    env.aws
        .inject(Fault::lose_answer("lambda", "CreateFunction"));
    apply_through_an_outage_after(&env, "lambda", "PutFunctionConcurrency");
    converges_then_destroys(
        &env,
        "CreateFunction and PutFunctionConcurrency: answers lost",
    );
}

/// The creates CI tries with the network going down: the untagged ones a
/// connect error after the lost answer wedged, and the one that made two.
const CI_OUTAGE_CREATES: &[&str] = &["Subscribe", "PutMetricFilter", "RunInstances"];

/// The network goes down right after AWS acted on a create: its answer is
/// lost and its retries cannot connect. A call is "not sent" only when no
/// attempt of it can have reached AWS, so its intent stays, and the next run
/// (the network back) converges to one of each.
#[test]
fn an_answer_lost_then_no_connection_for_a_while_converges_to_one_of_each() {
    for (service, op) in SEED_CREATES {
        if !(full_sweep() || CI_OUTAGE_CREATES.contains(op)) {
            continue;
        }
        let env = seeded();
        apply_through_an_outage_after(&env, service, op);
        converges_then_destroys(
            &env,
            &format!("{op}: answer lost, then 8 s without a connection"),
        );
    }
}

/// Without credentials nothing leaves the machine, and the error does not
/// say the call may have taken effect.
#[test]
fn without_credentials_no_call_is_said_to_have_reached_aws() {
    let env = seeded();
    let out = env
        .command(&["apply", "--auto-approve"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("credentials"), "{stderr}");
    assert!(!stderr.contains("may have taken effect"), "{stderr}");
    assert!(env.take_calls().is_empty(), "nothing reached the endpoint");
}

/// A create whose own call succeeded and whose next step failed leaves a
/// resource that the state must keep.
#[test]
fn a_coded_error_after_the_create_call_keeps_the_resource_recorded() {
    let cases = [
        (
            Fault::coded(
                "ec2",
                "DescribeInstances",
                403,
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            )
            .after("RunInstances"),
            "dev_instance",
        ),
        (
            Fault::coded(
                "iam",
                "GetRole",
                403,
                "AccessDenied",
                "User is not authorized to perform: iam:GetRole",
            )
            .after("CreateRole"),
            "lambda_role",
        ),
        (
            Fault::coded(
                "ec2",
                "AuthorizeSecurityGroupIngress",
                400,
                "InvalidPermission.Malformed",
                "Unsupported IP protocol",
            )
            .after("CreateSecurityGroup"),
            "ssh_access",
        ),
    ];
    for (fault, id) in cases {
        let env = seeded();
        let what = format!("{} failing after the create of {id}", fault.operation);
        env.aws.inject(fault);
        let out = env.stackctl(&["apply", "--auto-approve"]);
        assert_eq!(out.code, 1, "{what}");
        assert!(
            out.stderr.contains(&format!("error creating `{id}`")),
            "{what}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("was created and is recorded"),
            "{what}: {}",
            out.stderr
        );
        assert!(
            env.state("automate-monitoring")["resources"][id]["physical_id"].is_string(),
            "{what}: the state keeps what was made"
        );
        converges_then_destroys(&env, &what);
    }
}

/// Runs `args` and kills it (SIGKILL) once AWS acted on its k-th mutating
/// call. Whether it got that far.
pub(crate) fn killed_after(env: &Env, k: usize, args: &[&str]) -> bool {
    env.aws.kill_after_mutating(k);
    let mut child = env
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stackctl");
    env.aws.kill_target(child.id());
    child.wait().expect("wait for stackctl");
    env.aws.killed()
}

/// The crash points tried: every call with the full sweep, a spread in CI.
pub(crate) fn crash_points() -> Vec<usize> {
    if full_sweep() {
        (1..=200).collect()
    } else {
        vec![1, 3, 7, 12, 18, 24]
    }
}

#[test]
fn kill_9_during_apply_at_any_call_then_apply_converges() {
    let mut points = 0;
    for k in crash_points() {
        let env = seeded();
        if !killed_after(&env, k, &["apply", "--auto-approve"]) {
            break; // the apply makes fewer calls than k
        }
        converges_then_destroys(&env, &format!("apply killed after mutating call {k}"));
        points += 1;
    }
    eprintln!(
        "crash sweep, apply: {points} points, each converged to one of each, destroyed to nothing"
    );
}

#[test]
fn kill_9_during_destroy_at_any_call_then_destroy_finishes() {
    let mut points = 0;
    for k in crash_points() {
        let env = seeded();
        env.stackctl(&["apply", "--auto-approve"]).ok();
        if !killed_after(&env, k, &["destroy", "--auto-approve"]) {
            break;
        }
        let out = env.stackctl(&["destroy", "--auto-approve"]);
        assert_eq!(out.code, 0, "destroy killed after {k}: {}", out.stderr);
        assert_eq!(
            census::count(&env),
            census::nothing(),
            "destroy killed after delete {k}, then run again"
        );
        points += 1;
    }
    eprintln!("crash sweep, destroy: {points} points, each destroyed to nothing");
}

/// The seed destroy's mutating calls, each once, as (service, operation).
fn seed_deletes() -> Vec<(String, String)> {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.take_calls();
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    let mut deletes: Vec<(String, String)> = crate::support::mutating(&env.take_calls())
        .into_iter()
        .map(|c| (c.service.clone(), c.operation.clone()))
        .collect();
    deletes.sort();
    deletes.dedup();
    deletes
}

/// The deletes CI tries (the rest with the full sweep): one per service.
const CI_DELETES: &[&str] = &[
    "DeleteQueryDefinition",
    "Unsubscribe",
    "DeleteAlarms",
    "RemovePermission",
    "TerminateInstances",
];

/// AWS acts on a delete and its answer is lost: the SDK's retry finds it
/// gone, which is what destroy wanted, so the same run finishes.
#[test]
fn a_lost_answer_to_any_delete_is_taken_as_done() {
    let deletes = seed_deletes();
    assert_eq!(deletes.len(), 16, "{deletes:?}");
    for (service, op) in deletes
        .iter()
        .filter(|(_, op)| full_sweep() || CI_DELETES.contains(&op.as_str()))
    {
        let env = seeded();
        env.stackctl(&["apply", "--auto-approve"]).ok();
        env.aws.inject(Fault::lose_answer(service, op));
        env.take_calls();
        let out = env.stackctl(&["destroy", "--auto-approve"]);
        assert_eq!(out.code, 0, "{op}: answer lost\n{}", out.stderr);
        let lost = env
            .take_calls()
            .iter()
            .any(|c| c.operation == *op && c.status == 500);
        assert!(lost, "{op}: the fault was never met");
        assert_eq!(census::count(&env), census::nothing(), "{op}: answer lost");
    }
}

/// The seed stack with another description for its security group: a
/// replacement, made before the old group is deleted.
fn new_group_description(env: &Env) {
    env.write_stack(&seed_stack_with_zip(env).replace(
        "description: SSH from the operators' network only",
        "description: SSH from the operators' VPN only",
    ));
}

#[test]
fn kill_9_during_a_replacement_then_apply_converges() {
    let mut points = 0;
    for k in crash_points() {
        let env = seeded();
        env.stackctl(&["apply", "--auto-approve"]).ok();
        new_group_description(&env);
        if !killed_after(&env, k, &["apply", "--auto-approve"]) {
            break;
        }
        converges_then_destroys(&env, &format!("replacement killed after mutating call {k}"));
        points += 1;
    }
    eprintln!("crash sweep, replacement: {points} points, each converged, destroyed to nothing");
}

#[test]
fn the_instances_security_group_is_replaced_before_the_old_one_is_deleted() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let old = env.state("automate-monitoring")["resources"]["ssh_access"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    new_group_description(&env);
    let out = env.stackctl(&["plan"]).ok();
    assert!(
        out.stdout
            .contains("+/- resource \"aws_security_group\" \"ssh_access\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("~ vpc_security_group_ids"),
        "the instance moves over: {}",
        out.stdout
    );
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    let order: Vec<String> = mutating(&env.take_calls())
        .iter()
        .map(|c| c.operation.clone())
        .filter(|o| {
            [
                "CreateSecurityGroup",
                "ModifyInstanceAttribute",
                "DeleteSecurityGroup",
            ]
            .contains(&o.as_str())
        })
        .collect();
    assert_eq!(
        order,
        [
            "CreateSecurityGroup",
            "ModifyInstanceAttribute",
            "DeleteSecurityGroup"
        ],
        "{}",
        out.stdout
    );
    let state = env.state("automate-monitoring");
    let new = state["resources"]["ssh_access"]["physical_id"]
        .as_str()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        state["resources"]["dev_instance"]["props"]["vpc_security_group_ids"],
        serde_json::json!([new])
    );
    assert_eq!(state["deposed"], Value::Null, "nothing left to delete");
    converges_then_destroys(&env, "after the replacement");
}

#[test]
fn a_group_that_must_keep_its_name_is_refused_before_anything_changes() {
    let env = seeded();
    let fixed = seed_stack_with_zip(&env).replace(
        "name_prefix: dev-instance-ssh-",
        "name: dev-instance-ssh-fixed",
    );
    env.write_stack(&fixed);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.write_stack(&fixed.replace(
        "description: SSH from the operators' network only",
        "description: SSH from the operators' VPN only",
    ));
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("`ssh_access` must be replaced (description changed)")
            && out.stderr.contains("dev_instance uses it")
            && out.stderr.contains("`name_prefix`"),
        "{}",
        out.stderr
    );
    assert!(mutating(&env.take_calls()).is_empty());
}

#[test]
fn resources_made_by_hand_under_the_stacks_names_are_not_taken_over() {
    let env = seeded();
    let rt = &env.rt;
    let topic = rt
        .block_on(env.sns().create_topic().name("lambda_topic01").send())
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = rt
        .block_on(
            env.sqs()
                .create_queue()
                .queue_name("lambda_notifications01")
                .send(),
        )
        .unwrap()
        .queue_url
        .unwrap();
    rt.block_on(
        env.cloudwatch()
            .put_metric_alarm()
            .alarm_name("slow-responses")
            .namespace("Theirs")
            .metric_name("Errors")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(99.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send(),
    )
    .unwrap();
    env.take_calls();

    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 1);
    for (id, existing) in [
        ("lambda_topic", topic.as_str()),
        ("notifications", queue.as_str()),
    ] {
        assert!(
            out.stderr.contains(&format!("error creating `{id}`"))
                && out.stderr.contains(&format!(
                    "already exists and was not created by this stack: {existing}"
                ))
                && out
                    .stderr
                    .contains(&format!("stackctl import {id} {existing}")),
            "{id}: {}",
            out.stderr
        );
    }
    let calls = env.take_calls();
    assert_eq!(count(&calls, "CreateTopic"), 0);
    assert_eq!(count(&calls, "CreateQueue"), 0);

    // Without the topic and queue in the way, the alarm is reached: it is
    // neither overwritten nor recorded.
    rt.block_on(env.sns().delete_topic().topic_arn(&topic).send())
        .unwrap();
    rt.block_on(env.sqs().delete_queue().queue_url(&queue).send())
        .unwrap();
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("error creating `slow_response_alarm`")
            && out
                .stderr
                .contains("already exists and was not created by this stack: slow-responses")
            && out
                .stderr
                .contains("stackctl import slow_response_alarm slow-responses"),
        "{}",
        out.stderr
    );
    assert_eq!(
        count(&env.take_calls(), "PutMetricAlarm"),
        0,
        "the alarm is not overwritten"
    );
    let alarm = rt
        .block_on(
            env.cloudwatch()
                .describe_alarms()
                .alarm_names("slow-responses")
                .send(),
        )
        .unwrap()
        .metric_alarms
        .unwrap()
        .remove(0);
    assert_eq!(alarm.threshold, Some(99.0));
    assert!(env.state("automate-monitoring")["resources"]
        .get("slow_response_alarm")
        .is_none());

    // Destroy deletes only what the state records as this stack's.
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    let mut left = census::nothing();
    left.insert("alarms", 1);
    assert_eq!(census::count(&env), left);
}

/// Makes the state look as if the run had died between the create call and the
/// state write: only the intent is left.
fn forget_physical_ids(env: &Env, ids: &[&str]) {
    let path = env.path("state/automate-monitoring.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for id in ids {
        state["resources"][id]["physical_id"] = Value::Null;
        state["resources"][id]["attrs"] = serde_json::json!({});
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
}

#[test]
fn what_a_crashed_run_made_is_found_and_then_destroyed() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    forget_physical_ids(
        &env,
        &["notifications", "app_logs", "dev_instance", "lambda_policy"],
    );
    let out = env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(out.stdout.contains("17 destroyed"), "{}", out.stdout);
    assert_eq!(census::count(&env), census::nothing());
}

#[test]
fn what_a_crashed_run_made_is_found_and_then_replaced() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    forget_physical_ids(&env, &["lambda_topic"]);
    env.write_stack(
        &seed_stack_with_zip(&env).replace("name: lambda_topic01", "name: lambda_topic02"),
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let topics = env
        .rt
        .block_on(env.sns().list_topics().send())
        .unwrap()
        .topics
        .unwrap();
    let names: Vec<_> = topics.iter().filter_map(|t| t.topic_arn.clone()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(":lambda_topic02"), "{names:?}");
}

#[test]
fn the_intent_is_on_disk_before_the_create_call_is_sent() {
    let env = seeded();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    for op in ["CreateQueue", "RunInstances", "CreateRole"] {
        let (seen, dir) = (seen.clone(), env.dir.path().to_path_buf());
        env.aws.on_call(op, move || {
            let state = recorded_state(&dir, "automate-monitoring").unwrap_or(Value::Null);
            seen.lock().unwrap().push(state);
        });
    }
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "each create called once");
    // What the state (file and journal) held as each call arrived: its own
    // intent, token included.
    let recorded = |id: &str| {
        seen.iter().any(|s| {
            s["resources"][id]["physical_id"].is_null()
                && s["resources"][id]["create_token"].is_string()
        })
    };
    assert!(recorded("notifications") && recorded("dev_instance") && recorded("lambda_role"));
}

/// plan, apply and destroy, run with `vars` added to the environment, each
/// exit 1 saying `refusal`, and nothing in AWS is changed.
#[track_caller]
fn each_command_refuses_before_any_change(env: &Env, vars: &[(&str, &str)], refusal: &str) {
    env.take_calls();
    for cmd in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["destroy", "--auto-approve"],
    ] {
        let out = env
            .command(cmd)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(stderr.contains(refusal), "{cmd:?}: {stderr}");
    }
    assert!(mutating(&env.take_calls()).is_empty());
}

/// Reads presume the recorded account (to build ARNs before STS answers);
/// a state of another account is still refused.
#[test]
fn the_state_refuses_another_account_before_any_change() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let path = env.path("state/automate-monitoring.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["location"] = "111111111111/us-east-2".into();
    std::fs::write(&path, state.to_string()).unwrap();
    each_command_refuses_before_any_change(
        &env,
        &[],
        "records resources in account 111111111111, region us-east-2, but this run uses account 123456789012, region us-east-2",
    );
}

#[test]
fn the_state_refuses_another_region_before_any_change() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    each_command_refuses_before_any_change(
        &env,
        &[("AWS_REGION", "eu-west-1")],
        "records resources in account 123456789012, region us-east-2, but this run uses account 123456789012, region eu-west-1",
    );
    assert_eq!(census::count(&env), census::converged());
}

#[test]
fn a_lock_held_by_a_live_run_names_it_and_cannot_be_forced() {
    let env = seeded();
    let path = env.path("state/automate-monitoring.json.lock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let holder = std::fs::File::create(&path).unwrap();
    holder.try_lock().unwrap();
    std::fs::write(
        &path,
        r#"{"id":"7d0a1c52-0000-4000-8000-000000000001","pid":4242,"host":"ci-runner","time":"2026-12-02T10:00:00Z","operation":"apply"}"#,
    )
    .unwrap();
    let out = env.stackctl(&["plan"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the state is locked by `stackctl apply` (pid 4242 on ci-runner, since 2026-12-02T10:00:00Z, lock id 7d0a1c52-0000-4000-8000-000000000001)"),
        "{}",
        out.stderr
    );
    let out = env.stackctl(&["force-unlock", "wrong-id"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the lock's id is 7d0a1c52"),
        "{}",
        out.stderr
    );
    let out = env.stackctl(&["force-unlock", "7d0a1c52-0000-4000-8000-000000000001"]);
    assert_eq!(out.code, 1, "a live holder keeps its lock");
    drop(holder); // the holder ends: its lock ends with it
    let out = env.stackctl(&["plan"]).ok();
    assert!(out.stderr.contains("took over the lock"), "{}", out.stderr);
}

#[test]
fn after_kill_9_the_next_run_needs_no_force_unlock() {
    let env = seeded();
    assert!(killed_after(&env, 5, &["apply", "--auto-approve"]));
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(out.stderr.contains("took over the lock"), "{}", out.stderr);
}

#[test]
fn of_two_concurrent_applies_one_proceeds_and_the_other_fails_fast_naming_it() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let pairs = if full_sweep() { 50 } else { 5 };
    for pair in 0..pairs {
        // The lock holder's refresh is slowed down, so the runs overlap.
        env.aws.inject(Fault::delay(
            "sns",
            "GetTopicAttributes",
            Duration::from_millis(1500),
        ));
        let first = env
            .command(&["apply", "--auto-approve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let second = env.stackctl(&["apply", "--auto-approve"]);
        let waited = started.elapsed();
        let first = first.wait_with_output().unwrap();
        assert_eq!(
            first.status.code(),
            Some(0),
            "pair {pair}: the holder proceeds"
        );
        assert_eq!(second.code, 1, "pair {pair}: {}", second.stdout);
        assert!(
            second
                .stderr
                .contains("the state is locked by `stackctl apply`"),
            "pair {pair}: {}",
            second.stderr
        );
        assert!(
            waited < Duration::from_secs(5),
            "pair {pair}: fails fast ({waited:?})"
        );
        let state = env.state("automate-monitoring");
        assert_eq!(
            state["resources"].as_object().unwrap().len(),
            17,
            "pair {pair}"
        );
    }
}

/// Waits (a minute at most) until a call hook sets `flag`.
#[track_caller]
fn until_set(flag: &Mutex<bool>, never: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !*flag.lock().unwrap() {
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_interrupt_stops_waiting_and_keeps_the_intent() {
    let env = seeded();
    env.aws.inject(Fault::delay(
        "ec2",
        "RunInstances",
        Duration::from_secs(120),
    ));
    let started = Arc::new(Mutex::new(false));
    let flag = started.clone();
    env.aws
        .on_call("RunInstances", move || *flag.lock().unwrap() = true);
    let mut child = env
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until_set(&started, "RunInstances was never called");
    let pid = child.id().to_string();
    let int = || {
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
    };
    int();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first interrupt waits for calls in flight"
    );
    let interrupted = Instant::now();
    int();
    let status = child.wait().unwrap();
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "{:?}",
        interrupted.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("Aborting"), "{stderr}");
    let state = env.state("automate-monitoring");
    assert!(
        state["resources"]["dev_instance"]["create_token"].is_string(),
        "the create in flight stays recorded: {state}"
    );
    let abandoned = stderr
        .lines()
        .find(|l| l.contains("in flight when the run stopped waiting"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(abandoned.contains("dev_instance"), "{stderr}");
    let skipped = stderr
        .lines()
        .find(|l| l.contains("not attempted"))
        .unwrap_or_default();
    assert!(
        !skipped.contains("dev_instance"),
        "a create in flight was attempted: {stderr}"
    );
    let list = env.stackctl(&["state", "list"]).ok().stdout;
    assert!(
        list.contains("(create in flight when its run ended)"),
        "{list}"
    );
}

/// A create waiting for a slot has its intent recorded ahead (so it is
/// durable when the slot frees); the first interrupt, which starts nothing
/// more, takes such intents back: the state holds only what was created, and
/// everything else is told as not attempted.
#[test]
fn an_interrupt_takes_back_the_intents_of_creates_never_sent() {
    let env = seeded();
    let sent = Arc::new(Mutex::new(false));
    for (service, op) in [
        ("logs", "CreateLogGroup"),
        ("iam", "CreateRole"),
        ("sns", "CreateTopic"),
        ("sqs", "CreateQueue"),
        ("ec2", "CreateSecurityGroup"),
        ("iam", "CreatePolicy"),
    ] {
        env.aws
            .inject(Fault::delay(service, op, Duration::from_secs(3)));
        let flag = sent.clone();
        env.aws.on_call(op, move || *flag.lock().unwrap() = true);
    }
    let child = env
        .command(&["apply", "--auto-approve", "--parallelism", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until_set(&sent, "no create was called");
    let int = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(int.unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let skipped = stderr
        .lines()
        .find(|l| l.contains("not attempted"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let state = env.state("automate-monitoring");
    let records = state["resources"].as_object().unwrap();
    assert!(
        !records.is_empty(),
        "the create in flight finished: {state}"
    );
    for (id, rec) in records {
        assert!(
            rec["physical_id"].is_string(),
            "`{id}` was never created: {state}"
        );
    }
    for id in [
        "app_logs",
        "lambda_topic",
        "notifications",
        "lambda_role",
        "ssh_access",
    ] {
        assert!(
            records.contains_key(id) || skipped.contains(id),
            "`{id}` is neither created nor told as not attempted: {stderr}"
        );
    }
}

/// The plan tells stackctl's own unfinished work from drift: nothing here
/// changed outside stackctl.
#[track_caller]
fn blames_no_one(plan: &str) {
    assert!(!plan.contains("outside"), "{plan}");
}

#[test]
fn a_create_aws_refused_is_told_as_refused_not_as_drift() {
    let env = seeded();
    env.aws.inject(Fault::coded(
        "sqs",
        "CreateQueue",
        400,
        "InvalidAttributeValue",
        "Invalid value for the parameter MessageRetentionPeriod.",
    ));
    assert_eq!(env.stackctl(&["apply", "--auto-approve"]).code, 1);
    let list = env.stackctl(&["state", "list"]).ok().stdout;
    assert!(
        list.lines().any(|l| l.starts_with("notifications\t")
            && l.contains("(create refused by AWS (InvalidAttributeValue")),
        "{list}"
    );
    let plan = env.stackctl(&["plan"]).ok().stdout;
    blames_no_one(&plan);
    assert!(plan.contains("its create refused by AWS"), "{plan}");
    converges_then_destroys(&env, "after a refused create");
}

#[test]
fn an_update_cut_short_by_kill_9_is_not_drift() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let stack = std::fs::read_to_string(env.path("stack.yaml")).unwrap();
    env.write_stack(&stack.replace("retention_in_days: 14", "retention_in_days: 30"));
    assert!(
        killed_after(&env, 1, &["apply", "--auto-approve"]),
        "killed after PutRetentionPolicy"
    );
    let plan = env.stackctl(&["plan"]).ok().stdout;
    blames_no_one(&plan);
    assert!(
        plan.contains("AWS has what it sent (retention_in_days)"),
        "{plan}"
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let plan = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("AWS has what it sent"),
        "recorded once applied: {}",
        plan.stdout
    );
}

#[test]
fn a_delete_cut_short_by_kill_9_is_not_drift() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(killed_after(&env, 1, &["destroy", "--auto-approve"]));
    let plan = env.stackctl(&["plan"]).ok().stdout;
    blames_no_one(&plan);
    assert!(plan.contains("deleted by this stack"), "{plan}");
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert_eq!(census::count(&env), census::nothing());
}

#[test]
fn a_no_op_apply_keeps_the_serial_so_a_saved_plan_stays_valid() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let serial = env.state("automate-monitoring")["serial"].clone();
    let backup = std::fs::read(env.path("state/automate-monitoring.backup.1")).ok();
    env.stackctl(&["plan", "--out", "saved.plan"]).ok();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(env.state("automate-monitoring")["serial"], serial);
    assert_eq!(
        std::fs::read(env.path("state/automate-monitoring.backup.1")).ok(),
        backup
    );
    env.stackctl(&["apply", "saved.plan"]).ok();
}

#[test]
fn a_call_that_never_answers_fails_the_run_at_its_deadline() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.aws
        .inject(Fault::delay("sqs", "GetQueueAttributes", Duration::from_secs(3600)).times(10));
    let started = Instant::now();
    let out = env
        .command(&["plan"])
        .env("STACKCTL_OPERATION_TIMEOUT", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("refreshing `notifications` from AWS: AWS did not answer within 3s"),
        "{stderr}"
    );
}

/// A stack of 100 resources: 25 each of topics, queues, log groups and alarms.
fn hundred() -> String {
    let mut s = String::from("stack: load\nresources:\n");
    for i in 0..25 {
        s.push_str(&format!(
            "  topic{i}:\n    type: aws_sns_topic\n    properties: {{name: load-topic-{i}}}\n  queue{i}:\n    type: aws_sqs_queue\n    properties: {{name: load-queue-{i}}}\n  logs{i}:\n    type: aws_cloudwatch_log_group\n    properties: {{name: load-logs-{i}, retention_in_days: 7}}\n  alarm{i}:\n    type: aws_cloudwatch_metric_alarm\n    properties:\n      alarm_name: load-alarm-{i}\n      namespace: Load\n      metric_name: M{i}\n      statistic: Sum\n      period: 60\n      evaluation_periods: 1\n      threshold: 1\n      comparison_operator: GreaterThanThreshold\n      alarm_actions: [\"${{topic{i}.arn}}\"]\n"
        ));
    }
    s
}

fn load_census(env: &Env) -> [usize; 4] {
    let rt = &env.rt;
    let topics = rt
        .block_on(env.sns().list_topics().send())
        .unwrap()
        .topics
        .unwrap_or_default()
        .len();
    let queues = rt
        .block_on(
            env.sqs()
                .list_queues()
                .queue_name_prefix("load-queue-")
                .send(),
        )
        .unwrap()
        .queue_urls
        .unwrap_or_default()
        .len();
    let logs = rt
        .block_on(
            env.logs()
                .describe_log_groups()
                .log_group_name_prefix("load-logs-")
                .send(),
        )
        .unwrap()
        .log_groups
        .unwrap_or_default()
        .len();
    let alarms = rt
        .block_on(
            env.cloudwatch()
                .describe_alarms()
                .alarm_name_prefix("load-alarm-")
                .send(),
        )
        .unwrap()
        .metric_alarms
        .unwrap_or_default()
        .len();
    [topics, queues, logs, alarms]
}

/// Runs the command until it succeeds; how many runs it took.
fn until_it_succeeds(env: &Env, args: &[&str], at_most: usize) -> usize {
    for run in 1..=at_most {
        if env.stackctl(args).code == 0 {
            return run;
        }
    }
    panic!("{args:?} did not succeed in {at_most} runs");
}

#[test]
fn a_hundred_resources_converge_under_twenty_percent_faults() {
    let env = Env::new();
    env.write_stack(&hundred());
    let seed = std::env::var("STACKCTL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    env.aws.chaos(Some(Chaos { rate: 0.2, seed }));
    let runs = until_it_succeeds(&env, &["apply", "--auto-approve"], 5);
    eprintln!("apply under 20% faults converged in {runs} run(s)");
    env.aws.chaos(None);
    assert_eq!(load_census(&env), [25, 25, 25, 25]);
    let plan = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    env.aws.chaos(Some(Chaos {
        rate: 0.2,
        seed: seed + 1,
    }));
    let runs = until_it_succeeds(&env, &["destroy", "--auto-approve"], 5);
    eprintln!("destroy under 20% faults converged in {runs} run(s)");
    env.aws.chaos(None);
    assert_eq!(load_census(&env), [0, 0, 0, 0]);
}

/// `stackctl ... | head -1`: the reader goes away after the first line.
fn with_stdout_closed_early(env: &Env, args: &[&str]) -> Option<i32> {
    use std::io::Read as _;
    let mut child = env
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    let _ = child.stdout.take().unwrap().read(&mut first);
    child.wait().unwrap().code()
}

/// A pager or log collector that exits must never stop a run halfway: a
/// write to a closed stdout is dropped, not a panic (exit 101).
#[test]
fn a_closed_stdout_never_stops_a_run() {
    let env = seeded();
    assert_eq!(
        with_stdout_closed_early(&env, &["apply", "--auto-approve"]),
        Some(0)
    );
    assert_eq!(
        census::count(&env),
        census::converged(),
        "the apply went on to the end"
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(with_stdout_closed_early(&env, &["schema"]), Some(0));
    assert_eq!(
        with_stdout_closed_early(&env, &["state", "rm", "notifications_policy"]),
        Some(0)
    );
    assert!(!env
        .stackctl(&["state", "list"])
        .ok()
        .stdout
        .contains("notifications_policy"));
}

/// CloudWatch speaks CBOR (the proxy translates moto's JSON): a refusal
/// reaches the user as AWS's code and message, and the retry converges.
#[test]
fn a_cloudwatch_refusal_in_cbor_is_told_with_awss_code() {
    let env = Env::new();
    env.write_stack("stack: cw\nresources:\n  alarm:\n    type: aws_cloudwatch_metric_alarm\n    properties:\n      alarm_name: cw-alarm\n      namespace: App\n      metric_name: Slow\n      statistic: Sum\n      period: 60\n      evaluation_periods: 1\n      threshold: 1.5\n      comparison_operator: GreaterThanThreshold\n");
    env.aws.inject(Fault::coded(
        "monitoring",
        "PutMetricAlarm",
        400,
        "LimitExceeded",
        "The maximum number of alarms has been reached.",
    ));
    let out = env.stackctl(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("LimitExceeded: The maximum number of alarms has been reached."),
        "{}",
        out.stderr
    );
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}

/// A replacement of the instance cut short by kill -9 right after its
/// RunInstances: the next run finds the new instance (not the old one, which
/// carries the same ownership tags), records it and terminates the old one.
#[test]
fn a_replacement_killed_after_its_create_converges_to_the_new_instance() {
    let env = seeded();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let old = env.state("automate-monitoring")["resources"]["dev_instance"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bigger = ["apply", "--auto-approve", "--var", "instance_type=t3.small"];
    assert!(killed_after(&env, 1, &bigger));
    env.stackctl(&bigger).ok();
    let new = env.state("automate-monitoring")["resources"]["dev_instance"]["physical_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    assert_eq!(env.instance_state(&new), "running");
    assert_eq!(env.instance_state(&old), "terminated");
    assert_eq!(census::live_instances(&env, "automate-monitoring"), 1);
}
