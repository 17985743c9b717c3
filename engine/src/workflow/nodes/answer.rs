//! `answer` (chatflow): a `{{#…#}}` template whose text is streamed as
//! `message` events (see the response coordinator); outputs `answer`, `files`.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun, Role};
use crate::workflow::pool::is_file;
use crate::workflow::template::{parse, render_segments, Flavour, Segment};

pub struct Answer {
    segments: Vec<Segment>,
}

impl Answer {
    pub fn compile(data: &Value) -> Result<Answer, String> {
        let text = data.get("answer").and_then(Value::as_str).unwrap_or("");
        Ok(Answer { segments: parse(text) })
    }
}

impl Node for Answer {
    fn role(&self) -> Role {
        Role::Response
    }

    fn segments(&self) -> Option<&[Segment]> {
        Some(&self.segments)
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let answer = render_segments(&self.segments, cx.pool, Flavour::Markdown);
            let mut files = Vec::new();
            for s in &self.segments {
                if let Segment::Var(sel) = s {
                    match cx.pool.get(sel) {
                        Some(v) if is_file(&v) => files.push(v),
                        Some(Value::Array(items)) => files.extend(items.into_iter().filter(is_file)),
                        _ => {}
                    }
                }
            }
            let mut outputs = Map::new();
            outputs.insert("answer".into(), answer.into());
            outputs.insert("files".into(), Value::Array(files));
            Ok(NodeRun { inputs: json!({}), outputs, ..NodeRun::default() })
        })
    }
}
