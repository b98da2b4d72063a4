//! The IF edge agent.
//!
//! The agent receives signed command envelopes over MQTT, verifies and admits them, records every step in
//! a crash-safe witness log and drives studio devices. The protocol itself (envelopes, errors, topics,
//! the messages on them, witness primitives) lives in [`if_protocol`], whose
//! [`IfError`](if_protocol::IfError) is the one error type at this crate's boundary.
//!
//! Layout, from the bottom up; a module uses only those on the layers below it (a test in `tests/`
//! checks that the module graph has no cycle):
//!
//! 1. Pure pieces with no I/O: [`clock`], [`backoff`] (every retry schedule), [`redact`] (the secrets
//!    net), [`budget`], `identity` (the watch over the agent's own status topic), `rejections` (which
//!    refusals are recorded one by one).
//! 2. Files and keys: [`files`] (bounded reads), [`keyfile`], [`tls`], [`vault`], [`stages`] (where a
//!    command's time goes, for the path benchmark).
//! 3. The durable log: [`witness`] (records, the file format, the store and its durability contract,
//!    the group-commit writer, readers, proofs, the verifier).
//! 4. What runs: [`capability`] (the trait and a dry run's plan), [`drivers`] (the device protocols
//!    behind one reconnect supervisor), [`lane`] (rate limits and breakers in front of each device).
//! 5. What is trusted: [`policy`] (trust root, manifests, talents and grants; decided by pure rules and
//!    committed with the log).
//! 6. The agent's own capabilities: [`builtin`] (`edge.ping`, `edge.witness`, `edge.policy`), with the
//!    figures they share in `health`.
//! 7. The command path: `admit` (replay window, nonces, TTL), [`ingress`] (verify, admit, authorize a
//!    burst), [`falsify`] (dry runs), [`reply`] (answers and dead letters), [`attest`] (their signatures).
//! 8. Connections: [`mqtt`] (broker addresses, session options, the event-loop driver), [`anchor`]
//!    (checkpoints upstream), [`notify`] (the service manager).
//! 9. Setting up and running: [`config`] (`edge.toml`), [`preflight`] (the checks before start),
//!    [`init`] (a new agent directory), and [`agent`], which wires everything together.

pub(crate) mod admit;
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
pub(crate) mod health;
pub(crate) mod identity;
pub mod ingress;
pub mod init;
pub mod keyfile;
pub mod lane;
pub mod mqtt;
pub mod notify;
pub mod policy;
pub mod preflight;
pub mod redact;
pub(crate) mod rejections;
pub mod reply;
pub mod stages;
pub mod tls;
pub mod vault;
pub mod witness;

pub use if_protocol;
