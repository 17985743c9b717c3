//! `routes/workflows.rs`: runs, run detail, stop and logs of workflow apps.

use serde_json::{json, Value};

use super::chat_messages::{files, generation_ok, stop_body};
use super::{json_body, path_param, query_param, responses, schema, Paths, COMMON_ERRORS};

fn run_body() -> Value {
    json!({
        "type": "object",
        "required": ["user"],
        "properties": {
            "inputs": {"anyOf": [schema("Inputs"), {"type": "null"}]},
            "user": schema("User"),
            "response_mode": schema("ResponseMode"),
            "files": files(),
            "trace_id": super::chat_messages::trace_id(),
        },
    })
}

pub fn paths(p: &mut Paths) {
    let mut r = responses(&[], &[400, 401, 404, 413, 429]);
    r["200"] = generation_ok("WorkflowRunResponse");
    p.add(
        "post",
        "/workflows/run",
        json!({
            "operationId": "runWorkflow",
            "summary": "Run the latest published workflow",
            "requestBody": json_body(run_body()),
            "responses": r,
        }),
    );
    p.add(
        "post",
        "/workflows/{workflow_id}/run",
        json!({
            "operationId": "runWorkflowVersion",
            "summary": "Run a given published version",
            "parameters": [{"name": "workflow_id", "in": "path", "required": true, "description": "A published version's id.", "schema": {"type": "string", "format": "uuid"}}],
            "requestBody": json_body(run_body()),
            "responses": r,
        }),
    );
    p.add(
        "get",
        "/workflows/run/{workflow_run_id}",
        json!({
            "operationId": "getWorkflowRun",
            "summary": "A workflow run's detail",
            "parameters": [path_param("workflow_run_id", "The run's id (a UUID).")],
            "responses": responses(&[(200, "The run", schema("WorkflowRunDetail"))], &[400, 401, 404, 429]),
        }),
    );
    p.add(
        "post",
        "/workflows/tasks/{task_id}/stop",
        json!({
            "operationId": "stopWorkflowTask",
            "summary": "Stop a workflow run (any user of the app; always answers success)",
            "parameters": [path_param("task_id", "The task_id of the run's frames.")],
            "requestBody": json_body(stop_body()),
            "responses": responses(&[(200, "Stop requested", schema("Result"))], COMMON_ERRORS),
        }),
    );
    p.add(
        "get",
        "/workflows/logs",
        json!({
            "operationId": "getWorkflowLogs",
            "summary": "Workflow runs, newest first, one page",
            "parameters": [
                query_param("keyword", json!({"type": "string"}), "Text searched in the runs' inputs and outputs."),
                query_param("status", json!({"type": "string", "enum": ["succeeded", "failed", "stopped", "partial-succeeded", "running"]}), ""),
                query_param("page", json!({"type": "integer", "minimum": 1, "maximum": 99999, "default": 1}), ""),
                query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), ""),
                query_param("created_at__before", json!({"type": "string", "format": "date-time"}), ""),
                query_param("created_at__after", json!({"type": "string", "format": "date-time"}), ""),
                query_param("created_by_end_user_session_id", json!({"type": "string"}), "A raw user string."),
                query_param("created_by_account", json!({"type": "string", "pattern": "^\\s*$"}), "Console accounts do not exist here: any value but a blank one is refused."),
            ],
            "responses": responses(&[(200, "A page of runs", schema("WorkflowLogs"))], &[400, 401, 429]),
        }),
    );
}
