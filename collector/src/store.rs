//! The collector's own redb file: per agent the last accepted checkpoint, and every accepted (size,
//! root) with its note, so a repeat is recognised and a contradiction of any earlier one is caught. Each
//! acceptance is one durable transaction, written before the agent is acknowledged.
//!
//! For the archive, per agent: how many whole entry bundles are archived and the largest checkpoint
//! published with its tiles (`tiled`), and the tree's nodes at every tile level above the leaves
//! (`tile_nodes`: (agent, tile level, index) -> the node at height 8 x level), from which the tiles above
//! level 0 and the right edge of each checkpoint are made. Each bundle's rows are written after its tiles
//! and before its acknowledgement. A bundle sent in parts keeps each checked part (`parts`) until the
//! bundle is whole and archived.

use std::path::Path;

use if_protocol::witness::Hash;
use if_protocol::{ErrorCode, IfError};
use redb::{Database, ReadableDatabase as _, TableDefinition};

use super::judge::Accepted;

const LAST: TableDefinition<'_, &str, (u64, &[u8], &str)> = TableDefinition::new("last");
const SEEN: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("seen");
const NOTES: TableDefinition<'_, (&str, u64), &str> = TableDefinition::new("notes");
const TILED: TableDefinition<'_, &str, (u64, u64)> = TableDefinition::new("tiled");
const TILE_NODES: TableDefinition<'_, (&str, u8, u64), Hash> = TableDefinition::new("tile_nodes");
/// Parts of bundles not yet whole: (agent, first entry) -> (height, the part's entries as a bundle).
const PARTS: TableDefinition<'_, (&str, u64), (u8, &[u8])> = TableDefinition::new("parts");

fn failed(e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::SystemError, format_args!("collector store: {e}"))
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates the file.
    pub fn open(path: &Path) -> Result<Store, IfError> {
        let db = Database::create(path).map_err(failed)?;
        let txn = db.begin_write().map_err(failed)?;
        txn.open_table(LAST).map_err(failed)?;
        txn.open_table(SEEN).map_err(failed)?;
        txn.open_table(NOTES).map_err(failed)?;
        txn.open_table(TILED).map_err(failed)?;
        txn.open_table(TILE_NODES).map_err(failed)?;
        txn.open_table(PARTS).map_err(failed)?;
        txn.commit().map_err(failed)?;
        Ok(Store { db })
    }

    /// The last checkpoint accepted from `agent`.
    pub fn last(&self, agent: &str) -> Result<Option<Accepted>, IfError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(LAST).map_err(failed)?;
        let Some(row) = table.get(agent).map_err(failed)? else { return Ok(None) };
        let (size, root, note) = row.value();
        let root = Hash::try_from(root).map_err(|_| failed("a stored root is not 32 bytes"))?;
        Ok(Some(Accepted { size, root, note: note.to_string() }))
    }

    /// The root accepted from `agent` at `size`, if any.
    pub fn seen(&self, agent: &str, size: u64) -> Option<Hash> {
        let txn = self.db.begin_read().ok()?;
        let table = txn.open_table(SEEN).ok()?;
        let row = table.get((agent, size)).ok()??;
        Hash::try_from(row.value()).ok()
    }

    /// Records an accepted checkpoint as `agent`'s last, durably.
    pub fn accept(&self, agent: &str, a: &Accepted) -> Result<(), IfError> {
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut last = txn.open_table(LAST).map_err(failed)?;
            last.insert(agent, (a.size, a.root.as_slice(), a.note.as_str())).map_err(failed)?;
            let mut seen = txn.open_table(SEEN).map_err(failed)?;
            seen.insert((agent, a.size), a.root.as_slice()).map_err(failed)?;
            let mut notes = txn.open_table(NOTES).map_err(failed)?;
            notes.insert((agent, a.size), a.note.as_str()).map_err(failed)?;
        }
        txn.commit().map_err(failed)
    }

    /// The signed note accepted from `agent` at `size`, if any.
    pub fn note(&self, agent: &str, size: u64) -> Result<Option<String>, IfError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(NOTES).map_err(failed)?;
        Ok(table.get((agent, size)).map_err(failed)?.map(|v| v.value().to_string()))
    }

    /// `agent`'s whole bundles archived, and the largest checkpoint published with its tiles.
    pub fn tiled(&self, agent: &str) -> Result<(u64, u64), IfError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(TILED).map_err(failed)?;
        Ok(table.get(agent).map_err(failed)?.map_or((0, 0), |v| v.value()))
    }

    /// The nodes at tile `level` (height 8 x level) with indices `first..first + n`, all of them or none.
    pub fn tile_nodes(&self, agent: &str, level: u8, first: u64, n: u64) -> Result<Option<Vec<Hash>>, IfError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(TILE_NODES).map_err(failed)?;
        let mut out = Vec::with_capacity(n as usize);
        for row in table.range((agent, level, first)..(agent, level, first + n)).map_err(failed)? {
            out.push(row.map_err(failed)?.1.value());
        }
        Ok((out.len() as u64 == n).then_some(out))
    }

    /// Stores `nodes` ((level, index, hash)) of `agent` and its archive's counts, durably, in one step.
    pub fn set_tiled(
        &self,
        agent: &str,
        nodes: &[(u8, u64, Hash)],
        bundles: u64,
        published: u64,
    ) -> Result<(), IfError> {
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut table = txn.open_table(TILE_NODES).map_err(failed)?;
            for (level, index, hash) in nodes {
                table.insert((agent, *level, *index), hash).map_err(failed)?;
            }
            let mut tiled = txn.open_table(TILED).map_err(failed)?;
            tiled.insert(agent, (bundles, published)).map_err(failed)?;
            // The parts of bundles archived are done with.
            let mut parts = txn.open_table(PARTS).map_err(failed)?;
            let end = bundles.saturating_mul(if_protocol::witness::tiles::WIDTH);
            parts.retain_in((agent, 0)..(agent, end), |_, _| false).map_err(failed)?;
        }
        txn.commit().map_err(failed)
    }

    /// Keeps a checked part of one of `agent`'s bundles, `height` high from entry `first`, durably.
    pub fn put_part(&self, agent: &str, first: u64, height: u8, entries: &[u8]) -> Result<(), IfError> {
        let txn = self.db.begin_write().map_err(failed)?;
        txn.open_table(PARTS).map_err(failed)?.insert((agent, first), (height, entries)).map_err(failed)?;
        txn.commit().map_err(failed)
    }

    /// The parts kept of `agent`'s entries `from..to`, by first entry: (first, height, entries).
    pub fn parts(&self, agent: &str, from: u64, to: u64) -> Result<Vec<(u64, u8, Vec<u8>)>, IfError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(PARTS).map_err(failed)?;
        let mut out = Vec::new();
        for row in table.range((agent, from)..(agent, to)).map_err(failed)? {
            let (k, v) = row.map_err(failed)?;
            let (height, entries) = v.value();
            out.push((k.value().1, height, entries.to_vec()));
        }
        Ok(out)
    }
}
