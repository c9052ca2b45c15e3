//! `stackctl simulate` on the deployed seed stack: log lines through the
//! metric filter, the alarm, the real function (built from lambda/, run under
//! a local Runtime API), the instance, the topic and the queue.

use serde_json::Value;

use crate::support::{count, Env};

/// The seed stack with its real function, applied.
fn deployed() -> Env {
    deployed_with(|s| s)
}

/// The seed stack changed by `edit`, applied.
fn deployed_with(edit: impl Fn(String) -> String) -> Env {
    let env = Env::new();
    let source = localaws::repo_root().join("lambda");
    env.write_stack(&edit(include_str!("../fixtures/seed/stack.yaml").replace(
        "      source: lambda\n",
        &format!("      source: {}\n", source.display()),
    )));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env
}

/// The repository's stack.yaml (the fleet form, one instance) with its real
/// function, applied: what `scripts/demo` runs.
fn deployed_repository() -> Env {
    let env = Env::new();
    let repo = localaws::repo_root();
    let stack = std::fs::read_to_string(repo.join("stack.yaml")).unwrap();
    let source = repo.join("lambda");
    env.write_stack(&stack.replace(
        "      source: lambda\n",
        &format!("      source: {}\n", source.display()),
    ));
    std::fs::create_dir_all(env.path("modules/watch")).unwrap();
    let module = repo.join("modules/watch/stack.yaml");
    std::fs::copy(module, env.path("modules/watch/stack.yaml")).unwrap();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env
}

const DEMO_EVENTS: &str = include_str!("../../scripts/lib/demo-events.jsonl");

const T0: i64 = 1_764_669_600_000;

/// `n` slow responses, five seconds apart, from minute `minute`.
fn slow(n: usize, minute: i64) -> String {
    (0..n)
        .map(|i| {
            serde_json::json!({"timestamp": T0 + minute * 60_000 + i as i64 * 5_000,
                               "message": "High response time for /api/data: 3500 ms"})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn simulate(env: &Env, events: &str) -> Value {
    std::fs::write(env.path("events.jsonl"), events).unwrap();
    let out = env
        .stackctl(&["simulate", "--events", "events.jsonl", "--json"])
        .ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn hops<'a>(outcome: &'a Value, kind: &str) -> Vec<&'a Value> {
    outcome["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == kind)
        .collect()
}

#[test]
fn six_slow_responses_restart_the_instance_once_five_do_not_and_the_alarm_returns_to_ok() {
    let env = deployed();
    env.take_calls();
    let outcome = simulate(&env, &slow(5, 0));
    assert!(
        outcome["invocations"].as_array().unwrap().is_empty(),
        "{outcome:#}"
    );
    assert_eq!(outcome["alarms"]["slow_response_alarm"], "OK");

    let outcome = simulate(&env, &slow(6, 4));
    let states: Vec<&str> = hops(&outcome, "state")
        .iter()
        .map(|h| h["detail"].as_str().unwrap())
        .collect();
    assert!(
        states[0].starts_with("INSUFFICIENT_DATA → ALARM (6 > 5)"),
        "{states:?}"
    );
    assert!(
        states.last().unwrap().starts_with("ALARM → OK"),
        "a quiet period returns it to OK: {states:?}"
    );
    assert_eq!(outcome["alarms"]["slow_response_alarm"], "OK");
    let invocations = outcome["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 1, "{outcome:#}");
    assert_eq!(invocations[0]["function"], "remediation");
    assert_eq!(invocations[0]["alarm"], "slow_response_alarm");
    assert_eq!(invocations[0]["ok"], true);
    assert_eq!(invocations[0]["response"]["outcome"], "succeeded");
    let calls = env.take_calls();
    assert_eq!(
        (
            count(&calls, "StopInstances"),
            count(&calls, "StartInstances")
        ),
        (1, 1),
        "the function's own calls"
    );
    let steps: Vec<(&str, &str)> = hops(&outcome, "step")
        .iter()
        .map(|h| {
            (
                h["resource"].as_str().unwrap(),
                h["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("dev_instance", "stopped"))
            && steps.contains(&("dev_instance", "running")),
        "{steps:?}"
    );
    let messages = outcome["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["queue"], "notifications");
    assert!(
        messages[0]["body"]
            .as_str()
            .unwrap()
            .contains("Remediation succeeded"),
        "{messages:?}"
    );

    // Within the cooldown, another burst restarts nothing and says so.
    let outcome = simulate(&env, &slow(6, 0));
    let invocations = outcome["invocations"].as_array().unwrap();
    assert_eq!(
        invocations[0]["response"]["outcome"], "skipped",
        "{outcome:#}"
    );
    assert_eq!(count(&env.take_calls(), "StopInstances"), 0);
}

#[test]
fn a_broken_permission_or_queue_policy_drops_the_action_as_aws_would() {
    let env = deployed();
    let stack = std::fs::read_to_string(env.path("stack.yaml")).unwrap();
    env.write_stack(&stack.replace(
        "source_arn: ${slow_response_alarm.arn}",
        "source_arn: arn:aws:cloudwatch:us-east-2:123456789012:alarm:another-alarm",
    ));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.take_calls();
    let outcome = simulate(&env, &slow(6, 0));
    let dropped = hops(&outcome, "dropped");
    assert_eq!(dropped.len(), 1, "{outcome:#}");
    assert!(
        dropped[0]["detail"]
            .as_str()
            .unwrap()
            .contains("lambda:InvokeFunction on remediation dropped"),
        "{dropped:?}"
    );
    assert!(outcome["invocations"].as_array().unwrap().is_empty());
    assert_eq!(
        count(&env.take_calls(), "StopInstances"),
        0,
        "the function never ran"
    );

    // The permission back, the queue's policy for another topic: the function
    // runs, and SNS drops its report.
    env.write_stack(&stack.replace(
        r#"ArnEquals: {"aws:SourceArn": "${lambda_topic.arn}"}"#,
        r#"ArnEquals: {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:another-topic"}"#,
    ));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let outcome = simulate(&env, &slow(6, 0));
    assert_eq!(outcome["invocations"].as_array().unwrap().len(), 1);
    assert!(
        outcome["messages"].as_array().unwrap().is_empty(),
        "{outcome:#}"
    );
    let dropped = hops(&outcome, "dropped");
    assert!(
        dropped.iter().any(|h| h["resource"] == "notifications"
            && h["detail"]
                .as_str()
                .unwrap()
                .contains("dropped, as AWS would drop them")),
        "{outcome:#}"
    );
}

#[test]
fn test_filter_answers_like_test_metric_filter() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stackctl"))
        .args([
            "test-filter",
            "--json",
            "--pattern",
            "[..., rt > 3000, unit = ms]",
            "High response time for /api/data: 3500 ms",
            "High response time for /api/data: 250 ms",
        ])
        .output()
        .unwrap();
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["matches"].as_array().unwrap().len(), 1);
    assert_eq!(got["matches"][0]["eventNumber"], 1);
    assert_eq!(got["matches"][0]["extractedValues"]["$rt"], "3500");
}

/// What `scripts/demo` simulates: fast responses, one burst of six slow ones
/// at +04:00, fast ones until +11:00, then nothing. Its printed timeline shows
/// one alarm, one restart, the report, back to OK, and nothing after.
#[test]
fn the_demos_burst_gives_one_alarm_one_restart_and_ok_and_nothing_after() {
    let env = deployed_repository();
    std::fs::write(env.path("events.jsonl"), DEMO_EVENTS).unwrap();
    let out = env
        .stackctl(&["simulate", "--events", "events.jsonl"])
        .ok()
        .stdout;
    // One line per hop, `+MM:SS resource detail`, the column padding squeezed.
    let timeline: Vec<String> = out
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.contains(" matched "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        timeline,
        [
            "+01:00 module.watch[\"dev\"].slow_response_alarm INSUFFICIENT_DATA → OK (0 not 5)",
            "+05:00 module.watch[\"dev\"].slow_response_alarm OK → ALARM (6 > 5)",
            "+05:00 remediation invoked by module.watch[\"dev\"].slow_response_alarm",
            "+05:00 remediation received",
            "+05:00 dev_instance[\"dev\"] stop",
            "+05:00 dev_instance[\"dev\"] stopped",
            "+05:00 dev_instance[\"dev\"] start",
            "+05:00 dev_instance[\"dev\"] running",
            "+05:00 remediation remember-restart",
            "+05:00 remediation done",
            "+05:00 remediation returned succeeded",
            "+05:00 notifications received \"Remediation succeeded: slow-responses\"",
            "+15:00 module.watch[\"dev\"].slow_response_alarm ALARM → OK (0 not 5)",
        ],
        "{out}"
    );
    assert!(
        out.contains(
            "Alarms: module.watch[\"dev\"].slow_response_alarm OK. Invocations: 1. Messages received: 1."
        ),
        "{out}"
    );
}

/// Everything the simulated pipeline takes for "now" is the virtual clock:
/// with every AWS call slowed down (a loaded machine, a slow network) the
/// timeline is the same, and each transition to ALARM is one invocation.
#[test]
fn a_slow_machine_gives_the_same_timeline() {
    // No cooldown: the second run restarts the instance again.
    let env = deployed_with(|s| s.replace("COOLDOWN_SECONDS: \"900\"", "COOLDOWN_SECONDS: \"0\""));
    let fast = simulate(&env, DEMO_EVENTS);
    env.aws.latency(std::time::Duration::from_millis(300));
    let slow = simulate(&env, DEMO_EVENTS);
    assert_eq!(fast["timeline"], slow["timeline"]);
    let alarms = hops(&slow, "state")
        .iter()
        .filter(|h| h["detail"].as_str().unwrap().contains("→ ALARM"))
        .count();
    assert_eq!(slow["invocations"].as_array().unwrap().len(), alarms);
    assert_eq!(alarms, 1);
}

/// examples/fleet (two instances, a module each) applied in environment dev.
fn deployed_fleet() -> Env {
    let env = Env::new();
    let example = localaws::repo_root().join("examples/fleet");
    let lambda = localaws::repo_root().join("lambda");
    let stack = std::fs::read_to_string(example.join("stack.yaml"))
        .unwrap()
        .replace(
            "      source: ../../lambda\n",
            &format!("      source: {}\n", lambda.display()),
        );
    env.write_stack(&stack);
    for dir in ["modules/watch", "env"] {
        std::fs::create_dir_all(env.path(dir)).unwrap();
    }
    for file in ["modules/watch/stack.yaml", "env/dev.yaml"] {
        std::fs::copy(example.join(file), env.path(file)).unwrap();
    }
    env.stackctl(&["apply", "--auto-approve", "--env", "dev"])
        .ok();
    env
}

#[test]
fn slow_responses_of_one_instance_of_a_fleet_restart_that_instance_alone() {
    let env = deployed_fleet();
    let events: String = slow(6, 4)
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["logGroup"] = Value::from("/fleet/web-2");
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(env.path("events.jsonl"), events).unwrap();
    env.take_calls();
    let out = env
        .stackctl(&[
            "simulate",
            "--env",
            "dev",
            "--events",
            "events.jsonl",
            "--json",
        ])
        .ok();
    let outcome: Value = serde_json::from_str(&out.stdout).unwrap();
    let calls = env.take_calls();
    assert_eq!(
        (
            count(&calls, "StopInstances"),
            count(&calls, "StartInstances")
        ),
        (1, 1),
        "{outcome:#}"
    );
    let restarted: Vec<&str> = hops(&outcome, "step")
        .iter()
        .filter(|h| h["detail"] == "stopped")
        .map(|h| h["resource"].as_str().unwrap())
        .collect();
    assert_eq!(restarted, ["server[\"web-2\"]"], "{outcome:#}");
    assert_eq!(
        outcome["alarms"]["module.watch[\"web-1\"].alarm"], "OK",
        "{outcome:#}"
    );
}

/// `stackctl review --events`: the page shows the run `simulate` makes.
#[test]
fn the_review_page_shows_the_timeline_of_the_demos_burst() {
    let env = deployed();
    std::fs::write(env.path("events.jsonl"), DEMO_EVENTS).unwrap();
    let args = ["review", "--out", "review.html", "--events", "events.jsonl"];
    env.stackctl(&args).ok();
    let page = std::fs::read_to_string(env.path("review.html")).unwrap();
    let row = |t: &str, resource: &str, what: &str, detail: &str| {
        format!("<td>{t}</td><td>{resource}</td><td>{what}</td><td>{detail}</td>")
    };
    assert!(
        page.contains("<rect class=\"datapoint breaching\""),
        "the burst's period is over the threshold"
    );
    assert!(page.contains(&row(
        "+05:00",
        "slow_response_alarm",
        "state",
        "OK → ALARM (6 &gt; 5)"
    )));
    assert!(page.contains(&row(
        "+05:00",
        "remediation",
        "invoked",
        "invoked by slow_response_alarm"
    )));
    assert!(
        page.contains(&row("+05:00", "dev_instance", "step", "stopped")),
        "{page}"
    );
    assert!(page.contains("Messages in the queues"));
    assert!(page.contains("Remediation succeeded"));
}
