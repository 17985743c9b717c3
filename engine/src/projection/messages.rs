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

/// The message id of a new run with task `task_id`: unique per task, and
/// computable from the task id alone. It is a name-based UUID (version 5) of
/// the task id; for a time-ordered task id (version 7, see [`crate::ids`]) it
/// keeps the task's timestamp and version, with the hash in the random bits,
/// so that messages of new runs are time-ordered too.
pub fn message_id_of(task_id: Uuid) -> Uuid {
    let hashed = Uuid::new_v5(&MESSAGE_NAMESPACE, task_id.as_bytes());
    if task_id.get_version_num() != 7 {
        return hashed;
    }
    let mut bytes = *hashed.as_bytes();
    bytes[..6].copy_from_slice(&task_id.as_bytes()[..6]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    Uuid::from_bytes(bytes)
}

/// Index key of a message in its conversation.
pub fn conv_key(conversation_id: Uuid, created_at: i64, message_id: Uuid) -> Vec<u8> {
    key(&[conversation_id.as_bytes(), &time_key(created_at), message_id.as_bytes()])
}

/// A message's answer as Dify stores it: a chat or completion app's trimmed,
/// its `{{placeholders}}` turned into `{placeholders}`; a chatflow's as it was
/// given (its row says so when the turn ran the workflow; an annotation's or a
/// moderation's reply is told by the app's mode, read only when it matters).
fn stored_answer(kv: &KvTxn<'_>, row: &MessageRow, answer: &str) -> Result<String> {
    if row.workflow_run_id.is_some() {
        return Ok(answer.to_string());
    }
    let normalised = crate::runner::prompt::remove_template_variables(answer.trim());
    if normalised == answer {
        return Ok(normalised);
    }
    let app = kv.get_json::<crate::model::AppRow>(trees::APPS, row.app_id.as_bytes())?;
    let chatflow = app.is_some_and(|a| a.mode == crate::app::AppMode::AdvancedChat.as_str());
    Ok(if chatflow { answer.to_string() } else { normalised })
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
            kv.put_row(trees::MESSAGES, message_id.as_bytes(), &row)?;
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
                // As Dify stores them: a chat or completion answer trimmed, with
                // its `{{placeholders}}` turned into `{placeholders}` (a
                // chatflow's as it was streamed).
                row.answer = stored_answer(kv, &row, answer)?;
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
        kv.put_row(trees::MESSAGES, &id, &row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_of_time_ordered_tasks_keep_the_task_s_time() {
        let task = crate::ids::new();
        let message = message_id_of(task);
        assert_eq!(message.get_version_num(), 7);
        assert_eq!(message.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(message.as_bytes()[..6], task.as_bytes()[..6]);
        assert_ne!(message, task);
        assert_eq!(message_id_of(task), message, "computable again from the task id alone");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = crate::ids::new();
        assert!(message_id_of(later) > message, "a later run's message sorts after");
    }

    #[test]
    fn message_ids_of_earlier_tasks_are_unchanged() {
        // Runs recorded before task ids were time-ordered keep the message id they had.
        let task = Uuid::parse_str("0b6f2c1e-8f55-4f0e-9a51-2a7c3f4d5e60").unwrap_or_default();
        assert_eq!(message_id_of(task), Uuid::new_v5(&MESSAGE_NAMESPACE, task.as_bytes()));
        assert_eq!(message_id_of(task).get_version_num(), 5);
    }
}
