//! Environments: one stack file, a small file per environment, each its own
//! state; an environment in another account reached by assuming a role.

use crate::support::Env;

const STACK: &str = "stack: shop\nregion: us-east-2\nvariables:\n  retention: 345600\nresources:\n  inbox:\n    type: aws_sqs_queue\n    properties:\n      name: ${stack.name}-inbox\n      message_retention_seconds: ${var.retention}\n";

fn with_envs(envs: &[(&str, &str)]) -> Env {
    let env = Env::new();
    env.write_stack(STACK);
    std::fs::create_dir_all(env.path("env")).unwrap();
    for (name, yaml) in envs {
        std::fs::write(env.path(&format!("env/{name}.yaml")), yaml).unwrap();
    }
    env
}

fn queue_url(env: &Env, name: &str) -> Option<String> {
    let got = env
        .rt
        .block_on(env.sqs().get_queue_url().queue_name(name).send());
    got.ok().and_then(|o| o.queue_url)
}

#[test]
fn two_environments_of_one_stack_keep_separate_states() {
    let env = with_envs(&[
        ("dev", "variables: {retention: 86400}\ntags: {env: dev}\n"),
        ("prod", "tags: {env: prod}\n"),
    ]);
    env.stackctl(&["apply", "--auto-approve", "--env", "dev"])
        .ok();
    env.stackctl(&["apply", "--auto-approve", "--env", "prod"])
        .ok();
    let dev = env.state("shop-dev");
    let prod = env.state("shop-prod");
    assert_eq!(
        dev["resources"]["inbox"]["props"]["message_retention_seconds"],
        86400
    );
    assert_eq!(
        prod["resources"]["inbox"]["props"]["message_retention_seconds"],
        345600
    );
    assert_eq!(dev["resources"]["inbox"]["props"]["tags"]["env"], "dev");
    assert!(queue_url(&env, "shop-dev-inbox").is_some());
    assert!(queue_url(&env, "shop-prod-inbox").is_some());
    let listed = env.stackctl(&["env", "list"]).ok();
    assert!(listed.stdout.contains("dev\t"), "{}", listed.stdout);
    assert!(listed.stdout.contains("prod\t"), "{}", listed.stdout);
    assert!(listed.stdout.contains("serial"), "{}", listed.stdout);
    let mut plan = env.command(&["plan", "--detailed-exitcode"]);
    let plan = plan.env("STACKCTL_ENV", "prod").output().unwrap();
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "STACKCTL_ENV picks prod: {stdout}"
    );
}

#[test]
fn an_environment_in_another_account_is_reached_by_assuming_a_role() {
    let env = with_envs(&[(
        "other",
        "account: \"111111111111\"\nassume_role: arn:aws:iam::111111111111:role/deployer\n",
    )]);
    env.stackctl(&["apply", "--auto-approve", "--env", "other"])
        .ok();
    let state = env.state("shop-other");
    let arn = state["resources"]["inbox"]["attrs"]["arn"]
        .as_str()
        .unwrap();
    assert!(arn.contains(":111111111111:"), "{arn}");
}

#[test]
fn credentials_that_reach_another_account_are_refused() {
    let env = with_envs(&[("wrong", "account: \"111111111111\"\n")]);
    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve", "--env", "wrong"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("environment `wrong` names account 111111111111"),
        "{}",
        out.stderr
    );
    let calls = env.take_calls();
    assert!(crate::support::mutating(&calls).is_empty(), "{calls:?}");
}

#[test]
fn an_unknown_environment_names_those_there_are() {
    let env = with_envs(&[("dev", "{}\n")]);
    let out = env.stackctl(&["validate", "--env", "prod"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("environments here: dev"),
        "{}",
        out.stderr
    );
}
