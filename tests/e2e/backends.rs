//! One suite every state backend passes: the local file and S3 (the local
//! endpoint's, with conditional writes). Each test runs against both.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use stackctl::state::local::StateFile;
use stackctl::state::s3::S3Backend;
use stackctl::state::{Backend, LockInfo, ProcessId, State, StateError};

use crate::support::Env;

const STACK: &str = "suite";

/// A backend kind, able to open any number of clients of the same storage
/// (each one a run, possibly on another machine).
enum Kind {
    Local(PathBuf),
    S3 {
        sdk: Box<aws_config::SdkConfig>,
        bucket: String,
    },
}

impl Kind {
    fn open(&self) -> Box<dyn Backend> {
        match self {
            Kind::Local(dir) => Box::new(StateFile::for_stack(dir, STACK)),
            Kind::S3 { sdk, bucket } => {
                let settings: BTreeMap<String, String> = [
                    ("bucket".to_string(), bucket.clone()),
                    ("key".to_string(), format!("team/{STACK}.json")),
                ]
                .into_iter()
                .collect();
                Box::new(S3Backend::new(sdk, &settings, STACK).unwrap())
            }
        }
    }

    /// Leaves a lock as a run on this machine that was killed would.
    async fn plant_dead_lock(&self) {
        let dead = ProcessId {
            started: 1,
            ..ProcessId::current().expect("/proc")
        };
        self.plant_lock(Some(dead)).await;
    }

    /// Leaves a lock naming pid 4194303 on this host, with `process`.
    async fn plant_lock(&self, process: Option<ProcessId>) {
        let info = LockInfo {
            id: "dead-run".into(),
            pid: 4_194_303,
            host: gethostname(),
            time: "2026-12-01T10:00:00Z".into(),
            operation: "apply".into(),
            process,
        };
        let body = serde_json::to_vec(&info).unwrap();
        match self {
            Kind::Local(dir) => {
                std::fs::create_dir_all(dir.join("state")).unwrap();
                std::fs::write(dir.join(format!("state/{STACK}.json.lock")), body).unwrap();
            }
            Kind::S3 { sdk, bucket } => {
                s3(sdk)
                    .put_object()
                    .bucket(bucket)
                    .key(format!("team/{STACK}.json.lock"))
                    .body(body.into())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// How many earlier states the backend keeps (backups, object versions).
    async fn history(&self) -> usize {
        match self {
            Kind::Local(dir) => (1..=5)
                .filter(|n| dir.join(format!("state/{STACK}.backup.{n}")).exists())
                .count(),
            Kind::S3 { sdk, bucket } => {
                let out = s3(sdk)
                    .list_object_versions()
                    .bucket(bucket)
                    .prefix(format!("team/{STACK}.json"))
                    .send()
                    .await
                    .unwrap();
                let key = format!("team/{STACK}.json");
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key.as_str()))
                    .count()
                    - 1
            }
        }
    }
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A versioned bucket on the local endpoint.
pub fn bucket(env: &Env, name: &str, versioned: bool) {
    let client = s3(&env.sdk());
    env.rt.block_on(async {
        client
            .create_bucket()
            .bucket(name)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsEast2)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if versioned {
            client
                .put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    });
}

/// Runs `suite` against the local file and against S3.
fn on_both<F>(suite: F)
where
    F: Fn(&Kind, &tokio::runtime::Runtime),
{
    let env = Env::new();
    bucket(&env, "suite-state", true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = Kind::Local(env.dir.path().to_path_buf());
    suite(&local, &rt);
    let s3 = Kind::S3 {
        sdk: Box::new(env.sdk()),
        bucket: "suite-state".into(),
    };
    suite(&s3, &rt);
}

fn with_output(state: &mut State, n: i64) {
    state.outputs.insert("n".into(), Value::from(n));
}

#[test]
fn a_new_state_is_empty_and_gets_its_lineage_on_the_first_write() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let mut b = kind.open();
            let mut s = b.load(STACK).await.unwrap();
            assert_eq!((s.serial, s.lineage.as_str()), (0, ""));
            with_output(&mut s, 1);
            b.compact(&mut s).await.unwrap();
            assert_eq!(s.lineage.len(), 36);
            let again = kind.open().load(STACK).await.unwrap();
            assert_eq!(again, s, "{}", b.location());
        })
    });
}

#[test]
fn what_a_run_saved_before_it_died_is_read_by_the_next_run_elsewhere() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let mut dying = kind.open();
            let mut s = dying.load(STACK).await.unwrap();
            with_output(&mut s, 7);
            dying.save(&mut s).await.unwrap();
            drop(dying); // no compaction: killed
            let mut next = kind.open();
            let mut read = next.load(STACK).await.unwrap();
            assert_eq!(read, s, "{}", next.location());
            next.compact(&mut read).await.unwrap();
            assert_eq!(kind.open().load(STACK).await.unwrap(), read);
        })
    });
}

#[test]
fn saving_an_unchanged_state_writes_nothing_and_keeps_the_serial() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let mut b = kind.open();
            let mut s = b.load(STACK).await.unwrap();
            with_output(&mut s, 1);
            b.compact(&mut s).await.unwrap();
            let history = kind.history().await;
            let mut b = kind.open();
            let mut s2 = b.load(STACK).await.unwrap();
            b.save(&mut s2).await.unwrap();
            b.compact(&mut s2).await.unwrap();
            assert_eq!(s2.serial, s.serial);
            assert_eq!(kind.history().await, history, "{}", b.location());
        })
    });
}

#[test]
fn each_run_keeps_the_state_it_replaced() {
    on_both(|kind, rt| {
        rt.block_on(async {
            for n in 0..3 {
                let mut b = kind.open();
                let mut s = b.load(STACK).await.unwrap();
                with_output(&mut s, n);
                b.save(&mut s).await.unwrap();
                b.compact(&mut s).await.unwrap();
            }
            assert!(kind.history().await >= 2, "{}", kind.open().location());
        })
    });
}

#[test]
fn the_lock_is_exclusive_names_its_holder_and_is_free_after_release() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let b = kind.open();
            let held = b.lock("apply").await.unwrap();
            let err = kind.open().lock("plan").await.err().unwrap().to_string();
            assert!(err.contains("`stackctl apply`"), "{err}");
            assert!(err.contains(&held.holding().info.id), "{err}");
            held.release().await.unwrap();
            kind.open()
                .lock("plan")
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        })
    });
}

#[test]
fn a_lock_left_by_a_killed_run_on_this_machine_is_taken_over() {
    on_both(|kind, rt| {
        rt.block_on(async {
            kind.plant_dead_lock().await;
            let held = kind.open().lock("apply").await.unwrap();
            assert_eq!(
                held.holding().took_over.as_ref().map(|h| h.id.as_str()),
                Some("dead-run")
            );
            held.release().await.unwrap();
        })
    });
}

/// Containers share host names, not pid namespaces: a lock naming this host
/// and a pid that does not run here, from another pid namespace (or from
/// before locks named their process), may belong to a live run elsewhere.
#[test]
fn a_lock_from_another_pid_namespace_with_this_host_name_is_not_taken_over() {
    on_both(|kind, rt| {
        if !matches!(kind, Kind::S3 { .. }) {
            return; // the local lock is the kernel's flock: it knows
        }
        rt.block_on(async {
            let container = ProcessId {
                pid_namespace: "pid:[4026599999]".into(),
                ..ProcessId::current().expect("/proc")
            };
            for process in [Some(container), None] {
                kind.plant_lock(process.clone()).await;
                let refused = kind.open().lock("apply").await.err();
                assert!(
                    matches!(refused, Some(StateError::Locked { .. })),
                    "{process:?}: {refused:?}"
                );
                kind.open().force_unlock("dead-run").await.unwrap();
            }
        })
    });
}

#[test]
fn force_unlock_takes_the_lock_id_it_printed() {
    on_both(|kind, rt| {
        rt.block_on(async {
            kind.plant_dead_lock().await;
            let mut b = kind.open();
            let wrong = b.force_unlock("not-it").await.unwrap_err().to_string();
            assert!(wrong.contains("the lock's id is dead-run"), "{wrong}");
            b.force_unlock("dead-run").await.unwrap();
            kind.open()
                .lock("apply")
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        })
    });
}

#[test]
fn a_writer_that_missed_another_writers_save_fails_without_overwriting() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let (mut a, mut b) = (kind.open(), kind.open());
            let mut sa = a.load(STACK).await.unwrap();
            let mut sb = b.load(STACK).await.unwrap();
            with_output(&mut sa, 1);
            a.save(&mut sa).await.unwrap();
            a.compact(&mut sa).await.unwrap();
            with_output(&mut sb, 2);
            let lost = match b.save(&mut sb).await {
                Err(e) => e,
                Ok(()) => b.compact(&mut sb).await.unwrap_err(),
            };
            assert!(
                matches!(lost, StateError::Conflict { .. }),
                "{}: {lost}",
                b.location()
            );
            assert_eq!(kind.open().load(STACK).await.unwrap(), sa);
        })
    });
}

#[test]
fn a_state_of_another_stack_is_refused() {
    on_both(|kind, rt| {
        rt.block_on(async {
            let mut b = kind.open();
            let mut other = State::new("other");
            with_output(&mut other, 1);
            b.compact(&mut other).await.unwrap();
            let err = kind.open().load(STACK).await.unwrap_err();
            assert!(matches!(err, StateError::WrongStack { .. }), "{err}");
        })
    });
}

#[test]
fn a_run_whose_s3_lock_was_forced_away_is_told_when_it_releases() {
    let env = Env::new();
    bucket(&env, "suite-state", true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let kind = Kind::S3 {
        sdk: Box::new(env.sdk()),
        bucket: "suite-state".into(),
    };
    rt.block_on(async {
        let first = kind.open().lock("apply").await.unwrap();
        let id = first.holding().info.id.clone();
        kind.open().force_unlock(&id).await.unwrap();
        let second = kind.open().lock("apply").await.unwrap();
        let lost = first.release().await.unwrap_err().to_string();
        assert!(lost.contains("is no longer this run's"), "{lost}");
        let err = kind.open().lock("plan").await.err().unwrap().to_string();
        assert!(
            err.contains(&second.holding().info.id),
            "the new holder's lock stays: {err}"
        );
        second.release().await.unwrap();
    });
}
