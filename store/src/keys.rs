//! The key layout shared by every backend: one ordered keyspace.
//!
//! ```text
//! L <first position:be64>                 -> group: time, segments [(stream, first seq, payloads)]
//! S <stream> 0x00 <first seq:be64>        -> [group position:be64 + segment:be32 + count:be32]
//! K <tree> 0x00 <key>                     -> read-model value                  (projections)
//! C                                       -> [(projection name, applied position)] (cursors)
//! I                                       -> position:be64, every group before it is indexed
//! R                                       -> marker: a rebuild is in progress
//! ```
//!
//! A *group* is everything one group commit wrote: one `L` value. Inside it,
//! a *segment* is the run of consecutive records of one stream (consecutive
//! positions and sequence numbers), with one `S` entry pointing at it. So a
//! commit costs one log key plus one index key per stream it touched, however
//! many records it holds (a token stream appended one chunk at a time still
//! lands as one segment per commit).
//!
//! An `S` value lists one or more segments with consecutive sequence numbers.
//! The writer holds a stream's entries back while its appends are not
//! durable (a token stream would otherwise add one key per commit) and
//! writes them as one `S` key; `I` bounds what recovery has to re-index after
//! a crash lost entries held back (see `crate::writer`).
//!
//! Segments, the read-model updates they cause, the projection cursors and
//! the index entries written with them are one atomic backend batch.

use crate::codec::u64_key;

pub const LOG: u8 = b'L';
pub const STREAM: u8 = b'S';
pub const KV: u8 = b'K';
/// The projection cursors' key, rewritten at every commit. It sorts before
/// the log: under `P` (before 2026-11-30) it shared a leaf with the newest log
/// groups, the largest values, and sled rewrote that leaf twice as often.
pub const CURSORS: u8 = b'C';
/// Where earlier versions kept the projection cursors (moved at open).
pub const LEGACY_CURSORS: u8 = b'P';

pub fn log(position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LOG);
    k.extend_from_slice(&u64_key(position));
    k
}

pub fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(STREAM);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

pub fn stream(stream: &str, seq: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&u64_key(seq));
    k
}

pub fn kv_prefix(tree: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tree.len() + 2);
    k.push(KV);
    k.extend_from_slice(tree.as_bytes());
    k.push(0);
    k
}

pub fn kv(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut k = kv_prefix(tree);
    k.extend_from_slice(key);
    k
}

/// The one key holding every projection's cursor (one write per commit).
pub fn cursors() -> Vec<u8> {
    vec![CURSORS]
}

/// The cursors key of earlier versions.
pub fn legacy_cursors() -> Vec<u8> {
    vec![LEGACY_CURSORS]
}

/// The stream-index cursor: groups before it have their index entries.
pub fn index_cursor() -> Vec<u8> {
    vec![b'I']
}

/// The marker of an interrupted rebuild.
pub fn rebuilding() -> Vec<u8> {
    vec![b'R']
}

/// The smallest key greater than every key starting with `prefix`
/// (`None` when the prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_sort_by_seq() {
        assert!(stream("run/a", 2) < stream("run/a", 10));
        assert!(stream("run/a", u64::MAX) < stream("run/a/b", 0));
        assert_eq!(prefix_end(b"ab").unwrap(), b"ac");
        assert_eq!(prefix_end(&[1, 0xFF]).unwrap(), vec![2]);
        assert!(prefix_end(&[0xFF]).is_none());
    }
}
