//! Identifiers: actors (ed25519 public keys), entries (content hashes), signatures.
//!
//! Printable forms are lowercase base32 (no padding) behind a short prefix, so an actor id
//! can never be mistaken for an entry id: `a-…` for actors (and records, whose id is the
//! patient's actor id), `e-…` for entries.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error parsing a printable identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The prefix is not the one this kind of id uses.
    #[error("expected an id starting with `{expected}`")]
    WrongPrefix {
        /// The prefix that was expected.
        expected: &'static str,
    },
    /// The body is not valid base32.
    #[error("not valid base32 after the prefix")]
    Base32,
    /// The decoded length is wrong.
    #[error("wrong length: {0} bytes, expected 32")]
    Length(usize),
}

fn encode32(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn decode32(prefix: &'static str, s: &str) -> Result<[u8; 32], IdParseError> {
    let body = s
        .strip_prefix(prefix)
        .ok_or(IdParseError::WrongPrefix { expected: prefix })?;
    let raw = BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|_| IdParseError::Base32)?;
    raw.as_slice()
        .try_into()
        .map_err(|_| IdParseError::Length(raw.len()))
}

macro_rules! byte_id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The printable prefix of this kind of id.
            pub const PREFIX: &'static str = $prefix;
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// A short form for tables (prefix and first 10 characters).
            pub fn short(&self) -> String {
                let s = self.to_string();
                s[..($prefix.len() + 10).min(s.len())].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, encode32(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode32($prefix, s.trim()).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_string())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(de::Error::custom)
                } else {
                    d.deserialize_bytes(Bytes32Visitor).map($name)
                }
            }
        }
    };
}

byte_id!(
    /// An actor: a person, organisation node or device, identified by its ed25519 public key.
    /// A record's id is its patient's actor id.
    ActorId,
    "a-"
);
byte_id!(
    /// An entry's id: the BLAKE3 hash of its canonical signed encoding.
    EntryId,
    "e-"
);

/// A record is identified by the patient's actor id.
pub type RecordId = ActorId;

struct Bytes32Visitor;

impl<'de> Visitor<'de> for Bytes32Visitor {
    type Value = [u8; 32];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig(pub [u8; 64]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({})", encode32(&self.0[..8]).to_ascii_lowercase())
    }
}

impl Serialize for Sig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&encode32(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let raw = BASE32_NOPAD
                    .decode(v.to_ascii_uppercase().as_bytes())
                    .map_err(|_| E::custom("signature is not base32"))?;
                self.visit_bytes(&raw)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V).map(Sig)
        } else {
            d.deserialize_bytes(V).map(Sig)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_id_round_trips_and_rejects_wrong_prefix() {
        let a = ActorId([7; 32]);
        let s = a.to_string();
        assert!(s.starts_with("a-"));
        assert_eq!(s.parse::<ActorId>().unwrap(), a);
        assert_eq!(
            s.replacen("a-", "e-", 1).parse::<ActorId>(),
            Err(IdParseError::WrongPrefix { expected: "a-" })
        );
        assert_eq!(
            "a-aaaaaaaa".parse::<ActorId>(),
            Err(IdParseError::Length(5))
        );
        assert_eq!("a-!!".parse::<ActorId>(), Err(IdParseError::Base32));
    }
}
