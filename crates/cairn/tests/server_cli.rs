//! `cairn server` refuses unsafe or bad settings at start-up, before binding a port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn server(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("server")
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env("CAIRN_LOG", "warn")
        .env_remove("CAIRN_HOST")
        .env_remove("CAIRN_INSECURE_NO_AUTH")
        .output()
        .expect("run cairn server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn exposing_the_server_without_auth_needs_an_explicit_flag() {
    for host in ["0.0.0.0", "::", "192.168.1.10"] {
        let (ok, text) = server(&["--host", host]);
        assert!(!ok, "--host {host} was accepted:\n{text}");
        assert!(
            text.contains("refusing to listen") && text.contains("--insecure-no-auth"),
            "--host {host}:\n{text}"
        );
    }
    let (ok, text) = server(&["--request-timeout", "0s"]);
    assert!(!ok && text.contains("--request-timeout"), "{text}");
    let (ok, text) = server(&["--request-timeout", "soon"]);
    assert!(!ok && text.contains("soon"), "{text}");
}
