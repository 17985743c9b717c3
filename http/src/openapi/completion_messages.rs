//! `routes/completion_messages.rs`: `POST /completion-messages`, `POST /completion-messages/{task_id}/stop`.

use serde_json::json;

use super::chat_messages::{generation_ok, message_body, stop_body};
use super::{json_body, path_param, responses, schema, Paths, COMMON_ERRORS};

pub fn paths(p: &mut Paths) {
    let mut r = responses(&[], COMMON_ERRORS);
    r["200"] = generation_ok("ChatMessageResponse");
    p.add(
        "post",
        "/completion-messages",
        json!({
            "operationId": "sendCompletionMessage",
            "summary": "Generate a completion (completion apps)",
            "requestBody": json_body(message_body(false)),
            "responses": r,
        }),
    );
    p.add(
        "post",
        "/completion-messages/{task_id}/stop",
        json!({
            "operationId": "stopCompletionMessage",
            "summary": "Stop a completion of this user (always answers success)",
            "parameters": [path_param("task_id", "The task_id of the run's frames.")],
            "requestBody": json_body(stop_body()),
            "responses": responses(&[(200, "Stop requested", schema("Result"))], COMMON_ERRORS),
        }),
    );
}
