//! The chain's data on a [`Store`]: blocks, receipts, certificates and the state tree.
//!
//! [`ChainStore::commit_block`] writes everything a finalized block produced (the block, its
//! receipts, its transaction index entries, its certificate, the tree nodes and values of its
//! state, and the new head height) in one batch: after a crash a block is either entirely there
//! or entirely absent, and the state always matches the last block.
//!
//! Byte layouts are documented in `docs/encoding.md` (section "Data file").

use crate::kv::{Batch, Store, StoreError, Table};
use bcte_ledger::{GenesisState, StateKey, WriteSet};
use bcte_types::{Block, BlockLimits, Genesis, Hash, Height, Receipt};
use commonware_codec::{Copying, Decode, Encode, EncodeSize, ReadExt, Write, varint::UInt};
use jmt::{
    KeyHash, OwnedValue, Version,
    storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader},
};

/// The data format version written to new data files.
pub const FORMAT_VERSION: u32 = 1;

/// The most receipts a block's receipt list may hold when read back.
const RECEIPTS_MAX: usize = bcte_types::block::BLOCK_TXS_MAX;

const META_FORMAT: &[u8] = b"format";
const META_GENESIS: &[u8] = b"genesis";
const META_HEIGHT: &[u8] = b"height";

/// Where a transaction is: its block's height and its index in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// The block height.
    pub height: Height,
    /// The index in the block.
    pub index: u32,
    /// Whether the transaction was accepted there.
    pub accepted: bool,
}

/// Everything a finalized block adds to the data file.
#[derive(Debug)]
pub struct CommitBlock<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its receipts, one per transaction.
    pub receipts: &'a [Receipt],
    /// The state writes (for key preimages).
    pub writes: &'a WriteSet,
    /// The state tree's new nodes and values.
    pub tree: &'a NodeBatch,
    /// The finality certificate, if known.
    pub certificate: Option<&'a [u8]>,
}

/// A chain's data on a store.
#[derive(Clone, Debug)]
pub struct ChainStore<S> {
    store: S,
    limits: BlockLimits,
}

fn height_key(h: Height) -> [u8; 8] {
    h.get().to_be_bytes()
}

fn corrupt(table: Table, key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table: table.name(),
        key: hex::encode(key),
        reason: reason.to_string(),
    }
}

/// Encodes a tree node key (borsh, as defined by the jmt crate).
pub fn node_key_bytes(key: &NodeKey) -> Vec<u8> {
    borsh::to_vec(key).expect("serializing into a Vec cannot fail")
}

/// Encodes a tree value key: `key hash ‖ version (big-endian)`, so that versions of one key are
/// adjacent and ordered.
pub fn value_key_bytes(key: &KeyHash, version: Version) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&key.0);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
}

/// Encodes a tree value: `0` for a deletion, `1 ‖ bytes` for a value.
pub fn value_bytes(value: &Option<OwnedValue>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

fn encode_receipts(receipts: &[Receipt]) -> Vec<u8> {
    let len = UInt(receipts.len() as u64);
    let size = len.encode_size() + receipts.iter().map(EncodeSize::encode_size).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    len.write(&mut out);
    for r in receipts {
        r.write(&mut out);
    }
    out
}

fn decode_receipts(bytes: &[u8]) -> Result<Vec<Receipt>, commonware_codec::Error> {
    let mut buf = Copying(bytes);
    let n = UInt::<u64>::read(&mut buf)?.0 as usize;
    if n > RECEIPTS_MAX {
        return Err(commonware_codec::Error::InvalidLength(n));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Receipt::read(&mut buf)?);
    }
    if bytes::Buf::has_remaining(&buf) {
        return Err(commonware_codec::Error::ExtraData(bytes::Buf::remaining(
            &buf,
        )));
    }
    Ok(out)
}

impl<S: Store> ChainStore<S> {
    /// Wraps a store; blocks are decoded with `limits`.
    pub const fn new(store: S, limits: BlockLimits) -> Self {
        Self { store, limits }
    }

    /// The underlying store.
    pub const fn inner(&self) -> &S {
        &self.store
    }

    /// Sets up a new data file for `genesis`, or checks that an existing one holds the same
    /// chain. Returns the genesis state (block and writes), computed from the document.
    pub fn init(&self, genesis: &Genesis) -> Result<GenesisState, StoreError> {
        let state = bcte_ledger::genesis(genesis)
            .map_err(|e| StoreError::Incompatible(format!("invalid genesis: {e}")))?;
        let doc = serde_json::to_vec(genesis).expect("a genesis serializes");
        match self.store.get(Table::Meta, META_FORMAT)? {
            Some(v) => {
                let version = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt(Table::Meta, META_FORMAT, "not a u32"))?;
                if version != FORMAT_VERSION {
                    return Err(StoreError::Incompatible(format!(
                        "data format {version} is not supported (this build reads {FORMAT_VERSION})"
                    )));
                }
                let stored = self.genesis()?;
                if stored != *genesis {
                    return Err(StoreError::Incompatible(format!(
                        "the data directory holds chain {:?} with another genesis; refusing to mix chains",
                        stored.chain_id.as_str()
                    )));
                }
                Ok(state)
            }
            None => {
                let mut batch = Batch::new();
                batch.put(Table::Meta, META_FORMAT, FORMAT_VERSION.to_be_bytes());
                batch.put(Table::Meta, META_GENESIS, doc);
                self.add_block(
                    &mut batch,
                    &state.block,
                    &[],
                    &state.writes,
                    &state.batch,
                    None,
                )?;
                self.store.commit(batch)?;
                Ok(state)
            }
        }
    }

    /// The genesis document the data file was created with.
    pub fn genesis(&self) -> Result<Genesis, StoreError> {
        let bytes = self
            .store
            .get(Table::Meta, META_GENESIS)?
            .ok_or_else(|| StoreError::Incompatible("the data file has no genesis".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(Table::Meta, META_GENESIS, e))
    }

    /// The height of the last committed block (0 after genesis), or `None` for an empty store.
    pub fn height(&self) -> Result<Option<Height>, StoreError> {
        match self.store.get(Table::Meta, META_HEIGHT)? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(|b| Some(Height(u64::from_be_bytes(b))))
                .map_err(|_| corrupt(Table::Meta, META_HEIGHT, "not a u64")),
        }
    }

    /// The block at `height`.
    pub fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        let key = height_key(height);
        match self.store.get(Table::Blocks, &key)? {
            None => Ok(None),
            Some(bytes) => Block::decode_cfg(Copying(&bytes), &self.limits)
                .map(Some)
                .map_err(|e| corrupt(Table::Blocks, &key, e)),
        }
    }

    /// The raw bytes of the block at `height`.
    pub fn block_bytes(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Table::Blocks, &height_key(height))
    }

    /// The height of the block with `hash`.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<Height>, StoreError> {
        match self.store.get(Table::BlockHashes, hash.as_ref())? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(|b| Some(Height(u64::from_be_bytes(b))))
                .map_err(|_| corrupt(Table::BlockHashes, hash.as_ref(), "not a height")),
        }
    }

    /// The receipts of the block at `height`.
    pub fn receipts(&self, height: Height) -> Result<Option<Vec<Receipt>>, StoreError> {
        let key = height_key(height);
        match self.store.get(Table::Receipts, &key)? {
            None => Ok(None),
            Some(bytes) => decode_receipts(&bytes)
                .map(Some)
                .map_err(|e| corrupt(Table::Receipts, &key, e)),
        }
    }

    /// Where the transaction with `hash` was included (its accepted inclusion if it has one).
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        match self.store.get(Table::TxIndex, hash.as_ref())? {
            None => Ok(None),
            Some(v) if v.len() == 13 => Ok(Some(TxLocation {
                height: Height(u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))),
                index: u32::from_be_bytes(v[8..12].try_into().expect("4 bytes")),
                accepted: v[12] == 1,
            })),
            Some(_) => Err(corrupt(Table::TxIndex, hash.as_ref(), "bad length")),
        }
    }

    /// The stored finality certificate of the block at `height`.
    pub fn certificate(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Table::Certificates, &height_key(height))
    }

    /// Stores a finality certificate learnt after its block was committed.
    pub fn put_certificate(&self, height: Height, certificate: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(Table::Certificates, height_key(height), certificate);
        self.store.commit(batch)
    }

    /// Commits a finalized block and everything it produced, atomically and durably.
    ///
    /// The block must be the successor of the last committed one.
    pub fn commit_block(&self, c: CommitBlock<'_>) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.add_block(
            &mut batch,
            c.block,
            c.receipts,
            c.writes,
            c.tree,
            c.certificate,
        )?;
        self.store.commit(batch)
    }

    fn add_block(
        &self,
        batch: &mut Batch,
        block: &Block,
        receipts: &[Receipt],
        writes: &WriteSet,
        tree: &NodeBatch,
        certificate: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let height = block.height();
        let hk = height_key(height);
        assert_eq!(
            receipts.len(),
            block.txs().len(),
            "one receipt per transaction"
        );
        batch.put(Table::Blocks, hk, block.encode().to_vec());
        batch.put(Table::BlockHashes, block.hash().as_ref(), hk);
        batch.put(Table::Receipts, hk, encode_receipts(receipts));
        if let Some(cert) = certificate {
            batch.put(Table::Certificates, hk, cert);
        }
        // An accepted inclusion is the one the index keeps; otherwise the latest wins. A
        // transaction can appear more than once only as a rejected replay.
        let mut indexed = std::collections::HashMap::<Hash, bool>::new();
        for (index, (tx, receipt)) in block.txs().iter().zip(receipts).enumerate() {
            let accepted = receipt.outcome.status() == "accepted";
            let old_accepted = match indexed.get(&tx.hash()) {
                Some(a) => *a,
                None => self
                    .tx_location(&tx.hash())?
                    .is_some_and(|old| old.accepted),
            };
            if old_accepted && !accepted {
                continue;
            }
            indexed.insert(tx.hash(), accepted);
            let mut v = Vec::with_capacity(13);
            v.extend_from_slice(&hk);
            v.extend_from_slice(&(index as u32).to_be_bytes());
            v.push(u8::from(accepted));
            batch.put(Table::TxIndex, tx.hash().as_ref(), v);
        }
        for (key, node) in tree.nodes() {
            let node = borsh::to_vec(node).expect("serializing into a Vec cannot fail");
            batch.put(Table::TreeNodes, node_key_bytes(key), node);
        }
        for ((version, key), value) in tree.values() {
            batch.put(
                Table::TreeValues,
                value_key_bytes(key, *version),
                value_bytes(value),
            );
        }
        for key in writes.keys() {
            batch.put(Table::Preimages, key.tree_key().0, key.to_bytes());
        }
        batch.put(Table::Meta, META_HEIGHT, hk);
        Ok(())
    }

    /// The state key whose tree key is `hash`, if it was ever written.
    pub fn preimage(&self, hash: &KeyHash) -> Result<Option<StateKey>, StoreError> {
        match self.store.get(Table::Preimages, &hash.0)? {
            None => Ok(None),
            Some(v) => StateKey::from_bytes(&v)
                .map(Some)
                .map_err(|e| corrupt(Table::Preimages, &hash.0, e)),
        }
    }
}

impl<S: Store> TreeReader for ChainStore<S> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = node_key_bytes(node_key);
        match self.store.get(Table::TreeNodes, &key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(
                borsh::from_slice(&bytes).map_err(|e| corrupt(Table::TreeNodes, &key, e))?,
            )),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let lo = value_key_bytes(&key_hash, 0);
        let hi = value_key_bytes(&key_hash, max_version);
        match self.store.last_in(Table::TreeValues, &lo, &hi)? {
            None => Ok(None),
            Some((k, v)) => match v.split_first() {
                Some((0, [])) => Ok(None),
                Some((1, value)) => Ok(Some(value.to_vec())),
                _ => Err(corrupt(Table::TreeValues, &k, "bad value tag").into()),
            },
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported")
    }
}
