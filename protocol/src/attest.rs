//! What the agent signs besides checkpoints: its replies and the JSON it publishes (status, tally,
//! dead letters), so that a client on the broker without the agent's key can neither forge an answer
//! nor a retained `online`.
//!
//! A signed JSON message is the JSON object itself with one more member appended last:
//!
//! ```text
//! {"id":"...","ok":true,"result":{...},"sig":"<base64 of 64 bytes>"}
//! ```
//!
//! The signature covers `domain || context || object`, where `object` is the message without its last
//! `,"sig":"..."` member (the suffix has a fixed length, so no JSON is parsed or re-serialized to find
//! the signed bytes), and `context` is 32 bytes that bind the message to what it answers or where it
//! goes:
//! - a reply ([`REPLY_DOMAIN`]): the SHA-256 of the frame the request carried (for a JSON view, of the
//!   frame it describes; for a payload that is no frame, of the payload), so a reply to one request
//!   never verifies as the reply to another;
//! - a publication ([`PUBLISH_DOMAIN`]): the SHA-256 of the topic, so a status never verifies as a
//!   tally, nor one agent's status on another agent's topic.
//!
//! The message stays plain JSON: readers that do not verify simply see one more field.

use alloc::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;
use crate::keys;

/// The domain of replies (and dry-run verdicts, query answers, policy answers).
pub const REPLY_DOMAIN: &[u8] = b"IF.reply/v1\0";
/// The domain of what the agent publishes on its own topics.
pub const PUBLISH_DOMAIN: &[u8] = b"IF.publish/v1\0";

const OPEN: &[u8] = b",\"sig\":\"";
const SIG_B64_LEN: usize = 88;
const CLOSE: &[u8] = b"\"}";
/// Length of the signature member that ends a signed message, its closing brace included.
pub const SUFFIX_LEN: usize = OPEN.len() + SIG_B64_LEN + CLOSE.len();

/// The context of a publication on `topic`.
pub fn topic_context(topic: &str) -> [u8; 32] {
    Sha256::digest(topic.as_bytes()).into()
}

/// What follows the domain in the signed message: the context, then the object.
fn signed_message(context: &[u8; 32], object: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + object.len());
    m.extend_from_slice(context);
    m.extend_from_slice(object);
    m
}

/// Appends the signature member to `object` (a JSON object with at least one member).
pub fn sign(key: &SigningKey, domain: &[u8], context: &[u8; 32], object: &[u8]) -> Result<Vec<u8>> {
    let Some(body) = object.strip_suffix(b"}") else {
        if_bail!(ErrorCode::SystemError, "only a JSON object can be signed");
    };
    if body.len() < 2 {
        if_bail!(ErrorCode::SystemError, "an empty JSON object cannot be signed");
    }
    let sig = keys::sign(key, domain, &signed_message(context, object))?;
    let mut out = Vec::with_capacity(object.len() + SUFFIX_LEN);
    out.extend_from_slice(body);
    out.extend_from_slice(OPEN);
    let mut b64 = [0u8; SIG_B64_LEN];
    let n = B64.encode_slice(sig.to_bytes(), &mut b64).map_err(|_| IfError::new(ErrorCode::SystemError))?;
    out.extend_from_slice(&b64[..n]);
    out.extend_from_slice(CLOSE);
    Ok(out)
}

/// Checks a signed message against `key` and returns the object it signs (the message without its
/// signature member). `INVALID_SIGNATURE` when it carries no signature or another key's, or when it was
/// signed for another request or topic.
pub fn verify(key: &VerifyingKey, domain: &[u8], context: &[u8; 32], message: &[u8]) -> Result<Vec<u8>> {
    let Some(split) = message.len().checked_sub(SUFFIX_LEN) else {
        if_bail!(ErrorCode::InvalidSignature, "message carries no signature");
    };
    let (body, suffix) = message.split_at(split);
    let (open, rest) = suffix.split_at(OPEN.len());
    let (sig_b64, close) = rest.split_at(SIG_B64_LEN);
    if open != OPEN || close != CLOSE {
        if_bail!(ErrorCode::InvalidSignature, "message carries no signature");
    }
    let mut raw = [0u8; 66];
    let n = B64
        .decode_slice(sig_b64, &mut raw)
        .map_err(|_| IfError::with(ErrorCode::InvalidSignature, "signature is not base64"))?;
    let sig: [u8; 64] =
        raw[..n].try_into().map_err(|_| IfError::with(ErrorCode::InvalidSignature, "signature is not 64 bytes"))?;
    let mut object = Vec::with_capacity(body.len() + 1);
    object.extend_from_slice(body);
    object.push(b'}');
    keys::verify(key, domain, &signed_message(context, &object), &Signature::from_bytes(&sig))?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_message_is_json_with_one_more_member_and_verifies() {
        let k = key(1);
        let ctx = [7u8; 32];
        let object = br#"{"ok":true,"n":3}"#;
        let signed = sign(&k, REPLY_DOMAIN, &ctx, object).expect("sign");
        assert_eq!(signed.len(), object.len() - 1 + SUFFIX_LEN);
        let text = core::str::from_utf8(&signed).expect("utf8");
        assert!(text.starts_with(r#"{"ok":true,"n":3,"sig":""#), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&signed).expect("still JSON");
        assert_eq!(v["n"], 3);
        assert_eq!(verify(&k.verifying_key(), REPLY_DOMAIN, &ctx, &signed).expect("verifies"), object);
    }

    #[test]
    fn every_change_breaks_it() {
        let k = key(1);
        let ctx = [7u8; 32];
        let signed = sign(&k, REPLY_DOMAIN, &ctx, br#"{"ok":false}"#).expect("sign");
        let vk = k.verifying_key();
        let code = |r: Result<Vec<u8>>| r.expect_err("refused").code();
        assert_eq!(code(verify(&key(2).verifying_key(), REPLY_DOMAIN, &ctx, &signed)), ErrorCode::InvalidSignature);
        assert_eq!(code(verify(&vk, PUBLISH_DOMAIN, &ctx, &signed)), ErrorCode::InvalidSignature, "domain");
        assert_eq!(code(verify(&vk, REPLY_DOMAIN, &[8; 32], &signed)), ErrorCode::InvalidSignature, "context");
        let forged = String::from_utf8(signed.clone()).expect("utf8").replace("false", "true ");
        assert_eq!(code(verify(&vk, REPLY_DOMAIN, &ctx, forged.as_bytes())), ErrorCode::InvalidSignature);
        assert_eq!(code(verify(&vk, REPLY_DOMAIN, &ctx, br#"{"ok":true}"#)), ErrorCode::InvalidSignature);
        assert_eq!(code(verify(&vk, REPLY_DOMAIN, &ctx, b"")), ErrorCode::InvalidSignature);
        let mut tail = signed.clone();
        tail.push(b' ');
        assert_eq!(code(verify(&vk, REPLY_DOMAIN, &ctx, &tail)), ErrorCode::InvalidSignature);
        for i in 0..signed.len() {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            assert!(verify(&vk, REPLY_DOMAIN, &ctx, &bad).is_err(), "flipped byte {i}");
        }
        assert!(sign(&k, REPLY_DOMAIN, &ctx, b"{}").is_err());
        assert!(sign(&k, REPLY_DOMAIN, &ctx, b"[1]").is_err());
    }
}
