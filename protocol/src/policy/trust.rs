//! The trust root: the keys allowed to sign manifests and policy, and how many must agree.

use serde::{Deserialize, Serialize};

use super::PublicKey;
use super::signed::Document;
use crate::envelope::Name;

/// Most keys in a trust root.
pub const MAX_ROOT_KEYS: usize = 8;

/// What a trust-root key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRoles {
    /// Trust roots (rotation) and capability manifests.
    pub manifests: bool,
    /// Policy commands: talent and grant changes.
    pub policy: bool,
}

/// One key of the trust root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustKey {
    /// Who holds it.
    pub name: Name,
    /// The public key.
    pub public_key: PublicKey,
    /// What it may sign.
    pub roles: KeyRoles,
}

/// The signed root of trust, provisioned at install and rotated only by a threshold of old and new keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Goes up by exactly one at each rotation.
    pub version: u32,
    /// Unix seconds after which the root must be rotated.
    pub expires: u64,
    /// Signatures required (k of n) on the root itself and on manifests.
    pub threshold: u8,
    /// The keys.
    pub keys: heapless::Vec<TrustKey, MAX_ROOT_KEYS>,
}

impl Document for TrustRoot {
    const DOMAIN: &'static [u8] = b"IF.trust-root/v1\0";
    const LIST_LIMITS: &'static [(&'static str, usize)] = &[("keys", MAX_ROOT_KEYS)];
}
