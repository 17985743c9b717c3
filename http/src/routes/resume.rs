//! Resuming a run's stream: `GET /workflow/:task_id/events` (workflow and
//! advanced-chat apps, Dify's path), `GET /chat-messages/:task_id/events` and
//! `GET /completion-messages/:task_id/events`, each with `?user=`.
//!
//! Without a position the run is streamed from its first frame; with
//! `Last-Event-ID: N` (or `?after=N`) from frame N + 1. A live run is followed
//! until its terminal frame, a finished one is sent at once.

use std::collections::HashMap;
use std::sync::Arc;

use ferrify_engine::app::AppMode;
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::EngineError;
use uuid::Uuid;
use warp::Filter;

use super::chat_messages::{request_meta, RequestMeta};
use super::{respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{cursor, optional_user, q};
use crate::stream::{sse_frames, wants_ids};
use crate::State;

/// The endpoint group a resume came through (which app modes it serves).
#[derive(Clone, Copy, Debug)]
enum Route {
    Workflow,
    Chat,
    Completion,
}

pub fn routes(state: State) -> Routes {
    let workflow =
        warp::path!("workflow" / String / "events").and(warp::get()).map(|t| (t, Route::Workflow)).untuple_one();
    let chat =
        warp::path!("chat-messages" / String / "events").and(warp::get()).map(|t| (t, Route::Chat)).untuple_one();
    let completion = warp::path!("completion-messages" / String / "events")
        .and(warp::get())
        .map(|t| (t, Route::Completion))
        .untuple_one();
    workflow
        .or(chat)
        .unify()
        .or(completion)
        .unify()
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(request_meta())
        .and_then(|task: String, route: Route, app: Arc<LoadedApp>, state: State, meta: RequestMeta| async move {
            respond(resume(app, state, route, task, meta))
        })
        .boxed()
}

fn resume(
    app: Arc<LoadedApp>,
    state: State,
    route: Route,
    task: String,
    meta: RequestMeta,
) -> Result<warp::reply::Response, ApiError> {
    match (route, app.mode()) {
        (Route::Workflow, AppMode::Workflow | AppMode::AdvancedChat) => {}
        (Route::Workflow, _) => return Err(EngineError::NotWorkflowApp.into()),
        (Route::Chat, m) if m.is_chat_family() => {}
        (Route::Chat, _) => return Err(EngineError::NotChatApp.into()),
        (Route::Completion, AppMode::Completion) => {}
        (Route::Completion, _) => {
            return Err(ApiError::new(400, "app_unavailable", "App unavailable, please check your app configurations."))
        }
    }
    let task_id = Uuid::parse_str(task.trim()).map_err(|_| ApiError::not_found("Task not found."))?;
    let after = resume_point(meta.last_event_id.as_deref(), &meta.query)?;
    let user = optional_user(q(&meta.query, "user").map(str::to_string));
    let frames = state.engine.resume_run(app.id(), &user, task_id, after)?;
    Ok(sse_frames(&state, frames, wants_ids(meta.accept.as_deref(), meta.last_event_id.as_deref())))
}

/// The frame to continue after: `Last-Event-ID`, else `?after=`, else 0 (from
/// the start). Blank means absent; anything but a non-negative integer is invalid.
fn resume_point(last_event_id: Option<&str>, query: &HashMap<String, String>) -> Result<u64, ApiError> {
    match last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
        Some(v) => cursor("Last-Event-ID", v),
        None => q(query, "after").map_or(Ok(0), |v| cursor("after", v.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points() {
        let none = HashMap::new();
        let after = |v: &str| HashMap::from([("after".to_string(), v.to_string())]);
        assert_eq!(resume_point(None, &none).unwrap(), 0);
        assert_eq!(resume_point(Some(" 12 "), &none).unwrap(), 12);
        assert_eq!(resume_point(Some(""), &after("7")).unwrap(), 7);
        assert_eq!(resume_point(Some("3"), &after("7")).unwrap(), 3);
        // Past the end of any run: the engine refuses it once it knows the run.
        assert_eq!(resume_point(None, &after("99999999999999999999999")).unwrap(), u64::MAX);
        for bad in ["-1", "x", "1.5", "+3", "1 2"] {
            assert_eq!(resume_point(Some(bad), &none).unwrap_err().code, "invalid_param", "{bad}");
            assert_eq!(resume_point(None, &after(bad)).unwrap_err().code, "invalid_param", "{bad}");
        }
    }
}
