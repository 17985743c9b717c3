//! Fuzz checks of the request parsers: one function per cargo-fuzz target
//! (`fuzz/fuzz_targets/`), also run over the seed corpora by the stable test
//! suite (`tests/fuzz_corpus.rs`), so both share one body per target.
//!
//! Each takes arbitrary bytes as a request body (or header value) and
//! panics only when a property is violated: the parser answers a typed
//! request or a client error with one of Dify's codes, never a panic or a
//! 5xx, and what it accepts satisfies the request's invariants. Accepted
//! `inputs` are then validated against a form with every control type, as
//! the engine does before a run. Not a stable API.

use std::collections::HashMap;

use ferrify_engine::app::form::{self, FormField};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, CODES};
use crate::request::{cursor, parse_object, parse_query};
use crate::routes::chat_messages::{message_request, RequestMeta};
use crate::routes::conversations::rename_request;
use crate::routes::feedbacks::feedback_request;
use crate::routes::workflows::workflow_request;

/// A refusal must be a client error with a known code.
fn client_error(e: &ApiError) {
    assert!((400..500).contains(&e.status), "status {} for {e:?}", e.status);
    assert!(CODES.contains(&(e.status, e.code)), "unknown code {e:?}");
}

fn body(data: &[u8]) -> Option<Map<String, Value>> {
    match parse_object(data) {
        Ok(m) => Some(m),
        Err(e) => {
            client_error(&e);
            None
        }
    }
}

fn meta() -> RequestMeta {
    RequestMeta { trace_header: None, accept: None, last_event_id: None, query: HashMap::new() }
}

/// A form with every control type (what start nodes and `user_input_form` declare).
fn sample_form() -> Vec<FormField> {
    form::parse_start_variables(&json!([
        {"variable": "query", "type": "text-input", "required": false, "max_length": 48},
        {"variable": "notes", "type": "paragraph"},
        {"variable": "tone", "type": "select", "options": ["formal", "casual"]},
        {"variable": "n", "type": "number"},
        {"variable": "flag", "type": "checkbox"},
        {"variable": "cfg", "type": "json_object", "json_schema": {"type": "object"}},
        {"variable": "doc", "type": "file", "allowed_file_types": ["document"]},
        {"variable": "imgs", "type": "file-list", "max_length": 2, "allowed_file_types": ["image"]}
    ]))
}

fn check_inputs(inputs: &Value) {
    assert!(inputs.is_object());
    if let Ok(valid) = form::validate(&sample_form(), inputs) {
        // Only declared variables survive validation.
        assert!(valid.keys().all(|k| sample_form().iter().any(|f| &f.variable == k)));
    }
}

fn trace_ok(t: &Option<String>) {
    if let Some(t) = t {
        assert!((1..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }
}

/// `chat_request`: the body of `POST /chat-messages`.
pub fn chat_request(data: &[u8]) {
    let Some(b) = body(data) else { return };
    match message_request(&b, &meta()) {
        Ok(req) => {
            assert!(!req.user.is_empty());
            assert_eq!(req.streaming, b.get("response_mode") == Some(&json!("streaming")));
            assert!(req.files.is_array());
            trace_ok(&req.trace_id);
            check_inputs(&req.inputs);
        }
        Err(e) => client_error(&e),
    }
}

/// `completion_request`: the body of `POST /completion-messages` (the same
/// reader; the engine then drops `conversation_id`).
pub fn completion_request(data: &[u8]) {
    let Some(b) = body(data) else { return };
    match message_request(&b, &meta()) {
        Ok(req) => {
            assert!(!req.user.is_empty());
            check_inputs(&req.inputs);
        }
        Err(e) => client_error(&e),
    }
}

/// `workflow_request`: the body of `POST /workflows/run`; the input's first
/// line doubles as the `:workflow_id` segment of `POST /workflows/:id/run`.
pub fn workflow_request_body(data: &[u8]) {
    if let Some(line) = data.split(|b| *b == b'\n').next().and_then(|l| std::str::from_utf8(l).ok()) {
        let b = Map::from_iter([("user".to_string(), json!("u"))]);
        match workflow_request(&b, &meta(), Some(line)) {
            Ok(req) => assert!(req.workflow_id.is_some()),
            Err(e) => client_error(&e),
        }
    }
    let Some(b) = body(data) else { return };
    match workflow_request(&b, &meta(), None) {
        Ok(req) => {
            assert!(!req.user.is_empty() && req.workflow_id.is_none());
            assert!(req.files.is_array());
            check_inputs(&req.inputs);
        }
        Err(e) => client_error(&e),
    }
}

/// `conversation_rename`: the body of `POST /conversations/:id/name`.
pub fn conversation_rename(data: &[u8]) {
    let Some(b) = body(data) else { return };
    match rename_request(&b) {
        Ok(r) => {
            assert!(!r.user.is_empty());
            assert!(r.auto_generate || r.name.as_deref().is_some_and(|n| !n.trim().is_empty()));
        }
        Err(e) => client_error(&e),
    }
}

/// `last_event_id`: an SSE cursor from `Last-Event-ID` (and, on the same
/// bytes, the query-string reader): a cursor that parses prints back as
/// its own digits; refusals are client errors.
pub fn last_event_id(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match cursor("Last-Event-ID", text) {
            Ok(0) => {}
            Ok(u64::MAX) => {}
            Ok(n) => {
                let digits = text.trim_matches(|c| c == ' ' || c == '\t').trim_start_matches('0');
                assert_eq!(n.to_string(), digits);
            }
            Err(e) => client_error(&e),
        }
        match parse_query(text) {
            Ok(q) => assert!(q.len() <= text.split('&').count()),
            Err(e) => client_error(&e),
        }
    }
}

/// `feedback`: the body of `POST /messages/:id/feedbacks`.
pub fn feedback(data: &[u8]) {
    let Some(b) = body(data) else { return };
    match feedback_request(&b) {
        Ok(f) => {
            assert!(!f.user.is_empty());
            assert!(matches!(f.rating.as_deref(), None | Some("like" | "dislike")));
            assert_eq!(f.rating.is_none(), b.get("rating").is_none_or(Value::is_null));
        }
        Err(e) => client_error(&e),
    }
}

/// What the upload target runs on: one in-memory engine with one app.
struct UploadBench {
    runtime: tokio::runtime::Runtime,
    state: crate::State,
    app: std::sync::Arc<ferrify_engine::apps::LoadedApp>,
}

fn upload_bench() -> &'static UploadBench {
    static BENCH: std::sync::OnceLock<UploadBench> = std::sync::OnceLock::new();
    BENCH.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let config = ferrify_engine::EngineConfig {
            data_dir: None,
            files: ferrify_engine::files::FileSettings {
                // Small limits, so the fuzzer reaches `file_too_large` too.
                image_limit: 512,
                file_limit: 2048,
                extension_blacklist: vec!["exe".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let engine = ferrify_engine::Engine::open(&config).expect("a memory engine");
        let yaml = "app: {mode: chat, name: up}\nmodel_config: {model: {provider: builtin, name: echo, mode: chat}}\n";
        let app = runtime.block_on(async {
            let imported = engine.import_app(yaml).await.expect("the app imports");
            engine.app(imported.app_id).expect("the app reads").expect("the app exists")
        });
        UploadBench { runtime, state: crate::State::new(engine, None), app }
    })
}

/// `upload`: a multipart upload. The first line is the `Content-Type`
/// header, the rest the body, handed over in chunks split where the input's
/// last byte says. An upload is stored (201 with the file's JSON) or refused
/// with a Dify 4xx; never a panic or a 5xx.
pub fn upload(data: &[u8]) {
    let (head, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let content_type = std::str::from_utf8(head).ok().map(|s| s.trim_end_matches('\r').to_string());
    let cut = rest.last().map(|b| *b as usize % (rest.len() + 1)).unwrap_or(0);
    let chunks: Vec<Result<bytes::Bytes, warp::Error>> = [&rest[..cut], &rest[cut..]]
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let b = upload_bench();
    let result = b.runtime.block_on(crate::routes::files::upload(
        b.app.clone(),
        b.state.clone(),
        content_type,
        futures_util::stream::iter(chunks),
    ));
    match result {
        Ok(res) => assert_eq!(res.status(), 201),
        Err(e) => client_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_accept_plain_inputs() {
        chat_request(br#"{"query":"hi","inputs":{"n":"3"},"user":"u","response_mode":"streaming"}"#);
        completion_request(br#"{"inputs":{"query":"x"},"user":"u"}"#);
        workflow_request_body(b"{\"inputs\":{},\"user\":\"u\"}");
        conversation_rename(br#"{"name":"x"}"#);
        last_event_id(b" 42 ");
        feedback(br#"{"rating":"like","user":"u","content":"ok"}"#);
        upload(b"multipart/form-data; boundary=X\n--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--X--\r\n");
        assert_eq!(cursor("Last-Event-ID", "").unwrap(), 0);
        assert_eq!(cursor("Last-Event-ID", "007").unwrap(), 7);
        assert!(cursor("Last-Event-ID", "-1").is_err());
        assert_eq!(cursor("after", "99999999999999999999999").unwrap(), u64::MAX);
    }
}
