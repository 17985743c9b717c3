//! The single writer: every append goes through one thread; a second thread
//! makes commits durable and only then shows them to followers (a volatile
//! backend has no second thread, see below).
//!
//! ```text
//!  appenders ──Command──▶ crossbeam channel ──▶ writer thread
//!                                               │ drain up to `max_group` commands
//!                                               │ assign seqs + positions, run projectors
//!                                               │ ONE atomic backend batch (records, stream
//!                                               │   index, read models, projection cursors)
//!                                               │ ack non-durable appends (visible to reads)
//!                                               ▼ hand the commit to the syncer
//!                                  syncer thread: fsync (one for every commit waiting),
//!                                                 then publish the commits to followers in
//!                                                 commit order and ack durable appends
//! ```
//!
//! Stream index: a segment's `S` entry is written with the commit when the
//! stream gets a durable append in it; otherwise the writer holds it back
//! (shared with readers, who read through it) and writes a stream's held
//! entries as one `S` key at its next durable append, or once it holds
//! [`MAX_HELD`] of them, or once its oldest is [`MAX_LAG`] positions behind,
//! or when the store closes. A token stream so costs one index key per
//! message, not one per commit. The `I` cursor, written with the batches,
//! says where recovery has to look for entries a crash lost (see
//! `reader::reindex`).
//!
//! Group commit: while the syncer fsyncs, the writer goes on committing, and
//! the next fsync covers every commit made meanwhile, so one fsync serves
//! every durable append that was waiting.
//!
//! Followers (subscriptions, and through them SSE streams) see a record only
//! after an fsync covered it: whatever a client was sent survives a crash of
//! the process or the machine. A commit with a durable append, or one to a
//! stream somebody follows, is fsynced as soon as the syncer is free; others
//! wait at most `flush_interval`, so that unwatched bulk work shares fsyncs.
//! A volatile backend (memory) has nothing to fsync: there is no syncer, and
//! the writer publishes and acknowledges each commit itself.

use crossbeam_channel::{Receiver, RecvTimeoutError};
use foldhash::{HashMap, HashSet};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

use crate::backend::{Backend, Op};
use crate::error::{Error, Result};
use crate::kv::{projection_error, KvTxn, Overlay, Projector};
use crate::notify::Notifier;
use crate::reader::IndexEntry;
use crate::record::{Append, Appended, Expected, Position, Record, Seq, StreamId};
use crate::stats::Stats;
use crate::{keys, reader};

/// Progress callback of a rebuild: `(done, total)` records.
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

pub(crate) enum Command {
    Append(Append, oneshot::Sender<Result<Appended>>),
    Flush(oneshot::Sender<Result<()>>),
    Rebuild(Progress, oneshot::Sender<Result<u64>>),
}

/// Heads cache bound: past this many streams the cache is cleared.
const MAX_CACHED_HEADS: usize = 100_000;

/// Most index entries a stream's held back list reaches before it is written.
const MAX_HELD: usize = 64;
/// A stream whose oldest held entry is this many positions behind the end of
/// the log has its entries written (this bounds recovery's scan).
const MAX_LAG: u64 = 1 << 16;
/// The index cursor is rewritten once it can move this far.
const CURSOR_STEP: u64 = 1 << 12;

/// Index entries held back, per stream (shared with readers).
pub(crate) type HeldIndex = Arc<Mutex<HashMap<StreamId, Vec<IndexEntry>>>>;

/// The head of `stream` by its held entries, if it has any.
pub(crate) fn held_head(held: &HeldIndex, stream: &StreamId) -> Option<Seq> {
    held.lock().get(stream).and_then(|h| h.last()).map(|e| e.end() - 1)
}

pub(crate) struct Writer {
    pub backend: Arc<dyn Backend>,
    pub projectors: Arc<Vec<Arc<dyn Projector>>>,
    pub notifier: Arc<Notifier>,
    pub stats: Arc<Stats>,
    pub flush_interval: Duration,
    pub max_group: usize,
    pub next_position: Position,
    pub heads: HashMap<StreamId, Seq>,
    /// The syncer's queue (set while `run` runs).
    pub sync_tx: Option<crossbeam_channel::Sender<SyncJob>>,
    /// Index entries held back, and each such stream by its oldest entry's group.
    pub held: HeldIndex,
    pub held_since: BTreeSet<(Position, StreamId)>,
    /// The stream-index cursor as last written.
    pub index_cursor: Position,
}

/// What one commit does to the held index: streams whose entries it writes,
/// entries it holds back.
#[derive(Default)]
struct IndexPlan {
    written: HashSet<StreamId>,
    held: Vec<(StreamId, IndexEntry)>,
    cursor: Option<Position>,
}

/// An append staged in the current group, waiting for the commit.
pub(crate) struct Staged {
    ack: oneshot::Sender<Result<Appended>>,
    appended: Appended,
    durable: bool,
}

/// A backend commit waiting for its fsync.
pub(crate) struct Commit {
    /// Runs of one stream's records, in commit order.
    segments: Vec<Vec<Record>>,
    last_position: Position,
    /// Durable appends to acknowledge after the fsync.
    durable: Vec<Staged>,
    /// Fsync at once (durable appends, or a followed stream), not within the interval.
    urgent: bool,
}

/// Work for the syncer thread.
pub(crate) enum SyncJob {
    Commit(Commit),
    /// An explicit flush.
    Flush(oneshot::Sender<Result<()>>),
}

/// The syncer: fsyncs commits, then publishes them and acknowledges their
/// durable appends, in commit order. Every job it receives was sent after its
/// commit, so the fsync it starts next covers it.
struct Syncer {
    backend: Arc<dyn Backend>,
    notifier: Arc<Notifier>,
    stats: Arc<Stats>,
    flush_interval: Duration,
}

impl Syncer {
    fn run(self, rx: Receiver<SyncJob>) {
        let mut pending: Vec<SyncJob> = Vec::new();
        let mut since: Option<Instant> = None;
        let mut urgent = false;
        let mut open = true;
        while open || !pending.is_empty() {
            // Wait for work; with lazy work pending, at most until its deadline.
            let next = match (since, urgent, open) {
                (_, _, false) | (Some(_), true, _) => None,
                (None, _, true) => match rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => {
                        open = false;
                        None
                    }
                },
                (Some(at), false, true) => match rx.recv_deadline(at + self.flush_interval) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        None
                    }
                },
            };
            let timed_out = next.is_none();
            for job in next.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                urgent |= match &job {
                    SyncJob::Commit(c) => c.urgent,
                    SyncJob::Flush(_) => true,
                };
                since.get_or_insert_with(Instant::now);
                pending.push(job);
            }
            if pending.is_empty() || !(urgent || timed_out) {
                continue;
            }
            let result = timed_sync(self.backend.as_ref(), &self.stats);
            if let Err(e) = &result {
                tracing::error!("fsync failed: {e}");
            }
            finish(&self.notifier, std::mem::take(&mut pending), &result);
            since = None;
            urgent = false;
        }
    }
}

/// One fsync of the backend, counted with its duration.
fn timed_sync(backend: &dyn Backend, stats: &Stats) -> Result<()> {
    let started = Instant::now();
    let result = backend.sync();
    stats.fsyncs.fetch_add(1, Relaxed);
    stats.fsync_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    result
}

/// After the fsync that covers them: publishes commits in order, acknowledges
/// their durable appends and the flushes.
fn finish(notifier: &Notifier, jobs: Vec<SyncJob>, result: &Result<()>) {
    for job in jobs {
        match job {
            SyncJob::Commit(c) => {
                // Records are published even when the fsync failed: they are committed,
                // and holding them back would stall followers for good.
                notifier.publish(&c.segments, c.last_position);
                for s in c.durable {
                    let _ = s.ack.send(match result {
                        Ok(()) => Ok(s.appended),
                        Err(e) => Err(Error::Io(e.to_string())),
                    });
                }
            }
            SyncJob::Flush(ack) => {
                let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| Error::Io(e.to_string())));
            }
        }
    }
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Command>) {
        // A volatile backend has nothing to fsync: without a syncer, commits
        // are published and acknowledged here.
        let syncer = if self.backend.volatile() {
            None
        } else {
            match self.start_syncer() {
                Some(handle) => Some(handle),
                None => return,
            }
        };
        self.serve(&rx);
        self.write_held_index();
        // Closing the syncer's channel makes it fsync and publish what is left, and stop.
        self.sync_tx = None;
        if let Some(handle) = syncer {
            let _ = handle.join();
        }
        self.notifier.close();
    }

    /// Starts the syncer thread and hands it the commits from now on.
    fn start_syncer(&mut self) -> Option<std::thread::JoinHandle<()>> {
        let (sync_tx, sync_rx) = crossbeam_channel::unbounded();
        let syncer = Syncer {
            backend: self.backend.clone(),
            notifier: self.notifier.clone(),
            stats: self.stats.clone(),
            flush_interval: self.flush_interval,
        };
        match std::thread::Builder::new().name("ferrify-syncer".into()).spawn(move || syncer.run(sync_rx)) {
            Ok(handle) => {
                self.sync_tx = Some(sync_tx);
                Some(handle)
            }
            Err(e) => {
                tracing::error!("cannot start the syncer thread: {e}");
                None
            }
        }
    }

    /// Commits groups of commands until every sender is gone.
    fn serve(&mut self, rx: &Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match rx.try_recv() {
                    Ok(cmd) => group.push(cmd),
                    Err(_) => break,
                }
            }
            self.handle_group(group);
        }
    }

    fn to_syncer(&self, job: SyncJob) {
        if let Some(tx) = &self.sync_tx {
            if let Err(crossbeam_channel::SendError(job)) = tx.send(job) {
                // The syncer is gone: fsync here instead.
                self.sync_here(job);
            }
        } else {
            self.sync_here(job);
        }
    }

    fn sync_here(&self, job: SyncJob) {
        let result = timed_sync(self.backend.as_ref(), &self.stats);
        finish(&self.notifier, vec![job], &result);
    }

    fn handle_group(&mut self, group: Vec<Command>) {
        let mut appends = Vec::new();
        for cmd in group {
            match cmd {
                Command::Append(a, ack) => appends.push((a, ack)),
                Command::Flush(ack) => {
                    self.commit_appends(std::mem::take(&mut appends));
                    self.to_syncer(SyncJob::Flush(ack));
                }
                Command::Rebuild(progress, ack) => {
                    self.commit_appends(std::mem::take(&mut appends));
                    let _ = ack.send(self.rebuild(progress));
                }
            }
        }
        self.commit_appends(appends);
    }

    fn commit_appends(&mut self, appends: Vec<(Append, oneshot::Sender<Result<Appended>>)>) {
        if appends.is_empty() {
            return;
        }
        let started = Instant::now();
        let at = now_micros();
        let mut overlay = Overlay::new();
        let mut ops = Vec::new();
        let mut staged_heads: HashMap<StreamId, Seq> = HashMap::default();
        let mut staged = Vec::with_capacity(appends.len());
        let mut durable_streams: HashSet<StreamId> = HashSet::default();
        let mut position = self.next_position;
        // Runs of records of one stream with consecutive positions.
        let mut segments: Vec<Vec<Record>> = Vec::new();
        let mut segment: Vec<Record> = Vec::new();
        for (mut append, ack) in group_by_stream(appends) {
            if segment.first().is_some_and(|r| r.stream != append.stream) {
                segments.push(std::mem::take(&mut segment));
            }
            match self.stage(&mut append, at, &mut position, &mut staged_heads, &mut overlay, &mut segment) {
                Ok(appended) => {
                    if append.durable && !durable_streams.contains(&append.stream) {
                        durable_streams.insert(append.stream.clone());
                    }
                    staged.push(Staged { ack, appended, durable: append.durable })
                }
                Err(e) => {
                    self.stats.failed_appends.fetch_add(1, Relaxed);
                    let _ = ack.send(Err(e));
                }
            }
        }
        segments.push(segment);
        if staged.is_empty() {
            return;
        }
        segments.retain(|s| !s.is_empty());
        let plan = match self.push_group(&mut ops, &segments, &durable_streams, position) {
            Ok(plan) => plan,
            Err(e) => {
                self.fail_all(staged, &e);
                self.reload();
                return;
            }
        };
        let last_position = position - 1;
        if !self.projectors.is_empty() {
            match reader::cursors_op(&self.projectors, &vec![last_position; self.projectors.len()]) {
                Ok(op) => ops.push(op),
                Err(e) => {
                    self.fail_all(staged, &e);
                    self.reload();
                    return;
                }
            }
        }
        ops.extend(overlay.into_iter().map(|(k, v)| match v {
            Some(v) => Op::Put(k, v),
            None => Op::Delete(k),
        }));
        if let Err(e) = self.backend.commit(ops) {
            self.fail_all(staged, &e);
            self.reload();
            return;
        }
        self.stats.commits.fetch_add(1, Relaxed);
        self.stats.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        self.next_position = position;
        self.apply_index_plan(plan);
        if self.heads.len() + staged_heads.len() > MAX_CACHED_HEADS {
            self.heads.clear();
        }
        self.heads.extend(staged_heads);

        let events: u64 = staged.iter().map(|s| s.appended.last_seq - s.appended.first_seq + 1).sum();
        self.stats.events.fetch_add(events, Relaxed);
        self.stats.appends.fetch_add(staged.len() as u64, Relaxed);
        let mut durable = Vec::new();
        for s in staged {
            if s.durable {
                durable.push(s);
            } else {
                let _ = s.ack.send(Ok(s.appended));
            }
        }
        self.stats.durable_appends.fetch_add(durable.len() as u64, Relaxed);
        let urgent = !durable.is_empty() || self.notifier.any_followed(&segments);
        self.to_syncer(SyncJob::Commit(Commit { segments, last_position, durable, urgent }));
    }

    /// Validates one append and stages its records and read-model updates.
    fn stage(
        &mut self,
        append: &mut Append,
        at: i64,
        position: &mut Position,
        staged_heads: &mut HashMap<StreamId, Seq>,
        overlay: &mut Overlay,
        segment: &mut Vec<Record>,
    ) -> Result<Appended> {
        if append.payloads.is_empty() {
            return Err(Error::Invalid("an append needs at least one payload".into()));
        }
        let head = match staged_heads.get(&append.stream).or_else(|| self.heads.get(&append.stream)) {
            Some(h) => *h,
            None => match held_head(&self.held, &append.stream) {
                Some(head) => head,
                None => reader::stream_head(self.backend.as_ref(), &append.stream)?,
            },
        };
        match append.expected {
            Expected::Any => {}
            Expected::NoStream if head == 0 => {}
            Expected::At(seq) if seq == head => {}
            Expected::NoStream | Expected::At(_) => {
                let expected = match append.expected {
                    Expected::At(s) => s,
                    _ => 0,
                };
                return Err(Error::Conflict { stream: append.stream.to_string(), expected, actual: head });
            }
        }
        let mut txn = KvTxn::new(self.backend.as_ref(), overlay);
        let n = append.payloads.len() as u64;
        let mut records = Vec::with_capacity(append.payloads.len());
        let decoded = std::mem::take(&mut append.decoded);
        let decoded = (decoded.len() == append.payloads.len()).then_some(decoded);
        for (i, payload) in std::mem::take(&mut append.payloads).into_iter().enumerate() {
            if let Some(d) = decoded.as_ref().and_then(|d| d.get(i)) {
                txn.preset_memo(*position + i as u64, d.clone());
            }
            let record = Record {
                stream: append.stream.clone(),
                seq: head + 1 + i as u64,
                position: *position + i as u64,
                at,
                payload,
            };
            for p in self.projectors.iter() {
                p.apply(&record, &mut txn).map_err(|e| projection_error(p.name(), &record, e))?;
            }
            records.push(record);
        }
        let writes = txn.into_writes();
        overlay.extend(writes);
        segment.extend(records);
        let appended = Appended {
            first_seq: head + 1,
            last_seq: head + n,
            first_position: *position,
            last_position: *position + n - 1,
        };
        *position += n;
        staged_heads.insert(append.stream.clone(), head + n);
        Ok(appended)
    }

    /// Writes a group commit's records as one log value and decides its
    /// segments' index entries: written now (with the entries the stream
    /// held back) or held back. `end` is the position after the group.
    fn push_group(
        &self,
        ops: &mut Vec<Op>,
        segments: &[Vec<Record>],
        durable: &HashSet<StreamId>,
        end: Position,
    ) -> Result<IndexPlan> {
        let mut plan = IndexPlan::default();
        let Some(first) = segments.first().and_then(|s| s.first()) else { return Ok(plan) };
        let group = first.position;
        ops.push(Op::Put(keys::log(group), reader::encode_group(segments)?));
        let held = self.held.lock();
        // Streams held too long are written now, with this commit's segment if it has one.
        let horizon = end.saturating_sub(MAX_LAG);
        let mut lagging: HashSet<&StreamId> =
            self.held_since.iter().take_while(|(p, _)| *p < horizon).map(|(_, s)| s).collect();
        // A commit has one segment per stream (`group_by_stream`), so `held`
        // is the stream's whole list before this segment.
        for (i, records) in segments.iter().enumerate() {
            let Some(r) = records.first() else { continue };
            let entry = IndexEntry { first_seq: r.seq, group, segment: i as u32, count: records.len() as u32 };
            let before = held.get(&r.stream).map(Vec::as_slice).unwrap_or(&[]);
            let lags = lagging.remove(&r.stream);
            if lags || durable.contains(&r.stream) || before.len() + 1 >= MAX_HELD {
                let mut entries = before.to_vec();
                entries.push(entry);
                ops.extend(reader::index_op(&r.stream, &entries));
                plan.written.insert(r.stream.clone());
            } else {
                plan.held.push((r.stream.clone(), entry));
            }
        }
        for stream in lagging {
            ops.extend(reader::index_op(stream, held.get(stream).map(Vec::as_slice).unwrap_or(&[])));
            plan.written.insert(stream.clone());
        }
        // The cursor: the oldest group with an entry still held after this commit.
        let oldest = self
            .held_since
            .iter()
            .find(|(_, s)| !plan.written.contains(s))
            .map(|(p, _)| *p)
            .or_else(|| plan.held.first().map(|_| group))
            .unwrap_or(end);
        if oldest >= self.index_cursor + CURSOR_STEP {
            ops.push(reader::index_cursor_op(oldest));
            plan.cursor = Some(oldest);
        }
        Ok(plan)
    }

    /// After the commit of `plan`: forgets the entries it wrote, holds the others.
    fn apply_index_plan(&mut self, plan: IndexPlan) {
        if plan.written.is_empty() && plan.held.is_empty() {
            return;
        }
        let mut held = self.held.lock();
        for stream in &plan.written {
            if let Some(first) = held.remove(stream).and_then(|entries| entries.first().copied()) {
                self.held_since.remove(&(first.group, stream.clone()));
            }
        }
        for (stream, entry) in plan.held {
            let entries = held.entry(stream.clone()).or_default();
            if entries.is_empty() {
                self.held_since.insert((entry.group, stream));
            }
            entries.push(entry);
        }
        if let Some(c) = plan.cursor {
            self.index_cursor = c;
        }
    }

    /// Writes every held entry and moves the cursor to the end of the log (on close).
    fn write_held_index(&mut self) {
        let held = std::mem::take(&mut *self.held.lock());
        let mut ops: Vec<Op> = held.iter().filter_map(|(stream, entries)| reader::index_op(stream, entries)).collect();
        ops.push(reader::index_cursor_op(self.next_position));
        let result = self.backend.commit(ops).and_then(|()| self.backend.sync());
        match result {
            Ok(()) => {
                self.held_since.clear();
                self.index_cursor = self.next_position;
            }
            // The log still has the segments: the next open re-indexes them.
            Err(e) => tracing::error!("cannot write the held stream index on close: {e}"),
        }
    }

    fn fail_all(&self, staged: Vec<Staged>, e: &Error) {
        self.stats.failed_appends.fetch_add(staged.len() as u64, Relaxed);
        for s in staged {
            let _ = s.ack.send(Err(Error::Io(e.to_string())));
        }
    }

    /// After a failed commit, forget cached state and re-read it from the backend.
    fn reload(&mut self) {
        self.heads.clear();
        match reader::last_position(self.backend.as_ref()) {
            Ok(p) => self.next_position = p + 1,
            Err(e) => tracing::error!("cannot re-read the log tail: {e}"),
        }
    }

    fn rebuild(&mut self, progress: Progress) -> Result<u64> {
        let n = reader::rebuild(self.backend.as_ref(), &self.projectors, progress)?;
        timed_sync(self.backend.as_ref(), &self.stats)?;
        Ok(n)
    }
}

/// Reorders a group so that appends of one stream are adjacent, keeping
/// their relative order (appends of different streams in one group are
/// concurrent, so any interleaving of them is a valid commit order).
fn group_by_stream<T>(appends: Vec<(Append, T)>) -> Vec<(Append, T)> {
    if appends.len() < 2 {
        return appends;
    }
    let mut first_seen: HashMap<StreamId, usize> = HashMap::default();
    let mut keyed: Vec<(usize, usize, (Append, T))> = appends
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let n = first_seen.len();
            let rank = *first_seen.entry(a.0.stream.clone()).or_insert(n);
            (rank, i, a)
        })
        .collect();
    keyed.sort_by_key(|(rank, i, _)| (*rank, *i));
    keyed.into_iter().map(|(_, _, a)| a).collect()
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
