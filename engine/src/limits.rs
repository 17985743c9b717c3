//! Run admission and run-wide limits.
//!
//! A run holds a [`RunSlot`] from the moment it is accepted until its task
//! ends (a client that leaves a stream does not free it: the run goes on).
//! Slots are counted overall and per API key; a request over either cap is
//! refused with [`EngineError::TooManyRuns`] before anything is recorded.
//!
//! Every limit has a name (the key under `[limits]` in `ferrify.toml`) that
//! the error it causes repeats, so an operator knows which knob to turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::{EngineError, Result};

/// Limits of runs, engine-wide. `0` means unlimited for the counts.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Runs in flight at once, all apps together (`limits.max_concurrent_runs`).
    pub max_concurrent_runs: usize,
    /// Runs in flight at once per API key (`limits.max_concurrent_runs_per_key`).
    pub max_concurrent_runs_per_key: usize,
    /// Wall time of one run; a run still going after it is stopped
    /// (`limits.max_run_seconds`, Dify's `APP_MAX_EXECUTION_TIME`).
    pub max_run_time: Duration,
    /// How long a run the log refused an event of keeps its slot and its
    /// conversation while it tries to close itself; past that it lets go of
    /// them and keeps trying in the background (`limits.refused_run_hold_seconds`).
    pub refused_run_hold: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_concurrent_runs: 1024,
            max_concurrent_runs_per_key: 128,
            max_run_time: Duration::from_secs(1200),
            refused_run_hold: Duration::from_secs(30),
        }
    }
}

/// Counts of runs in flight.
#[derive(Debug, Default)]
pub(crate) struct RunSlots {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_key: HashMap<Uuid, usize>,
}

impl RunSlots {
    /// Takes a slot for a run asked for with `key` (None: not through an API key).
    pub(crate) fn admit(self: &Arc<Self>, limits: &RunLimits, key: Option<Uuid>) -> Result<RunSlot> {
        let mut c = self.counts.lock();
        if limits.max_concurrent_runs > 0 && c.total >= limits.max_concurrent_runs {
            return Err(EngineError::TooManyRuns {
                limit: "limits.max_concurrent_runs",
                max: limits.max_concurrent_runs,
            });
        }
        if let Some(k) = key {
            let n = c.per_key.get(&k).copied().unwrap_or(0);
            if limits.max_concurrent_runs_per_key > 0 && n >= limits.max_concurrent_runs_per_key {
                return Err(EngineError::TooManyRuns {
                    limit: "limits.max_concurrent_runs_per_key",
                    max: limits.max_concurrent_runs_per_key,
                });
            }
            c.per_key.insert(k, n + 1);
        }
        c.total += 1;
        Ok(RunSlot { slots: self.clone(), key })
    }

    /// Runs in flight (all keys).
    pub(crate) fn in_flight(&self) -> usize {
        self.counts.lock().total
    }
}

/// A run's place among the runs in flight; freed when dropped.
#[derive(Debug)]
pub struct RunSlot {
    slots: Arc<RunSlots>,
    key: Option<Uuid>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(k) = self.key {
            if let Some(n) = c.per_key.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_key.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_overall_and_per_key() {
        let slots = Arc::new(RunSlots::default());
        let limits = RunLimits { max_concurrent_runs: 3, max_concurrent_runs_per_key: 2, ..RunLimits::default() };
        let (a, b) = (Some(Uuid::from_u128(1)), Some(Uuid::from_u128(2)));
        let s1 = slots.admit(&limits, a).unwrap();
        let _s2 = slots.admit(&limits, a).unwrap();
        match slots.admit(&limits, a) {
            Err(EngineError::TooManyRuns { limit, max: 2 }) => assert_eq!(limit, "limits.max_concurrent_runs_per_key"),
            other => panic!("{other:?}"),
        }
        let _s3 = slots.admit(&limits, b).unwrap();
        match slots.admit(&limits, b) {
            Err(EngineError::TooManyRuns { limit, max: 3 }) => assert_eq!(limit, "limits.max_concurrent_runs"),
            other => panic!("{other:?}"),
        }
        drop(s1);
        let _s4 = slots.admit(&limits, a).unwrap();
        assert_eq!(slots.in_flight(), 3);
        let unlimited = RunLimits { max_concurrent_runs: 0, max_concurrent_runs_per_key: 0, ..RunLimits::default() };
        let many: Vec<_> = (0..50).map(|_| slots.admit(&unlimited, a).unwrap()).collect();
        assert_eq!(many.len(), 50);
    }
}
