//! ferrify-engine: the domain.
//!
//! - [`event`]: the facts ferrify records ([`Event`] in an [`Envelope`]);
//! - [`json`]: arbitrary JSON carried inside binary events;
//! - [`model`]: read-model rows;
//! - [`projection`]: pure folds of events into read models, one module each.

pub mod event;
pub mod json;
pub mod model;
pub mod projection;

pub use event::{Envelope, Event};
pub use json::Json;
