//! The comparison of two runs' wire frames (the SSE `data` frames of
//! [`crate::wire`]), normalised so that only what the run computed counts.
//!
//! **Ids.** The run's own ids (task, workflow run, message, conversation,
//! app, workflow version, end user) become `<task_id>`, `<workflow_run_id>`,
//! … wherever they appear, as whole values or inside text. A node
//! execution's id becomes `<exec LANE>`, the name of its lane (below). Any
//! other UUID becomes `<uuid-N>`, numbered in order of first appearance within
//! its lane.
//!
//! **Clocks.** `created_at`, `finished_at` and `elapsed_time` of a frame and of
//! its `data` are zeroed, and so are `latency`, `time_to_first_token` and
//! `time_to_generate` of every usage object (an object with `prompt_tokens`).
//! A node frame's `index` (its place in the run's interleaved execution
//! order) is zeroed too.
//!
//! **Lanes.** Concurrent branches may interleave differently from one run to
//! the next, so frames are compared per lane, each lane in its own order:
//! - the run lane: frames of no node (`workflow_started`, `text_chunk`,
//!   `message`, `message_end`, `workflow_finished`, `error`, …);
//! - one lane per node execution: its `node_started`, `node_retry` and
//!   `node_finished` frames (and a container's `iteration_*` / `loop_*`
//!   frames), named after the node id, the container round it ran in
//!   (`@container[index]`) and its occurrence (`#n`: the same node in the same
//!   round more than once, as in nested containers).
//!
//! Consecutive text frames of the run lane with the same event and selector
//! are compared as one, their texts joined: where a text is cut into chunks
//! depends on timing (text is buffered while another answer streams).
//!
//! **Fast path.** Frames are a pure function of a run's events
//! ([`crate::wire`]). When both runs recorded the same events in the same
//! order — up to what the frames' normalisation erases (times, node
//! execution ids consistently renamed, node indexes, latencies) — their
//! frames agree, and [`events_match`] says so without building them.
//!
//! **The first divergence** is found by walking the recorded frames in
//! order, comparing each with the next unmatched frame of its lane in the
//! re-execution; a recorded frame without a counterpart is a divergence, and
//! so is the earliest re-executed frame left over.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::event::{Envelope, Event, NodeFinished, Usage};

use crate::event::RunStarted;

/// The ids of a run that are replaced by their names.
#[derive(Clone, Debug, Default)]
pub struct RunIds {
    ids: Vec<(String, &'static str)>,
}

impl RunIds {
    pub fn of(run: &RunStarted) -> RunIds {
        let mut ids = vec![(run.task_id, "task_id"), (run.app_id, "app_id"), (run.end_user_id, "end_user_id")];
        for (id, name) in [
            (run.workflow_run_id, "workflow_run_id"),
            (run.message_id, "message_id"),
            (run.conversation_id, "conversation_id"),
            (run.workflow_id, "workflow_id"),
        ] {
            if let Some(id) = id {
                ids.push((id, name));
            }
        }
        RunIds { ids: ids.into_iter().map(|(id, name)| (id.to_string(), name)).collect() }
    }
}

/// Where two runs' frames first differ.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// The recorded frame (1-based, as SSE `id:` lines count), unless the
    /// re-execution has a frame the recording lacks.
    pub index: Option<usize>,
    /// Its counterpart in the re-execution, if any.
    pub reexecuted_index: Option<usize>,
    /// The frame's `event`.
    pub event: String,
    /// The node of a node frame.
    pub node_id: Option<String>,
    pub title: Option<String>,
    /// The first differing field (`data.outputs.text`), when both sides have the frame.
    pub field: Option<String>,
    /// The values of both sides at `field` (`null` where one side lacks it).
    pub field_values: Option<(Value, Value)>,
    /// Both frames, normalised (`None`: no counterpart).
    pub recorded: Option<Value>,
    pub reexecuted: Option<Value>,
}

impl Divergence {
    pub fn to_json(&self) -> Value {
        json!({
            "index": self.index,
            "reexecuted_index": self.reexecuted_index,
            "event": self.event,
            "node_id": self.node_id,
            "title": self.title,
            "field": self.field,
            "recorded": self.recorded,
            "reexecuted": self.reexecuted,
        })
    }
}

/// Whether two runs' events agree up to what the frames' normalisation
/// erases: then their frames agree too (a `false` says nothing: compare the
/// frames).
pub fn events_match<A: Borrow<Envelope>, B: Borrow<Envelope>>(recorded: &[A], reexecuted: &[B]) -> bool {
    if recorded.len() != reexecuted.len() {
        return false;
    }
    let mut execs = ExecMap::default();
    recorded.iter().zip(reexecuted).all(|(a, b)| event_matches(&a.borrow().event, &b.borrow().event, &mut execs))
}

/// Node execution ids renamed one to one.
#[derive(Default)]
struct ExecMap {
    forward: HashMap<Uuid, Uuid>,
    backward: HashMap<Uuid, Uuid>,
}

impl ExecMap {
    fn pair(&mut self, a: Uuid, b: Uuid) -> bool {
        *self.forward.entry(a).or_insert(b) == b && *self.backward.entry(b).or_insert(a) == a
    }
}

fn event_matches(a: &Event, b: &Event, execs: &mut ExecMap) -> bool {
    match (a, b) {
        (Event::NodeStarted(x), Event::NodeStarted(y)) => {
            execs.pair(x.node_execution_id, y.node_execution_id)
                && x.node_id == y.node_id
                && x.node_type == y.node_type
                && x.title == y.title
                && x.predecessor_node_id == y.predecessor_node_id
                && json_matches(&x.inputs.0, &y.inputs.0)
                && x.iteration_id == y.iteration_id
                && x.loop_id == y.loop_id
                && json_matches(&x.extras.0, &y.extras.0)
        }
        (Event::NodeFinished(x), Event::NodeFinished(y)) => finished_matches(x, y, execs),
        (Event::NodeRetried { finished: x, retry_index: i }, Event::NodeRetried { finished: y, retry_index: j }) => {
            i == j && finished_matches(x, y, execs)
        }
        (Event::ContainerStarted(x), Event::ContainerStarted(y)) => {
            execs.pair(x.node_execution_id, y.node_execution_id)
                && x.kind == y.kind
                && x.node_id == y.node_id
                && x.node_type == y.node_type
                && x.title == y.title
                && x.length == y.length
                && json_matches(&x.inputs.0, &y.inputs.0)
        }
        (
            Event::ContainerNext { kind, node_execution_id, node_id, index, pre_loop_output },
            Event::ContainerNext { kind: k2, node_execution_id: e2, node_id: n2, index: i2, pre_loop_output: p2 },
        ) => {
            execs.pair(*node_execution_id, *e2)
                && kind == k2
                && node_id == n2
                && index == i2
                && json_matches(&pre_loop_output.0, &p2.0)
        }
        (Event::ContainerCompleted(x), Event::ContainerCompleted(y)) => {
            execs.pair(x.node_execution_id, y.node_execution_id)
                && x.kind == y.kind
                && x.node_id == y.node_id
                && json_matches(&x.inputs.0, &y.inputs.0)
                && json_matches(&x.outputs.0, &y.outputs.0)
                && x.status == y.status
                && x.error == y.error
                && x.total_tokens == y.total_tokens
                && x.steps == y.steps
        }
        (Event::WorkflowFinished(x), Event::WorkflowFinished(y)) => {
            x.status == y.status
                && json_matches(&x.outputs.0, &y.outputs.0)
                && x.error == y.error
                && x.total_tokens == y.total_tokens
                && x.total_steps == y.total_steps
                && x.exceptions_count == y.exceptions_count
        }
        (
            Event::MessageEnded { answer, usage, stopped, .. },
            Event::MessageEnded { answer: a2, usage: u2, stopped: s2, .. },
        ) => answer == a2 && stopped == s2 && usage_matches(usage, u2),
        (Event::ModelAnswered { node_id, text, usage }, Event::ModelAnswered { node_id: n2, text: t2, usage: u2 }) => {
            node_id == n2 && text == t2 && usage_matches(usage, u2)
        }
        (Event::ModelCalled { .. }, Event::ModelCalled { .. })
        | (Event::RunStarted(_), Event::RunStarted(_))
        | (Event::AnswerChunk { .. }, Event::AnswerChunk { .. })
        | (Event::TextChunk { .. }, Event::TextChunk { .. })
        | (Event::RunFailed { .. }, Event::RunFailed { .. })
        | (Event::AnswerReplaced { .. }, Event::AnswerReplaced { .. })
        | (Event::InputModerated { .. }, Event::InputModerated { .. }) => a == b,
        _ => false,
    }
}

fn finished_matches(x: &NodeFinished, y: &NodeFinished, execs: &mut ExecMap) -> bool {
    execs.pair(x.node_execution_id, y.node_execution_id)
        && x.node_id == y.node_id
        && x.node_type == y.node_type
        && x.status == y.status
        && x.error == y.error
        && json_matches(&x.inputs.0, &y.inputs.0)
        && json_matches(&x.process_data.0, &y.process_data.0)
        && json_matches(&x.outputs.0, &y.outputs.0)
        && json_matches(&x.execution_metadata.0, &y.execution_metadata.0)
}

/// Usages agree but for their clocks (a first token either way, though).
fn usage_matches(a: &Usage, b: &Usage) -> bool {
    let clockless = |u: &Usage| Usage {
        latency: 0.0,
        time_to_first_token: u.time_to_first_token.map(|_| 0.0),
        time_to_generate: u.time_to_generate.map(|_| 0.0),
        ..u.clone()
    };
    clockless(a) == clockless(b)
}

/// JSON values agree but for the clocks of usage objects.
fn json_matches(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let usage = x.contains_key("prompt_tokens");
            let field = |k: &String, v: &Value, w: &Value| {
                if usage && USAGE_CLOCKS.contains(&k.as_str()) {
                    (v.is_number() && w.is_number()) || v == w
                } else {
                    json_matches(v, w)
                }
            };
            // Both sides were built by the same code: their keys usually come in
            // the same order, which spares the lookups.
            if x.keys().zip(y.keys()).all(|(a, b)| a == b) {
                x.iter().zip(y.values()).all(|((k, v), w)| field(k, v, w))
            } else {
                x.iter().all(|(k, v)| y.get(k).is_some_and(|w| field(k, v, w)))
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_matches(v, w)),
        _ => a == b,
    }
}

/// One compared unit: a frame, or consecutive text frames joined.
struct Unit {
    lane: String,
    index: usize,
    value: Value,
}

/// Compares the recorded frames with the re-executed ones; `None` when they agree.
pub fn compare(
    recorded: Vec<Value>,
    recorded_ids: &RunIds,
    reexecuted: Vec<Value>,
    ids: &RunIds,
) -> Option<Divergence> {
    let mut recorded = units(recorded, recorded_ids);
    let mut lanes: HashMap<String, VecDeque<Unit>> = HashMap::new();
    for u in units(reexecuted, ids) {
        lanes.entry(u.lane.clone()).or_default().push_back(u);
    }
    let mut found = None;
    for (k, r) in recorded.iter().enumerate() {
        match lanes.get_mut(&r.lane).and_then(VecDeque::pop_front) {
            Some(n) if n.value == r.value => {}
            other => {
                found = Some((Some(k), other));
                break;
            }
        }
    }
    let (at, other) = match found {
        Some(f) => f,
        None => (None, Some(lanes.values_mut().flat_map(|l| l.drain(..)).min_by_key(|u| u.index)?)),
    };
    let titles: HashMap<String, String> = recorded
        .iter()
        .chain(other.iter())
        .filter_map(|u| {
            let d = u.value.get("data")?;
            Some((d.get("node_id")?.as_str()?.to_string(), d.get("title")?.as_str()?.to_string()))
        })
        .collect();
    let mine = at.map(|k| recorded.swap_remove(k));
    Some(divergence(mine, other, &titles))
}

fn divergence(recorded: Option<Unit>, reexecuted: Option<Unit>, titles: &HashMap<String, String>) -> Divergence {
    let shown = recorded.as_ref().or(reexecuted.as_ref()).map(|u| &u.value);
    let data = shown.and_then(|v| v.get("data"));
    // A node frame names its node; a text frame the node whose output it is.
    let node_id = data
        .and_then(|d| d.get("node_id"))
        .or_else(|| shown.and_then(|v| v.get("from_variable_selector")).and_then(|s| s.get(0)))
        .or_else(|| data.and_then(|d| d.get("from_variable_selector")).and_then(|s| s.get(0)))
        .and_then(Value::as_str)
        .map(str::to_string);
    let title = data
        .and_then(|d| d.get("title"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| node_id.as_ref().and_then(|n| titles.get(n).cloned()));
    let (field, field_values) = match (&recorded, &reexecuted) {
        (Some(r), Some(n)) => match first_difference(&r.value, &n.value, "") {
            Some((path, a, b)) => (Some(path), Some((a.clone(), b.clone()))),
            None => (None, None),
        },
        _ => (None, None),
    };
    Divergence {
        index: recorded.as_ref().map(|u| u.index),
        reexecuted_index: reexecuted.as_ref().map(|u| u.index),
        event: shown.and_then(|v| v.get("event")).and_then(Value::as_str).unwrap_or_default().to_string(),
        node_id,
        title,
        field,
        field_values,
        recorded: recorded.map(|u| u.value),
        reexecuted: reexecuted.map(|u| u.value),
    }
}

/// The path of the first field where `a` and `b` differ, with both values there.
fn first_difference<'a>(a: &'a Value, b: &'a Value, path: &str) -> Option<(String, &'a Value, &'a Value)> {
    const NULL: &Value = &Value::Null;
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(found) = first_difference(v, w, &join(k)) {
                            return Some(found);
                        }
                    }
                    None => return Some((join(k), v, NULL)),
                }
            }
            y.iter().find(|(k, _)| !x.contains_key(*k)).map(|(k, w)| (join(k), NULL, w))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(found) = first_difference(v, w, &format!("{path}[{i}]")) {
                    return Some(found);
                }
            }
            let n = x.len().min(y.len());
            (x.len() != y.len()).then(|| (format!("{path}[{n}]"), x.get(n).unwrap_or(NULL), y.get(n).unwrap_or(NULL)))
        }
        _ => (a != b).then(|| (if path.is_empty() { "(frame)".to_string() } else { path.to_string() }, a, b)),
    }
}

fn node_frame(event: &str) -> bool {
    matches!(event, "node_started" | "node_finished" | "node_retry")
}

fn container_frame(event: &str) -> bool {
    event.starts_with("iteration_") || event.starts_with("loop_")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for k in path {
        v = v.get(*k)?;
    }
    v.as_str()
}

/// The text of a text frame, and the key it is joined by.
fn text_of(frame: &Value) -> Option<(String, &str)> {
    let event = frame.get("event")?.as_str()?;
    let (selector, text) = match event {
        "message" | "agent_message" => (frame.get("from_variable_selector"), frame.get("answer")?.as_str()?),
        "text_chunk" => {
            let data = frame.get("data")?;
            (data.get("from_variable_selector"), data.get("text")?.as_str()?)
        }
        _ => return None,
    };
    Some((format!("{event} {}", selector.unwrap_or(&Value::Null)), text))
}

fn set_text(frame: &mut Value, text: String) {
    match frame.get("event").and_then(Value::as_str) {
        Some("text_chunk") => {
            if let Some(d) = frame.get_mut("data") {
                d["text"] = text.into();
            }
        }
        _ => frame["answer"] = text.into(),
    }
}

/// Normalises frames and cuts them into lanes and units.
fn units(frames: Vec<Value>, ids: &RunIds) -> Vec<Unit> {
    // Name every node execution after its node, round and occurrence.
    let mut rounds: HashMap<String, String> = HashMap::new();
    for f in &frames {
        let event = f.get("event").and_then(Value::as_str).unwrap_or("");
        if !node_frame(event) {
            continue;
        }
        let (Some(id), Some(meta)) =
            (str_at(f, &["data", "id"]), f.get("data").and_then(|d| d.get("execution_metadata")))
        else {
            continue;
        };
        for (container, index) in [("iteration_id", "iteration_index"), ("loop_id", "loop_index")] {
            if let Some(c) = meta.get(container).and_then(Value::as_str) {
                let i = meta.get(index).map(Value::to_string).unwrap_or_default();
                rounds.insert(id.to_string(), format!("@{c}[{i}]"));
            }
        }
    }
    let mut known: HashMap<String, String> =
        ids.ids.iter().map(|(id, name)| (id.clone(), format!("<{name}>"))).collect();
    let mut lane_of: HashMap<String, String> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for f in &frames {
        let event = f.get("event").and_then(Value::as_str).unwrap_or("");
        if !(node_frame(event) || container_frame(event)) {
            continue;
        }
        let (Some(id), Some(node)) = (str_at(f, &["data", "id"]), str_at(f, &["data", "node_id"])) else { continue };
        if lane_of.contains_key(id) {
            continue;
        }
        let base = format!("{node}{}", rounds.get(id).map(String::as_str).unwrap_or(""));
        let n = seen.entry(base.clone()).or_insert(0);
        let lane = format!("{base}#{n}");
        *n += 1;
        known.insert(id.to_string(), format!("<exec {lane}>"));
        lane_of.insert(id.to_string(), lane);
    }

    let mut out: Vec<Unit> = Vec::with_capacity(frames.len());
    let mut others: HashMap<String, HashMap<String, String>> = HashMap::new();
    // The open text unit of the run lane: its place in `out` and join key.
    let mut open_text: Option<(usize, String)> = None;
    for (i, mut f) in frames.into_iter().enumerate() {
        let event = f.get("event").and_then(Value::as_str).unwrap_or("").to_string();
        let lane = match str_at(&f, &["data", "id"]) {
            Some(id) if node_frame(&event) || container_frame(&event) => lane_of.get(id).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        normalise_times(&mut f, node_frame(&event));
        let unknown = others.entry(lane.clone()).or_default();
        replace_ids(&mut f, &known, unknown);
        if lane.is_empty() {
            if let Some((key, text)) = text_of(&f).map(|(k, t)| (k, t.to_string())) {
                if let Some((at, open_key)) = &open_text {
                    if *open_key == key {
                        let joined = text_of(&out[*at].value).map(|(_, t)| format!("{t}{text}")).unwrap_or(text);
                        set_text(&mut out[*at].value, joined);
                        continue;
                    }
                }
                open_text = Some((out.len(), key));
            } else {
                open_text = None;
            }
        }
        out.push(Unit { lane, index: i + 1, value: f });
    }
    out
}

fn zero(m: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(v) = m.get_mut(*k) {
            if v.is_number() {
                *v = 0.into();
            }
        }
    }
}

const CLOCKS: &[&str] = &["created_at", "finished_at", "elapsed_time"];
const USAGE_CLOCKS: &[&str] = &["latency", "time_to_first_token", "time_to_generate"];

fn normalise_times(frame: &mut Value, node: bool) {
    if let Value::Object(m) = frame {
        zero(m, CLOCKS);
        if let Some(Value::Object(d)) = m.get_mut("data") {
            zero(d, CLOCKS);
            if node {
                zero(d, &["index"]);
            }
        }
    }
    zero_usage(frame);
}

fn zero_usage(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("prompt_tokens") {
                zero(m, USAGE_CLOCKS);
            }
            for x in m.values_mut() {
                zero_usage(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(zero_usage),
        _ => {}
    }
}

/// Replaces UUIDs inside every string: known ones by their names, others by
/// `<uuid-N>` in order of first appearance.
fn replace_ids(v: &mut Value, known: &HashMap<String, String>, unknown: &mut HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(r) = replace_in(s, known, unknown) {
                *s = r;
            }
        }
        Value::Object(m) => m.values_mut().for_each(|x| replace_ids(x, known, unknown)),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_ids(x, known, unknown)),
        _ => {}
    }
}

const UUID_LEN: usize = 36;

fn uuid_at(b: &[u8], i: usize) -> bool {
    if i + UUID_LEN > b.len() {
        return false;
    }
    if (i > 0 && b[i - 1].is_ascii_alphanumeric()) || b.get(i + UUID_LEN).is_some_and(u8::is_ascii_alphanumeric) {
        return false;
    }
    b[i..i + UUID_LEN].iter().enumerate().all(|(k, c)| match k {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

fn replace_in(s: &str, known: &HashMap<String, String>, unknown: &mut HashMap<String, String>) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < UUID_LEN || !s.contains('-') {
        return None;
    }
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut i = 0;
    while i + UUID_LEN <= b.len() {
        if !uuid_at(b, i) {
            i += 1;
            continue;
        }
        let id = s[i..i + UUID_LEN].to_ascii_lowercase();
        let name = match known.get(&id) {
            Some(n) => n.clone(),
            None => {
                let n = unknown.len() + 1;
                unknown.entry(id).or_insert_with(|| format!("<uuid-{n}>")).clone()
            }
        };
        let o = out.get_or_insert_with(String::new);
        o.push_str(&s[last..i]);
        o.push_str(&name);
        i += UUID_LEN;
        last = i;
    }
    let mut o = out?;
    o.push_str(&s[last..]);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(task: u128) -> RunIds {
        RunIds { ids: vec![(Uuid::from_u128(task).to_string(), "task_id")] }
    }

    fn node(event: &str, exec: u128, node: &str, extra: Value) -> Value {
        let mut data =
            json!({"id": Uuid::from_u128(exec).to_string(), "node_id": node, "index": exec, "created_at": 5});
        if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
            d.extend(e);
        }
        json!({"event": event, "task_id": Uuid::from_u128(1).to_string(), "data": data})
    }

    fn chunk(text: &str) -> Value {
        json!({"event": "text_chunk", "data": {"text": text, "from_variable_selector": ["llm", "text"]}})
    }

    #[test]
    fn ids_clocks_interleaving_and_chunking_do_not_count() {
        let a = vec![
            node("node_started", 10, "a", json!({})),
            node("node_started", 11, "b", json!({})),
            chunk("hel"),
            node("node_finished", 11, "b", json!({"outputs": {"x": 1}, "elapsed_time": 0.3})),
            chunk("lo"),
            node("node_finished", 10, "a", json!({"outputs": {"x": Uuid::from_u128(1).to_string()}})),
        ];
        let b = vec![
            node("node_started", 21, "b", json!({})),
            node("node_finished", 21, "b", json!({"outputs": {"x": 1}, "elapsed_time": 0.9})),
            node("node_started", 20, "a", json!({})),
            chunk("hello"),
            node("node_finished", 20, "a", json!({"outputs": {"x": Uuid::from_u128(2).to_string()}})),
        ];
        let ids2 = RunIds { ids: vec![(Uuid::from_u128(2).to_string(), "task_id")] };
        // Task 1 in the recording is task 2 in the re-execution: both are `<task_id>`.
        let b: Vec<Value> = b
            .into_iter()
            .map(|mut f| {
                if f.get("task_id").is_some() {
                    f["task_id"] = Uuid::from_u128(2).to_string().into();
                }
                f
            })
            .collect();
        assert_eq!(compare(a, &ids(1), b, &ids2), None);
    }

    #[test]
    fn reports_the_first_differing_frame_of_a_lane() {
        let a = vec![
            node("node_started", 10, "a", json!({"title": "A"})),
            node("node_finished", 10, "a", json!({"title": "A", "outputs": {"text": "x"}})),
        ];
        let mut b = a.clone();
        b[1]["data"]["outputs"]["text"] = "y".into();
        let d = compare(a.clone(), &ids(1), b, &ids(1)).unwrap();
        assert_eq!((d.index, d.reexecuted_index), (Some(2), Some(2)));
        assert_eq!(
            (d.event.as_str(), d.node_id.as_deref(), d.title.as_deref()),
            ("node_finished", Some("a"), Some("A"))
        );
        assert_eq!(d.field.as_deref(), Some("data.outputs.text"));
        assert_eq!(d.recorded.unwrap()["data"]["id"], "<exec a#0>");
        // A frame only one side has.
        let d = compare(a.clone(), &ids(1), a[..1].to_vec(), &ids(1)).unwrap();
        assert_eq!((d.index, d.reexecuted_index, d.reexecuted), (Some(2), None, None));
        let d = compare(a[..1].to_vec(), &ids(1), a, &ids(1)).unwrap();
        assert_eq!((d.index, d.reexecuted_index), (None, Some(2)));
    }

    #[test]
    fn rounds_name_lanes_and_other_uuids_are_numbered() {
        let round = |exec: u128, i: u64, out: &str| {
            vec![
                node("node_started", exec, "t", json!({"iteration_id": "it"})),
                node(
                    "node_finished",
                    exec,
                    "t",
                    json!({"outputs": {"o": out}, "execution_metadata": {"iteration_id": "it", "iteration_index": i}}),
                ),
            ]
        };
        let u = Uuid::from_u128(99).to_string();
        let v = Uuid::from_u128(98).to_string();
        let a = [round(10, 0, &format!("x {u}")), round(11, 1, "y")].concat();
        let b = [round(21, 1, "y"), round(20, 0, &format!("x {v}"))].concat();
        assert_eq!(compare(a.clone(), &ids(1), b, &ids(1)), None);
        let b = [round(21, 1, "z"), round(20, 0, &format!("x {v}"))].concat();
        let d = compare(a, &ids(1), b, &ids(1)).unwrap();
        assert_eq!((d.index, d.reexecuted_index), (Some(4), Some(2)));
        assert_eq!(d.recorded.unwrap()["data"]["id"], "<exec t@it[1]#0>");
        assert_eq!(
            replace_in(&format!("a {u} b {u}"), &HashMap::new(), &mut HashMap::new()).unwrap(),
            "a <uuid-1> b <uuid-1>"
        );
        assert_eq!(replace_in(&format!("x{u}"), &HashMap::new(), &mut HashMap::new()), None);
    }
}
