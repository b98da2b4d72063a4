//! IF.connect v2.2: the protocol shared by the IF edge agent, the `ifctl` CLI and the rack-node firmware.
//!
//! Pure logic, no I/O, `no_std` (the `std` feature adds `std::error::Error`, the JSON view of envelopes and
//! batch signature verification). Everything that crosses a trust boundary is decoded here with a size cap
//! first, a signature check second and a canonical-encoding check third, and every rejection is an
//! [`IfError`] with a stable code.
//!
//! - [`error`]: the error taxonomy (`IF_ERR_xxx NAME: detail`).
//! - [`keys`]: key ids and domain-separated Ed25519 signing.
//! - [`envelope`] and [`frame`]: the command envelope body and its signed wire frame; [`audience`]: whom
//!   it is for; [`args`]: its arguments.
//! - [`name`]: the one rule for names of talents, agents and sites.
//! - [`replay`]: the per-sender sliding replay window and the clock bound on sequence numbers.
//! - `attest` (with `alloc`): the agent's signature on its replies and on the JSON it publishes.
//! - [`link`]: serial link frames for the rack node (postcard + CRC + COBS, sequence/ack).
//! - [`policy`]: trust root, capability manifests, talents and grants, and their signatures.
//! - [`witness`]: RFC 6962 Merkle hashing and proofs, and C2SP signed-note checkpoints.
//! - `topics` and `messages` (with `alloc`): the MQTT topics of the contract and the typed JSON published
//!   on them (status, tally, anchors and their acknowledgements).
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod args;
#[cfg(feature = "alloc")]
pub mod attest;
pub mod audience;
#[cfg(feature = "std")]
pub mod batch;
pub mod bytes;
pub mod envelope;
pub mod error;
pub mod frame;
#[cfg(feature = "std")]
pub mod json;
pub mod keys;
pub mod link;
#[cfg(feature = "alloc")]
pub mod messages;
pub mod name;
pub mod policy;
pub mod replay;
#[cfg(feature = "alloc")]
pub mod topics;
pub mod witness;

pub use error::{ErrorCode, IfError};
