//! What iteration and loop containers share: the `*_started`, `*_next`
//! and `*_completed` events, and the steps and tokens their bodies used.

use std::time::Instant;

use serde_json::Value;

use super::{NodeCx, NodeError};
use crate::event::{ContainerCompleted, ContainerStarted, Event};
use crate::json::Json;

/// A container's rounds, from its start event to its completion event.
pub struct Rounds {
    kind: &'static str,
    started: Instant,
    steps_before: u64,
    tokens_before: u64,
}

impl Rounds {
    /// Records the start (`length`: items, or the round limit).
    pub fn start(cx: &NodeCx<'_>, kind: &'static str, length: u64, inputs: &Value) -> Rounds {
        let (steps_before, tokens_before) = {
            let t = cx.run.totals.lock();
            (t.steps, t.tokens)
        };
        cx.run.emit(Event::ContainerStarted(Box::new(ContainerStarted {
            kind: kind.into(),
            node_execution_id: cx.exec_id,
            node_id: cx.def.id.clone(),
            node_type: cx.def.node_type.clone(),
            title: cx.def.title.clone(),
            length,
            inputs: Json(inputs.clone()),
        })));
        Rounds { kind, started: Instant::now(), steps_before, tokens_before }
    }

    /// Records that round `index` begins.
    pub fn next(&self, cx: &NodeCx<'_>, index: u64, pre_loop_output: Json) {
        cx.run.emit(Event::ContainerNext {
            kind: self.kind.into(),
            node_execution_id: cx.exec_id,
            node_id: cx.def.id.clone(),
            index,
            pre_loop_output,
        });
    }

    /// Records the end, with how it ended.
    pub fn complete(self, cx: &NodeCx<'_>, inputs: &Value, outputs: &Value, failure: Option<&NodeError>) {
        let (steps, tokens) = {
            let t = cx.run.totals.lock();
            (t.steps - self.steps_before, t.tokens - self.tokens_before)
        };
        let (status, error) = match failure {
            None => ("succeeded", None),
            Some(NodeError::Stopped) => ("stopped", Some("Workflow execution stopped by user.".to_string())),
            Some(NodeError::Failed { message, .. }) => ("failed", Some(message.clone())),
        };
        cx.run.emit(Event::ContainerCompleted(Box::new(ContainerCompleted {
            kind: self.kind.into(),
            node_execution_id: cx.exec_id,
            node_id: cx.def.id.clone(),
            inputs: Json(inputs.clone()),
            outputs: Json(outputs.clone()),
            status: status.into(),
            error,
            elapsed_time: self.started.elapsed().as_secs_f64(),
            total_tokens: tokens,
            steps,
        })));
    }
}
