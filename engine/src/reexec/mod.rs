//! Deterministic re-execution of a recorded run, and the diff of its stream
//! against the recorded one.
//!
//! [`Engine::reexecute`] reads a run's log (`run/<task_id>`) and the app
//! version it ran, and runs that version again on a scratch in-memory engine
//! (nothing is written to this engine's log) with:
//! - the recorded request (inputs, query, files, user) and the recorded ids;
//! - the conversation as it was when the run started (earlier turns, the
//!   conversation variables, the turn count);
//! - model calls answered by the `recorded` provider
//!   ([`crate::provider::recorded`]) and nodes that reach outside
//!   (http-request, tool, document-extractor) answered by their recorded
//!   outcomes ([`crate::workflow::replay`]); everything else — templates,
//!   conditions, aggregators, containers, code — runs for real.
//!
//! The new run's frames are then compared with the recorded ones
//! ([`diff`]: ids and clocks normalised, concurrent branches allowed to
//! interleave differently). A run that was stopped by its user, or has not
//! finished, is refused: where it stopped cannot be reproduced. Auto-played
//! audio (`tts_message` frames) is not re-executed; it is left out of both
//! sides of the comparison.

pub mod diff;

use std::borrow::Borrow;
use std::sync::Arc;

use ferrify_store::{EventLog, Options, Record, Store, StreamId};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::app::AppMode;
use crate::app_cache::AppCache;
use crate::engine::{Engine, Inner};
use crate::error::EngineError;
use crate::event::{Envelope, Event, RunStarted};
use crate::model::AppRow;
use crate::projection::trees;
use crate::provider::recorded::Recorded;
use crate::runner::workflow::{recorded_model_override, Rerun};
use crate::runner::Tap;
use crate::wire::WireRun;
use crate::workflow::replay::RecordedOutcomes;
use crate::workflow::Workflow;
pub use diff::{Divergence, RunIds};

/// Events a scratch engine holds before [`Engine::reexecute`] starts a new one.
pub const SCRATCH_EVENTS: u64 = 50_000;

/// Why a run could not be re-executed.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    #[error("run {0} not found")]
    UnknownTask(Uuid),
    #[error("the log of {0} does not start with a run")]
    NotARun(Uuid),
    #[error("app {0} of this run was deleted: its versions can no longer be run")]
    AppDeleted(Uuid),
    #[error("app {0} of this run is not in the log")]
    AppNotFound(Uuid),
    #[error("workflow version {0} of app {1} not found")]
    VersionNotFound(Uuid, Uuid),
    #[error("run {0} has not finished (it is still running, or was interrupted)")]
    Unfinished(Uuid),
    #[error("run {0} was stopped by its user: where it stopped cannot be reproduced")]
    Stopped(Uuid),
    #[error("the log of run {0} cannot be read: {1}")]
    Corrupt(Uuid, String),
    #[error("the re-executed run failed: {0}")]
    Run(EngineError),
    #[error(transparent)]
    Store(#[from] ferrify_store::Error),
}

impl From<EngineError> for ReexecError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => ReexecError::Store(s),
            other => ReexecError::Run(other),
        }
    }
}

/// How to re-execute.
#[derive(Clone, Debug, Default)]
pub struct ReexecOptions {
    /// Run this workflow version of the app instead of the run's own
    /// (workflow and advanced-chat apps): the diff then shows what the
    /// version changes.
    pub workflow_id: Option<Uuid>,
    /// Build and compare both streams' frames even when the events agree
    /// (slower; the verdict is the same).
    pub compare_frames: bool,
}

/// The result of a re-execution.
#[derive(Clone, Debug)]
pub struct Reexecution {
    pub task_id: Uuid,
    pub app_id: Uuid,
    pub mode: String,
    /// The version the run recorded, and the one that ran again.
    pub recorded_workflow_id: Option<Uuid>,
    pub workflow_id: Option<Uuid>,
    /// Frames of the recorded and of the re-executed stream.
    pub frames: usize,
    pub reexecuted_frames: usize,
    /// The first divergence; `None` when the streams agree.
    pub divergence: Option<Divergence>,
}

impl Reexecution {
    pub fn identical(&self) -> bool {
        self.divergence.is_none()
    }

    /// The report as the admin API answers it.
    pub fn to_json(&self) -> Value {
        json!({
            "task_id": self.task_id.to_string(),
            "app_id": self.app_id.to_string(),
            "mode": self.mode,
            "recorded_workflow_id": self.recorded_workflow_id.map(|w| w.to_string()),
            "workflow_id": self.workflow_id.map(|w| w.to_string()),
            "identical": self.identical(),
            "frames": self.frames,
            "reexecuted_frames": self.reexecuted_frames,
            "divergence": self.divergence.as_ref().map(Divergence::to_json),
        })
    }
}

/// A recorded run read from the log.
struct RecordedRun {
    run: RunStarted,
    trace_id: Option<String>,
    /// When the run started (Unix microseconds) and its place in the global log.
    at: i64,
    position: u64,
    /// Every event, `RunStarted` first.
    envelopes: Vec<Envelope>,
    /// How many frames its stream has.
    frames: usize,
}

/// The envelopes of a run stream.
fn decode(task: Uuid, records: &[Record]) -> Result<Vec<Envelope>, ReexecError> {
    records
        .iter()
        .map(|r| Envelope::decode(&r.payload).map_err(|e| ReexecError::Corrupt(task, e.to_string())))
        .collect()
}

/// The wire frames of a run's events.
fn frames_of<E: Borrow<Envelope>>(events: &[E]) -> Vec<Value> {
    let mut wire = WireRun::new();
    events.iter().flat_map(|e| wire.values(e.borrow())).collect()
}

/// How many frames a run's events make, and whether the last is terminal.
fn count_frames<E: Borrow<Envelope>>(events: &[E]) -> (usize, bool) {
    let mut wire = WireRun::new();
    let n = events.iter().map(|e| wire.count(e.borrow())).sum();
    (n, wire.is_done())
}

impl Engine {
    /// A scratch engine: in memory, without read models, with this engine's
    /// providers and workflow settings. Re-executed runs are written there.
    pub fn scratch(&self) -> Result<Engine, ferrify_store::Error> {
        let store = Store::open_memory(Vec::new(), Options::default())?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                providers: self.inner.providers.clone(),
                apps: Default::default(),
                api_keys: AppCache::new(crate::apps::MAX_CACHED_KEYS),
                annotation_settings: AppCache::new(crate::annotation::MAX_CACHED_SETTINGS),
                running: Default::default(),
                conversation_locks: Default::default(),
                closing: Default::default(),
                workflow_settings: self.inner.workflow_settings.clone(),
                workflows: Default::default(),
                files: self.inner.files.clone(),
                signer: self.inner.signer.clone(),
                // Uploaded files are read from the real storage (re-execution never uploads).
                blobs: self.inner.blobs.clone(),
                reexec_scratch: tokio::sync::Mutex::new(None),
                // One re-execution at a time: no caps on runs in flight; the wall time holds.
                limits: crate::limits::RunLimits {
                    max_concurrent_runs: 0,
                    max_concurrent_runs_per_key: 0,
                    ..self.inner.limits.clone()
                },
                slots: Default::default(),
                annotation_jobs: Default::default(),
                // Audio is not re-executed.
                audio: None,
                tasks: Default::default(),
                held_runs: Default::default(),
            }),
        })
    }

    /// Re-executes run `task` and diffs it against the recording. Writes
    /// nothing to this engine: the run goes to this engine's scratch engine
    /// (kept between re-executions, which it serves one at a time, and
    /// renewed once it holds [`SCRATCH_EVENTS`] events).
    pub async fn reexecute(&self, task: Uuid, options: &ReexecOptions) -> Result<Reexecution, ReexecError> {
        let mut slot = self.inner.reexec_scratch.lock().await;
        let scratch = match slot.as_ref() {
            Some(s) if s.store().last_position()? < SCRATCH_EVENTS => s.clone(),
            _ => {
                if let Some(old) = slot.take() {
                    // Closing joins its writer thread: off the async workers.
                    tokio::task::spawn_blocking(move || old.close());
                }
                let fresh = self.scratch()?;
                *slot = Some(fresh.clone());
                fresh
            }
        };
        self.reexecute_on(&scratch, task, options).await
    }

    /// Re-executes run `task` on `scratch` (an engine of [`Engine::scratch`],
    /// which may serve many re-executions of distinct runs).
    pub async fn reexecute_on(
        &self,
        scratch: &Engine,
        task: Uuid,
        options: &ReexecOptions,
    ) -> Result<Reexecution, ReexecError> {
        let recorded = self.recorded_run(task)?;
        let run = &recorded.run;
        let row = self
            .store()
            .get_json::<AppRow>(trees::APPS, run.app_id.as_bytes())?
            .ok_or(ReexecError::AppNotFound(run.app_id))?;
        if row.deleted {
            return Err(ReexecError::AppDeleted(run.app_id));
        }
        let app = self.app(run.app_id)?.ok_or(ReexecError::AppDeleted(run.app_id))?;
        let events = || recorded.envelopes.iter().map(|e| &e.event);
        let model = Arc::new(Recorded::from_events(events()));
        let existing_conversation = run.conversation_id.filter(|_| run.new_conversation.is_none());
        let mode = AppMode::parse(&run.mode);
        // The new run's events as appended to the scratch log (which may hold
        // earlier re-executions of this run).
        let stream = StreamId::of("run", task)?;
        let head = scratch.store().stream_head(&stream)?;
        let tap = Tap::default();
        let replied = events().find_map(|e| match e {
            Event::AnnotationReplied { annotation_id, score, .. } => Some((*annotation_id, *score)),
            _ => None,
        });
        let (accepted, workflow_id) = match (mode, replied, run.conversation_id) {
            // Answered from an annotation: the recorded match answers again
            // (the annotations may have changed since).
            (Some(mode), Some((annotation_id, score)), Some(conversation_id)) => {
                let answer = events()
                    .find_map(|e| match e {
                        Event::MessageEnded { answer, .. } => Some(answer.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let annotation = crate::model::AnnotationRow {
                    id: annotation_id,
                    app_id: run.app_id,
                    question: String::new(),
                    answer,
                    hit_count: 0,
                    created_at: recorded.at,
                    updated_at: recorded.at,
                    embedding: None,
                };
                let turn = crate::annotation::reply::AnnotationTurn {
                    app_id: run.app_id,
                    mode,
                    end_user: run.end_user_id,
                    user: run.user.clone(),
                    query: run.query.clone(),
                    inputs: match &run.inputs.0 {
                        Value::Object(m) => m.clone(),
                        _ => Map::new(),
                    },
                    files: run.files.0.clone(),
                    streaming: run.streaming,
                    trace_id: recorded.trace_id.clone(),
                    conversation_id,
                    new_conversation: run.new_conversation.clone(),
                    guard: Some(scratch.lock_conversation(conversation_id).await),
                    annotation,
                    score,
                    ids: Some((run.task_id, run.message_id.unwrap_or_else(Uuid::new_v4))),
                    tap: Some(tap.clone()),
                    slot: scratch.admit(None)?,
                };
                (scratch.answer_from_annotation(turn).await, None)
            }
            (Some(AppMode::Workflow | AppMode::AdvancedChat), _, _) => {
                let version = options.workflow_id.or(run.workflow_id).unwrap_or_else(Uuid::nil);
                let wf = self.workflow(&app, Some(version)).map_err(|e| match e {
                    EngineError::NotFound(_) => ReexecError::VersionNotFound(version, run.app_id),
                    other => ReexecError::Run(other),
                })?;
                let history = match existing_conversation {
                    Some(c) if mode == Some(AppMode::AdvancedChat) => self.history(c, Some(recorded.at))?,
                    _ => Vec::new(),
                };
                let conversation_values = match (mode, run.conversation_id) {
                    (Some(AppMode::AdvancedChat), Some(c)) => {
                        self.conversation_values_at(&wf, existing_conversation.map(|_| (c, recorded.position)))?
                    }
                    _ => Map::new(),
                };
                let rerun = Rerun {
                    task_id: run.task_id,
                    workflow_run_id: run.workflow_run_id.unwrap_or_else(Uuid::new_v4),
                    message_id: run.message_id,
                    history,
                    conversation_values,
                    providers: self.providers().replaying(model, recorded_model_override(&run.options.0)),
                    outcomes: Arc::new(RecordedOutcomes::from_events(events())),
                    tap: tap.clone(),
                };
                let id = wf.id;
                let accepted = scratch.rerun_workflow(run, wf, rerun, recorded.trace_id.clone()).await;
                (accepted, Some(id))
            }
            (_, _, _) => {
                let history = match existing_conversation {
                    Some(c) if run.mode == "chat" => self.history(c, Some(recorded.at))?,
                    _ => Vec::new(),
                };
                let forced = run.options.0.get("model").and_then(|m| {
                    Some((m.get("provider")?.as_str()?.to_string(), m.get("name")?.as_str()?.to_string()))
                });
                let providers = self.providers().replaying(model, forced);
                let accepted = scratch
                    .rerun_easy(&app.spec, run, history, &providers, recorded.trace_id.clone(), tap.clone())
                    .await;
                (accepted, None)
            }
        };
        let accepted = accepted?;
        let outcome = accepted.outcome.ok_or_else(|| {
            ReexecError::Run(EngineError::AppUnavailable("the re-executed run has no outcome".into()))
        })?;
        match outcome.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ReexecError::Run(e)),
            Err(_) => {
                return Err(ReexecError::Run(EngineError::AppUnavailable(
                    "the re-executed run ended without an outcome".into(),
                )))
            }
        }
        let envelopes = tap.take();
        let appended = scratch.store().stream_head(&stream)? - head;
        if appended != envelopes.len() as u64 {
            let e = format!("the re-executed run appended {appended} events, {} were seen", envelopes.len());
            return Err(ReexecError::Run(EngineError::AppUnavailable(e)));
        }
        let new_ids = match envelopes.first().map(|e| &e.event) {
            Some(Event::RunStarted(r)) => RunIds::of(r),
            _ => return Err(ReexecError::NotARun(task)),
        };
        let fast = !options.compare_frames && diff::events_match(&recorded.envelopes, &envelopes);
        let (reexecuted_frames, divergence) = if fast {
            (count_frames(&envelopes).0, None)
        } else {
            let frames = frames_of(&envelopes);
            let n = frames.len();
            (n, diff::compare(frames_of(&recorded.envelopes), &RunIds::of(run), frames, &new_ids))
        };
        Ok(Reexecution {
            task_id: task,
            app_id: run.app_id,
            mode: run.mode.clone(),
            recorded_workflow_id: run.workflow_id,
            workflow_id,
            frames: recorded.frames,
            reexecuted_frames,
            divergence,
        })
    }

    /// Reads a finished, not stopped run from the log.
    fn recorded_run(&self, task: Uuid) -> Result<RecordedRun, ReexecError> {
        let stream = StreamId::of("run", task)?;
        let records = self.store().read_stream(&stream, 1, usize::MAX)?;
        let Some(first) = records.first() else { return Err(ReexecError::UnknownTask(task)) };
        let position = first.position;
        let envelopes = decode(task, &records)?;
        let (frames, done) = count_frames(&envelopes);
        let (run, trace_id, at) = match envelopes.first() {
            Some(Envelope { event: Event::RunStarted(run), trace_id, at }) => ((**run).clone(), trace_id.clone(), *at),
            _ => return Err(ReexecError::NotARun(task)),
        };
        if envelopes.iter().any(|e| matches!(e.event, Event::StopRequested { .. })) {
            return Err(ReexecError::Stopped(task));
        }
        if !done {
            return Err(ReexecError::Unfinished(task));
        }
        let (run, envelopes, frames) = if run.options.0.get("tts").is_some() {
            // Auto-played audio is not re-executed: compare the run without it.
            let mut run = run;
            if let Value::Object(options) = &mut run.options.0 {
                options.remove("tts");
            }
            let envelopes: Vec<Envelope> = envelopes
                .into_iter()
                .filter(|e| !matches!(e.event, Event::TtsAudio { .. } | Event::TtsEnded))
                .map(|mut e| {
                    if let Event::RunStarted(r) = &mut e.event {
                        **r = run.clone();
                    }
                    e
                })
                .collect();
            let frames = count_frames(&envelopes).0;
            (run, envelopes, frames)
        } else {
            (run, envelopes, frames)
        };
        Ok(RecordedRun { run, trace_id, at, position, envelopes, frames })
    }

    /// The conversation variables of `wf` as they were just before global
    /// position `before` in conversation `conversation` (declared defaults
    /// for a new conversation, or variables never written).
    fn conversation_values_at(
        &self,
        wf: &Workflow,
        conversation: Option<(Uuid, u64)>,
    ) -> Result<Map<String, Value>, ReexecError> {
        let mut out = Map::new();
        for v in &wf.conversation_variables {
            out.insert(v.name.clone(), v.value.clone());
        }
        let Some((id, before)) = conversation else { return Ok(out) };
        let stream = StreamId::of("conversation", id)?;
        for record in self.store().read_stream(&stream, 1, usize::MAX)? {
            if record.position >= before {
                break;
            }
            let env = Envelope::decode(&record.payload).map_err(|e| ReexecError::Corrupt(id, e.to_string()))?;
            if let Event::ConversationVariableUpdated { name, value, .. } = env.event {
                if out.contains_key(&name) {
                    out.insert(name, value.0);
                }
            }
        }
        Ok(out)
    }

    /// Task ids of an app's runs (chat turns, completions, workflow runs), oldest first.
    pub fn app_run_tasks(&self, app_id: Uuid) -> Result<Vec<Uuid>, ferrify_store::Error> {
        let mut runs: Vec<(i64, Uuid)> = Vec::new();
        for (k, _) in self.store().scan(trees::APP_RUNS, app_id.as_bytes(), None, usize::MAX, false)? {
            let Ok(id) = Uuid::from_slice(&k[k.len().saturating_sub(16)..]) else { continue };
            if let Some(r) =
                self.store().get_json::<crate::model::WorkflowRunRow>(trees::WORKFLOW_RUNS, id.as_bytes())?
            {
                runs.push((r.created_at, r.task_id));
            }
        }
        // Messages have no per-app index: a full scan (chat turns of chatflows are workflow runs already).
        for (_, v) in self.store().scan(trees::MESSAGES, b"", None, usize::MAX, false)? {
            let Ok(m) = ferrify_store::codec::from_json::<crate::model::MessageRow>(&v) else { continue };
            if m.app_id == app_id && m.workflow_run_id.is_none() {
                runs.push((m.created_at, m.task_id));
            }
        }
        runs.sort();
        runs.dedup_by_key(|r| r.1);
        Ok(runs.into_iter().map(|(_, t)| t).collect())
    }
}

/// A short, human-readable account of a divergence.
pub fn describe(d: &Divergence) -> String {
    let place = match (d.index, d.reexecuted_index) {
        (Some(i), Some(j)) if i == j => format!("frame {i}"),
        (Some(i), Some(j)) => format!("frame {i} (re-executed frame {j})"),
        (Some(i), None) => format!("frame {i} (missing from the re-execution)"),
        (None, Some(j)) => format!("re-executed frame {j} (not in the recording)"),
        (None, None) => "a frame".to_string(),
    };
    let node = match (&d.node_id, &d.title) {
        (Some(n), Some(t)) if !t.is_empty() => format!(" of node {n} ({t})"),
        (Some(n), _) => format!(" of node {n}"),
        _ => String::new(),
    };
    let field = d.field.as_ref().map(|f| format!(", at {f}")).unwrap_or_default();
    format!("{place}: {}{node}{field}", d.event)
}
