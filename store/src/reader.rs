//! Reading the log back: record decoding, stream and global scans, and the
//! projection catch-up / rebuild loop. Backend-agnostic.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::backend::{Backend, Op};
use crate::codec;
use crate::error::{Error, Location, Result};
use crate::keys;
use crate::kv::{projection_error, KvTxn, Overlay, Projector};
use crate::record::{Position, Record, Seq, StreamId};
use crate::writer::Progress;

/// How a record sits in the `L` keyspace (the position is the key).
#[derive(Serialize)]
struct StoredRecordRef<'a> {
    stream: &'a str,
    seq: u64,
    at: i64,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

#[derive(Deserialize)]
struct StoredRecord {
    stream: String,
    seq: u64,
    at: i64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

pub(crate) fn encode_record(r: &Record) -> Result<Vec<u8>> {
    Ok(codec::encode(&StoredRecordRef {
        stream: r.stream.as_str(),
        seq: r.seq,
        at: r.at,
        payload: &r.payload,
    })?)
}

/// Decodes the record stored at `position`; a bad record is a typed error
/// naming where it is, never a panic.
pub(crate) fn decode_record(position: Position, bytes: &[u8]) -> Result<Record> {
    let corrupt = |reason: String, stream: Option<String>| Error::Corrupt {
        at: Location {
            stream,
            position: Some(position),
        },
        reason,
    };
    let stored: StoredRecord = codec::decode(bytes).map_err(|e| corrupt(e.to_string(), None))?;
    let stream = StreamId::new(stored.stream.clone())
        .map_err(|e| corrupt(e.to_string(), Some(stored.stream.clone())))?;
    Ok(Record {
        stream,
        seq: stored.seq,
        position,
        at: stored.at,
        payload: stored.payload,
    })
}

/// The last sequence number of `stream` (0 when it has none).
pub(crate) fn stream_head(backend: &dyn Backend, stream: &StreamId) -> Result<Seq> {
    let prefix = keys::stream_prefix(stream.as_str());
    let end = keys::prefix_end(&prefix);
    match backend.scan(&prefix, end.as_deref(), 1, true)?.pop() {
        Some((k, _)) => codec::key_u64(&k[prefix.len()..]).ok_or_else(|| Error::Corrupt {
            at: Location {
                stream: Some(stream.to_string()),
                position: None,
            },
            reason: "malformed stream index key".into(),
        }),
        None => Ok(0),
    }
}

/// The last global position (0 when the log is empty).
pub(crate) fn last_position(backend: &dyn Backend) -> Result<Position> {
    match backend
        .scan(&[keys::LOG], Some(&[keys::LOG + 1]), 1, true)?
        .pop()
    {
        Some((k, _)) => codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
            at: Location {
                stream: None,
                position: None,
            },
            reason: "malformed log key".into(),
        }),
        None => Ok(0),
    }
}

/// Up to `limit` records of `stream` with `seq >= from`.
pub(crate) fn read_stream(
    backend: &dyn Backend,
    stream: &StreamId,
    from: Seq,
    limit: usize,
) -> Result<Vec<Record>> {
    let prefix = keys::stream_prefix(stream.as_str());
    let start = keys::stream(stream.as_str(), from);
    let end = keys::prefix_end(&prefix);
    let index = backend.scan(&start, end.as_deref(), limit, false)?;
    let mut out = Vec::with_capacity(index.len());
    for (k, v) in index {
        let at = |reason: &str| Error::Corrupt {
            at: Location {
                stream: Some(stream.to_string()),
                position: None,
            },
            reason: reason.into(),
        };
        let seq =
            codec::key_u64(&k[prefix.len()..]).ok_or_else(|| at("malformed stream index key"))?;
        let position = codec::key_u64(&v).ok_or_else(|| at("malformed stream index value"))?;
        let bytes = backend
            .get(&keys::log(position))?
            .ok_or_else(|| Error::Corrupt {
                at: Location {
                    stream: Some(stream.to_string()),
                    position: Some(position),
                },
                reason: format!("seq {seq} points at a missing record"),
            })?;
        let record = decode_record(position, &bytes)?;
        if record.stream != *stream || record.seq != seq {
            return Err(Error::Corrupt {
                at: Location {
                    stream: Some(stream.to_string()),
                    position: Some(position),
                },
                reason: format!(
                    "index says seq {seq}, record says {} seq {}",
                    record.stream, record.seq
                ),
            });
        }
        out.push(record);
    }
    Ok(out)
}

/// Up to `limit` records of the global log with `position >= from`.
pub(crate) fn read_all(backend: &dyn Backend, from: Position, limit: usize) -> Result<Vec<Record>> {
    let start = keys::log(from);
    let pairs = backend.scan(&start, Some(&[keys::LOG + 1]), limit, false)?;
    pairs
        .into_iter()
        .map(|(k, v)| {
            let position = codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
                at: Location {
                    stream: None,
                    position: None,
                },
                reason: "malformed log key".into(),
            })?;
            decode_record(position, &v)
        })
        .collect()
}

/// The position a projection has applied up to.
pub(crate) fn projection_position(backend: &dyn Backend, name: &str) -> Result<Position> {
    Ok(backend
        .get(&keys::projection(name))?
        .and_then(|v| codec::key_u64(&v))
        .unwrap_or(0))
}

/// Key marking an interrupted rebuild: present means read models are not trustworthy.
const REBUILDING: &str = "!rebuilding";

/// Records per atomic batch during catch-up and rebuild.
const CHUNK: usize = 8192;

/// Brings every projection up to the end of the log (run on open).
pub(crate) fn catch_up(
    backend: &dyn Backend,
    projectors: &Arc<Vec<Arc<dyn Projector>>>,
) -> Result<u64> {
    if projectors.is_empty() {
        return Ok(0);
    }
    if backend.get(&keys::projection(REBUILDING))?.is_some() {
        tracing::warn!("an earlier rebuild was interrupted; rebuilding read models");
        return rebuild(backend, projectors, Box::new(|_, _| {}));
    }
    let mut positions = Vec::with_capacity(projectors.len());
    for p in projectors.iter() {
        positions.push(projection_position(backend, p.name())?);
    }
    let from = positions.iter().copied().min().unwrap_or(0);
    apply_from(backend, projectors, &mut positions, from, &mut |_, _| {})
}

/// Clears every read model and re-applies the whole log. Returns the records applied.
pub(crate) fn rebuild(
    backend: &dyn Backend,
    projectors: &Arc<Vec<Arc<dyn Projector>>>,
    mut progress: Progress,
) -> Result<u64> {
    backend.commit(vec![Op::Put(keys::projection(REBUILDING), vec![1])])?;
    // Clear projection cursors and read-model trees, in chunks.
    for prefix in [vec![keys::KV], vec![keys::PROJECTION]] {
        let end = keys::prefix_end(&prefix);
        loop {
            let pairs = backend.scan(&prefix, end.as_deref(), CHUNK, false)?;
            let ops: Vec<Op> = pairs
                .into_iter()
                .filter(|(k, _)| *k != keys::projection(REBUILDING))
                .map(|(k, _)| Op::Delete(k))
                .collect();
            if ops.is_empty() {
                break;
            }
            backend.commit(ops)?;
        }
    }
    let mut positions = vec![0; projectors.len()];
    let n = apply_from(backend, projectors, &mut positions, 0, &mut progress)?;
    backend.commit(vec![Op::Delete(keys::projection(REBUILDING))])?;
    Ok(n)
}

fn apply_from(
    backend: &dyn Backend,
    projectors: &Arc<Vec<Arc<dyn Projector>>>,
    positions: &mut [Position],
    from: Position,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let total = last_position(backend)?;
    let mut next = from + 1;
    let mut applied = 0u64;
    progress(0, total.saturating_sub(from));
    loop {
        let records = read_all(backend, next, CHUNK)?;
        let Some(last) = records.last().map(|r| r.position) else {
            break;
        };
        let empty = Overlay::new();
        let mut txn = KvTxn::new(backend, &empty);
        for record in &records {
            for (p, pos) in projectors.iter().zip(positions.iter()) {
                if record.position > *pos {
                    p.apply(record, &mut txn)
                        .map_err(|e| projection_error(p.name(), record, e))?;
                }
            }
        }
        let mut ops: Vec<Op> = txn
            .into_writes()
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => Op::Put(k, v),
                None => Op::Delete(k),
            })
            .collect();
        for (p, pos) in projectors.iter().zip(positions.iter_mut()) {
            *pos = (*pos).max(last);
            ops.push(Op::Put(
                keys::projection(p.name()),
                codec::u64_key(*pos).to_vec(),
            ));
        }
        backend.commit(ops)?;
        applied += records.len() as u64;
        progress(applied, total.saturating_sub(from));
        next = last + 1;
    }
    Ok(applied)
}
