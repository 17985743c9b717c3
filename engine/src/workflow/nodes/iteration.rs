//! `iteration`: runs its body once per element of an array, sequentially
//! or `parallel_nums` rounds at a time; results are collected by index
//! (`flatten_output` concatenates list results). Error modes: `terminated`
//! (the first failing round fails the node), `continue-on-error` (null for
//! the round), `remove-abnormal-output` (the round is dropped).

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};

use super::container::Rounds;
use super::{selector_text, Node, NodeCx, NodeError, NodeRun, Role};
use crate::json::Json;
use crate::workflow::executor::{run_scope, ScopePos};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{selector_of, Pool};

#[derive(Clone, Copy, Debug, PartialEq)]
enum ErrorMode {
    Terminated,
    ContinueOnError,
    RemoveAbnormal,
}

pub struct Iteration {
    iterator: Vec<String>,
    output: Option<Vec<String>>,
    parallel: usize,
    mode: ErrorMode,
    flatten: bool,
    entry: String,
}

/// Most rounds run at once.
const MAX_PARALLEL: usize = 100;

impl Iteration {
    pub fn compile(data: &Value) -> Result<Iteration, String> {
        let iterator = data.get("iterator_selector").and_then(selector_of).ok_or("iterator_selector is missing")?;
        let parallel = if data.get("is_parallel").and_then(Value::as_bool) == Some(true) {
            data.get("parallel_nums").and_then(Value::as_u64).unwrap_or(10).clamp(1, MAX_PARALLEL as u64) as usize
        } else {
            1
        };
        let mode = match data.get("error_handle_mode").and_then(Value::as_str) {
            Some("continue-on-error") => ErrorMode::ContinueOnError,
            Some("remove-abnormal-output") => ErrorMode::RemoveAbnormal,
            _ => ErrorMode::Terminated,
        };
        Ok(Iteration {
            iterator,
            output: data.get("output_selector").and_then(selector_of),
            parallel,
            mode,
            flatten: data.get("flatten_output").and_then(Value::as_bool).unwrap_or(true),
            entry: scalar(data.get("start_node_id")),
        })
    }

    async fn round(&self, cx: &NodeCx<'_>, rounds: &Rounds, index: usize, item: Value) -> Result<Value, NodeError> {
        let pool = Pool::child(cx.pool);
        let mut vars = Map::new();
        vars.insert("item".into(), item);
        vars.insert("index".into(), index.into());
        pool.set_owner(&cx.def.id, vars);
        let pos = ScopePos { iteration: Some((cx.def.id.clone(), index as u64)), loop_: cx.pos.loop_.clone() };
        rounds.next(cx, index as u64, Json::null());
        run_scope(cx.run, Some(cx.idx), &pool, &pos).await?;
        Ok(self.output.as_ref().and_then(|s| pool.get(s)).unwrap_or(Value::Null))
    }
}

impl Node for Iteration {
    fn role(&self) -> Role {
        Role::Container
    }

    fn entry(&self) -> Option<&str> {
        (!self.entry.is_empty()).then_some(self.entry.as_str())
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let value = cx.pool.get(&self.iterator).ok_or_else(|| {
                NodeError::new(
                    "IteratorVariableNotFoundError",
                    format!("iterator variable {} not found", selector_text(&self.iterator)),
                )
            })?;
            let items = match value {
                Value::Null => Vec::new(),
                Value::Array(a) => a,
                other => {
                    return Err(NodeError::new(
                        "InvalidIteratorValueError",
                        format!("invalid iterator value: {other}, please provide a list."),
                    ))
                }
            };
            let max = cx.run.settings.max_iteration_items;
            if items.len() > max {
                return Err(NodeError::new(
                    "IterationLimitError",
                    format!(
                        "the iterator has {} items; at most {max} are allowed (limits.max_iteration_items)",
                        items.len()
                    ),
                ));
            }
            let inputs = json!({"iterator_selector": items});
            let rounds = Rounds::start(cx, "iteration", items.len() as u64, &inputs);
            let mut results: Vec<Option<Value>> = vec![None; items.len()];
            let mut failure = None;
            if self.parallel <= 1 {
                for (i, item) in items.iter().enumerate() {
                    match self.round(cx, &rounds, i, item.clone()).await {
                        Ok(v) => results[i] = Some(v),
                        Err(NodeError::Stopped) => {
                            failure = Some(NodeError::Stopped);
                            break;
                        }
                        Err(e) => match self.mode {
                            ErrorMode::Terminated => {
                                failure = Some(e);
                                break;
                            }
                            ErrorMode::ContinueOnError => results[i] = Some(Value::Null),
                            ErrorMode::RemoveAbnormal => {}
                        },
                    }
                }
            } else {
                let mut running = FuturesUnordered::new();
                let mut next = 0;
                loop {
                    while running.len() < self.parallel && next < items.len() && failure.is_none() {
                        let i = next;
                        next += 1;
                        let item = items[i].clone();
                        let rounds = &rounds;
                        running.push(async move { (i, self.round(cx, rounds, i, item).await) });
                    }
                    let Some((i, r)) = running.next().await else { break };
                    match r {
                        Ok(v) => results[i] = Some(v),
                        Err(NodeError::Stopped) => failure = Some(NodeError::Stopped),
                        Err(e) => match self.mode {
                            ErrorMode::Terminated => failure = failure.or(Some(e)),
                            ErrorMode::ContinueOnError => results[i] = Some(Value::Null),
                            ErrorMode::RemoveAbnormal => {}
                        },
                    }
                    if failure.is_some() {
                        break;
                    }
                }
            }
            let mut output: Vec<Value> = results.into_iter().flatten().collect();
            if self.flatten
                && !output.is_empty()
                && output.iter().all(|v| v.is_array() || v.is_null())
                && output.iter().any(Value::is_array)
            {
                output = output
                    .into_iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a,
                        _ => Vec::new(),
                    })
                    .collect();
            }
            let outputs = json!({"output": output});
            rounds.complete(cx, &inputs, &outputs, failure.as_ref());
            if let Some(e) = failure {
                return Err(e);
            }
            let Value::Object(outputs) = outputs else { return Err(NodeError::msg("unreachable")) };
            Ok(NodeRun { inputs, outputs, ..NodeRun::default() })
        })
    }
}
