//! `if-edge check-config` on a file with several mistakes lists every one of them, each naming its key,
//! and exits with CONFIG_INVALID's status; a good file passes.

use std::process::Command;

use if_tests::agent::Agent;
use if_tests::broker::Broker;

#[test]
fn check_config_reports_every_problem_at_once() {
    let broker = Broker::start();
    let agent = Agent::init(&broker, &[]);
    let good = Command::new(if_tests::bin("if-edge")).arg("check-config").arg(agent.config()).output().expect("run");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(String::from_utf8_lossy(&good.stdout).contains(": ok (agent studio-a/edge-1"));

    agent.edit_config(|t| {
        t.replace("keep_alive_s = 10", "keep_alive_s = 1")
            .replace("replay_window = 1024", "replay_window = 0")
            .replace("checkpoint_every = 1000", "checkpoint_every = 0")
            .replace("[trust]\n", "[trust]\nallow = [\"vmix\"]\n")
            .replace("allow = []\n", "")
    });
    let bad = Command::new(if_tests::bin("if-edge")).arg("check-config").arg(agent.config()).output().expect("run");
    assert_eq!(bad.status.code(), Some(15), "CONFIG_INVALID exits 15");
    let err = String::from_utf8_lossy(&bad.stderr);
    for key in ["mqtt.keep_alive_s", "admission.replay_window", "witness.checkpoint_every", "trust.allow[0]"] {
        assert!(
            err.contains(&format!("IF_ERR_503 CONFIG_INVALID: {}: {key}", agent.config().display())),
            "{key}: {err}"
        );
    }
    assert!(err.contains("4 problem(s)"), "{err}");
}
