//! The generic data carried in an entry's body: a small, bounded, CBOR-native value tree.
//!
//! Maps are keyed by text and encoded in RFC 8949 deterministic key order (shorter keys
//! first, then bytewise), so one value has exactly one encoding.

use std::collections::BTreeMap;
use std::fmt;

use data_encoding::BASE64;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Deepest nesting allowed in a body.
pub const MAX_DEPTH: usize = 16;

/// A body value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A finite floating-point number.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes (attachments).
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A map with text keys.
    Map(BTreeMap<String, Value>),
}

/// A problem with a value's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// NaN or infinity.
    #[error("non-finite number")]
    NonFinite,
}

impl Value {
    /// Checks depth and number finiteness.
    pub fn check(&self) -> Result<(), ValueError> {
        fn go(v: &Value, depth: usize) -> Result<(), ValueError> {
            if depth > MAX_DEPTH {
                return Err(ValueError::TooDeep);
            }
            match v {
                Value::Float(f) if !f.is_finite() => Err(ValueError::NonFinite),
                Value::List(items) => items.iter().try_for_each(|i| go(i, depth + 1)),
                Value::Map(m) => m.values().try_for_each(|i| go(i, depth + 1)),
                _ => Ok(()),
            }
        }
        go(self, 0)
    }

    /// An empty map.
    pub fn map() -> Self {
        Value::Map(BTreeMap::new())
    }

    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The text inside, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside (integers widen), if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Looks up a key in a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The texts of the list field `key` of a map (non-text items left out); none if the
    /// field is missing or not a list.
    pub fn texts(&self, key: &str) -> Vec<String> {
        self.as_map().map(|m| texts_in(m, key)).unwrap_or_default()
    }

    /// Converts from JSON. Numbers become `Int` when integral and in range, else `Float`.
    pub fn from_json(j: &serde_json::Value) -> Self {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to JSON; bytes become base64 text.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => s.clone().into(),
            Value::Bytes(b) => BASE64.encode(b).into(),
            Value::List(l) => l.iter().map(Value::to_json).collect(),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// RFC 8949 deterministic order for text keys: shorter first, then bytewise.
fn key_order(a: &&String, b: &&String) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => {
                if s.is_human_readable() {
                    s.serialize_str(&BASE64.encode(b))
                } else {
                    s.serialize_bytes(b)
                }
            }
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(key_order);
                let mut map = s.serialize_map(Some(m.len()))?;
                for k in keys {
                    map.serialize_entry(k, &m[k])?;
                }
                map.end()
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a body value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            if out.insert(k, v).is_some() {
                return Err(de::Error::custom("duplicate map key"));
            }
        }
        Ok(Value::Map(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// The texts of the list field `key` of `map` (non-text items left out); none if the field
/// is missing or not a list ([`Value::texts`]).
pub fn texts_in(map: &BTreeMap<String, Value>, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(Value::as_text)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_finiteness_are_checked() {
        let mut v = Value::Int(1);
        for _ in 0..=MAX_DEPTH {
            v = Value::List(vec![v]);
        }
        assert_eq!(v.check(), Err(ValueError::TooDeep));
        assert_eq!(Value::Float(f64::NAN).check(), Err(ValueError::NonFinite));
        assert_eq!(Value::Float(1.5).check(), Ok(()));
    }

    #[test]
    fn texts_of_a_list_field_leave_out_what_is_not_text() {
        let v = Value::from_json(&serde_json::json!({"with": ["Dr Rao", 3, "Mary"], "n": 1}));
        assert_eq!(
            v.texts("with"),
            vec!["Dr Rao".to_owned(), "Mary".to_owned()]
        );
        assert!(v.texts("n").is_empty());
        assert!(v.texts("missing").is_empty());
        assert!(Value::Null.texts("with").is_empty());
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": 1, "b": [true, null, "x"], "c": 2.5});
        assert_eq!(Value::from_json(&j).to_json(), j);
    }
}
