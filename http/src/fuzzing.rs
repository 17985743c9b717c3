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
use crate::request::{last_event_id as parse_last_event_id, parse_object, parse_query};
use crate::routes::chat_messages::{message_request, RequestMeta};
use crate::routes::conversations::rename_request;
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
        match parse_last_event_id(text) {
            Ok(0) => {}
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
        assert_eq!(parse_last_event_id("").unwrap(), 0);
        assert_eq!(parse_last_event_id("007").unwrap(), 7);
        assert!(parse_last_event_id("-1").is_err());
        assert!(parse_last_event_id("99999999999999999999999").is_err());
    }
}
