//! Witness primitives: what the agent's log and an upstream verifier must agree on, byte for byte.
//!
//! - [`merkle`]: RFC 6962 leaf and node hashes, and the tree head of a list of leaves, built incrementally.
//! - [`proof`]: verification of inclusion and consistency proofs (RFC 9162 section 2.1.3 and 2.1.4).
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes, signed with Ed25519.
//! - `tiles` (with `alloc`): the C2SP `tlog-tiles` layout an archive of the log is written in.

pub mod checkpoint;
pub mod merkle;
pub mod proof;
#[cfg(feature = "alloc")]
pub mod tiles;

/// A SHA-256 hash.
pub type Hash = [u8; 32];
