//! The off-chain object store: immutable byte objects addressed by a 32-byte content address
//! (for meter batches, their Merkle root: docs/settlement-rules.md, ST-1.5).
//!
//! [`BlobStore`] is the trait the node uses; [`FsBlobStore`] keeps each object as a file in a
//! directory (the node's data directory by default) and [`MemBlobStore`] in memory for tests.
//! An S3-compatible object store implements the same four calls (`PUT`, `GET`, `HEAD`, `LIST`
//! of immutable objects named by their address), which is why the trait is this small: a
//! deployment that outgrows one machine, or wants every node to serve every batch, swaps the
//! implementation without touching the API or the chain.
//!
//! Objects are immutable: putting an address that already holds an object succeeds without
//! writing (the address is the content's, so the bytes are the same, and the caller checked the
//! address before putting). A put is durable when it returns: the object is written to a
//! temporary file, synced, and renamed into place, so a crash leaves either no object or the
//! whole object, never a torn one.

use bcte_types::Hash;
use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
};
use thiserror::Error;

/// A failure of the object store, naming the object or the directory.
#[derive(Debug, Error)]
pub enum BlobError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Immutable objects by content address.
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` at `address` (already checked by the caller to be the content's address).
    fn put(&self, address: &Hash, bytes: &[u8]) -> Result<(), BlobError>;
    /// The object at `address`, if there is one.
    fn get(&self, address: &Hash) -> Result<Option<Vec<u8>>, BlobError>;
    /// Whether there is an object at `address`.
    fn contains(&self, address: &Hash) -> Result<bool, BlobError>;
    /// Every address held, in ascending order.
    fn list(&self) -> Result<Vec<Hash>, BlobError>;
}

/// Objects as files `DIR/ab/abcdef…` (the address in lowercase hex, fanned out by its first
/// byte so no directory holds more than a few thousand files).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
}

impl FsBlobStore {
    /// The store in `dir` (created on the first put).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the object at `address`.
    pub fn path_of(&self, address: &Hash) -> PathBuf {
        let name = hex::encode(address);
        self.dir.join(&name[..2]).join(name)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BlobStore for FsBlobStore {
    fn put(&self, address: &Hash, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path_of(address);
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(io(parent))?;
        // A unique temporary name per writer: two uploads of the same object race harmlessly.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".{}.{}-{}.tmp",
            hex::encode(address),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable once the directory entry is: sync the directory too.
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn get(&self, address: &Hash) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path_of(address);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn contains(&self, address: &Hash) -> Result<bool, BlobError> {
        Ok(self.path_of(address).is_file())
    }

    fn list(&self) -> Result<Vec<Hash>, BlobError> {
        let mut out = Vec::new();
        let top = match fs::read_dir(&self.dir) {
            Ok(top) => top,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for fan in top {
            let fan = fan.map_err(io(&self.dir))?.path();
            if !fan.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&fan).map_err(io(&fan))? {
                let entry = entry.map_err(io(&fan))?;
                let name = entry.file_name();
                // Temporary files start with a dot; anything not named by an address is not
                // an object.
                if let Some(h) = name
                    .to_str()
                    .and_then(|n| bcte_types::ids::parse_hash(n).ok())
                {
                    out.push(h);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Objects in memory (tests, and nodes run without a data directory).
#[derive(Debug, Default)]
pub struct MemBlobStore {
    objects: RwLock<BTreeMap<Hash, Vec<u8>>>,
}

impl BlobStore for MemBlobStore {
    fn put(&self, address: &Hash, bytes: &[u8]) -> Result<(), BlobError> {
        self.objects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(*address)
            .or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn get(&self, address: &Hash) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(address)
            .cloned())
    }

    fn contains(&self, address: &Hash) -> Result<bool, BlobError> {
        Ok(self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(address))
    }

    fn list(&self) -> Result<Vec<Hash>, BlobError> {
        Ok(self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn BlobStore) {
        let a = Hash::from([0xab; 32]);
        let b = Hash::from([0x01; 32]);
        assert_eq!(store.get(&a).unwrap(), None);
        assert!(!store.contains(&a).unwrap());
        store.put(&a, b"first").unwrap();
        store.put(&b, b"second").unwrap();
        // Immutable: a second put of the same address keeps the first object.
        store.put(&a, b"other").unwrap();
        assert_eq!(store.get(&a).unwrap().as_deref(), Some(&b"first"[..]));
        assert!(store.contains(&b).unwrap());
        assert_eq!(store.list().unwrap(), vec![b, a]);
    }

    #[test]
    fn both_stores_keep_immutable_objects_by_address() {
        exercise(&MemBlobStore::default());
        let dir = tempfile::tempdir().unwrap();
        let fs = FsBlobStore::new(dir.path().join("batches"));
        assert_eq!(
            fs.list().unwrap(),
            vec![],
            "a store never written to is empty"
        );
        exercise(&fs);
        // A leftover temporary file (a crash mid-put) is not an object.
        std::fs::write(fs.dir().join("ab").join(".junk.tmp"), b"torn").unwrap();
        assert_eq!(fs.list().unwrap().len(), 2);
        assert!(
            fs.path_of(&Hash::from([0xab; 32]))
                .ends_with(format!("ab/{}", "ab".repeat(32)))
        );
    }
}
