//! `POST /audio-to-text` (§2.22) and `POST /text-to-audio` (§2.23), through
//! the `[audio]` provider.
//!
//! Speech: the upstream's audio is handed on as it arrives, with its content
//! type. Transcription: the multipart body is read part by part and the
//! `file` part is streamed to the upstream while it is counted; past 30 MB
//! the upstream call is abandoned and the answer is `audio_too_large`. Only
//! the first `file` part counts; a `user` field is accepted (not needed:
//! nothing is recorded).

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::audio::{is_allowed_audio_type, AudioError, MAX_AUDIO_BYTES};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warp::http::HeaderValue;
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{field_bool, json_body, optional_user, user_field};
use crate::State;

/// Longest non-file field of a transcription form.
const MAX_FIELD: u64 = 4096;

pub fn routes(state: State) -> Routes {
    let speech = warp::path!("text-to-audio")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(|app: Arc<LoadedApp>, state: State, body: Map<String, Value>| async move {
            respond(text_to_audio(app, state, body).await)
        });
    let transcription = warp::path!("audio-to-text")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .and_then(|app: Arc<LoadedApp>, state: State, content_type: Option<String>, body| async move {
            respond(audio_to_text(app, state, content_type, body).await)
        });
    any_of([speech.boxed(), transcription.boxed()])
}

/// An optional string field; anything but a string or null is refused.
fn text_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_param(format!("{name} must be a string"))),
    }
}

async fn text_to_audio(
    app: Arc<LoadedApp>,
    state: State,
    body: Map<String, Value>,
) -> Result<warp::reply::Response, ApiError> {
    let user = optional_user(user_field(&body)?);
    // Accepted, no effect: the audio is always handed on as it arrives.
    field_bool(&body, "streaming", false)?;
    let message_id = match text_field(&body, "message_id")?.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(id) => Some(Uuid::parse_str(id).map_err(|_| ApiError::not_found("Message Not Exists."))?),
    };
    let text = text_field(&body, "text")?;
    let voice = text_field(&body, "voice")?;
    let speech = state.engine.text_to_audio(&app, &user, message_id, text, voice).await?;
    // The body must be `Sync`: a task forwards the upstream's chunks.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
    let mut audio = speech.body;
    tokio::spawn(async move {
        while let Some(chunk) = audio.next().await {
            let chunk = chunk.map_err(io::Error::other);
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let mut res = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let content_type =
        HeaderValue::from_str(&speech.content_type).unwrap_or_else(|_| HeaderValue::from_static("audio/mpeg"));
    res.headers_mut().insert("content-type", content_type);
    Ok(res)
}

async fn audio_to_text<S, B>(
    app: Arc<LoadedApp>,
    state: State,
    content_type: Option<String>,
    body: S,
) -> Result<warp::reply::Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let engine = &state.engine;
    engine.speech_to_text_allowed(&app)?;
    let Some(boundary) = content_type.as_deref().and_then(|ct| multer::parse_boundary(ct).ok()) else {
        return Err(AudioError::NoAudioUploaded.into());
    };
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_AUDIO_BYTES + (1 << 20))
            .per_field(MAX_AUDIO_BYTES + 1)
            .for_field("user", MAX_FIELD),
    );
    let body = body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())).map_err(io::Error::other));
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Err(AudioError::NoAudioUploaded.into()),
            Err(e) => return Err(multipart_error(e)),
        };
        if field.file_name().is_none() || field.name() != Some("file") {
            continue;
        }
        let mime = field.content_type().map(|m| m.essence_str().to_string()).unwrap_or_default();
        if !is_allowed_audio_type(&mime) {
            return Err(AudioError::UnsupportedType.into());
        }
        let name = field.file_name().map(str::to_string).unwrap_or_default();
        let name = if name.trim().is_empty() {
            format!("audio.{}", mime.get("audio/".len()..).unwrap_or("mp3"))
        } else {
            name
        };
        // The first bytes: an empty file is no audio at all.
        let first = loop {
            match field.chunk().await {
                Ok(Some(c)) if c.is_empty() => continue,
                Ok(Some(c)) => break c,
                Ok(None) => return Err(AudioError::NoAudioUploaded.into()),
                Err(e) => return Err(multipart_error(e)),
            }
        };
        let mut size = first.len() as u64;
        let audio = match engine.audio() {
            Ok(a) => a.clone(),
            Err(not_configured) => {
                // Dify checks the size before the provider: read on, counting.
                while size <= MAX_AUDIO_BYTES {
                    match field.chunk().await {
                        Ok(Some(c)) => size += c.len() as u64,
                        Ok(None) => break,
                        Err(e) => return Err(multipart_error(e)),
                    }
                }
                if size > MAX_AUDIO_BYTES {
                    return Err(AudioError::TooLarge.into());
                }
                return Err(not_configured.into());
            }
        };
        if size > MAX_AUDIO_BYTES {
            return Err(AudioError::TooLarge.into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
        let feed = async move {
            if tx.send(Ok(first)).await.is_err() {
                return Ok(());
            }
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        size += c.len() as u64;
                        if size > MAX_AUDIO_BYTES {
                            let _ = tx.send(Err(io::Error::other("audio too large"))).await;
                            return Err(ApiError::from(AudioError::TooLarge));
                        }
                        if tx.send(Ok(c)).await.is_err() {
                            return Ok(()); // the upstream call ended early; its result says why
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::other("upload cut off"))).await;
                        return Err(multipart_error(e));
                    }
                }
            }
        };
        let upload = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
        let (fed, text) = tokio::join!(feed, audio.transcribe(upload, &name, &mime));
        fed?;
        let text = text.map_err(ferrify_engine::EngineError::from)?;
        return Ok(warp::reply::json(&json!({"text": text})).into_response());
    }
}

fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => AudioError::TooLarge.into(),
        multer::Error::FieldSizeExceeded { field_name, .. } if field_name.as_deref() == Some("file") => {
            AudioError::TooLarge.into()
        }
        multer::Error::FieldSizeExceeded { field_name, .. } => {
            ApiError::invalid_param(format!("the form field {} is too long", field_name.unwrap_or_default()))
        }
        other => ApiError::invalid_param(format!("the upload is not a valid multipart form: {other}")),
    }
}
