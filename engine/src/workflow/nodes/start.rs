//! `start`: the root. Its outputs are the validated inputs (placed in the
//! pool under the start node's id before the run begins) and the `sys.*`
//! values, as Dify reports them.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun};

pub struct Start;

impl Start {
    pub fn compile(_data: &Value) -> Result<Start, String> {
        Ok(Start)
    }
}

impl Node for Start {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let mut outputs = cx.pool.owner(&cx.def.id).unwrap_or_default();
            for (k, v) in cx.pool.owner("sys").unwrap_or_default() {
                outputs.insert(format!("sys.{k}"), v);
            }
            let inputs = Value::Object(outputs.clone());
            // Keep the plain inputs as the node's variables; `sys.*` stay under `sys`.
            let variables: Map<String, Value> = outputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(NodeRun { inputs, outputs: variables, ..NodeRun::default() })
        })
    }
}

/// `iteration-start` / `loop-start`: the entry of a container body; does nothing and is not reported.
pub struct BodyStart;

impl Node for BodyStart {
    fn run<'a>(&'a self, _cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move { Ok(NodeRun::default()) })
    }

    fn silent(&self) -> bool {
        true
    }
}
