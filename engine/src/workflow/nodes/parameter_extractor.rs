//! `parameter-extractor`: asks the model for the declared parameters as
//! JSON; missing or ill-typed values become their type's default, and
//! `__is_success` / `__reason` say whether extraction worked.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::llm::{extract_json, invoke, model_spec, usage_value};
use super::{Node, NodeCx, NodeError, NodeRun};
use crate::app::ModelSpec;
use crate::provider::{PromptMessage, Role};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{render_text, selector_of};
use crate::workflow::template;

struct Param {
    name: String,
    kind: String,
    description: String,
    required: bool,
}

pub struct ParameterExtractor {
    spec: ModelSpec,
    query: Vec<String>,
    params: Vec<Param>,
    instruction: String,
}

impl ParameterExtractor {
    pub fn compile(data: &Value) -> Result<ParameterExtractor, String> {
        let params = data
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| Param {
                name: scalar(p.get("name")),
                kind: match scalar(p.get("type")).as_str() {
                    "bool" => "boolean".into(),
                    "select" | "" => "string".into(),
                    other => other.into(),
                },
                description: scalar(p.get("description")),
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
            })
            .filter(|p| !p.name.is_empty())
            .collect();
        Ok(ParameterExtractor {
            spec: model_spec(data)?,
            query: data.get("query").and_then(selector_of).unwrap_or_else(|| vec!["sys".into(), "query".into()]),
            params,
            instruction: data.get("instruction").and_then(Value::as_str).unwrap_or("").to_string(),
        })
    }
}

fn default_of(kind: &str) -> Value {
    match kind {
        "number" => json!(0),
        "boolean" => json!(false),
        k if k.starts_with("array") => json!([]),
        _ => json!(""),
    }
}

fn fits(kind: &str, v: &Value) -> bool {
    match kind {
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array[string]" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "array[number]" => v.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
        "array[boolean]" => v.as_array().is_some_and(|a| a.iter().all(Value::is_boolean)),
        "array[object]" => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        _ => true,
    }
}

impl Node for ParameterExtractor {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let query = cx.pool.get(&self.query).map(|v| render_text(&v)).unwrap_or_default();
            let schema: Vec<Value> = self
                .params
                .iter()
                .map(|p| json!({"name": p.name, "type": p.kind, "description": p.description, "required": p.required}))
                .collect();
            let system = format!(
                "Extract the following parameters from the user's text and answer only with one JSON object \
                 whose keys are the parameter names.\nParameters: {}\n{}",
                Value::Array(schema),
                template::render(&self.instruction, cx.pool)
            );
            let messages = vec![
                PromptMessage { role: Role::System, content: system, images: Vec::new() },
                PromptMessage { role: Role::User, content: query.clone(), images: Vec::new() },
            ];
            let (text, usage) = invoke(cx, &self.spec, messages, false).await?;
            let answer = extract_json(&text);
            let mut outputs = Map::new();
            let mut reason = None;
            for p in &self.params {
                let v = answer.as_ref().and_then(|a| a.get(&p.name)).filter(|v| fits(&p.kind, v)).cloned();
                if v.is_none() && p.required && reason.is_none() {
                    reason = Some(format!("Parameter {} is required", p.name));
                }
                outputs.insert(p.name.clone(), v.unwrap_or_else(|| default_of(&p.kind)));
            }
            if answer.is_none() {
                reason = Some("Failed to extract result from the model's answer.".into());
            }
            outputs.insert("__is_success".into(), if reason.is_none() { 1 } else { 0 }.into());
            outputs.insert("__reason".into(), reason.map(Value::String).unwrap_or(Value::Null));
            outputs.insert("__usage".into(), usage_value(&usage));
            Ok(NodeRun {
                inputs: json!({"query": query}),
                process_data: json!({"model_mode": self.spec.mode, "answer": text}),
                outputs,
                usage: Some(usage),
                ..NodeRun::default()
            })
        })
    }
}
