//! The `openai` provider: any OpenAI-compatible chat-completions endpoint
//! (OpenAI, Azure-style proxies, Ollama, vLLM, llama.cpp server, LM Studio,
//! DeepSeek, …).
//!
//! A call is one `POST {base_url}/chat/completions` with `"stream": true` and
//! `"stream_options": {"include_usage": true}`; the server-sent events of the
//! answer are parsed incrementally (`data: {json}` events separated by blank
//! lines, `data: [DONE]` at the end, `:` comment lines and `\r\n` tolerated,
//! events split anywhere across network reads).
//!
//! - Each non-empty `choices[0].delta.content` becomes a [`ModelChunk::Text`];
//!   the token counts of the last `usage` object become one
//!   [`ModelChunk::Usage`] at the end (estimated with
//!   [`super::estimate_tokens`] when the upstream reports none).
//! - Before the first chunk, HTTP 429, 5xx, connect errors and timeouts are
//!   retried up to `max_retries` times with exponential backoff (200 ms, ×2,
//!   capped at 5 s; a `Retry-After: <seconds>` header wins, capped at 5 s).
//!   Then 429 gives [`ProviderError::RateLimited`], anything else
//!   [`ProviderError::Request`] with the upstream's error message.
//! - Once streaming, a cut connection, a malformed event or an upstream
//!   `{"error": …}` event gives one [`ProviderError::Request`] item and ends
//!   the stream.
//! - `timeout_secs` bounds connecting, waiting for the response headers and
//!   each silence between two body reads, never the whole (long) stream.
//!
//! Embeddings (annotation reply): one `POST {base_url}/embeddings` with
//! `{"model", "input": [texts]}`, no retries, bounded by `timeout_secs`;
//! the vectors are taken from `data[].embedding` in `index` order.
//!
//! The API key is read once, when the provider is built, from the environment
//! variable named by `api_key_env`; without one the call goes without an
//! `Authorization` header (local servers rarely need one).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{estimate_tokens, ModelChunk, ModelProvider, ModelRequest, ProviderConfig, ProviderError, Role};
use crate::error::error_chain;

/// Default endpoint when `base_url` is not configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// First backoff delay between two attempts.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between two attempts (backoff or `Retry-After`).
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Longest SSE line buffered while waiting for its end (a misbehaving upstream
/// must not grow memory without bound).
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Completion parameters copied from the DSL's `completion_params`.
const FLOAT_PARAMS: &[&str] = &["temperature", "top_p", "presence_penalty", "frequency_penalty"];
const INT_PARAMS: &[&str] = &["max_tokens", "seed"];

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Clone)]
pub struct OpenAi {
    /// The `[providers.NAME]` name, used in error messages.
    name: String,
    /// `{base_url}/chat/completions`.
    endpoint: String,
    /// `{base_url}/embeddings`.
    embeddings: String,
    /// `{base_url}/moderations`.
    moderations: String,
    api_key: Option<String>,
    /// Connect timeout, response-headers timeout and read-idle timeout.
    timeout: Duration,
    max_retries: u32,
    client: Client,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// What every client of an OpenAI-compatible `[providers.NAME]` needs: the
/// checked base URL (no trailing slash), the API key from its variable, the
/// timeout and an HTTP client.
pub(crate) struct Connection {
    pub base: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub client: Client,
}

/// Reads `cfg`'s connection settings. The base URL defaults to
/// [`DEFAULT_BASE_URL`]; a `timeout_secs` of 0 counts as 1 s; a missing API
/// key variable is not an error (calls then go without `Authorization`).
pub(crate) fn connect(name: &str, cfg: &ProviderConfig) -> Result<Connection, String> {
    let base = cfg.base_url.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_BASE_URL);
    let base = base.trim_end_matches('/').to_string();
    let url = reqwest::Url::parse(&base).map_err(|e| format!("provider {name}: invalid base_url {base:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("provider {name}: base_url {base:?} must be an http:// or https:// URL"));
    }
    let api_key = cfg
        .api_key_env
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .and_then(|var| std::env::var(var).ok())
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
    let client = Client::builder()
        .connect_timeout(timeout)
        .user_agent(concat!("ferrify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("provider {name}: cannot build the HTTP client: {e}"))?;
    Ok(Connection { base, api_key, timeout, client })
}

impl OpenAi {
    /// Builds the provider of `[providers.NAME]`. The base URL defaults to
    /// [`DEFAULT_BASE_URL`] (a trailing slash is fine); a `timeout_secs` of 0
    /// counts as 1 s. A missing API key variable is not an error: calls then
    /// go without `Authorization`.
    pub fn from_config(name: &str, cfg: &ProviderConfig) -> Result<OpenAi, String> {
        let Connection { base, api_key, timeout, client } = connect(name, cfg)?;
        let endpoint = format!("{base}/chat/completions");
        Ok(OpenAi {
            name: name.to_string(),
            endpoint,
            embeddings: format!("{base}/embeddings"),
            moderations: format!("{base}/moderations"),
            api_key,
            timeout,
            max_retries: cfg.max_retries,
            client,
        })
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether an API key was found in the environment.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }
}

impl ModelProvider for OpenAi {
    fn can_embed(&self) -> bool {
        true
    }

    fn embed(&self, model: &str, texts: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, ProviderError>> {
        let provider = self.clone();
        let body = json!({"model": model, "input": texts});
        let count = texts_len(&body);
        Box::pin(async move { provider.embeddings_call(body, count).await })
    }

    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelChunk, ProviderError>> {
        let call = Call {
            provider: self.clone(),
            body: request_body(&request),
            prompt_tokens: request.messages.iter().map(|m| estimate_tokens(&m.content)).sum(),
            phase: Phase::Start,
            pending: VecDeque::new(),
            parser: SseParser::default(),
            generated: String::new(),
            usage: None,
            finished: false,
        };
        stream::unfold(call, |mut call| async move {
            let item = call.next().await?;
            Some((item, call))
        })
        .boxed()
    }

    fn moderate(
        &self,
        model: &str,
        input: String,
    ) -> futures_util::future::BoxFuture<'static, Result<bool, ProviderError>> {
        let p = self.clone();
        let body = json!({"model": model, "input": input});
        Box::pin(async move { p.moderation_call(body).await })
    }
}

impl OpenAi {
    /// One `POST {base_url}/moderations`: flagged when any result is. Not
    /// retried; an error answer or a malformed body is an error of the run.
    async fn moderation_call(&self, body: Value) -> Result<bool, ProviderError> {
        let mut req = self.client.post(&self.moderations).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let fail = |m: String| ProviderError::Request(format!("[{}] moderation: {m}", self.name));
        let resp = match tokio::time::timeout(self.timeout, req.send()).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(fail(format!("request failed: {}", error_chain(&e)))),
            Err(_) => return Err(fail(format!("no response within {} s", self.timeout.as_secs()))),
        };
        let status = resp.status();
        let text = match tokio::time::timeout(self.timeout, resp.text()).await {
            Ok(Ok(text)) => text,
            _ => return Err(fail("the response body could not be read".into())),
        };
        if !status.is_success() {
            let message = format!("[{}] moderation: {}", self.name, error_message(status, &text));
            return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                ProviderError::RateLimited(message)
            } else {
                ProviderError::Request(message)
            });
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| fail("the answer is not JSON".into()))?;
        match v.get("results").and_then(Value::as_array) {
            Some(results) => Ok(results.iter().any(|r| r.get("flagged").and_then(Value::as_bool) == Some(true))),
            None => Err(fail("the answer has no results".into())),
        }
    }
}

fn texts_len(body: &Value) -> usize {
    body.get("input").and_then(Value::as_array).map_or(0, Vec::len)
}

impl OpenAi {
    /// One `POST {base_url}/embeddings` (no retries): the vectors in input order.
    async fn embeddings_call(&self, body: Value, count: usize) -> Result<Vec<Vec<f32>>, ProviderError> {
        let fail = |m: String| ProviderError::Request(format!("[{}] embeddings: {m}", self.name));
        let mut req = self.client.post(&self.embeddings).header(CONTENT_TYPE, "application/json").json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| fail(format!("no response in {} s", self.timeout.as_secs())))?
            .map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        let text = tokio::time::timeout(self.timeout, resp.text())
            .await
            .map_err(|_| fail(format!("no body in {} s", self.timeout.as_secs())))?
            .map_err(|e| fail(error_chain(&e)))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::RateLimited(error_message(status, &text)));
        }
        if !status.is_success() {
            return Err(fail(error_message(status, &text)));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        let data = v.get("data").and_then(Value::as_array).ok_or_else(|| fail("no `data` list".into()))?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
        for (i, item) in data.iter().enumerate() {
            let index = item.get("index").and_then(Value::as_u64).map_or(i, |n| n as usize);
            let vector = item
                .get("embedding")
                .and_then(Value::as_array)
                .map(|xs| xs.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect::<Vec<f32>>())
                .ok_or_else(|| fail("an item without an `embedding` list".into()))?;
            if let Some(slot) = out.get_mut(index) {
                *slot = Some(vector);
            }
        }
        out.into_iter().map(|v| v.ok_or_else(|| fail(format!("expected {count} vectors")))).collect()
    }
}

/// The JSON body of a chat-completions call.
pub fn request_body(request: &ModelRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            if m.images.is_empty() {
                json!({ "role": role, "content": m.content })
            } else {
                // Vision: the text and each image as content parts.
                let mut parts = vec![json!({"type": "text", "text": m.content})];
                for image in &m.images {
                    parts.push(json!({"type": "image_url", "image_url": {"url": image.url, "detail": image.detail}}));
                }
                json!({ "role": role, "content": parts })
            }
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), Value::String(request.model.clone()));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    let param = |key: &str| request.params.get(key).filter(|v| !v.is_null());
    for &key in FLOAT_PARAMS {
        if let Some(v) = param(key) {
            body.insert(key.into(), number_param(v, false));
        }
    }
    for &key in INT_PARAMS {
        if let Some(v) = param(key) {
            body.insert(key.into(), number_param(v, true));
        }
    }
    if let Some(stop) = param("stop") {
        // Dify's DSL keeps `stop` as a list; a single string is accepted too.
        body.insert("stop".into(), stop.clone());
    }
    if let Some(format) = param("response_format") {
        // Dify's DSL says `"json_object"`; the API wants `{"type": "json_object"}`.
        let format = match format {
            Value::String(s) => json!({ "type": s }),
            other => other.clone(),
        };
        body.insert("response_format".into(), format);
    }
    Value::Object(body)
}

/// DSL parameters are sometimes strings (`"0.7"`) or floats for integers
/// (`512.0`): send the number the API expects, or the value unchanged.
fn number_param(v: &Value, integer: bool) -> Value {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match f {
        Some(f) if integer && f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
        Some(f) if !integer && f.is_finite() => match v {
            Value::Number(_) => v.clone(),
            _ => json!(f),
        },
        _ => v.clone(),
    }
}

/// The message of an error response: OpenAI's `{"error": {"message": …}}`,
/// or the `{"error": "…"}`, `{"message": …}`, `{"detail": …}` shapes of other
/// servers, else the status line.
pub(crate) fn error_message(status: StatusCode, body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| json_error_message(&v))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

fn json_error_message(v: &Value) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    match v.get("error") {
        Some(Value::Object(e)) => {
            e.get("message").and_then(text).or_else(|| Some(Value::Object(e.clone()).to_string()))
        }
        Some(e @ Value::String(_)) => text(e),
        _ => v.get("message").and_then(text).or_else(|| v.get("detail").and_then(text)),
    }
}

/// `Retry-After: <seconds>` (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(BACKOFF_CAP.as_secs_f64())))
}

enum Phase {
    /// Nothing sent yet.
    Start,
    /// Reading the event stream.
    Streaming(Response),
    /// `[DONE]` seen (or the body ended cleanly): the usage chunk comes next.
    Finishing,
    /// Nothing more to emit once `pending` is drained.
    Done,
}

/// One call in progress (the state of the returned stream).
struct Call {
    provider: OpenAi,
    body: Value,
    /// Estimated prompt tokens, for upstreams that report no usage.
    prompt_tokens: u64,
    phase: Phase,
    /// Items decoded but not yet returned (one read may hold several events).
    pending: VecDeque<Result<ModelChunk, ProviderError>>,
    parser: SseParser,
    /// Text produced so far, for the usage estimate.
    generated: String,
    /// The last `usage` reported by the upstream.
    usage: Option<(u64, u64)>,
    /// A `finish_reason` was seen: a body ending without `[DONE]` is complete.
    finished: bool,
}

impl Call {
    async fn next(&mut self) -> Option<Result<ModelChunk, ProviderError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Start => match self.send().await {
                    Ok(resp) if is_json(&resp) => self.read_whole(resp).await,
                    Ok(resp) => self.phase = Phase::Streaming(resp),
                    Err(e) => return Some(Err(e)),
                },
                Phase::Streaming(mut resp) => match tokio::time::timeout(self.provider.timeout, resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => {
                        self.phase = Phase::Streaming(resp);
                        let events = self.parser.feed(&bytes);
                        self.handle_events(events);
                    }
                    Ok(Ok(None)) => {
                        let events = self.parser.finish();
                        self.phase = Phase::Streaming(resp);
                        self.handle_events(events);
                        if matches!(self.phase, Phase::Streaming(_)) {
                            // The body ended without `[DONE]`.
                            self.phase = if self.finished {
                                Phase::Finishing
                            } else {
                                self.fail("the stream ended before the answer was complete".into());
                                Phase::Done
                            };
                        }
                    }
                    Ok(Err(e)) => self.fail(format!("connection lost while streaming: {}", error_chain(&e))),
                    Err(_) => self.fail(format!("no data for {} s while streaming", self.provider.timeout.as_secs())),
                },
                Phase::Finishing => {
                    let (prompt_tokens, completion_tokens) =
                        self.usage.unwrap_or_else(|| (self.prompt_tokens, estimate_tokens(&self.generated)));
                    return Some(Ok(ModelChunk::Usage { prompt_tokens, completion_tokens }));
                }
            }
        }
    }

    /// Queues the error that ends the stream (after what is already queued).
    fn fail(&mut self, message: String) {
        self.pending.push_back(Err(ProviderError::Request(format!("[{}] {message}", self.provider.name))));
        self.phase = Phase::Done;
    }

    /// Handles the data of complete events; stops at `[DONE]` or an error.
    fn handle_events(&mut self, events: Result<Vec<String>, String>) {
        let (events, overflow) = match events {
            Ok(events) => (events, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        for data in events {
            if data.trim() == "[DONE]" {
                self.phase = Phase::Finishing;
                return;
            }
            let value: Value = match serde_json::from_str(&data) {
                Ok(v) => v,
                Err(e) => {
                    return self.fail(format!("malformed event from the upstream ({e}): {}", truncate(&data, 200)))
                }
            };
            if value.get("error").is_some_and(|e| !e.is_null()) {
                let message = json_error_message(&value).unwrap_or_else(|| "the upstream reported an error".into());
                return self.fail(message);
            }
            self.handle_chunk(&value);
        }
        if let Some(e) = overflow {
            self.fail(e);
        }
    }

    /// One `chat.completion.chunk` (or a whole `chat.completion`).
    fn handle_chunk(&mut self, value: &Value) {
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some((count("prompt_tokens"), count("completion_tokens")));
        }
        let Some(choice) = value.get("choices").and_then(|c| c.get(0)) else { return };
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished = true;
        }
        let content = choice.get("delta").or_else(|| choice.get("message")).and_then(|d| d.get("content"));
        if let Some(text) = content.and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.generated.push_str(text);
            self.pending.push_back(Ok(ModelChunk::Text(text.to_string())));
        }
    }

    /// An upstream that ignored `"stream": true` answered with one JSON object.
    async fn read_whole(&mut self, resp: Response) {
        match tokio::time::timeout(self.provider.timeout, resp.text()).await {
            Ok(Ok(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(value) if value.get("error").is_some_and(|e| !e.is_null()) => {
                    let message = json_error_message(&value).unwrap_or_else(|| "the upstream reported an error".into());
                    self.fail(message)
                }
                Ok(value) => {
                    self.handle_chunk(&value);
                    self.phase = Phase::Finishing;
                }
                Err(e) => self.fail(format!("malformed response from the upstream ({e}): {}", truncate(&text, 200))),
            },
            Ok(Err(e)) => self.fail(format!("connection lost while reading the answer: {}", error_chain(&e))),
            Err(_) => self.fail(format!("no data for {} s while reading the answer", self.provider.timeout.as_secs())),
        }
    }

    /// Sends the request, retrying rate limits, server errors, connect errors
    /// and timeouts; returns a successful response.
    async fn send(&self) -> Result<Response, ProviderError> {
        let p = &self.provider;
        let mut backoff = BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            let mut req = p.client.post(&p.endpoint).header(ACCEPT, "text/event-stream").json(&self.body);
            if let Some(key) = &p.api_key {
                req = req.bearer_auth(key);
            }
            let (error, retryable, wait) = match tokio::time::timeout(p.timeout, req.send()).await {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    let body = match tokio::time::timeout(p.timeout, resp.text()).await {
                        Ok(Ok(body)) => body,
                        _ => String::new(),
                    };
                    let message = format!("[{}] {}", p.name, error_message(status, &body));
                    let error = if status == StatusCode::TOO_MANY_REQUESTS {
                        ProviderError::RateLimited(message)
                    } else {
                        ProviderError::Request(message)
                    };
                    (error, status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(), wait)
                }
                Ok(Err(e)) => {
                    let retryable = e.is_connect() || e.is_timeout() || e.is_request();
                    (
                        ProviderError::Request(format!("[{}] request failed: {}", p.name, error_chain(&e))),
                        retryable,
                        None,
                    )
                }
                Err(_) => (
                    ProviderError::Request(format!("[{}] no response within {} s", p.name, p.timeout.as_secs())),
                    true,
                    None,
                ),
            };
            if !retryable || attempt >= p.max_retries {
                return Err(error);
            }
            attempt += 1;
            tracing::debug!(provider = %p.name, attempt, error = %error, "retrying model call");
            tokio::time::sleep(wait.unwrap_or(backoff).min(BACKOFF_CAP)).await;
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An incremental server-sent-events decoder: bytes in, the `data` of each
/// complete event out (multi-line data joined with `\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// Data lines of the current event.
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes as they arrive; returns the events they complete. Errs if
    /// a single line grows beyond 16 MiB.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut events);
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(format!("an event line of the upstream exceeds {MAX_LINE_BYTES} bytes"));
        }
        Ok(events)
    }

    /// The body ended: returns the last event if it lacked its blank line.
    pub fn finish(&mut self) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.line_done(&line, &mut events);
        }
        if let Some(data) = self.data.take() {
            events.push(data);
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(data);
            }
            return;
        }
        if line.starts_with(b":") {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &line[line.len()..]),
        };
        if field != b"data" {
            return; // `event:`, `id:`, `retry:` carry nothing we need
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = String::from_utf8_lossy(value);
        match &mut self.data {
            Some(data) => {
                data.push('\n');
                data.push_str(&value);
            }
            None => self.data = Some(value.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_split_anywhere() {
        let text = ": keep-alive\r\n\r\ndata: {\"a\":\"é\"}\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]";
        let bytes = text.as_bytes();
        for step in 1..=bytes.len() {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for piece in bytes.chunks(step) {
                events.extend(parser.feed(piece).unwrap());
            }
            events.extend(parser.finish().unwrap());
            assert_eq!(events, vec!["{\"a\":\"é\"}", "one\ntwo", "[DONE]"], "step {step}");
        }
    }

    #[test]
    fn body_and_errors() {
        let req = ModelRequest {
            model: "m".into(),
            messages: vec![super::super::PromptMessage { role: Role::User, content: "hi".into(), images: Vec::new() }],
            params: json!({"temperature": "0.5", "max_tokens": 12.0, "response_format": "json_object", "other": 1, "seed": null}),
        };
        let body = request_body(&req);
        assert_eq!(body["temperature"], json!(0.5));
        assert_eq!(body["max_tokens"], json!(12));
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert!(body.get("other").is_none() && body.get("seed").is_none());
        assert_eq!(error_message(StatusCode::UNAUTHORIZED, r#"{"error":{"message":"bad key"}}"#), "bad key");
        assert_eq!(error_message(StatusCode::NOT_FOUND, r#"{"error":"no model"}"#), "no model");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, "<html>"), "HTTP 502 Bad Gateway");
    }
}
