//! Node types, one module each behind the [`Node`] trait.
//!
//! A node is compiled once from its DSL `data` (errors name the field at
//! fault) and then run any number of times against a [`NodeCx`]: the run's
//! shared context, the variable pool of its scope, and its own definition.
//! A run returns the node's inputs, process data and outputs (recorded in
//! `node_finished`) and, for branch nodes, the handle it selected.

pub mod answer;
pub mod assigner;
pub mod code;
pub mod container;
pub mod document_extractor;
pub mod end;
pub mod http_request;
pub mod if_else;
pub mod iteration;
pub mod knowledge_retrieval;
pub mod list_operator;
pub mod llm;
pub mod loop_node;
pub mod parameter_extractor;
pub mod question_classifier;
pub mod start;
pub mod template_transform;
pub mod tool;
pub mod unsupported;
pub mod variable_aggregator;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::executor::{RunCx, ScopePos};
use super::graph::{Graph, NodeDef};
use super::pool::Pool;
use super::replay::Served;
use super::template::Segment;
use crate::event::Usage;

/// How the engine treats a node besides running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes all its outgoing edges.
    Plain,
    /// Takes only the edges of the handle it selects.
    Branch,
    /// Streams text to the client (`answer`, `end`).
    Response,
    /// Runs a body sub-graph (`iteration`, `loop`).
    Container,
}

/// What a node execution produced.
#[derive(Clone, Debug, Default)]
pub struct NodeRun {
    pub inputs: Value,
    pub process_data: Value,
    pub outputs: Map<String, Value>,
    /// The selected handle (branch nodes); `None` takes every normal edge.
    pub handle: Option<String>,
    /// Model usage of this node, if it called a model.
    pub usage: Option<Usage>,
    /// Extra `execution_metadata` keys.
    pub metadata: Map<String, Value>,
}

impl NodeRun {
    pub fn outputs(outputs: Map<String, Value>) -> NodeRun {
        NodeRun { outputs, ..NodeRun::default() }
    }
}

/// Why a node execution did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeError {
    /// The node failed; `error_type` is Dify's exception class name.
    Failed { error_type: String, message: String },
    /// The run was stopped while the node ran.
    Stopped,
}

impl NodeError {
    pub fn new(error_type: &str, message: impl Into<String>) -> NodeError {
        NodeError::Failed { error_type: error_type.into(), message: message.into() }
    }

    /// A failure with the generic error type.
    pub fn msg(message: impl Into<String>) -> NodeError {
        NodeError::new("NodeRunError", message)
    }
}

/// Everything a running node can see.
pub struct NodeCx<'a> {
    pub run: &'a RunCx,
    pub graph: &'a Graph,
    pub idx: usize,
    pub def: &'a NodeDef,
    pub pool: &'a Arc<Pool>,
    pub exec_id: Uuid,
    /// The container round the node runs in, if any.
    pub pos: &'a ScopePos,
    /// For nodes that reach outside: live, or the recorded attempt on re-execution.
    pub served: Served,
}

impl NodeCx<'_> {
    /// The value of a selector, or an error naming it.
    pub fn require(&self, selector: &[String]) -> Result<Value, NodeError> {
        self.pool.get(selector).ok_or_else(|| {
            NodeError::new("VariableNotFoundError", format!("Variable {} not found", selector_text(selector)))
        })
    }
}

/// `['a', 'b']` as Dify prints selectors in errors.
pub fn selector_text(selector: &[String]) -> String {
    let inner: Vec<String> = selector.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// A node type's behaviour.
pub trait Node: Send + Sync + 'static {
    fn role(&self) -> Role {
        Role::Plain
    }

    /// Runs the node once.
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>>;

    /// The template a response node streams.
    fn segments(&self) -> Option<&[Segment]> {
        None
    }

    /// Whether the node's `text` output is streamed chunk by chunk as it is produced.
    fn streams_text(&self) -> bool {
        false
    }

    /// The body's entry node id (`start_node_id`) of a container.
    fn entry(&self) -> Option<&str> {
        None
    }

    /// Whether the node's own events are left out of the stream (`iteration-start`, `loop-start`).
    fn silent(&self) -> bool {
        false
    }
}

/// Compiles a node's `data` by its type. Types ferrify cannot run compile
/// to a node that fails with an error naming the type.
pub fn compile(node_type: &str, data: &Value) -> Result<Box<dyn Node>, String> {
    Ok(match node_type {
        "start" => Box::new(start::Start::compile(data)?),
        "end" => Box::new(end::End::compile(data)?),
        "answer" => Box::new(answer::Answer::compile(data)?),
        "llm" => Box::new(llm::Llm::compile(data)?),
        "template-transform" => Box::new(template_transform::TemplateTransform::compile(data)?),
        "if-else" => Box::new(if_else::IfElse::compile(data)?),
        "variable-aggregator" | "variable-assigner" => {
            Box::new(variable_aggregator::VariableAggregator::compile(data)?)
        }
        "assigner" => Box::new(assigner::Assigner::compile(data)?),
        "iteration" => Box::new(iteration::Iteration::compile(data)?),
        "loop" => Box::new(loop_node::Loop::compile(data)?),
        "iteration-start" | "loop-start" => Box::new(start::BodyStart),
        "loop-end" => Box::new(loop_node::LoopEnd),
        "code" => Box::new(code::Code::compile(data)?),
        "http-request" => Box::new(http_request::HttpRequest::compile(data)?),
        "list-operator" => Box::new(list_operator::ListOperator::compile(data)?),
        "document-extractor" => Box::new(document_extractor::DocumentExtractor::compile(data)?),
        "question-classifier" => Box::new(question_classifier::QuestionClassifier::compile(data)?),
        "parameter-extractor" => Box::new(parameter_extractor::ParameterExtractor::compile(data)?),
        "tool" => Box::new(tool::Tool::compile(data)?),
        "knowledge-retrieval" => Box::new(knowledge_retrieval::KnowledgeRetrieval::compile(data)?),
        other => Box::new(unsupported::Unsupported::new(other)),
    })
}

/// `[{variable, value_selector}]` mappings (template-transform, code, jinja2 prompts).
pub fn variable_mappings(v: Option<&Value>) -> Vec<(String, Vec<String>)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = super::graph::scalar(m.get("variable"));
            let sel = m.get("value_selector").and_then(super::pool::selector_of)?;
            (!name.is_empty()).then_some((name, sel))
        })
        .collect()
}

/// Resolves mappings to a JSON object (missing values become null).
pub fn mapped_values(cx: &NodeCx<'_>, mappings: &[(String, Vec<String>)]) -> Map<String, Value> {
    mappings.iter().map(|(name, sel)| (name.clone(), cx.pool.get(sel).unwrap_or(Value::Null))).collect()
}
