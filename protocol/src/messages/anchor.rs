//! Anchors upstream on `anchors`, their acknowledgements on `anchors/ack`, and the collector's
//! evidence on `security` when an anchor contradicts one it accepted.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::witness::Hash;
use crate::witness::checkpoint::Checkpoint;
use crate::{ErrorCode, IfError};

/// A signed checkpoint on its way upstream, with the proof that it extends the one before.
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

/// What the collector publishes when an anchor contradicts an accepted one: both notes, so anyone can
/// check the claim with the agent's public key alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What the contradiction is (`fork`, `shrink`, ...).
    pub kind: String,
    /// `site/agent`.
    pub agent: String,
    /// In words.
    pub why: String,
    /// The note the collector had accepted, if any.
    pub accepted: Option<String>,
    /// The note that contradicts it.
    pub offered: String,
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

impl Ack {
    /// The acknowledgement of the checkpoint of `size` with `root`.
    pub fn of(size: u64, root: &Hash) -> Self {
        Ack { size, root: B64.encode(root) }
    }

    /// The root hash, if it is 32 bytes of base64.
    pub fn root_hash(&self) -> Option<Hash> {
        B64.decode(&self.root).ok().and_then(|b| Hash::try_from(b.as_slice()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_carries_its_root_and_a_bad_proof_hash_is_refused() {
        let ack = Ack::of(7, &[9; 32]);
        assert_eq!(ack.root_hash(), Some([9; 32]));
        assert_eq!(Ack { size: 1, root: "AAAA".into() }.root_hash(), None);
        let a =
            Anchor { agent: "a/b".into(), size: 2, from: 1, note: String::new(), proof: alloc::vec!["AAAA".into()] };
        assert_eq!(a.proof_hashes().map_err(|e| e.code()), Err(ErrorCode::InvalidProof));
    }
}
