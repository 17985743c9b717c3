//! Annotations (§2.28): an app's canned question→answer pairs, and
//! "annotation reply" — a chat turn whose query is close enough to an
//! annotation question is answered with its answer, without a model call.
//!
//! Every change is an event on the app's stream (`AnnotationCreated`,
//! `AnnotationUpdated`, `AnnotationDeleted`, `AnnotationReplyEnabled`,
//! `AnnotationReplyDisabled`); the `annotations` projection folds them, and
//! the hit counts from the `AnnotationReplied` events of runs.
//!
//! - [`jobs`]: enabling and disabling reply, as Dify's asynchronous jobs;
//! - [`similarity`]: embeddings' cosine, or normalised text similarity;
//! - [`reply`]: the run that answers from an annotation.

pub mod jobs;
pub mod reply;
pub mod similarity;

use ferrify_store::{EventLog, Expected};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::model::{AnnotationRow, AnnotationSettingRow};
use crate::projection::annotations::row_key;
use crate::projection::{secs, trees};

/// Apps whose reply setting is cached at most (see [`crate::app_cache::AppCache`]).
pub(crate) const MAX_CACHED_SETTINGS: usize = 10_000;

/// Annotations a page shows at most, whatever `limit` asks (Dify's `max_per_page`).
pub const MAX_PAGE: usize = 100;

/// The account annotations are shown as edited by (ferrify has no console accounts).
pub const OWNER_ACCOUNT_ID: Uuid = Uuid::nil();
pub const OWNER_ACCOUNT_NAME: &str = "owner";

/// The message of an unknown annotation (404 `not_found`).
pub const NOT_FOUND: &str = "Annotation not found";

/// An annotation as the API shows it.
pub fn annotation_json(a: &AnnotationRow) -> Value {
    json!({
        "id": a.id.to_string(),
        "question": a.question,
        "answer": a.answer,
        "hit_count": a.hit_count,
        "created_at": secs(a.created_at),
    })
}

/// `message_end.metadata.annotation_reply` of a turn answered by `annotation_id`.
pub fn reply_metadata(annotation_id: Uuid) -> Value {
    json!({
        "id": annotation_id.to_string(),
        "account": {"id": OWNER_ACCOUNT_ID.to_string(), "name": OWNER_ACCOUNT_NAME},
    })
}

/// A page of annotations.
#[derive(Clone, Debug)]
pub struct AnnotationPage {
    pub data: Vec<AnnotationRow>,
    /// Annotations matching the keyword, over all pages.
    pub total: usize,
}

impl Engine {
    /// An app's annotations, newest first; `keyword` keeps those whose question
    /// or answer contains it (case-insensitive). `page` < 1 reads as 1, `limit`
    /// < 1 as 20, and at most [`MAX_PAGE`] are shown.
    pub fn list_annotations(&self, app_id: Uuid, page: i64, limit: i64, keyword: &str) -> Result<AnnotationPage> {
        let page = usize::try_from(page.max(1)).unwrap_or(1);
        let per_page = if limit < 1 { 20 } else { usize::try_from(limit).unwrap_or(MAX_PAGE).min(MAX_PAGE) };
        let needle = keyword.to_lowercase();
        let mut matching = Vec::new();
        for (k, _) in self.store().scan(trees::APP_ANNOTATIONS, app_id.as_bytes(), None, usize::MAX, true)? {
            let Ok(id) = Uuid::from_slice(&k[k.len().saturating_sub(16)..]) else { continue };
            let Some(row) = self.annotation(app_id, id)? else { continue };
            if needle.is_empty()
                || row.question.to_lowercase().contains(&needle)
                || row.answer.to_lowercase().contains(&needle)
            {
                matching.push(row);
            }
        }
        let total = matching.len();
        let data = matching.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect();
        Ok(AnnotationPage { data, total })
    }

    /// One annotation of an app.
    pub fn annotation(&self, app_id: Uuid, id: Uuid) -> Result<Option<AnnotationRow>> {
        Ok(self.store().get_json::<AnnotationRow>(trees::ANNOTATIONS, &row_key(app_id, id))?)
    }

    /// An app's annotation reply setting, while reply is on.
    /// Cached: a chat turn of an app without reply reads no row to find none.
    pub fn annotation_setting(&self, app_id: Uuid) -> Result<Option<AnnotationSettingRow>> {
        let row = self.inner.annotation_settings.get_or_load(&app_id, || -> Result<_> {
            let row = self.store().get_json::<AnnotationSettingRow>(trees::ANNOTATION_SETTINGS, app_id.as_bytes())?;
            Ok(Some((app_id, row)))
        })?;
        Ok(row.flatten())
    }

    /// `POST /apps/annotations`.
    pub async fn create_annotation(&self, app_id: Uuid, question: String, answer: String) -> Result<AnnotationRow> {
        let embedding = self.embed_question(app_id, &question).await?;
        let id = Uuid::new_v4();
        let at = self.now();
        let event = Event::AnnotationCreated {
            annotation_id: id,
            question: question.clone(),
            answer: answer.clone(),
            embedding,
        };
        self.append_app_event(app_id, Envelope::new(at, None, event)).await?;
        Ok(AnnotationRow {
            id,
            app_id,
            question,
            answer,
            hit_count: 0,
            created_at: at,
            updated_at: at,
            embedding: None,
        })
    }

    /// `PUT /apps/annotations/:id`.
    pub async fn update_annotation(
        &self,
        app_id: Uuid,
        id: Uuid,
        question: String,
        answer: String,
    ) -> Result<AnnotationRow> {
        let mut row = self.annotation(app_id, id)?.ok_or_else(|| EngineError::NotFound(NOT_FOUND.into()))?;
        let embedding = self.embed_question(app_id, &question).await?;
        let at = self.now();
        let event = Event::AnnotationUpdated {
            annotation_id: id,
            question: question.clone(),
            answer: answer.clone(),
            embedding,
        };
        self.append_app_event(app_id, Envelope::new(at, None, event)).await?;
        row.question = question;
        row.answer = answer;
        row.updated_at = at;
        Ok(row)
    }

    /// `DELETE /apps/annotations/:id`.
    pub async fn delete_annotation(&self, app_id: Uuid, id: Uuid) -> Result<()> {
        if self.annotation(app_id, id)?.is_none() {
            return Err(EngineError::NotFound(NOT_FOUND.into()));
        }
        let event = Event::AnnotationDeleted { annotation_id: id };
        self.append_app_event(app_id, Envelope::new(self.now(), None, event)).await
    }

    /// Appends one annotation event to the app's stream.
    pub(crate) async fn append_app_event(&self, app_id: Uuid, env: Envelope) -> Result<()> {
        let payload = env.encode().map_err(ferrify_store::Error::from)?;
        let stream = ferrify_store::StreamId::of("app", app_id)?;
        let r = self
            .store()
            .append(ferrify_store::Append::new(stream, vec![payload]).expect(Expected::Any).durable())
            .await;
        self.inner.annotation_settings.invalidate(app_id);
        r?;
        Ok(())
    }

    /// The question's embedding when reply is on with an embedding model.
    /// A failed call keeps the annotation without one (it cannot be matched
    /// until reply is enabled again), as Dify's indexing task would.
    async fn embed_question(&self, app_id: Uuid, question: &str) -> Result<Option<Vec<f32>>> {
        let Some(setting) = self.annotation_setting(app_id)?.filter(|s| s.embeddings) else { return Ok(None) };
        let Some(embedder) = self.providers().embedder(&setting.embedding_provider_name) else { return Ok(None) };
        match embedder.embed(&setting.embedding_model_name, vec![question.to_string()]).await {
            Ok(mut v) if v.len() == 1 => Ok(v.pop()),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(app = %app_id, "annotation question not embedded: {e}");
                Ok(None)
            }
        }
    }

    /// The annotation that answers `query`, when reply is on and the best
    /// match scores at least the threshold (a threshold of 0 counts as 1, as
    /// in Dify). Failures (an embedding call) mean no match, logged.
    pub(crate) async fn match_annotation(&self, app_id: Uuid, query: &str) -> Option<(AnnotationRow, f64)> {
        let setting = match self.annotation_setting(app_id) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(app = %app_id, "annotation setting unreadable: {e}");
                return None;
            }
        };
        let threshold = if setting.score_threshold > 0.0 { setting.score_threshold } else { 1.0 };
        let rows: Vec<AnnotationRow> =
            match self.store().scan(trees::ANNOTATIONS, app_id.as_bytes(), None, usize::MAX, false) {
                Ok(pairs) => pairs.iter().filter_map(|(_, v)| ferrify_store::codec::from_json(v).ok()).collect(),
                Err(e) => {
                    tracing::warn!(app = %app_id, "annotations unreadable: {e}");
                    return None;
                }
            };
        if rows.is_empty() {
            return None;
        }
        let scored: Vec<(AnnotationRow, f64)> = if setting.embeddings {
            let embedder = self.providers().embedder(&setting.embedding_provider_name)?;
            let query_vector = match embedder.embed(&setting.embedding_model_name, vec![query.to_string()]).await {
                Ok(mut v) if v.len() == 1 => v.pop()?,
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!(app = %app_id, "query not embedded, no annotation reply: {e}");
                    return None;
                }
            };
            rows.into_iter()
                .filter_map(|r| {
                    let score = similarity::cosine(&query_vector, r.embedding.as_deref()?);
                    Some((r, score))
                })
                .collect()
        } else {
            rows.into_iter()
                .map(|r| {
                    let score = similarity::text_similarity(query, &r.question);
                    (r, score)
                })
                .collect()
        };
        // Best score; ties go to the newest annotation.
        scored
            .into_iter()
            .filter(|(_, s)| *s >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.created_at.cmp(&b.0.created_at)))
    }
}
