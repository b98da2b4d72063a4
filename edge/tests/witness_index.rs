//! What the witness log keeps beside its records: the root of every perfect subtree (anchor proofs are
//! read from them) and the trace index (witness queries). Proofs and queries from the stored tree must
//! equal those rebuilt from the leaves; a log without either is read by rehashing and scanning, and
//! indexed when next opened for writing; a tampered node or a lost index entry fails verification.

use ed25519_dalek::SigningKey;
use if_edge::if_protocol::ErrorCode;
use if_edge::if_protocol::witness::Hash;
use if_edge::if_protocol::witness::checkpoint::NoteVerifier;
use if_edge::if_protocol::witness::proof::verify_consistency;
use if_edge::witness::proof::{consistency, consistency_of, range_root};
use if_edge::witness::reader::Snapshot;
use if_edge::witness::record::{Entry, Kind, Record};
use if_edge::witness::store::{Append, CheckpointSigner, Store};
use if_edge::witness::verify::verify;

const ORIGIN: &str = "local/if-edge/test.a";

fn signer(every: u64) -> CheckpointSigner {
    CheckpointSigner { key: SigningKey::from_bytes(&[7; 32]), origin: ORIGIN.into(), every }
}

fn trace(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0xabcd_0000_0000_0000_0000_0000_0000_0000 | u128::from(n))
}

/// `n` records in batches of various sizes; record `i` carries trace `i % 5` when `i % 3 != 0`.
fn log(path: &std::path::Path, n: u64, every: u64) {
    let mut store = Store::open(path, 1 << 20).expect("open");
    let s = signer(every);
    let mut i = 0;
    while i < n {
        let k = (1 + i % 11).min(n - i);
        let batch: Vec<Append> = (i..i + k)
            .map(|j| {
                let t = (j % 3 != 0).then(|| trace(j % 5));
                Append::record(Kind::Executed, Entry { wall_ms: j, trace: t, count: 1, ..Entry::default() })
            })
            .collect();
        store.append(batch, Some(&s)).expect("append");
        i += k;
    }
}

fn leaves(log: &Snapshot) -> Vec<Hash> {
    let mut out = Vec::new();
    log.for_each_leaf(0, |_, leaf| {
        out.push(Record::leaf_hash(leaf));
        Ok(())
    })
    .expect("scan");
    out
}

/// Every pair of checkpoints proves consistent from the snapshot, and the proof is the one the leaves give.
fn proofs_match(log: &Snapshot) -> usize {
    let leaves = leaves(log);
    let verifier = NoteVerifier::new(ORIGIN, signer(1).key.verifying_key()).expect("verifier");
    let cps: Vec<(u64, Hash)> = log
        .checkpoints()
        .expect("checkpoints")
        .iter()
        .map(|(size, note)| (*size, verifier.open_checkpoint(note, ORIGIN).expect("signed").root))
        .collect();
    for &(m, r1) in &cps {
        assert_eq!(range_root(log, 0, m).expect("head"), r1, "the stored tree gives the signed root at {m}");
        for &(n, r2) in cps.iter().filter(|(n, _)| *n >= m) {
            let proof = consistency_of(log, m, n).expect("proof");
            assert_eq!(proof, consistency(m as usize, &leaves[..n as usize]), "{m} -> {n}");
            assert!(verify_consistency(m, n, &r1, &r2, &proof).is_ok(), "{m} -> {n}");
        }
    }
    cps.len()
}

fn kinds_of(found: &if_edge::witness::reader::TraceRecords) -> Vec<u64> {
    found.records.iter().map(|(r, _)| r.index).collect()
}

#[test]
fn proofs_from_the_stored_tree_equal_proofs_from_the_leaves_between_every_pair_of_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    log(&path, 333, 17);
    let mut store = Store::open(&path, 1 << 20).expect("open");
    let snapshot = store.snapshot().expect("snapshot");
    assert!(snapshot.indexed());
    assert!(proofs_match(&snapshot) >= 12, "checkpoints every 17 records or so");
    assert!(range_root(&snapshot, 0, 334).is_err(), "no subtree beyond the log");
}

#[test]
fn a_trace_query_returns_the_newest_records_of_that_trace_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    log(&path, 100, 1000);
    let mut store = Store::open(&path, 1 << 20).expect("open");
    let log = store.snapshot().expect("snapshot");
    let want: Vec<u64> = (0..100).filter(|j| j % 3 != 0 && j % 5 == 2).collect();
    let all = log.trace(trace(2), usize::MAX).expect("query");
    assert_eq!((kinds_of(&all), all.older), (want.clone(), 0));
    assert!(
        all.records.iter().all(|(r, leaf)| r.entry.trace == Some(trace(2)) && r.to_leaf().ok().as_ref() == Some(leaf))
    );
    let newest = log.trace(trace(2), 3).expect("query");
    assert_eq!((kinds_of(&newest), newest.older), (want[want.len() - 3..].to_vec(), want.len() - 3));
    assert!(log.trace(trace(99), 10).expect("query").records.is_empty());
}

/// Drops the tree nodes and the trace index, as a log written before they were kept has neither.
fn unindex(path: &std::path::Path) {
    let db = redb::Database::open(path).expect("db");
    let txn = db.begin_write().expect("txn");
    let nodes: redb::TableDefinition<'_, (u64, u8), Hash> = redb::TableDefinition::new("nodes");
    let traces: redb::TableDefinition<'_, (u128, u64), ()> = redb::TableDefinition::new("traces");
    assert!(txn.delete_table(nodes).expect("delete"));
    assert!(txn.delete_table(traces).expect("delete"));
    txn.commit().expect("commit");
}

#[test]
fn a_log_without_tree_nodes_or_trace_index_is_read_by_rehashing_and_indexed_when_next_opened_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    log(&path, 150, 20);
    let indexed_answer = {
        let mut store = Store::open_existing(&path).expect("open");
        kinds_of(&store.snapshot().expect("snapshot").trace(trace(4), usize::MAX).expect("query"))
    };
    unindex(&path);

    let mut old = Store::open_existing(&path).expect("inspect without writing");
    let snapshot = old.snapshot().expect("snapshot");
    assert!(!snapshot.indexed());
    assert!(proofs_match(&snapshot) >= 5, "proofs by rehashing the leaves");
    assert_eq!(kinds_of(&snapshot.trace(trace(4), usize::MAX).expect("scan")), indexed_answer);
    verify(&mut old, None, None).expect("an unindexed log still verifies");
    drop((snapshot, old));

    let mut store = Store::open(&path, 1 << 20).expect("open to write");
    let snapshot = store.snapshot().expect("snapshot");
    assert!(snapshot.indexed(), "built on open");
    assert!(proofs_match(&snapshot) >= 5);
    assert_eq!(kinds_of(&snapshot.trace(trace(4), usize::MAX).expect("query")), indexed_answer);
    drop(snapshot);
    verify(&mut store, None, None).expect("the built index matches the records");
}

#[test]
fn a_tampered_tree_node_or_a_lost_trace_entry_fails_verification_at_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    log(&path, 64, 16);
    {
        let db = redb::Database::open(&path).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<'_, (u64, u8), Hash> = redb::TableDefinition::new("nodes");
            let mut t = txn.open_table(def).expect("table");
            // The subtree of leaves 32..48 completes with record 47.
            t.insert((47, 4), [0x66; 32]).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let mut store = Store::open_existing(&path).expect("open");
    let fault = verify(&mut store, None, None).expect_err("a forged node");
    assert_eq!((fault.index, fault.error.code()), (47, ErrorCode::InvalidProof));
    assert!(fault.error.detail().contains("tree node"), "{}", fault.error.detail());
    drop(store);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    log(&path, 64, 16);
    {
        let db = redb::Database::open(&path).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<'_, (u128, u64), ()> = redb::TableDefinition::new("traces");
            let mut t = txn.open_table(def).expect("table");
            assert!(t.remove((trace(10 % 5).as_u128(), 10)).expect("remove").is_some());
        }
        txn.commit().expect("commit");
    }
    let mut store = Store::open_existing(&path).expect("open");
    let fault = verify(&mut store, None, None).expect_err("a lost trace entry");
    assert_eq!(fault.index, 10);
    assert!(fault.error.detail().contains("trace index"), "{}", fault.error.detail());
}
