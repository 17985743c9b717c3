//! Black-box tests: the real `ferrify` binary on loopback, spoken to over HTTP.

mod common;

// Server skeleton: health, metrics, the data-directory lock, graceful shutdown.
#[path = "server_skeleton.rs"]
mod server;

// Chat and completion apps: import, keys, blocking and streaming, history, isolation, stop.
mod chat;

// Files: uploads, previews, files in chat and workflow requests, feedback.
mod files;

// The openai provider against an OpenAI-compatible upstream on loopback.
mod openai_upstream;

// Audio: text-to-audio, audio-to-text and auto-played answers, against a loopback audio upstream.
mod audio;

// Resumable streams: cut anywhere, resume with Last-Event-ID, byte-identical frames.
mod resume;

// The official Dify Python SDK against the real server.
mod sdk;

// Crash recovery: SIGKILL mid-stream, restart, nothing a client saw is lost.
mod crash;

// Workflow and advanced-chat apps: runs, streams, versions, logs, stop.
mod workflow;

// `ferrify replay`: transcripts of past runs equal their live streams.
mod replay;
// Re-execution of recorded runs: the admin API and `ferrify replay --reexecute`.
mod reexec;

// The fuzz targets' corpora (seeds and found crashes) through the same checks, on stable.
mod fuzz_corpus;

// Moderation (sensitive_word_avoidance): keywords, OpenAI moderation, chatflows, replays.
mod moderation;

// Suggested questions after an answer.
mod suggested;

// Bad input, limits and security: every refusal is Dify's, the server stays up, the log replays.
mod hardening;

// Annotations and annotation reply: CRUD, jobs, turns answered from annotations, embeddings.
mod annotations;
