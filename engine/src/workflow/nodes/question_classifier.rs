//! `question-classifier`: asks the model which class a query belongs to
//! (JSON answer `{"category_id": …}`); selects that class's handle, or the
//! first class when the answer names none.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::llm::{extract_json, invoke, model_spec, usage_value};
use super::{Node, NodeCx, NodeError, NodeRun, Role};
use crate::app::ModelSpec;
use crate::provider::{PromptMessage, Role as PromptRole};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{render_text, selector_of};
use crate::workflow::template;

pub struct QuestionClassifier {
    spec: ModelSpec,
    query: Vec<String>,
    classes: Vec<(String, String)>,
    instruction: String,
}

impl QuestionClassifier {
    pub fn compile(data: &Value) -> Result<QuestionClassifier, String> {
        let classes: Vec<(String, String)> = data
            .get("classes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| (scalar(c.get("id")), scalar(c.get("name"))))
            .filter(|(id, _)| !id.is_empty())
            .collect();
        if classes.is_empty() {
            return Err("classes are missing".into());
        }
        Ok(QuestionClassifier {
            spec: model_spec(data)?,
            query: data
                .get("query_variable_selector")
                .and_then(selector_of)
                .unwrap_or_else(|| vec!["sys".into(), "query".into()]),
            classes,
            instruction: data.get("instruction").and_then(Value::as_str).unwrap_or("").to_string(),
        })
    }
}

impl Node for QuestionClassifier {
    fn role(&self) -> Role {
        Role::Branch
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let query = cx.pool.get(&self.query).map(|v| render_text(&v)).unwrap_or_default();
            let categories: Vec<Value> =
                self.classes.iter().map(|(id, name)| json!({"category_id": id, "category_name": name})).collect();
            let system = format!(
                "You are a text classification engine. Classify the user's input into exactly one of these categories \
                 and answer only with JSON of the form {{\"category_id\": \"...\", \"category_name\": \"...\"}}.\n\
                 Categories: {}\n{}",
                Value::Array(categories),
                template::render(&self.instruction, cx.pool)
            );
            let messages = vec![
                PromptMessage { role: PromptRole::System, content: system, images: Vec::new() },
                PromptMessage { role: PromptRole::User, content: query.clone(), images: Vec::new() },
            ];
            let (text, usage) = invoke(cx, &self.spec, messages, false).await?;
            let answer = extract_json(&text);
            let picked = answer
                .as_ref()
                .and_then(|a| a.get("category_id"))
                .map(|v| scalar(Some(v)))
                .and_then(|id| self.classes.iter().find(|(c, _)| *c == id))
                .unwrap_or(&self.classes[0]);
            let mut outputs = Map::new();
            outputs.insert("class_name".into(), picked.1.clone().into());
            outputs.insert("class_id".into(), picked.0.clone().into());
            outputs.insert("usage".into(), usage_value(&usage));
            Ok(NodeRun {
                inputs: json!({"query": query}),
                process_data: json!({"model_mode": self.spec.mode, "answer": text}),
                outputs,
                handle: Some(picked.0.clone()),
                usage: Some(usage),
                ..NodeRun::default()
            })
        })
    }
}
