//! `bcte verify`: an offline audit of a node's data directory.
//!
//! The audit trusts nothing it reads. It opens a copy of the data file in memory (the node's
//! files are never modified) with redb's integrity check, which verifies the checksum of every
//! page; then it replays the chain from the genesis document:
//! for every block it checks the encoding, the hash index, the link to its parent, every
//! signature, the execution and both roots, the stored receipts and transaction index against
//! the replay, the finality certificate against the genesis validator keys, and the stored state
//! tree (nodes and values) written at that height against the replay. Finally it checks that the
//! data file holds nothing the replay did not produce.
//!
//! The off-chain meter batches in `batches/` are audited against the chain: every accepted
//! head-end batch whose raw data this node holds must parse, say exactly what its transaction
//! says (feeder, interval, each site's energy, and the Merkle root recomputed from the raw
//! readings), and carry every reading signed by the meter registered for its site at the end of
//! the batch's block. A batch held nowhere here is counted as missing, not as damage (it may be
//! stored on another node or an object store); a stored file no transaction names must still be
//! the batch its name says.
//!
//! The first problem found is reported with the block (and transaction) it concerns, or the file
//! it could not read. Nothing in a damaged file makes the audit panic: redb reports damage as
//! an error, our decoders are bounded, and as a last line of defence a panic inside the reading
//! code is caught and reported as damage to the file.

use crate::cert::{self, CertError};
use bcte_ledger::{
    InvalidBlock, MemTree, StateKey, decode_value, exec, market_state::SiteTable,
    settle_state::MeterTable, tree, verify_block,
};
use bcte_store::{
    BlobStore, ChainStore, FsBlobStore, RedbStore, Store, StoreError, Table,
    chain::{node_key_bytes, value_bytes, value_key_bytes},
};
use bcte_types::{
    BlockLimits, ChainId, Hash, Header, Height, Outcome, Payload, batch::RawBatch,
    meter::MeterBatch,
};
use redb::StorageBackend as _;
use std::{
    collections::HashMap,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

/// What an intact data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The chain id.
    pub chain_id: String,
    /// The last block's height.
    pub height: u64,
    /// Transactions replayed.
    pub txs: u64,
    /// Finality certificates checked.
    pub certificates: u64,
    /// The highest block proven final by a certificate (its own or through the hash chain from
    /// a certified descendant); blocks above it are committed but not yet provably final.
    pub proven_final: u64,
    /// Accepted head-end batches whose raw data was checked (root, energies, signatures).
    pub batches_checked: u64,
    /// Accepted head-end batches whose raw data this node does not hold.
    pub batches_missing: u64,
}

/// The first problem the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFailure {
    /// A file could not be read, or is not what it should be.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A block, or data derived from it, is wrong.
    Block {
        /// The block's height.
        height: u64,
        /// The transaction's index in the block, where one is at fault.
        tx: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for AuditFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::Block {
                height,
                tx: None,
                reason,
            } => write!(f, "block {height}: {reason}"),
            Self::Block {
                height,
                tx: Some(i),
                reason,
            } => {
                write!(f, "block {height}, transaction {i}: {reason}")
            }
        }
    }
}

impl std::error::Error for AuditFailure {}

fn block_err(height: u64, reason: impl ToString) -> AuditFailure {
    AuditFailure::Block {
        height,
        tx: None,
        reason: reason.to_string(),
    }
}

/// Audits the data directory at `dir`.
pub fn audit(dir: &Path) -> Result<AuditReport, AuditFailure> {
    let path = dir.join("bcte.redb");
    let bytes = std::fs::read(&path).map_err(|e| AuditFailure::File {
        path: path.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    let file_err = |reason: String| AuditFailure::File {
        path: path.clone(),
        reason,
    };
    // Everything that reads the damaged file runs under catch_unwind: a panic in a dependency's
    // reader is reported as damage, never as a crash of the audit.
    let batches = FsBlobStore::new(dir.join("batches"));
    match catch_unwind(AssertUnwindSafe(|| audit_bytes(&path, bytes, &batches))) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(file_err(format!(
                "the file is damaged (reading it failed: {what})"
            )))
        }
    }
}

fn audit_bytes(
    path: &Path,
    bytes: Vec<u8>,
    batches: &FsBlobStore,
) -> Result<AuditReport, AuditFailure> {
    let file_err = |reason: String| AuditFailure::File {
        path: path.to_path_buf(),
        reason,
    };
    let backend = redb::backends::InMemoryBackend::new();
    backend
        .set_len(bytes.len() as u64)
        .and_then(|()| backend.write(0, &bytes))
        .map_err(|e| file_err(format!("cannot copy into memory: {e}")))?;
    drop(bytes);
    let store = RedbStore::with_backend(backend, path, true)
        .map_err(|e| file_err(format!("the data file is corrupt: {e}")))?;
    let limits = BlockLimits::default();
    let chain = ChainStore::new(store, limits);
    let store_err = |e: StoreError| file_err(e.to_string());

    let genesis = chain.genesis().map_err(store_err)?;
    let g =
        exec::genesis(&genesis).map_err(|e| file_err(format!("stored genesis is invalid: {e}")))?;
    let head = chain
        .height()
        .map_err(store_err)?
        .ok_or_else(|| file_err("no chain head recorded".into()))?;
    let verifier = cert::verifier(&genesis);
    let mut rng = rand::rng();

    let stored_genesis = chain.block(Height(0)).map_err(|e| block_err(0, e))?;
    if stored_genesis.as_ref() != Some(&g.block) {
        return Err(block_err(
            0,
            "the stored genesis block is not the one the genesis document gives",
        ));
    }
    let mut replay = MemTree::new();
    check_tree(&chain, 0, &g.batch)?;
    replay.apply(&g.batch);

    let mut index: HashMap<Hash, (u64, u32, bool)> = HashMap::new();
    let mut parent: Header = *g.block.header();
    let mut report = AuditReport {
        chain_id: genesis.chain_id.to_string(),
        height: head.get(),
        txs: 0,
        certificates: 0,
        proven_final: 0,
        batches_checked: 0,
        batches_missing: 0,
    };
    let mut referenced = std::collections::HashSet::new();
    for h in 1..=head.get() {
        let height = Height(h);
        let block = chain
            .block(height)
            .map_err(|e| block_err(h, e))?
            .ok_or_else(|| block_err(h, "missing"))?;
        if chain
            .height_of(&block.hash())
            .map_err(|e| block_err(h, e))?
            != Some(height)
        {
            return Err(block_err(
                h,
                "the block hash index does not point at this block",
            ));
        }
        let executed = verify_block(&replay, &parent, &block, &genesis.chain_id, &mut rng)
            .map_err(|e| match e {
                InvalidBlock::BadTransaction { index, error } => AuditFailure::Block {
                    height: h,
                    tx: Some(index),
                    reason: error.to_string(),
                },
                other => block_err(h, other),
            })?;
        let stored = chain
            .receipts(height)
            .map_err(|e| block_err(h, format!("receipts unreadable: {e}")))?
            .ok_or_else(|| block_err(h, "receipts missing"))?;
        if stored.len() != executed.execution.receipts.len() {
            return Err(block_err(
                h,
                "stored receipts do not match the transactions",
            ));
        }
        for (i, (s, r)) in stored.iter().zip(&executed.execution.receipts).enumerate() {
            if s != r {
                return Err(AuditFailure::Block {
                    height: h,
                    tx: Some(i),
                    reason: "stored receipt differs from the replay".into(),
                });
            }
        }
        for (i, (tx, r)) in block
            .txs()
            .iter()
            .zip(&executed.execution.receipts)
            .enumerate()
        {
            let accepted = r.outcome == Outcome::Accepted;
            let keep_old = index
                .get(&tx.hash())
                .is_some_and(|(_, _, a)| *a && !accepted);
            if !keep_old {
                index.insert(tx.hash(), (h, i as u32, accepted));
            }
        }
        if let Some(c) = chain.certificate(height).map_err(|e| block_err(h, e))? {
            cert::verify_certificate(&verifier, &c, Some(block.hash()), &mut rng).map_err(
                |e: CertError| block_err(h, format!("finality certificate refused: {e}")),
            )?;
            report.certificates += 1;
            report.proven_final = h;
        }
        check_tree(&chain, h, &executed.batch)?;
        replay.apply(&executed.batch);
        for (i, (tx, r)) in block
            .txs()
            .iter()
            .zip(&executed.execution.receipts)
            .enumerate()
        {
            let Payload::MeterBatch(p) = &tx.body().payload else {
                continue;
            };
            if r.outcome != Outcome::Accepted {
                continue;
            }
            referenced.insert(p.root);
            match check_batch(batches, &replay, height, &genesis.chain_id, p, &mut rng) {
                Ok(true) => report.batches_checked += 1,
                Ok(false) => report.batches_missing += 1,
                Err(reason) => {
                    return Err(AuditFailure::Block {
                        height: h,
                        tx: Some(i),
                        reason,
                    });
                }
            }
        }
        report.txs += block.txs().len() as u64;
        parent = *block.header();
    }

    // The transaction index must say what the replay says, entry for entry.
    for (hash, (h, i, accepted)) in &index {
        let loc = chain
            .tx_location(hash)
            .map_err(|e| block_err(*h, e))?
            .ok_or_else(|| AuditFailure::Block {
                height: *h,
                tx: Some(*i as usize),
                reason: "missing from the transaction index".into(),
            })?;
        if (loc.height.get(), loc.index, loc.accepted) != (*h, *i, *accepted) {
            return Err(AuditFailure::Block {
                height: *h,
                tx: Some(*i as usize),
                reason: "the transaction index points elsewhere".into(),
            });
        }
    }

    // Nothing beyond what the replay produced.
    let expected = [
        (Table::Blocks, head.get() + 1),
        (Table::BlockHashes, head.get() + 1),
        (Table::Receipts, head.get() + 1),
        (Table::TxIndex, index.len() as u64),
        (Table::TreeNodes, replay.node_count() as u64),
        (Table::TreeValues, replay.value_count() as u64),
    ];
    for (table, want) in expected {
        let got = count(chain.inner(), table).map_err(store_err)?;
        if got != want {
            return Err(file_err(format!(
                "table {} holds {got} entries where the replayed chain has {want}",
                table.name()
            )));
        }
    }
    // A stored batch no transaction names must still be the batch its name says.
    let listed = batches.list().map_err(|e| AuditFailure::File {
        path: batches.dir().to_path_buf(),
        reason: e.to_string(),
    })?;
    for root in listed.into_iter().filter(|r| !referenced.contains(r)) {
        let file = batches.path_of(&root);
        let bad = |reason: String| AuditFailure::File {
            path: file.clone(),
            reason,
        };
        let bytes = std::fs::read(&file).map_err(|e| bad(format!("cannot read: {e}")))?;
        let raw = RawBatch::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        if raw.root() != root {
            return Err(bad(format!(
                "the file is named by root {} but its readings give root {}",
                hex::encode(root),
                hex::encode(raw.root())
            )));
        }
    }
    Ok(report)
}

/// Checks one accepted head-end batch against its raw data, if this node holds it: `Ok(false)`
/// when it does not.
fn check_batch(
    batches: &FsBlobStore,
    state: &MemTree,
    height: Height,
    chain_id: &ChainId,
    p: &MeterBatch,
    rng: &mut impl rand::CryptoRng,
) -> Result<bool, String> {
    let root = hex::encode(p.root);
    let Some(bytes) = batches
        .get(&p.root)
        .map_err(|e| format!("batch {root}: {e}"))?
    else {
        return Ok(false);
    };
    let raw = RawBatch::from_bytes(&bytes).map_err(|e| format!("stored batch {root}: {e}"))?;
    if &raw.chain_id != chain_id {
        return Err(format!(
            "stored batch {root} is signed for chain {:?}",
            raw.chain_id.as_str()
        ));
    }
    raw.check_payload(p)
        .map_err(|e| format!("stored batch {root}: {e}"))?;
    raw.verify_signatures(rng)
        .map_err(|e| format!("stored batch {root}: {e}"))?;
    let read = |key: &StateKey| -> Result<Option<Vec<u8>>, String> {
        tree::read_value(state, height, key).map_err(|e| format!("replayed state: {e}"))
    };
    let sites: SiteTable = read(&StateKey::Sites(p.feeder.clone()))?
        .and_then(|b| decode_value(&b))
        .unwrap_or_default();
    let meters: MeterTable = read(&StateKey::Meters(p.feeder.clone()))?
        .and_then(|b| decode_value(&b))
        .unwrap_or_default();
    let index: HashMap<&bcte_types::SiteId, u32> = sites
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i as u32))
        .collect();
    for (i, r) in raw.readings.iter().enumerate() {
        let meter = index
            .get(&r.site)
            .and_then(|&ix| meters.get(ix))
            .map(|m| m.meter);
        if meter != Some(r.meter) {
            return Err(format!(
                "stored batch {root}: reading {i} (site {:?}) is signed by {}, not by the site's \
                 registered meter ({})",
                r.site.as_str(),
                r.meter,
                meter.map_or("none".to_owned(), |m| m.to_string())
            ));
        }
    }
    Ok(true)
}

/// Checks that the store holds exactly the tree nodes and values the replay produced at `h`.
fn check_tree<S: Store>(
    chain: &ChainStore<S>,
    h: u64,
    batch: &jmt::storage::NodeBatch,
) -> Result<(), AuditFailure> {
    let store = chain.inner();
    for (key, node) in batch.nodes() {
        let want = borsh::to_vec(node).expect("serializing into a Vec cannot fail");
        let got = store
            .get(Table::TreeNodes, &node_key_bytes(key))
            .map_err(|e| block_err(h, e))?;
        if got.as_deref() != Some(want.as_slice()) {
            return Err(block_err(
                h,
                "a stored state tree node differs from the replay",
            ));
        }
    }
    for ((version, key), value) in batch.values() {
        let got = store
            .get(Table::TreeValues, &value_key_bytes(key, *version))
            .map_err(|e| block_err(h, e))?;
        if got.as_deref() != Some(value_bytes(value).as_slice()) {
            let what = chain
                .preimage(key)
                .ok()
                .flatten()
                .map_or_else(|| hex::encode(key.0), |k| k.to_string());
            return Err(block_err(
                h,
                format!("the stored state value of {what} differs from the replay"),
            ));
        }
    }
    Ok(())
}

fn count<S: Store>(store: &S, table: Table) -> Result<u64, StoreError> {
    let mut n = 0u64;
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = store.scan(table, &from, 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        n += page.len() as u64;
        if page.len() < 4096 {
            return Ok(n);
        }
        from = last.clone();
        from.push(0);
    }
}
