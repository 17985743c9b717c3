//! `routes/conversations.rs`: list, delete, rename, variables.

use serde_json::json;

use super::{json_body, path_param, query_param, query_user, responses, schema, uuid_or_blank, Paths};

pub fn paths(p: &mut Paths) {
    let id = path_param("conversation_id", "A conversation of this user (a UUID).");
    let user = query_user();
    let limit = query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), "");
    p.add(
        "get",
        "/conversations",
        json!({
            "operationId": "listConversations",
            "summary": "This user's conversations",
            "parameters": [
                user, limit,
                query_param("last_id", uuid_or_blank(), "The last conversation of the previous page."),
                query_param("sort_by", json!({"type": "string", "enum": ["created_at", "-created_at", "updated_at", "-updated_at"]}), ""),
            ],
            "responses": responses(&[(200, "A page of conversations", schema("ConversationPage"))], &[400, 401, 404, 429]),
        }),
    );
    p.add(
        "delete",
        "/conversations/{conversation_id}",
        json!({
            "operationId": "deleteConversation",
            "summary": "Delete a conversation of this user",
            "parameters": [id],
            "requestBody": json_body(json!({"type": "object", "properties": {"user": schema("OptionalUser")}})),
            "responses": {
                "204": {"description": "Deleted"},
                "400": super::error_response(400),
                "401": super::error_response(401),
                "404": super::error_response(404),
                "413": super::error_response(413),
                "429": super::error_response(429),
            },
        }),
    );
    p.add(
        "post",
        "/conversations/{conversation_id}/name",
        json!({
            "operationId": "renameConversation",
            "summary": "Rename a conversation (or have the model name it)",
            "parameters": [id],
            "requestBody": json_body(json!({
                "type": "object",
                "properties": {
                    "name": {"type": ["string", "null"], "description": "Required (not blank) unless auto_generate."},
                    "auto_generate": super::chat_messages::flag(),
                    "user": schema("OptionalUser"),
                },
            })),
            "responses": responses(&[(200, "The conversation", schema("Conversation"))], &[400, 401, 404, 413, 429]),
        }),
    );
    p.add(
        "get",
        "/conversations/{conversation_id}/variables",
        json!({
            "operationId": "listConversationVariables",
            "summary": "A chatflow conversation's variables",
            "parameters": [
                id,
                user,
                limit,
                query_param("last_id", uuid_or_blank(), "The last variable shown so far: the page starts after it (an unknown one: 400 with an empty message)."),
                query_param("variable_name", json!({"type": "string", "maxLength": 255, "pattern": "^[\\p{L}\\p{N}._-]+$"}), "Only variables whose name contains this, ignoring case."),
            ],
            "responses": responses(&[(200, "A page of variables", schema("ConversationVariablePage"))], &[400, 401, 404, 429]),
        }),
    );
}
