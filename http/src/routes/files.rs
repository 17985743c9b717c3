//! `POST /files/upload` (§2.11) and `GET /files/:file_id/preview` (§2.12).
//!
//! The upload body is read part by part and the file part is streamed to
//! blob storage as it arrives (never held whole in memory); the upload is
//! recorded only once the whole form was read and found valid.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::files::{check_name, kinds, upload_json, FileError, Staged};
use ferrify_engine::model::FileRow;
use ferrify_engine::EngineError;
use futures_util::{Stream, StreamExt};
use uuid::Uuid;
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::error::ApiError;
use crate::request::{optional_user, q, query};
use crate::State;

/// Longest `user` field of an upload form.
const MAX_USER: u64 = 4096;

pub fn routes(state: State) -> Routes {
    let upload = warp::path!("files" / "upload")
        .and(warp::post())
        .and(app_key(state.clone()))
        .and(with_state(state.clone()))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .and_then(|app: Arc<LoadedApp>, state: State, content_type: Option<String>, body| async move {
            respond(upload(app, state, content_type, body).await)
        });
    let preview =
        warp::path!("files" / String / "preview")
            .and(warp::get())
            .and(app_key(state.clone()))
            .and(with_state(state))
            .and(query())
            .and(warp::header::optional::<String>("range"))
            .and_then(
                |id: String,
                 app: Arc<LoadedApp>,
                 state: State,
                 query: HashMap<String, String>,
                 range: Option<String>| async move { respond(preview(app, state, id, query, range).await) },
            );
    any_of([upload.boxed(), preview.boxed()])
}

/// Where reading the form got to.
#[derive(Default)]
struct Form {
    user: Option<String>,
    /// File parts seen, and whether one was named `file`.
    file_parts: usize,
    named_file: bool,
    staged: Option<Staged>,
    /// An error of the `file` part, answered once the form shows no second file.
    pending: Option<ApiError>,
}

pub(crate) async fn upload<S, B>(
    app: Arc<LoadedApp>,
    state: State,
    content_type: Option<String>,
    body: S,
) -> Result<warp::reply::Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let engine = &state.engine;
    let Some(boundary) = content_type.as_deref().and_then(|ct| multer::parse_boundary(ct).ok()) else {
        return Err(FileError::NoFileUploaded.into());
    };
    let settings = engine.file_settings();
    let largest = settings.file_limit.max(settings.image_limit).max(settings.audio_limit).max(settings.video_limit);
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(largest + (16 << 20)).for_field("user", MAX_USER));
    // An upload may take long, but not stall: each chunk must arrive within
    // `limits.request_timeout_secs` of the previous one.
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let body = tokio_stream::StreamExt::timeout(body, state.limits.request_timeout).map(move |chunk| match chunk {
        Ok(Ok(mut b)) => Ok(b.copy_to_bytes(b.remaining())),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => {
            flag.store(true, Ordering::Relaxed);
            Err(io::Error::new(io::ErrorKind::TimedOut, "the upload stalled"))
        }
    });
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut form = Form::default();
    let result = read_form(&state, &mut multipart, &mut form).await;
    let result = match result {
        Err(_) if stalled.load(Ordering::Relaxed) => Err(state.limits.body_timeout()),
        other => other,
    };
    let staged = form.staged.take();
    let outcome = match result {
        Err(e) => Err(e),
        Ok(()) if !form.named_file => Err(FileError::NoFileUploaded.into()),
        Ok(()) if form.file_parts > 1 => Err(FileError::TooManyFiles.into()),
        Ok(()) => match form.pending.take() {
            Some(e) => Err(e),
            None => Ok(()),
        },
    };
    let staged = match (outcome, staged) {
        (Ok(()), Some(staged)) => staged,
        (Ok(()), None) => return Err(FileError::NoFileUploaded.into()),
        (Err(e), staged) => {
            if let Some(s) = staged {
                engine.discard_upload(s).await;
            }
            return Err(e);
        }
    };
    let user = optional_user(form.user);
    let row = engine.commit_upload(app.id(), &user, staged).await?;
    let body = warp::reply::json(&upload_json(&row, engine.file_url(row.id)));
    Ok(warp::reply::with_status(body, StatusCode::CREATED).into_response())
}

/// Reads every part: the `user` field, and the one file part, whose checks
/// run in §2.11's order and whose bytes go to storage.
async fn read_form(state: &State, multipart: &mut multer::Multipart<'static>, form: &mut Form) -> Result<(), ApiError> {
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(multipart_error(e)),
        };
        let Some(filename) = field.file_name().map(str::to_string) else {
            if field.name() == Some("user") {
                form.user = Some(field.text().await.map_err(multipart_error)?);
            }
            continue;
        };
        form.file_parts += 1;
        let is_file = field.name() == Some("file");
        form.named_file |= is_file;
        if form.file_parts > 1 {
            if form.named_file {
                return Err(FileError::TooManyFiles.into());
            }
            continue;
        }
        if !is_file {
            continue;
        }
        let Some(mime) = field.content_type().map(|m| m.essence_str().to_string()) else {
            form.pending = Some(FileError::UnsupportedFileType.into());
            continue;
        };
        let name = match check_name(&filename, state.engine.file_settings()) {
            Ok(n) => n,
            Err(e) => {
                form.pending = Some(e.into());
                continue;
            }
        };
        let bytes = field.map(|r| r.map_err(io::Error::other)).boxed();
        match state.engine.stage_upload(name, &mime, bytes).await {
            Ok(staged) => form.staged = Some(staged),
            // Over its limit: §2.11 answers a second file part first, so the form is read on
            // (the whole stream is capped above; the rest of this part is skipped, not stored).
            Err(EngineError::File(e @ FileError::TooLarge(_))) => form.pending = Some(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => ApiError::from(FileError::TooLarge(String::new())),
        multer::Error::FieldSizeExceeded { field_name, .. } => {
            ApiError::invalid_param(format!("the form field {} is too long", field_name.unwrap_or_default()))
        }
        other => ApiError::invalid_param(format!("the upload is not a valid multipart form: {other}")),
    }
}

/// `?as_attachment=` as Flask reads a bool.
fn truthy(v: Option<&str>) -> bool {
    matches!(v.map(|s| s.trim().to_ascii_lowercase()).as_deref(), Some("true" | "1" | "yes" | "on"))
}

/// Percent-encodes a file name for `filename*=UTF-8''…` (RFC 5987 attr-chars kept).
fn encode_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `Range` header against a size: `Ok(None)` serves the whole file (no
/// header, or several ranges), `Err` when no byte of it can be served.
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let s: u64 = start.parse().map_err(|_| ())?;
        let e = if end.is_empty() { size } else { end.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(size) };
        s..e
    };
    if range.start >= size || range.start >= range.end {
        return Err(());
    }
    Ok(Some(range))
}

/// Whether a file is always served as a download (its type could run in the browser).
fn forced_download(f: &FileRow) -> bool {
    let mime = kinds::essence(&f.mime_type);
    matches!(f.extension.as_str(), "html" | "htm" | "svg" | "xhtml")
        || matches!(mime.as_str(), "text/html" | "image/svg+xml" | "application/xhtml+xml")
}

async fn preview(
    app: Arc<LoadedApp>,
    state: State,
    id: String,
    query: HashMap<String, String>,
    range: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let id = Uuid::parse_str(id.trim()).map_err(|_| ApiError::from(FileError::NotFound))?;
    let file = state.engine.preview_file(app.id(), id)?;
    serve_file(&state, file, &query, range).await
}

/// A file's bytes with the preview headers: its type (or a download), length,
/// caching, `nosniff`, and byte ranges for audio and video.
pub(crate) async fn serve_file(
    state: &State,
    file: FileRow,
    query: &HashMap<String, String>,
    range: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let media = kinds::is_media(&file.mime_type);
    let attachment = truthy(q(query, "as_attachment")) || forced_download(&file);
    let range = if media { parse_range(range.as_deref(), file.size) } else { Ok(None) };
    let range = match range {
        Ok(r) => r,
        Err(()) => {
            let mut res = warp::reply::with_status(warp::reply(), StatusCode::RANGE_NOT_SATISFIABLE).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.size)) {
                res.headers_mut().insert("content-range", v);
            }
            return Ok(res);
        }
    };
    let mut blob = state.engine.file_bytes(&file, range.clone()).await?;
    // The body must be `Sync`: a task forwards the blob's chunks.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::spawn(async move {
        while let Some(chunk) = blob.next().await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut res = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let length = range.as_ref().map(|r| r.end - r.start).unwrap_or(file.size);
    let headers = res.headers_mut();
    let content_type =
        if attachment || file.mime_type.is_empty() { "application/octet-stream" } else { &file.mime_type };
    let header =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert("content-type", header(content_type));
    headers.insert("content-length", HeaderValue::from(length));
    headers.insert("cache-control", HeaderValue::from_static("public, max-age=3600"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if media {
        headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    }
    if attachment {
        let name = if file.name.is_empty() { file.id.to_string() } else { file.name.clone() };
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{}", encode_filename(&name))) {
            headers.insert("content-disposition", v);
        }
    }
    if let Some(r) = &range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end - 1, file.size)) {
            headers.insert("content-range", v);
        }
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some(0..4)));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some(5..10)));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some(8..10)));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Err(()));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }

    #[test]
    fn filenames_are_encoded() {
        assert_eq!(encode_filename("résumé 1.pdf"), "r%C3%A9sum%C3%A9%201.pdf");
        assert_eq!(encode_filename("a\"b;c.txt"), "a%22b%3Bc.txt");
        assert!(truthy(Some("True")) && truthy(Some("1")) && !truthy(Some("false")) && !truthy(None));
    }
}
