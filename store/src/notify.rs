//! Wake-ups and a hot tail for readers that follow a stream or the global log.
//!
//! Each followed stream has a [`Tail`]: a `watch` channel carrying its last
//! committed sequence number, and the most recent records themselves, so a
//! reader that keeps up never reads the backend. Tails are created on the
//! first subscription and dropped with the last one. The writer publishes
//! *after* the backend commit, and a reader marks the channel seen *before*
//! it looks for records, so a record committed in between always wakes it.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::watch;

use crate::record::{Position, Record, Seq, StreamId};

/// Records kept in memory per followed stream, and at least the whole last
/// segment published (a workflow hands its events over 64 at a time). A live
/// reader is a commit or two behind its stream; one further behind reads the
/// backend. 16 rather than 64 saves ~4 KiB per open stream of a chat (1,000
/// streams: 62 KiB each instead of 66-68 KiB).
const TAIL_RECORDS: usize = 16;

/// A followed stream: its wake-up channel and its latest records.
pub(crate) struct Tail {
    pub tx: watch::Sender<Seq>,
    pub recent: Mutex<VecDeque<Record>>,
}

impl Tail {
    /// Records with `seq >= from` if the tail holds `from` (else `None`: read
    /// the backend). `fresh`: the caller followed the stream before its first
    /// record was written, so every record published since passed through
    /// this tail, and an empty tail means that nothing is published yet.
    pub fn since(&self, from: Seq, limit: usize, fresh: bool) -> Option<Vec<Record>> {
        let recent = self.recent.lock();
        let Some(first) = recent.front().map(|r| r.seq) else {
            return fresh.then(Vec::new);
        };
        if first > from {
            return None;
        }
        Some(recent.iter().filter(|r| r.seq >= from).take(limit).cloned().collect())
    }
}

pub(crate) struct Notifier {
    streams: Mutex<HashMap<StreamId, Arc<Tail>>>,
    global: watch::Sender<Position>,
}

impl Notifier {
    pub fn new(last_position: Position) -> Self {
        Notifier { streams: Mutex::new(HashMap::new()), global: watch::Sender::new(last_position) }
    }

    /// Publishes a commit: each segment is a run of one stream's records.
    pub fn publish(&self, segments: &[Vec<Record>], last_position: Position) {
        // The global position first: a reader woken by a stream's tail then reads
        // the backend up to at least that stream's new records.
        self.global.send_replace(last_position);
        {
            let streams = self.streams.lock();
            if !streams.is_empty() {
                for records in segments {
                    let Some(last) = records.last() else { continue };
                    if let Some(tail) = streams.get(&last.stream) {
                        let mut recent = tail.recent.lock();
                        recent.extend(records.iter().cloned());
                        while recent.len() > TAIL_RECORDS.max(records.len()) {
                            recent.pop_front();
                        }
                        drop(recent);
                        tail.tx.send_replace(last.seq);
                    }
                }
            }
        }
    }

    /// Whether somebody follows a stream of these segments.
    pub fn any_followed(&self, segments: &[Vec<Record>]) -> bool {
        let streams = self.streams.lock();
        !streams.is_empty() && segments.iter().any(|s| s.first().is_some_and(|r| streams.contains_key(&r.stream)))
    }

    /// The last published (durable) global position.
    pub fn published(&self) -> Position {
        *self.global.borrow()
    }

    /// Follows a stream: its tail and a wake-up receiver.
    pub fn watch_stream(&self, stream: &StreamId) -> (Arc<Tail>, watch::Receiver<Seq>) {
        let mut streams = self.streams.lock();
        let tail = streams
            .entry(stream.clone())
            .or_insert_with(|| Arc::new(Tail { tx: watch::Sender::new(0), recent: Mutex::new(VecDeque::new()) }))
            .clone();
        let rx = tail.tx.subscribe();
        (tail, rx)
    }

    pub fn watch_global(&self) -> watch::Receiver<Position> {
        self.global.subscribe()
    }

    /// Forgets a stream's tail once nobody follows it.
    pub fn release(&self, stream: &StreamId) {
        let mut streams = self.streams.lock();
        if streams.get(stream).is_some_and(|t| t.tx.receiver_count() == 0) {
            streams.remove(stream);
        }
    }

    /// Wakes every reader so it notices the store closed.
    pub fn close(&self) {
        self.streams.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Record {
        Record { stream: StreamId::new("run/x").unwrap(), seq, position: seq, at: 0, payload: vec![seq as u8] }
    }

    #[test]
    fn tails_live_as_long_as_their_readers_and_keep_recent_records() {
        let n = Notifier::new(0);
        let s = StreamId::new("run/x").unwrap();
        let (tail, a) = n.watch_stream(&s);
        let (_, mut b) = n.watch_stream(&s);
        assert!(tail.since(1, 10, false).is_none(), "an empty tail sends readers to the backend");
        assert_eq!(tail.since(1, 10, true), Some(Vec::new()), "...unless they follow since before the first record");
        n.publish(&[vec![rec(1), rec(2), rec(3)]], 3);
        assert_eq!(*b.borrow_and_update(), 3);
        assert_eq!(tail.since(2, 10, false).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(tail.since(4, 10, false).unwrap().len(), 0);
        n.publish(&[(4..=300).map(rec).collect()], 300);
        assert!(tail.since(2, 10, false).is_none(), "evicted records come from the backend");
        assert!(tail.since(2, 10, true).is_none(), "...for every reader");
        assert_eq!(tail.since(299, 10, false).unwrap().len(), 2);
        drop(a);
        n.release(&s);
        assert_eq!(n.streams.lock().len(), 1);
        drop(b);
        n.release(&s);
        assert!(n.streams.lock().is_empty());
    }
}
