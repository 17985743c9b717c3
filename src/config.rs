//! The command line and configuration: flags > environment (`FERRIFY_*`) >
//! `ferrify.toml` > defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferrify_engine::files::FileSettings;
use ferrify_engine::limits::RunLimits;
use ferrify_engine::provider::audio::{AudioConfig, AudioProvider};
use ferrify_engine::provider::{ProviderConfig, Providers};
use ferrify_engine::workflow::WorkflowSettings;
use ferrify_engine::{EngineConfig, StorageConfig};
use ferrify_store::blob::s3::S3Options;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(name = "ferrify", version, about = "A self-hosted, event-sourced server for the Dify Service API")]
pub struct Cli {
    /// Configuration file (default: ./ferrify.toml when it exists).
    #[arg(long, global = true, env = "FERRIFY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Rebuild every read model from the log.
    Rebuild(DataArgs),
    /// Print a past run's stream, or re-execute it and diff (the server must not be running on the
    /// same data directory).
    Replay(ReplayArgs),
    /// Manage apps offline (the server must not be running on the same data directory).
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Import a Dify DSL file; prints the import result as JSON.
    Import {
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List apps as JSON.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// API keys of an app.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key; prints it as JSON (the only time the token is shown).
    Create {
        app_id: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// `ferrify replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The run's task id (omit with `--app APP_ID --all`).
    pub task_id: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output: the stream as served (`sse`), one JSON frame per line (`json`), or a table of
    /// nodes (`timeline`).
    #[arg(long, value_enum, default_value = "sse")]
    pub format: FormatArg,
    /// Replay in time with the recorded timestamps: 1 is real time, 2 twice as fast.
    #[arg(long, allow_negative_numbers = true)]
    pub speed: Option<f64>,
    /// Run the same app version again on the recorded inputs (models and HTTP answered from the
    /// log) and diff the new stream against the recorded one; exits non-zero on a divergence.
    #[arg(long)]
    pub reexecute: bool,
    /// With `--all --reexecute`: every run of this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Every run of `--app`.
    #[arg(long)]
    pub all: bool,
    /// With `--reexecute`: run this workflow version of the app instead of the run's own, to see
    /// what it changes.
    #[arg(long, value_name = "WORKFLOW_ID")]
    pub workflow_id: Option<String>,
}

/// `ferrify replay --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Sse,
    Json,
    Timeline,
}

impl From<FormatArg> for ferrify_replay::transcript::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Sse => Self::Sse,
            FormatArg::Json => Self::Json,
            FormatArg::Timeline => Self::Timeline,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Data directory [default: ./ferrify-data].
    #[arg(long, env = "FERRIFY_DATA")]
    pub data: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5001].
    #[arg(long, env = "FERRIFY_ADDR")]
    pub addr: Option<SocketAddr>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Keep everything in memory (nothing is written to disk).
    #[arg(long, env = "FERRIFY_EPHEMERAL")]
    pub ephemeral: bool,
    /// Longest time, in milliseconds, a non-durable event waits for its fsync [default: 10].
    #[arg(long, env = "FERRIFY_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Admin token of the console API (without one the console API is closed).
    #[arg(long, env = "FERRIFY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Run every app on this model, e.g. `builtin/echo`.
    #[arg(long, env = "FERRIFY_MODEL_OVERRIDE")]
    pub model_override: Option<String>,
    /// Do not create the demo apps on an empty data directory.
    #[arg(long)]
    pub no_demo: bool,
    /// Let http-request nodes and remote files reach private, loopback and
    /// link-local addresses [default: false; `[security] allow_private_network`].
    #[arg(
        long,
        env = "FERRIFY_ALLOW_PRIVATE_NETWORK",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_private_network: Option<bool>,
    /// Where uploaded files are kept: `local` (default) or `s3` [`[storage] kind`].
    #[arg(long, env = "FERRIFY_STORAGE", value_name = "KIND")]
    pub storage: Option<String>,
    /// The S3 bucket [`[storage] bucket`].
    #[arg(long, env = "FERRIFY_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The S3-compatible service's URL; AWS when absent [`[storage] endpoint`].
    #[arg(long, env = "FERRIFY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Upload extensions to refuse, comma separated (`exe,bat`) [`[files] extension_blacklist`].
    #[arg(long, env = "FERRIFY_UPLOAD_EXTENSION_BLACKLIST", value_delimiter = ',')]
    pub upload_extension_blacklist: Option<Vec<String>>,
    /// The `[providers.NAME]` serving text-to-speech and speech-to-text [`[audio] provider`].
    #[arg(long, env = "FERRIFY_AUDIO_PROVIDER", value_name = "NAME")]
    pub audio_provider: Option<String>,
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*` for any
    /// [default: none, no CORS headers; `[cors] allowed_origins`].
    #[arg(long, env = "FERRIFY_CORS_ORIGINS", value_delimiter = ',', value_name = "ORIGIN")]
    pub cors_origins: Option<Vec<String>>,
}

/// `[storage]` in `ferrify.toml`: where uploaded files' bytes live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `local` (default) or `s3`.
    pub kind: Option<String>,
    /// Local: the directory (default `files/` in the data directory).
    pub path: Option<PathBuf>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Keys are stored under this prefix.
    pub prefix: Option<String>,
    /// Address buckets as `bucket.host`.
    pub virtual_hosted_style: Option<bool>,
    /// Environment variables holding the credentials (default `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
}

/// `[files]` in `ferrify.toml`: upload limits (MB) and policies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    pub image_limit_mb: Option<u64>,
    pub video_limit_mb: Option<u64>,
    pub audio_limit_mb: Option<u64>,
    /// Documents and everything else.
    pub file_limit_mb: Option<u64>,
    /// Extensions refused at upload (`["exe", "bat"]`).
    pub extension_blacklist: Option<Vec<String>>,
    /// Seconds to wait for a remote file's headers when a request names one.
    pub remote_timeout_secs: Option<u64>,
    /// Prefix of the file URLs handed out (`https://ferrify.example.com`).
    pub public_url: Option<String>,
    /// Environment variable holding the key that signs file links [default:
    /// FERRIFY_SECRET_KEY]; unset: a key made on first start, kept in the data directory.
    pub secret_key_env: Option<String>,
    /// Seconds a signed file link stays good [default: 300].
    pub access_timeout_secs: Option<u64>,
}

/// `[limits]` in `ferrify.toml`, and the same settings as flags and `FERRIFY_*` variables.
/// Every error a limit causes names its key (`limits.max_body_bytes`…).
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Limits")]
pub struct LimitsConfig {
    /// Largest JSON request body in bytes [default: 15728640].
    #[arg(long, env = "FERRIFY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Largest request head (request line and headers) in bytes, at least 8192 [default: 16384].
    #[arg(long, env = "FERRIFY_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Seconds a client may take to send a request body [default: 30].
    #[arg(long, env = "FERRIFY_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds a connection may wait for the head of its next request [default: 60].
    #[arg(long, env = "FERRIFY_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Runs in flight at once, all apps together; 0: unlimited [default: 1024].
    #[arg(long, env = "FERRIFY_MAX_CONCURRENT_RUNS")]
    pub max_concurrent_runs: Option<usize>,
    /// Runs in flight at once per API key; 0: unlimited [default: 128].
    #[arg(long, env = "FERRIFY_MAX_CONCURRENT_RUNS_PER_KEY")]
    pub max_concurrent_runs_per_key: Option<usize>,
    /// Requests per second per API key (token bucket); 0: unlimited [default: 0].
    #[arg(long, env = "FERRIFY_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<f64>,
    /// Requests an API key may send at once before the rate applies [default: the rate, at least 1].
    #[arg(long, env = "FERRIFY_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Wall time of one run in seconds; a run still going is stopped [default: 1200].
    #[arg(long, env = "FERRIFY_MAX_RUN_SECONDS")]
    pub max_run_seconds: Option<u64>,
    /// Seconds a run the log refused holds its slot and conversation while it closes itself [default: 30].
    #[arg(long, env = "FERRIFY_REFUSED_RUN_HOLD_SECONDS")]
    pub refused_run_hold_seconds: Option<u64>,
    /// Node executions per workflow run [default: 500].
    #[arg(long, env = "FERRIFY_MAX_WORKFLOW_STEPS")]
    pub max_workflow_steps: Option<u64>,
    /// Elements an iteration node may iterate over [default: 1000].
    #[arg(long, env = "FERRIFY_MAX_ITERATION_ITEMS")]
    pub max_iteration_items: Option<usize>,
}

impl LimitsConfig {
    /// Flags and environment (`self`) over the file (`file`).
    fn or(&self, file: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes),
            max_header_bytes: self.max_header_bytes.or(file.max_header_bytes),
            request_timeout_secs: self.request_timeout_secs.or(file.request_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            max_concurrent_runs: self.max_concurrent_runs.or(file.max_concurrent_runs),
            max_concurrent_runs_per_key: self.max_concurrent_runs_per_key.or(file.max_concurrent_runs_per_key),
            rate_limit_per_second: self.rate_limit_per_second.or(file.rate_limit_per_second),
            rate_limit_burst: self.rate_limit_burst.or(file.rate_limit_burst),
            max_run_seconds: self.max_run_seconds.or(file.max_run_seconds),
            refused_run_hold_seconds: self.refused_run_hold_seconds.or(file.refused_run_hold_seconds),
            max_workflow_steps: self.max_workflow_steps.or(file.max_workflow_steps),
            max_iteration_items: self.max_iteration_items.or(file.max_iteration_items),
        }
    }

    fn positive(name: &str, v: Option<u64>) -> anyhow::Result<Option<u64>> {
        match v {
            Some(0) => anyhow::bail!("limits.{name} must be at least 1"),
            other => Ok(other),
        }
    }

    /// The HTTP edge's limits, defaults filled in.
    pub fn http(&self) -> anyhow::Result<ferrify_http::limits::Limits> {
        let d = ferrify_http::limits::Limits::default();
        let max_header_bytes = self.max_header_bytes.unwrap_or(d.max_header_bytes);
        if max_header_bytes < 8192 {
            anyhow::bail!("limits.max_header_bytes must be at least 8192");
        }
        let rate_limit = match self.rate_limit_per_second {
            None => None,
            Some(0.0) => None,
            Some(r) if !(r.is_finite() && r > 0.0) => anyhow::bail!("limits.rate_limit_per_second must be positive"),
            Some(r) => {
                let burst = self.rate_limit_burst.map(f64::from).unwrap_or(r.ceil()).max(1.0);
                Some(ferrify_http::limits::Rate { per_second: r, burst })
            }
        };
        Ok(ferrify_http::limits::Limits {
            max_body_bytes: Self::positive("max_body_bytes", self.max_body_bytes)?.unwrap_or(d.max_body_bytes),
            max_header_bytes,
            request_timeout: Self::positive("request_timeout_secs", self.request_timeout_secs)?
                .map(Duration::from_secs)
                .unwrap_or(d.request_timeout),
            idle_timeout: Self::positive("idle_timeout_secs", self.idle_timeout_secs)?
                .map(Duration::from_secs)
                .unwrap_or(d.idle_timeout),
            rate_limit,
        })
    }

    /// The engine's run limits, defaults filled in.
    pub fn runs(&self) -> anyhow::Result<RunLimits> {
        let d = RunLimits::default();
        Ok(RunLimits {
            max_concurrent_runs: self.max_concurrent_runs.unwrap_or(d.max_concurrent_runs),
            max_concurrent_runs_per_key: self.max_concurrent_runs_per_key.unwrap_or(d.max_concurrent_runs_per_key),
            max_run_time: Self::positive("max_run_seconds", self.max_run_seconds)?
                .map(Duration::from_secs)
                .unwrap_or(d.max_run_time),
            refused_run_hold: self.refused_run_hold_seconds.map(Duration::from_secs).unwrap_or(d.refused_run_hold),
        })
    }
}

/// `[cors]` in `ferrify.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call from a browser (`*` for any); empty: no CORS.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `[security]` in `ferrify.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Whether workflow nodes may reach private networks (default false).
    pub allow_private_network: Option<bool>,
}

/// `[code]` in `ferrify.toml`: how workflow `code` nodes run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeConfig {
    /// A dify-sandbox endpoint; both languages run there when set.
    pub sandbox_url: Option<String>,
    /// The environment variable holding the sandbox's API key.
    pub sandbox_key_env: Option<String>,
    /// The Python interpreter (`python3` on PATH by default).
    pub python: Option<String>,
}

/// `ferrify.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub flush_interval_ms: Option<u64>,
    pub admin_token: Option<String>,
    pub model_override: Option<String>,
    #[serde(default)]
    pub providers: HashMap<String, ProviderConfig>,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub code: CodeConfig,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub files: FilesSection,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub cors: CorsConfig,
    /// Text-to-speech and speech-to-text (`provider` names a `[providers.NAME]`).
    #[serde(default)]
    pub audio: AudioConfig,
}

impl FileConfig {
    /// Reads the configuration file: the given path (must exist) or `./ferrify.toml` (may not).
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("ferrify.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn data_dir(&self, args: &DataArgs) -> PathBuf {
        args.data.clone().or_else(|| self.data.clone()).unwrap_or_else(|| PathBuf::from("./ferrify-data"))
    }

    /// Every limit: flags and environment over the file, over the defaults.
    pub fn limits(&self, serve: Option<&ServeArgs>) -> LimitsConfig {
        match serve {
            Some(s) => s.limits.or(&self.limits),
            None => self.limits.clone(),
        }
    }

    /// The allowed CORS origins (flags and environment over the file).
    pub fn cors_origins(&self, serve: &ServeArgs) -> Vec<String> {
        let origins = serve.cors_origins.clone().unwrap_or_else(|| self.cors.allowed_origins.clone());
        origins.into_iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect()
    }

    /// The engine configuration for `serve` (or offline commands when `serve` is None).
    #[allow(clippy::needless_update)] // workflow settings added later keep their defaults
    pub fn engine(&self, data: &DataArgs, serve: Option<&ServeArgs>) -> anyhow::Result<EngineConfig> {
        let override_text = serve.and_then(|s| s.model_override.clone()).or_else(|| self.model_override.clone());
        let model_override = match override_text {
            Some(text) => {
                let (p, m) = text
                    .split_once('/')
                    .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                    .with_context(|| format!("--model-override must be PROVIDER/MODEL, got {text:?}"))?;
                Some((p.to_string(), m.to_string()))
            }
            None => None,
        };
        let providers = Providers::new(&self.providers, model_override).map_err(anyhow::Error::msg)?;
        let ephemeral = serve.is_some_and(|s| s.ephemeral);
        let allow_private_network =
            serve.and_then(|s| s.allow_private_network).or(self.security.allow_private_network).unwrap_or(false);
        let limits = self.limits(serve);
        let defaults = WorkflowSettings::default();
        Ok(EngineConfig {
            limits: limits.runs()?,
            data_dir: (!ephemeral).then(|| self.data_dir(data)),
            flush_interval: Duration::from_millis(
                serve.and_then(|s| s.flush_interval_ms).or(self.flush_interval_ms).unwrap_or(10),
            ),
            providers,
            workflow: WorkflowSettings {
                allow_private_network,
                code_sandbox_url: self.code.sandbox_url.clone().filter(|u| !u.trim().is_empty()),
                code_sandbox_key: self.code.sandbox_key_env.as_ref().and_then(|v| std::env::var(v).ok()),
                python: self.code.python.clone(),
                max_steps: LimitsConfig::positive("max_workflow_steps", limits.max_workflow_steps)?
                    .unwrap_or(defaults.max_steps),
                max_iteration_items: limits.max_iteration_items.unwrap_or(defaults.max_iteration_items),
                ..defaults
            },
            files: self.files(serve),
            storage: self.storage(serve)?,
            audio: self.audio(serve)?,
        })
    }

    /// The audio provider: `[audio] provider` (or `--audio-provider`) names a `[providers.NAME]`.
    fn audio(&self, serve: Option<&ServeArgs>) -> anyhow::Result<Option<AudioProvider>> {
        let name = serve.and_then(|s| s.audio_provider.clone()).or_else(|| self.audio.provider.clone());
        let Some(name) = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else { return Ok(None) };
        let provider = self
            .providers
            .get(&name)
            .with_context(|| format!("[audio] provider {name:?} names no [providers.{name}] section"))?;
        AudioProvider::from_config(&self.audio, &name, provider).map(Some).map_err(anyhow::Error::msg)
    }

    fn files(&self, serve: Option<&ServeArgs>) -> FileSettings {
        let f = &self.files;
        let d = FileSettings::default();
        let mb = |v: Option<u64>, default: u64| v.map(|m| m * 1024 * 1024).unwrap_or(default);
        let blacklist =
            serve.and_then(|s| s.upload_extension_blacklist.clone()).or_else(|| f.extension_blacklist.clone());
        FileSettings {
            image_limit: mb(f.image_limit_mb, d.image_limit),
            video_limit: mb(f.video_limit_mb, d.video_limit),
            audio_limit: mb(f.audio_limit_mb, d.audio_limit),
            file_limit: mb(f.file_limit_mb, d.file_limit),
            extension_blacklist: blacklist
                .unwrap_or_default()
                .iter()
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
            remote_timeout: f.remote_timeout_secs.map(Duration::from_secs).unwrap_or(d.remote_timeout),
            public_url: f.public_url.clone().unwrap_or_default(),
            secret_key: std::env::var(f.secret_key_env.as_deref().unwrap_or("FERRIFY_SECRET_KEY"))
                .ok()
                .filter(|k| !k.trim().is_empty()),
            access_timeout: f.access_timeout_secs.map(Duration::from_secs).unwrap_or(d.access_timeout),
        }
    }

    fn storage(&self, serve: Option<&ServeArgs>) -> anyhow::Result<StorageConfig> {
        let s = &self.storage;
        let kind = serve.and_then(|a| a.storage.clone()).or_else(|| s.kind.clone()).unwrap_or_else(|| "local".into());
        match kind.trim() {
            "local" => Ok(s.path.clone().map(StorageConfig::LocalDir).unwrap_or(StorageConfig::Local)),
            "s3" => {
                let env = |name: &Option<String>, default: &str| std::env::var(name.as_deref().unwrap_or(default)).ok();
                let bucket = serve
                    .and_then(|a| a.s3_bucket.clone())
                    .or_else(|| s.bucket.clone())
                    .filter(|b| !b.trim().is_empty())
                    .context("[storage] kind = \"s3\" needs a bucket (`bucket` or --s3-bucket)")?;
                Ok(StorageConfig::S3(S3Options {
                    bucket,
                    endpoint: serve.and_then(|a| a.s3_endpoint.clone()).or_else(|| s.endpoint.clone()),
                    region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: env(&s.access_key_id_env, "AWS_ACCESS_KEY_ID"),
                    secret_access_key: env(&s.secret_access_key_env, "AWS_SECRET_ACCESS_KEY"),
                    session_token: env(&s.session_token_env, "AWS_SESSION_TOKEN"),
                    prefix: s.prefix.clone().unwrap_or_default(),
                    virtual_hosted_style: s.virtual_hosted_style.unwrap_or(false),
                }))
            }
            other => anyhow::bail!("unknown storage kind {other:?} (local or s3)"),
        }
    }
}
