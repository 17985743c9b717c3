//! Conversations, listed per (app, end user) by `updated_at` or `created_at`.

use ferrify_store::{KvTxn, Projector, Record, Result};
use uuid::Uuid;

use super::{decode, key, stream_id, time_key, trees};
use crate::event::Event;
use crate::model::{ConversationRow, ConversationVariableRow};

pub struct Conversations;

/// Index key: app + end user + time + conversation.
pub fn index_key(row: &ConversationRow, micros: i64) -> Vec<u8> {
    key(&[row.app_id.as_bytes(), row.end_user_id.as_bytes(), &time_key(micros), row.id.as_bytes()])
}

/// Index prefix of one end user's conversations in one app.
pub fn index_prefix(app_id: Uuid, end_user_id: Uuid) -> Vec<u8> {
    key(&[app_id.as_bytes(), end_user_id.as_bytes()])
}

fn unindex(kv: &mut KvTxn<'_>, row: &ConversationRow) {
    kv.delete(trees::CONV_BY_UPDATED, &index_key(row, row.updated_at));
    kv.delete(trees::CONV_BY_CREATED, &index_key(row, row.created_at));
}

/// Saves a row whose `updated_at` moved from `was`: its entry in the
/// `updated_at` index moves with it, the `created_at` one stays as it is.
fn touch(kv: &mut KvTxn<'_>, row: &ConversationRow, was: i64) -> Result<()> {
    if !row.deleted && was != row.updated_at {
        kv.delete(trees::CONV_BY_UPDATED, &index_key(row, was));
        kv.put(trees::CONV_BY_UPDATED, &index_key(row, row.updated_at), Vec::new());
    }
    kv.put_row(trees::CONVERSATIONS, row.id.as_bytes(), row)
}

fn save(kv: &mut KvTxn<'_>, row: &ConversationRow) -> Result<()> {
    kv.put_row(trees::CONVERSATIONS, row.id.as_bytes(), row)?;
    if !row.deleted {
        kv.put(trees::CONV_BY_UPDATED, &index_key(row, row.updated_at), Vec::new());
        kv.put(trees::CONV_BY_CREATED, &index_key(row, row.created_at), Vec::new());
    }
    Ok(())
}

impl Projector for Conversations {
    fn name(&self) -> &str {
        "conversations"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        match record.stream.kind() {
            "run" => {
                let env = decode(record, kv)?;
                let Event::RunStarted(run) = &env.event else {
                    return Ok(());
                };
                let Some(conversation_id) = run.conversation_id else {
                    return Ok(());
                };
                if let Some(new) = &run.new_conversation {
                    let row = ConversationRow {
                        id: conversation_id,
                        app_id: run.app_id,
                        end_user_id: run.end_user_id,
                        name: new.name.clone(),
                        inputs: run.inputs.0.clone(),
                        introduction: new.introduction.clone(),
                        status: "normal".into(),
                        created_at: env.at,
                        updated_at: env.at,
                        deleted: false,
                        message_count: 1,
                    };
                    save(kv, &row)?;
                } else if let Some(mut row) =
                    kv.get_json::<ConversationRow>(trees::CONVERSATIONS, conversation_id.as_bytes())?
                {
                    let was = row.updated_at;
                    row.updated_at = env.at;
                    row.message_count += 1;
                    touch(kv, &row, was)?;
                }
            }
            "conversation" => {
                let Some(id) = stream_id(record, "conversation") else {
                    return Ok(());
                };
                let env = decode(record, kv)?;
                if let Event::ConversationVariableUpdated { variable_id, name, value_type, value } = &env.event {
                    let k = key(&[id.as_bytes(), variable_id.as_bytes()]);
                    let created_at = kv
                        .get_json::<ConversationVariableRow>(trees::CONV_VARS, &k)?
                        .map(|r| r.created_at)
                        .unwrap_or(env.at);
                    let row = ConversationVariableRow {
                        id: variable_id.clone(),
                        conversation_id: id,
                        name: name.clone(),
                        value_type: value_type.clone(),
                        value: value.0.clone(),
                        created_at,
                        updated_at: env.at,
                    };
                    return kv.put_json(trees::CONV_VARS, &k, &row);
                }
                if !matches!(env.event, Event::ConversationRenamed { .. } | Event::ConversationDeleted) {
                    return Ok(());
                }
                let Some(mut row) = kv.get_json::<ConversationRow>(trees::CONVERSATIONS, id.as_bytes())? else {
                    return Ok(());
                };
                match &env.event {
                    Event::ConversationRenamed { name } => {
                        let was = row.updated_at;
                        row.name = name.clone();
                        row.updated_at = env.at;
                        touch(kv, &row, was)?;
                    }
                    Event::ConversationDeleted => {
                        unindex(kv, &row);
                        row.deleted = true;
                        save(kv, &row)?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}
