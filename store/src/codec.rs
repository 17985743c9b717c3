//! All binary and JSON encoding of ferrify lives here, so the format can move
//! (for example to a reader of bincode's format) without touching callers.
//!
//! Every value stored by ferrify is wrapped in a versioned envelope:
//!
//! ```text
//! +---------+-------------+----------------------------+
//! | 0xFE    | version: u8 | bincode 2 (standard) body  |
//! +---------+-------------+----------------------------+
//! ```
//!
//! Decoding is bounded: the bincode configuration carries a byte limit, so a
//! corrupt length prefix can never make the decoder allocate more than
//! [`MAX_VALUE_BYTES`].
//!
//! Read models (which can always be rebuilt from the log) are stored as JSON,
//! through [`to_json`] and [`from_json`], so their shape can grow freely.

use std::cell::RefCell;
use std::thread::LocalKey;

use serde::{de::DeserializeOwned, Serialize};

/// First byte of every envelope.
const MAGIC: u8 = 0xFE;
/// Current envelope version. Older versions stay decodable forever.
pub const VERSION: u8 = 1;
/// Upper bound on what one decoded value may allocate.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_VALUE_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_VALUE_BYTES>()
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("not a ferrify envelope (first byte {0:#04x})")]
    BadMagic(u8),
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    #[error("decode: {0}")]
    Decode(String),
    #[error("encode: {0}")]
    Encode(String),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Encodes `value` in the current envelope.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    // The result is allocated once at its size instead of grown step by step.
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    with_scratch(&SCRATCH, |buf| encode_into(value, buf).map(|()| buf.to_vec()))
}

/// Runs `f` on the empty buffer `key` keeps for this thread (a fresh one when
/// it is in use further up the stack), then drops the buffer's memory if it
/// grew past 1 MiB. For hot encoders that would otherwise allocate and grow
/// a buffer per value.
pub fn with_scratch<R>(key: &'static LocalKey<RefCell<Vec<u8>>>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    key.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = f(&mut buf);
            if buf.capacity() > MAX_SCRATCH {
                *buf = Vec::new();
            }
            out
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Largest scratch buffer kept between uses.
const MAX_SCRATCH: usize = 1 << 20;

fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.push(MAGIC);
    out.push(VERSION);
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(())
}

/// The version and body of an envelope.
fn open_envelope(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let (&magic, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if magic != MAGIC {
        return Err(CodecError::BadMagic(magic));
    }
    let (&version, body) = rest.split_first().ok_or(CodecError::Empty)?;
    Ok((version, body))
}

/// A whole body was consumed, or the value is refused.
fn whole<T>((value, used): (T, usize), body: &[u8]) -> Result<T, CodecError> {
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Decodes a value written by [`encode`] (any supported version).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match open_envelope(bytes)? {
        (1, body) => whole(
            bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Decode(e.to_string()))?,
            body,
        ),
        (v, _) => Err(CodecError::UnknownVersion(v)),
    }
}

/// Decodes a value written by [`encode`], borrowing strings and byte slices
/// from `bytes` instead of allocating them.
pub fn decode_borrowed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    match open_envelope(bytes)? {
        (1, body) => whole(
            bincode::serde::borrow_decode_from_slice(body, config()).map_err(|e| CodecError::Decode(e.to_string()))?,
            body,
        ),
        (v, _) => Err(CodecError::UnknownVersion(v)),
    }
}

/// Encodes a read-model value as JSON.
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes a read-model value compactly: an [`encode`] envelope (bincode,
/// no field names), for the rows written at every turn. The value's type
/// must decode from bincode (no `serde_json::Value` fields unless they are
/// carried as text, no skipped fields).
pub fn to_row<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode(value)
}

/// Decodes a read-model value written by [`to_json`] or [`to_row`] (an
/// envelope starts with a byte no JSON text starts with).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.first() == Some(&MAGIC) {
        return decode(bytes);
    }
    serde_json::from_slice(bytes).map_err(|e| CodecError::Decode(e.to_string()))
}

/// Big-endian `u64`, the key encoding of positions and sequence numbers (sorts numerically).
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a big-endian `u64` key; `None` when the slice is not 8 bytes.
pub fn key_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        list: Vec<u32>,
    }

    /// A value whose serialisation encodes another value (the scratch
    /// buffer is busy then).
    struct Nested(Sample);

    impl serde::Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let inner = encode(&self.0).map_err(serde::ser::Error::custom)?;
            s.serialize_bytes(&inner)
        }
    }

    #[test]
    fn read_model_values_read_back_from_either_form() {
        let v = Sample { name: "row".into(), bytes: vec![1, 2], list: vec![3, 4, 5] };
        let (json, row) = (to_json(&v).unwrap(), to_row(&v).unwrap());
        assert_eq!(json[0], b'{');
        assert!(row.len() < json.len(), "{} bytes against {}", row.len(), json.len());
        assert_eq!(from_json::<Sample>(&json).unwrap(), v);
        assert_eq!(from_json::<Sample>(&row).unwrap(), v);
        assert!(from_json::<Sample>(&row[..row.len() - 1]).is_err(), "a cut row is an error");
    }

    #[test]
    fn nested_and_large_encodings_round_trip() {
        let small = Sample { name: "a".into(), bytes: vec![1, 2, 3], list: vec![7] };
        let outer = encode(&Nested(Sample { name: "n".into(), bytes: vec![9], list: vec![] })).unwrap();
        let inner: serde_bytes::ByteBuf = decode(&outer).unwrap();
        let back: Sample = decode(&inner).unwrap();
        assert_eq!(back, Sample { name: "n".into(), bytes: vec![9], list: vec![] });
        // Past the scratch limit, then small again: each result is exactly its value.
        let big = Sample { name: "b".into(), bytes: vec![5; 3 << 20], list: vec![1, 2] };
        let encoded = encode(&big).unwrap();
        assert_eq!(decode::<Sample>(&encoded).unwrap(), big);
        let encoded = encode(&small).unwrap();
        assert!(encoded.len() < 64, "{} bytes", encoded.len());
        assert_eq!(decode::<Sample>(&encoded).unwrap(), small);
    }

    #[test]
    fn roundtrip() {
        let s = Sample { name: "a".into(), bytes: vec![1, 2, 3], list: vec![7, 8] };
        let enc = encode(&s).unwrap();
        assert_eq!(&enc[..2], &[MAGIC, VERSION]);
        assert_eq!(decode::<Sample>(&enc).unwrap(), s);
    }

    #[test]
    fn rejects_foreign_and_future_bytes() {
        assert_eq!(decode::<Sample>(&[]), Err(CodecError::Empty));
        assert_eq!(decode::<Sample>(&[0x00, 1]), Err(CodecError::BadMagic(0)));
        assert_eq!(decode::<Sample>(&[MAGIC, 9, 0]), Err(CodecError::UnknownVersion(9)));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A string claiming u64::MAX bytes: varint marker 253 followed by 8 bytes.
        let mut bytes = vec![MAGIC, VERSION, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::Decode(_))));
        let mut bytes = vec![MAGIC, VERSION, 0, 0, 253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::Decode(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes);
            let mut with_header = vec![MAGIC, VERSION];
            with_header.extend_from_slice(&bytes);
            let _ = decode::<Sample>(&with_header);
        }
    }
}
