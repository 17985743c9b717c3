//! `routes/chat_messages.rs`: `POST /chat-messages`, `POST /chat-messages/{task_id}/stop`.

use serde_json::{json, Value};

use super::{json_body, path_param, responses, schema, Paths, COMMON_ERRORS};

/// The body of a chat turn (also read by completions, which ignore the conversation fields).
pub(crate) fn message_body(chat: bool) -> Value {
    let mut props = json!({
        "query": {"type": ["string", "null"], "description": "The user's turn (chat apps refuse an empty one)."},
        "inputs": {"anyOf": [schema("Inputs"), {"type": "null"}]},
        "user": schema("User"),
        "response_mode": schema("ResponseMode"),
        "files": {"type": ["array", "null"], "items": schema("InputFile")},
        "trace_id": {"type": ["string", "null"], "description": "Kept when it matches ^[A-Za-z0-9_-]{1,128}$."},
    });
    if chat {
        if let Value::Object(p) = &mut props {
            p.insert(
                "conversation_id".into(),
                json!({"type": ["string", "null"], "description": "A conversation of this user (a UUID); empty or absent starts one."}),
            );
            p.insert("auto_generate_name".into(), json!({"type": ["boolean", "null"]}));
        }
    }
    json!({"type": "object", "required": ["user"], "properties": props})
}

/// The 200 of a generation endpoint: the blocking JSON or the SSE stream.
pub(crate) fn generation_ok(blocking: &str) -> Value {
    json!({
        "description": "The answer (blocking), or Dify's event stream (streaming).",
        "content": {
            "application/json": {"schema": schema(blocking)},
            "text/event-stream": {"schema": {"type": "string"}},
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
