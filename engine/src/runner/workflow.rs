//! Workflow and advanced-chat runs: accept the request (version, inputs,
//! conversation), seed the variable pool, run the graph engine in its own
//! task, and record its events on the run stream (held while the run is
//! busy, handed to the writer in batches).
//!
//! ```text
//! RunStarted ─ (NodeStarted │ NodeFinished │ Container* │ ModelCalled │ ModelAnswered │ TextChunk │ AnswerChunk)*
//!            ─ WorkflowFinished ─ (AnswerReplaced) ─ MessageEnded   (advanced-chat, succeeded or stopped;
//!                                                              AnswerReplaced: output moderation)
//!                                                   └─ TtsAudio* ─ TtsEnded   (advanced-chat with auto-play)
//!                               ├ TtsAudio* ─ TtsEnded   (workflow with auto-play, succeeded or stopped)
//!                               └ RunFailed           (failed: "Run failed: …")
//! ```

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Instant;

use ferrify_store::{EventLog, PendingAppend, StreamId};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::easy::{Accepted, MessageRequest};
use super::moderated::PresetTurn;
use super::{end_user_id, forget_acknowledged, run_append, Handed, RunHandle, Tap};
use crate::annotation::reply::AnnotationTurn;
use crate::app::{form, AppMode};
use crate::apps::LoadedApp;
use crate::engine::{Engine, Stoppable};
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event, NewConversation, RunStarted, WorkflowFinished};
use crate::files::input::UploadConfig;
use crate::json::Json;
use crate::limits::RunSlot;
use crate::model::WorkflowVersionRow;
use crate::moderation::{self, Moderation};
use crate::projection::trees;
use crate::provider::{PromptMessage, Providers};
use crate::wire::{Outcome, WireRun};
use crate::workflow::executor::{run_scope, EventSink, RunCx, ScopePos, StopSignal};
use crate::workflow::nodes::NodeError;
use crate::workflow::pool::Pool;
use crate::workflow::replay::RecordedOutcomes;
use crate::workflow::{compile_version, Workflow};

/// `POST /workflows/run` as the engine sees it.
#[derive(Clone, Debug, Default)]
pub struct WorkflowRequest {
    pub inputs: Value,
    pub user: String,
    pub streaming: bool,
    pub trace_id: Option<String>,
    pub files: Value,
    /// A given published version (`/workflows/:workflow_id/run`), else the latest.
    pub workflow_id: Option<Uuid>,
    /// The API key that asked (runs in flight are counted per key).
    pub key: Option<Uuid>,
}

/// Most events a busy run holds before handing them to the writer: small
/// enough that the writer records them while the graph goes on running.
const BATCH: usize = 64;

impl Engine {
    /// The compiled workflow version `id` of an app, or its latest.
    pub fn workflow(&self, app: &LoadedApp, id: Option<Uuid>) -> Result<Arc<Workflow>> {
        let row = self
            .store()
            .get_json::<crate::model::AppRow>(trees::APPS, app.id().as_bytes())?
            .ok_or_else(|| EngineError::NotFound("App not found.".into()))?;
        let id = match id {
            Some(id) => id,
            None => row.workflow_id.ok_or_else(|| {
                EngineError::AppUnavailable("Workflow not initialized. Publish the workflow first.".into())
            })?,
        };
        // Keyed by app too: another app's version id is not found here.
        if let Some(wf) = self.inner.workflows.read().get(&(app.id(), id)) {
            return Ok(wf.clone());
        }
        let version = self
            .store()
            .scan(trees::WORKFLOWS, app.id().as_bytes(), None, usize::MAX, false)?
            .into_iter()
            .filter_map(|(_, v)| ferrify_store::codec::from_json::<WorkflowVersionRow>(&v).ok())
            .find(|v| v.id == id)
            .ok_or_else(|| EngineError::NotFound(format!("Workflow not found with id: {id}")))?;
        let wf = compile_version(
            version.id,
            &version.graph,
            &version.features,
            &version.environment,
            &version.conversation_variables,
        )
        .map_err(|e| EngineError::AppUnavailable(format!("the published workflow does not compile: {e}")))?;
        let wf = Arc::new(wf);
        self.inner.workflows.write().insert((app.id(), id), wf.clone());
        Ok(wf)
    }

    /// The app as its latest published version shows it: the start node's
    /// form and the version's features (what `/parameters` reports).
    pub fn effective_spec(&self, app: &LoadedApp) -> Arc<crate::app::AppSpec> {
        if matches!(app.mode(), AppMode::Workflow | AppMode::AdvancedChat) {
            if let Ok(wf) = self.workflow(app, None) {
                let mut spec = (*app.spec).clone();
                spec.form = wf.form.clone();
                if wf.features.is_object() {
                    spec.features = wf.features.clone();
                }
                return Arc::new(spec);
            }
        }
        app.spec.clone()
    }

    /// Accepts `POST /workflows/run` and starts the run.
    pub async fn start_workflow(&self, app: &LoadedApp, req: WorkflowRequest) -> Result<Accepted> {
        if app.mode() != AppMode::Workflow {
            return Err(EngineError::NotWorkflowApp);
        }
        let wf = self.workflow(app, req.workflow_id)?;
        let mut inputs = form::validate(&wf.form, &req.inputs).map_err(EngineError::InvalidParam)?;
        let files = self.run_files(app.id(), &wf, &mut inputs, &req.files, true).await?;
        let slot = self.admit(req.key)?;
        let plan = Launch {
            app_id: app.id(),
            mode: AppMode::Workflow,
            wf,
            inputs,
            user: req.user,
            query: String::new(),
            files,
            streaming: req.streaming,
            trace_id: req.trace_id,
            conversation: None,
            rerun: None,
            slot,
            namer: None,
        };
        self.launch(plan).await
    }

    /// Accepts a chatflow turn (`POST /chat-messages` on an advanced-chat app).
    pub(crate) async fn start_chatflow(&self, app: &LoadedApp, req: MessageRequest) -> Result<Accepted> {
        let query = req.query.replace('\0', "");
        // As Dify: only an empty query is refused (blank text is a query).
        if query.is_empty() {
            return Err(EngineError::InvalidParam("query is required".into()));
        }
        let wf = self.workflow(app, req.workflow_id)?;
        let mut inputs = form::validate(&wf.form, &req.inputs).map_err(EngineError::InvalidParam)?;
        let slot = self.admit(req.key)?;
        let app_id = app.id();
        let files = self.run_files(app_id, &wf, &mut inputs, &req.files, false).await?;
        let end_user = end_user_id(app_id, &req.user);
        let turn = ChatflowTurn { app_id, wf, inputs, files, end_user, query, req, slot };
        let Some(id) = turn.req.conversation_id else {
            let id = crate::ids::new();
            let new = NewConversation { name: "New conversation".into(), introduction: app.spec.opening_statement() };
            // A new conversation's lock is free: nobody else knows its id yet.
            let guard = self.lock_conversation(id).await;
            return self.continue_chatflow(turn, Conversation { id, new: Some(new), guard, history_turns: 0 }).await;
        };
        self.in_conversation(id, app_id, end_user, move |engine, row, guard| async move {
            // The turns it waited for count: the row is read once the conversation is this turn's.
            let conversation = Conversation { id, new: None, guard, history_turns: row.message_count };
            engine.continue_chatflow(turn, conversation).await
        })
        .await
    }

    /// The rest of a chatflow turn once its conversation is its own: an
    /// annotation's reply, or the workflow's run.
    async fn continue_chatflow(&self, turn: ChatflowTurn, conversation: Conversation) -> Result<Accepted> {
        let ChatflowTurn { app_id, wf, inputs, files, end_user, query, req, slot } = turn;
        // Annotation reply: a close enough annotation answers the turn, the workflow does not start.
        if let Some((annotation, score)) = self.match_annotation(app_id, &query).await {
            return self
                .answer_from_annotation(AnnotationTurn {
                    app_id,
                    mode: AppMode::AdvancedChat,
                    end_user,
                    user: req.user,
                    query,
                    inputs,
                    files,
                    streaming: req.streaming,
                    trace_id: req.trace_id,
                    conversation_id: conversation.id,
                    new_conversation: conversation.new,
                    guard: Some(conversation.guard),
                    annotation,
                    score,
                    ids: None,
                    tap: None,
                    slot,
                })
                .await;
        }
        // A new conversation is named from its first query, as chat apps' are,
        // by the model of the version's first LLM node.
        let namer = match &wf.llm_model {
            Some((provider, name)) if req.auto_generate_name && conversation.new.is_some() => {
                self.providers().resolve(provider, name).ok()
            }
            _ => None,
        };
        let plan = Launch {
            app_id,
            mode: AppMode::AdvancedChat,
            wf,
            inputs,
            user: req.user,
            query,
            files,
            streaming: req.streaming,
            trace_id: req.trace_id,
            conversation: Some(conversation),
            rerun: None,
            slot,
            namer,
        };
        self.launch(plan).await
    }

    /// Resolves a run's file inputs in place and its request `files` (→ `sys.files`),
    /// against the start node's variables and the version's `file_upload`.
    async fn run_files(
        &self,
        app_id: Uuid,
        wf: &Workflow,
        inputs: &mut Map<String, Value>,
        files: &Value,
        strict: bool,
    ) -> Result<Value> {
        self.resolve_file_inputs(app_id, &wf.form, inputs, strict).await?;
        let config = UploadConfig::from_feature(wf.features.get("file_upload"));
        Ok(Value::Array(self.resolve_request_files(app_id, config.as_ref(), files, strict).await?))
    }

    /// Stops a workflow run of this app (any user; Dify does not check).
    pub fn stop_workflow(&self, app_id: Uuid, task_id: Uuid) {
        let stop = {
            let running = self.inner.running.lock();
            running.get(&task_id).filter(|r| r.app_id == app_id).map(|r| (r.flag.clone(), r.notify.clone()))
        };
        if let Some((flag, notify)) = stop {
            flag.store(true, std::sync::atomic::Ordering::Release);
            notify.notify_waiters();
        }
    }

    /// The current values of a conversation's variables (declared defaults
    /// for those never written).
    pub(crate) fn conversation_values(&self, wf: &Workflow, conversation: Option<Uuid>) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        for v in &wf.conversation_variables {
            out.insert(v.name.clone(), v.value.clone());
        }
        if let Some(c) = conversation {
            for (_, raw) in self.store().scan(trees::CONV_VARS, c.as_bytes(), None, usize::MAX, false)? {
                if let Ok(row) = ferrify_store::codec::from_json::<crate::model::ConversationVariableRow>(&raw) {
                    if out.contains_key(&row.name) {
                        out.insert(row.name, row.value);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs workflow version `wf` again with a recorded run's request, ids and
    /// conversation state, answering models and outside requests from the
    /// recording (see [`crate::reexec`]). Streamed or not, the outcome comes back.
    pub(crate) async fn rerun_workflow(
        &self,
        run: &RunStarted,
        wf: Arc<Workflow>,
        rerun: Rerun,
        trace_id: Option<String>,
    ) -> Result<Accepted> {
        let mode = if run.mode == AppMode::AdvancedChat.as_str() { AppMode::AdvancedChat } else { AppMode::Workflow };
        let inputs = match &run.inputs.0 {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let conversation = match (mode, run.conversation_id) {
            (AppMode::AdvancedChat, Some(id)) => {
                let turns = run
                    .options
                    .0
                    .get("sys")
                    .and_then(|s| s.get("sys.dialogue_count"))
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let guard = self.lock_conversation(id).await;
                Some(Conversation {
                    id,
                    new: run.new_conversation.clone(),
                    guard,
                    history_turns: turns.saturating_sub(1),
                })
            }
            _ => None,
        };
        let plan = Launch {
            app_id: run.app_id,
            mode,
            wf,
            inputs,
            user: run.user.clone(),
            query: run.query.clone(),
            files: run.files.0.clone(),
            streaming: run.streaming,
            trace_id,
            conversation,
            rerun: Some(rerun),
            // A re-execution runs on the scratch engine: no key, counted overall only.
            slot: self.admit(None)?,
            namer: None,
        };
        self.launch(plan).await
    }

    async fn launch(&self, plan: Launch) -> Result<Accepted> {
        let Launch {
            app_id,
            mode,
            wf,
            inputs,
            user,
            query,
            files,
            streaming,
            trace_id,
            conversation,
            rerun,
            slot,
            namer,
        } = plan;
        let namer = namer.map(|model| (model, query.clone()));
        let chat = mode == AppMode::AdvancedChat;
        let end_user = end_user_id(app_id, &user);
        let (task_id, run_id, message_id) = match &rerun {
            Some(r) => (r.task_id, r.workflow_run_id, r.message_id),
            None => {
                let (task_id, message_id) = super::new_ids();
                (task_id, crate::ids::new(), chat.then_some(message_id))
            }
        };
        let stream = StreamId::of("run", task_id)?;
        let files = if files.is_null() { json!([]) } else { files };
        let conversation_id = conversation.as_ref().map(|c| c.id);
        let (history, conv_values, rerun) = match rerun {
            Some(mut r) => (std::mem::take(&mut r.history), std::mem::take(&mut r.conversation_values), Some(r)),
            None => {
                let history = match &conversation {
                    Some(c) if c.new.is_none() => self.history(c.id, None)?,
                    _ => Vec::new(),
                };
                let existing = conversation.as_ref().filter(|c| c.new.is_none()).map(|c| c.id);
                (history, self.conversation_values(&wf, existing)?, None)
            }
        };
        let providers = match &rerun {
            Some(r) => r.providers.clone(),
            None => self.providers().clone(),
        };
        // Input moderation: flagged inputs are answered with the preset; the workflow does not start.
        let moderation = if chat { moderation::for_run(&wf.features)? } else { None };
        if let (Some(m), Some(conv), Some(message_id)) = (&moderation, &conversation, message_id) {
            if let Some(preset) = m.check_inputs(&providers, &inputs, &query).await? {
                let turn = PresetTurn {
                    task_id,
                    message_id,
                    app_id,
                    end_user_id: end_user,
                    user,
                    conversation_id: conv.id,
                    new_conversation: conv.new.clone(),
                    workflow_id: wf.id,
                    query,
                    inputs,
                    files,
                    streaming,
                    trace_id,
                    kind: m.kind.as_str(),
                    preset,
                    tap: rerun.as_ref().map(|r| r.tap.clone()),
                };
                let accepted = self.answer_preset_turn(turn).await;
                if let Some(conv) = conversation {
                    drop(conv.guard);
                    self.release_conversation(conv.id);
                }
                drop(slot);
                return accepted;
            }
        }

        // System variables, as `workflow_started` and the stored inputs show them.
        let mut sys = Map::new();
        if chat {
            sys.insert("query".into(), query.clone().into());
        }
        sys.insert("files".into(), files.clone());
        if let Some(c) = &conversation {
            sys.insert("conversation_id".into(), c.id.to_string().into());
            sys.insert("dialogue_count".into(), (c.history_turns + 1).into());
        }
        sys.insert("user_id".into(), user.clone().into());
        sys.insert("app_id".into(), app_id.to_string().into());
        sys.insert("workflow_id".into(), wf.id.to_string().into());
        sys.insert("workflow_run_id".into(), run_id.to_string().into());
        let mut shown = Map::new();
        for (k, v) in &sys {
            if k != "conversation_id" {
                shown.insert(format!("sys.{k}"), v.clone());
            }
        }

        // Auto-play speaks a chatflow's answer or a workflow's streamed text (never re-executed).
        let tts = if rerun.is_none() { self.tts_option(&wf.features, streaming) } else { None };
        // The new conversation's title, asked for now that the query passed
        // moderation (a flagged one goes to no model, not even for a title): a
        // model that answers at once (the builtin ones) names the conversation
        // in `RunStarted`; a slower one renames it when its title arrives.
        let mut new_conversation = conversation.as_ref().and_then(|c| c.new.clone());
        let title = match (namer, &conversation) {
            (Some((model, query)), Some(conv)) => {
                super::easy::title_now(model, query, new_conversation.as_mut()).map(|asked| (conv.id, asked))
            }
            _ => None,
        };
        let started = RunStarted {
            task_id,
            app_id,
            mode: mode.as_str().to_string(),
            end_user_id: end_user,
            user: user.clone(),
            conversation_id,
            new_conversation,
            message_id,
            workflow_run_id: Some(run_id),
            workflow_id: Some(wf.id),
            query,
            inputs: Json(Value::Object(inputs.clone())),
            files: Json(files),
            streaming,
            options: Json({
                let mut options = run_options(shown, &providers);
                if let Some(tts) = &tts {
                    options["tts"] = tts.clone();
                }
                options
            }),
        };
        let stop = StopSignal::default();
        self.inner.running.lock().insert(
            task_id,
            Stoppable {
                app_id,
                end_user_id: end_user,
                flag: stop.flag.clone(),
                notify: stop.notify.clone(),
                any_user: !chat,
            },
        );
        let first = Envelope::new(self.now(), trace_id.clone(), Event::RunStarted(Box::new(started)));
        let mut wire = WireRun::new();
        wire.advance(&first);
        // Blocking or streaming, a workflow run is on the log from its first
        // event (a crash mid-run leaves a trace to recover), and its events
        // are written while the graph runs, on the writer's own thread.
        let tap = rerun.as_ref().map(|r| r.tap.clone());
        // A streamed run's reader follows it from before its first event (read from memory).
        let frames = (streaming && rerun.is_none())
            .then(|| crate::resume::RunFrames::before_start(self.store(), &stream, task_id));
        if let Err(e) = self.append_run_tapped(&stream, vec![first], tap.as_ref()).await {
            self.inner.running.lock().remove(&task_id);
            return Err(e);
        }
        // The conversation exists now: a title still on its way renames it.
        if let Some((id, asked)) = title {
            super::easy::name_when_ready(self, id, asked);
        }
        let (outcome_tx, outcome_rx) = if streaming && rerun.is_none() {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };

        let root = Pool::root();
        root.set_owner("sys", sys);
        root.set_owner("env", wf.environment.clone());
        if chat {
            root.set_owner("conversation", conv_values.clone());
        }
        root.set_owner(&wf.graph.nodes[wf.graph.start].id, inputs);

        let recording = Arc::new(Mutex::new(Recording::new(self.clone(), stream.clone(), wire, tap, stop.clone())));
        let settings = self.inner.workflow_settings.clone();
        let sink: Arc<Mutex<dyn EventSink>> = recording.clone();
        let rc =
            RunCx::new(self.clone(), app_id, mode, settings, wf.graph.clone(), root, history, trace_id, stop, sink);
        let rc = match rerun {
            Some(r) => rc.replaying(providers, r.outcomes),
            None => rc,
        };
        let engine = self.clone();
        // Past its wall time the run is stopped, the error naming the limit.
        let max_time = self.limits().max_run_time;
        let timer = {
            let stop = rc.stop.clone();
            self.spawn(async move {
                tokio::time::sleep(max_time).await;
                stop.stop_with(format!(
                    "Max execution time {} s reached (limits.max_run_seconds).",
                    max_time.as_secs()
                ));
            })
        };
        // Boxed: the task's future captures the context and hands it to
        // `drive`, whose future keeps it too; inline, it would be held twice.
        let rc = Box::new(rc);
        let run_stream = stream.clone();
        self.spawn(async move {
            let driven = drive(rc, &user, chat, moderation.as_ref(), tts).await;
            timer.abort();
            let outcome = recorded(&recording).await;
            let ending = super::Ending::settle(&engine, task_id, &run_stream, outcome, outcome_tx).await;
            // The conversation is let go of only now (a refused run is closed first).
            driven.finish(&engine, &wf, conversation, conv_values).await;
            engine.inner.running.lock().remove(&task_id);
            drop(slot);
            ending.deliver();
        });
        Ok(Accepted {
            handle: RunHandle { task_id, stream, message_id, conversation_id, workflow_run_id: Some(run_id) },
            outcome: outcome_rx,
            frames,
        })
    }
}

/// `RunStarted.options` of a workflow run: the system variables it showed,
/// and the model override it ran under (so that re-execution resolves its
/// models the same way).
fn run_options(sys: Map<String, Value>, providers: &Providers) -> Value {
    let mut options = Map::new();
    options.insert("sys".into(), Value::Object(sys));
    if let Some((p, m)) = providers.model_override() {
        options.insert("model_override".into(), json!([p, m]));
    }
    Value::Object(options)
}

/// The model override a recorded workflow run ran under.
pub fn recorded_model_override(options: &Value) -> Option<(String, String)> {
    let pair = options.get("model_override")?.as_array()?;
    Some((pair.first()?.as_str()?.to_string(), pair.get(1)?.as_str()?.to_string()))
}

/// What a re-executed run reuses of its recording: its ids, the conversation
/// as it was before it, and where model answers and outside answers come from.
pub(crate) struct Rerun {
    pub task_id: Uuid,
    pub workflow_run_id: Uuid,
    pub message_id: Option<Uuid>,
    /// Earlier turns of the conversation, oldest first.
    pub history: Vec<PromptMessage>,
    /// The conversation variables before the run.
    pub conversation_values: Map<String, Value>,
    pub providers: Providers,
    pub outcomes: Arc<RecordedOutcomes>,
    /// Where its events go besides the log.
    pub(crate) tap: Tap,
}

/// A chatflow turn checked and resolved, waiting for its conversation.
struct ChatflowTurn {
    app_id: Uuid,
    wf: Arc<Workflow>,
    inputs: Map<String, Value>,
    files: Value,
    end_user: Uuid,
    query: String,
    req: MessageRequest,
    slot: RunSlot,
}

/// A chatflow turn's conversation.
struct Conversation {
    id: Uuid,
    new: Option<NewConversation>,
    guard: tokio::sync::OwnedMutexGuard<()>,
    /// Turns before this one.
    history_turns: u64,
}

struct Launch {
    app_id: Uuid,
    mode: AppMode,
    wf: Arc<Workflow>,
    inputs: Map<String, Value>,
    user: String,
    query: String,
    files: Value,
    streaming: bool,
    trace_id: Option<String>,
    conversation: Option<Conversation>,
    /// Re-execution of a recorded run.
    rerun: Option<Rerun>,
    /// Held until the run ends.
    slot: RunSlot,
    /// The model that names the new conversation (chatflow turns that start one).
    namer: Option<crate::provider::registry::ResolvedModel>,
}

/// What is left to do once the graph ran: the conversation variables to persist.
struct Driven {
    conversation_after: Option<Map<String, Value>>,
}

/// Runs the graph and records its terminal events.
async fn drive(rc: Box<RunCx>, user: &str, chat: bool, moderation: Option<&Moderation>, tts: Option<Value>) -> Driven {
    let started = Instant::now();
    rc.start_responses();
    let result = run_scope(&rc, None, &rc.root.clone(), &ScopePos::default()).await;
    let answer = match &result {
        Ok(()) => rc.finish_responses(),
        Err(_) => rc.finish_responses_partial(),
    };
    let (steps, tokens, exceptions, usage, outputs) = {
        let t = rc.totals.lock();
        (t.steps, t.tokens, t.exceptions, t.usage.clone(), t.outputs.clone())
    };
    let outputs = if chat { json!({"answer": answer, "files": []}) } else { Value::Object(outputs) };
    let elapsed = (started.elapsed().as_secs_f64() * 1e6).round() / 1e6;
    let (status, error) = match &result {
        Ok(()) if exceptions > 0 => ("partial-succeeded", None),
        Ok(()) => ("succeeded", None),
        Err(NodeError::Stopped) => {
            rc.emit(Event::StopRequested { user: user.to_string() });
            ("stopped", Some(rc.stop.reason().unwrap_or_else(|| "Workflow execution stopped by user.".to_string())))
        }
        Err(NodeError::Failed { message, .. }) => ("failed", Some(message.clone())),
    };
    let failed = status == "failed";
    rc.emit(Event::WorkflowFinished(Box::new(WorkflowFinished {
        status: status.into(),
        outputs: Json(if failed { json!({}) } else { outputs }),
        error: error.clone(),
        total_tokens: tokens,
        total_steps: steps,
        exceptions_count: exceptions,
        elapsed_time: elapsed,
    })));
    if failed {
        rc.emit(Event::RunFailed {
            code: "invalid_param".into(),
            message: format!("Run failed: {}", error.unwrap_or_default()),
            status: 400,
        });
    } else if !chat {
        // A workflow's auto-play speaks the text it streamed, after `workflow_finished`.
        if let Some(tts) = tts {
            speak(&rc, if status == "stopped" { "" } else { &answer }, &tts).await;
        }
    } else {
        // Output moderation: a flagged answer is replaced by the preset.
        let answer = match moderation {
            Some(m) => match m.output_replacement(&rc.providers, &answer).await {
                Some(preset) => {
                    rc.emit(Event::AnswerReplaced { answer: preset.clone(), reason: "output_moderation".into() });
                    preset
                }
                None => answer,
            },
            None => answer,
        };
        let stopped = status == "stopped";
        let spoken = if stopped { String::new() } else { answer.clone() };
        // As Dify: a turn that said something has its usage say when its
        // answer began (from the run's start) and how long it went on.
        let mut usage = usage;
        if let Some((first, last)) = rc.answer_times() {
            usage.time_to_first_token = Some(super::easy::round3(first));
            usage.time_to_generate = Some(super::easy::round3(last - first));
        }
        rc.emit(Event::MessageEnded { answer, usage, latency: (rc.elapsed() * 1000.0).round() / 1000.0, stopped });
        if let Some(tts) = tts {
            speak(&rc, &spoken, &tts).await;
        }
    }
    let conversation_after = chat.then(|| rc.root.owner("conversation").unwrap_or_default());
    Driven { conversation_after }
}

/// Auto-play: the audio of `text` as events on the run, always ending with `TtsEnded`.
async fn speak(rc: &RunCx, text: &str, tts: &Value) {
    let mut audio = rc.engine.tts_events(text, tts);
    while let Some(event) = audio.next().await {
        rc.emit(event);
    }
}

impl Driven {
    /// Persists changed conversation variables, then frees the conversation.
    async fn finish(
        self,
        engine: &Engine,
        wf: &Workflow,
        conversation: Option<Conversation>,
        before: Map<String, Value>,
    ) {
        let Some(conv) = conversation else { return };
        if let Some(after) = self.conversation_after {
            let mut events = Vec::new();
            for v in &wf.conversation_variables {
                let value = after.get(&v.name).cloned().unwrap_or(Value::Null);
                if conv.new.is_some() || before.get(&v.name) != Some(&value) {
                    events.push(Envelope::new(
                        engine.now(),
                        None,
                        Event::ConversationVariableUpdated {
                            variable_id: v.id.clone(),
                            name: v.name.clone(),
                            value_type: v.value_type.clone(),
                            value: Json(value),
                        },
                    ));
                }
            }
            if !events.is_empty() {
                let r = match StreamId::of("conversation", conv.id) {
                    Ok(stream) => engine.append_run(&stream, events).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = r {
                    tracing::error!(conversation = %conv.id, "conversation variables not saved: {e}");
                }
            }
        }
        drop(conv.guard);
        engine.release_conversation(conv.id);
    }
}

/// Appends a run's events to its stream in the order they were emitted,
/// without waiting for each acknowledgement (the log keeps their order),
/// folding the terminal ones through the wire mapping for the blocking
/// response. Events the run holds (see [`RunCx::holding`]) go as one
/// append per batch.
struct Recording {
    engine: Engine,
    stream: StreamId,
    wire: WireRun,
    /// Re-execution: where the run's events go besides the log.
    tap: Option<Tap>,
    held: Vec<Envelope>,
    /// Appends not acknowledged yet, oldest first.
    pending: VecDeque<PendingAppend>,
    /// The first append that failed: nothing more is recorded.
    failed: Option<EngineError>,
    /// Stops the graph once an append failed (what it would do next could
    /// not be recorded).
    stop: StopSignal,
    /// Events handed to the log so far (`RunStarted` before this recording).
    handed: Handed,
}

impl Recording {
    fn new(engine: Engine, stream: StreamId, wire: WireRun, tap: Option<Tap>, stop: StopSignal) -> Recording {
        Recording {
            engine,
            stream,
            wire,
            handed: Handed::new(1, tap.is_none()),
            tap,
            held: Vec::new(),
            pending: VecDeque::new(),
            failed: None,
            stop,
        }
    }

    /// Everything handed over, the appends to wait for, and what failed.
    fn close(&mut self) -> (VecDeque<PendingAppend>, Option<EngineError>) {
        self.flush();
        (std::mem::take(&mut self.pending), self.failed.take())
    }
}

impl EventSink for Recording {
    fn push(&mut self, event: Envelope, hold: bool) {
        if self.failed.is_some() {
            return;
        }
        // Only what the blocking response is folded from; node progress
        // frames are built by the streams that show them.
        if matches!(
            event.event,
            Event::WorkflowFinished(_)
                | Event::MessageEnded { .. }
                | Event::RunFailed { .. }
                | Event::AnswerReplaced { .. }
        ) {
            self.wire.advance(&event);
        }
        self.held.push(event);
        if !hold || self.held.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.held.is_empty() || self.failed.is_some() {
            return;
        }
        let batch = std::mem::take(&mut self.held);
        match run_append(&self.stream, batch, self.tap.as_ref()) {
            Ok(append) => self.pending.push_back(self.engine.store().append(self.handed.expecting(append))),
            Err(e) => self.failed = Some(e),
        }
        // Forget what the writer already acknowledged; after a refusal
        // nothing more is recorded (the stream keeps no hole after it), and
        // the graph stops.
        if let Some(e) = forget_acknowledged(&mut self.pending) {
            self.failed.get_or_insert(e.into());
        }
        if let (Some(e), false) = (&self.failed, self.stop.is_set()) {
            self.stop.stop_with(format!("the run's events could not be recorded: {e}"));
        }
    }
}

/// Waits for a run's appends; the outcome its terminal events give.
async fn recorded(recording: &Mutex<Recording>) -> Result<Outcome> {
    let (pending, failed) = recording.lock().close();
    // Every append is waited for, even after a refusal: once this returns,
    // nothing more of the run can reach the log.
    let mut first_error = failed;
    for p in pending {
        if let Err(e) = p.await {
            first_error.get_or_insert(e.into());
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    recording
        .lock()
        .wire
        .take_outcome()
        .ok_or_else(|| EngineError::AppUnavailable("the run ended without a terminal event".into()))
}
