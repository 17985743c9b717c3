//! Workflow apps: `POST /workflows/run`, `POST /workflows/:workflow_id/run`,
//! `GET /workflows/run/:workflow_run_id`, `POST /workflows/tasks/:task_id/stop`
//! and `GET /workflows/logs`.

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::app::AppMode;
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::runs::{parse_datetime, LogQuery};
use ferrify_engine::EngineError;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::{Filter, Reply};

use super::chat_messages::{reply, request_meta, RequestMeta};
use super::{any_of, respond, with_state, Routes};
use crate::auth::{app_key, caller, Caller};
use crate::error::ApiError;
use crate::request::{files_field, inputs_field, json_body, limit, q, query, required_user, streaming, trace_id};
use crate::State;

pub fn routes(state: State) -> Routes {
    let run = warp::path!("workflows" / "run")
        .and(warp::post())
        .and(caller(state.clone()))
        .and(with_state(state.clone()))
        .and(request_meta())
        .and(json_body())
        .and_then(|caller: Caller, state: State, meta: RequestMeta, body: Map<String, Value>| async move {
            respond(start(caller, state, meta, body, None).await)
        });
    let run_version = warp::path!("workflows" / String / "run")
        .and(warp::post())
        .and(caller(state.clone()))
        .and(with_state(state.clone()))
        .and(request_meta())
        .and(json_body())
        .and_then(|id: String, caller: Caller, state: State, meta: RequestMeta, body: Map<String, Value>| async move {
            respond(start(caller, state, meta, body, Some(id)).await)
        });
    let detail = warp::path!("workflows" / "run" / String)
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and_then(|id: String, app: Arc<LoadedApp>, state: State| async move { respond(detail(app, state, id)) });
    let stop = warp::path!("workflows" / "tasks" / String / "stop")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|task: String, app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(stop(app, state, task, body))
        });
    let logs = warp::path!("workflows" / "logs")
        .and(warp::get())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(query())
        .and_then(|app: Arc<LoadedApp>, state: State, query: HashMap<String, String>| async move {
            respond(logs(app, state, query))
        });
    any_of([run.boxed(), detail.boxed(), run_version.boxed(), stop.boxed(), logs.boxed()])
}

async fn start(
    caller: Caller,
    state: State,
    meta: RequestMeta,
    body: Map<String, Value>,
    workflow_id: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let user = required_user(&body)?;
    if caller.app.mode() != AppMode::Workflow {
        return Err(EngineError::NotWorkflowApp.into());
    }
    let req = WorkflowRequest { key: Some(caller.key_id), ..workflow_request(&body, &meta, workflow_id.as_deref())? };
    debug_assert_eq!(req.user, user);
    let accepted = state.engine.start_workflow(&caller.app, req).await?;
    Ok(reply(&state, &meta, accepted).await)
}

/// The body (and version path segment) of `POST /workflows[/:workflow_id]/run`.
pub fn workflow_request(
    body: &Map<String, Value>,
    meta: &RequestMeta,
    workflow_id: Option<&str>,
) -> Result<WorkflowRequest, ApiError> {
    let user = required_user(body)?;
    let workflow_id = match workflow_id {
        None => None,
        Some(id) => Some(
            Uuid::parse_str(id.trim())
                .map_err(|_| ApiError::bad_request(format!("Invalid workflow ID format: {id}. Expected a UUID.")))?,
        ),
    };
    Ok(WorkflowRequest {
        inputs: inputs_field(body)?,
        user,
        streaming: streaming(body)?,
        trace_id: trace_id(meta.trace_header.clone(), &meta.query, body),
        files: files_field(body)?,
        workflow_id,
        key: None,
    })
}

fn detail(app: Arc<LoadedApp>, state: State, id: String) -> Result<warp::reply::Response, ApiError> {
    if !matches!(app.mode(), AppMode::Workflow | AppMode::AdvancedChat) {
        return Err(EngineError::NotWorkflowApp.into());
    }
    let id = Uuid::parse_str(id.trim()).map_err(|_| ApiError::not_found("Workflow run not found."))?;
    let body = state.engine.workflow_run_detail(&app, id)?;
    Ok(warp::reply::json(&body).into_response())
}

fn stop(
    app: Arc<LoadedApp>,
    state: State,
    task: String,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    required_user(&body)?;
    if app.mode() != AppMode::Workflow {
        return Err(EngineError::NotWorkflowApp.into());
    }
    if let Ok(task_id) = Uuid::parse_str(task.trim()) {
        state.engine.stop_workflow(app.id(), task_id);
    }
    Ok(warp::reply::json(&json!({"result": "success"})).into_response())
}

fn logs(app: Arc<LoadedApp>, state: State, query: HashMap<String, String>) -> Result<warp::reply::Response, ApiError> {
    let page = match q(&query, "page") {
        None => 1,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=99_999).contains(&n) => n,
            _ => return Err(ApiError::invalid_param("page must be an integer between 1 and 99999")),
        },
    };
    let status = match q(&query, "status") {
        None => None,
        Some(s @ ("succeeded" | "failed" | "stopped" | "partial-succeeded" | "running")) => Some(s.to_string()),
        Some(other) => {
            return Err(ApiError::invalid_param(format!("status {other:?} is not one of succeeded, failed, stopped")))
        }
    };
    let date = |name: &str| -> Result<Option<i64>, ApiError> {
        match q(&query, name) {
            None => Ok(None),
            Some(s) => parse_datetime(s)
                .map(Some)
                .ok_or_else(|| ApiError::invalid_param(format!("{name} must be an ISO-8601 date-time"))),
        }
    };
    let lq = LogQuery {
        keyword: q(&query, "keyword").map(str::to_string),
        status,
        page,
        limit: limit(&query, 20, 100)?,
        created_before: date("created_at__before")?,
        created_after: date("created_at__after")?,
        session_id: q(&query, "created_by_end_user_session_id").map(str::to_string),
    };
    if q(&query, "created_by_account").is_some_and(|a| !a.is_empty()) {
        let account = q(&query, "created_by_account").unwrap_or_default();
        return Err(ApiError::invalid_param(format!("Account not found: {account}")));
    }
    let body = if matches!(app.mode(), AppMode::Workflow | AppMode::AdvancedChat) {
        state.engine.workflow_logs(&app, &lq)?
    } else {
        json!({"page": page, "limit": lq.limit, "total": 0, "has_more": false, "data": []})
    };
    Ok(warp::reply::json(&body).into_response())
}
