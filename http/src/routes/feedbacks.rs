//! `POST /messages/:message_id/feedbacks` (§2.14) and `GET /app/feedbacks` (§2.15).

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::apps::LoadedApp;
use ferrify_engine::feedback::parse_rating;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{json_body, limit, page, query, required_user};
use crate::State;

pub fn routes(state: State) -> Routes {
    let give = warp::path!("messages" / String / "feedbacks")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(give(app, state, id, body).await)
        });
    let list = warp::path!("app" / "feedbacks")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(query())
        .and_then(|app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(list(app, state, query))
        });
    any_of([give.boxed(), list.boxed()])
}

/// A feedback request's fields.
#[derive(Debug)]
pub(crate) struct FeedbackRequest {
    pub user: String,
    /// `like`, `dislike`, or `None` to revoke.
    pub rating: Option<String>,
    pub content: Option<String>,
}

/// Reads the body of `POST /messages/:id/feedbacks`.
pub(crate) fn feedback_request(body: &Map<String, Value>) -> Result<FeedbackRequest, ApiError> {
    let user = required_user(body)?;
    let rating = parse_rating(body.get("rating").unwrap_or(&Value::Null))?;
    let content = match body.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid_param("content must be a string")),
    };
    Ok(FeedbackRequest { user, rating, content })
}

async fn give(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let FeedbackRequest { user, rating, content } = feedback_request(&body)?;
    let message_id = Uuid::parse_str(id.trim()).map_err(|_| ApiError::not_found("Message Not Exists."))?;
    state.engine.give_feedback(&app, &user, message_id, rating, content).await?;
    Ok(warp::reply::json(&json!({"result": "success"})).into_response())
}

fn list(app: Arc<LoadedApp>, state: State, query: HashMap<String, String>) -> Result<warp::reply::Response, ApiError> {
    let page = page(&query)?;
    let limit = limit(&query, 20, 101)?;
    let data = state.engine.list_feedbacks(&app, page, limit)?;
    Ok(warp::reply::json(&json!({"data": data})).into_response())
}
