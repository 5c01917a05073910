//! The on-disk [`Store`]: one redb file, one write transaction per commit.
//!
//! Commits use redb's two-phase commit with immediate durability: `commit` returns only after the
//! data is on disk, and a later open can tell a crash (recovered silently to the last commit)
//! from a file altered outside redb (refused as corrupt) instead of rolling back over damage.

use crate::kv::{Batch, Entry, Store, StoreError, Table};
use redb::{
    Database, Durability, ReadableDatabase, StorageBackend, TableDefinition, backends::FileBackend,
};
use std::path::{Path, PathBuf};

fn def(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A store in one redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the data file at `path` for reading and writing.
    ///
    /// A file left by a crash is recovered to its last commit; a file that is not a redb
    /// database, or that fails redb's checks, is an error that names it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Self::init(db, path)
    }

    /// Opens a store over any redb backend (the audit opens a verified in-memory copy this way).
    pub fn with_backend(
        backend: impl StorageBackend,
        name: impl Into<PathBuf>,
        check_integrity: bool,
    ) -> Result<Self, StoreError> {
        let path = name.into();
        let db = redb::Builder::new()
            .set_check_integrity_on_open(check_integrity)
            .create_with_backend(backend)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        Self::init(db, path)
    }

    fn init(db: Database, path: PathBuf) -> Result<Self, StoreError> {
        let store = Self { db, path };
        // Create every table up front so that readers never meet a missing table.
        let mut txn = store.db.begin_write().map_err(backend)?;
        txn.set_two_phase_commit(true);
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(store)
    }

    /// The path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file backend, for callers that want to open a file themselves.
    pub fn file_backend(path: impl AsRef<Path>) -> Result<FileBackend, StoreError> {
        FileBackend::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path.as_ref())
                .map_err(|e| StoreError::Backend(format!("{}: {e}", path.as_ref().display())))?,
        )
        .map_err(backend)
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(def(table)).map_err(backend)?;
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn last_in(&self, table: Table, lo: &[u8], hi: &[u8]) -> Result<Option<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(def(table)).map_err(backend)?;
        let mut range = t.range(lo..=hi).map_err(backend)?;
        match range.next_back() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(backend)?;
                Ok(Some((k.value().to_vec(), v.value().to_vec())))
            }
        }
    }

    fn scan(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(def(table)).map_err(backend)?;
        let mut out = Vec::new();
        for entry in t.range(from..).map_err(backend)?.take(limit) {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate).map_err(backend)?;
        txn.set_two_phase_commit(true);
        {
            let mut tables: Vec<_> = Vec::with_capacity(Table::ALL.len());
            for table in Table::ALL {
                tables.push(txn.open_table(def(table)).map_err(backend)?);
            }
            for (table, key, value) in batch.ops() {
                let t = &mut tables[table.index()];
                match value {
                    Some(v) => {
                        t.insert(key.as_slice(), v.as_slice()).map_err(backend)?;
                    }
                    None => {
                        t.remove(key.as_slice()).map_err(backend)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }
}
