//! Checking a witness log from its newest signed checkpoint: what the agent does before it takes work, in
//! a time that does not grow with the log.
//!
//! The newest checkpoint's signature is checked with the agent's own key, and its root is rebuilt from the
//! tree nodes stored for that size (one per peak; a peak of fewer than 16 leaves from its leaves). The
//! record just below the checkpoint is tied to that tree by its path up to its peak, so the chain after
//! it starts from a hash the signature covers. Every record after the checkpoint is then checked as the
//! full check does (chain, tree, stored nodes, trace index), and the stored head must be what they make.
//!
//! What this does not read: the records below the checkpoint. A change to one of them is found by the
//! full check ([`super::verify`]: `ifctl witness verify`, or the `verify` action of `edge.witness` beside
//! a serving agent) and by the collector, which holds the signed checkpoints. A changed record after the
//! checkpoint, a forged tree node on the checkpoint's peaks, a checkpoint note that is not the agent's, or
//! a newest checkpoint the head names but the log lost all stop the start.

use ed25519_dalek::VerifyingKey;
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::{CompactTree, node_hash};
use if_protocol::{ErrorCode, IfError};

use super::proof::{Nodes as _, peaks_of};
use super::reader::Snapshot;
use super::record::Record;
use super::verify::{Fault, Walk, open_note};

/// What the start-up check read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The size of the checkpoint it started from (0: none was signed, and every record was read).
    pub from: u64,
    /// Records in the log.
    pub size: u64,
    /// Records read after the checkpoint.
    pub read: u64,
}

/// Checks `log` from its newest checkpoint, signed by `key` under `origin`.
pub fn check(log: &Snapshot, key: &VerifyingKey, origin: &str) -> Result<Checked, Fault> {
    let at = |index: u64| move |error| Fault { index, error };
    let (head, stored) = log.head().map_err(at(0))?;
    let newest = log.newest_checkpoint().map_err(at(0))?;
    let from = newest.as_ref().map_or(0, |(size, _)| *size);
    if from != head.last_checkpoint {
        return Err(fault(
            head.last_checkpoint,
            format_args!(
                "the head names a checkpoint at size {}, the newest stored is at {from}",
                head.last_checkpoint
            ),
        ));
    }
    if from > head.size {
        return Err(fault(from, format_args!("checkpoint at size {from} is beyond the log of {}", head.size)));
    }
    let mut walk = Walk::new();
    if let Some((size, note)) = newest {
        walk = at_checkpoint(log, size, &note, key, origin)?;
    }
    let mut read = 0;
    let mut index_at = from;
    log.for_each_leaf(from, |index, leaf| {
        index_at = index;
        read += 1;
        walk.step(log, index, leaf).map(|_| ())
    })
    .map_err(at(index_at))?;
    walk.check_head(head.size, &stored, head.last_leaf)?;
    Ok(Checked { from, size: head.size, read })
}

/// The tree and last leaf at the checkpoint of `size`, rebuilt from stored nodes and matched against the
/// signed root.
fn at_checkpoint(log: &Snapshot, size: u64, note: &str, key: &VerifyingKey, origin: &str) -> Result<Walk, Fault> {
    let cp = open_note(note, *key, Some(origin)).map_err(|error| Fault { index: size, error })?;
    if cp.size != size || size == 0 {
        return Err(fault(size, format_args!("checkpoint stored at size {size} signs size {}", cp.size)));
    }
    let read = |e: IfError| fault(size, format_args!("checkpoint at size {size}: {}", e.detail()));
    let peaks = peaks_of(log, size).map_err(read)?;
    let tree = CompactTree::from_peaks(size, &peaks)
        .ok_or_else(|| fault(size, format_args!("checkpoint at size {size}: the peaks do not fit")))?;
    if tree.root() != cp.root {
        return Err(fault(size, format_args!("checkpoint at size {size} has another root than the stored tree")));
    }
    let last = size - 1;
    let leaf = log.leaf(last).map_err(|e| fault(last, format_args!("{}", e.detail())))?;
    let record = Record::from_leaf(&leaf).map_err(|e| fault(last, format_args!("record {last}: {}", e.detail())))?;
    let prev = Record::leaf_hash(&leaf);
    let lowest = peaks.last().copied().unwrap_or(prev);
    if record.index != last || path_to_peak(log, last, prev, size.trailing_zeros()).map_err(read)? != lowest {
        return Err(fault(last, format_args!("record {last} is not in the tree the checkpoint at size {size} signs")));
    }
    Ok(Walk { tree, prev })
}

/// The root of the perfect subtree of `2^height` leaves that ends at leaf `last`, from that leaf's hash
/// and the subtrees to its left.
fn path_to_peak(log: &Snapshot, last: u64, leaf: Hash, height: u32) -> Result<Hash, IfError> {
    let mut hash = leaf;
    for level in 0..height {
        let sibling = (last >> level) - 1;
        hash = node_hash(&log.perfect(level as u8, sibling)?, &hash);
    }
    Ok(hash)
}

fn fault(index: u64, what: std::fmt::Arguments<'_>) -> Fault {
    Fault { index, error: IfError::format(ErrorCode::InvalidProof, what) }
}
