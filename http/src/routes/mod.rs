//! Routes, one module per endpoint group, mirroring the URL paths. The
//! Service API is served under `/v1` and, as an alias, `/api`.

pub mod annotations;
pub mod app_info;
pub mod audio;
pub mod chat_messages;
pub mod completion_messages;
pub mod console;
pub mod conversations;
pub mod feedbacks;
pub mod file_links;
pub mod files;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod openapi_json;
pub mod resume;
pub mod workflows;

use std::convert::Infallible;

use warp::Filter;

use crate::error::ApiError;
use crate::State;

/// `/v1` or `/api`.
pub fn api_prefix() -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::path("v1").or(warp::path("api")).unify()
}

/// Passes the state to handlers.
pub fn with_state(state: State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A handler's result as a response.
pub fn respond(r: Result<warp::reply::Response, ApiError>) -> Result<warp::reply::Response, Infallible> {
    Ok(r.unwrap_or_else(|e| e.into_response()))
}

/// Every Service API route.
pub fn service_api(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let routes = app_info::routes(state.clone())
        .or(chat_messages::routes(state.clone()))
        .unify()
        .or(completion_messages::routes(state.clone()))
        .unify()
        .or(messages::routes(state.clone()))
        .unify()
        .or(conversations::routes(state.clone()))
        .unify()
        .or(files::routes(state.clone()))
        .unify()
        .or(feedbacks::routes(state.clone()))
        .unify()
        .or(audio::routes(state.clone()))
        .unify()
        .or(workflows::routes(state.clone()))
        .unify()
        .or(resume::routes(state.clone()))
        .unify()
        .or(annotations::routes(state))
        .unify()
        .or(openapi_json::routes())
        .unify();
    api_prefix().and(routes).boxed()
}
