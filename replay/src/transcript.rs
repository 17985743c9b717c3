//! `ferrify replay TASK_ID`: a past run's stream as it was served (SSE), as
//! JSON lines, or as a timeline of its nodes.

use ferrify_engine::EngineConfig;
use uuid::Uuid;

/// How a transcript is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The SSE frames exactly as served (without `id:` lines).
    Sse,
    /// One data frame per line.
    Json,
    /// A table of nodes: start offset, duration, status, tokens.
    Timeline,
}

/// Prints run `task` of the log in `config.data_dir` to stdout; `speed`
/// paces the frames by their recorded timestamps.
pub fn cli(config: &EngineConfig, task: Uuid, format: Format, speed: Option<f64>) -> anyhow::Result<()> {
    let _ = (config, task, format, speed);
    anyhow::bail!("replay transcripts are not available yet")
}
