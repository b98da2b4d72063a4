//! One witness record: what is stored, what is hashed and how records chain.
//!
//! A record's *leaf bytes* are its postcard encoding. Those exact bytes are the RFC 6962 leaf (hashed as
//! `H(0x00 || leaf)`), they are what `ifctl witness export` prints as `leaf`, and each record carries the
//! leaf hash of the record before it, so the log is both a hash chain and a Merkle tree over the same data.

use if_protocol::witness::{Hash, merkle};
use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// The agent started.
    Boot,
    /// An envelope was verified, admitted and authorized; it will run at most once.
    Received,
    /// Input was refused; `count` says how many refusals one record stands for.
    Rejected,
    /// The command ran and succeeded.
    Executed,
    /// The command ran, or was tried, and failed.
    Failed,
    /// A RECEIVED found without an outcome at start; it is never run again.
    Interrupted,
    /// A talent, grant or manifest change.
    Policy,
    /// A checkpoint was published upstream.
    Anchor,
    /// A device circuit breaker changed state.
    Breaker,
    /// An envelope in falsify mode was verified and admitted: its dry run touches no hardware, and its
    /// verdict follows as EXECUTED.
    Falsify,
    /// Something on the broker that should not be: another process using this agent's identity.
    Security,
    /// A button on a rack node was pressed or released.
    Gpi,
    /// A device reported on itself: a rack node started, or put its outputs safe.
    Device,
}

impl Kind {
    /// The upper-case name used in exports and queries.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Boot => "BOOT",
            Kind::Received => "RECEIVED",
            Kind::Rejected => "REJECTED",
            Kind::Executed => "EXECUTED",
            Kind::Failed => "FAILED",
            Kind::Interrupted => "INTERRUPTED",
            Kind::Policy => "POLICY",
            Kind::Anchor => "ANCHOR",
            Kind::Breaker => "BREAKER",
            Kind::Falsify => "FALSIFY",
            Kind::Security => "SECURITY",
            Kind::Gpi => "GPI",
            Kind::Device => "DEVICE",
        }
    }
}

/// The content of a record before the log gives it an index and a chain link.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// Wall-clock time, unix ms (never earlier than the previous record's).
    pub wall_ms: u64,
    /// Boot counter of the agent run that wrote it.
    pub boot: u32,
    /// The envelope's id, when the record is about one.
    pub envelope: Option<Uuid>,
    /// The sender (talent name), when known.
    pub sender: String,
    /// The sender's sequence number, when known.
    pub seq: Option<u64>,
    /// `if://capability/...`, when known.
    pub capability: String,
    /// The action, when known.
    pub action: String,
    /// The envelope's reason text.
    pub why: String,
    /// The envelope's trace token.
    pub trace: Option<Uuid>,
    /// The IF error number of a refusal or failure; `None` when it went well.
    pub code: Option<u16>,
    /// The device's answer, the error detail, or what the record refers to (e.g. the RECEIVED index).
    pub detail: String,
    /// How many events the record stands for (aggregated rejections); 1 otherwise.
    pub count: u32,
    /// SHA-256 of the full frame as received, when there was one.
    pub digest: Option<[u8; 32]>,
}

impl Entry {
    /// The content of a record about envelope `b` at `now_ms`: who sent it, what it asked and why.
    pub fn of_body(b: &if_protocol::envelope::EnvelopeBody, now_ms: u64) -> Self {
        Entry {
            wall_ms: now_ms,
            envelope: Some(b.id),
            sender: b.sender.to_string(),
            seq: Some(b.seq),
            capability: b.capability.to_string(),
            action: b.action.to_string(),
            why: b.why.to_string(),
            trace: Some(b.trace),
            count: 1,
            ..Entry::default()
        }
    }
}

/// A sealed record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log, from 0.
    pub index: u64,
    /// What happened.
    pub kind: Kind,
    /// The content.
    pub entry: Entry,
    /// Leaf hash of the previous record; all zeros for the first.
    pub prev: Hash,
}

impl Record {
    /// The leaf bytes: the exact bytes hashed into the tree.
    pub fn to_leaf(&self) -> Result<Vec<u8>, IfError> {
        postcard::to_allocvec(self)
            .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("encoding a witness record: {e}")))
    }

    /// Decodes leaf bytes; trailing bytes are refused.
    pub fn from_leaf(bytes: &[u8]) -> Result<Record, IfError> {
        match postcard::take_from_bytes::<Record>(bytes) {
            Ok((r, [])) => Ok(r),
            Ok(_) => Err(IfError::with(ErrorCode::InvalidProof, "witness record has trailing bytes")),
            Err(e) => {
                Err(IfError::format(ErrorCode::InvalidProof, format_args!("witness record does not decode: {e}")))
            }
        }
    }

    /// The RFC 6962 leaf hash of these leaf bytes.
    pub fn leaf_hash(leaf: &[u8]) -> Hash {
        merkle::leaf_hash(leaf)
    }

    /// The record as one JSON object, the form `ifctl witness export` and queries print.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.entry;
        serde_json::json!({
            "index": self.index,
            "kind": self.kind.name(),
            "wall_ms": e.wall_ms,
            "boot": e.boot,
            "envelope": e.envelope,
            "sender": e.sender,
            "seq": e.seq,
            "capability": e.capability,
            "action": e.action,
            "why": e.why,
            "trace": e.trace,
            "code": e.code.map(|c| format!("IF_ERR_{c:03}")),
            "detail": e.detail,
            "count": e.count,
            "digest": e.digest.map(hex::encode),
            "prev": hex::encode(self.prev),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_round_trips_and_refuses_trailing_bytes() {
        let r = Record {
            index: 7,
            kind: Kind::Received,
            entry: Entry { sender: "desk".into(), seq: Some(3), count: 1, digest: Some([9; 32]), ..Entry::default() },
            prev: [1; 32],
        };
        let mut leaf = r.to_leaf().expect("encode");
        assert_eq!(Record::from_leaf(&leaf).expect("decode"), r);
        leaf.push(0);
        assert_eq!(Record::from_leaf(&leaf).expect_err("trailing").code(), ErrorCode::InvalidProof);
        assert_eq!(Record::from_leaf(&[0xff; 3]).expect_err("garbage").code(), ErrorCode::InvalidProof);
    }
}
