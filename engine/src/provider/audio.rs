//! Speech through an OpenAI-compatible audio API, configured by `[audio]`:
//!
//! ```toml
//! [audio]
//! provider = "openai"      # a [providers.NAME] section: its base_url, api_key_env, timeout_secs
//! tts_model = "tts-1"      # POST {base_url}/audio/speech
//! stt_model = "whisper-1"  # POST {base_url}/audio/transcriptions
//! voice = "alloy"          # when neither the request nor the app names one
//! ```
//!
//! - speech ([`AudioProvider::speech`]) sends `{"model","input","voice","response_format":"mp3"}`
//!   as JSON; the audio comes back as a byte stream with the upstream's
//!   content type, handed on as it arrives;
//! - transcription ([`AudioProvider::transcribe`]) sends a multipart form (`model`, `file`)
//!   whose file part is streamed from the caller; the upstream answers `{"text": …}`.
//!
//! `timeout_secs` bounds connecting, the wait for the response head and each
//! silence while reading the audio; a transcription (upload included) gets
//! that long in all. Nothing is retried: a failure comes back as
//! [`ProviderError`] with the upstream's error message.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::openai::error_message;
use super::{ProviderConfig, ProviderError};
use crate::error::error_chain;

/// `[audio]` in `ferrify.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// The `[providers.NAME]` serving audio; without one audio is off.
    pub provider: Option<String>,
    /// Text-to-speech model [default: `tts-1`].
    pub tts_model: Option<String>,
    /// Speech-to-text model [default: `whisper-1`].
    pub stt_model: Option<String>,
    /// Voice when neither the request nor the app's `text_to_speech` names one [default: `alloy`].
    pub voice: Option<String>,
}

/// Spoken audio on its way from the upstream.
pub struct Speech {
    /// The upstream's `Content-Type` (`audio/mpeg` when it sends none).
    pub content_type: String,
    pub body: BoxStream<'static, Result<Bytes, ProviderError>>,
}

/// An OpenAI-compatible audio endpoint pair.
#[derive(Clone)]
pub struct AudioProvider {
    name: String,
    base: String,
    api_key: Option<String>,
    timeout: Duration,
    client: Client,
    tts_model: String,
    stt_model: String,
    voice: String,
}

impl std::fmt::Debug for AudioProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioProvider")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("tts_model", &self.tts_model)
            .field("stt_model", &self.stt_model)
            .field("voice", &self.voice)
            .finish()
    }
}

impl AudioProvider {
    /// Builds the audio provider of `[audio]`, which names `provider` (`name`).
    pub fn from_config(audio: &AudioConfig, name: &str, provider: &ProviderConfig) -> Result<Self, String> {
        if !matches!(provider.kind.as_str(), "openai" | "openai-compatible" | "openai_api_compatible") {
            return Err(format!("[audio] provider {name:?} must be an OpenAI-compatible provider (kind = \"openai\")"));
        }
        let super::openai::Connection { base, api_key, timeout, client } = super::openai::connect(name, provider)?;
        let pick = |v: &Option<String>, default: &str| {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(default).to_string()
        };
        Ok(AudioProvider {
            name: name.to_string(),
            base,
            api_key,
            timeout,
            client,
            tts_model: pick(&audio.tts_model, "tts-1"),
            stt_model: pick(&audio.stt_model, "whisper-1"),
            voice: pick(&audio.voice, "alloy"),
        })
    }

    /// The configured default voice.
    pub fn default_voice(&self) -> &str {
        &self.voice
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.post(format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Speaks `input` with `voice`: the audio once the upstream answers.
    pub async fn speech(&self, input: &str, voice: &str) -> Result<Speech, ProviderError> {
        let body = json!({"model": self.tts_model, "input": input, "voice": voice, "response_format": "mp3"});
        let resp = self.send(self.post("/audio/speech").json(&body), self.timeout).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("audio/mpeg")
            .to_string();
        let (name, timeout) = (self.name.clone(), self.timeout);
        let chunks = resp.bytes_stream();
        let body = futures_util::stream::unfold(Some(chunks), move |state| {
            let name = name.clone();
            async move {
                let mut chunks = state?;
                match tokio::time::timeout(timeout, chunks.next()).await {
                    Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((
                        Err(ProviderError::Request(format!("[{name}] audio cut off: {}", error_chain(&e)))),
                        None,
                    )),
                    Err(_) => Some((
                        Err(ProviderError::Request(format!("[{name}] no audio for {} s", timeout.as_secs()))),
                        None,
                    )),
                }
            }
        })
        .boxed();
        Ok(Speech { content_type, body })
    }

    /// Transcribes an audio file whose bytes arrive on `file`.
    pub async fn transcribe(
        &self,
        file: BoxStream<'static, Result<Bytes, std::io::Error>>,
        file_name: &str,
        mime: &str,
    ) -> Result<String, ProviderError> {
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(file))
            .file_name(file_name.to_string())
            .mime_str(mime)
            .map_err(|e| ProviderError::Request(format!("[{}] bad audio type {mime:?}: {e}", self.name)))?;
        let form = reqwest::multipart::Form::new().text("model", self.stt_model.clone()).part("file", part);
        let resp = self.send(self.post("/audio/transcriptions").multipart(form), self.timeout).await?;
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .map_err(|_| {
                ProviderError::Request(format!("[{}] no transcription within {} s", self.name, self.timeout.as_secs()))
            })?
            .map_err(|e| {
                ProviderError::Request(format!("[{}] transcription cut off: {}", self.name, error_chain(&e)))
            })?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Request(format!("[{}] malformed transcription ({e})", self.name)))?;
        match value.get("text") {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(ProviderError::Request(format!("[{}] the transcription has no text", self.name))),
        }
    }

    /// Sends a request: a successful response, or the upstream's error.
    async fn send(&self, req: reqwest::RequestBuilder, timeout: Duration) -> Result<Response, ProviderError> {
        let resp = match tokio::time::timeout(timeout, req.send()).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                return Err(ProviderError::Request(format!("[{}] request failed: {}", self.name, error_chain(&e))))
            }
            Err(_) => {
                return Err(ProviderError::Request(format!(
                    "[{}] no response within {} s",
                    self.name,
                    timeout.as_secs()
                )))
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = match tokio::time::timeout(timeout, resp.text()).await {
            Ok(Ok(body)) => body,
            _ => String::new(),
        };
        let message = format!("[{}] {}", self.name, error_message(status, &body));
        Err(if status == StatusCode::TOO_MANY_REQUESTS {
            ProviderError::RateLimited(message)
        } else {
            ProviderError::Request(message)
        })
    }
}
