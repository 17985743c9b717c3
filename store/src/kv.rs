//! Read-model trees and the projector hook.
//!
//! A [`Projector`] turns records into key-value updates of read models. The
//! writer calls every projector for every record it appends, inside the same
//! atomic batch (read-your-writes: once an append is acknowledged, the read
//! models reflect it). A projector sees its own pending writes, and those of
//! earlier records of the same group commit, through [`KvTxn`].
//!
//! Projectors must be deterministic functions of (current read models, record):
//! no clock, no randomness, no I/O besides the `KvTxn`. That is what makes
//! `rebuild` produce the same trees as incremental application.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::backend::{Backend, Pairs};
use crate::codec;
use crate::error::{Error, Result};
use crate::keys;
use crate::record::Record;

/// A pure function from records to read-model updates.
pub trait Projector: Send + Sync + 'static {
    /// A stable name; its applied position is stored under it.
    fn name(&self) -> &str;
    /// Applies one record. Returning an error refuses the whole append that
    /// carries the record (nothing of it is written).
    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()>;
}

/// Pending writes, by full key; `None` is a deletion.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A view of the read models with pending writes layered on top.
pub struct KvTxn<'a> {
    backend: &'a dyn Backend,
    group: &'a Overlay,
    local: Overlay,
    /// One decoded value per record, shared by the projectors of that record.
    memo: Option<(u64, Arc<dyn Any + Send + Sync>)>,
}

impl<'a> KvTxn<'a> {
    pub(crate) fn new(backend: &'a dyn Backend, group: &'a Overlay) -> Self {
        KvTxn { backend, group, local: Overlay::new(), memo: None }
    }

    /// Decodes a record's payload once for all projectors: the first caller
    /// for `position` runs `decode`, later callers get the same value.
    pub fn memo<T: Any + Send + Sync>(&mut self, position: u64, decode: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        if let Some((p, value)) = &self.memo {
            if *p == position {
                if let Ok(v) = value.clone().downcast::<T>() {
                    return Ok(v);
                }
            }
        }
        let value = Arc::new(decode()?);
        self.memo = Some((position, value.clone()));
        Ok(value)
    }

    /// Presets the memo of the record at `position` with its appender's decoded value.
    pub(crate) fn preset_memo(&mut self, position: u64, value: Arc<dyn Any + Send + Sync>) {
        self.memo = Some((position, value));
    }

    pub(crate) fn into_writes(self) -> Overlay {
        self.local
    }

    /// The value of `key` in `tree`.
    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let full = keys::kv(tree, key);
        if let Some(v) = self.local.get(&full) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(&full) {
            return Ok(v.clone());
        }
        self.backend.get(&full)
    }

    pub fn put(&mut self, tree: &str, key: &[u8], value: Vec<u8>) {
        self.local.insert(keys::kv(tree, key), Some(value));
    }

    pub fn delete(&mut self, tree: &str, key: &[u8]) {
        self.local.insert(keys::kv(tree, key), None);
    }

    /// Reads a read-model value, JSON or compact (see [`put_row`](Self::put_row)).
    pub fn get_json<T: DeserializeOwned>(&self, tree: &str, key: &[u8]) -> Result<Option<T>> {
        match self.get(tree, key)? {
            Some(bytes) => Ok(Some(codec::from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a JSON read-model value.
    pub fn put_json<T: Serialize>(&mut self, tree: &str, key: &[u8], value: &T) -> Result<()> {
        let bytes = codec::to_json(value)?;
        self.put(tree, key, bytes);
        Ok(())
    }

    /// Writes a read-model value in the compact binary form (see
    /// [`codec::to_row`]); [`get_json`](Self::get_json) reads either form.
    pub fn put_row<T: Serialize>(&mut self, tree: &str, key: &[u8], value: &T) -> Result<()> {
        let bytes = codec::to_row(value)?;
        self.put(tree, key, bytes);
        Ok(())
    }

    /// Every `(key, value)` of `tree` whose key starts with `prefix`, in key
    /// order, with pending writes applied. Keys are returned without the tree prefix.
    pub fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Result<Pairs> {
        let start = keys::kv(tree, prefix);
        let end = keys::prefix_end(&start);
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .backend
            .scan(&start, end.as_deref(), usize::MAX, false)?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for layer in [self.group, &self.local] {
            let upper = match &end {
                Some(e) => Bound::Excluded(e.clone()),
                None => Bound::Unbounded,
            };
            for (k, v) in layer.range((Bound::Included(start.clone()), upper)) {
                merged.insert(k.clone(), v.clone());
            }
        }
        let skip = keys::kv_prefix(tree).len();
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k[skip..].to_vec(), v))).collect())
    }
}

/// Turns a projector's refusal into an error naming where it happened.
pub(crate) fn projection_error(name: &str, record: &Record, e: Error) -> Error {
    Error::Projection {
        projection: name.to_string(),
        at: crate::error::Location { stream: Some(record.stream.to_string()), position: Some(record.position) },
        reason: e.to_string(),
    }
}
