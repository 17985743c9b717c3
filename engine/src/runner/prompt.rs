//! `{{var}}` templates of simple-mode prompts (`pre_prompt`): a variable name
//! is `[a-zA-Z_][a-zA-Z0-9_]{0,29}`; unknown variables and anything else are
//! left as written. `{{#context#}}`-style placeholders render as empty.

use serde_json::{Map, Value};

fn is_var(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 30
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How an input value reads inside a prompt.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `{{name}}` is a placeholder of a simple-mode prompt.
fn is_placeholder(name: &str) -> bool {
    is_var(name) || matches!(name, "#histories#" | "#query#" | "#context#")
}

/// `text` with its `{{placeholder}}`s turned into `{placeholder}`, as Dify does
/// to input values it puts in a prompt and to the answers it stores, so that
/// they are never read as placeholders again.
pub fn remove_template_variables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // A placeholder's name is at most 30 bytes: look no further for its `}}`
        // (linear in the text, however many `{{` it holds).
        let near = &after.as_bytes()[..after.len().min(32)];
        let end = near.windows(2).position(|w| w == b"}}");
        match end.filter(|end| after.is_char_boundary(*end) && is_placeholder(&after[..*end])) {
            Some(end) => {
                out.push('{');
                out.push_str(&after[..end]);
                out.push('}');
                rest = &after[end + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders `template` with `inputs` (their values with placeholders removed).
pub fn render(template: &str, inputs: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                if is_var(name) {
                    match inputs.get(name) {
                        Some(v) => out.push_str(&remove_template_variables(&value_text(v))),
                        None => out.push_str(&rest[start..start + 2 + end + 2]),
                    }
                } else if name.starts_with('#') && name.ends_with('#') && name.len() > 1 {
                    // {{#context#}}, {{#histories#}}, {{#query#}}: filled elsewhere or empty.
                } else {
                    out.push_str(&rest[start..start + 2 + end + 2]);
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_variables() {
        let inputs = json!({"text": "hi", "n": 3}).as_object().unwrap().clone();
        assert_eq!(
            render("Translate {{text}} x{{n}} {{missing}} {{#context#}}end", &inputs),
            "Translate hi x3 {{missing}} end"
        );
        assert_eq!(render("no close {{text", &inputs), "no close {{text");
        assert_eq!(render("{{ text }}", &inputs), "{{ text }}");
        let inputs = json!({"text": "say {{name}}"}).as_object().unwrap().clone();
        assert_eq!(render("{{text}}", &inputs), "say {name}");
    }

    #[test]
    fn removes_placeholders_as_dify_does() {
        assert_eq!(remove_template_variables("x {{abc}} y"), "x {abc} y");
        assert_eq!(remove_template_variables("{{#query#}} {{#other#}} {{a b}}"), "{#query#} {{#other#}} {{a b}}");
        assert_eq!(remove_template_variables("{{{x}}} {{"), "{{x}} {{");
        assert_eq!(remove_template_variables("é{{_v1}}"), "é{_v1}");
        let long_name = format!("{{{{{}}}}}", "a".repeat(31));
        assert_eq!(remove_template_variables(&long_name), long_name, "names are at most 30 characters");
        // Linear: a megabyte of braces is one pass.
        let braces = "{".repeat(1 << 20);
        assert_eq!(remove_template_variables(&braces), braces);
    }
}
