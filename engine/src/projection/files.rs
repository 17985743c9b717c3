//! Uploaded files, and which messages reference them (what makes a file
//! reachable through `GET /files/:id/preview`).
//!
//! A reference is taken from a run's `RunStarted`: every request file of a
//! message run that names an upload (`local_file`).

use ferrify_store::{KvTxn, Projector, Record, Result};
use serde_json::Value;
use uuid::Uuid;

use super::{decode, key, trees};
use crate::event::Event;
use crate::model::FileRow;

pub struct Files;

/// Key of a reference: file ‖ app ‖ message.
pub fn ref_key(file_id: Uuid, app_id: Uuid, message_id: Uuid) -> Vec<u8> {
    key(&[file_id.as_bytes(), app_id.as_bytes(), message_id.as_bytes()])
}

/// The upload id a request file object names, if it is an upload.
pub fn upload_id(file: &Value) -> Option<Uuid> {
    if file.get("transfer_method").and_then(Value::as_str) != Some("local_file") {
        return None;
    }
    ["related_id", "upload_file_id"]
        .iter()
        .find_map(|k| file.get(*k).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s.trim()).ok()))
}

impl Projector for Files {
    fn name(&self) -> &str {
        "files"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let kind = record.stream.kind();
        if kind != "file" && kind != "run" {
            return Ok(());
        }
        let env = decode(record, kv)?;
        match &env.event {
            Event::FileUploaded(f) => {
                let row = FileRow {
                    id: f.file_id,
                    app_id: f.app_id,
                    end_user_id: f.end_user_id,
                    name: f.name.clone(),
                    size: f.size,
                    extension: f.extension.clone(),
                    mime_type: f.mime_type.clone(),
                    category: f.category.clone(),
                    key: f.key.clone(),
                    storage: f.storage.clone(),
                    created_at: env.at,
                };
                kv.put_json(trees::FILES, f.file_id.as_bytes(), &row)
            }
            Event::RunStarted(run) => {
                let Some(message_id) = run.message_id else { return Ok(()) };
                for file in run.files.0.as_array().into_iter().flatten() {
                    if let Some(id) = upload_id(file) {
                        kv.put(trees::FILE_REFS, &ref_key(id, run.app_id, message_id), Vec::new());
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
