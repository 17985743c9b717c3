//! `loop` (+ `loop-end`): runs its body until a break condition holds
//! (checked before the first round and after each), a `loop-end` node runs,
//! or `loop_count` rounds have run. Loop variables live at
//! `[loop_id, label]` and are changed by assigners in the body; outputs are
//! the variables by label plus `loop_round`.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::container::Rounds;
use super::{Node, NodeCx, NodeError, NodeRun, Role};
use crate::json::Json;
use crate::workflow::condition::{evaluate, is_and, parse_conditions, Condition};
use crate::workflow::executor::{run_scope, ScopePos};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{selector_of, Pool};

/// Hard cap on rounds (Dify's `LOOP_NODE_MAX_COUNT` default).
const MAX_ROUNDS: u64 = 100;
/// Where a `loop-end` node marks its round.
const BREAK_OWNER: &str = "__loop_end__";

struct LoopVar {
    label: String,
    var_type: String,
    value: Value,
    selector: Option<Vec<String>>,
}

pub struct Loop {
    count: u64,
    and: bool,
    breaks: Vec<Condition>,
    vars: Vec<LoopVar>,
    entry: String,
}

impl Loop {
    pub fn compile(data: &Value) -> Result<Loop, String> {
        let count = data.get("loop_count").and_then(Value::as_u64).unwrap_or(10).min(MAX_ROUNDS);
        let vars = data
            .get("loop_variables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| {
                let value = v.get("value").cloned().unwrap_or(Value::Null);
                let selector = (v.get("value_type").and_then(Value::as_str) == Some("variable"))
                    .then(|| selector_of(&value))
                    .flatten();
                LoopVar { label: scalar(v.get("label")), var_type: scalar(v.get("var_type")), value, selector }
            })
            .filter(|v| !v.label.is_empty())
            .collect();
        Ok(Loop {
            count,
            and: is_and(data.get("logical_operator")),
            breaks: parse_conditions(data.get("break_conditions"))?,
            vars,
            entry: scalar(data.get("start_node_id")),
        })
    }
}

/// A constant loop variable as its declared type.
fn typed(value: &Value, var_type: &str) -> Value {
    match (var_type, value) {
        ("number", Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.trim().parse::<f64>().map(Value::from))
            .unwrap_or(Value::Null),
        ("boolean", Value::String(s)) => Value::Bool(s.trim() == "true"),
        (t, Value::String(s)) if t.starts_with("array") || t == "object" => {
            serde_json::from_str(s).unwrap_or(Value::Null)
        }
        _ => value.clone(),
    }
}

impl Node for Loop {
    fn role(&self) -> Role {
        Role::Container
    }

    fn entry(&self) -> Option<&str> {
        (!self.entry.is_empty()).then_some(self.entry.as_str())
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let layer = Pool::child(cx.pool);
            let mut vars = Map::new();
            for v in &self.vars {
                let value = match &v.selector {
                    Some(sel) => cx.pool.get(sel).unwrap_or(Value::Null),
                    None => typed(&v.value, &v.var_type),
                };
                vars.insert(v.label.clone(), value);
            }
            layer.set_owner(&cx.def.id, vars.clone());
            let inputs = Value::Object(vars);
            let tracker = Rounds::start(cx, "loop", self.count, &inputs);
            let broken = |pool: &Pool| -> Result<bool, NodeError> {
                if self.breaks.is_empty() {
                    return Ok(false);
                }
                evaluate(&self.breaks, self.and, pool).map_err(|e| NodeError::new("LoopNodeError", e))
            };
            let mut rounds = 0u64;
            let mut failure = None;
            match broken(&layer) {
                Ok(true) => {}
                Ok(false) => {
                    while rounds < self.count {
                        let vars = Json(Value::Object(layer.owner(&cx.def.id).unwrap_or_default()));
                        tracker.next(cx, rounds, vars);
                        let round = Pool::child(&layer);
                        let pos =
                            ScopePos { iteration: cx.pos.iteration.clone(), loop_: Some((cx.def.id.clone(), rounds)) };
                        if let Err(e) = run_scope(cx.run, Some(cx.idx), &round, &pos).await {
                            failure = Some(e);
                            break;
                        }
                        rounds += 1;
                        if round.get(&[BREAK_OWNER.to_string(), "break".to_string()]).is_some() {
                            break;
                        }
                        match broken(&layer) {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                }
                Err(e) => failure = Some(e),
            }
            let mut outputs = layer.owner(&cx.def.id).unwrap_or_default();
            outputs.insert("loop_round".into(), rounds.into());
            let result = Value::Object(outputs);
            tracker.complete(cx, &inputs, &result, failure.as_ref());
            let Value::Object(outputs) = result else { return Err(NodeError::msg("unreachable")) };
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(NodeRun {
                inputs,
                outputs,
                metadata: Map::from_iter([("loop_round".to_string(), json!(rounds))]),
                ..NodeRun::default()
            })
        })
    }
}

/// `loop-end`: ends the loop after the current round.
pub struct LoopEnd;

impl Node for LoopEnd {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            cx.pool.set(BREAK_OWNER, "break", Value::Bool(true));
            Ok(NodeRun::default())
        })
    }
}
