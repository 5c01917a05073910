//! Speculative execution of proposed blocks, and durable commit of finalized ones.
//!
//! Consensus asks a validator to build or verify a block before its parent is final (the parent
//! may only be notarized). The executor therefore keeps, for every block it executed but that is
//! not yet finalized, the block's state changes as a [`Layer`] over the committed state. A block
//! is executed on its parent's state: the committed tree seen through the layers of its pending
//! ancestors ([`Overlay`]). Nothing speculative ever reaches the store.
//!
//! On finalization the executor commits the block's cached result (or executes it now, when it
//! arrives by catch-up without having been verified here) in one durable store batch, then moves
//! the committed tip and drops the pending blocks that can no longer be finalized. The caller
//! acknowledges the block to the consensus engine only after [`Executor::finalize`] returns:
//! a finalized block is acknowledged only once its state is durable.
//!
//! Invariants: the committed tip only moves to a child of itself; a pending block's parent is the
//! tip or another pending block; every pending layer is keyed by the block hash it came from.

use crate::market_metrics::Stopwatch;
use bcte_ledger::{
    AccountState, BlockInfo, Executed, Execution, InvalidBlock, Layer, Overlay, StateKey,
    TreeError, exec::decode_account, tree,
};
use bcte_store::{ChainStore, CommitBlock, Store, StoreError};
use bcte_types::{Block, ChainId, ConsensusContext, Hash, Header, Height, Tx};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};
use thiserror::Error;
use tokio::sync::watch;

/// A block executed on its parent's state and not yet finalized.
#[derive(Debug)]
pub struct Pending {
    /// The block.
    pub block: Arc<Block>,
    /// Its state changes.
    pub layer: Arc<Layer>,
    /// Its writes and receipts.
    pub execution: Execution,
    /// This node's wall time for each piece of its end-of-block market work, in the order of
    /// `execution.market` ([`crate::market_metrics::Stopwatch`]).
    pub market_laps: Vec<std::time::Duration>,
}

/// The last committed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    /// Its height.
    pub height: Height,
    /// Its hash.
    pub hash: Hash,
    /// Its header.
    pub header: Header,
}

/// Why a block could not be executed.
#[derive(Debug, Error)]
pub enum ExecuteError {
    /// The parent is neither the committed tip nor a pending block: execute the ancestors first.
    #[error("parent {0} is not known yet")]
    UnknownParent(String),
    /// The block conflicts with the committed chain (its branch can never be finalized).
    #[error("block conflicts with the committed chain")]
    Stale,
    /// The block is invalid.
    #[error("invalid block: {0}")]
    Invalid(#[from] InvalidBlock),
}

/// A failure that must stop the node: the store failed, or the finalized chain contradicts
/// what this node committed.
#[derive(Debug, Error)]
pub enum FatalError {
    /// The store failed; the node may no longer serve its state.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A finalized block does not execute to its header's roots.
    #[error("finalized block {height} is invalid here: {error}")]
    InvalidFinalized {
        /// Its height.
        height: Height,
        /// What failed.
        error: InvalidBlock,
    },
    /// A finalized block is not the child of the committed tip.
    #[error(
        "finalized block {height} ({hash}) does not extend the committed tip {tip_height} ({tip_hash})"
    )]
    Discontinuity {
        /// Its height.
        height: Height,
        /// Its hash.
        hash: String,
        /// The committed tip's height.
        tip_height: Height,
        /// The committed tip's hash.
        tip_hash: String,
    },
}

/// What [`Executor::finalize`] did.
#[derive(Debug)]
pub enum Finalized {
    /// The block was already committed (a redelivery after restart).
    AlreadyCommitted,
    /// The block is now committed.
    Committed(Arc<Pending>),
}

struct State {
    tip: Tip,
    pending: HashMap<Hash, Arc<Pending>>,
}

/// Speculative execution over a chain store.
pub struct Executor<S: Store> {
    store: ChainStore<S>,
    chain_id: ChainId,
    state: Mutex<State>,
    tip_tx: watch::Sender<Tip>,
}

impl<S: Store> Executor<S> {
    /// An executor whose committed tip is the store's last block.
    pub fn new(store: ChainStore<S>, chain_id: ChainId) -> Result<Self, StoreError> {
        let height = store
            .height()?
            .ok_or_else(|| StoreError::Incompatible("the store has no genesis".into()))?;
        let block = store.block(height)?.ok_or_else(|| StoreError::Corrupt {
            table: "blocks",
            key: height.to_string(),
            reason: "the head block is missing".into(),
        })?;
        let tip = Tip {
            height,
            hash: block.hash(),
            header: *block.header(),
        };
        let (tip_tx, _) = watch::channel(tip);
        Ok(Self {
            store,
            chain_id,
            state: Mutex::new(State {
                tip,
                pending: HashMap::new(),
            }),
            tip_tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chain store.
    pub const fn store(&self) -> &ChainStore<S> {
        &self.store
    }

    /// The chain id.
    pub const fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The committed tip.
    pub fn tip(&self) -> Tip {
        self.lock().tip
    }

    /// A receiver that sees every new committed tip.
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip_tx.subscribe()
    }

    /// The pending block with `hash`, if any.
    pub fn pending(&self, hash: &Hash) -> Option<Arc<Pending>> {
        self.lock().pending.get(hash).cloned()
    }

    /// Number of pending blocks.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether `hash` is the committed tip or a pending block (its state is known).
    pub fn knows(&self, hash: &Hash) -> bool {
        let st = self.lock();
        st.tip.hash == *hash || st.pending.contains_key(hash)
    }

    /// The parent's header and the layers of its pending ancestry (newest first), if its state
    /// is known.
    fn base_of(&self, parent: &Hash) -> Option<(Header, Vec<Arc<Layer>>)> {
        let st = self.lock();
        if *parent == st.tip.hash {
            return Some((st.tip.header, Vec::new()));
        }
        let first = st.pending.get(parent)?;
        let header = *first.block.header();
        let mut layers = vec![first.layer.clone()];
        let mut cursor = first.block.parent();
        while cursor != st.tip.hash {
            let p = st.pending.get(&cursor)?;
            layers.push(p.layer.clone());
            cursor = p.block.parent();
        }
        Some((header, layers))
    }

    /// The account state after block `parent`: `Ok(None)` if `parent` is not known here. A
    /// failing store or a corrupt value is an error, never an empty account.
    pub fn account_at(
        &self,
        parent: &Hash,
        id: &bcte_types::AccountId,
    ) -> Result<Option<AccountState>, TreeError> {
        let Some((header, layers)) = self.base_of(parent) else {
            return Ok(None);
        };
        let overlay = Overlay::new(&self.store, &layers);
        let key = StateKey::Account(*id);
        match tree::read_value(&overlay, header.height, &key)? {
            None => Ok(Some(AccountState::default())),
            Some(b) => decode_account(&b)
                .map(Some)
                .ok_or_else(|| TreeError(format!("stored value of {key} is corrupt"))),
        }
    }

    /// The market clock at the committed tip (real time if the chain has none).
    pub fn market_clock(&self) -> Result<bcte_ledger::MarketClock, TreeError> {
        let tip = self.tip();
        match tree::read_value(&self.store, tip.height, &StateKey::MarketClock)? {
            None => Ok(bcte_ledger::MarketClock::REAL_TIME),
            Some(b) => bcte_ledger::decode_value(&b)
                .ok_or_else(|| TreeError("the stored market clock is corrupt".into())),
        }
    }

    /// When the next gate closes after block `parent`, as a block timestamp (ms): a proposer
    /// building on `parent` must not wait for transactions past it. `Ok(None)` if no feeder
    /// is registered or `parent` is not known here.
    pub fn next_gate_block_ms(&self, parent: &Hash) -> Result<Option<u64>, TreeError> {
        let Some((header, layers)) = self.base_of(parent) else {
            return Ok(None);
        };
        let overlay = Overlay::new(&self.store, &layers);
        bcte_ledger::market::next_gate_block_ms(&overlay, header.height)
    }

    /// Builds a block of `txs` on `parent`: executes them and fills in the roots. The block is
    /// kept as pending (it is valid by construction) and returned.
    pub fn build(
        &self,
        parent: &Hash,
        timestamp_ms: u64,
        context: ConsensusContext,
        txs: Vec<Tx>,
    ) -> Result<Arc<Pending>, ExecuteError> {
        let (parent_header, layers) = self
            .base_of(parent)
            .ok_or_else(|| ExecuteError::UnknownParent(hex::encode(parent)))?;
        let info = BlockInfo {
            height: parent_header
                .height
                .next()
                .expect("heights do not reach u64::MAX"),
            timestamp_ms: timestamp_ms.max(parent_header.timestamp_ms + 1),
            parent: *parent,
        };
        let overlay = Overlay::new(&self.store, &layers);
        let mut watch = Stopwatch::default();
        let executed = bcte_ledger::exec::run_probed(&overlay, info, &txs, &mut watch)
            .map_err(InvalidBlock::from)?;
        let header = Header {
            parent: *parent,
            height: info.height,
            timestamp_ms: info.timestamp_ms,
            context,
            tx_root: Hash::from([0; 32]),
            state_root: executed.state_root,
            receipts_root: executed.receipts_root,
        };
        let block = Block::new(header, txs);
        Ok(self.insert(block, executed, watch.laps))
    }

    /// Fully verifies `block` on its parent's state (link, signatures, execution, roots) and
    /// keeps it as pending. A block already executed here is not executed again.
    /// `already_checked(tx)` says that this exact transaction's signature was checked before
    /// (see [`bcte_ledger::exec::verify_block_with`]).
    pub fn verify(
        &self,
        block: Arc<Block>,
        rng: &mut impl rand_core::CryptoRng,
        already_checked: impl Fn(&Tx) -> bool,
    ) -> Result<Arc<Pending>, ExecuteError> {
        if let Some(p) = self.pending(&block.hash()) {
            return Ok(p);
        }
        let parent = block.parent();
        let (parent_header, layers) = match self.base_of(&parent) {
            Some(b) => b,
            None => {
                let tip = self.tip();
                if block.height() <= tip.height {
                    return Err(ExecuteError::Stale);
                }
                return Err(ExecuteError::UnknownParent(hex::encode(parent)));
            }
        };
        let overlay = Overlay::new(&self.store, &layers);
        let mut watch = Stopwatch::default();
        let executed = bcte_ledger::exec::verify_block_with(
            &overlay,
            &parent_header,
            &block,
            &self.chain_id,
            rng,
            already_checked,
            &mut watch,
        )?;
        Ok(self.insert_arc(block, executed, watch.laps))
    }

    fn insert(
        &self,
        block: Block,
        executed: Executed,
        market_laps: Vec<std::time::Duration>,
    ) -> Arc<Pending> {
        self.insert_arc(Arc::new(block), executed, market_laps)
    }

    fn insert_arc(
        &self,
        block: Arc<Block>,
        executed: Executed,
        market_laps: Vec<std::time::Duration>,
    ) -> Arc<Pending> {
        let hash = block.hash();
        let layer = Arc::new(Layer::new(block.height(), executed.batch));
        let pending = Arc::new(Pending {
            block,
            layer,
            execution: executed.execution,
            market_laps,
        });
        let mut st = self.lock();
        // A block at or below the tip can no longer be finalized: do not keep it.
        if pending.block.height() > st.tip.height {
            st.pending.entry(hash).or_insert_with(|| pending.clone());
        }
        pending
    }

    /// Commits a finalized block durably and moves the tip. `certificate` is its finality
    /// certificate, if it has one of its own. Returns only once the block is durable.
    pub fn finalize(
        &self,
        block: Arc<Block>,
        certificate: Option<&[u8]>,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Finalized, FatalError> {
        let hash = block.hash();
        let tip = self.tip();
        if block.height() <= tip.height {
            let stored = self.store.block(block.height())?.map(|b| b.hash());
            if stored == Some(hash) {
                return Ok(Finalized::AlreadyCommitted);
            }
            return Err(self.discontinuity(&block, tip));
        }
        if block.parent() != tip.hash {
            return Err(self.discontinuity(&block, tip));
        }
        let pending = match self.pending(&hash) {
            Some(p) => p,
            None => match self.verify(block.clone(), rng, |_| false) {
                Ok(p) => p,
                Err(ExecuteError::Invalid(error)) => {
                    return Err(FatalError::InvalidFinalized {
                        height: block.height(),
                        error,
                    });
                }
                Err(e) => unreachable!("the parent of a finalized block is the tip: {e}"),
            },
        };
        self.store.commit_block(CommitBlock {
            block: &pending.block,
            receipts: &pending.execution.receipts,
            writes: &pending.execution.writes,
            tree: pending.layer.batch(),
            certificate,
        })?;
        let new_tip = Tip {
            height: block.height(),
            hash,
            header: *block.header(),
        };
        {
            let mut st = self.lock();
            st.tip = new_tip;
            prune(&mut st);
        }
        self.tip_tx.send_replace(new_tip);
        Ok(Finalized::Committed(pending))
    }

    fn discontinuity(&self, block: &Block, tip: Tip) -> FatalError {
        FatalError::Discontinuity {
            height: block.height(),
            hash: hex::encode(block.hash()),
            tip_height: tip.height,
            tip_hash: hex::encode(tip.hash),
        }
    }
}

/// Drops pending blocks at or below the tip, and those whose ancestry no longer reaches it.
fn prune(st: &mut State) {
    let tip = st.tip;
    st.pending.retain(|_, p| p.block.height() > tip.height);
    let mut alive: HashMap<Hash, bool> = HashMap::new();
    let hashes: Vec<Hash> = st.pending.keys().copied().collect();
    for h in hashes {
        let mut path = Vec::new();
        let mut cursor = h;
        let verdict = loop {
            if cursor == tip.hash {
                break true;
            }
            if let Some(v) = alive.get(&cursor) {
                break *v;
            }
            match st.pending.get(&cursor) {
                Some(p) => {
                    path.push(cursor);
                    cursor = p.block.parent();
                }
                None => break false,
            }
        };
        for p in path {
            alive.insert(p, verdict);
        }
    }
    st.pending
        .retain(|h, _| alive.get(h).copied().unwrap_or(false));
}
