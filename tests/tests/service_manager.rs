//! The agent under a service manager: the test owns the `NOTIFY_SOCKET` datagram socket, as systemd
//! would, and starts the real agent with it. `READY=1` comes only once the agent takes commands, the
//! watchdog is pinged while its event loop runs and not while it is stopped, and SIGTERM says
//! `STOPPING=1` before the agent exits.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

/// Every notification that arrives within `wait`, each as its lines.
fn drain(socket: &UnixDatagram, wait: Duration) -> Vec<Vec<String>> {
    let end = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        socket.set_read_timeout(Some(left)).expect("timeout");
        match socket.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).lines().map(String::from).collect()),
            Err(_) => break,
        }
    }
    out
}

fn has(messages: &[Vec<String>], line: &str) -> bool {
    messages.iter().any(|m| m.iter().any(|l| l == line))
}

#[test]
fn ready_only_when_serving_a_watchdog_from_the_loop_and_stopping_on_sigterm() {
    let mut broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    agent.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    agent.env = vec![
        ("NOTIFY_SOCKET".into(), path.to_str().expect("utf-8").into()),
        // Pings every 0.5 s.
        ("WATCHDOG_USEC".into(), "1000000".into()),
    ];

    // With the broker away the agent runs (its loop pings the watchdog) but cannot take a command: no
    // READY=1.
    broker.stop();
    agent.spawn();
    let waiting = drain(&socket, Duration::from_millis(2000));
    assert!(!has(&waiting, "READY=1"), "not ready without its broker: {waiting:?}");
    assert!(has(&waiting, "WATCHDOG=1"), "the loop runs: {waiting:?}");

    // The broker comes: READY=1 once the command subscription is acknowledged, saying what it serves;
    // a ping sent at once is answered.
    broker.restart();
    let end = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let got = drain(&socket, Duration::from_millis(200));
        if let Some(m) = got.into_iter().find(|m| m.iter().any(|l| l == "READY=1")) {
            break m;
        }
        assert!(Instant::now() < end, "READY=1 within 15 s of the broker's return");
    };
    let status = ready.iter().find(|l| l.starts_with("STATUS=")).expect("a status with it");
    assert!(status.starts_with("STATUS=serving ") && status.contains("capabilities, log "), "{status}");
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    probe.request(desk.sign(&desk.ping(1)), b"ping");
    assert!(probe.next(Duration::from_secs(10)).is_some_and(|m| m.code().is_none()), "it serves");

    // A wedged agent stops the pings (and the manager restarts it): SIGSTOP, no ping; SIGCONT, pings.
    let pid = agent.pid().expect("running").to_string();
    let signal = |s: &str| std::process::Command::new("kill").args([s, &pid]).status().expect("kill");
    signal("-STOP");
    let _ = drain(&socket, Duration::from_millis(200));
    let stopped = drain(&socket, Duration::from_millis(1500));
    assert!(!has(&stopped, "WATCHDOG=1"), "no ping while the process is stopped: {stopped:?}");
    signal("-CONT");
    assert!(has(&drain(&socket, Duration::from_millis(2500)), "WATCHDOG=1"), "pings again once it runs");

    agent.stop();
    let last = drain(&socket, Duration::from_millis(500));
    assert!(has(&last, "STOPPING=1"), "SIGTERM says STOPPING=1: {last:?}");
    assert!(!has(&last, "READY=1"), "and nothing says ready again");
}
