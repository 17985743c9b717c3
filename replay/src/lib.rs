//! ferrify-replay: tools that read the log back.
//!
//! - [`rebuild`]: clear and re-apply every read model;
//! - [`transcript`]: a past run's stream as served, as JSON lines or a timeline;
//! - [`reexec`]: deterministic re-execution of a run and the diff against the recorded one.

pub mod rebuild;
pub mod reexec;
pub mod transcript;
