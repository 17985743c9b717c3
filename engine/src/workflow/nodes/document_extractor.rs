//! `document-extractor`: the text of a file or a list of files.
//!
//! Files are JSON objects (`transfer_method`, `url`/`remote_url`,
//! `extension`, `mime_type`, `filename`…). `remote_url` files are fetched
//! through the private-network guard ([`crate::workflow::net::fetch`]);
//! `local_file` uploads are read from file storage (uploads of the run's
//! app only).
//!
//! Extracted formats: plain text (txt, md, markdown and other text
//! extensions), html/htm (tags stripped), csv (a markdown table, as Dify),
//! json and yaml (pretty printed), pdf (text layer). The output `text` is a
//! string for a file and an array of strings for a list of files.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use uuid::Uuid;

use super::{selector_text, Node, NodeCx, NodeError, NodeRun};
use crate::engine::Engine;
use crate::projection::files::upload_id;
use crate::workflow::net;
use crate::workflow::pool::selector_of;
use crate::workflow::WorkflowSettings;

/// Largest remote file fetched (Dify's default upload limit).
pub const MAX_FILE_BYTES: usize = 15 * 1024 * 1024;
/// Longest time a remote file may take to arrive.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

const ERROR: &str = "DocumentExtractorError";

pub struct DocumentExtractor {
    selector: Vec<String>,
}

impl DocumentExtractor {
    pub fn compile(data: &Value) -> Result<DocumentExtractor, String> {
        let selector = data.get("variable_selector").and_then(selector_of).unwrap_or_default();
        Ok(DocumentExtractor { selector })
    }
}

/// A file's content as fetched.
#[derive(Debug, Clone, Default)]
pub struct LoadedFile {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

fn text_field(file: &Value, key: &str) -> Option<String> {
    file.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Fetches a file value's bytes: `remote_url` files through the guard,
/// `local_file` uploads of `app_id` from file storage; other transfer
/// methods fail, naming why.
pub async fn load_file(file: &Value, engine: &Engine, app_id: Uuid) -> Result<LoadedFile, String> {
    let settings: &WorkflowSettings = &engine.inner.workflow_settings;
    if !file.is_object() {
        return Err("the value is not a file".into());
    }
    let url = text_field(file, "remote_url").or_else(|| text_field(file, "url"));
    let method = text_field(file, "transfer_method").unwrap_or_else(|| {
        if url.is_some() {
            "remote_url".into()
        } else {
            String::new()
        }
    });
    match method.as_str() {
        "remote_url" => {
            let url = url.ok_or("a remote_url file has no url")?;
            let (bytes, content_type, filename) = net::fetch(&url, settings, MAX_FILE_BYTES, FETCH_TIMEOUT).await?;
            Ok(LoadedFile { bytes, content_type, filename })
        }
        "local_file" => {
            let id = upload_id(file).ok_or("a local_file has no valid upload_file_id")?;
            let f = engine.file_settings();
            let limit = f.file_limit.max(f.image_limit).max(f.audio_limit).max(f.video_limit);
            let (row, bytes) = engine.read_app_file(app_id, id, limit).await?;
            Ok(LoadedFile { bytes, content_type: Some(row.mime_type), filename: Some(row.name) })
        }
        "" => Err("the file has no transfer_method".into()),
        other => Err(format!("files with transfer_method {other:?} are not supported yet")),
    }
}

/// The extension (lower case, no dot) of a file name.
fn name_extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ext = ext.trim().to_ascii_lowercase();
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 10 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(ext)
}

/// The extension a MIME type stands for, among the extracted ones.
fn mime_extension(mime: &str) -> Option<&'static str> {
    let m = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Some(match m.as_str() {
        "text/plain" => "txt",
        "text/markdown" | "text/x-markdown" => "md",
        "text/html" | "application/xhtml+xml" => "html",
        "text/csv" | "application/csv" => "csv",
        "application/json" | "text/json" => "json",
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => "yaml",
        "application/pdf" => "pdf",
        "text/xml" | "application/xml" => "xml",
        _ => return None,
    })
}

/// Extensions extracted as plain text (Dify's list, abridged).
const PLAIN: &[&str] = &[
    "txt",
    "text",
    "md",
    "markdown",
    "mdx",
    "xml",
    "log",
    "ini",
    "cfg",
    "conf",
    "toml",
    "env",
    "properties",
    "vtt",
    "srt",
    "tsv",
    "c",
    "h",
    "cpp",
    "hpp",
    "cc",
    "cxx",
    "py",
    "js",
    "ts",
    "jsx",
    "tsx",
    "java",
    "php",
    "rb",
    "go",
    "rs",
    "swift",
    "kt",
    "scala",
    "sh",
    "bash",
    "bat",
    "ps1",
    "sql",
    "r",
    "pl",
    "lua",
    "css",
    "scss",
    "less",
    "tex",
];

fn supported(ext: &str) -> bool {
    PLAIN.contains(&ext) || matches!(ext, "html" | "htm" | "csv" | "json" | "yaml" | "yml" | "pdf")
}

/// Which extension to extract a file as: the first supported one of its
/// declared extension, its names, and its MIME types; else the first known.
fn pick_extension(file: &Value, loaded: &LoadedFile) -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Some(e) = text_field(file, "extension") {
        candidates.push(e.trim_start_matches('.').to_ascii_lowercase());
    }
    for key in ["filename", "name"] {
        if let Some(e) = text_field(file, key).as_deref().and_then(name_extension) {
            candidates.push(e);
        }
    }
    if let Some(e) = loaded.filename.as_deref().and_then(name_extension) {
        candidates.push(e);
    }
    for mime in [text_field(file, "mime_type"), loaded.content_type.clone()].into_iter().flatten() {
        if let Some(e) = mime_extension(&mime) {
            candidates.push(e.to_string());
        }
    }
    candidates.retain(|c| !c.is_empty());
    candidates.iter().find(|c| supported(c)).or(candidates.first()).cloned()
}

/// Bytes as text: UTF-8 (BOM dropped; UTF-16 with a BOM decoded), lossy.
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |rest: &[u8], le: bool| {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| if le { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// Extracts the text of a file's bytes by extension (no dot, lower case).
/// PDF extraction is blocking: call [`extract_async`] from async code.
pub fn extract(ext: &str, bytes: &[u8]) -> Result<String, NodeError> {
    let ext = ext.trim_start_matches('.').to_ascii_lowercase();
    match ext.as_str() {
        e if PLAIN.contains(&e) => Ok(decode_text(bytes)),
        "html" | "htm" => Ok(html_to_text(&decode_text(bytes))),
        "csv" => Ok(csv_to_markdown(&decode_text(bytes))),
        "json" => {
            let v: Value = serde_json::from_str(&decode_text(bytes))
                .map_err(|e| NodeError::new("TextExtractionError", format!("Failed to parse JSON: {e}")))?;
            serde_json::to_string_pretty(&v).map_err(|e| NodeError::new("TextExtractionError", e.to_string()))
        }
        "yaml" | "yml" => yaml_text(&decode_text(bytes)),
        "pdf" => pdf_text(bytes),
        "" => Err(NodeError::new(
            "UnsupportedFileTypeError",
            "Unable to determine file type: the file has neither an extension nor a known mime_type",
        )),
        other => Err(NodeError::new("UnsupportedFileTypeError", format!("Unsupported Extension Type: .{other}"))),
    }
}

/// [`extract`] off the async threads (PDF parsing is CPU-bound and a
/// malformed file may make the parser panic: that becomes an error).
pub async fn extract_async(ext: String, bytes: Vec<u8>) -> Result<String, NodeError> {
    if !ext.eq_ignore_ascii_case("pdf") {
        return extract(&ext, &bytes);
    }
    tokio::task::spawn_blocking(move || extract(&ext, &bytes)).await.unwrap_or_else(|_| {
        Err(NodeError::new("TextExtractionError", "Failed to extract text from PDF: malformed file"))
    })
}

fn pdf_text(bytes: &[u8]) -> Result<String, NodeError> {
    let bytes = bytes.to_vec();
    std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&bytes))
        .map_err(|_| NodeError::new("TextExtractionError", "Failed to extract text from PDF: malformed file"))?
        .map_err(|e| NodeError::new("TextExtractionError", format!("Failed to extract text from PDF: {e}")))
}

fn yaml_text(text: &str) -> Result<String, NodeError> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| NodeError::new("TextExtractionError", format!("Failed to parse YAML: {e}")))?;
        docs.push(serde_yaml_ng::to_string(&v).map_err(|e| NodeError::new("TextExtractionError", e.to_string()))?);
    }
    Ok(docs.join("---\n"))
}

/// Parses CSV (RFC 4180: quoted fields, doubled quotes, newlines inside quotes).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut field_started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !field_started => {
                in_quotes = true;
                field_started = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                if !row.is_empty() || !field.is_empty() || field_started {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                field_started = false;
            }
            c => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if !row.is_empty() || !field.is_empty() || field_started {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// CSV as a markdown table, as Dify renders it: the first row is the header.
pub fn csv_to_markdown(text: &str) -> String {
    let rows = parse_csv(text);
    let Some((header, body)) = rows.split_first() else { return String::new() };
    let cell = |c: &String| c.replace('\r', "").replace('\n', " ").replace('|', "\\|");
    let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(cell).collect::<Vec<_>>().join(" | "));
    let mut out = line(header);
    let rule: Vec<String> = header.iter().map(|c| "-".repeat(c.chars().count().max(1))).collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in body {
        out.push_str(&line(row));
    }
    out
}

/// Tags whose end starts a new line in the text.
const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "title",
    "tr",
    "ul",
    "body",
    "html",
    "head",
    "caption",
    "option",
];

/// Tags whose content is not text.
const SKIPPED_TAGS: &[&str] = &["script", "style", "template", "svg", "math", "iframe", "object"];

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return Some(char::from_u32(code).filter(|c| *c != '\0').unwrap_or('\u{FFFD}'));
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "deg" => '°',
        "times" => '×',
        "divide" => '÷',
        "sect" => '§',
        "para" => '¶',
        _ => return None,
    })
}

/// Decodes character references (`&amp;`, `&#233;`, `&#x1F600;`); unknown ones stay.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded =
            rest[1..].find(';').filter(|&j| j > 0 && j <= 10).and_then(|j| entity(&rest[1..=j]).map(|c| (c, j + 2)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Index just past the `>` closing a tag that starts at `from` (quotes in
/// attributes respected), or the end of the text.
fn tag_end(s: &str, from: usize) -> usize {
    let bytes = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return i + 1,
            None => {}
        }
        i += 1;
    }
    bytes.len()
}

/// HTML as plain text: scripts, styles and comments dropped, block
/// elements on their own lines (blank lines dropped), whitespace collapsed (kept inside `<pre>`),
/// character references decoded.
pub fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let bytes = html.as_bytes();
    let mut out = String::new();
    let mut pre = 0usize;
    let mut i = 0;
    let mut text_start = 0;
    let push_text = |out: &mut String, text: &str, pre: bool| {
        let text = decode_entities(text);
        if pre {
            out.push_str(&text);
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                if !out.is_empty() && !out.ends_with([' ', '\n']) {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
        }
    };
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let next = bytes.get(i + 1).copied().unwrap_or(0);
        let is_tag = next.is_ascii_alphabetic() || next == b'/' || next == b'!' || next == b'?';
        if !is_tag {
            i += 1;
            continue;
        }
        push_text(&mut out, &html[text_start..i], pre > 0);
        if lower[i..].starts_with("<!--") {
            i = lower[i + 4..].find("-->").map(|j| i + 4 + j + 3).unwrap_or(bytes.len());
            text_start = i;
            continue;
        }
        let end = tag_end(html, i + 1);
        let closing = next == b'/';
        let name_start = if closing { i + 2 } else { i + 1 };
        let name: String =
            lower[name_start.min(lower.len())..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        i = end;
        if !closing && SKIPPED_TAGS.contains(&name.as_str()) && !html[..end].ends_with("/>") {
            let close = format!("</{name}");
            i = lower[end..].find(&close).map(|j| tag_end(html, end + j + 1)).unwrap_or(bytes.len());
        } else if name == "pre" {
            pre = if closing { pre.saturating_sub(1) } else { pre + 1 };
        }
        if BLOCK_TAGS.contains(&name.as_str()) {
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('\n');
        } else if matches!(name.as_str(), "td" | "th") && closing {
            out.push('\t');
        }
        text_start = i;
    }
    if text_start < bytes.len() {
        push_text(&mut out, &html[text_start..], pre > 0);
    }
    // Trim line ends and drop blank lines.
    out.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n")
}

impl DocumentExtractor {
    async fn extract_file(&self, file: &Value, cx: &NodeCx<'_>) -> Result<String, NodeError> {
        if !file.is_object() {
            return Err(NodeError::new(ERROR, format!("Unsupported variable type: {}", type_name(file))));
        }
        // Refuse unsupported declared extensions before fetching anything.
        if let Some(ext) = text_field(file, "extension") {
            let ext = ext.trim_start_matches('.').to_ascii_lowercase();
            if !supported(&ext) {
                return Err(NodeError::new("UnsupportedFileTypeError", format!("Unsupported Extension Type: .{ext}")));
            }
        }
        let loaded =
            load_file(file, &cx.run.engine, cx.run.app_id).await.map_err(|e| NodeError::new("FileDownloadError", e))?;
        let ext = pick_extension(file, &loaded).unwrap_or_default();
        extract_async(ext, loaded.bytes).await
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "none",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Node for DocumentExtractor {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            if self.selector.is_empty() {
                return Err(NodeError::new(ERROR, "variable_selector is required"));
            }
            let value = cx.pool.get(&self.selector).filter(|v| !v.is_null()).ok_or_else(|| {
                NodeError::new(
                    ERROR,
                    format!("File variable not found for selector: {}", selector_text(&self.selector)),
                )
            })?;
            let text = match &value {
                // Re-execution: the recorded text, without fetching the files again.
                Value::Array(_) | Value::Object(_) if cx.served.is_replay() => {
                    cx.served.outputs()?.remove("text").unwrap_or(Value::Null)
                }
                Value::Array(items) => {
                    let mut texts = Vec::with_capacity(items.len());
                    for item in items {
                        texts.push(Value::String(self.extract_file(item, cx).await?));
                    }
                    Value::Array(texts)
                }
                Value::Object(_) => Value::String(self.extract_file(&value, cx).await?),
                other => {
                    return Err(NodeError::new(ERROR, format!("Unsupported variable type: {}", type_name(other))));
                }
            };
            let mut inputs = Map::new();
            inputs.insert("variable_selector".into(), Value::from(self.selector.clone()));
            let mut outputs = Map::new();
            outputs.insert("text".into(), text);
            Ok(NodeRun { inputs: Value::Object(inputs), outputs, ..NodeRun::default() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_becomes_a_markdown_table() {
        let csv = "name,note\r\nAda,\"likes, commas\"\n\"Bo\",\"multi\nline \"\"q\"\"\"\n\nCy,a|b\n";
        assert_eq!(
            csv_to_markdown(csv),
            "| name | note |\n| ---- | ---- |\n| Ada | likes, commas |\n| Bo | multi line \"q\" |\n| Cy | a\\|b |\n"
        );
        assert_eq!(csv_to_markdown(""), "");
        assert_eq!(parse_csv("a,,b"), vec![vec!["a".to_string(), String::new(), "b".to_string()]]);
        assert_eq!(parse_csv("\"unterminated"), vec![vec!["unterminated".to_string()]]);
    }

    #[test]
    fn html_is_stripped_to_text() {
        let html = "<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style>\
            <script>var x = '<p>no</p>';</script></head><body><h1>Hello&nbsp;&amp; welcome</h1>\
            <!-- hidden --><p>One   two\n three <b>bold</b> &#233;&#x20AC; &bogus; 5 &lt; 6</p>\
            <pre>  keep\n   this</pre><ul><li>a</li><li>b</li></ul><a href=\"x?a=1&b=>2\">link</a></body></html>";
        let text = html_to_text(html);
        assert_eq!(text, "T\nHello & welcome\nOne two three bold é€ &bogus; 5 < 6\n  keep\n   this\na\nb\nlink");
        assert_eq!(html_to_text("a < b and <3 <"), "a < b and <3 <");
        assert_eq!(html_to_text("<p>unterminated <b"), "unterminated");
        assert_eq!(html_to_text("<script>never closed"), "");
    }

    #[test]
    fn json_and_yaml_are_pretty() {
        assert_eq!(
            extract("json", br#"{"b":1,"a":[1,"x"],"c":{}}"#).unwrap(),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    \"x\"\n  ],\n  \"c\": {}\n}"
        );
        let e = extract("json", b"{bad").unwrap_err();
        assert!(matches!(e, NodeError::Failed { ref error_type, .. } if error_type == "TextExtractionError"));
        assert_eq!(extract(".YAML", b"b: 1\na: [x, y]\n").unwrap(), "b: 1\na:\n- x\n- y\n");
        assert!(extract("yaml", b"a: [").is_err());
    }

    #[test]
    fn text_and_unsupported_types() {
        assert_eq!(extract("md", "\u{feff}# Hi é".as_bytes()).unwrap(), "# Hi é");
        assert_eq!(extract("txt", &[0xFF, 0xFE, b'h', 0, b'i', 0]).unwrap(), "hi");
        let e = extract("docx", b"PK").unwrap_err();
        assert_eq!(e, NodeError::new("UnsupportedFileTypeError", "Unsupported Extension Type: .docx"));
        assert!(extract("pdf", b"not a pdf").is_err());
        assert!(extract("", b"x").is_err());
    }

    /// A one-page PDF showing `text` in Helvetica, with a correct xref table.
    fn tiny_pdf(text: &str) -> Vec<u8> {
        let stream = format!("BT /F1 24 Tf 72 720 Td ({text}) Tj ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_string(),
            format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
        ];
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for off in offsets {
            out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
        );
        out
    }

    #[tokio::test]
    async fn pdf_text_is_extracted() {
        let text = extract_async("pdf".into(), tiny_pdf("Hello PDF world")).await.unwrap();
        assert!(text.contains("Hello PDF world"), "{text:?}");
        let mut broken = tiny_pdf("x");
        broken.truncate(60);
        assert!(extract_async("pdf".into(), broken).await.is_err());
    }

    #[test]
    fn extension_is_picked_from_the_file_or_its_mime() {
        let loaded = LoadedFile {
            bytes: vec![],
            content_type: Some("text/csv; charset=utf-8".into()),
            filename: Some("download".into()),
        };
        assert_eq!(pick_extension(&json!({"transfer_method": "remote_url"}), &loaded).as_deref(), Some("csv"));
        assert_eq!(pick_extension(&json!({"extension": ".TXT"}), &loaded).as_deref(), Some("txt"));
        let php = LoadedFile { filename: Some("get.aspx".into()), ..loaded.clone() };
        assert_eq!(pick_extension(&json!({}), &php).as_deref(), Some("csv"));
        let none = LoadedFile::default();
        assert_eq!(pick_extension(&json!({"filename": "a.docx"}), &none).as_deref(), Some("docx"));
        assert_eq!(pick_extension(&json!({}), &none), None);
    }

    #[tokio::test]
    async fn local_files_are_read_from_storage_for_their_app_only() {
        use futures_util::StreamExt;
        let engine = Engine::open(&crate::EngineConfig { data_dir: None, ..Default::default() }).unwrap();
        let app = Uuid::from_u128(7);
        let name = crate::files::check_name("notes.txt", engine.file_settings()).unwrap();
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"hello file"))]).boxed();
        let staged = engine.stage_upload(name, "text/plain", body).await.unwrap();
        let row = engine.commit_upload(app, "u", staged).await.unwrap();
        let file = json!({"transfer_method": "local_file", "related_id": row.id.to_string(), "type": "document"});
        let loaded = load_file(&file, &engine, app).await.unwrap();
        assert_eq!(loaded.bytes, b"hello file");
        assert_eq!(loaded.filename.as_deref(), Some("notes.txt"));
        let e = load_file(&file, &engine, Uuid::from_u128(8)).await.unwrap_err();
        assert!(e.contains("not found"), "{e}");
        let e = load_file(&json!({"transfer_method": "local_file", "upload_file_id": "abc"}), &engine, app)
            .await
            .unwrap_err();
        assert!(e.contains("no valid upload_file_id"), "{e}");
        let e = load_file(&json!({"transfer_method": "remote_url", "url": "http://127.0.0.1:1/a.txt"}), &engine, app)
            .await
            .unwrap_err();
        assert!(e.contains("private-network guard"), "{e}");
    }
}
