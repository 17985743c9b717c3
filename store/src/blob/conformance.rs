//! The behaviour every [`BlobStore`] backend must show; each backend's
//! tests run [`run`] against it (the S3 one against a real S3-compatible
//! server, see `store/tests/s3.rs`).

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{BlobError, BlobStore, ByteStream};

fn chunks(parts: Vec<Vec<u8>>) -> ByteStream<'static> {
    futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
}

async fn read(store: &dyn BlobStore, key: &str, range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, BlobError> {
    let mut s = store.get(key, range).await?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(|e| BlobError::Backend(e.to_string()))?);
    }
    Ok(out)
}

/// Runs every check against `store`; keys are unique per call.
pub async fn run(store: &dyn BlobStore) {
    let tag = format!("{}-{}", std::process::id(), std::time::UNIX_EPOCH.elapsed().map(|d| d.as_nanos()).unwrap_or(0));
    let key = |name: &str| format!("conf-{tag}-{name}");

    // Round trip of a body in many chunks, larger than one S3 part.
    let big: Vec<u8> = (0..(6 * 1024 * 1024 + 123)).map(|i| (i % 251) as u8).collect();
    let parts: Vec<Vec<u8>> = big.chunks(64 * 1024 + 7).map(<[u8]>::to_vec).collect();
    let k = key("big");
    assert_eq!(store.put(&k, chunks(parts), big.len() as u64).await.unwrap(), big.len() as u64);
    assert_eq!(read(store, &k, None).await.unwrap(), big);
    // Ranges: the start, the middle, the end, one byte.
    for r in [0..10u64, 1000..70_000, (big.len() as u64 - 5)..big.len() as u64, 42..43] {
        let want = &big[r.start as usize..r.end as usize];
        assert_eq!(read(store, &k, Some(r.clone())).await.unwrap(), want, "range {r:?}");
    }

    // A small body, and an empty one.
    let small = key("small");
    assert_eq!(store.put(&small, chunks(vec![b"hello ".to_vec(), b"world".to_vec()]), 11).await.unwrap(), 11);
    assert_eq!(read(store, &small, None).await.unwrap(), b"hello world");
    let empty = key("empty");
    assert_eq!(store.put(&empty, chunks(vec![]), 10).await.unwrap(), 0);
    assert_eq!(read(store, &empty, None).await.unwrap(), b"");

    // Over the limit (in the first chunk, and after a part went up): nothing stays.
    let over = key("over");
    let e = store.put(&over, chunks(vec![vec![1; 11]]), 10).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { limit: 10 }), "{e:?}");
    assert!(matches!(read(store, &over, None).await, Err(BlobError::NotFound(_))));
    let over_big = key("over-big");
    let parts: Vec<Vec<u8>> = big.chunks(1024 * 1024).map(<[u8]>::to_vec).collect();
    let e = store.put(&over_big, chunks(parts), 6 * 1024 * 1024).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { .. }), "{e:?}");
    assert!(matches!(read(store, &over_big, None).await, Err(BlobError::NotFound(_))));

    // A body that fails midway: nothing stays.
    let cut = key("cut");
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "client went away")),
    ])
    .boxed();
    let e = store.put(&cut, failing, 100).await.unwrap_err();
    assert!(matches!(e, BlobError::Body(_)), "{e:?}");
    assert!(matches!(read(store, &cut, None).await, Err(BlobError::NotFound(_))));

    // Overwrite, delete, missing keys, bad keys.
    assert_eq!(store.put(&small, chunks(vec![b"again".to_vec()]), 10).await.unwrap(), 5);
    assert_eq!(read(store, &small, None).await.unwrap(), b"again");
    for k in [&k, &small, &empty] {
        store.delete(k).await.unwrap();
        assert!(matches!(read(store, k, None).await, Err(BlobError::NotFound(_))), "{k} deleted");
    }
    store.delete(&key("never")).await.unwrap();
    assert!(matches!(read(store, &key("never"), None).await, Err(BlobError::NotFound(_))));
    assert!(matches!(store.put("../escape", chunks(vec![]), 1).await, Err(BlobError::InvalidKey(_))));
    assert!(matches!(store.get("a/b", None).await, Err(BlobError::InvalidKey(_))));
}
