//! The JSON view of a signed envelope, for people and tools (`ifctl message send --json @frame.json`).
//!
//! The view shows the decoded body next to the key id, the signature and the exact signed body bytes.
//! Converting back re-encodes the body canonically; when the view carries `body_bytes` they must be
//! identical, so editing the readable part of a signed view can never produce a frame that claims the old
//! signature for new content. Frame -> JSON -> frame is byte-identical.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::bytes::FixedBytes;
use crate::envelope::EnvelopeBody;
use crate::error::{ErrorCode, IfError, Result};
use crate::frame::{self, FrameBytes, SignedFrame};
use crate::if_bail;

/// A signed envelope as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeJson {
    /// Key id of the signer, 16 hex digits.
    pub key_id: String,
    /// The body, readable.
    pub body: EnvelopeBody,
    /// The signed body bytes, base64; checked against `body` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<String>,
    /// The signature, base64.
    pub signature: FixedBytes<64>,
}

/// The JSON view of a frame. The signature is not checked (the viewer may not hold the key), but the
/// layout and canonical encoding are.
pub fn frame_to_json(frame_bytes: &[u8]) -> Result<EnvelopeJson> {
    let signed = SignedFrame::parse(frame_bytes)?;
    let body = signed.inspect_unverified()?;
    Ok(EnvelopeJson {
        key_id: hex_string(signed.key_id()),
        body,
        body_bytes: Some(B64.encode(signed.body_bytes())),
        signature: FixedBytes(signed.signature().to_bytes()),
    })
}

/// The frame for a JSON view.
pub fn json_to_frame(view: &EnvelopeJson) -> Result<FrameBytes> {
    let mut key_id = [0u8; crate::keys::KEY_ID_LEN];
    if crate::envelope::hex_decode(&view.key_id, &mut key_id).is_none() {
        if_bail!(ErrorCode::InvalidEnvelope, "key_id must be {} hex digits", 2 * crate::keys::KEY_ID_LEN);
    }
    view.body.validate()?;
    let bytes = frame::encode_body(&view.body)?;
    if let Some(given) = &view.body_bytes {
        let given =
            B64.decode(given).map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "body_bytes is not base64"))?;
        if given != bytes.as_slice() {
            if_bail!(
                ErrorCode::NonCanonical,
                "body does not encode to body_bytes: the readable body was changed after signing"
            );
        }
    }
    frame::assemble(&key_id, &bytes, &Signature::from_bytes(&view.signature.0))
}

/// Parses a JSON view from text.
pub fn parse(text: &str) -> Result<EnvelopeJson> {
    // serde_json's message can quote the offending value; only its category and position are reported,
    // so nothing a sender wrote is echoed into replies, dead letters or logs.
    serde_json::from_str(text).map_err(|e| {
        IfError::format(
            ErrorCode::InvalidEnvelope,
            format_args!(
                "envelope JSON does not parse ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
