//! `routes/resume.rs`: resume a run's stream.

use serde_json::json;

use super::{path_param, query_param, query_user, responses, Paths};

pub fn paths(p: &mut Paths) {
    for (path, id, summary) in [
        ("/workflow/{task_id}/events", "resumeWorkflowStream", "Resume a workflow or advanced-chat run's stream"),
        ("/chat-messages/{task_id}/events", "resumeChatStream", "Resume a chat run's stream"),
        ("/completion-messages/{task_id}/events", "resumeCompletionStream", "Resume a completion run's stream"),
    ] {
        let mut r = responses(&[], &[400, 401, 404, 429]);
        r["200"] = json!({
            "description": "The run's SSE frames after the given one, byte-identical to the live stream; \
                follows a live run to its end",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        });
        p.add(
            "get",
            path,
            json!({
                "operationId": id,
                "summary": summary,
                "parameters": [
                    path_param("task_id", "The run's task_id (a UUID)."),
                    query_user(),
                    query_param("after", json!({"type": "integer", "minimum": 0}), "Continue after data frame N (1-based)."),
                    {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^\\s*[0-9]*\\s*$"},
                     "description": "Continue after data frame N; wins over `after`."},
                ],
                "responses": r,
            }),
        );
    }
}
