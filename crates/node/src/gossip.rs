//! Transaction gossip: what one node admits, every validator's mempool soon holds.
//!
//! A transaction submitted to any node must reach the proposers. The node that admits a
//! transaction sends it to every peer on the transaction channel; a receiving node decodes it
//! (bounded), checks its signature and admits it to its own mempool under the same rules as an
//! API submission. Received transactions are not forwarded again: every validator is connected
//! to every other, so one hop reaches all of them.

use crate::{app::Shared, chain_block::PublicKey};
use bcte_store::Store;
use bcte_types::Tx;
use commonware_codec::{Copying, DecodeExt, Encode};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Handle, Spawner};
use commonware_utils::channel::mpsc;
use std::sync::Arc;
use tracing::debug;

/// The largest gossip message for transactions of at most `tx_bytes_max` bytes.
pub const fn max_message_size(tx_bytes_max: usize) -> usize {
    tx_bytes_max
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
}

/// Starts the gossip task on the transaction channel.
pub fn start<E, S, R, St>(
    context: E,
    shared: Arc<Shared<St>>,
    (mut sender, mut receiver): (S, R),
) -> (Handle<()>, Outbox)
where
    E: Spawner,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    St: Store,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Tx>();
    let handle = context.spawn(move |_| async move {
        loop {
            select! {
                outgoing = rx.recv() => {
                    let Some(t) = outgoing else { break };
                    let _ = sender.send(Recipients::All, t.encode(), false);
                },
                incoming = receiver.recv() => {
                    let Ok((peer, bytes)) = incoming else { break };
                    let bytes: &[u8] = bytes.as_ref();
                    match Tx::decode(Copying(bytes)) {
                        Ok(t) => {
                            if let Err(e) = shared.admit(t) {
                                debug!(%peer, error = %e, "gossiped transaction not admitted");
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
