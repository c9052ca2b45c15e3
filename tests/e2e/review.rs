//! What reviewers run on a pull request: check, graph and a markdown plan,
//! through the real binary.

use serde_json::Value;

use crate::support::{seed_stack_with_zip, Env, Run};

fn offline(env: &crate::support::Offline, args: &[&str]) -> Run {
    Run::from_output(
        std::process::Command::new(env!("CARGO_BIN_EXE_stackctl"))
            .args(args)
            .current_dir(env.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap(),
    )
}

#[test]
fn check_proves_the_seed_stack_and_fails_the_tutorial_without_calling_aws() {
    let env = Env::offline();
    // The seed stack names its crate, whose manifest declares the function's needs.
    let lambda = localaws::repo_root().join("lambda");
    let seed = include_str!("../fixtures/seed/stack.yaml")
        .replace("source: lambda", &format!("source: {}", lambda.display()));
    std::fs::write(env.path("stack.yaml"), seed).unwrap();
    let out = offline(&env, &["check", "--json"]).ok();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
    let edges = report["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 13);
    assert!(edges.iter().all(|e| e["allowed"] == true), "{edges:#?}");
    let invoke = edges
        .iter()
        .find(|e| e["action"] == "lambda:InvokeFunction")
        .unwrap();
    assert_eq!(invoke["from"], "slow_response_alarm");
    assert_eq!(invoke["to"], "remediation");

    std::fs::write(
        env.path("tutorial.yaml"),
        include_str!("../fixtures/tutorial.yaml"),
    )
    .unwrap();
    // The function's zip, as the tutorial's reader has it.
    std::fs::write(
        env.path("fn.zip"),
        b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    )
    .unwrap();
    let out = offline(&env, &["check", "-f", "tutorial.yaml"]);
    assert_eq!(out.code, 1, "errors fail the check: {}", out.stdout);
    assert!(
        out.stdout.contains(
            "tutorial.yaml:106 error SC201 `ingress`: SSH (22) is open to the whole internet"
        ),
        "{}",
        out.stdout
    );
    let out = offline(&env, &["validate", "-f", "tutorial.yaml"]);
    assert_eq!(out.code, 1, "validate refuses what AWS would refuse");

    let graph: Value =
        serde_json::from_str(&offline(&env, &["graph", "--format", "json"]).ok().stdout).unwrap();
    assert!(graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "dataflow" && e["from"] == "lambda_topic" && e["proven"] == true));
}

#[test]
fn warnings_pass_check_unless_strict_and_validate_shows_them() {
    let env = Env::offline();
    let stack = "stack: w\nresources:\n  logs:\n    type: aws_cloudwatch_log_group\n    properties: {name: forever}\n";
    std::fs::write(env.path("stack.yaml"), stack).unwrap();
    let out = offline(&env, &["check"]).ok();
    assert!(out.stdout.contains("warning SC501"), "{}", out.stdout);
    assert_eq!(offline(&env, &["check", "--strict"]).code, 1);
    let out = offline(&env, &["validate"]).ok();
    assert!(out.stderr.contains("warning SC501"), "{}", out.stderr);
}

#[test]
fn a_markdown_plan_leads_with_the_summary_and_ends_with_the_findings() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    let out = env.stackctl(&["plan", "--format", "markdown"]).ok();
    assert!(
        out.stdout
            .starts_with("**Plan: 17 to add, 0 to change, 0 to destroy.**"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("<details>").count(), 17);
    assert!(
        out.stdout.contains(
            "<summary><code>remediation (aws_lambda_function) will be created</code></summary>"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("### `stackctl check`"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.len() < 60_000);
}

#[test]
fn validate_and_check_tell_the_same_story() {
    let env = Env::offline();
    let lambda = localaws::repo_root().join("lambda");
    let seed = include_str!("../fixtures/seed/stack.yaml")
        .replace("source: lambda", &format!("source: {}", lambda.display()));
    // A typo in the metric the alarm watches: valid for AWS, broken pipeline.
    let broken = seed.replace("metric_name: SlowResponses", "metric_name: SlowResponse");
    std::fs::write(env.path("stack.yaml"), broken).unwrap();
    let check = offline(&env, &["check"]);
    assert_eq!(check.code, 1, "{}", check.stdout);
    let validate = offline(&env, &["validate"]).ok();
    assert!(
        validate
            .stdout
            .contains("AWS would accept it, but `stackctl check` finds 1 error(s)"),
        "{}",
        validate.stdout
    );
    let summary = |text: &str| text.lines().last().unwrap_or_default().to_string();
    assert_eq!(summary(&validate.stderr), summary(&check.stdout));
    assert_eq!(
        summary(&check.stdout),
        "1 error(s), 0 warning(s); 12 of 13 links proven."
    );
}
