//! Stack files written to hurt: each is answered with a clear error in
//! bounded time and memory (the run gets 512 MB of address space at most).

use std::time::{Duration, Instant};

use crate::support::{Env, Offline, Run};

/// `stackctl validate` on `text`, limited to 512 MB of address space.
fn validate_bounded(env: &Offline, text: &str) -> (Run, Duration) {
    std::fs::write(env.path("hostile.yaml"), text).unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--as={}", 512u64 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_stackctl"))
        .args(["validate", "-f", "hostile.yaml"])
        .current_dir(env.dir.path());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (Run::from_output(out), started.elapsed())
}

#[track_caller]
fn refused_quickly(env: &Offline, text: &str, message: &str) {
    let (out, took) = validate_bounded(env, text);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(message), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: hostile.yaml:"),
        "names the file and line: {}",
        out.stderr
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn an_alias_bomb_is_refused_in_bounded_memory() {
    let env = Env::offline();
    let mut bomb = String::from(
        "stack: bomb\nvariables:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for (i, prev) in ('b'..='i').zip('a'..='h') {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        bomb.push_str(&format!("  {i}: &{i} [{refs}]\n"));
    }
    refused_quickly(
        &env,
        &bomb,
        "values (aliases included): refused, as an alias bomb would be",
    );
}

#[test]
fn nesting_100000_deep_is_refused() {
    let env = Env::offline();
    let deep = format!(
        "stack: deep\noutputs:\n  o: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    refused_quickly(&env, &deep, "nest deeper than 100 levels");
}

#[test]
fn a_100_mb_file_is_refused_without_reading_it_whole() {
    let env = Env::offline();
    let line = "  # a comment that pads the file to one hundred megabytes.............\n";
    let big = format!(
        "stack: big\nresources:\n{}",
        line.repeat((100 << 20) / line.len())
    );
    refused_quickly(&env, &big, "stack files are limited to 16 MB");
    // Refused from its size alone: under 96 MiB of address space, of which
    // the debug binary's own code and data take about 63, the 100 MB file
    // cannot have been read whole.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--as={}", 96u64 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_stackctl"))
        .args(["validate", "-f", "hostile.yaml"])
        .current_dir(env.dir.path());
    let out = Run::from_output(cmd.output().unwrap());
    assert!(
        out.stderr.contains("stack files are limited to 16 MB"),
        "{}",
        out.stderr
    );
}
