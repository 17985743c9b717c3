//! Dify's error envelope `{"code","message","status"}` and the one table that
//! maps engine errors to HTTP statuses and codes.

use ferrify_engine::app::DslError;
use ferrify_engine::audio::AudioError;
use ferrify_engine::files::FileError;
use ferrify_engine::provider::ProviderError;
use ferrify_engine::reexec::ReexecError;
use ferrify_engine::EngineError;
use serde_json::json;
use warp::http::StatusCode;

/// Every `(status, code)` pair this server answers with (Dify's codes,
/// spec §1.4): the OpenAPI document's error schema lists them, and the
/// request fuzzers check that a refusal is one of the client-side ones.
pub const CODES: &[(u16, &str)] = &[
    (400, "invalid_param"),
    (400, "bad_request"),
    (400, "app_unavailable"),
    (400, "not_chat_app"),
    (400, "not_workflow_app"),
    (400, "conversation_completed"),
    (400, "provider_not_initialize"),
    (400, "completion_request_error"),
    (400, "no_file_uploaded"),
    (400, "too_many_files"),
    (400, "filename_not_exists_error"),
    (400, "no_audio_uploaded"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (403, "file_access_denied"),
    (404, "not_found"),
    (404, "file_not_found"),
    (405, "method_not_allowed"),
    (408, "request_timeout"),
    (411, "length_required"),
    (413, "request_entity_too_large"),
    (413, "file_too_large"),
    (413, "audio_too_large"),
    (415, "unsupported_media_type"),
    (415, "unsupported_file_type"),
    (415, "unsupported_audio_type"),
    (429, "too_many_requests"),
    (429, "rate_limit_error"),
    (500, "internal_server_error"),
];

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_param", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    pub fn invalid_json() -> Self {
        Self::bad_request("Invalid JSON payload received or JSON payload is empty.")
    }

    pub fn internal() -> Self {
        Self::new(500, "internal_server_error", "Internal Server Error, please contact support.")
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"code": self.code, "message": self.message, "status": self.status})
    }

    /// The full response (401s carry `WWW-Authenticate`).
    pub fn into_response(&self) -> warp::reply::Response {
        use warp::Reply;
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = warp::reply::with_status(warp::reply::json(&self.body()), status).into_response();
        if self.status == 401 {
            res.headers_mut().insert("www-authenticate", warp::http::HeaderValue::from_static("Bearer realm=\"api\""));
        }
        if self.status == 429 {
            res.headers_mut().insert("retry-after", warp::http::HeaderValue::from_static("1"));
        }
        res
    }

    pub fn reject(self) -> warp::Rejection {
        warp::reject::custom(self)
    }
}

impl From<AudioError> for ApiError {
    fn from(e: AudioError) -> Self {
        let code = match e {
            AudioError::NoAudioUploaded => (400, "no_audio_uploaded"),
            AudioError::TooLarge => (413, "audio_too_large"),
            AudioError::UnsupportedType => (415, "unsupported_audio_type"),
        };
        ApiError::new(code.0, code.1, e.to_string())
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        EngineError::File(e).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(err) => {
                tracing::error!("storage failure: {err}");
                ApiError::internal()
            }
            EngineError::InvalidParam(m) => ApiError::invalid_param(m),
            EngineError::BadRequest(m) => ApiError::bad_request(m),
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::AppUnavailable(m) => ApiError::new(400, "app_unavailable", m),
            EngineError::NotChatApp => ApiError::new(400, "not_chat_app", e.to_string()),
            EngineError::NotWorkflowApp => ApiError::new(400, "not_workflow_app", e.to_string()),
            EngineError::ConversationCompleted => ApiError::new(400, "conversation_completed", e.to_string()),
            EngineError::Provider(p) => match p {
                ProviderError::NotInitialized(m) => ApiError::new(400, "provider_not_initialize", m),
                ProviderError::RateLimited(m) => ApiError::new(429, "rate_limit_error", m),
                ProviderError::Request(m) => ApiError::new(400, "completion_request_error", m),
            },
            EngineError::File(f) => match f {
                FileError::NoFileUploaded => ApiError::new(400, "no_file_uploaded", f.to_string()),
                FileError::TooManyFiles => ApiError::new(400, "too_many_files", f.to_string()),
                FileError::UnsupportedFileType => ApiError::new(415, "unsupported_file_type", f.to_string()),
                FileError::FilenameNotExists => ApiError::new(400, "filename_not_exists_error", f.to_string()),
                FileError::Refused(m) => ApiError::invalid_param(m),
                FileError::TooLarge(m) => ApiError::new(413, "file_too_large", m),
                FileError::NotFound => ApiError::new(404, "file_not_found", f.to_string()),
                FileError::AccessDenied => ApiError::new(403, "file_access_denied", f.to_string()),
                FileError::BadSignature => ApiError::new(404, "not_found", f.to_string()),
                FileError::Storage(m) => {
                    tracing::error!("file storage failure: {m}");
                    ApiError::internal()
                }
            },
            EngineError::Dsl(d) => match d {
                DslError::TooLarge => ApiError::new(413, "request_entity_too_large", d.to_string()),
                other => ApiError::invalid_param(other.to_string()),
            },
            EngineError::TooManyRuns { .. } => ApiError::new(429, "too_many_requests", e.to_string()),
        }
    }
}

impl From<ReexecError> for ApiError {
    fn from(e: ReexecError) -> Self {
        match e {
            ReexecError::UnknownTask(_) | ReexecError::NotARun(_) => ApiError::not_found("Run not found."),
            ReexecError::AppDeleted(_) | ReexecError::AppNotFound(_) | ReexecError::VersionNotFound(..) => {
                ApiError::not_found(e.to_string())
            }
            ReexecError::Unfinished(_) | ReexecError::Stopped(_) => ApiError::bad_request(e.to_string()),
            ReexecError::Run(inner) => inner.into(),
            ReexecError::Corrupt(..) | ReexecError::Store(_) => {
                tracing::error!("re-execution failed: {e}");
                ApiError::internal()
            }
        }
    }
}
