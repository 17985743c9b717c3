//! PLACEHOLDER: being implemented.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{Node, NodeCx, NodeError, NodeRun};

pub struct ListOperator;

impl ListOperator {
    pub fn compile(_data: &Value) -> Result<ListOperator, String> {
        Ok(ListOperator)
    }
}

impl Node for ListOperator {
    fn run<'a>(&'a self, _cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move { Err(NodeError::msg("not implemented yet")) })
    }
}
