//! ferrify-http: the HTTP edge (warp). The only crate that knows HTTP
//! statuses and Dify's error codes.
//!
//! - [`serve`]: runs the server on a bound listener until a shutdown future resolves;
//! - `routes`: one module per endpoint group;
//! - `metrics`: request counters and the Prometheus exposition.

pub mod metrics;
mod routes;

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
}

impl State {
    pub fn new(engine: Engine) -> Self {
        State { engine, metrics: Arc::new(Metrics::default()) }
    }
}

/// Every route of the server, with request metrics.
pub fn routes(state: State) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics = state.metrics.clone();
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        metrics.record(info.method().as_str(), info.path(), info.status().as_u16());
    });
    routes::health::route().or(routes::metrics::route(state.clone())).recover(recover).with(log)
}

async fn recover(err: warp::Rejection) -> Result<impl warp::Reply, std::convert::Infallible> {
    let (status, code, message) = if err.is_not_found() {
        (404, "not_found", "The requested URL was not found on the server.")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (405, "method_not_allowed", "The method is not allowed for the requested URL.")
    } else {
        (500, "internal_server_error", "Internal Server Error, please contact support.")
    };
    let body = serde_json::json!({"code": code, "message": message, "status": status});
    let status = warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    Ok(warp::reply::with_status(warp::reply::json(&body), status))
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
