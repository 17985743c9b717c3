//! Wake-ups for readers that tail a stream or the global log.
//!
//! Each tailed stream has a `watch` channel carrying its last committed
//! sequence number, created on the first subscription and dropped with the
//! last one. The writer publishes heads *after* the backend commit, and a
//! reader marks the channel seen *before* it reads the backend, so a record
//! committed between a reader's read and its wait always wakes it.

use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::sync::watch;

use crate::record::{Position, Seq, StreamId};

pub(crate) struct Notifier {
    streams: Mutex<HashMap<StreamId, watch::Sender<Seq>>>,
    global: watch::Sender<Position>,
}

impl Notifier {
    pub fn new(last_position: Position) -> Self {
        Notifier { streams: Mutex::new(HashMap::new()), global: watch::Sender::new(last_position) }
    }

    /// Publishes the new heads of the streams a commit touched.
    pub fn publish<'a>(&self, heads: impl Iterator<Item = (&'a StreamId, Seq)>, last_position: Position) {
        {
            let streams = self.streams.lock();
            if !streams.is_empty() {
                for (stream, seq) in heads {
                    if let Some(tx) = streams.get(stream) {
                        tx.send_replace(seq);
                    }
                }
            }
        }
        self.global.send_replace(last_position);
    }

    pub fn watch_stream(&self, stream: &StreamId) -> watch::Receiver<Seq> {
        let mut streams = self.streams.lock();
        streams.entry(stream.clone()).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    pub fn watch_global(&self) -> watch::Receiver<Position> {
        self.global.subscribe()
    }

    /// Forgets a stream's channel once nobody watches it.
    pub fn release(&self, stream: &StreamId) {
        let mut streams = self.streams.lock();
        if streams.get(stream).is_some_and(|tx| tx.receiver_count() == 0) {
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

    #[test]
    fn channels_live_as_long_as_their_watchers() {
        let n = Notifier::new(0);
        let s = StreamId::new("run/x").unwrap();
        let a = n.watch_stream(&s);
        let mut b = n.watch_stream(&s);
        n.publish([(&s, 3)].into_iter(), 3);
        assert_eq!(*b.borrow_and_update(), 3);
        drop(a);
        n.release(&s);
        assert_eq!(n.streams.lock().len(), 1);
        drop(b);
        n.release(&s);
        assert!(n.streams.lock().is_empty());
    }
}
