//! What the agent answers: the reply to a sender and the dead-letter entry for operators.
//!
//! A [`Reply`] is JSON on the sender's reply topic. It is encoded once, witnessed in the reply cache, and
//! a redelivered envelope gets exactly the same bytes again. A [`DeadLetter`] goes to the `dlq` topic for
//! every refusal and failure. Both carry the frame's SHA-256, never the raw payload: a payload can hold
//! anything a sender put in it, and the DLQ is read by more people than the sender.

use if_protocol::error::ErrorReport;
use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::witness::record::Entry;

/// The answer to one envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The envelope's id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The sender, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The sender's sequence number, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Whether the command ran and succeeded.
    pub ok: bool,
    /// What the capability answered, on success, as the JSON text it was encoded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// Index of the witness record of the outcome, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<u64>,
    /// For a sequence number refused as already taken or below the window: one that is sure to be new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seq: Option<u64>,
}

impl Reply {
    /// A success that answers no envelope (a pushed policy document).
    pub fn result(result: &serde_json::Value) -> Self {
        Reply {
            id: None,
            sender: None,
            seq: None,
            ok: true,
            result: serde_json::value::to_raw_value(result).ok(),
            error: None,
            witness: None,
            next_seq: None,
        }
    }

    /// A success.
    pub fn ok(id: Uuid, sender: &str, seq: u64, result: Box<RawValue>) -> Self {
        Reply {
            id: Some(id),
            sender: Some(sender.into()),
            seq: Some(seq),
            ok: true,
            result: Some(result),
            error: None,
            witness: None,
            next_seq: None,
        }
    }

    /// A refusal or failure; ids are filled in as far as they are known.
    pub fn error(err: &IfError, id: Option<Uuid>, sender: Option<&str>, seq: Option<u64>) -> Self {
        Reply {
            id,
            sender: sender.map(str::to_string),
            seq,
            ok: false,
            result: None,
            error: Some(ErrorReport::from(err)),
            witness: None,
            next_seq: None,
        }
    }

    /// The reply cached for a RECEIVED that a restart left without an outcome.
    pub fn interrupted(entry: &Entry, received_index: u64) -> Self {
        let err = IfError::format(
            ErrorCode::SystemError,
            format_args!(
                "interrupted: the agent stopped before RECEIVED #{received_index} had an outcome; it is not run again"
            ),
        );
        Reply::error(&err, entry.envelope, Some(&entry.sender), entry.seq)
    }

    /// The error code, if this is a failure.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|e| e.code)
    }

    /// The JSON bytes published.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        scrubbed(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A refused or failed command, for the `dlq` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// `IF_ERR_103`.
    pub code: ErrorCode,
    /// `REPLAY_DETECTED`.
    pub name: String,
    /// The detail line.
    pub message: String,
    /// Whether retrying can succeed.
    pub retryable: bool,
    /// The envelope's id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The sender, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// SHA-256 of the payload as received, hex.
    pub frame_sha256: String,
    /// Payload length in bytes.
    pub frame_len: usize,
    /// For a summary of refusals past the per-second allowance: how many it stands for (their codes and
    /// counts are in `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarized: Option<u64>,
    /// When it was written, unix ms (signed with the rest: a replayed old entry shows its age).
    #[serde(default)]
    pub at_ms: u64,
}

impl DeadLetter {
    /// The entry for a payload and its error.
    pub fn new(err: &IfError, id: Option<Uuid>, sender: Option<&str>, payload: &[u8]) -> Self {
        DeadLetter {
            code: err.code(),
            name: err.code().name().to_string(),
            message: err.detail().to_string(),
            retryable: err.retryable(),
            id,
            sender: sender.map(str::to_string),
            frame_sha256: hex::encode(if_protocol::frame::digest(payload)),
            frame_len: payload.len(),
            summarized: None,
            at_ms: crate::clock::Clock::system_ms(),
        }
    }

    /// The one entry a second for refusals past the allowance, from the sampler's summary record.
    pub fn summary(entry: &Entry) -> Self {
        let code = entry.code.and_then(ErrorCode::from_number).unwrap_or(ErrorCode::InvalidEnvelope);
        DeadLetter {
            code,
            name: code.name().to_string(),
            message: entry.detail.clone(),
            retryable: false,
            id: None,
            sender: None,
            frame_sha256: String::new(),
            frame_len: 0,
            summarized: Some(u64::from(entry.count)),
            at_ms: entry.wall_ms,
        }
    }

    /// The JSON bytes published.
    pub fn to_bytes(&self) -> Vec<u8> {
        scrubbed(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// JSON bytes with every known secret value replaced (the JSON stays valid: the marker is plain text).
fn scrubbed(json: Vec<u8>) -> Vec<u8> {
    match std::str::from_utf8(&json).map(crate::redact::scrub) {
        Ok(std::borrow::Cow::Owned(clean)) => clean.into_bytes(),
        _ => json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_carries_the_code_as_text() {
        let e = IfError::with(ErrorCode::ReplayDetected, "seq 4 seen with another body");
        let r = Reply::error(&e, None, Some("desk"), Some(4));
        let v: serde_json::Value = serde_json::from_slice(&r.to_bytes()).expect("json");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "IF_ERR_103");
        assert_eq!(v["error"]["name"], "REPLAY_DETECTED");
        let back: Reply = serde_json::from_slice(&r.to_bytes()).expect("parse");
        assert_eq!(back.to_bytes(), r.to_bytes());
    }

    #[test]
    fn an_answer_is_carried_as_the_json_text_it_was_encoded_to() {
        let answer = serde_json::value::to_raw_value(&serde_json::json!({ "pong": true, "n": [1, 2] })).expect("raw");
        let r = Reply::ok(Uuid::nil(), "desk", 7, answer);
        let text = String::from_utf8(r.to_bytes()).expect("utf8");
        assert!(text.contains(r#""result":{"n":[1,2],"pong":true}"#), "{text}");
        let back: Reply = serde_json::from_slice(text.as_bytes()).expect("parse");
        assert_eq!(back.result.map(|r| r.get().to_string()).as_deref(), Some(r#"{"n":[1,2],"pong":true}"#));
        assert_eq!(back.seq, Some(7));
    }

    #[test]
    fn dead_letter_has_the_digest_not_the_payload() {
        let payload = b"secret-looking payload bytes";
        let d = DeadLetter::new(&IfError::new(ErrorCode::InvalidEnvelope), None, None, payload);
        let text = String::from_utf8(d.to_bytes()).expect("utf8");
        assert!(!text.contains("secret-looking"));
        assert!(text.contains(&hex::encode(if_protocol::frame::digest(payload))));
        assert!(text.contains("\"code\":\"IF_ERR_101\""));
    }
}
