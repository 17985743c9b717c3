//! `routes/annotations.rs`: annotations and annotation reply.

use serde_json::{json, Value};

use super::{error_response, json_body, path_param, query_param, responses, Paths};

fn annotation() -> Value {
    json!({
        "type": "object",
        "required": ["id", "question", "answer", "hit_count", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "question": {"type": "string"},
            "answer": {"type": "string"},
            "hit_count": {"type": "integer", "minimum": 0},
            "created_at": {"type": "integer"},
        },
    })
}

fn pair() -> Value {
    json_body(json!({
        "type": "object",
        "required": ["question", "answer"],
        // Numbers and booleans are read as their text, as Dify's `type=str` does.
        "properties": {"question": {"type": ["string", "number", "boolean"]}, "answer": {"type": ["string", "number", "boolean"]}},
    }))
}

fn job() -> Value {
    json!({
        "type": "object",
        "required": ["job_id", "job_status"],
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "job_status": {"enum": ["waiting", "processing", "completed", "error"]},
            "error_msg": {"type": "string"},
        },
    })
}

pub fn paths(p: &mut Paths) {
    let id = path_param("annotation_id", "An annotation of this app (a UUID).");
    let mut action = path_param("action", "`enable` or `disable` (anything else: 400 invalid_param).");
    action["schema"] = json!({"type": "string", "enum": ["enable", "disable"]});
    p.add(
        "get",
        "/apps/annotations",
        json!({
            "operationId": "listAnnotations",
            "summary": "This app's annotations, newest first; `keyword` filters question or answer",
            "parameters": [
                query_param("page", json!({"type": "string"}), "An integer; below 1 reads as 1, anything else as 1 (as Dify)."),
                query_param("limit", json!({"type": "string"}), "An integer (default 20; anything else reads as 20); at most 100 are shown; `has_more` is true when the page is full."),
                query_param("keyword", json!({"type": "string"}), "Case-insensitive substring of the question or the answer."),
            ],
            "responses": responses(&[(200, "A page of annotations", json!({
                "type": "object",
                "required": ["data", "has_more", "limit", "total", "page"],
                "properties": {
                    "data": {"type": "array", "items": annotation()},
                    "has_more": {"type": "boolean"},
                    "limit": {"type": "integer"},
                    "total": {"type": "integer"},
                    "page": {"type": "integer"},
                },
            }))], &[400, 401, 429]),
        }),
    );
    p.add(
        "post",
        "/apps/annotations",
        json!({
            "operationId": "createAnnotation",
            "summary": "Add a question→answer pair",
            "requestBody": pair(),
            "responses": responses(&[(201, "The annotation", annotation())], &[400, 401, 413, 429]),
        }),
    );
    p.add(
        "put",
        "/apps/annotations/{annotation_id}",
        json!({
            "operationId": "updateAnnotation",
            "summary": "Replace an annotation's question and answer",
            "parameters": [id.clone()],
            "requestBody": pair(),
            "responses": responses(&[(200, "The annotation", annotation())], &[400, 401, 404, 413, 429]),
        }),
    );
    p.add(
        "delete",
        "/apps/annotations/{annotation_id}",
        json!({
            "operationId": "deleteAnnotation",
            "summary": "Delete an annotation",
            "parameters": [id],
            "responses": {
                "204": {"description": "Deleted"},
                "401": error_response(401),
                "404": error_response(404),
                "429": error_response(429),
            },
        }),
    );
    p.add(
        "post",
        "/apps/annotation-reply/{action}",
        json!({
            "operationId": "annotationReplyAction",
            "summary": "Start a job turning annotation reply on (with these settings) or off",
            "parameters": [action.clone()],
            "requestBody": json_body(json!({
                "type": "object",
                "required": ["score_threshold", "embedding_provider_name", "embedding_model_name"],
                "properties": {
                    "score_threshold": {"type": "number"},
                    "embedding_provider_name": {"type": ["string", "number", "boolean"]},
                    "embedding_model_name": {"type": ["string", "number", "boolean"]},
                },
            })),
            "responses": responses(&[(200, "The job", job())], &[400, 401, 413, 429]),
        }),
    );
    p.add(
        "get",
        "/apps/annotation-reply/{action}/status/{job_id}",
        json!({
            "operationId": "annotationReplyJobStatus",
            "summary": "The state of an enable or disable job (kept for 10 minutes)",
            "parameters": [action, path_param("job_id", "A job of this app and action (a UUID).")],
            "responses": responses(&[(200, "The job's state", job())], &[400, 401, 429]),
        }),
    );
}
