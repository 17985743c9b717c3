//! Text-to-speech and speech-to-text for apps (§2.22, §2.23) and the audio
//! of auto-played answers (`tts_message` events, §4.3).
//!
//! The app's features decide: `text_to_speech` (`enabled`, `voice`,
//! `autoPlay`) and `speech_to_text` (`enabled`); the `[audio]` provider
//! ([`crate::provider::audio`]) does the work. Without one, every audio
//! request is refused as not initialised.
//!
//! Auto-play: a streamed chat, completion or advanced-chat run of an app
//! whose `text_to_speech` is enabled with `autoPlay: "enabled"` records
//! `"tts": {"voice": …}` in its `RunStarted.options`. Once its message has
//! ended, the runner speaks the whole answer in one upstream call and
//! records the audio as [`Event::TtsAudio`] chunks, then [`Event::TtsEnded`]
//! (also when there is nothing to say or the upstream fails). Dify speaks
//! the answer sentence by sentence while it streams; here the audio follows
//! `message_end`, and `tts_message_end` is the last frame either way.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::AppSpec;
use crate::apps::LoadedApp;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::Event;
use crate::provider::audio::{AudioProvider, Speech};
use crate::provider::ProviderError;

/// Largest audio file `POST /audio-to-text` takes (Dify: 30 MB).
pub const MAX_AUDIO_BYTES: u64 = 30 * 1024 * 1024;

/// Audio extensions whose `audio/<ext>` MIME type `POST /audio-to-text` takes.
pub const AUDIO_EXTENSIONS: &[&str] = &["mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "amr"];

/// Audio chunks recorded per `tts_message` event are at least this long
/// (except the last): the upstream's network reads are coalesced.
const TTS_CHUNK_BYTES: usize = 16 * 1024;

/// Why an audio request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("Please upload your audio.")]
    NoAudioUploaded,
    #[error("Audio size larger than 30 mb")]
    TooLarge,
    #[error("Audio type not allowed.")]
    UnsupportedType,
}

/// Whether `mime` (`audio/mpeg`, parameters ignored) is an audio type speech-to-text takes.
pub fn is_allowed_audio_type(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.strip_prefix("audio/").is_some_and(|ext| AUDIO_EXTENSIONS.contains(&ext))
}

/// The `text_to_speech` voice of an app, when it names one.
fn feature_voice(spec: &AppSpec) -> Option<String> {
    spec.features
        .get("text_to_speech")
        .and_then(|t| t.get("voice"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl Engine {
    /// The configured audio provider, or the refusal every audio request gets without one.
    pub fn audio(&self) -> Result<&AudioProvider> {
        self.inner.audio.as_ref().ok_or_else(|| {
            EngineError::Provider(ProviderError::NotInitialized(
                "No audio model provider configured. Set [audio] provider in ferrify.toml.".into(),
            ))
        })
    }

    /// `POST /text-to-audio`: speaks `message_id`'s answer (it wins) or
    /// `text`, in `voice` (else the app's, else the configured default).
    pub async fn text_to_audio(
        &self,
        app: &LoadedApp,
        user: &str,
        message_id: Option<Uuid>,
        text: Option<String>,
        voice: Option<String>,
    ) -> Result<Speech> {
        let text = match message_id {
            Some(id) => {
                let message = self.owned_message(app, user, id)?;
                if message.answer.trim().is_empty() {
                    return Err(EngineError::InvalidParam("The message has no answer to speak.".into()));
                }
                message.answer
            }
            None => match text {
                Some(t) if !t.trim().is_empty() => t,
                _ => return Err(EngineError::InvalidParam("Text is required".into())),
            },
        };
        let spec = self.effective_spec(app);
        if !spec.feature_enabled("text_to_speech") {
            return Err(EngineError::InvalidParam("TTS is not enabled".into()));
        }
        let audio = self.audio()?;
        let voice = voice
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| feature_voice(&spec))
            .unwrap_or_else(|| audio.default_voice().to_string());
        Ok(audio.speech(text.trim(), &voice).await?)
    }

    /// The checks `POST /audio-to-text` makes before reading the file: the
    /// app's `speech_to_text` feature.
    pub fn speech_to_text_allowed(&self, app: &LoadedApp) -> Result<()> {
        if self.effective_spec(app).feature_enabled("speech_to_text") {
            Ok(())
        } else {
            Err(EngineError::InvalidParam("Speech to text is not enabled".into()))
        }
    }

    /// `RunStarted.options.tts` of a new run: `{"voice": …}` when the run is
    /// streamed, audio is configured and `features` turn auto-play on.
    pub(crate) fn tts_option(&self, features: &Value, streaming: bool) -> Option<Value> {
        let audio = self.inner.audio.as_ref()?;
        let tts = features.get("text_to_speech")?;
        let on = tts.get("enabled").and_then(Value::as_bool).unwrap_or(false)
            && tts.get("autoPlay").and_then(Value::as_str) == Some("enabled");
        if !(on && streaming) {
            return None;
        }
        let voice = tts
            .get("voice")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(audio.default_voice());
        Some(json!({"voice": voice}))
    }

    /// The events that speak `answer` for a run with `tts` options:
    /// [`Event::TtsAudio`] chunks, then always one [`Event::TtsEnded`].
    pub(crate) fn tts_events(&self, answer: &str, tts: &Value) -> BoxStream<'static, Event> {
        let audio = self.inner.audio.clone();
        let voice = tts.get("voice").and_then(Value::as_str).unwrap_or("").to_string();
        let text = answer.trim().to_string();
        let chunks = speech_events(audio, text, voice);
        chunks.chain(futures_util::stream::once(async { Event::TtsEnded })).boxed()
    }
}

/// The audio chunks of one speech call, coalesced; failures end it (logged).
fn speech_events(audio: Option<AudioProvider>, text: String, voice: String) -> BoxStream<'static, Event> {
    enum State {
        Start(Option<AudioProvider>, String, String),
        Reading(BoxStream<'static, std::result::Result<Bytes, ProviderError>>),
        Done,
    }
    futures_util::stream::unfold(State::Start(audio, text, voice), |state| async move {
        let mut body = match state {
            State::Done => return None,
            State::Start(audio, text, voice) => {
                let audio = audio?;
                if text.is_empty() {
                    return None;
                }
                match audio.speech(&text, &voice).await {
                    Ok(speech) => speech.body,
                    Err(e) => {
                        tracing::warn!("auto-play audio failed: {e}");
                        return None;
                    }
                }
            }
            State::Reading(body) => body,
        };
        let mut buf = Vec::new();
        loop {
            match body.next().await {
                Some(Ok(bytes)) => {
                    buf.extend_from_slice(&bytes);
                    if buf.len() >= TTS_CHUNK_BYTES {
                        return Some((Event::TtsAudio { audio: buf }, State::Reading(body)));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("auto-play audio cut off: {e}");
                    return (!buf.is_empty()).then_some((Event::TtsAudio { audio: buf }, State::Done));
                }
                None => return (!buf.is_empty()).then_some((Event::TtsAudio { audio: buf }, State::Done)),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_types() {
        assert!(is_allowed_audio_type("audio/mpeg"));
        assert!(is_allowed_audio_type("audio/WAV; codecs=1"));
        assert!(!is_allowed_audio_type("audio/ogg"));
        assert!(!is_allowed_audio_type("video/mp4"));
        assert!(!is_allowed_audio_type("mp3"));
    }
}
