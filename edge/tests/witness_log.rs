//! The witness log on disk: appends, restarts, interrupted commands, checkpoints and tamper detection.

use ed25519_dalek::SigningKey;
use if_edge::if_protocol::ErrorCode;
use if_edge::if_protocol::replay::ReplayWindow;
use if_edge::witness::boot;
use if_edge::witness::record::{Entry, Kind, Record};
use if_edge::witness::store::{Append, CheckpointSigner, Pending, Store};
use if_edge::witness::verify::verify;
use redb::ReadableTable as _;

fn signer(every: u64) -> CheckpointSigner {
    CheckpointSigner { key: SigningKey::from_bytes(&[7; 32]), origin: "local/if-edge/test.a".into(), every }
}

fn entry(sender: &str, seq: u64) -> Entry {
    Entry {
        wall_ms: 1000 + seq,
        sender: sender.into(),
        seq: Some(seq),
        count: 1,
        digest: Some([seq as u8; 32]),
        ..Entry::default()
    }
}

fn received(sender: &str, seq: u64) -> Append {
    let mut a = Append::record(Kind::Received, entry(sender, seq));
    let mut w = ReplayWindow::new(64).expect("width");
    w.accept(seq).expect("new");
    a.replay = Some((sender.into(), w));
    a.pending = Some(Pending {
        sender: sender.into(),
        seq,
        digest: [seq as u8; 32],
        entry: entry(sender, seq),
        reply_topic: Some("r/t".into()),
        correlation: Some(vec![seq as u8]),
    });
    a
}

#[test]
fn appends_survive_reopen_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    let s = signer(3);
    {
        let mut store = Store::open(&path, 1 << 20).expect("open");
        boot::start(&mut store, 1, "test", interrupted_reply).expect("boot");
        let idx = store.append(vec![received("desk", 1), received("desk", 2)], Some(&s)).expect("append");
        assert_eq!(idx, vec![1, 2]);
        assert_eq!(store.last_checkpoint_size(), 3, "a checkpoint is due after 3 records");
    }
    let mut store = Store::open(&path, 1 << 20).expect("reopen");
    assert_eq!(store.size(), 3);
    assert_eq!(store.replay_windows().expect("windows")["desk"].top(), Some(2));
    let report = verify(&mut store, Some(&s.key.verifying_key()), Some(&s.origin)).expect("verifies");
    assert_eq!((report.size, report.checkpoints), (3, 1));
    assert_eq!(report.kinds.get("RECEIVED"), Some(&2));
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    let fault = verify(&mut store, Some(&other), Some(&s.origin)).expect_err("wrong key");
    assert_eq!((fault.index, fault.error.code()), (3, ErrorCode::InvalidProof));
}

fn interrupted_reply(index: u64, p: &if_edge::witness::store::Pending) -> Vec<u8> {
    if_edge::reply::Reply::interrupted(&p.entry, index).to_bytes()
}

#[test]
fn boot_interrupts_open_received_records_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    let mut store = Store::open(&path, 1 << 20).expect("open");
    boot::start(&mut store, 1, "first", interrupted_reply).expect("boot");
    store.append(vec![received("desk", 1), received("desk", 2)], None).expect("append");
    let mut settle = Append::record(Kind::Executed, entry("desk", 1));
    settle.settles = Some(1);
    store.append(vec![settle], None).expect("settle");
    drop(store);
    let mut store = Store::open(&path, 1 << 20).expect("reopen");
    let interrupted = boot::start(&mut store, 2, "second", interrupted_reply).expect("boot");
    assert_eq!(interrupted.len(), 1, "only seq 2 had no outcome");
    assert_eq!(interrupted[0].pending.seq, 2);
    assert_eq!(interrupted[0].pending.reply_topic.as_deref(), Some("r/t"), "the sender can still be told");
    assert!(store.pending().expect("pending").is_empty());
    let replies = store.replies().expect("replies");
    let cached = &replies[&("desk".to_string(), 2)];
    let reply: serde_json::Value = serde_json::from_slice(&cached.reply).expect("json");
    assert_eq!(reply["error"]["code"], "IF_ERR_500");
    assert_eq!(cached.reply, interrupted[0].reply);
    assert!(
        boot::start(&mut store, 3, "third", interrupted_reply).expect("boot").is_empty(),
        "never interrupted twice"
    );
    let mut kinds = Vec::new();
    store
        .for_each_leaf(0, |_, leaf| {
            kinds.push(Record::from_leaf(leaf)?.kind);
            Ok(())
        })
        .expect("scan");
    assert_eq!(
        kinds,
        [Kind::Boot, Kind::Received, Kind::Received, Kind::Executed, Kind::Boot, Kind::Interrupted, Kind::Boot]
    );
    assert_eq!(store.boot_counter(), 3);
}

#[test]
fn a_tampered_record_is_found_by_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.redb");
    let mut store = Store::open(&path, 1 << 20).expect("open");
    boot::start(&mut store, 1, "x", interrupted_reply).expect("boot");
    for seq in 1..=5 {
        store.append(vec![received("desk", seq)], None).expect("append");
    }
    drop(store);
    // Rewrite record 3 with another sender, as someone with access to the file could.
    {
        let db = redb::Database::open(&path).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("records");
            let mut t = txn.open_table(def).expect("table");
            let leaf = t.get(3).expect("get").expect("row").value().to_vec();
            let mut r = Record::from_leaf(&leaf).expect("decode");
            r.entry.sender = "mallory".into();
            t.insert(3, r.to_leaf().expect("enc").as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let mut store = Store::open_existing(&path).expect("open");
    let fault = verify(&mut store, None, None).expect_err("tamper found");
    assert_eq!(fault.index, 4, "record 4 no longer links to record 3");
    assert_eq!(fault.error.code(), ErrorCode::InvalidProof);
}

#[test]
fn a_missing_file_is_not_created_by_inspection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("none.redb");
    assert_eq!(Store::open_existing(&path).expect_err("missing").code(), ErrorCode::ConfigInvalid);
    assert!(!path.exists());
}
