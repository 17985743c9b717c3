//! Annotations and annotation reply (§2.28): `GET/POST /apps/annotations`,
//! `PUT/DELETE /apps/annotations/:id`, `POST /apps/annotation-reply/:action`
//! and `GET /apps/annotation-reply/:action/status/:job_id`. Every app mode;
//! an app's key sees and edits only that app's annotations.

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::annotation::annotation_json;
use ferrify_engine::annotation::jobs::{ReplyAction, ReplySettings};
use ferrify_engine::apps::LoadedApp;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{json_body, query};
use crate::State;

pub fn routes(state: State) -> Routes {
    let list = warp::path!("apps" / "annotations")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(query())
        .and_then(|app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(list(app, state, query))
        });
    let create = warp::path!("apps" / "annotations")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(create(app, state, body).await)
        });
    let update = warp::path!("apps" / "annotations" / String)
        .and(warp::put())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|id: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(update(app, state, id, body).await)
        });
    let delete = warp::path!("apps" / "annotations" / String)
        .and(warp::delete())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and_then(|id: String, app: Arc<LoadedApp>, state: State| async move { respond(delete(app, state, id).await) });
    let action = warp::path!("apps" / "annotation-reply" / String)
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|action: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(reply_action(app, state, action, body))
        });
    let status = warp::path!("apps" / "annotation-reply" / String / "status" / String)
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and_then(|action: String, job: String, app: Arc<LoadedApp>, state: State| async move {
            respond(job_status(app, state, action, job))
        });
    any_of([list.boxed(), create.boxed(), update.boxed(), delete.boxed(), action.boxed(), status.boxed()])
}

/// A `page`/`limit` query value: an integer, else the default (as Flask's `type=int`).
fn int_arg(query: &HashMap<String, String>, name: &str, default: i64) -> i64 {
    query.get(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default)
}

fn list(app: Arc<LoadedApp>, state: State, query: HashMap<String, String>) -> Result<warp::reply::Response, ApiError> {
    let page = int_arg(&query, "page", 1);
    let limit = int_arg(&query, "limit", 20);
    let keyword = query.get("keyword").map(String::as_str).unwrap_or("");
    let found = state.engine.list_annotations(app.id(), page, limit, keyword)?;
    // `has_more` is "this page is full", as Dify computes it.
    let has_more = i64::try_from(found.data.len()).is_ok_and(|n| n == limit);
    let data: Vec<Value> = found.data.iter().map(annotation_json).collect();
    let body = json!({"data": data, "has_more": has_more, "limit": limit, "total": found.total, "page": page});
    Ok(warp::reply::json(&body).into_response())
}

/// A required text field: strings as is, numbers and booleans as text.
fn text_field(body: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(if *b { "True" } else { "False" }.to_string()),
        None | Some(Value::Null) => Err(ApiError::invalid_param(format!("{name} is required"))),
        Some(_) => Err(ApiError::invalid_param(format!("{name} must be a string"))),
    }
}

fn annotation_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.trim()).map_err(|_| ApiError::not_found(ferrify_engine::annotation::NOT_FOUND))
}

async fn create(
    app: Arc<LoadedApp>,
    state: State,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let question = text_field(&body, "question")?;
    let answer = text_field(&body, "answer")?;
    let row = state.engine.create_annotation(app.id(), question, answer).await?;
    Ok(warp::reply::with_status(warp::reply::json(&annotation_json(&row)), StatusCode::CREATED).into_response())
}

async fn update(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let id = annotation_id(&id)?;
    let question = text_field(&body, "question")?;
    let answer = text_field(&body, "answer")?;
    let row = state.engine.update_annotation(app.id(), id, question, answer).await?;
    Ok(warp::reply::json(&annotation_json(&row)).into_response())
}

async fn delete(app: Arc<LoadedApp>, state: State, id: String) -> Result<warp::reply::Response, ApiError> {
    let id = annotation_id(&id)?;
    state.engine.delete_annotation(app.id(), id).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// The body of an enable/disable request (validated for both, as Dify does).
fn reply_settings(body: &Map<String, Value>) -> Result<ReplySettings, ApiError> {
    let score_threshold = match body.get("score_threshold") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        None | Some(Value::Null) => return Err(ApiError::invalid_param("score_threshold is required")),
        Some(_) => None,
    }
    .filter(|f| f.is_finite())
    .ok_or_else(|| ApiError::invalid_param("score_threshold must be a number"))?;
    Ok(ReplySettings {
        score_threshold,
        embedding_provider_name: text_field(body, "embedding_provider_name")?,
        embedding_model_name: text_field(body, "embedding_model_name")?,
    })
}

fn reply_action(
    app: Arc<LoadedApp>,
    state: State,
    action: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let settings = reply_settings(&body)?;
    let action = ReplyAction::parse(&action)?;
    let job = state.engine.start_annotation_reply_job(app.id(), action, settings);
    Ok(warp::reply::json(&job).into_response())
}

fn job_status(
    app: Arc<LoadedApp>,
    state: State,
    action: String,
    job: String,
) -> Result<warp::reply::Response, ApiError> {
    let job_id = Uuid::parse_str(job.trim()).map_err(|_| ApiError::invalid_param("The job does not exist."))?;
    let status = state.engine.annotation_reply_job(app.id(), &action, job_id)?;
    Ok(warp::reply::json(&status).into_response())
}
