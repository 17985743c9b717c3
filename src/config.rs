//! The command line: flags > environment (`FERRIFY_*`) > defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ferrify", version, about = "A self-hosted, event-sourced server for the Dify Service API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Rebuild every read model from the log.
    Rebuild {
        /// Data directory.
        #[arg(long, env = "FERRIFY_DATA", default_value = "./ferrify-data")]
        data: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FERRIFY_ADDR", default_value = "127.0.0.1:5001")]
    pub addr: SocketAddr,
    /// Data directory (the sled log and read models).
    #[arg(long, env = "FERRIFY_DATA", default_value = "./ferrify-data")]
    pub data: PathBuf,
    /// Keep everything in memory (nothing is written to disk).
    #[arg(long, env = "FERRIFY_EPHEMERAL")]
    pub ephemeral: bool,
    /// Longest time, in milliseconds, a non-durable event waits for its fsync.
    #[arg(long, env = "FERRIFY_FLUSH_INTERVAL_MS", default_value_t = 10)]
    pub flush_interval_ms: u64,
    /// Admin token of the console API (without one the console API is closed).
    #[arg(long, env = "FERRIFY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}
