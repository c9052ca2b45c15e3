//! Sensitive values (a variable declared sensitive, a function's environment)
//! appear in no output: plan, JSON plan, saved plan's report, apply, state
//! show, outputs, errors.

use std::os::unix::fs::PermissionsExt;

use localaws::Fault;

use crate::support::{Env, Run};

const PASSWORD: &str = "hunter2-correct-horse";
const API_KEY: &str = "sk-live-0123456789abcdef";

fn stack(api_key: &str) -> String {
    format!(
        r#"stack: secrets
variables:
  db_password: {{sensitive: true}}
resources:
  role:
    type: aws_iam_role
    properties:
      name: secrets_role
      assume_role_policy:
        Version: "2012-10-17"
        Statement:
          - {{Effect: Allow, Principal: {{Service: lambda.amazonaws.com}}, Action: sts:AssumeRole}}
  function:
    type: aws_lambda_function
    properties:
      function_name: secrets_function
      role: ${{role.arn}}
      runtime: provided.al2023
      filename: fn.zip
      environment:
        variables:
          DB_PASSWORD: ${{var.db_password}}
          API_KEY: {api_key}
          MODE: reporting
outputs:
  password: ${{var.db_password}}
  function: ${{function.function_name}}
"#
    )
}

fn write_zip(env: &Env) {
    let zip = stackctl::package::zip(&mut [stackctl::package::Entry {
        name: "bootstrap",
        data: b"#!/bin/sh\n",
        mode: 0o755,
    }])
    .unwrap();
    std::fs::write(env.path("fn.zip"), zip).unwrap();
}

#[track_caller]
fn never_shows_a_secret(what: &str, run: &Run) {
    for secret in [PASSWORD, API_KEY] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{what} shows a secret:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn sensitive_values_appear_in_no_output() {
    let env = Env::new();
    write_zip(&env);
    env.write_stack(&stack(API_KEY));
    let var = format!("db_password={PASSWORD}");
    let with_var = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--var".to_string(), var.clone()]);
        v
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.stackctl(&args)
    };

    let plan = run(with_var(&["plan"])).ok();
    never_shows_a_secret("plan", &plan);
    assert!(
        plan.stdout.contains(r#""DB_PASSWORD":(sensitive)"#),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(r#""MODE":(sensitive)"#),
        "every value is sensitive by default: {}",
        plan.stdout
    );
    let json = run(with_var(&["plan", "--json"])).ok();
    never_shows_a_secret("plan --json", &json);
    assert!(
        json.stdout.contains(r#""API_KEY": "(sensitive)""#),
        "{}",
        json.stdout
    );

    let saved = run(with_var(&["plan", "--out", "secrets.plan"])).ok();
    never_shows_a_secret("plan --out", &saved);
    let mode = std::fs::metadata(env.path("secrets.plan"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the saved plan holds the values: private"
    );
    let apply = env.stackctl(&["apply", "secrets.plan"]).ok();
    never_shows_a_secret("apply", &apply);
    assert!(
        apply.stdout.contains("password = (sensitive)"),
        "{}",
        apply.stdout
    );

    never_shows_a_secret(
        "state show",
        &env.stackctl(&["state", "show", "function"]).ok(),
    );
    never_shows_a_secret("output", &env.stackctl(&["output"]).ok());
    never_shows_a_secret("output --json", &env.stackctl(&["output", "--json"]).ok());
    assert_eq!(
        env.stackctl(&["output", "password"]).ok().stdout.trim(),
        PASSWORD,
        "asked for by name"
    );

    // A changed secret: shown as changed, nothing more.
    let changed = format!("db_password={PASSWORD}-rotated");
    let out = env.stackctl(&["plan", "--var", &changed]).ok();
    never_shows_a_secret("plan of a rotated secret", &out);
    assert!(
        out.stdout
            .contains(r#"+     "DB_PASSWORD": (sensitive, changed)"#),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r#"       "API_KEY": (sensitive),"#),
        "{}",
        out.stdout
    );

    // AWS's error messages quote what was sent: masked too.
    env.aws.inject(Fault::coded(
        "lambda",
        "UpdateFunctionConfiguration",
        400,
        "InvalidParameterValueException",
        &format!("Environment variable value {PASSWORD}-rotated is not allowed"),
    ));
    let out = env.stackctl(&["apply", "--auto-approve", "--var", &changed]);
    assert_eq!(out.code, 1);
    never_shows_a_secret("a failed apply", &out);
    assert!(
        out.stderr.contains("value (sensitive) is not allowed"),
        "{}",
        out.stderr
    );

    // A bad value for a property is reported without the value.
    env.write_stack(
        &stack(API_KEY).replace("runtime: provided.al2023", "runtime: ${var.db_password}"),
    );
    let out = run(with_var(&["validate"]));
    assert_eq!(out.code, 1);
    never_shows_a_secret("validate", &out);

    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn run_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut cmd = env.command(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Run::from_output(cmd.output().unwrap())
}

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

#[test]
fn with_a_key_the_state_its_backups_and_saved_plans_are_encrypted() {
    let env = Env::new();
    write_zip(&env);
    env.write_stack(&stack(API_KEY));
    let var = format!("db_password={PASSWORD}");
    let key_a = [("STACKCTL_STATE_KEY", KEY_A)];
    // A plain state from before the key: with the key set it is refused (a
    // plain file may have been put in place of the encrypted one) until
    // `state rekey` encrypts it, saying it is the first time.
    env.write_stack(&stack(API_KEY).replace(
        "      filename: fn.zip\n",
        "      filename: fn.zip\n      timeout: 5\n",
    ));
    run_with(&env, &["apply", "--auto-approve", "--var", &var], &[]).ok();
    env.write_stack(&stack(API_KEY));
    let refused = run_with(&env, &["plan", "--var", &var], &key_a);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("is not encrypted, but STACKCTL_STATE_KEY is set"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("stackctl state rekey"),
        "{}",
        refused.stderr
    );
    // A plan saved without the key is refused with it, as a plain state is.
    run_with(&env, &["plan", "--out", "plain.plan", "--var", &var], &[]).ok();
    run_with(&env, &["state", "rekey"], &key_a).ok();
    let refused = run_with(&env, &["apply", "plain.plan"], &key_a);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is not encrypted"),
        "{}",
        refused.stderr
    );
    run_with(&env, &["apply", "--auto-approve", "--var", &var], &key_a).ok();
    let state_path = env.path("state/secrets.json");
    let on_disk = std::fs::read_to_string(&state_path).unwrap();
    assert!(on_disk.contains("\"stackctl_encrypted\": 1"), "{on_disk}");
    for secret in [PASSWORD, API_KEY, "secrets_function"] {
        assert!(
            !on_disk.contains(secret),
            "the state at rest shows {secret}"
        );
    }
    run_with(&env, &["plan", "--out", "enc.plan", "--var", &var], &key_a).ok();
    let saved = std::fs::read_to_string(env.path("enc.plan")).unwrap();
    assert!(saved.contains("\"stackctl_encrypted\": 1") && !saved.contains(PASSWORD));
    run_with(&env, &["apply", "enc.plan"], &key_a).ok();

    // Without the key: a clear error, and the state is left exactly as it was.
    for cmd in [
        &["plan", "--var", &var][..],
        &["apply", "--auto-approve", "--var", &var],
    ] {
        let out = run_with(&env, cmd, &[]);
        assert_eq!(out.code, 1, "{cmd:?}");
        assert!(
            out.stderr.contains("is encrypted with key") && out.stderr.contains("no key is set"),
            "{}",
            out.stderr
        );
    }
    let out = run_with(
        &env,
        &["plan", "--var", &var],
        &[("STACKCTL_STATE_KEY", KEY_B)],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("the key set is"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&state_path).unwrap(), on_disk);

    // Rotation: the new key writes, the previous one still reads; rekey
    // rewrites the state and its backups; then the old key alone reads nothing.
    let rotating = [
        ("STACKCTL_STATE_KEY", KEY_B),
        ("STACKCTL_STATE_KEY_PREVIOUS", KEY_A),
    ];
    let out = run_with(&env, &["state", "rekey"], &rotating).ok();
    assert!(out.stdout.contains("Rewrote"), "{}", out.stdout);
    let key_b = [("STACKCTL_STATE_KEY", KEY_B)];
    let plan = run_with(
        &env,
        &["plan", "--detailed-exitcode", "--var", &var],
        &key_b,
    );
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(run_with(&env, &["plan", "--var", &var], &key_a).code, 1);
    let backups: Vec<_> = (1..=5)
        .filter_map(|n| std::fs::read(env.path(&format!("state/secrets.backup.{n}"))).ok())
        .collect();
    assert!(!backups.is_empty());
    for (n, backup) in backups.iter().enumerate() {
        assert_eq!(
            stackctl::seal::key_id_of(backup).as_deref(),
            Some(stackctl::seal::Key::from_bytes(decode(KEY_B)).id.as_str()),
            "backup {} is under the new key",
            n + 1
        );
    }
}

fn decode(b64: &str) -> [u8; 32] {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
        .try_into()
        .unwrap()
}

const BY_HAND: &str = "set-by-hand-0xCAFE";
const BARE_BY_HAND: &str = "also-by-hand-0xBEEF";

/// Sets a function's environment by hand, as in the console.
fn set_environment_by_hand(env: &Env, function: &str, vars: &[(&str, &str)]) {
    let lambda = aws_sdk_lambda::Client::new(&env.sdk());
    let mut environment = aws_sdk_lambda::types::Environment::builder();
    for (k, v) in vars {
        environment = environment.variables(*k, *v);
    }
    env.rt
        .block_on(
            lambda
                .update_function_configuration()
                .function_name(function)
                .environment(environment.build())
                .send(),
        )
        .unwrap();
}

/// Applies the stack with a second function, `secrets_bare`, whose stack
/// file names no environment; the `--var` the stack needs.
fn applied_with_a_bare_function(env: &Env) -> String {
    write_zip(env);
    let bare = "  bare:\n    type: aws_lambda_function\n    properties:\n      function_name: secrets_bare\n      role: ${role.arn}\n      runtime: provided.al2023\n      filename: fn.zip\noutputs:\n";
    env.write_stack(&stack(API_KEY).replace("outputs:\n", bare));
    let var = format!("db_password={PASSWORD}");
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    var
}

/// Sensitivity belongs to the property: every value under a function's
/// environment is masked, whichever keys the stack file names, in every
/// output, after an import too; generated configuration holds none of them.
#[test]
fn environment_values_the_stack_file_never_named_are_masked_everywhere() {
    let env = Env::new();
    let var = applied_with_a_bare_function(&env);
    set_environment_by_hand(
        &env,
        "secrets_function",
        &[
            ("DB_PASSWORD", PASSWORD),
            ("API_KEY", API_KEY),
            ("MODE", "reporting"),
            ("HAND_SECRET", BY_HAND),
        ],
    );
    set_environment_by_hand(&env, "secrets_bare", &[("HAND_ONLY", BARE_BY_HAND)]);

    let shows = |what: &str, run: Run| {
        for secret in [BY_HAND, BARE_BY_HAND, PASSWORD, API_KEY] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{what} shows {secret}:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    };
    for args in [
        vec!["plan"],
        vec!["plan", "--json"],
        vec!["plan", "--format", "markdown"],
    ] {
        let mut args = args.clone();
        args.extend(["--var", &var]);
        shows(&args.join(" "), env.stackctl(&args).ok());
    }
    shows(
        "state show",
        env.stackctl(&["state", "show", "function"]).ok(),
    );
    shows(
        "state show bare",
        env.stackctl(&["state", "show", "bare"]).ok(),
    );

    // Imported: the record masks what AWS reported.
    env.stackctl(&["state", "rm", "bare"]).ok();
    shows(
        "import",
        env.stackctl(&["import", "bare", "secrets_bare", "--var", &var])
            .ok(),
    );
    shows(
        "state show after import",
        env.stackctl(&["state", "show", "bare"]).ok(),
    );

    let out = env
        .stackctl(&[
            "import",
            "--generate-config",
            "gen.yaml",
            "aws_lambda_function.bare=secrets_bare",
        ])
        .ok();
    shows("generate-config", out);
    let generated = std::fs::read_to_string(env.path("gen.yaml")).unwrap();
    assert!(!generated.contains(BARE_BY_HAND), "{generated}");
    assert!(
        generated.contains("${var.bare_environment_variables_hand_only}"),
        "{generated}"
    );
    let mode = std::fs::metadata(env.path("gen.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The opposite fault: a topic's ARN in a function's environment (sensitive
/// by default) is masked there, and stays readable where it is public, in
/// an error about the subscription to that topic.
#[test]
fn a_public_value_that_also_sits_in_a_sensitive_map_stays_readable() {
    let env = Env::new();
    write_zip(&env);
    let stack = stack(API_KEY)
        .replace("          MODE: reporting\n", "          MODE: reporting\n          TOPIC_ARN: ${topic.arn}\n")
        .replace(
            "outputs:\n",
            "  topic:\n    type: aws_sns_topic\n    properties: {name: secrets_topic}\n  inbox:\n    type: aws_sqs_queue\n    properties: {name: secrets_inbox}\n  sub:\n    type: aws_sns_topic_subscription\n    properties:\n      topic_arn: ${topic.arn}\n      protocol: sqs\n      endpoint: ${inbox.arn}\noutputs:\n",
        );
    env.write_stack(&stack);
    let var = format!("db_password={PASSWORD}");
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    let arn = "arn:aws:sns:us-east-2:123456789012:secrets_topic";
    env.write_stack(&stack.replace(
        "      endpoint: ${inbox.arn}\n",
        "      endpoint: ${inbox.arn}\n      raw_message_delivery: true\n",
    ));
    env.aws.inject(Fault::coded(
        "sns",
        "SetSubscriptionAttributes",
        400,
        "InvalidParameter",
        &format!("Invalid parameter: the subscription of {arn} cannot deliver raw messages"),
    ));
    let out = env.stackctl(&["apply", "--auto-approve", "--var", &var]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("the subscription of {arn} cannot")),
        "{}",
        out.stderr
    );
    never_shows_a_secret("the failed apply", &out);
    let plan = env.stackctl(&["plan", "--var", &var]).ok();
    assert!(
        plan.stdout.contains(r#""TOPIC_ARN": (sensitive)"#) || !plan.stdout.contains("TOPIC_ARN"),
        "{}",
        plan.stdout
    );
}

/// A variable set by hand on a function whose stack file names no
/// environment: the plan shows the change, masked, and apply takes it away.
#[test]
fn an_environment_set_by_hand_on_a_function_without_one_is_drift() {
    let env = Env::new();
    let var = applied_with_a_bare_function(&env);
    set_environment_by_hand(&env, "secrets_bare", &[("HAND_ONLY", BARE_BY_HAND)]);
    let out = env.stackctl(&["plan", "--detailed-exitcode", "--var", &var]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("bare (aws_lambda_function): environment changed outside"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(BARE_BY_HAND), "{}", out.stdout);
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    let lambda = aws_sdk_lambda::Client::new(&env.sdk());
    let config = env
        .rt
        .block_on(
            lambda
                .get_function_configuration()
                .function_name("secrets_bare")
                .send(),
        )
        .unwrap();
    let vars = config
        .environment
        .and_then(|e| e.variables)
        .unwrap_or_default();
    assert!(vars.is_empty(), "{vars:?}");
}

/// A reserved concurrency set by hand (0 stops the function) is drift on a
/// function whose stack file reserves none, and apply takes it away; one the
/// stack file sets is read back as written.
#[test]
fn a_reserved_concurrency_set_by_hand_is_drift() {
    let env = Env::new();
    write_zip(&env);
    let var = format!("db_password={PASSWORD}");
    env.write_stack(&stack(API_KEY));
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    let lambda = aws_sdk_lambda::Client::new(&env.sdk());
    let stop = lambda
        .put_function_concurrency()
        .function_name("secrets_function")
        .reserved_concurrent_executions(0);
    env.rt.block_on(stop.send()).unwrap();
    let out = env.stackctl(&["plan", "--detailed-exitcode", "--var", &var]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("~ reserved_concurrent_executions = 0 -> -1"),
        "{}",
        out.stdout
    );
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    let calls = env.take_calls();
    assert_eq!(
        crate::support::count(&calls, "DeleteFunctionConcurrency"),
        1
    );

    let reserved = stack(API_KEY).replace(
        "      filename: fn.zip\n",
        "      filename: fn.zip\n      reserved_concurrent_executions: 5\n",
    );
    env.write_stack(&reserved);
    env.stackctl(&["apply", "--auto-approve", "--var", &var])
        .ok();
    let out = env.stackctl(&["plan", "--detailed-exitcode", "--var", &var]);
    assert_eq!(out.code, 0, "read back as written: {}", out.stdout);
}
