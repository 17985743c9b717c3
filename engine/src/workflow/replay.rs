//! Re-execution of nodes that reach outside the process (`http-request`,
//! `tool`, `document-extractor`): instead of the network (or the clock, for
//! the `time` tool), each attempt of such a node is given the outcome its
//! counterpart had in the recorded run — the `NodeFinished` (or the
//! `NodeRetried` of a failed attempt) of the same node id, in execution
//! order. The node still computes everything it computes before reaching
//! out (URL, headers, body, tool arguments: its inputs and process data), so
//! a change there shows in its frames; only the answer from outside is
//! replayed.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::nodes::NodeError;
use crate::event::{Event, NodeFinished};

/// Node types whose answers come from outside the process.
pub const SERVED_TYPES: &[&str] = &["http-request", "tool", "document-extractor"];

/// One recorded attempt of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Succeeded { process_data: Value, outputs: Map<String, Value> },
    Failed { error_type: String, message: String },
}

/// The recorded attempts of a run's served nodes.
#[derive(Debug, Default)]
pub struct RecordedOutcomes {
    by_node: Mutex<HashMap<String, VecDeque<Attempt>>>,
}

impl RecordedOutcomes {
    /// Reads the attempts of served node types from a run's events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> RecordedOutcomes {
        let mut by_node: HashMap<String, VecDeque<Attempt>> = HashMap::new();
        for event in events {
            let f = match event {
                Event::NodeFinished(f) | Event::NodeRetried { finished: f, .. } => f,
                _ => continue,
            };
            if !SERVED_TYPES.contains(&f.node_type.as_str()) || f.status == "stopped" {
                continue;
            }
            by_node.entry(f.node_id.clone()).or_default().push_back(attempt(f));
        }
        RecordedOutcomes { by_node: Mutex::new(by_node) }
    }

    /// The next recorded attempt of `node_id`.
    pub fn take(&self, node_id: &str) -> Option<Attempt> {
        self.by_node.lock().get_mut(node_id).and_then(VecDeque::pop_front)
    }
}

fn attempt(f: &NodeFinished) -> Attempt {
    if f.status == "succeeded" {
        let outputs = match &f.outputs.0 {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        return Attempt::Succeeded { process_data: f.process_data.0.clone(), outputs };
    }
    let message = f.error.clone().unwrap_or_default();
    let error_type = match f.outputs.0.get("error_type").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None if message.starts_with("node timed out after") => "TimeoutError".into(),
        None => match f.node_type.as_str() {
            "http-request" => "HttpRequestNodeError",
            "tool" => "ToolNodeError",
            _ => "DocumentExtractorError",
        }
        .into(),
    };
    Attempt::Failed { error_type, message }
}

/// What a served node gets on this attempt.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Served {
    /// A live run: reach out for real.
    #[default]
    Live,
    /// Re-execution: the recorded attempt.
    Recorded(Attempt),
    /// Re-execution, but the recorded run has no (further) attempt of this node.
    Missing,
}

impl Served {
    /// Whether the answer from outside is replayed.
    pub fn is_replay(&self) -> bool {
        !matches!(self, Served::Live)
    }

    /// The recorded outputs, or the recorded failure.
    pub fn outputs(&self) -> Result<Map<String, Value>, NodeError> {
        match self {
            Served::Recorded(Attempt::Succeeded { outputs, .. }) => Ok(outputs.clone()),
            Served::Recorded(Attempt::Failed { error_type, message }) => {
                Err(NodeError::new(error_type, message.clone()))
            }
            Served::Missing | Served::Live => Err(NodeError::new(
                "ReplayError",
                "no recorded outcome for this node: it did not run (this often) in the recorded run",
            )),
        }
    }

    /// The recorded process data of a successful attempt.
    pub fn process_data(&self) -> Option<&Value> {
        match self {
            Served::Recorded(Attempt::Succeeded { process_data, .. }) => Some(process_data),
            _ => None,
        }
    }
}
