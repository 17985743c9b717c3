//! Where a chat or completion run's events go.
//!
//! Streamed runs append each event as it happens (pipelined: the runner does
//! not wait for each acknowledgement; the log keeps their order). Blocking
//! runs hold their events back and, when they end within `HOLD_FOR`, append
//! them as one durable batch; a blocking run still going after `HOLD_FOR`
//! has what it holds written then (see `super::held`), and appends the rest
//! as it happens, like a streamed run — so a crash never loses more than its
//! first moments (crash recovery closes it with its partial answer, see
//! `crate::recovery`).
//! Either way the events are folded through the wire mapping, which gives the
//! blocking response.

use std::collections::VecDeque;
use std::sync::Arc;

use ferrify_store::{EventLog, PendingAppend, StreamId};

use super::held::Held;
use super::{forget_acknowledged, run_append, Handed, Tap};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::wire::{Outcome, WireRun};

pub(crate) struct Recorder {
    engine: Engine,
    stream: StreamId,
    /// A blocking run's events while they are held back.
    held: Option<Arc<Held>>,
    handed: Arc<Handed>,
    /// Appends not acknowledged yet, oldest first (acknowledged ones are
    /// dropped as new ones come, so a long stream holds only a few).
    pending: VecDeque<PendingAppend>,
    /// The first append the writer refused, not reported yet (see [`Recorder::refusal`]).
    refused: Option<ferrify_store::Error>,
    /// The refusal was reported: nothing more is recorded.
    halted: bool,
    wire: WireRun,
    /// Re-execution: where the run's events go besides the log.
    tap: Option<Tap>,
}

impl Recorder {
    /// A recorder for run stream `stream`; `blocking` holds the events back.
    /// Re-executions (`tap`) hold a blocking run's events to its end.
    pub(crate) fn new(engine: Engine, stream: StreamId, blocking: bool, tap: Option<Tap>) -> Self {
        let handed = Arc::new(Handed::new(0, tap.is_none()));
        let held = blocking.then(|| Arc::new(Held::new(engine.store().clone(), stream.clone(), handed.clone())));
        if let (Some(held), None) = (&held, &tap) {
            engine.inner.held_runs.register(held);
        }
        Recorder {
            engine,
            stream,
            held,
            handed,
            pending: VecDeque::new(),
            refused: None,
            halted: false,
            wire: WireRun::new(),
            tap,
        }
    }

    /// The run's stream.
    pub(crate) fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// True while the events are held back (nothing of the run is written yet).
    pub(crate) fn is_holding(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.events.lock().is_some())
    }

    /// Records one event. Once the writer has refused one of the run's
    /// appends, nothing more is recorded (the stream keeps no hole after the
    /// refused event): the refusal is returned, which ends the run.
    pub(crate) async fn push(&mut self, env: Envelope) -> Result<()> {
        self.drop_acknowledged();
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        self.wire.advance(&env);
        if let Some(held) = &self.held {
            let mut events = held.events.lock();
            if let Some(events) = events.as_mut() {
                events.push(env);
                return Ok(());
            }
            // Written by the sweeper (whose append is queued ahead of this one).
        }
        let is_start = matches!(env.event, Event::RunStarted(_));
        let append = self.handed.expecting(run_append(&self.stream, vec![env], self.tap.as_ref())?);
        let pending = self.engine.store().append(append);
        if is_start {
            // The stream must exist before a client subscribes to it.
            pending.await?;
        } else {
            self.pending.push_back(pending);
        }
        Ok(())
    }

    /// Forgets the appends the writer has answered (it answers them in order),
    /// keeping the first refusal for [`Recorder::refusal`].
    fn drop_acknowledged(&mut self) {
        if self.refused.is_none() {
            self.refused = forget_acknowledged(&mut self.pending);
        }
    }

    /// What ends the run once the writer refused one of its appends: that
    /// refusal the first time, then that an earlier event was refused.
    fn refusal(&mut self) -> Option<EngineError> {
        if let Some(e) = self.refused.take() {
            self.halted = true;
            return Some(e.into());
        }
        self.halted.then(|| ferrify_store::Error::Invalid("the log refused an earlier event of this run".into()).into())
    }

    /// Names the conversation a held-back `RunStarted` creates (false if it
    /// was written already: the name then goes in an event of its own).
    pub(crate) fn name_new_conversation(&mut self, name: &str) -> bool {
        let Some(held) = &self.held else { return false };
        let mut events = held.events.lock();
        let Some(first) = events.as_mut().and_then(|e| e.first_mut()) else { return false };
        if let Event::RunStarted(run) = &mut first.event {
            if let Some(new) = run.new_conversation.as_mut() {
                new.name = name.to_string();
                return true;
            }
        }
        false
    }

    /// Writes what is held back, waits for every append, and returns the outcome.
    pub(crate) async fn finish(mut self) -> Result<Outcome> {
        let mut first_error = None;
        if let Some(held) = self.held.take() {
            let rest = held.events.lock().take();
            if let Some(events) = rest {
                let append = self.handed.expecting(run_append(&self.stream, events, self.tap.as_ref())?);
                self.pending.push_front(self.engine.store().append(append));
            }
            let written = std::mem::take(&mut *held.written.lock());
            for p in written.into_iter().rev() {
                self.pending.push_front(p);
            }
        }
        // Every append is waited for, even after a refusal: once this returns,
        // nothing more of the run can reach the log.
        for p in self.pending.drain(..) {
            if let Err(e) = p.await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }
        self.wire
            .take_outcome()
            .ok_or_else(|| EngineError::AppUnavailable("the run ended without a terminal event".into()))
    }
}
