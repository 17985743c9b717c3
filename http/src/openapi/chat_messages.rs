//! `routes/chat_messages.rs`: `POST /chat-messages`, `POST /chat-messages/{task_id}/stop`.

use serde_json::{json, Value};

use super::{json_body, path_param, responses, schema, Paths, COMMON_ERRORS};

/// The body of a chat turn (also read by completions, which ignore the conversation fields).
pub(crate) fn message_body(chat: bool) -> Value {
    let mut props = json!({
        "query": {"type": ["string", "null"], "description": "Legacy free text; the prompt usually comes from inputs."},
        "inputs": {"anyOf": [schema("Inputs"), {"type": "null"}]},
        "user": schema("User"),
        "response_mode": schema("ResponseMode"),
        "files": files(),
        "trace_id": trace_id(),
    });
    let mut required = vec!["user"];
    if chat {
        required.push("query");
        if let Value::Object(p) = &mut props {
            p.insert(
                "query".into(),
                json!({"type": "string", "pattern": "\\S", "description": "The user's turn (not blank)."}),
            );
            p.insert(
                "conversation_id".into(),
                json!({"anyOf": [super::uuid_or_blank(), {"type": "null"}], "description": "A conversation of this user; blank or absent starts one."}),
            );
            p.insert("auto_generate_name".into(), flag());
            p.insert(
                "workflow_id".into(),
                json!({"anyOf": [super::uuid_or_blank(), {"type": "null"}], "description": "advanced-chat: a published version of this app to run (its latest when absent); other modes ignore it. Not a UUID: 400 bad_request; unknown: 404 not_found."}),
            );
        }
    }
    json!({"type": "object", "required": required, "properties": props})
}

/// `trace_id`: any value is accepted; one that is not `^[A-Za-z0-9_-]{1,128}$` is dropped.
pub(crate) fn trace_id() -> Value {
    json!({"description": "Kept when it is a string matching ^[A-Za-z0-9_-]{1,128}$, silently dropped otherwise."})
}

/// `files`: InputFile objects (§3.1), checked against the app's upload
/// settings; an app that takes no files ignores the list.
pub(crate) fn files() -> Value {
    json!({
        "type": ["array", "null"],
        "description": "InputFile objects (components.schemas.InputFile); ignored by apps that take no files.",
        "items": {"type": "object"},
    })
}

/// A boolean flag; as Dify (pydantic) reads them, `1`/`0` and the words
/// `true`/`false`, `yes`/`no`, `on`/`off`, `y`/`n`, `t`/`f` in any case too.
pub(crate) fn flag() -> Value {
    // What `request::field_bool` takes: Dify's (pydantic's) booleans, any case.
    let words = ["true", "false", "1", "0", "yes", "no", "y", "n", "on", "off", "t", "f"];
    let any_case = |w: &str| -> String {
        w.chars()
            .map(|c| if c.is_ascii_alphabetic() { format!("[{}{}]", c.to_ascii_uppercase(), c) } else { c.to_string() })
            .collect()
    };
    let pattern = format!("^({})$", words.map(any_case).join("|"));
    json!({"anyOf": [
        {"type": ["boolean", "null"]},
        {"type": "number", "enum": [0, 1]},
        {"type": "string", "pattern": pattern},
    ]})
}

/// The 200 of a generation endpoint: the blocking JSON or the SSE stream.
pub(crate) fn generation_ok(blocking: &str) -> Value {
    json!({
        "description": "The answer (blocking), or Dify's event stream (streaming).",
        "content": {
            "application/json": {"schema": schema(blocking)},
            "text/event-stream": {"schema": {
                "description": "One event per frame: `data:` a JSON object with `event` (message, message_replace, message_end, workflow_started, …, error); bare `event: ping` keep-alives.",
                "type": "object",
                "properties": {
                    "event": {"type": "string"},
                    "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object", "required": ["event"]}},
                    "id": {"type": "string"},
                },
            }},
        },
    })
}

/// The body of a stop request.
pub(crate) fn stop_body() -> Value {
    json!({"type": "object", "required": ["user"], "properties": {"user": schema("User")}})
}

pub fn paths(p: &mut Paths) {
    let mut r = responses(&[], &[400, 401, 404, 413, 429]);
    r["200"] = generation_ok("ChatMessageResponse");
    p.add(
        "post",
        "/chat-messages",
        json!({
            "operationId": "sendChatMessage",
            "summary": "Send a chat turn (chat and advanced-chat apps)",
            "requestBody": json_body(message_body(true)),
            "responses": r,
        }),
    );
    p.add(
        "post",
        "/chat-messages/{task_id}/stop",
        json!({
            "operationId": "stopChatMessage",
            "summary": "Stop a chat turn of this user (always answers success)",
            "parameters": [path_param("task_id", "The task_id of the run's frames.")],
            "requestBody": json_body(stop_body()),
            "responses": responses(&[(200, "Stop requested", schema("Result"))], COMMON_ERRORS),
        }),
    );
}
