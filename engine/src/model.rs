//! Read-model rows: what the projections store and the API reads. Stored as
//! JSON (rebuildable at any time, so their shape may change freely).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::Usage;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRow {
    pub id: Uuid,
    pub name: String,
    pub mode: String,
    pub description: String,
    pub icon: String,
    pub icon_background: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The latest published workflow version (workflow and advanced-chat apps).
    pub workflow_id: Option<Uuid>,
    pub deleted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersionRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub graph: Value,
    pub features: Value,
    pub environment: Value,
    pub conversation_variables: Value,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub app_id: Uuid,
    /// SHA-256 of the token, hex. The token itself is never stored.
    pub token_hash: String,
    /// A masked form of the token for listings (`app-…abcd`).
    pub token_hint: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndUserRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub session_id: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub end_user_id: Uuid,
    pub name: String,
    pub inputs: Value,
    pub introduction: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
    pub message_count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub app_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub end_user_id: Uuid,
    pub workflow_run_id: Option<Uuid>,
    pub query: String,
    pub inputs: Value,
    pub files: Value,
    pub answer: String,
    /// `normal`, `error`, or `running` until the message ends.
    pub status: String,
    pub error: Option<String>,
    pub stopped: bool,
    pub usage: Usage,
    pub provider_response_latency: f64,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub app_id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub end_user_id: Uuid,
    pub user: String,
    pub conversation_id: Option<Uuid>,
    pub inputs: Value,
    pub outputs: Value,
    pub status: String,
    pub error: Option<String>,
    pub total_steps: u64,
    pub total_tokens: u64,
    pub exceptions_count: u64,
    pub elapsed_time: f64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A conversation variable's current value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationVariableRow {
    pub id: String,
    pub conversation_id: Uuid,
    pub name: String,
    pub value_type: String,
    pub value: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An uploaded file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRow {
    pub id: Uuid,
    pub app_id: Uuid,
    /// The uploading end user (`created_by`).
    pub end_user_id: Uuid,
    pub name: String,
    pub size: u64,
    /// Lower case, without the dot.
    pub extension: String,
    pub mime_type: String,
    /// `image`, `document`, `audio`, `video` or `custom`.
    pub category: String,
    /// The blob key in storage.
    pub key: String,
    pub storage: String,
    pub created_at: i64,
}

/// An end user's rating of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub message_id: Uuid,
    /// `like` or `dislike`.
    pub rating: String,
    pub content: Option<String>,
    pub from_end_user_id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A canned question→answer pair of an app (key: app ‖ annotation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub question: String,
    pub answer: String,
    /// Turns answered from it.
    pub hit_count: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The question's embedding, when reply matches by embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// An app's annotation reply setting (present while reply is on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationSettingRow {
    pub app_id: Uuid,
    pub score_threshold: f64,
    pub embedding_provider_name: String,
    pub embedding_model_name: String,
    /// True: questions are matched by embeddings from `embedding_provider_name`;
    /// false: by normalised text similarity.
    pub embeddings: bool,
    pub updated_at: i64,
}
