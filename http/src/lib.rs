//! ferrify-http: the HTTP edge (warp). The only crate that knows HTTP
//! statuses and Dify's error codes.
//!
//! - [`bind`] and [`serve`]: the listening socket, then the server on it until a shutdown future resolves;
//! - `routes`: one module per endpoint group (Service API under `/v1` and `/api`, console under `/console/api`);
//! - [`openapi`]: the OpenAPI document of the Service API (`GET /v1/openapi.json`);
//! - [`auth`]: API keys and the admin token;
//! - [`limits`]: body, header, timeout and rate limits of the edge;
//! - [`error`]: Dify's error envelope and the one table of codes;
//! - [`request`]: reading bodies, queries, users, ids, trace ids;
//! - [`stream`]: SSE framing and blocking folds of a run;
//! - [`metrics`]: request counters and the Prometheus exposition.

pub mod auth;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod request;
mod routes;
pub use routes::console;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrify_engine::Engine;
use futures_util::FutureExt;
use warp::Filter;

use crate::limits::{Limits, RateLimiter};
use crate::metrics::Metrics;

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct State {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// The console API's token; `None` closes the console API.
    pub admin_token: Option<Arc<str>>,
    pub limits: Arc<Limits>,
    /// Per-key token buckets (used when `limits.rate_limit` is set).
    pub rate: Arc<RateLimiter>,
    /// Origins allowed to call from a browser; empty: no CORS headers at all.
    pub cors_origins: Arc<[String]>,
}

impl State {
    pub fn new(engine: Engine, admin_token: Option<String>) -> Self {
        State {
            engine,
            metrics: Arc::new(Metrics::default()),
            // An empty token would open the console to `Bearer ` alone: it closes it.
            admin_token: admin_token.filter(|t| !t.is_empty()).map(Arc::from),
            limits: Arc::new(Limits::default()),
            rate: Arc::new(RateLimiter::default()),
            cors_origins: Arc::from(Vec::new()),
        }
    }

    /// The same state with other limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        State { limits: Arc::new(limits), ..self }
    }

    /// The same state answering CORS requests from `origins` (`*`: any origin).
    pub fn with_cors(self, origins: Vec<String>) -> Self {
        State { cors_origins: Arc::from(origins), ..self }
    }
}

/// Every route of the server, with request metrics (and CORS when origins are configured).
pub fn routes(state: State) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics = state.metrics.clone();
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        metrics.record(info.method().as_str(), info.path(), info.status().as_u16());
    });
    let cors = cors(&state.cors_origins);
    let all = routes::health::route()
        .or(routes::metrics::route(state.clone()))
        .or(routes::service_api(state.clone()))
        .or(routes::file_links::routes(state.clone()))
        .or(routes::console::routes(state))
        .map(warp::Reply::into_response);
    let all = match cors {
        Some(cors) => all.with(cors).map(warp::Reply::into_response).boxed(),
        None => all.boxed(),
    };
    warp::path::full()
        .and(all.recover(recover).unify())
        .map(|path: warp::path::FullPath, res: warp::reply::Response| {
            let mut res = warp::Reply::into_response(res);
            if res.status() == warp::http::StatusCode::METHOD_NOT_ALLOWED {
                let allow = openapi::allowed_methods(path.as_str())
                    .or_else(|| matches!(path.as_str(), "/health" | "/metrics").then(|| "GET".to_string()));
                if let Some(v) = allow.and_then(|a| warp::http::HeaderValue::from_str(&a).ok()) {
                    res.headers_mut().insert("allow", v);
                }
            }
            res
        })
        .with(log)
}

/// The CORS policy for `origins`; none when the list is empty (the default).
fn cors(origins: &[String]) -> Option<warp::cors::Builder> {
    if origins.is_empty() {
        return None;
    }
    let builder = warp::cors()
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers(["authorization", "content-type", "accept", "x-trace-id", "last-event-id"])
        .max_age(600);
    Some(if origins.iter().any(|o| o == "*") {
        builder.allow_any_origin()
    } else {
        builder.allow_origins(origins.iter().map(String::as_str))
    })
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
    } else if err.find::<warp::reject::InvalidQuery>().is_some() {
        (400, "invalid_param", "The query string is invalid.")
    } else if err.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (415, "unsupported_media_type", "The request's content type is not supported.")
    } else if err.find::<warp::cors::CorsForbidden>().is_some() {
        (403, "forbidden", "This origin, method or header is not allowed (cors.allowed_origins).")
    } else {
        (500, "internal_server_error", "Internal Server Error, please contact support.")
    };
    let body = serde_json::json!({"code": code, "message": message, "status": status});
    let status = warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    Ok(warp::Reply::into_response(warp::reply::with_status(warp::reply::json(&body), status)))
}

/// Pending connections the listening socket queues before the server accepts
/// them (the kernel caps it at `net.core.somaxconn`, 4,096 since Linux 5.4).
/// The 128 that std and tokio's `TcpListener::bind` ask for drops connections
/// of a burst (a thousand clients opening streams at once), and each dropped
/// one waits a second for its SYN to be retried.
const BACKLOG: u32 = 4096;

/// Binds the server's listening socket, with room for bursts of connections.
///
/// # Panics
///
/// Outside a tokio runtime (the listener registers with its reactor).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's listener does: a restarted server can bind its port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Socket options of an accepted connection: no Nagle. An SSE frame is a
/// small write that must leave at once; with Nagle, a frame written while the
/// previous one is still unacknowledged waits for the client's ACK, which
/// clients delay by up to 40 ms. Under load that capped streamed chat on
/// `builtin/echo` at ~1,400 req/s (64 connections) against ~6,800 without.
fn configure(io: &tokio::net::TcpStream) -> std::io::Result<()> {
    io.set_nodelay(true)
}

/// How long open connections (streams) may take to finish after shutdown is asked.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` resolves, then lets open requests
/// finish for a few seconds.
///
/// Connections are served by hyper directly (HTTP/1.1, and HTTP/2 with prior
/// knowledge) so that the head size and the wait for a request head are
/// bounded (`limits.max_header_bytes`, `limits.idle_timeout_secs`); every
/// request carries the limits in its extensions for the body readers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

    let limits = state.limits.clone();
    let service = warp::service(routes(state));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.idle_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = configure(&io) {
            tracing::debug!("accepted connection not configured: {e}");
        }
        let (service, limits) = (service.clone(), limits.clone());
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(limits.clone());
            let mut service = service.clone();
            tower_service::Service::call(&mut service, req)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc).into_owned();
        // `map`, not `async move { conn.await }`: such a wrapper would hold the
        // connection's future twice (its capture and the awaited value).
        let conn = graceful.watch(conn).map(|ended| {
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
        });
        tokio::spawn(conn);
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => {
            tracing::warn!("connections still open after {DRAIN:?}; closing them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() -> std::io::Result<()> {
        let listener = bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let client = tokio::net::TcpStream::connect(addr);
        let ((server_side, _), _client) = tokio::try_join!(listener.accept(), client)?;
        assert!(!server_side.nodelay()?, "a fresh socket has Nagle on");
        configure(&server_side)?;
        assert!(server_side.nodelay()?);
        Ok(())
    }
}
