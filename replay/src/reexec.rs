//! `ferrify replay TASK_ID --reexecute` and `ferrify replay --app APP_ID
//! --all --reexecute`: deterministic re-execution of recorded runs and the
//! diff of their streams against the recorded ones.
//!
//! The work is the engine's ([`ferrify_engine::reexec`]): the run's app
//! version runs again on a scratch in-memory engine, its models and outside
//! requests answered from the log, and the two streams are compared with ids
//! and clocks normalised. This module opens the data directory (the server
//! must not be running on it: sled locks it), writes nothing to it, and
//! prints the result.

use std::path::PathBuf;

use ferrify_engine::reexec::{describe, Divergence, ReexecError, ReexecOptions, Reexecution};
use ferrify_engine::{Engine, EngineConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use uuid::Uuid;

/// How long closing waits for the runs a re-execution started to end.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why re-execution could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("re-execution reads a data directory; this configuration keeps everything in memory")]
    NoDataDir,
    #[error("no ferrify data directory at {0}")]
    MissingDataDir(PathBuf),
    #[error("opening the data directory {0}: {1}")]
    Open(PathBuf, ferrify_store::Error),
    #[error("app {0} not found")]
    UnknownApp(Uuid),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Reexec(#[from] ReexecError),
    #[error(transparent)]
    Store(#[from] ferrify_store::Error),
}

/// What re-executing every run of an app gave, run by run (oldest first).
#[derive(Debug, Default)]
pub struct AppReport {
    pub runs: Vec<(Uuid, Result<Reexecution, ReexecError>)>,
}

impl AppReport {
    pub fn identical(&self) -> usize {
        self.runs.iter().filter(|(_, r)| r.as_ref().is_ok_and(Reexecution::identical)).count()
    }

    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|(_, r)| r.as_ref().is_ok_and(|r| !r.identical())).count()
    }

    pub fn failed(&self) -> usize {
        self.runs.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// `N runs, M identical, K diverged, E failed`.
    pub fn summary(&self) -> String {
        format!(
            "{} runs, {} identical, {} diverged, {} failed",
            self.runs.len(),
            self.identical(),
            self.diverged(),
            self.failed()
        )
    }
}

/// Opens the data directory of `config` (which must exist) and a runtime.
fn open(config: &EngineConfig) -> Result<(Engine, tokio::runtime::Runtime), Error> {
    let dir = config.data_dir.clone().ok_or(Error::NoDataDir)?;
    // Opening creates a missing directory: re-execution must not.
    if !dir.join("db").is_dir() {
        return Err(Error::MissingDataDir(dir));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
    let engine = Engine::open(config).map_err(|e| Error::Open(dir, e))?;
    Ok((engine, runtime))
}

/// Re-executes run `task` of the data directory in `config`.
pub fn reexecute_task(config: &EngineConfig, task: Uuid, options: &ReexecOptions) -> Result<Reexecution, Error> {
    let (engine, runtime) = open(config)?;
    let result = runtime.block_on(async {
        let result = engine.reexecute(task, options).await;
        engine.shutdown(SHUTDOWN_GRACE).await.map(|()| result)
    })?;
    Ok(result?)
}

/// Called after each run of [`reexecute_app`]: runs done, runs in all, the run, its result.
pub type OnRun<'a> = dyn FnMut(usize, usize, &Uuid, &Result<Reexecution, ReexecError>) + 'a;

/// Re-executes every run of app `app`, oldest first, calling `progress` after each.
pub fn reexecute_app(
    config: &EngineConfig,
    app: Uuid,
    options: &ReexecOptions,
    progress: &mut OnRun<'_>,
) -> Result<AppReport, Error> {
    let (engine, runtime) = open(config)?;
    let result = runtime.block_on(async {
        let tasks = engine.app_run_tasks(app)?;
        let known = engine.list_apps().map_err(|e| match e {
            ferrify_engine::EngineError::Store(s) => Error::Store(s),
            other => Error::Reexec(ReexecError::from(other)),
        })?;
        if tasks.is_empty() && !known.iter().any(|a| a.id == app) {
            return Err(Error::UnknownApp(app));
        }
        // One scratch engine for all of them: their runs are distinct streams.
        let scratch = engine.scratch()?;
        let mut report = AppReport::default();
        for (i, task) in tasks.iter().enumerate() {
            let r = engine.reexecute_on(&scratch, *task, options).await;
            progress(i + 1, tasks.len(), task, &r);
            report.runs.push((*task, r));
        }
        scratch.shutdown(SHUTDOWN_GRACE).await?;
        Ok(report)
    });
    runtime.block_on(engine.shutdown(SHUTDOWN_GRACE))?;
    result
}

/// The human-readable account of a divergence: where, the differing values, both frames.
pub fn render_divergence(d: &Divergence) -> String {
    let mut out = format!("first divergence at {}\n", describe(d));
    if let Some((a, b)) = &d.field_values {
        out.push_str(&format!("  recorded:    {}\n  re-executed: {}\n", compact(a), compact(b)));
    }
    for (side, frame) in [("recorded frame", &d.recorded), ("re-executed frame", &d.reexecuted)] {
        match frame {
            Some(f) => {
                let text = serde_json::to_string_pretty(f).unwrap_or_else(|_| f.to_string());
                out.push_str(&format!("{side}:\n{}\n", indent(&text)));
            }
            None => out.push_str(&format!("{side}: (none)\n")),
        }
    }
    out
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

fn headline(r: &Reexecution) -> String {
    let version = match (r.recorded_workflow_id, r.workflow_id) {
        (Some(a), Some(b)) if a != b => format!(", version {b} instead of the recorded {a}"),
        (_, Some(b)) => format!(", version {b}"),
        _ => String::new(),
    };
    format!(
        "run {} ({}{version}): {} recorded frames, {} re-executed",
        r.task_id, r.mode, r.frames, r.reexecuted_frames
    )
}

/// Re-executes one run and prints the result; true when it diverged.
pub fn cli_one(config: &EngineConfig, task: Uuid, options: &ReexecOptions) -> anyhow::Result<bool> {
    let r = reexecute_task(config, task, options)?;
    println!("{}", headline(&r));
    match &r.divergence {
        None => {
            println!("identical");
            Ok(false)
        }
        Some(d) => {
            print!("{}", render_divergence(d));
            Ok(true)
        }
    }
}

/// Re-executes every run of an app with a progress bar and prints a summary;
/// true when any diverged (runs that could not be re-executed are an error).
pub fn cli_app(config: &EngineConfig, app: Uuid, options: &ReexecOptions) -> anyhow::Result<bool> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} re-executing [{bar:40}] {pos}/{len} runs ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let b = bar.clone();
    let mut progress = move |done: usize, total: usize, task: &Uuid, r: &Result<Reexecution, ReexecError>| {
        b.set_length(total as u64);
        b.set_position(done as u64);
        match r {
            Ok(r) => {
                if let Some(d) = &r.divergence {
                    b.println(format!("run {task} diverged at {}", describe(d)));
                }
            }
            Err(e) => b.println(format!("run {task} could not be re-executed: {e}")),
        }
    };
    let report = reexecute_app(config, app, options, &mut progress)?;
    bar.finish_and_clear();
    println!("{}", report.summary());
    if report.diverged() == 0 && report.failed() > 0 {
        anyhow::bail!("{} runs could not be re-executed", report.failed());
    }
    Ok(report.diverged() > 0)
}
