//! The engine's error type. Dify's error codes are chosen from it at the
//! HTTP edge, never here.

use crate::app::DslError;
use crate::provider::ProviderError;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed (I/O, corruption): a failure, not a fact.
    #[error(transparent)]
    Store(#[from] ferrify_store::Error),
    /// The request is invalid (validation, form inputs).
    #[error("{0}")]
    InvalidParam(String),
    /// A malformed request that is not a validation failure (`bad_request`).
    #[error("{0}")]
    BadRequest(String),
    /// Something the caller named does not exist for them.
    #[error("{0}")]
    NotFound(String),
    /// The app cannot serve this request (broken config, unsupported mode).
    #[error("{0}")]
    AppUnavailable(String),
    /// The route is for chat apps.
    #[error("Please check if your app mode matches the right API route.")]
    NotChatApp,
    /// The route is for workflow apps.
    #[error("Please check if your app mode matches the right API route.")]
    NotWorkflowApp,
    /// The conversation is closed.
    #[error("The conversation has ended. Please start a new conversation.")]
    ConversationCompleted,
    /// The model provider refused or failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A DSL file could not be imported.
    #[error(transparent)]
    Dsl(#[from] DslError),
    /// An upload, a file lookup or a file request failed.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// A cap on runs in flight is reached; `limit` names the setting.
    #[error("Too many requests. Please try again later. The current maximum of concurrent runs ({limit}) is {max}.")]
    TooManyRuns { limit: &'static str, max: usize },
}

/// An error's text with its sources (reqwest keeps the interesting part —
/// `connection refused`, a timeout, a guard's refusal — in the chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
