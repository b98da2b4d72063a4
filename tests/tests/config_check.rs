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

/// `if-edge check-config` and `if-edge run` on the agent's config: (exit status, stderr) of each.
fn both(agent: &Agent) -> [(Option<i32>, String); 2] {
    let check = Command::new(if_tests::bin("if-edge")).arg("check-config").arg(agent.config()).output().expect("run");
    let run =
        Command::new(if_tests::bin("if-edge")).arg("run").arg("--config").arg(agent.config()).output().expect("run");
    [check, run].map(|o| (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned()))
}

#[test]
fn check_config_refuses_exactly_what_run_refuses_and_reads_no_file_without_a_limit() {
    let broker = Broker::start();
    let agent = Agent::init_bare(&broker);
    let key = agent.home().join("agent.key");
    let saved = std::fs::read(&key).expect("key");
    let restore = || {
        let _ = std::fs::remove_file(&key).or_else(|_| std::fs::remove_dir(&key));
        std::fs::write(&key, &saved).expect("restore");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    };
    type Break<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Break<'_>, &str)> = vec![
        ("missing key", Box::new(|| std::fs::remove_file(&key).expect("rm")), "agent.key: "),
        (
            "key others can read",
            Box::new(|| {
                std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod")
            }),
            "chmod 600",
        ),
        ("garbage key", Box::new(|| std::fs::write(&key, "garbage\n").expect("write")), "not a secret key"),
        (
            "a directory",
            Box::new(|| {
                std::fs::remove_file(&key).expect("rm");
                std::fs::create_dir(&key).expect("mkdir");
                std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
            }),
            "is a directory",
        ),
        (
            "a symlink loop",
            Box::new(|| {
                std::fs::remove_file(&key).expect("rm");
                std::os::unix::fs::symlink(&key, &key).expect("symlink");
            }),
            "agent.key: ",
        ),
        (
            "a symlink to /dev/zero",
            Box::new(|| {
                std::fs::remove_file(&key).expect("rm");
                std::os::unix::fs::symlink("/dev/zero", &key).expect("symlink");
            }),
            "not a regular file",
        ),
        (
            "no trust root",
            Box::new(|| agent.edit_config(|t| t.replace("no_root = true\n", ""))),
            "trust.root: no trust root is configured",
        ),
        (
            "a trust root that is not there",
            Box::new(|| agent.edit_config(|t| t.replace("no_root = true\n", "root = \"policy/missing.toml\"\n"))),
            "trust.root: ",
        ),
    ];
    let good = agent.config().with_extension("good");
    std::fs::copy(agent.config(), &good).expect("keep the good config");
    for (case, make, said) in cases {
        make();
        for (i, (code, err)) in both(&agent).into_iter().enumerate() {
            let who = ["check-config", "run"][i];
            assert_eq!(code, Some(15), "{case}: {who} refuses: {err}");
            assert!(err.contains("IF_ERR_503") && err.contains(said), "{case}: {who} says {said:?}: {err}");
        }
        assert!(!agent.db().exists(), "{case}: run started nothing");
        restore();
        std::fs::copy(&good, agent.config()).expect("restore config");
    }
    // The config file itself: a symlink to /dev/zero is refused at once, not read forever.
    std::fs::remove_file(agent.config()).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", agent.config()).expect("symlink");
    for (code, err) in both(&agent) {
        assert_eq!(code, Some(15), "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
