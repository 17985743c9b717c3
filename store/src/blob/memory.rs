//! Blobs in a map: the ephemeral mode's storage and a model for tests.

use std::collections::HashMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::{check_key, BlobError, BlobStore, ByteStream};

/// Blobs kept in memory (gone when the process ends).
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    blobs: Mutex<HashMap<String, Bytes>>,
}

impl MemoryBlobs {
    pub fn new() -> Self {
        Self::default()
    }
}

impl BlobStore for MemoryBlobs {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn put<'a>(&'a self, key: &'a str, mut body: ByteStream<'a>, limit: u64) -> BoxFuture<'a, Result<u64, BlobError>> {
        Box::pin(async move {
            check_key(key)?;
            let mut buf = BytesMut::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                if (buf.len() + chunk.len()) as u64 > limit {
                    return Err(BlobError::TooLarge { limit });
                }
                buf.extend_from_slice(&chunk);
            }
            let size = buf.len() as u64;
            self.blobs.lock().insert(key.to_string(), buf.freeze());
            Ok(size)
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<ByteStream<'static>, BlobError>> {
        Box::pin(async move {
            check_key(key)?;
            let blob = self.blobs.lock().get(key).cloned().ok_or_else(|| BlobError::NotFound(key.to_string()))?;
            let len = blob.len() as u64;
            let (start, end) = match range {
                Some(r) => (r.start.min(len), r.end.min(len)),
                None => (0, len),
            };
            let part = blob.slice(start as usize..end.max(start) as usize);
            Ok(futures_util::stream::iter([Ok(part)]).boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            check_key(key)?;
            self.blobs.lock().remove(key);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(&super::MemoryBlobs::new()).await;
    }
}
