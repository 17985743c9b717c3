//! `tool`: Dify's builtin tools that need no credentials and no network,
//! run in-process (`time.current_time`, `json_process.parse`). Parameters
//! come from `tool_configurations` and `tool_parameters` (`mixed` text
//! templates, `variable` selectors, `constant`s). Any other tool fails the
//! node naming it. Outputs: `text`, `files`, `json`. On re-execution the
//! outputs are the recorded ones ([`crate::workflow::replay`]).

mod json_process;
mod time;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun};
use crate::workflow::graph::scalar;
use crate::workflow::pool::selector_of;
use crate::workflow::template;

/// How a parameter gets its value.
enum Param {
    Mixed(String),
    Variable(Vec<String>),
    Constant(Value),
}

/// A tool ferrify runs itself.
#[derive(Clone, Copy)]
enum Builtin {
    CurrentTime,
    JsonParse,
}

pub struct Tool {
    provider: String,
    name: String,
    builtin: Option<Builtin>,
    params: Vec<(String, Param)>,
}

impl Tool {
    pub fn compile(data: &Value) -> Result<Tool, String> {
        let provider_id = scalar(data.get("provider_id")).to_string();
        let provider = provider_id.rsplit('/').next().unwrap_or("").to_string();
        let name = scalar(data.get("tool_name"));
        let builtin = match (provider.as_str(), name.as_str()) {
            ("time", "current_time") => Some(Builtin::CurrentTime),
            ("json_process", "parse") => Some(Builtin::JsonParse),
            _ => None,
        };
        let mut params = Vec::new();
        for key in ["tool_configurations", "tool_parameters"] {
            for (k, v) in data.get(key).and_then(Value::as_object).into_iter().flatten() {
                let param = match (v.get("type").and_then(Value::as_str), v.get("value")) {
                    (Some("mixed"), Some(Value::String(s))) => Param::Mixed(s.clone()),
                    (Some("variable"), Some(sel)) => match selector_of(sel) {
                        Some(sel) => Param::Variable(sel),
                        None => continue,
                    },
                    (Some("constant" | "mixed"), Some(value)) => Param::Constant(value.clone()),
                    _ if v.is_object() && v.get("type").is_some() => continue,
                    _ => Param::Constant(v.clone()),
                };
                params.retain(|(name, _)| name != k);
                params.push((k.clone(), param));
            }
        }
        Ok(Tool { provider: provider_id, name, builtin, params })
    }
}

impl Node for Tool {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let Some(builtin) = self.builtin else {
                return Err(NodeError::new(
                    "ToolNodeError",
                    format!(
                        "tool '{}' of provider '{}' is not available on this server (node type 'tool')",
                        self.name, self.provider
                    ),
                ));
            };
            let mut args = Map::new();
            for (name, p) in &self.params {
                let v = match p {
                    Param::Mixed(t) => Value::String(template::render(t, cx.pool)),
                    Param::Variable(sel) => cx.pool.get(sel).unwrap_or(Value::Null),
                    Param::Constant(v) => v.clone(),
                };
                args.insert(name.clone(), v);
            }
            if cx.served.is_replay() {
                // Re-execution: the recorded answer (the time tool's clock included).
                return Ok(NodeRun {
                    inputs: Value::Object(args),
                    process_data: json!({"tool": format!("{}/{}", self.provider, self.name)}),
                    outputs: cx.served.outputs()?,
                    ..NodeRun::default()
                });
            }
            let text = match builtin {
                Builtin::CurrentTime => time::current_time(&args).map_err(|e| NodeError::new("ToolInvokeError", e))?,
                Builtin::JsonParse => json_process::parse(&args),
            };
            let mut outputs = Map::new();
            outputs.insert("text".into(), text.into());
            outputs.insert("files".into(), json!([]));
            outputs.insert("json".into(), json!([]));
            Ok(NodeRun {
                inputs: Value::Object(args),
                process_data: json!({"tool": format!("{}/{}", self.provider, self.name)}),
                outputs,
                ..NodeRun::default()
            })
        })
    }
}
