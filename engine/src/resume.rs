//! Reading a run's stream from any data frame: who may read a run, and a
//! cursor that derives its frames from the log.
//!
//! The SSE cursor of a run is the 1-based index of the data frames that the
//! wire mapping derives from the run's events. [`RunFrames`] reads the run
//! stream `run/<task_id>` from its first event (the mapping is stateful: it
//! must see `RunStarted` and every node start), or from the last checkpoint
//! of the mapping at or before the resume point (one every 1,024 frames, see
//! `crate::projection::wire_checkpoints`), passes the frames up to `after`
//! through [`WireRun::advance`] (state only, nothing rendered) and renders
//! the rest; it follows the run live until its terminal frame.
//!
//! A streaming run is on the log from its first event. A blocking chat or
//! completion run holds its events back for its first moments (see
//! `crate::runner::recorder`), so its stream may still be empty: a resume of
//! it is authorised by the in-process run table and waits until they land.

use std::collections::VecDeque;

use ferrify_store::{EventLog, Record, StreamId, Subscription};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::projection::wire_checkpoints::{self, Checkpoint};
use crate::runner::end_user_id;
use crate::wire::WireRun;

/// Records rendered per batch handed to the client: a reader far behind (a
/// long finished run) renders a little at a time, as fast as its client reads.
const RENDER_BATCH: usize = 64;

/// Records rendered for the first batch, which goes out with the response
/// headers (small, so that the first frame is not held up by the rest).
const FIRST_BATCH: usize = 32;

/// One data frame of a run: its 1-based index and its compact JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub index: u64,
    pub json: String,
}

/// A reader of a run's data frames after frame `after`.
pub struct RunFrames {
    task_id: Uuid,
    sub: Subscription,
    wire: WireRun,
    /// Frames derived so far (skipped or rendered).
    index: u64,
    /// Frames at or before this index are skipped.
    after: u64,
    /// Records read but not yet fed to the mapping.
    pending: VecDeque<Record>,
    /// Set once the run is known to be over (it is no longer running): when no
    /// record is left, the stream ends even without a terminal frame.
    ending: bool,
}

impl RunFrames {
    /// A reader of `stream` (the run stream of `task_id`) that skips the first `after` frames.
    pub fn new(store: &impl EventLog, stream: &StreamId, task_id: Uuid, after: u64) -> Self {
        Self::from_checkpoint(store, stream, task_id, after, None)
    }

    /// A reader of a run about to start, made before the run's first event is
    /// written: the run's records then come from memory as they are
    /// published (see [`EventLog::subscribe_new`]).
    pub fn before_start(store: &impl EventLog, stream: &StreamId, task_id: Uuid) -> Self {
        Self::reading(store.subscribe_new(stream), task_id, 0, WireRun::new(), 0)
    }

    /// As [`new`](Self::new), starting from `checkpoint` (the run's mapping
    /// after some frame at or before `after`) instead of the first event.
    pub fn from_checkpoint(
        store: &impl EventLog,
        stream: &StreamId,
        task_id: Uuid,
        after: u64,
        checkpoint: Option<Checkpoint>,
    ) -> Self {
        let (from, index, wire) = match checkpoint {
            Some(c) if c.frames <= after => (c.seq + 1, c.frames, c.wire),
            _ => (1, 0, WireRun::new()),
        };
        Self::reading(store.subscribe(stream, from), task_id, index, wire, after)
    }

    /// A reader of `sub`, its mapping `wire` already `index` frames in.
    fn reading(sub: Subscription, task_id: Uuid, index: u64, wire: WireRun, after: u64) -> Self {
        RunFrames { task_id, sub, wire, index, after, pending: VecDeque::new(), ending: false }
    }

    pub fn task_id(&self) -> Uuid {
        self.task_id
    }

    /// Frames derived so far, skipped ones included.
    pub fn position(&self) -> u64 {
        self.index
    }

    /// True once the terminal frame was derived.
    pub fn is_done(&self) -> bool {
        self.wire.is_done()
    }

    /// Declares the run over (not running any more): once the records on the
    /// log are read, the stream ends, terminal frame or not.
    pub fn end_when_idle(&mut self) {
        self.ending = true;
    }

    /// Reads every record available now, skipping frames up to `after`, and
    /// keeps the first records past it for [`next_batch`](Self::next_batch).
    /// Never waits. Returns true if the run's frames are all derived.
    pub fn seek(&mut self) -> Result<bool> {
        while self.index < self.after && !self.wire.is_done() {
            if self.pending.is_empty() {
                let records = self.sub.poll_now()?;
                if records.is_empty() {
                    break;
                }
                self.pending.extend(records);
            }
            while self.index < self.after {
                let Some(record) = self.pending.pop_front() else { break };
                let Ok(env) = Envelope::decode(&record.payload) else { continue };
                self.index += self.wire.advance(&env) as u64;
                if self.wire.is_done() {
                    self.pending.clear();
                    break;
                }
            }
        }
        Ok(self.wire.is_done())
    }

    /// The next frames: those of records already read, else of records
    /// available now, else it waits for the run's next records. `None` once
    /// the stream is over. A batch may be empty (its events yield no frames or
    /// were skipped). Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Frame>>> {
        if self.wire.is_done() {
            return Ok(None);
        }
        if self.pending.is_empty() {
            let records = self.sub.poll_now()?;
            if records.is_empty() && self.ending {
                return Ok(None);
            }
            if records.is_empty() {
                self.pending.extend(self.sub.next_batch().await?);
            } else {
                self.pending.extend(records);
            }
        }
        Ok(Some(self.render(RENDER_BATCH)))
    }

    /// The first few frames available now (possibly none), without waiting:
    /// what a response can carry along with its headers.
    pub fn first_frames(&mut self) -> Result<Vec<Frame>> {
        if self.wire.is_done() {
            return Ok(Vec::new());
        }
        if self.pending.is_empty() {
            self.pending.extend(self.sub.poll_now()?);
        }
        Ok(self.render(FIRST_BATCH))
    }

    /// Feeds up to `limit` pending records to the mapping.
    fn render(&mut self, limit: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        for _ in 0..limit {
            let Some(record) = self.pending.pop_front() else { break };
            let Ok(env) = Envelope::decode(&record.payload) else { continue };
            if self.index < self.after {
                // Only when a resume point lies in records that arrived later.
                self.index += self.wire.advance(&env) as u64;
            } else {
                for json in self.wire.frames(&env) {
                    self.index += 1;
                    out.push(Frame { index: self.index, json });
                }
            }
            if self.wire.is_done() {
                self.pending.clear();
                break;
            }
        }
        out
    }
}

impl Engine {
    /// Whether a run of this process is still going on.
    pub fn is_running(&self, task_id: Uuid) -> bool {
        self.inner.running.lock().contains_key(&task_id)
    }

    /// Opens the stream of run `task_id` for `user` of app `app_id`, after
    /// data frame `after` (0: from the start). Not found unless the run
    /// exists and belongs to that app and end user; a finished run whose
    /// stream has fewer than `after` frames is an invalid parameter (a live
    /// one may still reach it: its reader waits).
    pub fn resume_run(&self, app_id: Uuid, user: &str, task_id: Uuid, after: u64) -> Result<RunFrames> {
        let stream = StreamId::of("run", task_id)?;
        self.authorise_run(app_id, user, task_id, &stream)?;
        let checkpoint = wire_checkpoints::before(self.store(), task_id, after)?;
        let mut frames = RunFrames::from_checkpoint(self.store(), &stream, task_id, after, checkpoint);
        let mut finished = frames.seek()?;
        if !finished && !self.is_running(task_id) {
            // It ended meanwhile, or it ended without a terminal event (the
            // process stopped mid-run): what is on the log is all there is.
            finished = frames.seek()?;
            if !finished {
                frames.end_when_idle();
                finished = true;
            }
        }
        if finished && frames.position() < after {
            return Err(EngineError::InvalidParam(format!(
                "Last-Event-ID {after} is beyond the end of the stream ({} events).",
                frames.position()
            )));
        }
        Ok(frames)
    }

    /// Checks that run `task_id` exists and was started by `user` of app `app_id`.
    fn authorise_run(&self, app_id: Uuid, user: &str, task_id: Uuid, stream: &StreamId) -> Result<()> {
        let who = end_user_id(app_id, user);
        let not_found = || EngineError::NotFound("Task not found.".into());
        let started = |store: &ferrify_store::Store| -> Result<Option<bool>> {
            let Some(record) = store.read_stream(stream, 1, 1)?.into_iter().next() else { return Ok(None) };
            let env = Envelope::decode(&record.payload).map_err(ferrify_store::Error::from)?;
            Ok(Some(matches!(&env.event, Event::RunStarted(r) if r.app_id == app_id && r.end_user_id == who)))
        };
        if let Some(owned) = started(self.store())? {
            return if owned { Ok(()) } else { Err(not_found()) };
        }
        // Not on the log yet: a blocking run of this process, written when it ends.
        let running = self.inner.running.lock().get(&task_id).map(|r| r.app_id == app_id && r.end_user_id == who);
        match running {
            Some(true) => Ok(()),
            Some(false) => Err(not_found()),
            // It may have ended between the two looks.
            None => match started(self.store())? {
                Some(true) => Ok(()),
                _ => Err(not_found()),
            },
        }
    }
}
