//! ferrify-http: the HTTP edge (warp). The only crate that knows HTTP
//! statuses and Dify's error codes.
//!
//! - [`serve`]: runs the server on a bound listener until a shutdown future resolves;
//! - `routes`: one module per endpoint group (Service API under `/v1` and `/api`, console under `/console/api`);
//! - [`auth`]: API keys and the admin token;
//! - [`error`]: Dify's error envelope and the one table of codes;
//! - [`request`]: reading bodies, queries, users, ids, trace ids;
//! - [`stream`]: SSE framing and blocking folds of a run;
//! - [`metrics`]: request counters and the Prometheus exposition.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod request;
mod routes;
pub use routes::console;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrify_engine::Engine;
use warp::Filter;

use crate::metrics::Metrics;

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct State {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// The console API's token; `None` closes the console API.
    pub admin_token: Option<Arc<str>>,
}

impl State {
    pub fn new(engine: Engine, admin_token: Option<String>) -> Self {
        State { engine, metrics: Arc::new(Metrics::default()), admin_token: admin_token.map(Arc::from) }
    }
}

/// Every route of the server, with request metrics.
pub fn routes(state: State) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics = state.metrics.clone();
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        metrics.record(info.method().as_str(), info.path(), info.status().as_u16());
    });
    routes::health::route()
        .or(routes::metrics::route(state.clone()))
        .or(routes::service_api(state.clone()))
        .or(routes::console::routes(state))
        .recover(recover)
        .with(log)
}

async fn recover(err: warp::Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    if let Some(api) = err.find::<error::ApiError>() {
        return Ok(api.into_response());
    }
    let (status, code, message) = if err.is_not_found() {
        (404, "not_found", "The requested URL was not found on the server.")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (405, "method_not_allowed", "The method is not allowed for the requested URL.")
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        (413, "request_entity_too_large", "The data value transmitted exceeds the capacity limit.")
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        (411, "length_required", "A Content-Length header is required.")
    } else if err.find::<warp::reject::MissingHeader>().is_some() || err.find::<warp::reject::InvalidHeader>().is_some()
    {
        (400, "bad_request", "A request header is missing or invalid.")
    } else {
        (500, "internal_server_error", "Internal Server Error, please contact support.")
    };
    let body = serde_json::json!({"code": code, "message": message, "status": status});
    let status = warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    Ok(warp::Reply::into_response(warp::reply::with_status(warp::reply::json(&body), status)))
}

/// How long open connections (streams) may take to finish after shutdown is asked.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` resolves, then lets open requests
/// finish for a few seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = warp::serve(routes(state)).incoming(listener).graceful(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    tokio::select! {
        _ = server.run() => {}
        _ = async move {
            let _ = rx2.wait_for(|v| *v).await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!("connections still open after {DRAIN:?}; closing them");
        }
    }
    drop(rx);
}
