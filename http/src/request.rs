//! Reading requests the way Dify clients send them: lenient where real
//! clients are sloppy (empty strings and nulls mean absent, unknown fields
//! are ignored), strict where it matters (malformed JSON, wrong types, bad ids).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::Filter;

use crate::error::ApiError;
use crate::limits::Limits;

/// Largest JSON body accepted by default (`limits.max_body_bytes`).
pub const MAX_BODY: u64 = 15 << 20;

/// The limits of this request: those the server put in the request's
/// extensions, or the defaults (`warp::test` requests).
pub fn limits() -> impl Filter<Extract = (Arc<Limits>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<Arc<Limits>>().map(|l: Option<Arc<Limits>>| l.unwrap_or_default())
}

/// A JSON object body (an empty body reads as `{}`), at most
/// `limits.max_body_bytes` long and received within `limits.request_timeout_secs`.
pub fn json_body() -> impl Filter<Extract = (Map<String, Value>,), Error = warp::Rejection> + Clone {
    body_bytes().and_then(|bytes: bytes::Bytes| async move { parse_object(&bytes).map_err(ApiError::reject) })
}

/// A whole request body, within the request's limits: a declared length
/// over the limit is refused before anything is read; a chunked body is
/// refused as soon as it passes the limit.
pub fn body_bytes() -> impl Filter<Extract = (bytes::Bytes,), Error = warp::Rejection> + Clone {
    limits().and(warp::header::optional::<u64>("content-length")).and(warp::body::stream()).and_then(
        |limits: Arc<Limits>, length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > limits.max_body_bytes) {
                return Err(limits.body_too_large().reject());
            }
            match tokio::time::timeout(limits.request_timeout, read_capped(body, limits.max_body_bytes)).await {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(ReadError::TooLarge)) => Err(limits.body_too_large().reject()),
                Ok(Err(ReadError::Broken)) => {
                    Err(ApiError::bad_request("The request body could not be read (truncated or malformed).").reject())
                }
                Err(_) => Err(limits.body_timeout().reject()),
            }
        },
    )
}

enum ReadError {
    TooLarge,
    Broken,
}

async fn read_capped<S, B>(body: S, max: u64) -> Result<bytes::Bytes, ReadError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = BytesMut::new();
    futures_util::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ReadError::Broken)?;
        if (out.len() + chunk.remaining()) as u64 > max {
            return Err(ReadError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
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

/// The query string as a map (absent query = empty map; later duplicates
/// win). A name or value that does not decode to UTF-8 is refused rather
/// than mangled: two different `user` values must never read as one.
pub fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = warp::Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move { parse_query(&raw).map_err(ApiError::reject) })
}

/// Parses `application/x-www-form-urlencoded` text strictly (see [`query`]).
pub fn parse_query(raw: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(ApiError::invalid_param("The query string is not valid UTF-8 once decoded."));
        };
        out.insert(k, v);
    }
    Ok(out)
}

/// `+` is a space, `%XX` a byte; a `%` not followed by two hex digits stays as written.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// An SSE cursor (the `Last-Event-ID` header or the `after` query value,
/// named `name` in errors): the 1-based index of the last data frame the
/// client has; blank means none yet (0). Anything but decimal digits
/// (surrounding blanks allowed) is refused; a number too large for u64 is
/// past the end of any run and reads as `u64::MAX`.
pub fn cursor(name: &str, value: &str) -> Result<u64, ApiError> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if v.is_empty() {
        return Ok(0);
    }
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(format!("{name} must be a non-negative integer.")));
    }
    Ok(v.parse::<u64>().unwrap_or(u64::MAX))
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

/// The body's `user`: strings as is, numbers and `true` as text (as Dify's
/// Python stringifies them: `true` is `True`); null, absent and the falsy
/// `0` and `false` → None, as Dify's `if not user` has it; a list or object is
/// refused rather than turned into a user called `{}`.
pub fn user_field(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("user") {
        Some(Value::Array(_) | Value::Object(_)) => Err(ApiError::invalid_param("user must be a string")),
        Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some("True".into())),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(None),
        _ => Ok(field_string(body, "user")),
    }
}

/// A required `user` (body): missing or empty → Dify's error.
pub fn required_user(body: &Map<String, Value>) -> Result<String, ApiError> {
    user_field(body)?.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::invalid_param("Arg user must be provided."))
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

/// `page` of at least 1, default 1. A page past any real one (even past `usize`) is valid and
/// simply empty, as Dify's integer `page` is; zero, negatives and non-numbers → invalid_param.
pub fn page(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    let Some(s) = q(query, "page") else { return Ok(1) };
    let digits = s.trim().strip_prefix('+').unwrap_or(s.trim());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param("page must be an integer of at least 1"));
    }
    match digits.parse::<usize>() {
        Ok(0) => Err(ApiError::invalid_param("page must be an integer of at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Ok(usize::MAX),
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
    // What Dify's request models (pydantic, lax mode) take for a boolean.
    const TRUE: [&str; 6] = ["true", "1", "yes", "y", "on", "t"];
    const FALSE: [&str; 6] = ["false", "0", "no", "n", "off", "f"];
    let word = |s: &str, words: &[&str]| words.iter().any(|w| s.eq_ignore_ascii_case(w));
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Ok(true),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(false),
        Some(Value::String(s)) if word(s, &TRUE) => Ok(true),
        Some(Value::String(s)) if word(s, &FALSE) => Ok(false),
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

/// `files`: absent/null → `[]`; anything but a list of objects → invalid_param.
pub fn files_field(body: &Map<String, Value>) -> Result<Value, ApiError> {
    match body.get("files") {
        None | Some(Value::Null) => Ok(Value::Array(Vec::new())),
        // As Dify's request models: a list of objects (what is in them is
        // checked against the app's upload settings).
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => Ok(Value::Array(items.clone())),
        Some(_) => Err(ApiError::invalid_param("files must be a list of objects")),
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
    use serde_json::json;

    #[test]
    fn booleans_are_read_as_dify_reads_them() {
        let read = |v: Value| field_bool(json!({"b": v}).as_object().unwrap(), "b", true).map_err(|e| e.code);
        for (v, want) in [
            (json!(false), Ok(false)),
            (json!("yes"), Ok(true)),
            (json!("Off"), Ok(false)),
            (json!(1), Ok(true)),
            (json!(0), Ok(false)),
            (json!("TRUE"), Ok(true)),
            (json!(null), Ok(true)),
        ] {
            assert_eq!(read(v.clone()), want, "{v}");
        }
        for v in [json!(2), json!("maybe"), json!(""), json!(" yes"), json!([true]), json!({})] {
            assert_eq!(read(v.clone()), Err("invalid_param"), "{v}");
        }
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let chunks = |n: usize| {
            futures_util::stream::iter(
                (0..n).map(|_| Ok::<_, warp::Error>(bytes::Bytes::from_static(&[b'x'; 1000]))).collect::<Vec<_>>(),
            )
        };
        assert_eq!(read_capped(chunks(10), 10_000).await.ok().map(|b| b.len()), Some(10_000));
        assert!(matches!(read_capped(chunks(11), 10_000).await, Err(ReadError::TooLarge)));
        assert!(matches!(read_capped(chunks(0), 0).await, Ok(b) if b.is_empty()));
    }

    #[test]
    fn pages_are_any_integer_of_at_least_one() {
        let page_of = |v: &str| page(&HashMap::from([("page".to_string(), v.to_string())])).map_err(|e| e.code);
        assert_eq!(page(&HashMap::new()).ok(), Some(1));
        assert_eq!(page_of(" 7 ").ok(), Some(7));
        assert_eq!(page_of("+2").ok(), Some(2));
        assert_eq!(page_of("1774686597264147306512384").ok(), Some(usize::MAX));
        for bad in ["0", "000", "-1", "x", "1.5", "+", "1e3"] {
            assert_eq!(page_of(bad).err(), Some("invalid_param"), "{bad}");
        }
    }

    #[test]
    fn queries_decode_strictly() {
        let q = parse_query("user=a%20b&x=%41+c&flag&empty=&pct=100%").unwrap();
        assert_eq!(q["user"], "a b");
        assert_eq!(q["x"], "A c");
        assert_eq!(q["flag"], "");
        assert_eq!(q["pct"], "100%");
        assert_eq!(parse_query("user=%FF").unwrap_err().code, "invalid_param");
        assert_eq!(parse_query("%C3%A9=%E2%82%AC").unwrap()["é"], "€");
    }

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
