//! Read-model rows: what the projections store and the API reads. Stored as
//! JSON (rebuildable at any time, so their shape may change freely), except
//! the rows every turn writes (messages, conversations): those are stored in
//! the compact binary form (`KvTxn::put_row`), and either form is read.

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
    #[serde(with = "crate::json::value_text")]
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
    #[serde(with = "crate::json::value_text")]
    pub inputs: Value,
    #[serde(with = "crate::json::value_text")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferrify_store::codec::{from_json, to_json, to_row};
    use serde_json::json;

    fn message() -> MessageRow {
        MessageRow {
            id: Uuid::from_u128(1),
            task_id: Uuid::from_u128(2),
            app_id: Uuid::from_u128(3),
            conversation_id: Some(Uuid::from_u128(4)),
            end_user_id: Uuid::from_u128(5),
            workflow_run_id: None,
            query: "hi".into(),
            inputs: json!({"name": "Ada", "n": 2, "nested": {"list": [1, "two", null]}}),
            files: json!([{"type": "image", "url": "https://x/y.png"}]),
            answer: "hello".into(),
            status: "normal".into(),
            error: None,
            stopped: false,
            usage: Usage { prompt_tokens: 3, total_price: "0.0000030".into(), ..Default::default() },
            provider_response_latency: 0.25,
            created_at: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn turn_rows_are_compact_and_rows_written_as_json_still_read() {
        let m = message();
        let c = ConversationRow {
            id: Uuid::from_u128(4),
            app_id: Uuid::from_u128(3),
            end_user_id: Uuid::from_u128(5),
            name: "New conversation".into(),
            inputs: json!({"name": "Ada"}),
            introduction: String::new(),
            status: "normal".into(),
            created_at: 1,
            updated_at: 2,
            deleted: false,
            message_count: 1,
        };
        let (m_row, m_json) = (to_row(&m).unwrap(), to_json(&m).unwrap());
        assert!(m_row.len() * 2 < m_json.len(), "{} bytes against {}", m_row.len(), m_json.len());
        assert_eq!(from_json::<MessageRow>(&m_row).unwrap(), m);
        // Rows stored by earlier versions (JSON) read back the same.
        assert_eq!(from_json::<MessageRow>(&m_json).unwrap(), m);
        assert_eq!(from_json::<ConversationRow>(&to_row(&c).unwrap()).unwrap(), c);
        assert_eq!(from_json::<ConversationRow>(&to_json(&c).unwrap()).unwrap(), c);
        // In JSON, inputs and files stay JSON values (not text).
        let as_json: serde_json::Value = serde_json::from_slice(&m_json).unwrap();
        assert_eq!(as_json["inputs"]["nested"]["list"][1], "two");
        assert_eq!(as_json["files"][0]["type"], "image");
    }
}
