//! Enabling and disabling annotation reply (`POST /apps/annotation-reply/:action`)
//! as Dify does it: each request starts a job and answers its id at once; the
//! job records `AnnotationReplyEnabled` (with every question embedded, when
//! the named provider is a configured one that embeds) or
//! `AnnotationReplyDisabled`. Job states live in memory for
//! [`JOB_TTL`], like Dify's cache entries; the setting itself is in the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{AnnotationReplyEnabled, Envelope, Event};
use crate::model::AnnotationRow;
use crate::projection::trees;

/// How long a job's state can be asked for.
pub const JOB_TTL: Duration = Duration::from_secs(600);
/// Questions embedded per embeddings call.
const EMBED_BATCH: usize = 64;

/// `enable` or `disable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyAction {
    Enable,
    Disable,
}

impl ReplyAction {
    /// The path's action; anything else is refused as Dify does.
    pub fn parse(s: &str) -> Result<ReplyAction> {
        match s {
            "enable" => Ok(ReplyAction::Enable),
            "disable" => Ok(ReplyAction::Disable),
            _ => Err(EngineError::InvalidParam("Unsupported annotation reply action".into())),
        }
    }
}

/// What enabling asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplySettings {
    pub score_threshold: f64,
    pub embedding_provider_name: String,
    pub embedding_model_name: String,
}

/// One job's state.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    app_id: Uuid,
    action: ReplyAction,
    /// `waiting`, `processing`, `completed` or `error`.
    status: &'static str,
    error: String,
    started: Instant,
}

/// Jobs by id.
pub(crate) type Jobs = HashMap<Uuid, Job>;

impl Engine {
    /// Starts an enable or disable job for the app: `{"job_id", "job_status"}`
    /// (`processing` with the running job's id when one is already running).
    pub fn start_annotation_reply_job(&self, app_id: Uuid, action: ReplyAction, settings: ReplySettings) -> Value {
        let job_id = {
            let mut jobs = self.inner.annotation_jobs.lock();
            jobs.retain(|_, j| j.started.elapsed() < JOB_TTL);
            let running = jobs.iter().find(|(_, j)| {
                j.app_id == app_id && j.action == action && matches!(j.status, "waiting" | "processing")
            });
            if let Some((id, _)) = running {
                return json!({"job_id": id.to_string(), "job_status": "processing"});
            }
            let id = Uuid::new_v4();
            jobs.insert(id, Job { app_id, action, status: "waiting", error: String::new(), started: Instant::now() });
            id
        };
        let engine = self.clone();
        self.spawn(async move {
            engine.set_job(job_id, "processing", String::new());
            let result = match action {
                ReplyAction::Enable => engine.enable_reply(app_id, job_id, settings).await,
                ReplyAction::Disable => engine.disable_reply(app_id, job_id).await,
            };
            match result {
                Ok(()) => engine.set_job(job_id, "completed", String::new()),
                Err(e) => {
                    tracing::warn!(app = %app_id, "annotation reply job failed: {e}");
                    engine.set_job(job_id, "error", e.to_string());
                }
            }
        });
        json!({"job_id": job_id.to_string(), "job_status": "waiting"})
    }

    /// `GET /apps/annotation-reply/:action/status/:job_id`: a job of this app
    /// and action, else `InvalidParam("The job does not exist.")`.
    pub fn annotation_reply_job(&self, app_id: Uuid, action: &str, job_id: Uuid) -> Result<Value> {
        let missing = || EngineError::InvalidParam("The job does not exist.".into());
        let action = ReplyAction::parse(action).map_err(|_| missing())?;
        let jobs = self.inner.annotation_jobs.lock();
        let job = jobs
            .get(&job_id)
            .filter(|j| j.app_id == app_id && j.action == action && j.started.elapsed() < JOB_TTL)
            .ok_or_else(missing)?;
        Ok(json!({"job_id": job_id.to_string(), "job_status": job.status, "error_msg": job.error}))
    }

    fn set_job(&self, job_id: Uuid, status: &'static str, error: String) {
        if let Some(j) = self.inner.annotation_jobs.lock().get_mut(&job_id) {
            j.status = status;
            j.error = error;
        }
    }

    async fn enable_reply(&self, app_id: Uuid, job_id: Uuid, s: ReplySettings) -> Result<()> {
        let embeddings = match self.providers().embedder(&s.embedding_provider_name) {
            None => None,
            Some(embedder) => {
                let rows: Vec<AnnotationRow> = self
                    .store()
                    .scan(trees::ANNOTATIONS, app_id.as_bytes(), None, usize::MAX, false)?
                    .iter()
                    .filter_map(|(_, v)| ferrify_store::codec::from_json(v).ok())
                    .collect();
                let mut out = Vec::with_capacity(rows.len());
                for batch in rows.chunks(EMBED_BATCH) {
                    let texts = batch.iter().map(|r| r.question.clone()).collect();
                    let vectors = embedder.embed(&s.embedding_model_name, texts).await?;
                    out.extend(batch.iter().map(|r| r.id).zip(vectors));
                }
                Some(out)
            }
        };
        let event = Event::AnnotationReplyEnabled(Box::new(AnnotationReplyEnabled {
            job_id,
            score_threshold: s.score_threshold,
            embedding_provider_name: s.embedding_provider_name,
            embedding_model_name: s.embedding_model_name,
            embeddings,
        }));
        self.append_app_event(app_id, Envelope::new(self.now(), None, event)).await
    }

    async fn disable_reply(&self, app_id: Uuid, job_id: Uuid) -> Result<()> {
        if self.annotation_setting(app_id)?.is_none() {
            return Ok(());
        }
        self.append_app_event(app_id, Envelope::new(self.now(), None, Event::AnnotationReplyDisabled { job_id })).await
    }
}
