//! The IF.connect v2.2 command envelope body.
//!
//! The body is what a talent signs: for whom (`audience`: one agent, every agent of a site, or the fleet),
//! who sends (`sender`, `seq`, `nonce`), when (`issued_at_ms`, `ttl_s`), what (`capability`, `action`,
//! `args`), under which consent (`scope`, `hazards`) and why (`why`, `trace`).
//! Its wire form is postcard; every string and list is bounded by its type, so decoding can never allocate
//! past a fixed size. The same types serialize to readable JSON (`hazards` as names, ids as UUIDs, `args` as
//! a map), which is the view people and tools use.
//!
//! A body is canonical when its postcard re-encoding equals the signed bytes and its `args` are sorted by
//! key; [`EnvelopeBody::validate`] checks everything that the types alone do not.

use core::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ErrorCode, Result};
use crate::if_bail;

pub use crate::args::{Arg, ArgKey, ArgText, ArgValue, Args, MAX_ARGS};
pub use crate::audience::{Audience, Reach};
use crate::name::check_text;
pub use crate::name::{Name, check_token};

/// Protocol major version carried in every body.
pub const PROTOCOL_MAJOR: u8 = 2;
/// Protocol minor version carried in every body.
pub const PROTOCOL_MINOR: u8 = 2;
/// Prefix of every capability id.
pub const CAPABILITY_PREFIX: &str = "if://capability/";
/// Longest accepted `ttl_s`: one day.
pub const MAX_TTL_S: u32 = 86_400;

/// A scope such as `studio:control`.
pub type Scope = heapless::String<64>;
/// A capability id such as `if://capability/vmix.switcher`.
pub type CapabilityId = heapless::String<128>;
/// An action name such as `cut` or `preset_recall`.
pub type ActionName = heapless::String<64>;
/// The human reason for a command.
pub type Why = heapless::String<512>;

/// `major.minor`, shown as `"2.2"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u8,
    /// Compatible additions.
    pub minor: u8,
}

impl ProtocolVersion {
    /// The version this crate speaks.
    pub const CURRENT: ProtocolVersion = ProtocolVersion { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR };
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&format_args!("{}.{}", self.major, self.minor))
        } else {
            (self.major, self.minor).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = <&str>::deserialize(d)?;
            let (a, b) = text.split_once('.').ok_or_else(|| de::Error::custom("version must be MAJOR.MINOR"))?;
            let major = a.parse().map_err(|_| de::Error::custom("bad major version"))?;
            let minor = b.parse().map_err(|_| de::Error::custom("bad minor version"))?;
            Ok(ProtocolVersion { major, minor })
        } else {
            let (major, minor) = <(u8, u8)>::deserialize(d)?;
            Ok(ProtocolVersion { major, minor })
        }
    }
}

/// 16 random bytes, shown as hex in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Nonce(pub [u8; 16]);

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut hex = [0u8; 32];
            s.serialize_str(hex_encode(&self.0, &mut hex))
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = <&str>::deserialize(d)?;
            let mut out = [0u8; 16];
            hex_decode(text, &mut out).ok_or_else(|| de::Error::custom("nonce must be 32 hex digits"))?;
            Ok(Nonce(out))
        } else {
            Ok(Nonce(<[u8; 16]>::deserialize(d)?))
        }
    }
}

macro_rules! hazards {
    ($( $konst:ident = $bit:literal, $name:literal, $doc:literal; )*) => {
        /// The set of hazards an envelope declares (or a manifest action carries, or a grant allows).
        ///
        /// A bit set on the wire, a list of names in JSON and TOML. Unknown bits are invalid.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct Hazards(u16);

        impl Hazards {
            $( #[doc = $doc] pub const $konst: Hazards = Hazards(1 << $bit); )*
            /// Every known hazard with its name.
            pub const NAMED: &'static [(Hazards, &'static str)] = &[$((Hazards::$konst, $name),)*];
            const KNOWN_BITS: u16 = 0 $(| (1 << $bit))*;
        }
    };
}

hazards! {
    ON_AIR = 0, "on_air", "Changes what is on air (program output, tally, live audio).";
    IRREVERSIBLE = 1, "irreversible", "Cannot be undone (erase a recording, overwrite a preset).";
    MOTION = 2, "motion", "Moves physical equipment (PTZ heads, robotics).";
    POWER = 3, "power", "Switches power or mains relays.";
    LOUD = 4, "loud", "Raises audio levels or triggers sound in the room.";
}

impl Hazards {
    /// No hazards.
    pub const NONE: Hazards = Hazards(0);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set for raw bits; `None` if any bit is unknown.
    pub const fn from_bits(bits: u16) -> Option<Hazards> {
        if bits & !Hazards::KNOWN_BITS == 0 { Some(Hazards(bits)) } else { None }
    }

    /// Set union.
    pub const fn union(self, other: Hazards) -> Hazards {
        Hazards(self.0 | other.0)
    }

    /// Whether every hazard of `other` is in `self`.
    pub const fn contains(self, other: Hazards) -> bool {
        self.0 & other.0 == other.0
    }

    /// The hazards of `self` that are not in `other`.
    pub const fn difference(self, other: Hazards) -> Hazards {
        Hazards(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The hazard with this name.
    pub fn by_name(name: &str) -> Option<Hazards> {
        Hazards::NAMED.iter().find(|(_, n)| *n == name).map(|(h, _)| *h)
    }

    /// Names of the hazards in the set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Hazards::NAMED.iter().filter(move |(h, _)| self.contains(*h)).map(|(_, n)| *n)
    }
}

impl fmt::Debug for Hazards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Serialize for Hazards {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut seq = s.serialize_seq(None)?;
            for name in self.names() {
                seq.serialize_element(name)?;
            }
            seq.end()
        } else {
            s.serialize_u16(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Hazards {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = Hazards;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of hazard names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<Hazards, A::Error> {
                let mut set = Hazards::NONE;
                // Owned or borrowed: text formats such as TOML hand over owned strings.
                while let Some(name) = seq.next_element::<heapless::String<32>>()? {
                    let h = Hazards::by_name(&name).ok_or_else(|| de::Error::custom("unknown hazard name"))?;
                    set = set.union(h);
                }
                Ok(set)
            }
        }
        if d.is_human_readable() {
            d.deserialize_seq(Names)
        } else {
            let bits = u16::deserialize(d)?;
            Hazards::from_bits(bits).ok_or_else(|| de::Error::custom("unknown hazard bit"))
        }
    }
}

/// The signed body of a command envelope. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeBody {
    /// Always [`ProtocolVersion::CURRENT`].
    pub version: ProtocolVersion,
    /// Unique id of this envelope.
    pub id: Uuid,
    /// The agent (or agents) it is for.
    pub audience: Audience,
    /// Talent name of the sender; its key signed the frame.
    pub sender: Name,
    /// Per-sender sequence number for the replay window.
    pub seq: u64,
    /// 16 random bytes.
    pub nonce: Nonce,
    /// When the sender made it, unix milliseconds.
    pub issued_at_ms: u64,
    /// Seconds after `issued_at_ms` that it stays valid, 1..=86400.
    pub ttl_s: u32,
    /// The scope the sender acts in, e.g. `studio:control`.
    pub scope: Scope,
    /// Hazards the sender knowingly accepts.
    pub hazards: Hazards,
    /// `if://capability/<name>`.
    pub capability: CapabilityId,
    /// An action the capability's manifest lists.
    pub action: ActionName,
    /// Typed arguments, sorted by key.
    pub args: Args,
    /// Why the command is sent, for the witness log; never empty.
    pub why: Why,
    /// Trace token that ties related commands together.
    pub trace: Uuid,
}

impl EnvelopeBody {
    /// Checks what the types do not: version, name syntax, TTL range, sorted args, no control characters.
    pub fn validate(&self) -> Result<()> {
        if self.version != ProtocolVersion::CURRENT {
            if_bail!(
                ErrorCode::InvalidEnvelope,
                "protocol version {}.{} is not supported (want {PROTOCOL_MAJOR}.{PROTOCOL_MINOR})",
                self.version.major,
                self.version.minor
            );
        }
        self.audience.validate()?;
        check_token("sender", &self.sender, 64)?;
        check_text("scope", &self.scope, true)?;
        if self.scope.contains(char::is_whitespace) {
            if_bail!(ErrorCode::InvalidEnvelope, "scope must not contain whitespace");
        }
        capability_name(&self.capability)?;
        check_token("action", &self.action, 64)?;
        check_text("why", &self.why, true)?;
        if self.ttl_s == 0 || self.ttl_s > MAX_TTL_S {
            if_bail!(ErrorCode::InvalidEnvelope, "ttl_s must be 1..={MAX_TTL_S}, got {}", self.ttl_s);
        }
        self.args.validate()
    }

    /// Checks the validity period against `now_ms` with `skew_ms` of allowed clock difference.
    ///
    /// Expired when `issued_at + ttl < now - skew`; future-dated when `issued_at > now + skew`.
    pub fn check_time(&self, now_ms: u64, skew_ms: u64) -> Result<()> {
        let expires = self.issued_at_ms.saturating_add(u64::from(self.ttl_s) * 1000);
        if expires < now_ms.saturating_sub(skew_ms) {
            if_bail!(ErrorCode::ExpiredMessage, "expired {} ms ago (ttl {} s)", now_ms - expires, self.ttl_s);
        }
        if self.issued_at_ms > now_ms.saturating_add(skew_ms) {
            if_bail!(
                ErrorCode::FutureDated,
                "issued {} ms in the future, allowed skew {skew_ms} ms",
                self.issued_at_ms - now_ms
            );
        }
        Ok(())
    }
}

/// The `<name>` of `if://capability/<name>`, checked.
pub fn capability_name(id: &str) -> Result<&str> {
    let Some(name) = id.strip_prefix(CAPABILITY_PREFIX) else {
        if_bail!(ErrorCode::InvalidEnvelope, "capability must start with {CAPABILITY_PREFIX}");
    };
    check_token("capability name", name, 128 - CAPABILITY_PREFIX.len())?;
    Ok(name)
}

/// Lower-case hex of `bytes` into `out` (which must be twice as long).
pub(crate) fn hex_encode<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    core::str::from_utf8(&out[..2 * bytes.len()]).unwrap_or_default()
}

/// Decodes hex of exactly `out.len() * 2` digits.
pub(crate) fn hex_decode(text: &str, out: &mut [u8]) -> Option<()> {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(())
}
