//! Reads and edits of conversations and messages, scoped to one app and one
//! end user, with Dify's pagination semantics (§2.13, §2.17 of the API spec).

use ferrify_store::StreamId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::apps::LoadedApp;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::model::{ConversationRow, FeedbackRow, MessageRow};
use crate::projection::conversations::index_prefix;
use crate::projection::messages::conv_key;
use crate::projection::{secs, time_key, trees};
use crate::runner::end_user_id;
use crate::wire::usage_json;

/// A page of a cursor-paginated list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub limit: usize,
    pub has_more: bool,
    pub data: Vec<Value>,
}

impl Page {
    pub fn to_json(&self) -> Value {
        json!({"limit": self.limit, "has_more": self.has_more, "data": self.data})
    }
}

/// Sort orders of `GET /conversations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    CreatedAsc,
    CreatedDesc,
    UpdatedAsc,
    UpdatedDesc,
}

impl SortBy {
    pub fn parse(s: &str) -> Option<SortBy> {
        Some(match s {
            "created_at" => SortBy::CreatedAsc,
            "-created_at" => SortBy::CreatedDesc,
            "updated_at" => SortBy::UpdatedAsc,
            "-updated_at" => SortBy::UpdatedDesc,
            _ => return None,
        })
    }
}

/// What `GET /conversations/:id/variables` asks for.
#[derive(Debug, Clone)]
pub struct VariablesQuery {
    /// Most variables on the page.
    pub limit: usize,
    /// Only variables after this one (in the listing's order).
    pub last_id: Option<Uuid>,
    /// Only variables whose name contains this (ignoring case).
    pub name: Option<String>,
}

/// A conversation as the API shows it.
pub fn conversation_json(c: &ConversationRow) -> Value {
    json!({
        "id": c.id.to_string(),
        "name": c.name,
        "inputs": c.inputs,
        "status": c.status,
        "introduction": c.introduction,
        "created_at": secs(c.created_at),
        "updated_at": secs(c.updated_at),
    })
}

/// A message's files as history shows them (§3.3): the request's files,
/// `belongs_to: user`. Uploaded files get a freshly signed `url` (`sign`), as
/// Dify refreshes them; remote files keep theirs.
pub fn message_files(m: &MessageRow, sign: &dyn Fn(Uuid) -> String) -> Vec<Value> {
    let files = m.files.as_array().map(Vec::as_slice).unwrap_or_default();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let text = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
            let upload = text("related_id");
            let local = f.get("transfer_method").and_then(Value::as_str) == Some("local_file");
            let url = match upload.as_str().and_then(|u| Uuid::parse_str(u).ok()) {
                Some(id) if local => Value::String(sign(id)),
                _ => text("url"),
            };
            json!({
                "id": Uuid::new_v5(&m.id, format!("file-{i}").as_bytes()).to_string(),
                "filename": text("filename"),
                "type": text("type"),
                "url": url,
                "mime_type": text("mime_type"),
                "size": text("size"),
                "transfer_method": text("transfer_method"),
                "belongs_to": "user",
                "upload_file_id": upload,
            })
        })
        .collect()
}

/// A message as `GET /messages` shows it, with its end user's feedback.
pub fn message_json(m: &MessageRow, feedback: Option<&FeedbackRow>, sign: &dyn Fn(Uuid) -> String) -> Value {
    let usage = usage_json(&m.usage);
    let status = if m.status == "error" { "error" } else { "normal" };
    json!({
        "id": m.id.to_string(),
        "conversation_id": m.conversation_id.map(|c| c.to_string()),
        "parent_message_id": "00000000-0000-0000-0000-000000000000",
        "inputs": m.inputs,
        "query": m.query,
        "answer": m.answer,
        "status": status,
        "error": m.error,
        "message_files": message_files(m, sign),
        "feedback": feedback.map(|f| json!({"rating": f.rating})),
        "retriever_resources": [],
        "agent_thoughts": [],
        "created_at": secs(m.created_at),
        "extra_contents": [],
        "message_tokens": m.usage.prompt_tokens,
        "answer_tokens": m.usage.completion_tokens,
        "total_tokens": usage["total_tokens"],
        "provider_response_latency": m.provider_response_latency,
        "total_price": if m.usage.total_price.is_empty() { Value::Null } else { usage["total_price"].clone() },
        "currency": if m.usage.currency.is_empty() { Value::Null } else { usage["currency"].clone() },
    })
}

impl Engine {
    /// `not_chat_app` unless `app` is a chat, agent or chatflow app (Dify
    /// checks this before it reads the rest of the request).
    pub fn require_chat_app(app: &LoadedApp) -> Result<()> {
        if app.mode().is_chat_family() {
            Ok(())
        } else {
            Err(EngineError::NotChatApp)
        }
    }

    /// The conversation if it belongs to this app and end user and is not deleted.
    pub fn owned_conversation(&self, app: &LoadedApp, user: &str, id: Uuid) -> Result<Option<ConversationRow>> {
        let row = self.store().get_json::<ConversationRow>(trees::CONVERSATIONS, id.as_bytes())?;
        let who = end_user_id(app.id(), user);
        Ok(row.filter(|c| c.app_id == app.id() && c.end_user_id == who && !c.deleted))
    }

    /// The message if it belongs to this app and end user, else `Message Not Exists.`
    pub(crate) fn owned_message(&self, app: &LoadedApp, user: &str, id: Uuid) -> Result<MessageRow> {
        let who = end_user_id(app.id(), user);
        self.store()
            .get_json::<MessageRow>(trees::MESSAGES, id.as_bytes())?
            .filter(|m| m.app_id == app.id() && m.end_user_id == who)
            .ok_or_else(|| EngineError::NotFound("Message Not Exists.".into()))
    }

    fn conversation_or_404(&self, app: &LoadedApp, user: &str, id: Uuid) -> Result<ConversationRow> {
        self.owned_conversation(app, user, id)?.ok_or_else(|| EngineError::NotFound("Conversation Not Exists.".into()))
    }

    /// `GET /messages`: the newest `limit` messages older than `first_id`, oldest first.
    pub fn list_messages(
        &self,
        app: &LoadedApp,
        user: &str,
        conversation_id: Uuid,
        first_id: Option<Uuid>,
        limit: usize,
    ) -> Result<Page> {
        Self::require_chat_app(app)?;
        let conv = self.conversation_or_404(app, user, conversation_id)?;
        let before = match first_id {
            Some(id) => {
                let m = self
                    .store()
                    .get_json::<MessageRow>(trees::MESSAGES, id.as_bytes())?
                    .filter(|m| m.conversation_id == Some(conv.id))
                    .ok_or_else(|| EngineError::NotFound("First Message Not Exists.".into()))?;
                Some(conv_key(conv.id, m.created_at, m.id))
            }
            None => None,
        };
        let index = self.store().scan(trees::CONV_MESSAGES, conv.id.as_bytes(), before.as_deref(), limit + 1, true)?;
        let has_more = index.len() > limit;
        let mut data = Vec::with_capacity(limit);
        for (k, _) in index.into_iter().take(limit) {
            let Ok(id) = Uuid::from_slice(&k[k.len() - 16..]) else { continue };
            if let Some(m) = self.store().get_json::<MessageRow>(trees::MESSAGES, id.as_bytes())? {
                let feedback = self.feedback_of(&m)?;
                data.push(message_json(&m, feedback.as_ref(), &|id| self.file_url(id)));
            }
        }
        data.reverse();
        Ok(Page { limit, has_more, data })
    }

    /// `GET /conversations`.
    pub fn list_conversations(
        &self,
        app: &LoadedApp,
        user: &str,
        last_id: Option<Uuid>,
        limit: usize,
        sort: SortBy,
    ) -> Result<Page> {
        Self::require_chat_app(app)?;
        let who = end_user_id(app.id(), user);
        let (tree, reverse) = match sort {
            SortBy::CreatedAsc => (trees::CONV_BY_CREATED, false),
            SortBy::CreatedDesc => (trees::CONV_BY_CREATED, true),
            SortBy::UpdatedAsc => (trees::CONV_BY_UPDATED, false),
            SortBy::UpdatedDesc => (trees::CONV_BY_UPDATED, true),
        };
        let prefix = index_prefix(app.id(), who);
        // With a reference conversation, keep rows strictly beyond its sort time
        // (rows tied with it on the timestamp are skipped, as in Dify).
        let after = match last_id {
            Some(id) => {
                let c = self
                    .owned_conversation(app, user, id)?
                    .ok_or_else(|| EngineError::NotFound("Last Conversation Not Exists.".into()))?;
                let t = if tree == trees::CONV_BY_CREATED { c.created_at } else { c.updated_at };
                let mut k = prefix.clone();
                k.extend_from_slice(&time_key(t));
                if !reverse {
                    k.extend_from_slice(&[0xFF; 16]);
                }
                Some(k)
            }
            None => None,
        };
        let index = self.store().scan(tree, &prefix, after.as_deref(), limit + 1, reverse)?;
        let has_more = index.len() > limit;
        let mut data = Vec::with_capacity(limit);
        for (k, _) in index.into_iter().take(limit) {
            let Ok(id) = Uuid::from_slice(&k[k.len() - 16..]) else { continue };
            if let Some(c) = self.store().get_json::<ConversationRow>(trees::CONVERSATIONS, id.as_bytes())? {
                data.push(conversation_json(&c));
            }
        }
        Ok(Page { limit, has_more, data })
    }

    async fn append_conversation(&self, id: Uuid, event: Event) -> Result<()> {
        let stream = StreamId::of("conversation", id)?;
        self.append_run(&stream, vec![Envelope::new(self.now(), None, event)]).await
    }

    /// `DELETE /conversations/:id`.
    pub async fn delete_conversation(&self, app: &LoadedApp, user: &str, id: Uuid) -> Result<()> {
        Self::require_chat_app(app)?;
        self.conversation_or_404(app, user, id)?;
        self.append_conversation(id, Event::ConversationDeleted).await
    }

    /// `POST /conversations/:id/name`.
    pub async fn rename_conversation(
        &self,
        app: &LoadedApp,
        user: &str,
        id: Uuid,
        name: Option<String>,
        auto_generate: bool,
    ) -> Result<Value> {
        Self::require_chat_app(app)?;
        let conv = self.conversation_or_404(app, user, id)?;
        let name = if auto_generate {
            let first = self.store().scan(trees::CONV_MESSAGES, conv.id.as_bytes(), None, 1, false)?;
            let Some((k, _)) = first.first() else { return Err(EngineError::InvalidParam(String::new())) };
            let query = Uuid::from_slice(&k[k.len() - 16..])
                .ok()
                .and_then(|mid| self.store().get_json::<MessageRow>(trees::MESSAGES, mid.as_bytes()).ok().flatten())
                .map(|m| m.query)
                .unwrap_or_default();
            match self.generate_title(app, &query).await {
                Some(t) => t,
                None => return Ok(conversation_json(&conv)),
            }
        } else {
            match name {
                Some(n) if !n.trim().is_empty() => n,
                _ => return Err(EngineError::InvalidParam("name is required when auto_generate is false".into())),
            }
        };
        self.append_conversation(id, Event::ConversationRenamed { name }).await?;
        let conv = self.conversation_or_404(app, user, id)?;
        Ok(conversation_json(&conv))
    }

    /// `GET /conversations/:id/variables`: the conversation variables of an
    /// advanced-chat conversation (values as text: strings as they are,
    /// anything else as JSON), oldest first.
    ///
    /// As Dify: `name` keeps the variables whose name contains it, ignoring
    /// case; `last_id` (looked up among those) keeps the ones listed after it,
    /// and an unknown one is a 400 `invalid_param` with an empty message.
    pub fn conversation_variables(
        &self,
        app: &LoadedApp,
        user: &str,
        id: Uuid,
        query: &VariablesQuery,
    ) -> Result<Page> {
        let limit = query.limit;
        Self::require_chat_app(app)?;
        self.conversation_or_404(app, user, id)?;
        if app.mode() != crate::app::AppMode::AdvancedChat {
            return Ok(Page { limit, has_more: false, data: Vec::new() });
        }
        let declared = self.workflow(app, None).map(|wf| wf.conversation_variables.clone()).unwrap_or_default();
        let mut rows: Vec<crate::model::ConversationVariableRow> = self
            .store()
            .scan(trees::CONV_VARS, id.as_bytes(), None, usize::MAX, false)?
            .into_iter()
            .filter_map(|(_, v)| ferrify_store::codec::from_json(&v).ok())
            .collect();
        let order = |name: &str| declared.iter().position(|d| d.name == name).unwrap_or(usize::MAX);
        rows.sort_by_key(|r| (r.created_at, order(&r.name)));
        if let Some(name) = &query.name {
            let name = name.to_lowercase();
            rows.retain(|r| r.name.to_lowercase().contains(&name));
        }
        if let Some(last_id) = query.last_id {
            // Everything after it in the listing's order: variables created in
            // the same instant (a conversation's first turn creates them all)
            // stay apart by their declared order, so no page loses any.
            let Some(at) = rows.iter().position(|r| r.id.parse::<Uuid>().ok() == Some(last_id)) else {
                return Err(EngineError::InvalidParam(String::new()));
            };
            rows.drain(..=at);
        }
        let has_more = rows.len() > limit;
        let data = rows
            .iter()
            .take(limit)
            .map(|r| {
                let value = match &r.value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let description = declared.iter().find(|d| d.name == r.name).map(|d| d.description.clone());
                json!({
                    "id": r.id,
                    "name": r.name,
                    "value_type": r.value_type,
                    "value": value,
                    "description": description.unwrap_or_default(),
                    "created_at": secs(r.created_at),
                    "updated_at": secs(r.updated_at),
                })
            })
            .collect();
        Ok(Page { limit, has_more, data })
    }
}
