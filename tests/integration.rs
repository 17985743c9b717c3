//! Black-box tests: the real `ferrify` binary on loopback, spoken to over HTTP.

mod common;

// Server skeleton: health, metrics, the data-directory lock, graceful shutdown.
#[path = "server_skeleton.rs"]
mod server;

// Chat and completion apps: import, keys, blocking and streaming, history, isolation, stop.
mod chat;

// The openai provider against an OpenAI-compatible upstream on loopback.
mod openai_upstream;

// The official Dify Python SDK against the real server.
mod sdk;

// Workflow and advanced-chat apps: runs, streams, versions, logs, stop.
mod workflow;

// Re-execution of recorded runs: the admin API and `ferrify replay --reexecute`.
mod reexec;
