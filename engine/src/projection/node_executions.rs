//! Node executions of workflow runs, in execution order.
//!
//! A node's row (`node_executions`, run + index → [`NodeExecutionRow`]) is
//! written once, when it finishes; while it runs, `node_by_execution`
//! holds what `node_started` said (a compact binary record), which the
//! finishing event completes. One JSON row per node keeps this projection
//! cheap next to the nodes themselves.

use ferrify_store::{KvTxn, Projector, Record, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{decode, key, stream_id, trees};
use crate::event::Event;
use crate::model::NodeExecutionRow;

pub struct NodeExecutions;

/// This projection's own task → workflow run map.
const RUNS: &str = "node_exec_runs";

/// What `node_started` recorded, until the node finishes.
#[derive(Serialize, Deserialize)]
struct Started {
    key: Vec<u8>,
    workflow_run_id: Uuid,
    index: u64,
    node_id: String,
    node_type: String,
    title: String,
    predecessor_node_id: Option<String>,
    iteration_id: Option<String>,
    loop_id: Option<String>,
    created_at: i64,
}

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
                let Ok(run_id) = Uuid::from_slice(&run_id) else {
                    return Ok(());
                };
                let started = Started {
                    key: key(&[run_id.as_bytes(), &n.index.to_be_bytes()]),
                    workflow_run_id: run_id,
                    index: n.index,
                    node_id: n.node_id.clone(),
                    node_type: n.node_type.clone(),
                    title: n.title.clone(),
                    predecessor_node_id: n.predecessor_node_id.clone(),
                    iteration_id: n.iteration_id.clone(),
                    loop_id: n.loop_id.clone(),
                    created_at: env.at,
                };
                kv.put(
                    trees::NODE_BY_EXECUTION,
                    n.node_execution_id.as_bytes(),
                    ferrify_store::codec::encode(&started)?,
                );
            }
            Event::NodeFinished(n) => {
                let Some(raw) = kv.get(trees::NODE_BY_EXECUTION, n.node_execution_id.as_bytes())? else {
                    return Ok(());
                };
                let Ok(s) = ferrify_store::codec::decode::<Started>(&raw) else {
                    return Ok(());
                };
                let row = NodeExecutionRow {
                    id: n.node_execution_id,
                    workflow_run_id: s.workflow_run_id,
                    index: s.index,
                    node_id: s.node_id,
                    node_type: s.node_type,
                    title: s.title,
                    predecessor_node_id: s.predecessor_node_id,
                    inputs: n.inputs.0.clone(),
                    process_data: n.process_data.0.clone(),
                    outputs: n.outputs.0.clone(),
                    status: n.status.clone(),
                    error: n.error.clone(),
                    elapsed_time: n.elapsed_time,
                    execution_metadata: n.execution_metadata.0.clone(),
                    iteration_id: s.iteration_id,
                    loop_id: s.loop_id,
                    created_at: s.created_at,
                    finished_at: Some(env.at),
                };
                kv.put_json(trees::NODE_EXECUTIONS, &s.key, &row)?;
            }
            _ => {}
        }
        Ok(())
    }
}
