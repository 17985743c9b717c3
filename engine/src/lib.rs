//! ferrify-engine: the domain.
//!
//! - [`engine`]: the [`Engine`] handle (store + shared services);
//! - [`event`]: the facts ferrify records ([`Event`] in an [`Envelope`]);
//! - [`json`]: arbitrary JSON carried inside binary events;
//! - [`model`]: read-model rows;
//! - [`projection`]: pure folds of events into read models, one module each;
//! - [`reexec`]: deterministic re-execution of a recorded run and its diff.

pub mod app;
pub mod apps;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod history;
pub mod json;
pub mod model;
pub mod projection;
pub mod provider;
pub mod reexec;
pub mod runner;
pub mod runs;
pub mod wire;
pub mod workflow;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use event::{Envelope, Event};
pub use json::Json;
