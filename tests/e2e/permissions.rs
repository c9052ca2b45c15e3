//! `stackctl permissions` against what stackctl really sends: every call of
//! the seed stack's apply, no-op plan, changing apply and destroy is allowed
//! by an action of the policy printed for that command.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{seed_stack_with_zip, Env};

/// The actions of `stackctl permissions --for PHASE --json`.
fn allowed(env: &Env, phase: &str) -> BTreeSet<String> {
    let out = env
        .stackctl(&["permissions", "--for", phase, "--json"])
        .ok();
    let policy: Value = serde_json::from_str(&out.stdout).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let actions = statements.iter().flat_map(|s| match &s["Action"] {
        Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        a => vec![a.as_str().unwrap().to_string()],
    });
    actions.collect()
}

/// The IAM action a recorded call needs; `None` for what needs none.
fn action_of(service: &str, operation: &str) -> Option<String> {
    let prefix = match service {
        "sts" if operation == "GetCallerIdentity" => return None,
        "monitoring" => "cloudwatch",
        "tagging" => "tag",
        other => other,
    };
    let action = match (prefix, operation) {
        ("s3", "HeadObject") => "GetObject",
        ("s3", "ListObjectsV2") => "ListBucket",
        ("s3", "DeleteObjects") => "DeleteObject",
        (_, op) => op,
    };
    Some(format!("{prefix}:{action}"))
}

/// Runs `args` and checks each call against the policy for `phase`; the
/// actions it needed.
fn run_within(env: &Env, phase: &str, args: &[&str]) -> BTreeSet<String> {
    let allowed = allowed(env, phase);
    env.take_calls();
    env.stackctl(args).ok();
    let calls = env.take_calls();
    assert!(!calls.is_empty());
    let needed: BTreeSet<String> = calls
        .iter()
        .filter_map(|c| action_of(&c.service, &c.operation))
        .collect();
    for action in &needed {
        assert!(
            allowed.contains(action),
            "`stackctl {}` sent {action}, which `permissions --for {phase}` does not allow",
            args.join(" ")
        );
    }
    needed
}

fn lifecycle_within_the_policy(env: &Env, stack: &str) -> BTreeSet<String> {
    env.write_stack(stack);
    let mut needed = run_within(env, "apply", &["apply", "--auto-approve"]);
    needed.extend(run_within(env, "plan", &["plan"]));
    // In place (a retention) and a replacement (the instance's type).
    let changed = stack
        .replace("retention_in_days: 14", "retention_in_days: 30")
        .replace("instance_type: t3.micro", "instance_type: t3.small");
    env.write_stack(&changed);
    needed.extend(run_within(env, "apply", &["apply", "--auto-approve"]));
    needed.extend(run_within(env, "destroy", &["destroy", "--auto-approve"]));
    needed
}

#[test]
fn every_call_of_apply_plan_and_destroy_is_in_the_policy_for_it() {
    let env = Env::new();
    lifecycle_within_the_policy(&env, &seed_stack_with_zip(&env));
}

/// With the state in S3: the state object, its lock and journal, the bucket.
#[test]
fn every_call_to_an_s3_state_is_in_the_policy_too() {
    let env = Env::new();
    crate::backends::bucket(&env, "team-state", true);
    let stack = seed_stack_with_zip(&env).replace(
        "region: us-east-2\n",
        "region: us-east-2\nbackend:\n  s3: {bucket: team-state, key: seed.json}\n",
    );
    let needed = lifecycle_within_the_policy(&env, &stack);
    assert!(needed.contains("s3:PutObject"), "{needed:?}");
}
