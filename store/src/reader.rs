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

/// How a segment sits in the `L` keyspace (its first position is the key).
#[derive(Serialize)]
struct SegmentRef<'a> {
    stream: &'a str,
    first_seq: u64,
    at: i64,
    payloads: Vec<&'a serde_bytes::Bytes>,
}

#[derive(Deserialize)]
struct StoredSegment {
    stream: String,
    first_seq: u64,
    at: i64,
    payloads: Vec<serde_bytes::ByteBuf>,
}

/// Encodes consecutive records of one stream (consecutive seqs and positions) as one segment.
pub(crate) fn encode_segment(records: &[Record]) -> Result<Vec<u8>> {
    let first = records.first().ok_or_else(|| Error::Invalid("empty segment".into()))?;
    Ok(codec::encode(&SegmentRef {
        stream: first.stream.as_str(),
        first_seq: first.seq,
        at: first.at,
        payloads: records.iter().map(|r| serde_bytes::Bytes::new(&r.payload)).collect(),
    })?)
}

/// The value of a stream-index entry.
pub(crate) fn index_value(first_position: Position, count: u32) -> Vec<u8> {
    let mut v = codec::u64_key(first_position).to_vec();
    v.extend_from_slice(&count.to_be_bytes());
    v
}

fn parse_index_value(v: &[u8]) -> Option<(Position, u64)> {
    if v.len() != 12 {
        return None;
    }
    let pos = codec::key_u64(&v[..8])?;
    let count = u32::from_be_bytes(v[8..].try_into().ok()?) as u64;
    Some((pos, count))
}

/// Decodes the segment stored at `position`; a bad segment is a typed error
/// naming where it is, never a panic.
pub(crate) fn decode_segment(position: Position, bytes: &[u8]) -> Result<Vec<Record>> {
    let corrupt = |reason: String, stream: Option<String>| Error::Corrupt {
        at: Location { stream, position: Some(position) },
        reason,
    };
    let seg: StoredSegment = codec::decode(bytes).map_err(|e| corrupt(e.to_string(), None))?;
    let stream = StreamId::new(seg.stream.clone()).map_err(|e| corrupt(e.to_string(), Some(seg.stream.clone())))?;
    if seg.payloads.is_empty() || seg.first_seq == 0 {
        return Err(corrupt("empty segment".into(), Some(seg.stream)));
    }
    Ok(seg
        .payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| Record {
            stream: stream.clone(),
            seq: seg.first_seq + i as u64,
            position: position + i as u64,
            at: seg.at,
            payload: p.into_vec(),
        })
        .collect())
}

fn corrupt_index(stream: &StreamId) -> Error {
    Error::Corrupt {
        at: Location { stream: Some(stream.to_string()), position: None },
        reason: "malformed stream index entry".into(),
    }
}

/// The last sequence number of `stream` (0 when it has none).
pub(crate) fn stream_head(backend: &dyn Backend, stream: &StreamId) -> Result<Seq> {
    let prefix = keys::stream_prefix(stream.as_str());
    let end = keys::prefix_end(&prefix);
    // New streams are the common case: a forward probe is much cheaper than a reverse scan.
    if backend.scan(&prefix, end.as_deref(), 1, false)?.is_empty() {
        return Ok(0);
    }
    match backend.scan(&prefix, end.as_deref(), 1, true)?.pop() {
        Some((k, v)) => {
            let first = codec::key_u64(&k[prefix.len()..]).ok_or_else(|| corrupt_index(stream))?;
            let (_, count) = parse_index_value(&v).ok_or_else(|| corrupt_index(stream))?;
            Ok(first + count - 1)
        }
        None => Ok(0),
    }
}

/// The segment with the greatest first position `<= position`, if any.
fn segment_at_or_before(backend: &dyn Backend, position: Position) -> Result<Option<Vec<Record>>> {
    let end = keys::log(position.saturating_add(1));
    match backend.scan(&[keys::LOG], Some(&end), 1, true)?.pop() {
        Some((k, v)) => {
            let first = codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
                at: Location { stream: None, position: None },
                reason: "malformed log key".into(),
            })?;
            Ok(Some(decode_segment(first, &v)?))
        }
        None => Ok(None),
    }
}

/// The last global position (0 when the log is empty).
pub(crate) fn last_position(backend: &dyn Backend) -> Result<Position> {
    Ok(segment_at_or_before(backend, u64::MAX - 1)?.and_then(|s| s.last().map(|r| r.position)).unwrap_or(0))
}

/// Index entries fetched per scan while reading.
const INDEX_PAGE: usize = 256;

/// Up to `limit` records of `stream` with `seq >= from`.
pub(crate) fn read_stream(backend: &dyn Backend, stream: &StreamId, from: Seq, limit: usize) -> Result<Vec<Record>> {
    let prefix = keys::stream_prefix(stream.as_str());
    let end = keys::prefix_end(&prefix);
    // The segment holding `from` starts at or before it.
    let upto = keys::stream(stream.as_str(), from.saturating_add(1));
    let mut start = match backend.scan(&prefix, Some(&upto), 1, true)?.pop() {
        Some((k, _)) => k,
        None => keys::stream(stream.as_str(), from),
    };
    let mut out = Vec::new();
    while out.len() < limit {
        let entries = backend.scan(&start, end.as_deref(), INDEX_PAGE, false)?;
        let Some(last) = entries.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        let full_page = entries.len() == INDEX_PAGE;
        for (k, v) in entries {
            let first_seq = codec::key_u64(&k[prefix.len()..]).ok_or_else(|| corrupt_index(stream))?;
            let (position, count) = parse_index_value(&v).ok_or_else(|| corrupt_index(stream))?;
            if first_seq + count <= from {
                continue;
            }
            let bytes = backend.get(&keys::log(position))?.ok_or_else(|| Error::Corrupt {
                at: Location { stream: Some(stream.to_string()), position: Some(position) },
                reason: format!("seq {first_seq} points at a missing segment"),
            })?;
            let records = decode_segment(position, &bytes)?;
            if records.len() as u64 != count || records[0].stream != *stream || records[0].seq != first_seq {
                return Err(Error::Corrupt {
                    at: Location { stream: Some(stream.to_string()), position: Some(position) },
                    reason: format!("index says seq {first_seq} x{count}, segment disagrees"),
                });
            }
            for r in records {
                if r.seq >= from && out.len() < limit {
                    out.push(r);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        if !full_page {
            break;
        }
        start = next;
    }
    Ok(out)
}

/// Up to `limit` records of the global log with `position >= from`.
pub(crate) fn read_all(backend: &dyn Backend, from: Position, limit: usize) -> Result<Vec<Record>> {
    let mut start = match backend.scan(&[keys::LOG], Some(&keys::log(from.saturating_add(1))), 1, true)?.pop() {
        Some((k, _)) => k,
        None => keys::log(from),
    };
    let mut out = Vec::new();
    while out.len() < limit {
        let pairs = backend.scan(&start, Some(&[keys::LOG + 1]), INDEX_PAGE.min(limit.max(1)), false)?;
        let Some(last) = pairs.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        let full_page = pairs.len() == INDEX_PAGE.min(limit.max(1));
        for (k, v) in pairs {
            let position = codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
                at: Location { stream: None, position: None },
                reason: "malformed log key".into(),
            })?;
            for r in decode_segment(position, &v)? {
                if r.position >= from && out.len() < limit {
                    out.push(r);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        if !full_page {
            break;
        }
        start = next;
    }
    Ok(out)
}

/// The position a projection has applied up to.
pub(crate) fn projection_position(backend: &dyn Backend, name: &str) -> Result<Position> {
    Ok(backend.get(&keys::projection(name))?.and_then(|v| codec::key_u64(&v)).unwrap_or(0))
}

/// Key marking an interrupted rebuild: present means read models are not trustworthy.
const REBUILDING: &str = "!rebuilding";

/// Records per atomic batch during catch-up and rebuild.
const CHUNK: usize = 8192;

/// Brings every projection up to the end of the log (run on open).
pub(crate) fn catch_up(backend: &dyn Backend, projectors: &Arc<Vec<Arc<dyn Projector>>>) -> Result<u64> {
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
                    p.apply(record, &mut txn).map_err(|e| projection_error(p.name(), record, e))?;
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
            ops.push(Op::Put(keys::projection(p.name()), codec::u64_key(*pos).to_vec()));
        }
        backend.commit(ops)?;
        applied += records.len() as u64;
        progress(applied, total.saturating_sub(from));
        next = last + 1;
    }
    Ok(applied)
}
