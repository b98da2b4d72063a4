//! The arguments of an envelope: a short list of typed values under name-like keys, sorted by key.
//! Bounded inline (at most [`MAX_ARGS`], each text at most 256 bytes), so a body needs no allocator;
//! shown in JSON as a map of plain values, carried on the wire as a postcard list.

use core::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;
use crate::name::{check_text, check_token};

/// Most arguments an envelope may carry.
pub const MAX_ARGS: usize = 16;
/// An argument key.
pub type ArgKey = heapless::String<32>;
/// A text argument value.
pub type ArgText = heapless::String<256>;

/// A typed argument value: shown in JSON as a plain boolean, integer or string.
#[allow(clippy::large_enum_variant, reason = "bounded inline text so the body needs no allocator")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// `true` / `false`
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// Up to 256 bytes of text.
    Text(ArgText),
}

/// The binary form of [`ArgValue`]: an enum tag, then the value.
#[derive(Serialize, Deserialize)]
enum ArgWire<'a> {
    Bool(bool),
    Int(i64),
    Text(&'a str),
}

impl Serialize for ArgValue {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        match (s.is_human_readable(), self) {
            (true, ArgValue::Bool(b)) => s.serialize_bool(*b),
            (true, ArgValue::Int(i)) => s.serialize_i64(*i),
            (true, ArgValue::Text(t)) => s.serialize_str(t),
            (false, ArgValue::Bool(b)) => ArgWire::Bool(*b).serialize(s),
            (false, ArgValue::Int(i)) => ArgWire::Int(*i).serialize(s),
            (false, ArgValue::Text(t)) => ArgWire::Text(t).serialize(s),
        }
    }
}

fn arg_text<E: de::Error>(v: &str) -> core::result::Result<ArgValue, E> {
    ArgText::try_from(v).map(ArgValue::Text).map_err(|_| E::custom("argument text longer than 256 bytes"))
}

impl<'de> Deserialize<'de> for ArgValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct Plain;
        impl Visitor<'_> for Plain {
            type Value = ArgValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean, an integer or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> core::result::Result<ArgValue, E> {
                Ok(ArgValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> core::result::Result<ArgValue, E> {
                Ok(ArgValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> core::result::Result<ArgValue, E> {
                i64::try_from(v).map(ArgValue::Int).map_err(|_| E::custom("integer argument out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> core::result::Result<ArgValue, E> {
                arg_text(v)
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(Plain)
        } else {
            match ArgWire::deserialize(d)? {
                ArgWire::Bool(b) => Ok(ArgValue::Bool(b)),
                ArgWire::Int(i) => Ok(ArgValue::Int(i)),
                ArgWire::Text(t) => arg_text(t),
            }
        }
    }
}

/// One argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arg {
    /// `[A-Za-z0-9_.-]`, 1..=32 bytes.
    pub key: ArgKey,
    /// The value.
    pub value: ArgValue,
}

impl ArgValue {
    /// A value written as text by a person (`--arg k=v`, a binding's `args`): `true` and `false` are
    /// booleans, whole numbers are integers, anything else is text of at most 256 bytes.
    pub fn typed(v: &str) -> Result<ArgValue> {
        Ok(match v {
            "true" => ArgValue::Bool(true),
            "false" => ArgValue::Bool(false),
            _ => match v.parse::<i64>() {
                Ok(i) => ArgValue::Int(i),
                Err(_) => ArgValue::Text(
                    v.try_into().map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "text over 256 bytes"))?,
                ),
            },
        })
    }
}

/// The arguments, kept sorted by key with no duplicates; a list on the wire, a map in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args(heapless::Vec<Arg, MAX_ARGS>);

impl Args {
    /// No arguments.
    pub const fn new() -> Self {
        Args(heapless::Vec::new())
    }

    /// Sets `key` to `value`, keeping the keys sorted.
    pub fn insert(&mut self, key: &str, value: ArgValue) -> Result<()> {
        check_token("argument key", key, ArgKey::new().capacity())?;
        let key =
            ArgKey::try_from(key).map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "argument key too long"))?;
        match self.0.binary_search_by(|a| a.key.as_str().cmp(key.as_str())) {
            Ok(i) => self.0[i].value = value,
            Err(i) => {
                if self.0.insert(i, Arg { key, value }).is_err() {
                    if_bail!(ErrorCode::InvalidEnvelope, "more than {MAX_ARGS} arguments");
                }
            }
        }
        Ok(())
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&ArgValue> {
        self.0.iter().find(|a| a.key == key).map(|a| &a.value)
    }

    /// The arguments in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Arg> {
        self.0.iter()
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys strictly ascending, every key and text value well formed.
    pub(crate) fn validate(&self) -> Result<()> {
        for pair in self.0.windows(2) {
            if pair[0].key >= pair[1].key {
                if_bail!(
                    ErrorCode::NonCanonical,
                    "argument keys must be sorted and unique ('{}' then '{}')",
                    pair[0].key,
                    pair[1].key
                );
            }
        }
        for a in &self.0 {
            check_token("argument key", &a.key, ArgKey::new().capacity())?;
            if let ArgValue::Text(t) = &a.value {
                check_text("argument value", t, false)?;
            }
        }
        Ok(())
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for a in &self.0 {
                map.serialize_entry(a.key.as_str(), &a.value)?;
            }
            map.end()
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct ArgMap;
        impl<'de> Visitor<'de> for ArgMap {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of arguments")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<Args, A::Error> {
                let mut args = Args::new();
                while let Some((k, v)) = map.next_entry::<&str, ArgValue>()? {
                    if args.get(k).is_some() {
                        return Err(de::Error::custom("duplicate argument key"));
                    }
                    args.insert(k, v).map_err(de::Error::custom)?;
                }
                Ok(args)
            }
        }
        if d.is_human_readable() { d.deserialize_map(ArgMap) } else { Ok(Args(heapless::Vec::deserialize(d)?)) }
    }
}
