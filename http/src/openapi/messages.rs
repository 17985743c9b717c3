//! `routes/messages.rs`: `GET /messages`.

use serde_json::json;

use super::{query_param, query_user, responses, schema, uuid_or_blank, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "get",
        "/messages",
        json!({
            "operationId": "listMessages",
            "summary": "A conversation's messages, newest page first, each page oldest first",
            "parameters": [
                query_param("conversation_id", uuid_or_blank(), "A conversation of this user; absent or blank: an empty page."),
                query_user(),
                query_param("first_id", uuid_or_blank(), "The oldest message shown so far."),
                query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), ""),
            ],
            "responses": responses(&[(200, "A page of messages", schema("MessagePage"))], &[400, 401, 404, 429]),
        }),
    );
}
