//! Anchors upstream, end to end: an agent with its commands on the site's broker and its anchors on a
//! separate uplink broker, the collector (`if-collector --follow`) on the uplink. The
//! uplink goes down while commands keep flowing, the agent restarts in between, the uplink comes back:
//! every checkpoint reaches the collector in order and verifies. And the collector faced with forged,
//! forked, shrunk and replayed anchors.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_edge::witness::proof::{consistency, subtree_root};
use if_protocol::messages::Anchor;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::{Checkpoint, sign_checkpoint};
use if_protocol::witness::merkle::leaf_hash;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::{Collector, anchors, until_all_acknowledged};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const WAIT: Duration = Duration::from_secs(30);

/// Sends `n` pings and checks every one ran.
fn pings(probe: &Probe, desk: &Talent, n: usize) {
    for i in 0..n {
        probe.request(desk.sign(&desk.next_ping()), &(i as u64).to_be_bytes());
    }
    let replies = probe.until_replies(n, WAIT);
    let ok = replies.iter().filter(|m| m.topic == probe.reply_topic_for(&desk.name) && m.json()["ok"] == true).count();
    assert_eq!(ok, n, "every command ran with the uplink up or down");
}

/// An agent on `local` whose anchors go to the collector on `uplink` (a checkpoint every `every`
/// records, offered again every second), started, with a probe on its commands.
fn agent_anchoring_to(
    local: &Broker,
    uplink: &Broker,
    collector: &Collector,
    desk: &Talent,
    every: u64,
) -> (Agent, Probe) {
    let mut agent = Agent::init(local, &[desk]);
    let up = uplink.url();
    agent.edit_config(|t| {
        t.replace("checkpoint_every = 1000", &format!("checkpoint_every = {every}"))
            .replace("status_interval_s = 30", "status_interval_s = 1")
            .replace("backoff_s = [1, 2, 5, 10, 30]", "backoff_s = [1]")
            .replace("[uplink]", &format!("[uplink]\nbroker = \"{up}\""))
            .replace("republish_s = 10", "republish_s = 1")
    });
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    agent.start();
    let probe = Probe::connect(local, &agent.site, &agent.name);
    (agent, probe)
}

#[test]
fn every_checkpoint_reaches_the_collector_in_order_across_an_uplink_outage_and_an_agent_restart() {
    let local = Broker::start();
    let mut uplink = Broker::start();
    let collector = Collector::start(&uplink);
    let desk = Talent::new("desk");
    let (mut agent, probe) = agent_anchoring_to(&local, &uplink, &collector, &desk, 25);

    pings(&probe, &desk, 60);
    let before_outage = until_all_acknowledged(&local, &agent, 0);

    uplink.stop();
    pings(&probe, &desk, 100);
    agent.stop();
    agent.start();
    let probe = Probe::connect(&local, &agent.site, &agent.name);
    pings(&probe, &desk, 50);
    let (acked, pending) = anchors(&local, &agent);
    assert_eq!(acked, before_outage, "nothing was acknowledged while the uplink was down");
    assert!(pending >= 2, "the checkpoints of both runs wait in the queue: {pending}");

    uplink.restart();
    let after = until_all_acknowledged(&local, &agent, before_outage);
    agent.stop();

    collector.holds_every_checkpoint(&agent, after);
}

#[test]
fn a_backlog_of_hundreds_of_checkpoints_reaches_the_collector_when_the_uplink_returns() {
    let local = Broker::start();
    let mut uplink = Broker::start();
    let collector = Collector::start(&uplink);
    let desk = Talent::new("desk");
    let (mut agent, probe) = agent_anchoring_to(&local, &uplink, &collector, &desk, 1);
    pings(&probe, &desk, 1);
    let before = until_all_acknowledged(&local, &agent, 0);
    uplink.stop();
    // One at a time: every commit signs a checkpoint, so the backlog outgrows the uplink's in-flight
    // window and request queue many times over, and the collector acknowledges each one it takes.
    for _ in 0..150 {
        pings(&probe, &desk, 1);
    }
    let backlog = if_tests::wait_for(Duration::from_secs(10), || {
        let (acked, pending) = anchors(&local, &agent);
        (pending >= 300 && pending != u64::MAX).then_some(acked)
    });
    assert_eq!(backlog, Some(before), "a backlog of checkpoints, none acknowledged while the uplink was down");
    uplink.restart();
    let after = until_all_acknowledged(&local, &agent, before);
    agent.stop();
    collector.holds_every_checkpoint(&agent, after);
}

#[test]
fn a_collector_run_once_sends_every_answer_before_it_exits() {
    let broker = Broker::start();
    let collector = Collector::unstarted(&broker);
    let desk = Talent::new("desk");
    let (mut agent, probe) = agent_anchoring_to(&broker, &broker, &collector, &desk, 5);
    pings(&probe, &desk, 12);
    let pending = if_tests::wait_for(WAIT, || (anchors(&broker, &agent).1 >= 3).then_some(()));
    assert!(pending.is_some(), "anchors wait for a collector: {:?}", anchors(&broker, &agent));
    // It judges the anchors and the bundles the agent offers until a second passes without one, answers
    // each, and exits; the agent hears every answer, the last included.
    let out = collector.once(1000);
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("ACCEPTED"), "{said}");
    let acked = if_tests::wait_for(WAIT, || {
        let (acked, pending) = anchors(&broker, &agent);
        (pending == 0).then_some(acked)
    });
    assert!(acked.is_some_and(|a| a >= 15), "every anchor acknowledged: {:?}\n{said}", anchors(&broker, &agent));
    agent.stop();
}

/// Most memory of its own an idle agent may hold resident, KiB: heap, stacks and every other anonymous
/// page. The executable's own pages are left out because they are the build's, not the agent's: a debug
/// build's code is four times a release build's (`docs/BENCHMARKS.md` has the release figure, all in).
const IDLE_ANON_CEILING_KIB: u64 = 10 * 1024;

#[test]
fn an_idle_agent_with_its_uplink_connected_holds_under_10_mib_of_its_own_memory() {
    let local = Broker::start();
    let uplink = Broker::start();
    let collector = Collector::start(&uplink);
    let desk = Talent::new("desk");
    let (mut agent, probe) = agent_anchoring_to(&local, &uplink, &collector, &desk, 25);
    // Both connections up and used: commands in, checkpoints out to the collector and acknowledged.
    pings(&probe, &desk, 50);
    let acked = until_all_acknowledged(&local, &agent, 0);
    assert!(acked >= 50, "the uplink carried the anchors: {acked}");
    assert!(agent.log().contains("uplink connected"), "{}", agent.log());
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.pid().expect("running");
    let [all, anon, file] = ["VmRSS", "RssAnon", "RssFile"].map(|f| if_tests::memory_kib(pid, f).expect(f));
    println!("idle, uplink connected: RSS {all} KiB = {anon} KiB anonymous + {file} KiB of files");
    assert!(anon < IDLE_ANON_CEILING_KIB, "idle anonymous RSS {anon} KiB is over {IDLE_ANON_CEILING_KIB} KiB");
    agent.stop();
}

const ORIGIN: &str = "local/if-edge/studio-b.edge-9";

fn anchor(key: &ed25519_dalek::SigningKey, leaves: &[Hash], size: usize, from: usize) -> Vec<u8> {
    let cp = Checkpoint {
        origin: ORIGIN.try_into().expect("short"),
        size: size as u64,
        root: subtree_root(&leaves[..size]),
    };
    let note = sign_checkpoint(&cp, ORIGIN, key).expect("sign").as_str().to_string();
    let proof = consistency(from, &leaves[..size]).iter().map(|h| B64.encode(h)).collect();
    let a = Anchor { agent: "studio-b/edge-9".into(), size: size as u64, from: from as u64, note, proof };
    serde_json::to_vec(&a).expect("json")
}

/// The collector's first `n` lines, once it has said that many.
fn said(collector: &Collector, n: usize) -> Option<Vec<String>> {
    if_tests::wait_for(WAIT, || (collector.said().len() >= n).then(|| collector.said()))
}

#[test]
fn forged_forked_shrunk_and_replayed_anchors_are_refused_with_evidence_or_taken_as_repeats() {
    let broker = Broker::start();
    let mut collector = Collector::start(&broker);
    let agent = Talent::new("edge-9");
    let intruder = Talent::new("intruder");
    collector.trust("studio-b", "edge-9", &agent.public);
    let watcher = Probe::connect(&broker, "studio-b", "edge-9");
    let anchors = "if/v1/studio-b/edge-9/anchors";
    watcher.subscribe("if/v1/studio-b/edge-9/security");
    watcher.subscribe("if/v1/studio-b/edge-9/anchors/ack");
    let log: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut forked = log.clone();
    forked[3] = leaf_hash(b"a record rewritten");

    watcher.publish_to(anchors, anchor(&agent.key, &log, 10, 0), false);
    watcher.publish_to(anchors, anchor(&agent.key, &log, 20, 10), false);
    let lines = said(&collector, 2).expect("two verdicts");
    assert!(
        lines[0].ends_with("ACCEPTED size 10 (from 0)") && lines[1].ends_with("ACCEPTED size 20 (from 10)"),
        "{lines:#?}"
    );
    for size in [10, 20] {
        let ack = watcher.next_on("if/v1/studio-b/edge-9/anchors/ack", WAIT).expect("an ack").json();
        assert_eq!(ack["size"], size);
    }

    // A restarted collector still knows what it accepted: the old one again is a repeat, acknowledged.
    // The restart returns once the new collector has subscribed.
    collector.restart();
    watcher.publish_to(anchors, anchor(&agent.key, &log, 10, 0), false);
    let lines = said(&collector, 3).expect("a verdict");
    assert!(lines[2].ends_with("AGAIN size 10, already accepted"), "{lines:#?}");
    assert_eq!(watcher.next_on("if/v1/studio-b/edge-9/anchors/ack", WAIT).expect("ack again").json()["size"], 10);

    watcher.publish_to(anchors, anchor(&intruder.key, &log, 30, 20), false);
    watcher.publish_to(anchors, anchor(&agent.key, &forked, 30, 20), false);
    watcher.publish_to(anchors, anchor(&agent.key, &log, 15, 10), false);
    let lines = said(&collector, 6).expect("three verdicts");
    assert!(lines[3].contains("REFUSED size 30: signature"), "{lines:#?}");
    assert!(lines[4].contains("EVIDENCE fork"), "{lines:#?}");
    assert!(lines[5].contains("EVIDENCE shrink"), "{lines:#?}");
    for kind in ["fork", "shrink"] {
        let e = watcher.next_on("if/v1/studio-b/edge-9/security", WAIT).expect("evidence").json();
        assert_eq!(e["kind"], kind, "{e}");
        assert!(e["accepted"].as_str().is_some_and(|n| n.contains("\n20\n")), "the accepted checkpoint: {e}");
        assert!(e["offered"].as_str().is_some_and(|n| n.starts_with(ORIGIN)), "the offending one: {e}");
    }
    assert!(
        watcher.next_on("if/v1/studio-b/edge-9/anchors/ack", Duration::from_millis(500)).is_none(),
        "none acknowledged"
    );
    // The honest continuation is still accepted.
    watcher.publish_to(anchors, anchor(&agent.key, &log, 30, 20), false);
    let lines = said(&collector, 7).expect("a verdict");
    assert!(lines[6].ends_with("ACCEPTED size 30 (from 20)"), "{lines:#?}");
}

#[test]
fn with_the_collectors_key_pinned_only_its_signed_acknowledgements_move_the_queue() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    let collector_key = Talent::new("collector");
    let pinned = collector_key.public.to_str().expect("utf-8").to_string();
    agent.edit_config(|t| {
        t.replace("checkpoint_every = 1000", "checkpoint_every = 5")
            .replace("status_interval_s = 30", "status_interval_s = 1")
            .replace("republish_s = 10", &format!("republish_s = 1\ncollector_key = \"{pinned}\"\narchive = false"))
    });
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    pings(&probe, &desk, 12);
    // A client with no key acknowledges the anchors it reads off the retained topic.
    let anchors_topic = if_protocol::topics::Topics::new(&agent.site, &agent.name).anchors;
    probe.subscribe(&anchors_topic);
    let anchor = probe.next_on(&anchors_topic, WAIT).expect("an anchor is retained").json();
    let cp = Checkpoint::parse_note(anchor["note"].as_str().expect("note")).expect("checkpoint");
    let forged = serde_json::json!({ "size": cp.size, "root": B64.encode(cp.root) });
    probe.publish_to(&format!("{anchors_topic}/ack"), forged.to_string().into_bytes(), false);
    // The agent offers unacknowledged anchors again every second: twice more, and the forged
    // acknowledgement has been read and ignored.
    for _ in 0..2 {
        probe.next_on(&anchors_topic, WAIT).expect("the anchor is offered again");
    }
    assert_eq!(anchors(&broker, &agent).0, 0, "an unsigned acknowledgement moves nothing");
    // The collector that holds the key: its acknowledgements count.
    let collector = Collector::start_at(&broker.url(), &["--sign-key", collector_key.secret.to_str().expect("utf-8")]);
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    until_all_acknowledged(&broker, &agent, 0);
    // With `archive = false` the anchors go and the records stay: no bundle follows them.
    std::thread::sleep(Duration::from_secs(2));
    let said = collector.said();
    assert!(!said.iter().any(|l| l.contains("bundle")), "{said:#?}");
    agent.stop();
}
