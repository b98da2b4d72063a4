//! Pruning: records the archive acknowledged leave the local file, down to a retention, so that a box
//! that runs for years keeps a log of bounded size.
//!
//! A record is pruned only when all of these hold: the archive acknowledged its entry bundle (the witness
//! file's `archived`), it is below the newest signed checkpoint (the start-up check reads from there), it
//! is no open RECEIVED, and the retention (`keep_records`, `keep_days`) lets it go. Whole bundles go, 256
//! records at a time, so every subtree below the boundary is one whose root the file keeps
//! (`nodes`): consistency proofs for anchors, inclusion proofs for bundles and the tree's head all work
//! as before. What stays beside the kept records is the boundary and the leaf hash of the last record
//! pruned ([`Pruned`]), so the full check starts there. The trace index rows of pruned records and the
//! tree's nodes below 256 leaves go with them (no proof of a kept record or a later checkpoint needs one
//! of those), so what a pruned record leaves behind is its share of one node per 256 records: the file
//! stays bounded however long the box runs. A trace query says below which record the log was pruned,
//! and `ifctl witness query --archive` finds those records in the archive. Pruning frees pages inside the
//! file for new records; the file itself shrinks only by compaction ([`compact`]).

use std::path::Path;
use std::time::{Duration, Instant};

use if_protocol::witness::tiles::WIDTH;
use if_protocol::{ErrorCode, IfError};
use redb::ReadableTable as _;

use super::reader::Snapshot;
use super::record::Record;
use super::schema::{
    ANCHORED, CHECKPOINTS, HEAD, NODES, PENDING, Pruned, RECORDS, TRACES, encode, read_pruned, unavailable,
};
use super::store::Store;
use super::tables::begin;

/// The lowest tree level whose nodes stay below the boundary: subtrees of one bundle (256 leaves) and up.
const KEPT_LEVEL: u8 = 8;

/// How much of the log to keep, whatever the archive holds. Neither set: nothing is ever pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// Keep at least the newest this many records.
    pub records: Option<u64>,
    /// Keep at least the records of the last this many days.
    pub days: Option<u32>,
}

impl Keep {
    /// Whether anything may ever be pruned.
    pub fn prunes(&self) -> bool {
        self.records.is_some() || self.days.is_some()
    }
}

/// The first record the retention and the archive require to be kept, as of `now_ms` (wall clock).
pub fn limit(log: &Snapshot, keep: &Keep, now_ms: u64) -> Result<u64, IfError> {
    let kept = log.first_kept()?;
    let Some((checkpoint, _)) = log.newest_checkpoint()? else { return Ok(kept) };
    if !keep.prunes() {
        return Ok(kept);
    }
    let size = log.size()?;
    let mut limit = log.archived()?.min(checkpoint.saturating_sub(1));
    if let Some(n) = keep.records {
        limit = limit.min(size.saturating_sub(n));
    }
    if let Some(days) = keep.days {
        let since = now_ms.saturating_sub(u64::from(days) * 86_400_000);
        limit = limit.min(first_since(log, kept, size, since)?);
    }
    Ok((limit / WIDTH * WIDTH).max(kept))
}

/// The first record in `from..size` written at `since_ms` or later (`size` if none): a binary search, as
/// records' wall times never go back.
fn first_since(log: &Snapshot, from: u64, size: u64, since_ms: u64) -> Result<u64, IfError> {
    let (mut lo, mut hi) = (from, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let record = Record::from_leaf(&log.leaf(mid)?)?;
        if record.entry.wall_ms < since_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

impl Store {
    /// Prunes records below `target`, at most `max` of them in this one transaction (so that commands
    /// wait for a short one at a time), never past what the archive acknowledged, the newest checkpoint or
    /// an open RECEIVED. Checkpoint notes below the new boundary go with their records (the archive holds
    /// them). Returns the new boundary, or `None` when nothing was pruned.
    pub fn prune(&mut self, target: u64, max: u64) -> Result<Option<Pruned>, IfError> {
        let newest = self.last_checkpoint_size();
        let db = self.tables()?;
        let txn = begin(db)?;
        let pruned = {
            let mut head = txn.open_table(HEAD).map_err(|e| unavailable("table", e))?;
            let now = read_pruned(&head)?.map_or(0, |p| p.below);
            let pending = txn.open_table(PENDING).map_err(|e| unavailable("table", e))?;
            let open = pending.first().map_err(|e| unavailable("read", e))?.map_or(u64::MAX, |(k, _)| k.value());
            let marks = txn.open_table(ANCHORED).map_err(|e| unavailable("table", e))?;
            let archived = marks.get("archived").map_err(|e| unavailable("read", e))?.map_or(0, |v| v.value());
            let allowed = target.min(archived).min(open).min(newest.saturating_sub(1)).min(now.saturating_add(max));
            let below = allowed / WIDTH * WIDTH;
            if below <= now {
                return Ok(None);
            }
            let mut records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
            let last =
                records.get(below - 1).map_err(|e| unavailable("read", e))?.map(|v| Record::leaf_hash(v.value()));
            let Some(last_leaf) = last else {
                return Err(IfError::format(ErrorCode::InvalidProof, format_args!("record {} is missing", below - 1)));
            };
            let mut traced = Vec::new();
            for row in records.range(now..below).map_err(|e| unavailable("read", e))? {
                let (k, v) = row.map_err(|e| unavailable("read", e))?;
                if let Some(trace) = Record::from_leaf(v.value())?.entry.trace {
                    traced.push((trace.as_u128(), k.value()));
                }
            }
            records.retain_in(now..below, |_, _| false).map_err(|e| unavailable("write", e))?;
            let mut traces = txn.open_table(TRACES).map_err(|e| unavailable("table", e))?;
            for key in traced {
                traces.remove(key).map_err(|e| unavailable("write", e))?;
            }
            // Below a multiple of 256, a subtree of fewer leaves is wholly pruned; larger ones stay.
            let mut nodes = txn.open_table(NODES).map_err(|e| unavailable("table", e))?;
            nodes
                .retain_in((now, 0)..(below, 0), |(_, level), _| level >= KEPT_LEVEL)
                .map_err(|e| unavailable("write", e))?;
            let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| unavailable("table", e))?;
            checkpoints.retain_in(..below, |_, _| false).map_err(|e| unavailable("write", e))?;
            let p = Pruned { below, last_leaf };
            head.insert("pruned", encode(&p)?.as_slice()).map_err(|e| unavailable("write", e))?;
            p
        };
        txn.commit().map_err(|e| unavailable("commit", e))?;
        self.freed();
        Ok(Some(pruned))
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The file's size before, bytes.
    pub before: u64,
    /// And after.
    pub after: u64,
    /// How long it took.
    pub took: Duration,
}

/// Compacts the witness file at `path`, which no process may have open (the agent stopped): what a crash
/// left in the journal is folded in, then redb moves the pages in use to the front and cuts the file
/// after them. Durable when it returns.
pub fn compact(path: &Path) -> Result<Compacted, IfError> {
    drop(Store::open_existing(path)?);
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(|e| unavailable("size", e));
    let before = len(path)?;
    let started = Instant::now();
    let mut db = redb::Database::open(path).map_err(|e| unavailable("open", e))?;
    while db.compact().map_err(|e| unavailable("compaction", e))? {}
    drop(db);
    Ok(Compacted { before, after: len(path)?, took: started.elapsed() })
}
