//! Teams: one stack's state in S3 (the local endpoint's, with conditional
//! writes), shared by working directories on different machines; state
//! surgery and moves between backends.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use localaws::{Fault, FaultKind};

use crate::backends::bucket;
use crate::census;
use crate::support::{count, seed_stack_with_zip, Env};

const MESSAGING: &str = r#"stack: messaging
region: us-east-2
backend:
  s3: {bucket: team-state, key: stacks/messaging.json}
resources:
  alerts:
    type: aws_sns_topic
    properties:
      name: team_alerts
  inbox:
    type: aws_sqs_queue
    properties:
      name: team_inbox
"#;

const EXTRA_TOPIC: &str = r#"  audit:
    type: aws_sns_topic
    properties:
      name: team_audit
"#;

/// Two working directories ("machines") with the same stack file.
fn two_machines(env: &Env, stack: &str) {
    for dir in ["a", "b"] {
        std::fs::create_dir_all(env.path(dir)).unwrap();
        std::fs::write(env.path(&format!("{dir}/stack.yaml")), stack).unwrap();
    }
}

fn on(env: &Env, dir: &str, args: &[&str]) -> crate::support::Run {
    let file = format!("{dir}/stack.yaml");
    let mut all = args.to_vec();
    all.extend(["-f", file.as_str()]);
    env.stackctl(&all)
}

#[test]
fn two_working_directories_sharing_an_s3_state_see_each_others_applies() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    two_machines(&env, MESSAGING);
    let applied = on(&env, "a", &["apply", "--auto-approve"]).ok();
    assert!(
        !applied.stderr.contains("versioning is off"),
        "{}",
        applied.stderr
    );
    assert_eq!(
        on(&env, "b", &["plan", "--detailed-exitcode"]).code,
        0,
        "b sees a's apply"
    );
    std::fs::write(
        env.path("b/stack.yaml"),
        format!("{MESSAGING}{EXTRA_TOPIC}"),
    )
    .unwrap();
    on(&env, "b", &["apply", "--auto-approve"]).ok();
    let plan = on(&env, "a", &["plan"]);
    assert!(
        plan.stdout.contains("0 to add, 0 to change, 1 to destroy"),
        "a sees b's topic:\n{}",
        plan.stdout
    );
    assert!(
        !env.path("a/state").exists() && !env.path("b/state").exists(),
        "nothing local"
    );
    on(&env, "b", &["destroy", "--auto-approve"]).ok();
}

#[test]
fn of_two_concurrent_applies_on_s3_exactly_one_proceeds() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    two_machines(&env, MESSAGING);
    on(&env, "a", &["apply", "--auto-approve"]).ok();
    let trials = if std::env::var_os("STACKCTL_FULL_SWEEP").is_some() {
        50
    } else {
        5
    };
    let refreshing = Arc::new(AtomicBool::new(false));
    let flag = refreshing.clone();
    env.aws.on_call("GetTopicAttributes", move || {
        flag.store(true, Ordering::SeqCst)
    });
    for trial in 0..trials {
        // The holder's refresh is slowed, so the second run meets its lock.
        env.aws.inject(Fault::delay(
            "sns",
            "GetTopicAttributes",
            Duration::from_millis(1500),
        ));
        refreshing.store(false, Ordering::SeqCst);
        let first = env
            .command(&["apply", "--auto-approve", "-f", "a/stack.yaml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first run holds the lock once it refreshes.
        let waiting = Instant::now();
        while !refreshing.load(Ordering::SeqCst) && waiting.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        let second = on(&env, "b", &["apply", "--auto-approve"]);
        let waited = started.elapsed();
        let first = first.wait_with_output().unwrap();
        assert_eq!(
            first.status.code(),
            Some(0),
            "trial {trial}: {}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(second.code, 1, "trial {trial}: {}", second.stdout);
        assert!(
            second
                .stderr
                .contains("the state is locked by `stackctl apply`"),
            "trial {trial}: {}",
            second.stderr
        );
        assert!(
            second
                .stderr
                .contains("s3://team-state/stacks/messaging.json.lock"),
            "trial {trial}: {}",
            second.stderr
        );
        assert!(
            waited < Duration::from_secs(5),
            "trial {trial}: fails fast ({waited:?})"
        );
        assert_eq!(
            on(&env, "b", &["plan", "--detailed-exitcode"]).code,
            0,
            "trial {trial}: the state is whole"
        );
    }
    eprintln!("concurrent applies on S3: {trials} trials, one proceeded and the other failed fast each time");
}

#[test]
fn after_a_crash_another_machine_finds_what_the_dead_run_made() {
    let points: Vec<usize> = if std::env::var_os("STACKCTL_FULL_SWEEP").is_some() {
        (1..=60).collect()
    } else {
        vec![4, 15]
    };
    let mut tried = 0;
    for k in points {
        let env = Env::new();
        bucket(&env, "team-state", true);
        let stack = seed_stack_with_zip(&env).replace(
            "region: us-east-2\n",
            "region: us-east-2\nbackend:\n  s3: {bucket: team-state, key: seed.json}\n",
        );
        two_machines(
            &env,
            &stack.replace("filename: fn.zip", "filename: ../fn.zip"),
        );
        env.aws.kill_after_mutating(k);
        let mut child = env
            .command(&["apply", "--auto-approve", "-f", "a/stack.yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        env.aws.kill_target(child.id());
        child.wait().unwrap();
        if !env.aws.killed() {
            break;
        }
        let out = on(&env, "b", &["apply", "--auto-approve"]);
        assert_eq!(
            out.code, 0,
            "killed after {k}: {}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!(census::count(&env), census::converged(), "killed after {k}");
        on(&env, "b", &["destroy", "--auto-approve"]).ok();
        assert_eq!(census::count(&env), census::nothing(), "killed after {k}");
        tried += 1;
    }
    eprintln!("S3 crash sweep: {tried} points converged from another working directory");
}

/// The S3 lock object's id (what `force-unlock` takes).
fn lock_id(env: &Env, key: &str) -> Option<String> {
    let got = env.rt.block_on(
        crate::backends::s3(&env.sdk())
            .get_object()
            .bucket("team-state")
            .key(key)
            .send(),
    );
    let body = env.rt.block_on(got.ok()?.body.collect()).ok()?.into_bytes();
    let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
    info["id"].as_str().map(str::to_string)
}

/// A run stalls (SIGSTOP) right after AWS acted on one of its calls, as a
/// laptop goes to sleep; its lock is forced away; another run applies a
/// change and saves. Continued, the stalled run changes nothing in AWS and
/// nothing of the state: it stops before its next change, and what it wrote
/// after losing the lock is left out. The next run converges to one of each.
#[test]
fn a_stalled_run_whose_lock_was_forced_changes_nothing_when_it_wakes() {
    let points: Vec<usize> = if std::env::var_os("STACKCTL_FULL_SWEEP").is_some() {
        (1..=30).collect()
    } else {
        vec![3, 12]
    };
    let mut tried = 0;
    for k in points {
        let env = Env::new();
        bucket(&env, "team-state", true);
        let stack = seed_stack_with_zip(&env)
            .replace(
                "region: us-east-2\n",
                "region: us-east-2\nbackend:\n  s3: {bucket: team-state, key: seed.json}\n",
            )
            .replace("filename: fn.zip", "filename: ../fn.zip");
        two_machines(&env, &stack);
        // The other run's stack differs by a change the stalled one undoes.
        let changed = stack.replace("retention_in_days: 14", "retention_in_days: 30");
        std::fs::write(env.path("b/stack.yaml"), &changed).unwrap();
        env.aws.stop_after_mutating(k);
        let stalled = env
            .command(&["apply", "--auto-approve", "-f", "a/stack.yaml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        env.aws.kill_target(stalled.id());
        let started = Instant::now();
        while !env.aws.killed() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !env.aws.killed() {
            let _ = stalled.wait_with_output();
            break; // past the last mutating call
        }
        let started = Instant::now();
        let id = lock_id(&env, "seed.json.lock").expect("the stalled run's lock");
        let asked = on(&env, "b", &["force-unlock", &id]);
        assert_eq!(
            asked.code, 1,
            "a holder that may be alive is not removed unasked"
        );
        assert!(
            asked.stderr.contains("may still be running"),
            "{}",
            asked.stderr
        );
        on(&env, "b", &["force-unlock", &id, "--yes"]).ok();
        on(&env, "b", &["apply", "--auto-approve"]).ok();
        let newer = on(&env, "b", &["state", "pull"]).ok().stdout;
        env.take_calls();
        // A stall shorter than the lock's lease (5 s) is a slow call, not a
        // laptop asleep: nobody forces a lock and applies in that time.
        let stalled_for = started.elapsed();
        if stalled_for < Duration::from_secs(7) {
            std::thread::sleep(Duration::from_secs(7) - stalled_for);
        }

        let _ = std::process::Command::new("kill")
            .args(["-CONT", &stalled.id().to_string()])
            .status();
        let woke = stalled.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&woke.stderr);
        assert_eq!(woke.status.code(), Some(1), "stalled after {k}: {stderr}");
        assert!(
            stderr.contains("is no longer this run's"),
            "stalled after {k}: {stderr}"
        );
        let changes: Vec<String> = env
            .take_calls()
            .into_iter()
            .filter(|c| c.is_mutating() && c.service != "s3")
            .map(|c| c.operation)
            .collect();
        assert!(
            changes.is_empty(),
            "stalled after {k}, it changed AWS on waking: {changes:?}"
        );
        let after = on(&env, "b", &["state", "pull"]).ok().stdout;
        assert_eq!(
            after, newer,
            "stalled after {k}: the newer run's state stands whole"
        );

        let out = on(&env, "b", &["apply", "--auto-approve"]);
        assert_eq!(
            out.code, 0,
            "stalled after {k}: {}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!(
            census::count(&env),
            census::converged(),
            "stalled after {k}"
        );
        on(&env, "b", &["destroy", "--auto-approve"]).ok();
        assert_eq!(census::count(&env), census::nothing(), "stalled after {k}");
        tried += 1;
    }
    assert!(tried > 0);
    eprintln!("S3 stalled-writer sweep: {tried} points, the newer run's state intact in each");
}

#[test]
fn a_missing_bucket_and_a_bucket_without_versioning_are_explained() {
    let env = Env::new();
    bucket(&env, "unversioned", false);
    env.write_stack(MESSAGING);
    let out = env.stackctl(&["plan", "--backend-config", "bucket=no-such-bucket"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("the state bucket `no-such-bucket` does not exist"),
        "{}",
        out.stderr
    );
    let out = env
        .stackctl(&["plan", "--backend-config", "bucket=unversioned"])
        .ok();
    assert!(
        out.stderr
            .contains("versioning is off on the state bucket `unversioned`"),
        "{}",
        out.stderr
    );
}

/// The journal objects beside the messaging stack's state.
fn journal(env: &Env) -> Vec<String> {
    let listed = env.rt.block_on(
        crate::backends::s3(&env.sdk())
            .list_objects_v2()
            .bucket("team-state")
            .prefix("stacks/messaging.json.journal/")
            .send(),
    );
    let listed = listed.unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// DeleteObjects answered 200 with an error for a key: AWS's partial failure.
fn delete_objects_failing_a_key() -> Fault {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Error><Key>stacks/messaging.json.journal/00000000000000000001</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>"#;
    Fault {
        service: "s3".into(),
        operation: "DeleteObjects".into(),
        times: 1,
        kind: FaultKind::Refuse {
            status: 200,
            headers: vec![("content-type".into(), "application/xml".into())],
            body: body.into(),
        },
        after: None,
    }
}

#[test]
fn a_journal_left_after_the_state_is_saved_is_a_warning_and_the_next_run_deletes_it() {
    let refused = Fault::coded("s3", "DeleteObjects", 403, "AccessDenied", "Access Denied");
    for fault in [refused, delete_objects_failing_a_key()] {
        let env = Env::new();
        bucket(&env, "team-state", true);
        env.write_stack(MESSAGING);
        env.aws.inject(fault);
        let applied = env.stackctl(&["apply", "--auto-approve"]).ok();
        assert!(
            applied.stderr.contains("warning: ") && applied.stderr.contains("the state is saved"),
            "{}",
            applied.stderr
        );
        assert!(!journal(&env).is_empty(), "the delete failed");

        env.take_calls();
        let again = env.stackctl(&["apply", "--auto-approve"]).ok();
        assert!(again.stdout.contains("No changes"), "{}", again.stdout);
        assert!(!again.stderr.contains("warning"), "{}", again.stderr);
        assert_eq!(journal(&env), Vec::<String>::new());
        assert_eq!(
            count(&env.take_calls(), "GetObject"),
            1,
            "the state is read; the entries older than it are not"
        );
    }
}

#[test]
fn a_local_state_migrates_to_s3_and_push_refuses_an_older_state() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    let local = MESSAGING.replace(
        "backend:\n  s3: {bucket: team-state, key: stacks/messaging.json}\n",
        "",
    );
    env.write_stack(&local);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let out = env
        .stackctl(&[
            "state",
            "migrate",
            "--to",
            "s3://team-state/stacks/messaging.json",
        ])
        .ok();
    assert!(
        out.stdout.contains("Copied the state (2 resources"),
        "{}",
        out.stdout
    );
    env.write_stack(MESSAGING);
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);

    let pulled = env.stackctl(&["state", "pull"]).ok().stdout;
    std::fs::write(env.path("old.json"), &pulled).unwrap();
    env.write_stack(&format!("{MESSAGING}{EXTRA_TOPIC}"));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let refused = env.stackctl(&["state", "push", "old.json"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("older than the state's"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        env.stackctl(&["plan", "--detailed-exitcode"]).code,
        0,
        "nothing was written"
    );
    env.stackctl(&["state", "push", "old.json", "--force"]).ok();
    let plan = env.stackctl(&["plan"]).ok();
    assert!(
        plan.stdout.contains("1 to add"),
        "the old state forgot the audit topic:\n{}",
        plan.stdout
    );
}

/// A local state copied to S3 and left behind grows old while the S3 one
/// moves on: migrating it again is refused as a push of it would be.
#[test]
fn migrating_an_older_state_onto_a_newer_one_of_its_lineage_is_refused() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    let local = MESSAGING.replace(
        "backend:\n  s3: {bucket: team-state, key: stacks/messaging.json}\n",
        "",
    );
    env.write_stack(&local);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let to = [
        "state",
        "migrate",
        "--to",
        "s3://team-state/stacks/messaging.json",
    ];
    env.stackctl(&to).ok();
    env.write_stack(&format!("{MESSAGING}{EXTRA_TOPIC}"));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let newer = env.stackctl(&["state", "pull"]).ok().stdout;

    env.write_stack(&local);
    let refused = env.stackctl(&to);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("older than the state's"),
        "{}",
        refused.stderr
    );
    env.write_stack(&format!("{MESSAGING}{EXTRA_TOPIC}"));
    assert_eq!(
        env.stackctl(&["state", "pull"]).ok().stdout,
        newer,
        "nothing was copied"
    );
}

/// A state whose only content is an object a replacement left deposed (its
/// run ended before deleting it): destroy deletes it.
#[test]
fn destroy_deletes_what_is_only_deposed() {
    let env = Env::new();
    let local = MESSAGING.replace(
        "backend:\n  s3: {bucket: team-state, key: stacks/messaging.json}\n",
        "",
    );
    env.write_stack(&local);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let mut state: serde_json::Value =
        serde_json::from_str(&env.stackctl(&["state", "pull"]).ok().stdout).unwrap();
    let mut alerts = state["resources"]["alerts"].clone();
    alerts["id"] = "alerts".into();
    state["deposed"] = serde_json::json!([alerts]);
    state["resources"] = serde_json::json!({});
    std::fs::write(env.path("deposed.json"), state.to_string()).unwrap();
    env.stackctl(&["state", "push", "deposed.json"]).ok();
    env.take_calls();
    let out = env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert!(!out.stdout.contains("Nothing to destroy"), "{}", out.stdout);
    assert_eq!(count(&env.take_calls(), "DeleteTopic"), 1);
    let after = env.state("messaging");
    assert!(
        after["deposed"].as_array().is_none_or(|d| d.is_empty()),
        "{after}"
    );
}

#[test]
fn state_mv_renames_and_retags_and_state_rm_forgets_without_touching_aws() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    env.write_stack(MESSAGING);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.take_calls();
    env.stackctl(&["state", "mv", "inbox", "mailbox"]).ok();
    let changes: Vec<String> = env
        .take_calls()
        .into_iter()
        .filter(|c| c.service != "s3" && c.is_mutating())
        .map(|c| c.operation)
        .collect();
    assert_eq!(changes, ["TagQueue"], "mv retags the object, nothing else");
    env.write_stack(&MESSAGING.replace("  inbox:\n", "  mailbox:\n"));
    assert_eq!(
        env.stackctl(&["plan", "--detailed-exitcode"]).code,
        0,
        "renamed in the state too"
    );
    env.stackctl(&["state", "rm", "alerts"]).ok();
    let list = env.stackctl(&["state", "list"]).ok().stdout;
    assert!(
        list.contains("mailbox") && !list.contains("alerts"),
        "{list}"
    );
    let aws_calls: Vec<_> = env
        .take_calls()
        .into_iter()
        .filter(|c| c.service != "s3" && c.service != "sts" && c.is_mutating())
        .collect();
    assert!(aws_calls.is_empty(), "{aws_calls:?}");
    let topics = env.rt.block_on(env.sns().list_topics().send()).unwrap();
    assert_eq!(topics.topics().len(), 1, "the forgotten topic still exists");
    assert_eq!(count(&env.take_calls(), "DeleteTopic"), 0);
}

/// What `state rm` prints holds after a `state mv`: the next apply finds
/// the object by its tags under its new id and takes it back.
#[test]
fn a_moved_then_forgotten_resource_is_taken_back_by_the_next_apply() {
    let env = Env::new();
    bucket(&env, "team-state", true);
    env.write_stack(MESSAGING);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env.stackctl(&["state", "mv", "inbox", "dead_letters"]).ok();
    let out = env.stackctl(&["state", "rm", "dead_letters"]).ok();
    assert!(
        out.stdout
            .contains("the next apply finds and takes them back"),
        "{}",
        out.stdout
    );
    env.write_stack(&MESSAGING.replace("  inbox:\n", "  dead_letters:\n"));
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        count(&env.take_calls(), "CreateQueue"),
        0,
        "taken back, not made again"
    );
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
}
