//! What reading the witness log beside its writer costs as the log grows: `anchor::pending` (one
//! consistency proof per pending anchor, from the stored tree nodes) with one anchor pending (the usual
//! round) and with every checkpoint pending (after an outage), and a trace query through the trace index
//! against a scan of every record. Also the append rate and the bytes per record, which pay for the nodes
//! and the index, and how long a log written without them takes to be indexed when opened. Measured on
//! witness files of 10k to 2M records, each record with a trace shared by two (RECEIVED, EXECUTED).
//!
//! `cargo bench -p if-tests --bench anchor_proofs`

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use if_edge::witness::record::Record;
use if_edge::witness::store::{CheckpointSigner, Store};

fn trace(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x6f1c_2a4e_0000_0000_0000_0000_0000_0000 | u128::from(i / 2))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Best of three runs of `f`.
fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let v = f();
        fastest = fastest.min(start.elapsed());
        out = Some(v);
    }
    (fastest, out.expect("ran"))
}

/// Bytes in the pages redb has allocated (the file itself grows in larger steps).
fn used_bytes(path: &std::path::Path) -> u64 {
    let db = redb::Database::open(path).expect("db");
    let stats = db.begin_write().expect("txn").stats().expect("stats");
    stats.allocated_pages() * stats.page_size() as u64
}

/// How long opening a log without tree nodes or trace index takes (it builds both).
fn index_on_open(path: &std::path::Path) -> Duration {
    {
        let db = redb::Database::open(path).expect("db");
        let txn = db.begin_write().expect("txn");
        let nodes: redb::TableDefinition<'_, (u64, u8), [u8; 32]> = redb::TableDefinition::new("nodes");
        let traces: redb::TableDefinition<'_, (u128, u64), ()> = redb::TableDefinition::new("traces");
        txn.delete_table(nodes).expect("delete");
        txn.delete_table(traces).expect("delete");
        txn.commit().expect("commit");
    }
    let start = Instant::now();
    let store = Store::open(path, 16 << 20).expect("open and index");
    let took = start.elapsed();
    assert!(store.size() > 0);
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("anchor_proofs: bench");
        return;
    }
    println!("machine: {} cpus", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!(
        "{:>9} {:>12} {:>12} {:>16} {:>16} {:>12} {:>12} {:>12}",
        "records", "append/s", "B/record", "1 pending", "all pending", "query", "scan", "index old"
    );
    for n in [10_000u64, 100_000, 500_000, 2_000_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("w.redb"), 16 << 20).expect("open");
        let signer =
            CheckpointSigner { key: SigningKey::from_bytes(&[3; 32]), origin: "b/if-edge/s.a".into(), every: n / 10 };
        let start = Instant::now();
        if_tests::bench::fill_log(&mut store, n, &signer);
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let sizes: Vec<u64> = store.checkpoints().expect("checkpoints").into_iter().map(|(s, _)| s).collect();
        let reader = store.reader().expect("reader");
        let round = |store: &mut Store, acked: u64| {
            store.set_anchored(acked).expect("anchored");
            best(|| if_edge::anchor::pending(&reader.snapshot().expect("snapshot"), "s/a").expect("pending").1.len())
        };
        let (all, k_all) = round(&mut store, 0);
        let (one, k_one) = round(&mut store, sizes[sizes.len() - 2]);
        let wanted = trace(n / 2);
        let (query, found) = best(|| reader.snapshot().expect("snapshot").trace(wanted, 256).expect("query"));
        assert_eq!(found.records.len(), 2);
        let (scan, hits) = best(|| {
            let mut hits = 0;
            let log = reader.snapshot().expect("snapshot");
            log.for_each_leaf(0, |_, leaf| {
                hits += usize::from(Record::from_leaf(leaf)?.entry.trace == Some(wanted));
                Ok(())
            })
            .expect("scan");
            hits
        });
        assert_eq!(hits, 2);
        drop((reader, store));
        let bytes = used_bytes(&dir.path().join("w.redb")) as f64 / n as f64;
        let build = index_on_open(&dir.path().join("w.redb"));
        println!(
            "{n:>9} {rate:>12.0} {bytes:>12.0} {:>10.3} ms ({k_one}) {:>9.3} ms ({k_all:>2}) {:>9.3} ms {:>9.1} ms {:>9.0} ms",
            ms(one),
            ms(all),
            ms(query),
            ms(scan),
            ms(build),
        );
    }
}
