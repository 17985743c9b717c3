//! Chat and completion apps: one prompt built from `model_config`, one
//! streamed model call.
//!
//! ```text
//! RunStarted ─ ModelCalled ─ AnswerChunk* ─ ModelAnswered ─ (AnswerReplaced) ─ MessageEnded   (done or stopped)
//!          │                              │                                   └─ TtsAudio* ─ TtsEnded   (auto-play on)
//!          │                              └─ RunFailed                        (model or input moderation error)
//!          └─ InputModerated ─ AnswerChunk* ─ MessageEnded                    (inputs flagged: preset answer)
//! ```
//!
//! A chat turn that annotation reply answers runs [`crate::annotation::reply`] instead.
//! Moderation (`sensitive_word_avoidance`, [`crate::moderation`]): flagged
//! inputs are answered with the preset text, streamed one character per
//! `message` frame as Dify does, with no model call; a flagged answer is
//! replaced by the outputs preset (`AnswerReplaced`, a `message_replace` frame)
//! and the message keeps the preset. As in Dify, a failed input check fails
//! the run, a failed output check leaves the answer as it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferrify_store::StreamId;
use futures_util::FutureExt;
use tokio::sync::oneshot;

use crate::wire::Outcome;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::prompt::render;
use super::recorder::Recorder;
use super::{end_user_id, new_ids, RunHandle, Tap};
use crate::annotation::reply::AnnotationTurn;
use crate::app::{form, AppMode};
use crate::apps::LoadedApp;
use crate::engine::{Engine, Stoppable};
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event, NewConversation, RunStarted, Usage};
use crate::files::input::UploadConfig;
use crate::json::Json;
use crate::limits::RunSlot;
use crate::model::MessageRow;
use crate::moderation::{self, Moderation};
use crate::projection::trees;
use crate::provider::{
    estimate_tokens, registry::price_usage, registry::ResolvedModel, ModelChunk, ModelRequest, PromptMessage,
    ProviderError, Providers, Role,
};
use crate::resume::RunFrames;

/// Earlier turns put into a chat prompt.
const HISTORY_TURNS: usize = 20;

/// A chat turn or a completion, as the API received it.
#[derive(Clone, Debug, Default)]
pub struct MessageRequest {
    pub query: String,
    pub inputs: Value,
    pub user: String,
    pub conversation_id: Option<Uuid>,
    pub streaming: bool,
    pub auto_generate_name: bool,
    pub trace_id: Option<String>,
    pub files: Value,
    /// The API key that asked (runs in flight are counted per key).
    pub key: Option<Uuid>,
    /// A chatflow's published version to run (its latest when absent;
    /// other apps ignore it, as Dify does).
    pub workflow_id: Option<Uuid>,
}

/// Everything the spawned run needs.
struct Plan {
    engine: Engine,
    recorder: Recorder,
    trace_id: Option<String>,
    model: ResolvedModel,
    request: ModelRequest,
    flag: Arc<AtomicBool>,
    task_id: Uuid,
    user: String,
    conversation: Option<(Uuid, tokio::sync::OwnedMutexGuard<()>)>,
    title_from: Option<(Uuid, String)>,
    /// The title already asked for (see [`Engine::launch_easy`]), not ready yet.
    title: Option<(Uuid, TitleFuture)>,
    outcome: Option<oneshot::Sender<Result<Outcome>>>,
    /// Held until the run ends.
    slot: RunSlot,
    /// The app's moderation, and what inputs moderation checks.
    moderation: Option<Moderation>,
    providers: Providers,
    inputs: Map<String, Value>,
    query: String,
    /// `RunStarted.options.tts`: the answer is spoken after the message ends.
    tts: Option<Value>,
}

/// A new conversation's title, being asked for.
pub(crate) type TitleFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

impl Engine {
    /// Accepts a chat turn (`POST /chat-messages`) and starts its run.
    pub async fn start_chat(&self, app: &LoadedApp, req: MessageRequest) -> Result<Accepted> {
        match app.mode() {
            AppMode::Chat => {}
            AppMode::AdvancedChat => return self.start_chatflow(app, req).await,
            AppMode::AgentChat => {
                return Err(EngineError::AppUnavailable(format!(
                    "App unavailable: {} apps are not supported by this server yet.",
                    app.mode().as_str()
                )))
            }
            _ => return Err(EngineError::NotChatApp),
        }
        self.start_easy(app, req, true).await
    }

    /// `app_unavailable` unless `app` is a completion app (Dify checks this
    /// before it reads the rest of the request).
    pub fn require_completion_app(app: &LoadedApp) -> Result<()> {
        if app.mode() != AppMode::Completion {
            return Err(EngineError::AppUnavailable("App unavailable, please check your app configurations.".into()));
        }
        Ok(())
    }

    /// Accepts a completion (`POST /completion-messages`) and starts its run.
    pub async fn start_completion(&self, app: &LoadedApp, req: MessageRequest) -> Result<Accepted> {
        Self::require_completion_app(app)?;
        self.start_easy(app, MessageRequest { conversation_id: None, auto_generate_name: false, ..req }, false).await
    }

    async fn start_easy(&self, app: &LoadedApp, req: MessageRequest, chat: bool) -> Result<Accepted> {
        let mc = app.spec.model_config.as_ref().ok_or_else(|| {
            EngineError::AppUnavailable("App unavailable, please check your app configurations.".into())
        })?;
        let query = req.query.replace('\0', "");
        // As Dify: only an empty query is refused (blank text is a query).
        if chat && query.is_empty() {
            return Err(EngineError::InvalidParam("query is required".into()));
        }
        let mut inputs = form::validate(&app.spec.form, &req.inputs).map_err(EngineError::InvalidParam)?;
        let model = self.providers().resolve(&mc.model.provider, &mc.model.name)?;
        let moderation = moderation::for_run(&app.spec.features)?;
        let slot = self.admit(req.key)?;
        let app_id = app.id();
        // Request files: checked against `file_upload` (ignored when it is off); images go to the model.
        self.resolve_file_inputs(app_id, &app.spec.form, &mut inputs, false).await?;
        let upload = app.spec.features.get("file_upload");
        let files =
            self.resolve_request_files(app_id, UploadConfig::from_feature(upload).as_ref(), &req.files, false).await?;
        let detail = upload
            .and_then(|u| u.get("image"))
            .and_then(|i| i.get("detail"))
            .and_then(Value::as_str)
            .unwrap_or("high")
            .to_string();
        let files = Value::Array(files);
        let images = self.image_parts(app_id, Some(&files), &detail).await;
        let end_user = end_user_id(app_id, &req.user);

        let turn = EasyTurn {
            chat,
            app_id,
            mode: app.mode(),
            model_config: mc.clone(),
            tts: self.tts_option(&app.spec.features, req.streaming),
            req,
            query,
            inputs,
            files,
            images,
            end_user,
            model,
            moderation,
            slot,
        };
        // The conversation: an existing one must be this end user's, and turns of it run one at a time.
        let Some(id) = turn.req.conversation_id.filter(|_| chat) else {
            let id = crate::ids::new();
            let new = chat.then(|| NewConversation {
                name: "New conversation".into(),
                introduction: app.spec.opening_statement(),
            });
            // A new conversation's lock is free: nobody else knows its id yet.
            let guard = if chat { Some(self.lock_conversation(id).await) } else { None };
            return self.continue_easy(turn, id, new, guard).await;
        };
        self.in_conversation(id, app_id, end_user, move |engine, _, guard| async move {
            engine.continue_easy(turn, id, None, Some(guard)).await
        })
        .await
    }

    /// The rest of a turn once its conversation is its own (`conversation_id`
    /// is a fresh id for a completion): an annotation's reply, or the prompt
    /// with the conversation's history, and the run.
    async fn continue_easy(
        &self,
        turn: EasyTurn,
        conversation_id: Uuid,
        new_conversation: Option<NewConversation>,
        guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Result<Accepted> {
        let EasyTurn {
            chat,
            app_id,
            mode,
            model_config: mc,
            tts,
            req,
            query,
            inputs,
            files,
            images,
            end_user,
            model,
            moderation,
            slot,
        } = turn;
        // Annotation reply: a close enough annotation answers the turn, no model is called.
        if chat {
            if let Some((annotation, score)) = self.match_annotation(app_id, &query).await {
                return self
                    .answer_from_annotation(AnnotationTurn {
                        app_id,
                        mode,
                        end_user,
                        user: req.user,
                        query,
                        inputs,
                        files,
                        streaming: req.streaming,
                        trace_id: req.trace_id,
                        conversation_id,
                        new_conversation,
                        guard,
                        annotation,
                        score,
                        ids: None,
                        tap: None,
                        slot,
                    })
                    .await;
            }
        }
        let history =
            if chat && new_conversation.is_none() { self.history(conversation_id, None)? } else { Vec::new() };
        let messages = prompt(&mc, &inputs, &query, chat, history, images);
        let title_from =
            (chat && new_conversation.is_some() && req.auto_generate_name).then(|| (conversation_id, query.clone()));
        self.launch_easy(EasyLaunch {
            app_id,
            mode,
            end_user,
            user: req.user,
            query,
            inputs,
            files,
            streaming: req.streaming,
            trace_id: req.trace_id,
            model,
            params: mc.model.completion_params.clone(),
            messages,
            conversation_id: Some(conversation_id),
            new_conversation,
            guard,
            title_from,
            ids: None,
            tap: None,
            slot,
            moderation,
            providers: self.providers().clone(),
            tts,
        })
        .await
    }

    /// Runs a recorded chat turn or completion again on `spec` with the
    /// recorded request and the conversation as it was (`history`), its model
    /// answered by `providers`, its events handed to `tap` (see [`crate::reexec`]).
    pub(crate) async fn rerun_easy(
        &self,
        spec: &crate::app::AppSpec,
        run: &RunStarted,
        history: Vec<PromptMessage>,
        providers: &crate::provider::Providers,
        trace_id: Option<String>,
        tap: Tap,
    ) -> Result<Accepted> {
        let mc = spec.model_config.as_ref().ok_or_else(|| {
            EngineError::AppUnavailable("App unavailable, please check your app configurations.".into())
        })?;
        let chat = spec.mode == AppMode::Chat;
        let model = providers.resolve(&mc.model.provider, &mc.model.name)?;
        let moderation = moderation::for_run(&spec.features)?;
        let inputs = match &run.inputs.0 {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let conversation_id = if chat { run.conversation_id } else { Some(crate::ids::new()) };
        let guard = match (chat, conversation_id) {
            (true, Some(id)) => Some(self.lock_conversation(id).await),
            _ => None,
        };
        let detail = spec
            .features
            .get("file_upload")
            .and_then(|u| u.get("image"))
            .and_then(|i| i.get("detail"))
            .and_then(Value::as_str)
            .unwrap_or("high")
            .to_string();
        let images = self.image_parts(run.app_id, Some(&run.files.0), &detail).await;
        let messages = prompt(mc, &inputs, &run.query, chat, history, images);
        self.launch_easy(EasyLaunch {
            app_id: run.app_id,
            mode: spec.mode,
            end_user: run.end_user_id,
            user: run.user.clone(),
            query: run.query.clone(),
            inputs,
            files: run.files.0.clone(),
            streaming: run.streaming,
            trace_id,
            model,
            params: mc.model.completion_params.clone(),
            messages,
            conversation_id,
            new_conversation: run.new_conversation.clone(),
            guard,
            title_from: None,
            ids: Some((run.task_id, run.message_id.unwrap_or_else(Uuid::new_v4))),
            tap: Some(tap),
            // A re-execution runs on the scratch engine: counted overall only.
            slot: self.admit(None)?,
            moderation,
            providers: providers.clone(),
            // Audio is not re-executed.
            tts: None,
        })
        .await
    }

    /// Records `RunStarted` and spawns the run. A re-executed run (`ids`
    /// given) reuses its recorded ids and always hands back its outcome.
    async fn launch_easy(&self, l: EasyLaunch) -> Result<Accepted> {
        let EasyLaunch {
            app_id,
            mode,
            end_user,
            user,
            query,
            inputs,
            files,
            streaming,
            trace_id,
            model,
            params,
            messages,
            conversation_id,
            mut new_conversation,
            guard,
            mut title_from,
            ids,
            tap,
            slot,
            moderation,
            providers,
            tts,
        } = l;
        let chat = mode == AppMode::Chat;
        let rerun = ids.is_some();
        let request = ModelRequest { model: model.model.clone(), messages, params };
        let (task_id, message_id) = ids.unwrap_or_else(new_ids);
        let stream = StreamId::of("run", task_id)?;
        // A streamed run with no moderation before its model asks for its
        // conversation's title now: a model that answers at once (the builtin
        // ones) so names the conversation in `RunStarted`, not in an event of
        // its own. A title not ready yet goes on in the run, as it would have.
        let mut title = None;
        if streaming && moderation.is_none() {
            if let Some((id, query)) = title_from.take() {
                title = title_now(model.clone(), query, new_conversation.as_mut()).map(|asked| (id, asked));
            }
        }
        let started = RunStarted {
            task_id,
            app_id,
            mode: mode.as_str().to_string(),
            end_user_id: end_user,
            user: user.clone(),
            conversation_id: if chat { conversation_id } else { None },
            new_conversation,
            message_id: Some(message_id),
            workflow_run_id: None,
            workflow_id: None,
            query: query.clone(),
            inputs: Json(Value::Object(inputs.clone())),
            files: Json(if files.is_null() { json!([]) } else { files }),
            streaming,
            options: Json({
                let mut options = json!({"model": {"provider": model.provider_name, "name": model.model}});
                if let Some(tts) = &tts {
                    options["tts"] = tts.clone();
                }
                options
            }),
        };
        let flag = Arc::new(AtomicBool::new(false));
        self.inner.running.lock().insert(
            task_id,
            Stoppable {
                app_id,
                end_user_id: end_user,
                flag: flag.clone(),
                notify: Default::default(),
                any_user: false,
            },
        );
        let first = Envelope::new(self.now(), trace_id.clone(), Event::RunStarted(Box::new(started)));
        let mut recorder = Recorder::new(self.clone(), stream.clone(), !streaming, tap);
        let frames = (streaming && !rerun).then(|| RunFrames::before_start(self.store(), &stream, task_id));
        // A streamed run is on the log before the response starts; a blocking one
        // holds its events back for a moment (see `super::recorder`).
        if let Err(e) = recorder.push(first).await {
            self.inner.running.lock().remove(&task_id);
            return Err(e);
        }
        let (outcome_tx, outcome_rx) = if streaming && !rerun {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let plan = Plan {
            engine: self.clone(),
            recorder,
            trace_id,
            model,
            request,
            flag,
            task_id,
            user,
            conversation: conversation_id.zip(guard),
            title_from,
            title,
            outcome: outcome_tx,
            slot,
            moderation,
            providers,
            inputs,
            query,
            tts,
        };
        self.spawn(run(Box::new(plan)));
        Ok(Accepted {
            handle: RunHandle {
                task_id,
                stream,
                message_id: Some(message_id),
                conversation_id: if chat { conversation_id } else { None },
                workflow_run_id: None,
            },
            outcome: outcome_rx,
            frames,
        })
    }

    /// The last turns of a conversation as prompt messages, oldest first:
    /// all of them, or those that started before `before` (Unix microseconds).
    pub(crate) fn history(&self, conversation_id: Uuid, before: Option<i64>) -> Result<Vec<PromptMessage>> {
        let bound = before.map(|t| crate::projection::messages::conv_key(conversation_id, t, Uuid::nil()));
        let index = self.store().scan(
            trees::CONV_MESSAGES,
            conversation_id.as_bytes(),
            bound.as_deref(),
            HISTORY_TURNS,
            true,
        )?;
        let mut out = Vec::new();
        for (k, _) in index.into_iter().rev() {
            let Ok(id) = Uuid::from_slice(&k[k.len() - 16..]) else { continue };
            let Some(m) = self.store().get_json::<MessageRow>(trees::MESSAGES, id.as_bytes())? else { continue };
            if m.status != "normal" {
                continue;
            }
            out.push(PromptMessage { role: Role::User, content: m.query, images: Vec::new() });
            out.push(PromptMessage { role: Role::Assistant, content: m.answer, images: Vec::new() });
        }
        Ok(out)
    }
}

/// A chat turn or completion checked and resolved, waiting for its conversation.
struct EasyTurn {
    chat: bool,
    app_id: Uuid,
    mode: AppMode,
    model_config: crate::app::ModelConfig,
    tts: Option<Value>,
    req: MessageRequest,
    query: String,
    inputs: Map<String, Value>,
    files: Value,
    images: Vec<crate::provider::ImagePart>,
    end_user: Uuid,
    model: ResolvedModel,
    moderation: Option<Moderation>,
    slot: RunSlot,
}

/// What [`Engine::launch_easy`] records and runs.
struct EasyLaunch {
    app_id: Uuid,
    mode: AppMode,
    end_user: Uuid,
    user: String,
    query: String,
    inputs: Map<String, Value>,
    files: Value,
    streaming: bool,
    trace_id: Option<String>,
    model: ResolvedModel,
    params: Value,
    messages: Vec<PromptMessage>,
    conversation_id: Option<Uuid>,
    new_conversation: Option<NewConversation>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    title_from: Option<(Uuid, String)>,
    /// Task and message ids of a re-executed run, and where its events go besides the log.
    ids: Option<(Uuid, Uuid)>,
    tap: Option<Tap>,
    /// Held until the run ends.
    slot: RunSlot,
    moderation: Option<Moderation>,
    /// Who answers moderation calls.
    providers: Providers,
    tts: Option<Value>,
}

/// The prompt of a chat turn (system prompt, earlier turns, the query) or a
/// completion (one user message).
fn prompt(
    mc: &crate::app::ModelConfig,
    inputs: &Map<String, Value>,
    query: &str,
    chat: bool,
    history: Vec<PromptMessage>,
    images: Vec<crate::provider::ImagePart>,
) -> Vec<PromptMessage> {
    let mut messages = Vec::new();
    let system = render(&mc.pre_prompt, inputs);
    if chat {
        if !system.trim().is_empty() {
            messages.push(PromptMessage { role: Role::System, content: system, images: Vec::new() });
        }
        messages.extend(history);
        messages.push(PromptMessage { role: Role::User, content: query.to_string(), images });
    } else {
        let mut prompt = system;
        if !query.is_empty() {
            if !prompt.is_empty() {
                prompt.push('\n');
            }
            prompt.push_str(query);
        }
        messages.push(PromptMessage { role: Role::User, content: prompt, images });
    }
    messages
}

/// Moves a value out of its box and frees the box now (`*plan` in the run
/// would keep the empty box allocated until the run's end).
#[allow(clippy::boxed_local)] // the box is the point: it is freed here
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// The run itself, in its own task. `plan` comes boxed: the task then holds
/// its parts once, not also the whole plan it was called with (an async fn
/// keeps its arguments for its whole life), and the box is freed at once.
async fn run(plan: Box<Plan>) {
    let Plan {
        engine,
        mut recorder,
        trace_id,
        model,
        request,
        flag,
        task_id,
        user,
        conversation,
        title_from,
        title,
        outcome,
        slot,
        moderation,
        providers,
        inputs,
        query,
        tts,
    } = unbox(plan);
    // The title of a new conversation is asked for once the input passed
    // moderation (or already, see `launch_easy`). If it is ready when a
    // held-back run is written, it names the conversation in `RunStarted`;
    // otherwise it arrives as a rename.
    let mut title = title.or_else(|| title_from.map(|(id, query)| (id, ask_title(model.clone(), query))));
    let flagged = match &moderation {
        // Rare paths are boxed: the run's task is as large as its largest
        // await, and it lives as long as the answer streams.
        Some(m) => Box::pin(m.check_inputs(&providers, &inputs, &query)).await.map(|p| p.map(|p| (m.kind.as_str(), p))),
        None => Ok(None),
    };
    let result = match flagged {
        Ok(Some((kind, preset))) => {
            // Flagged text goes to no model, not even for a title: the conversation keeps its default name.
            title = None;
            Box::pin(answer_preset(&engine, &mut recorder, &trace_id, kind, preset, tts.as_ref())).await
        }
        Ok(None) => {
            // A run whose events are written as they come (a streamed one) gets
            // its title alongside the answer, as Dify's title thread does, so
            // that the name is usually in place by `message_end`. A held-back
            // run asks for it after the answer, to put it in `RunStarted`.
            if !recorder.is_holding() {
                if let Some((conversation_id, fut)) = title.take() {
                    name_when_ready(&engine, conversation_id, fut);
                }
            }
            let output = moderation.as_ref().map(|m| (m, &providers));
            call_model(&engine, &mut recorder, &trace_id, &model, request, &flag, &user, output, tts.as_ref()).await
        }
        Err(e) => {
            title = None;
            recorder.push(Envelope::new(engine.now(), trace_id.clone(), failed(&e))).await
        }
    };
    // A title that is not in `RunStarted` is a rename after the run.
    let mut late_title = None;
    if recorder.is_holding() {
        let ready = title.as_mut().and_then(|(_, fut)| fut.as_mut().now_or_never());
        if let Some(name) = ready {
            if let (Some(name), Some((id, _))) = (name, &title) {
                if !recorder.name_new_conversation(&name) {
                    late_title = Some((*id, name));
                }
            }
            title = None;
        }
    }
    let stream = recorder.stream().clone();
    // Waited for even after a refusal: then nothing more of the run can reach the log.
    let finished = recorder.finish().await;
    let result = result.and(finished);
    let ending = super::Ending::settle(&engine, task_id, &stream, result, outcome).await;
    engine.inner.running.lock().remove(&task_id);
    if let Some((id, guard)) = conversation {
        drop(guard);
        engine.release_conversation(id);
    }
    drop(slot);
    ending.deliver();
    if let Some((conversation_id, name)) = late_title {
        Box::pin(rename_conversation(&engine, conversation_id, name)).await;
    }
    if let Some((conversation_id, fut)) = title {
        name_when_ready(&engine, conversation_id, fut);
    }
}

/// The `RunFailed` a provider error (model or moderation) ends a run with.
fn failed(e: &ProviderError) -> Event {
    let (code, status) = match e {
        ProviderError::NotInitialized(_) => ("provider_not_initialize", 400),
        ProviderError::RateLimited(_) => ("rate_limit_error", 429),
        ProviderError::Request(_) => ("completion_request_error", 400),
    };
    Event::RunFailed { code: code.into(), message: e.to_string(), status }
}

/// Flagged inputs: the preset answer, one character per chunk, and the end of
/// the message with no tokens used.
async fn answer_preset(
    engine: &Engine,
    recorder: &mut Recorder,
    trace_id: &Option<String>,
    kind: &str,
    preset: String,
    tts: Option<&Value>,
) -> Result<()> {
    let event = Event::InputModerated { kind: kind.to_string(), preset_response: preset.clone() };
    recorder.push(Envelope::new(engine.now(), None, event)).await?;
    for c in preset.chars() {
        let text = c.to_string();
        recorder
            .push(Envelope::new(engine.now(), None, Event::AnswerChunk { text, from_variable_selector: None }))
            .await?;
    }
    let mut usage = Usage::default();
    price_usage(&mut usage, None);
    let end = Event::MessageEnded { answer: preset.clone(), usage, latency: 0.0, stopped: false };
    recorder.push(Envelope::new(engine.now(), trace_id.clone(), end)).await?;
    speak(engine, recorder, trace_id, &preset, tts).await
}

/// With auto-play on (`tts`), the answer's audio after `MessageEnded`: `TtsAudio`
/// chunks and always a `TtsEnded`, the run's last event.
async fn speak(
    engine: &Engine,
    recorder: &mut Recorder,
    trace_id: &Option<String>,
    spoken: &str,
    tts: Option<&Value>,
) -> Result<()> {
    if let Some(tts) = tts {
        let mut audio = engine.tts_events(spoken, tts);
        while let Some(event) = audio.next().await {
            let trace = matches!(event, Event::TtsEnded).then(|| trace_id.clone()).flatten();
            recorder.push(Envelope::new(engine.now(), trace, event)).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn call_model(
    engine: &Engine,
    recorder: &mut Recorder,
    trace_id: &Option<String>,
    model: &ResolvedModel,
    request: ModelRequest,
    flag: &AtomicBool,
    user: &str,
    moderation: Option<(&Moderation, &Providers)>,
    tts: Option<&Value>,
) -> Result<()> {
    let started = Instant::now();
    let request_json = request.recorded();
    let prompt_text: String = request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    recorder
        .push(Envelope::new(
            engine.now(),
            trace_id.clone(),
            Event::ModelCalled {
                node_id: None,
                provider: model.provider_name.clone(),
                model: model.model.clone(),
                request: Json(request_json),
            },
        ))
        .await?;
    let mut chunks = model.provider.stream(request);
    // Past the run's wall time the answer ends as if stopped (Dify's APP_MAX_EXECUTION_TIME).
    let max_time = engine.limits().max_run_time;
    let deadline = tokio::time::Instant::now() + max_time;
    let mut answer = String::new();
    let mut reported: Option<(u64, u64)> = None;
    let mut first_token: Option<f64> = None;
    let mut failure: Option<ProviderError> = None;
    let mut stopped = false;
    loop {
        if flag.load(Ordering::Acquire) {
            stopped = true;
            break;
        }
        let item = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    "run stopped: it reached its wall time of {} s (limits.max_run_seconds)",
                    max_time.as_secs()
                );
                stopped = true;
                break;
            }
        };
        match item {
            Ok(ModelChunk::Text(text)) if !text.is_empty() => {
                first_token.get_or_insert(started.elapsed().as_secs_f64());
                answer.push_str(&text);
                recorder
                    .push(Envelope::new(engine.now(), None, Event::AnswerChunk { text, from_variable_selector: None }))
                    .await?;
            }
            Ok(ModelChunk::Text(_)) => {}
            Ok(ModelChunk::Usage { prompt_tokens, completion_tokens }) => {
                reported = Some((prompt_tokens, completion_tokens))
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(chunks);
    if stopped {
        recorder.push(Envelope::new(engine.now(), None, Event::StopRequested { user: user.to_string() })).await?;
    }
    let latency = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return recorder.push(Envelope::new(engine.now(), trace_id.clone(), failed(&e))).await;
    }
    // Output moderation sees the whole answer once the model is done.
    let replaced = match moderation {
        Some((m, providers)) => m.output_replacement(providers, &answer).await,
        None => None,
    };
    let (prompt_tokens, completion_tokens) = match reported {
        Some(r) if !stopped => r,
        _ => (estimate_tokens(&prompt_text), estimate_tokens(&answer)),
    };
    let mut usage = Usage {
        prompt_tokens,
        completion_tokens,
        latency: round3(latency),
        time_to_first_token: first_token.map(round3),
        time_to_generate: first_token.map(|f| round3(latency - f)),
        ..Usage::default()
    };
    price_usage(&mut usage, model.price.as_ref());
    let now = engine.now();
    recorder
        .push(Envelope::new(
            now,
            None,
            Event::ModelAnswered { node_id: None, text: answer.clone(), usage: usage.clone() },
        ))
        .await?;
    let answer = match replaced {
        Some(preset) => {
            let event = Event::AnswerReplaced { answer: preset.clone(), reason: "output_moderation".into() };
            recorder.push(Envelope::new(now, None, event)).await?;
            preset
        }
        None => answer,
    };
    let spoken = if stopped { String::new() } else { answer.clone() };
    recorder
        .push(Envelope::new(
            now,
            trace_id.clone(),
            Event::MessageEnded { answer, usage, latency: round3(latency), stopped },
        ))
        .await?;
    speak(engine, recorder, trace_id, &spoken, tts).await
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Asks `model` for the title of a conversation starting with `query`.
fn ask_title(model: ResolvedModel, query: String) -> TitleFuture {
    Box::pin(async move { title_for(&model, &query).await })
}

/// Asks for a new conversation's title at once: a title the model gives
/// without waiting (the builtin ones) names `new` then; one on its way is
/// returned, to rename the conversation when it arrives.
pub(crate) fn title_now(model: ResolvedModel, query: String, new: Option<&mut NewConversation>) -> Option<TitleFuture> {
    let mut asked = ask_title(model, query);
    match asked.as_mut().now_or_never() {
        Some(name) => {
            if let (Some(name), Some(new)) = (name, new) {
                new.name = name;
            }
            None
        }
        None => Some(asked),
    }
}

/// Asks `model` for a short title of a conversation starting with `query`.
pub(crate) async fn title_for(model: &ResolvedModel, query: &str) -> Option<String> {
    let request = ModelRequest {
        model: model.model.clone(),
        messages: vec![
            PromptMessage {
                role: Role::System,
                content: "Write a short title (at most 8 words) for a conversation that starts with the user's message. Answer with the title only.".into(),
                images: Vec::new(),
            },
            PromptMessage { role: Role::User, content: query.to_string(), images: Vec::new() },
        ],
        params: json!({"max_tokens": 16}),
    };
    let mut title = String::new();
    let mut chunks = model.provider.stream(request);
    while let Some(item) = chunks.next().await {
        match item {
            Ok(ModelChunk::Text(t)) => title.push_str(&t),
            Ok(ModelChunk::Usage { .. }) => {}
            Err(_) => return None,
        }
    }
    let title: String = title.trim().trim_matches('"').chars().take(60).collect();
    if title.is_empty() {
        Some(query.chars().take(60).collect()).filter(|t: &String| !t.is_empty())
    } else {
        Some(title)
    }
}

impl Engine {
    /// A title for a conversation, from the app's model (None when it cannot make one).
    /// Chatflows (no `model_config`) use the model of their published graph's
    /// first LLM node; a chatflow without one keeps its default name.
    pub(crate) async fn generate_title(&self, app: &LoadedApp, query: &str) -> Option<String> {
        title_for(&self.title_model(app)?, query).await
    }

    /// The model that names `app`'s conversations, if it has one.
    fn title_model(&self, app: &LoadedApp) -> Option<ResolvedModel> {
        let (provider, name) = match &app.spec.model_config {
            Some(mc) => (mc.model.provider.clone(), mc.model.name.clone()),
            None => self.chatflow_model(app).ok().flatten()?,
        };
        self.providers().resolve(&provider, &name).ok()
    }
}

/// Names conversation `conversation_id` once `title` is ready, in a task of
/// its own (best effort: no title, no rename).
pub(crate) fn name_when_ready(
    engine: &Engine,
    conversation_id: Uuid,
    title: impl std::future::Future<Output = Option<String>> + Send + 'static,
) {
    let named = engine.clone();
    engine.spawn(async move {
        if let Some(name) = title.await {
            rename_conversation(&named, conversation_id, name).await;
        }
    });
}

/// Records a generated conversation name (best effort).
async fn rename_conversation(engine: &Engine, conversation_id: Uuid, name: String) {
    let Ok(stream) = StreamId::of("conversation", conversation_id) else { return };
    let env = Envelope::new(engine.now(), None, Event::ConversationRenamed { name });
    if let Err(e) = engine.append_run(&stream, vec![env]).await {
        tracing::warn!("could not name conversation {conversation_id}: {e}");
    }
}

/// An accepted run: its handle, and for blocking runs the outcome to wait for.
pub struct Accepted {
    pub handle: RunHandle,
    pub outcome: Option<oneshot::Receiver<Result<Outcome>>>,
    /// A streamed run's reader, following its stream since before the first
    /// event was written: it is served from memory, not from the store.
    pub frames: Option<RunFrames>,
}
