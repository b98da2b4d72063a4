//! The witness log: records, the redb store with its durability contract, the group-commit writer,
//! snapshots for readers beside the writer, consistency proofs from the stored tree, the start-up check
//! from the newest checkpoint, the full verifier, pruning what the archive holds, and the disk budget.

pub mod boot;
pub mod disk;
pub mod proof;
pub mod prune;
pub mod reader;
pub mod record;
pub mod schema;
pub mod store;
pub mod tail;
pub mod verify;
pub mod writer;
