//! `GET /messages`: conversation history; `GET /messages/:message_id/suggested`:
//! follow-up questions after an answer (§2.16).

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::apps::LoadedApp;
use serde_json::json;
use uuid::Uuid;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{limit, optional_user, optional_uuid, q, query};
use crate::State;

pub fn routes(state: State) -> Routes {
    let list = warp::path!("messages")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(query())
        .and_then(|app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(list(app, state, query))
        });
    let suggested = warp::path!("messages" / String / "suggested")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(query())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(suggested(app, state, id, query).await)
        });
    any_of([list.boxed(), suggested.boxed()])
}

async fn suggested(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let user = q(&query, "user").ok_or_else(|| ApiError::invalid_param("Arg user must be provided."))?;
    if !app.mode().is_chat_family() {
        return Err(ferrify_engine::EngineError::NotChatApp.into());
    }
    let message_id = Uuid::parse_str(id.trim()).map_err(|_| ApiError::not_found("Message Not Exists."))?;
    let questions = state.engine.suggested_questions(&app, user, message_id).await?;
    Ok(warp::reply::json(&json!({"result": "success", "data": questions})).into_response())
}

fn list(app: Arc<LoadedApp>, state: State, query: HashMap<String, String>) -> Result<warp::reply::Response, ApiError> {
    if !app.mode().is_chat_family() {
        return Err(ferrify_engine::EngineError::NotChatApp.into());
    }
    let limit = limit(&query, 20, 100)?;
    let user = optional_user(q(&query, "user").map(str::to_string));
    let first_id = optional_uuid(q(&query, "first_id"), "first_id must be a valid UUID")?;
    // Required, as in Dify; present but empty, it names no conversation: an empty page.
    if !query.contains_key("conversation_id") {
        return Err(ApiError::invalid_param("conversation_id is required"));
    }
    let Some(conversation_id) = optional_uuid(q(&query, "conversation_id"), "conversation_id must be a valid UUID")?
    else {
        return Ok(warp::reply::json(&json!({"limit": limit, "has_more": false, "data": []})).into_response());
    };
    let page = state.engine.list_messages(&app, &user, conversation_id, first_id, limit)?;
    Ok(warp::reply::json(&page.to_json()).into_response())
}
