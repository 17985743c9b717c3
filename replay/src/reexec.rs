//! Deterministic re-execution of a recorded run and the diff of its stream
//! against the recorded one.

use ferrify_engine::EngineConfig;
use uuid::Uuid;

/// Re-executes one run and prints the result; true when it diverged.
pub fn cli_one(config: &EngineConfig, task: Uuid) -> anyhow::Result<bool> {
    let _ = (config, task);
    anyhow::bail!("re-execution is not available yet")
}

/// Re-executes every run of an app with a progress bar and prints a summary; true when any diverged.
pub fn cli_app(config: &EngineConfig, app: Uuid) -> anyhow::Result<bool> {
    let _ = (config, app);
    anyhow::bail!("re-execution is not available yet")
}
