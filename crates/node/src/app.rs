//! The consensus application: build blocks from the mempool, and verify other validators' blocks.
//!
//! Wrapped by marshal's `Deferred`, which fetches blocks and ancestors, checks the embedded
//! consensus context and relays our proposals. This module decides validity, by executing the
//! block on its parent's state (see [`crate::executor`]). `verify` never decides on the local
//! clock: a block stamped too far in the future is not refused, the vote is only delayed until
//! the local clock catches up, which keeps every honest validator's verdict the same.

use crate::{
    chain_block::{ChainBlock, Ctx, context_to_header},
    executor::{ExecuteError, Executor},
    mempool::{AdmitError, Mempool, MempoolLimits},
};
use bcte_ledger::{StateKey, exec::decode_account, tree};
use bcte_store::Store;
use bcte_types::{BlockLimits, Hash, Height, Tx};
use commonware_consensus::{
    Application, Block as _, Heightable, marshal::ancestry::Ancestry, simplex::scheme::ed25519,
};
use commonware_cryptography::{Digested, Digestible};
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner};
use futures::StreamExt;
use rand::CryptoRng;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};
use tokio::sync::Notify;
use tracing::{debug, error, warn};

/// The consensus signing scheme: ed25519 certificates (a list of signatures, attributable).
pub type Scheme = ed25519::Scheme;

/// How the application builds blocks.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams {
    /// How long a proposer with an empty mempool waits for a transaction before proposing an
    /// empty block. Must stay well below the consensus leader timeout.
    pub propose_wait: Duration,
    /// Block limits (transactions and bytes).
    pub limits: BlockLimits,
    /// How far ahead of the local clock a block's timestamp may be before the vote waits.
    pub clock_skew_max: Duration,
}

impl Default for BuildParams {
    fn default() -> Self {
        Self {
            propose_wait: Duration::from_millis(1_000),
            limits: BlockLimits::default(),
            clock_skew_max: Duration::from_secs(2),
        }
    }
}

/// What the application shares with the rest of the node.
pub struct Shared<S: Store> {
    /// Execution and the committed chain.
    pub executor: Arc<Executor<S>>,
    /// Waiting transactions.
    pub mempool: Arc<Mutex<Mempool>>,
    /// Signalled when a transaction enters the mempool.
    pub mempool_notify: Arc<Notify>,
    /// Block building parameters.
    pub params: BuildParams,
}

impl<S: Store> Shared<S> {
    /// A node's state over `executor`, with an empty mempool of the default limits for the
    /// executor's chain.
    pub fn new(executor: Executor<S>, params: BuildParams) -> Self {
        let chain_id = executor.chain_id().clone();
        Self {
            executor: Arc::new(executor),
            mempool: Arc::new(Mutex::new(Mempool::new(chain_id, MempoolLimits::default()))),
            mempool_notify: Arc::new(Notify::new()),
            params,
        }
    }

    /// Admits a transaction to the mempool: signature and chain id first (outside the lock),
    /// then nonce, balance and limits against the committed state. Wakes a waiting proposer.
    pub fn admit(&self, tx: Tx) -> Result<Hash, AdmitError> {
        Mempool::check_signature(self.executor.chain_id(), &tx)?;
        self.admit_checked([Ok(tx)])
            .pop()
            .expect("one result per transaction")
    }

    /// Verifies a block through the executor, checking only the signatures this node has not
    /// already checked: those of transactions waiting in its mempool were checked on admission.
    pub fn verify(
        &self,
        block: Arc<bcte_types::Block>,
        rng: &mut impl CryptoRng,
    ) -> Result<Arc<crate::executor::Pending>, ExecuteError> {
        let checked: std::collections::HashSet<Hash> = {
            let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            block
                .txs()
                .iter()
                .filter(|tx| pool.holds_exactly(tx))
                .map(Tx::hash)
                .collect()
        };
        self.executor
            .verify(block, rng, |tx| checked.contains(&tx.hash()))
    }

    /// Admits many transactions at once, in order: their signatures are checked in one batch
    /// (a failed batch falls back to one-by-one checks, so each refusal names its own cause),
    /// then all are admitted under one lock. Returns one result per transaction.
    ///
    /// Transactions already waiting here are refused as duplicates before any signature work:
    /// gossip sends a transaction again while it waits (see [`crate::gossip`]), and a peer
    /// that already holds it should pay a hash lookup, not a signature check.
    pub fn admit_many(
        &self,
        txs: Vec<Tx>,
        rng: &mut impl CryptoRng,
    ) -> Vec<Result<Hash, AdmitError>> {
        let chain_id = self.executor.chain_id();
        let mut refused: Vec<Option<AdmitError>> = {
            let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            txs.iter()
                .map(|tx| {
                    let hash = tx.hash();
                    pool.contains(&hash)
                        .then(|| AdmitError::Duplicate(hex::encode(hash)))
                })
                .collect()
        };
        let fresh: Vec<Tx> = txs
            .into_iter()
            .zip(&refused)
            .filter_map(|(tx, refusal)| refusal.is_none().then_some(tx))
            .collect();
        let checked: Vec<Result<Tx, AdmitError>> =
            if bcte_types::tx::verify_batch(&fresh, chain_id, rng).is_ok() {
                fresh.into_iter().map(Ok).collect()
            } else {
                fresh
                    .into_iter()
                    .map(|tx| Mempool::check_signature(chain_id, &tx).map(|()| tx))
                    .collect()
            };
        let mut admitted = self.admit_checked(checked).into_iter();
        refused
            .iter_mut()
            .map(|refusal| match refusal.take() {
                Some(e) => Err(e),
                None => admitted.next().expect("one result per fresh transaction"),
            })
            .collect()
    }

    /// Admits transactions whose signatures were checked (or carries their refusals through),
    /// in order, against the committed state, and wakes a waiting proposer.
    ///
    /// The committed accounts are read under the pool's lock: the finalizer commits a block and
    /// then prunes the pool under the same lock, so the pool and the state read here are never
    /// from two sides of a block (a stale nonce would refuse a valid next nonce).
    fn admit_checked(
        &self,
        checked: impl IntoIterator<Item = Result<Tx, AdmitError>>,
    ) -> Vec<Result<Hash, AdmitError>> {
        let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
        let tip = self.executor.tip();
        let mut committed = std::collections::HashMap::new();
        let results: Vec<_> = checked
            .into_iter()
            .map(|tx| {
                let tx = tx?;
                let sender = tx.body().sender;
                let state = match committed.get(&sender) {
                    Some(state) => bcte_ledger::AccountState::clone(state),
                    None => {
                        // A failing store is the node's error, never an empty account.
                        let key = StateKey::Account(sender);
                        let state = match tree::read_value(self.executor.store(), tip.height, &key)
                        {
                            Err(e) => return Err(AdmitError::Storage(e.to_string())),
                            Ok(None) => Default::default(),
                            Ok(Some(b)) => decode_account(&b).ok_or_else(|| {
                                AdmitError::Storage(format!("stored value of {key} is corrupt"))
                            })?,
                        };
                        committed.insert(sender, state.clone());
                        state
                    }
                };
                pool.admit(tx, state)
            })
            .collect();
        drop(pool);
        if results.iter().any(Result::is_ok) {
            self.mempool_notify.notify_waiters();
        }
        results
    }
}

/// The application handed to `Deferred`.
pub struct App<S: Store> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> Clone for App<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Store> App<S> {
    /// An application over shared node state.
    pub const fn new(shared: Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Makes sure the state after `first` (the newest block of `ancestry`'s remainder) is known,
    /// executing any unknown ancestors oldest first. `Err` if the branch cannot be finalized or an
    /// ancestor is invalid.
    async fn ensure_known<E: Spawner + CryptoRng>(
        &self,
        first: Digested<ChainBlock>,
        ancestry: &mut (impl Ancestry<ChainBlock> + 'static),
        runtime: &E,
    ) -> Result<(), ExecuteError> {
        let ex = &self.shared.executor;
        let mut missing = Vec::new();
        let mut cursor = first;
        while !ex.knows(&cursor.digest()) {
            if cursor.height().get() <= ex.tip().height.get() {
                // The finalizer may have committed this ancestor (and moved the tip past it)
                // while we waited for the ancestry: its state is then known, not stale.
                if is_committed(ex, &cursor.digest()) {
                    break;
                }
                return Err(ExecuteError::Stale);
            }
            missing.push(cursor.inner().0.clone());
            cursor = ancestry.next().await.ok_or(ExecuteError::Stale)?;
        }
        for block in missing.into_iter().rev() {
            let shared = self.shared.clone();
            let ancestor = block.clone();
            // Catching up executes whole blocks: off the tasks that carry votes.
            let verified = off_loop(runtime, move |ctx| shared.verify(ancestor, ctx))
                .await
                .ok_or(ExecuteError::Stale)?;
            match verified {
                Ok(_) => {}
                // Finalized and committed since we looked: known, not stale.
                Err(ExecuteError::Stale) if is_committed(ex, &block.hash()) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether the block with `hash` is committed here (finalized and durable). The finalizer
/// commits blocks concurrently with consensus asking to build on or verify them or their
/// descendants: a committed ancestor is no conflict with the committed chain. Answering
/// "invalid" for it would be final (simplex never retries a failed certification), and one
/// honest validator that cannot certify is one fault more.
fn is_committed<S: Store>(ex: &Executor<S>, hash: &Hash) -> bool {
    matches!(ex.store().height_of(hash), Ok(Some(_)))
}

/// Runs CPU-heavy `work` (executing a block: its transactions, a market clearing, a state
/// root) on the runtime's blocking pool, off the tasks that carry votes and p2p. `None` if the
/// task was aborted (the node is stopping).
pub async fn off_loop<E, T>(
    runtime: &E,
    work: impl FnOnce(&mut E) -> T + Send + 'static,
) -> Option<T>
where
    E: Spawner,
    T: Send + 'static,
{
    runtime
        .child("execute")
        .shared(true)
        .spawn(move |mut ctx| async move { work(&mut ctx) })
        .await
        .ok()
}

fn now_ms(clock: &impl Clock) -> u64 {
    clock
        .current()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<E, S> Application<E> for App<S>
where
    E: Clock + Spawner + Metrics + CryptoRng,
    S: Store,
{
    type SigningScheme = Scheme;
    type Context = Ctx;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Ctx),
        mut ancestry: impl Ancestry<ChainBlock>,
        _input: (),
    ) -> Option<Digested<ChainBlock>> {
        let parent = ancestry.next().await?;
        let parent_hash: Hash = parent.digest();
        if let Err(e) = self.ensure_known(parent, &mut ancestry, &runtime).await {
            warn!(error = %e, "cannot build on this parent");
            return None;
        }

        // Wait (bounded) for work, but never past the next gate closure: the block that
        // crosses it clears the interval, and should come on time (MC-7.1).
        let shared = &self.shared;
        let ex = &shared.executor;
        let mut deadline = runtime.current() + shared.params.propose_wait;
        match ex.next_gate_block_ms(&parent_hash) {
            Ok(Some(gate_ms)) => {
                deadline = deadline.min(UNIX_EPOCH + Duration::from_millis(gate_ms));
            }
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "cannot read the market schedule; not proposing");
                return None;
            }
        }
        // Interest is registered before looking at the pool, so a transaction arriving
        // between the look and the wait is not missed.
        let txs = loop {
            let notified = shared.mempool_notify.notified();
            futures::pin_mut!(notified);
            notified.as_mut().enable();
            let mut failed = None;
            let txs = {
                let pool = shared.mempool.lock().unwrap_or_else(|e| e.into_inner());
                pool.select(
                    shared.params.limits.txs_max,
                    // Leave room for the header and the count.
                    shared.params.limits.bytes_max - 1024,
                    |id| match ex.account_at(&parent_hash, id) {
                        Ok(account) => account.map_or(0, |a| a.nonce),
                        Err(e) => {
                            failed.get_or_insert(e);
                            0
                        }
                    },
                )
            };
            if let Some(e) = failed {
                error!(error = %e, "cannot read the parent's state; not proposing");
                return None;
            }
            if !txs.is_empty() || runtime.current() >= deadline {
                break txs;
            }
            select! {
                _ = notified => {},
                _ = runtime.sleep_until(deadline) => {},
            }
        };

        let count = txs.len();
        let timestamp_ms = now_ms(&runtime);
        let header_context = context_to_header(&context);
        let executor = ex.clone();
        // Executing the block (a gate closure clears a market) is CPU work: off the loop.
        let built = off_loop(&runtime, move |_| {
            executor.build(&parent_hash, timestamp_ms, header_context, txs)
        })
        .await?;
        match built {
            Ok(pending) => {
                debug!(height = %pending.block.height(), txs = count, "proposed");
                let digest = pending.block.hash();
                Some(Digested::precomputed(
                    ChainBlock(pending.block.clone()),
                    digest,
                ))
            }
            Err(e) => {
                error!(error = %e, "building a block failed");
                None
            }
        }
    }

    async fn verify(
        &mut self,
        (runtime, _context): (E, Ctx),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let ex = self.shared.executor.clone();
        if ex.pending(&block.digest()).is_some() {
            return true;
        }
        // A block from the future: wait for the local clock instead of refusing (LR-1.2).
        let skew = self.shared.params.clock_skew_max.as_millis() as u64;
        let stamp = block.inner().header().timestamp_ms;
        let now = now_ms(&runtime);
        if stamp > now + skew {
            runtime
                .sleep(Duration::from_millis(stamp - now - skew))
                .await;
        }
        if !ex.knows(&block.parent()) {
            let Some(parent) = ancestry.next().await else {
                return false;
            };
            match self.ensure_known(parent, &mut ancestry, &runtime).await {
                Ok(()) => {}
                Err(ExecuteError::Invalid(e)) if !e.is_block_fault() => {
                    error!(error = %e, "cannot execute an ancestor; abstaining");
                    return futures::future::pending().await;
                }
                Err(e) => {
                    warn!(error = %e, height = %Height(block.height().get()), "ancestor refused");
                    return false;
                }
            }
        }
        let shared = self.shared.clone();
        let candidate = block.inner().0.clone();
        let Some(verified) = off_loop(&runtime, move |ctx| shared.verify(candidate, ctx)).await
        else {
            // The node is stopping: abstain rather than vote either way.
            return futures::future::pending().await;
        };
        match verified {
            Ok(_) => true,
            // Finalized and committed while we verified it.
            Err(ExecuteError::Stale) if is_committed(&ex, &block.digest()) => true,
            Err(ExecuteError::Invalid(e)) if !e.is_block_fault() => {
                // Our storage failed, not the block: abstain rather than vote either way.
                error!(error = %e, "cannot execute the block; abstaining");
                futures::future::pending().await
            }
            Err(e) => {
                warn!(error = %e, height = %block.inner().height(), "refusing block");
                false
            }
        }
    }
}
