//! `POST /chat-messages` and `POST /chat-messages/:task_id/stop`.

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::app::AppMode;
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::runner::easy::{Accepted, MessageRequest};
use ferrify_engine::Engine;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::{app_key, caller, Caller};
use crate::error::ApiError;
use crate::request::{
    field_bool, files_field, inputs_field, json_body, optional_uuid, query, required_user, streaming, trace_id,
};
use crate::stream::{blocking, sse, wants_ids};
use crate::State;

pub fn routes(state: State) -> Routes {
    let send = warp::path!("chat-messages")
        .and(warp::post())
        .and(caller(state.clone()))
        .and(with_state(state.clone()))
        .and(request_meta())
        .and(json_body())
        .and_then(|caller: Caller, state: State, meta: RequestMeta, body: Map<String, Value>| async move {
            respond(send(caller, state, meta, body).await)
        });
    let stop = warp::path!("chat-messages" / String / "stop")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(json_body())
        .and_then(|task: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(stop(app, state, task, body).await)
        });
    any_of([send.boxed(), stop.boxed()])
}

/// Headers and query of a generation request.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub trace_header: Option<String>,
    pub accept: Option<String>,
    pub last_event_id: Option<String>,
    pub query: HashMap<String, String>,
}

pub fn request_meta() -> impl Filter<Extract = (RequestMeta,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("x-trace-id")
        .and(warp::header::optional::<String>("accept"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(query())
        .map(|trace_header, accept, last_event_id, query| RequestMeta { trace_header, accept, last_event_id, query })
}

/// The fields chat and completion requests share.
pub fn message_request(body: &Map<String, Value>, meta: &RequestMeta) -> Result<MessageRequest, ApiError> {
    let user = required_user(body)?;
    let query = match body.get("query") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::invalid_param("query must be a string")),
    };
    let inputs = inputs_field(body)?;
    let files = files_field(body)?;
    let conversation_id = match body.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => optional_uuid(Some(s), "conversation_id must be a valid UUID")?,
        Some(_) => return Err(ApiError::invalid_param("conversation_id must be a valid UUID")),
    };
    Ok(MessageRequest {
        query,
        inputs,
        user,
        conversation_id,
        streaming: streaming(body)?,
        auto_generate_name: field_bool(body, "auto_generate_name", true)?,
        trace_id: trace_id(meta.trace_header.clone(), &meta.query, body),
        files,
        key: None,
        workflow_id: None,
    })
}

/// A chatflow's `workflow_id`: absent, null or empty → none; a string that is
/// not a UUID → `bad_request` in Dify's words. Other apps ignore the field.
fn workflow_id_field(body: &Map<String, Value>) -> Result<Option<Uuid>, ApiError> {
    match body.get("workflow_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Uuid::try_parse(s)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("Invalid workflow_id format: '{s}'"))),
        Some(_) => Err(ApiError::invalid_param("workflow_id must be a string")),
    }
}

async fn send(
    caller: Caller,
    state: State,
    meta: RequestMeta,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    // As Dify: the user, then the app's mode, then the rest of the body.
    required_user(&body)?;
    Engine::require_chat_app(&caller.app)?;
    let workflow_id = match caller.app.mode() {
        AppMode::AdvancedChat => workflow_id_field(&body)?,
        _ => None,
    };
    let req = MessageRequest { key: Some(caller.key_id), workflow_id, ..message_request(&body, &meta)? };
    let accepted = state.engine.start_chat(&caller.app, req).await?;
    Ok(reply(&state, &meta, accepted).await)
}

/// Answers an accepted run: its SSE stream, or the blocking body once it ends.
pub async fn reply(state: &State, meta: &RequestMeta, accepted: Accepted) -> warp::reply::Response {
    match accepted.outcome {
        None => sse(
            state,
            &accepted.handle,
            accepted.frames,
            wants_ids(meta.accept.as_deref(), meta.last_event_id.as_deref()),
        ),
        Some(outcome) => blocking(outcome).await,
    }
}

async fn stop(
    app: Arc<LoadedApp>,
    state: State,
    task: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let user = required_user(&body)?;
    if !app.mode().is_chat_family() {
        return Err(ferrify_engine::EngineError::NotChatApp.into());
    }
    stop_task(&state, &app, &task, &user)
}

/// Asks a message run to stop; Dify answers success whatever the task (§2.2).
pub fn stop_task(state: &State, app: &LoadedApp, task: &str, user: &str) -> Result<warp::reply::Response, ApiError> {
    if let Ok(task_id) = Uuid::parse_str(task.trim()) {
        state.engine.stop_message(app.id(), task_id, user)?;
    }
    Ok(warp::reply::json(&json!({"result": "success"})).into_response())
}
