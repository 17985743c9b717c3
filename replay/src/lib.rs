//! ferrify-replay: tools that read the log back.
//!
//! - [`rebuild`]: clear and re-apply every read model;
//! - [`transcript`]: a past run's stream as served, or as JSON lines;
//! - [`timeline`]: a run's node executions (or model calls) with their times, status and tokens;
//! - [`reexec`]: deterministic re-execution of a run and the diff against the recorded one.

pub mod rebuild;
pub mod reexec;
pub mod timeline;
pub mod transcript;
