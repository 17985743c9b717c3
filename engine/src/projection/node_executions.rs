//! Node executions of workflow runs, in execution order.

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, key, stream_id, trees};
use crate::event::Event;
use crate::model::NodeExecutionRow;

pub struct NodeExecutions;

/// This projection's own task → workflow run map.
const RUNS: &str = "node_exec_runs";

impl Projector for NodeExecutions {
    fn name(&self) -> &str {
        "node_executions"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        let Some(task_id) = stream_id(record, "run") else {
            return Ok(());
        };
        let env = decode(record, kv)?;
        match &env.event {
            Event::RunStarted(run) => {
                if let Some(run_id) = run.workflow_run_id {
                    kv.put(RUNS, task_id.as_bytes(), run_id.as_bytes().to_vec());
                }
            }
            Event::NodeStarted(n) => {
                let Some(run_id) = kv.get(RUNS, task_id.as_bytes())? else {
                    return Ok(());
                };
                let Ok(run_id) = uuid::Uuid::from_slice(&run_id) else {
                    return Ok(());
                };
                let row = NodeExecutionRow {
                    id: n.node_execution_id,
                    workflow_run_id: run_id,
                    index: n.index,
                    node_id: n.node_id.clone(),
                    node_type: n.node_type.clone(),
                    title: n.title.clone(),
                    predecessor_node_id: n.predecessor_node_id.clone(),
                    inputs: n.inputs.0.clone(),
                    process_data: serde_json::Value::Null,
                    outputs: serde_json::Value::Null,
                    status: "running".into(),
                    error: None,
                    elapsed_time: 0.0,
                    execution_metadata: serde_json::Value::Null,
                    iteration_id: n.iteration_id.clone(),
                    loop_id: n.loop_id.clone(),
                    created_at: env.at,
                    finished_at: None,
                };
                let k = key(&[run_id.as_bytes(), &n.index.to_be_bytes()]);
                kv.put_json(trees::NODE_EXECUTIONS, &k, &row)?;
                kv.put(trees::NODE_BY_EXECUTION, n.node_execution_id.as_bytes(), k);
            }
            Event::NodeFinished(n) => {
                let Some(k) = kv.get(trees::NODE_BY_EXECUTION, n.node_execution_id.as_bytes())? else {
                    return Ok(());
                };
                let Some(mut row) = kv.get_json::<NodeExecutionRow>(trees::NODE_EXECUTIONS, &k)? else {
                    return Ok(());
                };
                row.status = n.status.clone();
                row.inputs = n.inputs.0.clone();
                row.process_data = n.process_data.0.clone();
                row.outputs = n.outputs.0.clone();
                row.error = n.error.clone();
                row.elapsed_time = n.elapsed_time;
                row.execution_metadata = n.execution_metadata.0.clone();
                row.finished_at = Some(env.at);
                kv.put_json(trees::NODE_EXECUTIONS, &k, &row)?;
            }
            _ => {}
        }
        Ok(())
    }
}
