//! Capability manifests: what a device is, how to reach it, which actions it offers and how hard it may be
//! driven. The field names are those of the TOML files operators write.

use core::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::signed::Document;
use crate::envelope::{ActionName, CapabilityId, Hazards, Scope};

/// A `major.minor.patch` version, `"1.2.0"` in text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Semver {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl Semver {
    /// Parses `1.2.3` (no pre-release or build suffix).
    pub fn parse(text: &str) -> Option<Semver> {
        let mut parts = text.split('.').map(|p| if p.len() > 1 && p.starts_with('0') { None } else { p.parse().ok() });
        let v = Semver { major: parts.next()??, minor: parts.next()??, patch: parts.next()?? };
        parts.next().is_none().then_some(v)
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Semver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { (self.major, self.minor, self.patch).serialize(s) }
    }
}

impl<'de> Deserialize<'de> for Semver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = heapless::String::<32>::deserialize(d)?;
            Semver::parse(&text).ok_or_else(|| de::Error::custom("version must be MAJOR.MINOR.PATCH"))
        } else {
            let (major, minor, patch) = <(u32, u32, u32)>::deserialize(d)?;
            Ok(Semver { major, minor, patch })
        }
    }
}

/// How hard a device may be driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Sustained commands per second (token bucket rate).
    pub rps: f32,
    /// Commands allowed at once (token bucket size).
    pub burst: u32,
    /// Reconnect and retry waits in seconds, e.g. `[1, 2, 5, 10, 30]`; the last repeats.
    pub backoff: heapless::Vec<u32, 8>,
    /// Consecutive failures or timeouts that open the circuit breaker.
    pub breaker_failures: u32,
    /// Commands that may wait in the device's queue.
    pub queue_depth: u32,
    /// How long to wait for the device's answer, in milliseconds.
    pub timeout_ms: u32,
}

/// One action a capability offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// The action name used in envelopes.
    pub name: ActionName,
    /// Hazards the envelope must declare and the grant must allow.
    pub hazards: Hazards,
    /// Budget units one call costs.
    pub cost: u32,
    /// Emergency actions (camera STOP, safe state) take the priority lane and, unless they opt out,
    /// end what was queued before them.
    #[serde(default)]
    pub emergency: Emergency,
}

/// Whether an action is an emergency, and what it does to the commands queued before it.
///
/// Written `emergency = false | true | "keep-queue"`. An operator who presses STOP means "no more
/// motion": an emergency ends every command queued on its device before it (each answered
/// `SUPERSEDED`, never sent); `"keep-queue"` only jumps the queue. In the canonical (signed) bytes it
/// is one byte, 0, 1 or 2: the bytes `emergency` had as a boolean, so manifests signed before the
/// third form existed keep their signatures. Their `emergency = true` now also ends the queue (what a
/// STOP means); a site that wants the old behaviour signs `"keep-queue"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Emergency {
    /// Queued like any command.
    #[default]
    No,
    /// Goes first, and ends what was queued before it.
    EndsQueue,
    /// Goes first, and leaves the queue to run after it.
    KeepsQueue,
}

impl Emergency {
    /// Whether it takes the priority lane.
    pub const fn is_emergency(self) -> bool {
        !matches!(self, Emergency::No)
    }

    /// Whether it ends the commands queued before it.
    pub const fn ends_queue(self) -> bool {
        matches!(self, Emergency::EndsQueue)
    }
}

impl Serialize for Emergency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self, s.is_human_readable()) {
            (Emergency::KeepsQueue, true) => s.serialize_str("keep-queue"),
            (e, true) => s.serialize_bool(e.is_emergency()),
            (e, false) => s.serialize_u8(*e as u8),
        }
    }
}

impl<'de> Deserialize<'de> for Emergency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = Emergency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"keep-queue\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Emergency, E> {
                Ok(if v { Emergency::EndsQueue } else { Emergency::No })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Emergency, E> {
                match v {
                    "keep-queue" => Ok(Emergency::KeepsQueue),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        if d.is_human_readable() {
            return d.deserialize_any(Text);
        }
        match u8::deserialize(d)? {
            0 => Ok(Emergency::No),
            1 => Ok(Emergency::EndsQueue),
            2 => Ok(Emergency::KeepsQueue),
            n => Err(de::Error::invalid_value(de::Unexpected::Unsigned(n.into()), &"0, 1 or 2")),
        }
    }
}

/// A capability manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `if://capability/<name>`.
    pub id: CapabilityId,
    /// Never goes down for the same id.
    pub version: Semver,
    /// A compiled-in driver: `vmix-tcp`, `videohub-tcp`, `visca-serial`, `visca-ip`, `rack-node-serial`, `tsl-umd`, `loopback`, `builtin`.
    pub driver: heapless::String<32>,
    /// Where the device is: `tcp://host:port` or `serial:///dev/ttyUSB0?baud=9600`.
    pub endpoint: heapless::String<128>,
    /// Names of the vault secrets the driver may read.
    pub requires_secrets: heapless::Vec<heapless::String<64>, 8>,
    /// Scopes in which the capability may be used.
    pub scopes: heapless::Vec<Scope, 8>,
    /// Rate limits, breaker and queue.
    pub limits: Limits,
    /// The allow-list of actions.
    pub actions: heapless::Vec<ActionSpec, 32>,
    /// Unix seconds after which the manifest is refused.
    pub expires: u64,
}

impl Manifest {
    /// The action with this name.
    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

impl Document for Manifest {
    const DOMAIN: &'static [u8] = b"IF.manifest/v1\0";
    const LIST_LIMITS: &'static [(&'static str, usize)] =
        &[("actions", 32), ("scopes", 8), ("requires_secrets", 8), ("limits.backoff", 8)];
}
