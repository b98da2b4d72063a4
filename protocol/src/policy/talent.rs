//! Talents (the principals that send commands) and the grants that say what each may do.

use serde::{Deserialize, Serialize};

use super::PublicKey;
use super::signed::Document;
use crate::envelope::{ActionName, CapabilityId, Hazards, Name, Reach, Scope};

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
    /// The widest audience its envelopes may name: one agent (the default), a site, or the fleet.
    #[serde(default)]
    pub reach: Reach,
}

impl Document for Grant {
    const DOMAIN: &'static [u8] = b"IF.grant/v1\0";
}

/// A grant as stored before grants had a reach (IF.connect 2.1): its envelopes could name no audience.
#[derive(Deserialize)]
struct GrantBeforeReach {
    talent: Name,
    capability: CapabilityId,
    scopes: heapless::Vec<Scope, 8>,
    actions: heapless::Vec<ActionName, 32>,
    hazards: Hazards,
    expires: Option<u64>,
}

impl Grant {
    /// Decodes a grant's postcard bytes, also in the layout stored before grants had a reach (which
    /// reads as [`Reach::Agent`]). Trailing bytes are refused in both layouts.
    pub fn from_stored(bytes: &[u8]) -> Result<Grant, postcard::Error> {
        match postcard::take_from_bytes::<Grant>(bytes) {
            Ok((g, [])) => Ok(g),
            Ok(_) => Err(postcard::Error::DeserializeBadEncoding),
            Err(_) => {
                let (old, rest) = postcard::take_from_bytes::<GrantBeforeReach>(bytes)?;
                if !rest.is_empty() {
                    return Err(postcard::Error::DeserializeBadEncoding);
                }
                Ok(Grant {
                    talent: old.talent,
                    capability: old.capability,
                    scopes: old.scopes,
                    actions: old.actions,
                    hazards: old.hazards,
                    expires: old.expires,
                    reach: Reach::Agent,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_stored_before_reach_reads_as_agent_reach() {
        let mut g = Grant {
            talent: "desk".try_into().expect("short"),
            capability: "if://capability/vmix.switcher".try_into().expect("short"),
            scopes: heapless::Vec::new(),
            actions: heapless::Vec::new(),
            hazards: Hazards::ON_AIR,
            expires: Some(7),
            reach: Reach::Fleet,
        };
        let mut buf = [0u8; 512];
        let new = postcard::to_slice(&g, &mut buf).expect("encode").to_vec();
        assert_eq!(Grant::from_stored(&new).expect("new layout"), g);
        // The old layout is the new one without its last field (one byte for the reach).
        let old = &new[..new.len() - 1];
        g.reach = Reach::Agent;
        assert_eq!(Grant::from_stored(old).expect("old layout"), g);
        assert!(Grant::from_stored(&[new.as_slice(), &[0]].concat()).is_err(), "trailing bytes");
        assert!(Grant::from_stored(&new[..3]).is_err(), "truncated");
    }
}
