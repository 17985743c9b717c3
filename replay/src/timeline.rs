//! A run's timeline: one row per node execution (one per attempt when a node
//! retried; nodes inside iterations and loops indented under their
//! container, with their round), or per model call for chat and completion
//! runs, each with its start offset from the run's start, duration, status
//! and tokens; then the run's total.
//!
//! ```text
//! run 9d0c…  workflow  started 2025-03-01 12:00:00.125 UTC
//! START ms  DURATION ms  NODE        TYPE       TITLE  STATUS     TOKENS
//!      0.1          0.2  start       start      Start  succeeded       -
//!      0.4         31.7  each        iteration  Each   succeeded      12
//!      0.6         15.2    llm #0    llm        Ask    succeeded       6
//!      …
//!      0.0         32.5  total                         succeeded      12
//! ```
//!
//! Times are the envelopes' (`Envelope::at`, Unix µs), so a timeline reads
//! the same however often it is printed. A retry's row starts when the
//! attempt before it failed, so it includes the retry interval.

use std::collections::HashMap;
use std::io::{self, Write};

use ferrify_engine::event::Usage;
use ferrify_engine::{Envelope, Event};
use serde_json::Value;
use uuid::Uuid;

use crate::transcript::Run;

/// One node execution attempt, or one model call.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Nesting: 0 at the top, 1 inside an iteration or loop, …
    pub depth: usize,
    pub node_id: String,
    pub node_type: String,
    pub title: String,
    /// The container round (iteration or loop index) of a nested node.
    pub round: Option<u64>,
    /// `Some(n)` for the n-th retry of a node.
    pub retry: Option<u64>,
    /// Offset from the run's start, µs.
    pub start: i64,
    /// µs; `None` while the execution was still open when the log ends.
    pub duration: Option<i64>,
    /// `succeeded`, `failed`, `exception`, `stopped`, `retry`, `running`.
    pub status: String,
    pub tokens: Option<u64>,
    pub error: Option<String>,
}

/// The rows of a run and its total.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub task_id: Uuid,
    pub mode: String,
    /// Unix µs of the run's first event.
    pub started_at: i64,
    pub rows: Vec<Row>,
    /// The whole run (`node_id` "total").
    pub total: Row,
}

impl Timeline {
    /// Folds the run's events into rows.
    pub fn of(run: &Run) -> Timeline {
        let started_at = run.events.first().map_or(0, |e| e.at);
        let mut fold = Fold { t0: started_at, ..Fold::default() };
        for env in &run.events {
            fold.apply(env);
        }
        let end = run.events.last().map_or(started_at, |e| e.at) - started_at;
        let status = fold.status.clone().unwrap_or_else(|| "running".into());
        for row in &mut fold.rows {
            if row.duration.is_none() && run.finished {
                // Still open when the run ended (a stop or a failure elsewhere).
                row.duration = Some(end - row.start);
                row.status = status.clone();
            }
        }
        let tokens = fold.tokens.or_else(|| {
            let sum: u64 = fold.rows.iter().filter(|r| r.depth == 0).filter_map(|r| r.tokens).sum();
            Some(sum)
        });
        let total = Row {
            depth: 0,
            node_id: "total".into(),
            node_type: String::new(),
            title: String::new(),
            round: None,
            retry: None,
            start: 0,
            duration: run.finished.then_some(end),
            status,
            tokens,
            error: fold.error.clone(),
        };
        Timeline { task_id: run.task_id, mode: fold.mode, started_at, rows: fold.rows, total }
    }

    /// Writes the timeline as an aligned plain-text table.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "run {}  {}  started {}", self.task_id, self.mode, utc(self.started_at))?;
        let header = ["START ms", "DURATION ms", "NODE", "TYPE", "TITLE", "STATUS", "TOKENS"].map(String::from);
        let mut lines = vec![header];
        for row in self.rows.iter().chain(std::iter::once(&self.total)) {
            lines.push(cells(row));
        }
        let mut widths = [0usize; 7];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for line in &lines {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                // Numbers (and their headers) right-aligned, text left-aligned.
                if matches!(i, 0 | 1 | 6) {
                    text.push_str(&pad);
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&pad);
                }
                text.push_str("  ");
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        let errors: Vec<&Row> =
            self.rows.iter().chain(std::iter::once(&self.total)).filter(|r| r.error.is_some()).collect();
        if !errors.is_empty() {
            writeln!(out)?;
            for row in errors {
                writeln!(out, "{}: {}", label(row).trim_start(), row.error.as_deref().unwrap_or_default())?;
            }
        }
        Ok(())
    }
}

/// The NODE cell: indented by depth, with the round and the retry.
fn label(row: &Row) -> String {
    let mut s = format!("{}{}", "  ".repeat(row.depth), row.node_id);
    if let Some(r) = row.round {
        s.push_str(&format!(" #{r}"));
    }
    if let Some(r) = row.retry {
        s.push_str(&format!(" (retry {r})"));
    }
    s
}

fn cells(row: &Row) -> [String; 7] {
    [
        ms(row.start),
        row.duration.map_or_else(|| "-".into(), ms),
        label(row),
        row.node_type.clone(),
        row.title.clone(),
        row.status.clone(),
        row.tokens.map_or_else(|| "-".into(), |t| t.to_string()),
    ]
}

/// µs as milliseconds with one decimal.
fn ms(us: i64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// Unix µs as `YYYY-MM-DD hh:mm:ss.mmm UTC`.
fn utc(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let millis = us.rem_euclid(1_000_000) / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn total_tokens(u: &Usage) -> u64 {
    u.prompt_tokens + u.completion_tokens
}

/// The state of the fold over a run's events.
#[derive(Default)]
struct Fold {
    t0: i64,
    mode: String,
    rows: Vec<Row>,
    /// Open node executions → their current row.
    open: HashMap<Uuid, usize>,
    /// Depth of the latest execution of each node id (containers' children sit one deeper).
    depth: HashMap<String, usize>,
    /// Latest round each container began.
    round: HashMap<String, u64>,
    /// Tokens of containers, by execution (their `node_finished` may not carry them).
    container_tokens: HashMap<Uuid, u64>,
    /// The open model call of a chat or completion run.
    model_call: Option<usize>,
    status: Option<String>,
    tokens: Option<u64>,
    error: Option<String>,
}

impl Fold {
    fn apply(&mut self, env: &Envelope) {
        let offset = env.at - self.t0;
        match &env.event {
            Event::RunStarted(run) => self.mode = run.mode.clone(),
            Event::NodeStarted(n) => {
                let container = n.iteration_id.as_ref().or(n.loop_id.as_ref());
                let depth = container.map_or(0, |c| self.depth.get(c).map_or(1, |d| d + 1));
                let round = container.and_then(|c| self.round.get(c).copied());
                self.depth.insert(n.node_id.clone(), depth);
                self.rows.push(Row {
                    depth,
                    node_id: n.node_id.clone(),
                    node_type: n.node_type.clone(),
                    title: n.title.clone(),
                    round,
                    retry: None,
                    start: offset,
                    duration: None,
                    status: "running".into(),
                    tokens: None,
                    error: None,
                });
                self.open.insert(n.node_execution_id, self.rows.len() - 1);
            }
            Event::NodeRetried { finished, retry_index } => {
                let i = self.finish(finished, offset);
                let mut next = self.rows[i].clone();
                next.retry = Some(*retry_index);
                next.start = offset;
                next.duration = None;
                next.status = "running".into();
                next.tokens = None;
                next.error = None;
                self.rows.push(next);
                self.open.insert(finished.node_execution_id, self.rows.len() - 1);
            }
            Event::NodeFinished(n) => {
                self.finish(n, offset);
                self.open.remove(&n.node_execution_id);
            }
            Event::ContainerNext { node_id, index, .. } => {
                self.round.insert(node_id.clone(), *index);
            }
            Event::ContainerCompleted(c) => {
                self.container_tokens.insert(c.node_execution_id, c.total_tokens);
            }
            Event::ModelCalled { node_id: None, provider, model, .. } => {
                self.rows.push(Row {
                    depth: 0,
                    node_id: "model".into(),
                    node_type: "llm".into(),
                    title: format!("{provider}/{model}"),
                    round: None,
                    retry: None,
                    start: offset,
                    duration: None,
                    status: "running".into(),
                    tokens: None,
                    error: None,
                });
                self.model_call = Some(self.rows.len() - 1);
            }
            Event::ModelAnswered { node_id: None, usage, .. } => {
                if let Some(row) = self.model_call.and_then(|i| self.rows.get_mut(i)) {
                    if row.duration.is_none() {
                        row.duration = Some(offset - row.start);
                        row.status = "succeeded".into();
                        row.tokens = Some(total_tokens(usage));
                    }
                }
            }
            Event::MessageEnded { usage, stopped, .. } => {
                if *stopped {
                    if let Some(row) = self.model_call.and_then(|i| self.rows.get_mut(i)) {
                        row.status = "stopped".into();
                    }
                }
                // A chatflow's message ends after its workflow: that status stands.
                if self.status.is_none() || *stopped {
                    self.status = Some(if *stopped { "stopped" } else { "succeeded" }.into());
                }
                self.tokens.get_or_insert(total_tokens(usage));
            }
            Event::WorkflowFinished(f) => {
                self.status = Some(f.status.clone());
                self.tokens = Some(f.total_tokens);
                self.error = f.error.clone();
            }
            Event::RunFailed { code, message, .. } => {
                self.status = Some("failed".into());
                if self.error.is_none() {
                    self.error = Some(format!("{code}: {message}"));
                }
                if let Some(row) = self.model_call.and_then(|i| self.rows.get_mut(i)) {
                    if row.duration.is_none() {
                        row.duration = Some(offset - row.start);
                        row.status = "failed".into();
                    }
                }
            }
            _ => {}
        }
    }

    /// Closes the current row of a node execution (creating it when its
    /// start is missing); returns its index.
    fn finish(&mut self, n: &ferrify_engine::event::NodeFinished, offset: i64) -> usize {
        let i = match self.open.get(&n.node_execution_id) {
            Some(&i) => i,
            None => {
                let elapsed = (n.elapsed_time * 1e6) as i64;
                self.rows.push(Row {
                    depth: 0,
                    node_id: n.node_id.clone(),
                    node_type: n.node_type.clone(),
                    title: String::new(),
                    round: None,
                    retry: None,
                    start: offset - elapsed,
                    duration: None,
                    status: String::new(),
                    tokens: None,
                    error: None,
                });
                self.rows.len() - 1
            }
        };
        let meta = &n.execution_metadata.0;
        let round = ["iteration_index", "loop_index"].iter().find_map(|k| meta.get(*k).and_then(Value::as_u64));
        let tokens = meta
            .get("total_tokens")
            .and_then(Value::as_u64)
            .or_else(|| self.container_tokens.get(&n.node_execution_id).copied());
        let row = &mut self.rows[i];
        row.duration = Some(offset - row.start);
        row.status = n.status.clone();
        row.tokens = tokens;
        row.error = n.error.clone();
        if round.is_some() {
            row.round = round;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123_456), "2023-11-14 22:13:20.123 UTC");
    }
}
