//! `if-else`: the first case whose conditions hold selects its `case_id`
//! handle; none → `false`. Legacy exports (top-level `conditions`, no
//! `cases`) are one case with handle `true`.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun, Role};
use crate::workflow::condition::{evaluate, is_and, parse_conditions, Condition};
use crate::workflow::graph::scalar;

struct Case {
    id: String,
    and: bool,
    conditions: Vec<Condition>,
}

pub struct IfElse {
    cases: Vec<Case>,
}

impl IfElse {
    pub fn compile(data: &Value) -> Result<IfElse, String> {
        let mut cases = Vec::new();
        if let Some(list) = data.get("cases").and_then(Value::as_array) {
            for (i, c) in list.iter().enumerate() {
                let id = scalar(c.get("case_id").or_else(|| c.get("id")));
                let id = if id.is_empty() && i == 0 { "true".to_string() } else { id };
                let conditions = parse_conditions(c.get("conditions")).map_err(|e| format!("case '{id}': {e}"))?;
                cases.push(Case { id, and: is_and(c.get("logical_operator")), conditions });
            }
        } else if data.get("conditions").is_some() {
            cases.push(Case {
                id: "true".into(),
                and: is_and(data.get("logical_operator")),
                conditions: parse_conditions(data.get("conditions"))?,
            });
        }
        Ok(IfElse { cases })
    }
}

impl Node for IfElse {
    fn role(&self) -> Role {
        Role::Branch
    }

    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let mut selected = None;
            let mut results = Vec::new();
            for case in &self.cases {
                let ok =
                    evaluate(&case.conditions, case.and, cx.pool).map_err(|e| NodeError::new("IfElseNodeError", e))?;
                results.push(json!({"case_id": case.id, "result": ok}));
                if ok {
                    selected = Some(case.id.clone());
                    break;
                }
            }
            let mut outputs = Map::new();
            outputs.insert("result".into(), selected.is_some().into());
            outputs.insert("selected_case_id".into(), selected.clone().unwrap_or_else(|| "false".into()).into());
            Ok(NodeRun {
                inputs: json!({}),
                process_data: json!({"condition_results": results}),
                outputs,
                handle: Some(selected.unwrap_or_else(|| "false".into())),
                ..NodeRun::default()
            })
        })
    }
}
