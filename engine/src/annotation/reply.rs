//! The run of a chat turn answered from an annotation (chat and
//! advanced-chat apps with annotation reply on):
//!
//! ```text
//! RunStarted ─ AnnotationReplied ─ AnswerChunk+ ─ MessageEnded
//! ```
//!
//! No model is called and no workflow starts. Basic chat streams the answer
//! one character per `message` frame, a chatflow in one frame (as Dify
//! does); `message_end.metadata.annotation_reply` names the annotation, and
//! the usage is zero. The events go through the run's log like any other run's.

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::app::AppMode;
use crate::engine::Engine;
use crate::error::Result;
use crate::event::{Envelope, Event, NewConversation, RunStarted, Usage};
use crate::json::Json;
use crate::limits::RunSlot;
use crate::model::AnnotationRow;
use crate::provider::registry::price_usage;
use crate::runner::easy::Accepted;
use crate::runner::recorder::Recorder;
use crate::runner::{RunHandle, Tap};

/// A turn to answer from an annotation.
pub(crate) struct AnnotationTurn {
    pub app_id: Uuid,
    pub mode: AppMode,
    pub end_user: Uuid,
    pub user: String,
    pub query: String,
    pub inputs: Map<String, Value>,
    pub files: Value,
    pub streaming: bool,
    pub trace_id: Option<String>,
    pub conversation_id: Uuid,
    pub new_conversation: Option<NewConversation>,
    pub guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    pub annotation: AnnotationRow,
    pub score: f64,
    /// Task and message ids of a re-executed run, and where its events go besides the log.
    pub ids: Option<(Uuid, Uuid)>,
    pub tap: Option<Tap>,
    pub slot: RunSlot,
}

impl Engine {
    /// Records the whole turn, then hands back its handle (and outcome for
    /// blocking requests and re-executions).
    pub(crate) async fn answer_from_annotation(&self, t: AnnotationTurn) -> Result<Accepted> {
        let rerun = t.ids.is_some();
        let (task_id, message_id) = t.ids.unwrap_or_else(crate::runner::new_ids);
        let stream = ferrify_store::StreamId::of("run", task_id)?;
        let started = RunStarted {
            task_id,
            app_id: t.app_id,
            mode: t.mode.as_str().to_string(),
            end_user_id: t.end_user,
            user: t.user,
            conversation_id: Some(t.conversation_id),
            new_conversation: t.new_conversation,
            message_id: Some(message_id),
            workflow_run_id: None,
            workflow_id: None,
            query: t.query,
            inputs: Json(Value::Object(t.inputs)),
            files: Json(if t.files.is_null() { json!([]) } else { t.files }),
            streaming: t.streaming,
            options: Json(json!({"annotation_reply": true})),
        };
        let mut recorder = Recorder::new(self.clone(), stream.clone(), !t.streaming, t.tap);
        let result = async {
            recorder.push(Envelope::new(self.now(), t.trace_id.clone(), Event::RunStarted(Box::new(started)))).await?;
            let hit = Event::AnnotationReplied { app_id: t.app_id, annotation_id: t.annotation.id, score: t.score };
            recorder.push(Envelope::new(self.now(), None, hit)).await?;
            let answer = t.annotation.answer.clone();
            let pieces: Vec<String> =
                if t.mode == AppMode::Chat { answer.chars().map(String::from).collect() } else { vec![answer.clone()] };
            for text in pieces.into_iter().filter(|p| !p.is_empty()) {
                let chunk = Event::AnswerChunk { text, from_variable_selector: None };
                recorder.push(Envelope::new(self.now(), None, chunk)).await?;
            }
            let mut usage = Usage { latency: 0.0, ..Usage::default() };
            price_usage(&mut usage, None);
            let end = Event::MessageEnded { answer, usage, latency: 0.0, stopped: false };
            recorder.push(Envelope::new(self.now(), t.trace_id.clone(), end)).await
        }
        .await;
        let outcome = match result {
            Ok(()) => recorder.finish().await,
            Err(e) => Err(e),
        };
        drop(t.guard);
        self.release_conversation(t.conversation_id);
        drop(t.slot);
        let outcome = outcome?;
        let rx = if t.streaming && !rerun {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(outcome));
            Some(rx)
        };
        Ok(Accepted {
            handle: RunHandle {
                task_id,
                stream,
                message_id: Some(message_id),
                conversation_id: Some(t.conversation_id),
                workflow_run_id: None,
            },
            outcome: rx,
            frames: None,
        })
    }
}
