//! The `recorded` provider: answers model calls from a past run's log, for
//! deterministic re-execution.
//!
//! Every call of the recorded run is a [`Event::ModelCalled`] with the full
//! request, followed (for that node, or for the run when it has no node) by
//! its answer: [`Event::ModelAnswered`] with the text and usage, or a failure
//! (`RunFailed` of a chat/completion run, a failed or retried
//! `NodeFinished` of a workflow node). The chunks of an answer are the text
//! frames recorded between the call and its answer (`AnswerChunk` of a chat
//! run, the `text_chunk` / `message` frames whose selector is the node's
//! `text`); text the stream did not show (a node whose answer was buffered,
//! or not streamed at all) comes as one chunk.
//!
//! A call is matched by its request (the JSON, keys in any order): a changed
//! prompt finds no recording and the call fails, which shows as a divergence
//! at that node. Identical requests get their recorded answers in the order
//! they were called. Usage is the recorded token counts; prices are
//! recomputed from the recorded unit prices, so they come out the same.

use std::collections::{HashMap, HashSet, VecDeque};

use futures_util::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;

use super::{ModelChunk, ModelPrice, ModelProvider, ModelRequest, ProviderError};
use crate::event::{Event, Usage};

/// One recorded answer.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    chunks: Vec<String>,
    usage: Option<(u64, u64)>,
    error: Option<ProviderError>,
}

/// A call waiting for its answer while the log is read.
struct Open {
    slot: usize,
    chunks: Vec<String>,
}

/// Model answers of one recorded run.
pub struct Recorded {
    /// Answers by request (canonical JSON), in call order.
    calls: Mutex<HashMap<String, VecDeque<Answer>>>,
    /// `(provider, model)` pairs the run called.
    called: HashSet<(String, String)>,
    /// Prices of the pairs, from the recorded usage (`None`: no price configured).
    prices: HashMap<(String, String), Option<ModelPrice>>,
}

impl Recorded {
    /// Reads the calls and answers of a run's events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Recorded {
        let mut keys: Vec<String> = Vec::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut answers: Vec<Option<Answer>> = Vec::new();
        let mut open: HashMap<Option<String>, VecDeque<Open>> = HashMap::new();
        let mut prices = HashMap::new();
        let mut called = HashSet::new();
        for event in events {
            match event {
                Event::ModelCalled { node_id, provider, model, request } => {
                    let slot = keys.len();
                    keys.push(canonical(&request.0));
                    pairs.push((provider.clone(), model.clone()));
                    answers.push(None);
                    called.insert((provider.clone(), model.clone()));
                    open.entry(node_id.clone()).or_default().push_back(Open { slot, chunks: Vec::new() });
                }
                Event::AnswerChunk { text, from_variable_selector }
                | Event::TextChunk { text, from_variable_selector } => {
                    let owner = match from_variable_selector.as_deref() {
                        None => None,
                        Some([node, field]) if field == "text" => Some(node.clone()),
                        Some(_) => continue,
                    };
                    if let Some(call) = open.get_mut(&owner).and_then(VecDeque::front_mut) {
                        call.chunks.push(text.clone());
                    }
                }
                Event::ModelAnswered { node_id, text, usage } => {
                    let Some(call) = open.get_mut(node_id).and_then(VecDeque::pop_front) else { continue };
                    prices.entry(pairs[call.slot].clone()).or_insert_with(|| price_of(usage));
                    answers[call.slot] = Some(Answer {
                        chunks: reconcile(call.chunks, text),
                        usage: Some((usage.prompt_tokens, usage.completion_tokens)),
                        error: None,
                    });
                }
                Event::RunFailed { code, message, .. } => {
                    let Some(call) = open.get_mut(&None).and_then(VecDeque::pop_front) else { continue };
                    let error = match code.as_str() {
                        "provider_not_initialize" => ProviderError::NotInitialized(message.clone()),
                        "rate_limit_error" => ProviderError::RateLimited(message.clone()),
                        _ => ProviderError::Request(message.clone()),
                    };
                    answers[call.slot] = Some(Answer { chunks: call.chunks, usage: None, error: Some(error) });
                }
                Event::NodeFinished(f) | Event::NodeRetried { finished: f, .. } if f.status != "succeeded" => {
                    let owner = Some(f.node_id.clone());
                    let Some(call) = open.get_mut(&owner).and_then(VecDeque::pop_front) else { continue };
                    let message = f.error.clone().unwrap_or_default();
                    let error = match f.outputs.0.get("error_type").and_then(Value::as_str) {
                        Some("ProviderNotInitializeError") => ProviderError::NotInitialized(message),
                        Some("RateLimitError") => ProviderError::RateLimited(message),
                        _ => ProviderError::Request(message),
                    };
                    answers[call.slot] = Some(Answer { chunks: call.chunks, usage: None, error: Some(error) });
                }
                _ => {}
            }
        }
        let mut calls: HashMap<String, VecDeque<Answer>> = HashMap::new();
        for (key, answer) in keys.into_iter().zip(answers) {
            if let Some(answer) = answer {
                calls.entry(key).or_default().push_back(answer);
            }
        }
        Recorded { calls: Mutex::new(calls), called, prices }
    }

    /// Whether the recorded run called `model` of `provider` (its short name).
    pub fn knows(&self, provider: &str, model: &str) -> bool {
        self.called.contains(&(provider.to_string(), model.to_string()))
    }

    /// The price the recorded run used for `model` of `provider`.
    pub fn price(&self, provider: &str, model: &str) -> Option<ModelPrice> {
        self.prices.get(&(provider.to_string(), model.to_string())).cloned().flatten()
    }

    /// Recorded answers no call has taken yet.
    pub fn unused(&self) -> usize {
        self.calls.lock().values().map(VecDeque::len).sum()
    }
}

impl ModelProvider for Recorded {
    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelChunk, ProviderError>> {
        let key = serde_json::to_value(&request).map(|v| canonical(&v)).unwrap_or_default();
        let answer = self.calls.lock().get_mut(&key).and_then(VecDeque::pop_front);
        let Some(answer) = answer else {
            let msg = format!(
                "no recorded answer for this call of model {}: the request differs from the recorded run's",
                request.model
            );
            return stream::once(async move { Err(ProviderError::Request(msg)) }).boxed();
        };
        let mut items: Vec<Result<ModelChunk, ProviderError>> =
            answer.chunks.into_iter().map(|c| Ok(ModelChunk::Text(c))).collect();
        if let Some((prompt_tokens, completion_tokens)) = answer.usage {
            items.push(Ok(ModelChunk::Usage { prompt_tokens, completion_tokens }));
        }
        if let Some(e) = answer.error {
            items.push(Err(e));
        }
        stream::iter(items).boxed()
    }
}

/// The chunks that make up `text`: the recorded ones when they spell it,
/// with what they miss appended as one chunk.
fn reconcile(chunks: Vec<String>, text: &str) -> Vec<String> {
    let shown: String = chunks.concat();
    if shown == text {
        chunks
    } else if !shown.is_empty() && text.starts_with(&shown) {
        let mut chunks = chunks;
        chunks.push(text[shown.len()..].to_string());
        chunks
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![text.to_string()]
    }
}

/// The price a usage was computed with (see `registry::price_usage`): none
/// when its prices are the plain zeros of an unpriced model.
fn price_of(u: &Usage) -> Option<ModelPrice> {
    let zero = |s: &str| s.is_empty() || s == "0";
    if zero(&u.prompt_price) && zero(&u.completion_price) && zero(&u.total_price) {
        return None;
    }
    Some(ModelPrice {
        input: u.prompt_unit_price.clone(),
        output: u.completion_unit_price.clone(),
        unit: u.prompt_price_unit.clone(),
        currency: u.currency.clone(),
    })
}

/// JSON text with object keys sorted at every level.
pub fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(v) = m.get(k) {
                        write(v, out);
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NodeFinished;
    use crate::json::Json;
    use crate::provider::{PromptMessage, Role};
    use serde_json::json;

    fn request(text: &str) -> ModelRequest {
        ModelRequest {
            model: "echo".into(),
            messages: vec![PromptMessage { role: Role::User, content: text.into(), images: Vec::new() }],
            params: json!({"b": 1, "a": 2}),
        }
    }

    fn called(node: Option<&str>, text: &str) -> Event {
        Event::ModelCalled {
            node_id: node.map(str::to_string),
            provider: "builtin".into(),
            model: "echo".into(),
            request: Json(serde_json::to_value(request(text)).unwrap()),
        }
    }

    async fn answer(p: &Recorded, text: &str) -> Vec<Result<ModelChunk, ProviderError>> {
        p.stream(request(text)).collect().await
    }

    #[tokio::test]
    async fn serves_chunks_usage_and_failures_by_request() {
        let usage = Usage { prompt_tokens: 3, completion_tokens: 2, ..Usage::default() };
        let events = vec![
            called(None, "hi there"),
            Event::AnswerChunk { text: "hi ".into(), from_variable_selector: None },
            Event::AnswerChunk { text: "there".into(), from_variable_selector: None },
            Event::ModelAnswered { node_id: None, text: "hi there".into(), usage: usage.clone() },
            called(Some("llm"), "buffered"),
            Event::TextChunk { text: "buf".into(), from_variable_selector: Some(vec!["llm".into(), "text".into()]) },
            Event::ModelAnswered { node_id: Some("llm".into()), text: "buffered".into(), usage: usage.clone() },
            called(Some("llm"), "fails"),
            Event::NodeFinished(Box::new(NodeFinished {
                node_execution_id: uuid::Uuid::nil(),
                node_id: "llm".into(),
                node_type: "llm".into(),
                status: "exception".into(),
                inputs: Json::null(),
                process_data: Json::null(),
                outputs: Json(json!({"error_type": "RateLimitError"})),
                error: Some("slow down".into()),
                elapsed_time: 0.0,
                execution_metadata: Json::object(),
            })),
        ];
        let p = Recorded::from_events(&events);
        assert!(p.knows("builtin", "echo") && !p.knows("openai", "echo"));
        assert_eq!(p.price("builtin", "echo"), None);
        assert_eq!(
            answer(&p, "hi there").await,
            vec![
                Ok(ModelChunk::Text("hi ".into())),
                Ok(ModelChunk::Text("there".into())),
                Ok(ModelChunk::Usage { prompt_tokens: 3, completion_tokens: 2 })
            ]
        );
        // The same request again: nothing left for it.
        assert!(matches!(answer(&p, "hi there").await[..], [Err(ProviderError::Request(_))]));
        let out = answer(&p, "buffered").await;
        assert_eq!(out[..2], [Ok(ModelChunk::Text("buf".into())), Ok(ModelChunk::Text("fered".into()))]);
        assert_eq!(answer(&p, "fails").await, vec![Err(ProviderError::RateLimited("slow down".into()))]);
        assert_eq!(p.unused(), 0);
    }

    #[test]
    fn canonical_sorts_keys_and_prices_come_back() {
        assert_eq!(
            canonical(&json!({"b": [1, {"d": 1, "c": "x"}], "a": null})),
            r#"{"a":null,"b":[1,{"c":"x","d":1}]}"#
        );
        let price =
            ModelPrice { input: "0.15".into(), output: "0.6".into(), unit: "0.000001".into(), currency: "USD".into() };
        let mut u = Usage { prompt_tokens: 1000, completion_tokens: 20, ..Usage::default() };
        super::super::registry::price_usage(&mut u, Some(&price));
        let back = price_of(&u).unwrap();
        let mut again = Usage { prompt_tokens: 1000, completion_tokens: 20, ..Usage::default() };
        super::super::registry::price_usage(&mut again, Some(&back));
        assert_eq!(again, u);
        let mut free = Usage::default();
        super::super::registry::price_usage(&mut free, None);
        assert_eq!(price_of(&free), None);
    }
}
