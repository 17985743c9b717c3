//! Node types ferrify does not run (tool, agent, knowledge-retrieval, …):
//! they import, and a run that reaches one fails that node naming the type.

use futures_util::future::BoxFuture;

use super::{Node, NodeCx, NodeError, NodeRun};

pub struct Unsupported {
    node_type: String,
}

impl Unsupported {
    pub fn new(node_type: &str) -> Unsupported {
        Unsupported { node_type: node_type.to_string() }
    }
}

impl Node for Unsupported {
    fn run<'a>(&'a self, _cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            Err(NodeError::new(
                "UnsupportedNodeError",
                format!("node type '{}' is not supported by this server", self.node_type),
            ))
        })
    }
}
