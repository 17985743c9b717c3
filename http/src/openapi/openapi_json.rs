//! `GET /openapi.json` (served from `routes/mod.rs`): this document.

use serde_json::json;

use super::Paths;

pub fn paths(p: &mut Paths) {
    p.add(
        "get",
        "/openapi.json",
        json!({
            "operationId": "getOpenApi",
            "summary": "This OpenAPI document",
            "security": [],
            "responses": {"200": {"description": "The document", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }),
    );
}
