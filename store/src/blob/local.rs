//! Blobs as files in a directory: `<root>/<first two characters of the key>/<key>`.
//!
//! A `put` writes `<key>.<n>.part` beside the final name, fsyncs it, renames
//! it into place and fsyncs the directory, so a crash leaves either the
//! whole blob or at most a stray `.part` file, never a partial blob.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{check_key, BlobError, BlobStore, ByteStream};

/// Size of the chunks `get` yields.
const CHUNK: usize = 64 * 1024;

/// Blobs under a root directory.
#[derive(Debug)]
pub struct LocalBlobs {
    root: PathBuf,
    /// Distinguishes concurrent temporary files of one key.
    counter: AtomicU64,
}

fn io_error(e: io::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

impl LocalBlobs {
    /// Blobs under `root` (created when missing).
    pub fn open(root: &Path) -> Result<LocalBlobs, BlobError> {
        std::fs::create_dir_all(root).map_err(io_error)?;
        Ok(LocalBlobs { root: root.to_path_buf(), counter: AtomicU64::new(0) })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        let fan: String = key.chars().take(2).collect();
        Ok(self.root.join(fan).join(key))
    }

    async fn write(&self, path: &Path, tmp: &Path, mut body: ByteStream<'_>, limit: u64) -> Result<u64, BlobError> {
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        let mut file = tokio::fs::File::create(tmp).await.map_err(io_error)?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        tokio::fs::rename(tmp, path).await.map_err(io_error)?;
        // The rename itself must survive a crash.
        if let Ok(d) = tokio::fs::File::open(dir).await {
            d.sync_all().await.map_err(io_error)?;
        }
        Ok(size)
    }
}

impl BlobStore for LocalBlobs {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn put<'a>(&'a self, key: &'a str, body: ByteStream<'a>, limit: u64) -> BoxFuture<'a, Result<u64, BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let tmp = path.with_file_name(format!("{key}.{}-{n}.part", std::process::id()));
            let result = self.write(&path, &tmp, body, limit).await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            result
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<ByteStream<'static>, BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound(key.to_string())),
                Err(e) => return Err(io_error(e)),
            };
            let remaining = match range {
                Some(r) => {
                    file.seek(SeekFrom::Start(r.start)).await.map_err(io_error)?;
                    r.end.saturating_sub(r.start)
                }
                None => u64::MAX,
            };
            let stream = futures_util::stream::try_unfold((file, remaining), |(mut file, remaining)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let want = remaining.min(CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Bytes::from(buf), (file, remaining - n as u64))))
            });
            Ok(stream.boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(&dir.path().join("files")).unwrap();
        super::super::conformance::run(&blobs).await;
        // Failed puts leave no temporary file behind.
        let mut stray = Vec::new();
        for fan in std::fs::read_dir(dir.path().join("files")).unwrap() {
            for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                let name = f.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".part") {
                    stray.push(name);
                }
            }
        }
        assert!(stray.is_empty(), "{stray:?}");
    }
}
