//! The box's own broker: Mosquitto with Debian's main settings and exactly the package's drop-in
//! (`packaging/mosquitto/`). The agent on its loopback listener, desks on the studio listener: signed
//! commands are answered, a restart of the broker loses nothing acknowledged, and a client on the studio
//! listener cannot publish on the agent's status topic (the ACL), so `ifctl status` never shows a forgery.

use std::process::Command;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

fn ping(probe: &Probe, desk: &Talent, n: u64) -> serde_json::Value {
    probe.request(desk.sign(&desk.next_ping()), &n.to_be_bytes());
    loop {
        let m = probe.next(Duration::from_secs(10)).expect("a reply");
        if m.correlation.as_deref() == Some(&n.to_be_bytes()[..]) {
            return m.json();
        }
    }
}

fn status(broker: &Broker, agent: &Agent, keys: &std::path::Path) -> serde_json::Value {
    let out = Command::new(if_tests::bin("ifctl"))
        .args(["--json", "status", "--broker", &broker.url(), "--agent-keys"])
        .arg(keys)
        .output()
        .expect("ifctl status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "no forged status was seen: {text}{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = text.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    let me = format!("{}/{}", agent.site, agent.name);
    rows.into_iter().find(|r| r["agent"] == me.as_str()).unwrap_or_else(|| panic!("{me} in ifctl status: {text}"))
}

#[test]
fn the_boxs_own_broker_serves_desks_and_keeps_the_agents_topics_its_own() {
    let mut broker = Broker::start_site();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.edit_config(|t| t.replace(&broker.url(), &broker.agent_url()));
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let first = ping(&probe, &desk, 1);
    assert_eq!(first["ok"], true, "a desk on the studio listener is answered: {first}");

    // A restart of the broker mid-stream: the agent's session and what it had acknowledged survive.
    probe.request(desk.sign(&desk.next_ping()), &2u64.to_be_bytes());
    broker.stop();
    broker.restart();
    let across = loop {
        let m = probe.next(Duration::from_secs(20)).expect("the reply to the ping sent across the restart");
        if m.correlation.as_deref() == Some(&2u64.to_be_bytes()[..]) {
            break m.json();
        }
    };
    assert_eq!(across["ok"], true, "{across}");
    let third = ping(&probe, &desk, 3);
    assert_eq!(third["ok"], true, "commands flow after the restart: {third}");

    // A client on the studio listener tries to publish a retained status in the agent's name.
    let watcher = Probe::connect(&broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    watcher.drain(Duration::from_millis(300));
    let forged = br#"{"state":"offline","agent":"edge-1"}"#;
    let forger = Probe::connect(&broker, &agent.site, &agent.name);
    forger.publish_to(&forger.topics.status, forged.to_vec(), true);
    let delivered = watcher.drain(Duration::from_secs(1));
    assert!(!delivered.iter().any(|m| m.payload == forged), "the broker refused the publish: nobody received it");
    let keys = tempfile::tempdir().expect("tempdir");
    std::fs::copy(agent.public_key(), keys.path().join(format!("{}.{}.pub", agent.site, agent.name))).expect("pin");
    let seen = status(&broker, &agent, keys.path());
    assert_eq!(seen["verified"], true, "the ACL kept the forgery off the agent's status topic: {seen}");
    assert_eq!(seen["state"], "online", "{seen}");

    agent.stop();
    let records = agent.export();
    let executed = records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == "if://capability/edge.ping");
    assert_eq!(executed.count(), 3, "each ping ran once, the one sent across the restart too");
}
