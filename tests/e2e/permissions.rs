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

fn run_within(env: &Env, phase: &str, args: &[&str]) {
    let allowed = allowed(env, phase);
    env.take_calls();
    env.stackctl(args).ok();
    let calls = env.take_calls();
    assert!(!calls.is_empty());
    for c in calls {
        if let Some(action) = action_of(&c.service, &c.operation) {
            assert!(
                allowed.contains(&action),
                "`stackctl {}` sent {action}, which `permissions --for {phase}` does not allow",
                args.join(" ")
            );
        }
    }
}

#[test]
fn every_call_of_apply_plan_and_destroy_is_in_the_policy_for_it() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    run_within(&env, "apply", &["apply", "--auto-approve"]);
    run_within(&env, "plan", &["plan"]);
    // In place (a retention, tags) and a replacement (the instance's type).
    let changed = seed_stack_with_zip(&env)
        .replace("retention_in_days: 14", "retention_in_days: 30")
        .replace("instance_type: t3.micro", "instance_type: t3.small");
    env.write_stack(&changed);
    run_within(&env, "apply", &["apply", "--auto-approve"]);
    run_within(&env, "destroy", &["destroy", "--auto-approve"]);
}
