//! The `Store` trait: a few ordered byte tables with atomic, durable batch commits.
//!
//! Two implementations: [`RedbStore`](crate::RedbStore) on disk and [`MemStore`](crate::MemStore)
//! in memory. Both give the same guarantee, which everything above relies on: a batch is either
//! entirely committed (and survives a crash) or not at all. Nothing is ever half-written.

use thiserror::Error;

/// The tables of a bcte data file. Names are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Small metadata: format version, genesis, the last committed height.
    Meta,
    /// Encoded blocks by height (8 bytes, big-endian).
    Blocks,
    /// Height by block hash.
    BlockHashes,
    /// A block's encoded receipts by height.
    Receipts,
    /// `(height, index)` of a transaction by its hash.
    TxIndex,
    /// Finality certificates by height.
    Certificates,
    /// State tree nodes by encoded node key.
    TreeNodes,
    /// State values by `key hash ‖ version`.
    TreeValues,
    /// State key bytes by key hash (the preimages, to list and explain the state).
    Preimages,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Self; 9] = [
        Self::Meta,
        Self::Blocks,
        Self::BlockHashes,
        Self::Receipts,
        Self::TxIndex,
        Self::Certificates,
        Self::TreeNodes,
        Self::TreeValues,
        Self::Preimages,
    ];

    /// The table's position in [`Self::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The table's name in the data file.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Blocks => "blocks",
            Self::BlockHashes => "block_hashes",
            Self::Receipts => "receipts",
            Self::TxIndex => "tx_index",
            Self::Certificates => "certificates",
            Self::TreeNodes => "tree_nodes",
            Self::TreeValues => "tree_values",
            Self::Preimages => "preimages",
        }
    }
}

/// A failure of the storage layer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The underlying database failed (I/O, corruption).
    #[error("storage: {0}")]
    Backend(String),
    /// A test store was told to fail this commit.
    #[error("injected failure of commit {0}")]
    Injected(u64),
    /// Stored bytes do not decode.
    #[error("corrupt {table} entry {key}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key, hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The data directory holds another chain or another format.
    #[error("{0}")]
    Incompatible(String),
}

/// A stored key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write of a batch: a put (`Some`) or a delete (`None`).
pub type Op = (Table, Vec<u8>, Option<Vec<u8>>);

/// Writes to commit together.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), Some(value.into())));
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), None));
    }

    /// The writes, in order (a later write to the same key wins).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Consumes the batch.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A small ordered key-value store with atomic, durable batch commits.
///
/// Reads see only committed data. Callers that read while another thread commits read at
/// explicit versions or heights (which never change once written), so they need no snapshot.
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The entry with the greatest key in `lo..=hi`.
    fn last_in(&self, table: Table, lo: &[u8], hi: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Up to `limit` entries with keys `>= from`, in key order.
    fn scan(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Applies every write of `batch` atomically, and returns only once it is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
}
