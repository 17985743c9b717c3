//! `routes/messages.rs`: `GET /messages`.

use serde_json::json;

use super::{query_param, responses, schema, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "get",
        "/messages",
        json!({
            "operationId": "listMessages",
            "summary": "A conversation's messages, newest page first, each page oldest first",
            "parameters": [
                query_param("conversation_id", json!({"type": "string"}), "A conversation of this user (a UUID); absent or empty: an empty page."),
                query_param("user", schema("User"), "The end user (absent: the shared anonymous user)."),
                query_param("first_id", json!({"type": "string"}), "The oldest message shown so far (a UUID)."),
                query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), ""),
            ],
            "responses": responses(&[(200, "A page of messages", schema("MessagePage"))], &[400, 401, 404, 429]),
        }),
    );
}
