//! Reading the witness log beside its writer.
//!
//! redb serves any number of read transactions next to its one writer, each seeing one committed state.
//! A [`Reader`] is a handle on the open file that another thread can use; a [`Snapshot`] is one read
//! transaction with the tables opened, so everything read from it (checkpoints, records, tree nodes,
//! the trace index) belongs to the same moment of the log. Anchor proofs and witness queries are built
//! from snapshots on blocking threads, so a long read never holds up a commit.
//!
//! A log written before the tree nodes and the trace index were kept has neither table until the agent
//! opens it for writing (which builds both); a snapshot of such a file answers the same questions by
//! rehashing leaves and scanning records.

use std::sync::Arc;

use if_protocol::IfError;
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::{CompactTree, Node, node_hash};
use redb::{Database, ReadOnlyTable, ReadableDatabase as _, ReadableTable as _};

use super::proof::Nodes;
use super::record::Record;
use super::schema::{
    ANCHORED, CHECKPOINTS, HEAD, HeadState, NODES, Pruned, RECORDS, STORED_LEVEL, TRACES, corrupt, read_head,
    read_pruned, unavailable,
};

/// A handle for reading the log from any thread while its store keeps writing. Take one per use and
/// drop it: a live handle keeps the file open, and the store could not reopen it after an I/O error.
#[derive(Debug, Clone)]
pub struct Reader(Arc<Database>);

impl Reader {
    pub(super) fn new(db: Arc<Database>) -> Self {
        Reader(db)
    }

    /// One consistent view of the log.
    pub fn snapshot(&self) -> Result<Snapshot, IfError> {
        let txn = self.0.begin_read().map_err(|e| unavailable("read", e))?;
        let records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
        let checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| unavailable("table", e))?;
        let head = txn.open_table(HEAD).map_err(|e| unavailable("table", e))?;
        let nodes = optional(txn.open_table(NODES))?;
        let traces = optional(txn.open_table(TRACES))?;
        let anchored = optional(txn.open_table(ANCHORED))?;
        Ok(Snapshot { records, checkpoints, head, nodes, traces, anchored })
    }
}

fn optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    opened: Result<ReadOnlyTable<K, V>, redb::TableError>,
) -> Result<Option<ReadOnlyTable<K, V>>, IfError> {
    match opened {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(unavailable("table", e)),
    }
}

/// The log at one committed moment.
pub struct Snapshot {
    records: ReadOnlyTable<u64, &'static [u8]>,
    checkpoints: ReadOnlyTable<u64, &'static str>,
    head: ReadOnlyTable<&'static str, &'static [u8]>,
    nodes: Option<ReadOnlyTable<(u64, u8), Hash>>,
    traces: Option<ReadOnlyTable<(u128, u64), ()>>,
    anchored: Option<ReadOnlyTable<&'static str, u64>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("indexed", &self.indexed()).finish_non_exhaustive()
    }
}

/// What a trace query found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceRecords {
    /// The newest records of the trace, oldest first, with their leaf bytes.
    pub records: Vec<(Record, Vec<u8>)>,
    /// Older records of the trace that were left out.
    pub older: usize,
    /// Records below this one were pruned here after the archive acknowledged them (0: none were); the
    /// log no longer knows which of them belonged to the trace, the archive has them all.
    pub pruned_below: u64,
}

impl Snapshot {
    /// Where the kept records start, if older ones were pruned.
    pub fn pruned(&self) -> Result<Option<Pruned>, IfError> {
        read_pruned(&self.head)
    }

    /// The first record kept (0 unless older ones were pruned).
    pub fn first_kept(&self) -> Result<u64, IfError> {
        Ok(self.pruned()?.map_or(0, |p| p.below))
    }

    /// The size of the largest checkpoint the upstream acknowledged (0: none yet).
    pub fn anchored(&self) -> Result<u64, IfError> {
        self.mark("acked")
    }

    /// How many records, from the first, the archive acknowledged in entry bundles (0: none yet).
    pub fn archived(&self) -> Result<u64, IfError> {
        self.mark("archived")
    }

    fn mark(&self, key: &str) -> Result<u64, IfError> {
        let Some(table) = &self.anchored else { return Ok(0) };
        Ok(table.get(key).map_err(|e| unavailable("read", e))?.map_or(0, |v| v.value()))
    }

    /// Every stored checkpoint note, by tree size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, IfError> {
        let mut out = Vec::new();
        for row in self.checkpoints.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            out.push((k.value(), v.value().to_string()));
        }
        Ok(out)
    }

    /// The checkpoint of the largest tree, if any was signed.
    pub fn newest_checkpoint(&self) -> Result<Option<(u64, String)>, IfError> {
        let last = self.checkpoints.last().map_err(|e| unavailable("read", e))?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_string())))
    }

    /// Records in the log at this moment.
    pub fn size(&self) -> Result<u64, IfError> {
        Ok(self.head()?.0.size)
    }

    /// The stored head at this moment and the tree it describes.
    pub(super) fn head(&self) -> Result<(HeadState, CompactTree), IfError> {
        read_head(&self.head)
    }

    /// The first `max` checkpoint notes of trees larger than `size`, by tree size.
    pub fn checkpoints_after(&self, size: u64, max: usize) -> Result<Vec<(u64, String)>, IfError> {
        let mut out = Vec::new();
        let Some(first) = size.checked_add(1) else { return Ok(out) };
        for row in self.checkpoints.range(first..).map_err(|e| unavailable("read", e))?.take(max) {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            out.push((k.value(), v.value().to_string()));
        }
        Ok(out)
    }

    /// How many checkpoints are of trees larger than `size`.
    pub fn count_checkpoints_after(&self, size: u64) -> Result<u64, IfError> {
        let Some(first) = size.checked_add(1) else { return Ok(0) };
        let mut n = 0;
        for row in self.checkpoints.range(first..).map_err(|e| unavailable("read", e))? {
            row.map_err(|e| unavailable("read", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// The leaf bytes of record `index`.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, IfError> {
        let row = self.records.get(index).map_err(|e| unavailable("read", e))?;
        row.map(|v| v.value().to_vec()).ok_or_else(|| corrupt(format_args!("record {index} is missing")))
    }

    /// Calls `f` with each record's leaf bytes in order, from `start`.
    pub fn for_each_leaf(
        &self,
        start: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), IfError>,
    ) -> Result<(), IfError> {
        for row in self.records.range(start..).map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    /// Whether the tree's interior nodes and the trace index are stored (false only for a log written
    /// before they were, opened without writing).
    pub fn indexed(&self) -> bool {
        self.nodes.is_some() && self.traces.is_some()
    }

    /// The lowest level of the stored tree nodes.
    pub const STORED_LEVEL: u8 = STORED_LEVEL;

    /// The stored root of the perfect subtree of `2^level` leaves ending at leaf `last`, if stored.
    pub fn stored_node(&self, last: u64, level: u8) -> Result<Option<Hash>, IfError> {
        let Some(nodes) = &self.nodes else { return Ok(None) };
        Ok(nodes.get((last, level)).map_err(|e| unavailable("read", e))?.map(|v| v.value()))
    }

    /// Whether the trace index lists record `index` under `trace`.
    pub fn trace_lists(&self, trace: uuid::Uuid, index: u64) -> Result<bool, IfError> {
        let Some(traces) = &self.traces else { return Ok(false) };
        Ok(traces.get((trace.as_u128(), index)).map_err(|e| unavailable("read", e))?.is_some())
    }

    /// The newest `max` records of one trace, oldest first: from the trace index, or by a scan of a log
    /// that has none. Only records whose own trace is `trace` are returned.
    pub fn trace(&self, trace: uuid::Uuid, max: usize) -> Result<TraceRecords, IfError> {
        let mut found = std::collections::VecDeque::new();
        let mut older = 0;
        let Some(traces) = &self.traces else {
            self.for_each_leaf(0, |_, leaf| {
                let record = Record::from_leaf(leaf)?;
                if record.entry.trace == Some(trace) {
                    if found.len() == max {
                        found.pop_front();
                        older += 1;
                    }
                    found.push_back((record, leaf.to_vec()));
                }
                Ok(())
            })?;
            return Ok(TraceRecords { records: Vec::from(found), older, pruned_below: 0 });
        };
        let t = trace.as_u128();
        let kept = self.first_kept()?;
        // Rows below the boundary are those a file pruned before they went with their records.
        for row in traces.range((t, kept)..=(t, u64::MAX)).map_err(|e| unavailable("read", e))?.rev() {
            let (k, _) = row.map_err(|e| unavailable("read", e))?;
            if found.len() == max {
                older += 1;
                continue;
            }
            let leaf = self.leaf(k.value().1)?;
            let record = Record::from_leaf(&leaf)?;
            if record.entry.trace == Some(trace) {
                found.push_front((record, leaf));
            }
        }
        Ok(TraceRecords { records: Vec::from(found), older, pruned_below: kept })
    }
}

impl Nodes for Snapshot {
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, IfError> {
        if level == 0 {
            return Ok(Record::leaf_hash(&self.leaf(index)?));
        }
        if self.nodes.is_none() || level < STORED_LEVEL {
            return Ok(node_hash(&self.perfect(level - 1, 2 * index)?, &self.perfect(level - 1, 2 * index + 1)?));
        }
        self.stored_node(Node::last_leaf(level, index), level)?
            .ok_or_else(|| corrupt(format_args!("tree node {level}/{index} is missing")))
    }
}
