//! `routes/app_info.rs`: `GET /`, `/info`, `/parameters`, `/meta`, `/site`.

use serde_json::json;

use super::{responses, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "get",
        "/",
        json!({
            "operationId": "welcome",
            "summary": "The API's welcome (no key needed)",
            "security": [],
            "responses": {"200": {"description": "Welcome", "content": {"application/json": {"schema": {
                "type": "object", "required": ["welcome", "api_version", "server_version"],
                "properties": {"welcome": {"type": "string"}, "api_version": {"type": "string"}, "server_version": {"type": "string"}},
            }}}}},
        }),
    );
    let get = |id: &str, summary: &str, schema: serde_json::Value| json!({"operationId": id, "summary": summary, "responses": responses(&[(200, summary, schema)], &[401, 429])});
    p.add(
        "get",
        "/info",
        get(
            "getAppInfo",
            "The app's name, description, tags and mode",
            json!({"type": "object", "required": ["name", "description", "tags", "mode", "author_name"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                "mode": {"type": "string", "enum": ["chat", "agent-chat", "advanced-chat", "completion", "workflow"]},
                "author_name": {"type": "string"},
            }}),
        ),
    );
    p.add(
        "get",
        "/parameters",
        get(
            "getAppParameters",
            "The app's input form and features",
            json!({"type": "object", "required": ["opening_statement", "suggested_questions", "user_input_form", "file_upload", "system_parameters"], "properties": {
                "opening_statement": {"type": "string"},
                "suggested_questions": {"type": "array"},
                "suggested_questions_after_answer": {"type": "object"},
                "speech_to_text": {"type": "object"},
                "text_to_speech": {"type": "object"},
                "retriever_resource": {"type": "object"},
                "annotation_reply": {"type": "object"},
                "more_like_this": {"type": "object"},
                "sensitive_word_avoidance": {"type": "object"},
                "user_input_form": {"type": "array", "items": {"type": "object"}},
                "file_upload": {"type": "object"},
                "system_parameters": {"type": "object"},
            }}),
        ),
    );
    p.add(
        "get",
        "/meta",
        get(
            "getAppMeta",
            "Icons of the app's tools",
            json!({"type": "object", "required": ["tool_icons"], "properties": {"tool_icons": {"type": "object"}}}),
        ),
    );
    p.add(
        "get",
        "/site",
        get(
            "getAppSite",
            "The app's WebApp settings",
            json!({"type": "object", "required": ["title", "icon_type", "default_language"], "properties": {
                "title": {"type": "string"}, "icon_type": {"type": ["string", "null"]}, "icon": {"type": ["string", "null"]},
                "icon_background": {"type": ["string", "null"]}, "description": {"type": ["string", "null"]},
                "default_language": {"type": "string"}, "show_workflow_steps": {"type": "boolean"},
            }}),
        ),
    );
}
