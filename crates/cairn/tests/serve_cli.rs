//! `cairn serve` refuses bad flags at start-up with a message that names the problem,
//! before binding any port or loading anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn serve(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("serve")
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("run cairn serve");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn bad_serve_flags_are_refused_with_reasons() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--model"),
        (&["--model", "churn"], "expected NAME=URI"),
        (
            &["--model", "=models:/a/1", "--tracking-uri", "http://h"],
            "non-empty",
        ),
        (&["--model", "a/b=./m"], "contain no '/'"),
        (&["--model", "a=./m", "--model", "a=./n"], "given twice"),
        (
            &["--model", "a=models:/churn@champion"],
            "needs a tracking server",
        ),
        (&["--model", "a=ftp://bucket/model"], "invalid model URI"),
        (&["--model", "a=models:/"], "invalid model URI"),
        (
            &["--model", "a=./m", "--host", "0.0.0.0"],
            "0.0.0.0 without authentication",
        ),
        (
            &["--model", "a=./m", "--auth", "tracking"],
            "--auth tracking checks callers with the tracking server",
        ),
        (&["--model", "a=./m", "--auth", "ldap"], "ldap"),
        (
            &["--model", "a=./m", "--engine", "tensorflow"],
            "unknown engine 'tensorflow'",
        ),
        (&["--model", "a=./m", "--max-batch-rows", "0"], "at least 1"),
        (&["--model", "a=./m", "--max-queue-delay", "soon"], "soon"),
        (&["--model", "a=./m", "--predict-timeout", "never"], "never"),
        (
            &["--model", "a=./m", "--port", "9000", "--grpc-port", "9000"],
            "9000",
        ),
    ];
    for (args, needle) in cases {
        let (ok, text) = serve(args);
        assert!(!ok, "{args:?} was accepted:\n{text}");
        assert!(text.contains(needle), "{args:?}: no '{needle}' in:\n{text}");
    }
}
