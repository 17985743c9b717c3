//! API keys, looked up by the hash of the token.

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, key, stream_id, trees};
use crate::event::Event;
use crate::model::ApiKeyRow;

pub struct ApiKeys;

impl Projector for ApiKeys {
    fn name(&self) -> &str {
        "api_keys"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(app_id) = stream_id(record, "app") else { return Ok(()) };
        let env = decode(record, kv)?;
        match &env.event {
            Event::ApiKeyCreated { key_id, token_hash, token_hint } => {
                let row = ApiKeyRow {
                    id: *key_id,
                    app_id,
                    token_hash: token_hash.clone(),
                    token_hint: token_hint.clone(),
                    created_at: env.at,
                };
                kv.put_json(trees::API_KEYS, token_hash.as_bytes(), &row)?;
                kv.put(trees::APP_KEYS, &key(&[app_id.as_bytes(), key_id.as_bytes()]), token_hash.clone().into_bytes());
            }
            Event::ApiKeyRevoked { key_id } => {
                let k = key(&[app_id.as_bytes(), key_id.as_bytes()]);
                if let Some(hash) = kv.get(trees::APP_KEYS, &k)? {
                    kv.delete(trees::API_KEYS, &hash);
                    kv.delete(trees::APP_KEYS, &k);
                }
            }
            Event::AppDeleted => {
                for (k, hash) in kv.scan_prefix(trees::APP_KEYS, app_id.as_bytes())? {
                    kv.delete(trees::API_KEYS, &hash);
                    kv.delete(trees::APP_KEYS, &k);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
