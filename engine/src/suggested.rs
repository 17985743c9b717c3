//! Suggested questions after an answer (`GET /messages/:id/suggested`, §2.16).
//!
//! Owns the prompt, the parsing of the model's answer and the record of the
//! call. When the app enables `suggested_questions_after_answer`, the last
//! turns of the message's conversation go to a model with the request for
//! three short follow-up questions as a JSON array; the first `[…]` of the
//! answer is read as that array (anything else gives no questions, as does a
//! failed model call). Each generation is recorded as
//! [`Event::QuestionsSuggested`] on `suggested/<message_id>`.
//!
//! The model: a chat app's own `model_config.model`; an advanced-chat app's
//! first LLM node in its published graph (Dify uses the workspace's default
//! model there, which ferrify does not have).

use ferrify_store::StreamId;
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::AppMode;
use crate::apps::LoadedApp;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::json::Json;
use crate::provider::{ModelChunk, ModelRequest, PromptMessage, Role};

/// Conversation turns shown to the model.
const TURNS: usize = 3;

/// What the model is asked after the conversation's last turns.
const INSTRUCTIONS: &str = "Predict the three questions the human is most likely to ask next. \
Keep every question shorter than 20 characters, and write them in the language of the assistant's \
last answer. Answer with a JSON array of three strings and nothing else, like this:\n\
[\"question1\",\"question2\",\"question3\"]\n";

/// The questions in a model's answer: its first `[…]` read as a JSON array of
/// strings; anything else (no brackets, bad JSON, other values) gives none.
pub fn parse_questions(text: &str) -> Vec<String> {
    let Some(start) = text.find('[') else { return Vec::new() };
    let Some(len) = text[start..].find(']') else { return Vec::new() };
    match serde_json::from_str::<Vec<Value>>(&text[start..=start + len]) {
        Ok(items) if items.iter().all(Value::is_string) => {
            items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        _ => Vec::new(),
    }
}

/// The one user message of the request: the turns, the instructions.
fn prompt(turns: &[(String, String)]) -> String {
    let mut out = String::new();
    for (query, answer) in turns {
        out.push_str("Human: ");
        out.push_str(query);
        out.push_str("\nAssistant: ");
        out.push_str(answer);
        out.push('\n');
    }
    out.push_str(INSTRUCTIONS);
    out.push_str("questions:\n");
    out
}

impl Engine {
    /// `GET /messages/:id/suggested`: up to three follow-up questions for a
    /// message of this end user. Errors: a non-chat app, a message that is
    /// not theirs (`Message Not Exists.`), the feature off
    /// (`Suggested Questions Is Disabled.`), a model no provider serves.
    pub async fn suggested_questions(&self, app: &LoadedApp, user: &str, message_id: Uuid) -> Result<Vec<String>> {
        if !app.mode().is_chat_family() {
            return Err(EngineError::NotChatApp);
        }
        let message = self.owned_message(app, user, message_id)?;
        let spec = self.effective_spec(app);
        if !spec.feature_enabled("suggested_questions_after_answer") {
            return Err(EngineError::BadRequest("Suggested Questions Is Disabled.".into()));
        }
        let (provider, model) = match app.mode() {
            AppMode::AdvancedChat => self.chatflow_model(app)?,
            _ => spec.model_config.as_ref().map(|mc| (mc.model.provider.clone(), mc.model.name.clone())),
        }
        .ok_or_else(|| {
            EngineError::AppUnavailable("App unavailable: the app has no model to suggest questions with.".into())
        })?;
        let model = self.providers().resolve(&provider, &model)?;

        let history = match message.conversation_id {
            Some(c) => self.history(c, None)?,
            None => Vec::new(),
        };
        let turns: Vec<(String, String)> = history
            .chunks(2)
            .filter_map(|pair| match pair {
                [q, a] => Some((q.content.clone(), a.content.clone())),
                _ => None,
            })
            .collect();
        let turns = &turns[turns.len().saturating_sub(TURNS)..];
        let request = ModelRequest {
            model: model.model.clone(),
            messages: vec![PromptMessage { role: Role::User, content: prompt(turns), images: Vec::new() }],
            params: json!({"max_tokens": 256, "temperature": 0}),
        };
        let recorded = request.recorded();
        let mut text = String::new();
        let mut chunks = model.provider.stream(request);
        let mut failed = false;
        while let Some(item) = chunks.next().await {
            match item {
                Ok(ModelChunk::Text(t)) => text.push_str(&t),
                Ok(ModelChunk::Usage { .. }) => {}
                Err(e) => {
                    tracing::warn!(message = %message_id, "suggested questions: the model call failed: {e}");
                    failed = true;
                    break;
                }
            }
        }
        drop(chunks);
        let questions = if failed { Vec::new() } else { parse_questions(&text) };
        let event = Event::QuestionsSuggested {
            message_id,
            app_id: app.id(),
            provider: model.provider_name.clone(),
            model: model.model.clone(),
            request: Json(recorded),
            text,
            questions: questions.clone(),
        };
        let stream = StreamId::of("suggested", message_id)?;
        self.append_run(&stream, vec![Envelope::new(self.now(), None, event)]).await?;
        Ok(questions)
    }

    /// `(provider, model)` of the first LLM node of a chatflow's published
    /// graph: what its side tasks (suggested questions, titles) ask.
    pub(crate) fn chatflow_model(&self, app: &LoadedApp) -> Result<Option<(String, String)>> {
        match self.workflow(app, None) {
            Ok(wf) => Ok(wf.llm_model.clone()),
            Err(EngineError::Store(e)) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_questions(r#"["a?","b?","c?"]"#), vec!["a?", "b?", "c?"]);
        assert_eq!(parse_questions("Sure:\n```json\n[\"Why?\", \"How?\"]\n```"), vec!["Why?", "How?"]);
        assert!(parse_questions("no questions today").is_empty());
        assert!(parse_questions("[not json]").is_empty());
        assert!(parse_questions("[1, 2]").is_empty());
        assert!(parse_questions("[\"open").is_empty());
        assert!(parse_questions("").is_empty());
    }

    #[test]
    fn prompt_has_the_turns_then_the_instructions() {
        let p = prompt(&[("hi".into(), "hello".into())]);
        assert!(p.starts_with("Human: hi\nAssistant: hello\n"));
        assert!(p.ends_with("questions:\n"));
        // The example array in the instructions is what the builtin echo model gives back.
        assert_eq!(parse_questions(&p), vec!["question1", "question2", "question3"]);
    }
}
