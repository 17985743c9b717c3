//! [`Engine`]: the store opened with every projection, plus everything the
//! runners share. Cheap to clone.

use std::path::PathBuf;
use std::time::Duration;

use ferrify_store::{Options, Store};

use crate::projection;

/// Where and how the engine keeps its log.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Data directory of the sled log; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Longest time a non-durable event waits for its fsync.
    pub flush_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { data_dir: Some(PathBuf::from("./ferrify-data")), flush_interval: Duration::from_millis(10) }
    }
}

/// The engine: its store and shared services.
#[derive(Clone)]
pub struct Engine {
    store: Store,
}

impl Engine {
    /// Opens the log (catching read models up with it).
    pub fn open(config: &EngineConfig) -> Result<Engine, ferrify_store::Error> {
        let options = Options { flush_interval: config.flush_interval, ..Options::default() };
        let store = match &config.data_dir {
            Some(dir) => Store::open_sled(dir, projection::all(), options)?,
            None => Store::open_memory(projection::all(), options)?,
        };
        Ok(Engine { store })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Flushes the log and stops its writer.
    pub fn close(&self) -> Result<(), ferrify_store::Error> {
        self.store.close()
    }
}
