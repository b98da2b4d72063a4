//! Policy documents and their signatures: trust root, capability manifests, talents, grants and bindings.
//!
//! These are the types the agent's policy engine (and `ifctl`) read, write and sign; the rules that use
//! them (authorization, rotation, rollback) live with the agent. Every document is signed over
//! `domain || postcard(document)`, where the domain names the document kind, so bytes signed as one kind
//! can never be taken for another. As with envelopes, the signature covers the canonical binary encoding,
//! not the TOML or JSON a person edits: reformatting a file never breaks its signature, and any change of
//! meaning always does.

mod binding;
mod manifest;
mod signed;
mod talent;
mod trust;

pub use binding::{Binding, Rule};
pub use manifest::{ActionSpec, Emergency, Limits, Manifest, Semver};
pub use signed::{DocSignature, Document, MAX_DOC_LEN, Signed, canonical_bytes};
pub use talent::{Grant, Talent, TalentStatus};
pub use trust::{KeyRoles, MAX_ROOT_KEYS, TrustKey, TrustRoot};

/// An Ed25519 public key, base64 in text formats.
pub type PublicKey = crate::bytes::FixedBytes<32>;
