//! Model providers: one trait with streaming output and usage, one module
//! per provider kind.
//!
//! - `builtin`: deterministic models for demos, tests and benches
//!   (`echo` repeats the last user message, `lorem` streams N words at a pace);
//! - `openai`: any OpenAI-compatible chat-completions endpoint (and its
//!   `/embeddings`, for annotation reply, and `/moderations`);
//! - `recorded`: answers from a past run's log, for re-execution;
//! - `audio`: text-to-speech and speech-to-text through an OpenAI-compatible audio API.
//!
//! A provider never touches the log: the runner records the request it sent
//! ([`crate::Event::ModelCalled`]) and the full answer
//! ([`crate::Event::ModelAnswered`]), so replay never calls a provider.

pub mod audio;
pub mod builtin;
pub mod openai;
pub mod recorded;
pub mod registry;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use registry::{ModelPrice, ProviderConfig, Providers};

/// Who said a message of a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: Role,
    pub content: String,
    /// Images for vision models (workflow LLM nodes with vision on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImagePart>,
}

/// An image attached to a prompt message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagePart {
    /// An `http(s)` URL or a `data:` URL.
    pub url: String,
    /// `high`, `low` or `auto`.
    pub detail: String,
}

/// A model call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// Model name at the provider (`gpt-4o-mini`, `echo`, …).
    pub model: String,
    pub messages: Vec<PromptMessage>,
    /// The DSL's `completion_params` (temperature, max_tokens, stop, …).
    pub params: Value,
}

impl ModelRequest {
    /// The request as the log records it ([`crate::Event::ModelCalled`]):
    /// `data:` URLs of images are cut to their type and length (the bytes
    /// are in file storage; the log stays small).
    pub fn recorded(&self) -> Value {
        let mut copy = self.clone();
        for m in &mut copy.messages {
            for image in &mut m.images {
                if let Some((head, body)) = image.url.split_once(',').filter(|_| image.url.starts_with("data:")) {
                    image.url = format!("{head},…({} base64 characters)", body.len());
                }
            }
        }
        serde_json::to_value(&copy).unwrap_or(Value::Null)
    }
}

/// A piece of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelChunk {
    /// A text delta.
    Text(String),
    /// Token counts reported by the provider (usually once, at the end).
    Usage { prompt_tokens: u64, completion_tokens: u64 },
}

/// Why a model call failed. Mapped to Dify's codes only at the HTTP edge.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No provider is configured for the model (`provider_not_initialize`).
    #[error("{0}")]
    NotInitialized(String),
    /// The provider rate-limited the call and retries were exhausted (`rate_limit_error`).
    #[error("{0}")]
    RateLimited(String),
    /// The call failed (`completion_request_error`).
    #[error("{0}")]
    Request(String),
}

/// A model provider: turns a request into a stream of chunks.
pub trait ModelProvider: Send + Sync + 'static {
    /// Starts the call. Errors before the first chunk (bad credentials,
    /// rate limit) should come as the stream's first item.
    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelChunk, ProviderError>>;

    /// Whether [`ModelProvider::embed`] can work (an embeddings endpoint).
    fn can_embed(&self) -> bool {
        false
    }

    /// Embeds `texts` with `model`: one vector per text, in order.
    fn embed(&self, model: &str, texts: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, ProviderError>> {
        let _ = (model, texts);
        Box::pin(async { Err(ProviderError::NotInitialized("this provider does not embed text".into())) })
    }

    /// Whether a moderation model flags `input` (`openai_moderation`). Providers
    /// without a moderation endpoint answer [`ProviderError::NotInitialized`].
    fn moderate(&self, model: &str, input: String) -> BoxFuture<'static, Result<bool, ProviderError>> {
        let _ = (model, input);
        Box::pin(async { Err(ProviderError::NotInitialized("this provider offers no moderation endpoint".into())) })
    }
}

/// A rough token count (words and punctuation), for providers that report none.
pub fn estimate_tokens(text: &str) -> u64 {
    text.split_whitespace().map(|w| 1 + w.len() as u64 / 5).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_requests_cut_data_urls() {
        let image = |url: &str| ImagePart { url: url.into(), detail: "high".into() };
        let request = ModelRequest {
            model: "m".into(),
            messages: vec![PromptMessage {
                role: Role::User,
                content: "look".into(),
                images: vec![image("data:image/png;base64,AAAABBBB"), image("https://example.org/a.png")],
            }],
            params: Value::Null,
        };
        let r = request.recorded();
        assert_eq!(r["messages"][0]["images"][0]["url"], "data:image/png;base64,…(8 base64 characters)");
        assert_eq!(r["messages"][0]["images"][1]["url"], "https://example.org/a.png");
    }
}
