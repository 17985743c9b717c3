//! Templates: Dify's `{{#node.var#}}` references and Jinja2 (minijinja).
//!
//! A `{{#…#}}` template parses once into [`Segment`]s; rendering looks each
//! reference up in a [`Pool`]. A reference to a variable that does not
//! exist renders as its inner text (`llm.text`), as in Dify.

use serde_json::{Map, Value};

use super::pool::{render_markdown, render_text, Pool};

/// A piece of a `{{#…#}}` template.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Text(String),
    Var(Vec<String>),
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Length of the selector text at the start of `s` (before `#}}`), if it
/// matches `[a-zA-Z0-9_]{1,50}(\.[a-zA-Z_][a-zA-Z0-9_]{0,29}){1,10}`.
fn selector_at(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() && is_word(s[i]) {
        i += 1;
    }
    if i == 0 || i > 50 {
        return None;
    }
    let mut parts = 0;
    while i < s.len() && s[i] == b'.' {
        let start = i + 1;
        if start >= s.len() || !(s[start].is_ascii_alphabetic() || s[start] == b'_') {
            break;
        }
        let mut j = start + 1;
        while j < s.len() && is_word(s[j]) {
            j += 1;
        }
        if j - start > 30 {
            return None;
        }
        parts += 1;
        i = j;
    }
    (1..=10).contains(&parts).then_some(i)
}

/// Parses a `{{#…#}}` template.
pub fn parse(template: &str) -> Vec<Segment> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] == b"{{#" {
            if let Some(n) = selector_at(&bytes[i + 3..]) {
                let end = i + 3 + n;
                if bytes.get(end..end + 3) == Some(b"#}}") {
                    if text_start < i {
                        out.push(Segment::Text(template[text_start..i].to_string()));
                    }
                    let inner = &template[i + 3..end];
                    out.push(Segment::Var(inner.split('.').map(str::to_string).collect()));
                    i = end + 3;
                    text_start = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    if text_start < template.len() {
        out.push(Segment::Text(template[text_start..].to_string()));
    }
    out
}

/// Which rendering a template uses for values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Text,
    Markdown,
}

/// Renders parsed segments against a pool.
pub fn render_segments(segments: &[Segment], pool: &Pool, flavour: Flavour) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Var(sel) => match pool.get(sel) {
                Some(v) => out.push_str(&match flavour {
                    Flavour::Text => render_text(&v),
                    Flavour::Markdown => render_markdown(&v),
                }),
                None => out.push_str(&sel.join(".")),
            },
        }
    }
    out
}

/// Parses and renders a template in the `text` flavour.
pub fn render(template: &str, pool: &Pool) -> String {
    if !template.contains("{{#") {
        return template.to_string();
    }
    render_segments(&parse(template), pool, Flavour::Text)
}

/// Every selector a template references.
pub fn selectors(template: &str) -> Vec<Vec<String>> {
    parse(template)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Var(v) => Some(v),
            Segment::Text(_) => None,
        })
        .collect()
}

/// A compiled Jinja2 template.
pub struct Jinja {
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for Jinja {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jinja")
    }
}

const NAME: &str = "t";

/// Instructions one rendering may execute: templates come from DSL files
/// and must not be able to spin a worker forever (`range` nested in `range`).
pub const JINJA_FUEL: u64 = 5_000_000;

/// Longest text one rendering may produce.
pub const JINJA_MAX_OUTPUT: usize = 4 << 20;

/// A writer that refuses to grow past [`JINJA_MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > JINJA_MAX_OUTPUT {
            return Err(std::io::Error::other("output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Jinja {
    /// Compiles a template; the error names the line.
    pub fn compile(source: &str) -> Result<Jinja, String> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(JINJA_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_keep_trailing_newline(true);
        env.add_template_owned(NAME, source.to_string()).map_err(|e| format!("invalid Jinja2 template: {e}"))?;
        Ok(Jinja { env })
    }

    /// Renders with the given variables.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<String, String> {
        let t = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        let mut out = Capped(Vec::new());
        match t.render_captured_to(minijinja::Value::from_serialize(vars), &mut out) {
            Ok(_) => String::from_utf8(out.0).map_err(|_| "template error: the output is not UTF-8".to_string()),
            Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => {
                Err(format!("template error: the output exceeds {JINJA_MAX_OUTPUT} bytes"))
            }
            Err(e) => Err(format!("template error: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_references_and_leaves_the_rest() {
        let s = parse("Hi {{#start.name#}}! {{#1711.obj.k#}} {{#context#}} {{# bad #}}");
        assert_eq!(s[0], Segment::Text("Hi ".into()));
        assert_eq!(s[1], Segment::Var(vec!["start".into(), "name".into()]));
        assert_eq!(s[3], Segment::Var(vec!["1711".into(), "obj".into(), "k".into()]));
        assert_eq!(s[4], Segment::Text(" {{#context#}} {{# bad #}}".into()));
    }

    #[test]
    fn missing_variables_render_their_inner_text() {
        let pool = Pool::root();
        pool.set("start", "name", json!("Ada"));
        pool.set("start", "n", json!(2.0));
        assert_eq!(render("{{#start.name#}}/{{#start.n#}}/{{#llm.text#}}", &pool), "Ada/2.0/llm.text");
    }

    #[test]
    fn jinja_with_python_methods() {
        let j = Jinja::compile("{{ name.upper() }}{% for x in items %}-{{ x }}{% endfor %}").unwrap();
        let mut vars = Map::new();
        vars.insert("name".into(), json!("ada"));
        vars.insert("items".into(), json!([1, 2]));
        assert_eq!(j.render(&vars).unwrap(), "ADA-1-2");
        assert!(Jinja::compile("{% if %}").is_err());
    }

    #[test]
    fn jinja_cannot_spin_or_flood() {
        let vars = Map::new();
        let spin = Jinja::compile("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
        let err = spin.unwrap().render(&vars).unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        let flood = Jinja::compile("{% for a in range(100) %}{{ 'x' * 1000000 }}{% endfor %}").unwrap();
        assert!(flood.render(&vars).unwrap_err().contains("exceeds"));
    }
}
