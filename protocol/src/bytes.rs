//! Fixed-size byte strings (keys, signatures) that read as base64 in JSON and TOML and as raw bytes on the
//! wire. Serde's derive stops at 32-element arrays; this covers 64-byte signatures too.

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// `N` bytes; base64 in text formats.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FixedBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Debug for FixedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> Serialize for FixedBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut buf = [0u8; 128];
            let n = B64.encode_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
            s.serialize_str(core::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

struct FixedVisitor<const N: usize>;

impl<const N: usize> FixedVisitor<N> {
    fn exact<E: de::Error>(v: &[u8]) -> Result<FixedBytes<N>, E> {
        v.try_into().map(FixedBytes).map_err(|_| E::invalid_length(v.len(), &"the exact byte count"))
    }
}

impl<'de, const N: usize> Visitor<'de> for FixedVisitor<N> {
    type Value = FixedBytes<N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes (base64 in text)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut buf = [0u8; 128];
        let n = B64.decode_slice(v, &mut buf).map_err(|_| E::custom("not valid base64 of the right length"))?;
        Self::exact(&buf[..n])
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Self::exact(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(de::Error::invalid_length(N + 1, &self));
        }
        Ok(FixedBytes(out))
    }
}

impl<'de, const N: usize> Deserialize<'de> for FixedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(FixedVisitor::<N>)
        } else {
            d.deserialize_bytes(FixedVisitor::<N>)
        }
    }
}
