//! Parsing Dify's app DSL (exported YAML) into an [`AppSpec`].
//!
//! Lenient where real exports vary (missing `version`/`kind`, CRLF, any key
//! order, ids that YAML would read as numbers or booleans), strict where it
//! matters (a mapping, a known `app.mode`, the section that mode needs).

use serde_json::{Map, Value};

use super::form::{parse_start_variables, parse_user_input_form};
use super::{AppMode, AppSpec, ModelConfig, ModelSpec};

/// Largest DSL accepted (Dify's limit).
pub const MAX_DSL_BYTES: usize = 10 << 20;

/// Why a DSL file was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DslError {
    #[error("the DSL is larger than 10 MB")]
    TooLarge,
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
}

/// Converts a YAML value to JSON, reading every mapping key as a string
/// (so `1754405559643:` and `true:` stay the strings they were written as).
fn to_json(v: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(scalar_string(&k), to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => to_json(t.value),
    }
}

fn scalar_string(k: &serde_yaml_ng::Value) -> String {
    use serde_yaml_ng::Value as Y;
    match k {
        Y::String(s) => s.clone(),
        Y::Bool(b) => b.to_string(),
        Y::Number(n) => n.to_string(),
        Y::Null => "null".into(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// `str_of`, with a default for absent or empty values.
fn str_or(v: Option<&Value>, default: &str) -> String {
    let s = str_of(v);
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

fn str_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// Feature keys `/parameters` reports, read from `model_config` or `workflow.features`.
const FEATURE_KEYS: &[&str] = &[
    "opening_statement",
    "suggested_questions",
    "suggested_questions_after_answer",
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "annotation_reply",
    "more_like_this",
    "sensitive_word_avoidance",
    "file_upload",
];

fn features_from(section: &Value) -> Value {
    let mut out = Map::new();
    for k in FEATURE_KEYS {
        if let Some(v) = section.get(*k) {
            if !v.is_null() {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Parses a DSL file.
pub fn parse_dsl(text: &str) -> Result<AppSpec, DslError> {
    if text.len() > MAX_DSL_BYTES {
        return Err(DslError::TooLarge);
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| DslError::Yaml(e.to_string()))?;
    if let serde_yaml_ng::Value::Mapping(m) = &yaml {
        if let Some(v) = m.get("version") {
            if !v.is_string() && !v.is_null() {
                return Err(DslError::Invalid("version must be a string (quote it in the YAML)".into()));
            }
        }
    }
    let doc = to_json(yaml);
    let Value::Object(doc) = doc else { return Err(DslError::Invalid("the DSL must be a YAML mapping".into())) };
    let app =
        doc.get("app").filter(|a| a.is_object()).ok_or_else(|| DslError::Invalid("missing the app section".into()))?;
    let mode_text = str_of(app.get("mode"));
    let mode = AppMode::parse(&mode_text).ok_or_else(|| {
        DslError::Invalid(format!(
            "unknown app mode {mode_text:?} (expected chat, completion, agent-chat, advanced-chat or workflow)"
        ))
    })?;
    let name = str_of(app.get("name"));
    let mut spec = AppSpec {
        name: if name.is_empty() { "Untitled".into() } else { name },
        mode,
        description: str_of(app.get("description")),
        icon: str_or(app.get("icon"), "🤖"),
        icon_type: str_or(app.get("icon_type"), "emoji"),
        icon_background: str_or(app.get("icon_background"), "#FFEAD5"),
        use_icon_as_answer_icon: app.get("use_icon_as_answer_icon").and_then(Value::as_bool).unwrap_or(false),
        model_config: None,
        workflow: None,
        form: Vec::new(),
        features: Value::Object(Map::new()),
    };
    match mode {
        AppMode::Chat | AppMode::Completion | AppMode::AgentChat => {
            let mc = doc
                .get("model_config")
                .filter(|m| m.is_object())
                .ok_or_else(|| DslError::Invalid(format!("a {} app needs a model_config section", mode.as_str())))?;
            let model = mc
                .get("model")
                .filter(|m| m.is_object())
                .ok_or_else(|| DslError::Invalid("model_config.model is missing".into()))?;
            let provider = str_of(model.get("provider"));
            let model_name = str_of(model.get("name"));
            if provider.is_empty() || model_name.is_empty() {
                return Err(DslError::Invalid("model_config.model needs a provider and a name".into()));
            }
            spec.form = mc.get("user_input_form").map(parse_user_input_form).unwrap_or_default();
            spec.features = features_from(mc);
            spec.model_config = Some(ModelConfig {
                model: ModelSpec {
                    provider,
                    name: model_name,
                    mode: str_or(model.get("mode"), "chat"),
                    completion_params: model.get("completion_params").cloned().unwrap_or(Value::Object(Map::new())),
                },
                pre_prompt: str_of(mc.get("pre_prompt")),
                prompt_type: str_or(mc.get("prompt_type"), "simple"),
                chat_prompt_config: mc.get("chat_prompt_config").cloned().unwrap_or(Value::Null),
                completion_prompt_config: mc.get("completion_prompt_config").cloned().unwrap_or(Value::Null),
                dataset_query_variable: str_of(mc.get("dataset_query_variable")),
                raw: mc.clone(),
            });
        }
        AppMode::Workflow | AppMode::AdvancedChat => {
            let wf = doc
                .get("workflow")
                .filter(|w| w.is_object())
                .ok_or_else(|| DslError::Invalid(format!("a {} app needs a workflow section", mode.as_str())))?;
            let graph = wf
                .get("graph")
                .filter(|g| g.is_object())
                .ok_or_else(|| DslError::Invalid("workflow.graph is missing".into()))?;
            let nodes = graph.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
            let start = nodes
                .iter()
                .find(|n| n.get("data").and_then(|d| d.get("type")).and_then(Value::as_str) == Some("start"));
            if let Some(vars) = start.and_then(|s| s.get("data")).and_then(|d| d.get("variables")) {
                spec.form = parse_start_variables(vars);
            }
            spec.features = wf.get("features").map(features_from).unwrap_or(Value::Object(Map::new()));
            spec.workflow = Some(wf.clone());
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "app:\r\n  mode: chat\r\n  name: Echo\r\nmodel_config:\r\n  model:\r\n    provider: builtin\r\n    name: echo\r\n  pre_prompt: Hi {{name}}\r\n  opening_statement: Hello\r\n  user_input_form:\r\n  - text-input: {variable: name, label: Name, required: true}\r\n";

    #[test]
    fn parses_a_chat_app_with_crlf_and_no_version() {
        let spec = parse_dsl(CHAT).unwrap();
        assert_eq!(spec.mode, AppMode::Chat);
        assert_eq!(spec.name, "Echo");
        let mc = spec.model_config.unwrap();
        assert_eq!((mc.model.provider.as_str(), mc.model.name.as_str()), ("builtin", "echo"));
        assert_eq!(mc.pre_prompt, "Hi {{name}}");
        assert_eq!(spec.form.len(), 1);
        assert_eq!(spec.features["opening_statement"], "Hello");
    }

    #[test]
    fn refuses_what_cannot_be_an_app() {
        assert!(matches!(parse_dsl("- a\n- b\n"), Err(DslError::Invalid(_))));
        assert!(matches!(parse_dsl("app: {mode: nonsense}"), Err(DslError::Invalid(_))));
        assert!(matches!(parse_dsl("app: {mode: chat}"), Err(DslError::Invalid(_))));
        assert!(matches!(parse_dsl("version: 0.1\napp: {mode: chat}"), Err(DslError::Invalid(_))));
        assert!(matches!(parse_dsl("app: [unclosed"), Err(DslError::Yaml(_))));
        assert!(parse_dsl("").is_err());
    }

    #[test]
    fn numeric_and_boolean_keys_stay_strings() {
        let doc = "app: {mode: workflow}\nworkflow:\n  graph:\n    nodes:\n    - id: '1'\n      data: {type: start, variables: []}\n    edges: []\n  features: {}\n  extra:\n    1754405559643: x\n    true: y\n";
        let spec = parse_dsl(doc).unwrap();
        let extra = &spec.workflow.unwrap()["extra"];
        assert_eq!(extra["1754405559643"], "x");
        assert_eq!(extra["true"], "y");
    }
}
