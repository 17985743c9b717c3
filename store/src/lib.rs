//! ferrify-store: the append-only log and the read-model storage.
//!
//! This crate knows nothing of apps, runs or events: it keeps opaque payloads
//! in [`Record`]s grouped in streams, plus key-value read-model trees that
//! [`Projector`]s maintain. It promises ordering, atomicity and durability
//! (see [`EventLog`]).
//!
//! Layout:
//! - [`record`]: stream names, records, append requests;
//! - [`log`]: the [`EventLog`] trait and [`Store`], the one implementation over any backend;
//! - `writer`: the single writer thread with group commit;
//! - `reader`: decoding, scans, projection catch-up and rebuild;
//! - [`kv`]: read-model access and the [`Projector`] hook;
//! - `backend`: where bytes live (`sled` on disk, `memory`);
//! - [`codec`]: every encoding (versioned bincode envelope, JSON read models);
//! - [`blob`]: bytes kept beside the log (uploaded files): local directory, memory, S3;
//! - `keys`: the key layout shared by the backends.

pub mod blob;
pub mod codec;
pub mod error;
pub mod kv;
pub mod log;
pub mod record;

mod backend;
mod keys;
mod notify;
mod reader;
mod stats;
mod writer;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

pub use error::{Error, Location, Result};
pub use kv::{KvTxn, Projector};
pub use log::{EventLog, GlobalSubscription, Options, PendingAppend, PendingFlush, Store, Subscription};
pub use record::{Append, Appended, Expected, Position, Record, Seq, StreamId};
pub use stats::StatsSnapshot;
pub use writer::Progress;
