//! Fail closed: when the witness log cannot grow (the agent's file size limit is lowered under it, as a
//! full disk would), commands are answered IF_ERR_502 STORAGE_FULL (retryable) and nothing runs; the agent
//! stays up, and once writing works again it takes commands again and its log verifies.

use std::process::Command;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

/// Sets the soft file size limit of a running process (the hard limit stays unlimited).
fn prlimit_fsize(pid: u32, limit: &str) {
    let ok = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={limit}:unlimited"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(ok.success(), "prlimit failed");
}

fn ping(probe: &Probe, desk: &Talent, n: &mut u64) -> serde_json::Value {
    *n += 1;
    probe.request(desk.sign(&desk.next_ping()), &n.to_be_bytes());
    loop {
        let m = probe.next(Duration::from_secs(10)).expect("a reply");
        if m.correlation.as_deref() == Some(&n.to_be_bytes()[..]) {
            return m.json();
        }
    }
}

/// A started agent that ran one ping, whose witness file may then grow no further: the agent, a probe,
/// its pid and the pings sent so far.
fn a_log_held_at_its_size(broker: &Broker, desk: &Talent) -> (Agent, Probe, u32, u64) {
    let mut agent = Agent::init(broker, &[desk]);
    agent.start();
    let pid = agent.pid().expect("running");
    let probe = Probe::connect(broker, &agent.site, &agent.name);
    let mut n = 0;
    assert_eq!(ping(&probe, desk, &mut n)["ok"], true);
    let size = std::fs::metadata(agent.db()).expect("db").len();
    prlimit_fsize(pid, &size.to_string());
    (agent, probe, pid, n)
}

#[test]
fn a_log_that_cannot_grow_fails_closed_and_recovers() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let (mut agent, probe, pid, mut n) = a_log_held_at_its_size(&broker, &desk);
    let mut refused = 0;
    let mut ran_while_full = 0;
    for _ in 0..3000 {
        let reply = ping(&probe, &desk, &mut n);
        if reply["ok"] == true {
            ran_while_full += 1;
            continue;
        }
        assert_eq!(reply["error"]["code"], "IF_ERR_502", "STORAGE_FULL: {reply}");
        assert_eq!(reply["error"]["retryable"], true, "the agent recovers by itself: {reply}");
        refused += 1;
        if refused == 20 {
            break;
        }
    }
    assert_eq!(refused, 20, "the log stopped growing and commands were refused");
    assert!(agent.is_running(), "the agent stays up");

    prlimit_fsize(pid, "unlimited");
    let mut recovered = false;
    for _ in 0..20 {
        if ping(&probe, &desk, &mut n)["ok"] == true {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "commands run again once the log can be written");
    agent.stop();
    let records = agent.export();
    let executed =
        records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == "if://capability/edge.ping").count();
    assert_eq!(executed, 2 + ran_while_full, "no refused command ran");
    assert!(agent.verify_witness().status.success(), "the log verifies after the fault");
}

#[test]
fn a_flood_refused_by_a_full_log_is_undone_whole_and_runs_when_sent_again() {
    const FLOOD: usize = 300;
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let (mut agent, probe, pid, mut n) = a_log_held_at_its_size(&broker, &desk);
    while ping(&probe, &desk, &mut n)["ok"] == true {
        assert!(n < 3000, "the log never stopped growing");
    }

    // Published back to back, so bursts are admitted while the one before is (failing to be) written.
    let frames: Vec<Vec<u8>> = (0..FLOOD).map(|_| desk.sign(&desk.next_ping())).collect();
    let send = |tag: u8| {
        for (i, f) in frames.iter().enumerate() {
            probe.request(f.clone(), &[tag, (i >> 8) as u8, i as u8]);
        }
        let (replies, _dead_letters) = probe.split(probe.until_replies(FLOOD, Duration::from_secs(60)));
        assert_eq!(replies.len(), FLOOD, "every command of the flood is answered");
        assert!(replies.iter().all(|m| m.correlation.as_ref().is_some_and(|c| c[0] == tag)), "only this round");
        replies.into_iter().map(|m| m.json()).collect::<Vec<_>>()
    };
    let full = send(1);
    let ran_while_full = full.iter().filter(|r| r["ok"] == true).count();
    for r in full.iter().filter(|r| r["ok"] != true) {
        assert_eq!(r["error"]["code"], "IF_ERR_502", "STORAGE_FULL: {r}");
    }
    assert!(ran_while_full < FLOOD, "the log was full for the flood");
    println!("{ran_while_full} of the flood ran while the log was full");

    // Every refused admission was undone, in order: the same frames, sent again, all run now (a
    // window left as a later burst had it would refuse them as replays).
    prlimit_fsize(pid, "unlimited");
    let again = send(2);
    for r in &again {
        assert_eq!(r["ok"], true, "a refused command runs when sent again: {r}");
    }
    agent.stop();
    let executed = agent.executed_pings();
    // The last ping before the flood was the first refused.
    assert_eq!(executed, n as usize - 1 + FLOOD, "each command of the flood ran once; the pings before it too");
    assert!(agent.verify_witness().status.success(), "the log verifies after the fault");
}
