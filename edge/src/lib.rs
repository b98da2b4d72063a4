//! The IF edge agent.
//!
//! The agent receives signed command envelopes over MQTT, verifies and admits them, records every step in
//! a crash-safe witness log and drives studio devices. The protocol itself (envelopes, errors, witness
//! primitives) lives in [`if_protocol`], whose [`IfError`](if_protocol::IfError) is the one error type at
//! this crate's boundary.
//!
//! Modules follow the life of a command: [`ingress`] (verify, [`admit`], authorize), [`witness`] (the
//! durable log), [`capability`] (what runs), [`reply`] (answers and dead letters); [`mqtt`] is the
//! connection and [`agent`] wires them together. [`policy`] decides what the agent trusts. [`config`] and [`init`] set an agent up.

pub mod admit;
pub mod agent;
pub mod anchor;
pub mod attest;
pub mod backoff;
pub mod budget;
pub mod builtin;
pub mod capability;
pub mod clock;
pub mod config;
pub mod drivers;
pub mod falsify;
pub mod files;
pub mod health;
pub mod identity;
pub mod ingress;
pub mod init;
pub mod keyfile;
pub mod lane;
pub mod mqtt;
pub mod policy;
pub mod preflight;
pub mod redact;
pub mod rejections;
pub mod reply;
pub mod tls;
pub mod vault;
pub mod witness;

pub use if_protocol;
