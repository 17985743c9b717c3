//! Runners turn an accepted request into a run stream (`run/<task_id>`).
//!
//! Accepting a request validates it, allocates every id and appends
//! `RunStarted`; the run itself goes on in a spawned task that appends the
//! rest of the events, independent of the HTTP connection (a client that
//! disconnects does not stop it). Stop is a `StopRequested` event on the run
//! stream plus an in-process flag the runner checks between chunks.
//!
//! - [`easy`]: chat and completion apps (one prompt, one model call);
//! - [`prompt`]: `{{var}}` templates of `pre_prompt`;
//! - `moderated`: chatflow turns answered by input moderation;
//! - `recorder`: where a chat or completion run's events go (and when);
//! - `held`: blocking runs' held-back events and the timer that writes them.

pub mod easy;
pub(crate) mod held;
mod moderated;
pub mod prompt;
pub(crate) mod recorder;
pub mod workflow;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferrify_store::{Append, EventLog, Expected, PendingAppend, StreamId};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::Result;
use crate::event::Envelope;
use crate::wire::Outcome;

/// Namespace of end-user ids: an end user is UUIDv5(app id ‖ user string).
const END_USER_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_3a9e_52d4_4b8e_9d6f_0a7b_1c2d_3e4f);

/// The end user id of `user` in `app_id` (stable, so it needs no lookup).
pub fn end_user_id(app_id: Uuid, user: &str) -> Uuid {
    let mut name = app_id.as_bytes().to_vec();
    name.extend_from_slice(user.as_bytes());
    Uuid::new_v5(&END_USER_NAMESPACE, &name)
}

/// An accepted run: what the HTTP edge needs to stream or fold it.
#[derive(Clone, Debug)]
pub struct RunHandle {
    pub task_id: Uuid,
    pub stream: StreamId,
    pub message_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub workflow_run_id: Option<Uuid>,
}

/// The events a re-executed run records, as they are appended (shared with
/// the log's writer, not copied; see [`crate::reexec`]).
#[derive(Clone, Default)]
pub(crate) struct Tap(Arc<parking_lot::Mutex<Vec<Arc<Envelope>>>>);

impl Tap {
    /// Everything tapped so far.
    pub(crate) fn take(&self) -> Vec<Arc<Envelope>> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// A new run's task id and message id (see [`crate::projection::messages::message_id_of`]).
pub(crate) fn new_ids() -> (Uuid, Uuid) {
    let task_id = crate::ids::new();
    (task_id, crate::projection::messages::message_id_of(task_id))
}

/// Forgets the appends of `pending` the writer has answered; the first
/// refusal among them, in queue order, is returned.
pub(crate) fn forget_acknowledged(pending: &mut VecDeque<PendingAppend>) -> Option<ferrify_store::Error> {
    let mut refused = None;
    pending.retain_mut(|p| match p.try_take() {
        None => true,
        Some(Ok(_)) => false,
        Some(Err(e)) => {
            refused.get_or_insert(e);
            false
        }
    });
    refused
}

/// An append of `events` to `stream`, durable when any of them must be, with
/// the events handed to the projectors already decoded (and to `tap`).
pub(crate) fn run_append(stream: &StreamId, events: Vec<Envelope>, tap: Option<&Tap>) -> Result<Append> {
    let durable = events.iter().any(|e| e.event.is_durable());
    let payloads =
        events.iter().map(Envelope::encode).collect::<Result<Vec<_>, _>>().map_err(ferrify_store::Error::from)?;
    let shared: Vec<Arc<Envelope>> = events.into_iter().map(Arc::new).collect();
    if let Some(tap) = tap {
        tap.0.lock().extend(shared.iter().cloned());
    }
    let decoded = shared.into_iter().map(|e| e as Arc<dyn std::any::Any + Send + Sync>).collect();
    let mut append = Append::new(stream.clone(), payloads).with_decoded(decoded);
    append.durable = durable;
    Ok(append)
}

impl Engine {
    /// Appends events to a run stream; durable when any of them must be.
    pub(crate) async fn append_run(&self, stream: &StreamId, events: Vec<Envelope>) -> Result<()> {
        self.append_run_tapped(stream, events, None).await
    }

    /// [`Engine::append_run`], handing the events to `tap` too.
    pub(crate) async fn append_run_tapped(
        &self,
        stream: &StreamId,
        events: Vec<Envelope>,
        tap: Option<&Tap>,
    ) -> Result<()> {
        self.store().append(run_append(stream, events, tap)?).await?;
        Ok(())
    }

    /// Asks a chat or completion run to stop. Only the end user who started
    /// it can; anything else is silently ignored (Dify answers success either way).
    pub fn stop_message(&self, app_id: Uuid, task_id: Uuid, user: &str) -> Result<()> {
        let who = end_user_id(app_id, user);
        let flag = {
            let running = self.inner.running.lock();
            match running.get(&task_id) {
                Some(r) if r.app_id == app_id && (r.end_user_id == who || r.any_user) => {
                    Some((r.flag.clone(), r.notify.clone()))
                }
                _ => None,
            }
        };
        // The runner observes the flag and records `StopRequested` on its stream.
        if let Some((flag, notify)) = flag {
            flag.store(true, Ordering::Release);
            notify.notify_waiters();
        }
        Ok(())
    }
}

/// How many of a run's events were handed to the log: each append expects
/// the stream's head there, so once one is refused the ones queued after it
/// are refused too and the stream keeps no hole. Re-executions, whose scratch
/// log may hold earlier ones of the same run, expect nothing (`checked` off).
pub(crate) struct Handed {
    count: AtomicU64,
    checked: bool,
}

impl Handed {
    /// `first` events handed over already (`RunStarted`, for a workflow's recording).
    pub(crate) fn new(first: u64, checked: bool) -> Handed {
        Handed { count: AtomicU64::new(first), checked }
    }

    /// `append`, expecting the head after the events handed so far, which it adds to.
    pub(crate) fn expecting(&self, append: Append) -> Append {
        if !self.checked {
            return append;
        }
        let n = append.payloads.len() as u64;
        let at = self.count.fetch_add(n, Ordering::SeqCst);
        append.expect(Expected::At(at))
    }
}

/// The end of a run's task, once every append of the run was answered.
///
/// A run the log refused an event of has stopped there: its waiting client
/// (blocking) gets the error at once, then the run is closed on the log
/// ([`Engine::close_refused_run`]) while the caller still holds what the run
/// holds (its conversation, its slot). Otherwise the outcome waits for
/// [`Ending::deliver`], which the caller calls once it let go of those.
pub(crate) struct Ending {
    tx: Option<tokio::sync::oneshot::Sender<Result<Outcome>>>,
    outcome: Option<Result<Outcome>>,
}

impl Ending {
    /// Reports and closes a refused run (see above); keeps any other outcome for [`Ending::deliver`].
    pub(crate) async fn settle(
        engine: &Engine,
        task_id: Uuid,
        stream: &StreamId,
        outcome: Result<Outcome>,
        tx: Option<tokio::sync::oneshot::Sender<Result<Outcome>>>,
    ) -> Ending {
        let mut ending = Ending { tx, outcome: Some(outcome) };
        if let Some(Err(e)) = &ending.outcome {
            tracing::error!(task = %task_id, "run could not be recorded: {e}");
            ending.deliver_now();
            // Boxed: rare, and the run's task is as large as its largest await.
            Box::pin(engine.close_refused_run(stream)).await;
        }
        ending
    }

    /// Hands the outcome to the waiting client, if any (and not done yet).
    pub(crate) fn deliver(mut self) {
        self.deliver_now();
    }

    fn deliver_now(&mut self) {
        if let (Some(tx), Some(outcome)) = (self.tx.take(), self.outcome.take()) {
            let _ = tx.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_users_are_per_app() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(end_user_id(a, "x"), end_user_id(a, "x"));
        assert_ne!(end_user_id(a, "x"), end_user_id(b, "x"));
        assert_ne!(end_user_id(a, "x"), end_user_id(a, "y"));
    }
}
