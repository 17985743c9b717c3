//! Feedback on messages (§2.14, §2.15): an end user likes or dislikes one of
//! their own messages, changes their mind, or revokes the rating. Each is an
//! event on `feedback/<message_id>`; the `feedbacks` projection folds them.

use ferrify_store::StreamId;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::apps::LoadedApp;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::model::{FeedbackRow, MessageRow};
use crate::projection::{secs, trees};

/// A rating as the API sends it: `like`, `dislike`, or `None` to revoke.
pub fn parse_rating(value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s == "like" || s == "dislike" => Ok(Some(s.clone())),
        _ => Err(EngineError::InvalidParam("rating must be 'like', 'dislike' or null".into())),
    }
}

/// ISO-8601 without a zone (`2025-01-16T14:30:29`), as Dify shows feedback times.
pub fn iso(micros: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs(micros)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => String::new(),
    }
}

/// A feedback as `GET /app/feedbacks` shows it.
pub fn feedback_json(f: &FeedbackRow) -> Value {
    json!({
        "id": f.id.to_string(),
        "app_id": f.app_id.to_string(),
        "conversation_id": f.conversation_id.map(|c| c.to_string()),
        "message_id": f.message_id.to_string(),
        "rating": f.rating,
        "content": f.content,
        "from_source": "user",
        "from_end_user_id": f.from_end_user_id.to_string(),
        "from_account_id": null,
        "created_at": iso(f.created_at),
        "updated_at": iso(f.updated_at),
    })
}

impl Engine {
    /// `POST /messages/:id/feedbacks`: rate (or re-rate) a message of this
    /// end user, or revoke the rating with `None`.
    pub async fn give_feedback(
        &self,
        app: &LoadedApp,
        user: &str,
        message_id: Uuid,
        rating: Option<String>,
        content: Option<String>,
    ) -> Result<()> {
        let message = self.owned_message(app, user, message_id)?;
        let existing = self.feedback_of(&message)?;
        let event = match (rating, existing) {
            (Some(rating), existing) => Event::FeedbackGiven {
                feedback_id: existing.map(|f| f.id).unwrap_or_else(Uuid::new_v4),
                message_id,
                app_id: app.id(),
                conversation_id: message.conversation_id,
                end_user_id: message.end_user_id,
                rating,
                content,
            },
            (None, Some(f)) => Event::FeedbackRevoked { feedback_id: f.id, message_id, app_id: app.id() },
            (None, None) => {
                return Err(EngineError::InvalidParam("rating cannot be None when feedback not exists".into()))
            }
        };
        let stream = StreamId::of("feedback", message_id)?;
        self.append_run(&stream, vec![Envelope::new(self.now(), None, event)]).await
    }

    /// The message's end user's feedback on it, if any.
    pub fn feedback_of(&self, message: &MessageRow) -> Result<Option<FeedbackRow>> {
        let row = self.store().get_json::<FeedbackRow>(trees::FEEDBACKS, message.id.as_bytes())?;
        Ok(row.filter(|f| f.from_end_user_id == message.end_user_id))
    }

    /// `GET /app/feedbacks`: the app's feedback, newest first, page by page.
    pub fn list_feedbacks(&self, app: &LoadedApp, page: usize, limit: usize) -> Result<Vec<Value>> {
        let skip = page.saturating_sub(1).saturating_mul(limit);
        let index =
            self.store().scan(trees::APP_FEEDBACKS, app.id().as_bytes(), None, skip.saturating_add(limit), true)?;
        let mut out = Vec::with_capacity(limit);
        for (_, message_id) in index.into_iter().skip(skip) {
            if let Some(f) = self.store().get_json::<FeedbackRow>(trees::FEEDBACKS, &message_id)? {
                out.push(feedback_json(&f));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_and_times() {
        assert_eq!(parse_rating(&json!("like")).unwrap().as_deref(), Some("like"));
        assert_eq!(parse_rating(&Value::Null).unwrap(), None);
        assert!(parse_rating(&json!("meh")).is_err());
        assert!(parse_rating(&json!(1)).is_err());
        assert_eq!(iso(1_737_037_829_000_000), "2025-01-16T14:30:29");
    }
}
