//! Durable storage of bcte blocks, receipts and state behind a small Store trait: redb on disk, an in-memory twin for tests.
//!
//! [`Store`] is the trait (ordered byte tables, atomic durable batches); [`RedbStore`] and
//! [`MemStore`] implement it; [`ChainStore`] lays the chain out on top of any of them.

pub mod blobs;
pub mod chain;
pub mod kv;
pub mod mem;
pub mod redb_store;

pub use blobs::{BlobError, BlobStore, FsBlobStore, MemBlobStore};
pub use chain::{ChainStore, CommitBlock, FORMAT_VERSION, TxLocation};
pub use kv::{Batch, Entry, Store, StoreError, Table};
pub use mem::MemStore;
pub use redb_store::RedbStore;
