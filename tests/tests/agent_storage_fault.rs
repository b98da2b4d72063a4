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

#[test]
fn a_log_that_cannot_grow_fails_closed_and_recovers() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let pid = agent.pid().expect("running");
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut n = 0;
    assert_eq!(ping(&probe, &desk, &mut n)["ok"], true);

    let size = std::fs::metadata(agent.db()).expect("db").len();
    prlimit_fsize(pid, &size.to_string());
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
