//! The wire mapping: a run's events → Dify's SSE data frames and blocking
//! responses. Pure (no clock, no I/O), used by the HTTP edge for live streams
//! and by replay for transcripts, so both are byte-identical.
//!
//! A [`WireRun`] is fed the run's events in order; each call returns the
//! JSON frames (compact, UTF-8) that event yields, and [`WireRun::is_done`]
//! turns true after the terminal frame.

use foldhash::HashMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::event::{Envelope, Event, Usage};
use crate::projection::secs;

/// The Dify error an interrupted run ends with (`error` event / blocking body).
pub const INTERRUPTED_CODE: &str = "internal_server_error";
pub const INTERRUPTED_STATUS: u16 = 500;

/// `metadata.usage` as Dify writes it (prices as decimal strings).
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "prompt_unit_price": u.prompt_unit_price,
        "prompt_price_unit": u.prompt_price_unit,
        "prompt_price": u.prompt_price,
        "completion_tokens": u.completion_tokens,
        "completion_unit_price": u.completion_unit_price,
        "completion_price_unit": u.completion_price_unit,
        "completion_price": u.completion_price,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "total_price": u.total_price,
        "currency": u.currency,
        "latency": u.latency,
        "time_to_first_token": u.time_to_first_token,
        "time_to_generate": u.time_to_generate,
    })
}

/// The outcome of a run, folded from its events (what a blocking request answers).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The message ended (possibly stopped); the full response body.
    Message(Value),
    /// The run failed: HTTP status, Dify code, message.
    Failed { status: u16, code: String, message: String },
}

/// What `node_finished` and container events repeat from `node_started`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeMeta {
    node_id: String,
    node_type: String,
    title: String,
    index: u64,
    predecessor_node_id: Option<String>,
    iteration_id: Option<String>,
    loop_id: Option<String>,
    created_at: i64,
}

/// The state of one run's wire mapping. Its serialised form (the checkpoints
/// of `crate::projection::wire_checkpoints`) carries what the frames depend
/// on: the answer so far and the outcome, which only blocking responses read,
/// are left out.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireRun {
    mode: String,
    task_id: String,
    message_id: String,
    conversation_id: Option<String>,
    created_at: i64,
    #[serde(skip)]
    answer: String,
    done: bool,
    #[serde(skip)]
    outcome: Option<Outcome>,
    /// Workflow and advanced-chat runs.
    workflow_run_id: Option<String>,
    workflow_id: String,
    end_user_id: String,
    user: String,
    nodes: HashMap<Uuid, NodeMeta>,
    containers: HashMap<Uuid, i64>,
    /// `metadata.annotation_reply`, when an annotation answered the turn.
    annotation_reply: Option<Value>,
    /// The run auto-plays its answer: `tts_message_end`, not `message_end`, is its last frame.
    tts: bool,
    /// Files in the outputs of a chatflow's answer and end nodes: its `message_end.files`.
    #[serde(default)]
    files: Vec<Value>,
    /// A `message` frame's text up to its `answer` value: the same for every
    /// chunk of the run, so it is rendered once (see [`WireRun::frames`]).
    #[serde(skip)]
    message_head: String,
    /// The outcome is not folded (see [`WireRun::frames_only`]).
    #[serde(skip)]
    frames_only: bool,
}

impl WireRun {
    pub fn new() -> Self {
        Self::default()
    }

    /// A mapping that keeps the frames' state only: no blocking response is
    /// folded (for folds that never read [`WireRun::outcome`], such as the
    /// checkpoints the writer keeps). Frames, counts and `is_done` are those of
    /// [`WireRun::new`].
    pub fn frames_only() -> Self {
        WireRun { frames_only: true, ..Self::default() }
    }

    /// True once the terminal frame was produced.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The folded outcome, once done.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The folded outcome, taken out of the mapping.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    fn is_workflow(&self) -> bool {
        self.mode == "workflow"
    }

    /// A workflow-family frame: envelope, `task_id`, `workflow_run_id`, `data`.
    fn workflow_frame(&self, event: &str, data: Value) -> Value {
        let mut m = if self.is_workflow() {
            let mut m = Map::new();
            m.insert("event".into(), event.into());
            m
        } else {
            self.envelope(event)
        };
        m.insert("workflow_run_id".into(), json!(self.workflow_run_id));
        m.insert("task_id".into(), self.task_id.clone().into());
        m.insert("data".into(), data);
        Value::Object(m)
    }

    /// The envelope fields every frame of a message run starts with.
    fn envelope(&self, event: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), event.into());
        if self.is_workflow() {
            m.insert("workflow_run_id".into(), json!(self.workflow_run_id));
            return m;
        }
        if let Some(c) = &self.conversation_id {
            m.insert("conversation_id".into(), c.clone().into());
        }
        m.insert("message_id".into(), self.message_id.clone().into());
        m.insert("created_at".into(), self.created_at.into());
        m
    }

    /// How many frames one event yields, without building them (what
    /// [`WireRun::values`] would return, counted; its state is kept alike).
    pub fn count(&mut self, env: &Envelope) -> usize {
        if self.done {
            return 0;
        }
        match &env.event {
            Event::RunStarted(run) => {
                self.mode = run.mode.clone();
                self.tts = run.options.0.get("tts").is_some();
                self.workflow_run_id = run.workflow_run_id.map(|r| r.to_string());
                usize::from(run.workflow_run_id.is_some())
            }
            Event::WorkflowFinished(f) => {
                if self.is_workflow() && f.status != "failed" {
                    self.done = !self.tts;
                }
                1
            }
            Event::MessageEnded { .. } => {
                self.done = !self.tts;
                1
            }
            Event::RunFailed { .. } | Event::TtsEnded => {
                self.done = true;
                1
            }
            Event::TtsAudio { .. } => 1,
            Event::NodeStarted(_)
            | Event::NodeFinished(_)
            | Event::NodeRetried { .. }
            | Event::ContainerStarted(_)
            | Event::ContainerNext { .. }
            | Event::ContainerCompleted(_)
            | Event::TextChunk { .. }
            | Event::AnswerChunk { .. }
            | Event::AnswerReplaced { .. } => 1,
            _ => 0,
        }
    }

    /// The frames one event yields, as compact JSON text.
    ///
    /// Answer chunks, most of a chat stream's frames, skip the JSON tree: the
    /// run's constant head is rendered once and each chunk appends its text.
    /// The bytes are those of [`values`](Self::values), serialised.
    pub fn frames(&mut self, env: &Envelope) -> Vec<String> {
        if let Event::AnswerChunk { text, from_variable_selector } = &env.event {
            if !self.done && !self.is_workflow() {
                self.answer.push_str(text);
                return vec![self.message_frame(text, from_variable_selector)];
            }
        }
        self.values(env).into_iter().map(|v| v.to_string()).collect()
    }

    /// A `message` frame as text: the head `values` would start it with, then
    /// `answer` and `from_variable_selector`.
    fn message_frame(&mut self, text: &str, selector: &Option<Vec<String>>) -> String {
        if self.message_head.is_empty() {
            let mut head = self.envelope("message");
            head.insert("task_id".into(), self.task_id.clone().into());
            head.insert("id".into(), self.message_id.clone().into());
            let mut text = Value::Object(head).to_string();
            text.pop(); // the closing brace
            text.push_str(",\"answer\":");
            self.message_head = text;
        }
        let mut out = String::with_capacity(self.message_head.len() + text.len() + 40);
        out.push_str(&self.message_head);
        push_json(&mut out, &text);
        out.push_str(",\"from_variable_selector\":");
        push_json(&mut out, selector);
        out.push('}');
        out
    }

    /// The frames one event yields.
    pub fn values(&mut self, env: &Envelope) -> Vec<Value> {
        self.step(env, true).1.into_iter().collect()
    }

    /// Feeds one event as [`values`](Self::values) does, without rendering its
    /// frames; returns how many frames it yields. The state after it is the same
    /// (a reader that resumes at frame N skips the first N this way).
    pub fn advance(&mut self, env: &Envelope) -> usize {
        self.step(env, false).0
    }

    /// Feeds one event: the number of frames it yields (every event yields at
    /// most one) and, when `render`, that frame.
    fn step(&mut self, env: &Envelope, render: bool) -> (usize, Option<Value>) {
        if self.done {
            return (0, None);
        }
        match &env.event {
            Event::RunStarted(run) => {
                self.message_head.clear();
                self.mode = run.mode.clone();
                self.tts = run.options.0.get("tts").is_some();
                self.task_id = run.task_id.to_string();
                self.message_id = run.message_id.map(|m| m.to_string()).unwrap_or_default();
                self.conversation_id = run.conversation_id.map(|c| c.to_string());
                self.created_at = secs(env.at);
                let Some(run_id) = run.workflow_run_id else { return (0, None) };
                self.workflow_run_id = Some(run_id.to_string());
                self.workflow_id = run.workflow_id.map(|w| w.to_string()).unwrap_or_default();
                self.end_user_id = run.end_user_id.to_string();
                self.user = run.user.clone();
                let frame = render.then(|| {
                    let mut inputs = match &run.inputs.0 {
                        Value::Object(m) => m.clone(),
                        _ => Map::new(),
                    };
                    if let Some(Value::Object(sys)) = run.options.0.get("sys") {
                        for (k, v) in sys {
                            inputs.insert(k.clone(), v.clone());
                        }
                    }
                    let data = json!({
                        "id": run_id.to_string(),
                        "workflow_id": self.workflow_id,
                        "inputs": inputs,
                        "created_at": self.created_at,
                        "reason": "initial",
                    });
                    self.workflow_frame("workflow_started", data)
                });
                (1, frame)
            }
            Event::NodeStarted(n) => {
                let meta = NodeMeta {
                    node_id: n.node_id.clone(),
                    node_type: n.node_type.clone(),
                    title: n.title.clone(),
                    index: n.index,
                    predecessor_node_id: n.predecessor_node_id.clone(),
                    iteration_id: n.iteration_id.clone(),
                    loop_id: n.loop_id.clone(),
                    created_at: secs(env.at),
                };
                let frame = render.then(|| {
                    let data = json!({
                        "id": n.node_execution_id.to_string(),
                        "node_id": meta.node_id,
                        "node_type": meta.node_type,
                        "title": meta.title,
                        "index": meta.index,
                        "predecessor_node_id": meta.predecessor_node_id,
                        "inputs": n.inputs.0,
                        "inputs_truncated": false,
                        "created_at": meta.created_at,
                        "extras": n.extras.0,
                        "iteration_id": meta.iteration_id,
                        "loop_id": meta.loop_id,
                    });
                    self.workflow_frame("node_started", data)
                });
                self.nodes.insert(n.node_execution_id, meta);
                (1, frame)
            }
            Event::NodeFinished(n) => {
                let frame = render.then(|| self.node_finished("node_finished", n, None, env.at));
                if self.mode == "advanced-chat"
                    && n.status == "succeeded"
                    && matches!(n.node_type.as_str(), "answer" | "end")
                {
                    if let Value::Array(files) = files_in(&n.outputs.0) {
                        self.files.extend(files.iter().map(message_end_file));
                    }
                }
                // Nothing after a node's end refers to it (retries and container
                // events come before it): the state holds open nodes only.
                self.nodes.remove(&n.node_execution_id);
                (1, frame)
            }
            Event::NodeRetried { finished, retry_index } => {
                (1, render.then(|| self.node_finished("node_retry", finished, Some(*retry_index), env.at)))
            }
            Event::ContainerStarted(c) => {
                self.containers.insert(c.node_execution_id, secs(env.at));
                let frame = render.then(|| {
                    let length_key = if c.kind == "loop" { "loop_length" } else { "iterator_length" };
                    let data = json!({
                        "id": c.node_execution_id.to_string(),
                        "node_id": c.node_id,
                        "node_type": c.node_type,
                        "title": c.title,
                        "created_at": secs(env.at),
                        "extras": {},
                        "metadata": {length_key: c.length},
                        "inputs": c.inputs.0,
                        "inputs_truncated": false,
                    });
                    self.workflow_frame(&format!("{}_started", c.kind), data)
                });
                (1, frame)
            }
            Event::ContainerNext { kind, node_execution_id, node_id, index, pre_loop_output } => {
                let frame = render.then(|| {
                    let meta = self.nodes.get(node_execution_id);
                    let mut data = json!({
                        "id": node_execution_id.to_string(),
                        "node_id": node_id,
                        "node_type": meta.map(|m| m.node_type.clone()).unwrap_or_else(|| kind.clone()),
                        "title": meta.map(|m| m.title.clone()).unwrap_or_default(),
                        "index": index,
                        "created_at": secs(env.at),
                        "extras": {},
                    });
                    if kind == "loop" {
                        data["pre_loop_output"] = pre_loop_output.0.clone();
                    }
                    self.workflow_frame(&format!("{kind}_next"), data)
                });
                (1, frame)
            }
            Event::ContainerCompleted(c) => {
                let frame = render.then(|| {
                    let meta = self.nodes.get(&c.node_execution_id);
                    let data = json!({
                        "id": c.node_execution_id.to_string(),
                        "node_id": c.node_id,
                        "node_type": meta.map(|m| m.node_type.clone()).unwrap_or_else(|| c.kind.clone()),
                        "title": meta.map(|m| m.title.clone()).unwrap_or_default(),
                        "outputs": c.outputs.0,
                        "outputs_truncated": false,
                        "created_at": self.containers.get(&c.node_execution_id).copied().unwrap_or(secs(env.at)),
                        "extras": {},
                        "inputs": c.inputs.0,
                        "inputs_truncated": false,
                        "status": c.status,
                        "error": c.error,
                        "elapsed_time": c.elapsed_time,
                        "total_tokens": c.total_tokens,
                        "execution_metadata": {"total_tokens": c.total_tokens},
                        "finished_at": secs(env.at),
                        "steps": c.steps,
                    });
                    self.workflow_frame(&format!("{}_completed", c.kind), data)
                });
                self.containers.remove(&c.node_execution_id);
                (1, frame)
            }
            Event::TextChunk { text, from_variable_selector } => {
                let frame = render.then(|| {
                    let data = json!({"text": text, "from_variable_selector": from_variable_selector});
                    self.workflow_frame("text_chunk", data)
                });
                (1, frame)
            }
            Event::WorkflowFinished(f) => {
                let run_id = self.workflow_run_id.clone().unwrap_or_default();
                let finished_at = secs(env.at);
                if self.is_workflow() && !self.frames_only {
                    let body = json!({
                        "task_id": self.task_id,
                        "workflow_run_id": run_id,
                        "data": {
                            "id": run_id,
                            "workflow_id": self.workflow_id,
                            "status": f.status,
                            "outputs": f.outputs.0,
                            "error": f.error,
                            "elapsed_time": f.elapsed_time,
                            "total_tokens": f.total_tokens,
                            "total_steps": f.total_steps,
                            "created_at": self.created_at,
                            "finished_at": finished_at,
                        }
                    });
                    self.outcome = Some(Outcome::Message(body));
                }
                if self.is_workflow() && f.status != "failed" {
                    // With auto-play the audio follows: `tts_message_end` is the last frame.
                    self.done = !self.tts;
                }
                let frame = render.then(|| {
                    let data = json!({
                        "id": run_id,
                        "workflow_id": self.workflow_id,
                        "status": f.status,
                        "outputs": f.outputs.0,
                        "error": f.error,
                        "elapsed_time": f.elapsed_time,
                        "total_tokens": f.total_tokens,
                        "total_steps": f.total_steps,
                        "created_by": {"id": self.end_user_id, "user": self.user},
                        "created_at": self.created_at,
                        "finished_at": finished_at,
                        "exceptions_count": f.exceptions_count,
                        "files": files_in(&f.outputs.0),
                    });
                    self.workflow_frame("workflow_finished", data)
                });
                (1, frame)
            }
            Event::AnswerChunk { text, from_variable_selector } => {
                self.answer.push_str(text);
                let frame = render.then(|| {
                    let mut m = self.envelope("message");
                    m.insert("task_id".into(), self.task_id.clone().into());
                    m.insert("id".into(), self.message_id.clone().into());
                    m.insert("answer".into(), text.clone().into());
                    m.insert("from_variable_selector".into(), json!(from_variable_selector));
                    Value::Object(m)
                });
                (1, frame)
            }
            Event::AnswerReplaced { answer, reason } => {
                self.answer = answer.clone();
                let frame = render.then(|| {
                    let mut m = self.envelope("message_replace");
                    m.insert("task_id".into(), self.task_id.clone().into());
                    m.insert("answer".into(), answer.clone().into());
                    m.insert("reason".into(), reason.clone().into());
                    Value::Object(m)
                });
                (1, frame)
            }
            Event::MessageEnded { answer, usage, .. } => {
                self.done = !self.tts;
                if !render && self.frames_only {
                    return (1, None);
                }
                // Every mode: Dify's task-state metadata dumped whole (its
                // three keys, null and empty where they do not apply).
                let mut metadata = Map::new();
                metadata.insert("annotation_reply".into(), self.annotation_reply.clone().unwrap_or(Value::Null));
                metadata.insert("retriever_resources".into(), Value::Array(Vec::new()));
                metadata.insert("usage".into(), usage_json(usage));
                let metadata = Value::Object(metadata);
                let frame = render.then(|| {
                    let mut m = self.envelope("message_end");
                    m.insert("task_id".into(), self.task_id.clone().into());
                    m.insert("id".into(), self.message_id.clone().into());
                    m.insert("metadata".into(), metadata.clone());
                    // A chatflow lists its answer and end nodes' files (often none); other modes null.
                    let files =
                        if self.mode == "advanced-chat" { Value::Array(self.files.clone()) } else { Value::Null };
                    m.insert("files".into(), files);
                    Value::Object(m)
                });
                if self.frames_only {
                    return (1, frame);
                }
                let mut body = Map::new();
                body.insert("event".into(), "message".into());
                body.insert("task_id".into(), self.task_id.clone().into());
                body.insert("id".into(), self.message_id.clone().into());
                body.insert("message_id".into(), self.message_id.clone().into());
                if let Some(c) = &self.conversation_id {
                    body.insert("conversation_id".into(), c.clone().into());
                }
                body.insert("mode".into(), self.mode.clone().into());
                body.insert("answer".into(), answer.clone().into());
                body.insert("metadata".into(), metadata);
                body.insert("created_at".into(), self.created_at.into());
                self.outcome = Some(Outcome::Message(Value::Object(body)));
                (1, frame)
            }
            Event::AnnotationReplied { annotation_id, .. } => {
                self.annotation_reply = Some(crate::annotation::reply_metadata(*annotation_id));
                (0, None)
            }
            Event::TtsAudio { audio } => {
                let frame = render.then(|| self.tts_frame("tts_message", BASE64.encode(audio)));
                (1, frame)
            }
            Event::TtsEnded => {
                self.done = true;
                (1, render.then(|| self.tts_frame("tts_message_end", String::new())))
            }
            Event::RunInterrupted { message, .. } => {
                let failed = Event::RunFailed {
                    code: INTERRUPTED_CODE.into(),
                    message: message.clone(),
                    status: INTERRUPTED_STATUS,
                };
                self.step(&Envelope { trace_id: None, at: env.at, event: failed }, render)
            }
            Event::RunFailed { code, message, status } => {
                self.done = true;
                if !(self.frames_only || self.is_workflow() && self.outcome.is_some()) {
                    self.outcome =
                        Some(Outcome::Failed { status: *status, code: code.clone(), message: message.clone() });
                }
                let frame = render.then(|| {
                    let mut m = self.envelope("error");
                    m.insert("code".into(), code.clone().into());
                    m.insert("message".into(), message.clone().into());
                    m.insert("status".into(), (*status).into());
                    Value::Object(m)
                });
                (1, frame)
            }
            _ => (0, None),
        }
    }
}

impl WireRun {
    /// A `tts_message` or `tts_message_end` frame.
    fn tts_frame(&self, event: &str, audio: String) -> Value {
        let mut m = self.envelope(event);
        m.insert("task_id".into(), self.task_id.clone().into());
        m.insert("audio".into(), audio.into());
        Value::Object(m)
    }

    fn node_finished(&self, event: &str, n: &crate::event::NodeFinished, retry: Option<u64>, at: i64) -> Value {
        let meta = self.nodes.get(&n.node_execution_id);
        let mut data = json!({
            "id": n.node_execution_id.to_string(),
            "node_id": n.node_id,
            "node_type": n.node_type,
            "title": meta.map(|m| m.title.clone()).unwrap_or_default(),
            "index": meta.map(|m| m.index).unwrap_or(0),
            "predecessor_node_id": meta.and_then(|m| m.predecessor_node_id.clone()),
            "inputs": n.inputs.0,
            "inputs_truncated": false,
            "process_data": n.process_data.0,
            "process_data_truncated": false,
            "outputs": n.outputs.0,
            "outputs_truncated": false,
            "status": n.status,
            "error": n.error,
            "elapsed_time": n.elapsed_time,
            "execution_metadata": n.execution_metadata.0,
            "created_at": meta.map(|m| m.created_at).unwrap_or(secs(at)),
            "finished_at": secs(at),
            "files": files_in(&n.outputs.0),
            "iteration_id": meta.and_then(|m| m.iteration_id.clone()),
            "loop_id": meta.and_then(|m| m.loop_id.clone()),
        });
        if let Some(r) = retry {
            data["retry_index"] = r.into();
        }
        self.workflow_frame(event, data)
    }
}

/// File objects found at the top level of outputs (single files and file lists).
pub fn files_in(outputs: &Value) -> Value {
    let mut files = Vec::new();
    if let Value::Object(m) = outputs {
        for v in m.values() {
            match v {
                v if crate::workflow::pool::is_file(v) => files.push(v.clone()),
                Value::Array(items) if !items.is_empty() && items.iter().all(crate::workflow::pool::is_file) => {
                    files.extend(items.iter().cloned())
                }
                _ => {}
            }
        }
    }
    Value::Array(files)
}

/// A file value (§3.2) in the reduced shape of `message_end.files`.
fn message_end_file(f: &Value) -> Value {
    let get = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
    let local = f.get("transfer_method").and_then(Value::as_str) == Some("local_file");
    json!({
        "related_id": get("related_id"),
        "type": get("type"),
        "filename": get("filename"),
        "extension": get("extension"),
        "mime_type": get("mime_type"),
        "size": get("size"),
        "transfer_method": get("transfer_method"),
        "url": get("url"),
        "upload_file_id": if local { get("related_id") } else { Value::Null },
        "remote_url": get("remote_url"),
    })
}

/// Appends `v` as compact JSON (a value that cannot be serialised, which
/// strings and lists of strings never are, as `null`).
fn push_json(out: &mut String, v: &impl Serialize) {
    match serde_json::to_string(v) {
        Ok(json) => out.push_str(&json),
        Err(_) => out.push_str("null"),
    }
}

/// The keep-alive frame live streams send every 10 s (not part of a run's frames).
pub const SSE_PING: &str = "event: ping\n\n";

/// Appends one data frame in Dify's SSE framing: `id: N` when the client
/// opted in to ids, then `data: <compact JSON>` and a blank line.
pub fn write_sse_frame(out: &mut String, id: Option<u64>, frame: &str) {
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(frame);
    out.push_str("\n\n");
}

/// A run's events → its SSE text, as served: the [`WireRun`] mapping in
/// Dify's framing, frames numbered from 1 (the cursor `id:` lines carry).
/// Live streams and replayed transcripts both go through it.
#[derive(Clone, Debug, Default)]
pub struct SseEncoder {
    wire: WireRun,
    index: u64,
    with_ids: bool,
}

impl SseEncoder {
    /// `with_ids`: precede each data frame by `id: N`.
    pub fn new(with_ids: bool) -> Self {
        SseEncoder { wire: WireRun::new(), index: 0, with_ids }
    }

    /// Appends the frames `env` yields to `out`; returns how many it added
    /// (none once the terminal frame was written).
    pub fn push(&mut self, env: &Envelope, out: &mut String) -> usize {
        let frames = self.wire.frames(env);
        for frame in &frames {
            self.index += 1;
            write_sse_frame(out, self.with_ids.then_some(self.index), frame);
        }
        frames.len()
    }

    /// True once the terminal frame was written.
    pub fn is_done(&self) -> bool {
        self.wire.is_done()
    }

    /// Data frames written so far (the last frame's cursor).
    pub fn frames_written(&self) -> u64 {
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RunStarted;
    use crate::json::Json;
    use uuid::Uuid;

    /// A run's start as the tests need it: chat-family runs have a
    /// conversation, chatflows a workflow run.
    fn run_started(mode: &str, options: Value) -> RunStarted {
        let flow = mode == "advanced-chat";
        RunStarted {
            task_id: Uuid::from_u128(1),
            app_id: Uuid::from_u128(2),
            mode: mode.into(),
            end_user_id: Uuid::from_u128(3),
            user: "u".into(),
            conversation_id: (mode != "completion").then(|| Uuid::from_u128(4)),
            new_conversation: None,
            message_id: Some(Uuid::from_u128(5)),
            workflow_run_id: flow.then(|| Uuid::from_u128(6)),
            workflow_id: flow.then(|| Uuid::from_u128(7)),
            query: "q".into(),
            inputs: Json::object(),
            files: Json(json!([])),
            streaming: true,
            options: Json(options),
        }
    }

    #[test]
    fn chat_frames_and_blocking_fold() {
        let run = run_started("chat", json!({}));
        let mut w = WireRun::new();
        assert!(w.frames(&Envelope::new(1_700_000_000_500_000, None, Event::RunStarted(Box::new(run)))).is_empty());
        let f =
            w.values(&Envelope::new(0, None, Event::AnswerChunk { text: "hi".into(), from_variable_selector: None }));
        assert_eq!(f[0]["event"], "message");
        assert_eq!(f[0]["answer"], "hi");
        assert_eq!(f[0]["created_at"], 1_700_000_000);
        assert_eq!(f[0]["conversation_id"], Uuid::from_u128(4).to_string());
        let end = w.values(&Envelope::new(
            0,
            None,
            Event::MessageEnded { answer: "hi".into(), usage: Usage::default(), latency: 0.1, stopped: false },
        ));
        assert_eq!(end[0]["event"], "message_end");
        assert_eq!(end[0]["files"], Value::Null, "a basic chat has no message files");
        assert!(w.is_done());
        let Some(Outcome::Message(body)) = w.outcome() else { panic!() };
        assert_eq!(body["answer"], "hi");
        assert_eq!(body["mode"], "chat");
        assert_eq!(body["metadata"]["usage"]["total_tokens"], 0);
        // Nothing after the terminal frame.
        assert!(w
            .values(&Envelope::new(0, None, Event::AnswerChunk { text: "x".into(), from_variable_selector: None }))
            .is_empty());
    }

    #[test]
    fn a_frames_only_mapping_yields_the_same_frames_without_an_outcome() {
        let chunk = |t: &str| Event::AnswerChunk { text: t.into(), from_variable_selector: None };
        let end = || Event::MessageEnded { answer: "ab".into(), usage: Usage::default(), latency: 0.1, stopped: false };
        let mut workflow = run_started("workflow", json!({}));
        workflow.workflow_run_id = Some(Uuid::from_u128(6));
        let finished = |status: &str| {
            Event::WorkflowFinished(Box::new(crate::event::WorkflowFinished {
                status: status.into(),
                outputs: Json(json!({"text": "ab"})),
                error: None,
                total_tokens: 0,
                total_steps: 1,
                exceptions_count: 0,
                elapsed_time: 0.1,
            }))
        };
        let failed = || Event::RunFailed { code: "x".into(), message: "m".into(), status: 400 };
        let runs: Vec<Vec<Event>> = vec![
            vec![Event::RunStarted(Box::new(run_started("chat", json!({})))), chunk("a"), chunk("b"), end()],
            vec![
                Event::RunStarted(Box::new(run_started("chat", json!({"tts": {}})))),
                chunk("ab"),
                end(),
                Event::TtsEnded,
            ],
            vec![Event::RunStarted(Box::new(run_started("completion", json!({})))), chunk("a"), failed()],
            vec![
                Event::RunStarted(Box::new(workflow.clone())),
                Event::TextChunk { text: "ab".into(), from_variable_selector: None },
                finished("succeeded"),
            ],
            vec![Event::RunStarted(Box::new(workflow)), finished("failed"), failed()],
        ];
        for events in runs {
            let (mut full, mut lean, mut counted) = (WireRun::new(), WireRun::frames_only(), WireRun::frames_only());
            for event in events {
                let env = Envelope::new(1_700_000_000_000_000, None, event);
                let frames = full.values(&env);
                assert_eq!(lean.values(&env), frames, "{env:?}");
                assert_eq!(counted.advance(&env), frames.len(), "{env:?}");
                assert_eq!((lean.is_done(), counted.is_done()), (full.is_done(), full.is_done()), "{env:?}");
            }
            assert!(full.is_done() && full.outcome().is_some());
            assert!(lean.outcome().is_none() && counted.outcome().is_none());
        }
    }

    #[test]
    fn chatflow_message_end_lists_the_files_of_answer_and_end_nodes() {
        let run = run_started("advanced-chat", json!({}));
        let file = json!({"dify_model_identity": "__dify__file__", "id": null, "tenant_id": "t", "type": "image",
            "transfer_method": "local_file", "remote_url": null, "related_id": "f1", "filename": "cat.png",
            "extension": ".png", "mime_type": "image/png", "size": 3, "url": "/files/f1/file-preview?x"});
        let finished = |node_type: &str, status: &str, outputs: Value| {
            Event::NodeFinished(Box::new(crate::event::NodeFinished {
                node_execution_id: Uuid::new_v4(),
                node_id: node_type.into(),
                node_type: node_type.into(),
                status: status.into(),
                inputs: Json::object(),
                process_data: Json::object(),
                outputs: Json(outputs),
                error: None,
                elapsed_time: 0.0,
                execution_metadata: Json::object(),
            }))
        };
        let mut w = WireRun::new();
        let mut frames = Vec::new();
        for e in [
            Event::RunStarted(Box::new(run)),
            // Only answer and end nodes that succeeded count.
            finished("llm", "succeeded", json!({"files": [file.clone()]})),
            finished("answer", "failed", json!({"files": [file.clone()]})),
            finished("answer", "succeeded", json!({"answer": "hi", "files": [file.clone()]})),
            Event::MessageEnded { answer: "hi".into(), usage: Usage::default(), latency: 0.1, stopped: false },
        ] {
            frames.extend(w.values(&Envelope::new(0, None, e)));
        }
        let end = frames.last().unwrap();
        assert_eq!(end["event"], "message_end");
        assert_eq!(
            end["files"],
            json!([{"related_id": "f1", "type": "image", "filename": "cat.png", "extension": ".png",
                "mime_type": "image/png", "size": 3, "transfer_method": "local_file",
                "url": "/files/f1/file-preview?x", "upload_file_id": "f1", "remote_url": null}])
        );
    }

    #[test]
    fn auto_played_runs_end_with_tts_message_end() {
        let run = run_started("completion", json!({"tts": {"voice": "nova"}}));
        let events = [
            Event::RunStarted(Box::new(run)),
            Event::MessageEnded { answer: "hi".into(), usage: Usage::default(), latency: 0.1, stopped: false },
            Event::TtsAudio { audio: b"ID3abc".to_vec() },
            Event::TtsEnded,
            Event::TtsAudio { audio: b"late".to_vec() },
        ];
        let mut w = WireRun::new();
        let mut counted = WireRun::new();
        let mut frames = Vec::new();
        for e in events {
            let env = Envelope::new(1_700_000_000_000_000, None, e);
            let f = w.values(&env);
            assert_eq!(counted.count(&env), f.len());
            if matches!(env.event, Event::MessageEnded { .. }) {
                assert!(!w.is_done(), "the audio follows message_end");
                assert!(w.outcome().is_some());
            }
            frames.extend(f);
        }
        assert!(w.is_done() && counted.is_done());
        let names: Vec<&str> = frames.iter().map(|f| f["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["message_end", "tts_message", "tts_message_end"]);
        assert_eq!(frames[1]["audio"], BASE64.encode(b"ID3abc"));
        assert_eq!(frames[1]["task_id"], Uuid::from_u128(1).to_string());
        assert_eq!(frames[1]["message_id"], Uuid::from_u128(5).to_string());
        assert_eq!(frames[2]["audio"], "");
    }

    #[test]
    fn message_frames_are_the_serialised_tree_byte_for_byte() {
        let texts = ["plain ", "", "quote \" back\\slash", "line\nbreak\ttab\u{1}", "日本語 😀", "</script>"];
        let selectors = [None, Some(vec!["1711".to_string(), "text".to_string()])];
        for mode in ["chat", "completion", "advanced-chat", "agent-chat"] {
            let start =
                Envelope::new(1_700_000_000_500_000, None, Event::RunStarted(Box::new(run_started(mode, json!({})))));
            let (mut fast, mut tree) = (WireRun::new(), WireRun::new());
            fast.frames(&start);
            tree.values(&start);
            for text in texts {
                for selector in &selectors {
                    let env = Envelope::new(
                        0,
                        None,
                        Event::AnswerChunk { text: text.into(), from_variable_selector: selector.clone() },
                    );
                    let expected: Vec<String> = tree.values(&env).iter().map(Value::to_string).collect();
                    assert_eq!(fast.frames(&env), expected, "{mode} {text:?}");
                }
            }
            // The folded answer is kept alike.
            let end = Envelope::new(
                0,
                None,
                Event::MessageEnded { answer: "x".into(), usage: Usage::default(), latency: 0.0, stopped: false },
            );
            assert_eq!(fast.frames(&end), tree.values(&end).iter().map(Value::to_string).collect::<Vec<_>>());
            assert_eq!(fast.answer, tree.answer);
        }
        // A mapping restored from a checkpoint (the head is not serialised) renders alike.
        let mut w = WireRun::new();
        w.frames(&Envelope::new(0, None, Event::RunStarted(Box::new(run_started("chat", json!({}))))));
        let chunk = Envelope::new(0, None, Event::AnswerChunk { text: "a".into(), from_variable_selector: None });
        let first = w.frames(&chunk);
        let mut restored: WireRun = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(restored.frames(&chunk), first);
    }

    #[test]
    fn sse_encoder_frames_and_numbers_data_frames() {
        let chunk =
            |t: &str| Envelope::new(0, None, Event::AnswerChunk { text: t.into(), from_variable_selector: None });
        let end = Envelope::new(
            0,
            None,
            Event::MessageEnded { answer: "ab".into(), usage: Usage::default(), latency: 0.0, stopped: false },
        );
        for with_ids in [false, true] {
            let mut enc = SseEncoder::new(with_ids);
            let mut plain = WireRun::new();
            let mut out = String::new();
            let mut expected = String::new();
            for (i, env) in [chunk("a"), chunk("b"), end.clone(), chunk("late")].iter().enumerate() {
                let frames = plain.frames(env);
                assert_eq!(enc.push(env, &mut out), frames.len());
                for f in frames {
                    if with_ids {
                        expected.push_str(&format!("id: {}\n", i + 1));
                    }
                    expected.push_str(&format!("data: {f}\n\n"));
                }
            }
            assert_eq!(out, expected);
            assert!(enc.is_done());
            assert_eq!(enc.frames_written(), 3);
        }
    }
}
