//! Talents (the principals that send commands) and the grants that say what each may do.

use serde::{Deserialize, Serialize};

use super::PublicKey;
use super::signed::Document;
use crate::envelope::{ActionName, CapabilityId, Hazards, Name, Scope};

/// Whether a talent may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TalentStatus {
    /// May send commands.
    Active,
    /// Refused with KEY_REVOKED.
    Revoked,
}

/// A principal: an operator's desk, an automation, a show controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Talent {
    /// Name used as `sender` in envelopes.
    pub name: Name,
    /// Free-form role, e.g. `director`, `automation`.
    pub role: heapless::String<32>,
    /// The key that signs its envelopes.
    pub public_key: PublicKey,
    /// Active or revoked.
    pub status: TalentStatus,
}

impl Document for Talent {
    const DOMAIN: &'static [u8] = b"IF.talent/v1\0";
}

/// What one talent may do with one capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The talent.
    pub talent: Name,
    /// The capability.
    pub capability: CapabilityId,
    /// Scopes the talent may act in.
    pub scopes: heapless::Vec<Scope, 8>,
    /// Actions allowed; each must also be in the capability's manifest.
    pub actions: heapless::Vec<ActionName, 32>,
    /// Hazards the talent may accept.
    pub hazards: Hazards,
    /// Unix seconds after which the grant no longer applies.
    pub expires: Option<u64>,
}

impl Document for Grant {
    const DOMAIN: &'static [u8] = b"IF.grant/v1\0";
}
