//! What offering anchors costs the agent as its log grows: `anchor::pending` reads every leaf up to the
//! newest checkpoint and builds one consistency proof per pending anchor. Measured on witness files of
//! 10k, 100k and 500k records, with one anchor pending (the usual case) and with ten (after an outage).
//!
//! `cargo bench -p if-tests --bench anchor_proofs`

use std::time::Instant;

use ed25519_dalek::SigningKey;
use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, CheckpointSigner, Store};

fn fill(store: &mut Store, n: u64, signer: &CheckpointSigner) {
    let entry = Entry {
        sender: "desk".into(),
        capability: "if://capability/vmix.switcher".into(),
        action: "cut".into(),
        why: "bench".into(),
        count: 1,
        ..Entry::default()
    };
    let mut left = n;
    while left > 0 {
        let k = left.min(4096);
        let batch: Vec<Append> = (0..k).map(|_| Append::record(Kind::Executed, entry.clone())).collect();
        store.append(&batch, Some(signer)).expect("append");
        left -= k;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("anchor_proofs: bench");
        return;
    }
    println!("machine: {} cpus", std::thread::available_parallelism().map_or(0, |n| n.get()));
    for n in [10_000u64, 100_000, 500_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("w.redb"), 16 << 20).expect("open");
        let signer =
            CheckpointSigner { key: SigningKey::from_bytes(&[3; 32]), origin: "b/if-edge/s.a".into(), every: n / 10 };
        fill(&mut store, n, &signer);
        let sizes: Vec<u64> = store.checkpoints().expect("checkpoints").into_iter().map(|(s, _)| s).collect();
        let mut time = |acked: u64| {
            if acked > 0 {
                store.set_anchored(acked).expect("anchored");
            }
            let start = Instant::now();
            let (_, pending) = if_edge::anchor::pending(&store.reader().expect("reader"), "s/a").expect("pending");
            (start.elapsed(), pending.len())
        };
        let (all, k_all) = time(0);
        let (one, k_one) = time(sizes[sizes.len() - 2]);
        println!(
            "{n:>7} records: {k_all} anchors pending {:>8.1} ms; {k_one} pending {:>8.1} ms",
            all.as_secs_f64() * 1e3,
            one.as_secs_f64() * 1e3
        );
    }
}
