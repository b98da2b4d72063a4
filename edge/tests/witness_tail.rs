//! The start-up check from the newest checkpoint, on redb files on disk: it reads only the records after
//! the checkpoint, and every change the contract says it catches stops it (a record after the
//! checkpoint, the record just below it, a tree node of the checkpoint's peaks, the head, a lost or
//! foreign checkpoint). A change below the checkpoint passes it and is found by the full check.

use ed25519_dalek::SigningKey;
use if_edge::if_protocol::witness::Hash;
use if_edge::witness::record::{Entry, Kind, Record};
use if_edge::witness::store::{Append, CheckpointSigner, Store};
use if_edge::witness::tail::{Checked, check};
use if_edge::witness::verify::{Fault, verify};
use redb::ReadableTable as _;

const ORIGIN: &str = "local/if-edge/test.tail";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A log of `signed` records with a checkpoint at that size, then `after` more records.
fn log(path: &std::path::Path, signed: u64, after: u64) {
    let mut store = Store::open(path, 1 << 20).expect("open");
    let signer = CheckpointSigner { key: key(), origin: ORIGIN.into(), every: u64::MAX };
    let record = |i: u64| {
        let trace = i.is_multiple_of(2).then(|| uuid::Uuid::from_u128(u128::from(i % 7) + 1));
        Append::record(Kind::Executed, Entry { wall_ms: i, trace, count: 1, ..Entry::default() })
    };
    for chunk in (0..signed).collect::<Vec<_>>().chunks(100) {
        store.append(chunk.iter().map(|&i| record(i)).collect::<Vec<_>>(), None).expect("append");
    }
    assert!(store.checkpoint_now(&signer).expect("checkpoint"));
    let tail: Vec<Append> = (signed..signed + after).map(record).collect();
    store.append(tail, None).expect("append tail");
}

fn start_check(path: &std::path::Path) -> Result<Checked, Fault> {
    let mut store = Store::open_existing(path).expect("open");
    check(&store.snapshot().expect("snapshot"), &key().verifying_key(), ORIGIN)
}

fn full_check(path: &std::path::Path) -> Result<u64, Fault> {
    let mut store = Store::open_existing(path).expect("open");
    verify(&mut store, Some(&key().verifying_key()), Some(ORIGIN)).map(|r| r.size)
}

/// Changes record `index`'s reason text in place, as someone with the file could.
fn rewrite_record(path: &std::path::Path, index: u64) {
    with_table::<u64, &[u8]>(path, "records", |t| {
        let mut record = Record::from_leaf(t.get(index).expect("get").expect("row").value()).expect("decode");
        record.entry.why = "nothing to see".into();
        t.insert(index, record.to_leaf().expect("encode").as_slice()).expect("insert");
    });
}

fn with_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &std::path::Path,
    name: &str,
    f: impl FnOnce(&mut redb::Table<'_, K, V>),
) {
    let db = redb::Database::open(path).expect("db");
    let txn = db.begin_write().expect("txn");
    f(&mut txn.open_table(redb::TableDefinition::<K, V>::new(name)).expect("table"));
    txn.commit().expect("commit");
}

fn fails_at(result: Result<Checked, Fault>) -> u64 {
    match result {
        Ok(c) => panic!("the start-up check passed: {c:?}"),
        Err(f) => f.index,
    }
}

#[test]
fn the_check_reads_only_the_records_after_the_newest_checkpoint() {
    let dir = tempfile::tempdir().expect("dir");
    for (signed, after) in [(1000, 37), (4096, 5), (1, 0), (12_345, 0)] {
        let path = dir.path().join(format!("w{signed}.redb"));
        log(&path, signed, after);
        let checked = start_check(&path).expect("the start-up check passes");
        assert_eq!(checked, Checked { from: signed, size: signed + after, read: after }, "{signed}+{after}");
    }
    // With no checkpoint yet, every record is read.
    let path = dir.path().join("unsigned.redb");
    let mut store = Store::open(&path, 1 << 20).expect("open");
    store.append(vec![Append::record(Kind::Boot, Entry::default())], None).expect("append");
    drop(store);
    assert_eq!(start_check(&path).expect("passes"), Checked { from: 0, size: 1, read: 1 });
}

#[test]
fn a_changed_record_below_the_checkpoint_passes_the_start_and_fails_the_full_check() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("w.redb");
    log(&path, 500, 20);
    rewrite_record(&path, 200);
    assert_eq!(start_check(&path).expect("the start does not read record 200").read, 20);
    let fault = full_check(&path).expect_err("the full check reads every record");
    assert_eq!(fault.index, 201, "record 201 no longer links to record 200: {:?}", fault.error);
}

#[test]
fn a_changed_record_after_the_checkpoint_or_just_below_it_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    // A change after the checkpoint is named where the chain breaks (the next record, or the head); a
    // change to the record below it where the checkpoint's root no longer comes out.
    for (changed, named) in [(510, 511), (519, 520), (499, 500)] {
        let path = dir.path().join(format!("w{changed}.redb"));
        log(&path, 500, 20);
        rewrite_record(&path, changed);
        assert_eq!(fails_at(start_check(&path)), named, "record {changed} changed");
    }
    // Just below a checkpoint at a multiple of 16, whose lowest peak is a stored node.
    let path = dir.path().join("w512.redb");
    log(&path, 512, 3);
    rewrite_record(&path, 511);
    assert_eq!(fails_at(start_check(&path)), 511);
}

#[test]
fn a_forged_tree_node_on_the_checkpoints_peaks_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("w.redb");
    // 1000 = 512 + 256 + 128 + 64 + 32 + 8: the peak of 512 leaves is the stored node (511, 9).
    log(&path, 1000, 4);
    with_table::<(u64, u8), Hash>(&path, "nodes", |t| {
        t.insert((511, 9), [0xee; 32]).expect("forge");
    });
    assert_eq!(fails_at(start_check(&path)), 1000);
    let path = dir.path().join("lost.redb");
    log(&path, 1000, 4);
    with_table::<(u64, u8), Hash>(&path, "nodes", |t| {
        t.remove((767, 8)).expect("remove");
    });
    assert_eq!(fails_at(start_check(&path)), 1000, "a lost node of a peak");
}

#[test]
fn a_lost_or_foreign_checkpoint_or_a_changed_head_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let lost = dir.path().join("lost.redb");
    log(&lost, 300, 2);
    with_table::<u64, &str>(&lost, "checkpoints", |t| {
        t.remove(300).expect("remove");
    });
    assert_eq!(fails_at(start_check(&lost)), 300, "the head names the lost checkpoint");

    let foreign = dir.path().join("foreign.redb");
    log(&foreign, 300, 2);
    let other = CheckpointSigner { key: SigningKey::from_bytes(&[1; 32]), origin: ORIGIN.into(), every: 1 };
    let mut store = Store::open(&foreign, 1 << 20).expect("open");
    store.append(vec![Append::record(Kind::Boot, Entry::default())], Some(&other)).expect("append");
    drop(store);
    assert_eq!(fails_at(start_check(&foreign)), 303, "signed by another key");

    let head = dir.path().join("head.redb");
    log(&head, 300, 2);
    with_table::<u64, &[u8]>(&head, "records", |t| {
        t.remove(301).expect("remove the last record");
    });
    assert_eq!(fails_at(start_check(&head)), 301, "the head counts a record the log lost");
}
