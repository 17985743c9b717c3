//! The OpenAPI 3.1 document of the Service API, served at `GET /v1/openapi.json`.
//!
//! One file here per route module (`routes/<module>.rs` ↔ `openapi/<module>.rs`),
//! each adding the operations its routes serve; [`MODULES`] lists them. To
//! document a new route module, add its file and one line to [`MODULES`].
//! Shared schemas (errors, files, usage, pages) live in [`schemas`].
//!
//! It cannot drift from the code unnoticed: `tests` (below) reads every
//! `warp::path!` route of the Service API's modules and requires the
//! document to list exactly those operations, and sends each documented
//! operation to the real router to see it routed (not 404/405). Schemathesis
//! (`.ci/run`) checks the schemas against a running server.

mod annotations;
mod app_info;
mod audio;
mod chat_messages;
mod completion_messages;
mod conversations;
mod feedbacks;
mod files;
mod messages;
mod openapi_json;
mod resume;
pub(crate) mod schemas;
mod workflows;

use serde_json::{json, Map, Value};

use crate::error::CODES;

/// Operations, by path and method.
#[derive(Default)]
pub struct Paths(Map<String, Value>);

impl Paths {
    /// Adds `method path` (path relative to `/v1`, parameters in braces).
    pub fn add(&mut self, method: &str, path: &str, operation: Value) {
        let entry = self.0.entry(path.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            m.insert(method.to_ascii_lowercase(), operation);
        }
    }
}

/// A route module's part of the document.
pub type Documenter = fn(&mut Paths);

/// Every Service API route module with the function documenting it. The
/// name is the module's file under `routes/` (`routes/openapi_json.rs`
/// serves the document itself).
pub const MODULES: &[(&str, Documenter)] = &[
    ("app_info", app_info::paths),
    ("chat_messages", chat_messages::paths),
    ("completion_messages", completion_messages::paths),
    ("conversations", conversations::paths),
    ("messages", messages::paths),
    ("files", files::paths),
    ("feedbacks", feedbacks::paths),
    ("audio", audio::paths),
    ("resume", resume::paths),
    ("workflows", workflows::paths),
    ("annotations", annotations::paths),
    ("openapi_json", openapi_json::paths),
];

/// The whole document.
pub fn document() -> Value {
    let mut paths = Paths::default();
    for (_, add) in MODULES {
        add(&mut paths);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferrify — Dify Service API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Dify's Service API as ferrify serves it. Every route is also served under /api. \
                Errors are Dify's envelope {code, message, status}. Generation endpoints answer JSON \
                (response_mode blocking, the default) or a text/event-stream (streaming).",
        },
        "servers": [{"url": "/v1"}],
        "security": [{"bearer": []}],
        "paths": Value::Object(paths.0),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An app API key, app-…"}},
            "schemas": schemas::all(),
        },
    })
}

/// A path parameter.
pub(crate) fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

/// A query parameter; a blank value means the parameter is absent.
pub(crate) fn query_param(name: &str, schema: Value, description: &str) -> Value {
    let schema = json!({"anyOf": [schema, {"type": "string", "pattern": "^\\s*$"}]});
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// A string that is a UUID, or blank (which means absent).
pub(crate) fn uuid_or_blank() -> Value {
    json!({"type": "string", "anyOf": [{"format": "uuid"}, {"pattern": "^\\s*$"}]})
}

/// A query `user` (absent or empty: the shared anonymous user).
pub(crate) fn query_user() -> Value {
    query_param("user", json!({"type": "string"}), "The end user (absent or empty: the shared anonymous user).")
}

/// A JSON request body.
pub(crate) fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// A `$ref` to a shared schema.
pub(crate) fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Responses: `ok` (status → (description, JSON schema)) plus the error statuses.
pub(crate) fn responses(ok: &[(u16, &str, Value)], errors: &[u16]) -> Value {
    let mut out = Map::new();
    for (status, description, schema) in ok {
        out.insert(
            status.to_string(),
            json!({"description": description, "content": {"application/json": {"schema": schema}}}),
        );
    }
    for status in errors {
        out.insert(status.to_string(), error_response(*status));
    }
    Value::Object(out)
}

/// The error envelope with the codes this status can carry.
pub(crate) fn error_response(status: u16) -> Value {
    let codes: Vec<&str> = CODES.iter().filter(|(s, _)| *s == status).map(|(_, c)| *c).collect();
    json!({
        "description": format!("Error ({})", codes.join(", ")),
        "content": {"application/json": {"schema": {
            "allOf": [schema("Error")],
            "properties": {"status": {"const": status}, "code": {"enum": codes}},
        }}},
    })
}

/// Errors every authenticated Service API operation can answer (bad key,
/// malformed body or query, limits).
pub(crate) const COMMON_ERRORS: &[u16] = &[400, 401, 413, 429];

/// A documented path: its template, segments and methods.
struct Route {
    template: String,
    segments: Vec<String>,
    methods: Vec<String>,
}

fn documented_routes() -> &'static [Route] {
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc = document();
        let mut out = Vec::new();
        for (p, ops) in doc["paths"].as_object().into_iter().flatten() {
            out.push(Route {
                template: p.clone(),
                segments: p.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                methods: ops.as_object().into_iter().flat_map(|m| m.keys()).map(|m| m.to_ascii_uppercase()).collect(),
            });
        }
        out
    })
}

/// The documented routes a request path (`/v1/…` or `/api/…`) matches.
fn matching(path: &str) -> impl Iterator<Item = &'static Route> {
    let rest = path.strip_prefix("/v1").or_else(|| path.strip_prefix("/api"));
    let given: Vec<String> = rest
        .map(|r| r.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let known = rest.is_some();
    documented_routes().iter().filter(move |r| {
        known
            && r.segments.len() == given.len()
            && r.segments.iter().zip(&given).all(|(s, g)| s.starts_with('{') || s == g)
    })
}

/// The methods the document allows on a request path (`/v1/…` or `/api/…`),
/// for the `Allow` header of a 405; None for paths it does not describe.
pub fn allowed_methods(path: &str) -> Option<String> {
    let mut methods: Vec<&str> = matching(path).flat_map(|r| r.methods.iter().map(String::as_str)).collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods.join(", "))
}

/// The documented template a request path matches, e.g. `/conversations/{conversation_id}/name`
/// (a literal segment wins over a parameter).
pub fn route_template(path: &str) -> Option<&'static str> {
    matching(path)
        .max_by_key(|r| r.segments.iter().filter(|s| !s.starts_with('{')).count())
        .map(|r| r.template.as_str())
}

#[cfg(test)]
mod tests;
