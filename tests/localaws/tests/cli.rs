//! `localaws`'s own command line.

use std::process::Command;

#[test]
fn help_prints_the_usage_and_starts_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("localaws [--calls-log FILE] [--latency-ms N]"),
        "{text}"
    );
    assert!(!text.contains("AWS_ENDPOINT_URL=http"), "{text}");
}

#[test]
fn an_unknown_option_is_refused_with_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .arg("--port")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --port"));
}
