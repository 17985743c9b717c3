//! Serving a run: as an SSE stream (live frames read from the run's log) or
//! as one blocking JSON response (the fold of the same frames).
//!
//! Framing is Dify's: `data: <compact JSON>\n\n` per frame, a bare
//! `event: ping\n\n` each time a 10-second boundary since the start passes,
//! and nothing else — unless the client opted in (`Accept: text/event-stream`
//! or `Last-Event-ID`), in which case each data frame is preceded by
//! `id: N`, N being the 1-based index of the frame in the run's stream.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use ferrify_engine::runner::RunHandle;
use ferrify_engine::wire::{Outcome, SseEncoder, SSE_PING};
use ferrify_engine::EngineError;
use ferrify_engine::Envelope;
use ferrify_store::EventLog;
use tokio::sync::{mpsc, oneshot};
use warp::http::{HeaderValue, StatusCode};
use warp::Reply;

use crate::error::ApiError;
use crate::State;

/// Keep-alive cadence.
const PING: Duration = Duration::from_secs(10);

/// Frames buffered per stream before the producer waits for the client.
const BUFFER: usize = 32;

/// Streams a run's frames as SSE; the run goes on if the client leaves.
pub fn sse(state: &State, handle: &RunHandle, with_ids: bool) -> warp::reply::Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BUFFER);
    let store = state.engine.store().clone();
    let stream = handle.stream.clone();
    tokio::spawn(async move {
        let mut sub = store.subscribe(&stream, 1);
        let mut encoder = SseEncoder::new(with_ids);
        let start = tokio::time::Instant::now();
        let mut ping = tokio::time::interval_at(start + PING, PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = sub.next_batch() => {
                    let Ok(records) = batch else { return };
                    let mut out = String::new();
                    for record in records {
                        let Ok(env) = Envelope::decode(&record.payload) else { continue };
                        encoder.push(&env, &mut out);
                        if encoder.is_done() {
                            break;
                        }
                    }
                    if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                    if encoder.is_done() {
                        return;
                    }
                }
                _ = ping.tick() => {
                    if tx.send(Ok(Bytes::from_static(SSE_PING.as_bytes()))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let body = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    res
}

/// Waits for the run's outcome and answers with the blocking body.
pub async fn blocking(outcome: oneshot::Receiver<Result<Outcome, EngineError>>) -> warp::reply::Response {
    match outcome.await {
        Ok(Ok(Outcome::Message(body))) => warp::reply::json(&body).into_response(),
        Ok(Ok(Outcome::Failed { status, code, message })) => {
            let body = serde_json::json!({"code": code, "message": message, "status": status});
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// Whether the client opted in to `id:` lines.
pub fn wants_ids(accept: Option<&str>, last_event_id: Option<&str>) -> bool {
    last_event_id.is_some() || accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"))
}
