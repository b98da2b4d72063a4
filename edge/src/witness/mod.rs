//! The witness log: records, the redb store with its journal and its durability contract, the group-commit writer,
//! snapshots for readers beside the writer, consistency proofs from the stored tree, the start-up check
//! from the newest checkpoint, the full verifier, pruning what the archive holds, and the disk budget.

pub mod boot;
pub mod disk;
mod fold;
pub mod journal;
pub mod proof;
pub mod prune;
pub mod reader;
pub mod record;
mod restore;
pub mod schema;
pub mod store;
mod tables;
pub mod tail;
pub mod verify;
pub mod writer;
