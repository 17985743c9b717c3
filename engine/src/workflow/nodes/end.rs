//! `end` (workflow): collects the run's outputs; its outputs are streamed
//! as `text_chunk`s, in order, separated by newlines.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun, Role};
use crate::workflow::graph::scalar;
use crate::workflow::pool::selector_of;
use crate::workflow::template::Segment;

pub struct End {
    outputs: Vec<(String, Option<Vec<String>>)>,
    segments: Vec<Segment>,
}

impl End {
    pub fn compile(data: &Value) -> Result<End, String> {
        let mut outputs = Vec::new();
        let mut segments = Vec::new();
        for o in data.get("outputs").and_then(Value::as_array).into_iter().flatten() {
            let name = scalar(o.get("variable"));
            if name.is_empty() {
                continue;
            }
            let sel = o.get("value_selector").and_then(selector_of);
            if let Some(sel) = &sel {
                if !segments.is_empty() {
                    segments.push(Segment::Text("\n".into()));
                }
                segments.push(Segment::Var(sel.clone()));
            }
            outputs.push((name, sel));
        }
        Ok(End { outputs, segments })
    }
}

impl Node for End {
    fn role(&self) -> Role {
        Role::Response
    }

    fn segments(&self) -> Option<&[Segment]> {
        Some(&self.segments)
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let outputs: Map<String, Value> = self
                .outputs
                .iter()
                .map(|(name, sel)| (name.clone(), sel.as_ref().and_then(|s| cx.pool.get(s)).unwrap_or(Value::Null)))
                .collect();
            Ok(NodeRun { inputs: Value::Object(outputs.clone()), outputs, ..NodeRun::default() })
        })
    }
}
