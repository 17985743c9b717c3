//! Input forms: the variables an app asks for, and the validation of a
//! request's `inputs` against them (§3.6 of the API spec).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The control type of a form variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FormKind {
    TextInput,
    Paragraph,
    Select,
    Number,
    Checkbox,
    JsonObject,
    File,
    FileList,
    /// Anything else (`external_data_tool`, newer types): passed through, not validated.
    Other(String),
}

impl FormKind {
    pub fn parse(s: &str) -> FormKind {
        match s {
            "text-input" => FormKind::TextInput,
            "paragraph" => FormKind::Paragraph,
            "select" => FormKind::Select,
            "number" => FormKind::Number,
            "checkbox" => FormKind::Checkbox,
            "json_object" => FormKind::JsonObject,
            "file" => FormKind::File,
            "file-list" => FormKind::FileList,
            other => FormKind::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FormKind::TextInput => "text-input",
            FormKind::Paragraph => "paragraph",
            FormKind::Select => "select",
            FormKind::Number => "number",
            FormKind::Checkbox => "checkbox",
            FormKind::JsonObject => "json_object",
            FormKind::File => "file",
            FormKind::FileList => "file-list",
            FormKind::Other(s) => s,
        }
    }
}

/// One variable of an input form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    pub variable: String,
    pub label: String,
    pub kind: FormKind,
    pub required: bool,
    pub max_length: Option<u64>,
    pub options: Vec<String>,
    pub default: Value,
    /// The definition as written, for `/parameters`.
    pub raw: Value,
}

fn field_from(kind: &str, def: &Value) -> Option<FormField> {
    let variable = def.get("variable").and_then(Value::as_str)?.to_string();
    Some(FormField {
        label: def.get("label").and_then(Value::as_str).unwrap_or(&variable).to_string(),
        kind: FormKind::parse(kind),
        required: def.get("required").and_then(Value::as_bool).unwrap_or(false),
        max_length: def.get("max_length").and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))),
        options: def
            .get("options")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|o| o.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        default: def.get("default").cloned().unwrap_or(Value::Null),
        raw: def.clone(),
        variable,
    })
}

/// Parses `model_config.user_input_form`: a list of one-key maps `{<type>: {variable, …}}`.
pub fn parse_user_input_form(form: &Value) -> Vec<FormField> {
    let Some(items) = form.as_array() else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let (kind, def) = item.as_object()?.iter().next()?;
            field_from(kind, def)
        })
        .collect()
}

/// Parses a start node's `variables`: a list of `{variable, type, …}`.
pub fn parse_start_variables(vars: &Value) -> Vec<FormField> {
    let Some(items) = vars.as_array() else { return Vec::new() };
    items
        .iter()
        .filter_map(|def| field_from(def.get("type").and_then(Value::as_str).unwrap_or("text-input"), def))
        .collect()
}

/// The form as `/parameters` shows it: `[{"<type>": {…, "type": "<type>"}}]`.
pub fn to_parameters(fields: &[FormField]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|f| {
                let mut def = f.raw.as_object().cloned().unwrap_or_default();
                def.insert("variable".into(), Value::String(f.variable.clone()));
                def.insert("label".into(), Value::String(f.label.clone()));
                def.insert("type".into(), Value::String(f.kind.as_str().to_string()));
                def.insert("required".into(), Value::Bool(f.required));
                def.entry("max_length").or_insert(Value::Null);
                def.entry("default").or_insert(Value::String(String::new()));
                if matches!(f.kind, FormKind::TextInput | FormKind::Select | FormKind::Paragraph) {
                    def.entry("options").or_insert(Value::Array(vec![]));
                }
                let mut item = Map::new();
                item.insert(f.kind.as_str().to_string(), Value::Object(def));
                Value::Object(item)
            })
            .collect(),
    )
}

fn strip_nul(s: &str) -> String {
    s.replace('\0', "")
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A list of strings as Python prints it (`['a', "it's"]`): Dify's messages
/// show the options that way.
fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
            let mut out = String::from(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(q);
            out
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// Validates `inputs` against the form: required variables present, types
/// right, lengths and options respected. Undeclared keys are dropped; absent
/// optional variables take their default. The error text is Dify's.
pub fn validate(fields: &[FormField], inputs: &Value) -> Result<Map<String, Value>, String> {
    let empty = Map::new();
    let given = match inputs {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err("inputs must be an object".into()),
    };
    let mut out = Map::new();
    for f in fields {
        let v = given.get(&f.variable).cloned().unwrap_or(Value::Null);
        let is_file = matches!(f.kind, FormKind::File | FormKind::FileList);
        let absent = v.is_null() || (is_file && !f.required && blank(&v));
        if absent {
            if f.required {
                return Err(format!("{} is required in input form", f.variable));
            }
            let default = match (&f.kind, &f.default) {
                (FormKind::File | FormKind::FileList, _) => Value::Null,
                (_, d) => d.clone(),
            };
            out.insert(f.variable.clone(), default);
            continue;
        }
        let value = match &f.kind {
            FormKind::TextInput | FormKind::Paragraph | FormKind::Select => {
                let Value::String(s) = &v else {
                    return Err(format!("(type '{}') {} in input form must be a string", f.kind.as_str(), f.variable));
                };
                let s = strip_nul(s);
                if f.required && s.is_empty() {
                    return Err(format!("{} is required in input form", f.variable));
                }
                if f.kind == FormKind::Select && !s.is_empty() && !f.options.is_empty() && !f.options.contains(&s) {
                    return Err(format!(
                        "{} in input form must be one of the following: {}",
                        f.variable,
                        python_list(&f.options)
                    ));
                }
                if let Some(max) = f.max_length.filter(|m| *m > 0) {
                    if f.kind != FormKind::Select && s.chars().count() as u64 > max {
                        return Err(format!("{} in input form must be less than {} characters", f.variable, max));
                    }
                }
                Value::String(s)
            }
            FormKind::Number => match &v {
                Value::Number(_) => v.clone(),
                Value::String(s) if s.trim().is_empty() => Value::Null,
                Value::String(s) => {
                    let t = s.trim();
                    if let Ok(i) = t.parse::<i64>() {
                        Value::from(i)
                    } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                        Value::Number(n)
                    } else {
                        return Err(format!("{} in input form must be a valid number", f.variable));
                    }
                }
                _ => return Err(format!("{} in input form must be a valid number", f.variable)),
            },
            FormKind::Checkbox => match &v {
                Value::Bool(_) => v.clone(),
                Value::Number(n) if n.as_i64() == Some(1) => Value::Bool(true),
                Value::Number(n) if n.as_i64() == Some(0) => Value::Bool(false),
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Value::Bool(true),
                    "false" | "0" | "no" | "off" => Value::Bool(false),
                    _ => return Err(format!("{} in input form must be a boolean", f.variable)),
                },
                _ => return Err(format!("{} in input form must be a boolean", f.variable)),
            },
            FormKind::JsonObject => match &v {
                Value::Object(_) => v.clone(),
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(o @ Value::Object(_)) => o,
                    _ => return Err(format!("{} in input form must be a JSON object", f.variable)),
                },
                _ => return Err(format!("{} in input form must be a JSON object", f.variable)),
            },
            FormKind::File => {
                if !v.is_object() {
                    return Err(format!("{} in input form must be a file", f.variable));
                }
                v.clone()
            }
            FormKind::FileList => {
                let Value::Array(items) = &v else {
                    return Err(format!("{} in input form must be a list of files", f.variable));
                };
                if let Some(max) = f.max_length.filter(|m| *m > 0) {
                    if items.len() as u64 > max {
                        return Err(format!("{} in input form must have at most {} files", f.variable, max));
                    }
                }
                v.clone()
            }
            FormKind::Other(_) => v.clone(),
        };
        out.insert(f.variable.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> Vec<FormField> {
        parse_user_input_form(&json!([
            {"text-input": {"variable": "city", "label": "City", "required": true, "max_length": 5}},
            {"select": {"variable": "tone", "label": "Tone", "required": false, "options": ["a", "b"], "default": "a"}},
            {"number": {"variable": "n", "label": "N", "required": false}},
            {"checkbox": {"variable": "ok", "label": "OK", "required": false}},
        ]))
    }

    #[test]
    fn validates_like_dify() {
        let f = form();
        assert_eq!(validate(&f, &json!({})).unwrap_err(), "city is required in input form");
        assert_eq!(
            validate(&f, &json!({"city": 3})).unwrap_err(),
            "(type 'text-input') city in input form must be a string"
        );
        assert!(validate(&f, &json!({"city": "toolong"})).unwrap_err().contains("less than 5"));
        assert_eq!(
            validate(&f, &json!({"city": "SF", "tone": "c"})).unwrap_err(),
            "tone in input form must be one of the following: ['a', 'b']"
        );
        let options = ["it's".to_string(), "say \"hi\"".to_string(), "a\\b".to_string()];
        assert_eq!(python_list(&options), r#"["it's", 'say "hi"', 'a\\b']"#);
        assert!(validate(&f, &json!({"city": "SF", "n": "x"})).unwrap_err().contains("valid number"));
        let ok = validate(&f, &json!({"city": "S\u{0}F", "n": "3.5", "ok": "yes", "extra": 1})).unwrap();
        assert_eq!(Value::Object(ok), json!({"city": "SF", "tone": "a", "n": 3.5, "ok": true}));
    }

    #[test]
    fn parameters_shape() {
        let p = to_parameters(&form());
        assert_eq!(p[0]["text-input"]["type"], "text-input");
        assert_eq!(p[0]["text-input"]["variable"], "city");
        assert_eq!(p[1]["select"]["options"], json!(["a", "b"]));
    }
}
