//! `routes/feedbacks.rs`: rate a message, list an app's feedback.

use serde_json::json;

use super::{json_body, path_param, query_param, responses, schema, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "post",
        "/messages/{message_id}/feedbacks",
        json!({
            "operationId": "giveFeedback",
            "summary": "Like or dislike a message of this user; a null rating revokes",
            "parameters": [path_param("message_id", "A message of this user (a UUID).")],
            "requestBody": json_body(json!({
                "type": "object",
                "required": ["user"],
                "properties": {
                    "rating": {"enum": ["like", "dislike", null]},
                    "user": schema("User"),
                    "content": {"type": ["string", "null"]},
                },
            })),
            "responses": responses(&[(200, "Saved", schema("Result"))], &[400, 401, 404, 413, 429]),
        }),
    );
    p.add(
        "get",
        "/app/feedbacks",
        json!({
            "operationId": "listFeedbacks",
            "summary": "This app's feedback, newest first",
            "parameters": [
                query_param("page", json!({"type": "integer", "minimum": 1, "default": 1}), ""),
                query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 101, "default": 20}), ""),
            ],
            "responses": responses(&[(200, "A page of feedback", json!({
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "app_id", "message_id", "rating", "created_at", "updated_at"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "app_id": {"type": "string", "format": "uuid"},
                        "conversation_id": {"type": ["string", "null"]},
                        "message_id": {"type": "string", "format": "uuid"},
                        "rating": {"type": "string", "enum": ["like", "dislike"]},
                        "content": {"type": ["string", "null"]},
                        "from_source": {"type": "string"},
                        "from_end_user_id": {"type": ["string", "null"]},
                        "from_account_id": {"type": ["string", "null"]},
                        "created_at": {"type": ["string", "integer"]},
                        "updated_at": {"type": ["string", "integer"]},
                    },
                }}},
            }))], &[400, 401, 429]),
        }),
    );
}
