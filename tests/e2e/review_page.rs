//! `stackctl review`'s page opened in headless Chromium (Debian's, driven by
//! tests/browser/review.mjs): what a reviewer sees, clicks and reads.

use std::path::Path;

use serde_json::Value;

use crate::support::{seed_stack_with_zip, Env};

const GREEN: &str = "rgb(34, 170, 34)";
const RED: &str = "rgb(221, 34, 34)";

/// What the browser met on the page: nodes, links with their computed
/// colours, the text, errors, requests; `extra` are the driver's options.
fn open(page: &Path, extra: &[&str]) -> Value {
    let driver = localaws::repo_root().join("tests/browser/review.mjs");
    let out = std::process::Command::new("node")
        .arg(driver)
        .arg(page)
        .args(extra)
        .output()
        .expect("run node (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "the browser driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The seed stack's page, its plan made against the endpoint.
fn seed_page(env: &Env) -> std::path::PathBuf {
    env.write_stack(&seed_stack_with_zip(env));
    env.stackctl(&["review", "--out", "review.html"]).ok();
    env.path("review.html")
}

fn dataflow(seen: &Value) -> Vec<&Value> {
    let links = seen["links"].as_array().unwrap();
    links.iter().filter(|l| l["kind"] == "dataflow").collect()
}

#[test]
fn the_seed_stacks_page_shows_every_resource_and_every_link_green_without_errors() {
    let env = Env::new();
    let page = seed_page(&env);
    let artifacts = localaws::repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("review-seed.png");
    let seen = open(&page, &["--screenshot", shot.to_str().unwrap()]);
    assert_eq!(seen["console_errors"], serde_json::json!([]));
    assert_eq!(seen["page_errors"], serde_json::json!([]));
    assert_eq!(
        seen["requests"],
        serde_json::json!([]),
        "the page fetches nothing"
    );
    let declared = include_str!("../fixtures/seed/stack.yaml")
        .lines()
        .filter(|l| l.starts_with("    type: "))
        .count();
    let nodes = seen["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), declared);
    assert!(nodes.iter().all(|n| n["shown"] == true));
    // Every link `stackctl graph` knows, each drawn green.
    let graph = env.stackctl(&["graph", "--format", "json"]).ok().stdout;
    let graph: Value = serde_json::from_str(&graph).unwrap();
    let edges = graph["edges"].as_array().unwrap();
    let known = edges.iter().filter(|e| e["kind"] == "dataflow").count();
    let flows = dataflow(&seen);
    assert_eq!(flows.len(), known, "{flows:?}");
    assert!(flows.len() >= 3, "{flows:?}");
    assert!(flows.iter().all(|l| l["stroke"] == GREEN), "{flows:?}");
    assert!(seen["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["kind"] == "dependency"));
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
}

#[test]
fn a_queue_policy_naming_another_topic_is_a_red_link() {
    let env = Env::new();
    let other = "arn:aws:sns:us-east-2:123456789012:someone-elses-topic";
    let stack = seed_stack_with_zip(&env).replacen(
        "\"aws:SourceArn\": \"${lambda_topic.arn}\"",
        &format!("\"aws:SourceArn\": \"{other}\""),
        1,
    );
    env.write_stack(&stack);
    env.stackctl(&["review", "--offline", "--out", "review.html"])
        .ok();
    let seen = open(&env.path("review.html"), &[]);
    let red: Vec<&Value> = dataflow(&seen)
        .into_iter()
        .filter(|l| l["stroke"] == RED)
        .collect();
    assert_eq!(red.len(), 1, "{red:?}");
    assert_eq!(
        (red[0]["from"].as_str(), red[0]["to"].as_str()),
        (Some("lambda_topic"), Some("notifications"))
    );
    assert!(seen["text"].as_str().unwrap().contains("not allowed: "));
}

#[test]
fn clicking_a_resource_shows_its_planned_change() {
    let env = Env::new();
    let page = seed_page(&env);
    let seen = open(&page, &["--click", "slow_response_alarm"]);
    let inspector = &seen["inspector"];
    assert_eq!(inspector["shown"], true);
    let text = inspector["text"].as_str().unwrap();
    assert!(text.contains("slow_response_alarm"), "{text}");
    assert!(text.contains("create"), "{text}");
    assert!(text.contains("threshold"), "{text}");
}

#[test]
fn the_plan_and_the_findings_read_without_javascript() {
    let env = Env::new();
    let stack = seed_stack_with_zip(&env).replace("      retention_in_days: 14\n", "");
    env.write_stack(&stack);
    env.stackctl(&["review", "--out", "review.html"]).ok();
    let seen = open(&env.path("review.html"), &["--no-script"]);
    let text = seen["text"].as_str().unwrap();
    assert!(
        text.contains("notifications\taws_sqs_queue\tcreate")
            || text.contains("notifications aws_sqs_queue\tcreate"),
        "{text}"
    );
    assert!(
        text.contains("SC501"),
        "the finding of a log group kept forever: {text}"
    );
}

#[test]
fn no_sensitive_value_is_in_the_pages_text_or_source() {
    let env = Env::new();
    let secret = "pa55-w0rd-that-must-not-show";
    let stack = seed_stack_with_zip(&env)
        .replacen(
            "variables:\n",
            &format!("variables:\n  api_key: {{sensitive: true, default: {secret}}}\n"),
            1,
        )
        .replacen(
            "          COOLDOWN_SECONDS: \"900\"\n",
            "          COOLDOWN_SECONDS: \"900\"\n          API_KEY: ${var.api_key}\n",
            1,
        );
    env.write_stack(&stack);
    env.stackctl(&["review", "--out", "review.html"]).ok();
    let source = std::fs::read_to_string(env.path("review.html")).unwrap();
    assert!(source.contains("API_KEY"));
    assert!(!source.contains(secret));
    let seen = open(&env.path("review.html"), &["--click", "remediation"]);
    assert!(!seen["text"].as_str().unwrap().contains(secret));
    assert!(!seen["inspector"]["text"].as_str().unwrap().contains(secret));
}

/// `--plan` shows a plan made earlier (`plan --json`, or a plan saved with
/// `plan --out`) with `--offline`: no call at all.
#[test]
fn a_plan_made_earlier_is_shown_without_a_call() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    let json = env.stackctl(&["plan", "--json"]).ok().stdout;
    std::fs::write(env.path("plan.json"), json).unwrap();
    env.stackctl(&["plan", "--out", "saved.plan"]).ok();
    for given in ["plan.json", "saved.plan"] {
        env.take_calls();
        let args = [
            "review",
            "--offline",
            "--plan",
            given,
            "--out",
            "review.html",
        ];
        env.stackctl(&args).ok();
        assert_eq!(env.take_calls().len(), 0, "{given}");
        let page = std::fs::read_to_string(env.path("review.html")).unwrap();
        assert!(
            page.contains("plan: 17 to add, 0 to change, 0 to destroy"),
            "{given}"
        );
        assert!(
            page.contains("<p class=\"action create\">create</p>"),
            "{given}"
        );
    }
}
