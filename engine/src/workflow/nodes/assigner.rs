//! `assigner` (variable assigner): writes conversation variables (or, in
//! a loop body, the loop's variables). Version 1: one target with
//! `over-write` / `append` / `clear`; version 2: a list of items with
//! `over-write`, `clear`, `set`, `append`, `extend`, `remove-first`,
//! `remove-last`, `+=`, `-=`, `*=`, `/=`. Type mismatches fail the node.

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{selector_text, Node, NodeCx, NodeError, NodeRun};
use crate::workflow::graph::scalar;
use crate::workflow::pool::selector_of;

struct Item {
    target: Vec<String>,
    operation: String,
    /// A selector (`input_type: variable`) or a constant.
    input: Input,
}

enum Input {
    Variable(Vec<String>),
    Constant(Value),
    None,
}

pub struct Assigner {
    items: Vec<Item>,
}

impl Assigner {
    pub fn compile(data: &Value) -> Result<Assigner, String> {
        let version = scalar(data.get("version"));
        let mut items = Vec::new();
        if version == "2" || data.get("items").is_some() {
            for (i, it) in data.get("items").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let target = it
                    .get("variable_selector")
                    .and_then(selector_of)
                    .ok_or_else(|| format!("item #{} has no variable_selector", i + 1))?;
                let operation = scalar(it.get("operation"));
                let value = it.get("value").cloned().unwrap_or(Value::Null);
                let input = match it.get("input_type").and_then(Value::as_str) {
                    Some("variable") => match selector_of(&value) {
                        Some(sel) => Input::Variable(sel),
                        None => Input::None,
                    },
                    _ if value.is_null() => Input::None,
                    _ => Input::Constant(value),
                };
                items.push(Item { target, operation, input });
            }
        } else if let Some(target) = data.get("assigned_variable_selector").and_then(selector_of) {
            let operation = match scalar(data.get("write_mode")).as_str() {
                "" => "over-write".to_string(),
                m => m.to_string(),
            };
            let input = match data.get("input_variable_selector").and_then(selector_of) {
                Some(sel) => Input::Variable(sel),
                None => Input::None,
            };
            items.push(Item { target, operation, input });
        }
        Ok(Assigner { items })
    }
}

fn fail(message: String) -> NodeError {
    NodeError::new("VariableOperatorNodeError", message)
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(""),
        Value::Number(_) => json!(0),
        Value::Array(_) => json!([]),
        Value::Object(_) => json!({}),
        Value::Bool(_) => json!(false),
        Value::Null => Value::Null,
    }
}

fn arithmetic(current: &Value, op: &str, operand: &Value) -> Result<Value, String> {
    let (Some(a), Some(b)) = (current.as_f64(), operand.as_f64()) else {
        return Err(format!("operation '{op}' needs numbers"));
    };
    let r = match op {
        "+=" => a + b,
        "-=" => a - b,
        "*=" => a * b,
        _ => {
            if b == 0.0 {
                return Err("division by zero".into());
            }
            a / b
        }
    };
    let ints = current.is_i64() && operand.is_i64() && op != "/=";
    Ok(if ints && r.fract() == 0.0 && r.abs() < 9.0e15 { json!(r as i64) } else { json!(r) })
}

/// Whether `new` may be stored where `old` is (same JSON kind; null accepts anything).
fn same_kind(old: &Value, new: &Value) -> bool {
    std::mem::discriminant(old) == std::mem::discriminant(new) || old.is_null() || new.is_null()
}

impl Node for Assigner {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let mut updated = Vec::new();
            for item in &self.items {
                if item.target.len() < 2 {
                    continue;
                }
                let current = cx
                    .pool
                    .get(&item.target)
                    .ok_or_else(|| fail(format!("Variable {} not found", selector_text(&item.target))))?;
                let operand = match &item.input {
                    Input::Variable(sel) => Some(
                        cx.pool.get(sel).ok_or_else(|| fail(format!("Variable {} not found", selector_text(sel))))?,
                    ),
                    Input::Constant(v) => Some(v.clone()),
                    Input::None => None,
                };
                let need =
                    || operand.clone().ok_or_else(|| fail(format!("operation '{}' needs a value", item.operation)));
                let new = match item.operation.as_str() {
                    "over-write" | "set" => need()?,
                    "clear" => empty_like(&current),
                    "append" => match current.clone() {
                        Value::Array(mut a) => {
                            a.push(need()?);
                            Value::Array(a)
                        }
                        _ => return Err(fail("append needs an array variable".into())),
                    },
                    "extend" => match (current.clone(), need()?) {
                        (Value::Array(mut a), Value::Array(b)) => {
                            a.extend(b);
                            Value::Array(a)
                        }
                        _ => return Err(fail("extend needs arrays".into())),
                    },
                    "remove-first" | "remove-last" => match current.clone() {
                        Value::Array(mut a) => {
                            if !a.is_empty() {
                                if item.operation == "remove-first" {
                                    a.remove(0);
                                } else {
                                    a.pop();
                                }
                            }
                            Value::Array(a)
                        }
                        _ => return Err(fail(format!("{} needs an array variable", item.operation))),
                    },
                    op @ ("+=" | "-=" | "*=" | "/=") => arithmetic(&current, op, &need()?).map_err(fail)?,
                    other => return Err(fail(format!("unknown operation '{other}'"))),
                };
                if !same_kind(&current, &new) {
                    return Err(fail(format!(
                        "Variable {} cannot hold a value of this type",
                        selector_text(&item.target)
                    )));
                }
                cx.pool.assign(&item.target[0], &item.target[1], new.clone());
                updated.push(json!({"selector": item.target, "value": new}));
            }
            Ok(NodeRun {
                inputs: json!({}),
                process_data: json!({"updated_variables": updated}),
                outputs: Map::new(),
                ..NodeRun::default()
            })
        })
    }
}
