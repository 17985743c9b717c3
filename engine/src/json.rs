//! [`Json`]: an arbitrary JSON value carried inside binary events as compact
//! JSON text, so inputs, outputs and metadata of any shape survive the
//! bincode codec (which cannot encode `serde_json::Value` directly).

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
        // The JSON text is written to a buffer kept per thread (events are
        // encoded by the thousand), falling back to a fresh one if it is busy.
        thread_local! {
            static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        TEXT.with(|text| match text.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                serde_json::to_writer(&mut *buf, &self.0).map_err(serde::ser::Error::custom)?;
                let out = std::str::from_utf8(&buf).map_err(serde::ser::Error::custom).and_then(|t| s.serialize_str(t));
                if buf.capacity() > 1 << 20 {
                    *buf = Vec::new();
                }
                out
            }
            Err(_) => {
                let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
        })
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map(Json).map_err(serde::de::Error::custom)
    }
}
