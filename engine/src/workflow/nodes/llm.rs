//! `llm`: builds the prompt (chat messages or one completion prompt, basic
//! `{{#…#}}` or Jinja2 edition, `{{#context#}}`, conversation memory in
//! chatflows), calls the model through the provider registry and streams
//! its `text` as it is generated. Also the model call shared by
//! question-classifier and parameter-extractor ([`invoke`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun};
use crate::app::{AppMode, ModelSpec};
use crate::event::{Event, Usage};
use crate::json::Json;
use crate::provider::registry::price_usage;
use crate::provider::{estimate_tokens, ModelChunk, ModelRequest, PromptMessage, ProviderError, Role};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{render_text, selector_of};
use crate::workflow::template::{self, Jinja};

/// Reads a DSL `model` block.
pub fn model_spec(data: &Value) -> Result<ModelSpec, String> {
    let m = data.get("model").filter(|m| m.is_object()).ok_or("model is missing")?;
    Ok(ModelSpec {
        provider: scalar(m.get("provider")),
        name: scalar(m.get("name")),
        mode: match scalar(m.get("mode")).as_str() {
            "" => "chat".into(),
            other => other.into(),
        },
        completion_params: m.get("completion_params").cloned().unwrap_or(json!({})),
    })
}

/// Calls a model: records the call and its answer, streams text to the
/// response coordinator when `stream`, observes stop between chunks.
pub async fn invoke(
    cx: &NodeCx<'_>,
    spec: &ModelSpec,
    messages: Vec<PromptMessage>,
    stream: bool,
) -> Result<(String, Usage), NodeError> {
    let model = cx.run.providers.resolve(&spec.provider, &spec.name).map_err(provider_error)?;
    let started = Instant::now();
    let prompt_text: String = messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    let request = ModelRequest { model: model.model.clone(), messages, params: spec.completion_params.clone() };
    cx.run.emit(Event::ModelCalled {
        node_id: Some(cx.def.id.clone()),
        provider: model.provider_name.clone(),
        model: model.model.clone(),
        request: Json(request.recorded()),
    });
    let mut chunks = model.provider.stream(request);
    let mut text = String::new();
    let mut reported = None;
    let mut first = None;
    loop {
        if cx.run.stop.flag.load(Ordering::Acquire) {
            return Err(NodeError::Stopped);
        }
        let next = tokio::select! {
            biased;
            _ = cx.run.stop.wait() => return Err(NodeError::Stopped),
            n = chunks.next() => n,
        };
        let Some(item) = next else { break };
        match item.map_err(provider_error)? {
            ModelChunk::Text(t) if !t.is_empty() => {
                first.get_or_insert(started.elapsed().as_secs_f64());
                if stream {
                    cx.run.chunk(cx.idx, cx.pos, &t);
                }
                text.push_str(&t);
            }
            ModelChunk::Text(_) => {}
            ModelChunk::Usage { prompt_tokens, completion_tokens } => {
                reported = Some((prompt_tokens, completion_tokens))
            }
        }
    }
    let latency = started.elapsed().as_secs_f64();
    let (prompt_tokens, completion_tokens) =
        reported.unwrap_or_else(|| (estimate_tokens(&prompt_text), estimate_tokens(&text)));
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut usage = Usage {
        prompt_tokens,
        completion_tokens,
        latency: round3(latency),
        time_to_first_token: first.map(round3),
        time_to_generate: first.map(|f| round3(latency - f)),
        ..Usage::default()
    };
    price_usage(&mut usage, model.price.as_ref());
    cx.run.emit(Event::ModelAnswered { node_id: Some(cx.def.id.clone()), text: text.clone(), usage: usage.clone() });
    Ok((text, usage))
}

fn provider_error(e: ProviderError) -> NodeError {
    let kind = match &e {
        ProviderError::NotInitialized(_) => "ProviderNotInitializeError",
        ProviderError::RateLimited(_) => "RateLimitError",
        ProviderError::Request(_) => "LLMInvokeError",
    };
    NodeError::new(kind, e.to_string())
}

/// The usage object of node outputs.
pub fn usage_value(u: &Usage) -> Value {
    crate::wire::usage_json(u)
}

struct Message {
    role: Role,
    text: String,
    jinja: Option<Jinja>,
}

pub struct Llm {
    spec: ModelSpec,
    messages: Vec<Message>,
    /// Completion models: the single prompt.
    completion: bool,
    jinja_vars: Vec<(String, Vec<String>)>,
    memory: Option<Memory>,
    context: Option<Vec<String>>,
    structured: bool,
    /// The JSON schema of the structured output, when one is given.
    schema: Option<Value>,
    /// Vision: where the image files are, and the detail asked for.
    vision: Option<(Vec<String>, String)>,
}

struct Memory {
    window: usize,
    query: String,
    user_prefix: String,
    assistant_prefix: String,
}

fn role_of(s: &str) -> Role {
    match s {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        _ => Role::User,
    }
}

impl Llm {
    pub fn compile(data: &Value) -> Result<Llm, String> {
        let spec = model_spec(data)?;
        let mut messages = Vec::new();
        let compile_one = |m: &Value, default_role: &str| -> Result<Message, String> {
            let jinja = if m.get("edition_type").and_then(Value::as_str) == Some("jinja2") {
                Some(Jinja::compile(m.get("jinja2_text").and_then(Value::as_str).unwrap_or(""))?)
            } else {
                None
            };
            let role = scalar(m.get("role"));
            Ok(Message {
                role: role_of(if role.is_empty() { default_role } else { &role }),
                text: m.get("text").and_then(Value::as_str).unwrap_or("").to_string(),
                jinja,
            })
        };
        let completion = match data.get("prompt_template") {
            Some(Value::Array(list)) => {
                for m in list {
                    messages.push(compile_one(m, "user")?);
                }
                false
            }
            Some(m @ Value::Object(_)) => {
                messages.push(compile_one(m, "user")?);
                true
            }
            _ => false,
        };
        let jinja_vars = super::variable_mappings(data.get("prompt_config").and_then(|p| p.get("jinja2_variables")));
        let memory = data.get("memory").filter(|m| m.is_object()).map(|m| {
            let window = m.get("window");
            let enabled = window.and_then(|w| w.get("enabled")).and_then(Value::as_bool).unwrap_or(false);
            let size = window.and_then(|w| w.get("size")).and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok()));
            let prefix = m.get("role_prefix");
            Memory {
                window: if enabled { size.unwrap_or(50) as usize } else { 500 },
                query: m.get("query_prompt_template").and_then(Value::as_str).unwrap_or("").to_string(),
                user_prefix: prefix.map(|p| scalar(p.get("user"))).filter(|s| !s.is_empty()).unwrap_or("Human".into()),
                assistant_prefix: prefix
                    .map(|p| scalar(p.get("assistant")))
                    .filter(|s| !s.is_empty())
                    .unwrap_or("Assistant".into()),
            }
        });
        let context = data
            .get("context")
            .filter(|c| c.get("enabled").and_then(Value::as_bool) == Some(true))
            .and_then(|c| c.get("variable_selector"))
            .and_then(selector_of);
        let structured = data.get("structured_output_enabled").and_then(Value::as_bool).unwrap_or(false)
            || data.get("structured_output_switch_on").and_then(Value::as_bool).unwrap_or(false);
        let schema = data.get("structured_output").and_then(|s| s.get("schema")).filter(|s| s.is_object()).cloned();
        let vision = data.get("vision").filter(|v| v.get("enabled").and_then(Value::as_bool) == Some(true)).map(|v| {
            let configs = v.get("configs");
            let selector = configs
                .and_then(|c| c.get("variable_selector"))
                .and_then(selector_of)
                .unwrap_or_else(|| vec!["sys".into(), "files".into()]);
            let detail = configs.map(|c| scalar(c.get("detail"))).filter(|d| !d.is_empty()).unwrap_or("high".into());
            (selector, detail)
        });
        Ok(Llm { spec, messages, completion, jinja_vars, memory, context, structured, schema, vision })
    }

    fn context_text(&self, cx: &NodeCx<'_>) -> String {
        let Some(sel) = &self.context else { return String::new() };
        match cx.pool.get(sel) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    _ => render_text(i),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some(v) => render_text(&v),
            None => String::new(),
        }
    }

    fn render(&self, cx: &NodeCx<'_>, m: &Message, context: &str, histories: &str) -> Result<String, NodeError> {
        let text = match &m.jinja {
            Some(j) => {
                let vars = super::mapped_values(cx, &self.jinja_vars);
                j.render(&vars).map_err(|e| NodeError::new("TemplateRenderError", e))?
            }
            None => template::render(&m.text, cx.pool),
        };
        Ok(text.replace("{{#context#}}", context).replace("{{#histories#}}", histories))
    }
}

impl Node for Llm {
    fn streams_text(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let context = self.context_text(cx);
            let chatflow = cx.run.mode == AppMode::AdvancedChat;
            let history: &[PromptMessage] = match &self.memory {
                Some(mem) if chatflow => {
                    let turns = cx.run.history.len() / 2;
                    let skip = turns.saturating_sub(mem.window) * 2;
                    &cx.run.history[skip..]
                }
                _ => &[],
            };
            let query = match &self.memory {
                Some(mem) if chatflow || !mem.query.is_empty() => {
                    let q = if mem.query.trim().is_empty() {
                        cx.pool
                            .get(&["sys".to_string(), "query".to_string()])
                            .map(|v| render_text(&v))
                            .unwrap_or_default()
                    } else {
                        template::render(&mem.query, cx.pool)
                    };
                    Some(q)
                }
                _ => None,
            };
            let mut messages = Vec::new();
            if self.completion {
                let histories = match &self.memory {
                    Some(mem) => history
                        .iter()
                        .map(|m| {
                            let prefix = if m.role == Role::User { &mem.user_prefix } else { &mem.assistant_prefix };
                            format!("{prefix}: {}", m.content)
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                    None => String::new(),
                };
                let mut prompt = String::new();
                for m in &self.messages {
                    prompt.push_str(&self.render(cx, m, &context, &histories)?);
                }
                if let Some(q) = query.filter(|q| !q.is_empty() && !prompt.contains(q.as_str())) {
                    if !prompt.is_empty() {
                        prompt.push('\n');
                    }
                    prompt.push_str(&q);
                }
                messages.push(PromptMessage { role: Role::User, content: prompt, images: Vec::new() });
            } else {
                for m in &self.messages {
                    let content = self.render(cx, m, &context, "")?;
                    if !content.is_empty() {
                        messages.push(PromptMessage { role: m.role, content, images: Vec::new() });
                    }
                }
                messages.extend(history.iter().cloned());
                if let Some(q) = query {
                    messages.push(PromptMessage { role: Role::User, content: q, images: Vec::new() });
                }
            }
            if messages.is_empty() {
                return Err(NodeError::new("NoPromptFoundError", "No prompt found in the LLM configuration."));
            }
            if let Some((selector, detail)) = &self.vision {
                let images = cx.run.engine.image_parts(cx.run.app_id, cx.pool.get(selector).as_ref(), detail).await;
                if !images.is_empty() {
                    match messages.iter_mut().rev().find(|m| m.role == Role::User) {
                        Some(m) => m.images.extend(images),
                        None => messages.push(PromptMessage { role: Role::User, content: String::new(), images }),
                    }
                }
            }
            let prompts: Vec<Value> =
                messages.iter().map(|m| json!({"role": m.role, "text": m.content, "files": []})).collect();
            let spec = match (&self.schema, self.structured) {
                (Some(schema), true) => ModelSpec {
                    completion_params: structured_params(&self.spec.completion_params, schema),
                    ..self.spec.clone()
                },
                _ => self.spec.clone(),
            };
            let (text, usage) = invoke(cx, &spec, messages, true).await?;
            let mut outputs = Map::new();
            outputs.insert("text".into(), text.clone().into());
            outputs.insert("reasoning_content".into(), "".into());
            outputs.insert("usage".into(), usage_value(&usage));
            outputs.insert("finish_reason".into(), "stop".into());
            if self.structured {
                let parsed = extract_json(&text).unwrap_or(json!({}));
                outputs.insert("structured_output".into(), parsed);
            }
            outputs.insert("files".into(), json!([]));
            let inputs = json!({});
            let process_data = json!({
                "model_mode": self.spec.mode,
                "prompts": prompts,
                "usage": usage_value(&usage),
                "finish_reason": "stop",
                "model_provider": self.spec.provider,
                "model_name": self.spec.name,
            });
            Ok(NodeRun { inputs, process_data, outputs, usage: Some(usage), ..NodeRun::default() })
        })
    }
}

/// Completion parameters asking an OpenAI-compatible model for JSON that
/// follows `schema` (unless the DSL already sets a response format).
pub fn structured_params(params: &Value, schema: &Value) -> Value {
    let mut out = match params {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if out.get("response_format").is_none_or(|v| v.is_null()) {
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "structured_output", "schema": schema, "strict": false}}),
        );
    }
    Value::Object(out)
}

/// The first JSON object in a model's answer (bare, or in a ``` fence).
pub fn extract_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    let start = t.find('{')?;
    let end = t.rfind('}')?;
    if end <= start {
        return None;
    }
    serde_json::from_str::<Value>(&t[start..=end]).ok().filter(Value::is_object)
}

/// How many tokens a text is, for nodes that report usage without a model.
pub fn tokens(text: &str) -> u64 {
    estimate_tokens(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_output_asks_for_the_schema_and_reads_json_back() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let p = structured_params(&json!({"temperature": 0.2}), &schema);
        assert_eq!(p["temperature"], 0.2);
        assert_eq!(p["response_format"]["type"], "json_schema");
        assert_eq!(p["response_format"]["json_schema"]["schema"], schema);
        let kept = structured_params(&json!({"response_format": "json_object"}), &schema);
        assert_eq!(kept["response_format"], "json_object");
        assert_eq!(extract_json("Sure: ```json\n{\"city\": \"Paris\"}\n```"), Some(json!({"city": "Paris"})));
        assert_eq!(extract_json("no json"), None);
    }
}
