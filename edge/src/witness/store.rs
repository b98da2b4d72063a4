//! The witness log on disk: one redb file with its tables, the journal beside it, and the durability
//! contract.
//!
//! Contract: [`Store::append`] writes a whole batch of records, and the state changes that belong to them
//! (replay windows, open RECEIVED entries, cached replies, a checkpoint), as **one** frame of the journal
//! ([`super::journal`]) in one write and one flush. When it returns `Ok`, every record in the batch
//! survives a crash or power loss; when it returns `Err`, none of them exists and the in-memory head is
//! unchanged. (One exception, as with any flush that fails: if the frame's bytes were written but its
//! flush failed, and voiding them failed too, every later append fails; if the process ends before the
//! void succeeds, the next start may find the frame. A RECEIVED record in it is then INTERRUPTED at that
//! start and never run.)
//!
//! The journal's records reach the tables in folds, each **one** redb transaction: the active segment
//! of the journal goes to the folding thread ([`Store::hand_off`], [`super::fold`]) once it holds
//! [`FOLD_AT`] bytes or the writer has been idle 50 ms, while appends go on in the other segment; and
//! everything is folded, here, before anything reads the tables (a snapshot, a query, the start,
//! pruning) and when the store closes ([`Store::fold`]). A batch larger than a segment is written to
//! the tables directly, after a fold, in one transaction of its own. Folding is idempotent (every row a
//! fold writes is the state after its records), so a fold that failed is done again; until it succeeds,
//! appends are refused with its error, and nothing runs unwitnessed.
//!
//! Every redb commit saves redb's allocator state (quick repair), so opening the file after a crash is
//! as quick as after a clean stop, however large the file. Opening it then reads the journal: the frames
//! of both segments that follow the tables' head, each linked to the record before it, are folded in
//! before anything else happens. A torn last frame was never acknowledged and is left out; an intact
//! frame of the same run beyond a broken one, or a frame that does not follow the log, means the journal
//! was damaged, and the store refuses to open.
//!
//! The tables and what their rows hold are the file format, in [`super::schema`]. A sender's replay
//! window and its cached replies go together when a policy command resets its sequence numbers. A log
//! written before `nodes` and `traces` existed gets both when it is next opened for writing, in one
//! transaction. Records arrive finished: what they say (and that no secret is in it) is the caller's.
//!
//! The rows a fold writes are [`super::tables`]'s; every read and write of the tables outside a fold goes
//! through this store, which folds first. What a run starts from is read back in [`super::restore`].
//!
//! One file, though long: the head, the journal's segments, the records on their way to the tables and
//! the folding thread's answer change together in every operation here, and the contract above holds
//! only if they are changed in one place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use ed25519_dalek::SigningKey;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::{Checkpoint, sign_checkpoint};
use if_protocol::witness::merkle::CompactTree;
use if_protocol::{ErrorCode, IfError};
use redb::{Database, ReadableDatabase as _, ReadableTable, TableHandle as _};

use super::fold::{Folded, Folder};
use super::journal::{self, Journal};
use super::reader::{Reader, Snapshot};
use super::schema::{
    ANCHORED, BUDGETS, CHECKPOINTS, HEAD, HeadState, NODES, PENDING, POLICY, RECORDS, REPLAY, REPLIES, corrupt,
    read_head, unavailable,
};
pub use super::schema::{Append, CachedReply, Pending, ReplyUpdate};
use super::tables::{Batch, begin, commit, index_existing, prepare};

/// A command a restart left without an outcome, with the reply its sender is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The open RECEIVED record it was.
    pub pending: Pending,
    /// The reply (also cached for redeliveries).
    pub reply: Vec<u8>,
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

/// A journal segment is handed to the folding thread once it holds this many bytes of frames (32 frames
/// of a block each, 16 commands at a steady pace): a fold's pages and flushes then hold up the
/// journal's own flush a little and often, rather than for milliseconds at once (docs/BENCHMARKS.md).
/// Under a flood the folds grow by themselves, as a segment fills while the fold before it commits.
pub const FOLD_AT: u64 = 128 << 10;

/// The journal segment that is not taking frames, while its records go to the tables.
#[derive(Debug)]
enum Behind {
    /// The folding thread has them; its answer comes here.
    Folding(mpsc::Receiver<Folded>),
    /// Their fold failed: they are folded again, here, before anything else is written.
    Failed(Batch, HeadState),
    /// The folding thread stopped with them: they are in the journal alone, for the next open to fold.
    Lost,
}

/// The open witness log.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cache_bytes: usize,
    db: Option<Arc<Database>>,
    /// The head with every record appended, in the tables or only in the journal.
    head: HeadState,
    tree: CompactTree,
    /// `None` for a log opened for inspection: its appends go to the tables directly.
    journal: Option<Journal>,
    /// Records in the active journal segment, not yet in the tables.
    active: Batch,
    /// The other segment's records, when they are not in the tables yet.
    behind: Option<Behind>,
    folder: Option<Folder>,
    /// Why the last fold failed; appends are refused until one succeeds.
    fold_failed: Option<IfError>,
    disk: Option<super::disk::Gauge>,
}

impl Store {
    /// Opens (or creates) the log at `path` with redb's page cache capped at `cache_bytes`, and folds in
    /// what its journal holds beyond the tables.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store, IfError> {
        let mut store = Store::new(path, cache_bytes);
        store.reopen()?;
        let (mut journal, contents) = Journal::open(&Journal::path_of(path))?;
        store.recover(&contents)?;
        match journal.ready() {
            Ok(()) => store.journal = Some(journal),
            // A journal that cannot be made (a full disk at the first start) leaves appends to the
            // tables, one commit each: the agent starts, and its disk gauge says why it is slow or full.
            Err(e) => tracing::warn!(error = %e, "witness journal unavailable; appends commit to the log directly"),
        }
        store.folder = Some(Folder::spawn()?);
        Ok(store)
    }

    /// Opens an existing log without creating anything (for inspection and verification). A journal left
    /// by a crash is folded into the tables; appends to this store go to the tables directly.
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
        let mut store = Store::new(path, 16 << 20);
        {
            let txn = db.begin_read().map_err(|e| unavailable("read", e))?;
            let table = txn.open_table(HEAD).map_err(|e| corrupt(format_args!("not a witness log: {e}")))?;
            (store.head, store.tree) = read_head(&table)?;
        }
        store.db = Some(Arc::new(db));
        let journal = Journal::path_of(path);
        if journal.is_file() {
            let (_, contents) = Journal::open(&journal)?;
            store.recover(&contents)?;
        }
        Ok(store)
    }

    fn new(path: &Path, cache_bytes: usize) -> Store {
        Store {
            path: path.to_path_buf(),
            cache_bytes,
            db: None,
            head: HeadState::default(),
            tree: CompactTree::new(),
            journal: None,
            active: Batch::default(),
            behind: None,
            folder: None,
            fold_failed: None,
            disk: None,
        }
    }

    /// Opens the file (redb repairs it if it must) and makes the tables a new log lacks. The head in
    /// memory stays, with the records that wait to be folded, unless the tables are ahead of it: a commit
    /// that reported an error had reached the disk.
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
            let (head, tree) = read_head(&table)?;
            if head.size > self.head.size || (head.size == self.head.size && head.boot > self.head.boot) {
                (self.head, self.tree) = (head, tree);
            }
        }
        let indexed = txn.list_tables().map_err(|e| unavailable("read", e))?.any(|t| t.name() == NODES.name());
        if !indexed {
            index_existing(&txn)?;
        }
        txn.commit().map_err(|e| unavailable("commit", e))?;
        self.db = Some(Arc::new(db));
        Ok(())
    }

    /// Takes the journal's frames that follow the tables' head, from both segments in the order of their
    /// records, and folds them in.
    fn recover(&mut self, contents: &[u8]) -> Result<(), IfError> {
        let segments = journal::read(contents);
        let mut frames: Vec<&journal::Frame> = segments.iter().flat_map(|s| &s.frames).collect();
        frames.sort_by_key(|f| f.first);
        let mut head = self.head.clone();
        let mut tree = self.tree.clone();
        let mut batch = Batch::default();
        for frame in frames {
            if frame.end() <= head.size {
                // Folded before the crash, or older still.
                continue;
            }
            if frame.first != head.size || frame.prev != head.last_leaf {
                return Err(corrupt(format_args!(
                    "journal frame at byte {} (records {}..{}) does not follow record {} of the log",
                    frame.offset,
                    frame.first,
                    frame.end(),
                    head.size
                )));
            }
            let body = frame.body()?;
            batch.items.extend(prepare(&mut head, &mut tree, body.appends)?);
            if let Some(note) = body.checkpoint {
                head.last_checkpoint = head.size;
                batch.notes.push((head.size, note));
            }
        }
        if let Some(first) = segments.iter().find_map(|s| s.intact_after(head.size)) {
            return Err(corrupt(format_args!(
                "the journal holds record {first} beyond a damaged frame: records before it were lost"
            )));
        }
        if batch.is_empty() {
            return Ok(());
        }
        tracing::info!(records = batch.items.len(), "witness log: records from the journal folded in");
        head.peaks = tree.peaks().to_vec();
        (self.active, self.head, self.tree) = (batch, head, tree);
        self.fold()
    }

    /// Folds every record of the journal into the tables, here, after the folding thread's work: when
    /// this returns `Ok`, the tables hold the whole log. On error the records stay in the journal, appends
    /// are refused, and the file is reopened on next use.
    pub fn fold(&mut self) -> Result<(), IfError> {
        let result = self.catch_up(true).and_then(|()| {
            if self.active.is_empty() {
                return Ok(());
            }
            let batch = std::mem::take(&mut self.active);
            let head = self.head.clone();
            match self.transact(|db| commit(db, &batch, &head)) {
                Ok(()) => {
                    if let Some(journal) = &mut self.journal {
                        journal.reset();
                    }
                    Ok(())
                }
                Err(e) => {
                    self.active = batch;
                    Err(e)
                }
            }
        });
        self.fold_failed = result.as_ref().err().cloned();
        result
    }

    /// Hands the active segment's records to the folding thread, once its last fold is done, and makes
    /// the other segment active: appends go on while the tables catch up.
    pub fn hand_off(&mut self) -> Result<(), IfError> {
        self.catch_up(true)?;
        if self.active.is_empty() {
            return Ok(());
        }
        if self.journal.is_none() || self.folder.is_none() {
            return self.fold();
        }
        self.db()?;
        let db = self.db.clone().ok_or_else(|| unavailable("", "not open"))?;
        let Some(folder) = &self.folder else { return self.fold() };
        match folder.fold(db, std::mem::take(&mut self.active), self.head.clone()) {
            Ok(answer) => {
                self.behind = Some(Behind::Folding(answer));
                if let Some(journal) = &mut self.journal {
                    journal.switch();
                }
                Ok(())
            }
            Err(failed) => {
                // The thread is gone: folds are done here from now on.
                let (e, batch, _) = *failed;
                tracing::error!(error = %e, "the witness fold thread stopped; folding on the writer");
                (self.active, self.folder) = (batch, None);
                self.fold()
            }
        }
    }

    /// Settles the segment behind: takes the folding thread's answer (waiting for it when `wait`), and
    /// folds here what failed there. `Ok` when nothing is behind any more, or it is still folding.
    fn catch_up(&mut self, wait: bool) -> Result<(), IfError> {
        let answer = match self.behind.take() {
            None => return Ok(()),
            Some(Behind::Lost) => {
                self.behind = Some(Behind::Lost);
                self.fold_failed = Some(super::fold::gone());
                return Err(super::fold::gone());
            }
            Some(Behind::Folding(answer)) => {
                let got =
                    if wait { answer.recv().map_err(|_| mpsc::TryRecvError::Disconnected) } else { answer.try_recv() };
                match got {
                    Ok(folded) => folded,
                    Err(mpsc::TryRecvError::Empty) => {
                        self.behind = Some(Behind::Folding(answer));
                        return Ok(());
                    }
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.behind = Some(Behind::Lost);
                        self.fold_failed = Some(super::fold::gone());
                        return Err(super::fold::gone());
                    }
                }
            }
            Some(Behind::Failed(batch, head)) => match self.transact(|db| commit(db, &batch, &head)) {
                Ok(()) => Ok(()),
                Err(e) => Err(Box::new((e, batch, head))),
            },
        };
        match answer {
            Ok(()) => Ok(()),
            Err(failed) => {
                let (e, batch, head) = *failed;
                // The file may have to be reopened: the folding thread let go of it before it answered.
                self.db = None;
                self.behind = Some(Behind::Failed(batch, head));
                self.fold_failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Whether the tables hold every record (nothing waits in the journal).
    pub fn folded(&self) -> bool {
        self.active.is_empty() && self.behind.is_none()
    }

    /// Whether the active segment holds enough to hand to the folding thread, which is free.
    pub fn fold_due(&mut self) -> bool {
        if let Err(e) = self.catch_up(false) {
            tracing::error!(error = %e, "the witness journal could not be folded into the log");
        }
        self.behind.is_none() && self.journal.as_ref().is_some_and(|j| j.used() >= FOLD_AT)
    }

    /// Runs `f` on the open file; on error the file is reopened on next use.
    fn transact(&mut self, f: impl FnOnce(&Database) -> Result<(), IfError>) -> Result<(), IfError> {
        let result = self.db().and_then(f);
        if result.is_err() {
            self.db = None;
        }
        result
    }

    pub(super) fn db(&mut self) -> Result<&Database, IfError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        self.db.as_deref().ok_or_else(|| unavailable("", "not open"))
    }

    /// The tables with every record in them: a fold first.
    pub(super) fn tables(&mut self) -> Result<&Database, IfError> {
        self.fold()?;
        self.db()
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

    /// The tree state (size and peaks) with every record appended.
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

    /// Appends `batch` durably, signing a checkpoint with it when one is due, and returns the index of
    /// each record. On error nothing was written.
    pub fn append(&mut self, batch: Vec<Append>, signer: Option<&CheckpointSigner>) -> Result<Vec<u64>, IfError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(gauge) = &mut self.disk {
            // Refused before anything is written; the file is fine, so it is not reopened.
            gauge.admit(&self.path)?;
        }
        if self.fold_failed.is_some() {
            self.fold()?;
        }
        let mut head = self.head.clone();
        let mut tree = self.tree.clone();
        let (first, prev) = (head.size, head.last_leaf);
        let mut next = Batch { items: prepare(&mut head, &mut tree, batch)?, notes: Vec::new() };
        if let Some(s) = signer
            && head.size - head.last_checkpoint >= s.every.max(1)
        {
            next.notes.push((head.size, sign(s, head.size, tree.root())?));
            head.last_checkpoint = head.size;
        }
        head.peaks = tree.peaks().to_vec();
        let indices = next.items.iter().map(|p| p.index).collect();
        if self.journal.is_some() {
            let appends: Vec<&Append> = next.items.iter().map(|p| &p.item).collect();
            let frame = journal::encode(first, &prev, &appends, next.notes.first().map(|(_, n)| n.as_str()))?;
            if self.journal.as_ref().is_some_and(|j| !j.fits(frame.len())) {
                self.hand_off()?;
            }
            if let Some(journal) = self.journal.as_mut().filter(|j| j.fits(frame.len())) {
                journal.write(&frame)?;
                self.active.items.append(&mut next.items);
                self.active.notes.append(&mut next.notes);
                (self.head, self.tree) = (head, tree);
                return Ok(indices);
            }
        }
        // Larger than a journal segment, or a log open for inspection: to the tables, after the rest.
        self.fold()?;
        self.transact(|db| commit(db, &next, &head))?;
        (self.head, self.tree) = (head, tree);
        Ok(indices)
    }

    /// Signs a checkpoint now if records were added since the last one.
    pub fn checkpoint_now(&mut self, signer: &CheckpointSigner) -> Result<bool, IfError> {
        if self.head.size == self.head.last_checkpoint {
            return Ok(false);
        }
        self.fold()?;
        let mut head = self.head.clone();
        let notes = vec![(head.size, sign(signer, head.size, self.tree.root())?)];
        head.last_checkpoint = head.size;
        self.transact(|db| commit(db, &Batch { items: Vec::new(), notes }, &head))?;
        self.head = head;
        Ok(true)
    }

    /// Starts a run: bumps the boot counter and writes `batch` (the run's BOOT record and an INTERRUPTED
    /// for each open RECEIVED, as [`super::boot`] makes them) in the same transaction, to the tables: the
    /// run's frames are replayed with its boot counter. On error nothing was written and the counter is
    /// as it was.
    pub fn boot(&mut self, batch: &[Append]) -> Result<(), IfError> {
        self.fold()?;
        let mut head = self.head.clone();
        let mut tree = self.tree.clone();
        head.boot = head.boot.wrapping_add(1);
        // A run's first records are written whatever the disk budget: the agent then serves its status
        // (saying the log is full) and refuses commands, instead of not starting.
        let items = prepare(&mut head, &mut tree, batch.iter().cloned())?;
        head.peaks = tree.peaks().to_vec();
        self.transact(|db| commit(db, &Batch { items, notes: Vec::new() }, &head))?;
        (self.head, self.tree) = (head, tree);
        Ok(())
    }

    /// Calls `f` with each record's leaf bytes in order, from `start`.
    pub fn for_each_leaf(
        &mut self,
        start: u64,
        f: impl FnMut(u64, &[u8]) -> Result<(), IfError>,
    ) -> Result<(), IfError> {
        self.snapshot()?.for_each_leaf(start, f)
    }

    /// The size of the largest checkpoint the upstream acknowledged (0: none yet).
    pub fn anchored(&mut self) -> Result<u64, IfError> {
        self.snapshot()?.anchored()
    }

    /// A handle for reading the log from another thread while this store keeps writing.
    pub fn reader(&mut self) -> Result<Reader, IfError> {
        self.tables()?;
        self.db.clone().map(Reader::new).ok_or_else(|| unavailable("", "not open"))
    }

    /// A handle for reading the tables as the folds left them, without a fold here: the records of the
    /// last 50 ms or [`FOLD_AT`] bytes may not be in them yet, and no append waits for one.
    pub fn folded_reader(&mut self) -> Result<Reader, IfError> {
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
        self.fold()?;
        self.transact(|db| {
            let txn = begin(db)?;
            let mut table = txn.open_table(ANCHORED).map_err(|e| unavailable("table", e))?;
            let now = table.get(key).map_err(|e| unavailable("read", e))?.map_or(0, |v| v.value());
            table.insert(key, now.max(value)).map_err(|e| unavailable("write", e))?;
            drop(table);
            txn.commit().map_err(|e| unavailable("commit", e))
        })
    }

    /// Every stored checkpoint note, by tree size.
    pub fn checkpoints(&mut self) -> Result<Vec<(u64, String)>, IfError> {
        self.snapshot()?.checkpoints()
    }
}

impl Drop for Store {
    /// Folds what the journal holds, so that a store closed cleanly leaves every record in the tables; if
    /// that fails, the next open folds it.
    fn drop(&mut self) {
        if let Err(e) = self.fold() {
            tracing::warn!(error = %e, "the witness journal was left to the next open");
        }
    }
}

fn sign(signer: &CheckpointSigner, size: u64, root: Hash) -> Result<String, IfError> {
    let origin = heapless::String::try_from(signer.origin.as_str())
        .map_err(|_| IfError::with(ErrorCode::ConfigInvalid, "checkpoint origin is too long"))?;
    let note = sign_checkpoint(&Checkpoint { origin, size, root }, &signer.origin, &signer.key)?;
    Ok(note.as_str().to_string())
}
