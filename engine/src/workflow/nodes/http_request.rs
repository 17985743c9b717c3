//! `http-request`: one HTTP call, with `{{#…#}}` templates in the URL,
//! headers, params, authorization key and body (rendered in the `text`
//! flavour).
//!
//! Outputs `status_code`, `body` (text), `headers` (lower-case names,
//! string values) and `files` (a binary response becomes one file entry and
//! an empty body). A non-2xx status is a success; network errors and
//! timeouts fail the node (the engine applies `retry_config` and the error
//! strategy). Requests go through the private-network guard
//! ([`crate::workflow::net`]). On re-execution the request is built as
//! usual but not sent: the response is the recorded one
//! ([`crate::workflow::replay`]).

use std::time::Duration;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Client, Method, Url};
use serde_json::{json, Map, Value};

use super::document_extractor::load_file;
use super::{selector_text, Node, NodeCx, NodeError, NodeRun};
use crate::workflow::graph::scalar;
use crate::workflow::net;
use crate::workflow::pool::{is_file, selector_of, Pool};
use crate::workflow::replay::Served;
use crate::workflow::template::render;

/// Default and largest timeouts, in seconds.
const CONNECT: (f64, f64) = (10.0, 60.0);
const READ: (f64, f64) = (60.0, 600.0);
const WRITE: (f64, f64) = (20.0, 600.0);
/// Largest text and binary response bodies (Dify's defaults).
const MAX_TEXT: usize = 1024 * 1024;
const MAX_BINARY: usize = 10 * 1024 * 1024;
/// Request body bytes shown in `process_data.request`.
const LOG_BODY: usize = 2048;

const ERROR: &str = "HttpRequestNodeError";

/// Request headers in order, names as written.
type Headers = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum BodyKind {
    None,
    FormData,
    UrlEncoded,
    RawText,
    Json,
    Binary,
}

#[derive(Clone, Debug)]
struct Item {
    key: String,
    is_file: bool,
    value: String,
    file: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
enum Auth {
    None,
    ApiKey { kind: String, key: String, header: String },
}

pub struct HttpRequest {
    method: Method,
    url: String,
    headers: String,
    params: String,
    body: BodyKind,
    items: Vec<Item>,
    auth: Auth,
    connect: Duration,
    read: Duration,
    write: Duration,
    ssl_verify: bool,
}

/// A timeout in seconds: the default when absent or not positive, capped.
fn seconds(v: Option<&Value>, (default, max): (f64, f64)) -> Duration {
    let n = match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let secs = n.filter(|n| n.is_finite() && *n > 0.0).unwrap_or(default).min(max);
    Duration::from_secs_f64(secs)
}

/// `key:value` lines (blank lines skipped; a line without `:` has an empty value).
fn lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn parse_items(kind: BodyKind, data: Option<&Value>) -> Vec<Item> {
    match data {
        Some(Value::Array(list)) => list
            .iter()
            .filter(|i| i.is_object())
            .map(|i| Item {
                key: scalar(i.get("key")),
                is_file: i.get("type").and_then(Value::as_str) == Some("file"),
                value: scalar(i.get("value")),
                file: i.get("file").and_then(selector_of),
            })
            .collect(),
        // Older exports: a string; form bodies as `key:value` lines.
        Some(Value::String(s)) if !s.is_empty() => match kind {
            BodyKind::FormData | BodyKind::UrlEncoded => {
                lines(s).into_iter().map(|(key, value)| Item { key, is_file: false, value, file: None }).collect()
            }
            _ => vec![Item { key: String::new(), is_file: false, value: s.clone(), file: None }],
        },
        _ => Vec::new(),
    }
}

impl HttpRequest {
    pub fn compile(data: &Value) -> Result<HttpRequest, String> {
        let method_text = scalar(data.get("method")).trim().to_ascii_lowercase();
        let method = match method_text.as_str() {
            "" | "get" => Method::GET,
            "post" => Method::POST,
            "put" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" => Method::DELETE,
            "head" => Method::HEAD,
            "options" => Method::OPTIONS,
            other => return Err(format!("http-request: unsupported method {other:?}")),
        };
        let body_data = data.get("body").filter(|b| b.is_object());
        let body = match body_data.map(|b| scalar(b.get("type"))).unwrap_or_default().as_str() {
            "" | "none" => BodyKind::None,
            "form-data" => BodyKind::FormData,
            "x-www-form-urlencoded" => BodyKind::UrlEncoded,
            "raw-text" => BodyKind::RawText,
            "json" => BodyKind::Json,
            "binary" => BodyKind::Binary,
            other => return Err(format!("http-request: unsupported body type {other:?}")),
        };
        let items = parse_items(body, body_data.and_then(|b| b.get("data")));
        let auth_data = data.get("authorization").filter(|a| a.is_object());
        let auth = match auth_data.map(|a| scalar(a.get("type"))).unwrap_or_default().as_str() {
            "api-key" => {
                let config = auth_data.and_then(|a| a.get("config")).filter(|c| c.is_object());
                let header = config.map(|c| scalar(c.get("header"))).unwrap_or_default().trim().to_string();
                Auth::ApiKey {
                    kind: config.map(|c| scalar(c.get("type"))).unwrap_or_default().to_ascii_lowercase(),
                    key: config.map(|c| scalar(c.get("api_key"))).unwrap_or_default(),
                    header: if header.is_empty() { "Authorization".into() } else { header },
                }
            }
            _ => Auth::None,
        };
        let timeout = data.get("timeout").filter(|t| t.is_object());
        Ok(HttpRequest {
            method,
            url: scalar(data.get("url")),
            headers: scalar(data.get("headers")),
            params: scalar(data.get("params")),
            body,
            items,
            auth,
            connect: seconds(timeout.and_then(|t| t.get("connect")), CONNECT),
            read: seconds(timeout.and_then(|t| t.get("read")), READ),
            write: seconds(timeout.and_then(|t| t.get("write")), WRITE),
            ssl_verify: data.get("ssl_verify").and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// A request body and the content type it implies.
#[derive(Debug, Default)]
struct Body {
    bytes: Option<Vec<u8>>,
    content_type: Option<String>,
    /// Whether `content_type` replaces one given in the headers (multipart boundary).
    forced: bool,
}

/// Escapes raw control characters inside JSON string literals (Python's
/// `json.loads(strict=False)` accepts them; rendered templates often hold newlines).
fn escape_controls_in_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if (c as u32) < 0x20 {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push_str(&format!("\\u{:04x}", c as u32)),
                }
                continue;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// A name or filename safe inside a multipart header's quotes.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .map(|c| if c == '"' { "%22".to_string() } else { c.to_string() })
        .collect()
}

/// The files a selector points at (a file or a list of files).
fn files_at(pool: &Pool, selector: &[String]) -> Result<Vec<Value>, NodeError> {
    match pool.get(selector) {
        Some(Value::Array(items)) if items.iter().all(is_file) => Ok(items),
        Some(v) if is_file(&v) => Ok(vec![v]),
        Some(Value::Null) | None => Err(NodeError::new(
            "FileFetchError",
            format!("cannot fetch file with selector {}", selector_text(selector)),
        )),
        Some(_) => Err(NodeError::new("FileFetchError", format!("{} is not a file", selector_text(selector)))),
    }
}

/// A file's bytes, MIME type and name, for request bodies.
async fn file_part(file: &Value, cx: &NodeCx<'_>) -> Result<(Vec<u8>, String, String), NodeError> {
    let loaded = load_file(file, &cx.run.engine, cx.run.app_id)
        .await
        .map_err(|e| NodeError::new("FileFetchError", format!("cannot read the file for the request body: {e}")))?;
    let mime = file
        .get("mime_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(loaded.content_type)
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = file
        .get("filename")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(loaded.filename)
        .unwrap_or_else(|| "file".into());
    Ok((loaded.bytes, mime, name))
}

impl HttpRequest {
    async fn body(&self, cx: &NodeCx<'_>) -> Result<Body, NodeError> {
        let pool = cx.pool.as_ref();
        let first = || self.items.iter().find(|i| !i.is_file).map(|i| render(&i.value, pool)).unwrap_or_default();
        Ok(match self.body {
            BodyKind::None => Body::default(),
            BodyKind::RawText => {
                Body { bytes: Some(first().into_bytes()), content_type: Some("text/plain".into()), forced: false }
            }
            BodyKind::Json => {
                let text = first();
                if text.trim().is_empty() {
                    return Ok(Body { bytes: None, content_type: Some("application/json".into()), forced: false });
                }
                let value: Value = serde_json::from_str(&escape_controls_in_strings(&text)).map_err(|e| {
                    NodeError::new("RequestBodyError", format!("Failed to parse JSON: {e}: {}", clip(&text, 200)))
                })?;
                let bytes =
                    serde_json::to_vec(&value).map_err(|e| NodeError::new("RequestBodyError", e.to_string()))?;
                Body { bytes: Some(bytes), content_type: Some("application/json".into()), forced: false }
            }
            BodyKind::UrlEncoded => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for item in self.items.iter().filter(|i| !i.is_file) {
                    form.append_pair(&render(&item.key, pool), &render(&item.value, pool));
                }
                Body {
                    bytes: Some(form.finish().into_bytes()),
                    content_type: Some("application/x-www-form-urlencoded".into()),
                    forced: false,
                }
            }
            BodyKind::FormData => {
                let boundary = recorded_boundary(&cx.served)
                    .unwrap_or_else(|| format!("----ferrify{}", uuid::Uuid::new_v4().simple()));
                let mut out: Vec<u8> = Vec::new();
                for item in &self.items {
                    let key = quoted(&render(&item.key, pool));
                    if item.is_file {
                        let selector = item.file.as_deref().ok_or_else(|| {
                            NodeError::new(
                                "RequestBodyError",
                                format!("form-data file item {key:?} has no file selector"),
                            )
                        })?;
                        for file in files_at(pool, selector)? {
                            let (bytes, mime, name) = file_part(&file, cx).await?;
                            out.extend_from_slice(
                                format!(
                                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                                    quoted(&name),
                                    quoted(&mime)
                                )
                                .as_bytes(),
                            );
                            out.extend_from_slice(&bytes);
                            out.extend_from_slice(b"\r\n");
                        }
                    } else {
                        out.extend_from_slice(
                            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n")
                                .as_bytes(),
                        );
                        out.extend_from_slice(render(&item.value, pool).as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                Body {
                    bytes: Some(out),
                    content_type: Some(format!("multipart/form-data; boundary={boundary}")),
                    forced: true,
                }
            }
            BodyKind::Binary => {
                let selector = self.items.iter().find_map(|i| i.file.as_deref()).ok_or_else(|| {
                    NodeError::new("RequestBodyError", "binary body has no file selected (body.data[0].file)")
                })?;
                let files = files_at(pool, selector)?;
                let file = files.first().ok_or_else(|| {
                    NodeError::new("FileFetchError", format!("no file at {}", selector_text(selector)))
                })?;
                let (bytes, mime, _) = file_part(file, cx).await?;
                Body { bytes: Some(bytes), content_type: Some(mime), forced: false }
            }
        })
    }

    /// Whether the body carries files (which only the live request reads).
    fn body_has_files(&self) -> bool {
        self.body == BodyKind::Binary || (self.body == BodyKind::FormData && self.items.iter().any(|i| i.is_file))
    }

    fn url(&self, pool: &Pool) -> Result<Url, NodeError> {
        let text = render(&self.url, pool);
        let text = text.trim();
        if text.is_empty() {
            return Err(NodeError::new("InvalidURLError", "url is required"));
        }
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(NodeError::new(
                "InvalidURLError",
                format!("url should start with http:// or https://: {text}"),
            ));
        }
        let mut url = net::parse_url(text).map_err(|e| NodeError::new("InvalidURLError", e))?;
        let params: Vec<(String, String)> =
            lines(&self.params).into_iter().map(|(k, v)| (render(&k, pool), render(&v, pool))).collect();
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &params {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The request headers (templates rendered, authorization added) and the
    /// name of the header holding the credentials, if any.
    fn headers(&self, pool: &Pool) -> Result<(Headers, Option<String>), NodeError> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let set = |headers: &mut Vec<(String, String)>, k: String, v: String| {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        };
        for (k, v) in lines(&self.headers) {
            let k = render(&k, pool).trim().to_string();
            if !k.is_empty() {
                let v = render(&v, pool).trim().to_string();
                set(&mut headers, k, v);
            }
        }
        let mut secret = None;
        if let Auth::ApiKey { kind, key, header } = &self.auth {
            let key = render(key, pool);
            let value = match kind.as_str() {
                "bearer" => (!key.is_empty()).then(|| format!("Bearer {key}")),
                "basic" => (!key.is_empty()).then(|| {
                    if key.contains(':') {
                        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
                    } else {
                        format!("Basic {key}")
                    }
                }),
                "custom" => Some(key),
                other => {
                    return Err(NodeError::new(
                        "AuthorizationConfigError",
                        format!("authorization config type must be bearer, basic or custom, got {other:?}"),
                    ))
                }
            };
            if let Some(v) = value {
                set(&mut headers, header.clone(), v);
                secret = Some(header.clone());
            }
        }
        Ok((headers, secret))
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The raw request as `process_data.request` shows it (credentials masked).
fn request_log(method: &Method, url: &Url, headers: &[(String, String)], secret: Option<&str>, body: &Body) -> String {
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", url.host_str().unwrap_or(""));
    for (k, v) in headers {
        let shown =
            if secret.is_some_and(|s| s.eq_ignore_ascii_case(k)) { "*".repeat(v.len().min(16)) } else { v.clone() };
        out.push_str(&format!("{k}: {shown}\r\n"));
    }
    out.push_str("\r\n");
    if let Some(bytes) = &body.bytes {
        match std::str::from_utf8(bytes) {
            Ok(text) => out.push_str(&clip(text, LOG_BODY)),
            Err(_) => out.push_str(&format!("<{} bytes of binary data>", bytes.len())),
        }
    }
    out
}

/// The multipart boundary of the recorded request (re-execution repeats it,
/// so that the request log comes out the same).
fn recorded_boundary(served: &Served) -> Option<String> {
    let log = served.process_data()?.get("request")?.as_str()?;
    let start = log.find("boundary=----ferrify")? + "boundary=".len();
    Some(log[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect())
}

/// Whether a response is a file (binary) rather than text.
fn is_file_response(content_type: &str, disposition: Option<&str>) -> bool {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let textual = ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.contains("yaml")
        || ct.contains("graphql")
        || ct == "application/x-www-form-urlencoded";
    if let Some(d) = disposition {
        let d = d.trim().to_ascii_lowercase();
        if d.starts_with("attachment") || (d.contains("filename") && !textual) {
            return true;
        }
    }
    if ct.is_empty() || textual {
        return false;
    }
    ["image/", "audio/", "video/", "application/", "font/", "model/"].iter().any(|p| ct.starts_with(p))
}

/// The extension (with dot) of a MIME type, for files without a name.
fn mime_extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "image/svg+xml" => ".svg",
        "application/pdf" => ".pdf",
        "application/zip" => ".zip",
        "audio/mpeg" => ".mp3",
        "audio/wav" | "audio/x-wav" => ".wav",
        "video/mp4" => ".mp4",
        _ => ".bin",
    }
}

/// A file entry for a binary response (its bytes are not stored: the entry
/// points back at the URL for GET requests only, where fetching it again
/// gives the same file).
fn file_entry(url: &Url, method: &Method, mime: &str, disposition: Option<&str>, size: usize) -> Value {
    let mime = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mime = if mime.is_empty() { "application/octet-stream".to_string() } else { mime };
    let filename = disposition
        .and_then(net::disposition_filename)
        .or_else(|| net::url_filename(url).filter(|n| n.contains('.')))
        .unwrap_or_else(|| format!("file{}", mime_extension(&mime)));
    let extension = filename.rsplit_once('.').map(|(_, e)| format!(".{}", e.to_ascii_lowercase())).unwrap_or_default();
    let kind = match mime.split('/').next().unwrap_or("") {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        _ if matches!(extension.as_str(), ".pdf" | ".docx" | ".doc" | ".txt" | ".csv" | ".xlsx" | ".pptx" | ".md") => {
            "document"
        }
        _ => "custom",
    };
    let link = (*method == Method::GET).then(|| url.to_string());
    json!({
        "dify_model_identity": "__dify__file__",
        "id": null,
        "tenant_id": null,
        "type": kind,
        "transfer_method": "remote_url",
        "remote_url": link,
        "related_id": null,
        "filename": filename,
        "extension": extension,
        "mime_type": mime,
        "size": size,
        "url": link,
    })
}

fn send_error(e: &reqwest::Error, timeouts: (Duration, Duration, Duration)) -> NodeError {
    let text = net::error_text(e);
    if e.is_timeout() {
        let (c, r, w) = timeouts;
        return NodeError::new(
            ERROR,
            format!(
                "Request timed out (connect {}s, read {}s, write {}s): {text}",
                c.as_secs_f64(),
                r.as_secs_f64(),
                w.as_secs_f64()
            ),
        );
    }
    NodeError::new(ERROR, format!("Request failed: {text}"))
}

impl Node for HttpRequest {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let pool = cx.pool.as_ref();
            let url = self.url(pool)?;
            let (mut headers, secret) = self.headers(pool)?;
            if cx.served.is_replay() && self.body_has_files() {
                // Re-execution: the recorded request log and response, without reading the files again.
                let process_data = cx.served.process_data().cloned().unwrap_or_else(|| json!({}));
                let outputs = cx.served.outputs()?;
                return Ok(NodeRun { inputs: json!({}), process_data, outputs, ..NodeRun::default() });
            }
            let body = self.body(cx).await?;
            if let Some(ct) = &body.content_type {
                let given = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
                if body.forced || (!given && body.bytes.is_some()) {
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                    headers.push(("Content-Type".into(), ct.clone()));
                }
            }
            let mut header_map = HeaderMap::new();
            for (k, v) in &headers {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    NodeError::new("InvalidHttpRequestHeaderError", format!("invalid header name {k:?}"))
                })?;
                let value = HeaderValue::from_str(v).map_err(|_| {
                    NodeError::new("InvalidHttpRequestHeaderError", format!("invalid value of header {k:?}"))
                })?;
                header_map.insert(name, value);
            }
            let mut process = Map::new();
            process
                .insert("request".into(), request_log(&self.method, &url, &headers, secret.as_deref(), &body).into());
            if cx.served.is_replay() {
                // Re-execution: the request is built as it would be sent; the response is the recorded one.
                let outputs = cx.served.outputs()?;
                return Ok(NodeRun {
                    inputs: json!({}),
                    process_data: Value::Object(process),
                    outputs,
                    ..NodeRun::default()
                });
            }

            let builder = Client::builder()
                .connect_timeout(self.connect)
                .read_timeout(self.read)
                .timeout(self.connect + self.read + self.write)
                .danger_accept_invalid_certs(!self.ssl_verify)
                .user_agent(concat!("ferrify/", env!("CARGO_PKG_VERSION")));
            let client =
                net::client_for(&url, &cx.run.settings, builder).await.map_err(|e| NodeError::new(ERROR, e))?;
            let mut request = client.request(self.method.clone(), url.clone()).headers(header_map);
            if let Some(bytes) = body.bytes {
                request = request.body(bytes);
            }
            let timeouts = (self.connect, self.read, self.write);
            let mut resp = request.send().await.map_err(|e| send_error(&e, timeouts))?;

            let status = resp.status().as_u16();
            let mut out_headers = Map::new();
            for (name, value) in resp.headers() {
                let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
                match out_headers.get_mut(name.as_str()) {
                    Some(Value::String(prev)) => {
                        prev.push_str(", ");
                        prev.push_str(&v);
                    }
                    _ => {
                        out_headers.insert(name.as_str().to_string(), Value::String(v));
                    }
                }
            }
            let header_text = |h| resp.headers().get(h).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            let content_type = header_text(CONTENT_TYPE).unwrap_or_default();
            let disposition = header_text(CONTENT_DISPOSITION);
            let as_file = is_file_response(&content_type, disposition.as_deref());
            let limit = if as_file { MAX_BINARY } else { MAX_TEXT };
            let mut bytes: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| send_error(&e, timeouts))? {
                if bytes.len() + chunk.len() > limit {
                    let what = if as_file { "File" } else { "Text" };
                    return Err(NodeError::new(
                        "ResponseSizeError",
                        format!("{what} size is too large, max size is {:.2} MB", limit as f64 / (1024.0 * 1024.0)),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            let final_url = resp.url().clone();
            let (body_text, files) = if as_file && !bytes.is_empty() {
                let file = file_entry(&final_url, &self.method, &content_type, disposition.as_deref(), bytes.len());
                (String::new(), vec![file])
            } else {
                (String::from_utf8_lossy(&bytes).into_owned(), Vec::new())
            };
            let mut outputs = Map::new();
            outputs.insert("status_code".into(), Value::from(status));
            outputs.insert("body".into(), Value::String(body_text));
            outputs.insert("headers".into(), Value::Object(out_headers));
            outputs.insert("files".into(), Value::Array(files));
            Ok(NodeRun {
                inputs: Value::Object(Map::new()),
                process_data: Value::Object(process),
                outputs,
                ..NodeRun::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_old_and_new_shapes() {
        let n = HttpRequest::compile(&json!({
            "method": "POST", "url": "http://x", "body": {"type": "json", "data": "{\"a\": 1}"},
            "timeout": {"connect": 5, "read": "7", "write": -1}, "ssl_verify": false,
            "authorization": {"type": "api-key", "config": {"type": "bearer", "api_key": "k", "header": ""}}
        }))
        .unwrap();
        assert_eq!(n.method, Method::POST);
        assert_eq!(n.items.len(), 1);
        assert_eq!(
            (n.connect, n.read, n.write),
            (Duration::from_secs(5), Duration::from_secs(7), Duration::from_secs(20))
        );
        assert!(!n.ssl_verify);
        assert!(matches!(&n.auth, Auth::ApiKey { header, .. } if header == "Authorization"));
        let n = HttpRequest::compile(&json!({"method": "get", "url": "u", "body": {"type": "x-www-form-urlencoded", "data": "a:1\nb: 2"}, "timeout": {"read": 99999}})).unwrap();
        assert_eq!(n.items.len(), 2);
        assert_eq!(n.read, Duration::from_secs(600));
        assert!(HttpRequest::compile(&json!({"method": "trace"})).is_err());
        assert!(HttpRequest::compile(&json!({"body": {"type": "xml"}})).is_err());
        let n = HttpRequest::compile(&json!({"body": null, "authorization": null, "timeout": null})).unwrap();
        assert_eq!(n.body, BodyKind::None);
    }

    #[test]
    fn headers_and_auth() {
        let pool = Pool::root();
        pool.set("start", "t", json!("tok"));
        let n = HttpRequest::compile(&json!({
            "headers": "X-A: 1\n\nx-b:{{#start.t#}}:2\nbare",
            "authorization": {"type": "api-key", "config": {"type": "basic", "api_key": "u:{{#start.t#}}", "header": "X-Auth"}}
        }))
        .unwrap();
        let (h, secret) = n.headers(&pool).unwrap();
        assert_eq!(
            h,
            vec![
                ("X-A".into(), "1".into()),
                ("x-b".into(), "tok:2".into()),
                ("bare".into(), String::new()),
                ("X-Auth".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:tok")))
            ]
        );
        assert_eq!(secret.as_deref(), Some("X-Auth"));
        let n = HttpRequest::compile(&json!({"authorization": {"type": "api-key", "config": {"type": "custom", "api_key": "raw", "header": "authorization"}}, "headers": "Authorization: old"})).unwrap();
        assert_eq!(n.headers(&pool).unwrap().0, vec![("authorization".into(), "raw".into())]);
        let n =
            HttpRequest::compile(&json!({"authorization": {"type": "api-key", "config": {"type": "weird"}}})).unwrap();
        assert!(n.headers(&pool).is_err());
    }

    #[test]
    fn url_with_params() {
        let pool = Pool::root();
        pool.set("start", "q", json!("a b&c"));
        let n = HttpRequest::compile(&json!({"url": " http://h:1/p?x=1 ", "params": "q:{{#start.q#}}\nn:2"})).unwrap();
        assert_eq!(n.url(&pool).unwrap().as_str(), "http://h:1/p?x=1&q=a+b%26c&n=2");
        for bad in ["", "ftp://h/x", "{{#start.missing#}}"] {
            let n = HttpRequest::compile(&json!({ "url": bad })).unwrap();
            assert!(
                matches!(n.url(&pool), Err(NodeError::Failed { ref error_type, .. }) if error_type == "InvalidURLError")
            );
        }
    }

    #[test]
    fn json_control_characters_and_responses() {
        assert_eq!(escape_controls_in_strings("{\"a\": \"x\ny\\\"\t\"}\n"), "{\"a\": \"x\\ny\\\"\\t\"}\n");
        assert!(is_file_response("image/png", None));
        assert!(is_file_response("application/octet-stream", None));
        assert!(!is_file_response("application/json; charset=utf-8", None));
        assert!(!is_file_response("text/csv", None));
        assert!(!is_file_response("", None));
        assert!(is_file_response("text/plain", Some("attachment; filename=a.txt")));
        assert!(!is_file_response("application/json", Some("inline; filename=a.json")));
        let url = Url::parse("http://h/img/cat.PNG").unwrap();
        let f = file_entry(&url, &Method::GET, "image/png", None, 3);
        assert_eq!(f["extension"], ".png");
        assert_eq!(f["type"], "image");
        assert_eq!(f["url"], "http://h/img/cat.PNG");
        let f = file_entry(&Url::parse("http://h/gen").unwrap(), &Method::POST, "application/pdf", None, 3);
        assert_eq!(
            (f["filename"].as_str(), f["type"].as_str(), f["url"].is_null()),
            (Some("file.pdf"), Some("document"), true)
        );
    }
}
