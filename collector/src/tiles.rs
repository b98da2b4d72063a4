//! The archive of agents' logs in the C2SP tlog-tiles layout, under `tlog/{site}/{agent}/`: entry bundles
//! and level-0 tiles from the bundles agents send, the tiles above them made here, and `checkpoint`, a
//! signed checkpoint the collector accepted whose tiles are all written. A tlog-tiles client reads it with
//! the agent's verifier key and nothing of this project.
//!
//! A bundle is taken only when its proof ties it to the root of a checkpoint accepted from that agent,
//! and whole bundles only in order, so every tile written is part of a tree the agent signed. Writes go
//! first, then the collector's own rows, then the acknowledgement: a collector stopped in between writes
//! the same bytes again when the agent offers the bundle again.

use if_protocol::messages::{Bundle, BundleAck};
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::root;
use if_protocol::witness::tiles::{WIDTH, entries_path, leaf_tile, partial_tiles, tile_path};
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
    let width = checked.entries.len() as u64;
    let ack = BundleAck::of(b.index, width, &checked.root);
    let (bundles, published) = store.tiled(name).map_err(|e| e.detail().to_string())?;
    let dir = format!("tlog/{name}");
    if b.index < bundles && width == WIDTH {
        let stored = store.tile_nodes(name, 1, b.index, 1).map_err(|e| e.detail().to_string())?;
        return match stored {
            Some(h) if h == [checked.root] => Ok(Outcome::Again(ack)),
            _ => Err(format!("bundle {} differs from the one archived", b.index)),
        };
    }
    if b.index != bundles {
        return Err(format!("bundle {} comes before bundle {bundles}, the next one to archive", b.index));
    }
    put(archive, format!("{dir}/{}", entries_path(b.index, width)), bytes.clone()).await?;
    put(archive, format!("{dir}/{}", tile_path(0, b.index, width)), leaf_tile(&checked.entries)).await?;
    let mut covered = b.size;
    if width == WIDTH {
        // The tiles this bundle completes, level by level; their nodes are stored with the bundle's.
        let mut nodes = vec![(1u8, b.index, checked.root)];
        let (mut level, mut index, mut node) = (1u8, b.index, checked.root);
        while index % WIDTH == WIDTH - 1 {
            let first = index + 1 - WIDTH;
            let mut row = store
                .tile_nodes(name, level, first, WIDTH - 1)
                .map_err(|e| e.detail().to_string())?
                .ok_or_else(|| format!("the nodes below tile {level}/{} are not all archived", index / WIDTH))?;
            row.push(node);
            put(archive, format!("{dir}/{}", tile_path(level, index / WIDTH, WIDTH)), hashes(&row)).await?;
            (level, index, node) = (level + 1, index / WIDTH, root(row));
            nodes.push((level, index, node));
        }
        store.set_tiled(name, &nodes, b.index + 1, published).map_err(|e| e.detail().to_string())?;
        covered = (b.index + 1) * WIDTH;
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

    fn offer(all: &[Vec<u8>], index: u64, size: u64) -> Bundle {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let leaves: Vec<Hash> = all[..size as usize].iter().map(|e| leaf_hash(e)).collect();
        let width = Bundle::width_at(index, size);
        let first = index * WIDTH;
        let bytes = bundle(all[first as usize..(first + width) as usize].iter().map(Vec::as_slice)).expect("bundle");
        let proof = subtree_inclusion_of(&leaves[..], first, width, size).expect("proof");
        Bundle {
            agent: "s/a".into(),
            index,
            size,
            entries: b64.encode(bytes),
            proof: proof.iter().map(|h| b64.encode(h)).collect(),
        }
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
