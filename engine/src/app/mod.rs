//! The app model: what a Dify DSL file describes, parsed once and cached.
//!
//! - [`dsl`]: YAML → [`AppSpec`] (every mode; chat-style `model_config`, workflow graphs kept as JSON);
//! - [`form`]: `user_input_form` and the validation of request `inputs` (§3.6 of the API spec).

pub mod dsl;
pub mod form;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use dsl::{parse_dsl, DslError};
pub use form::{FormField, FormKind};

/// An app's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppMode {
    #[serde(rename = "chat")]
    Chat,
    #[serde(rename = "completion")]
    Completion,
    #[serde(rename = "agent-chat")]
    AgentChat,
    #[serde(rename = "advanced-chat")]
    AdvancedChat,
    #[serde(rename = "workflow")]
    Workflow,
}

impl AppMode {
    pub fn parse(s: &str) -> Option<AppMode> {
        Some(match s {
            "chat" => AppMode::Chat,
            "completion" => AppMode::Completion,
            "agent-chat" => AppMode::AgentChat,
            "advanced-chat" => AppMode::AdvancedChat,
            "workflow" => AppMode::Workflow,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppMode::Chat => "chat",
            AppMode::Completion => "completion",
            AppMode::AgentChat => "agent-chat",
            AppMode::AdvancedChat => "advanced-chat",
            AppMode::Workflow => "workflow",
        }
    }

    /// Modes that keep conversations (`/chat-messages`, `/conversations`, `/messages`).
    pub fn is_chat_family(self) -> bool {
        matches!(self, AppMode::Chat | AppMode::AgentChat | AppMode::AdvancedChat)
    }
}

/// The model an app calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// As written in the DSL (`openai`, `langgenius/openai/openai`, `builtin`).
    pub provider: String,
    pub name: String,
    /// `chat` or `completion`.
    pub mode: String,
    pub completion_params: Value,
}

/// A chat / completion / agent-chat app's `model_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model: ModelSpec,
    pub pre_prompt: String,
    /// `simple` or `advanced`.
    pub prompt_type: String,
    pub chat_prompt_config: Value,
    pub completion_prompt_config: Value,
    pub dataset_query_variable: String,
    /// The raw section, for `/parameters` and features not modelled here.
    pub raw: Value,
}

/// Everything the API needs to know about an app, parsed from its DSL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub mode: AppMode,
    pub description: String,
    pub icon: String,
    pub icon_type: String,
    pub icon_background: String,
    pub use_icon_as_answer_icon: bool,
    /// `model_config` (chat, completion, agent-chat).
    pub model_config: Option<ModelConfig>,
    /// `workflow` section (workflow, advanced-chat): graph, features, variables, as JSON.
    pub workflow: Option<Value>,
    /// The input form, from `model_config.user_input_form` or the start node.
    pub form: Vec<FormField>,
    /// Front-end features (`opening_statement`, `file_upload`, …) as JSON.
    pub features: Value,
}

impl AppSpec {
    /// A feature object such as `suggested_questions_after_answer`, or `{"enabled": false}`.
    pub fn feature(&self, name: &str) -> Value {
        match self.features.get(name) {
            Some(v) if v.is_object() => v.clone(),
            _ => serde_json::json!({"enabled": false}),
        }
    }

    pub fn feature_enabled(&self, name: &str) -> bool {
        self.features.get(name).and_then(|v| v.get("enabled")).and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn opening_statement(&self) -> String {
        self.features.get("opening_statement").and_then(Value::as_str).unwrap_or("").to_string()
    }
}
