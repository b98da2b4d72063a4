//! The signature format shared by every policy document, and threshold counting.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bytes::FixedBytes;
use crate::error::{ErrorCode, IfError, Result};
use crate::keys::{self, KeyId};

/// Largest encoded document.
pub const MAX_DOC_LEN: usize = 8 * 1024;
/// Most signatures a document carries.
pub const MAX_SIGNATURES: usize = 8;

/// A kind of signed document.
pub trait Document: Serialize + DeserializeOwned {
    /// The signature domain, e.g. `b"IF.manifest/v1\0"`.
    const DOMAIN: &'static [u8];
    /// The most entries each list may hold, by dotted key (`limits.backoff`): a text form with more is
    /// refused naming the key and the limit, before the bounded types see it.
    const LIST_LIMITS: &'static [(&'static str, usize)] = &[];
}

/// The canonical bytes of a document: its postcard encoding.
pub fn canonical_bytes<D: Document>(doc: &D) -> Result<heapless::Vec<u8, MAX_DOC_LEN>> {
    let mut buf = [0u8; MAX_DOC_LEN];
    let used = postcard::to_slice(doc, &mut buf).map_err(|_| {
        IfError::format(ErrorCode::FrameTooLarge, format_args!("document does not fit in {MAX_DOC_LEN} bytes"))
    })?;
    heapless::Vec::from_slice(used).map_err(|_| IfError::new(ErrorCode::FrameTooLarge))
}

/// One signature on a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSignature {
    /// Id of the signing key.
    pub key_id: FixedBytes<8>,
    /// Ed25519 signature over `domain || canonical bytes`.
    pub sig: FixedBytes<64>,
}

/// A document with its signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "D: Document")]
pub struct Signed<D> {
    /// The document.
    pub doc: D,
    /// Signatures, at most one counted per key.
    pub signatures: heapless::Vec<DocSignature, MAX_SIGNATURES>,
}

impl<D: Document> Signed<D> {
    /// A document with no signatures yet.
    pub fn unsigned(doc: D) -> Self {
        Signed { doc, signatures: heapless::Vec::new() }
    }

    /// Adds `key`'s signature, replacing an earlier one by the same key.
    pub fn sign(&mut self, key: &SigningKey) -> Result<()> {
        let bytes = canonical_bytes(&self.doc)?;
        let sig = keys::sign(key, D::DOMAIN, &bytes)?;
        let id = keys::key_id(&key.verifying_key());
        self.signatures.retain(|s| s.key_id.0 != id);
        let entry = DocSignature { key_id: FixedBytes(id), sig: FixedBytes(sig.to_bytes()) };
        self.signatures.push(entry).map_err(|_| {
            IfError::format(
                ErrorCode::InvalidEnvelope,
                format_args!("a document carries at most {MAX_SIGNATURES} signatures"),
            )
        })
    }

    /// How many distinct keys of `trusted` made a valid signature. A key that signed twice counts once;
    /// signatures by keys not in `trusted` count for nothing, whatever the document says about them.
    pub fn count_valid(&self, trusted: &[VerifyingKey]) -> Result<usize> {
        let bytes = canonical_bytes(&self.doc)?;
        let mut counted: heapless::Vec<KeyId, MAX_SIGNATURES> = heapless::Vec::new();
        for key in trusted {
            let id = keys::key_id(key);
            if counted.contains(&id) {
                continue;
            }
            let signed = self
                .signatures
                .iter()
                .filter(|s| s.key_id.0 == id)
                .any(|s| keys::verify(key, D::DOMAIN, &bytes, &Signature::from_bytes(&s.sig.0)).is_ok());
            if signed && counted.push(id).is_err() {
                break;
            }
        }
        Ok(counted.len())
    }

    /// Requires at least `threshold` distinct trusted keys to have signed.
    pub fn verify_threshold(&self, trusted: &[VerifyingKey], threshold: usize) -> Result<()> {
        let valid = self.count_valid(trusted)?;
        if threshold == 0 || valid < threshold {
            return Err(IfError::format(
                ErrorCode::InvalidSignature,
                format_args!("{valid} valid signature(s) by trusted keys, {threshold} required"),
            ));
        }
        Ok(())
    }
}
