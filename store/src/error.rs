//! The store's error type. Storage failures (I/O, corruption) are failures,
//! never facts: callers return them, they are never written to the log.

use std::fmt;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend (sled, the filesystem) failed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A stored record could not be decoded.
    #[error("corrupt record at {at}: {reason}")]
    Corrupt { at: Location, reason: String },
    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// Optimistic concurrency: the stream was not at the expected sequence number.
    #[error("stream {stream} is at seq {actual}, expected {expected}")]
    Conflict { stream: String, expected: u64, actual: u64 },
    /// The request itself is invalid (bad stream name, empty batch, ...).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A projector refused a record; nothing of the append was written.
    #[error("projection {projection} failed at {at}: {reason}")]
    Projection { projection: String, at: Location, reason: String },
    /// The data directory is held by another process.
    #[error("the data directory {0} is in use by another ferrify process")]
    Locked(String),
    /// The writer thread is gone (store closed or crashed).
    #[error("the store is closed")]
    Closed,
}

/// Where in the log something happened: a stream and/or a global position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub stream: Option<String>,
    pub position: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.stream, self.position) {
            (Some(s), Some(p)) => write!(f, "stream {s}, position {p}"),
            (Some(s), None) => write!(f, "stream {s}"),
            (None, Some(p)) => write!(f, "position {p}"),
            (None, None) => write!(f, "unknown location"),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
