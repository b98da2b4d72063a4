//! The archive upstream: the log's entry bundles on `tiles`, each with the proof that it is part of a
//! checkpoint the collector accepted, and the collector's acknowledgement of each on `tiles/ack`.
//!
//! A bundle of 256 entries is a node of the tree at height 8, so its proof is an RFC 6962 inclusion proof
//! of that node in the checkpoint's tree, seen as a tree of nodes at height 8 ([`Bundle::verify`]); a
//! bundle of fewer entries is the right edge of the checkpoint itself. Nothing in a bundle is trusted
//! beyond what the proof ties to a checkpoint signed by the agent's key.
//!
//! A bundle larger than a message may be goes as [`Part`]s: perfect subtrees below height 8, each with
//! its own inclusion proof, so each is checked on arrival; the archive acknowledges the bundle once its
//! parts make it whole.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::witness::Hash;
use crate::witness::proof::verify_inclusion;
use crate::witness::tiles::{WIDTH, bundle_root, unbundle};
use crate::{ErrorCode, IfError};

/// Entry bundle `index` of the log on its way to the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// `site/agent`.
    pub agent: String,
    /// The bundle's number: it holds records `256 * index ..`.
    pub index: u64,
    /// The tree size of the checkpoint the proof leads to.
    pub size: u64,
    /// When the message holds one part of the bundle only: which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// The tlog-tiles entry bundle, base64: 256 entries, or the `size % 256` at the checkpoint's edge;
    /// of a part, its entries in the same framing.
    pub entries: String,
    /// The inclusion proof of the bundle's root (or the part's) in the checkpoint's tree, base64 hashes.
    pub proof: Vec<String>,
}

/// One part of a bundle: the perfect subtree `index` of `2^height` entries (`height` under 8), inside
/// the bundle and below the checkpoint's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The subtree's height: it holds `2^height` entries.
    pub height: u8,
    /// Its number among the subtrees of that height: it starts at entry `index << height`.
    pub index: u64,
}

impl Part {
    /// Entries in the part.
    pub fn width(self) -> u64 {
        1u64 << self.height.min(63)
    }

    /// Its first entry.
    pub fn first(self) -> u64 {
        self.index.saturating_mul(self.width())
    }
}

/// The archive's acknowledgement of a bundle, written before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleAck {
    /// The bundle's number.
    pub index: u64,
    /// Entries in it.
    pub width: u64,
    /// The Merkle tree hash of its entries, base64.
    pub root: String,
}

/// A bundle read and checked against a checkpoint's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// Its entries, in order.
    pub entries: Vec<&'a [u8]>,
    /// The Merkle tree hash of the entries.
    pub root: Hash,
}

fn invalid(what: core::fmt::Arguments<'_>) -> IfError {
    IfError::format(ErrorCode::InvalidProof, what)
}

impl Bundle {
    /// Entries in the bundle the index and size call for: 256 below the checkpoint's last full bundle,
    /// `size % 256` at its edge, none beyond.
    pub fn width_at(index: u64, size: u64) -> u64 {
        let full = size / WIDTH;
        match index.cmp(&full) {
            core::cmp::Ordering::Less => WIDTH,
            core::cmp::Ordering::Equal => size % WIDTH,
            core::cmp::Ordering::Greater => 0,
        }
    }

    /// The entry bundle's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, IfError> {
        B64.decode(&self.entries).map_err(|_| invalid(format_args!("bundle {} is not base64", self.index)))
    }

    /// Checks `bytes` (this bundle's [`Bundle::bytes`]) against `root`, the head of the checkpoint of
    /// [`Bundle::size`]: the count of entries, then the proof.
    pub fn verify<'a>(&self, bytes: &'a [u8], root: &[u8]) -> Result<Checked<'a>, IfError> {
        let entries = unbundle(bytes)?;
        if let Some(part) = self.part {
            return self.verify_part(part, entries, root);
        }
        let want = Bundle::width_at(self.index, self.size);
        if want == 0 || entries.len() as u64 != want {
            return Err(invalid(format_args!(
                "bundle {} holds {} entries where a tree of {} has {want}",
                self.index,
                entries.len(),
                self.size
            )));
        }
        let proof = self.proof_hashes()?;
        let node = bundle_root(&entries);
        // The tree of `size` leaves above height 8 is the tree of its bundles' roots, the last one the
        // root of the partial bundle at its edge.
        verify_inclusion(self.index, self.size.div_ceil(WIDTH), &node, &proof, root)?;
        Ok(Checked { entries, root: node })
    }

    /// Checks a part: inside the bundle and the checkpoint, as many entries as its height says, and its
    /// root's inclusion proof in the tree of `size` seen as a tree of nodes at the part's height.
    fn verify_part<'a>(&self, part: Part, entries: Vec<&'a [u8]>, root: &[u8]) -> Result<Checked<'a>, IfError> {
        let start = self.index.saturating_mul(WIDTH);
        let first = part.first();
        let end = first.saturating_add(part.width());
        if part.height >= 8 || first < start || end > start.saturating_add(WIDTH) || end > self.size {
            return Err(invalid(format_args!(
                "part {}/{} is not inside bundle {} of a tree of {}",
                part.height, part.index, self.index, self.size
            )));
        }
        if entries.len() as u64 != part.width() {
            return Err(invalid(format_args!(
                "part {}/{} of bundle {} holds {} entries, not {}",
                part.height,
                part.index,
                self.index,
                entries.len(),
                part.width()
            )));
        }
        let proof = self.proof_hashes()?;
        let node = bundle_root(&entries);
        verify_inclusion(part.index, self.size.div_ceil(part.width()), &node, &proof, root)?;
        Ok(Checked { entries, root: node })
    }

    fn proof_hashes(&self) -> Result<Vec<Hash>, IfError> {
        self.proof
            .iter()
            .map(|h| B64.decode(h).ok().and_then(|b| Hash::try_from(b.as_slice()).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| invalid(format_args!("a proof hash of bundle {} is not 32 bytes of base64", self.index)))
    }
}

impl BundleAck {
    /// The acknowledgement of bundle `index` of `width` entries with `root`.
    pub fn of(index: u64, width: u64, root: &Hash) -> Self {
        BundleAck { index, width, root: B64.encode(root) }
    }

    /// The root, if it is 32 bytes of base64.
    pub fn root_hash(&self) -> Option<Hash> {
        B64.decode(&self.root).ok().and_then(|b| Hash::try_from(b.as_slice()).ok())
    }
}
