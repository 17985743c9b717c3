//! Conditions of if-else cases, loop break conditions and list-operator
//! filters: Dify's comparison operators (workflow-dsl.md §4.5).

use serde_json::Value;

use super::graph::scalar;
use super::pool::{is_empty, is_file, render_text, selector_of, Pool};
use super::template;

/// One condition.
#[derive(Clone, Debug)]
pub struct Condition {
    pub selector: Vec<String>,
    pub operator: String,
    pub value: Value,
    /// Sub-conditions on file attributes (`array[file]` variables).
    pub sub: Option<(bool, Vec<SubCondition>)>,
}

/// A condition on a file attribute.
#[derive(Clone, Debug)]
pub struct SubCondition {
    pub key: String,
    pub operator: String,
    pub value: Value,
}

/// Reads `and`/`or` (anything else is `and`); true means `and`.
pub fn is_and(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str) != Some("or")
}

/// Parses a list of conditions.
pub fn parse_conditions(v: Option<&Value>) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for (i, c) in v.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let selector = c
            .get("variable_selector")
            .and_then(selector_of)
            .ok_or_else(|| format!("condition #{} has no variable_selector", i + 1))?;
        let operator = scalar(c.get("comparison_operator"));
        if operator.is_empty() {
            return Err(format!("condition #{} has no comparison_operator", i + 1));
        }
        let sub = c.get("sub_variable_condition").filter(|s| s.is_object()).map(|s| {
            let subs = s
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|x| SubCondition {
                    key: scalar(x.get("key")),
                    operator: scalar(x.get("comparison_operator")),
                    value: x.get("value").cloned().unwrap_or(Value::Null),
                })
                .collect();
            (is_and(s.get("logical_operator")), subs)
        });
        out.push(Condition { selector, operator, value: c.get("value").cloned().unwrap_or(Value::Null), sub });
    }
    Ok(out)
}

/// Evaluates conditions combined with and/or (short-circuit). A variable
/// that does not exist fails, as in current Dify.
pub fn evaluate(conditions: &[Condition], and: bool, pool: &Pool) -> Result<bool, String> {
    for c in conditions {
        let Some(actual) = pool.get(&c.selector) else {
            return Err(format!("Variable {} not found", super::nodes::selector_text(&c.selector)));
        };
        let expected = match &c.value {
            Value::String(s) if s.contains("{{#") => Value::String(template::render(s, pool)),
            other => other.clone(),
        };
        let ok = match (&c.sub, &actual) {
            (Some((sub_and, subs)), Value::Array(files))
                if matches!(c.operator.as_str(), "contains" | "not contains" | "all of") =>
            {
                sub_conditions(files, *sub_and, subs)?
            }
            _ => compare(&actual, &c.operator, &expected)?,
        };
        if and && !ok {
            return Ok(false);
        }
        if !and && ok {
            return Ok(true);
        }
    }
    Ok(and)
}

fn sub_conditions(files: &[Value], and: bool, subs: &[SubCondition]) -> Result<bool, String> {
    for s in subs {
        let attr = |f: &Value| {
            let mut v = file_attribute(f, &s.key);
            if s.key == "extension" {
                if let Value::String(e) = &v {
                    if !e.starts_with('.') && !e.is_empty() {
                        v = Value::String(format!(".{e}"));
                    }
                }
            }
            v
        };
        let ok = if s.operator.contains("not") {
            files
                .iter()
                .map(|f| compare(&attr(f), &s.operator, &s.value))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .all(|b| *b)
        } else {
            files
                .iter()
                .map(|f| compare(&attr(f), &s.operator, &s.value))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .any(|b| *b)
        };
        if and && !ok {
            return Ok(false);
        }
        if !and && ok {
            return Ok(true);
        }
    }
    Ok(and)
}

/// A file attribute (`type`, `size`, `name`, `mime_type`, `transfer_method`, `url`, `extension`, `related_id`).
pub fn file_attribute(file: &Value, key: &str) -> Value {
    let get = |k: &str| file.get(k).cloned();
    match key {
        "name" => get("filename").or_else(|| get("name")),
        "url" => get("remote_url").or_else(|| get("url")),
        "related_id" => get("related_id").or_else(|| get("upload_file_id")),
        other => get(other),
    }
    .unwrap_or(Value::Null)
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            _ => vec![Value::String(s.clone())],
        },
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), y) | (y, Value::String(x)) if !y.is_string() => {
            *x == render_text(y) || serde_json::to_string(y).is_ok_and(|t| t == *x)
        }
        (Value::Number(_), Value::Number(_)) => as_number(a) == as_number(b),
        _ => a == b,
    }
}

/// Compares an actual value with an expected one.
pub fn compare(actual: &Value, op: &str, expected: &Value) -> Result<bool, String> {
    let wrong = || Err(format!("Invalid actual value type for operator '{op}': {}", type_name(actual)));
    let null = actual.is_null();
    Ok(match op {
        "contains" | "not contains" => {
            let found = match actual {
                Value::Null => false,
                Value::String(s) => s.contains(&render_text(expected)),
                Value::Array(items) => items.iter().any(|i| same(i, expected)),
                _ => return wrong(),
            };
            (op == "contains") == found
        }
        "start with" | "end with" => match actual {
            Value::Null => false,
            Value::String(s) => {
                let e = render_text(expected);
                if op == "start with" {
                    s.starts_with(&e)
                } else {
                    s.ends_with(&e)
                }
            }
            _ => return wrong(),
        },
        "is" | "is not" => {
            if null {
                false
            } else {
                let eq = match (actual, expected) {
                    (Value::Bool(b), e) => {
                        let e = match e {
                            Value::String(s) => serde_json::from_str::<Value>(s.trim()).unwrap_or(e.clone()),
                            other => other.clone(),
                        };
                        match e {
                            Value::Bool(x) => *b == x,
                            Value::Number(n) => n.as_f64() == Some(if *b { 1.0 } else { 0.0 }),
                            _ => false,
                        }
                    }
                    (Value::String(s), e) => *s == render_text(e),
                    (a, e) => render_text(a) == render_text(e),
                };
                (op == "is") == eq
            }
        }
        "empty" => is_empty(actual),
        "not empty" => !is_empty(actual),
        "null" => null,
        "not null" => !null,
        "exists" => !null,
        "not exists" => null,
        "in" | "not in" => {
            let list = as_list(expected);
            if null {
                op == "not in"
            } else {
                let found = list.iter().any(|e| same(actual, e));
                (op == "in") == found
            }
        }
        "all of" => match actual {
            Value::Null => false,
            Value::Array(items) => as_list(expected).iter().all(|e| items.iter().any(|i| same(i, e))),
            _ => return wrong(),
        },
        "=" | "≠" | ">" | "<" | "≥" | "≤" | "!=" | ">=" | "<=" | "==" => {
            if null {
                return Ok(false);
            }
            if let Value::Bool(b) = actual {
                let e = match expected {
                    Value::Bool(x) => Some(*x),
                    Value::String(s) => match s.trim() {
                        "true" | "1" => Some(true),
                        "false" | "0" => Some(false),
                        _ => None,
                    },
                    Value::Number(n) => n.as_f64().map(|f| f != 0.0),
                    _ => None,
                };
                return match (op, e) {
                    ("=" | "==", Some(e)) => Ok(*b == e),
                    ("≠" | "!=", Some(e)) => Ok(*b != e),
                    _ => wrong(),
                };
            }
            let a = match actual {
                Value::Number(n) => n.as_f64().unwrap_or(0.0),
                _ => return wrong(),
            };
            let Some(e) = as_number(expected) else {
                return Err(format!("Invalid expected value for operator '{op}': {}", render_text(expected)));
            };
            match op {
                "=" | "==" => a == e,
                "≠" | "!=" => a != e,
                ">" => a > e,
                "<" => a < e,
                "≥" | ">=" => a >= e,
                _ => a <= e,
            }
        }
        other => return Err(format!("Unsupported comparison operator: {other}")),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) if is_file(v) => "file",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        assert!(compare(&json!("hello"), "contains", &json!("ell")).unwrap());
        assert!(compare(&json!(["a", "b"]), "contains", &json!("b")).unwrap());
        assert!(compare(&json!(null), "not contains", &json!("x")).unwrap());
        assert!(!compare(&json!(null), "contains", &json!("x")).unwrap());
        assert!(compare(&json!("hello"), "start with", &json!("he")).unwrap());
        assert!(compare(&json!("hello"), "end with", &json!("lo")).unwrap());
        assert!(compare(&json!("a"), "is", &json!("a")).unwrap());
        assert!(compare(&json!("a"), "is not", &json!("b")).unwrap());
        assert!(compare(&json!(""), "empty", &json!(null)).unwrap());
        assert!(compare(&json!([1]), "not empty", &json!(null)).unwrap());
        assert!(compare(&json!("x"), "in", &json!(["x", "y"])).unwrap());
        assert!(compare(&json!("z"), "not in", &json!(["x", "y"])).unwrap());
        assert!(compare(&json!(["x", "y", "z"]), "all of", &json!(["x", "z"])).unwrap());
        assert!(compare(&json!(61), "≥", &json!("60")).unwrap());
        assert!(compare(&json!(2.5), "<", &json!("3")).unwrap());
        assert!(compare(&json!(3), "=", &json!("3")).unwrap());
        assert!(compare(&json!(3), "≠", &json!("4")).unwrap());
        assert!(compare(&json!(true), "=", &json!("true")).unwrap());
        assert!(compare(&json!(null), "null", &json!(null)).unwrap());
        assert!(compare(&json!(0), "not null", &json!(null)).unwrap());
        assert!(compare(&json!("s"), ">", &json!("1")).is_err());
        assert!(compare(&json!(5), "start with", &json!("5")).is_err());
        assert!(compare(&json!(1), "weird", &json!(1)).is_err());
    }

    #[test]
    fn and_or_and_missing_variables() {
        let pool = Pool::root();
        pool.set("s", "n", json!(5));
        let conds = parse_conditions(Some(&json!([
            {"variable_selector": ["s", "n"], "comparison_operator": ">", "value": "3"},
            {"variable_selector": ["s", "n"], "comparison_operator": "<", "value": "4"}
        ])))
        .unwrap();
        assert!(!evaluate(&conds, true, &pool).unwrap());
        assert!(evaluate(&conds, false, &pool).unwrap());
        let missing =
            parse_conditions(Some(&json!([{"variable_selector": ["s", "x"], "comparison_operator": "empty"}])))
                .unwrap();
        assert!(evaluate(&missing, true, &pool).unwrap_err().contains("not found"));
    }

    #[test]
    fn file_sub_conditions() {
        let files = json!([{"type": "image", "extension": "png", "transfer_method": "remote_url"}]);
        let pool = Pool::root();
        pool.set("s", "f", files);
        let conds =
            parse_conditions(Some(&json!([{"variable_selector": ["s", "f"], "comparison_operator": "contains",
            "sub_variable_condition": {"logical_operator": "and", "conditions": [
                {"key": "type", "comparison_operator": "in", "value": ["image"]},
                {"key": "extension", "comparison_operator": "is", "value": ".png"}]}}])))
            .unwrap();
        assert!(evaluate(&conds, true, &pool).unwrap());
    }
}
