//! The signed wire frame of an envelope, and the only way to turn bytes from the network into a body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "IFCN"
//!      4     1  frame version 0x22 (IF.connect 2.2)
//!      5     8  key id of the signing key (SHA-256(public key)[..8])
//!     13     2  body length, big-endian
//!     15     n  body: postcard encoding of EnvelopeBody
//!   15+n    64  Ed25519 signature over "IF.connect/v2.2\0" || body
//! ```
//!
//! Opening a frame goes in a fixed order, each step only on what the previous one proved:
//! 1. [`SignedFrame::parse`]: the size cap ([`MAX_FRAME_LEN`]) before anything else, then the header.
//! 2. [`SignedFrame::verify`]: the key's own id must equal the frame's, then `verify_strict`.
//! 3. [`VerifiedFrame::decode`]: postcard decode, re-encode and compare with the signed bytes
//!    (`NON_CANONICAL` if they differ), then [`EnvelopeBody::validate`].
//!
//! A body can only be decoded from a [`VerifiedFrame`], so unverified bytes never reach the decoder.
//!
//! Version 2.2 added the body's `audience`. A 2.1 frame (version byte 0x21) named no audience, so it
//! could be replayed on any agent: it is refused at step 1, before its signature is looked at, with a
//! detail that says to sign it again. Its signature domain was `IF.connect/v2.1`, so no 2.1 signature
//! verifies as a 2.2 one either.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::envelope::EnvelopeBody;
use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;
use crate::keys::{self, KEY_ID_LEN, KeyId};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"IFCN";
/// Frame format version: IF.connect 2.2.
pub const FRAME_VERSION: u8 = 0x22;
/// The version byte of IF.connect 2.1 frames, which named no audience and are refused.
pub const FRAME_VERSION_2_1: u8 = 0x21;
/// The signature domain of envelopes.
pub const ENVELOPE_DOMAIN: &[u8] = b"IF.connect/v2.2\0";
/// Bytes before the body.
pub const HEADER_LEN: usize = 4 + 1 + KEY_ID_LEN + 2;
/// Bytes after the body.
pub const SIGNATURE_LEN: usize = 64;
/// Hard cap on a frame, checked before any decoding.
pub const MAX_FRAME_LEN: usize = 8 * 1024;
/// Largest body that fits in a frame.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - HEADER_LEN - SIGNATURE_LEN;

/// A complete encoded frame.
pub type FrameBytes = heapless::Vec<u8, MAX_FRAME_LEN>;
/// An encoded body.
pub type BodyBytes = heapless::Vec<u8, MAX_BODY_LEN>;

/// SHA-256 of a frame or body: the digest the witness log and the DLQ refer to.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The canonical postcard encoding of a body.
pub fn encode_body(body: &EnvelopeBody) -> Result<BodyBytes> {
    let mut buf = [0u8; MAX_BODY_LEN];
    let used = postcard::to_slice(body, &mut buf).map_err(|_| {
        IfError::format(ErrorCode::FrameTooLarge, format_args!("body does not fit in {MAX_BODY_LEN} bytes"))
    })?;
    // `used` is at most MAX_BODY_LEN bytes, which is the capacity.
    BodyBytes::from_slice(used).map_err(|_| IfError::new(ErrorCode::FrameTooLarge))
}

/// Validates, encodes and signs a body into a frame.
pub fn sign_envelope(key: &SigningKey, body: &EnvelopeBody) -> Result<FrameBytes> {
    body.validate()?;
    let bytes = encode_body(body)?;
    let sig = keys::sign(key, ENVELOPE_DOMAIN, &bytes)?;
    assemble(&keys::key_id(&key.verifying_key()), &bytes, &sig)
}

/// Lays out a frame from its parts (used by signing and by the JSON view).
pub fn assemble(key_id: &KeyId, body: &[u8], sig: &Signature) -> Result<FrameBytes> {
    let body_len = u16::try_from(body.len()).ok().filter(|n| usize::from(*n) <= MAX_BODY_LEN).ok_or_else(|| {
        IfError::format(ErrorCode::FrameTooLarge, format_args!("body of {} bytes exceeds {MAX_BODY_LEN}", body.len()))
    })?;
    let mut out = FrameBytes::new();
    let parts: [&[u8]; 6] = [&MAGIC, &[FRAME_VERSION], key_id, &body_len.to_be_bytes(), body, &sig.to_bytes()];
    for part in parts {
        out.extend_from_slice(part).map_err(|_| IfError::new(ErrorCode::FrameTooLarge))?;
    }
    Ok(out)
}

/// A frame whose layout is valid but whose signature has not been checked.
#[derive(Debug, Clone, Copy)]
pub struct SignedFrame<'a> {
    key_id: KeyId,
    body: &'a [u8],
    signature: Signature,
}

impl<'a> SignedFrame<'a> {
    /// Checks the size cap, magic, version and lengths. Decodes nothing else.
    pub fn parse(frame: &'a [u8]) -> Result<Self> {
        if frame.len() > MAX_FRAME_LEN {
            if_bail!(ErrorCode::FrameTooLarge, "frame of {} bytes exceeds the cap of {MAX_FRAME_LEN}", frame.len());
        }
        if frame.len() < HEADER_LEN + SIGNATURE_LEN {
            if_bail!(ErrorCode::InvalidEnvelope, "frame of {} bytes is shorter than header and signature", frame.len());
        }
        if frame[..4] != MAGIC {
            if_bail!(ErrorCode::InvalidEnvelope, "not an IF.connect frame (bad magic)");
        }
        if frame[4] == FRAME_VERSION_2_1 {
            if_bail!(
                ErrorCode::InvalidEnvelope,
                "an IF.connect 2.1 frame names no audience and is no longer accepted: sign it again with 2.2"
            );
        }
        if frame[4] != FRAME_VERSION {
            if_bail!(
                ErrorCode::InvalidEnvelope,
                "frame version 0x{:02x} is not supported (want 0x{FRAME_VERSION:02x})",
                frame[4]
            );
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&frame[5..5 + KEY_ID_LEN]);
        let body_len = usize::from(u16::from_be_bytes([frame[13], frame[14]]));
        if HEADER_LEN + body_len + SIGNATURE_LEN != frame.len() {
            if_bail!(
                ErrorCode::InvalidEnvelope,
                "body length {body_len} does not match a frame of {} bytes",
                frame.len()
            );
        }
        let (body, sig) = frame[HEADER_LEN..].split_at(body_len);
        let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| IfError::new(ErrorCode::InvalidEnvelope))?;
        Ok(SignedFrame { key_id, body, signature: Signature::from_bytes(&sig) })
    }

    /// The id of the key that claims to have signed.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The signed body bytes, not yet trusted.
    pub fn body_bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The message the signature covers: domain then body, as two parts.
    pub fn signed_parts(&self) -> [&'a [u8]; 2] {
        [ENVELOPE_DOMAIN, self.body]
    }

    /// Checks that `key` is the key the frame names and that its signature verifies strictly.
    pub fn verify(self, key: &VerifyingKey) -> Result<VerifiedFrame<'a>> {
        if keys::key_id(key) != self.key_id {
            if_bail!(ErrorCode::InvalidSignature, "frame names a different key than the one given");
        }
        keys::verify(key, ENVELOPE_DOMAIN, self.body, &self.signature)?;
        Ok(VerifiedFrame { inner: self })
    }

    /// Decodes the body without checking the signature, for display only (`ifctl` inspecting a saved
    /// frame). Nothing may act on the result.
    pub fn inspect_unverified(&self) -> Result<EnvelopeBody> {
        decode_canonical(self.body)
    }

    /// Marks a frame verified by a batch check over [`SignedFrame::signed_parts`].
    #[cfg(feature = "std")]
    pub(crate) fn assume_verified(self) -> VerifiedFrame<'a> {
        VerifiedFrame { inner: self }
    }
}

/// A frame whose signature verified against the key it names.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedFrame<'a> {
    inner: SignedFrame<'a>,
}

impl<'a> VerifiedFrame<'a> {
    /// The signer's key id.
    pub fn key_id(&self) -> &KeyId {
        &self.inner.key_id
    }

    /// The signed body bytes.
    pub fn body_bytes(&self) -> &'a [u8] {
        self.inner.body
    }

    /// Decodes the body, requires it to be canonical, and validates it.
    pub fn decode(&self) -> Result<EnvelopeBody> {
        decode_canonical(self.inner.body)
    }
}

fn decode_canonical(bytes: &[u8]) -> Result<EnvelopeBody> {
    let (body, rest): (EnvelopeBody, _) = postcard::take_from_bytes(bytes)
        .map_err(|e| IfError::format(ErrorCode::InvalidEnvelope, format_args!("body does not decode: {e}")))?;
    if !rest.is_empty() {
        if_bail!(ErrorCode::NonCanonical, "{} bytes after the end of the body", rest.len());
    }
    if encode_body(&body)?.as_slice() != bytes {
        if_bail!(ErrorCode::NonCanonical, "body re-encodes to different bytes");
    }
    body.validate()?;
    Ok(body)
}

/// Parses, verifies with the key `resolve` finds for the frame's key id, and decodes.
///
/// `resolve` returns `None` for an unknown key id, which is `UNKNOWN_KEY`.
pub fn open(frame: &[u8], resolve: impl FnOnce(&KeyId) -> Option<VerifyingKey>) -> Result<EnvelopeBody> {
    let signed = SignedFrame::parse(frame)?;
    let Some(key) = resolve(signed.key_id()) else {
        if_bail!(ErrorCode::UnknownKey, "no key with id {:02x?}", signed.key_id());
    };
    signed.verify(&key)?.decode()
}
