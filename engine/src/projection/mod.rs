//! Projections: pure folds of events into read models, one module each.
//!
//! Node executions have no read model of their own: they are the
//! `NodeStarted` / `NodeFinished` events of the run's stream, read from the
//! log by whatever shows them (a stream, a replay, a timeline).
//!
//! Each projection is a [`Projector`] with its own name, cursor and trees; it
//! reads nothing written by another projection (so each can lag or be rebuilt
//! independently). Times come from the event envelope, never from a clock.
//!
//! | projection       | trees (key → value)                                                  |
//! |------------------|----------------------------------------------------------------------|
//! | `apps`           | `apps` app → AppRow; `workflows` app+created+workflow → version      |
//! | `api_keys`       | `api_keys` token hash → ApiKeyRow; `app_keys` app+key → hash          |
//! | `end_users`      | `end_users` app+user → EndUserRow; `end_users_by_id` id → app+user    |
//! | `conversations`  | `conversations` id → row; `conv_by_updated`/`conv_by_created` indexes; `conv_vars` conv+variable → value |
//! | `messages`       | `messages` id → row; `conv_messages` conv+created+id; `message_by_task` |
//! | `workflow_runs`  | `workflow_runs` id → row; `run_by_task`; `app_runs` app+created+id   |
//! | `open_runs`      | `open_runs` task → mode, for runs without their terminal event yet   |
//! | `files`          | `files` id → FileRow; `file_refs` file+app+message (messages naming an upload) |
//! | `feedbacks`      | `feedbacks` message → FeedbackRow; `app_feedbacks` app+created+feedback → message |
//! | `annotations`    | `annotations` app+annotation → AnnotationRow; `app_annotations` app+created+annotation; `annotation_settings` app → AnnotationSettingRow |
//! | `wire_checkpoints` | `wire_checkpoints` task+frames → seq + wire-mapping state, every 1,024 frames of a run |

pub mod annotations;
pub mod api_keys;
pub mod apps;
pub mod conversations;
pub mod end_users;
pub mod feedbacks;
pub mod files;
pub mod messages;
pub mod open_runs;
pub mod wire_checkpoints;
pub mod workflow_runs;

use std::sync::Arc;

use ferrify_store::{Error as StoreError, KvTxn, Projector, Record};
use uuid::Uuid;

use crate::event::Envelope;

/// Every projection of the engine, in application order.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(apps::Apps),
        Arc::new(api_keys::ApiKeys),
        Arc::new(end_users::EndUsers),
        Arc::new(conversations::Conversations),
        Arc::new(messages::Messages),
        Arc::new(workflow_runs::WorkflowRuns),
        Arc::new(open_runs::OpenRuns),
        Arc::new(files::Files),
        Arc::new(feedbacks::Feedbacks),
        Arc::new(annotations::Annotations),
        Arc::new(wire_checkpoints::WireCheckpoints::default()),
    ]
}

/// Decodes a record's envelope (once per record, shared by every
/// projection); an undecodable record refuses the append.
pub(crate) fn decode(record: &Record, kv: &mut KvTxn<'_>) -> Result<Arc<Envelope>, StoreError> {
    kv.memo(record.position, || Envelope::decode(&record.payload).map_err(StoreError::from))
}

/// The id of a `kind/<uuid>` stream, if the record belongs to such a stream.
pub(crate) fn stream_id(record: &Record, kind: &str) -> Option<Uuid> {
    let name = record.stream.as_str();
    let rest = name.strip_prefix(kind)?.strip_prefix('/')?;
    // Every projection asks this of every record, and a run's records come
    // one stream at a time: the last name parsed on this thread is kept.
    thread_local! {
        static LAST: std::cell::RefCell<(String, Option<Uuid>)> = const { std::cell::RefCell::new((String::new(), None)) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != rest {
            last.0.clear();
            last.0.push_str(rest);
            last.1 = Uuid::parse_str(rest).ok();
        }
        last.1
    })
}

/// Concatenates key parts.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A time as a sortable key part (microseconds, big-endian; negative clamps to 0).
pub fn time_key(micros: i64) -> [u8; 8] {
    (micros.max(0) as u64).to_be_bytes()
}

/// Microseconds to whole seconds, as the API shows times.
pub fn secs(micros: i64) -> i64 {
    micros.div_euclid(1_000_000)
}

/// Tree names, shared with readers.
pub mod trees {
    pub const APPS: &str = "apps";
    pub const WORKFLOWS: &str = "workflows";
    pub const API_KEYS: &str = "api_keys";
    pub const APP_KEYS: &str = "app_keys";
    pub const END_USERS: &str = "end_users";
    pub const END_USERS_BY_ID: &str = "end_users_by_id";
    pub const CONVERSATIONS: &str = "conversations";
    pub const CONV_BY_UPDATED: &str = "conv_by_updated";
    pub const CONV_BY_CREATED: &str = "conv_by_created";
    pub const MESSAGES: &str = "messages";
    pub const CONV_MESSAGES: &str = "conv_messages";
    pub const MESSAGE_BY_TASK: &str = "message_by_task";
    pub const WORKFLOW_RUNS: &str = "workflow_runs";
    pub const RUN_BY_TASK: &str = "run_by_task";
    pub const APP_RUNS: &str = "app_runs";
    pub const CONV_VARS: &str = "conv_vars";
    pub const OPEN_RUNS: &str = "open_runs";
    pub const FILES: &str = "files";
    pub const FILE_REFS: &str = "file_refs";
    pub const FEEDBACKS: &str = "feedbacks";
    pub const APP_FEEDBACKS: &str = "app_feedbacks";
    pub const ANNOTATIONS: &str = "annotations";
    pub const APP_ANNOTATIONS: &str = "app_annotations";
    pub const ANNOTATION_SETTINGS: &str = "annotation_settings";
    pub const WIRE_CHECKPOINTS: &str = "wire_checkpoints";
}
