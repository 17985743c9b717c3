//! Runs that have not recorded their terminal event yet: in flight, or cut
//! off by a crash (closed at the next start, see `crate::recovery`).
//!
//! Terminal: `MessageEnded`, `RunFailed`, `RunInterrupted`, and for
//! workflow apps a `WorkflowFinished` that did not fail (a failed one is
//! followed by `RunFailed`). A run that auto-plays its answer (`tts` in its
//! options) ends with `TtsEnded` instead (after `MessageEnded`, or after a
//! workflow's `WorkflowFinished`).
//!
//! The value is the run's mode, followed by `\ntts` for such runs.

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, stream_id, trees};
use crate::event::Event;

/// Marks the value of a run whose audio follows its message.
const TTS_MARK: &[u8] = b"\ntts";

pub struct OpenRuns;

impl Projector for OpenRuns {
    fn name(&self) -> &str {
        "open_runs"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(task_id) = stream_id(record, "run") else {
            return Ok(());
        };
        let env = decode(record, kv)?;
        let closes = match &env.event {
            Event::RunStarted(run) => {
                let mut value = run.mode.as_bytes().to_vec();
                if run.options.0.get("tts").is_some() {
                    value.extend_from_slice(TTS_MARK);
                }
                kv.put(trees::OPEN_RUNS, task_id.as_bytes(), value);
                return Ok(());
            }
            Event::MessageEnded { .. } => {
                !kv.get(trees::OPEN_RUNS, task_id.as_bytes())?.is_some_and(|value| value.ends_with(TTS_MARK))
            }
            Event::RunFailed { .. } | Event::RunInterrupted { .. } | Event::TtsEnded => true,
            Event::WorkflowFinished(f) if f.status != "failed" => {
                kv.get(trees::OPEN_RUNS, task_id.as_bytes())?.is_some_and(|mode| mode == b"workflow")
            }
            _ => false,
        };
        if closes {
            kv.delete(trees::OPEN_RUNS, task_id.as_bytes());
        }
        Ok(())
    }
}
