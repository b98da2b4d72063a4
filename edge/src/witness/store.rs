//! The witness log on disk: one redb file, its tables and its durability contract.
//!
//! Contract: [`Store::append`] writes a whole batch of records, and the state changes that belong to them
//! (replay windows, open RECEIVED entries, cached replies, a checkpoint), in **one** redb write transaction
//! committed with `Durability::Immediate`. When it returns `Ok`, every record in the batch survives a crash
//! or power loss; when it returns `Err`, none of them exists and the in-memory head is unchanged. After an
//! I/O error redb refuses further writes on the same handle, so the store reopens the file (which repairs
//! it) before the next batch.
//!
//! An append is one flush (a plain commit). Every other commit, and [`Store::seal`], saves redb's
//! allocator state in a second flush (quick repair): opening the file after a crash that followed one of
//! those is as quick as after a clean stop, however large the file. A crash after a plain append and
//! before the next seal costs redb's walk of the whole file at the next open instead (0.2 s a million
//! records, docs/BENCHMARKS.md); nothing committed is lost either way. The writer seals when it goes idle
//! ([`super::writer`]), so a crash between commands opens quickly and a burst pays one flush a commit.
//!
//! The tables and what their rows hold are the file format, in [`super::schema`]. A sender's replay
//! window and its cached replies go together when a policy command resets its sequence numbers. A log
//! written before `nodes` and `traces` existed gets both when it is next opened for writing, in one
//! transaction. Records arrive finished: what they say (and that no secret is in it) is the caller's.
//!
//! One file, though long: every table here is written in the one transaction of [`Store::append`], and
//! the durability contract above holds only if all of them are read and written in one place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use if_protocol::replay::ReplayWindow;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::{Checkpoint, sign_checkpoint};
use if_protocol::witness::merkle::CompactTree;
use if_protocol::{ErrorCode, IfError};
use redb::{
    Database, ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _, TableDefinition, TableHandle as _,
    WriteTransaction,
};

use super::reader::{Reader, Snapshot};
use super::record::{Entry, Kind, Record};
use super::schema::{
    ANCHORED, BUDGETS, CHECKPOINTS, HEAD, HeadState, NODES, PENDING, POLICY, RECORDS, REPLAY, REPLIES, STORED_LEVEL,
    TRACES, corrupt, decode, encode, read_head, unavailable,
};
pub use super::schema::{CachedReply, Pending};

/// A command a restart left without an outcome, with the reply its sender is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The open RECEIVED record it was.
    pub pending: Pending,
    /// The reply (also cached for redeliveries).
    pub reply: Vec<u8>,
}

/// One record to append, with the state changes committed with it.
#[derive(Debug, Clone)]
pub struct Append {
    /// The record's kind.
    pub kind: Kind,
    /// The record's content (`wall_ms` is raised to the log's last time if the clock went back).
    pub entry: Entry,
    /// New replay window state for a sender.
    pub replay: Option<(String, ReplayWindow)>,
    /// Marks this record as an open RECEIVED.
    pub pending: Option<Pending>,
    /// Closes the open RECEIVED with this index.
    pub settles: Option<u64>,
    /// Caches the reply for (sender, seq); older entries of the sender below `keep_from` are dropped.
    pub reply: Option<ReplyUpdate>,
    /// Stores a policy document under a key (see `crate::policy`).
    pub policy: Option<(String, Vec<u8>)>,
    /// A provider's spending after this record's charge.
    pub budget: Option<(String, crate::budget::Spent)>,
    /// Forgets a sender's replay window and cached replies (a policy reset of its sequence numbers).
    pub forget: Option<String>,
}

/// A reply to cache, and how far back the sender's cache reaches.
#[derive(Debug, Clone)]
pub struct ReplyUpdate {
    /// The sender.
    pub sender: String,
    /// The sequence number answered.
    pub seq: u64,
    /// The reply.
    pub cached: CachedReply,
    /// Cached replies of this sender with a lower seq are dropped (they are below the replay window).
    pub keep_from: u64,
}

impl Append {
    /// A record with no side effects.
    pub fn record(kind: Kind, entry: Entry) -> Self {
        Append {
            kind,
            entry,
            replay: None,
            pending: None,
            settles: None,
            reply: None,
            policy: None,
            budget: None,
            forget: None,
        }
    }
}

/// Signs checkpoints with the agent's identity key.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    /// The signing key.
    pub key: SigningKey,
    /// The note key name and checkpoint origin, `<org>/if-edge/<agent>`.
    pub origin: String,
    /// Sign a checkpoint once this many records were added since the last one.
    pub every: u64,
}

/// The open witness log.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cache_bytes: usize,
    db: Option<Arc<Database>>,
    head: HeadState,
    tree: CompactTree,
    disk: Option<super::disk::Gauge>,
    /// The last commit saved the allocator state (see the contract above).
    sealed: bool,
}

impl Store {
    /// Opens (or creates) the log at `path` with redb's page cache capped at `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store, IfError> {
        let mut store = Store {
            path: path.to_path_buf(),
            cache_bytes,
            db: None,
            head: HeadState::default(),
            tree: CompactTree::new(),
            disk: None,
            sealed: false,
        };
        store.reopen()?;
        Ok(store)
    }

    /// Opens an existing log without creating anything (for inspection and verification). A log left by a
    /// crash is repaired by redb on open.
    pub fn open_existing(path: &Path) -> Result<Store, IfError> {
        if !path.is_file() {
            return Err(IfError::format(
                ErrorCode::ConfigInvalid,
                format_args!("{}: no such witness log", path.display()),
            ));
        }
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .open(path)
            .map_err(|e| unavailable(&format!("{} cannot be opened", path.display()), e))?;
        let (head, tree) = {
            let txn = db.begin_read().map_err(|e| unavailable("read", e))?;
            let table = txn.open_table(HEAD).map_err(|e| corrupt(format_args!("not a witness log: {e}")))?;
            read_head(&table)?
        };
        Ok(Store {
            path: path.to_path_buf(),
            cache_bytes: 16 << 20,
            db: Some(Arc::new(db)),
            head,
            tree,
            disk: None,
            sealed: true,
        })
    }

    fn reopen(&mut self) -> Result<(), IfError> {
        self.db = None;
        let db = Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(|e| unavailable(&format!("{} cannot be opened", self.path.display()), e))?;
        let txn = begin(&db)?;
        {
            txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
            txn.open_table(PENDING).map_err(|e| unavailable("table", e))?;
            txn.open_table(REPLAY).map_err(|e| unavailable("table", e))?;
            txn.open_table(REPLIES).map_err(|e| unavailable("table", e))?;
            txn.open_table(CHECKPOINTS).map_err(|e| unavailable("table", e))?;
            txn.open_table(POLICY).map_err(|e| unavailable("table", e))?;
            txn.open_table(BUDGETS).map_err(|e| unavailable("table", e))?;
            let table = txn.open_table(HEAD).map_err(|e| unavailable("table", e))?;
            (self.head, self.tree) = read_head(&table)?;
        }
        let indexed = txn.list_tables().map_err(|e| unavailable("read", e))?.any(|t| t.name() == NODES.name());
        if !indexed {
            index_existing(&txn)?;
        }
        txn.commit().map_err(|e| unavailable("commit", e))?;
        self.db = Some(Arc::new(db));
        self.sealed = true;
        Ok(())
    }

    /// Saves redb's allocator state in a commit of its own unless the last commit saved it, so that the
    /// open after a crash from here on needs no repair. On error the store reopens on next use.
    pub fn seal(&mut self) -> Result<(), IfError> {
        if self.sealed {
            return Ok(());
        }
        let result = self.db().and_then(|db| begin(db)?.commit().map_err(|e| unavailable("commit", e)));
        match result {
            Ok(()) => self.sealed = true,
            Err(_) => self.db = None,
        }
        result
    }

    /// Whether the last commit saved the allocator state ([`Store::seal`]).
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    pub(super) fn db(&mut self) -> Result<&Database, IfError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        self.db.as_deref().ok_or_else(|| unavailable("", "not open"))
    }

    /// Judges every batch against `room` before it is written, reporting to `stats`
    /// ([`super::disk`]).
    pub fn set_disk(&mut self, stats: Arc<super::disk::DiskStats>) {
        self.disk = Some(super::disk::Gauge::new(stats));
    }

    /// Pruning freed pages inside the file.
    pub(super) fn freed(&mut self) {
        if let Some(g) = &mut self.disk {
            g.freed();
        }
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.head.size
    }

    /// The current tree head.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The stored tree state (size and peaks), as the head says.
    pub fn tree(&self) -> &CompactTree {
        &self.tree
    }

    /// The leaf hash of the last record (all zeros when empty).
    pub fn last_leaf(&self) -> Hash {
        self.head.last_leaf
    }

    /// The latest wall time written, unix ms.
    pub fn last_wall_ms(&self) -> u64 {
        self.head.last_wall_ms
    }

    /// The boot counter of the current run (0 before [`Store::boot`]).
    pub fn boot_counter(&self) -> u32 {
        self.head.boot
    }

    /// Size of the tree at the last checkpoint.
    pub fn last_checkpoint_size(&self) -> u64 {
        self.head.last_checkpoint
    }

    /// Appends `batch` in one durable transaction, signing a checkpoint in it when one is due, and
    /// returns the index of each record. On error nothing was written and the store reopens on next use.
    pub fn append(&mut self, batch: &[Append], signer: Option<&CheckpointSigner>) -> Result<Vec<u64>, IfError> {
        if let Some(gauge) = &mut self.disk {
            // Refused before anything is written; the file is fine, so it is not reopened.
            gauge.admit(&self.path)?;
        }
        let result = self.try_append(batch, signer, false);
        if result.is_err() {
            self.db = None;
        }
        result
    }

    /// Signs a checkpoint now if records were added since the last one.
    pub fn checkpoint_now(&mut self, signer: &CheckpointSigner) -> Result<bool, IfError> {
        if self.head.size == self.head.last_checkpoint {
            return Ok(false);
        }
        let result = self.try_append(&[], Some(signer), true);
        if result.is_err() {
            self.db = None;
        }
        result.map(|_| true)
    }

    fn try_append(
        &mut self,
        batch: &[Append],
        signer: Option<&CheckpointSigner>,
        force_checkpoint: bool,
    ) -> Result<Vec<u64>, IfError> {
        let mut head = self.head.clone();
        let mut tree = self.tree.clone();
        let db = self.db()?;
        let txn = begin_plain(db)?;
        let mut indices = Vec::with_capacity(batch.len());
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
            let mut replay = txn.open_table(REPLAY).map_err(|e| unavailable("table", e))?;
            let mut pending = txn.open_table(PENDING).map_err(|e| unavailable("table", e))?;
            let mut replies = txn.open_table(REPLIES).map_err(|e| unavailable("table", e))?;
            let mut index = Index::open(&txn)?;
            for item in batch {
                let mut entry = item.entry.clone();
                entry.wall_ms = entry.wall_ms.max(head.last_wall_ms);
                entry.boot = head.boot;
                let record = Record { index: head.size, kind: item.kind, entry, prev: head.last_leaf };
                let leaf = record.to_leaf()?;
                records.insert(record.index, leaf.as_slice()).map_err(|e| unavailable("write", e))?;
                head.last_leaf = Record::leaf_hash(&leaf);
                index.add(&mut tree, &record, head.last_leaf)?;
                head.last_wall_ms = record.entry.wall_ms;
                indices.push(record.index);
                head.size += 1;
                if let Some((sender, window)) = &item.replay {
                    replay.insert(sender.as_str(), encode(window)?.as_slice()).map_err(|e| unavailable("write", e))?;
                }
                if let Some(p) = &item.pending {
                    pending.insert(record.index, encode(p)?.as_slice()).map_err(|e| unavailable("write", e))?;
                }
                if let Some(index) = item.settles {
                    pending.remove(index).map_err(|e| unavailable("write", e))?;
                }
                if let Some(r) = &item.reply {
                    replies
                        .insert((r.sender.as_str(), r.seq), encode(&r.cached)?.as_slice())
                        .map_err(|e| unavailable("write", e))?;
                    replies
                        .retain_in((r.sender.as_str(), 0)..(r.sender.as_str(), r.keep_from), |_, _| false)
                        .map_err(|e| unavailable("write", e))?;
                }
                if let Some((provider, spent)) = &item.budget {
                    let mut budgets = txn.open_table(BUDGETS).map_err(|e| unavailable("table", e))?;
                    budgets
                        .insert(provider.as_str(), encode(spent)?.as_slice())
                        .map_err(|e| unavailable("write", e))?;
                }
                if let Some((key, value)) = &item.policy {
                    let mut policy = txn.open_table(POLICY).map_err(|e| unavailable("table", e))?;
                    policy.insert(key.as_str(), value.as_slice()).map_err(|e| unavailable("write", e))?;
                }
                if let Some(sender) = &item.forget {
                    replay.remove(sender.as_str()).map_err(|e| unavailable("write", e))?;
                    replies
                        .retain_in((sender.as_str(), 0)..=(sender.as_str(), u64::MAX), |_, _| false)
                        .map_err(|e| unavailable("write", e))?;
                }
            }
            let due = signer.is_some_and(|s| head.size - head.last_checkpoint >= s.every.max(1));
            if let Some(signer) = signer.filter(|_| (due || force_checkpoint) && head.size > head.last_checkpoint) {
                let note = sign(signer, head.size, tree.root())?;
                let mut cps = txn.open_table(CHECKPOINTS).map_err(|e| unavailable("table", e))?;
                cps.insert(head.size, note.as_str()).map_err(|e| unavailable("write", e))?;
                head.last_checkpoint = head.size;
            }
            head.peaks = tree.peaks().to_vec();
            let mut head_table = txn.open_table(HEAD).map_err(|e| unavailable("table", e))?;
            head_table.insert("head", encode(&head)?.as_slice()).map_err(|e| unavailable("write", e))?;
        }
        txn.commit().map_err(|e| unavailable("commit", e))?;
        self.head = head;
        self.tree = tree;
        self.sealed = false;
        Ok(indices)
    }

    /// Starts a run: bumps the boot counter and writes `batch` (the run's BOOT record and an INTERRUPTED
    /// for each open RECEIVED, as [`super::boot`] makes them) in the same transaction. On error nothing
    /// was written and the counter is as it was.
    pub fn boot(&mut self, batch: &[Append]) -> Result<(), IfError> {
        self.head.boot = self.head.boot.wrapping_add(1);
        // A run's first records are written whatever the disk budget: the agent then serves its status
        // (saying the log is full) and refuses commands, instead of not starting.
        let gauge = self.disk.take();
        let result = self.append(batch, None);
        self.disk = gauge;
        if result.is_err() {
            self.head.boot = self.head.boot.wrapping_sub(1);
        }
        result.map(|_| ())
    }

    /// The open RECEIVED records.
    pub fn pending(&mut self) -> Result<Vec<(u64, Pending)>, IfError> {
        let txn = self.db()?.begin_read().map_err(|e| unavailable("read", e))?;
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
        let txn = self.db()?.begin_read().map_err(|e| unavailable("read", e))?;
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
        let txn = self.db()?.begin_read().map_err(|e| unavailable("read", e))?;
        let table = txn.open_table(REPLIES).map_err(|e| unavailable("table", e))?;
        let mut out = HashMap::new();
        for row in table.iter().map_err(|e| unavailable("read", e))? {
            let (k, v) = row.map_err(|e| unavailable("read", e))?;
            let (sender, seq) = k.value();
            out.insert((sender.to_string(), seq), decode(v.value(), "cached reply")?);
        }
        Ok(out)
    }

    /// Calls `f` with each record's leaf bytes in order, from `start`.
    pub fn for_each_leaf(
        &mut self,
        start: u64,
        f: impl FnMut(u64, &[u8]) -> Result<(), IfError>,
    ) -> Result<(), IfError> {
        self.snapshot()?.for_each_leaf(start, f)
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
        let txn = self.db()?.begin_read().map_err(|e| unavailable("read", e))?;
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

    /// The size of the largest checkpoint the upstream acknowledged (0: none yet).
    pub fn anchored(&mut self) -> Result<u64, IfError> {
        self.snapshot()?.anchored()
    }

    /// A handle for reading the log from another thread while this store keeps writing.
    pub fn reader(&mut self) -> Result<Reader, IfError> {
        self.db()?;
        self.db.clone().map(Reader::new).ok_or_else(|| unavailable("", "not open"))
    }

    /// One consistent view of the log as last committed.
    pub fn snapshot(&mut self) -> Result<Snapshot, IfError> {
        self.reader()?.snapshot()
    }

    /// Records, durably, that the upstream acknowledged the checkpoint of `size`; it never goes back.
    pub fn set_anchored(&mut self, size: u64) -> Result<(), IfError> {
        self.raise("acked", size)
    }

    /// Records, durably, that the archive acknowledged the entry bundles of the first `records` records;
    /// it never goes back.
    pub fn set_archived(&mut self, records: u64) -> Result<(), IfError> {
        self.raise("archived", records)
    }

    /// Sets `key` of the `anchored` table to `value` unless it is already larger.
    fn raise(&mut self, key: &str, value: u64) -> Result<(), IfError> {
        let db = self.db()?;
        let txn = begin(db)?;
        {
            let mut table = txn.open_table(ANCHORED).map_err(|e| unavailable("table", e))?;
            let now = table.get(key).map_err(|e| unavailable("read", e))?.map_or(0, |v| v.value());
            table.insert(key, now.max(value)).map_err(|e| unavailable("write", e))?;
        }
        txn.commit().map_err(|e| unavailable("commit", e))?;
        self.sealed = true;
        Ok(())
    }

    /// Every stored checkpoint note, by tree size.
    pub fn checkpoints(&mut self) -> Result<Vec<(u64, String)>, IfError> {
        self.snapshot()?.checkpoints()
    }
}

/// The tree nodes and trace entries a transaction adds with its records.
struct Index<'t> {
    nodes: redb::Table<'t, (u64, u8), Hash>,
    traces: redb::Table<'t, (u128, u64), ()>,
}

impl<'t> Index<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, IfError> {
        let nodes = txn.open_table(NODES).map_err(|e| unavailable("table", e))?;
        let traces = txn.open_table(TRACES).map_err(|e| unavailable("table", e))?;
        Ok(Index { nodes, traces })
    }

    /// Pushes `record`'s leaf hash onto `tree`, storing every subtree root it completes and its trace.
    fn add(&mut self, tree: &mut CompactTree, record: &Record, leaf: Hash) -> Result<(), IfError> {
        for n in tree.push_nodes(leaf).iter().filter(|n| n.level >= STORED_LEVEL) {
            self.nodes.insert((n.last, n.level), n.hash).map_err(|e| unavailable("write", e))?;
        }
        if let Some(trace) = record.entry.trace {
            self.traces.insert((trace.as_u128(), record.index), ()).map_err(|e| unavailable("write", e))?;
        }
        Ok(())
    }
}

/// Builds the tree nodes and the trace index of a log written before they were kept, from its records.
fn index_existing(txn: &WriteTransaction) -> Result<(), IfError> {
    let records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
    let mut index = Index::open(txn)?;
    let mut tree = CompactTree::new();
    let count = records.len().map_err(|e| unavailable("read", e))?;
    for row in records.iter().map_err(|e| unavailable("read", e))? {
        let (k, v) = row.map_err(|e| unavailable("read", e))?;
        let record =
            Record::from_leaf(v.value()).map_err(|e| corrupt(format_args!("record {}: {}", k.value(), e.detail())))?;
        index.add(&mut tree, &record, Record::leaf_hash(v.value()))?;
    }
    if count > 0 {
        tracing::info!(records = count, "witness log: tree nodes and trace index built");
    }
    Ok(())
}

/// A write transaction durable when `commit` returns, with redb's allocator state saved in it (quick
/// repair), so that opening the file after a crash or power loss loads that state instead of walking the
/// whole file. It costs a second flush.
pub(super) fn begin(db: &Database) -> Result<WriteTransaction, IfError> {
    let mut txn = begin_plain(db)?;
    txn.set_quick_repair(true);
    Ok(txn)
}

/// A write transaction durable when `commit` returns, in one flush: an append's.
fn begin_plain(db: &Database) -> Result<WriteTransaction, IfError> {
    let mut txn = db.begin_write().map_err(|e| unavailable("transaction", e))?;
    txn.set_durability(redb::Durability::Immediate).map_err(|e| unavailable("durability", e))?;
    txn.set_quick_repair(false);
    Ok(txn)
}

fn sign(signer: &CheckpointSigner, size: u64, root: Hash) -> Result<String, IfError> {
    let origin = heapless::String::try_from(signer.origin.as_str())
        .map_err(|_| IfError::with(ErrorCode::ConfigInvalid, "checkpoint origin is too long"))?;
    let note = sign_checkpoint(&Checkpoint { origin, size, root }, &signer.origin, &signer.key)?;
    Ok(note.as_str().to_string())
}
