//! Audio: `POST /v1/text-to-audio`, `POST /v1/audio-to-text` and auto-played
//! answers (`tts_message` / `tts_message_end`), through an OpenAI-compatible
//! audio upstream that this test runs on loopback (`/v1/audio/speech`,
//! `/v1/audio/transcriptions`).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use warp::{Filter, Reply};

use crate::common::{binary, client, parse_sse, Server};

/// What the upstream answers to every speech request (longer than one
/// `tts_message` chunk, so auto-play sends several).
fn audio_bytes() -> Vec<u8> {
    let mut a = b"ID3\x04\x00".to_vec();
    a.extend((0..40_000u32).map(|i| (i * 7 % 251) as u8));
    a
}

/// One transcription request as the upstream read it.
#[derive(Clone, Debug)]
struct Heard {
    model: String,
    file_name: String,
    content_type: String,
    file: Vec<u8>,
}

#[derive(Default)]
struct Seen {
    speech: Vec<Value>,
    transcriptions: Vec<Heard>,
}

/// The audio upstream. Speech: input containing `FAIL` → 400 with an OpenAI
/// error; `WAV` → `audio/wav`; `SLOW` → the first 1000 bytes, then the rest
/// 1.5 s later; else [`audio_bytes`] as `audio/mpeg` in a few chunks.
/// Transcription: a file named `FAIL…` → 500; else `{"text": "heard N bytes"}`.
async fn upstream() -> (u16, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s1 = seen.clone();
    let speech =
        warp::path!("v1" / "audio" / "speech").and(warp::post()).and(warp::body::json()).map(move |body: Value| {
            s1.lock().speech.push(body.clone());
            let input = body["input"].as_str().unwrap_or("").to_string();
            if input.contains("FAIL") {
                let e = json!({"error": {"message": "voice not available", "type": "invalid_request_error"}});
                return warp::reply::with_status(warp::reply::json(&e), warp::http::StatusCode::BAD_REQUEST)
                    .into_response();
            }
            let audio = audio_bytes();
            let slow = input.contains("SLOW");
            let pieces: Vec<Vec<u8>> = if slow {
                vec![audio[..1000].to_vec(), audio[1000..].to_vec()]
            } else {
                audio.chunks(5000).map(<[u8]>::to_vec).collect()
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, Infallible>>(1);
            tokio::spawn(async move {
                for (i, p) in pieces.into_iter().enumerate() {
                    if slow && i == 1 {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    if tx.send(Ok(p)).await.is_err() {
                        return;
                    }
                }
            });
            let mut res = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
            let ct = if input.contains("WAV") { "audio/wav" } else { "audio/mpeg" };
            res.headers_mut().insert("content-type", warp::http::HeaderValue::from_static(ct));
            res
        });
    let s2 = seen.clone();
    let transcriptions = warp::path!("v1" / "audio" / "transcriptions")
        .and(warp::post())
        .and(warp::header::<String>("content-type"))
        .and(warp::body::bytes())
        .and_then(move |ct: String, body: Bytes| {
            let seen = s2.clone();
            async move {
                let boundary = multer::parse_boundary(&ct).unwrap();
                let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
                let mut form = multer::Multipart::new(stream, boundary);
                let mut heard =
                    Heard { model: String::new(), file_name: String::new(), content_type: String::new(), file: vec![] };
                while let Some(field) = form.next_field().await.unwrap() {
                    match field.name() {
                        Some("model") => heard.model = field.text().await.unwrap(),
                        Some("file") => {
                            heard.file_name = field.file_name().unwrap_or("").to_string();
                            heard.content_type = field.content_type().map(|m| m.to_string()).unwrap_or_default();
                            heard.file = field.bytes().await.unwrap().to_vec();
                        }
                        _ => {}
                    }
                }
                let fail = heard.file_name.starts_with("FAIL");
                let n = heard.file.len();
                seen.lock().transcriptions.push(heard);
                let reply = if fail {
                    warp::reply::with_status(
                        warp::reply::json(&json!({"error": {"message": "the audio could not be decoded"}})),
                        warp::http::StatusCode::INTERNAL_SERVER_ERROR,
                    )
                } else {
                    warp::reply::with_status(
                        warp::reply::json(&json!({"text": format!("heard {n} bytes")})),
                        warp::http::StatusCode::OK,
                    )
                };
                Ok::<_, Infallible>(reply)
            }
        });
    let routes = speech.or(transcriptions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    (port, seen)
}

/// A chat app on the echo model; `model_config` extras (features) appended.
fn chat_app(name: &str, features: &str) -> String {
    format!(
        "app: {{mode: chat, name: {name}}}\nmodel_config:\n  model: {{provider: builtin, name: echo, mode: chat, completion_params: {{}}}}\n  pre_prompt: ''\n{features}"
    )
}

const SPEAKING: &str = "  text_to_speech: {enabled: true, voice: nova, language: en-US, autoPlay: enabled}\n  speech_to_text: {enabled: true}\n";

const COMPLETION: &str = "app: {mode: completion, name: Speaking completion}\nmodel_config:\n  model: {provider: builtin, name: echo, mode: chat, completion_params: {}}\n  pre_prompt: '{{query}}'\n  user_input_form:\n  - paragraph: {label: Query, variable: query, required: true}\n  text_to_speech: {enabled: true, voice: onyx, autoPlay: enabled}\n";

const CHATFLOW: &str = "app: {mode: advanced-chat, name: Speaking chatflow}\nworkflow:\n  features:\n    text_to_speech: {enabled: true, voice: coral, autoPlay: enabled}\n  graph:\n    nodes:\n    - {id: start, data: {type: start, title: Start, variables: []}}\n    - {id: answer, data: {type: answer, title: Answer, answer: 'You said {{#sys.query#}}.'}}\n    edges:\n    - {source: start, target: answer}\n";

const WORKFLOW: &str = "app: {mode: workflow, name: Speaking workflow}\nworkflow:\n  features:\n    text_to_speech: {enabled: true, voice: echo, autoPlay: enabled}\n  graph:\n    nodes:\n    - {id: start, data: {type: start, title: Start, variables: [{variable: q, label: Q, type: text-input, required: true}]}}\n    - id: llm\n      data: {type: llm, title: Echo, model: {provider: builtin, name: echo, mode: chat, completion_params: {}}, prompt_template: [{role: user, text: 'Say {{#start.q#}}'}]}\n    - {id: end, data: {type: end, title: End, outputs: [{variable: text, value_selector: [llm, text]}]}}\n    edges:\n    - {source: start, target: llm}\n    - {source: llm, target: end}\n";

/// A server whose `[audio]` uses the upstream on `port` (or none).
fn server(dir: &Path, audio_port: Option<u16>) -> Server {
    let config = dir.join("ferrify.toml");
    let text = match audio_port {
        Some(port) => format!(
            "[providers.speech]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\ntimeout_secs = 10\n[audio]\nprovider = \"speech\"\nvoice = \"fable\"\n"
        ),
        None => String::new(),
    };
    std::fs::write(&config, text).unwrap();
    Server::start_in(&dir.join("data"), &["--no-demo", "--config", config.to_str().unwrap()])
}

/// `POST /v1/text-to-audio`: status, content type, body bytes.
async fn speak(s: &Server, key: &str, body: Value) -> (u16, String, Vec<u8>) {
    let r = client().post(s.url("/v1/text-to-audio")).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
}

/// `POST /v1/audio-to-text` with one file part (or none).
async fn transcribe(s: &Server, key: &str, file: Option<(&str, &str, Vec<u8>)>) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().text("user", "u1");
    if let Some((name, mime, bytes)) = file {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).unwrap();
        form = form.part("file", part);
    }
    let r = client().post(s.url("/v1/audio-to-text")).bearer_auth(key).multipart(form).send().await.unwrap();
    let status = r.status().as_u16();
    (status, json_of(&r.bytes().await.unwrap()))
}

#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!((got.0, got.1["code"].as_str()), (status, Some(code)), "{}", got.1);
    assert_eq!(got.1["status"], status, "{}", got.1);
}

#[tokio::test]
async fn text_to_audio_speaks_texts_and_messages() {
    let (port, seen) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Some(port));
    let key = s.key(&s.import_yaml(&chat_app("speaker", SPEAKING)).await).await;
    let plain = s.key(&s.import_yaml(&chat_app("plain tts", "  text_to_speech: {enabled: true}\n")).await).await;
    let off = s.key(&s.import_yaml(&chat_app("silent", "")).await).await;

    // A text, in the app's voice.
    let (st, ct, body) = speak(&s, &key, json!({"text": "Hello there", "user": "u1", "streaming": true})).await;
    assert_eq!((st, ct.as_str()), (200, "audio/mpeg"), "{}", json_of(&body));
    assert_eq!(body, audio_bytes());
    assert_eq!(
        seen.lock().speech.last().unwrap(),
        &json!({"model": "tts-1", "input": "Hello there", "voice": "nova", "response_format": "mp3"})
    );
    // The request's voice wins; an app without one gets `[audio] voice`.
    assert_eq!(speak(&s, &key, json!({"text": "hi", "voice": "shimmer"})).await.0, 200);
    assert_eq!(seen.lock().speech.last().unwrap()["voice"], "shimmer");
    assert_eq!(speak(&s, &plain, json!({"text": "hi"})).await.0, 200);
    assert_eq!(seen.lock().speech.last().unwrap()["voice"], "fable");
    // The upstream's content type is passed on.
    let (st, ct, _) = speak(&s, &key, json!({"text": "WAV please"})).await;
    assert_eq!((st, ct.as_str()), (200, "audio/wav"));

    // A message of this user: its answer is spoken, `text` is ignored.
    let turn = json!({"query": "Speak me", "inputs": {}, "user": "u1", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(turn)).await;
    assert_eq!(st, 200, "{b}");
    let message_id = b["message_id"].as_str().unwrap().to_string();
    let (st, _, body) = speak(&s, &key, json!({"message_id": message_id, "text": "not this", "user": "u1"})).await;
    assert_eq!((st, body.len()), (200, audio_bytes().len()));
    assert_eq!(seen.lock().speech.last().unwrap()["input"], "Speak me");
    let calls = seen.lock().speech.len();

    // Someone else's, unknown and malformed messages; no text; an app with TTS off.
    for (body, status, code) in [
        (json!({"message_id": message_id, "user": "u2"}), 404, "not_found"),
        (json!({"message_id": uuid::Uuid::new_v4().to_string(), "user": "u1"}), 404, "not_found"),
        (json!({"message_id": "nope", "user": "u1"}), 404, "not_found"),
        (json!({"user": "u1"}), 400, "invalid_param"),
        (json!({"text": "   ", "user": "u1"}), 400, "invalid_param"),
        (json!({"text": ["a"], "user": "u1"}), 400, "invalid_param"),
    ] {
        let (st, _, b) = speak(&s, &key, body.clone()).await;
        assert_error(&(st, json_of(&b)), status, code);
    }
    let (st, _, b) = speak(&s, &key, json!({"user": "u1"})).await;
    assert_eq!(json_of(&b)["message"], "Text is required", "{st}");
    let (st, _, b) = speak(&s, &off, json!({"text": "hi"})).await;
    assert_error(&(st, json_of(&b)), 400, "invalid_param");
    assert_eq!(json_of(&b)["message"], "TTS is not enabled");
    assert_eq!(seen.lock().speech.len(), calls, "refused requests reach no upstream");

    // An upstream error is Dify's completion_request_error with the upstream's message.
    let (st, _, b) = speak(&s, &key, json!({"text": "FAIL now"})).await;
    assert_error(&(st, json_of(&b)), 400, "completion_request_error");
    assert!(json_of(&b)["message"].as_str().unwrap().contains("voice not available"), "{}", json_of(&b));

    // The audio is handed on as it arrives: the first bytes come before the upstream's pause ends.
    let began = Instant::now();
    let mut r = client()
        .post(s.url("/v1/text-to-audio"))
        .bearer_auth(&key)
        .json(&json!({"text": "SLOW one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = began.elapsed();
    let mut all = first.to_vec();
    while let Some(c) = r.chunk().await.unwrap() {
        all.extend_from_slice(&c);
    }
    assert!(first_at < Duration::from_millis(1200), "first audio bytes after {first_at:?}");
    assert!(began.elapsed() >= Duration::from_millis(1500));
    assert_eq!(all, audio_bytes());
}

#[tokio::test]
async fn audio_to_text_transcribes_uploads() {
    let (port, seen) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Some(port));
    let key = s.key(&s.import_yaml(&chat_app("listener", SPEAKING)).await).await;
    let off = s.key(&s.import_yaml(&chat_app("deaf", "")).await).await;

    let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let got = transcribe(&s, &key, Some(("hello.mp3", "audio/mpeg", audio.clone()))).await;
    assert_eq!(got, (200, json!({"text": "heard 200000 bytes"})));
    let heard = seen.lock().transcriptions.last().cloned().unwrap();
    assert_eq!((heard.model.as_str(), heard.file_name.as_str()), ("whisper-1", "hello.mp3"));
    assert_eq!(heard.content_type, "audio/mpeg");
    assert!(heard.file == audio, "the upstream got the uploaded bytes");
    // Exactly 30 MB is allowed.
    let limit = 30 * 1024 * 1024;
    let got = transcribe(&s, &key, Some(("big.wav", "audio/wav", vec![7u8; limit]))).await;
    assert_eq!(got, (200, json!({"text": format!("heard {limit} bytes")})));
    let calls = seen.lock().transcriptions.len();

    assert_error(
        &transcribe(&s, &key, Some(("big.wav", "audio/wav", vec![7u8; limit + 1]))).await,
        413,
        "audio_too_large",
    );
    assert_error(&transcribe(&s, &key, None).await, 400, "no_audio_uploaded");
    assert_error(&transcribe(&s, &key, Some(("empty.mp3", "audio/mpeg", vec![]))).await, 400, "no_audio_uploaded");
    assert_error(&transcribe(&s, &key, Some(("a.ogg", "audio/ogg", vec![1; 10]))).await, 415, "unsupported_audio_type");
    assert_error(
        &transcribe(&s, &key, Some(("a.mp3", "text/plain", vec![1; 10]))).await,
        415,
        "unsupported_audio_type",
    );
    let r =
        client().post(s.url("/v1/audio-to-text")).bearer_auth(&key).json(&json!({"user": "u1"})).send().await.unwrap();
    assert_error(&(r.status().as_u16(), json_of(&r.bytes().await.unwrap())), 400, "no_audio_uploaded");
    let got = transcribe(&s, &off, Some(("hello.mp3", "audio/mpeg", vec![1; 10]))).await;
    assert_error(&got, 400, "invalid_param");
    assert_eq!(got.1["message"], "Speech to text is not enabled");
    // Only the first of them reached the upstream, partly (413 while streaming).
    assert!(seen.lock().transcriptions.len() <= calls + 1);

    let got = transcribe(&s, &key, Some(("FAIL.mp3", "audio/mpeg", vec![1; 10]))).await;
    assert_error(&got, 400, "completion_request_error");
    assert!(got.1["message"].as_str().unwrap().contains("could not be decoded"), "{}", got.1);
}

#[tokio::test]
async fn without_an_audio_provider_audio_is_not_initialized() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None);
    let key = s.key(&s.import_yaml(&chat_app("speaker", SPEAKING)).await).await;
    let (st, _, b) = speak(&s, &key, json!({"text": "hi"})).await;
    assert_error(&(st, json_of(&b)), 400, "provider_not_initialize");
    assert_error(
        &transcribe(&s, &key, Some(("a.mp3", "audio/mpeg", vec![1; 10]))).await,
        400,
        "provider_not_initialize",
    );
    // The size is checked first, as Dify does.
    let big = vec![0u8; 30 * 1024 * 1024 + 1];
    assert_error(&transcribe(&s, &key, Some(("a.mp3", "audio/mpeg", big))).await, 413, "audio_too_large");
    // Auto-play is off without a provider: the stream ends with message_end.
    let body = json!({"query": "hi", "inputs": {}, "user": "u1", "response_mode": "streaming"});
    let (st, text, _) = crate::common::stream(&s, "/v1/chat-messages", &key, body, false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    assert_eq!(frames.last().unwrap().data["event"], "message_end");
    assert!(frames.iter().all(|f| !f.data["event"].as_str().unwrap().starts_with("tts")));
}

/// A streamed run's raw body (opted in to `id:` lines) and its frames.
async fn live(s: &Server, key: &str, path: &str, body: Value) -> (String, Vec<Value>) {
    let r = client()
        .post(s.url(path))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let frames = parse_sse(&text).0.into_iter().map(|f| f.data).collect();
    (text.replace("event: ping\n\n", ""), frames)
}

/// Checks the frames of an auto-played run: the message, then the audio, `tts_message_end` last.
#[track_caller]
fn check_spoken(frames: &[Value], before_audio: &str) -> String {
    let names: Vec<&str> = frames.iter().map(|f| f["event"].as_str().unwrap()).collect();
    let end = names.iter().position(|n| *n == "message_end").expect("message_end");
    assert_eq!(names[end - 1], before_audio, "{names:?}");
    let audio: Vec<&Value> = frames[end + 1..].iter().collect();
    assert!(audio.len() >= 3, "several tts_message frames then the end: {names:?}");
    assert!(audio[..audio.len() - 1].iter().all(|f| f["event"] == "tts_message"), "{names:?}");
    let last = audio.last().unwrap();
    assert_eq!((last["event"].as_str(), last["audio"].as_str()), (Some("tts_message_end"), Some("")));
    let mut bytes = Vec::new();
    for f in &audio {
        for k in ["task_id", "message_id", "created_at"] {
            assert_eq!(f[k], frames[end][k], "{k} of {f}");
        }
        assert_eq!(f.get("conversation_id"), frames[end].get("conversation_id"));
        bytes.extend(base64::engine::general_purpose::STANDARD.decode(f["audio"].as_str().unwrap()).unwrap());
    }
    assert!(bytes == audio_bytes(), "the tts_message audio decodes to the upstream's bytes");
    frames[end]["task_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn auto_play_streams_tts_messages_that_resume_and_replay_identically() {
    let (port, seen) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(dir.path(), Some(port));
    let chat = s.key(&s.import_yaml(&chat_app("speaker", SPEAKING)).await).await;
    let completion = s.key(&s.import_yaml(COMPLETION).await).await;
    let chatflow = s.key(&s.import_yaml(CHATFLOW).await).await;
    let no_auto = s.key(&s.import_yaml(&chat_app("manual", "  text_to_speech: {enabled: true}\n")).await).await;

    let turn = |q: &str| json!({"query": q, "inputs": {}, "user": "u1", "response_mode": "streaming"});
    let (chat_raw, frames) = live(&s, &chat, "/v1/chat-messages", turn("Read this aloud")).await;
    let chat_task = check_spoken(&frames, "message");
    assert_eq!(
        seen.lock().speech.last().unwrap(),
        &json!({"model": "tts-1", "input": "Read this aloud", "voice": "nova", "response_format": "mp3"})
    );
    let body = json!({"inputs": {"query": "Bonjour"}, "user": "u1", "response_mode": "streaming"});
    let (completion_raw, frames) = live(&s, &completion, "/v1/completion-messages", body).await;
    let completion_task = check_spoken(&frames, "message");
    assert!(frames.iter().all(|f| f.get("conversation_id").is_none()));
    assert_eq!(seen.lock().speech.last().unwrap()["voice"], "onyx");
    let (chatflow_raw, frames) = live(&s, &chatflow, "/v1/chat-messages", turn("owls")).await;
    let chatflow_task = check_spoken(&frames, "workflow_finished");
    assert_eq!(seen.lock().speech.last().unwrap()["input"], "You said owls.");
    assert_eq!(seen.lock().speech.last().unwrap()["voice"], "coral");

    // A workflow speaks the text it streamed, after workflow_finished (frames carry its run id).
    let workflow = s.key(&s.import_yaml(WORKFLOW).await).await;
    let body = json!({"inputs": {"q": "hello owls"}, "user": "u1", "response_mode": "streaming"});
    let (workflow_raw, frames) = live(&s, &workflow, "/v1/workflows/run", body).await;
    let names: Vec<&str> = frames.iter().map(|f| f["event"].as_str().unwrap()).collect();
    let end = names.iter().position(|n| *n == "workflow_finished").expect("workflow_finished");
    assert!(names[..end].contains(&"text_chunk"), "{names:?}");
    assert!(end + 2 < names.len() && names[end + 1..names.len() - 1].iter().all(|n| *n == "tts_message"), "{names:?}");
    assert_eq!(names.last(), Some(&"tts_message_end"));
    let run_id = &frames[end]["workflow_run_id"];
    let mut bytes = Vec::new();
    for f in &frames[end + 1..] {
        assert_eq!((&f["workflow_run_id"], &f["task_id"]), (run_id, &frames[end]["task_id"]), "{f}");
        assert!(f.get("message_id").is_none(), "{f}");
        bytes.extend(base64::engine::general_purpose::STANDARD.decode(f["audio"].as_str().unwrap()).unwrap());
    }
    assert!(bytes == audio_bytes());
    assert_eq!(seen.lock().speech.last().unwrap()["input"], "Say hello owls");
    assert_eq!(seen.lock().speech.last().unwrap()["voice"], "echo");
    let workflow_task = frames[end]["task_id"].as_str().unwrap().to_string();

    // Blocking runs and apps without autoPlay are not spoken.
    let calls = seen.lock().speech.len();
    let mut blocking = turn("quiet");
    blocking["response_mode"] = json!("blocking");
    let (st, b) = s.call("POST", "/v1/chat-messages", &chat, Some(blocking)).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("quiet")), "{b}");
    let (_, frames) = live(&s, &no_auto, "/v1/chat-messages", turn("quiet")).await;
    assert_eq!(frames.last().unwrap()["event"], "message_end");
    assert_eq!(seen.lock().speech.len(), calls);

    // Resume: from the start and from any cut, the same bytes.
    for (key, route, task, raw) in [
        (&chat, "chat-messages", &chat_task, &chat_raw),
        (&completion, "completion-messages", &completion_task, &completion_raw),
        (&chatflow, "chat-messages", &chatflow_task, &chatflow_raw),
        (&workflow, "workflow", &workflow_task, &workflow_raw),
    ] {
        let blocks: Vec<&str> = raw.split_inclusive("\n\n").collect();
        for cut in [0, blocks.len() - 4, blocks.len() - 3, blocks.len() - 1] {
            let mut req = client()
                .get(s.url(&format!("/v1/{route}/{task}/events?user=u1")))
                .bearer_auth(key)
                .header("accept", "text/event-stream");
            if cut > 0 {
                req = req.header("last-event-id", cut.to_string());
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap().replace("event: ping\n\n", "");
            assert_eq!(text, blocks[cut..].concat(), "{route} resumed after frame {cut}");
        }
    }

    // Replay: the transcript of the stopped server's log is the live stream.
    assert!(s.terminate().success());
    for (task, raw) in [
        (&chat_task, &chat_raw),
        (&completion_task, &completion_raw),
        (&chatflow_task, &chatflow_raw),
        (&workflow_task, &workflow_raw),
    ] {
        let out = std::process::Command::new(binary())
            .args(["replay", task, "--data"])
            .arg(&s.data)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let live: String = raw.split_inclusive('\n').filter(|l| !l.starts_with("id: ")).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), live, "replay of {task}");
    }
}
