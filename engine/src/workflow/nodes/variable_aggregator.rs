//! `variable-aggregator` (legacy name `variable-assigner`): the first
//! listed selector that has a value becomes `output` (or `<group>.output`
//! per group when grouping is on).

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Node, NodeCx, NodeError, NodeRun};
use crate::workflow::graph::scalar;
use crate::workflow::pool::selector_of;

pub struct VariableAggregator {
    variables: Vec<Vec<String>>,
    groups: Option<Vec<(String, Vec<Vec<String>>)>>,
}

fn selectors(v: Option<&Value>) -> Vec<Vec<String>> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(selector_of).collect()
}

impl VariableAggregator {
    pub fn compile(data: &Value) -> Result<VariableAggregator, String> {
        let adv = data.get("advanced_settings");
        let groups = if adv.and_then(|a| a.get("group_enabled")).and_then(Value::as_bool) == Some(true) {
            Some(
                adv.and_then(|a| a.get("groups"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|g| (scalar(g.get("group_name")), selectors(g.get("variables"))))
                    .collect(),
            )
        } else {
            None
        };
        Ok(VariableAggregator { variables: selectors(data.get("variables")), groups })
    }
}

impl Node for VariableAggregator {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let first = |list: &[Vec<String>]| list.iter().find_map(|s| cx.pool.get(s));
            let mut outputs = Map::new();
            match &self.groups {
                None => {
                    if let Some(v) = first(&self.variables) {
                        outputs.insert("output".into(), v);
                    }
                }
                Some(groups) => {
                    for (name, list) in groups {
                        if let Some(v) = first(list) {
                            outputs.insert(name.clone(), json!({"output": v}));
                        }
                    }
                }
            }
            Ok(NodeRun { inputs: json!({}), outputs, ..NodeRun::default() })
        })
    }
}
