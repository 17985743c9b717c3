//! Routes, one module per endpoint group, mirroring the URL paths.

pub mod health;
pub mod metrics;
