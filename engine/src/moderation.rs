//! Moderation: the `sensitive_word_avoidance` feature of an app.
//!
//! Owns reading the feature's configuration and deciding whether a run's
//! inputs (form values and query) or its answer are flagged; the runners
//! decide what a flag does (a preset answer without a model call, or a
//! `message_replace` at the end of the answer).
//!
//! ```yaml
//! sensitive_word_avoidance:
//!   enabled: true
//!   type: keywords            # or openai_moderation; `api` is refused
//!   config:
//!     keywords: "foo\nbar"    # one per line, matched case-insensitively
//!     inputs_config: {enabled: true, preset_response: "…"}
//!     outputs_config: {enabled: true, preset_response: "…"}
//! ```
//!
//! `openai_moderation` sends the text to the `/moderations` endpoint of the
//! `[providers.openai]` provider (see [`crate::provider::Providers::moderate`]).

use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::provider::{ProviderError, Providers};

/// The provider `openai_moderation` calls (`[providers.openai]`), as Dify calls its OpenAI provider.
pub const MODERATION_PROVIDER: &str = "openai";

/// How text is checked.
#[derive(Clone, Debug, PartialEq)]
pub enum ModerationKind {
    /// Any of these (non-empty, compared in lower case) appearing in the text.
    Keywords(Vec<String>),
    /// The OpenAI moderation endpoint's `flagged`.
    OpenAi,
}

impl ModerationKind {
    /// The DSL's `type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModerationKind::Keywords(_) => "keywords",
            ModerationKind::OpenAi => "openai_moderation",
        }
    }
}

/// An enabled `sensitive_word_avoidance` feature.
#[derive(Clone, Debug, PartialEq)]
pub struct Moderation {
    pub kind: ModerationKind,
    /// The preset answer when inputs are checked (inputs moderation on).
    pub inputs: Option<String>,
    /// The preset answer replacing a flagged output (outputs moderation on).
    pub outputs: Option<String>,
}

/// Reads `features.sensitive_word_avoidance`: `None` when it is absent or
/// disabled; an error (a sentence for the DSL's author) when it is enabled
/// with a type this server does not run or a broken configuration.
pub fn from_features(features: &Value) -> Result<Option<Moderation>, String> {
    let Some(swa) = features.get("sensitive_word_avoidance") else { return Ok(None) };
    if !swa.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
        return Ok(None);
    }
    let config = swa.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    let kind = match swa.get("type").and_then(Value::as_str).unwrap_or("") {
        "keywords" => {
            let text = match config.get("keywords") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err("sensitive_word_avoidance: keywords moderation needs config.keywords".into()),
            };
            let words: Vec<String> = text.split('\n').filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
            if words.is_empty() {
                return Err("sensitive_word_avoidance: config.keywords is empty".into());
            }
            ModerationKind::Keywords(words)
        }
        "openai_moderation" => ModerationKind::OpenAi,
        "api" => {
            return Err("sensitive_word_avoidance: moderation of type api (an API extension) is not supported by \
                        this server; use keywords or openai_moderation"
                .into())
        }
        other => return Err(format!("sensitive_word_avoidance: unknown moderation type {other:?}")),
    };
    let preset = |key: &str| -> Option<String> {
        let side = config.get(key)?;
        side.get("enabled").and_then(Value::as_bool).filter(|e| *e)?;
        Some(side.get("preset_response").and_then(Value::as_str).unwrap_or("").to_string())
    };
    Ok(Some(Moderation { inputs: preset("inputs_config"), outputs: preset("outputs_config"), kind }))
}

/// [`from_features`] as an engine error (the app cannot run).
pub fn for_run(features: &Value) -> Result<Option<Moderation>> {
    from_features(features).map_err(|m| EngineError::AppUnavailable(format!("App unavailable: {m}")))
}

/// The text of an input value as moderation sees it (strings as they are, anything else as JSON).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Moderation {
    /// Whether `texts` are flagged.
    async fn flagged(&self, providers: &Providers, texts: &[String]) -> Result<bool, ProviderError> {
        match &self.kind {
            ModerationKind::Keywords(words) => Ok(texts.iter().any(|t| {
                let t = t.to_lowercase();
                words.iter().any(|w| t.contains(w.as_str()))
            })),
            ModerationKind::OpenAi => providers.moderate(MODERATION_PROVIDER, &texts.join("\n")).await,
        }
    }

    /// The preset answer when inputs moderation is on and the form values or the query are flagged.
    pub async fn check_inputs(
        &self,
        providers: &Providers,
        inputs: &Map<String, Value>,
        query: &str,
    ) -> Result<Option<String>, ProviderError> {
        let Some(preset) = &self.inputs else { return Ok(None) };
        let mut texts: Vec<String> = inputs.values().map(value_text).collect();
        if !query.is_empty() {
            texts.push(query.to_string());
        }
        Ok(self.flagged(providers, &texts).await?.then(|| preset.clone()))
    }

    /// The preset answer when outputs moderation is on and `answer` is flagged.
    pub async fn check_output(&self, providers: &Providers, answer: &str) -> Result<Option<String>, ProviderError> {
        let Some(preset) = &self.outputs else { return Ok(None) };
        if answer.is_empty() {
            return Ok(None);
        }
        Ok(self.flagged(providers, &[answer.to_string()]).await?.then(|| preset.clone()))
    }
}

impl Moderation {
    /// [`Moderation::check_output`] where a failed check counts as not flagged
    /// (logged), as Dify treats output moderation errors.
    pub async fn output_replacement(&self, providers: &Providers, answer: &str) -> Option<String> {
        match self.check_output(providers, answer).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("output moderation failed, the answer is kept: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn features(swa: Value) -> Value {
        json!({ "sensitive_word_avoidance": swa })
    }

    #[test]
    fn configurations() {
        assert_eq!(from_features(&json!({})), Ok(None));
        assert_eq!(from_features(&features(json!({"enabled": false, "type": "api"}))), Ok(None));
        let m = from_features(&features(json!({"enabled": true, "type": "keywords", "config": {
            "keywords": "Foo\n\nbar",
            "inputs_config": {"enabled": true, "preset_response": "no"},
            "outputs_config": {"enabled": false, "preset_response": "x"},
        }})))
        .unwrap()
        .unwrap();
        assert_eq!(m.kind, ModerationKind::Keywords(vec!["foo".into(), "bar".into()]));
        assert_eq!((m.inputs.as_deref(), m.outputs.as_deref()), (Some("no"), None));
        let api = from_features(&features(json!({"enabled": true, "type": "api", "config": {}})));
        assert!(api.unwrap_err().contains("not supported"));
        assert!(from_features(&features(json!({"enabled": true, "type": "keywords", "config": {}}))).is_err());
        assert!(from_features(&features(json!({"enabled": true, "type": "regex"}))).is_err());
    }

    #[tokio::test]
    async fn keywords_match_inputs_query_and_output_case_insensitively() {
        let m = Moderation {
            kind: ModerationKind::Keywords(vec!["secret".into()]),
            inputs: Some("blocked".into()),
            outputs: Some("hidden".into()),
        };
        let p = Providers::builtin_only();
        let inputs = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            m.check_inputs(&p, &inputs(json!({"a": "fine"})), "a SECRET plan").await.unwrap(),
            Some("blocked".into())
        );
        assert_eq!(m.check_inputs(&p, &inputs(json!({"a": "my Secret"})), "hi").await.unwrap(), Some("blocked".into()));
        assert_eq!(m.check_inputs(&p, &inputs(json!({"n": 3})), "hello").await.unwrap(), None);
        assert_eq!(m.check_output(&p, "the secret is out").await.unwrap(), Some("hidden".into()));
        assert_eq!(m.check_output(&p, "nothing").await.unwrap(), None);
        let off = Moderation { inputs: None, outputs: None, ..m };
        assert_eq!(off.check_inputs(&p, &Map::new(), "secret").await.unwrap(), None);
        assert_eq!(off.check_output(&p, "secret").await.unwrap(), None);
        // openai_moderation without [providers.openai]: provider_not_initialize.
        let openai = Moderation { kind: ModerationKind::OpenAi, inputs: Some("x".into()), outputs: None };
        assert!(matches!(openai.check_inputs(&p, &Map::new(), "hi").await, Err(ProviderError::NotInitialized(_))));
    }
}
