//! What a run starts from, read back from the tables after a fold: the open RECEIVED entries, every
//! sender's replay window and cached replies, the policy documents and the providers' spending. The
//! agent reads them once at its start ([`crate::agent`]), and the tools read them to show a log.

use std::collections::HashMap;

use if_protocol::IfError;
use if_protocol::replay::ReplayWindow;
use redb::{ReadableDatabase as _, ReadableTable, TableDefinition};

use super::schema::{BUDGETS, CachedReply, PENDING, POLICY, Pending, REPLAY, REPLIES, corrupt, decode, unavailable};
use super::store::Store;

impl Store {
    /// The open RECEIVED records.
    pub fn pending(&mut self) -> Result<Vec<(u64, Pending)>, IfError> {
        let txn = self.tables()?.begin_read().map_err(|e| unavailable("read", e))?;
        let table = txn.open_table(PENDING).map_err(|e| unavailable("table", e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            out.push((k.value(), decode(v.value(), "pending entry")?));
        }
        Ok(out)
    }

    /// Every sender's replay window.
    pub fn replay_windows(&mut self) -> Result<HashMap<String, ReplayWindow>, IfError> {
        let txn = self.tables()?.begin_read().map_err(|e| unavailable("read", e))?;
        let table = txn.open_table(REPLAY).map_err(|e| unavailable("table", e))?;
        let mut out = HashMap::new();
        for row in table.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            let window: ReplayWindow = decode(v.value(), "replay window")?;
            if !window.is_well_formed() {
                return Err(corrupt(format_args!("replay window of {} is malformed", k.value())));
            }
            out.insert(k.value().to_string(), window);
        }
        Ok(out)
    }

    /// Every cached reply, by (sender, seq).
    pub fn replies(&mut self) -> Result<HashMap<(String, u64), CachedReply>, IfError> {
        let txn = self.tables()?.begin_read().map_err(|e| unavailable("read", e))?;
        let table = txn.open_table(REPLIES).map_err(|e| unavailable("table", e))?;
        let mut out = HashMap::new();
        for row in table.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            let (sender, seq) = k.value();
            out.insert((sender.to_string(), seq), decode(v.value(), "cached reply")?);
        }
        Ok(out)
    }

    /// Every stored policy document, by key. A log written before policy existed has none.
    pub fn policy(&mut self) -> Result<Vec<(String, Vec<u8>)>, IfError> {
        self.keyed_rows(POLICY)
    }

    /// Every provider's persisted spending. A log written before budgets existed has none.
    pub fn budgets(&mut self) -> Result<HashMap<String, crate::budget::Spent>, IfError> {
        self.keyed_rows(BUDGETS)?.into_iter().map(|(k, v)| Ok((k, decode(&v, "budget")?))).collect()
    }

    /// The rows of a table keyed by text; a table that does not exist yet has none.
    fn keyed_rows(&mut self, def: TableDefinition<'_, &str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>, IfError> {
        let txn = self.tables()?.begin_read().map_err(|e| unavailable("read", e))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable("table", e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}
