//! Blocking runs' held-back events, and the one timer that writes those held
//! too long.
//!
//! A blocking chat or completion run holds its events back and appends them
//! as one batch when it ends (see `super::recorder`). So that a crash loses at
//! most a run's first moments, a run still going [`HOLD_FOR`] after it began
//! has what it holds written then, and appends the rest as it happens.
//!
//! The deadline is kept by one sweeper task per engine, not by a timer task
//! per run: runs register in start order, so the queue is ordered by
//! deadline, and the sweeper wakes at most every [`TICK`] to write the held
//! events of the runs past theirs. A run that ended meanwhile is only a dead
//! weak reference in the queue. The sweeper exits once the queue is empty
//! (the next registration starts a new one), and it holds no run and no
//! store while it sleeps.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ferrify_store::{EventLog, PendingAppend, Store, StreamId};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{run_append, Handed};
use crate::event::Envelope;

/// How long a blocking run's events are held back before they are written.
pub(crate) const HOLD_FOR: Duration = Duration::from_millis(200);

/// The sweeper's granularity: a run's events are written between [`HOLD_FOR`]
/// and `HOLD_FOR + TICK` after it began.
const TICK: Duration = Duration::from_millis(10);

/// One blocking run's events while they are held back (`None` once written).
pub(crate) struct Held {
    pub(crate) events: Mutex<Option<Vec<Envelope>>>,
    /// Appends the sweeper made, for the run to wait for at its end.
    pub(crate) written: Mutex<Vec<PendingAppend>>,
    store: Store,
    stream: StreamId,
    handed: Arc<Handed>,
}

impl Held {
    pub(crate) fn new(store: Store, stream: StreamId, handed: Arc<Handed>) -> Self {
        Held { events: Mutex::new(Some(Vec::new())), written: Mutex::new(Vec::new()), store, stream, handed }
    }

    /// Writes what is held back, if the run still holds it.
    fn write(&self) {
        let mut events = self.events.lock();
        let Some(batch) = events.as_ref() else { return };
        match run_append(&self.stream, batch.clone(), None) {
            Ok(append) => {
                // Queued while the lock is held: the run's next event is queued after it.
                self.written.lock().push(self.store.append(self.handed.expecting(append)));
                *events = None;
            }
            // They stay held, for the run's end to write (or fail on) as usual.
            Err(e) => tracing::error!(stream = %self.stream, "could not write a blocking run's first events: {e}"),
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Deadlines in registration order (so in deadline order).
    runs: VecDeque<(Instant, Weak<Held>)>,
    /// A sweeper task is alive.
    sweeping: bool,
}

/// The runs holding events back, by deadline (one per engine).
#[derive(Default)]
pub(crate) struct HeldRuns {
    queue: Mutex<Queue>,
}

impl HeldRuns {
    /// Has `held` written if its run still holds it [`HOLD_FOR`] from now.
    /// Must be called within the tokio runtime (it may start the sweeper).
    pub(crate) fn register(self: &Arc<Self>, held: &Arc<Held>) {
        let mut queue = self.queue.lock();
        queue.runs.push_back((Instant::now() + HOLD_FOR, Arc::downgrade(held)));
        if !queue.sweeping {
            queue.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Takes the runs due at `now`; the next deadline, or `None` (and the
    /// sweeper is done) when no run is left.
    fn due(&self, now: Instant) -> (Vec<Weak<Held>>, Option<Instant>) {
        let mut queue = self.queue.lock();
        let n = queue.runs.partition_point(|(at, _)| *at <= now);
        let due = queue.runs.drain(..n).map(|(_, held)| held).collect();
        let next = queue.runs.front().map(|(at, _)| *at);
        if next.is_none() {
            queue.sweeping = false;
        }
        (due, next)
    }
}

async fn sweep(runs: Weak<HeldRuns>) {
    loop {
        let now = Instant::now();
        let next = {
            let Some(runs) = runs.upgrade() else { return };
            let (due, next) = runs.due(now);
            for held in due {
                if let Some(held) = held.upgrade() {
                    held.write();
                }
            }
            next
        };
        let Some(next) = next else { return };
        tokio::time::sleep_until(next.max(now + TICK)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use ferrify_store::Options;

    fn chunk(text: &str) -> Envelope {
        Envelope::new(0, None, Event::AnswerChunk { text: text.into(), from_variable_selector: None })
    }

    #[tokio::test(start_paused = true)]
    async fn runs_past_their_deadline_are_written_and_finished_ones_are_skipped() {
        let store = Store::open_memory(vec![], Options::default()).unwrap();
        let runs = Arc::new(HeldRuns::default());
        let held = |name: &str| {
            let stream = StreamId::new(format!("run/{name}")).unwrap();
            Arc::new(Held::new(store.clone(), stream, Arc::new(Handed::new(0, true))))
        };
        let (long, short) = (held("long"), held("short"));
        for h in [&long, &short] {
            h.events.lock().as_mut().unwrap().push(chunk("a"));
            runs.register(h);
        }
        // The short run ends before its deadline: it takes its events back.
        assert!(short.events.lock().take().is_some());
        drop(short);

        tokio::time::sleep(HOLD_FOR - Duration::from_millis(1)).await;
        assert!(long.events.lock().is_some(), "held until the deadline");
        tokio::time::sleep(TICK + Duration::from_millis(2)).await;
        assert!(long.events.lock().is_none(), "written once past it");
        let written: Vec<PendingAppend> = std::mem::take(&mut *long.written.lock());
        assert_eq!(written.len(), 1);
        for w in written {
            w.await.unwrap();
        }
        let long_stream = StreamId::new("run/long").unwrap();
        assert_eq!(store.read_stream(&long_stream, 1, 10).unwrap().len(), 1);
        assert!(store.read_stream(&StreamId::new("run/short").unwrap(), 1, 10).unwrap().is_empty());
        // The queue is empty: the sweeper is done, and a new registration starts another.
        assert!(!runs.queue.lock().sweeping);
        let again = held("again");
        again.events.lock().as_mut().unwrap().push(chunk("b"));
        runs.register(&again);
        assert!(runs.queue.lock().sweeping);
        tokio::time::sleep(HOLD_FOR + TICK * 2).await;
        assert!(again.events.lock().is_none());
    }
}
