//! Cold start: the agent checks its witness log before it takes work, and refuses to start on a log that
//! was changed behind its back, naming the record.

use std::process::Command;

use if_edge::witness::record::Record;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;
use redb::ReadableTable as _;

#[test]
fn a_tampered_log_stops_the_agent_before_it_takes_work() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    for _ in 0..3 {
        probe.publish(desk.sign(&desk.next_ping()));
    }
    assert_eq!(probe.until_replies(3, std::time::Duration::from_secs(10)).len(), 3, "the log has records");
    agent.stop();

    // Rewrite record 2's reason text, as someone with access to the file could.
    {
        let db = redb::Database::open(agent.db()).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("records");
            let mut t = txn.open_table(def).expect("table");
            let leaf = t.get(2).expect("get").expect("row").value().to_vec();
            let mut r = Record::from_leaf(&leaf).expect("decode");
            r.entry.why = "nothing to see".into();
            t.insert(2, r.to_leaf().expect("encode").as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }

    let out = Command::new(if_tests::bin("if-edge"))
        .args(["run", "--config", agent.config().to_str().expect("utf8")])
        .output()
        .expect("run if-edge");
    assert_eq!(out.status.code(), Some(10), "INVALID_PROOF exits 10");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IF_ERR_006 INVALID_PROOF") && err.contains("record 3"), "{err}");
    assert!(!err.contains("connected to the broker"), "it never connected: {err}");
}
