//! Anchors upstream: the agent's signed checkpoints, published to the uplink broker in order with a
//! consistency proof, until the upstream acknowledges them.
//!
//! The queue is durable by construction: every checkpoint is stored in the witness file when it is
//! signed, and the file also keeps the largest checkpoint the upstream acknowledged. The checkpoints
//! after that one are the anchors still to upload, across restarts and outages. Each anchor carries a
//! proof from the checkpoint before it (the first, from the acknowledged one), so a verifier that
//! accepted the previous anchor checks the next against it, and nothing else.
//!
//! The messages are the contract's ([`if_protocol::messages::anchor`]): an [`Anchor`] on the agent's
//! `anchors` topic (QoS 1, retained, so the latest stays), an acknowledgement on `anchors/ack`. Behind the
//! anchors, the records themselves go to the archive as tlog-tiles entry bundles ([`archive`]).

pub mod archive;
pub mod uplink;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::IfError;
use if_protocol::messages::Anchor;

use crate::witness::proof::consistency_of;
use crate::witness::reader::Snapshot;

/// Most anchors offered in one round; the rest follow once these are acknowledged.
pub const MAX_ROUND: usize = 512;

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
