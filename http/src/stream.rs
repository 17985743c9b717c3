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
use ferrify_engine::{Engine, EngineError};
use futures_util::StreamExt;
use tokio::sync::oneshot;
use warp::http::{HeaderValue, StatusCode};
use warp::Reply;

use crate::error::ApiError;
use crate::State;

/// Keep-alive cadence.
const PING: Duration = Duration::from_secs(10);

/// Streams a run's frames as SSE (read by `frames` when the run came with its
/// reader); the run goes on if the client leaves.
pub fn sse(state: &State, handle: &RunHandle, frames: Option<RunFrames>, with_ids: bool) -> warp::reply::Response {
    let frames = frames.unwrap_or_else(|| RunFrames::new(state.engine.store(), &handle.stream, handle.task_id, 0));
    sse_frames(state, frames, with_ids)
}

/// A live SSE body: the run's reader, rendered as the connection asks for
/// more (no task or channel of its own: a record's publication wakes the
/// connection, which renders it and writes it). A client far behind (a resume
/// of a long run) is rendered only as fast as it reads; once it leaves, the
/// body is dropped and reading stops.
struct Live {
    frames: RunFrames,
    ping: tokio::time::Interval,
    engine: Engine,
    with_ids: bool,
}

/// What a live body waits for.
enum Next {
    Batch(Result<Option<Vec<Frame>>, EngineError>),
    Ping,
}

impl Live {
    /// The body's next chunk; `None` once the run's terminal frame is out.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let next = tokio::select! {
                batch = self.frames.next_batch() => Next::Batch(batch),
                _ = self.ping.tick() => Next::Ping,
            };
            match next {
                Next::Batch(Ok(Some(batch))) if batch.is_empty() => continue,
                Next::Batch(Ok(Some(batch))) => return Some(Bytes::from(sse_text(&batch, self.with_ids))),
                Next::Batch(_) => return None,
                Next::Ping => {
                    // A run that is over without a terminal event (its task
                    // failed) ends the stream once its records are sent.
                    if !self.engine.is_running(self.frames.task_id()) {
                        self.frames.end_when_idle();
                    }
                    return Some(Bytes::from_static(SSE_PING.as_bytes()));
                }
            }
        }
    }
}

/// Streams the frames of a run's reader (from its first frame or a resume
/// point) until the run's terminal frame; `id:` lines carry the frames' indexes.
pub fn sse_frames(state: &State, mut frames: RunFrames, with_ids: bool) -> warp::reply::Response {
    // The frames available now go out with the headers, in the same write.
    let first = match frames.first_frames() {
        Ok(first) if !first.is_empty() => Some(Bytes::from(sse_text(&first, with_ids))),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(task = %frames.task_id(), "reading the run's stream failed: {e}");
            None
        }
    };
    let start = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(start + PING, PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let live = Live { frames, ping, engine: state.engine.clone(), with_ids };
    let rest = futures_util::stream::unfold(live, |mut live| async move {
        let chunk = live.next_chunk().await?;
        Some((chunk, live))
    });
    let chunks = futures_util::stream::iter(first).chain(rest).map(Ok::<_, Infallible>);
    let body = warp::reply::stream(chunks);
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
