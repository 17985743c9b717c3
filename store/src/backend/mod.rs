//! Backends: an ordered keyspace with atomic batches and an explicit sync.
//!
//! The [`Backend`] trait is the seam between the log's logic (writer, reads,
//! projections, subscriptions — all backend-agnostic) and where bytes live.
//! No backend type leaks past this module.

pub mod memory;
pub mod sled;

use crate::error::Result;

/// One write inside an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Key-value pairs, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered byte keyspace.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` pairs with `start <= key < end` (`end: None` = unbounded),
    /// ascending, or descending when `reverse`.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs>;
    /// Applies all `ops` atomically: after a crash either all or none are visible.
    fn commit(&self, ops: Vec<Op>) -> Result<()>;
    /// Makes every committed batch durable.
    fn sync(&self) -> Result<()>;
    /// Whether nothing outlives the process, so [`Backend::sync`] has nothing
    /// to wait for (the writer then needs no fsync thread).
    fn volatile(&self) -> bool {
        false
    }
}
