//! The graph engine: runs one scope (the top-level graph, or one round of
//! an iteration/loop body) with a ready queue.
//!
//! Every edge starts unknown and becomes taken or skipped when its source
//! finishes (branch nodes take only the edges of the handle they select). A
//! node is ready once none of its incoming edges is unknown and at least one
//! is taken; a node whose incoming edges are all skipped is skipped and
//! skips its own outgoing edges. Ready nodes run concurrently (one task,
//! polled together), so independent branches overlap. The engine writes
//! `node_started` / `node_finished` (and `node_retry`) events, applies each
//! node's error strategy, retries and timeout, and observes stop requests at
//! every node boundary.
//!
//! Events go to the run's [`EventSink`] in the order they are emitted.
//! While the run's task is busy (inside [`RunCx::holding`]) they are held and
//! handed over in batches, whenever the task is about to wait and when a
//! batch is full, so a graph that runs without waiting does not pay one
//! hand-over to the writer per event, and one that waits (a model, a
//! request) has handed everything it emitted to the writer before it sleeps.

use foldhash::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use super::graph::{ErrorStrategy, Graph};
use super::nodes::{NodeCx, NodeError, NodeRun, Role};
use super::pool::Pool;
use super::replay::{RecordedOutcomes, Served, SERVED_TYPES};
use super::response::Coordinator;
use super::WorkflowSettings;
use crate::app::AppMode;
use crate::engine::Engine;
use crate::event::{Envelope, Event, NodeFinished, NodeStarted, Usage};
use crate::json::Json;
use crate::provider::{PromptMessage, Providers};

/// A run's stop request: a flag plus a wake-up for waiters, and why, when
/// it was not a user's request (a limit).
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    pub flag: Arc<AtomicBool>,
    pub notify: Arc<Notify>,
    reason: Arc<Mutex<Option<String>>>,
}

impl StopSignal {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Stops the run for `reason` (kept unless a stop came first).
    pub fn stop_with(&self, reason: String) {
        if !self.is_set() {
            self.reason.lock().get_or_insert(reason);
        }
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Why the run was stopped, when a limit stopped it.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    /// Resolves once a stop was requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Where a scope runs: the top level, or a round of a container.
#[derive(Clone, Debug, Default)]
pub struct ScopePos {
    pub iteration: Option<(String, u64)>,
    pub loop_: Option<(String, u64)>,
}

impl ScopePos {
    pub fn is_top(&self) -> bool {
        self.iteration.is_none() && self.loop_.is_none()
    }
}

/// Run-wide totals.
#[derive(Debug, Default)]
pub struct Totals {
    pub steps: u64,
    pub tokens: u64,
    pub exceptions: u64,
    pub usage: Usage,
    /// Outputs of the response nodes that ran (workflow `outputs`).
    pub outputs: Map<String, Value>,
}

/// Where a run's events go, in the order they were emitted.
pub trait EventSink: Send {
    /// Takes one event. `hold`: the run's task is mid-poll and calls
    /// [`EventSink::flush`] before it waits, so the event may be held.
    fn push(&mut self, event: Envelope, hold: bool);
    /// Hands everything held over.
    fn flush(&mut self);
}

/// What every node of a run shares.
pub struct RunCx {
    pub engine: Engine,
    /// The app the run belongs to (the only app whose uploads it may read).
    pub app_id: Uuid,
    pub mode: AppMode,
    pub settings: Arc<WorkflowSettings>,
    /// Earlier turns of the conversation, oldest first (chatflow memory).
    pub history: Vec<PromptMessage>,
    pub trace_id: Option<String>,
    pub stop: StopSignal,
    pub graph: Arc<Graph>,
    pub root: Arc<Pool>,
    pub totals: Mutex<Totals>,
    /// Where model calls go (the engine's providers, or a recorded run's answers).
    pub providers: Providers,
    /// Re-execution: the recorded outcomes of nodes that reach outside.
    pub replay: Option<Arc<RecordedOutcomes>>,
    events: Arc<Mutex<dyn EventSink>>,
    /// How many [`RunCx::holding`] polls are on the stack.
    polling: AtomicUsize,
    response: Mutex<Coordinator>,
    index: AtomicU64,
    started: Instant,
    /// When the first and the last non-blank answer chunks were emitted
    /// (seconds into the run): a chatflow turn's `time_to_first_token`.
    answer_at: Mutex<Option<(f64, f64)>>,
}

/// What a scope run ended with.
pub type ScopeResult = Result<(), NodeError>;

/// Which outgoing edges a finished node takes.
enum Selection {
    Normal,
    Handle(String),
    Fail,
}

fn takes(selection: &Selection, handle: &str) -> bool {
    match selection {
        Selection::Normal => handle != "fail-branch",
        Selection::Handle(h) => handle == h || (h == "source" && handle == "success-branch"),
        Selection::Fail => handle == "fail-branch",
    }
}

const UNKNOWN: u8 = 0;
const TAKEN: u8 = 1;
const SKIPPED: u8 = 2;

impl RunCx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        app_id: Uuid,
        mode: AppMode,
        settings: Arc<WorkflowSettings>,
        graph: Arc<Graph>,
        root: Arc<Pool>,
        history: Vec<PromptMessage>,
        trace_id: Option<String>,
        stop: StopSignal,
        events: Arc<Mutex<dyn EventSink>>,
    ) -> RunCx {
        let response = Coordinator::new(&graph, mode == AppMode::AdvancedChat);
        RunCx {
            providers: engine.providers().clone(),
            replay: None,
            engine,
            app_id,
            mode,
            settings,
            history,
            trace_id,
            stop,
            graph,
            root,
            totals: Mutex::new(Totals::default()),
            events,
            polling: AtomicUsize::new(0),
            response: Mutex::new(response),
            index: AtomicU64::new(0),
            started: Instant::now(),
            answer_at: Mutex::new(None),
        }
    }

    /// The run answering model calls and outside requests from a recorded run.
    pub fn replaying(mut self, providers: Providers, outcomes: Arc<RecordedOutcomes>) -> RunCx {
        self.providers = providers;
        self.replay = Some(outcomes);
        self
    }

    /// What a node of type `node_type` gets from outside on this attempt.
    fn served(&self, node_id: &str, node_type: &str) -> Served {
        match &self.replay {
            Some(r) if SERVED_TYPES.contains(&node_type) => match r.take(node_id) {
                Some(a) => Served::Recorded(a),
                None => Served::Missing,
            },
            _ => Served::Live,
        }
    }

    /// Records an event of the run.
    pub fn emit(&self, event: Event) {
        if let Event::AnswerChunk { text, .. } = &event {
            if !text.trim().is_empty() {
                let now = self.elapsed();
                let mut at = self.answer_at.lock();
                *at = Some((at.map_or(now, |(first, _)| first), now));
            }
        }
        let hold = self.polling.load(Ordering::Relaxed) > 0;
        self.events.lock().push(Envelope::new(self.engine.now(), None, event), hold);
    }

    /// Hands the events held so far to the log.
    pub fn flush(&self) {
        self.events.lock().flush();
    }

    /// Polls `fut` with the run's events held back, handing them over each
    /// time it has to wait, and when the outermost such poll is done.
    pub async fn holding<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            self.polling.fetch_add(1, Ordering::Relaxed);
            let r = fut.as_mut().poll(cx);
            let outer = self.polling.fetch_sub(1, Ordering::Relaxed) == 1;
            if r.is_pending() || outer {
                self.flush();
            }
            r
        })
        .await
    }
}

impl Drop for RunCx {
    /// A run that ends without its last hand-over (its task panicked) still
    /// leaves what it emitted on the log.
    fn drop(&mut self) {
        if let Some(mut sink) = self.events.try_lock() {
            sink.flush();
        }
    }
}

impl RunCx {
    fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// When the first and the last non-blank answer chunks were emitted, in
    /// seconds into the run (None before any).
    pub fn answer_times(&self) -> Option<(f64, f64)> {
        *self.answer_at.lock()
    }

    /// A chunk of streamed text from node `idx` (an LLM's `text`).
    pub fn chunk(&self, idx: usize, pos: &ScopePos, text: &str) {
        if !pos.is_top() {
            return;
        }
        let mut r = self.response.lock();
        if r.wants_chunks(idx) {
            let mut out = Vec::new();
            r.chunk(&self.graph, &self.root, idx, text, &mut out);
            self.emit_all(out);
        }
    }

    /// Opens the response sessions that need nothing to be decided.
    pub fn start_responses(&self) {
        let mut out = Vec::new();
        self.response.lock().start(&self.graph, &self.root, &mut out);
        self.emit_all(out);
    }

    /// Plays out what response nodes still have to say; returns the chatflow answer.
    pub fn finish_responses(&self) -> String {
        let mut out = Vec::new();
        let mut r = self.response.lock();
        r.finish(&self.graph, &self.root, &mut out);
        self.emit_all(out);
        r.answer.clone()
    }

    /// The chatflow answer emitted so far (a run that ended early).
    pub fn finish_responses_partial(&self) -> String {
        self.response.lock().answer.clone()
    }

    /// Text a response node inside a container says at once (chatflow).
    fn say(&self, text: String, node_id: &str) {
        if self.mode != AppMode::AdvancedChat || text.is_empty() {
            return;
        }
        self.response.lock().answer.push_str(&text);
        self.emit(Event::AnswerChunk {
            text,
            from_variable_selector: Some(vec![node_id.to_string(), "answer".into()]),
        });
    }

    pub fn add_usage(&self, usage: &Usage) {
        let mut t = self.totals.lock();
        t.tokens += usage.prompt_tokens + usage.completion_tokens;
        let u = &mut t.usage;
        u.prompt_tokens += usage.prompt_tokens;
        u.completion_tokens += usage.completion_tokens;
        u.latency = ((u.latency + usage.latency) * 1000.0).round() / 1000.0;
        for (total, part) in [
            (&mut u.prompt_price, &usage.prompt_price),
            (&mut u.completion_price, &usage.completion_price),
            (&mut u.total_price, &usage.total_price),
        ] {
            *total = add_decimal(total, part);
        }
        if u.currency.is_empty() {
            u.currency = usage.currency.clone();
        }
        if u.prompt_unit_price.is_empty() {
            u.prompt_unit_price = usage.prompt_unit_price.clone();
            u.prompt_price_unit = usage.prompt_price_unit.clone();
            u.completion_unit_price = usage.completion_unit_price.clone();
            u.completion_price_unit = usage.completion_price_unit.clone();
        }
    }
}

/// `a + b` as decimal strings, keeping the larger scale as Dify's `Decimal`
/// sums do (`0.0010330 + 0.0002560` is `0.0012890`).
fn add_decimal(a: &str, b: &str) -> String {
    use rust_decimal::Decimal;
    use std::str::FromStr;
    let x = Decimal::from_str(a).unwrap_or_default();
    let y = Decimal::from_str(b).unwrap_or_default();
    (x + y).to_string()
}

/// Runs the scope of `container` (None = the top-level graph) in `pool`.
pub fn run_scope<'a>(
    rc: &'a RunCx,
    container: Option<usize>,
    pool: &'a Arc<Pool>,
    pos: &'a ScopePos,
) -> BoxFuture<'a, ScopeResult> {
    Box::pin(rc.holding(async move {
        let graph = &*rc.graph;
        let entry = match container {
            None => graph.start,
            Some(c) => match graph.entries.get(&c) {
                Some(&e) => e,
                None => return Ok(()),
            },
        };
        let mut edges = vec![UNKNOWN; graph.edges.len()];
        let mut running = FuturesUnordered::new();
        let mut live: HashMap<usize, (Uuid, Instant)> = HashMap::default();
        let mut ready = vec![entry];
        loop {
            for idx in ready.drain(..) {
                if rc.stop.is_set() {
                    break;
                }
                let exec_id = crate::ids::new();
                let silent = graph.nodes[idx].node.silent();
                if !silent {
                    started_event(rc, idx, exec_id, pos);
                }
                live.insert(idx, (exec_id, Instant::now()));
                running.push(async move { (idx, execute(rc, idx, exec_id, pool, pos, silent).await) });
            }
            if running.is_empty() {
                break;
            }
            let next = tokio::select! {
                biased;
                _ = rc.stop.wait() => None,
                r = running.next() => r,
            };
            let Some((idx, result)) = next else {
                drop(running);
                abort_live(rc, &live, pos, "stopped");
                return Err(NodeError::Stopped);
            };
            live.remove(&idx);
            let selection = match result {
                Ok(s) => s,
                Err(e) => {
                    drop(running);
                    abort_live(rc, &live, pos, "stopped");
                    return Err(e);
                }
            };
            let mut settle = Vec::new();
            for &e in &graph.outgoing[idx] {
                edges[e] = if takes(&selection, &graph.edges[e].handle) { TAKEN } else { SKIPPED };
                settle.push(graph.edges[e].target);
            }
            while let Some(t) = settle.pop() {
                let states = graph.incoming[t].iter().map(|&e| edges[e]);
                if states.clone().any(|s| s == UNKNOWN) {
                    continue;
                }
                if states.clone().any(|s| s == TAKEN) {
                    ready.push(t);
                    continue;
                }
                // Every way in was skipped: skip it and what only it leads to.
                if pos.is_top() {
                    let mut out = Vec::new();
                    rc.response.lock().node_skipped(graph, &rc.root, t, &mut out);
                    rc.emit_all(out);
                }
                for &e in &graph.outgoing[t] {
                    edges[e] = SKIPPED;
                    settle.push(graph.edges[e].target);
                }
            }
            // Only now, with the untaken side skipped, may response sessions
            // that waited on this node open.
            if pos.is_top() {
                let mut out = Vec::new();
                rc.response.lock().node_finished(graph, &rc.root, idx, &mut out);
                rc.emit_all(out);
            }
        }
        if rc.stop.is_set() {
            return Err(NodeError::Stopped);
        }
        Ok(())
    }))
}

/// Closes the node executions still running when a scope ends early.
fn abort_live(rc: &RunCx, live: &HashMap<usize, (Uuid, Instant)>, pos: &ScopePos, status: &str) {
    let graph = &*rc.graph;
    let mut nodes: Vec<_> = live.iter().collect();
    nodes.sort_by_key(|(idx, _)| **idx);
    for (&idx, (exec_id, started)) in nodes {
        let def = &graph.nodes[idx];
        if def.node.silent() {
            continue;
        }
        rc.emit(Event::NodeFinished(Box::new(NodeFinished {
            node_execution_id: *exec_id,
            node_id: def.id.clone(),
            node_type: def.node_type.clone(),
            status: status.into(),
            inputs: Json::null(),
            process_data: Json::null(),
            outputs: Json::null(),
            error: Some("Workflow execution stopped by user.".into()),
            elapsed_time: started.elapsed().as_secs_f64(),
            execution_metadata: Json(position_metadata(pos)),
        })));
    }
}

fn position_metadata(pos: &ScopePos) -> Value {
    let mut m = Map::new();
    if let Some((id, i)) = &pos.iteration {
        m.insert("iteration_id".into(), id.clone().into());
        m.insert("iteration_index".into(), (*i).into());
    }
    if let Some((id, i)) = &pos.loop_ {
        m.insert("loop_id".into(), id.clone().into());
        m.insert("loop_index".into(), (*i).into());
    }
    Value::Object(m)
}

fn started_event(rc: &RunCx, idx: usize, exec_id: Uuid, pos: &ScopePos) {
    let def = &rc.graph.nodes[idx];
    let index = rc.index.fetch_add(1, Ordering::Relaxed) + 1;
    rc.emit(Event::NodeStarted(Box::new(NodeStarted {
        node_execution_id: exec_id,
        node_id: def.id.clone(),
        node_type: def.node_type.clone(),
        title: def.title.clone(),
        index,
        predecessor_node_id: None,
        inputs: Json::null(),
        iteration_id: pos.iteration.as_ref().map(|(id, _)| id.clone()),
        loop_id: pos.loop_.as_ref().map(|(id, _)| id.clone()),
        extras: Json::object(),
    })));
}

/// Runs one node with its retries, timeout and error strategy, records its
/// outcome, and says which edges it takes.
async fn execute(
    rc: &RunCx,
    idx: usize,
    exec_id: Uuid,
    pool: &Arc<Pool>,
    pos: &ScopePos,
    silent: bool,
) -> Result<Selection, NodeError> {
    let graph = &*rc.graph;
    let def = &graph.nodes[idx];
    let started = Instant::now();
    let finished = |status: &str, run: NodeRun, error: Option<String>| {
        let mut meta = match position_metadata(pos) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(u) = &run.usage {
            meta.insert("total_tokens".into(), (u.prompt_tokens + u.completion_tokens).into());
            meta.insert("total_price".into(), json!(u.total_price));
            meta.insert("currency".into(), json!(u.currency));
        }
        meta.extend(run.metadata);
        Event::NodeFinished(Box::new(NodeFinished {
            node_execution_id: exec_id,
            node_id: def.id.clone(),
            node_type: def.node_type.clone(),
            status: status.into(),
            inputs: Json(run.inputs),
            process_data: Json(run.process_data),
            outputs: Json(Value::Object(run.outputs)),
            error,
            elapsed_time: started.elapsed().as_secs_f64(),
            execution_metadata: Json(Value::Object(meta)),
        }))
    };
    if !silent {
        let steps = {
            let mut t = rc.totals.lock();
            t.steps += 1;
            t.steps
        };
        if steps > rc.settings.max_steps {
            let error = format!("Max steps {} reached (limits.max_workflow_steps).", rc.settings.max_steps);
            rc.emit(finished("failed", NodeRun::default(), Some(error.clone())));
            return Err(NodeError::new("WorkflowMaxStepsError", error));
        }
    }
    let mut attempt = 0u32;
    let result = loop {
        let served = rc.served(&def.id, &def.node_type);
        let cx = NodeCx { run: rc, graph, idx, def, pool, exec_id, pos, served };
        let fut = def.node.run(&cx);
        let r = match def.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(NodeError::new("TimeoutError", format!("node timed out after {} s", t.as_secs_f64())))
            }),
            None => fut.await,
        };
        match r {
            Err(NodeError::Failed { message, .. }) if attempt < def.max_retries && !rc.stop.is_set() => {
                attempt += 1;
                if let Event::NodeFinished(f) = finished("retry", NodeRun::default(), Some(message)) {
                    rc.emit(Event::NodeRetried { finished: f, retry_index: attempt as u64 });
                }
                tokio::time::sleep(def.retry_interval).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(run) => {
            pool.set_owner(&def.id, run.outputs.clone());
            if let Some(u) = &run.usage {
                rc.add_usage(u);
            }
            if def.node.role() == Role::Response {
                if pos.is_top() {
                    if def.node_type == "end" {
                        let mut t = rc.totals.lock();
                        for (k, v) in &run.outputs {
                            t.outputs.insert(k.clone(), v.clone());
                        }
                    }
                } else if let Some(Value::String(text)) = run.outputs.get("answer") {
                    rc.say(text.clone(), &def.id);
                }
            }
            let selection = match &run.handle {
                Some(h) => Selection::Handle(h.clone()),
                None => Selection::Normal,
            };
            if !silent {
                rc.emit(finished("succeeded", run, None));
            }
            Ok(selection)
        }
        Err(NodeError::Stopped) => {
            rc.emit(finished("stopped", NodeRun::default(), Some("Workflow execution stopped by user.".into())));
            Err(NodeError::Stopped)
        }
        Err(NodeError::Failed { error_type, message }) => {
            let mut outputs = Map::new();
            let selection = match &def.strategy {
                ErrorStrategy::None => {
                    rc.emit(finished("failed", NodeRun::default(), Some(message.clone())));
                    return Err(NodeError::Failed { error_type, message });
                }
                ErrorStrategy::DefaultValue(defaults) => {
                    outputs.extend(defaults.clone());
                    Selection::Normal
                }
                ErrorStrategy::FailBranch => Selection::Fail,
            };
            outputs.insert("error_message".into(), message.clone().into());
            outputs.insert("error_type".into(), error_type.into());
            pool.set_owner(&def.id, outputs.clone());
            rc.totals.lock().exceptions += 1;
            let mut run = NodeRun::outputs(outputs);
            let strategy = if matches!(selection, Selection::Fail) { "fail-branch" } else { "default-value" };
            run.metadata.insert("error_strategy".into(), strategy.into());
            rc.emit(finished("exception", run, Some(message)));
            Ok(selection)
        }
    }
}
