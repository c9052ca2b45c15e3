//! A role's permissions boundary: the most its policies can grant. Many
//! organisations require one on every role; one set by hand can silently
//! take from the remediation function what it needs.

use crate::census;
use crate::support::{applied_seed_stack, seed_stack_with_zip, Env};

const ROLE: &str = "lambda_iam_role01";

fn boundary_of(env: &Env) -> Option<String> {
    let role = env.rt.block_on(env.iam().get_role().role_name(ROLE).send());
    let boundary = role.unwrap().role.unwrap().permissions_boundary;
    boundary.and_then(|b| b.permissions_boundary_arn)
}

#[test]
fn a_permissions_boundary_set_by_hand_is_drift_and_apply_removes_it() {
    let env = applied_seed_stack();
    let policy = env.iam().create_policy().policy_name("by-hand").policy_document(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}"#,
    );
    let arn = env
        .rt
        .block_on(policy.send())
        .unwrap()
        .policy
        .unwrap()
        .arn
        .unwrap();
    let by_hand = env
        .iam()
        .put_role_permissions_boundary()
        .role_name(ROLE)
        .permissions_boundary(&arn);
    env.rt.block_on(by_hand.send()).unwrap();

    env.plan_shows_drift(
        "lambda_role (aws_iam_role): permissions_boundary changed outside stackctl",
    );
    assert_eq!(env.apply_sending(), ["DeleteRolePermissionsBoundary"]);
    assert_eq!(boundary_of(&env), None);
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
}

#[test]
fn a_role_is_created_inside_the_boundary_the_stack_file_names() {
    let env = Env::new();
    let boundary = "  boundary:\n    type: aws_iam_policy\n    properties:\n      name: remediation-boundary\n      policy:\n        Version: \"2012-10-17\"\n        Statement:\n          - {Effect: Allow, Action: [\"ec2:*\", \"sns:Publish\", \"logs:*\"], Resource: \"*\"}\n\n  lambda_role:\n";
    let stack = seed_stack_with_zip(&env)
        .replacen("  lambda_role:\n", boundary, 1)
        .replacen(
            "      name: lambda_iam_role01\n",
            "      name: lambda_iam_role01\n      permissions_boundary: ${boundary.arn}\n",
            1,
        );
    env.write_stack(&stack);
    env.stackctl(&["apply", "--auto-approve"]).ok();

    let policy = env.physical_id("automate-monitoring", "boundary");
    assert_eq!(boundary_of(&env), Some(policy));
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert_eq!(census::count(&env), census::nothing());
}
