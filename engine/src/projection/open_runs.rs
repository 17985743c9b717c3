//! Runs that have not recorded their terminal event yet: in flight, or cut
//! off by a crash (closed at the next start, see `crate::recovery`).
//!
//! Terminal: `MessageEnded`, `RunFailed`, `RunInterrupted`, and for
//! workflow apps a `WorkflowFinished` that did not fail (a failed one is
//! followed by `RunFailed`).

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, stream_id, trees};
use crate::event::Event;

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
                kv.put(trees::OPEN_RUNS, task_id.as_bytes(), run.mode.as_bytes().to_vec());
                return Ok(());
            }
            Event::MessageEnded { .. } | Event::RunFailed { .. } | Event::RunInterrupted { .. } => true,
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
