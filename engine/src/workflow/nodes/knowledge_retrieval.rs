//! `knowledge-retrieval`: ferrify has no dataset store, so retrieval
//! returns no chunks (`result: []`, workflow-dsl.md §4.15) and says so in
//! its process data; downstream LLM contexts are then empty.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun};
use crate::workflow::pool::{render_text, selector_of};

pub struct KnowledgeRetrieval {
    query: Option<Vec<String>>,
}

impl KnowledgeRetrieval {
    pub fn compile(data: &Value) -> Result<KnowledgeRetrieval, String> {
        Ok(KnowledgeRetrieval { query: data.get("query_variable_selector").and_then(selector_of) })
    }
}

impl Node for KnowledgeRetrieval {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let query = self.query.as_ref().and_then(|s| cx.pool.get(s)).map(|v| render_text(&v)).unwrap_or_default();
            let mut outputs = Map::new();
            outputs.insert("result".into(), json!([]));
            Ok(NodeRun {
                inputs: json!({"query": query}),
                process_data: json!({"note": "no retrieval backend is configured: no chunks"}),
                outputs,
                ..NodeRun::default()
            })
        })
    }
}
