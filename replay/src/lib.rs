//! ferrify-replay: tools that read the log back — rebuilding read models
//! (this module), and later stream transcripts, deterministic re-execution
//! and diffs.

pub mod rebuild;
