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

/// One group commit's records as they sit under `L<first position>`: the
/// segments (runs of one stream) in position order, each with its payloads
/// kept as one encoded blob so a reader decodes only the segment it wants.
#[derive(Serialize)]
struct GroupRef<'a> {
    at: i64,
    segments: Vec<SegmentRef<'a>>,
}

#[derive(Serialize)]
struct SegmentRef<'a> {
    stream: &'a str,
    first_seq: u64,
    count: u32,
    #[serde(with = "serde_bytes")]
    payloads: &'a [u8],
}

#[derive(Deserialize)]
struct GroupView<'a> {
    at: i64,
    #[serde(borrow)]
    segments: Vec<SegmentView<'a>>,
}

#[derive(Deserialize)]
struct SegmentView<'a> {
    stream: &'a str,
    first_seq: u64,
    count: u32,
    #[serde(with = "serde_bytes")]
    payloads: &'a [u8],
}

/// Encodes the segments of one group commit (consecutive positions, the
/// first segment's first record at the group's first position).
pub(crate) fn encode_group(segments: &[Vec<Record>]) -> Result<Vec<u8>> {
    let mut blobs = Vec::with_capacity(segments.len());
    for records in segments {
        let payloads: Vec<&serde_bytes::Bytes> = records.iter().map(|r| serde_bytes::Bytes::new(&r.payload)).collect();
        blobs.push(codec::encode(&payloads)?);
    }
    let at = segments.first().and_then(|s| s.first()).map(|r| r.at).unwrap_or(0);
    let group = GroupRef {
        at,
        segments: segments
            .iter()
            .zip(&blobs)
            .filter_map(|(records, blob)| {
                let first = records.first()?;
                Some(SegmentRef {
                    stream: first.stream.as_str(),
                    first_seq: first.seq,
                    count: records.len() as u32,
                    payloads: blob,
                })
            })
            .collect(),
    };
    Ok(codec::encode(&group)?)
}

/// Where one segment of a stream sits: its first sequence number, the group
/// holding it (by first position), its index in that group, its record count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub first_seq: Seq,
    pub group: Position,
    pub segment: u32,
    pub count: u32,
}

impl IndexEntry {
    /// The sequence number after the segment's last record.
    pub fn end(&self) -> Seq {
        self.first_seq + self.count as u64
    }
}

/// The value of a stream-index entry: one or more segments with consecutive
/// sequence numbers, the first starting at the key's sequence number; 16
/// bytes each (group position, segment index, record count).
pub(crate) fn index_value(entries: &[IndexEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 * entries.len());
    for e in entries {
        v.extend_from_slice(&codec::u64_key(e.group));
        v.extend_from_slice(&e.segment.to_be_bytes());
        v.extend_from_slice(&e.count.to_be_bytes());
    }
    v
}

/// The write of `entries` (consecutive segments of `stream`) as one index key.
pub(crate) fn index_op(stream: &StreamId, entries: &[IndexEntry]) -> Option<Op> {
    let first = entries.first()?;
    Some(Op::Put(keys::stream(stream.as_str(), first.first_seq), index_value(entries)))
}

/// The entries of an index value whose key names `first_seq`.
fn parse_index_value(first_seq: Seq, v: &[u8]) -> Option<Vec<IndexEntry>> {
    if v.is_empty() || !v.len().is_multiple_of(16) || first_seq == 0 {
        return None;
    }
    let mut next = first_seq;
    let mut out = Vec::with_capacity(v.len() / 16);
    for chunk in v.chunks_exact(16) {
        let group = codec::key_u64(&chunk[..8])?;
        let segment = u32::from_be_bytes(chunk[8..12].try_into().ok()?);
        let count = u32::from_be_bytes(chunk[12..].try_into().ok()?);
        if count == 0 {
            return None;
        }
        let entry = IndexEntry { first_seq: next, group, segment, count };
        next = entry.end();
        out.push(entry);
    }
    Some(out)
}

fn corrupt_at(position: Position, stream: Option<String>, reason: String) -> Error {
    Error::Corrupt { at: Location { stream, position: Some(position) }, reason }
}

fn view(position: Position, bytes: &[u8]) -> Result<GroupView<'_>> {
    let group: GroupView = codec::decode_borrowed(bytes).map_err(|e| corrupt_at(position, None, e.to_string()))?;
    if group.segments.is_empty() {
        return Err(corrupt_at(position, None, "empty group".into()));
    }
    Ok(group)
}

/// The records of segment `index` of the group stored at `position`.
fn segment_records(position: Position, group: &GroupView<'_>, index: usize) -> Result<Vec<Record>> {
    let skip: u64 = group.segments.iter().take(index).map(|s| s.count as u64).sum();
    let seg = group.segments.get(index).ok_or_else(|| corrupt_at(position, None, format!("no segment {index}")))?;
    let stream =
        StreamId::new(seg.stream).map_err(|e| corrupt_at(position, Some(seg.stream.to_string()), e.to_string()))?;
    let payloads: Vec<&[u8]> = codec::decode_borrowed::<Vec<&serde_bytes::Bytes>>(seg.payloads)
        .map_err(|e| corrupt_at(position, Some(seg.stream.to_string()), e.to_string()))?
        .into_iter()
        .map(|b| &**b)
        .collect();
    if payloads.len() != seg.count as usize || seg.first_seq == 0 {
        return Err(corrupt_at(position, Some(seg.stream.to_string()), "segment count disagrees".into()));
    }
    Ok(payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| Record {
            stream: stream.clone(),
            seq: seg.first_seq + i as u64,
            position: position + skip + i as u64,
            at: group.at,
            payload: p.to_vec(),
        })
        .collect())
}

/// Every record of the group stored at `position`; a bad group is a typed
/// error naming where it is, never a panic.
pub(crate) fn decode_group(position: Position, bytes: &[u8]) -> Result<Vec<Record>> {
    let group = view(position, bytes)?;
    let mut out = Vec::new();
    for i in 0..group.segments.len() {
        out.extend(segment_records(position, &group, i)?);
    }
    Ok(out)
}

fn corrupt_index(stream: &StreamId) -> Error {
    Error::Corrupt {
        at: Location { stream: Some(stream.to_string()), position: None },
        reason: "malformed stream index entry".into(),
    }
}

/// The last sequence number of `stream` its written index knows (0 when
/// none: the writer may hold later entries back, see `crate::writer`).
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
            let entries = parse_index_value(first, &v).ok_or_else(|| corrupt_index(stream))?;
            Ok(entries.last().map(|e| e.end() - 1).unwrap_or(0))
        }
        None => Ok(0),
    }
}

/// The records of the group with the greatest first position `<= position`, if any.
fn group_at_or_before(backend: &dyn Backend, position: Position) -> Result<Option<Vec<Record>>> {
    let end = keys::log(position.saturating_add(1));
    match backend.scan(&[keys::LOG], Some(&end), 1, true)?.pop() {
        Some((k, v)) => {
            let first = codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
                at: Location { stream: None, position: None },
                reason: "malformed log key".into(),
            })?;
            Ok(Some(decode_group(first, &v)?))
        }
        None => Ok(None),
    }
}

/// The last global position (0 when the log is empty).
pub(crate) fn last_position(backend: &dyn Backend) -> Result<Position> {
    Ok(group_at_or_before(backend, u64::MAX - 1)?.and_then(|s| s.last().map(|r| r.position)).unwrap_or(0))
}

/// Index entries fetched per scan while reading.
const INDEX_PAGE: usize = 256;

/// Up to `limit` records of `stream` with `seq >= from`: the written index,
/// then `held`, the entries the writer holds back (a snapshot taken before
/// this read: an entry in both is read once). `held` is the stream's whole
/// unwritten tail: the writer writes a stream's held entries out all at once.
pub(crate) fn read_stream(
    backend: &dyn Backend,
    stream: &StreamId,
    from: Seq,
    limit: usize,
    held: &[IndexEntry],
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut next_seq = from;
    // The held entries continue the written index without a gap up to the
    // stream's head: when they start at or before `from`, the written index
    // has nothing this read needs (a live stream's followers, a run's first
    // records), and the backend's index is not scanned.
    if held.first().is_none_or(|e| e.first_seq > from) {
        read_written(backend, stream, limit, &mut next_seq, &mut out)?;
    }
    for entry in held {
        if out.len() >= limit {
            break;
        }
        read_segment(backend, stream, *entry, &mut next_seq, limit, &mut out)?;
    }
    Ok(out)
}

/// Appends the records the written index lists from `next_seq` on (up to
/// `limit` in all) and moves `next_seq` past them.
fn read_written(
    backend: &dyn Backend,
    stream: &StreamId,
    limit: usize,
    next_seq: &mut Seq,
    out: &mut Vec<Record>,
) -> Result<()> {
    let prefix = keys::stream_prefix(stream.as_str());
    let end = keys::prefix_end(&prefix);
    // The entry holding `next_seq` starts at or before it.
    let upto = keys::stream(stream.as_str(), next_seq.saturating_add(1));
    let mut start = match backend.scan(&prefix, Some(&upto), 1, true)?.pop() {
        Some((k, _)) => k,
        None => keys::stream(stream.as_str(), *next_seq),
    };
    while out.len() < limit {
        let entries = backend.scan(&start, end.as_deref(), INDEX_PAGE, false)?;
        let Some(last) = entries.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        let full_page = entries.len() == INDEX_PAGE;
        for (k, v) in entries {
            let first_seq = codec::key_u64(&k[prefix.len()..]).ok_or_else(|| corrupt_index(stream))?;
            for entry in parse_index_value(first_seq, &v).ok_or_else(|| corrupt_index(stream))? {
                read_segment(backend, stream, entry, next_seq, limit, out)?;
                if out.len() >= limit {
                    return Ok(());
                }
            }
        }
        if !full_page {
            break;
        }
        start = next;
    }
    Ok(())
}

/// Appends the records of one indexed segment from `next_seq` on (up to
/// `limit` in all) and moves `next_seq` past them.
fn read_segment(
    backend: &dyn Backend,
    stream: &StreamId,
    entry: IndexEntry,
    next_seq: &mut Seq,
    limit: usize,
    out: &mut Vec<Record>,
) -> Result<()> {
    if entry.end() <= *next_seq {
        return Ok(());
    }
    let IndexEntry { first_seq, group, segment, count } = entry;
    let bytes = backend.get(&keys::log(group))?.ok_or_else(|| Error::Corrupt {
        at: Location { stream: Some(stream.to_string()), position: Some(group) },
        reason: format!("seq {first_seq} points at a missing group"),
    })?;
    let records = segment_records(group, &view(group, &bytes)?, segment as usize)?;
    if records.len() as u64 != count as u64 || records[0].stream != *stream || records[0].seq != first_seq {
        return Err(Error::Corrupt {
            at: Location { stream: Some(stream.to_string()), position: Some(group) },
            reason: format!("index says seq {first_seq} x{count}, segment disagrees"),
        });
    }
    for r in records {
        if r.seq >= *next_seq && out.len() < limit {
            *next_seq = r.seq + 1;
            out.push(r);
        }
    }
    Ok(())
}

/// Where recovery of the stream index starts: every group before it has its
/// index entries written. `None` for a log whose writer indexed every
/// segment as it committed it (written before the cursor existed).
pub(crate) fn index_cursor(backend: &dyn Backend) -> Result<Option<Position>> {
    match backend.get(&keys::index_cursor())? {
        Some(v) => codec::key_u64(&v).map(Some).ok_or_else(|| Error::Corrupt {
            at: Location { stream: None, position: None },
            reason: "malformed stream-index cursor".into(),
        }),
        None => Ok(None),
    }
}

/// The write that sets the stream-index cursor.
pub(crate) fn index_cursor_op(position: Position) -> Op {
    Op::Put(keys::index_cursor(), codec::u64_key(position).to_vec())
}

/// Recovery after a crash: writes the index entries that segments of the
/// groups from `from` on lack (the writer holds a stream's entries back
/// until it writes them together, and a crash loses what it held). Returns
/// how many segments were indexed.
pub(crate) fn reindex(backend: &dyn Backend, from: Position) -> Result<u64> {
    let mut found: std::collections::BTreeMap<String, Vec<IndexEntry>> = Default::default();
    let mut start = keys::log(from);
    loop {
        let pairs = backend.scan(&start, Some(&[keys::LOG + 1]), INDEX_PAGE, false)?;
        let Some(last) = pairs.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        let full_page = pairs.len() == INDEX_PAGE;
        for (k, v) in pairs {
            let position = codec::key_u64(&k[1..]).ok_or_else(|| Error::Corrupt {
                at: Location { stream: None, position: None },
                reason: "malformed log key".into(),
            })?;
            for (i, seg) in view(position, &v)?.segments.iter().enumerate() {
                found.entry(seg.stream.to_string()).or_default().push(IndexEntry {
                    first_seq: seg.first_seq,
                    group: position,
                    segment: i as u32,
                    count: seg.count,
                });
            }
        }
        if !full_page {
            break;
        }
        start = next;
    }
    let mut ops = Vec::new();
    let mut indexed = 0u64;
    for (name, entries) in found {
        let stream = StreamId::new(name.as_str()).map_err(|e| corrupt_at(from, Some(name.clone()), e.to_string()))?;
        let head = stream_head(backend, &stream)?;
        let missing: Vec<IndexEntry> = entries.into_iter().filter(|e| e.first_seq > head).collect();
        // Consecutive runs, one index entry each (a gap would be a torn log: kept apart).
        let mut run: Vec<IndexEntry> = Vec::new();
        for e in missing {
            if run.last().is_some_and(|l| l.end() != e.first_seq) {
                ops.extend(index_op(&stream, &run));
                run.clear();
            }
            indexed += 1;
            run.push(e);
        }
        ops.extend(index_op(&stream, &run));
        if ops.len() >= CHUNK {
            backend.commit(std::mem::take(&mut ops))?;
        }
    }
    if !ops.is_empty() {
        backend.commit(ops)?;
    }
    Ok(indexed)
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
            for r in decode_group(position, &v)? {
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

/// Every projection's applied position, from the one cursor key.
pub(crate) fn cursors(backend: &dyn Backend) -> Result<Vec<(String, Position)>> {
    match backend.get(&keys::cursors())? {
        Some(v) => codec::decode(&v).map_err(|e| Error::Corrupt {
            at: Location { stream: None, position: None },
            reason: format!("projection cursors: {e}"),
        }),
        None => Ok(Vec::new()),
    }
}

/// Moves the cursors of a store written by an earlier version from their old
/// key (see [`keys::CURSORS`]); true if there were any.
pub(crate) fn move_legacy_cursors(backend: &dyn Backend) -> Result<bool> {
    let Some(value) = backend.get(&keys::legacy_cursors())? else { return Ok(false) };
    let mut ops = vec![Op::Delete(keys::legacy_cursors())];
    if backend.get(&keys::cursors())?.is_none() {
        ops.push(Op::Put(keys::cursors(), value));
    }
    backend.commit(ops)?;
    Ok(true)
}

/// The position a projection has applied up to.
pub(crate) fn projection_position(backend: &dyn Backend, name: &str) -> Result<Position> {
    Ok(cursors(backend)?.into_iter().find(|(n, _)| n == name).map(|(_, p)| p).unwrap_or(0))
}

/// The write that records every projection at `positions`.
pub(crate) fn cursors_op(projectors: &[Arc<dyn Projector>], positions: &[Position]) -> Result<Op> {
    let list: Vec<(&str, Position)> = projectors.iter().map(|p| p.name()).zip(positions.iter().copied()).collect();
    Ok(Op::Put(keys::cursors(), codec::encode(&list)?))
}

/// Records per atomic batch during catch-up and rebuild.
const CHUNK: usize = 8192;

/// Brings every projection up to the end of the log (run on open).
pub(crate) fn catch_up(backend: &dyn Backend, projectors: &Arc<Vec<Arc<dyn Projector>>>) -> Result<u64> {
    if projectors.is_empty() {
        return Ok(0);
    }
    if backend.get(&keys::rebuilding())?.is_some() {
        tracing::warn!("an earlier rebuild was interrupted; rebuilding read models");
        return rebuild(backend, projectors, Box::new(|_, _| {}));
    }
    let stored = cursors(backend)?;
    let mut positions: Vec<Position> = projectors
        .iter()
        .map(|p| stored.iter().find(|(n, _)| n == p.name()).map(|(_, pos)| *pos).unwrap_or(0))
        .collect();
    let from = positions.iter().copied().min().unwrap_or(0);
    apply_from(backend, projectors, &mut positions, from, &mut |_, _| {})
}

/// Recomputes every read model from the whole log and writes only what
/// differs from the stored trees. Returns the records applied.
///
/// The new read models are folded in memory from an empty state (so stale
/// values cannot leak in), then compared with the stored ones: a rebuild of
/// consistent read models writes nothing but the cursors. A marker key makes
/// an interrupted rebuild start over on the next open.
pub(crate) fn rebuild(
    backend: &dyn Backend,
    projectors: &Arc<Vec<Arc<dyn Projector>>>,
    mut progress: Progress,
) -> Result<u64> {
    backend.commit(vec![Op::Put(keys::rebuilding(), vec![1])])?;
    let total = last_position(backend)?;
    let empty = crate::backend::memory::MemoryBackend::new();
    let mut models = Overlay::new();
    let mut next = 1;
    let mut applied = 0u64;
    progress(0, total);
    loop {
        let records = read_all(backend, next, CHUNK)?;
        let Some(last) = records.last().map(|r| r.position) else { break };
        let mut txn = KvTxn::new(&empty, &models);
        for record in &records {
            for p in projectors.iter() {
                p.apply(record, &mut txn).map_err(|e| projection_error(p.name(), record, e))?;
            }
        }
        let writes = txn.into_writes();
        models.extend(writes);
        applied += records.len() as u64;
        progress(applied, total);
        next = last + 1;
    }
    // Diff the stored trees against the recomputed ones.
    let prefix = [keys::KV];
    let end = keys::prefix_end(&prefix);
    let mut start = prefix.to_vec();
    let mut ops = Vec::new();
    loop {
        let pairs = backend.scan(&start, end.as_deref(), CHUNK, false)?;
        let Some((last, _)) = pairs.last() else { break };
        let mut after = last.clone();
        after.push(0);
        let full = pairs.len() == CHUNK;
        for (k, v) in pairs {
            match models.remove(&k) {
                Some(Some(new)) if new == v => {}
                Some(Some(new)) => ops.push(Op::Put(k, new)),
                Some(None) | None => ops.push(Op::Delete(k)),
            }
            if ops.len() >= CHUNK {
                backend.commit(std::mem::take(&mut ops))?;
            }
        }
        if !full {
            break;
        }
        start = after;
    }
    for (k, v) in models {
        if let Some(v) = v {
            ops.push(Op::Put(k, v));
            if ops.len() >= CHUNK {
                backend.commit(std::mem::take(&mut ops))?;
            }
        }
    }
    ops.push(cursors_op(projectors, &vec![total; projectors.len()])?);
    ops.push(Op::Delete(keys::rebuilding()));
    backend.commit(ops)?;
    Ok(applied)
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
        for pos in positions.iter_mut() {
            *pos = (*pos).max(last);
        }
        ops.push(cursors_op(projectors, positions)?);
        backend.commit(ops)?;
        applied += records.len() as u64;
        progress(applied, total.saturating_sub(from));
        next = last + 1;
    }
    Ok(applied)
}
