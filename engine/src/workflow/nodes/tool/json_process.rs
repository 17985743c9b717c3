//! `json_process.parse`: extracts a JSONPath (`$.a.b[0]`, `a.b`, `['k']`,
//! `[*]`) from JSON text. As in Dify, problems are answered as text, not
//! failures: an empty parameter, invalid JSON, no match.

use serde_json::{Map, Value};

use crate::workflow::pool::render_text;

enum Step {
    Key(String),
    Index(usize),
    All,
}

fn steps(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut out = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                out.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                out.push(Step::Index(i));
            } else {
                out.push(Step::Key(inner.trim_matches(|c| c == '\'' || c == '"').to_string()));
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let key = &rest[..end];
        out.push(if key == "*" { Step::All } else { Step::Key(key.to_string()) });
        rest = &rest[end..];
    }
    Some(out)
}

fn find(v: &Value, path: &[Step], out: &mut Vec<Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(v.clone());
        return;
    };
    match (first, v) {
        (Step::Key(k), Value::Object(m)) => {
            if let Some(x) = m.get(k) {
                find(x, rest, out)
            }
        }
        (Step::Index(i), Value::Array(a)) => {
            if let Some(x) = a.get(*i) {
                find(x, rest, out)
            }
        }
        (Step::All, Value::Array(a)) => a.iter().for_each(|x| find(x, rest, out)),
        (Step::All, Value::Object(m)) => m.values().for_each(|x| find(x, rest, out)),
        _ => {}
    }
}

/// JSON text with non-ASCII escaped (Python's `ensure_ascii=True`).
fn ascii_json(v: &Value) -> String {
    let mut out = String::new();
    for c in crate::workflow::pool::py_json(v).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

pub fn parse(args: &Map<String, Value>) -> String {
    let content = args.get("content").map(render_text).unwrap_or_default();
    if content.is_empty() {
        return "Invalid parameter content".into();
    }
    let filter = args.get("json_filter").map(render_text).unwrap_or_default();
    if filter.is_empty() {
        return "Invalid parameter json_filter".into();
    }
    let data: Value = match serde_json::from_str(&content) {
        Ok(v) => v,
        Err(e) => return e.to_string(),
    };
    let Some(path) = steps(&filter) else { return format!("Invalid JSONPath: {filter}") };
    let mut found = Vec::new();
    find(&data, &path, &mut found);
    let result = if found.len() == 1 { found.remove(0) } else { Value::Array(found) };
    match &result {
        Value::Object(_) | Value::Array(_) => ascii_json(&result),
        Value::Null => "None".into(),
        other => render_text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(content: &str, filter: &str) -> String {
        let mut m = Map::new();
        m.insert("content".into(), json!(content));
        m.insert("json_filter".into(), json!(filter));
        parse(&m)
    }

    #[test]
    fn paths() {
        let doc = r#"{"a": {"b": [1, {"c": "é"}]}, "ok": true, "n": null}"#;
        assert_eq!(run(doc, "a.b[0]"), "1");
        assert_eq!(run(doc, "$.a.b[1].c"), "é");
        assert_eq!(run(doc, "$.a.b[1]"), "{\"c\": \"\\u00e9\"}");
        assert_eq!(run(doc, "ok"), "True");
        assert_eq!(run(doc, "n"), "None");
        assert_eq!(run(doc, "missing"), "[]");
        assert_eq!(run(doc, "['a']['b'][*]"), "[1, {\"c\": \"\\u00e9\"}]");
        assert!(run("not json", "a").contains("expected"));
        assert_eq!(run("", "a"), "Invalid parameter content");
    }
}
