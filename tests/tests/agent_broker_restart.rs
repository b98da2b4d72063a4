//! The broker restarts in the middle of a stream: the agent reconnects (a new MQTT session of the same
//! boot), resubscribes and answers every envelope, each executed once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

fn collect(probe: &Probe, replies: &mut HashMap<u64, Vec<u8>>, quiet: Duration) {
    while let Some(m) = probe.next(quiet) {
        if let Some(c) = m.correlation.as_deref().and_then(|c| c.try_into().ok()).map(u64::from_be_bytes) {
            replies.insert(c, m.payload);
        }
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_no_command() {
    let mut broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut frames = Vec::new();
    let mut replies = HashMap::new();
    let send = |frames: &mut Vec<Vec<u8>>, n: usize| {
        for _ in 0..n {
            let i = frames.len() as u64;
            let f = desk.sign(&desk.next_ping());
            probe.request(f.clone(), &i.to_be_bytes());
            frames.push(f);
        }
    };
    send(&mut frames, 300);
    broker.stop();
    send(&mut frames, 100);
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    send(&mut frames, 300);
    let end = Instant::now() + Duration::from_secs(60);
    while replies.len() < frames.len() && Instant::now() < end {
        collect(&probe, &mut replies, Duration::from_millis(500));
        if replies.len() < frames.len() {
            // A sender that has not heard back sends the same envelope again.
            for (i, f) in frames.iter().enumerate() {
                if !replies.contains_key(&(i as u64)) {
                    probe.request(f.clone(), &(i as u64).to_be_bytes());
                }
            }
            collect(&probe, &mut replies, Duration::from_secs(2));
        }
    }
    assert!(agent.is_running());
    // The reconnection is a new MQTT session of the same boot: its birth and Will say so.
    let watcher = Probe::connect(&broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    let status = watcher.next_on(&watcher.topics.status, Duration::from_secs(5)).expect("retained status").json();
    assert_eq!(status["state"], "online", "{status}");
    assert_eq!(status["boot"], 1, "{status}");
    assert!(status["session"].as_u64().is_some_and(|s| s >= 2), "a new session after the restart: {status}");
    agent.stop();
    assert_eq!(replies.len(), frames.len(), "every envelope was answered");
    let bad: Vec<_> = replies.values().filter(|r| !String::from_utf8_lossy(r).contains("\"ok\":true")).collect();
    assert!(bad.is_empty(), "all succeeded: {:?}", bad.first().map(|r| String::from_utf8_lossy(r).into_owned()));
    assert!(agent.log().matches("connected to the broker").count() >= 2, "the agent reconnected");
    let records = agent.export();
    let executed =
        records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == "if://capability/edge.ping").count();
    assert_eq!(executed, frames.len(), "each envelope ran exactly once");
    assert!(agent.verify_witness().status.success());
}
