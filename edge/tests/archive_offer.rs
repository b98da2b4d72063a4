//! Entry bundles as the uplink offers them, from a redb log on disk: a bundle of small records goes as one
//! message; one too large for a message goes as parts, each under the limit, in order, covering the
//! bundle exactly, and each proven on its own in the checkpoint's tree.

use if_edge::anchor::archive::{MAX_MESSAGE, offer};
use if_edge::if_protocol::messages::{Bundle, Part};
use if_edge::witness::proof::range_root;
use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, Store};

/// A log of `n` records, each with `detail` bytes of device answer.
fn log(path: &std::path::Path, n: u64, detail: usize) -> Store {
    let mut store = Store::open(path, 1 << 20).expect("open");
    let record = |i: u64| {
        let detail = format!("{i:08}").repeat(detail / 8 + 1)[..detail].to_string();
        Append::record(Kind::Executed, Entry { wall_ms: i, count: 1, detail, ..Entry::default() })
    };
    store.append((0..n).map(record).collect::<Vec<_>>(), None).expect("append");
    store
}

fn bundles(messages: &[Vec<u8>]) -> Vec<Bundle> {
    messages.iter().map(|m| serde_json::from_slice(m).expect("a bundle")).collect()
}

#[test]
fn a_bundle_too_large_for_one_message_goes_in_parts_each_under_the_limit_and_each_proven() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut small = log(&dir.path().join("small.redb"), 300, 20);
    let snap = small.snapshot().expect("snapshot");
    let one = offer(&snap, "s/a", 0, 300).expect("offer");
    assert_eq!(one.messages.len(), 1);
    assert_eq!(bundles(&one.messages)[0].part, None, "whole");

    let mut large = log(&dir.path().join("large.redb"), 1000, 1500);
    let snap = large.snapshot().expect("snapshot");
    let head = range_root(&snap, 0, 1000).expect("head");
    // A full bundle, then the right edge: 1000 = 3 x 256 + 232.
    for (index, width) in [(1u64, 256u64), (3, 232)] {
        let o = offer(&snap, "s/a", index, 1000).expect("offer");
        assert_eq!((o.index, o.width, o.size), (index, width, 1000));
        assert!(o.messages.len() > 1, "in parts");
        let mut at = index * 256;
        for (m, b) in o.messages.iter().zip(bundles(&o.messages)) {
            assert!(m.len() <= MAX_MESSAGE, "{} bytes", m.len());
            let part: Part = b.part.expect("a part");
            assert_eq!(part.first(), at, "in order, with no gap");
            at += part.width();
            let bytes = b.bytes().expect("base64");
            let checked = b.verify(&bytes, &head).expect("each part proven on its own");
            assert_eq!(checked.entries.len() as u64, part.width());
        }
        assert_eq!(at, index * 256 + width, "the parts cover the bundle");
    }
}
