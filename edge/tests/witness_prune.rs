//! Pruning on a redb file on disk: records the archive acknowledged leave with their trace index rows
//! and the tree's nodes under 256 leaves, and nothing else a later proof needs: the tree head, consistency
//! proofs from a kept checkpoint size, bundle and part inclusion proofs and the full check from the
//! boundary come out as before. A trace query says where the log was pruned; nothing past what the
//! archive acknowledged goes.

use ed25519_dalek::SigningKey;
use if_edge::witness::proof::{consistency_of, range_root, subtree_inclusion_of};
use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, CheckpointSigner, Store};
use if_edge::witness::verify::verify;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

const SIZE: u64 = 3000;

fn trace_of(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from(i.div_ceil(2)) + 1)
}

/// `SIZE` records, two to a trace, with checkpoints at 2000, 2560 (where the log is pruned) and `SIZE`.
fn log(path: &std::path::Path) -> Store {
    let mut store = Store::open(path, 1 << 20).expect("open");
    let signer =
        CheckpointSigner { key: SigningKey::from_bytes(&[3; 32]), origin: "o/if-edge/a".into(), every: u64::MAX };
    let record =
        |i: u64| Append::record(Kind::Executed, Entry { wall_ms: i, trace: Some(trace_of(i)), ..Entry::default() });
    for (from, to) in [(0, 2000), (2000, 2560), (2560, SIZE)] {
        store.append((from..to).map(record).collect::<Vec<_>>(), None).expect("append");
        assert!(store.checkpoint_now(&signer).expect("checkpoint"));
    }
    store
}

/// What the proofs of a kept checkpoint size, a bundle and a part at the boundary come to.
fn proofs(store: &mut Store) -> Vec<Vec<[u8; 32]>> {
    let snap = store.snapshot().expect("snapshot");
    vec![
        vec![range_root(&snap, 0, SIZE).expect("head")],
        consistency_of(&snap, 2560, SIZE).expect("from the boundary"),
        consistency_of(&snap, 2600, SIZE).expect("from past it"),
        subtree_inclusion_of(&snap, 2560, 256, SIZE).expect("the bundle at the boundary"),
        subtree_inclusion_of(&snap, 2560 + 64, 64, SIZE).expect("a part of it"),
        subtree_inclusion_of(&snap, 2816, 184, SIZE).expect("the right edge"),
    ]
}

#[test]
fn pruning_takes_trace_rows_and_small_nodes_with_the_records_and_every_later_proof_stays_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("witness.redb");
    let mut store = log(&path);
    let before = proofs(&mut store);
    store.set_archived(2560).expect("archived");
    let pruned = store.prune(u64::MAX, u64::MAX).expect("prune").expect("pruned");
    assert_eq!(pruned.below, 2560, "up to what the archive acknowledged, in whole bundles");
    assert_eq!(store.prune(u64::MAX, u64::MAX).expect("prune"), None, "nothing past it");
    assert_eq!(proofs(&mut store), before, "the same head and proofs");
    let report = verify(&mut store, None, None).expect("the kept log verifies");
    assert_eq!((report.from, report.size), (2560, SIZE));
    assert_eq!(report.checkpoints, 2, "the one at the boundary and the newest");

    let snap = store.snapshot().expect("snapshot");
    let gone = snap.trace(trace_of(10), 10).expect("query");
    assert_eq!((gone.records.len(), gone.pruned_below), (0, 2560), "{gone:?}");
    assert!(!snap.trace_lists(trace_of(10), 10).expect("read"), "its index row went with it");
    // 2559 and 2560 share a trace: the kept one is found, and the query says where the other went.
    let half = snap.trace(trace_of(2560), 10).expect("query");
    let found: Vec<u64> = half.records.iter().map(|(r, _)| r.index).collect();
    assert_eq!((found, half.pruned_below), (vec![2560], 2560));
    drop(snap);
    drop(store);

    let nodes: TableDefinition<'_, (u64, u8), [u8; 32]> = TableDefinition::new("nodes");
    let traces: TableDefinition<'_, (u128, u64), ()> = TableDefinition::new("traces");
    let db = redb::Database::open(&path).expect("db");
    let txn = db.begin_read().expect("read");
    let kept: Vec<(u64, u8)> =
        txn.open_table(nodes).expect("nodes").iter().expect("iter").map(|r| r.expect("row").0.value()).collect();
    assert!(
        kept.iter().all(|&(last, level)| last >= 2560 || level >= 8),
        "no node under 256 leaves below the boundary"
    );
    assert!(kept.contains(&(255, 8)) && kept.contains(&(2047, 11)), "the larger ones stay: {kept:?}");
    let rows = txn.open_table(traces).expect("traces").iter().expect("iter").map(|r| r.expect("row").0.value().1).min();
    assert_eq!(rows, Some(2560), "no trace row below the boundary");
}
