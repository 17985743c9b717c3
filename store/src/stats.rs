//! Counters the writer keeps, read by `/metrics` and the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct Stats {
    pub appends: AtomicU64,
    pub durable_appends: AtomicU64,
    pub events: AtomicU64,
    pub fsyncs: AtomicU64,
    pub commits: AtomicU64,
    pub failed_appends: AtomicU64,
    pub fsync_micros: AtomicU64,
    pub commit_micros: AtomicU64,
    pub follower_reads: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            appends: self.appends.load(Relaxed),
            durable_appends: self.durable_appends.load(Relaxed),
            events: self.events.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            commits: self.commits.load(Relaxed),
            failed_appends: self.failed_appends.load(Relaxed),
            fsync_micros: self.fsync_micros.load(Relaxed),
            commit_micros: self.commit_micros.load(Relaxed),
            follower_reads: self.follower_reads.load(Relaxed),
        }
    }
}

/// A copy of the writer's counters since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Append batches acknowledged.
    pub appends: u64,
    /// Of which asked for durability.
    pub durable_appends: u64,
    /// Records written.
    pub events: u64,
    /// fsyncs performed (group commits that covered durable appends, timer flushes, explicit flushes;
    /// with a volatile backend, which has nothing to fsync, every commit counts as one).
    pub fsyncs: u64,
    /// Atomic backend batches written.
    pub commits: u64,
    /// Appends refused (conflict, invalid, projection refusal, I/O).
    pub failed_appends: u64,
    /// Microseconds spent in fsyncs.
    pub fsync_micros: u64,
    /// Microseconds the writer spent building and writing commits (from the first staged append
    /// to the backend batch written).
    pub commit_micros: u64,
    /// Reads of the backend by stream followers whose next record was not in
    /// the stream's in-memory tail (a reader starting behind, or falling behind).
    pub follower_reads: u64,
}
