//! Annotations of apps and their reply setting: rows by app ‖ annotation, an
//! index by app ‖ created ‖ annotation (for newest-first pages), the setting
//! per app, and hit counts folded from the runs answered by an annotation.

use ferrify_store::{KvTxn, Projector, Record, Result};
use uuid::Uuid;

use super::{decode, key, stream_id, time_key, trees};
use crate::event::Event;
use crate::model::{AnnotationRow, AnnotationSettingRow};

pub struct Annotations;

/// Key of an annotation row: app ‖ annotation.
pub fn row_key(app_id: Uuid, annotation_id: Uuid) -> Vec<u8> {
    key(&[app_id.as_bytes(), annotation_id.as_bytes()])
}

/// Index key of an annotation in its app: app ‖ created ‖ annotation.
pub fn app_key(app_id: Uuid, created_at: i64, annotation_id: Uuid) -> Vec<u8> {
    key(&[app_id.as_bytes(), &time_key(created_at), annotation_id.as_bytes()])
}

impl Projector for Annotations {
    fn name(&self) -> &str {
        "annotations"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        if let Some(app_id) = stream_id(record, "app") {
            return apply_app(app_id, record, kv);
        }
        if stream_id(record, "run").is_none() {
            return Ok(());
        }
        let env = decode(record, kv)?;
        if let Event::AnnotationReplied { app_id, annotation_id, .. } = &env.event {
            let k = row_key(*app_id, *annotation_id);
            if let Some(mut row) = kv.get_json::<AnnotationRow>(trees::ANNOTATIONS, &k)? {
                row.hit_count += 1;
                kv.put_json(trees::ANNOTATIONS, &k, &row)?;
            }
        }
        Ok(())
    }
}

fn apply_app(app_id: Uuid, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
    let env = decode(record, kv)?;
    match &env.event {
        Event::AnnotationCreated { annotation_id, question, answer, embedding } => {
            let row = AnnotationRow {
                id: *annotation_id,
                app_id,
                question: question.clone(),
                answer: answer.clone(),
                hit_count: 0,
                created_at: env.at,
                updated_at: env.at,
                embedding: embedding.clone(),
            };
            kv.put(trees::APP_ANNOTATIONS, &app_key(app_id, env.at, *annotation_id), Vec::new());
            kv.put_json(trees::ANNOTATIONS, &row_key(app_id, *annotation_id), &row)
        }
        Event::AnnotationUpdated { annotation_id, question, answer, embedding } => {
            let k = row_key(app_id, *annotation_id);
            if let Some(mut row) = kv.get_json::<AnnotationRow>(trees::ANNOTATIONS, &k)? {
                row.question = question.clone();
                row.answer = answer.clone();
                row.embedding = embedding.clone();
                row.updated_at = env.at;
                kv.put_json(trees::ANNOTATIONS, &k, &row)?;
            }
            Ok(())
        }
        Event::AnnotationDeleted { annotation_id } => {
            let k = row_key(app_id, *annotation_id);
            if let Some(row) = kv.get_json::<AnnotationRow>(trees::ANNOTATIONS, &k)? {
                kv.delete(trees::APP_ANNOTATIONS, &app_key(app_id, row.created_at, row.id));
                kv.delete(trees::ANNOTATIONS, &k);
            }
            Ok(())
        }
        Event::AnnotationReplyEnabled(e) => {
            let setting = AnnotationSettingRow {
                app_id,
                score_threshold: e.score_threshold,
                embedding_provider_name: e.embedding_provider_name.clone(),
                embedding_model_name: e.embedding_model_name.clone(),
                embeddings: e.embeddings.is_some(),
                updated_at: env.at,
            };
            kv.put_json(trees::ANNOTATION_SETTINGS, app_id.as_bytes(), &setting)?;
            // Every annotation's vector is replaced (or dropped in text mode).
            let vectors: std::collections::HashMap<Uuid, &Vec<f32>> =
                e.embeddings.iter().flatten().map(|(id, v)| (*id, v)).collect();
            for (k, v) in kv.scan_prefix(trees::ANNOTATIONS, app_id.as_bytes())? {
                let Ok(mut row) = ferrify_store::codec::from_json::<AnnotationRow>(&v) else { continue };
                row.embedding = vectors.get(&row.id).map(|v| (*v).clone());
                kv.put_json(trees::ANNOTATIONS, &k, &row)?;
            }
            Ok(())
        }
        Event::AnnotationReplyDisabled { .. } => {
            kv.delete(trees::ANNOTATION_SETTINGS, app_id.as_bytes());
            Ok(())
        }
        _ => Ok(()),
    }
}
