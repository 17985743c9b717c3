//! Workflow and advanced-chat apps: Dify DSL graphs on a parallel graph engine.
//!
//! - [`graph`]: compile and validate a version's graph;
//! - [`executor`]: the ready-queue engine running a scope, with node events,
//!   error strategies, retries, timeouts and stop;
//! - [`response`]: which Answer/End text is streamed, and when;
//! - [`pool`]: the variable pool and value renderings;
//! - [`template`]: `{{#…#}}` references and Jinja2;
//! - [`condition`]: comparison operators;
//! - [`nodes`]: one module per node type;
//! - [`replay`]: recorded outcomes of nodes that reach outside, for re-execution.

pub mod condition;
pub mod executor;
pub mod graph;
pub mod net;
pub mod nodes;
pub mod pool;
pub mod replay;
pub mod response;
pub mod template;

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::form::{parse_start_variables, FormField};
use graph::{compile, scalar, Graph, GraphError};

/// Engine-wide settings of workflow runs.
#[derive(Clone, Debug)]
pub struct WorkflowSettings {
    /// Most node executions per run (Dify's `WORKFLOW_MAX_EXECUTION_STEPS`;
    /// `limits.max_workflow_steps`).
    pub max_steps: u64,
    /// Most elements an iteration node accepts (`limits.max_iteration_items`).
    pub max_iteration_items: usize,
    /// Whether http-request nodes and remote files may reach private,
    /// loopback and link-local addresses.
    pub allow_private_network: bool,
    /// A dify-sandbox endpoint for `code` nodes (`[code] sandbox_url`).
    pub code_sandbox_url: Option<String>,
    /// The dify-sandbox API key.
    pub code_sandbox_key: Option<String>,
    /// The Python interpreter for `code` nodes (`python3` on PATH by default).
    pub python: Option<String>,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        WorkflowSettings {
            max_steps: 500,
            max_iteration_items: 1000,
            allow_private_network: false,
            code_sandbox_url: None,
            code_sandbox_key: None,
            python: None,
        }
    }
}

/// A declared conversation variable.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationVariable {
    pub id: String,
    pub name: String,
    pub value_type: String,
    pub value: Value,
    pub description: String,
}

/// A published workflow version, compiled.
#[derive(Debug)]
pub struct Workflow {
    pub id: Uuid,
    pub graph: Arc<Graph>,
    pub form: Vec<FormField>,
    pub features: Value,
    pub environment: Map<String, Value>,
    pub conversation_variables: Vec<ConversationVariable>,
    /// `(provider, model)` of the graph's first LLM node: what a chatflow's
    /// side tasks (conversation titles, suggested questions) ask.
    pub llm_model: Option<(String, String)>,
}

/// An environment variable's run-time value (numbers as numbers).
fn env_value(v: &Value) -> Value {
    let value = v.get("value").cloned().unwrap_or(Value::String(String::new()));
    match (v.get("value_type").and_then(Value::as_str), &value) {
        (Some("number"), Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.trim().parse::<f64>().map(Value::from))
            .unwrap_or(value.clone()),
        (_, Value::Null) => Value::String(String::new()),
        _ => value,
    }
}

/// `(provider, model)` of the first LLM node of a graph.
fn first_llm_model(graph: &Value) -> Option<(String, String)> {
    let nodes = graph.get("nodes")?.as_array()?;
    nodes.iter().find_map(|n| {
        let data = n.get("data")?;
        if data.get("type")?.as_str()? != "llm" {
            return None;
        }
        let model = data.get("model")?;
        Some((model.get("provider")?.as_str()?.to_string(), model.get("name")?.as_str()?.to_string()))
    })
}

/// Compiles a version's parts (graph, environment and conversation variables).
pub fn compile_version(
    id: Uuid,
    graph: &Value,
    features: &Value,
    environment: &Value,
    conversation_variables: &Value,
) -> Result<Workflow, GraphError> {
    let compiled = compile(graph)?;
    let start = &compiled.nodes[compiled.start];
    let form = graph
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|n| scalar(n.get("id")) == start.id)
        .and_then(|n| n.get("data"))
        .and_then(|d| d.get("variables"))
        .map(parse_start_variables)
        .unwrap_or_default();
    let environment = environment
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = scalar(v.get("name"));
            (!name.is_empty()).then(|| (name, env_value(v)))
        })
        .collect();
    let conversation_variables = conversation_variables
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = scalar(v.get("name"));
            (!name.is_empty()).then(|| ConversationVariable {
                id: {
                    let id = scalar(v.get("id"));
                    if id.is_empty() {
                        name.clone()
                    } else {
                        id
                    }
                },
                value_type: match scalar(v.get("value_type")).as_str() {
                    "" => "string".into(),
                    t => t.into(),
                },
                value: v.get("value").cloned().unwrap_or(Value::Null),
                description: scalar(v.get("description")),
                name,
            })
        })
        .collect();
    Ok(Workflow {
        id,
        graph: Arc::new(compiled),
        form,
        features: features.clone(),
        environment,
        conversation_variables,
        llm_model: first_llm_model(graph),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_llm_node() {
        let g = json!({"nodes": [
            {"id": "s", "data": {"type": "start"}},
            {"id": "l", "data": {"type": "llm", "model": {"provider": "builtin", "name": "echo"}}},
            {"id": "m", "data": {"type": "llm", "model": {"provider": "openai", "name": "x"}}},
        ]});
        assert_eq!(first_llm_model(&g), Some(("builtin".into(), "echo".into())));
        assert_eq!(first_llm_model(&json!({"nodes": []})), None);
    }
}
