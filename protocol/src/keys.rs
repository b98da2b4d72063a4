//! Key ids and domain-separated Ed25519 signatures.
//!
//! Every signature in IF edge is made over `domain || bytes`, where the domain names what is signed
//! (`"IF.connect/v2.2\0"` for envelopes, other domains for policy documents), so a signature made for one
//! kind of document can never be replayed as another. Verification always uses `verify_strict`, which
//! rejects weak keys and non-canonical or small-order signature components.
//!
//! A key id is the first 8 bytes of SHA-256 of the 32-byte public key. It selects a key quickly; it is not
//! trusted on its own: after the lookup, the key's own id must match the id that was sent.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, IfError, Result};

pub use ed25519_dalek::{
    PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH, SIGNATURE_LENGTH, Signature as Ed25519Signature,
    SigningKey as Ed25519SigningKey, VerifyingKey as Ed25519VerifyingKey,
};

/// Length of a [`KeyId`].
pub const KEY_ID_LEN: usize = 8;

/// The short id of a public key: `SHA-256(public_key)[..8]`.
pub type KeyId = [u8; KEY_ID_LEN];

/// The id of a public key.
pub fn key_id(key: &VerifyingKey) -> KeyId {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// Parses a 32-byte public key; rejects points that do not decode and weak (small-order) keys.
pub fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey> {
    let arr: [u8; PUBLIC_KEY_LENGTH] = bytes.try_into().map_err(|_| {
        IfError::format(ErrorCode::UnknownKey, format_args!("public key must be 32 bytes, got {}", bytes.len()))
    })?;
    let key = VerifyingKey::from_bytes(&arr)
        .map_err(|_| IfError::with(ErrorCode::UnknownKey, "public key is not a valid Ed25519 point"))?;
    if key.is_weak() {
        return Err(IfError::with(ErrorCode::UnknownKey, "public key is a weak (small-order) point"));
    }
    Ok(key)
}

/// Signs `domain || message`.
///
/// Fails only without `alloc`, for a message over [`NO_ALLOC_MESSAGE_CAP`] bytes.
pub fn sign(key: &SigningKey, domain: &[u8], message: &[u8]) -> Result<Signature> {
    with_domain(domain, message, |m| key.sign(m))
}

/// Verifies `sig` over `domain || message` with `verify_strict`.
pub fn verify(key: &VerifyingKey, domain: &[u8], message: &[u8], sig: &Signature) -> Result<()> {
    with_domain(domain, message, |m| key.verify_strict(m, sig))?
        .map_err(|_| IfError::with(ErrorCode::InvalidSignature, "signature does not verify"))
}

/// Verifies a plain (domain-free) Ed25519 signature strictly; used for signed notes and test vectors.
pub fn verify_raw(key: &VerifyingKey, message: &[u8], sig: &Signature) -> Result<()> {
    key.verify_strict(message, sig).map_err(|_| IfError::with(ErrorCode::InvalidSignature, "signature does not verify"))
}

/// Largest `domain || message` that can be signed or verified without `alloc` (Ed25519 hashes the message
/// twice, so it must be one contiguous buffer).
pub const NO_ALLOC_MESSAGE_CAP: usize = 10 * 1024;

#[cfg(feature = "alloc")]
fn with_domain<R>(domain: &[u8], message: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let mut buf = alloc::vec::Vec::with_capacity(domain.len() + message.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(message);
    Ok(f(&buf))
}

#[cfg(not(feature = "alloc"))]
fn with_domain<R>(domain: &[u8], message: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let total = domain.len() + message.len();
    if total > NO_ALLOC_MESSAGE_CAP {
        crate::if_bail!(ErrorCode::FrameTooLarge, "{total} bytes to sign, cap without alloc is {NO_ALLOC_MESSAGE_CAP}");
    }
    let mut buf = [0u8; NO_ALLOC_MESSAGE_CAP];
    buf[..domain.len()].copy_from_slice(domain);
    buf[domain.len()..total].copy_from_slice(message);
    Ok(f(&buf[..total]))
}
