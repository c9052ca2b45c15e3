//! The remediation Lambda: its handler against the local endpoint, the real
//! built `bootstrap` under a Lambda Runtime API, and reproducible packaging.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use localaws::REGION;
use serde_json::{json, Value};
use stackctl::sim::runtime::{Outcome, RuntimeApi};

use crate::support::{count, Env};

const ALARM_ARN: &str = "arn:aws:cloudwatch:us-east-2:123456789012:alarm:slow-responses";

fn alarm_event(state: &str) -> Value {
    alarm_event_of("slow-responses", ALARM_ARN, state)
}

fn alarm_event_of(name: &str, arn: &str, state: &str) -> Value {
    json!({
        "source": "aws.cloudwatch",
        "alarmArn": arn,
        "accountId": "123456789012",
        "time": "2026-11-25T10:20:08.431+0000",
        "region": REGION,
        "alarmData": {
            "alarmName": name,
            "state": {"value": state, "reason": "Threshold Crossed: 1 out of the last 1 datapoints [6.0 (25/11/26 10:10:00)] was greater than the threshold (5.0) (minimum 1 datapoint for OK -> ALARM transition).", "timestamp": "2026-11-25T10:20:08.431+0000"},
            "previousState": {"value": "OK", "reason": "Threshold Crossed", "timestamp": "2026-11-25T09:20:08.431+0000"},
            "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "MyApp", "name": "SlowResponses", "dimensions": {}}, "period": 600, "stat": "Sum"}, "returnData": true}]}
        }
    })
}

fn sns_wrapped_alarm() -> Value {
    let message = json!({
        "AlarmName": "slow-responses", "AlarmArn": ALARM_ARN, "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed", "OldStateValue": "OK", "Region": "US East (Ohio)",
    });
    json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {
        "Type": "Notification", "TopicArn": "arn:aws:sns:us-east-2:123456789012:alarms", "Subject": "ALARM: \"slow-responses\" in US East (Ohio)",
        "Message": message.to_string(), "Timestamp": "2026-11-25T10:20:09.655Z"}}]})
}

/// An instance, a topic and a queue subscribed to it, as the function expects.
struct World {
    instance_id: String,
    topic_arn: String,
    queue_url: String,
}

fn run_instance(env: &Env) -> String {
    let rt = &env.rt;
    let images = rt
        .block_on(env.ec2().describe_images().owners("amazon").send())
        .unwrap()
        .images
        .unwrap();
    let ami = images[0].image_id.clone().unwrap();
    let run = rt
        .block_on(
            env.ec2()
                .run_instances()
                .image_id(ami)
                .min_count(1)
                .max_count(1)
                .send(),
        )
        .unwrap();
    run.instances.unwrap()[0].instance_id.clone().unwrap()
}

fn world(env: &Env) -> World {
    let rt = &env.rt;
    let instance_id = run_instance(env);
    let topic_arn = rt
        .block_on(env.sns().create_topic().name("lambda_topic01").send())
        .unwrap()
        .topic_arn
        .unwrap();
    let queue_url = rt
        .block_on(env.sqs().create_queue().queue_name("notifications").send())
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = rt
        .block_on(
            env.sqs()
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    rt.block_on(
        env.sns()
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send(),
    )
    .unwrap();
    env.take_calls();
    World {
        instance_id,
        topic_arn,
        queue_url,
    }
}

/// The notifications the function published, as the queue received them.
fn notifications(env: &Env, queue_url: &str) -> Vec<Value> {
    let out = env
        .rt
        .block_on(
            env.sqs()
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .send(),
        )
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(&m.body.unwrap()).unwrap();
            serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn handler_restarts_on_alarm_only_respects_cooldown_and_rejects_malformed_events() {
    let env = Env::new();
    let w = world(&env);
    let clients = remediation::Clients::new(&env.sdk());
    let config = |cooldown: &str| {
        let pairs = [
            ("INSTANCE_IDS", w.instance_id.clone()),
            ("TOPIC_ARN", w.topic_arn.clone()),
            ("COOLDOWN_SECONDS", cooldown.to_string()),
        ];
        remediation::Config::from_env(|k| {
            pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap()
    };
    let deadline = || remediation::Deadline::after(Duration::from_secs(120));
    let handle = |cfg: &remediation::Config, event: &Value| {
        env.rt.block_on(remediation::handle(
            &clients,
            cfg,
            event,
            deadline(),
            "req-1",
        ))
    };

    // OK and INSUFFICIENT_DATA: logged and ignored, nothing touched.
    for state in ["OK", "INSUFFICIENT_DATA"] {
        let out = handle(&config("900"), &alarm_event(state)).unwrap();
        assert_eq!(out["outcome"], "ignored");
    }
    let calls = env.take_calls();
    assert_eq!(
        count(&calls, "StopInstances") + count(&calls, "StartInstances") + count(&calls, "Publish"),
        0,
        "{calls:?}"
    );

    // ALARM: stop, wait for stopped, start, wait for running, report.
    let out = handle(&config("900"), &alarm_event("ALARM")).unwrap();
    assert_eq!(out["outcome"], "succeeded", "{out}");
    let steps: Vec<&str> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["stop", "stopped", "start", "running", "remember-restart"]
    );
    let calls = env.take_calls();
    let ec2_ops: Vec<&str> = calls
        .iter()
        .filter(|c| c.service == "ec2" && c.is_mutating())
        .map(|c| c.operation.as_str())
        .collect();
    assert_eq!(ec2_ops, ["StopInstances", "StartInstances", "CreateTags"]);
    assert_eq!(env.instance_state(&w.instance_id), "running");
    let notes = notifications(&env, &w.queue_url);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["outcome"], "succeeded");
    assert_eq!(notes[0]["alarm"], "slow-responses");
    assert_eq!(notes[0]["instances"], json!([w.instance_id]));
    assert!(notes[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("Threshold Crossed"));
    assert_eq!(
        notes[0]["steps"].as_array().unwrap().len(),
        5,
        "how long each step took"
    );

    // The same alarm again, through SNS, within the cooldown: nothing restarted.
    let out = handle(&config("900"), &sns_wrapped_alarm()).unwrap();
    assert_eq!(out["outcome"], "skipped");
    assert!(
        out["why"].as_str().unwrap().contains("cooldown is 900s"),
        "{out}"
    );
    let calls = env.take_calls();
    assert_eq!(count(&calls, "StopInstances"), 0);
    assert_eq!(notifications(&env, &w.queue_url)[0]["outcome"], "skipped");

    // Without a cooldown the SNS-delivered alarm restarts too.
    let out = handle(&config("0"), &sns_wrapped_alarm()).unwrap();
    assert_eq!(out["outcome"], "succeeded");

    // Malformed: an error naming what is missing, no instance touched.
    env.take_calls();
    let bad = json!({"source": "aws.cloudwatch", "alarmArn": ALARM_ARN, "alarmData": {"alarmName": "slow-responses"}});
    let e = handle(&config("0"), &bad).unwrap_err();
    assert!(e.0.contains("`alarmData.state.value` is missing"), "{e}");
    assert!(env.take_calls().is_empty());

    // A failed remediation reports the error and fails the invocation.
    let missing = remediation::Config {
        instance_ids: vec!["i-00000000000000000".into()],
        ..config("0")
    };
    let e = handle(&missing, &alarm_event("ALARM")).unwrap_err();
    assert!(e.0.contains("i-00000000000000000"), "{e}");
    let notes = notifications(&env, &w.queue_url);
    assert!(
        notes.iter().any(|n| n["outcome"] == "failed"
            && n["error"].as_str().unwrap().contains("i-00000000000000000")),
        "{notes:?}"
    );
}

/// An alarm with these tags, as the fleet's watch module makes it; its ARN.
fn tagged_alarm(env: &Env, name: &str, tags: &[(&str, &str)]) -> String {
    let cw = env.cloudwatch();
    let mut put = cw
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Fleet")
        .metric_name(format!("SlowResponses-{name}"))
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(600)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold);
    for (k, v) in tags {
        put = put.tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build(),
        );
    }
    env.rt.block_on(put.send()).unwrap();
    let out = env
        .rt
        .block_on(cw.describe_alarms().alarm_names(name).send())
        .unwrap();
    out.metric_alarms()[0].alarm_arn().unwrap().to_string()
}

/// With INSTANCE_TAG the function restarts the one instance the firing
/// alarm's tag names, and nothing at all when the tag is missing or names an
/// instance outside INSTANCE_IDS (never "all of them" as a fallback).
#[test]
fn with_instance_tag_only_the_alarms_own_instance_is_restarted() {
    let env = Env::new();
    let w = world(&env);
    let other = run_instance(&env);
    let stranger = run_instance(&env);
    let clients = remediation::Clients::new(&env.sdk());
    let pairs = [
        ("INSTANCE_IDS", format!("{},{other}", w.instance_id)),
        ("INSTANCE_TAG", "InstanceId".to_string()),
        ("TOPIC_ARN", w.topic_arn.clone()),
        ("COOLDOWN_SECONDS", "0".to_string()),
    ];
    let cfg = remediation::Config::from_env(|k| {
        pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let fire = |name: &str, arn: &str| {
        env.rt.block_on(remediation::handle(
            &clients,
            &cfg,
            &alarm_event_of(name, arn, "ALARM"),
            remediation::Deadline::after(Duration::from_secs(120)),
            "req-1",
        ))
    };
    let stops = |env: &Env| count(&env.take_calls(), "StopInstances");

    let arn = tagged_alarm(&env, "slow-web-2", &[("InstanceId", &other)]);
    env.take_calls();
    let out = fire("slow-web-2", &arn).unwrap();
    assert_eq!(out["outcome"], "succeeded", "{out}");
    assert_eq!(out["instances"], json!([other]), "{out}");
    assert_eq!(stops(&env), 1);

    let untagged = tagged_alarm(&env, "slow-untagged", &[]);
    env.take_calls();
    let e = fire("slow-untagged", &untagged).unwrap_err();
    assert!(e.0.contains("has no tag InstanceId"), "{e}");
    assert_eq!(stops(&env), 0);

    let outside = tagged_alarm(&env, "slow-stranger", &[("InstanceId", &stranger)]);
    env.take_calls();
    let e = fire("slow-stranger", &outside).unwrap_err();
    assert!(e.0.contains("not one of INSTANCE_IDS"), "{e}");
    assert_eq!(stops(&env), 0);
}

fn repo() -> PathBuf {
    localaws::repo_root()
}

/// The `bootstrap` inside a zip made by stackctl (one deflated entry).
fn unzip_bootstrap(zip: &[u8]) -> Vec<u8> {
    use std::io::Read;
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let csize = u32::from_le_bytes([zip[18], zip[19], zip[20], zip[21]]) as usize;
    let start = 30 + u16_at(26) + u16_at(28);
    assert_eq!(&zip[30..30 + u16_at(26)], b"bootstrap");
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&zip[start..start + csize])
        .read_to_end(&mut out)
        .unwrap();
    out
}

struct Bootstrap(Child);

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_bootstrap(env: &Env, exe: &Path, api: &RuntimeApi, w: &World) -> Bootstrap {
    let child = Command::new(exe)
        .env_clear()
        .envs(env.aws.env())
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "lambda_function01")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/lambda_function01")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/25/[$LATEST]0123456789abcdef",
        )
        .env("_HANDLER", "bootstrap")
        .env("INSTANCE_IDS", &w.instance_id)
        .env("TOPIC_ARN", &w.topic_arn)
        .env("COOLDOWN_SECONDS", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("start bootstrap");
    Bootstrap(child)
}

#[test]
fn the_built_bootstrap_runs_under_the_runtime_api_and_builds_reproducibly() {
    let crate_dir = repo().join("lambda");
    let artifact = stackctl::build::build(&crate_dir, "x86_64", &stackctl::events::Silent)
        .expect("build the Lambda");
    let zip = artifact.zip.clone();
    assert_eq!(std::fs::read(&artifact.zip_path).unwrap(), zip);
    assert_eq!(stackctl::package::code_sha256(&zip), artifact.code_sha256);
    eprintln!(
        "lambda: zip {} bytes, CodeSha256 {}",
        zip.len(),
        artifact.code_sha256
    );

    // Rebuilt from the same sources with new file times: the same bytes, so
    // the same CodeSha256 and no upload. The cached zip is replaced, never
    // removed: other tests read it at the same time.
    let main = crate_dir.join("src/main.rs");
    std::fs::File::options()
        .write(true)
        .open(&main)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .unwrap();
    let again = stackctl::build::rebuild(&crate_dir, "x86_64", &stackctl::events::Silent).unwrap();
    assert!(again.built);
    assert_eq!(again.code_sha256, artifact.code_sha256);
    let cached = stackctl::build::build(&crate_dir, "x86_64", &stackctl::events::Silent).unwrap();
    assert!(!cached.built, "unchanged sources are not built again");

    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("bootstrap");
    std::fs::write(&exe, unzip_bootstrap(&zip)).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let env = Env::new();
    let w = world(&env);
    let api = env
        .rt
        .block_on(RuntimeApi::start(
            "arn:aws:lambda:us-east-2:123456789012:function:lambda_function01",
        ))
        .unwrap();
    let _bootstrap = run_bootstrap(&env, &exe, &api, &w);
    let wait = Duration::from_secs(60);

    let out = env
        .rt
        .block_on(api.invoke(
            "req-alarm",
            alarm_event("ALARM"),
            Duration::from_secs(120),
            wait,
        ))
        .expect("an answer");
    let Outcome::Response(body) = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["outcome"], "succeeded", "{body}");
    let calls = env.take_calls();
    assert_eq!(
        (
            count(&calls, "StopInstances"),
            count(&calls, "StartInstances")
        ),
        (1, 1),
        "{calls:?}"
    );
    assert_eq!(env.instance_state(&w.instance_id), "running");
    let notes = notifications(&env, &w.queue_url);
    assert_eq!(notes[0]["outcome"], "succeeded");

    let out = env
        .rt
        .block_on(api.invoke("req-ok", alarm_event("OK"), Duration::from_secs(120), wait))
        .expect("an answer");
    assert!(
        matches!(&out, Outcome::Response(b) if b["outcome"] == "ignored"),
        "{out:?}"
    );
    let calls = env.take_calls();
    assert_eq!(
        count(&calls, "StopInstances") + count(&calls, "StartInstances"),
        0
    );

    let out = env
        .rt
        .block_on(api.invoke(
            "req-bad",
            json!({"hello": "world"}),
            Duration::from_secs(120),
            wait,
        ))
        .expect("an answer");
    let Outcome::Error { body, .. } = out else {
        panic!("{out:?}")
    };
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("`source` is not aws.cloudwatch"),
        "{body}"
    );
}

#[test]
fn the_seed_stack_builds_and_uploads_the_function_once() {
    let env = Env::new();
    let source = repo().join("lambda");
    let stack = include_str!("../fixtures/seed/stack.yaml").replace(
        "      source: lambda\n",
        &format!("      source: {}\n", source.display()),
    );
    env.write_stack(&stack);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let artifact = stackctl::build::build(&source, "x86_64", &stackctl::events::Silent).unwrap();
    let state = env.state("automate-monitoring");
    assert_eq!(
        state["resources"]["remediation"]["attrs"]["code_sha256"],
        artifact.code_sha256.as_str()
    );
    let config = env.function_config();
    assert_eq!(
        config.code_sha256.as_deref(),
        Some(artifact.code_sha256.as_str()),
        "AWS runs the zip stackctl built"
    );

    // Unchanged sources: no change planned, no cargo build, nothing uploaded.
    env.take_calls();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !out.stderr.contains("building"),
        "plan never builds: {}",
        out.stderr
    );
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(!out.stderr.contains("building"), "{}", out.stderr);
    let calls = env.take_calls();
    assert_eq!(count(&calls, "UpdateFunctionCode"), 0);
    assert!(
        crate::support::mutating(&calls).is_empty(),
        "{:?}",
        crate::support::mutating(&calls)
    );
}

/// A tiny function workspace beside the stack: the crate `f` takes part of
/// its code from `shared`, a path dependency outside it. It builds in seconds.
fn scratch_function(env: &Env) {
    let write = |p: &str, text: &str| {
        let path = env.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "fn/Cargo.toml",
        "[workspace]\nmembers = [\"f\", \"shared\"]\nresolver = \"2\"\n",
    );
    write(
        "fn/Cargo.lock",
        "version = 4\n\n[[package]]\nname = \"f\"\nversion = \"0.1.0\"\ndependencies = [\n \"shared\",\n]\n\n[[package]]\nname = \"shared\"\nversion = \"0.1.0\"\n",
    );
    write(
        "fn/f/Cargo.toml",
        "[package]\nname = \"f\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[[bin]]\nname = \"bootstrap\"\npath = \"src/main.rs\"\n\n[dependencies]\nshared = { path = \"../shared\" }\n",
    );
    write(
        "fn/f/src/main.rs",
        "fn main() { println!(\"{}\", shared::GREETING); }\n",
    );
    write(
        "fn/shared/Cargo.toml",
        "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    set_greeting(env, "hello");
    env.write_stack(
        r#"stack: code
resources:
  role:
    type: aws_iam_role
    properties:
      name: code_role
      assume_role_policy:
        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Principal: {Service: lambda.amazonaws.com}, Action: sts:AssumeRole}
  function:
    type: aws_lambda_function
    properties:
      function_name: code_function
      role: ${role.arn}
      runtime: provided.al2023
      source: fn/f
"#,
    );
}

fn set_greeting(env: &Env, greeting: &str) {
    std::fs::create_dir_all(env.path("fn/shared/src")).unwrap();
    std::fs::write(
        env.path("fn/shared/src/lib.rs"),
        format!("pub const GREETING: &str = \"{greeting}\";\n"),
    )
    .unwrap();
}

fn deployed_code_sha256(env: &Env) -> String {
    env.rt
        .block_on(
            env.lambda()
                .get_function_configuration()
                .function_name("code_function")
                .send(),
        )
        .unwrap()
        .code_sha256
        .unwrap()
}

#[test]
fn two_runs_building_the_same_sources_at_once_run_cargo_once() {
    let env = Env::new();
    scratch_function(&env);
    let runs: Vec<_> = (0..2)
        .map(|_| {
            env.command(&["build"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<String> = runs
        .into_iter()
        .map(|run| {
            let out = run.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        })
        .collect();
    let built = outs
        .iter()
        .filter(|o| o.lines().any(|l| l.trim_start().starts_with("built in")))
        .count();
    assert_eq!(built, 1, "the other run waits and reuses the zip: {outs:?}");
    let sha = |o: &str| {
        o.lines()
            .find(|l| l.contains("CodeSha256"))
            .map(str::to_owned)
    };
    assert_eq!(sha(&outs[0]), sha(&outs[1]));
}

#[test]
fn a_build_killed_midway_leaves_no_lock_that_stops_the_next() {
    let env = Env::new();
    scratch_function(&env);
    // A build script that says it runs, then holds cargo until the gate opens.
    std::fs::write(
        env.path("fn/f/build.rs"),
        r#"fn main() {
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    std::fs::write(dir.join("../running"), "").unwrap();
    while !dir.join("../gate").exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
"#,
    )
    .unwrap();
    let mut killed = env
        .command(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&env.path("fn/running"), &mut killed);
    killed.kill().unwrap(); // SIGKILL: no cleanup runs
    killed.wait().unwrap();

    std::fs::write(env.path("fn/gate"), "").unwrap();
    let mut next = env
        .command(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while next.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            next.kill().unwrap();
            panic!("the next build still waits on the killed build's lock");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = next.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CodeSha256"), "{text}");
}

/// Waits until a file exists, failing if `child` ends first.
fn wait_for_file(path: &Path, child: &mut Child) {
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_changed_source_is_planned_built_once_and_uploaded_and_a_revert_restores_the_code() {
    let env = Env::new();
    scratch_function(&env);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let original = deployed_code_sha256(&env);

    // A change in a path dependency outside the crate is a code update.
    set_greeting(&env, "bonjour");
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("building"), "plan never builds");
    assert!(
        out.stdout
            .contains("# function (aws_lambda_function) will be updated in place"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "~ source_code_hash = \"{original}\" -> (known after apply)"
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("~ source_hash"), "{}", out.stdout);

    env.take_calls();
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(out.stderr.matches("building").count(), 1, "{}", out.stderr);
    let calls = env.take_calls();
    assert_eq!(count(&calls, "UpdateFunctionCode"), 1);
    assert_eq!(count(&calls, "UpdateFunctionConfiguration"), 0);
    let changed = deployed_code_sha256(&env);
    assert_ne!(changed, original);
    assert_eq!(
        env.state("code")["resources"]["function"]["props"]["source_code_hash"],
        changed.as_str()
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);

    // Back to the original sources: the artifact built first is reused, so the
    // plan knows the hash and AWS runs the original code again.
    set_greeting(&env, "hello");
    let out = env.stackctl(&["plan"]).ok();
    assert!(
        out.stdout.contains(&format!(
            "~ source_code_hash = \"{changed}\" -> \"{original}\""
        )),
        "{}",
        out.stdout
    );
    let out = env.stackctl(&["apply", "--auto-approve"]).ok();
    assert!(!out.stderr.contains("building"), "{}", out.stderr);
    assert_eq!(deployed_code_sha256(&env), original);
}

#[test]
fn a_saved_plan_refuses_sources_changed_after_it_was_made() {
    let env = Env::new();
    scratch_function(&env);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let original = deployed_code_sha256(&env);
    set_greeting(&env, "hola");
    env.stackctl(&["plan", "--out", "code.plan"]).ok();
    set_greeting(&env, "ciao");
    env.take_calls();
    let out = env.stackctl(&["apply", "code.plan"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("`function`: `source_hash` is no longer what the plan showed"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&env.take_calls(), "UpdateFunctionCode"), 0);
    assert_eq!(deployed_code_sha256(&env), original);
}
