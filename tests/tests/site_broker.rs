//! The box's own broker: Mosquitto with Debian's main settings and exactly the package's drop-in
//! (`packaging/mosquitto/`), the agent on its loopback listener, desks and `ifctl` on the studio listener,
//! and the uplink unreachable from the start. `ifctl` sends signed commands to a vMix simulator and reads
//! status and tally; a restart of the broker loses nothing acknowledged and runs nothing twice; a client on
//! the studio listener cannot publish on the agent's status topic (the ACL). Then the uplink comes up
//! and every anchor made while it was away reaches a collector there, in order.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::{Collector, anchors, until_all_acknowledged};
use if_tests::device::{self, Limits};
use if_tests::probe::Probe;
use if_tests::sim::Sim;
use if_tests::talent::Talent;

const VMIX: &str = "if://capability/vmix.switcher";

fn ifctl(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "--config", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out: Output = Agent::ifctl(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ifctl {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| panic!("JSON from ifctl: {text}"))
}

fn cut(config: &Path) -> serde_json::Value {
    ifctl(config, &["capability", "apply", VMIX, "--action", "cut", "--hazard", "on_air", "--why", "show"])
}

/// The tally `ifctl tally` reads once it shows `program`.
fn tally_with(config: &Path, program: u32) -> serde_json::Value {
    let seen = if_tests::wait_for(Duration::from_secs(10), || {
        let t = ifctl(config, &["tally", "--wait-ms", "300"]);
        (t["program"] == serde_json::json!([program])).then_some(t)
    });
    seen.unwrap_or_else(|| panic!("ifctl tally shows input {program} on program"))
}

fn ping(probe: &Probe, panel: &Talent, n: u64) -> serde_json::Value {
    probe.request(panel.sign(&panel.next_ping()), &n.to_be_bytes());
    loop {
        let m = probe.next(Duration::from_secs(20)).expect("a reply");
        if m.correlation.as_deref() == Some(&n.to_be_bytes()[..]) {
            return m.json();
        }
    }
}

fn status(broker: &Broker, agent: &Agent, keys: &Path) -> serde_json::Value {
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
fn the_boxs_own_broker_serves_desks_keeps_the_agents_topics_its_own_and_anchors_wait_for_the_uplink() {
    let mut broker = Broker::start_site();
    let mut uplink = Broker::start();
    uplink.stop();
    let sim = Sim::start("vmix");
    let (desk, panel) = (Talent::new("desk"), Talent::new("panel"));
    let mut agent = Agent::init(&broker, &[&desk, &panel]);
    let m = device::manifest(VMIX, "vmix-tcp", &sim.endpoint(), Limits::default(), &["cut"], &["cut"], &[]);
    agent.add_manifest("vmix", &m);
    let up = uplink.url();
    agent.edit_config(|t| {
        t.replace(&broker.url(), &broker.agent_url())
            .replace("allow = []", &format!("allow = [\"{VMIX}@1.0.0\"]"))
            .replace("checkpoint_every = 1000", "checkpoint_every = 8")
            .replace("status_interval_s = 30", "status_interval_s = 1")
            .replace("backoff_s = [1, 2, 5, 10, 30]", "backoff_s = [1]")
            .replace("[uplink]", &format!("[uplink]\nbroker = \"{up}\""))
            .replace("republish_s = 10", "republish_s = 1")
    });
    agent.start();
    let grant = ["--name", "desk", "--capability", VMIX, "--scope", "studio:control", "--hazard", "on_air"];
    let out = agent.talent("grant", &[&grant[..], &["--action", "cut"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ifctl.toml");
    std::fs::write(&config, agent.ifctl_toml("desk", &desk.secret)).expect("ifctl.toml");

    // ifctl on the studio listener: a signed cut, and the tally it caused.
    let first = tally_with(&config, 1);
    assert_eq!(first["capability"], VMIX, "{first}");
    assert_eq!(cut(&config)["ok"], true);
    assert_eq!(tally_with(&config, 2)["preview"], serde_json::json!([1]));

    // A restart of the broker mid-stream: the panel's session and what the agent acknowledged survive.
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    assert_eq!(ping(&probe, &panel, 1)["ok"], true, "a panel on the studio listener is answered");
    probe.request(panel.sign(&panel.next_ping()), &2u64.to_be_bytes());
    broker.stop();
    broker.restart();
    let across = loop {
        let m = probe.next(Duration::from_secs(20)).expect("the reply to the ping sent across the restart");
        if m.correlation.as_deref() == Some(&2u64.to_be_bytes()[..]) {
            break m.json();
        }
    };
    assert_eq!(across["ok"], true, "{across}");
    assert_eq!(ping(&probe, &panel, 3)["ok"], true, "commands flow after the restart");
    assert_eq!(cut(&config)["ok"], true, "ifctl after the restart");
    assert_eq!(tally_with(&config, 1)["preview"], serde_json::json!([2]), "tally after the restart");

    // A client on the studio listener tries to publish a retained status in the agent's name.
    let watcher = Probe::connect(&broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    watcher.drain(Duration::from_millis(300));
    let forged = br#"{"state":"offline","agent":"edge-1"}"#;
    let forger = Probe::connect(&broker, &agent.site, &agent.name);
    forger.publish_to(&forger.topics.status, forged.to_vec(), true);
    forger.publish_to(&forger.topics.tally, forged.to_vec(), true);
    let delivered = watcher.drain(Duration::from_secs(1));
    assert!(!delivered.iter().any(|m| m.payload == forged), "the broker refused the publish: nobody received it");
    let keys = tempfile::tempdir().expect("tempdir");
    agent.pin(keys.path());
    let seen = status(&broker, &agent, keys.path());
    assert_eq!(seen["verified"], true, "the ACL kept the forgery off the agent's status topic: {seen}");
    assert_eq!(seen["state"], "online", "{seen}");
    // ifctl tally exits 10 if it saw a tally not signed by the agent: the ACL kept the forgery off.
    tally_with(&config, 1);

    // The uplink was never there: every checkpoint so far waits in the agent's queue.
    let (acked, pending) = anchors(&broker, &agent);
    assert_ne!(pending, u64::MAX, "the agent's status has its anchors");
    assert_eq!(acked, 0, "nothing acknowledged with the uplink away");
    assert!(pending >= 2, "checkpoints wait for the uplink: {pending}");
    uplink.restart();
    let collector = Collector::start(&uplink);
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    let acked = until_all_acknowledged(&broker, &agent, 0);
    agent.stop();
    collector.holds_every_checkpoint(&agent, acked);

    let records = agent.export();
    let ran = |cap: &str| records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == cap).count();
    assert_eq!(ran("if://capability/edge.ping"), 3, "each ping ran once, the one sent across the restart too");
    assert_eq!(ran(VMIX), 2, "each cut ran once");
    assert_eq!(sim.received().iter().filter(|l| *l == "FUNCTION Cut").count(), 2, "vMix saw two cuts");
}
