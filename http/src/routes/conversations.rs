//! `GET /conversations`, `DELETE /conversations/:id`,
//! `POST /conversations/:id/name`, `GET /conversations/:id/variables`.

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::apps::LoadedApp;
use ferrify_engine::history::{SortBy, VariablesQuery};
use ferrify_engine::Engine;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{field_bool, json_body, limit, optional_user, optional_uuid, q, query, user_field};
use crate::State;

pub fn routes(state: State) -> Routes {
    let list = warp::path!("conversations")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(query())
        .and_then(|app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(list(app, state, query))
        });
    let delete = warp::path!("conversations" / String)
        .and(warp::delete())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(delete(app, state, id, body).await)
        });
    let rename = warp::path!("conversations" / String / "name")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(rename(app, state, id, body).await)
        });
    let variables = warp::path!("conversations" / String / "variables")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(query())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(variables(app, state, id, query))
        });
    any_of([list.boxed(), delete.boxed(), rename.boxed(), variables.boxed()])
}

pub fn conversation_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.trim()).map_err(|_| ApiError::not_found("Conversation Not Exists."))
}

fn list(app: Arc<LoadedApp>, state: State, query: HashMap<String, String>) -> Result<warp::reply::Response, ApiError> {
    // As Dify: the app's mode before the query.
    Engine::require_chat_app(&app)?;
    let limit = limit(&query, 20, 100)?;
    let user = optional_user(q(&query, "user").map(str::to_string));
    let last_id = optional_uuid(q(&query, "last_id"), "last_id must be a valid UUID")?;
    let sort = match q(&query, "sort_by") {
        None => SortBy::UpdatedDesc,
        Some(s) => SortBy::parse(s.trim()).ok_or_else(|| {
            ApiError::invalid_param("sort_by must be one of created_at, -created_at, updated_at, -updated_at")
        })?,
    };
    let page = state.engine.list_conversations(&app, &user, last_id, limit, sort)?;
    Ok(warp::reply::json(&page.to_json()).into_response())
}

async fn delete(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let id = conversation_id(&id)?;
    let user = optional_user(user_field(&body)?);
    Engine::require_chat_app(&app)?;
    state.engine.delete_conversation(&app, &user, id).await?;
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}

async fn rename(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let id = conversation_id(&id)?;
    // As Dify: the user, then the app's mode, then the rest of the body.
    user_field(&body)?;
    Engine::require_chat_app(&app)?;
    let r = rename_request(&body)?;
    let conv = state.engine.rename_conversation(&app, &r.user, id, r.name, r.auto_generate).await?;
    Ok(warp::reply::json(&conv).into_response())
}

/// The body of `POST /conversations/:id/name`.
#[derive(Debug, PartialEq)]
pub struct Rename {
    pub user: String,
    pub name: Option<String>,
    pub auto_generate: bool,
}

pub fn rename_request(body: &Map<String, Value>) -> Result<Rename, ApiError> {
    let user = optional_user(user_field(body)?);
    let auto_generate = field_bool(body, "auto_generate", false)?;
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid_param("name must be a string")),
    };
    if !auto_generate && name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(ApiError::invalid_param("name is required when auto_generate is false"));
    }
    Ok(Rename { user, name, auto_generate })
}

fn variables(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let id = conversation_id(&id)?;
    Engine::require_chat_app(&app)?;
    let limit = limit(&query, 20, 100)?;
    let last_id = optional_uuid(q(&query, "last_id"), "last_id must be a valid UUID")?;
    let name = q(&query, "variable_name").map(variable_name).transpose()?;
    let user = optional_user(q(&query, "user").map(str::to_string));
    let query = VariablesQuery { limit, last_id, name };
    let page = state.engine.conversation_variables(&app, &user, id, &query)?;
    Ok(warp::reply::json(&page.to_json()).into_response())
}

/// A `variable_name` filter, checked as Dify checks it (1 to 255 characters:
/// letters, digits, `-`, `_`, `.`, and none of the patterns it refuses).
fn variable_name(name: &str) -> Result<String, ApiError> {
    // In Dify's order: its validator's checks, then the length.
    let invalid = |message: String| ApiError::invalid_param(message);
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) || !name.chars().any(char::is_alphanumeric) {
        return Err(invalid(
            "Variable name can only contain letters, numbers, hyphens (-), underscores (_), and periods (.)".into(),
        ));
    }
    let lower = name.to_lowercase();
    if let Some(pattern) = ["--", "xp_", "sp_"].into_iter().find(|p| lower.contains(p)) {
        return Err(invalid(format!("Variable name contains invalid characters: {pattern}")));
    }
    if name.chars().count() > 255 {
        return Err(invalid("variable_name must be at most 255 characters".into()));
    }
    Ok(name.to_string())
}
