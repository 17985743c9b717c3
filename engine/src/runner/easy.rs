//! Chat and completion apps: one prompt built from `model_config`, one
//! streamed model call.
//!
//! ```text
//! RunStarted ─ ModelCalled ─ AnswerChunk* ─ ModelAnswered ─ MessageEnded      (done or stopped)
//!                                         └─ RunFailed                        (model error)
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferrify_store::{EventLog, PendingAppend, StreamId};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::prompt::render;
use super::{end_user_id, RunHandle};
use crate::app::{form, AppMode};
use crate::apps::LoadedApp;
use crate::engine::{Engine, Stoppable};
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event, NewConversation, RunStarted, Usage};
use crate::json::Json;
use crate::model::{ConversationRow, MessageRow};
use crate::projection::trees;
use crate::provider::{
    estimate_tokens, registry::price_usage, registry::ResolvedModel, ModelChunk, ModelRequest, PromptMessage,
    ProviderError, Role,
};

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
}

/// Everything the spawned run needs.
struct Plan {
    engine: Engine,
    stream: StreamId,
    trace_id: Option<String>,
    model: ResolvedModel,
    request: ModelRequest,
    flag: Arc<AtomicBool>,
    task_id: Uuid,
    conversation: Option<(Uuid, tokio::sync::OwnedMutexGuard<()>)>,
    title_from: Option<(Uuid, String)>,
}

impl Engine {
    /// Accepts a chat turn (`POST /chat-messages`) and starts its run.
    pub async fn start_chat(&self, app: &LoadedApp, req: MessageRequest) -> Result<RunHandle> {
        match app.mode() {
            AppMode::Chat => {}
            AppMode::AgentChat | AppMode::AdvancedChat => {
                return Err(EngineError::AppUnavailable(format!(
                    "App unavailable: {} apps are not supported by this server yet.",
                    app.mode().as_str()
                )))
            }
            _ => return Err(EngineError::NotChatApp),
        }
        self.start_easy(app, req, true).await
    }

    /// Accepts a completion (`POST /completion-messages`) and starts its run.
    pub async fn start_completion(&self, app: &LoadedApp, req: MessageRequest) -> Result<RunHandle> {
        if app.mode() != AppMode::Completion {
            return Err(EngineError::AppUnavailable("App unavailable, please check your app configurations.".into()));
        }
        self.start_easy(app, MessageRequest { conversation_id: None, auto_generate_name: false, ..req }, false).await
    }

    async fn start_easy(&self, app: &LoadedApp, req: MessageRequest, chat: bool) -> Result<RunHandle> {
        let mc = app.spec.model_config.as_ref().ok_or_else(|| {
            EngineError::AppUnavailable("App unavailable, please check your app configurations.".into())
        })?;
        let query = req.query.replace('\0', "");
        if chat && query.trim().is_empty() {
            return Err(EngineError::InvalidParam("query is required".into()));
        }
        let inputs = form::validate(&app.spec.form, &req.inputs).map_err(EngineError::InvalidParam)?;
        let model = self.providers().resolve(&mc.model.provider, &mc.model.name)?;
        let app_id = app.id();
        let end_user = end_user_id(app_id, &req.user);

        // The conversation: an existing one must be this end user's, and turns of it run one at a time.
        let (conversation_id, new_conversation, guard) = if !chat {
            (Some(Uuid::new_v4()), None, None)
        } else if let Some(id) = req.conversation_id {
            let row = self.store().get_json::<ConversationRow>(trees::CONVERSATIONS, id.as_bytes())?;
            let row = row
                .filter(|r| r.app_id == app_id && r.end_user_id == end_user && !r.deleted)
                .ok_or_else(|| EngineError::NotFound("Conversation Not Exists.".into()))?;
            if row.status != "normal" {
                return Err(EngineError::ConversationCompleted);
            }
            let guard = self.lock_conversation(id).await;
            (Some(id), None, Some(guard))
        } else {
            let id = Uuid::new_v4();
            let new = NewConversation { name: "New conversation".into(), introduction: app.spec.opening_statement() };
            let guard = self.lock_conversation(id).await;
            (Some(id), Some(new), Some(guard))
        };

        // The prompt.
        let mut messages = Vec::new();
        let system = render(&mc.pre_prompt, &inputs);
        if chat {
            if !system.trim().is_empty() {
                messages.push(PromptMessage { role: Role::System, content: system });
            }
            if new_conversation.is_none() {
                if let Some(id) = conversation_id {
                    messages.extend(self.history(id)?);
                }
            }
            messages.push(PromptMessage { role: Role::User, content: query.clone() });
        } else {
            let mut prompt = system;
            if !query.is_empty() {
                if !prompt.is_empty() {
                    prompt.push('\n');
                }
                prompt.push_str(&query);
            }
            messages.push(PromptMessage { role: Role::User, content: prompt });
        }
        let request = ModelRequest { model: model.model.clone(), messages, params: mc.model.completion_params.clone() };

        let task_id = Uuid::new_v4();
        let message_id = Uuid::new_v4();
        let stream = StreamId::of("run", task_id)?;
        let title_from = (chat && new_conversation.is_some() && req.auto_generate_name)
            .then(|| (conversation_id.unwrap_or_default(), query.clone()));
        let started = RunStarted {
            task_id,
            app_id,
            mode: app.mode().as_str().to_string(),
            end_user_id: end_user,
            user: req.user.clone(),
            conversation_id: if chat { conversation_id } else { None },
            new_conversation,
            message_id: Some(message_id),
            workflow_run_id: None,
            workflow_id: None,
            query,
            inputs: Json(Value::Object(inputs)),
            files: Json(if req.files.is_null() { json!([]) } else { req.files.clone() }),
            streaming: req.streaming,
            options: Json(json!({"model": {"provider": model.provider_name, "name": model.model}})),
        };
        let flag = Arc::new(AtomicBool::new(false));
        self.inner.running.lock().insert(task_id, Stoppable { app_id, end_user_id: end_user, flag: flag.clone() });
        let first = Envelope::new(self.now(), req.trace_id.clone(), Event::RunStarted(Box::new(started)));
        if let Err(e) = self.append_run(&stream, vec![first]).await {
            self.inner.running.lock().remove(&task_id);
            return Err(e);
        }
        let plan = Plan {
            engine: self.clone(),
            stream: stream.clone(),
            trace_id: req.trace_id,
            model,
            request,
            flag,
            task_id,
            conversation: conversation_id.zip(guard),
            title_from,
        };
        tokio::spawn(run(plan));
        Ok(RunHandle {
            task_id,
            stream,
            message_id: Some(message_id),
            conversation_id: if chat { conversation_id } else { None },
            workflow_run_id: None,
        })
    }

    /// The last turns of a conversation as prompt messages, oldest first.
    fn history(&self, conversation_id: Uuid) -> Result<Vec<PromptMessage>> {
        let index = self.store().scan(trees::CONV_MESSAGES, conversation_id.as_bytes(), None, HISTORY_TURNS, true)?;
        let mut out = Vec::new();
        for (k, _) in index.into_iter().rev() {
            let Ok(id) = Uuid::from_slice(&k[k.len() - 16..]) else { continue };
            let Some(m) = self.store().get_json::<MessageRow>(trees::MESSAGES, id.as_bytes())? else { continue };
            if m.status != "normal" {
                continue;
            }
            out.push(PromptMessage { role: Role::User, content: m.query });
            out.push(PromptMessage { role: Role::Assistant, content: m.answer });
        }
        Ok(out)
    }
}

/// The run itself, in its own task.
async fn run(plan: Plan) {
    let Plan { engine, stream, trace_id, model, request, flag, task_id, conversation, title_from } = plan;
    if let Some((conversation_id, query)) = title_from {
        let engine = engine.clone();
        let model = model.clone();
        tokio::spawn(async move { name_conversation(engine, model, conversation_id, query).await });
    }
    let result = call_model(&engine, &stream, &trace_id, &model, request, &flag).await;
    if let Err(e) = result {
        tracing::error!(task = %task_id, "run could not be recorded: {e}");
    }
    engine.inner.running.lock().remove(&task_id);
    if let Some((id, guard)) = conversation {
        drop(guard);
        engine.release_conversation(id);
    }
}

async fn call_model(
    engine: &Engine,
    stream: &StreamId,
    trace_id: &Option<String>,
    model: &ResolvedModel,
    request: ModelRequest,
    flag: &AtomicBool,
) -> Result<()> {
    let started = Instant::now();
    let request_json = serde_json::to_value(&request).unwrap_or(Value::Null);
    let prompt_text: String = request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    engine
        .append_run(
            stream,
            vec![Envelope::new(
                engine.now(),
                trace_id.clone(),
                Event::ModelCalled {
                    node_id: None,
                    provider: model.provider_name.clone(),
                    model: model.model.clone(),
                    request: Json(request_json),
                },
            )],
        )
        .await?;
    let mut chunks = model.provider.stream(request);
    let mut answer = String::new();
    let mut reported: Option<(u64, u64)> = None;
    let mut first_token: Option<f64> = None;
    let mut pending: Vec<PendingAppend> = Vec::new();
    let mut failure: Option<ProviderError> = None;
    let mut stopped = false;
    while let Some(item) = chunks.next().await {
        if flag.load(Ordering::Acquire) {
            stopped = true;
            break;
        }
        match item {
            Ok(ModelChunk::Text(text)) if !text.is_empty() => {
                first_token.get_or_insert(started.elapsed().as_secs_f64());
                answer.push_str(&text);
                let env = Envelope::new(engine.now(), None, Event::AnswerChunk { text, from_variable_selector: None });
                let payload = env.encode().map_err(ferrify_store::Error::from)?;
                pending.push(engine.store().append(ferrify_store::Append::new(stream.clone(), vec![payload])));
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
    if flag.load(Ordering::Acquire) {
        stopped = true;
    }
    for p in pending {
        p.await?;
    }
    let latency = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        let (code, status) = match &e {
            ProviderError::NotInitialized(_) => ("provider_not_initialize", 400),
            ProviderError::RateLimited(_) => ("rate_limit_error", 429),
            ProviderError::Request(_) => ("completion_request_error", 400),
        };
        let event = Event::RunFailed { code: code.into(), message: e.to_string(), status };
        return engine.append_run(stream, vec![Envelope::new(engine.now(), trace_id.clone(), event)]).await;
    }
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
    engine
        .append_run(
            stream,
            vec![
                Envelope::new(
                    now,
                    None,
                    Event::ModelAnswered { node_id: None, text: answer.clone(), usage: usage.clone() },
                ),
                Envelope::new(
                    now,
                    trace_id.clone(),
                    Event::MessageEnded { answer, usage, latency: round3(latency), stopped },
                ),
            ],
        )
        .await
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Asks `model` for a short title of a conversation starting with `query`.
async fn title_for(model: &ResolvedModel, query: &str) -> Option<String> {
    let request = ModelRequest {
        model: model.model.clone(),
        messages: vec![
            PromptMessage {
                role: Role::System,
                content: "Write a short title (at most 8 words) for a conversation that starts with the user's message. Answer with the title only.".into(),
            },
            PromptMessage { role: Role::User, content: query.to_string() },
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
    pub(crate) async fn generate_title(&self, app: &LoadedApp, query: &str) -> Option<String> {
        let mc = app.spec.model_config.as_ref()?;
        let model = self.providers().resolve(&mc.model.provider, &mc.model.name).ok()?;
        title_for(&model, query).await
    }
}

/// Names a new conversation from its first query with the app's model (best effort).
async fn name_conversation(engine: Engine, model: ResolvedModel, conversation_id: Uuid, query: String) {
    let Some(title) = title_for(&model, &query).await else { return };
    let Ok(stream) = StreamId::of("conversation", conversation_id) else { return };
    let env = Envelope::new(engine.now(), None, Event::ConversationRenamed { name: title });
    if let Err(e) = engine.append_run(&stream, vec![env]).await {
        tracing::warn!("could not name conversation {conversation_id}: {e}");
    }
}
