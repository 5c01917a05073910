//! An in-memory [`Store`] with the crash semantics of redb, and fault injection.
//!
//! A commit is applied under one lock, all or nothing, so a simulated crash (dropping the node
//! while keeping a clone of the store) leaves exactly the committed batches: committed = kept,
//! uncommitted = gone, as redb guarantees on disk. Clones share the same data.
//!
//! [`MemStore::fail_commit`] makes a chosen commit fail without writing anything, to test that a
//! node stops rather than serve state that may have diverged.

use crate::kv::{Batch, Entry, Store, StoreError, Table};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

#[derive(Default, Debug)]
struct Inner {
    tables: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    commits: u64,
    fail_at: Option<u64>,
}

/// An in-memory store. Cheap to clone; clones share data.
#[derive(Clone, Default, Debug)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch (see commit), so the
        // data behind a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the `n`-th commit from now (1 = the next one) fail without writing anything.
    pub fn fail_commit(&self, n: u64) {
        let mut inner = self.lock();
        inner.fail_at = Some(inner.commits + n);
    }

    /// Number of successful commits so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// A deep copy that no longer shares data with `self`.
    pub fn snapshot(&self) -> Self {
        let inner = self.lock();
        Self {
            inner: Arc::new(Mutex::new(Inner {
                tables: inner.tables.clone(),
                commits: inner.commits,
                fail_at: None,
            })),
        }
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().tables.get(&(table, key.to_vec())).cloned())
    }

    fn last_in(&self, table: Table, lo: &[u8], hi: &[u8]) -> Result<Option<Entry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .tables
            .range((table, lo.to_vec())..=(table, hi.to_vec()))
            .next_back()
            .map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn scan(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .tables
            .range((table, from.to_vec())..)
            .take_while(|((t, _), _)| *t == table)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let n = inner.commits + 1;
        if inner.fail_at == Some(n) {
            inner.fail_at = None;
            return Err(StoreError::Injected(n));
        }
        for (table, key, value) in batch.into_ops() {
            match value {
                Some(v) => inner.tables.insert((table, key), v),
                None => inner.tables.remove(&(table, key)),
            };
        }
        inner.commits = n;
        Ok(())
    }
}
