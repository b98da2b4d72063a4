//! Checking a witness log from its first record (or, once older records were pruned, from the first one
//! kept): chain, tree, head and checkpoints.
//!
//! Used by `ifctl witness verify`, and by the `verify` action of `edge.witness`, which runs it on a
//! snapshot beside the serving agent; the agent's own start checks from its newest checkpoint
//! ([`super::tail`]). Every record must decode, sit at its own index and link to the leaf hash of the one
//! before; the tree rebuilt from the leaves must match each signed checkpoint at its size and the stored head at the end, and every tree
//! node and trace entry stored beside the records must match them. The first fault stops the check and
//! names the record index. A pruned log's check starts from the tree the stored nodes make at the
//! boundary and the last pruned leaf hash kept with it; the kept checkpoints tie both to the signature.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::NoteVerifier;
use if_protocol::witness::merkle::{CompactTree, Node};
use if_protocol::{ErrorCode, IfError};

use super::reader::Snapshot;
use super::record::{Kind, Record};
use super::store::Store;

/// What a successful check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The first record checked (0 unless older records were pruned).
    pub from: u64,
    /// Number of records.
    pub size: u64,
    /// The tree head.
    pub root: Hash,
    /// Checkpoints whose signature and root matched.
    pub checkpoints: usize,
    /// Records per kind.
    pub kinds: BTreeMap<&'static str, u64>,
}

/// A failed check: the first bad record (or the log size, for head and checkpoint faults) and why.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The record index where the check failed.
    pub index: u64,
    /// What was wrong.
    pub error: IfError,
}

/// The prefix put in front of the agent's public key in BOOT records.
pub const BOOT_KEY_PREFIX: &str = "key ";

/// How often the full check reports how far it got, in records.
pub const PROGRESS_EVERY: u64 = 4096;

/// Checks the whole log. Checkpoint signatures are checked with `key`, or else with the key the latest
/// BOOT record names.
pub fn verify(store: &mut Store, key: Option<&VerifyingKey>, origin: Option<&str>) -> Result<Report, Fault> {
    let log = store.snapshot().map_err(|error| Fault { index: 0, error })?;
    verify_log(&log, key, origin, |_| {})
}

/// [`verify`] on one snapshot of the log, which may be taken beside a running writer: what is checked is
/// the log as that snapshot saw it. `progress` is told the number of records checked every
/// [`PROGRESS_EVERY`] records.
pub fn verify_log(
    log: &Snapshot,
    key: Option<&VerifyingKey>,
    origin: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<Report, Fault> {
    let at = |index: u64| move |error| Fault { index, error };
    let (head, stored) = log.head().map_err(at(0))?;
    let checkpoints = log.checkpoints().map_err(at(0))?;
    let pruned = log.pruned().map_err(at(0))?;
    let from = pruned.map_or(0, |p| p.below);
    let mut walk = match pruned {
        Some(p) => Walk::at(log, p).map_err(at(p.below))?,
        None => Walk::new(),
    };
    let mut kinds = BTreeMap::new();
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let wanted: std::collections::BTreeSet<u64> = checkpoints.iter().map(|(s, _)| *s).collect();
    // A checkpoint exactly at the pruned boundary is the tree the walk starts from.
    if from > 0 && wanted.contains(&from) {
        roots.insert(from, walk.tree.root());
    }
    let mut boot_key = None;
    let mut index_at = 0;
    log.for_each_leaf(from, |index, leaf| {
        index_at = index;
        let record = walk.step(log, index, leaf)?;
        *kinds.entry(record.kind.name()).or_insert(0) += 1;
        if record.kind == Kind::Boot {
            boot_key = key_in(&record.entry.detail).or(boot_key);
        }
        let size = walk.tree.size();
        if wanted.contains(&size) {
            roots.insert(size, walk.tree.root());
        }
        if size.is_multiple_of(PROGRESS_EVERY) {
            progress(size);
        }
        Ok(())
    })
    .map_err(at(index_at))?;
    walk.check_head(head.size, &stored, head.last_leaf)?;
    let size = walk.tree.size();
    let key = key.copied().or(boot_key);
    for (cp_size, note) in &checkpoints {
        let Some(root) = roots.get(cp_size) else {
            return Err(head_fault(size, &format!("checkpoint at size {cp_size} is beyond the log")));
        };
        let cp = match key {
            Some(k) => open_note(note, k, origin),
            None => if_protocol::witness::checkpoint::Checkpoint::parse_note(note),
        }
        .map_err(at(*cp_size))?;
        if cp.size != *cp_size || &cp.root != root {
            return Err(Fault {
                index: *cp_size,
                error: IfError::format(
                    ErrorCode::InvalidProof,
                    format_args!("checkpoint at size {cp_size} has another root"),
                ),
            });
        }
    }
    progress(size);
    Ok(Report { from, size, root: walk.tree.root(), checkpoints: checkpoints.len(), kinds })
}

/// Records checked in order from a known tree and last leaf: the step the full check and the start-up
/// check ([`super::tail`]) share.
#[derive(Debug, Clone)]
pub(super) struct Walk {
    /// The tree of the records checked so far.
    pub(super) tree: CompactTree,
    /// The leaf hash of the last record checked.
    pub(super) prev: Hash,
}

impl Walk {
    /// Before the first record.
    pub(super) fn new() -> Self {
        Walk { tree: CompactTree::new(), prev: [0u8; 32] }
    }

    /// At the boundary of a pruned log: the tree of the pruned records from their stored subtree roots
    /// (each a whole multiple of 256 leaves), and the leaf hash kept of the last one.
    pub(super) fn at(log: &Snapshot, p: super::schema::Pruned) -> Result<Self, IfError> {
        let peaks = super::proof::peaks_of(log, p.below)?;
        let tree = CompactTree::from_peaks(p.below, &peaks).ok_or_else(|| {
            IfError::with(ErrorCode::InvalidProof, "the stored nodes at the pruned boundary do not fit")
        })?;
        Ok(Walk { tree, prev: p.last_leaf })
    }

    /// Checks the record at `index`: it decodes, sits at its position, links to the one before, and what
    /// is stored beside it matches.
    pub(super) fn step(&mut self, log: &Snapshot, index: u64, leaf: &[u8]) -> Result<Record, IfError> {
        let fault = |what: &str| IfError::format(ErrorCode::InvalidProof, format_args!("record {index}: {what}"));
        let record = Record::from_leaf(leaf).map_err(|e| fault(e.detail()))?;
        if record.index != index || index != self.tree.size() {
            return Err(fault("index does not match its position"));
        }
        if record.prev != self.prev {
            return Err(fault("does not link to the previous record's hash"));
        }
        self.prev = Record::leaf_hash(leaf);
        let completed = self.tree.push_nodes(self.prev);
        check_index(log, &record, &completed).map_err(fault)?;
        Ok(record)
    }

    /// The stored head (size, tree, last leaf) must be what the records make.
    pub(super) fn check_head(&self, size: u64, tree: &CompactTree, last_leaf: Hash) -> Result<(), Fault> {
        if size != self.tree.size() || tree != &self.tree || last_leaf != self.prev {
            return Err(head_fault(self.tree.size(), "the stored head does not match the records"));
        }
        Ok(())
    }
}

fn head_fault(size: u64, what: &str) -> Fault {
    Fault { index: size, error: IfError::format(ErrorCode::InvalidProof, format_args!("after {size} records: {what}")) }
}

/// Checks what the log stores beside a record: the tree nodes it completed (anchor proofs are made of
/// them) and its place in the trace index. A log written before those were kept has neither.
fn check_index(log: &Snapshot, record: &Record, completed: &[Node]) -> Result<(), &'static str> {
    if !log.indexed() {
        return Ok(());
    }
    for n in completed.iter().filter(|n| n.level >= Snapshot::STORED_LEVEL) {
        if log.stored_node(n.last, n.level).map_err(|_| "its tree node cannot be read")? != Some(n.hash) {
            return Err("a stored tree node does not match the records");
        }
    }
    if let Some(trace) = record.entry.trace
        && !log.trace_lists(trace, record.index).map_err(|_| "the trace index cannot be read")?
    {
        return Err("missing from the trace index");
    }
    Ok(())
}

pub(super) fn open_note(
    note: &str,
    key: VerifyingKey,
    origin: Option<&str>,
) -> Result<if_protocol::witness::checkpoint::Checkpoint, IfError> {
    let body = if_protocol::witness::checkpoint::Checkpoint::parse_note(note)?;
    let origin = origin.unwrap_or(&body.origin);
    NoteVerifier::new(origin, key)?.open_checkpoint(note, origin)
}

fn key_in(detail: &str) -> Option<VerifyingKey> {
    let b64 = detail.split_whitespace().skip_while(|w| *w != BOOT_KEY_PREFIX.trim()).nth(1)?;
    let bytes = B64.decode(b64).ok()?;
    if_protocol::keys::verifying_key(&bytes).ok()
}
