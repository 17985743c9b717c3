//! The `ferrify` binary: parses the command line and hands over to the crates.

mod config;

/// mimalloc: the writer and the request handlers allocate many small,
/// short-lived buffers from several threads, where it beats glibc's malloc.
/// Its 2.x line (feature `v2`): against 3.x it keeps a quarter less memory per
/// open stream at the same throughput (docs/BENCHMARKS.md, "Concurrent streams").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use config::{AppsCommand, Cli, Command, FileConfig, KeysCommand, ServeArgs};
use ferrify_engine::Engine;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,warp=warn,hyper=warn".into());
    // sled logs at debug and trace from destructors that run while its
    // threads exit, when the formatter's thread-locals are gone (the process
    // would abort): its records are never shown below info.
    let filter = match "sled=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them
/// on its segments, and a 2 MiB page is resident (and zeroed on first touch)
/// as soon as one byte of it is used: with them, 1,000 open streams cost
/// 74-85 KiB each and an idle server 73 MiB; without, 66-67 KiB and 46 MiB,
/// at the same throughput (docs/BENCHMARKS.md, "Concurrent streams"). The
/// setting is inherited by child processes (the Python code runner's).
/// Best effort: a kernel that refuses it leaves the defaults.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE reads its arguments as integers (passed as
    // the `unsigned long`s the kernel expects) and touches no memory of this
    // process.
    unsafe {
        let off: libc::c_ulong = 0;
        libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, off, off, off);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve(&file, *args),
        Command::Rebuild(data) => {
            let dir = file.data_dir(&data);
            let r = ferrify_replay::rebuild::rebuild(&dir, true)
                .with_context(|| format!("rebuilding {}", dir.display()))?;
            eprintln!("rebuilt read models from {} events in {:.2?}", r.records, r.elapsed);
            Ok(())
        }
        Command::Apps { command } => apps(&file, command),
        Command::Replay(args) => replay(&file, args),
    }
}

fn replay(file: &FileConfig, args: config::ReplayArgs) -> anyhow::Result<()> {
    let config = file.engine(&args.data, None)?;
    let dir = file.data_dir(&args.data);
    let task = match &args.task_id {
        Some(t) => Some(uuid::Uuid::parse_str(t.trim()).with_context(|| format!("{t:?} is not a task id"))?),
        None => None,
    };
    if args.reexecute {
        let workflow_id = match &args.workflow_id {
            Some(w) => Some(uuid::Uuid::parse_str(w.trim()).with_context(|| format!("{w:?} is not a workflow id"))?),
            None => None,
        };
        let options = ferrify_engine::reexec::ReexecOptions { workflow_id, ..Default::default() };
        let differ = match (task, &args.app) {
            (Some(task), _) => ferrify_replay::reexec::cli_one(&config, task, &options)
                .with_context(|| format!("re-executing {task} from {}", dir.display()))?,
            (None, Some(app)) if args.all => {
                let app = uuid::Uuid::parse_str(app.trim()).with_context(|| format!("{app:?} is not an app id"))?;
                ferrify_replay::reexec::cli_app(&config, app, &options)
                    .with_context(|| format!("re-executing the runs of app {app} from {}", dir.display()))?
            }
            _ => anyhow::bail!("give a TASK_ID, or --app APP_ID --all"),
        };
        if differ {
            anyhow::bail!("the re-execution diverged from the recorded run");
        }
        return Ok(());
    }
    let task = task.context("give the TASK_ID of the run to replay")?;
    ferrify_replay::transcript::cli(&config, task, args.format.into(), args.speed)
        .with_context(|| format!("replaying {task} from {}", dir.display()))
}

fn open(file: &FileConfig, config: &ferrify_engine::EngineConfig, data: &config::DataArgs) -> anyhow::Result<Engine> {
    Engine::open(config).with_context(|| format!("opening the data directory {}", file.data_dir(data).display()))
}

fn apps(file: &FileConfig, command: AppsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (data, output) = match command {
        AppsCommand::Import { file: path, data } => {
            let yaml = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let engine = open(file, &file.engine(&data, None)?, &data)?;
            let imported = runtime.block_on(engine.import_app(&yaml))?;
            engine.close()?;
            (data, ferrify_http::console::import_json(&imported))
        }
        AppsCommand::List { data } => {
            let engine = open(file, &file.engine(&data, None)?, &data)?;
            let apps = engine.list_apps()?;
            engine.close()?;
            (data, ferrify_http::console::apps_json(&apps))
        }
        AppsCommand::Keys { command: KeysCommand::Create { app_id, data } } => {
            let engine = open(file, &file.engine(&data, None)?, &data)?;
            let id = uuid::Uuid::parse_str(app_id.trim()).with_context(|| format!("{app_id:?} is not an app id"))?;
            let key = runtime.block_on(engine.create_api_key(id))?;
            engine.close()?;
            (data, ferrify_http::console::key_json(&key.row, &key.token))
        }
    };
    let _ = data;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn serve(file: &FileConfig, args: ServeArgs) -> anyhow::Result<()> {
    let config = file.engine(&args.data, Some(&args))?;
    let addr = args.addr.or(file.addr).unwrap_or_else(|| ([127, 0, 0, 1], 5001).into());
    let admin_token = args.admin_token.clone().or_else(|| file.admin_token.clone());
    let http_limits = file.limits(Some(&args)).http()?;
    let engine = open(file, &config, &args.data)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let closed = engine.close_interrupted_runs().await.context("closing interrupted runs")?;
        if closed > 0 {
            tracing::warn!("closed {closed} run(s) interrupted when the server last stopped");
        }
        if !args.no_demo {
            let demos = engine.seed_demo_apps().await.context("creating the demo apps")?;
            if !demos.is_empty() {
                // On stdout, once: the log (stderr) never carries a key.
                println!("Created demo apps on the builtin model (keep these keys, they are shown once):");
                for d in &demos {
                    println!("  {:<16} {:<11} {}", d.name, d.mode, d.token);
                }
                println!(
                    "Try: curl -s http://{addr}/v1/chat-messages -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n       -d '{{\"query\":\"hello\",\"inputs\":{{}},\"user\":\"me\",\"response_mode\":\"blocking\"}}'",
                    demos[0].token
                );
            }
        }
        let listener = ferrify_http::bind(addr).with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "ferrify is listening");
        let state = ferrify_http::State::new(engine.clone(), admin_token)
            .with_limits(http_limits)
            .with_cors(file.cors_origins(&args));
        ferrify_http::serve(listener, state, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    engine.close().context("flushing the log")?;
    tracing::info!("stopped; log flushed");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
