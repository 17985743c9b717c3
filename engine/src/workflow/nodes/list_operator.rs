//! `list-operator`: filter → extract → order → limit over an array
//! variable (each step only when enabled). Scalars are compared as they
//! are; files by the attribute named in `key`. Outputs `result`,
//! `first_record`, `last_record`.

use std::cmp::Ordering;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{selector_text, Node, NodeCx, NodeError, NodeRun};
use crate::workflow::condition::{compare, file_attribute};
use crate::workflow::graph::scalar;
use crate::workflow::pool::{is_file, selector_of};
use crate::workflow::template;

struct Filter {
    key: String,
    operator: String,
    value: Value,
}

pub struct ListOperator {
    variable: Vec<String>,
    filters: Option<Vec<Filter>>,
    extract: Option<String>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

fn enabled(v: Option<&Value>) -> Option<&Value> {
    v.filter(|x| x.get("enabled").and_then(Value::as_bool) == Some(true))
}

impl ListOperator {
    pub fn compile(data: &Value) -> Result<ListOperator, String> {
        let variable = data.get("variable").and_then(selector_of).ok_or("variable is missing")?;
        let filters = enabled(data.get("filter_by")).map(|f| {
            f.get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| Filter {
                    key: scalar(c.get("key")),
                    operator: scalar(c.get("comparison_operator")),
                    value: c.get("value").cloned().unwrap_or(Value::Null),
                })
                .collect()
        });
        let extract = enabled(data.get("extract_by")).map(|e| scalar(e.get("serial")));
        let order = enabled(data.get("order_by"))
            .map(|o| (scalar(o.get("key")), o.get("value").and_then(Value::as_str) != Some("desc")));
        let limit = enabled(data.get("limit")).map(|l| l.get("size").and_then(Value::as_u64).unwrap_or(0) as usize);
        Ok(ListOperator { variable, filters, extract, order, limit })
    }
}

/// The value a filter or sort looks at.
fn subject(item: &Value, key: &str) -> Value {
    if is_file(item) && !key.is_empty() {
        file_attribute(item, key)
    } else {
        item.clone()
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

impl Node for ListOperator {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let fail = |m: String| NodeError::new("ListOperatorError", m);
            let value = cx
                .pool
                .get(&self.variable)
                .ok_or_else(|| fail(format!("Variable {} not found", selector_text(&self.variable))))?;
            let mut items = match value {
                Value::Array(a) => a,
                Value::Null => Vec::new(),
                other => {
                    return Err(fail(format!("Variable {} is not an array: {other}", selector_text(&self.variable))))
                }
            };
            let inputs = json!({"variable": items});
            if let Some(filters) = &self.filters {
                for f in filters {
                    let expected = match &f.value {
                        Value::String(s) => Value::String(template::render(s, cx.pool)),
                        other => other.clone(),
                    };
                    let mut kept = Vec::new();
                    for item in items {
                        if compare(&subject(&item, &f.key), &f.operator, &expected).map_err(fail)? {
                            kept.push(item);
                        }
                    }
                    items = kept;
                }
            }
            if let Some(serial) = &self.extract {
                let n: usize = template::render(serial, cx.pool)
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("extract serial {serial:?} is not a number")))?;
                if n == 0 || n > items.len() {
                    return Err(fail(format!("Invalid serial index: must be between 1 and {}", items.len())));
                }
                items = vec![items[n - 1].clone()];
            }
            if let Some((key, asc)) = &self.order {
                items.sort_by(|a, b| {
                    let o = cmp_values(&subject(a, key), &subject(b, key));
                    if *asc {
                        o
                    } else {
                        o.reverse()
                    }
                });
            }
            if let Some(n) = self.limit {
                items.truncate(n);
            }
            let mut outputs = Map::new();
            outputs.insert("first_record".into(), items.first().cloned().unwrap_or(Value::Null));
            outputs.insert("last_record".into(), items.last().cloned().unwrap_or(Value::Null));
            outputs.insert("result".into(), Value::Array(items));
            Ok(NodeRun { inputs, outputs, ..NodeRun::default() })
        })
    }
}
