//! Messages (chat turns and completions), in conversation order.
//!
//! A run's later events name only its task (their stream), so the projection
//! has to find the message from the task id. Runs started by this version
//! have the message id [`message_id_of`] their task id and need no index;
//! a run whose message id is anything else (runs recorded by earlier
//! versions) gets a `message_by_task` entry. Earlier binaries find messages
//! only through that index: after a downgrade, run their `ferrify rebuild`.

use ferrify_store::{KvTxn, Projector, Record, Result};
use uuid::Uuid;

use super::{decode, key, stream_id, time_key, trees};
use crate::event::{Event, Usage};
use crate::model::MessageRow;

pub struct Messages;

/// Where message ids of new runs come from (a fixed UUID, the namespace of
/// [`message_id_of`]).
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x5e0c_9f7d_3b1a_4c62_8e47_a1d2_b6f0_9c33);

/// The message id of a new run with task `task_id` (a name-based UUID: unique
/// per task, and computable from the task id alone).
pub fn message_id_of(task_id: Uuid) -> Uuid {
    Uuid::new_v5(&MESSAGE_NAMESPACE, task_id.as_bytes())
}

/// Index key of a message in its conversation.
pub fn conv_key(conversation_id: Uuid, created_at: i64, message_id: Uuid) -> Vec<u8> {
    key(&[conversation_id.as_bytes(), &time_key(created_at), message_id.as_bytes()])
}

impl Projector for Messages {
    fn name(&self) -> &str {
        "messages"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(task_id) = stream_id(record, "run") else {
            return Ok(());
        };
        let env = decode(record, kv)?;
        if let Event::RunStarted(run) = &env.event {
            let Some(message_id) = run.message_id else {
                return Ok(());
            };
            let row = MessageRow {
                id: message_id,
                task_id,
                app_id: run.app_id,
                conversation_id: run.conversation_id,
                end_user_id: run.end_user_id,
                workflow_run_id: run.workflow_run_id,
                query: run.query.clone(),
                inputs: run.inputs.0.clone(),
                files: run.files.0.clone(),
                answer: String::new(),
                status: "running".into(),
                error: None,
                stopped: false,
                usage: Usage::default(),
                provider_response_latency: 0.0,
                created_at: env.at,
            };
            kv.put_json(trees::MESSAGES, message_id.as_bytes(), &row)?;
            if message_id != message_id_of(task_id) {
                kv.put(trees::MESSAGE_BY_TASK, task_id.as_bytes(), message_id.as_bytes().to_vec());
            }
            if let Some(c) = run.conversation_id {
                kv.put(trees::CONV_MESSAGES, &conv_key(c, env.at, message_id), Vec::new());
            }
            return Ok(());
        }
        if !matches!(
            env.event,
            Event::AnswerReplaced { .. }
                | Event::MessageEnded { .. }
                | Event::RunFailed { .. }
                | Event::RunInterrupted { .. }
        ) {
            return Ok(());
        }
        let derived = message_id_of(task_id);
        let (id, mut row) = match kv.get_json::<MessageRow>(trees::MESSAGES, derived.as_bytes())? {
            Some(row) if row.task_id == task_id => (derived.as_bytes().to_vec(), row),
            _ => {
                let Some(id) = kv.get(trees::MESSAGE_BY_TASK, task_id.as_bytes())? else {
                    return Ok(());
                };
                let Some(row) = kv.get_json::<MessageRow>(trees::MESSAGES, &id)? else {
                    return Ok(());
                };
                (id, row)
            }
        };
        match &env.event {
            Event::AnswerReplaced { answer, .. } => row.answer = answer.clone(),
            Event::MessageEnded { answer, usage, latency, stopped } => {
                row.answer = answer.clone();
                row.usage = usage.clone();
                row.provider_response_latency = *latency;
                row.stopped = *stopped;
                row.status = "normal".into();
            }
            Event::RunFailed { message, .. } => {
                row.status = "error".into();
                row.error = Some(message.clone());
            }
            Event::RunInterrupted { answer, message } => {
                // The partial answer stays; a chatflow's may be empty (its text is in the nodes).
                if !answer.is_empty() || row.answer.is_empty() {
                    row.answer = answer.clone();
                }
                row.status = "error".into();
                row.error = Some(message.clone());
            }
            _ => return Ok(()),
        }
        kv.put_json(trees::MESSAGES, &id, &row)
    }
}
