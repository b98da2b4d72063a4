//! `ifctl`'s exit status for every error class, on real refusals from a running agent: 0 on success,
//! 10 + class for `IF_ERR_<class>xx` (signature 10, envelope 11, policy 12, limits 13, device 14, system
//! 15), 2 for a usage error; and the `--json` form of each error on stderr.

use std::path::Path;
use std::process::Output;

use if_protocol::envelope::Hazards;
use if_tests::agent::Agent;
use if_tests::device::{self, DeviceRig, Limits, code};
use if_tests::talent::Talent;

const LOOP: &str = "if://capability/studio.loop";

fn ifctl(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--json", "--config", config.to_str().expect("utf8")];
    all.extend_from_slice(args);
    Agent::ifctl(&all)
}

/// The exit status and the `--json` error's code (`OK` when there is none).
fn outcome(out: &Output) -> (Option<i32>, String) {
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap_or_default();
    (out.status.code(), err["code"].as_str().unwrap_or("OK").to_string())
}

#[test]
fn every_error_class_has_its_exit_status_and_json_form() {
    let limits = Limits { breaker_failures: 2, backoff: "[30]", timeout_ms: 500, ..Limits::default() };
    let m = device::manifest(LOOP, "loopback", "loopback:", limits, &["cut", "preview"], &["cut"], &[]);
    let mut r = DeviceRig::new(&m, LOOP, &["cut", "preview"], |_, _| {});
    assert_eq!(code(&r.ask("preview", Hazards::NONE, &[])), "OK");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ifctl.toml");
    let settings = r.agent.ifctl_toml("desk", &r.desk.secret);
    std::fs::write(&config, settings).expect("ifctl.toml");
    let apply = |args: &[&str]| {
        let mut all = vec!["capability", "apply", LOOP, "--why", "exit status check"];
        all.extend_from_slice(args);
        ifctl(&config, &all)
    };

    assert_eq!(outcome(&apply(&["--action", "preview"])), (Some(0), "OK".into()));
    assert_eq!(outcome(&apply(&["--action", "cut"])), (Some(12), "IF_ERR_205".into()), "policy");
    assert_eq!(outcome(&apply(&["--action", "preview", "--arg", "fail=timeout"])), (Some(14), "IF_ERR_402".into()));
    assert_eq!(outcome(&apply(&["--action", "preview", "--arg", "fail=timeout"])), (Some(14), "IF_ERR_402".into()));
    assert_eq!(outcome(&apply(&["--action", "preview"])), (Some(13), "IF_ERR_303".into()), "limits: the breaker");

    let intruder = Talent::new("intruder");
    let forged = ifctl(
        &config,
        &["message", "send", "--capability", LOOP, "--action", "preview", "--why", "forged"]
            .into_iter()
            .chain(["--key", intruder.secret.to_str().expect("utf8")])
            .collect::<Vec<_>>(),
    );
    assert_eq!(outcome(&forged), (Some(10), "IF_ERR_004".into()), "signature class");

    // A sequence number above ifctl's own counter (which starts at the clock in microseconds), within the
    // agent's clock bound (its clock plus 30 s of skew).
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros();
    let seq = (micros + 10_000_000).to_string();
    let send = |why: &str| {
        ifctl(
            &config,
            &[
                "message",
                "send",
                "--capability",
                "if://capability/edge.ping",
                "--action",
                "ping",
                "--seq",
                &seq,
                "--why",
                why,
            ],
        )
    };
    assert_eq!(outcome(&send("first")), (Some(0), "OK".into()));
    assert_eq!(outcome(&send("second")), (Some(11), "IF_ERR_103".into()), "envelope class: same seq, other body");

    let missing = Agent::ifctl(&["--json", "--config", "/nonexistent/ifctl.toml", "capability", "list"]);
    assert_eq!(outcome(&missing), (Some(15), "IF_ERR_503".into()), "system class");
    let usage = ifctl(&config, &["capability", "apply", LOOP, "--why", "no action"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    r.agent.stop();
}
