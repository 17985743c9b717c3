//! Crash recovery: at start, every run the log shows without its terminal
//! event (the server stopped while it ran) is closed, so that history,
//! streams and resume all see an ended run. A run the log refused an event
//! of closes itself the same way, once the log takes appends again
//! ([`Engine::close_refused_run`]).
//!
//! For each such run the recovery appends, in one durable batch: a failed
//! end for every node execution and iteration/loop still open (innermost
//! first), a failed `WorkflowFinished` for workflow and advanced-chat runs
//! that had not finished, and `RunInterrupted` carrying the partial answer,
//! which streams as Dify's `error` event. A run whose message had ended and
//! whose auto-played audio had not is closed by `TtsEnded` alone. Nothing
//! recorded before is changed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferrify_store::{EventLog, StreamId};
use serde_json::json;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::Result;
use crate::event::{ContainerCompleted, Envelope, Event, NodeFinished, WorkflowFinished};
use crate::json::Json;
use crate::projection::trees;

/// The error an interrupted run ends with.
pub const INTERRUPTED: &str = "interrupted: the server stopped during this run";

/// The error a run ends with when the log refused one of its events.
pub const REFUSED: &str = "interrupted: the log refused an event of this run";

/// Records read per batch while scanning a run.
const BATCH: usize = 4096;

/// The first and the longest wait between two attempts to close a refused
/// run ([`Engine::close_refused_run`]).
const FIRST_RETRY: Duration = Duration::from_millis(20);
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// How an attempt to close a refused run went.
enum Closing {
    Done,
    /// The log is closed: the next start's recovery closes the run.
    LogClosed,
    Refused(crate::EngineError),
}

/// Something a run opened and did not close.
enum Open {
    Node { started_at: i64, node_id: String, node_type: String, inputs: Json },
    Container { started_at: i64, kind: String, node_id: String },
}

impl Engine {
    /// Closes every run left without a terminal event; returns how many.
    pub async fn close_interrupted_runs(&self) -> Result<usize> {
        let open = self.store().scan(trees::OPEN_RUNS, &[], None, usize::MAX, false)?;
        let mut closed = 0;
        for (key, _) in open {
            let Some(task_id) = key.get(key.len().saturating_sub(16)..).and_then(|k| Uuid::from_slice(k).ok()) else {
                continue;
            };
            if self.inner.running.lock().contains_key(&task_id) {
                continue; // in flight in this process
            }
            let stream = StreamId::of("run", task_id)?;
            let events = self.closing_events(&stream, INTERRUPTED)?;
            if events.is_empty() {
                continue;
            }
            self.append_run(&stream, events).await?;
            closed += 1;
        }
        Ok(closed)
    }

    /// Closes the run recorded on `stream` after the log refused one of its
    /// events (the run stopped there): the events recovery would write, with
    /// [`REFUSED`] as the error, so that a client following the stream gets
    /// Dify's `error` event and the end of the stream.
    ///
    /// A refusal may pass (a full disk that was cleared, a failed write that
    /// a retry gets through): this tries again, waiting longer each time, for
    /// up to `limits.refused_run_hold` while the caller holds the run's slot
    /// and conversation. Past that it returns, and a background task goes on
    /// trying every [`LONGEST_RETRY`] until the log takes the close or is
    /// closed (the next start's recovery closes the run then). Returns
    /// whether the run is closed (or was already).
    pub(crate) async fn close_refused_run(&self, stream: &StreamId) -> bool {
        let deadline = Instant::now() + self.limits().refused_run_hold;
        let mut wait = FIRST_RETRY;
        loop {
            match self.try_close_refused(stream).await {
                Closing::Done => return true,
                Closing::LogClosed => return false,
                Closing::Refused(e) if Instant::now() + wait > deadline => {
                    tracing::warn!(%stream, "a refused run is not closed yet; trying on in the background: {e}");
                    // Not counted among the engine's tasks: shutdown does not
                    // wait for it, and the closed log ends it.
                    let (engine, stream) = (self.clone(), stream.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(LONGEST_RETRY).await;
                            match engine.try_close_refused(&stream).await {
                                Closing::Refused(_) => continue,
                                Closing::Done | Closing::LogClosed => return,
                            }
                        }
                    });
                    return false;
                }
                Closing::Refused(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_RETRY);
                }
            }
        }
    }

    /// One attempt at [`Engine::close_refused_run`].
    async fn try_close_refused(&self, stream: &StreamId) -> Closing {
        let attempt = match self.closing_events(stream, REFUSED) {
            Ok(events) if events.is_empty() => return Closing::Done,
            Ok(events) => self.append_run(stream, events).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => Closing::Done,
            Err(crate::EngineError::Store(ferrify_store::Error::Closed)) => Closing::LogClosed,
            Err(e) => Closing::Refused(e),
        }
    }

    /// The events that close the run recorded on `stream`, with `message` as the error.
    fn closing_events(&self, stream: &StreamId, message: &str) -> Result<Vec<Envelope>> {
        let mut workflow = false;
        let mut workflow_app = false;
        let mut tts = false;
        let mut spoken = false;
        let mut finished = false;
        let mut answer = String::new();
        let mut started_at = None;
        let mut steps = 0u64;
        let mut open: Vec<(Uuid, Open)> = Vec::new();
        let mut from = 1;
        loop {
            let records = self.store().read_stream(stream, from, BATCH)?;
            let Some(last) = records.last() else { break };
            from = last.seq + 1;
            for record in &records {
                let env = Envelope::decode(&record.payload).map_err(ferrify_store::Error::from)?;
                match env.event {
                    Event::RunStarted(run) => {
                        workflow = run.workflow_run_id.is_some();
                        workflow_app = run.mode == "workflow";
                        tts = run.options.0.get("tts").is_some();
                        started_at = Some(env.at);
                    }
                    Event::AnswerChunk { text, .. } => answer.push_str(&text),
                    Event::AnswerReplaced { answer: replaced, .. } => answer = replaced,
                    Event::NodeStarted(n) => {
                        steps += 1;
                        let node = Open::Node {
                            started_at: env.at,
                            node_id: n.node_id,
                            node_type: n.node_type,
                            inputs: n.inputs,
                        };
                        open.push((n.node_execution_id, node));
                    }
                    Event::NodeFinished(n) => open.retain(|(id, o)| !(*id == n.node_execution_id && is_node(o))),
                    Event::NodeRetried { finished: n, .. } => {
                        open.retain(|(id, o)| !(*id == n.node_execution_id && is_node(o)))
                    }
                    Event::ContainerStarted(c) => open.push((
                        c.node_execution_id,
                        Open::Container { started_at: env.at, kind: c.kind, node_id: c.node_id },
                    )),
                    Event::ContainerCompleted(c) => open.retain(|(id, o)| *id != c.node_execution_id || is_node(o)),
                    Event::WorkflowFinished(f) => {
                        finished = true;
                        // A workflow's auto-play follows its (not failed) end: only the audio was cut.
                        spoken |= tts && workflow_app && f.status != "failed";
                    }
                    Event::MessageEnded { .. } if tts => spoken = true,
                    Event::MessageEnded { .. }
                    | Event::RunFailed { .. }
                    | Event::RunInterrupted { .. }
                    | Event::TtsEnded => {
                        return Ok(Vec::new()); // already ended
                    }
                    _ => {}
                }
            }
        }
        let Some(started_at) = started_at else { return Ok(Vec::new()) };
        let now = self.now().max(started_at);
        if spoken {
            return Ok(vec![Envelope::new(now, None, Event::TtsEnded)]);
        }
        let secs_since = |at: i64| ((now - at).max(0) as f64) / 1e6;
        let error = Some(message.to_string());
        let mut events = Vec::new();
        let mut seen = HashSet::new();
        for (id, o) in open.into_iter().rev() {
            // A node execution id opens a node and, for containers, its rounds: close each once.
            if !seen.insert((id, is_node(&o))) {
                continue;
            }
            let event = match o {
                Open::Node { started_at, node_id, node_type, inputs } => Event::NodeFinished(Box::new(NodeFinished {
                    node_execution_id: id,
                    node_id,
                    node_type,
                    status: "failed".into(),
                    inputs,
                    process_data: Json(json!({})),
                    outputs: Json(json!({})),
                    error: error.clone(),
                    elapsed_time: secs_since(started_at),
                    execution_metadata: Json(json!({})),
                })),
                Open::Container { started_at, kind, node_id } => {
                    Event::ContainerCompleted(Box::new(ContainerCompleted {
                        kind,
                        node_execution_id: id,
                        node_id,
                        inputs: Json(json!({})),
                        outputs: Json(json!({})),
                        status: "failed".into(),
                        error: error.clone(),
                        elapsed_time: secs_since(started_at),
                        total_tokens: 0,
                        steps: 0,
                    }))
                }
            };
            events.push(Envelope::new(now, None, event));
        }
        if workflow && !finished {
            let f = WorkflowFinished {
                status: "failed".into(),
                outputs: Json(json!({})),
                error: error.clone(),
                total_tokens: 0,
                total_steps: steps,
                exceptions_count: 0,
                elapsed_time: secs_since(started_at),
            };
            events.push(Envelope::new(now, None, Event::WorkflowFinished(Box::new(f))));
        }
        events.push(Envelope::new(now, None, Event::RunInterrupted { answer, message: message.into() }));
        Ok(events)
    }
}

fn is_node(o: &Open) -> bool {
    matches!(o, Open::Node { .. })
}
