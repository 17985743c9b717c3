//! Shared schemas of the OpenAPI document (`components.schemas`).

use serde_json::{json, Value};

use crate::error::CODES;

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

/// Every shared schema by name.
pub fn all() -> Value {
    let mut codes: Vec<&str> = CODES.iter().map(|(_, c)| *c).collect();
    codes.sort_unstable();
    codes.dedup();
    json!({
        "Error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "string", "enum": codes},
                "message": {"type": "string"},
                "status": {"type": "integer"},
                "params": {"type": "string"},
            },
        },
        "Result": {
            "type": "object", "required": ["result"],
            "properties": {"result": {"const": "success"}},
        },
        "InputFile": {
            "type": "object",
            "description": "A file given to a run: an upload (local_file) or a URL (remote_url).",
            "required": ["type", "transfer_method"],
            "properties": {
                "type": {"type": "string", "enum": ["image", "document", "audio", "video", "custom"]},
                "transfer_method": {"type": "string", "enum": ["local_file", "remote_url"]},
                "upload_file_id": {"type": "string"},
                "url": {"type": "string"},
            },
        },
        "Inputs": {
            "type": "object",
            "description": "Values of the app's form variables (GET /parameters); undeclared keys are dropped.",
            "additionalProperties": true,
        },
        "ResponseMode": {
            "description": "blocking (the default when absent or null) answers JSON; streaming answers text/event-stream.",
            "enum": ["blocking", "streaming", null],
        },
        "User": {
            "description": "The end user's identifier, chosen by the integrator (numbers and true are read as text, as Python writes them; 0 and false are no user).",
            "type": ["string", "number", "boolean"],
            "minLength": 1,
            "not": {"enum": [0, false]},
        },
        "OptionalUser": {
            "description": "The end user; absent, null or empty: the app's shared anonymous user (DEFAULT-USER).",
            "type": ["string", "number", "boolean", "null"],
        },
        "Usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens", "total_price", "currency", "latency"],
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "prompt_unit_price": {"type": "string"},
                "prompt_price_unit": {"type": "string"},
                "prompt_price": {"type": "string"},
                "completion_tokens": {"type": "integer"},
                "completion_unit_price": {"type": "string"},
                "completion_price_unit": {"type": "string"},
                "completion_price": {"type": "string"},
                "total_tokens": {"type": "integer"},
                "total_price": {"type": "string"},
                "currency": {"type": "string"},
                "latency": {"type": "number"},
                "time_to_first_token": nullable("number"),
                "time_to_generate": nullable("number"),
            },
        },
        "ChatMessageResponse": {
            "type": "object",
            "description": "A blocking chat turn or completion (completions carry no conversation_id).",
            "required": ["event", "task_id", "id", "message_id", "mode", "answer", "metadata", "created_at"],
            "properties": {
                "event": {"const": "message"},
                "task_id": {"type": "string", "format": "uuid"},
                "id": {"type": "string", "format": "uuid"},
                "message_id": {"type": "string", "format": "uuid"},
                "conversation_id": {"type": "string", "format": "uuid"},
                "mode": {"type": "string"},
                "answer": {"type": "string"},
                "metadata": {
                    "type": "object",
                    "properties": {"usage": {"$ref": "#/components/schemas/Usage"}},
                },
                "created_at": {"type": "integer"},
            },
        },
        "WorkflowRunResponse": {
            "type": "object",
            "required": ["task_id", "workflow_run_id", "data"],
            "properties": {
                "task_id": {"type": "string", "format": "uuid"},
                "workflow_run_id": {"type": "string", "format": "uuid"},
                "data": {
                    "type": "object",
                    "required": ["id", "workflow_id", "status", "outputs", "error", "elapsed_time", "total_tokens", "total_steps", "created_at", "finished_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "workflow_id": {"type": "string"},
                        "status": {"type": "string", "enum": ["succeeded", "failed", "stopped", "partial-succeeded"]},
                        "outputs": {"type": ["object", "null"]},
                        "error": nullable("string"),
                        "elapsed_time": {"type": "number"},
                        "total_tokens": {"type": "integer"},
                        "total_steps": {"type": "integer"},
                        "created_at": {"type": "integer"},
                        "finished_at": {"type": "integer"},
                    },
                },
            },
        },
        "Conversation": {
            "type": "object",
            "required": ["id", "name", "inputs", "status", "introduction", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "inputs": {"type": "object"},
                "status": {"type": "string"},
                "introduction": {"type": "string"},
                "created_at": {"type": "integer"},
                "updated_at": {"type": "integer"},
            },
        },
        "ConversationPage": page("Conversation"),
        "Message": {
            "type": "object",
            "required": ["id", "conversation_id", "inputs", "query", "answer", "status", "created_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "conversation_id": nullable("string"),
                "parent_message_id": {"type": "string"},
                "inputs": {"type": "object"},
                "query": {"type": "string"},
                "answer": {"type": "string"},
                "status": {"type": "string", "enum": ["normal", "error"]},
                "error": nullable("string"),
                "message_files": {"type": "array"},
                "feedback": {"type": ["object", "null"]},
                "retriever_resources": {"type": "array"},
                "agent_thoughts": {"type": "array"},
                "created_at": {"type": "integer"},
                "message_tokens": {"type": "integer"},
                "answer_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "provider_response_latency": {"type": "number"},
                "total_price": nullable("string"),
                "currency": nullable("string"),
            },
        },
        "MessagePage": page("Message"),
        "ConversationVariable": {
            "type": "object",
            "required": ["id", "name", "value_type", "value", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "value_type": {"type": "string"},
                "value": {"type": "string"},
                "description": {"type": "string"},
                "created_at": {"type": "integer"},
                "updated_at": {"type": "integer"},
            },
        },
        "ConversationVariablePage": page("ConversationVariable"),
        "WorkflowRunDetail": {
            "type": "object",
            "required": ["id", "workflow_id", "status", "inputs", "outputs", "error", "total_steps", "total_tokens", "created_at", "finished_at", "elapsed_time"],
            "properties": {
                "id": {"type": "string"},
                "workflow_id": nullable("string"),
                "status": {"type": "string", "enum": ["running", "succeeded", "failed", "stopped", "partial-succeeded"]},
                "inputs": {"type": "string", "description": "The stored inputs as JSON text."},
                "outputs": {"type": "object"},
                "error": nullable("string"),
                "total_steps": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "created_at": {"type": "integer"},
                "finished_at": nullable("integer"),
                "elapsed_time": {"type": "number"},
            },
        },
        "WorkflowLogs": {
            "type": "object",
            "required": ["page", "limit", "total", "has_more", "data"],
            "properties": {
                "page": {"type": "integer"},
                "limit": {"type": "integer"},
                "total": {"type": "integer"},
                "has_more": {"type": "boolean"},
                "data": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "workflow_run", "created_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "workflow_run": {"type": "object"},
                        "created_from": {"type": "string"},
                        "created_by_role": {"type": "string"},
                        "created_by_end_user": {"type": ["object", "null"]},
                        "created_at": {"type": "integer"},
                    },
                }},
            },
        },
    })
}

/// A cursor page of `item`s.
fn page(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["limit", "has_more", "data"],
        "properties": {
            "limit": {"type": "integer"},
            "has_more": {"type": "boolean"},
            "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        },
    })
}
