//! The archive upstream: the log's records as C2SP tlog-tiles entry bundles, each proven part of the
//! checkpoint the upstream acknowledged last, offered in order until the archive acknowledges them.
//!
//! Only records below an acknowledged checkpoint are offered, so every bundle's proof leads to a tree head
//! the collector already accepted and checked with the agent's key. Full bundles go first; once every one
//! below the checkpoint is acknowledged, the checkpoint's right edge (its last `size % 256` records) goes
//! too, so the archive can publish that checkpoint with its partial tiles. The witness file keeps how many
//! records the archive acknowledged (`archived`, only whole bundles count), so the offer resumes where it
//! stopped across restarts and outages.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::messages::{Bundle, BundleAck, Part};
use if_protocol::witness::Hash;
use if_protocol::witness::tiles::{WIDTH, bundle, bundle_root};
use if_protocol::{ErrorCode, IfError};

use crate::witness::proof::subtree_inclusion_of;
use crate::witness::reader::Snapshot;

/// Most bundles offered in one round (about 40 KiB each); the next follow once these are acknowledged.
pub const MAX_ROUND: usize = 8;

/// The largest bundle message sent: under the 128 KiB packet limit of the broker configuration this
/// project ships and tests with (`max_packet_size 131072`), with room for the MQTT header and topic.
pub const MAX_MESSAGE: usize = 120 * 1024;

/// A bundle as offered, and what its acknowledgement must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The bundle's number.
    pub index: u64,
    /// The checkpoint size its proofs lead to.
    pub size: u64,
    /// Entries in it.
    pub width: u64,
    /// The Merkle tree hash of its entries.
    pub root: Hash,
    /// What goes upstream: the bundle as one message, or its parts (JSON [`Bundle`]s).
    pub messages: Vec<Vec<u8>>,
}

/// Bundle `index` of the log as it stands in `log`, with its proof in the tree of `size`: one message
/// when it fits in [`MAX_MESSAGE`], else parts halved until each does (a part of one record larger
/// than that stays too large; the uplink then holds the archive there and says so).
pub fn offer(log: &Snapshot, agent: &str, index: u64, size: u64) -> Result<Offer, IfError> {
    let width = Bundle::width_at(index, size);
    let first = index * WIDTH;
    let mut leaves = Vec::with_capacity(width as usize);
    for i in first..first + width {
        leaves.push(log.leaf(i)?);
    }
    let entries: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    let root = bundle_root(&entries);
    let message = |part: Option<Part>| -> Result<Vec<u8>, IfError> {
        let (from, n) = part.map_or((first, width), |p| (p.first(), p.width()));
        let mine = &entries[(from - first) as usize..(from - first + n) as usize];
        let proof = subtree_inclusion_of(log, from, n, size)?.iter().map(|h| B64.encode(h)).collect();
        let entries = B64.encode(bundle(mine.iter().copied())?);
        let b = Bundle { agent: agent.to_string(), index, size, part, entries, proof };
        serde_json::to_vec(&b).map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("a bundle: {e}")))
    };
    let whole = message(None)?;
    let messages = if whole.len() <= MAX_MESSAGE {
        vec![whole]
    } else {
        let mut messages = Vec::new();
        // A part is below height 8: a whole bundle starts as its two halves.
        let start =
            parts_of(first, width).into_iter().flat_map(|p| if p.height < 8 { vec![p] } else { halves(p).into() });
        let mut todo: VecDeque<Part> = start.collect();
        while let Some(part) = todo.pop_front() {
            let m = message(Some(part))?;
            if m.len() > MAX_MESSAGE && part.height > 0 {
                let [left, right] = halves(part);
                todo.push_front(right);
                todo.push_front(left);
            } else {
                messages.push(m);
            }
        }
        messages
    };
    Ok(Offer { index, size, width, root, messages })
}

/// The perfect subtrees, largest first, that make the `width` entries from `first` (a multiple of 256).
fn parts_of(first: u64, width: u64) -> Vec<Part> {
    let mut at = first;
    let mut parts = Vec::new();
    for height in (0..=8u8).rev().filter(|h| width & (1 << h) != 0) {
        parts.push(Part { height, index: at >> height });
        at += 1 << height;
    }
    parts
}

/// The two halves of `p` (of height 1 or more).
fn halves(p: Part) -> [Part; 2] {
    let height = p.height.saturating_sub(1);
    [Part { height, index: p.index * 2 }, Part { height, index: p.index * 2 + 1 }]
}

/// The bundles to offer now: the full ones from `archived` up to the acknowledged checkpoint, at most
/// [`MAX_ROUND`]; when none is left, that checkpoint's right edge unless `edge_done` says it was
/// acknowledged for this very size.
pub fn pending(log: &Snapshot, agent: &str, edge_done: u64) -> Result<Vec<Offer>, IfError> {
    let size = log.anchored()?;
    let from = log.archived()? / WIDTH;
    let full = size / WIDTH;
    let mut out = Vec::new();
    for index in (from..full).take(MAX_ROUND) {
        out.push(offer(log, agent, index, size)?);
    }
    if from >= full && size % WIDTH != 0 && edge_done != size {
        out.push(offer(log, agent, full, size)?);
    }
    Ok(out)
}

/// What acknowledgements do to the archive's progress: full bundles acknowledged out of order wait here
/// until the ones before them are.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records acknowledged, from the first (whole bundles only).
    pub archived: u64,
    /// The checkpoint size whose right edge was acknowledged.
    pub edge_done: u64,
    waiting: BTreeMap<u64, ()>,
}

impl Progress {
    /// Progress starting at `archived` records.
    pub fn new(archived: u64) -> Self {
        Progress { archived, edge_done: 0, waiting: BTreeMap::new() }
    }

    /// Takes `acks` of what was `offered`; true when [`Progress::archived`] moved. An acknowledgement
    /// that names no offered bundle by number, width and root counts for nothing.
    pub fn take(&mut self, offered: &[Offer], acks: &[BundleAck]) -> bool {
        let before = self.archived;
        for ack in acks {
            let Some(o) = offered.iter().find(|o| o.index == ack.index && o.width == ack.width) else {
                continue;
            };
            if ack.root_hash() != Some(o.root) {
                tracing::debug!(index = ack.index, "an acknowledgement of a bundle with another root was ignored");
                continue;
            }
            if o.width == WIDTH {
                self.waiting.insert(o.index, ());
            } else {
                self.edge_done = self.edge_done.max(o.size);
            }
        }
        while self.waiting.remove(&(self.archived / WIDTH)).is_some() {
            self.archived += WIDTH;
        }
        let done = self.archived / WIDTH;
        self.waiting.retain(|i, ()| *i > done);
        self.archived != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(index: u64, width: u64, root: u8) -> Offer {
        Offer { index, size: 1000, width, root: [root; 32], messages: Vec::new() }
    }

    #[test]
    fn only_acknowledgements_of_offered_bundles_in_order_move_the_archive() {
        let offers = [offered(2, 256, 2), offered(3, 256, 3), offered(4, 256, 4), offered(5, 256, 5)];
        let mut p = Progress::new(512);
        // Bundle 3 first: it waits for bundle 2.
        assert!(!p.take(&offers, &[BundleAck::of(3, 256, &[3; 32])]));
        // A root that is not the one offered, a width that is not, a bundle never offered: nothing.
        let wrong = [BundleAck::of(2, 256, &[9; 32]), BundleAck::of(2, 100, &[2; 32]), BundleAck::of(9, 256, &[9; 32])];
        assert!(!p.take(&offers, &wrong));
        assert_eq!(p.archived, 512);
        assert!(p.take(&offers, &[BundleAck::of(2, 256, &[2; 32]), BundleAck::of(5, 256, &[5; 32])]));
        assert_eq!(p.archived, 4 * 256, "2 and the waiting 3; 5 waits for 4");
        assert!(p.take(&offers, &[BundleAck::of(4, 256, &[4; 32])]));
        assert_eq!(p.archived, 6 * 256);
        assert!(!p.take(&offers, &[BundleAck::of(4, 256, &[4; 32])]), "a repeat moves nothing");
    }

    #[test]
    fn the_right_edge_counts_for_its_checkpoint_and_not_for_the_archived_records() {
        let edge = [offered(3, 232, 7)];
        let mut p = Progress::new(768);
        assert!(!p.take(&edge, &[BundleAck::of(3, 232, &[7; 32])]));
        assert_eq!((p.archived, p.edge_done), (768, 1000));
    }
}
