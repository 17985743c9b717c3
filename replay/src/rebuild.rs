//! `ferrify rebuild`: clears every read model and re-applies the whole log,
//! with a progress bar.

use std::path::Path;
use std::time::{Duration, Instant};

use ferrify_engine::{Engine, EngineConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    pub records: u64,
    pub elapsed: Duration,
}

/// Rebuilds the read models of the log in `dir`. `progress` shows a bar on stderr.
pub fn rebuild(dir: &Path, progress: bool) -> Result<Rebuilt, ferrify_store::Error> {
    let engine = Engine::open(&EngineConfig { data_dir: Some(dir.to_path_buf()), ..EngineConfig::default() })?;
    let bar = if progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} rebuilding [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let b = bar.clone();
    let records = engine.store().rebuild(Box::new(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    }))?;
    bar.finish_and_clear();
    engine.close()?;
    Ok(Rebuilt { records, elapsed: started.elapsed() })
}
