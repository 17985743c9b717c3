//! `POST /completion-messages` and `POST /completion-messages/:task_id/stop`.

use std::sync::Arc;

use ferrify_engine::app::AppMode;
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::runner::easy::MessageRequest;
use ferrify_engine::Engine;
use ferrify_engine::EngineError;
use serde_json::{Map, Value};
use warp::Filter;

use super::chat_messages::{message_request, reply, request_meta, stop_task, RequestMeta};
use super::{any_of, respond, with_state, Routes};
use crate::auth::{app_key, caller, Caller};
use crate::error::ApiError;
use crate::request::{json_body, required_user};
use crate::State;

pub fn routes(state: State) -> Routes {
    let send = warp::path!("completion-messages")
        .and(warp::post())
        .and(caller(state.clone()))
        .and(with_state(state.clone()))
        .and(request_meta())
        .and(json_body())
        .and_then(|caller: Caller, state: State, meta: RequestMeta, body: Map<String, Value>| async move {
            respond(send(caller, state, meta, body).await)
        });
    let stop = warp::path!("completion-messages" / String / "stop")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(json_body())
        .and_then(|task: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(stop(app, state, task, body).await)
        });
    any_of([send.boxed(), stop.boxed()])
}

async fn send(
    caller: Caller,
    state: State,
    meta: RequestMeta,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    // Completions have no conversation: these chat fields are ignored, whatever they hold.
    let mut body = body;
    body.remove("conversation_id");
    body.remove("auto_generate_name");
    // As Dify: the user, then the app's mode, then the rest of the body.
    required_user(&body)?;
    Engine::require_completion_app(&caller.app)?;
    let req = MessageRequest { key: Some(caller.key_id), ..message_request(&body, &meta)? };
    let accepted = state.engine.start_completion(&caller.app, req).await?;
    Ok(reply(&state, &meta, accepted).await)
}

async fn stop(
    app: Arc<LoadedApp>,
    state: State,
    task: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let user = required_user(&body)?;
    if app.mode() != AppMode::Completion {
        return Err(EngineError::AppUnavailable("App unavailable, please check your app configurations.".into()).into());
    }
    stop_task(&state, &app, &task, &user)
}
