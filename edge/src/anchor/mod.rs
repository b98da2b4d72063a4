//! Anchors upstream: the agent's signed checkpoints, published to the uplink broker in order with a
//! consistency proof, until the upstream acknowledges them.
//!
//! The queue is durable by construction: every checkpoint is stored in the witness file when it is
//! signed, and the file also keeps the largest checkpoint the upstream acknowledged. The checkpoints
//! after that one are the anchors still to upload, across restarts and outages. Each anchor carries a
//! proof from the checkpoint before it (the first, from the acknowledged one), so a verifier that
//! accepted the previous anchor checks the next against it, and nothing else.
//!
//! Messages, JSON: an anchor on `if/v1/{site}/{agent}/anchors` (QoS 1, retained, so the latest stays)
//! `{"agent", "size", "from", "note", "proof": [base64]}`; an acknowledgement on `.../anchors/ack`
//! `{"size", "root"}` (root in base64).

pub mod uplink;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::Checkpoint;
use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};

use crate::witness::proof::consistency_of;
use crate::witness::reader::Snapshot;

/// Most anchors offered in one round; the rest follow once these are acknowledged.
pub const MAX_ROUND: usize = 512;

/// A signed checkpoint on its way upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// `site/agent`.
    pub agent: String,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The tree size the proof starts from: the previous anchor's (0 for the first ever).
    pub from: u64,
    /// The signed checkpoint note, verbatim.
    pub note: String,
    /// The consistency proof from `from` to `size`, base64 hashes.
    pub proof: Vec<String>,
}

/// The upstream's acknowledgement of an anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The anchor's tree size.
    pub size: u64,
    /// Its root hash, base64.
    pub root: String,
}

impl Anchor {
    /// The checkpoint inside the note (signature not checked here).
    pub fn checkpoint(&self) -> Result<Checkpoint, IfError> {
        Checkpoint::parse_note(&self.note)
    }

    /// The proof's hashes.
    pub fn proof_hashes(&self) -> Result<Vec<Hash>, IfError> {
        self.proof
            .iter()
            .map(|h| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| Hash::try_from(b.as_slice()).ok())
                    .ok_or_else(|| IfError::with(ErrorCode::InvalidProof, "a proof hash is not 32 bytes of base64"))
            })
            .collect()
    }
}

/// The acknowledged size and how many checkpoints wait after it (cheap: no proofs).
pub fn backlog(log: &Snapshot) -> Result<(u64, u64), IfError> {
    let acked = log.anchored()?;
    Ok((acked, log.count_checkpoints_after(acked)?))
}

/// The anchors the upstream has not acknowledged, oldest first, at most [`MAX_ROUND`], each with its
/// proof from the one before; and the acknowledged size they start from. Each proof reads `O(log n)`
/// stored tree nodes.
pub fn pending(log: &Snapshot, agent: &str) -> Result<(u64, Vec<Anchor>), IfError> {
    let acked = log.anchored()?;
    let notes = log.checkpoints_after(acked, MAX_ROUND)?;
    let mut from = acked;
    let mut out = Vec::with_capacity(notes.len());
    for (size, note) in notes {
        let proof = consistency_of(log, from, size)?.iter().map(|h| B64.encode(h)).collect();
        out.push(Anchor { agent: agent.to_string(), size, from, note, proof });
        from = size;
    }
    Ok((acked, out))
}
