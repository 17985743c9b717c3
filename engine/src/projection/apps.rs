//! Apps and their published workflow versions.

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, key, stream_id, time_key, trees};
use crate::event::Event;
use crate::model::{AppRow, WorkflowVersionRow};

pub struct Apps;

impl Projector for Apps {
    fn name(&self) -> &str {
        "apps"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(app_id) = stream_id(record, "app") else { return Ok(()) };
        let env = decode(record, kv)?;
        let id = app_id.as_bytes();
        match &env.event {
            Event::AppImported { name, mode, description, icon, icon_background, .. } => {
                let row = AppRow {
                    id: app_id,
                    name: name.clone(),
                    mode: mode.clone(),
                    description: description.clone(),
                    icon: icon.clone(),
                    icon_background: icon_background.clone(),
                    created_at: env.at,
                    updated_at: env.at,
                    workflow_id: None,
                    deleted: false,
                };
                kv.put_json(trees::APPS, id, &row)?;
            }
            Event::WorkflowPublished { workflow_id, graph, features, environment, conversation_variables } => {
                let version = WorkflowVersionRow {
                    id: *workflow_id,
                    app_id,
                    graph: graph.0.clone(),
                    features: features.0.clone(),
                    environment: environment.0.clone(),
                    conversation_variables: conversation_variables.0.clone(),
                    created_at: env.at,
                };
                kv.put_json(trees::WORKFLOWS, &key(&[id, &time_key(env.at), workflow_id.as_bytes()]), &version)?;
                if let Some(mut row) = kv.get_json::<AppRow>(trees::APPS, id)? {
                    row.workflow_id = Some(*workflow_id);
                    row.updated_at = env.at;
                    kv.put_json(trees::APPS, id, &row)?;
                }
            }
            Event::AppDeleted => {
                if let Some(mut row) = kv.get_json::<AppRow>(trees::APPS, id)? {
                    row.deleted = true;
                    row.updated_at = env.at;
                    kv.put_json(trees::APPS, id, &row)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
