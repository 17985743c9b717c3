//! The variable pool: every value a node can read, keyed by selector
//! `[owner, name, ...path]` (owner = a node id, `sys`, `env`, `conversation`,
//! or a container id for `item`/`index` and loop variables).
//!
//! Pools are layered: an iteration round or loop round reads through to the
//! pool of the graph around it and writes its own node outputs locally, so
//! parallel rounds never see each other's values. Assignments to an existing
//! variable go to the layer that holds it (conversation variables live in
//! the run's root layer).

use foldhash::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};

/// One layer of variables.
#[derive(Debug, Default)]
pub struct Pool {
    parent: Option<Arc<Pool>>,
    vars: RwLock<HashMap<String, Map<String, Value>>>,
}

impl Pool {
    pub fn root() -> Arc<Pool> {
        Arc::new(Pool::default())
    }

    /// A layer over `parent`.
    pub fn child(parent: &Arc<Pool>) -> Arc<Pool> {
        Arc::new(Pool { parent: Some(parent.clone()), vars: RwLock::new(HashMap::default()) })
    }

    /// Sets every variable of `owner` in this layer (node outputs, `sys`, `env`).
    pub fn set_owner(&self, owner: &str, values: Map<String, Value>) {
        self.vars.write().insert(owner.to_string(), values);
    }

    /// Sets one variable in this layer.
    pub fn set(&self, owner: &str, name: &str, value: Value) {
        self.vars.write().entry(owner.to_string()).or_default().insert(name.to_string(), value);
    }

    /// Every variable of `owner`, from the nearest layer that has it.
    pub fn owner(&self, owner: &str) -> Option<Map<String, Value>> {
        if let Some(m) = self.vars.read().get(owner) {
            return Some(m.clone());
        }
        self.parent.as_ref().and_then(|p| p.owner(owner))
    }

    /// Whether `owner` has any variables in some layer.
    pub fn has_owner(&self, owner: &str) -> bool {
        self.vars.read().contains_key(owner) || self.parent.as_ref().is_some_and(|p| p.has_owner(owner))
    }

    /// The value a selector points at, walking into objects and file
    /// attributes; `None` when it resolves to nothing.
    pub fn get(&self, selector: &[String]) -> Option<Value> {
        let (owner, rest) = selector.split_first()?;
        let (name, path) = rest.split_first()?;
        let base = {
            let vars = self.vars.read();
            vars.get(owner.as_str()).map(|m| m.get(name.as_str()).cloned())
        };
        let value = match base {
            Some(v) => v?,
            None => return self.parent.as_ref().and_then(|p| p.get(selector)),
        };
        walk(value, path)
    }

    /// Writes `value` to the variable at `[owner, name]` in the layer that
    /// holds it, or in this layer when none does.
    pub fn assign(&self, owner: &str, name: &str, value: Value) {
        if !self.holds(owner, name) {
            let mut layer = self.parent.clone();
            while let Some(p) = layer {
                if p.holds(owner, name) {
                    p.set(owner, name, value);
                    return;
                }
                layer = p.parent.clone();
            }
        }
        self.set(owner, name, value);
    }

    fn holds(&self, owner: &str, name: &str) -> bool {
        self.vars.read().get(owner).is_some_and(|m| m.contains_key(name))
    }
}

/// Walks `path` into a value: object keys, or file attributes.
fn walk(mut value: Value, path: &[String]) -> Option<Value> {
    for key in path {
        value = match value {
            Value::Object(mut m) => m.remove(key.as_str())?,
            _ => return None,
        };
    }
    Some(value)
}

/// Marker key of file values (as Dify serialises them).
pub const FILE_MARKER: &str = "dify_model_identity";
const FILE_IDENTITY: &str = "__dify__file__";

/// Whether a value is a file object.
pub fn is_file(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get(FILE_MARKER).and_then(Value::as_str) == Some(FILE_IDENTITY)
                || (m.contains_key("transfer_method") && m.contains_key("type") && !m.contains_key("value"))
        }
        _ => false,
    }
}

/// Python's `str()` of a number.
fn number_text(n: &serde_json::Number) -> String {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
            return format!("{f:.1}");
        }
    }
    n.to_string()
}

/// JSON text as Python's `json.dumps(..., ensure_ascii=False)` writes it.
pub fn py_json(v: &Value) -> String {
    let mut out = String::new();
    py_text(v, false, &mut out);
    out
}

/// Python's `json.dumps` (`repr` false) or `repr()` (`repr` true) of a
/// value: the same `, ` / `: ` layout, different scalars.
fn py_text(v: &Value, repr: bool, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_text(item, repr, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_text(&Value::String(k.clone()), repr, out);
                out.push_str(": ");
                py_text(item, repr, out);
            }
            out.push('}');
        }
        _ if !repr => out.push_str(&v.to_string()),
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => {
            out.push('\'');
            out.push_str(&s.replace('\\', "\\\\").replace('\'', "\\'"));
            out.push('\'');
        }
    }
}

/// A value as text in prompts, HTTP requests and conditions (Dify's `text`).
pub fn render_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => number_text(n),
        Value::Object(_) if is_file(v) => String::new(),
        Value::Object(_) => py_json(v),
        Value::Array(items) if items.is_empty() => String::new(),
        Value::Array(items) if items.iter().all(is_file) => String::new(),
        Value::Array(items) if items.iter().all(Value::is_string) => py_json(v),
        Value::Array(_) => {
            let mut out = String::new();
            py_text(v, true, &mut out);
            out
        }
    }
}

/// A value as streamed text of Answer and End nodes (Dify's `markdown`).
pub fn render_markdown(v: &Value) -> String {
    match v {
        Value::Object(m) if is_file(v) => {
            let name = m.get("filename").or_else(|| m.get("name")).and_then(Value::as_str).unwrap_or("");
            let url = m.get("remote_url").or_else(|| m.get("url")).and_then(Value::as_str).unwrap_or("");
            if m.get("type").and_then(Value::as_str) == Some("image") {
                format!("![{name}]({url})")
            } else {
                format!("[{name}]({url})")
            }
        }
        Value::Object(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        Value::Array(items) if items.iter().all(is_file) && !items.is_empty() => {
            items.iter().map(render_markdown).collect::<Vec<_>>().join("\n")
        }
        Value::Array(items) => items.iter().map(|i| format!("- {}", render_text(i))).collect::<Vec<_>>().join("\n"),
        other => render_text(other),
    }
}

/// Python truthiness (`""`, `[]`, `{}`, `0`, null are empty).
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// A selector from JSON (a list of scalars), every element as a string.
pub fn selector_of(v: &Value) -> Option<Vec<String>> {
    let items = v.as_array()?;
    let sel: Vec<String> = items
        .iter()
        .map(|i| match i {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => String::new(),
        })
        .collect();
    (sel.len() >= 2).then_some(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn layers_read_through_and_assign_where_held() {
        let root = Pool::root();
        root.set("conversation", "n", json!(1));
        root.set("a", "obj", json!({"k": {"x": 2}}));
        let child = Pool::child(&root);
        child.set("b", "v", json!("local"));
        assert_eq!(child.get(&sel(&["a", "obj", "k", "x"])), Some(json!(2)));
        assert_eq!(child.get(&sel(&["a", "missing"])), None);
        assert_eq!(root.get(&sel(&["b", "v"])), None);
        child.assign("conversation", "n", json!(5));
        assert_eq!(root.get(&sel(&["conversation", "n"])), Some(json!(5)));
        assert_eq!(child.get(&sel(&["a", "obj", "k", "x", "deeper"])), None);
    }

    #[test]
    fn renderings_follow_python() {
        assert_eq!(render_text(&json!(2.0)), "2.0");
        assert_eq!(render_text(&json!(3)), "3");
        assert_eq!(render_text(&json!(true)), "True");
        assert_eq!(render_text(&json!(["a", "b"])), "[\"a\", \"b\"]");
        assert_eq!(render_text(&json!([1, "x"])), "[1, 'x']");
        assert_eq!(render_text(&json!({"a": "é"})), "{\"a\": \"é\"}");
        assert_eq!(render_text(&json!([])), "");
        assert_eq!(render_markdown(&json!(["a", "b"])), "- a\n- b");
        assert_eq!(render_markdown(&json!({"a": 1})), "{\n  \"a\": 1\n}");
        assert!(is_empty(&json!(0)) && is_empty(&json!("")) && !is_empty(&json!([0])));
    }
}
