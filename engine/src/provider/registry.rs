//! Which provider serves a DSL's `model.provider`, with what credentials and prices.
//!
//! Configuration (`ferrify.toml`):
//!
//! ```toml
//! [providers.openai]                 # matches `openai` and `langgenius/openai/openai`
//! kind = "openai"                    # any OpenAI-compatible endpoint
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"     # the key is read from the environment
//! timeout_secs = 60
//! max_retries = 2
//! moderation_model = "omni-moderation-latest"   # what `openai_moderation` asks for
//! [providers.openai.prices.gpt-4o-mini]
//! input = "0.15"                     # per `unit` tokens × 1/unit … see ModelPrice
//! output = "0.6"
//! unit = "0.000001"
//! currency = "USD"
//! ```
//!
//! The `builtin` provider is always present.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::openai::OpenAi;
use super::recorded::Recorded;
use super::{builtin::Builtin, ModelProvider, ProviderError};
use crate::event::Usage;

/// Price of a model: `price = tokens × unit price × unit` (Dify's formula),
/// all decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ModelPrice {
    /// Unit price of prompt tokens.
    pub input: String,
    /// Unit price of completion tokens.
    pub output: String,
    /// Token multiplier (`0.001` = prices per 1K tokens, `0.000001` per 1M).
    #[serde(default = "default_unit")]
    pub unit: String,
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_unit() -> String {
    "0.001".into()
}

fn default_currency() -> String {
    "USD".into()
}

/// One `[providers.NAME]` section.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderConfig {
    /// `openai` (OpenAI-compatible) or `builtin`.
    #[serde(default = "default_kind")]
    pub kind: String,
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub prices: HashMap<String, ModelPrice>,
    /// The model `openai_moderation` sends to `{base_url}/moderations`.
    #[serde(default = "default_moderation_model")]
    pub moderation_model: String,
}

fn default_moderation_model() -> String {
    "omni-moderation-latest".into()
}

fn default_kind() -> String {
    "openai".into()
}

fn default_timeout() -> u64 {
    60
}

fn default_retries() -> u32 {
    2
}

struct Entry {
    provider: Arc<dyn ModelProvider>,
    prices: HashMap<String, ModelPrice>,
    moderation_model: String,
}

/// The configured providers.
#[derive(Clone)]
pub struct Providers {
    entries: Arc<HashMap<String, Entry>>,
    /// `--model-override PROVIDER/MODEL`: every app runs on this model.
    model_override: Option<(String, String)>,
    /// Re-execution: every call is answered from a recorded run.
    recorded: Option<Arc<Recorded>>,
}

/// A resolved model: the provider to call, the model name, its price.
#[derive(Clone)]
pub struct ResolvedModel {
    pub provider_name: String,
    pub model: String,
    pub provider: Arc<dyn ModelProvider>,
    pub price: Option<ModelPrice>,
}

impl Providers {
    /// Builds the registry from configuration; `builtin` is always there.
    pub fn new(
        configs: &HashMap<String, ProviderConfig>,
        model_override: Option<(String, String)>,
    ) -> Result<Self, String> {
        let mut entries = HashMap::new();
        entries.insert(
            "builtin".to_string(),
            Entry {
                provider: Arc::new(Builtin) as Arc<dyn ModelProvider>,
                prices: HashMap::new(),
                moderation_model: default_moderation_model(),
            },
        );
        for (name, cfg) in configs {
            let provider: Arc<dyn ModelProvider> = match cfg.kind.as_str() {
                "builtin" => Arc::new(Builtin),
                "openai" | "openai-compatible" | "openai_api_compatible" => Arc::new(OpenAi::from_config(name, cfg)?),
                other => return Err(format!("provider {name}: unknown kind {other:?} (expected openai or builtin)")),
            };
            entries.insert(
                name.clone(),
                Entry { provider, prices: cfg.prices.clone(), moderation_model: cfg.moderation_model.clone() },
            );
        }
        Ok(Providers { entries: Arc::new(entries), model_override, recorded: None })
    }

    /// Only the builtin provider.
    pub fn builtin_only() -> Self {
        Providers::new(&HashMap::new(), None).unwrap_or_else(|_| Providers {
            entries: Arc::new(HashMap::new()),
            model_override: None,
            recorded: None,
        })
    }

    /// The model every app runs on, when one is forced (`--model-override`).
    pub fn model_override(&self) -> Option<&(String, String)> {
        self.model_override.as_ref()
    }

    /// These providers answering from a recorded run: every model resolves to
    /// `recorded` (a model the run did not call resolves as configured, and
    /// then finds no recorded answer), with the run's own model override.
    pub fn replaying(&self, recorded: Arc<Recorded>, model_override: Option<(String, String)>) -> Providers {
        Providers { entries: self.entries.clone(), model_override, recorded: Some(recorded) }
    }

    /// The configured provider `name` (`openai`, `langgenius/openai/openai`)
    /// when it can embed text; `None` otherwise.
    pub fn embedder(&self, name: &str) -> Option<Arc<dyn ModelProvider>> {
        self.entries.get(short_name(name)).map(|e| e.provider.clone()).filter(|p| p.can_embed())
    }

    /// Asks the moderation endpoint of `[providers.NAME]` whether `input` is
    /// flagged. Not redirected by `--model-override` nor by re-execution: a
    /// moderation model is no chat model.
    pub async fn moderate(&self, name: &str, input: &str) -> Result<bool, ProviderError> {
        let entry = self.entries.get(name).ok_or_else(|| {
            ProviderError::NotInitialized(format!(
                "No valid model provider credentials found for moderation. Configure [providers.{name}] in ferrify.toml."
            ))
        })?;
        entry.provider.moderate(&entry.moderation_model, input.to_string()).await
    }

    /// Resolves a DSL `model.provider` (`openai`, `langgenius/openai/openai`) and model name.
    pub fn resolve(&self, provider: &str, model: &str) -> Result<ResolvedModel, ProviderError> {
        let (provider, model) = match &self.model_override {
            Some((p, m)) => (p.as_str(), m.as_str()),
            None => (provider, model),
        };
        let name = short_name(provider);
        if let Some(recorded) = &self.recorded {
            if recorded.knows(name, model) {
                return Ok(ResolvedModel {
                    provider_name: name.to_string(),
                    model: model.to_string(),
                    provider: recorded.clone(),
                    price: recorded.price(name, model),
                });
            }
        }
        let entry = self.entries.get(name).ok_or_else(|| {
            ProviderError::NotInitialized(format!(
                "No valid model provider credentials found for {provider}. Configure [providers.{name}] in ferrify.toml."
            ))
        })?;
        let provider = match &self.recorded {
            Some(recorded) => recorded.clone() as Arc<dyn ModelProvider>,
            None => entry.provider.clone(),
        };
        Ok(ResolvedModel {
            provider_name: name.to_string(),
            model: model.to_string(),
            provider,
            price: entry.prices.get(model).cloned(),
        })
    }
}

/// `langgenius/openai/openai` → `openai`; `openai` → `openai`.
pub fn short_name(provider: &str) -> &str {
    provider.rsplit('/').next().unwrap_or(provider)
}

/// Fills the price fields of `usage` from token counts (Dify's formula,
/// rounded half-up to 7 decimal places). Unknown prices give zeros in USD.
pub fn price_usage(usage: &mut Usage, price: Option<&ModelPrice>) {
    use rust_decimal::prelude::*;
    let parse = |s: &str| Decimal::from_str(s.trim()).unwrap_or(Decimal::ZERO);
    let round = |d: Decimal| d.round_dp_with_strategy(7, RoundingStrategy::MidpointAwayFromZero).normalize();
    match price {
        Some(p) => {
            let unit = parse(&p.unit);
            let prompt = round(Decimal::from(usage.prompt_tokens) * parse(&p.input) * unit);
            let completion = round(Decimal::from(usage.completion_tokens) * parse(&p.output) * unit);
            usage.prompt_unit_price = parse(&p.input).normalize().to_string();
            usage.completion_unit_price = parse(&p.output).normalize().to_string();
            usage.prompt_price_unit = unit.normalize().to_string();
            usage.completion_price_unit = unit.normalize().to_string();
            usage.prompt_price = format!("{:.7}", prompt);
            usage.completion_price = format!("{:.7}", completion);
            usage.total_price = format!("{:.7}", prompt + completion);
            usage.currency = p.currency.clone();
        }
        None => {
            for f in [
                &mut usage.prompt_unit_price,
                &mut usage.completion_unit_price,
                &mut usage.prompt_price,
                &mut usage.completion_price,
                &mut usage.total_price,
            ] {
                *f = "0".into();
            }
            usage.prompt_price_unit = "0".into();
            usage.completion_price_unit = "0".into();
            usage.currency = "USD".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prices() {
        assert_eq!(short_name("langgenius/openai/openai"), "openai");
        assert_eq!(short_name("openai"), "openai");
        let p =
            ModelPrice { input: "0.001".into(), output: "0.002".into(), unit: "0.001".into(), currency: "USD".into() };
        let mut u = Usage { prompt_tokens: 1033, completion_tokens: 128, ..Usage::default() };
        price_usage(&mut u, Some(&p));
        assert_eq!(u.prompt_price, "0.0010330");
        assert_eq!(u.completion_price, "0.0002560");
        assert_eq!(u.total_price, "0.0012890");
        assert_eq!(u.prompt_unit_price, "0.001");
        let mut u = Usage::default();
        price_usage(&mut u, None);
        assert_eq!((u.total_price.as_str(), u.currency.as_str()), ("0", "USD"));
    }

    #[test]
    fn unknown_provider_is_not_initialized() {
        let p = Providers::builtin_only();
        assert!(matches!(p.resolve("langgenius/openai/openai", "gpt-4o"), Err(ProviderError::NotInitialized(_))));
        assert!(p.resolve("builtin", "echo").is_ok());
        let o = Providers::new(&HashMap::new(), Some(("builtin".into(), "echo".into()))).unwrap();
        assert_eq!(o.resolve("openai", "gpt-4o").unwrap().model, "echo");
    }
}
