//! Cold start: before it takes work the agent checks its witness log from the newest signed checkpoint,
//! and refuses to start on a log changed after it, naming the record. A change below the checkpoint is
//! not read at start (the start does not grow with the log); the full check finds it, beside the serving
//! agent (`edge.witness`, action `verify`, progress and result on the status topic) and in
//! `ifctl witness verify`.

use std::process::Command;
use std::time::{Duration, Instant};

use if_edge::witness::record::Record;
use if_protocol::envelope::EnvelopeBody;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;
use redb::ReadableTable as _;

/// Rewrites record `index`'s reason text, as someone with access to the file could.
fn rewrite_record(agent: &Agent, index: u64) {
    let db = redb::Database::open(agent.db()).expect("db");
    let txn = db.begin_write().expect("txn");
    {
        let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("records");
        let mut t = txn.open_table(def).expect("table");
        let leaf = t.get(index).expect("get").expect("row").value().to_vec();
        let mut r = Record::from_leaf(&leaf).expect("decode");
        r.entry.why = "nothing to see".into();
        t.insert(index, r.to_leaf().expect("encode").as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// `n` pings answered.
fn pings(probe: &Probe, desk: &Talent, n: usize) {
    for _ in 0..n {
        probe.publish(desk.sign(&desk.next_ping()));
    }
    assert_eq!(probe.until_replies(n, Duration::from_secs(10)).len(), n, "{n} pings answered");
}

fn witness_verify(desk: &Talent) -> EnvelopeBody {
    let mut body = desk.next_ping();
    body.capability = "if://capability/edge.witness".try_into().expect("short");
    body.action = "verify".try_into().expect("short");
    body
}

#[test]
fn a_changed_record_after_the_newest_checkpoint_stops_the_agent_before_it_takes_work() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    pings(&probe, &desk, 3);
    agent.stop();
    let signed = agent.export().len() as u64;
    // A second run ends in a crash: its records are after the newest checkpoint, the one of the stop.
    agent.start();
    pings(&probe, &desk, 3);
    agent.kill9();
    assert!(agent.export().len() as u64 >= signed + 7, "BOOT and three pings after the checkpoint");
    rewrite_record(&agent, signed + 2);

    let out = Command::new(if_tests::bin("if-edge"))
        .args(["run", "--config", agent.config().to_str().expect("utf8")])
        .output()
        .expect("run if-edge");
    assert_eq!(out.status.code(), Some(10), "INVALID_PROOF exits 10");
    let err = String::from_utf8_lossy(&out.stderr);
    let named = format!("record {}", signed + 3);
    assert!(err.contains("IF_ERR_006 INVALID_PROOF") && err.contains(&named), "{named}: {err}");
    assert!(!err.contains("connected to the broker"), "it never connected: {err}");
}

#[test]
fn a_changed_record_below_the_newest_checkpoint_is_not_read_at_start_and_the_full_check_beside_the_agent_finds_it() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    // Enough records that record 2 lies under a stored tree node (16 leaves and up): the start reads the
    // leaves of a smaller peak of the checkpoint's tree.
    pings(&probe, &desk, 10);
    agent.stop();
    let signed = agent.export().len() as u64;
    assert!(signed >= 16, "{signed} records");
    rewrite_record(&agent, 2);

    agent.start();
    let checked =
        agent.log().lines().rev().find(|l| l.contains("checked from its newest checkpoint")).map(String::from);
    let checked = checked.unwrap_or_else(|| panic!("no start-up check logged: {}", agent.log()));
    assert!(
        checked.contains(&format!("from_checkpoint={signed}")) && checked.contains("records_read=0"),
        "read nothing below the checkpoint at {signed}: {checked}"
    );
    let watcher = Probe::connect(&broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    probe.publish(desk.sign(&witness_verify(&desk)));
    let reply = probe.until_replies(1, Duration::from_secs(10)).pop().expect("the verify command is answered");
    let state = &reply.json()["result"]["state"];
    assert!(state == "running" || state == "failed", "answered at once with the check's state: {}", reply.json());

    // The status shows the check's end: it failed where record 3 no longer links to the changed record 2.
    let end = Instant::now() + Duration::from_secs(20);
    let check = loop {
        assert!(Instant::now() < end, "no status with the check's end");
        let Some(m) = watcher.next_on(&watcher.topics.status, Duration::from_secs(1)) else { continue };
        let status = if_protocol::attest::verify(
            &if_edge::keyfile::read_public(&agent.public_key()).expect("key"),
            if_protocol::attest::PUBLISH_DOMAIN,
            &if_protocol::attest::topic_context(&watcher.topics.status),
            &m.payload,
        )
        .expect("the status is the agent's");
        let status: serde_json::Value = serde_json::from_slice(&status).expect("status JSON");
        if status["log_check"]["state"] == "failed" || status["log_check"]["state"] == "passed" {
            break status["log_check"].clone();
        }
    };
    assert_eq!(check["state"], "failed", "{check}");
    assert_eq!(check["index"], 3, "{check}");
    assert!(check["error"].as_str().is_some_and(|e| e.contains("IF_ERR_006")), "{check}");

    // The agent served all along, and the offline check says the same.
    pings(&probe, &desk, 3);
    agent.stop();
    let out = agent.verify_witness();
    assert!(!out.status.success(), "ifctl witness verify fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("first bad index 3"), "{out:?}");
}
