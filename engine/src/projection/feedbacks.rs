//! End users' ratings of messages: one per message (only the message's own
//! end user can rate it), and an index of an app's feedback by creation time.

use ferrify_store::{KvTxn, Projector, Record, Result};
use uuid::Uuid;

use super::{decode, key, time_key, trees};
use crate::event::Event;
use crate::model::FeedbackRow;

pub struct Feedbacks;

/// Index key of a feedback in its app: app ‖ created ‖ feedback.
pub fn app_key(app_id: Uuid, created_at: i64, feedback_id: Uuid) -> Vec<u8> {
    key(&[app_id.as_bytes(), &time_key(created_at), feedback_id.as_bytes()])
}

impl Projector for Feedbacks {
    fn name(&self) -> &str {
        "feedbacks"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        if record.stream.kind() != "feedback" {
            return Ok(());
        }
        let env = decode(record, kv)?;
        match &env.event {
            Event::FeedbackGiven { feedback_id, message_id, app_id, conversation_id, end_user_id, rating, content } => {
                let existing = kv.get_json::<FeedbackRow>(trees::FEEDBACKS, message_id.as_bytes())?;
                let row = match existing {
                    Some(mut row) if row.id == *feedback_id => {
                        row.rating = rating.clone();
                        row.content = content.clone();
                        row.updated_at = env.at;
                        row
                    }
                    other => {
                        if let Some(old) = other {
                            kv.delete(trees::APP_FEEDBACKS, &app_key(old.app_id, old.created_at, old.id));
                        }
                        kv.put(
                            trees::APP_FEEDBACKS,
                            &app_key(*app_id, env.at, *feedback_id),
                            message_id.as_bytes().to_vec(),
                        );
                        FeedbackRow {
                            id: *feedback_id,
                            app_id: *app_id,
                            conversation_id: *conversation_id,
                            message_id: *message_id,
                            rating: rating.clone(),
                            content: content.clone(),
                            from_end_user_id: *end_user_id,
                            created_at: env.at,
                            updated_at: env.at,
                        }
                    }
                };
                kv.put_json(trees::FEEDBACKS, message_id.as_bytes(), &row)
            }
            Event::FeedbackRevoked { feedback_id, message_id, .. } => {
                if let Some(old) = kv.get_json::<FeedbackRow>(trees::FEEDBACKS, message_id.as_bytes())? {
                    if old.id == *feedback_id {
                        kv.delete(trees::APP_FEEDBACKS, &app_key(old.app_id, old.created_at, old.id));
                        kv.delete(trees::FEEDBACKS, message_id.as_bytes());
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
