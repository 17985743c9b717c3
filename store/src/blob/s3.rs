//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, moto…),
//! through the `object_store` crate.
//!
//! A `put` buffers at most [`PART`] bytes: small bodies go up as one
//! request, larger ones as a multipart upload (at most two parts in flight)
//! that is aborted when the body fails or grows past the limit, so no object
//! appears under the key.

use std::ops::Range;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::{check_key, BlobError, BlobStore, ByteStream};

/// Size of the parts of a multipart upload (S3's minimum is 5 MiB).
const PART: usize = 5 * 1024 * 1024;

/// Where the bucket is and how to sign requests.
#[derive(Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// The service's URL (`http://127.0.0.1:9000`); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Keys are stored under this prefix (`ferrify/` …), empty for none.
    pub prefix: String,
    /// Address the bucket as `bucket.host` instead of `host/bucket`.
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials stay out of logs.
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Blobs in one bucket.
#[derive(Debug)]
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
        other => BlobError::Backend(other.to_string()),
    }
}

impl S3Blobs {
    /// A client for the bucket (no request is made until the first use).
    pub fn open(options: &S3Options) -> Result<S3Blobs, BlobError> {
        if options.bucket.trim().is_empty() {
            return Err(BlobError::Backend("the S3 bucket is not set".into()));
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(options.bucket.trim())
            .with_region(if options.region.is_empty() { "us-east-1" } else { &options.region })
            .with_virtual_hosted_style_request(options.virtual_hosted_style);
        if let Some(endpoint) = options.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
            b = b.with_endpoint(endpoint.trim()).with_allow_http(endpoint.trim().starts_with("http://"));
        }
        if let Some(k) = &options.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &options.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(t) = &options.session_token {
            b = b.with_token(t);
        }
        let store = b.build().map_err(backend)?;
        let prefix = options.prefix.trim_matches('/').to_string();
        Ok(S3Blobs { store: Arc::new(store), prefix })
    }

    fn path(&self, key: &str) -> Result<Path, BlobError> {
        check_key(key)?;
        let full = if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        Path::parse(full).map_err(|e| BlobError::InvalidKey(e.to_string()))
    }
}

impl BlobStore for S3Blobs {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(&'a self, key: &'a str, mut body: ByteStream<'a>, limit: u64) -> BoxFuture<'a, Result<u64, BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let mut writer = BufWriter::with_capacity(self.store.clone(), path, PART).with_max_concurrency(2);
            let mut size = 0u64;
            let mut failure = None;
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        failure = Some(BlobError::Body(e.to_string()));
                        break;
                    }
                };
                size += chunk.len() as u64;
                if size > limit {
                    failure = Some(BlobError::TooLarge { limit });
                    break;
                }
                if let Err(e) = writer.put(chunk).await {
                    failure = Some(backend(e));
                    break;
                }
            }
            if let Some(e) = failure {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!("aborting the upload of {key} failed: {abort}");
                }
                return Err(e);
            }
            writer.shutdown().await.map_err(|e| BlobError::Backend(e.to_string()))?;
            Ok(size)
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<ByteStream<'static>, BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            if let Some(r) = &range {
                if r.start >= r.end {
                    // S3 refuses empty ranges; the blob must still exist.
                    self.store.head(&path).await.map_err(backend)?;
                    return Ok(futures_util::stream::empty().boxed());
                }
            }
            let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
            let result = self.store.get_opts(&path, options).await.map_err(backend)?;
            Ok(result.into_stream().map(|r| r.map_err(std::io::Error::other)).boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(backend(e)),
            }
        })
    }
}
