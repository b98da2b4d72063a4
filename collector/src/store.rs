//! The collector's own redb file: per agent the last accepted checkpoint, and every accepted (size,
//! root), so a repeat is recognised and a contradiction of any earlier one is caught. Each acceptance is
//! one durable transaction, written before the agent is acknowledged.

use std::path::Path;

use if_protocol::witness::Hash;
use if_protocol::{ErrorCode, IfError};
use redb::{Database, ReadableDatabase as _, TableDefinition};

use super::judge::Accepted;

const LAST: TableDefinition<'_, &str, (u64, &[u8], &str)> = TableDefinition::new("last");
const SEEN: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("seen");

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
        }
        txn.commit().map_err(failed)
    }
}
