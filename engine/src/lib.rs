//! ferrify-engine: the domain.
//!
//! - [`annotation`]: annotations and annotation reply;
//! - [`audio`]: text-to-speech, speech-to-text and auto-played answers;
//! - [`engine`]: the [`Engine`] handle (store + shared services);
//! - [`event`]: the facts ferrify records ([`Event`] in an [`Envelope`]);
//! - [`files`]: uploads, previews, request files and their bytes;
//! - [`feedback`]: ratings of messages;
//! - [`json`]: arbitrary JSON carried inside binary events;
//! - [`limits`]: run admission (concurrent runs overall and per key) and run-wide limits;
//! - [`model`]: read-model rows;
//! - [`moderation`]: the `sensitive_word_avoidance` feature (keywords, OpenAI moderation);
//! - [`suggested`]: follow-up questions after an answer;
//! - [`projection`]: pure folds of events into read models, one module each;
//! - [`recovery`]: closing the runs a crash interrupted.
//! - [`reexec`]: deterministic re-execution of a recorded run and its diff.

pub mod annotation;
pub mod app;
pub mod app_cache;
pub mod apps;
pub mod audio;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod feedback;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod ids;
pub mod json;
pub mod limits;
pub mod model;
pub mod moderation;
pub mod projection;
pub mod provider;
pub mod recovery;
pub mod reexec;
pub mod resume;
pub mod runner;
pub mod runs;
pub mod suggested;
mod tasks;
pub mod wire;
pub mod workflow;

pub use engine::{Engine, EngineConfig, StorageConfig};
pub use error::{EngineError, Result};
pub use event::{Envelope, Event};
pub use json::Json;
