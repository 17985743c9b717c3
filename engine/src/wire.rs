//! The wire mapping: a run's events → Dify's SSE data frames and blocking
//! responses. Pure (no clock, no I/O), used by the HTTP edge for live streams
//! and by replay for transcripts, so both are byte-identical.
//!
//! A [`WireRun`] is fed the run's events in order; each call returns the
//! JSON frames (compact, UTF-8) that event yields, and [`WireRun::is_done`]
//! turns true after the terminal frame.

use serde_json::{json, Map, Value};

use crate::event::{Envelope, Event, Usage};
use crate::projection::secs;

/// `metadata.usage` as Dify writes it (prices as decimal strings).
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "prompt_unit_price": u.prompt_unit_price,
        "prompt_price_unit": u.prompt_price_unit,
        "prompt_price": u.prompt_price,
        "completion_tokens": u.completion_tokens,
        "completion_unit_price": u.completion_unit_price,
        "completion_price_unit": u.completion_price_unit,
        "completion_price": u.completion_price,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "total_price": u.total_price,
        "currency": u.currency,
        "latency": u.latency,
        "time_to_first_token": u.time_to_first_token,
        "time_to_generate": u.time_to_generate,
    })
}

/// The outcome of a run, folded from its events (what a blocking request answers).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The message ended (possibly stopped); the full response body.
    Message(Value),
    /// The run failed: HTTP status, Dify code, message.
    Failed { status: u16, code: String, message: String },
}

/// The state of one run's wire mapping.
#[derive(Clone, Debug, Default)]
pub struct WireRun {
    mode: String,
    task_id: String,
    message_id: String,
    conversation_id: Option<String>,
    created_at: i64,
    answer: String,
    done: bool,
    outcome: Option<Outcome>,
}

impl WireRun {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the terminal frame was produced.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The folded outcome, once done.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The envelope fields every frame of a message run starts with.
    fn envelope(&self, event: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), event.into());
        if let Some(c) = &self.conversation_id {
            m.insert("conversation_id".into(), c.clone().into());
        }
        m.insert("message_id".into(), self.message_id.clone().into());
        m.insert("created_at".into(), self.created_at.into());
        m
    }

    /// The frames one event yields, as compact JSON text.
    pub fn frames(&mut self, env: &Envelope) -> Vec<String> {
        self.values(env).into_iter().map(|v| v.to_string()).collect()
    }

    /// The frames one event yields.
    pub fn values(&mut self, env: &Envelope) -> Vec<Value> {
        if self.done {
            return Vec::new();
        }
        match &env.event {
            Event::RunStarted(run) => {
                self.mode = run.mode.clone();
                self.task_id = run.task_id.to_string();
                self.message_id = run.message_id.map(|m| m.to_string()).unwrap_or_default();
                self.conversation_id = run.conversation_id.map(|c| c.to_string());
                self.created_at = secs(env.at);
                Vec::new()
            }
            Event::AnswerChunk { text, from_variable_selector } => {
                self.answer.push_str(text);
                let mut m = self.envelope("message");
                m.insert("task_id".into(), self.task_id.clone().into());
                m.insert("id".into(), self.message_id.clone().into());
                m.insert("answer".into(), text.clone().into());
                m.insert("from_variable_selector".into(), json!(from_variable_selector));
                vec![Value::Object(m)]
            }
            Event::AnswerReplaced { answer, reason } => {
                self.answer = answer.clone();
                let mut m = self.envelope("message_replace");
                m.insert("task_id".into(), self.task_id.clone().into());
                m.insert("answer".into(), answer.clone().into());
                m.insert("reason".into(), reason.clone().into());
                vec![Value::Object(m)]
            }
            Event::MessageEnded { answer, usage, .. } => {
                self.done = true;
                let metadata = json!({"usage": usage_json(usage)});
                let mut m = self.envelope("message_end");
                m.insert("task_id".into(), self.task_id.clone().into());
                m.insert("id".into(), self.message_id.clone().into());
                m.insert("metadata".into(), metadata.clone());
                m.insert("files".into(), Value::Null);
                let mut body = Map::new();
                body.insert("event".into(), "message".into());
                body.insert("task_id".into(), self.task_id.clone().into());
                body.insert("id".into(), self.message_id.clone().into());
                body.insert("message_id".into(), self.message_id.clone().into());
                if let Some(c) = &self.conversation_id {
                    body.insert("conversation_id".into(), c.clone().into());
                }
                body.insert("mode".into(), self.mode.clone().into());
                body.insert("answer".into(), answer.clone().into());
                body.insert("metadata".into(), metadata);
                body.insert("created_at".into(), self.created_at.into());
                self.outcome = Some(Outcome::Message(Value::Object(body)));
                vec![Value::Object(m)]
            }
            Event::RunFailed { code, message, status } => {
                self.done = true;
                self.outcome = Some(Outcome::Failed { status: *status, code: code.clone(), message: message.clone() });
                let mut m = self.envelope("error");
                m.insert("code".into(), code.clone().into());
                m.insert("message".into(), message.clone().into());
                m.insert("status".into(), (*status).into());
                vec![Value::Object(m)]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RunStarted;
    use crate::json::Json;
    use uuid::Uuid;

    #[test]
    fn chat_frames_and_blocking_fold() {
        let run = RunStarted {
            task_id: Uuid::from_u128(1),
            app_id: Uuid::from_u128(2),
            mode: "chat".into(),
            end_user_id: Uuid::from_u128(3),
            user: "u".into(),
            conversation_id: Some(Uuid::from_u128(4)),
            new_conversation: None,
            message_id: Some(Uuid::from_u128(5)),
            workflow_run_id: None,
            workflow_id: None,
            query: "q".into(),
            inputs: Json::object(),
            files: Json(json!([])),
            streaming: true,
            options: Json::object(),
        };
        let mut w = WireRun::new();
        assert!(w.frames(&Envelope::new(1_700_000_000_500_000, None, Event::RunStarted(Box::new(run)))).is_empty());
        let f =
            w.values(&Envelope::new(0, None, Event::AnswerChunk { text: "hi".into(), from_variable_selector: None }));
        assert_eq!(f[0]["event"], "message");
        assert_eq!(f[0]["answer"], "hi");
        assert_eq!(f[0]["created_at"], 1_700_000_000);
        assert_eq!(f[0]["conversation_id"], Uuid::from_u128(4).to_string());
        let end = w.values(&Envelope::new(
            0,
            None,
            Event::MessageEnded { answer: "hi".into(), usage: Usage::default(), latency: 0.1, stopped: false },
        ));
        assert_eq!(end[0]["event"], "message_end");
        assert!(w.is_done());
        let Some(Outcome::Message(body)) = w.outcome() else { panic!() };
        assert_eq!(body["answer"], "hi");
        assert_eq!(body["mode"], "chat");
        assert_eq!(body["metadata"]["usage"]["total_tokens"], 0);
        // Nothing after the terminal frame.
        assert!(w
            .values(&Envelope::new(0, None, Event::AnswerChunk { text: "x".into(), from_variable_selector: None }))
            .is_empty());
    }
}
