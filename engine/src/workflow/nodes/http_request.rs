//! PLACEHOLDER: being implemented.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{Node, NodeCx, NodeError, NodeRun};

pub struct HttpRequest;

impl HttpRequest {
    pub fn compile(_data: &Value) -> Result<HttpRequest, String> {
        Ok(HttpRequest)
    }
}

impl Node for HttpRequest {
    fn run<'a>(&'a self, _cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move { Err(NodeError::msg("not implemented yet")) })
    }
}
