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

/// The access key of the identity the proxy authorizes (localaws/authz.rs).
const RESTRICTED: &str = "AKIARESTRICTED0CI";

/// The policy document `stackctl permissions --for PHASE --json` prints.
fn policy(env: &Env, phase: &str) -> Value {
    let out = env
        .stackctl(&["permissions", "--for", phase, "--json"])
        .ok();
    serde_json::from_str(&out.stdout).unwrap()
}

/// `stackctl ARGS` as an identity whose only permissions are `policy`.
fn as_restricted(env: &Env, policy: &Value, args: &[&str]) -> crate::support::Run {
    env.aws.restrict(RESTRICTED, policy.clone());
    let mut cmd = env.command(args);
    cmd.env("AWS_ACCESS_KEY_ID", RESTRICTED);
    let run = crate::support::Run::from_output(cmd.output().unwrap());
    env.aws.unrestrict();
    run
}

/// The seed stack with a change in place (a retention) and a replacement
/// (the instance's type).
fn changed(stack: &str) -> String {
    stack
        .replace("retention_in_days: 14", "retention_in_days: 30")
        .replace("instance_type: t3.micro", "instance_type: t3.small")
}

#[test]
fn the_seed_stacks_lifecycle_runs_as_an_identity_holding_only_the_generated_policies() {
    let env = Env::new();
    let stack = seed_stack_with_zip(&env);
    env.write_stack(&stack);
    let (apply, plan, destroy) = (
        policy(&env, "apply"),
        policy(&env, "plan"),
        policy(&env, "destroy"),
    );
    as_restricted(&env, &apply, &["apply", "--auto-approve"]).ok();
    let out = as_restricted(&env, &plan, &["plan", "--detailed-exitcode"]).ok();
    assert!(out.stdout.contains("No changes"), "{}", out.stdout);
    env.write_stack(&changed(&stack));
    as_restricted(&env, &apply, &["apply", "--auto-approve"]).ok();
    as_restricted(&env, &destroy, &["destroy", "--auto-approve"]).ok();
    assert!(env.state("automate-monitoring")["resources"]
        .as_object()
        .unwrap()
        .is_empty());
}

/// `policy` without its statement `i`.
fn without(policy: &Value, i: usize) -> (String, Value) {
    let mut p = policy.clone();
    let removed = p["Statement"].as_array_mut().unwrap().remove(i);
    (removed["Sid"].as_str().unwrap_or_default().to_string(), p)
}

#[track_caller]
fn refused(run: &crate::support::Run, what: &str) {
    assert_ne!(run.code, 0, "{what} succeeded:\n{}", run.stdout);
    assert!(
        run.stderr.contains("not authorized to perform"),
        "{what}: {}",
        run.stderr
    );
}

/// Every statement is needed: without any one of them, the seed stack's
/// apply (a first apply, then a change in place and a replacement), its
/// plan and its destroy are each refused with AccessDenied.
#[test]
fn without_any_one_statement_of_its_policy_a_command_is_refused() {
    let env = Env::new();
    let stack = seed_stack_with_zip(&env);
    env.write_stack(&stack);
    let apply = policy(&env, "apply");
    for i in 0..apply["Statement"].as_array().unwrap().len() {
        let (sid, partial) = without(&apply, i);
        env.write_stack(&stack);
        let first = as_restricted(&env, &partial, &["apply", "--auto-approve"]);
        let run = match first.code {
            0 => {
                env.write_stack(&changed(&stack));
                as_restricted(&env, &partial, &["apply", "--auto-approve"])
            }
            _ => first,
        };
        refused(&run, &format!("apply without {sid}"));
        env.stackctl(&["destroy", "--auto-approve"]).ok();
    }
    env.write_stack(&stack);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let plan = policy(&env, "plan");
    for i in 0..plan["Statement"].as_array().unwrap().len() {
        let (sid, partial) = without(&plan, i);
        refused(
            &as_restricted(&env, &partial, &["plan"]),
            &format!("plan without {sid}"),
        );
    }
    let destroy = policy(&env, "destroy");
    for i in 0..destroy["Statement"].as_array().unwrap().len() {
        let (sid, partial) = without(&destroy, i);
        let run = as_restricted(&env, &partial, &["destroy", "--auto-approve"]);
        refused(&run, &format!("destroy without {sid}"));
        env.stackctl(&["apply", "--auto-approve"]).ok();
    }
}
