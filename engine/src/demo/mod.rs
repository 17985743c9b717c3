//! Demo apps created on the first start of an empty data directory, so a
//! newcomer can `curl` at once. They run on the builtin provider.

use crate::engine::Engine;
use crate::error::Result;

/// `(file name, DSL)` of every demo app.
pub const DEMO_APPS: &[(&str, &str)] = &[
    ("chat-echo.yml", include_str!("chat-echo.yml")),
    ("chat-lorem.yml", include_str!("chat-lorem.yml")),
    ("completion-echo.yml", include_str!("completion-echo.yml")),
    ("workflow-greet.yml", include_str!("workflow-greet.yml")),
    ("chatflow-echo.yml", include_str!("chatflow-echo.yml")),
];

/// A demo app that was created, with its API key.
#[derive(Clone, Debug)]
pub struct DemoApp {
    pub name: String,
    pub mode: String,
    pub app_id: String,
    pub token: String,
}

impl Engine {
    /// Creates the demo apps (and a key for each) when no app exists yet.
    pub async fn seed_demo_apps(&self) -> Result<Vec<DemoApp>> {
        if !self.list_apps()?.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (_, dsl) in DEMO_APPS {
            let imported = self.import_app(dsl).await?;
            let key = self.create_api_key(imported.app_id).await?;
            let name = self.app(imported.app_id)?.map(|a| a.spec.name.clone()).unwrap_or_default();
            out.push(DemoApp {
                name,
                mode: imported.mode.as_str().into(),
                app_id: imported.app_id.to_string(),
                token: key.token,
            });
        }
        Ok(out)
    }
}
