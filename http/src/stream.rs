//! Serving a run: as an SSE stream (live frames read from the run's log) or
//! as one blocking JSON response (the fold of the same frames). A resumed
//! stream (`routes::resume`) is the same reader started after frame N.
//!
//! Framing is Dify's: `data: <compact JSON>\n\n` per frame, a bare
//! `event: ping\n\n` each time a 10-second boundary since the start passes,
//! and nothing else — unless the client opted in (`Accept: text/event-stream`
//! or `Last-Event-ID`), in which case each data frame is preceded by
//! `id: N`, N being the 1-based index of the frame in the run's stream.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use ferrify_engine::resume::{Frame, RunFrames};
use ferrify_engine::runner::RunHandle;
use ferrify_engine::wire::{write_sse_frame, Outcome, SSE_PING};
use ferrify_engine::EngineError;
use tokio::sync::{mpsc, oneshot};
use warp::http::{HeaderValue, StatusCode};
use warp::Reply;

use crate::error::ApiError;
use crate::State;

/// Keep-alive cadence.
const PING: Duration = Duration::from_secs(10);

/// Batches of frames buffered per stream before the producer waits for the
/// client. Small: a reader far behind (a resume of a long run) renders only
/// as fast as its client reads, and stops soon after the client leaves.
const BUFFER: usize = 4;

/// Streams a run's frames as SSE (read by `frames` when the run came with its
/// reader); the run goes on if the client leaves.
pub fn sse(state: &State, handle: &RunHandle, frames: Option<RunFrames>, with_ids: bool) -> warp::reply::Response {
    let frames = frames.unwrap_or_else(|| RunFrames::new(state.engine.store(), &handle.stream, handle.task_id, 0));
    sse_frames(state, frames, with_ids)
}

/// Streams the frames of a run's reader (from its first frame or a resume
/// point) until the run's terminal frame; `id:` lines carry the frames' indexes.
pub fn sse_frames(state: &State, mut frames: RunFrames, with_ids: bool) -> warp::reply::Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BUFFER);
    // The frames available now go out with the headers, in the same write:
    // the connection does not disable Nagle's algorithm, so a small first
    // chunk written after the headers would wait for the client's delayed ACK.
    match frames.first_frames() {
        Ok(first) if !first.is_empty() => {
            let _ = tx.try_send(Ok(Bytes::from(sse_text(&first, with_ids))));
        }
        Ok(_) => {}
        Err(e) => tracing::error!(task = %frames.task_id(), "reading the run's stream failed: {e}"),
    }
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut ping = tokio::time::interval_at(start + PING, PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = frames.next_batch() => {
                    let Ok(Some(batch)) = batch else { return };
                    if batch.is_empty() {
                        continue;
                    }
                    if tx.send(Ok(Bytes::from(sse_text(&batch, with_ids)))).await.is_err() {
                        return;
                    }
                }
                _ = ping.tick() => {
                    if tx.send(Ok(Bytes::from_static(SSE_PING.as_bytes()))).await.is_err() {
                        return;
                    }
                    // A run that is over without a terminal event (its task
                    // failed) ends the stream once its records are sent.
                    if !engine.is_running(frames.task_id()) {
                        frames.end_when_idle();
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

/// Frames as SSE text: `id: N` (when opted in), `data: <json>`, a blank line.
fn sse_text(frames: &[Frame], with_ids: bool) -> String {
    let mut out = String::with_capacity(frames.iter().map(|f| f.json.len() + 24).sum());
    for frame in frames {
        write_sse_frame(&mut out, with_ids.then_some(frame.index), &frame.json);
    }
    out
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
