//! The `ferrify` binary: parses the command line and hands over to the crates.

mod config;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, ServeArgs};
use ferrify_engine::{Engine, EngineConfig};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,warp=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Rebuild { data } => ferrify_replay::rebuild::rebuild(&data, true)
            .map(|r| eprintln!("rebuilt read models from {} events in {:.2?}", r.records, r.elapsed))
            .with_context(|| format!("rebuilding {}", data.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = EngineConfig {
        data_dir: (!args.ephemeral).then(|| args.data.clone()),
        flush_interval: Duration::from_millis(args.flush_interval_ms),
    };
    let engine =
        Engine::open(&config).with_context(|| format!("opening the data directory {}", args.data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
        tracing::info!(addr = %args.addr, data = %args.data.display(), "ferrify is listening");
        ferrify_http::serve(listener, ferrify_http::State::new(engine.clone()), shutdown_signal()).await;
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
