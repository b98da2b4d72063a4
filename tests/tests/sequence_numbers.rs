//! Sequence numbers against the real agent and `ifctl`: no envelope can lock its sender out, a policy key
//! resets a sender's numbers (witnessed, surviving restarts), thirty concurrent `ifctl` processes with one
//! key all get through, and a refusal that ran nothing is signed again once.

use std::process::{Command, Stdio};
use std::time::Duration;

use if_protocol::envelope::{ArgValue, Args, EnvelopeBody};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::device::{self, DeviceRig, Limits};
use if_tests::probe::Probe;
use if_tests::talent::{Talent, now_ms};

const WAIT: Duration = Duration::from_secs(10);
const LOOP: &str = "if://capability/studio.loop";

fn p(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Publishes `frame` and returns the reply.
fn ask(probe: &Probe, frame: Vec<u8>, n: &mut u64) -> serde_json::Value {
    *n += 1;
    let corr = n.to_be_bytes();
    probe.request(frame, &corr);
    loop {
        let m = probe.next(WAIT).expect("a reply");
        if m.correlation.as_deref() == Some(&corr[..]) {
            return m.json();
        }
    }
}

fn code(reply: &serde_json::Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("OK")
}

/// A policy command of `sec` with sequence number `seq`.
fn policy(sec: &Talent, action: &str, name: &str, seq: u64) -> EnvelopeBody {
    let mut b = sec.ping(seq);
    b.capability = "if://capability/edge.policy".try_into().expect("short");
    b.action = action.try_into().expect("short");
    b.scope = "policy".try_into().expect("short");
    let mut args = Args::new();
    args.insert("name", ArgValue::Text(name.try_into().expect("short"))).expect("arg");
    b.args = args;
    b
}

#[test]
fn no_envelope_locks_its_sender_out_and_a_policy_key_resets_a_senders_numbers() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let sec = agent.policy_key.clone().expect("policy key");
    let mut n = 0;

    // u64::MAX is refused before the window moves: the desk goes on with small numbers.
    let r = ask(&probe, desk.sign(&desk.ping(u64::MAX)), &mut n);
    assert_eq!(code(&r), "IF_ERR_110", "{r}");
    assert_eq!(code(&ask(&probe, desk.sign(&desk.ping(1)), &mut n)), "OK");
    // The same for the policy key: after its u64::MAX, a revoke still works.
    let r = ask(&probe, sec.sign(&policy(&sec, "talent.revoke", "desk", u64::MAX)), &mut n);
    assert_eq!(code(&r), "IF_ERR_110", "{r}");
    // A policy command that would be refused when it runs is refused before it takes its number (one
    // above those ifctl took for the key when it added the desk).
    let seq = now_ms() * 1000 + 15_000_000;
    let r = ask(&probe, sec.sign(&policy(&sec, "talent.revoke", "nobody", seq)), &mut n);
    assert_eq!(code(&r), "IF_ERR_203", "{r}");
    let grant_seq_again = policy(&sec, "talent.reset", "desk", seq);

    // The desk's window pushed high (as far as the clock allows): its counter's small numbers are too old.
    let high = now_ms() * 1000 + 20_000_000;
    assert_eq!(code(&ask(&probe, desk.sign(&desk.ping(high)), &mut n)), "OK");
    let before_reset = desk.sign(&desk.ping(2));
    assert_eq!(code(&ask(&probe, before_reset.clone(), &mut n)), "IF_ERR_104");
    // A policy key resets it, with the very seq the refused command did not use.
    let r = ask(&probe, sec.sign(&grant_seq_again), &mut n);
    assert_eq!(code(&r), "OK", "the seq was not used up by the refused command: {r}");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(code(&ask(&probe, desk.sign(&desk.ping(3)), &mut n)), "OK", "small numbers work again");
    // An envelope issued before the reset stays refused, even with a number the window would take.
    let r = ask(&probe, before_reset.clone(), &mut n);
    assert_eq!(code(&r), "IF_ERR_104", "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("were reset at")), "{r}");

    // Both hold across kill -9.
    agent.kill9();
    agent.start();
    assert_eq!(code(&ask(&probe, desk.sign(&desk.ping(4)), &mut n)), "OK");
    assert_eq!(code(&ask(&probe, before_reset, &mut n)), "IF_ERR_104");

    // Revoked and added again with a new key, the desk starts over from any number.
    let out = agent.talent("revoke", &["--name", "desk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let desk2 = Talent::new("desk");
    let out = agent.talent("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk2.public)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(code(&ask(&probe, desk2.sign(&desk2.ping(1)), &mut n)), "OK");
    agent.stop();
    let resets: Vec<_> = agent
        .export()
        .into_iter()
        .filter(|r| {
            r["kind"] == "POLICY"
                && r["detail"].as_str().is_some_and(|d| d.contains("start over") || d.contains("reset by"))
        })
        .collect();
    assert_eq!(resets.len(), 2, "the reset and the re-add are witnessed: {resets:?}");
}

#[test]
fn a_redelivery_within_the_window_gets_its_original_reply() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut n = 0;
    let first = desk.sign(&desk.ping(1));
    let original = ask(&probe, first.clone(), &mut n);
    for seq in 2..=300 {
        probe.publish(desk.sign(&desk.ping(seq)));
    }
    let replies = probe.until_replies(299, Duration::from_secs(30));
    assert!(replies.len() >= 299, "{} replies", replies.len());
    assert_eq!(ask(&probe, first, &mut n), original, "300 later, the original reply byte for byte");
}

#[test]
fn thirty_concurrent_ifctl_processes_with_one_key_all_run_and_none_is_refused() {
    let m = device::manifest(
        LOOP,
        "loopback",
        "loopback:",
        Limits { rps: 100.0, burst: 40, ..Limits::default() },
        &["preview"],
        &[],
        &[],
    );
    let rig = DeviceRig::new(&m, LOOP, &["preview"], |_, _| {});
    let state = tempfile::tempdir().expect("tempdir");
    let addr = rig.agent.addr();
    let children: Vec<_> = (0..30)
        .map(|i| {
            let mut c = Command::new(if_tests::bin("ifctl"));
            c.args(["capability", "apply", LOOP, "--action", "preview", "--key", p(&rig.desk.secret)])
                .args(["--sender", "desk", "--why", &format!("cue {i}")])
                .args(&addr)
                .env("IFCTL_STATE_DIR", state.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().expect("start ifctl")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("ifctl ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cue {i}: {stderr}");
        assert!(!stderr.contains("signed again"), "cue {i} was refused once: {stderr}");
    }
    let mut agent = rig.agent;
    agent.stop();
    let records = agent.export();
    let ran = records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == LOOP).count();
    assert_eq!(ran, 30, "every cue ran once");
    assert!(!records.iter().any(|r| r["kind"] == "REJECTED"), "none was refused");
}

#[test]
fn a_number_refused_as_too_old_is_signed_again_once_and_said() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let state = tempfile::tempdir().expect("tempdir");
    let ifctl = |extra: &[&str]| {
        let mut c = Command::new(if_tests::bin("ifctl"));
        c.args(["message", "send", "--capability", "if://capability/edge.ping", "--action", "ping"])
            .args(["--key", p(&desk.secret), "--sender", "desk", "--why", "ping"])
            .args(agent.addr())
            .args(extra)
            .env("IFCTL_STATE_DIR", state.path());
        c.output().expect("ifctl")
    };
    // Another machine with this key is far ahead: this machine's counter is below the agent's window.
    let ahead = (now_ms() * 1000 + 20_000_000).to_string();
    assert!(ifctl(&["--seq", &ahead]).status.success());
    let out = ifctl(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("IF_ERR_104 OUT_OF_ORDER: nothing ran; signed again"), "{stderr}");
    assert!(ifctl(&[]).status.success(), "the counter now follows the agent");
    // A number given by hand is the user's: refused, it is not signed again.
    let out = ifctl(&["--seq", "7"]);
    assert_eq!(out.status.code(), Some(11), "{}", String::from_utf8_lossy(&out.stderr));
    agent.stop();
    let pings = agent.executed_pings();
    assert_eq!(pings, 3, "the command signed again ran once");
}
