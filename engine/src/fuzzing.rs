//! Fuzz checks of the engine's parsers: one function per cargo-fuzz target
//! (`fuzz/fuzz_targets/`), also run over the seed corpora by the stable test
//! suite (`tests/fuzz_corpus.rs`), so both share one body per target.
//!
//! Each takes arbitrary bytes and panics only when a property is violated:
//! parsing never panics, and what parses satisfies the property stated on
//! the function. Not a stable API.

use serde_json::{json, Map, Value};

use crate::app::form;
use crate::event::Envelope;
use crate::workflow::pool::Pool;
use crate::workflow::template::{self, Flavour, Jinja, Segment, JINJA_MAX_OUTPUT};

/// `event_codec`: decoding arbitrary bytes as an event envelope never
/// panics, and whatever decodes re-encodes to bytes that decode to the same
/// value — compared by their encodings, since a float field may hold a NaN,
/// which is not equal to itself.
pub fn event_codec(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        let again = env.encode().expect("a decoded envelope encodes");
        let decoded = Envelope::decode(&again).expect("re-encoded bytes decode");
        assert_eq!(decoded.encode().expect("it encodes again"), again);
    }
}

/// `dsl_import`: everything an import checks (YAML, app section, mode,
/// model config, workflow graph) answers Ok or an error for any text; an
/// accepted app's form shows as `/parameters` and validates inputs.
pub fn dsl_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = crate::apps::check_dsl(text) else { return };
    let shown = form::to_parameters(&spec.form);
    assert!(shown.is_array());
    let _ = form::validate(&spec.form, &json!({}));
    let _ = form::validate(&spec.form, &json!({"query": "x", "n": "3", "flag": "yes", "f": []}));
    let _ = spec.opening_statement();
}

/// `template_refs`: a `{{#…#}}` template splits into text and references
/// that put back together give the template again; rendering (text and
/// markdown flavours, and simple-mode `{{var}}` prompts) never panics.
pub fn template_refs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let segments = template::parse(text);
    let mut again = String::new();
    for (i, s) in segments.iter().enumerate() {
        match s {
            Segment::Text(t) => {
                assert!(!t.is_empty(), "empty text segment");
                assert!(!matches!(segments.get(i + 1), Some(Segment::Text(_))), "adjacent text segments");
                again.push_str(t);
            }
            Segment::Var(sel) => {
                assert!(sel.len() >= 2, "a reference names a node and a variable");
                again.push_str("{{#");
                again.push_str(&sel.join("."));
                again.push_str("#}}");
            }
        }
    }
    assert_eq!(again, text);
    assert_eq!(template::selectors(text).len(), segments.iter().filter(|s| matches!(s, Segment::Var(_))).count());
    let pool = sample_pool();
    let _ = template::render(text, &pool);
    let _ = template::render_segments(&segments, &pool, Flavour::Markdown);
    let _ = crate::runner::prompt::render(text, &sample_vars());
}

/// `jinja`: compiling any text either fails or gives a template whose
/// rendering ends (fuel) with text no longer than the cap, or an error.
pub fn jinja(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = Jinja::compile(text) else { return };
    if let Ok(out) = t.render(&sample_vars()) {
        assert!(out.len() <= JINJA_MAX_OUTPUT);
    }
}

fn sample_vars() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "name": "Ada", "n": 3, "x": 2.5, "ok": true, "none": null,
        "items": [1, "two", {"k": [3]}], "obj": {"a": {"b": "c"}, "list": []}
    }) else {
        return Map::new();
    };
    m
}

fn sample_pool() -> std::sync::Arc<Pool> {
    let pool = Pool::root();
    for (k, v) in sample_vars() {
        pool.set("start", &k, v);
    }
    pool.set("llm", "text", json!("answer"));
    pool.set("sys", "files", json!([{"dify_model_identity": "__dify__file__", "filename": "a.png", "type": "image"}]));
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_accept_plain_inputs() {
        event_codec(b"");
        dsl_import(b"app:\n  mode: chat\n  name: x\n");
        template_refs(b"Hi {{#start.name#}} {{#start.obj.a.b#}} {{#x#}} {{name}}");
        jinja(b"{{ name.upper() }} {% for i in items %}{{ i }}{% endfor %}");
    }

    /// Found by fuzzing `event_codec`: a `MessageEnded` whose usage holds a NaN
    /// latency decoded and re-encoded faithfully, but the check compared the
    /// values and NaN != NaN. The check now compares encodings.
    #[test]
    fn an_envelope_holding_nan_round_trips() {
        let data = include_bytes!("../../fuzz/corpus/event_codec/regress-nan-usage-field");
        let env = Envelope::decode(data).expect("the regression input decodes");
        assert!(matches!(env.event, crate::event::Event::MessageEnded { .. }));
        event_codec(data);
    }

    /// Found by fuzzing `event_codec`: a JSON field holding a number with many
    /// digits did not re-encode to the same bytes twice (serde_json parsed it
    /// to a neighbouring f64). serde_json's `float_roundtrip` parsing fixes it.
    #[test]
    fn an_envelope_holding_a_long_float_re_encodes_identically() {
        event_codec(include_bytes!("../../fuzz/corpus/event_codec/regress-json-float-reencode"));
    }
}
