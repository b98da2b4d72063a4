//! The archive of agents' logs in the C2SP tlog-tiles layout, under `tlog/{site}/{agent}/`: entry bundles
//! and level-0 tiles from the bundles agents send, the tiles above them made here, and `checkpoint`, a
//! signed checkpoint the collector accepted whose tiles are all written. A tlog-tiles client reads it with
//! the agent's verifier key and nothing of this project.
//!
//! A bundle is taken only when its proof ties it to the root of a checkpoint accepted from that agent,
//! and whole bundles only in order, so every tile written is part of a tree the agent signed. Writes go
//! first, then the collector's own rows, then the acknowledgement: a collector stopped in between writes
//! the same bytes again when the agent offers the bundle again. A bundle too large for one message comes
//! in parts, each checked by its own proof and kept until they make the bundle whole.

use if_protocol::messages::archive::Checked;
use if_protocol::messages::{Bundle, BundleAck, Part};
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::root;
use if_protocol::witness::tiles::{
    WIDTH, bundle, bundle_root, entries_path, leaf_tile, partial_tiles, tile_path, unbundle,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::store::Store;

/// What came of one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (and, when `published`, the checkpoint of that size with it): acknowledge.
    Archived { ack: BundleAck, published: Option<u64> },
    /// Archived before with the same root: acknowledge again.
    Again(BundleAck),
    /// A part kept: `have` of the bundle's `width` entries are here from its start. Nothing to
    /// acknowledge yet.
    Part { index: u64, have: u64, width: u64 },
    /// Not taken, not acknowledged.
    Refused(String),
}

fn hashes(hs: &[Hash]) -> Vec<u8> {
    hs.iter().flatten().copied().collect()
}

async fn put(archive: &dyn ObjectStore, at: String, bytes: Vec<u8>) -> Result<(), String> {
    archive.put(&Path::from(at.as_str()), bytes.into()).await.map(|_| ()).map_err(|e| format!("{at}: {e}"))
}

/// Takes `bundle` from agent `name` (`site/agent`), whose checkpoints are in `store`.
pub async fn take(store: &Store, archive: &dyn ObjectStore, name: &str, bundle: &Bundle) -> Outcome {
    match archive_bundle(store, archive, name, bundle).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::Refused(why),
    }
}

async fn archive_bundle(store: &Store, archive: &dyn ObjectStore, name: &str, b: &Bundle) -> Result<Outcome, String> {
    let Some(head) = store.seen(name, b.size) else {
        return Err(format!("bundle {}: no checkpoint of size {} was accepted from this agent", b.index, b.size));
    };
    let bytes = b.bytes().map_err(|e| e.detail().to_string())?;
    let checked = b.verify(&bytes, &head).map_err(|e| e.detail().to_string())?;
    match b.part {
        None => write(store, archive, name, b.index, b.size, &bytes, &checked).await,
        Some(part) => take_part(store, archive, name, b, part, &bytes).await,
    }
}

/// Parts are kept for bundles up to this many past the next one to archive, no further.
const PARTS_AHEAD: u64 = 64;

/// Keeps a checked part; once the parts kept make bundle `b.index` whole for `b.size` and it is the
/// next one to archive, archives it as if it had come whole.
async fn take_part(
    store: &Store,
    archive: &dyn ObjectStore,
    name: &str,
    b: &Bundle,
    part: Part,
    bytes: &[u8],
) -> Result<Outcome, String> {
    let (bundles, _) = store.tiled(name).map_err(|e| e.detail().to_string())?;
    if b.index < bundles {
        // Archived whole already: a part of a proven tree agrees with it, and the answer is the bundle's.
        let stored = store.tile_nodes(name, 1, b.index, 1).map_err(|e| e.detail().to_string())?;
        let root = stored.and_then(|h| h.first().copied()).ok_or_else(|| format!("bundle {} has no node", b.index))?;
        return Ok(Outcome::Again(BundleAck::of(b.index, WIDTH, &root)));
    }
    if b.index >= bundles + PARTS_AHEAD {
        return Err(format!("a part of bundle {}, more than {PARTS_AHEAD} past bundle {bundles}", b.index));
    }
    store.put_part(name, part.first(), part.height, bytes).map_err(|e| e.detail().to_string())?;
    let (start, width) = (b.index * WIDTH, Bundle::width_at(b.index, b.size));
    let mut at = start;
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(width as usize);
    for (first, height, kept) in store.parts(name, start, start + width).map_err(|e| e.detail().to_string())? {
        let end = first + (1u64 << height);
        if first < at {
            continue; // inside a part taken: one an offer for another size left
        }
        if first > at || end > start + width {
            break;
        }
        entries.extend(unbundle(&kept).map_err(|e| e.detail().to_string())?.into_iter().map(<[u8]>::to_vec));
        at = end;
    }
    if at != start + width || b.index != bundles {
        return Ok(Outcome::Part { index: b.index, have: at - start, width });
    }
    let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let whole = bundle(entries.iter().copied()).map_err(|e| e.detail().to_string())?;
    let root = bundle_root(&entries);
    write(store, archive, name, b.index, b.size, &whole, &Checked { entries, root }).await
}

/// Writes bundle `index` of the tree of `size` (`bytes`, checked as `checked`), the tiles it completes,
/// and the checkpoint it completes; or answers a repeat of one archived.
async fn write(
    store: &Store,
    archive: &dyn ObjectStore,
    name: &str,
    index: u64,
    size: u64,
    bytes: &[u8],
    checked: &Checked<'_>,
) -> Result<Outcome, String> {
    let width = checked.entries.len() as u64;
    let ack = BundleAck::of(index, width, &checked.root);
    let (bundles, published) = store.tiled(name).map_err(|e| e.detail().to_string())?;
    let dir = format!("tlog/{name}");
    if index < bundles && width == WIDTH {
        let stored = store.tile_nodes(name, 1, index, 1).map_err(|e| e.detail().to_string())?;
        return match stored {
            Some(h) if h == [checked.root] => Ok(Outcome::Again(ack)),
            _ => Err(format!("bundle {index} differs from the one archived")),
        };
    }
    if index != bundles {
        return Err(format!("bundle {index} comes before bundle {bundles}, the next one to archive"));
    }
    put(archive, format!("{dir}/{}", entries_path(index, width)), bytes.to_vec()).await?;
    put(archive, format!("{dir}/{}", tile_path(0, index, width)), leaf_tile(&checked.entries)).await?;
    let mut covered = size;
    if width == WIDTH {
        // The tiles this bundle completes, level by level; their nodes are stored with the bundle's.
        let mut nodes = vec![(1u8, index, checked.root)];
        let (mut level, mut at, mut node) = (1u8, index, checked.root);
        while at % WIDTH == WIDTH - 1 {
            let first = at + 1 - WIDTH;
            let mut row = store
                .tile_nodes(name, level, first, WIDTH - 1)
                .map_err(|e| e.detail().to_string())?
                .ok_or_else(|| format!("the nodes below tile {level}/{} are not all archived", at / WIDTH))?;
            row.push(node);
            put(archive, format!("{dir}/{}", tile_path(level, at / WIDTH, WIDTH)), hashes(&row)).await?;
            (level, at, node) = (level + 1, at / WIDTH, root(row));
            nodes.push((level, at, node));
        }
        store.set_tiled(name, &nodes, index + 1, published).map_err(|e| e.detail().to_string())?;
        covered = (index + 1) * WIDTH;
    }
    let mut done = None;
    if covered > published {
        let note = store.note(name, covered).map_err(|e| e.detail().to_string())?;
        if let Some(note) = note {
            publish(store, archive, name, covered, note).await?;
            done = Some(covered);
        }
    }
    Ok(Outcome::Archived { ack, published: done })
}

/// Writes the right edge of the tree of `size` above level 0 (level 0's is the bundle just written),
/// then `checkpoint`, then records it as published.
async fn publish(store: &Store, archive: &dyn ObjectStore, name: &str, size: u64, note: String) -> Result<(), String> {
    let dir = format!("tlog/{name}");
    for (level, index, width) in partial_tiles(size).filter(|(level, ..)| *level > 0) {
        let row = store
            .tile_nodes(name, level, index * WIDTH, width)
            .map_err(|e| e.detail().to_string())?
            .ok_or_else(|| format!("the nodes of tile {level}/{index} are not all archived"))?;
        put(archive, format!("{dir}/{}", tile_path(level, index, width)), hashes(&row)).await?;
    }
    put(archive, format!("{dir}/checkpoint"), note.into_bytes()).await?;
    let (bundles, _) = store.tiled(name).map_err(|e| e.detail().to_string())?;
    store.set_tiled(name, &[], bundles, size).map_err(|e| e.detail().to_string())
}

#[cfg(test)]
mod tests {
    use if_edge::witness::proof::{subtree_inclusion_of, subtree_root};
    use if_protocol::witness::merkle::leaf_hash;
    use if_protocol::witness::tiles::bundle;
    use object_store::memory::InMemory;

    use super::*;
    use crate::judge::Accepted;

    fn entries(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    /// Bundle `index` of the tree of `size` over `all`, whole or only its `part`.
    fn message(all: &[Vec<u8>], index: u64, part: Option<Part>, size: u64) -> Bundle {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let leaves: Vec<Hash> = all[..size as usize].iter().map(|e| leaf_hash(e)).collect();
        let (first, width) = part.map_or((index * WIDTH, Bundle::width_at(index, size)), |p| (p.first(), p.width()));
        let bytes = bundle(all[first as usize..(first + width) as usize].iter().map(Vec::as_slice)).expect("bundle");
        let proof = subtree_inclusion_of(&leaves[..], first, width, size).expect("proof");
        let (entries, proof) = (b64.encode(bytes), proof.iter().map(|h| b64.encode(h)).collect());
        Bundle { agent: "s/a".into(), index, size, part, entries, proof }
    }

    fn offer(all: &[Vec<u8>], index: u64, size: u64) -> Bundle {
        message(all, index, None, size)
    }

    /// Part `index` of height `height` of bundle `of` in the tree of `size`.
    fn part(all: &[Vec<u8>], of: u64, height: u8, index: u64, size: u64) -> Bundle {
        message(all, of, Some(Part { height, index }), size)
    }

    #[tokio::test]
    async fn a_bundle_in_parts_is_archived_once_whole_as_if_it_came_whole_and_forged_parts_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("c.redb")).expect("store");
        let archive = InMemory::new();
        let all = entries(1000);
        let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(e)).collect();
        store.accept("s/a", &Accepted { size: 1000, root: subtree_root(&leaves), note: "n\n".into() }).expect("ok");

        // Bundle 0 as four parts of 64, out of order, one sent twice.
        for (i, index) in [2u64, 0, 2, 3].into_iter().enumerate() {
            let got = take(&store, &archive, "s/a", &part(&all, 0, 6, index, 1000)).await;
            let have = [0, 64, 64, 64][i];
            assert_eq!(got, Outcome::Part { index: 0, have, width: 256 }, "part {index}");
        }
        assert!(read(&archive, "tlog/s/a/tile/entries/000").await.is_none(), "nothing written before it is whole");
        let whole = take(&store, &archive, "s/a", &part(&all, 0, 6, 1, 1000)).await;
        let ack = BundleAck::of(0, 256, &subtree_root(&leaves[..256]));
        assert_eq!(whole, Outcome::Archived { ack: ack.clone(), published: None });
        let as_one = bundle(all[..256].iter().map(Vec::as_slice)).expect("bundle");
        assert_eq!(read(&archive, "tlog/s/a/tile/entries/000").await, Some(as_one), "the same bytes as whole");
        assert!(store.parts("s/a", 0, 256).expect("parts").is_empty(), "its parts are dropped");
        assert_eq!(take(&store, &archive, "s/a", &part(&all, 0, 6, 3, 1000)).await, Outcome::Again(ack));

        // A changed entry, a part outside its bundle, a part of the wrong size, one far ahead.
        let mut forged = part(&all, 1, 7, 2, 1000);
        let mut changed = all.clone();
        changed[260] = b"changed".to_vec();
        forged.entries = part(&changed, 1, 7, 2, 1000).entries;
        let outside = part(&all, 1, 7, 0, 1000);
        let mut short = part(&all, 1, 7, 3, 1000);
        short.entries = part(&all, 1, 6, 6, 1000).entries;
        for b in [forged, outside, short] {
            let got = take(&store, &archive, "s/a", &b).await;
            assert!(matches!(got, Outcome::Refused(_)), "{b:?}: {got:?}");
        }
        assert!(store.parts("s/a", 0, u64::MAX).expect("parts").is_empty(), "nothing refused was kept");
        let long = entries((PARTS_AHEAD + 1) * WIDTH + 1);
        let long_leaves: Vec<Hash> = long.iter().map(|e| leaf_hash(e)).collect();
        let size = long.len() as u64;
        store.accept("s/b", &Accepted { size, root: subtree_root(&long_leaves), note: "n\n".into() }).expect("ok");
        let ahead = take(&store, &archive, "s/b", &part(&long, PARTS_AHEAD, 0, PARTS_AHEAD * WIDTH, size)).await;
        assert!(matches!(&ahead, Outcome::Refused(w) if w.contains("past bundle 0")), "{ahead:?}");

        // The right edge (1000 = 3 x 256 + 232 = 128 + 64 + 32 + 8) in parts, after bundles 1 and 2.
        take(&store, &archive, "s/a", &offer(&all, 1, 1000)).await;
        take(&store, &archive, "s/a", &offer(&all, 2, 1000)).await;
        let edge: Vec<_> = [(7, 6), (6, 14), (5, 30), (3, 124)].map(|(h, i)| part(&all, 3, h, i, 1000)).into();
        for p in &edge[..3] {
            assert!(matches!(take(&store, &archive, "s/a", p).await, Outcome::Part { .. }));
        }
        let done = take(&store, &archive, "s/a", &edge[3]).await;
        assert!(matches!(&done, Outcome::Archived { ack, published: Some(1000) } if ack.width == 232), "{done:?}");
        let as_one = bundle(all[768..].iter().map(Vec::as_slice)).expect("bundle");
        assert_eq!(read(&archive, "tlog/s/a/tile/entries/003.p/232").await, Some(as_one));
    }

    async fn read(archive: &InMemory, path: &str) -> Option<Vec<u8>> {
        let got = archive.get(&Path::from(path)).await.ok()?;
        got.bytes().await.ok().map(|b| b.to_vec())
    }

    #[tokio::test]
    async fn bundles_are_taken_in_order_against_an_accepted_checkpoint_and_publish_it_with_its_edge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("c.redb")).expect("store");
        let archive = InMemory::new();
        let all = entries(600);
        let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(e)).collect();
        let root = subtree_root(&leaves);
        store.accept("s/a", &Accepted { size: 600, root, note: "the note\n".into() }).expect("accept");

        let not_accepted = take(&store, &archive, "s/a", &offer(&all, 0, 599)).await;
        assert!(
            matches!(&not_accepted, Outcome::Refused(w) if w.contains("no checkpoint of size 599")),
            "{not_accepted:?}"
        );
        let early = take(&store, &archive, "s/a", &offer(&all, 1, 600)).await;
        assert!(matches!(&early, Outcome::Refused(w) if w.contains("before bundle 0")), "{early:?}");
        let edge_early = take(&store, &archive, "s/a", &offer(&all, 2, 600)).await;
        assert!(matches!(edge_early, Outcome::Refused(_)), "the edge waits for the bundles before it");
        assert!(read(&archive, "tlog/s/a/tile/entries/001").await.is_none(), "nothing refused was written");

        let first = take(&store, &archive, "s/a", &offer(&all, 0, 600)).await;
        assert!(matches!(first, Outcome::Archived { published: None, .. }), "{first:?}");
        assert!(matches!(take(&store, &archive, "s/a", &offer(&all, 0, 600)).await, Outcome::Again(_)));
        take(&store, &archive, "s/a", &offer(&all, 1, 600)).await;
        let edge = take(&store, &archive, "s/a", &offer(&all, 2, 600)).await;
        assert!(matches!(&edge, Outcome::Archived { ack, published: Some(600) } if ack.width == 88), "{edge:?}");

        let tile = read(&archive, "tlog/s/a/tile/0/002.p/88").await.expect("the edge's leaf tile");
        assert_eq!(tile, leaves[512..].iter().flatten().copied().collect::<Vec<u8>>());
        let level1 = read(&archive, "tlog/s/a/tile/1/000.p/2").await.expect("the edge one level up");
        assert_eq!(level1[..32], subtree_root(&leaves[..256]));
        assert_eq!(read(&archive, "tlog/s/a/checkpoint").await.as_deref(), Some(&b"the note\n"[..]));
        assert_eq!(store.tiled("s/a").expect("tiled"), (2, 600));
    }
}
