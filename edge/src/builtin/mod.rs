//! The agent's own capabilities, offered beside the device lanes: `edge.ping` (its health), `edge.witness`
//! (a trace from its log, and the full check of it) and `edge.policy` (talents and grants). Each is a
//! command like any other: verified, admitted, authorized and witnessed before it runs.

pub mod log_check;
pub mod ping;
pub mod policy;
pub mod witness;

pub use ping::Ping;
pub use policy::PolicyCommands;
pub use witness::WitnessQuery;
