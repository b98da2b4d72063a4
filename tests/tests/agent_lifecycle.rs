//! What the agent tells the world about itself across starts and crashes: the retained status (birth on
//! connect, the Will `offline` when it dies, `offline` when it stops), and the reply every sender is owed
//! for a command a crash left between RECEIVED and its outcome.

use std::time::Duration;

use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, Pending, Store};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const WAIT: Duration = Duration::from_secs(15);

/// The retained status a fresh subscriber sees first.
fn retained_status(broker: &Broker, agent: &Agent) -> serde_json::Value {
    let watcher = Probe::connect(broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    watcher.next_on(&watcher.topics.status, WAIT).expect("a retained status").json()
}

#[test]
fn status_is_born_online_and_dies_offline_by_will_or_by_stop() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let status = retained_status(&broker, &agent);
    assert_eq!(status["state"], "online", "{status}");
    assert_eq!(status["agent"], "studio-a/edge-1");
    let first_boot = status["boot"].as_u64().expect("boot counter");

    let watcher = Probe::connect(&broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    assert_eq!(watcher.next_on(&watcher.topics.status, WAIT).expect("retained").json()["state"], "online");
    agent.kill9();
    let will = watcher.next_on(&watcher.topics.status, WAIT).expect("the Will after kill -9");
    assert_eq!(will.json()["state"], "offline", "{}", String::from_utf8_lossy(&will.payload));
    assert_eq!(retained_status(&broker, &agent)["state"], "offline", "the Will is retained");

    agent.start();
    let reborn = watcher.next_on(&watcher.topics.status, WAIT).expect("a birth after restart").json();
    assert_eq!(reborn["state"], "online", "{reborn}");
    assert_eq!(reborn["boot"].as_u64(), Some(first_boot + 1), "a new boot: {reborn}");

    agent.stop();
    // The restarted agent may have been born twice: once on connect, and again over the previous
    // boot's retained Will, which it sees when it subscribes to its own status.
    let bye = std::iter::from_fn(|| watcher.next_on(&watcher.topics.status, WAIT).map(|m| m.json()))
        .find(|s| s["state"] != "online")
        .expect("offline on stop");
    assert_eq!(bye["state"], "offline", "{bye}");
    assert_eq!(bye["boot"].as_u64(), Some(first_boot + 1), "it ends this boot's session: {bye}");
    assert_eq!(retained_status(&broker, &agent)["state"], "offline");
}

#[test]
fn a_command_left_without_outcome_is_reported_interrupted_at_boot_and_never_run() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    agent.stop();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);

    // The state a kill -9 leaves between the RECEIVED commit and the outcome: an open RECEIVED record.
    let body = desk.next_ping();
    let frame = desk.sign(&body);
    let digest = if_protocol::frame::digest(&frame);
    let entry = Entry {
        wall_ms: if_tests::talent::now_ms(),
        envelope: Some(body.id),
        sender: desk.name.clone(),
        seq: Some(body.seq),
        capability: body.capability.to_string(),
        action: body.action.to_string(),
        why: body.why.to_string(),
        trace: Some(body.trace),
        digest: Some(digest),
        count: 1,
        ..Entry::default()
    };
    let mut received = Append::record(Kind::Received, entry.clone());
    received.pending = Some(Pending {
        sender: desk.name.clone(),
        seq: body.seq,
        digest,
        entry,
        reply_topic: Some(probe.reply_topic_for(&desk.name)),
        correlation: Some(b"open".to_vec()),
    });
    {
        let mut store = Store::open(&agent.db(), 4 << 20).expect("open the log");
        store.append(vec![received], None).expect("append RECEIVED");
    }

    agent.start();
    let told = probe.next_on(&probe.reply_topic_for(&desk.name), WAIT).expect("the sender is told at boot");
    assert_eq!(told.correlation.as_deref(), Some(&b"open"[..]));
    let reply = told.json();
    assert_eq!(reply["error"]["code"], "IF_ERR_500", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap_or("").contains("not run again"), "{reply}");
    assert_eq!(reply["id"], body.id.to_string());

    // The publisher, never having seen its PUBACK, sends the frame again: same reply, nothing runs.
    probe.request(frame, b"again");
    let again = probe.next_on(&probe.reply_topic_for(&desk.name), WAIT).expect("the redelivery is answered");
    assert_eq!(again.payload, told.payload, "the same reply bytes");
    agent.stop();

    let records = agent.export();
    let of = |kind: &str| {
        records.iter().filter(|r| r["kind"] == kind && r["envelope"] == body.id.to_string().as_str()).count()
    };
    assert_eq!((of("RECEIVED"), of("INTERRUPTED"), of("EXECUTED"), of("FAILED")), (1, 1, 0, 0));
    let verify = agent.verify_witness();
    assert!(verify.status.success(), "verify: {}", String::from_utf8_lossy(&verify.stderr));
}
