//! Checkpoints of the wire mapping along long runs, so that a resume far into
//! a run starts from the nearest checkpoint instead of the run's first event.
//!
//! Every [`INTERVAL`] data frames of a run, the state of its [`WireRun`]
//! after that frame is stored with the run-stream sequence number of the
//! event that produced it: key `task (16 bytes) + frames (u64, big-endian)`,
//! value `seq (u64, big-endian) + the state as JSON`. A reader resuming after
//! frame N reads the last checkpoint at or before N and only the events after
//! its sequence number (see `crate::resume`).
//!
//! The fold keeps the mapping of every run it has seen start in memory until
//! the run's terminal frame. After a restart it knows no run in flight: those
//! runs get no further checkpoints (their readers start from the first event,
//! as without checkpoints), which never changes what a reader receives. A
//! record that does not follow the previous one of its run (an append that
//! was refused after this fold saw it) drops the run's state the same way.

use foldhash::HashMap;

use ferrify_store::{KvTxn, Projector, Record, Result, Seq, Store};
use parking_lot::Mutex;
use uuid::Uuid;

use super::{decode, stream_id, trees};
use crate::event::Event;
use crate::wire::WireRun;

/// Data frames between two checkpoints of a run.
pub const INTERVAL: u64 = 1024;

/// A run being folded: the mapping's state after event `seq`, `frames` frames in.
struct Live {
    seq: Seq,
    frames: u64,
    wire: WireRun,
}

#[derive(Default)]
pub struct WireCheckpoints {
    live: Mutex<HashMap<Uuid, Live>>,
}

/// A checkpoint read back: resume from event `seq + 1` with `wire`, `frames` frames in.
pub struct Checkpoint {
    pub seq: Seq,
    pub frames: u64,
    pub wire: WireRun,
}

fn key(task: Uuid, frames: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(task.as_bytes());
    k[16..].copy_from_slice(&frames.to_be_bytes());
    k
}

impl Projector for WireCheckpoints {
    fn name(&self) -> &str {
        "wire_checkpoints"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(task) = stream_id(record, "run") else {
            return Ok(());
        };
        let env = decode(record, kv)?;
        let mut live = self.live.lock();
        if record.seq == 1 && matches!(env.event, Event::RunStarted(_)) {
            live.insert(task, Live { seq: 0, frames: 0, wire: WireRun::frames_only() });
        }
        let Some(run) = live.get_mut(&task) else {
            return Ok(());
        };
        if record.seq != run.seq + 1 {
            live.remove(&task);
            return Ok(());
        }
        run.seq = record.seq;
        let before = run.frames;
        run.frames += run.wire.advance(&env) as u64;
        if run.wire.is_done() {
            live.remove(&task);
        } else if run.frames / INTERVAL > before / INTERVAL {
            // A checkpoint is an optimisation: one that cannot be written is
            // skipped (readers then start further back), never the append.
            match ferrify_store::codec::to_json(&run.wire) {
                Ok(state) => {
                    let mut value = run.seq.to_be_bytes().to_vec();
                    value.extend(state);
                    kv.put(trees::WIRE_CHECKPOINTS, &key(task, run.frames), value);
                }
                Err(e) => tracing::warn!(%task, "wire checkpoint not written: {e}"),
            }
        }
        Ok(())
    }
}

/// The last checkpoint of run `task` at or before data frame `after`, if any.
/// A checkpoint that cannot be read is ignored (the reader starts from the
/// run's first event instead).
pub fn before(store: &Store, task: Uuid, after: u64) -> Result<Option<Checkpoint>> {
    if after < INTERVAL {
        return Ok(None);
    }
    let bound = key(task, after.saturating_add(1));
    let found = store.scan(trees::WIRE_CHECKPOINTS, task.as_bytes(), Some(&bound), 1, true)?;
    let Some((k, v)) = found.into_iter().next() else { return Ok(None) };
    let (Ok(frames), Some((seq, state))) = (<[u8; 8]>::try_from(&k[16..]), v.split_first_chunk::<8>()) else {
        return Ok(None);
    };
    let Ok(wire) = serde_json::from_slice::<WireRun>(state) else { return Ok(None) };
    Ok(Some(Checkpoint { seq: u64::from_be_bytes(*seq), frames: u64::from_be_bytes(frames), wire }))
}
