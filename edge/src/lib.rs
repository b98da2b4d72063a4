//! The IF edge agent.
//!
//! The agent receives signed command envelopes over MQTT, verifies and admits them, records every step in
//! a crash-safe witness log and drives studio devices. This library holds the parts the agent binary and
//! the `ifctl` operator CLI share; the protocol itself (envelopes, errors, witness primitives) lives in
//! [`if_protocol`], whose [`IfError`](if_protocol::IfError) is the one error type at this crate's boundary.

pub mod keyfile;

pub use if_protocol;
