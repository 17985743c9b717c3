//! Uploaded files: limits, uploads, previews and the reading of file values.
//!
//! - [`kinds`]: categories (`image`, `document`, …) and MIME types;
//! - [`input`]: request files (`files`, file form variables) checked against
//!   the app's `file_upload` settings and turned into file values (§3.2);
//! - this module: the settings, the two-step upload (the body is streamed to
//!   blob storage, then `FileUploaded` is recorded on `file/<id>`), preview
//!   access, and reading a file value's bytes for nodes and models.
//!
//! Bytes live in a [`BlobStore`] under the file id; the client's file name is
//! only metadata. A file belongs to the app whose key uploaded it and is
//! never reachable from another app.

pub mod input;
pub mod kinds;
pub mod signed;

use std::ops::Range;
use std::time::Duration;

use ferrify_store::blob::{BlobError, ByteStream};
use ferrify_store::{EventLog, StreamId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event, FileUploaded};
use crate::model::FileRow;
use crate::projection::files::{ref_key, upload_id};
use crate::projection::{secs, trees};
use crate::provider::ImagePart;
use crate::runner::{end_user_id, run_append};
use crate::workflow::pool::is_file;
use kinds::Category;

const MB: u64 = 1024 * 1024;

/// Limits and policies of files (`[files]` in `ferrify.toml`).
#[derive(Clone, Debug)]
pub struct FileSettings {
    /// Largest upload of each category, bytes (limits are inclusive).
    pub image_limit: u64,
    pub video_limit: u64,
    pub audio_limit: u64,
    /// Documents and anything else.
    pub file_limit: u64,
    /// Extensions refused at upload (lower case, no dot).
    pub extension_blacklist: Vec<String>,
    /// Longest wait for a remote file's headers when a request names one.
    pub remote_timeout: Duration,
    /// Prefix of the file URLs ferrify hands out (`https://ferrify.example`),
    /// empty for paths relative to the server.
    pub public_url: String,
    /// Key of the signed file links (see [`signed`]); `None`: the data
    /// directory's key, made on first start.
    pub secret_key: Option<String>,
    /// How long a signed file link stays good (Dify's `FILES_ACCESS_TIMEOUT`).
    pub access_timeout: Duration,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            image_limit: 10 * MB,
            video_limit: 100 * MB,
            audio_limit: 50 * MB,
            file_limit: 15 * MB,
            extension_blacklist: Vec::new(),
            remote_timeout: Duration::from_secs(10),
            public_url: String::new(),
            secret_key: None,
            access_timeout: Duration::from_secs(300),
        }
    }
}

impl FileSettings {
    /// The upload limit of a category, bytes.
    pub fn limit(&self, category: Category) -> u64 {
        match category {
            Category::Image => self.image_limit,
            Category::Video => self.video_limit,
            Category::Audio => self.audio_limit,
            Category::Document | Category::Custom => self.file_limit,
        }
    }
}

/// Why a file operation failed (Dify's codes are chosen at the HTTP edge).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("Please upload your file.")]
    NoFileUploaded,
    #[error("Only one file is allowed.")]
    TooManyFiles,
    #[error("File type not allowed.")]
    UnsupportedFileType,
    #[error("The specified filename does not exist.")]
    FilenameNotExists,
    /// A bad file name or a refused extension (`invalid_param`).
    #[error("{0}")]
    Refused(String),
    /// Over the category's size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("The requested file was not found.")]
    NotFound,
    #[error("Access to the requested file is denied.")]
    AccessDenied,
    /// A signed link whose signature is wrong or expired, or whose file is gone.
    #[error("File not found or signature is invalid")]
    BadSignature,
    /// Blob storage failed (a failure, not a fact).
    #[error("file storage failed: {0}")]
    Storage(String),
}

/// A checked file name of an upload.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadName {
    pub name: String,
    pub extension: String,
}

/// An upload whose bytes are stored but not yet recorded.
#[derive(Debug)]
pub struct Staged {
    pub id: Uuid,
    pub name: UploadName,
    pub mime_type: String,
    pub category: Category,
    pub size: u64,
}

/// Checks an upload's file name (§2.11 order: empty, separators, blacklist)
/// and shortens names over 200 characters (stem cut, extension kept).
pub fn check_name(filename: &str, settings: &FileSettings) -> Result<UploadName, FileError> {
    if filename.is_empty() {
        return Err(FileError::FilenameNotExists);
    }
    if filename.contains(['/', '\\']) {
        return Err(FileError::Refused("Filename contains invalid characters".into()));
    }
    let extension = kinds::extension_of(filename);
    let mut name = filename.to_string();
    if name.chars().count() > 200 {
        let stem: String = name.split('.').next().unwrap_or("").chars().take(200).collect();
        name = format!("{stem}.{extension}");
    }
    if !extension.is_empty() && settings.extension_blacklist.iter().any(|b| b.trim_start_matches('.') == extension) {
        return Err(FileError::Refused(format!("File extension '.{extension}' is not allowed for security reasons")));
    }
    Ok(UploadName { name, extension })
}

fn storage_error(e: BlobError) -> FileError {
    FileError::Storage(e.to_string())
}

impl Engine {
    pub fn file_settings(&self) -> &FileSettings {
        &self.inner.files
    }

    /// Streams an upload's body to storage under a new id, refusing it as
    /// soon as it passes its category's limit. Nothing is recorded yet:
    /// [`Engine::commit_upload`] or [`Engine::discard_upload`] follows.
    pub async fn stage_upload(&self, name: UploadName, mime_type: &str, body: ByteStream<'_>) -> Result<Staged> {
        let category = kinds::category(&name.extension, mime_type);
        let limit = self.inner.files.limit(category);
        let id = Uuid::new_v4();
        let size = match self.inner.blobs.put(&id.to_string(), body, limit).await {
            Ok(size) => size,
            Err(BlobError::TooLarge { limit }) => {
                return Err(FileError::TooLarge(format!(
                    "File size exceeded. {} files are limited to {} MB.",
                    category.as_str(),
                    limit / MB
                ))
                .into())
            }
            Err(BlobError::Body(e)) => {
                return Err(EngineError::InvalidParam(format!("the upload could not be read: {e}")));
            }
            Err(e) => return Err(storage_error(e).into()),
        };
        Ok(Staged { id, name, mime_type: mime_type.to_string(), category, size })
    }

    /// Forgets a staged upload (best effort).
    pub async fn discard_upload(&self, staged: Staged) {
        if let Err(e) = self.inner.blobs.delete(&staged.id.to_string()).await {
            tracing::warn!(file = %staged.id, "could not remove a discarded upload: {e}");
        }
    }

    /// Records a staged upload as the app's file, owned by `user`.
    pub async fn commit_upload(&self, app_id: Uuid, user: &str, staged: Staged) -> Result<FileRow> {
        let event = FileUploaded {
            file_id: staged.id,
            app_id,
            end_user_id: end_user_id(app_id, user),
            user: user.to_string(),
            name: staged.name.name.clone(),
            size: staged.size,
            extension: staged.name.extension.clone(),
            mime_type: staged.mime_type.clone(),
            category: staged.category.as_str().to_string(),
            key: staged.id.to_string(),
            storage: self.inner.blobs.kind().to_string(),
        };
        let stream = StreamId::of("file", staged.id)?;
        let env = Envelope::new(self.now(), None, Event::FileUploaded(Box::new(event)));
        if let Err(e) = self.store().append(run_append(&stream, vec![env], None)?).await {
            self.discard_upload(staged).await;
            return Err(e.into());
        }
        self.file(staged.id)?.ok_or_else(|| FileError::Storage("the upload was not recorded".into()).into())
    }

    /// A file by id, whatever its app.
    pub fn file(&self, id: Uuid) -> Result<Option<FileRow>> {
        Ok(self.store().get_json::<FileRow>(trees::FILES, id.as_bytes())?)
    }

    /// A file of this app (uploads of other apps are not found).
    pub fn app_file(&self, app_id: Uuid, id: Uuid) -> Result<Option<FileRow>> {
        Ok(self.file(id)?.filter(|f| f.app_id == app_id))
    }

    /// A signed link to a file (its `source_url` and `url`), good for the
    /// access timeout.
    pub fn file_url(&self, id: Uuid) -> String {
        self.inner.signer.url(&self.inner.files.public_url, id, self.now() / 1_000_000)
    }

    /// The file a signed link names, when its signature is good and not
    /// expired (Dify's `file-preview`): anyone holding the link may read it.
    pub fn signed_file(&self, id: &str, timestamp: &str, nonce: &str, sign: &str) -> Result<FileRow> {
        let invalid = || EngineError::File(FileError::BadSignature);
        if !self.inner.signer.verify(id, timestamp, nonce, sign, self.now() / 1_000_000) {
            return Err(invalid());
        }
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        self.file(id)?.ok_or_else(invalid)
    }

    /// The file behind `GET /files/:id/preview` (§2.12): some message of
    /// this app must reference it; referenced only by another app's
    /// messages → access denied; not referenced at all → not found.
    pub fn preview_file(&self, app_id: Uuid, id: Uuid) -> Result<FileRow> {
        let refs = self.store().scan(trees::FILE_REFS, id.as_bytes(), None, usize::MAX, false)?;
        if refs.is_empty() {
            return Err(FileError::NotFound.into());
        }
        let mine = ref_key(id, app_id, Uuid::nil());
        let prefix = &mine[..32];
        if !refs.iter().any(|(k, _)| k.starts_with(prefix)) {
            return Err(FileError::AccessDenied.into());
        }
        match self.file(id)? {
            Some(f) if f.app_id == app_id => Ok(f),
            Some(_) => Err(FileError::AccessDenied.into()),
            None => Err(FileError::NotFound.into()),
        }
    }

    /// A file's bytes, or a range of them, as a stream.
    pub async fn file_bytes(&self, file: &FileRow, range: Option<Range<u64>>) -> Result<ByteStream<'static>> {
        match self.inner.blobs.get(&file.key, range).await {
            Ok(s) => Ok(s),
            Err(BlobError::NotFound(_)) => Err(FileError::NotFound.into()),
            Err(e) => Err(storage_error(e).into()),
        }
    }

    /// A whole file of `app_id` in memory, at most `limit` bytes (files sent
    /// to models and extractors).
    pub async fn read_app_file(
        &self,
        app_id: Uuid,
        id: Uuid,
        limit: u64,
    ) -> std::result::Result<(FileRow, Vec<u8>), String> {
        let row = match self.app_file(app_id, id) {
            Ok(Some(row)) => row,
            Ok(None) => return Err(format!("upload {id} not found")),
            Err(e) => return Err(e.to_string()),
        };
        match ferrify_store::blob::read_all(self.inner.blobs.as_ref(), &row.key, limit).await {
            Ok(bytes) => Ok((row, bytes)),
            Err(BlobError::TooLarge { limit }) => Err(format!("upload {id} is larger than {limit} bytes")),
            Err(e) => Err(format!("reading upload {id} failed: {e}")),
        }
    }
}

impl Engine {
    /// The image files of a file value or a list of them, as prompt image
    /// parts: remote images by URL, uploads of `app_id` as `data:` URLs.
    /// An upload that cannot be read is left out (and logged).
    pub async fn image_parts(&self, app_id: Uuid, files: Option<&Value>, detail: &str) -> Vec<ImagePart> {
        let items: Vec<&Value> = match files {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        let mut parts = Vec::new();
        for f in items.into_iter().filter(|f| is_file(f) && f.get("type").and_then(Value::as_str) == Some("image")) {
            let text = |k: &str| f.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let url = if let Some(id) = upload_id(f) {
                match self.read_app_file(app_id, id, self.inner.files.image_limit).await {
                    Ok((row, bytes)) => data_url(&row.mime_type, &bytes),
                    Err(e) => {
                        tracing::warn!("image {id} left out of the prompt: {e}");
                        continue;
                    }
                }
            } else {
                match text("remote_url").or_else(|| text("url")) {
                    Some(u) => u.to_string(),
                    None => continue,
                }
            };
            parts.push(ImagePart { url, detail: detail.to_string() });
        }
        parts
    }
}

/// A `data:` URL of some bytes.
pub fn data_url(mime_type: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let mime = if mime_type.trim().is_empty() { "application/octet-stream" } else { mime_type.trim() };
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `POST /files/upload`'s answer (§2.11); `source_url` is a signed link.
pub fn upload_json(f: &FileRow, source_url: String) -> Value {
    json!({
        "id": f.id.to_string(),
        "name": f.name,
        "size": f.size,
        "extension": f.extension,
        "mime_type": f.mime_type,
        "created_by": f.end_user_id.to_string(),
        "created_at": secs(f.created_at),
        "preview_url": null,
        "source_url": source_url,
        "original_url": null,
        "user_id": null,
        "tenant_id": f.app_id.to_string(),
        "conversation_id": null,
        "file_key": null,
        "reference": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_in_order() {
        let mut s = FileSettings::default();
        assert!(matches!(check_name("", &s), Err(FileError::FilenameNotExists)));
        assert!(
            matches!(check_name("../etc/passwd.txt", &s), Err(FileError::Refused(m)) if m.contains("invalid characters"))
        );
        assert!(matches!(check_name("a\\b.txt", &s), Err(FileError::Refused(_))));
        s.extension_blacklist = vec!["exe".into()];
        assert!(
            matches!(check_name("setup.EXE", &s), Err(FileError::Refused(m)) if m == "File extension '.exe' is not allowed for security reasons")
        );
        let n = check_name("Notes.TXT", &s).unwrap();
        assert_eq!((n.name.as_str(), n.extension.as_str()), ("Notes.TXT", "txt"));
        let long = format!("{}.pdf", "x".repeat(300));
        let n = check_name(&long, &s).unwrap();
        assert_eq!(n.name.len(), 204);
        assert!(n.name.ends_with(".pdf"));
    }

    #[tokio::test]
    async fn images_go_to_models_as_urls_or_data_urls() {
        use futures_util::StreamExt;
        let engine = Engine::open(&crate::EngineConfig { data_dir: None, ..Default::default() }).unwrap();
        let app = Uuid::from_u128(1);
        let name = check_name("dot.png", engine.file_settings()).unwrap();
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"\x89PNG"))]).boxed();
        let row =
            engine.commit_upload(app, "u", engine.stage_upload(name, "image/png", body).await.unwrap()).await.unwrap();
        let files = json!([
            {"dify_model_identity": "__dify__file__", "type": "image", "transfer_method": "local_file", "related_id": row.id.to_string()},
            {"dify_model_identity": "__dify__file__", "type": "image", "transfer_method": "remote_url", "remote_url": "https://example.org/a.png"},
            {"dify_model_identity": "__dify__file__", "type": "document", "transfer_method": "remote_url", "remote_url": "https://example.org/a.pdf"},
        ]);
        let parts = engine.image_parts(app, Some(&files), "low").await;
        let urls: Vec<&str> = parts.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(urls, vec!["data:image/png;base64,iVBORw==", "https://example.org/a.png"]);
        assert!(parts.iter().all(|p| p.detail == "low"));
        // Another app's upload is left out.
        let parts = engine.image_parts(Uuid::from_u128(2), Some(&files), "high").await;
        assert_eq!(parts.len(), 1);
        assert!(engine.image_parts(app, None, "high").await.is_empty());
    }

    #[test]
    fn limits_by_category() {
        let s = FileSettings::default();
        assert_eq!(s.limit(Category::Image), 10 * MB);
        assert_eq!(s.limit(Category::Custom), 15 * MB);
        assert_eq!(s.limit(Category::Video), 100 * MB);
    }
}
