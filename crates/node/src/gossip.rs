//! Transaction gossip: what one node admits, every validator's mempool soon holds.
//!
//! A transaction submitted to any node must reach the proposers. The node that admits a
//! transaction sends it to every peer on the transaction channel; a receiving node decodes it
//! (bounded), checks its signature and admits it to its own mempool under the same rules as an
//! API submission. Received transactions are not forwarded again: every validator is connected
//! to every other, so one hop reaches all of them.
//!
//! Under load, transactions travel in batches: whatever is queued when the task wakes (at most
//! [`BATCH_TXS_MAX`] transactions and [`BATCH_BYTES_MAX`] bytes) goes out as one message, and
//! the receiver checks the batch's signatures in one batch verification.
//!
//! Gossip is best effort: a message to a peer not yet (or no longer) connected is lost, and a
//! validator that restarts comes back with an empty mempool. So a transaction submitted to this
//! node is sent again while it still waits in this node's mempool: [`RESEND_FIRST`] after it
//! was first sent, then at doubling intervals up to [`RESEND_MAX`], until a finalized block
//! includes it (or makes it stale) and it leaves the pool. Peers that already hold it refuse it
//! by a hash lookup, before any signature check.

use crate::{app::Shared, chain_block::PublicKey};
use bcte_store::Store;
use bcte_types::{Hash, Tx};
use commonware_codec::{Copying, Decode, Encode, EncodeSize, RangeCfg};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Handle, Spawner};
use commonware_utils::channel::mpsc;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::debug;

/// Most transactions in one gossip message.
pub const BATCH_TXS_MAX: usize = 2_048;

/// Most transaction bytes in one gossip message (one oversize transaction travels alone).
pub const BATCH_BYTES_MAX: usize = 512 * 1024;

/// How long after sending a transaction that still waits in this node's mempool it is sent
/// again.
pub const RESEND_FIRST: Duration = Duration::from_secs(2);

/// The longest interval between two sends of a waiting transaction.
pub const RESEND_MAX: Duration = Duration::from_secs(16);

/// The largest gossip message for transactions of at most `tx_bytes_max` bytes.
pub const fn max_message_size(tx_bytes_max: usize) -> usize {
    // A length prefix, then at most BATCH_BYTES_MAX bytes plus one last transaction.
    8 + BATCH_BYTES_MAX + tx_bytes_max
}

/// Sends admitted transactions to peers.
#[derive(Clone, Debug)]
pub struct Outbox {
    sender: mpsc::UnboundedSender<Tx>,
}

impl Outbox {
    /// Queues `tx` for every peer. Never blocks; a stopped gossip task drops it silently
    /// (the transaction still waits in this node's own mempool).
    pub fn send(&self, tx: Tx) {
        let _ = self.sender.send(tx);
    }

    /// Queues many transactions, in order.
    pub fn send_all(&self, txs: impl IntoIterator<Item = Tx>) {
        for tx in txs {
            self.send(tx);
        }
    }
}

/// Locally submitted transactions to send again while they wait, by when (then an
/// insertion counter, so equal times keep their order).
#[derive(Default)]
struct Resends {
    due: BTreeMap<(SystemTime, u64), (Hash, Duration)>,
    next: u64,
}

impl Resends {
    fn schedule(&mut self, at: SystemTime, hash: Hash, interval: Duration) {
        self.due
            .insert((at + interval, self.next), (hash, interval));
        self.next += 1;
    }

    /// The earliest time something is due.
    fn first(&self) -> Option<SystemTime> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Everything due at `now`, with the interval it waited.
    fn take_due(&mut self, now: SystemTime) -> Vec<(Hash, Duration)> {
        let later = self.due.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.due, later)
            .into_values()
            .collect()
    }
}

/// Sends `txs` to every connected peer, in messages of at most [`BATCH_TXS_MAX`] transactions
/// and about [`BATCH_BYTES_MAX`] bytes.
fn send_batches<S: Sender>(sender: &mut S, txs: &[Tx]) {
    let mut start = 0;
    while start < txs.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < txs.len() && end - start < BATCH_TXS_MAX && bytes < BATCH_BYTES_MAX {
            bytes += txs[end].encode_size();
            end += 1;
        }
        let _ = sender.send(Recipients::All, (&txs[start..end]).encode(), false);
        start = end;
    }
}

/// Sends again what is due and still waits in the mempool, and schedules its next resend;
/// forgets what left the pool.
fn resend_due<S: Sender, St: Store>(
    shared: &Shared<St>,
    sender: &mut S,
    resends: &mut Resends,
    now: SystemTime,
) {
    if resends.first().is_none_or(|at| at > now) {
        return;
    }
    let due = resends.take_due(now);
    let (txs, waited): (Vec<Tx>, Vec<Duration>) = {
        let pool = shared.mempool.lock().unwrap_or_else(|e| e.into_inner());
        due.into_iter()
            .filter_map(|(hash, waited)| pool.get(&hash).map(|tx| (Tx::clone(&tx), waited)))
            .unzip()
    };
    if txs.is_empty() {
        return;
    }
    debug!(txs = txs.len(), "sending waiting transactions again");
    send_batches(sender, &txs);
    for (tx, waited) in txs.iter().zip(waited) {
        resends.schedule(now, tx.hash(), (waited * 2).min(RESEND_MAX));
    }
}

/// Starts the gossip task on the transaction channel.
pub fn start<E, S, R, St>(
    context: E,
    shared: Arc<Shared<St>>,
    (mut sender, mut receiver): (S, R),
) -> (Handle<()>, Outbox)
where
    E: Spawner + Clock + rand::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    St: Store,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Tx>();
    // The runtime's context is the clock and the batch verification's randomness
    // (deterministic in tests).
    let handle = context.spawn(move |mut ctx| async move {
        let clock = ctx.child("resend");
        let mut resends = Resends::default();
        loop {
            // Checked on every wake-up, so a steady stream of new work cannot starve resends.
            resend_due(&shared, &mut sender, &mut resends, clock.current());
            // Nothing to resend: wake up for new work only (an hour is "never" here).
            let wait = resends.first().map_or(Duration::from_secs(3_600), |at| {
                at.duration_since(clock.current()).unwrap_or_default()
            });
            select! {
                outgoing = rx.recv() => {
                    let Some(first) = outgoing else { break };
                    // Whatever else is queued, up to one message's worth of transactions;
                    // send_batches splits it further by bytes.
                    let mut batch = vec![first];
                    while batch.len() < BATCH_TXS_MAX {
                        let Ok(next) = rx.try_recv() else { break };
                        batch.push(next);
                    }
                    send_batches(&mut sender, &batch);
                    let now = clock.current();
                    for tx in &batch {
                        resends.schedule(now, tx.hash(), RESEND_FIRST);
                    }
                },
                _ = clock.sleep(wait) => {},
                incoming = receiver.recv() => {
                    let Ok((peer, bytes)) = incoming else { break };
                    let bytes: &[u8] = bytes.as_ref();
                    let cfg = (RangeCfg::new(1..=BATCH_TXS_MAX), ());
                    match Vec::<Tx>::decode_cfg(Copying(bytes), &cfg) {
                        Ok(txs) => {
                            for result in shared.admit_many(txs, &mut ctx) {
                                if let Err(e) = result {
                                    debug!(%peer, error = %e, "gossiped transaction not admitted");
                                }
                            }
                        }
                        Err(e) => debug!(%peer, error = %e, "undecodable gossip"),
                    }
                },
            }
        }
    });
    (handle, Outbox { sender: tx })
}
