//! `template-transform`: renders a Jinja2 template with the mapped variables.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{mapped_values, variable_mappings, Node, NodeCx, NodeError, NodeRun};
use crate::workflow::template::Jinja;

/// Longest output Dify allows.
const MAX_OUTPUT: usize = 80_000;

pub struct TemplateTransform {
    variables: Vec<(String, Vec<String>)>,
    template: Jinja,
}

impl TemplateTransform {
    pub fn compile(data: &Value) -> Result<TemplateTransform, String> {
        let source = data.get("template").and_then(Value::as_str).unwrap_or("");
        Ok(TemplateTransform { variables: variable_mappings(data.get("variables")), template: Jinja::compile(source)? })
    }
}

impl Node for TemplateTransform {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let vars = mapped_values(cx, &self.variables);
            let output = self.template.render(&vars).map_err(|e| NodeError::new("TemplateTransformNodeError", e))?;
            if output.chars().count() > MAX_OUTPUT {
                return Err(NodeError::new(
                    "TemplateTransformNodeError",
                    format!("Output length exceeds {MAX_OUTPUT} characters"),
                ));
            }
            let mut outputs = Map::new();
            outputs.insert("output".into(), output.into());
            Ok(NodeRun { inputs: Value::Object(vars), outputs, ..NodeRun::default() })
        })
    }
}
