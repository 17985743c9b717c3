//! A chatflow turn whose inputs moderation flagged: answered with the preset
//! text, the workflow never starting (as in Dify: no `workflow_started`, one
//! `message` frame with the whole text, then `message_end`).
//!
//! ```text
//! RunStarted (no workflow run) ─ InputModerated ─ AnswerChunk ─ MessageEnded
//! ```
//!
//! The events are appended as one durable batch before the request is
//! answered; the blocking response is their fold.

use ferrify_store::StreamId;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::easy::Accepted;
use super::{RunHandle, Tap};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event, NewConversation, RunStarted, Usage};
use crate::json::Json;
use crate::provider::registry::price_usage;
use crate::wire::WireRun;

/// The turn as it was asked, and the preset answer.
pub(crate) struct PresetTurn {
    pub task_id: Uuid,
    pub message_id: Uuid,
    pub app_id: Uuid,
    pub end_user_id: Uuid,
    pub user: String,
    pub conversation_id: Uuid,
    pub new_conversation: Option<NewConversation>,
    pub workflow_id: Uuid,
    pub query: String,
    pub inputs: Map<String, Value>,
    pub files: Value,
    pub streaming: bool,
    pub trace_id: Option<String>,
    /// The moderation type that flagged the inputs.
    pub kind: &'static str,
    pub preset: String,
    /// Re-execution: where the events go besides the log (the outcome then always comes back).
    pub tap: Option<Tap>,
}

impl Engine {
    /// Records a chatflow turn answered by input moderation.
    pub(crate) async fn answer_preset_turn(&self, t: PresetTurn) -> Result<Accepted> {
        let stream = StreamId::of("run", t.task_id)?;
        let started = RunStarted {
            task_id: t.task_id,
            app_id: t.app_id,
            mode: "advanced-chat".into(),
            end_user_id: t.end_user_id,
            user: t.user,
            conversation_id: Some(t.conversation_id),
            new_conversation: t.new_conversation,
            message_id: Some(t.message_id),
            workflow_run_id: None,
            workflow_id: Some(t.workflow_id),
            query: t.query,
            inputs: Json(Value::Object(t.inputs)),
            files: Json(t.files),
            streaming: t.streaming,
            options: Json(json!({})),
        };
        let mut usage = Usage::default();
        price_usage(&mut usage, None);
        let now = self.now();
        let events = vec![
            Envelope::new(now, t.trace_id.clone(), Event::RunStarted(Box::new(started))),
            Envelope::new(now, None, Event::InputModerated { kind: t.kind.into(), preset_response: t.preset.clone() }),
            Envelope::new(now, None, Event::AnswerChunk { text: t.preset.clone(), from_variable_selector: None }),
            Envelope::new(
                now,
                t.trace_id,
                Event::MessageEnded { answer: t.preset, usage, latency: 0.0, stopped: false },
            ),
        ];
        let mut wire = WireRun::new();
        for e in &events {
            wire.advance(e);
        }
        self.append_run_tapped(&stream, events, t.tap.as_ref()).await?;
        let outcome = if t.streaming && t.tap.is_none() {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let outcome = wire
                .take_outcome()
                .ok_or_else(|| EngineError::AppUnavailable("the run ended without a terminal event".into()));
            let _ = tx.send(outcome);
            Some(rx)
        };
        Ok(Accepted {
            handle: RunHandle {
                task_id: t.task_id,
                stream,
                message_id: Some(t.message_id),
                conversation_id: Some(t.conversation_id),
                workflow_run_id: None,
            },
            outcome,
            frames: None,
        })
    }
}
