//! The finalizer: receives finalized blocks from marshal, commits them, then acknowledges them.
//!
//! Marshal delivers every finalized block in height order, at least once (a restart redelivers
//! blocks it had not seen acknowledged). For each block the finalizer fetches the block's own
//! finality certificate (blocks finalized through a descendant's certificate have none),
//! commits the block and its state durably through the executor, updates the mempool, and only
//! then acknowledges. A failure to commit, or a finalized block that does not execute to its
//! roots, stops the node: it must not go on serving state that may have diverged.

use crate::{
    app::Scheme,
    chain_block::ChainBlock,
    executor::{Executor, FatalError, Finalized, Pending},
    market_metrics::MarketMetrics,
    mempool::Mempool,
};
use bcte_ledger::{StateKey, exec::decode_account};
use bcte_store::Store;
use commonware_actor::Feedback;
use commonware_codec::Encode;
use commonware_consensus::{
    Heightable, Reporter,
    marshal::{Update, core::Mailbox, standard::Standard},
};
use commonware_runtime::{Clock, Spawner};
use commonware_utils::{Acknowledgement as _, channel::mpsc};
use rand::CryptoRng;
use std::sync::{Arc, Mutex};
use tracing::{debug, error, info};

/// The reporter marshal delivers to: a mailbox in front of the finalizer task (reporting must not
/// block).
#[derive(Clone)]
pub struct FinalizerMailbox {
    sender: mpsc::UnboundedSender<Update<ChainBlock>>,
}

impl Reporter for FinalizerMailbox {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match self.sender.send(activity) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

/// The finalizer task.
pub struct Finalizer<S: Store> {
    executor: Arc<Executor<S>>,
    mempool: Arc<Mutex<Mempool>>,
    receiver: mpsc::UnboundedReceiver<Update<ChainBlock>>,
    metrics: MarketMetrics,
}

impl<S: Store> Finalizer<S> {
    /// A finalizer and the mailbox to hand marshal; it counts the market's work of every block
    /// it commits in `metrics`.
    pub fn new(
        executor: Arc<Executor<S>>,
        mempool: Arc<Mutex<Mempool>>,
        metrics: MarketMetrics,
    ) -> (Self, FinalizerMailbox) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self {
                executor,
                mempool,
                receiver,
                metrics,
            },
            FinalizerMailbox { sender },
        )
    }

    /// Runs until marshal closes the mailbox (`Ok`) or a block cannot be committed (`Err`).
    /// Committing a block that was not executed here (catch-up) executes it, on the runtime's
    /// blocking pool (see [`crate::app::off_loop`]).
    pub async fn run<E: Spawner + Clock + CryptoRng>(
        mut self,
        marshal: Mailbox<Scheme, Standard<ChainBlock>>,
        runtime: E,
    ) -> Result<(), FatalError> {
        while let Some(update) = self.receiver.recv().await {
            let (block, ack) = match update {
                Update::Tip(..) => continue,
                Update::Block(block, ack) => (block, ack),
            };
            let height = block.height();
            let certificate = if height.get() > self.executor.tip().height.get() {
                marshal
                    .get_finalization(height)
                    .await
                    .map(|f| f.encode().to_vec())
            } else {
                None
            };
            let executor = self.executor.clone();
            let finalized = block.inner().0.clone();
            let certified = certificate.is_some();
            let Some(result) = crate::app::off_loop(&runtime, move |ctx| {
                executor.finalize(finalized, certificate.as_deref(), ctx)
            })
            .await
            else {
                // The node is stopping; marshal redelivers what was not acknowledged.
                return Ok(());
            };
            match result {
                Ok(Finalized::AlreadyCommitted) => {
                    debug!(%height, "already committed; acknowledging the redelivery");
                }
                Ok(Finalized::Committed(pending)) => {
                    let writes = &pending.execution.writes;
                    let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
                    pool.on_finalized(pending.block.txs(), |id| {
                        writes
                            .get(&StateKey::Account(*id))
                            .and_then(|v| v.as_deref())
                            .and_then(decode_account)
                            .map_or(0, |a| a.nonce)
                    });
                    drop(pool);
                    self.count(&pending, &runtime);
                    if !pending.block.txs().is_empty() || height.get() % 100 == 0 {
                        info!(
                            %height,
                            txs = pending.block.txs().len(),
                            certified,
                            "finalized"
                        );
                    }
                }
                Err(e) => {
                    error!(error = %e, %height, "cannot commit a finalized block; stopping");
                    return Err(e);
                }
            }
            ack.acknowledge();
        }
        Ok(())
    }

    /// Counts a committed block's market work in the metrics.
    fn count(&self, pending: &Pending, clock: &impl Clock) {
        let exec = &pending.execution;
        let cleared = exec
            .market
            .iter()
            .any(|e| matches!(e, bcte_ledger::MarketEvent::Cleared { .. }));
        let market_clock = if cleared {
            match self.executor.market_clock() {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "cannot read the market clock for the metrics");
                    return;
                }
            }
        } else {
            bcte_ledger::MarketClock::REAL_TIME
        };
        let now_ms = clock
            .current()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.metrics.on_finalized(
            &pending.block,
            &exec.receipts,
            &exec.market,
            &pending.market_laps,
            market_clock,
            now_ms,
        );
    }
}
