//! [`Json`]: an arbitrary JSON value carried inside binary events as compact
//! JSON text, so inputs, outputs and metadata of any shape survive the
//! bincode codec (which cannot encode `serde_json::Value` directly).

use std::cell::RefCell;

use ferrify_store::codec::with_scratch;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A JSON value stored as its compact text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Json(pub Value);

impl Json {
    pub fn null() -> Self {
        Json(Value::Null)
    }

    pub fn object() -> Self {
        Json(Value::Object(Default::default()))
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Self {
        Json(v)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_as_text(&self.0, s)
    }
}

/// `value` as its compact JSON text.
fn serialize_as_text<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    // Events are encoded by the thousand: the text goes to a buffer kept per thread.
    thread_local! {
        static TEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    with_scratch(&TEXT, |buf| {
        serde_json::to_writer(&mut *buf, value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(buf).map_err(serde::ser::Error::custom)?)
    })
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map(Json).map_err(serde::de::Error::custom)
    }
}

/// A `serde_json::Value` field of a read-model row: itself in JSON, its
/// compact text in binary forms (which cannot decode a `Value`), as [`Json`]
/// carries it in events. `#[serde(with = "crate::json::value_text")]`.
pub mod value_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            value.serialize(s)
        } else {
            super::serialize_as_text(value, s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d)
        } else {
            super::Json::deserialize(d).map(|j| j.0)
        }
    }
}
