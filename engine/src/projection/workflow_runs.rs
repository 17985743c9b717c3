//! Workflow runs (workflow and advanced-chat apps).

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, key, stream_id, time_key, trees};
use crate::event::Event;
use crate::model::WorkflowRunRow;

pub struct WorkflowRuns;

impl Projector for WorkflowRuns {
    fn name(&self) -> &str {
        "workflow_runs"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(task_id) = stream_id(record, "run") else {
            return Ok(());
        };
        let env = decode(record, kv)?;
        if let Event::RunStarted(run) = &env.event {
            let Some(run_id) = run.workflow_run_id else {
                return Ok(());
            };
            let row = WorkflowRunRow {
                id: run_id,
                task_id,
                app_id: run.app_id,
                workflow_id: run.workflow_id,
                end_user_id: run.end_user_id,
                user: run.user.clone(),
                conversation_id: run.conversation_id,
                inputs: {
                    let mut inputs = run.inputs.0.clone();
                    if let (serde_json::Value::Object(m), Some(serde_json::Value::Object(sys))) =
                        (&mut inputs, run.options.0.get("sys"))
                    {
                        for (k, v) in sys {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    inputs
                },
                outputs: serde_json::Value::Object(Default::default()),
                status: "running".into(),
                error: None,
                total_steps: 0,
                total_tokens: 0,
                exceptions_count: 0,
                elapsed_time: 0.0,
                created_at: env.at,
                finished_at: None,
            };
            kv.put_json(trees::WORKFLOW_RUNS, run_id.as_bytes(), &row)?;
            kv.put(trees::RUN_BY_TASK, task_id.as_bytes(), run_id.as_bytes().to_vec());
            kv.put(trees::APP_RUNS, &key(&[run.app_id.as_bytes(), &time_key(env.at), run_id.as_bytes()]), Vec::new());
            return Ok(());
        }
        // Steps are counted by the engine and recorded at the end: a row
        // rewrite per node would cost more than the node.
        if !matches!(env.event, Event::WorkflowFinished(_)) {
            return Ok(());
        }
        let Some(id) = kv.get(trees::RUN_BY_TASK, task_id.as_bytes())? else {
            return Ok(());
        };
        let Some(mut row) = kv.get_json::<WorkflowRunRow>(trees::WORKFLOW_RUNS, &id)? else {
            return Ok(());
        };
        match &env.event {
            Event::WorkflowFinished(f) => {
                row.status = f.status.clone();
                row.outputs = f.outputs.0.clone();
                row.error = f.error.clone();
                row.total_tokens = f.total_tokens;
                row.total_steps = f.total_steps;
                row.exceptions_count = f.exceptions_count;
                row.elapsed_time = f.elapsed_time;
                row.finished_at = Some(env.at);
            }
            _ => return Ok(()),
        }
        kv.put_json(trees::WORKFLOW_RUNS, &id, &row)
    }
}
