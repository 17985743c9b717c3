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

use warp::filters::BoxedFilter;
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
pub fn service_api(state: State) -> Routes {
    let routes = any_of([
        app_info::routes(state.clone()),
        chat_messages::routes(state.clone()),
        completion_messages::routes(state.clone()),
        messages::routes(state.clone()),
        conversations::routes(state.clone()),
        files::routes(state.clone()),
        feedbacks::routes(state.clone()),
        audio::routes(state.clone()),
        workflows::routes(state.clone()),
        resume::routes(state.clone()),
        annotations::routes(state),
        openapi_json::routes(),
    ]);
    api_prefix().and(routes).boxed()
}

/// Routes of one group, boxed: chaining boxed filters keeps the types (and
/// this crate's build time) small.
pub type Routes = BoxedFilter<(warp::reply::Response,)>;

/// The first of `routes` that accepts a request.
pub fn any_of<const N: usize>(routes: [Routes; N]) -> Routes {
    let mut all = routes.into_iter();
    let first = all.next().unwrap_or_else(|| warp::any().and_then(|| async { Err(warp::reject::not_found()) }).boxed());
    all.fold(first, |acc, r| acc.or(r).unify().boxed())
}
