//! The witness log: records, the redb store with its durability contract, the group-commit writer and
//! the offline verifier.

pub mod query;
pub mod record;
pub mod store;
pub mod verify;
pub mod writer;
