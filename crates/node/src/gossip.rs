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

use crate::{app::Shared, chain_block::PublicKey};
use bcte_store::Store;
use bcte_types::Tx;
use commonware_codec::{Copying, Decode, Encode, EncodeSize, RangeCfg};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Handle, Spawner};
use commonware_utils::channel::mpsc;
use std::sync::Arc;
use tracing::debug;

/// Most transactions in one gossip message.
pub const BATCH_TXS_MAX: usize = 2_048;

/// Most transaction bytes in one gossip message (one oversize transaction travels alone).
pub const BATCH_BYTES_MAX: usize = 512 * 1024;

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

/// Starts the gossip task on the transaction channel.
pub fn start<E, S, R, St>(
    context: E,
    shared: Arc<Shared<St>>,
    (mut sender, mut receiver): (S, R),
) -> (Handle<()>, Outbox)
where
    E: Spawner + rand::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    St: Store,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Tx>();
    // The runtime's context is the batch verification's randomness (deterministic in tests).
    let handle = context.spawn(move |mut rng| async move {
        loop {
            select! {
                outgoing = rx.recv() => {
                    let Some(first) = outgoing else { break };
                    let mut bytes = first.encode_size();
                    let mut batch = vec![first];
                    while batch.len() < BATCH_TXS_MAX && bytes < BATCH_BYTES_MAX {
                        let Ok(next) = rx.try_recv() else { break };
                        bytes += next.encode_size();
                        batch.push(next);
                    }
                    let _ = sender.send(Recipients::All, batch.encode(), false);
                },
                incoming = receiver.recv() => {
                    let Ok((peer, bytes)) = incoming else { break };
                    let bytes: &[u8] = bytes.as_ref();
                    let cfg = (RangeCfg::new(1..=BATCH_TXS_MAX), ());
                    match Vec::<Tx>::decode_cfg(Copying(bytes), &cfg) {
                        Ok(txs) => {
                            for result in shared.admit_many(txs, &mut rng) {
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
