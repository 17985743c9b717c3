//! The [`EventLog`] trait and [`Store`], its implementation over any backend.

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

use crate::backend::{memory::MemoryBackend, sled::SledBackend, Backend, Pairs};
use crate::error::{Error, Result};
use crate::kv::Projector;
use crate::notify::{Notifier, Tail};
use crate::reader;
use crate::record::{Append, Appended, Position, Record, Seq, StreamId};
use crate::stats::{Stats, StatsSnapshot};
use crate::writer::{held_head, Command, HeldIndex, Progress, Writer};
use crate::{codec, keys};

/// An append-only log of streams of opaque records.
///
/// Promises:
/// - an append is atomic: after any crash, all of its records are visible or none;
/// - records of a stream keep the order of their appends, with sequence
///   numbers 1, 2, 3… and no gaps; global positions follow commit order;
/// - a durable append is acknowledged only after an fsync that covers it;
///   a non-durable one is fsynced within the flush interval, never reordered;
/// - once acknowledged, an append is visible to reads and to read models;
/// - subscribers are handed a record only after an fsync covered it, so what
///   a follower saw survives any crash.
pub trait EventLog: Send + Sync {
    /// Appends a batch of payloads to one stream.
    fn append(&self, append: Append) -> PendingAppend;
    /// Up to `limit` records of `stream` from sequence number `from` on.
    fn read_stream(&self, stream: &StreamId, from: Seq, limit: usize) -> Result<Vec<Record>>;
    /// Up to `limit` records of the global log from position `from` on.
    fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Record>>;
    /// The last sequence number of `stream` (0 if it does not exist).
    fn stream_head(&self, stream: &StreamId) -> Result<Seq>;
    /// The last global position (0 if the log is empty).
    fn last_position(&self) -> Result<Position>;
    /// Tails `stream` from sequence number `from` on.
    fn subscribe(&self, stream: &StreamId, from: Seq) -> Subscription;
    /// Tails `stream`, none of whose records is written yet (a run about to
    /// start), from its first record on: the records then come from memory
    /// as they are published, with no read of the backend while nothing is.
    fn subscribe_new(&self, stream: &StreamId) -> Subscription;
    /// Makes every acknowledged append durable.
    fn flush(&self) -> PendingFlush;
}

/// Tuning of a store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest time a non-durable append waits for its fsync when nobody
    /// follows its stream (followed streams and durable appends are fsynced
    /// as soon as the syncer is free). Unused with a volatile backend, whose
    /// commits are published at once.
    pub flush_interval: Duration,
    /// Most commands one group commit takes from the queue.
    pub max_group: usize,
    /// sled page cache size.
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { flush_interval: Duration::from_millis(10), max_group: 1024, cache_bytes: 256 << 20 }
    }
}

/// The log and its read models. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    tx: Mutex<Option<Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    notifier: Arc<Notifier>,
    stats: Arc<Stats>,
    /// Index entries the writer holds back (reads go through them).
    held: HeldIndex,
    /// Holds the data directory's lock for the store's lifetime.
    _lock: Option<File>,
}

impl Store {
    /// Opens the sled-backed store in `dir` (created if missing), locking the
    /// directory against other processes.
    pub fn open_sled(dir: &Path, projectors: Vec<Arc<dyn Projector>>, options: Options) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let backend = SledBackend::open(&dir.join("db"), options.cache_bytes)?;
        Self::open(Arc::new(backend), projectors, options, Some(lock))
    }

    /// Opens an empty in-memory store.
    pub fn open_memory(projectors: Vec<Arc<dyn Projector>>, options: Options) -> Result<Store> {
        Self::open(Arc::new(MemoryBackend::new()), projectors, options, None)
    }

    pub(crate) fn open(
        backend: Arc<dyn Backend>,
        projectors: Vec<Arc<dyn Projector>>,
        options: Options,
        lock: Option<File>,
    ) -> Result<Store> {
        let mut names = HashMap::new();
        for p in &projectors {
            if names.insert(p.name().to_string(), ()).is_some() {
                return Err(Error::Invalid(format!("two projections are named {}", p.name())));
            }
        }
        let projectors = Arc::new(projectors);
        if reader::move_legacy_cursors(backend.as_ref())? {
            backend.sync()?;
        }
        let last = reader::last_position(backend.as_ref())?;
        // Index entries a crash lost (held back by the writer); a log without
        // a cursor was indexed as it was written.
        let cursor = reader::index_cursor(backend.as_ref())?;
        if let Some(cursor) = cursor {
            let indexed = reader::reindex(backend.as_ref(), cursor)?;
            if indexed > 0 {
                tracing::info!(segments = indexed, "stream index recovered");
            }
        }
        // After a clean close the cursor is at the end already.
        if cursor != Some(last + 1) {
            backend.commit(vec![reader::index_cursor_op(last + 1)])?;
            backend.sync()?;
        }
        let caught_up = reader::catch_up(backend.as_ref(), &projectors)?;
        if caught_up > 0 {
            backend.sync()?;
            tracing::info!(records = caught_up, "read models caught up with the log");
        }
        let notifier = Arc::new(Notifier::new(last));
        let held = HeldIndex::default();
        let stats = Arc::new(Stats::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer {
            backend: backend.clone(),
            projectors,
            notifier: notifier.clone(),
            stats: stats.clone(),
            flush_interval: options.flush_interval,
            max_group: options.max_group.max(1),
            next_position: last + 1,
            heads: foldhash::HashMap::default(),
            sync_tx: None,
            held: held.clone(),
            held_since: Default::default(),
            index_cursor: last + 1,
        };
        let handle = std::thread::Builder::new().name("ferrify-writer".into()).spawn(move || writer.run(rx))?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                notifier,
                stats,
                held,
                _lock: lock,
            }),
        })
    }

    fn send(&self, cmd: Command) -> bool {
        match self.inner.tx.lock().as_ref() {
            Some(tx) => tx.send(cmd).is_ok(),
            None => false,
        }
    }

    /// A read-model value.
    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.backend.get(&keys::kv(tree, key))
    }

    /// A JSON read-model value.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, tree: &str, key: &[u8]) -> Result<Option<T>> {
        match self.get(tree, key)? {
            Some(v) => Ok(Some(codec::from_json(&v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` read-model pairs of `tree` whose key starts with `prefix`,
    /// strictly after (or, when `reverse`, strictly before) `after` if given.
    /// Keys are returned without the tree prefix.
    pub fn scan(&self, tree: &str, prefix: &[u8], after: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
        let full_prefix = keys::kv(tree, prefix);
        let prefix_end = keys::prefix_end(&full_prefix);
        let (start, end) = match (after, reverse) {
            (None, _) => (full_prefix.clone(), prefix_end),
            (Some(a), false) => {
                let mut s = keys::kv(tree, a);
                s.push(0); // strictly after `a`
                (s, prefix_end)
            }
            (Some(a), true) => (full_prefix.clone(), Some(keys::kv(tree, a))),
        };
        let skip = keys::kv_prefix(tree).len();
        Ok(self
            .inner
            .backend
            .scan(&start, end.as_deref(), limit, reverse)?
            .into_iter()
            .map(|(k, v)| (k[skip..].to_vec(), v))
            .collect())
    }

    /// Every read-model pair of every tree, as `(tree\0key, value)` in key order
    /// (a snapshot for comparisons and inspection).
    pub fn read_models(&self) -> Result<Pairs> {
        let prefix = [keys::KV];
        let end = keys::prefix_end(&prefix);
        Ok(self
            .inner
            .backend
            .scan(&prefix, end.as_deref(), usize::MAX, false)?
            .into_iter()
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect())
    }

    /// The position every projection has applied up to.
    pub fn projection_position(&self, name: &str) -> Result<Position> {
        reader::projection_position(self.inner.backend.as_ref(), name)
    }

    /// Clears and rebuilds every read model from the log, serialised with appends.
    pub fn rebuild(&self, progress: Progress) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::Rebuild(progress, tx)) {
            return Err(Error::Closed);
        }
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// The writer's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Tails the global log from position `from` on.
    pub fn subscribe_all(&self, from: Position) -> GlobalSubscription {
        GlobalSubscription { store: self.clone(), next: from.max(1), rx: self.inner.notifier.watch_global() }
    }

    /// Stops the writer after it has committed and fsynced everything queued.
    /// Later appends fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        drop(self.inner.tx.lock().take());
        if let Some(handle) = self.inner.writer.lock().take() {
            handle.join().map_err(|_| Error::Io("the writer thread panicked".into()))?;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.lock().take());
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl EventLog for Store {
    fn append(&self, append: Append) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::Append(append, tx)) {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(Error::Closed));
            return PendingAppend { rx };
        }
        PendingAppend { rx }
    }

    fn read_stream(&self, stream: &StreamId, from: Seq, limit: usize) -> Result<Vec<Record>> {
        // Held entries first: one the writer writes out meanwhile is then in both.
        let held = self.inner.held.lock().get(stream).cloned().unwrap_or_default();
        reader::read_stream(self.inner.backend.as_ref(), stream, from.max(1), limit, &held)
    }

    fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Record>> {
        reader::read_all(self.inner.backend.as_ref(), from.max(1), limit)
    }

    fn stream_head(&self, stream: &StreamId) -> Result<Seq> {
        if let Some(head) = held_head(&self.inner.held, stream) {
            return Ok(head);
        }
        reader::stream_head(self.inner.backend.as_ref(), stream)
    }

    fn last_position(&self) -> Result<Position> {
        reader::last_position(self.inner.backend.as_ref())
    }

    fn subscribe(&self, stream: &StreamId, from: Seq) -> Subscription {
        let (tail, rx) = self.inner.notifier.watch_stream(stream);
        Subscription {
            store: self.clone(),
            stream: stream.clone(),
            next: from.max(1),
            tail,
            rx: Some(rx),
            fresh: false,
        }
    }

    fn subscribe_new(&self, stream: &StreamId) -> Subscription {
        let mut subscription = self.subscribe(stream, 1);
        subscription.fresh = true;
        subscription
    }

    fn flush(&self) -> PendingFlush {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::Flush(tx)) {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(Error::Closed));
            return PendingFlush { rx };
        }
        PendingFlush { rx }
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path: PathBuf = dir.join("LOCK");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// An append in flight: await it, or [`wait`](PendingAppend::wait) outside async code.
pub struct PendingAppend {
    rx: oneshot::Receiver<Result<Appended>>,
}

impl PendingAppend {
    /// Blocks the thread until the append is acknowledged. Must not be called
    /// from inside an async runtime (await the value there).
    pub fn wait(self) -> Result<Appended> {
        self.rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// The outcome if the writer already answered, without waiting. It is
    /// taken: drop the append afterwards, do not await it.
    pub fn try_take(&mut self) -> Option<Result<Appended>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(Error::Closed)),
        }
    }
}

impl Future for PendingAppend {
    type Output = Result<Appended>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.map_err(|_| Error::Closed).and_then(|r| r))
    }
}

/// A flush in flight.
pub struct PendingFlush {
    rx: oneshot::Receiver<Result<()>>,
}

impl PendingFlush {
    /// Blocks the thread until the flush is done (not from async code).
    pub fn wait(self) -> Result<()> {
        self.rx.blocking_recv().map_err(|_| Error::Closed)?
    }
}

impl Future for PendingFlush {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.map_err(|_| Error::Closed).and_then(|r| r))
    }
}

/// A reader tailing one stream. It never misses a record: it marks its
/// wake-up channel seen before each read, and the writer signals after each commit.
pub struct Subscription {
    store: Store,
    stream: StreamId,
    next: Seq,
    tail: Arc<Tail>,
    rx: Option<watch::Receiver<Seq>>,
    /// Following since before the stream's first record (see [`EventLog::subscribe_new`]).
    fresh: bool,
}

/// Records handed out per call.
const SUBSCRIPTION_BATCH: usize = 1024;

impl Subscription {
    /// The next sequence number this subscription will deliver.
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    /// Records available now, without waiting (possibly none).
    pub fn poll_now(&mut self) -> Result<Vec<Record>> {
        if let Some(rx) = self.rx.as_mut() {
            rx.borrow_and_update();
        }
        // A reader that keeps up is served from memory; one that is behind reads the backend.
        let records = match self.tail.since(self.next, SUBSCRIPTION_BATCH, self.fresh) {
            Some(records) => records,
            None => {
                // Only what an fsync covered (published) is handed to followers.
                self.store.inner.stats.follower_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let published = self.store.inner.notifier.published();
                let mut records = self.store.read_stream(&self.stream, self.next, SUBSCRIPTION_BATCH)?;
                records.retain(|r| r.position <= published);
                records
            }
        };
        if let Some(last) = records.last() {
            self.next = last.seq + 1;
        }
        Ok(records)
    }

    /// Waits until at least one new record exists and returns the available ones.
    pub async fn next_batch(&mut self) -> Result<Vec<Record>> {
        loop {
            let records = self.poll_now()?;
            if !records.is_empty() {
                return Ok(records);
            }
            let rx = self.rx.as_mut().ok_or(Error::Closed)?;
            rx.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.store.inner.notifier.release(&self.stream);
    }
}

/// A reader tailing the global log.
pub struct GlobalSubscription {
    store: Store,
    next: Position,
    rx: watch::Receiver<Position>,
}

impl GlobalSubscription {
    /// Waits until at least one new record exists and returns the available ones.
    pub async fn next_batch(&mut self) -> Result<Vec<Record>> {
        loop {
            let published = *self.rx.borrow_and_update();
            let mut records = self.store.read_all(self.next, SUBSCRIPTION_BATCH)?;
            records.retain(|r| r.position <= published);
            if let Some(last) = records.last() {
                self.next = last.position + 1;
                return Ok(records);
            }
            self.rx.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Op;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    /// A memory backend that knows which positions an fsync covered, with a slow fsync.
    struct Tracking {
        inner: MemoryBackend,
        committed: AtomicU64,
        durable: Arc<AtomicU64>,
    }

    impl Backend for Tracking {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
            self.inner.scan(start, end, limit, reverse)
        }
        fn commit(&self, ops: Vec<Op>) -> Result<()> {
            self.inner.commit(ops)?;
            self.committed.store(reader::last_position(&self.inner)?, SeqCst);
            Ok(())
        }
        fn sync(&self) -> Result<()> {
            let covered = self.committed.load(SeqCst);
            std::thread::sleep(Duration::from_millis(3));
            self.durable.store(covered, SeqCst);
            Ok(())
        }
    }

    #[test]
    fn followers_see_only_what_an_fsync_covered() {
        let durable = Arc::new(AtomicU64::new(0));
        let backend = Tracking { inner: MemoryBackend::new(), committed: AtomicU64::new(0), durable: durable.clone() };
        // A long flush interval: followed streams must not wait for it.
        let options = Options { flush_interval: Duration::from_secs(30), ..Options::default() };
        let store = Store::open(Arc::new(backend), Vec::new(), options, None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stream = StreamId::new("run/followed").unwrap();
        let mut sub = store.subscribe(&stream, 1);
        let writer = {
            let store = store.clone();
            let stream = stream.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    // Not durable, and not waited for: the writer commits far ahead of the fsyncs.
                    drop(store.append(Append::new(stream.clone(), vec![i.to_le_bytes().to_vec()])));
                }
            })
        };
        let mut seen = 0u32;
        rt.block_on(async {
            while seen < 200 {
                let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch()).await.unwrap().unwrap();
                for r in batch {
                    assert!(r.position <= durable.load(SeqCst), "record {} reached a follower before its fsync", r.seq);
                    assert_eq!(r.payload, seen.to_le_bytes().to_vec(), "in order, none lost");
                    seen += 1;
                }
            }
        });
        writer.join().unwrap();
        // A late subscriber that reads the backend is held to the same rule.
        let mut late = store.subscribe(&stream, 1);
        let all = rt.block_on(late.next_batch()).unwrap();
        assert!(all.iter().all(|r| r.position <= durable.load(SeqCst)));
        store.close().unwrap();
    }

    /// Index keys of `stream` in the backend.
    fn index_keys(store: &Store, stream: &StreamId) -> usize {
        let prefix = keys::stream_prefix(stream.as_str());
        let end = keys::prefix_end(&prefix);
        store.inner.backend.scan(&prefix, end.as_deref(), usize::MAX, false).unwrap().len()
    }

    #[test]
    fn held_index_entries_are_read_through_and_written_together() {
        let store = Store::open_memory(Vec::new(), Options::default()).unwrap();
        let (tokens, other) = (StreamId::new("run/tokens").unwrap(), StreamId::new("run/other").unwrap());
        // One commit per append (each is waited for), none durable: entries are held.
        for i in 1..=100u64 {
            let a = store.append(Append::new(tokens.clone(), vec![i.to_le_bytes().to_vec()])).wait().unwrap();
            assert_eq!(a.first_seq, i);
            store.append(Append::new(other.clone(), vec![b"o".to_vec()])).wait().unwrap();
            assert_eq!(store.stream_head(&tokens).unwrap(), i);
            let back = store.read_stream(&tokens, 1, usize::MAX).unwrap();
            assert_eq!(back.len() as u64, i, "every acknowledged record is readable");
            assert_eq!(back.last().unwrap().payload, i.to_le_bytes().to_vec());
        }
        // Held lists are written once they reach MAX_HELD entries: 64, then 36 held.
        assert_eq!(index_keys(&store, &tokens), 1);
        let middle = store.read_stream(&tokens, 60, 10).unwrap();
        assert_eq!(middle.iter().map(|r| r.seq).collect::<Vec<_>>(), (60..70).collect::<Vec<_>>());
        // A durable append writes the stream's held entries with its own.
        store.append(Append::new(tokens.clone(), vec![b"end".to_vec()]).durable()).wait().unwrap();
        assert_eq!(index_keys(&store, &tokens), 2);
        assert!(store.inner.held.lock().get(&tokens).is_none());
        assert!(store.inner.held.lock().get(&other).is_some());
        let all = store.read_stream(&tokens, 1, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=101).collect::<Vec<_>>());
        // Closing writes what is still held, and the cursor.
        let backend = store.inner.backend.clone();
        store.close().unwrap();
        assert_eq!(reader::stream_head(backend.as_ref(), &other).unwrap(), 100);
        assert_eq!(reader::index_cursor(backend.as_ref()).unwrap(), Some(202));
        assert_eq!(reader::read_stream(backend.as_ref(), &other, 1, usize::MAX, &[]).unwrap().len(), 100);
    }

    /// A memory backend that counts scans of the stream index.
    struct CountingScans {
        inner: MemoryBackend,
        index_scans: AtomicU64,
    }

    impl Backend for CountingScans {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
            if start.first() == keys::stream_prefix("run/x").first() {
                self.index_scans.fetch_add(1, SeqCst);
            }
            self.inner.scan(start, end, limit, reverse)
        }
        fn commit(&self, ops: Vec<Op>) -> Result<()> {
            self.inner.commit(ops)
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_within_held_entries_leave_the_written_index_alone() {
        let backend = Arc::new(CountingScans { inner: MemoryBackend::new(), index_scans: AtomicU64::new(0) });
        let store = Store::open(backend.clone(), Vec::new(), Options::default(), None).unwrap();
        let stream = StreamId::new("run/live").unwrap();
        for i in 1..=10u64 {
            store.append(Append::new(stream.clone(), vec![i.to_le_bytes().to_vec()])).wait().unwrap();
        }
        let scans = backend.index_scans.load(SeqCst);
        // A live stream's followers read from where they are: all of it is held back.
        let back = store.read_stream(&stream, 4, usize::MAX).unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), (4..=10).collect::<Vec<_>>());
        assert_eq!(store.read_stream(&stream, 1, 2).unwrap().len(), 2);
        assert!(store.read_stream(&stream, 11, 5).unwrap().is_empty());
        assert_eq!(backend.index_scans.load(SeqCst), scans, "no scan of the written index");
        // Once written out (a durable append), reads go through the index again, and see it all.
        store.append(Append::new(stream.clone(), vec![b"end".to_vec()]).durable()).wait().unwrap();
        assert_eq!(store.read_stream(&stream, 1, usize::MAX).unwrap().len(), 11);
        assert!(backend.index_scans.load(SeqCst) > scans);
    }

    #[test]
    fn streams_held_too_long_are_written_out() {
        let store = Store::open_memory(Vec::new(), Options::default()).unwrap();
        let (lag, quiet, bulk) = (
            StreamId::new("run/lag").unwrap(),
            StreamId::new("run/quiet").unwrap(),
            StreamId::new("run/bulk").unwrap(),
        );
        store.append(Append::new(lag.clone(), vec![b"l1".to_vec()])).wait().unwrap();
        store.append(Append::new(quiet.clone(), vec![b"q1".to_vec()])).wait().unwrap();
        // The end of the log moves 70,000 positions on, and `lag`'s durable
        // append follows at once (most often in the same commit).
        let payloads = (0..70_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let big = store.append(Append::new(bulk.clone(), payloads));
        let last = store.append(Append::new(lag.clone(), vec![b"l2".to_vec()]).durable());
        big.wait().unwrap();
        last.wait().unwrap();
        let backend = store.inner.backend.clone();
        for s in [&lag, &quiet] {
            assert!(store.inner.held.lock().get(s).is_none(), "{s} written out");
        }
        let lag_back = reader::read_stream(backend.as_ref(), &lag, 1, usize::MAX, &[]).unwrap();
        assert_eq!(lag_back.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), [b"l1".to_vec(), b"l2".to_vec()]);
        assert_eq!(reader::read_stream(backend.as_ref(), &quiet, 1, usize::MAX, &[]).unwrap().len(), 1);
        // The bulk segment (at 3) is held, or written out as behind when `lag`
        // came in a later commit; either way the cursor never passes a held
        // group, and the stream reads back whole.
        let cursor = reader::index_cursor(backend.as_ref()).unwrap().unwrap();
        if store.inner.held.lock().contains_key(&bulk) {
            assert_eq!(index_keys(&store, &bulk), 0);
            assert!(cursor <= 3, "cursor {cursor}");
        } else {
            assert_eq!(index_keys(&store, &bulk), 1);
        }
        assert_eq!(store.read_stream(&bulk, 1, usize::MAX).unwrap().len(), 70_000);
        assert_eq!(store.read_stream(&bulk, 69_999, 10).unwrap().len(), 2);
    }

    #[test]
    fn recovery_indexes_what_a_crash_lost() {
        let store = Store::open_memory(Vec::new(), Options::default()).unwrap();
        let s = StreamId::new("run/lost").unwrap();
        for i in 0..10u8 {
            store.append(Append::new(s.clone(), vec![vec![i]])).wait().unwrap();
        }
        let backend = store.inner.backend.clone();
        // What a crash leaves: the log and no index for the held entries.
        assert_eq!(reader::stream_head(backend.as_ref(), &s).unwrap(), 0);
        let cursor = reader::index_cursor(backend.as_ref()).unwrap().unwrap();
        assert_eq!(reader::reindex(backend.as_ref(), cursor).unwrap(), 10);
        assert_eq!(reader::stream_head(backend.as_ref(), &s).unwrap(), 10);
        let back = reader::read_stream(backend.as_ref(), &s, 1, usize::MAX, &[]).unwrap();
        assert_eq!(back.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), (0..10).collect::<Vec<u8>>());
        // Run again, it finds nothing missing.
        assert_eq!(reader::reindex(backend.as_ref(), cursor).unwrap(), 0);
    }
}
