//! Apps and API keys: import, listing, key creation and revocation, and the
//! lookup of an API key's app. Parsed apps are cached per app id and dropped
//! whenever the engine appends to that app's stream.

use std::sync::Arc;

use ferrify_store::{Append, EventLog, Expected, StreamId};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::{parse_dsl, AppMode, AppSpec};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::event::{Envelope, Event};
use crate::json::Json;
use crate::model::{ApiKeyRow, AppRow};
use crate::projection::{key as key_of, trees};

/// An app with its parsed DSL.
#[derive(Clone, Debug)]
pub struct LoadedApp {
    pub row: AppRow,
    pub spec: Arc<AppSpec>,
}

impl LoadedApp {
    pub fn id(&self) -> Uuid {
        self.row.id
    }

    pub fn mode(&self) -> AppMode {
        self.spec.mode
    }
}

/// What an import produced.
#[derive(Clone, Debug)]
pub struct Imported {
    pub app_id: Uuid,
    pub mode: AppMode,
    pub workflow_id: Option<Uuid>,
}

/// A newly created key: the only time the token is visible.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub row: ApiKeyRow,
    pub token: String,
}

/// Live API keys cached at most (see [`crate::app_cache::AppCache`]).
pub(crate) const MAX_CACHED_KEYS: usize = 10_000;

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..24).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("app-{body}")
}

/// `app-…wxyz`: enough to recognise a key in a listing.
pub fn mask_token(token: &str) -> String {
    let tail: String = token.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("app-…{tail}")
}

impl Engine {
    fn app_stream(app_id: Uuid) -> Result<StreamId> {
        Ok(StreamId::of("app", app_id)?)
    }

    /// Imports a DSL file as a new app (workflow apps also publish a first version).
    pub async fn import_app(&self, yaml: &str) -> Result<Imported> {
        let spec = check_dsl(yaml)?;
        let app_id = Uuid::new_v4();
        let now = self.now();
        let mut events = vec![Envelope::new(
            now,
            None,
            Event::AppImported {
                app_id,
                name: spec.name.clone(),
                mode: spec.mode.as_str().to_string(),
                description: spec.description.clone(),
                icon: spec.icon.clone(),
                icon_background: spec.icon_background.clone(),
                dsl: yaml.to_string(),
            },
        )];
        let mut workflow_id = None;
        if let Some(wf) = &spec.workflow {
            let id = Uuid::new_v4();
            workflow_id = Some(id);
            events.push(Envelope::new(
                now,
                None,
                Event::WorkflowPublished {
                    workflow_id: id,
                    graph: Json(wf.get("graph").cloned().unwrap_or_default()),
                    features: Json(wf.get("features").cloned().unwrap_or_default()),
                    environment: Json(wf.get("environment_variables").cloned().unwrap_or_default()),
                    conversation_variables: Json(wf.get("conversation_variables").cloned().unwrap_or_default()),
                },
            ));
        }
        self.append_app(app_id, events, Expected::NoStream).await?;
        Ok(Imported { app_id, mode: spec.mode, workflow_id })
    }

    /// Publishes a new workflow version of a workflow or advanced-chat app:
    /// `graph` + `features` (+ variables), or a whole DSL of the same mode.
    pub async fn publish_workflow(&self, app_id: Uuid, section: &serde_json::Value) -> Result<(Uuid, i64)> {
        let app = self.app(app_id)?.ok_or_else(|| EngineError::NotFound("App not found.".into()))?;
        if !matches!(app.mode(), AppMode::Workflow | AppMode::AdvancedChat) {
            return Err(EngineError::InvalidParam("only workflow and advanced-chat apps publish workflows".into()));
        }
        let wf = match section.get("yaml_content").and_then(serde_json::Value::as_str) {
            Some(yaml) => {
                let spec = parse_dsl(yaml)?;
                if spec.mode != app.mode() {
                    return Err(EngineError::InvalidParam(format!(
                        "the DSL is a {} app; this app is {}",
                        spec.mode.as_str(),
                        app.mode().as_str()
                    )));
                }
                spec.workflow.unwrap_or_default()
            }
            None => section.clone(),
        };
        if !wf.get("graph").is_some_and(serde_json::Value::is_object) {
            return Err(EngineError::InvalidParam("graph is required".into()));
        }
        check_graph(&wf)?;
        let id = Uuid::new_v4();
        let now = self.now();
        let event = Event::WorkflowPublished {
            workflow_id: id,
            graph: Json(wf.get("graph").cloned().unwrap_or_default()),
            features: Json(wf.get("features").cloned().unwrap_or_default()),
            environment: Json(wf.get("environment_variables").cloned().unwrap_or_default()),
            conversation_variables: Json(wf.get("conversation_variables").cloned().unwrap_or_default()),
        };
        self.append_app(app_id, vec![Envelope::new(now, None, event)], Expected::Any).await?;
        Ok((id, now))
    }

    async fn append_app(&self, app_id: Uuid, events: Vec<Envelope>, expected: Expected) -> Result<()> {
        let payloads = events
            .iter()
            .map(Envelope::encode)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(ferrify_store::Error::from)?;
        let r = self.store().append(Append::new(Self::app_stream(app_id)?, payloads).expect(expected).durable()).await;
        self.inner.apps.write().remove(&app_id);
        // Before the change is answered: a revoked key (or a deleted app's) fails from now on.
        self.inner.api_keys.invalidate(app_id);
        self.inner.annotation_settings.invalidate(app_id);
        r?;
        Ok(())
    }

    /// Every app that is not deleted, oldest first.
    pub fn list_apps(&self) -> Result<Vec<AppRow>> {
        let mut rows: Vec<AppRow> = self
            .store()
            .scan(trees::APPS, b"", None, usize::MAX, false)?
            .into_iter()
            .filter_map(|(_, v)| ferrify_store::codec::from_json::<AppRow>(&v).ok())
            .filter(|r| !r.deleted)
            .collect();
        rows.sort_by_key(|r| (r.created_at, r.id));
        Ok(rows)
    }

    /// The app with its parsed DSL, from the cache or the log.
    pub fn app(&self, app_id: Uuid) -> Result<Option<Arc<LoadedApp>>> {
        if let Some(app) = self.inner.apps.read().get(&app_id) {
            return Ok(Some(app.clone()));
        }
        let Some(row) = self.store().get_json::<AppRow>(trees::APPS, app_id.as_bytes())? else { return Ok(None) };
        if row.deleted {
            return Ok(None);
        }
        let first = self.store().read_stream(&Self::app_stream(app_id)?, 1, 1)?;
        let Some(record) = first.first() else { return Ok(None) };
        let env = Envelope::decode(&record.payload).map_err(ferrify_store::Error::from)?;
        let Event::AppImported { dsl, .. } = env.event else {
            return Err(EngineError::AppUnavailable("App unavailable, please check your app configurations.".into()));
        };
        let spec = parse_dsl(&dsl)?;
        let app = Arc::new(LoadedApp { row, spec: Arc::new(spec) });
        self.inner.apps.write().insert(app_id, app.clone());
        Ok(Some(app))
    }

    /// Creates an API key for an app.
    pub async fn create_api_key(&self, app_id: Uuid) -> Result<CreatedKey> {
        if self.app(app_id)?.is_none() {
            return Err(EngineError::NotFound("App not found.".into()));
        }
        let token = new_token();
        let key_id = Uuid::new_v4();
        let hash = hash_token(&token);
        let hint = mask_token(&token);
        let now = self.now();
        let event = Event::ApiKeyCreated { key_id, token_hash: hash.clone(), token_hint: hint.clone() };
        self.append_app(app_id, vec![Envelope::new(now, None, event)], Expected::Any).await?;
        Ok(CreatedKey {
            row: ApiKeyRow { id: key_id, app_id, token_hash: hash, token_hint: hint, created_at: now },
            token,
        })
    }

    /// An app's keys, oldest first.
    pub fn list_api_keys(&self, app_id: Uuid) -> Result<Vec<ApiKeyRow>> {
        let mut rows = Vec::new();
        for (_, hash) in self.store().scan(trees::APP_KEYS, app_id.as_bytes(), None, usize::MAX, false)? {
            if let Some(row) = self.store().get_json::<ApiKeyRow>(trees::API_KEYS, &hash)? {
                rows.push(row);
            }
        }
        rows.sort_by_key(|r| (r.created_at, r.id));
        Ok(rows)
    }

    /// Revokes a key at once. Unknown keys → `NotFound`.
    pub async fn revoke_api_key(&self, app_id: Uuid, key_id: Uuid) -> Result<()> {
        let k = key_of(&[app_id.as_bytes(), key_id.as_bytes()]);
        if self.store().get(trees::APP_KEYS, &k)?.is_none() {
            return Err(EngineError::NotFound("API key not found.".into()));
        }
        self.append_app(app_id, vec![Envelope::new(self.now(), None, Event::ApiKeyRevoked { key_id })], Expected::Any)
            .await
    }

    /// The app an API token belongs to, if the token is a live key of a live app.
    pub fn authenticate(&self, token: &str) -> Result<Option<Arc<LoadedApp>>> {
        Ok(self.authenticate_key(token)?.map(|(_, app)| app))
    }

    /// The key row (found by the token's hash) and app of a live key of a live app.
    pub fn authenticate_key(&self, token: &str) -> Result<Option<(ApiKeyRow, Arc<LoadedApp>)>> {
        let hash = hash_token(token);
        // Unknown tokens are not cached.
        let row = self.inner.api_keys.get_or_load(&hash, || -> Result<_> {
            let row = self.store().get_json::<ApiKeyRow>(trees::API_KEYS, hash.as_bytes())?;
            Ok(row.map(|row| (row.app_id, row)))
        })?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.app(row.app_id)?.map(|app| (row, app)))
    }
}

/// Everything an import checks, without recording anything: the DSL parses,
/// a `sensitive_word_avoidance` this server runs, and a workflow section's graph compiles.
pub fn check_dsl(yaml: &str) -> Result<AppSpec> {
    let spec = parse_dsl(yaml)?;
    crate::moderation::from_features(&spec.features).map_err(|m| EngineError::Dsl(crate::app::DslError::Invalid(m)))?;
    if let Some(wf) = &spec.workflow {
        check_graph(wf)?;
    }
    Ok(spec)
}

/// Refuses a workflow section whose graph does not compile, naming the node or edge at fault.
fn check_graph(wf: &serde_json::Value) -> Result<()> {
    let empty = serde_json::Value::Null;
    crate::workflow::compile_version(
        Uuid::nil(),
        wf.get("graph").unwrap_or(&empty),
        wf.get("features").unwrap_or(&empty),
        wf.get("environment_variables").unwrap_or(&empty),
        wf.get("conversation_variables").unwrap_or(&empty),
    )
    .map_err(|e| EngineError::Dsl(crate::app::DslError::Invalid(format!("invalid workflow graph: {e}"))))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = new_token();
        assert_eq!(t.len(), 28);
        assert!(t.starts_with("app-") && t[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_token(), t);
        assert_eq!(mask_token("app-abcdefgh"), "app-…efgh");
        assert_eq!(hash_token("x").len(), 64);
    }
}
