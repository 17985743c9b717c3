//! Reading requests the way Dify clients send them: lenient where real
//! clients are sloppy (empty strings and nulls mean absent, unknown fields
//! are ignored), strict where it matters (malformed JSON, wrong types, bad ids).

use std::collections::HashMap;

use serde_json::{Map, Value};
use uuid::Uuid;
use warp::Filter;

use crate::error::ApiError;

/// Largest JSON body accepted.
pub const MAX_BODY: u64 = 15 << 20;

/// A JSON object body (an empty body reads as `{}`).
pub fn json_body() -> impl Filter<Extract = (Map<String, Value>,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY)
        .and(warp::body::bytes())
        .and_then(|bytes: bytes::Bytes| async move { parse_object(&bytes).map_err(ApiError::reject) })
}

/// Parses a JSON object body.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid_param("The request body must be a JSON object.")),
        Err(_) => Err(ApiError::invalid_json()),
    }
}

/// The query string as a map (absent query = empty map; later duplicates win).
pub fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().map(|raw: String| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&raw).unwrap_or_default().into_iter().collect()
    })
}

/// A query parameter; empty values mean absent.
pub fn q<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query.get(name).map(|s| s.as_str()).filter(|s| !s.trim().is_empty())
}

/// A body field as a string: strings as is, numbers and booleans stringified, null/absent → None.
pub fn field_string(body: &Map<String, Value>, name: &str) -> Option<String> {
    match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => Some(other.to_string()),
    }
}

/// A required `user` (body): missing or empty → Dify's error.
pub fn required_user(body: &Map<String, Value>) -> Result<String, ApiError> {
    field_string(body, "user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::invalid_param("Arg user must be provided."))
}

/// An optional `user`: absent or empty → the shared anonymous user.
pub fn optional_user(user: Option<String>) -> String {
    user.filter(|u| !u.is_empty()).unwrap_or_else(|| "DEFAULT-USER".to_string())
}

/// An optional UUID field: absent, null or blank → None; malformed → `message`.
pub fn optional_uuid(value: Option<&str>, message: &str) -> Result<Option<Uuid>, ApiError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Uuid::parse_str(s).map(Some).map_err(|_| ApiError::invalid_param(message)),
    }
}

/// `limit` in `1..=max`, default `default`; out of range or not a number → invalid_param.
pub fn limit(query: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q(query, "limit") {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_param(format!("limit must be an integer between 1 and {max}"))),
        },
    }
}

/// A body boolean (`true`/`false`, tolerant of strings); absent → default.
pub fn field_bool(body: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ApiError::invalid_param(format!("{name} must be a boolean"))),
    }
}

/// `inputs`: absent/null → `{}`; anything but an object → invalid_param.
pub fn inputs_field(body: &Map<String, Value>) -> Result<Value, ApiError> {
    match body.get("inputs") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::invalid_param("inputs must be an object")),
    }
}

/// `files`: absent/null → `[]`; anything but a list → invalid_param.
pub fn files_field(body: &Map<String, Value>) -> Result<Value, ApiError> {
    match body.get("files") {
        None | Some(Value::Null) => Ok(Value::Array(Vec::new())),
        Some(v @ Value::Array(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::invalid_param("files must be a list")),
    }
}

/// `response_mode`: absent/null → blocking.
pub fn streaming(body: &Map<String, Value>) -> Result<bool, ApiError> {
    match body.get("response_mode") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s == "streaming" => Ok(true),
        Some(Value::String(s)) if s == "blocking" => Ok(false),
        Some(_) => Err(ApiError::invalid_param("response_mode must be 'streaming' or 'blocking'")),
    }
}

fn valid_trace_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// trace_id: header `X-Trace-Id` > query `trace_id` > body `trace_id`; the first
/// non-empty one is taken and dropped if it is not `[A-Za-z0-9_-]{1,128}`.
pub fn trace_id(header: Option<String>, query: &HashMap<String, String>, body: &Map<String, Value>) -> Option<String> {
    let first = header
        .filter(|h| !h.trim().is_empty())
        .or_else(|| q(query, "trace_id").map(str::to_string))
        .or_else(|| field_string(body, "trace_id").filter(|s| !s.trim().is_empty()))?;
    valid_trace_id(first.trim()).then(|| first.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_and_strict() {
        assert_eq!(parse_object(b"").unwrap(), Map::new());
        assert_eq!(parse_object(b"{bad").unwrap_err().code, "bad_request");
        assert_eq!(parse_object(b"[1]").unwrap_err().code, "invalid_param");
        let mut q = HashMap::new();
        q.insert("limit".to_string(), "".to_string());
        assert_eq!(limit(&q, 20, 100).unwrap(), 20);
        q.insert("limit".to_string(), "101".to_string());
        assert!(limit(&q, 20, 100).is_err());
        assert_eq!(optional_uuid(Some(" "), "x").unwrap(), None);
        assert!(optional_uuid(Some("nope"), "x").is_err());
        let body = parse_object(br#"{"trace_id":"abc","user":5}"#).unwrap();
        assert_eq!(trace_id(Some("bad id!".into()), &HashMap::new(), &body), None);
        assert_eq!(trace_id(None, &HashMap::new(), &body).as_deref(), Some("abc"));
        assert_eq!(required_user(&body).unwrap(), "5");
    }
}
