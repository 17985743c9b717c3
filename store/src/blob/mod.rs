//! Blob storage: the bytes of uploaded files, by key, beside the log.
//!
//! The log records *that* something was stored (an event naming its key);
//! the bytes themselves live in a [`BlobStore`]. Like the log, this module
//! knows nothing of what the bytes are.
//!
//! Backends:
//! - [`local`]: a directory (by default `files/` in the data directory);
//! - [`memory`]: a map, for the ephemeral mode and tests;
//! - [`s3`]: any S3-compatible service, through the `object_store` crate.
//!
//! Promises every backend keeps (checked by [`conformance`]):
//! - `put` consumes a stream and never holds the whole body in memory (the
//!   memory backend aside); it is all-or-nothing: a failed, cut or
//!   oversized body leaves nothing readable under the key;
//! - once `put` returned `Ok`, the bytes are durable and stay readable until
//!   `delete`;
//! - `get` yields exactly the requested byte range.
//!
//! Keys are chosen by the caller (ids, never client file names) and limited
//! to `[A-Za-z0-9_.-]`, not starting with a dot, so no backend can be led
//! outside its root.

pub mod local;
pub mod memory;
pub mod s3;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

/// A stream of chunks, as bodies arrive and blobs are read.
pub type ByteStream<'a> = BoxStream<'a, io::Result<Bytes>>;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under this key.
    #[error("no blob under key {0}")]
    NotFound(String),
    /// The body was longer than the limit given to `put`.
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body stream failed (the client went away, a malformed upload).
    #[error("reading the body failed: {0}")]
    Body(String),
    /// The key is not a valid key.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// The backend failed (disk, network, the S3 service).
    #[error("blob storage failed: {0}")]
    Backend(String),
}

/// Where uploaded bytes live.
pub trait BlobStore: Send + Sync + 'static {
    /// The backend's name (`local`, `memory`, `s3`), for logs.
    fn kind(&self) -> &'static str;

    /// Stores `body` under `key`, failing with [`BlobError::TooLarge`] as
    /// soon as more than `limit` bytes arrived. Returns the size stored.
    fn put<'a>(&'a self, key: &'a str, body: ByteStream<'a>, limit: u64) -> BoxFuture<'a, Result<u64, BlobError>>;

    /// Reads a blob, or the byte range `range` of it (the caller checks the
    /// range against the size it recorded).
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<ByteStream<'static>, BlobError>>;

    /// Removes a blob; removing a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
}

/// Checks a key: non-empty, at most 200 characters of `[A-Za-z0-9_.-]`, no leading dot.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_string()))
    }
}

/// Reads a whole blob into memory (for small blobs: images sent to a model,
/// documents to extract), failing once it exceeds `limit` bytes.
pub async fn read_all(store: &dyn BlobStore, key: &str, limit: u64) -> Result<Vec<u8>, BlobError> {
    use futures_util::StreamExt;
    let mut stream = store.get(key, None).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BlobError::Backend(e.to_string()))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(BlobError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "0b7c1e2f-8d4a-4e1b-9f3a-2c5d6e7f8a9b", "x_y.bin"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a\\b", "a b", &"x".repeat(201)] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
