//! The unit of the log: a [`Record`] is an opaque payload placed in a stream.
//!
//! ```text
//!  global log  position:  1    2    3    4    5    6
//!                         │    │    │    │    │    │
//!  run/a        seq:      1    2         3
//!  app/x        seq:                1              2
//!  run/b        seq:                          1
//! ```
//!
//! Every record has a per-stream sequence number (from 1, no gaps) and a
//! global position (from 1, no gaps, the order of commit). Both are assigned
//! by the single writer.

use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Per-stream sequence number, from 1. `0` means "before the first record".
pub type Seq = u64;
/// Global log position, from 1. `0` means "before the first record".
pub type Position = u64;

/// Longest stream name accepted.
pub const MAX_STREAM_LEN: usize = 200;

/// The name of a stream, such as `run/3f0c…` or `app/9a1b…`.
///
/// Names are 1 to 200 printable ASCII bytes (no spaces, no control bytes), so
/// they can sit inside keys followed by a `0x00` separator.
///
/// Shared, not copied: every record of a stream, its tail and its index
/// entries hold the same name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates and wraps a stream name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_STREAM_LEN {
            return Err(Error::Invalid(format!("stream name must be 1..={MAX_STREAM_LEN} bytes")));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Invalid(format!("stream name {name:?} has non-printable bytes")));
        }
        Ok(StreamId(name.into()))
    }

    /// `kind/id`, e.g. `StreamId::of("run", uuid)`.
    pub fn of(kind: &str, id: impl fmt::Display) -> Result<Self> {
        Self::new(format!("{kind}/{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `/` (`run` for `run/…`).
    pub fn kind(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }
}

/// Serialised as the bare name, as a newtype of `String` would be.
impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_newtype_struct("StreamId", &*self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "StreamId")]
        struct Name(String);
        Name::deserialize(d).map(|n| StreamId(n.0.into()))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub stream: StreamId,
    pub seq: Seq,
    pub position: Position,
    /// Commit time, Unix microseconds.
    pub at: i64,
    pub payload: Vec<u8>,
}

/// What the appender expects the stream's current head to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last sequence number must be exactly this.
    At(Seq),
}

/// A batch of payloads to append to one stream, atomically.
#[derive(Clone)]
pub struct Append {
    pub stream: StreamId,
    pub expected: Expected,
    pub payloads: Vec<Vec<u8>>,
    /// Acknowledge only after an fsync covers the batch.
    pub durable: bool,
    /// Optionally, the value each payload encodes, already decoded by the
    /// appender: projectors get it from [`crate::KvTxn::memo`] instead of
    /// decoding the payload again (empty, or one per payload).
    pub decoded: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Append {
    /// A non-durable append with no concurrency check.
    pub fn new(stream: StreamId, payloads: Vec<Vec<u8>>) -> Self {
        Append { stream, expected: Expected::Any, payloads, durable: false, decoded: Vec::new() }
    }

    /// Hands the decoded form of every payload to the projectors.
    pub fn with_decoded(mut self, decoded: Vec<Arc<dyn Any + Send + Sync>>) -> Self {
        self.decoded = decoded;
        self
    }

    /// Marks the append durable.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Sets the expected head.
    pub fn expect(mut self, expected: Expected) -> Self {
        self.expected = expected;
        self
    }
}

impl fmt::Debug for Append {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Append")
            .field("stream", &self.stream)
            .field("expected", &self.expected)
            .field("payloads", &self.payloads.len())
            .field("durable", &self.durable)
            .finish()
    }
}

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub first_position: Position,
    pub last_position: Position,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(StreamId::new("run/abc").is_ok());
        assert!(StreamId::new("").is_err());
        assert!(StreamId::new("a b").is_err());
        assert!(StreamId::new("a\0b").is_err());
        assert!(StreamId::new("x".repeat(201)).is_err());
        assert_eq!(StreamId::new("run/abc").unwrap().kind(), "run");
    }

    #[test]
    fn stream_ids_encode_as_their_name() {
        let id = StreamId::new("run/abc").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"run/abc\"");
        let bytes = crate::codec::encode(&id).unwrap();
        assert_eq!(bytes, crate::codec::encode(&"run/abc".to_string()).unwrap());
        assert_eq!(crate::codec::decode::<StreamId>(&bytes).unwrap(), id);
        assert_eq!(serde_json::from_str::<StreamId>("\"run/abc\"").unwrap(), id);
    }
}
