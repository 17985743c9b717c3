//! sled backend (0.34): one default tree holds the whole keyspace, so every
//! commit is a single atomic `apply_batch`. sled's own periodic flush is
//! disabled; durability comes only from [`Backend::sync`], which the writer
//! calls for group commit.

use std::path::Path;

use super::{Backend, Op, Pairs};
use crate::error::Result;

pub struct SledBackend {
    db: sled::Db,
}

impl SledBackend {
    /// Opens (or creates) the sled database in `dir`.
    ///
    /// The caller holds the data directory's own lock, so a sled lock conflict
    /// can only be this process's previous handle whose I/O threads are still
    /// finishing: that is retried for a moment.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .flush_every_ms(None)
                .mode(sled::Mode::HighThroughput)
                .open();
            match opened {
                Ok(db) => return Ok(SledBackend { db }),
                Err(e) if attempts < 100 && e.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
        let iter = match end {
            Some(e) => self.db.range(start..e),
            None => self.db.range(start..),
        };
        let mut out = Vec::new();
        if reverse {
            for item in iter.rev().take(limit) {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
            }
        } else {
            for item in iter.take(limit) {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
