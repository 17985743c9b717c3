//! The admin (console) API, behind the admin token:
//! `POST /console/api/apps/imports`, `GET /console/api/apps`,
//! `POST|GET /console/api/apps/:app_id/api-keys`, `DELETE …/api-keys/:key_id`,
//! `POST /console/api/apps/:app_id/workflows/publish`,
//! `POST /console/api/runs/:task_id/reexecute[?workflow_id=…]` (the re-execution
//! report of a run, see `ferrify_engine::reexec`).

use std::collections::HashMap;

use ferrify_engine::apps::Imported;
use ferrify_engine::model::{ApiKeyRow, AppRow};
use ferrify_engine::projection::secs;
use ferrify_engine::reexec::ReexecOptions;
use ferrify_engine::EngineError;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::{Filter, Reply};

use super::{respond, with_state};
use crate::auth::admin;
use crate::error::ApiError;
use crate::request::{field_string, json_body};
use crate::State;

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let base = warp::path("console").and(warp::path("api")).and(admin(state.clone()));
    let import = warp::path!("apps" / "imports")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|state: State, body: Map<String, Value>| async move { respond(import(state, body).await) });
    let list = warp::path!("apps")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(|state: State| async move { respond(list_apps(state)) });
    let create_key = warp::path!("apps" / String / "api-keys")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and_then(|app: String, state: State| async move { respond(create_key(state, app).await) });
    let list_keys = warp::path!("apps" / String / "api-keys")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(|app: String, state: State| async move { respond(list_keys(state, app)) });
    let revoke = warp::path!("apps" / String / "api-keys" / String)
        .and(warp::delete())
        .and(with_state(state.clone()))
        .and_then(|app: String, key: String, state: State| async move { respond(revoke(state, app, key).await) });
    let reexecute = warp::path!("runs" / String / "reexecute")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|task: String, state: State, query: HashMap<String, String>| async move {
            respond(reexecute(state, task, query).await)
        });
    let publish = warp::path!("apps" / String / "workflows" / "publish")
        .and(warp::post())
        .and(with_state(state))
        .and(json_body())
        .and_then(|app: String, state: State, body: Map<String, Value>| async move {
            respond(publish(state, app, body).await)
        });
    base.and(
        import
            .or(list)
            .unify()
            .or(create_key)
            .unify()
            .or(list_keys)
            .unify()
            .or(revoke)
            .unify()
            .or(publish)
            .unify()
            .or(reexecute)
            .unify(),
    )
    .boxed()
}

/// `POST /console/api/runs/:task_id/reexecute`: runs the recorded run again
/// on a scratch engine (nothing is written to the log) and answers the diff.
async fn reexecute(
    state: State,
    task: String,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let task = Uuid::parse_str(task.trim()).map_err(|_| ApiError::not_found("Run not found."))?;
    let workflow_id = match query.get("workflow_id").map(|w| w.trim()).filter(|w| !w.is_empty()) {
        Some(w) => Some(Uuid::parse_str(w).map_err(|_| ApiError::invalid_param("workflow_id is not a valid id"))?),
        None => None,
    };
    let report = state.engine.reexecute(task, &ReexecOptions { workflow_id, ..Default::default() }).await?;
    Ok(warp::reply::json(&report.to_json()).into_response())
}

fn app_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s.trim()).map_err(|_| ApiError::not_found("App not found."))
}

async fn import(state: State, body: Map<String, Value>) -> Result<warp::reply::Response, ApiError> {
    let mode = field_string(&body, "mode").unwrap_or_else(|| "yaml-content".into());
    if mode != "yaml-content" {
        return Err(ApiError::invalid_param(
            "only mode \"yaml-content\" is supported (yaml-url cannot be fetched here)",
        ));
    }
    let Some(yaml) = field_string(&body, "yaml_content").filter(|y| !y.trim().is_empty()) else {
        return Err(ApiError::invalid_param("yaml_content is required"));
    };
    let import_id = Uuid::new_v4().to_string();
    match state.engine.import_app(&yaml).await {
        Ok(imported) => Ok(warp::reply::json(&import_json(&imported)).into_response()),
        Err(EngineError::Dsl(e)) => {
            let body = json!({
                "id": import_id,
                "status": "failed",
                "app_id": null,
                "app_mode": null,
                "error": e.to_string(),
                "code": "invalid_param",
                "message": e.to_string(),
            });
            Ok(warp::reply::with_status(warp::reply::json(&body), warp::http::StatusCode::BAD_REQUEST).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The body of a successful import.
pub fn import_json(imported: &Imported) -> Value {
    json!({
        "id": Uuid::new_v4().to_string(),
        "status": "completed",
        "app_id": imported.app_id.to_string(),
        "app_mode": imported.mode.as_str(),
        "current_dsl_version": "0.3.1",
        "imported_dsl_version": "",
        "error": "",
    })
}

/// The app list body.
pub fn apps_json(apps: &[AppRow]) -> Value {
    let data: Vec<Value> = apps.iter().map(app_json).collect();
    json!({"page": 1, "limit": data.len(), "total": data.len(), "has_more": false, "data": data})
}

fn app_json(a: &AppRow) -> Value {
    json!({
        "id": a.id.to_string(),
        "name": a.name,
        "mode": a.mode,
        "description": a.description,
        "icon": a.icon,
        "icon_background": a.icon_background,
        "workflow_id": a.workflow_id.map(|w| w.to_string()),
        "created_at": secs(a.created_at),
        "updated_at": secs(a.updated_at),
    })
}

fn list_apps(state: State) -> Result<warp::reply::Response, ApiError> {
    let apps = state.engine.list_apps()?;
    Ok(warp::reply::json(&apps_json(&apps)).into_response())
}

/// An API key as the console shows it.
pub fn key_json(k: &ApiKeyRow, token: &str) -> Value {
    json!({"id": k.id.to_string(), "type": "app", "token": token, "last_used_at": null, "created_at": secs(k.created_at)})
}

async fn create_key(state: State, app: String) -> Result<warp::reply::Response, ApiError> {
    let created = state.engine.create_api_key(app_id(&app)?).await?;
    Ok(warp::reply::with_status(
        warp::reply::json(&key_json(&created.row, &created.token)),
        warp::http::StatusCode::CREATED,
    )
    .into_response())
}

fn list_keys(state: State, app: String) -> Result<warp::reply::Response, ApiError> {
    let id = app_id(&app)?;
    if state.engine.app(id)?.is_none() {
        return Err(ApiError::not_found("App not found."));
    }
    let keys = state.engine.list_api_keys(id)?;
    let data: Vec<Value> = keys.iter().map(|k| key_json(k, &k.token_hint)).collect();
    Ok(warp::reply::json(&json!({"data": data})).into_response())
}

async fn revoke(state: State, app: String, key: String) -> Result<warp::reply::Response, ApiError> {
    let key_id = Uuid::parse_str(key.trim()).map_err(|_| ApiError::not_found("API key not found."))?;
    state.engine.revoke_api_key(app_id(&app)?, key_id).await?;
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}

async fn publish(state: State, app: String, body: Map<String, Value>) -> Result<warp::reply::Response, ApiError> {
    let (workflow_id, at) = state.engine.publish_workflow(app_id(&app)?, &Value::Object(body)).await?;
    Ok(warp::reply::json(&json!({"result": "success", "workflow_id": workflow_id.to_string(), "created_at": secs(at)}))
        .into_response())
}
