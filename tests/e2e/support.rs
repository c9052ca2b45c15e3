//! Drives the real `stackctl` binary against a local endpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use localaws::{Call, LocalAws, REGION};

pub struct Env {
    pub aws: LocalAws,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run::from(out)
    }

    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A directory and a runtime, for commands that never reach AWS.
pub struct Offline {
    pub dir: tempfile::TempDir,
}

impl Offline {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Env {
    pub fn offline() -> Offline {
        Offline {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn new() -> Env {
        Env {
            aws: LocalAws::start().expect("start moto and the proxy"),
            dir: tempfile::tempdir().expect("temp dir"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write_stack(&self, yaml: &str) {
        std::fs::write(self.path("stack.yaml"), yaml).expect("write stack.yaml");
    }

    pub fn stackctl(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run stackctl"))
    }

    /// The stackctl command these tests run, not yet started: the binary
    /// under test (STACKCTL_BIN runs another build, such as an older commit's,
    /// to show a test fails there), in the test's directory, against the
    /// local endpoint.
    pub fn command(&self, args: &[&str]) -> Command {
        let bin = std::env::var_os("STACKCTL_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_stackctl").into());
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(passthrough())
            .envs(self.aws.env());
        cmd
    }

    /// The local state as the next run reads it: the state file with the
    /// journal of a run that did not finish replayed into it.
    pub fn state(&self, stack: &str) -> serde_json::Value {
        recorded_state(self.dir.path(), stack).expect("a state")
    }

    /// The physical id the state of `stack` records for `id`.
    pub fn physical_id(&self, stack: &str, id: &str) -> String {
        let state = self.state(stack);
        let id = state["resources"][id]["physical_id"].as_str();
        id.expect("a recorded physical id").to_string()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        self.aws.take_calls()
    }

    /// The next plan has changes and reports `drift` ("id (type): property
    /// changed outside stackctl"); its text.
    #[track_caller]
    pub fn plan_shows_drift(&self, drift: &str) -> String {
        let out = self.stackctl(&["plan", "--detailed-exitcode"]);
        assert_eq!(out.code, 2, "{}", out.stdout);
        assert!(out.stdout.contains(drift), "{}", out.stdout);
        out.stdout
    }

    /// Applies, and the operations of the calls it sent that could change
    /// something, in order.
    pub fn apply_sending(&self) -> Vec<String> {
        self.take_calls();
        self.stackctl(&["apply", "--auto-approve"]).ok();
        let calls = self.take_calls();
        mutating_operations(&calls)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// SDK configuration for the tests' own checks. It goes through the proxy,
    /// which serves what moto lacks; take_calls() before asserting on calls.
    pub fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.aws.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(
                Credentials::new("testing", "testing", None, None, "tests"),
            ))
            .build()
    }

    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk())
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk())
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk())
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk())
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk())
    }

    /// The seed stack's function as Lambda describes it.
    pub fn function_config(
        &self,
    ) -> aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput {
        self.rt
            .block_on(
                self.lambda()
                    .get_function_configuration()
                    .function_name("lambda_function01")
                    .send(),
            )
            .unwrap()
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk())
    }

    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.sdk())
    }

    /// `running`, `terminated`, ...
    pub fn instance_state(&self, id: &str) -> String {
        let out = self
            .rt
            .block_on(self.ec2().describe_instances().instance_ids(id).send())
            .unwrap();
        let instance = &out.reservations()[0].instances()[0];
        let state = instance.state().and_then(|s| s.name());
        state.map(|n| n.as_str().to_string()).unwrap_or_default()
    }
}

/// An endpoint with the seed stack (code from a zip) applied.
pub fn applied_seed_stack() -> Env {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    env
}

/// The single-instance seed stack (tests/fixtures/seed) with the function's
/// code as a small zip, so the stack's tests do not build the Rust Lambda (its
/// own tests do).
pub fn seed_stack_with_zip(env: &Env) -> String {
    let zip = stackctl::package::zip(&mut [stackctl::package::Entry {
        name: "bootstrap",
        data: b"#!/bin/sh\nexit 0\n",
        mode: 0o755,
    }])
    .expect("zip");
    std::fs::write(env.path("fn.zip"), zip).expect("write zip");
    let stack = include_str!("../fixtures/seed/stack.yaml");
    assert!(stack.contains("      source: lambda\n"));
    let stack = stack.replace("      source: lambda\n", "      filename: fn.zip\n");
    if std::env::var_os("STACKCTL_BIN").is_some() {
        // An older build, run to show a test fails there, knows no name_prefix.
        return stack.replace("name_prefix: dev-instance-ssh-", "name: dev-instance-ssh-0");
    }
    stack
}

/// What stackctl needs from the test's environment besides AWS: PATH, and
/// cargo's and rustup's homes, for the Lambda builds it runs.
fn passthrough() -> Vec<(&'static str, std::ffi::OsString)> {
    [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ]
    .into_iter()
    .filter_map(|k| Some((k, std::env::var_os(k)?)))
    .collect()
}

pub fn mutating(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.is_mutating()).collect()
}

/// The operations of the calls that could change something, in order.
pub fn mutating_operations(calls: &[Call]) -> Vec<&str> {
    mutating(calls)
        .into_iter()
        .map(|c| c.operation.as_str())
        .collect()
}

pub fn count(calls: &[Call], operation: &str) -> usize {
    calls.iter().filter(|c| c.operation == operation).count()
}

#[allow(dead_code)]
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The local state of `stack` in `dir`, journal replayed; None without one.
pub fn recorded_state(dir: &Path, stack: &str) -> Option<serde_json::Value> {
    let mut file = stackctl::state::local::StateFile::for_stack(dir, stack);
    let state = file.read(stack).ok()?;
    (state.serial > 0).then(|| serde_json::to_value(state).expect("state json"))
}
