//! The builtin provider: deterministic models for demos, tests and benches.
//!
//! - `echo`: answers with the content of the last user message, streamed word by word;
//! - `lorem`: streams `max_tokens` words (default 50) of deterministic text,
//!   waiting `pace_ms` milliseconds between words (default 0).
//!
//! Both read their settings from the model's `completion_params`.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::{estimate_tokens, ModelChunk, ModelProvider, ModelRequest, ProviderError, Role};

pub struct Builtin;

const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
];

/// Splits `text` into word pieces that concatenate back to `text` exactly
/// (each piece keeps the whitespace that precedes the next word).
pub fn word_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            in_space = true;
            current.push(c);
        } else {
            if in_space && !current.trim().is_empty() {
                pieces.push(std::mem::take(&mut current));
            }
            in_space = false;
            current.push(c);
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn param_u64(req: &ModelRequest, key: &str) -> Option<u64> {
    let v = req.params.get(key)?;
    v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)).or_else(|| v.as_str()?.trim().parse().ok())
}

impl ModelProvider for Builtin {
    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelChunk, ProviderError>> {
        let prompt_tokens: u64 = request.messages.iter().map(|m| estimate_tokens(&m.content)).sum();
        match request.model.as_str() {
            "echo" => {
                let last = request.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone());
                let text = last.unwrap_or_default();
                let completion_tokens = estimate_tokens(&text);
                let chunks: Vec<_> = word_pieces(&text).into_iter().map(|w| Ok(ModelChunk::Text(w))).collect();
                stream::iter(chunks)
                    .chain(stream::once(async move { Ok(ModelChunk::Usage { prompt_tokens, completion_tokens }) }))
                    .boxed()
            }
            "lorem" => {
                let n = param_u64(&request, "max_tokens").unwrap_or(50).min(100_000);
                let pace = Duration::from_millis(param_u64(&request, "pace_ms").unwrap_or(0).min(60_000));
                stream::iter(0..n)
                    .then(move |i| async move {
                        if !pace.is_zero() && i > 0 {
                            tokio::time::sleep(pace).await;
                        }
                        let word = LOREM[(i as usize) % LOREM.len()];
                        Ok(ModelChunk::Text(if i == 0 { word.to_string() } else { format!(" {word}") }))
                    })
                    .chain(stream::once(async move { Ok(ModelChunk::Usage { prompt_tokens, completion_tokens: n }) }))
                    .boxed()
            }
            other => {
                let msg = format!("Model {other} does not exist in the builtin provider (models: echo, lorem).");
                stream::once(async move { Err(ProviderError::Request(msg)) }).boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::PromptMessage;

    #[test]
    fn pieces_concatenate_back() {
        for t in ["hello there", "  lead and  double  spaces ", "one", "", "tab\tand\nnewline"] {
            assert_eq!(word_pieces(t).concat(), t);
        }
        assert_eq!(word_pieces("hello there"), vec!["hello ", "there"]);
    }

    #[tokio::test]
    async fn echo_and_lorem() {
        let req = |model: &str, params: serde_json::Value| ModelRequest {
            model: model.into(),
            messages: vec![
                PromptMessage { role: Role::System, content: "sys".into(), images: Vec::new() },
                PromptMessage { role: Role::User, content: "say this".into(), images: Vec::new() },
            ],
            params,
        };
        let out: Vec<_> = Builtin.stream(req("echo", serde_json::json!({}))).collect().await;
        let text: String = out
            .iter()
            .filter_map(|c| match c {
                Ok(ModelChunk::Text(t)) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "say this");
        assert!(matches!(out.last(), Some(Ok(ModelChunk::Usage { .. }))));
        let out: Vec<_> = Builtin.stream(req("lorem", serde_json::json!({"max_tokens": 5}))).collect().await;
        let text: String = out
            .iter()
            .filter_map(|c| match c {
                Ok(ModelChunk::Text(t)) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "lorem ipsum dolor sit amet");
        let out: Vec<_> = Builtin.stream(req("nope", serde_json::json!({}))).collect().await;
        assert!(matches!(out[0], Err(ProviderError::Request(_))));
    }
}
