//! The witness file's format: its redb tables and the encoding of their rows. This is a compatibility
//! contract: a log written by any earlier version opens with this one, so a table is never renamed or
//! retyped, a row's encoding only gains fields at its end (postcard), and a new table is optional to
//! readers (a log written before `nodes` and `traces` existed gets both when it is next opened for
//! writing).
//!
//! Tables: `records` (index -> leaf bytes, [`super::record`]), `head` (`head`: tree size, peaks, last leaf
//! hash, last wall time, boot counter, last checkpoint; `pruned`: [`Pruned`]), `replay` (sender -> replay
//! window), `pending` (RECEIVED index -> [`Pending`]), `replies` ((sender, seq) -> [`CachedReply`]),
//! `checkpoints` (tree size -> signed note), `policy` (key -> signed trust root, manifest, talent or grant,
//! written only with its POLICY record), `budgets` (provider -> spending in the current period, written with
//! the RECEIVED record that charged it), `anchored` (`acked`: the largest checkpoint the upstream
//! acknowledged; `archived`: the records whose entry bundles the archive acknowledged), `nodes` ((last leaf,
//! level) -> root of every perfect subtree of 2^[`STORED_LEVEL`] leaves or more, written with the record that
//! completes it) and `traces` ((trace token, index) of every record with a trace).
//!
//! Beside the file, the journal (`<file name>.journal`, [`super::journal`]) holds appends the tables do not
//! have yet, as frames of [`Append`]s in postcard. A change to what an `Append` holds is a new frame
//! version (the frame's magic, `IFJ1`), and a version reads the frames of every earlier one: a journal a
//! crash left behind is folded in after an upgrade.

use if_protocol::replay::ReplayWindow;
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::CompactTree;
use if_protocol::{ErrorCode, IfError};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::record::{Entry, Kind};

pub const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
pub const HEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("head");
pub const REPLAY: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("replay");
pub const PENDING: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("pending");
pub const REPLIES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("replies");
pub const CHECKPOINTS: TableDefinition<'_, u64, &str> = TableDefinition::new("checkpoints");
pub const POLICY: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("policy");
pub const BUDGETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("budgets");
pub const ANCHORED: TableDefinition<'_, &str, u64> = TableDefinition::new("anchored");
pub const NODES: TableDefinition<'_, (u64, u8), Hash> = TableDefinition::new("nodes");
/// The lowest subtrees whose roots are stored: those of 16 leaves and up. Smaller ones are rehashed from
/// their leaves when a proof needs them (at most 15 hashes each), which keeps the nodes to one per 16
/// records instead of one per record.
pub const STORED_LEVEL: u8 = 4;
pub const TRACES: TableDefinition<'_, (u128, u64), ()> = TableDefinition::new("traces");

/// The persisted head of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HeadState {
    pub(super) size: u64,
    pub(super) peaks: Vec<Hash>,
    pub(super) last_leaf: Hash,
    pub(super) last_wall_ms: u64,
    pub(super) boot: u32,
    pub(super) last_checkpoint: u64,
}

/// Where the kept records start once older ones were pruned (archived upstream first): the first record
/// kept, a multiple of 256, and the leaf hash of the one before it, to which that record links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// The first record kept.
    pub below: u64,
    /// The leaf hash of record `below - 1`.
    pub last_leaf: Hash,
}

/// The `pruned` row of the head table (none: nothing was ever pruned).
pub(super) fn read_pruned(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<Pruned>, IfError> {
    match table.get("pruned").map_err(|e| unavailable("read", e))? {
        Some(v) => decode(v.value(), "pruned").map(Some),
        None => Ok(None),
    }
}

/// One record to append, with the state changes committed with it. A journal frame holds these as
/// postcard: a change here is a new frame version (see above).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// A RECEIVED record that has no outcome yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The sender.
    pub sender: String,
    /// The sender's sequence number.
    pub seq: u64,
    /// SHA-256 of the frame.
    pub digest: [u8; 32],
    /// The RECEIVED record's content, for the INTERRUPTED record.
    pub entry: Entry,
    /// Where the reply was to go: the response topic, if the publish named one.
    pub reply_topic: Option<String>,
    /// The publish's correlation data.
    pub correlation: Option<Vec<u8>>,
}

/// A reply kept so that a redelivered envelope gets the original answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedReply {
    /// SHA-256 of the frame that was answered.
    pub digest: [u8; 32],
    /// The reply payload exactly as published.
    pub reply: Vec<u8>,
}

/// A failed read or write: STORAGE_FULL when the file system is full or the file may not grow (ENOSPC,
/// EFBIG: the agent recovers by itself once there is room), WITNESS_UNAVAILABLE otherwise.
pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> IfError {
    let text = e.to_string();
    // redb wraps the io::Error in several error types, all of which show its text and OS code.
    let full = ["(os error 28)", "(os error 27)"].iter().any(|c| text.contains(c));
    let code = if full { ErrorCode::StorageFull } else { ErrorCode::WitnessUnavailable };
    IfError::format(code, format_args!("witness log {what}: {text}"))
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::InvalidProof, format_args!("witness log: {what}"))
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, IfError> {
    postcard::to_allocvec(v).map_err(|e| unavailable("encoding", e))
}

pub(super) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, IfError> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(format_args!("{what} does not decode: {e}")))
}

/// The stored head and the tree it describes (an empty log when there is none yet).
pub(super) fn read_head(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(HeadState, CompactTree), IfError> {
    let head: HeadState = match table.get("head").map_err(|e| unavailable("read", e))? {
        Some(v) => decode(v.value(), "head")?,
        None => HeadState::default(),
    };
    let tree = CompactTree::from_peaks(head.size, &head.peaks)
        .ok_or_else(|| corrupt("head peaks do not fit the tree size"))?;
    Ok((head, tree))
}
