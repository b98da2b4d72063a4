//! `ifctl` as a user runs it: the real binary, its output, its files and its exit codes.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

fn ifctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ifctl")).args(args).output().expect("run ifctl")
}

#[test]
fn keygen_writes_a_private_secret_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf8");
    let first = ifctl(&["keygen", "--name", "desk-a", "--out", out]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("desk-a.key") && stdout.contains("key id "), "{stdout}");
    let mode = std::fs::metadata(dir.path().join("desk-a.key")).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(dir.path().join("desk-a.key")).expect("read");
    assert!(!stdout.contains(secret.trim()), "the secret is never printed");

    let again = ifctl(&["keygen", "--name", "desk-a", "--out", out]);
    assert_eq!(again.status.code(), Some(15), "CONFIG_INVALID is a system-class error");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.starts_with("IF_ERR_503 CONFIG_INVALID: "), "{stderr}");
}

#[test]
fn keygen_json_and_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf8");
    let ok = ifctl(&["--json", "keygen", "--name", "bot", "--out", out]);
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["key_id"].as_str().map(str::len), Some(16));
    let bad = ifctl(&["--json", "keygen", "--name", "bad name", "--out", out]);
    assert_eq!(bad.status.code(), Some(15));
    let e: serde_json::Value = serde_json::from_slice(&bad.stderr).expect("json error");
    assert_eq!(e["code"], "IF_ERR_503");
    assert_eq!(e["name"], "CONFIG_INVALID");
    assert_eq!(e["retryable"], false);
}

#[test]
fn errors_lists_every_code() {
    let out = ifctl(&["--json", "errors"]);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.len(), if_protocol::ErrorCode::ALL.len());
    assert!(
        rows.iter().any(|r| r["code"] == "IF_ERR_303" && r["name"] == "CIRCUIT_BREAKER_OPEN" && r["retryable"] == true)
    );
    let text = ifctl(&["errors"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("IF_ERR_501 WITNESS_UNAVAILABLE"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ifctl(&["keygen"]).status.code(), Some(2));
    assert_eq!(ifctl(&["no-such-verb"]).status.code(), Some(2));
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definition() {
    let bash = ifctl(&["completions", "bash"]);
    assert!(bash.status.success());
    let text = String::from_utf8_lossy(&bash.stdout);
    assert!(text.contains("ifctl") && text.contains("verify-anchors") && text.contains("falsify"), "bash completions");
    let man = ifctl(&["man"]);
    assert!(man.status.success());
    let roff = String::from_utf8_lossy(&man.stdout);
    assert!(roff.contains(".TH ifctl") && roff.contains("capability"), "{}", &roff[..roff.len().min(300)]);
}

#[test]
fn a_missing_connection_setting_names_the_flag_and_the_file_in_text_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ifctl"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("IFCTL_CONFIG")
            .output()
            .expect("run")
    };
    let out = run(&["capability", "list"]);
    assert_eq!(out.status.code(), Some(15));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("IF_ERR_503 CONFIG_INVALID: --broker is needed (or broker in ifctl.toml)"), "{err}");
    let out = run(&["--json", "status"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error: --broker is required for status");
    std::fs::write(
        dir.path().join("ifctl.toml"),
        "broker = \"mqtt://127.0.0.1:1\"\nsite = \"s\"\nagent = \"a\"\ncolour = 1\n",
    )
    .expect("write");
    let out = run(&["--json", "capability", "list"]);
    assert_eq!(out.status.code(), Some(15));
    let e: serde_json::Value = serde_json::from_slice(&out.stderr).expect("json error");
    assert_eq!(e["code"], "IF_ERR_503");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("ifctl.toml") && m.contains("colour")), "{e}");
    let out = run(&["falsify", "--task", "missing.toml"]);
    assert_eq!(out.status.code(), Some(15), "{}", String::from_utf8_lossy(&out.stderr));
}
