//! `stackctl permissions` against an endpoint that enforces IAM (the test
//! proxy authorizes one restricted identity as AWS does; tests/localaws
//! src/authz.rs): the seed stack's apply, no-op plan, changing apply and
//! destroy run with only the policy printed for each, and without any one of
//! its statements each is refused.

use serde_json::Value;

use crate::support::{seed_stack_with_zip, Env};

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
    let [apply, plan, destroy] = ["apply", "plan", "destroy"].map(|p| policy(&env, p));
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
    // AWS's message, or stackctl's own for the state (it names what is needed).
    let denied =
        run.stderr.contains("not authorized to perform") || run.stderr.contains("was denied");
    assert!(denied, "{what}: {}", run.stderr);
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

/// With the state in S3, its objects and bucket are authorized too.
#[test]
fn with_an_s3_state_the_lifecycle_runs_with_only_the_generated_policies() {
    let env = Env::new();
    crate::backends::bucket(&env, "team-state", true);
    let stack = seed_stack_with_zip(&env).replace(
        "region: us-east-2\n",
        "region: us-east-2\nbackend:\n  s3: {bucket: team-state, key: seed.json}\n",
    );
    env.write_stack(&stack);
    let [apply, plan, destroy] = ["apply", "plan", "destroy"].map(|p| policy(&env, p));
    as_restricted(&env, &apply, &["apply", "--auto-approve"]).ok();
    as_restricted(&env, &plan, &["plan"]).ok();
    as_restricted(&env, &destroy, &["destroy", "--auto-approve"]).ok();
    let state_only = without(&plan, 0).1;
    refused(
        &as_restricted(&env, &state_only, &["plan"]),
        "plan without its reads",
    );
    let reads_only = without(&plan, 1).1;
    refused(
        &as_restricted(&env, &reads_only, &["plan"]),
        "plan without the state's objects",
    );
}
