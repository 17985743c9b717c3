//! The `code` node's output contract: the declared output schema, the
//! parsing of a runner's result and the validation of that result against
//! the schema, with Dify's limits and Dify's error texts (including its
//! quirks, e.g. the `.name` prefix of nested object keys).
//!
//! Python typing is mirrored where Dify relies on it: a boolean passes a
//! `number` check (`bool` is an `int` in Python) and type names in messages
//! read `<class 'str'>` and so on.

use serde_json::{Map, Value};

use super::super::NodeError;

/// Longest string output, in characters (`CODE_MAX_STRING_LENGTH`).
pub const MAX_STRING_LENGTH: usize = 80_000;
/// Largest number (`CODE_MAX_NUMBER`).
pub const MAX_NUMBER: i64 = i64::MAX;
/// Smallest number (`CODE_MIN_NUMBER`).
pub const MIN_NUMBER: i64 = i64::MIN;
/// Most decimal places of a float (`CODE_MAX_PRECISION`).
pub const MAX_PRECISION: i64 = 20;
/// Deepest nesting of objects (`CODE_MAX_DEPTH`).
pub const MAX_DEPTH: usize = 5;
/// Most items of an `array[string]` (`CODE_MAX_STRING_ARRAY_LENGTH`).
pub const MAX_STRING_ARRAY_LENGTH: usize = 30;
/// Most items of an `array[object]` (`CODE_MAX_OBJECT_ARRAY_LENGTH`).
pub const MAX_OBJECT_ARRAY_LENGTH: usize = 30;
/// Most items of an `array[number]` (`CODE_MAX_NUMBER_ARRAY_LENGTH`).
pub const MAX_NUMBER_ARRAY_LENGTH: usize = 1000;

/// The tag Dify's runners wrap the JSON result in.
pub const RESULT_TAG: &str = "<<RESULT>>";

/// One declared output: its type and, for objects, its keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub kind: String,
    pub children: Option<Schema>,
}

/// Declared outputs by name, in declaration order.
pub type Schema = Vec<(String, Output)>;

/// Parses `outputs` (`{name: {type, children}}`); `None` when absent or
/// null, which makes validation go by the values' own types.
pub fn parse_schema(v: Option<&Value>) -> Result<Option<Schema>, String> {
    parse_schema_at(v, "outputs", 0)
}

fn parse_schema_at(v: Option<&Value>, path: &str, depth: usize) -> Result<Option<Schema>, String> {
    let map = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(format!("code node: `{path}` must be an object")),
    };
    if depth > MAX_DEPTH * 4 {
        return Err(format!("code node: `{path}` is nested too deeply"));
    }
    let mut schema = Vec::with_capacity(map.len());
    for (name, out) in map {
        let here = format!("{path}.{name}");
        let Some(obj) = out.as_object() else {
            return Err(format!("code node: `{here}` must be an object with a `type`"));
        };
        let kind = match obj.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(format!("code node: `{here}.type` must be a string")),
        };
        let children = parse_schema_at(obj.get("children"), &format!("{here}.children"), depth + 1)?;
        schema.push((name.clone(), Output { kind, children }));
    }
    Ok(Some(schema))
}

fn validation(msg: impl Into<String>) -> NodeError {
    NodeError::new("OutputValidationError", msg)
}

/// Python's `type(value)` text for a JSON value.
pub fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<class 'NoneType'>",
        Value::Bool(_) => "<class 'bool'>",
        Value::Number(n) if n.is_f64() => "<class 'float'>",
        Value::Number(_) => "<class 'int'>",
        Value::String(_) => "<class 'str'>",
        Value::Array(_) => "<class 'list'>",
        Value::Object(_) => "<class 'dict'>",
    }
}

/// Python's `type(value).__name__`.
pub fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Parses the JSON a runner produced into the result object (Dify's
/// `transform_response`): it must be an object; strings that look like
/// scientific notation become numbers (a Dify quirk kept for parity).
pub fn parse_result(json: &str) -> Result<Map<String, Value>, NodeError> {
    let value: Value = serde_json::from_str(json.trim())
        .map_err(|e| NodeError::new("CodeExecutionError", format!("Failed to parse JSON response: {e}.")))?;
    match convert_scientific(value) {
        Value::Object(m) => Ok(m),
        other => {
            Err(NodeError::new("CodeExecutionError", format!("Result must be a dict, got {}", py_type_name(&other))))
        }
    }
}

/// The text between the first and the last [`RESULT_TAG`] (Dify's greedy
/// `<<RESULT>>(.*)<<RESULT>>`).
pub fn extract_tagged<'a>(stdout: &'a str, tag: &str) -> Result<&'a str, NodeError> {
    let start = stdout.find(tag).map(|i| i + tag.len());
    let end = stdout.rfind(tag);
    match (start, end) {
        (Some(s), Some(e)) if e >= s => Ok(&stdout[s..e]),
        _ => {
            let head: String = stdout.chars().take(200).collect();
            Err(NodeError::new(
                "CodeExecutionError",
                format!("Failed to parse result: no result tag found in response. Response: {head}..."),
            ))
        }
    }
}

fn convert_scientific(v: Value) -> Value {
    match v {
        Value::String(s) if looks_scientific(&s) => {
            match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => Value::String(s),
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(convert_scientific).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, convert_scientific(v))).collect()),
        other => other,
    }
}

/// `^-?\d+\.?\d*e[+-]\d+$`, case-insensitive.
fn looks_scientific(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    if digits(&mut i) == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
    }
    digits(&mut i);
    if !matches!(b.get(i), Some(b'e' | b'E')) {
        return false;
    }
    i += 1;
    if !matches!(b.get(i), Some(b'+' | b'-')) {
        return false;
    }
    i += 1;
    digits(&mut i) > 0 && i == b.len()
}

/// Validates `result` against `schema` (Dify's `_transform_result`) and
/// returns the outputs to record.
pub fn transform_result(result: &Map<String, Value>, schema: Option<&Schema>) -> Result<Map<String, Value>, NodeError> {
    transform(result, schema, "", 1)
}

fn transform(
    result: &Map<String, Value>,
    schema: Option<&Schema>,
    prefix: &str,
    depth: usize,
) -> Result<Map<String, Value>, NodeError> {
    if depth > MAX_DEPTH {
        return Err(NodeError::new("DepthLimitError", format!("Depth limit {MAX_DEPTH} reached, object too deep.")));
    }
    let Some(schema) = schema else {
        check_untyped(result, prefix, depth)?;
        return Ok(result.clone());
    };
    let dot = if prefix.is_empty() { "" } else { "." };
    let mut out = Map::new();
    let mut validated = 0usize;
    for (name, config) in schema {
        let full = format!("{prefix}{dot}{name}");
        let Some(value) = result.get(name) else {
            return Err(validation(format!("Output {full} is missing.")));
        };
        let checked = match config.kind.as_str() {
            "object" => match value {
                Value::Object(m) => {
                    Value::Object(transform(m, config.children.as_ref(), &format!("{prefix}.{name}"), depth + 1)?)
                }
                Value::Null => Value::Null,
                other => {
                    return Err(validation(format!("Output {full} is not an object, got {} instead.", py_type(other))))
                }
            },
            "number" => check_number(value, &full)?,
            "string" => check_string(value, &full)?,
            "boolean" => check_boolean(value, &full)?,
            "array[number]" => match array_of(value, &full, MAX_NUMBER_ARRAY_LENGTH)? {
                None => Value::Null,
                Some(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| check_number(v, &format!("{full}[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
            },
            "array[string]" => match array_of(value, &full, MAX_STRING_ARRAY_LENGTH)? {
                None => Value::Null,
                Some(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| check_string(v, &format!("{full}[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
            },
            "array[boolean]" => match array_of(value, &full, usize::MAX)? {
                None => Value::Null,
                Some(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| check_boolean(v, &format!("{full}[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
            },
            "array[object]" => match array_of(value, &full, MAX_OBJECT_ARRAY_LENGTH)? {
                None => Value::Null,
                Some(items) => {
                    for (i, v) in items.iter().enumerate() {
                        if !matches!(v, Value::Object(_) | Value::Null) {
                            return Err(validation(format!(
                                "Output {full}[{i}] is not an object, got {} instead at index {i}.",
                                py_type(v)
                            )));
                        }
                    }
                    let mut checked = Vec::with_capacity(items.len());
                    for (i, v) in items.iter().enumerate() {
                        checked.push(match v {
                            Value::Object(m) => Value::Object(transform(
                                m,
                                config.children.as_ref(),
                                &format!("{full}[{i}]"),
                                depth + 1,
                            )?),
                            _ => Value::Null,
                        });
                    }
                    Value::Array(checked)
                }
            },
            other => return Err(validation(format!("Output type {other} is not supported."))),
        };
        out.insert(name.clone(), checked);
        validated += 1;
    }
    if validated != result.len() {
        return Err(NodeError::new("CodeNodeError", "Not all output parameters are validated."));
    }
    Ok(out)
}

/// The items of an array output, `None` for null.
fn array_of<'v>(value: &'v Value, full: &str, max: usize) -> Result<Option<&'v Vec<Value>>, NodeError> {
    match value {
        Value::Array(items) => {
            if items.len() > max {
                return Err(validation(format!(
                    "The length of output variable `{full}` must be less than {max} elements."
                )));
            }
            Ok(Some(items))
        }
        Value::Null => Ok(None),
        other => Err(validation(format!("Output {full} is not an array, got {} instead.", py_type(other)))),
    }
}

fn check_string(value: &Value, variable: &str) -> Result<Value, NodeError> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::String(s) => {
            if s.chars().count() > MAX_STRING_LENGTH {
                return Err(validation(format!(
                    "The length of output variable `{variable}` must be less than {MAX_STRING_LENGTH} characters"
                )));
            }
            Ok(Value::String(s.replace('\0', "")))
        }
        _ => Err(validation(format!("Output variable `{variable}` must be a string"))),
    }
}

fn check_boolean(value: &Value, variable: &str) -> Result<Value, NodeError> {
    match value {
        Value::Null | Value::Bool(_) => Ok(value.clone()),
        _ => Err(validation(format!("Output variable `{variable}` must be a boolean"))),
    }
}

fn check_number(value: &Value, variable: &str) -> Result<Value, NodeError> {
    let n = match value {
        Value::Null => return Ok(Value::Null),
        // `bool` is an `int` in Python.
        Value::Bool(_) => return Ok(value.clone()),
        Value::Number(n) => n,
        _ => return Err(validation(format!("Output variable `{variable}` must be a number"))),
    };
    let in_range = if let Some(i) = n.as_i64() {
        (MIN_NUMBER..=MAX_NUMBER).contains(&i)
    } else if n.is_u64() {
        false
    } else {
        // 2^63 and -2^63 are exact in f64; Python compares int and float exactly.
        let f = n.as_f64().unwrap_or(f64::NAN);
        (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
    };
    if !in_range {
        return Err(validation(format!(
            "Output variable `{variable}` is out of range, it must be between {MIN_NUMBER} and {MAX_NUMBER}."
        )));
    }
    if n.is_f64() {
        if let Some(f) = n.as_f64() {
            if float_precision(f) > MAX_PRECISION {
                return Err(validation(format!(
                    "Output variable `{variable}` has too high precision, it must be less than {MAX_PRECISION} digits."
                )));
            }
        }
    }
    Ok(value.clone())
}

/// Decimal places of `Decimal(str(f)).normalize()`: the shortest
/// round-trip digits (as Python's `repr`) minus the exponent.
fn float_precision(f: f64) -> i64 {
    let text = format!("{f:e}");
    let Some((mantissa, exp)) = text.split_once('e') else {
        return 0;
    };
    let exp: i64 = exp.parse().unwrap_or(0);
    let frac = mantissa.split_once('.').map(|(_, d)| d.trim_end_matches('0').len()).unwrap_or(0) as i64;
    (frac - exp).max(0)
}

/// Validation without a schema: by each value's own type.
fn check_untyped(result: &Map<String, Value>, prefix: &str, depth: usize) -> Result<(), NodeError> {
    for (name, value) in result {
        let var = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        check_untyped_value(value, &var, prefix, name, depth)?;
    }
    Ok(())
}

fn check_untyped_value(value: &Value, var: &str, prefix: &str, name: &str, depth: usize) -> Result<(), NodeError> {
    match value {
        Value::Object(m) => {
            transform(m, None, var, depth + 1)?;
        }
        Value::Number(_) | Value::Bool(_) => {
            check_number(value, var)?;
        }
        Value::String(_) => {
            check_string(value, var)?;
        }
        Value::Null => {}
        Value::Array(items) => {
            let Some(first) = items.first().filter(|v| !v.is_null()) else {
                return Ok(());
            };
            let all = |f: fn(&Value) -> bool| items.iter().all(|v| v.is_null() || f(v));
            let numeric = |v: &Value| matches!(v, Value::Number(_) | Value::Bool(_));
            if numeric(first) && all(numeric) {
                for (i, v) in items.iter().enumerate() {
                    check_number(v, &format!("{var}[{i}]"))?;
                }
            } else if first.is_string() && all(Value::is_string) {
                for (i, v) in items.iter().enumerate() {
                    check_string(v, &format!("{var}[{i}]"))?;
                }
            } else if (first.is_object() && all(Value::is_object)) || (first.is_array() && all(Value::is_array)) {
                for (i, v) in items.iter().enumerate() {
                    let here = format!("{var}[{i}]");
                    match v {
                        Value::Object(m) => {
                            transform(m, None, &here, depth + 1)?;
                        }
                        Value::Array(_) => {
                            if depth + 1 > MAX_DEPTH {
                                return Err(NodeError::new(
                                    "DepthLimitError",
                                    format!("Depth limit {MAX_DEPTH} reached, object too deep."),
                                ));
                            }
                            check_untyped_value(v, &here, var, &format!("[{i}]"), depth + 1)?;
                        }
                        _ => {}
                    }
                }
            } else {
                return Err(validation(format!(
                    "Output {prefix}.{name} is not a valid array. make sure all elements are of the same type."
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(v: Value) -> Schema {
        parse_schema(Some(&v)).unwrap().unwrap()
    }

    fn run(result: Value, s: Value) -> Result<Value, (String, String)> {
        let s = schema(s);
        transform_result(result.as_object().unwrap(), Some(&s)).map(Value::Object).map_err(|e| match e {
            NodeError::Failed { error_type, message } => (error_type, message),
            NodeError::Stopped => panic!("stopped"),
        })
    }

    fn err(result: Value, s: Value) -> String {
        run(result, s).unwrap_err().1
    }

    #[test]
    fn accepts_declared_types_in_schema_order() {
        let out = run(
            json!({"b": 2, "a": "x\u{0}y", "f": true, "o": {"k": [1, 2.5]}, "l": [{"z": "q"}], "bs": [true, null]}),
            json!({
                "a": {"type": "string"}, "b": {"type": "number"}, "f": {"type": "boolean"},
                "o": {"type": "object", "children": {"k": {"type": "array[number]"}}},
                "l": {"type": "array[object]", "children": {"z": {"type": "string"}}},
                "bs": {"type": "array[boolean]"}
            }),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": "xy", "b": 2, "f": true, "o": {"k": [1, 2.5]}, "l": [{"z": "q"}], "bs": [true, null]})
        );
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "f", "o", "l", "bs"]);
    }

    #[test]
    fn missing_and_extra_keys() {
        assert_eq!(
            run(json!({"a": "x"}), json!({"a": {"type": "string"}, "b": {"type": "number"}})).unwrap_err(),
            ("OutputValidationError".into(), "Output b is missing.".into())
        );
        assert_eq!(
            run(json!({"a": "x", "c": 1}), json!({"a": {"type": "string"}})).unwrap_err(),
            ("CodeNodeError".into(), "Not all output parameters are validated.".into())
        );
        // Nested keys carry Dify's leading-dot prefix.
        assert_eq!(
            err(json!({"o": {}}), json!({"o": {"type": "object", "children": {"x": {"type": "string"}}}})),
            "Output .o.x is missing."
        );
    }

    #[test]
    fn type_errors() {
        let s = json!({"v": {"type": "string"}});
        assert_eq!(err(json!({"v": 1}), s), "Output variable `v` must be a string");
        assert_eq!(err(json!({"v": "1"}), json!({"v": {"type": "number"}})), "Output variable `v` must be a number");
        assert_eq!(err(json!({"v": 1}), json!({"v": {"type": "boolean"}})), "Output variable `v` must be a boolean");
        assert_eq!(
            err(json!({"v": [1]}), json!({"v": {"type": "object"}})),
            "Output v is not an object, got <class 'list'> instead."
        );
        assert_eq!(
            err(json!({"v": "x"}), json!({"v": {"type": "array[string]"}})),
            "Output v is not an array, got <class 'str'> instead."
        );
        assert_eq!(
            err(json!({"v": ["a", 1]}), json!({"v": {"type": "array[string]"}})),
            "Output variable `v[1]` must be a string"
        );
        assert_eq!(
            err(json!({"v": [{}, 2.5]}), json!({"v": {"type": "array[object]"}})),
            "Output v[1] is not an object, got <class 'float'> instead at index 1."
        );
        assert_eq!(
            err(json!({"v": [true, 1]}), json!({"v": {"type": "array[boolean]"}})),
            "Output variable `v[1]` must be a boolean"
        );
        assert_eq!(err(json!({"v": 1}), json!({"v": {"type": "file"}})), "Output type file is not supported.");
        // Null passes every type.
        assert_eq!(run(json!({"v": null}), json!({"v": {"type": "number"}})).unwrap(), json!({"v": null}));
    }

    #[test]
    fn limits() {
        let long = "x".repeat(MAX_STRING_LENGTH + 1);
        assert_eq!(
            err(json!({"v": long}), json!({"v": {"type": "string"}})),
            "The length of output variable `v` must be less than 80000 characters"
        );
        let ok = "é".repeat(MAX_STRING_LENGTH);
        assert!(run(json!({"v": ok}), json!({"v": {"type": "string"}})).is_ok());
        assert_eq!(
            err(json!({"v": vec!["a"; 31]}), json!({"v": {"type": "array[string]"}})),
            "The length of output variable `v` must be less than 30 elements."
        );
        assert!(run(json!({"v": vec!["a"; 30]}), json!({"v": {"type": "array[string]"}})).is_ok());
        assert_eq!(
            err(json!({"v": vec![1; 1001]}), json!({"v": {"type": "array[number]"}})),
            "The length of output variable `v` must be less than 1000 elements."
        );
        assert_eq!(
            err(json!({"v": vec![json!({}); 31]}), json!({"v": {"type": "array[object]"}})),
            "The length of output variable `v` must be less than 30 elements."
        );
        let range =
            "Output variable `v` is out of range, it must be between -9223372036854775808 and 9223372036854775807.";
        assert_eq!(err(json!({"v": 9223372036854775808u64}), json!({"v": {"type": "number"}})), range);
        assert_eq!(err(json!({"v": 9.3e18}), json!({"v": {"type": "number"}})), range);
        assert_eq!(err(json!({"v": -9.3e18}), json!({"v": {"type": "number"}})), range);
        assert!(run(json!({"v": i64::MIN}), json!({"v": {"type": "number"}})).is_ok());
        assert_eq!(
            err(json!({"v": 1e-25}), json!({"v": {"type": "number"}})),
            "Output variable `v` has too high precision, it must be less than 20 digits."
        );
        assert!(run(json!({"v": 0.1 + 0.2}), json!({"v": {"type": "number"}})).is_ok());
    }

    #[test]
    fn depth_limit() {
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
        let s = json!({"a": {"type": "object", "children": null}});
        let (ty, msg) = run(deep, s).unwrap_err();
        assert_eq!(ty, "DepthLimitError");
        assert_eq!(msg, "Depth limit 5 reached, object too deep.");
        let fine = json!({"a": {"b": {"c": {"d": 1}}}});
        assert!(run(fine, json!({"a": {"type": "object", "children": null}})).is_ok());
    }

    #[test]
    fn untyped_arrays() {
        let s = json!({"a": {"type": "object", "children": null}});
        assert_eq!(
            err(json!({"a": {"m": [1, "x"]}}), s.clone()),
            "Output .a.m is not a valid array. make sure all elements are of the same type."
        );
        assert!(run(json!({"a": {"m": [[1], [2]], "n": []}}), s).is_ok());
    }

    #[test]
    fn precision_follows_python_repr() {
        assert_eq!(float_precision(2.0), 0);
        assert_eq!(float_precision(0.1), 1);
        assert_eq!(float_precision(123.456), 3);
        assert_eq!(float_precision(1e-25), 25);
        assert_eq!(float_precision(1.5e300), 0);
    }

    #[test]
    fn result_parsing() {
        assert_eq!(extract_tagged("noise<<RESULT>>{\"a\":1}<<RESULT>>\n", RESULT_TAG).unwrap(), "{\"a\":1}");
        assert!(extract_tagged("nothing", RESULT_TAG).is_err());
        assert!(extract_tagged("<<RESULT>>", RESULT_TAG).is_err());
        let m = parse_result(r#"{"s": "1.5e+3", "t": "1e5", "u": ["2E-2"]}"#).unwrap();
        assert_eq!(Value::Object(m), json!({"s": 1500.0, "t": "1e5", "u": [0.02]}));
        let e = parse_result("[1]").unwrap_err();
        assert_eq!(e, NodeError::new("CodeExecutionError", "Result must be a dict, got list"));
        assert!(parse_result("null").is_err());
        assert!(parse_result("{").is_err());
    }

    #[test]
    fn schema_parsing() {
        assert_eq!(parse_schema(None).unwrap(), None);
        assert!(parse_schema(Some(&json!({"a": 1}))).is_err());
        assert!(parse_schema(Some(&json!({"a": {"children": null}}))).is_err());
        let s = schema(json!({"o": {"type": "object", "children": {"x": {"type": "string", "children": null}}}}));
        assert_eq!(s[0].1.children.as_ref().unwrap()[0].1.kind, "string");
    }
}
