//! In-memory backend: a `BTreeMap` behind a read-write lock. Ephemeral mode and tests.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Backend, Op, Pairs};
use crate::error::Result;

#[derive(Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
        let map = self.map.read();
        let upper = match end {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let range = map.range::<[u8], _>((Bound::Included(start), upper));
        let pairs = if reverse {
            range.rev().take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            range.take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Ok(pairs)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let mut map = self.map.write();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn volatile(&self) -> bool {
        true
    }
}
