//! The mempool: signed transactions waiting for a block, checked before they are accepted.
//!
//! A transaction is admitted only if it is for this chain, correctly signed, within the size
//! limit, not already known, and its nonce is exactly the sender's next one (the committed nonce
//! plus the sender's transactions already waiting). Transfers and burns must also be covered by
//! the sender's committed balance minus what its waiting transactions already spend. Each refusal
//! says why, so a client sees the problem at once instead of finding a rejected receipt later.
//!
//! Proposers take transactions in arrival order, per sender in nonce order, starting from the
//! nonces of the state they build on. Finalized blocks remove what they included, and anything
//! their new nonces made stale.
//!
//! Bounds: at most [`MempoolLimits::txs_max`] transactions and
//! [`MempoolLimits::per_sender_max`] per sender; a full pool refuses with a reason.

use bcte_ledger::AccountState;
use bcte_types::{AccountId, Amount, ChainId, Hash, Payload, SignatureError, Tx};
use commonware_codec::EncodeSize;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};
use thiserror::Error;

/// Mempool bounds.
#[derive(Clone, Copy, Debug)]
pub struct MempoolLimits {
    /// Most transactions waiting.
    pub txs_max: usize,
    /// Most transactions waiting from one sender.
    pub per_sender_max: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self {
            txs_max: 100_000,
            per_sender_max: 4_096,
        }
    }
}

/// Why a transaction is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdmitError {
    /// Wrong chain or bad signature.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The transaction is already waiting.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(String),
    /// The nonce was already used.
    #[error("nonce {got} was already used (next nonce is {expected})")]
    NonceUsed {
        /// The next nonce the sender may use.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce leaves a gap.
    #[error("nonce {got} skips ahead (next nonce is {expected})")]
    NonceGap {
        /// The next nonce the sender may use.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender cannot cover the amount.
    #[error(
        "insufficient balance: has {balance}, already committed {pending} in waiting transactions, needs {needed}"
    )]
    InsufficientBalance {
        /// Committed balance.
        balance: Amount,
        /// Spent by waiting transactions.
        pending: Amount,
        /// This transaction's amount.
        needed: Amount,
    },
    /// Zero-amount transactions are refused.
    #[error("amount must be positive")]
    ZeroAmount,
    /// The ledger would reject it for its key, its sender's revocation or its sender's roles
    /// (AC-3.2: authorization is pre-checked at admission, decided in execution).
    #[error("{0}")]
    Refused(bcte_types::RejectReason),
    /// The pool is full.
    #[error("mempool is full ({0} transactions); retry later")]
    Full(usize),
    /// The sender has too many waiting transactions.
    #[error("sender has {0} transactions waiting; wait for some to be included")]
    SenderFull(usize),
    /// The committed state could not be read (a failing disk, a corrupt value): the node's
    /// fault, not the transaction's.
    #[error("the node could not read its state: {0}")]
    Storage(String),
}

impl AdmitError {
    /// Whether retrying later may succeed (the pool is busy) rather than the transaction being
    /// wrong.
    pub const fn is_busy(&self) -> bool {
        matches!(self, Self::Full(_) | Self::SenderFull(_))
    }
}

#[derive(Debug)]
struct Entry {
    tx: Arc<Tx>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Sender {
    // Waiting transactions by nonce; always consecutive.
    by_nonce: BTreeMap<u64, Hash>,
    // Sum of the amounts the waiting transactions spend from the sender's balance.
    spending: u64,
}

/// The mempool. Not thread-safe by itself; the node wraps it in a mutex.
#[derive(Debug)]
pub struct Mempool {
    chain_id: ChainId,
    limits: MempoolLimits,
    txs: HashMap<Hash, Entry>,
    senders: HashMap<AccountId, Sender>,
    arrival: BTreeMap<u64, Hash>,
    next_seq: u64,
}

/// What a waiting transaction spends from its sender's balance.
fn spends(tx: &Tx) -> u64 {
    match &tx.body().payload {
        Payload::Transfer { amount, .. } | Payload::Burn { amount } => amount.get(),
        _ => 0,
    }
}

/// The amount of a token transaction (the other kinds move no money themselves).
fn amount_of(tx: &Tx) -> Option<Amount> {
    match &tx.body().payload {
        Payload::Transfer { amount, .. }
        | Payload::Burn { amount }
        | Payload::Mint { amount, .. } => Some(*amount),
        _ => None,
    }
}

impl Mempool {
    /// An empty pool for `chain_id`.
    pub fn new(chain_id: ChainId, limits: MempoolLimits) -> Self {
        Self {
            chain_id,
            limits,
            txs: HashMap::new(),
            senders: HashMap::new(),
            arrival: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The checks that need no state: chain id and signature. Callers run this outside any lock.
    pub fn check_signature(chain_id: &ChainId, tx: &Tx) -> Result<(), AdmitError> {
        tx.verify(chain_id).map_err(AdmitError::from)
    }

    /// The chain id transactions must carry.
    pub const fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Admits `tx` (whose signature the caller checked with [`Self::check_signature`]) given the
    /// sender's committed state.
    pub fn admit(&mut self, tx: Tx, committed: AccountState) -> Result<Hash, AdmitError> {
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(AdmitError::Duplicate(hex::encode(hash)));
        }
        if amount_of(&tx).is_some_and(Amount::is_zero) {
            return Err(AdmitError::ZeroAmount);
        }
        // AC-3.2, AC-4.2, AC-5.1: the ledger's own checks, against the committed state.
        bcte_ledger::auth::check_signer(tx.body().sender, tx.signing_account(), &committed)
            .and_then(|()| bcte_ledger::auth::authorize(&committed, tx.body().payload.tx_kind()))
            .map_err(AdmitError::Refused)?;
        let sender_id = tx.body().sender;
        self.prune_stale(&sender_id, committed.nonce);
        let (waiting, spending) = match self.senders.get(&sender_id) {
            Some(s) => (s.by_nonce.len(), s.spending),
            None => (0, 0),
        };
        // Once stale entries are gone, the waiting run starts at the committed nonce.
        let expected = committed.nonce + waiting as u64;
        let got = tx.body().nonce;
        if got < expected {
            return Err(AdmitError::NonceUsed { expected, got });
        }
        if got > expected {
            return Err(AdmitError::NonceGap { expected, got });
        }
        let needed = spends(&tx);
        if needed > 0 && spending.saturating_add(needed) > committed.balance.get() {
            return Err(AdmitError::InsufficientBalance {
                balance: committed.balance,
                pending: Amount(spending),
                needed: Amount(needed),
            });
        }
        if self.txs.len() >= self.limits.txs_max {
            return Err(AdmitError::Full(self.txs.len()));
        }
        if waiting >= self.limits.per_sender_max {
            return Err(AdmitError::SenderFull(waiting));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let sender = self.senders.entry(sender_id).or_default();
        sender.by_nonce.insert(got, hash);
        sender.spending = sender.spending.saturating_add(needed);
        self.arrival.insert(seq, hash);
        self.txs.insert(
            hash,
            Entry {
                tx: Arc::new(tx),
                seq,
            },
        );
        Ok(hash)
    }

    /// Whether `hash` is waiting.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    /// The waiting transaction `hash`, if any.
    pub fn get(&self, hash: &Hash) -> Option<Arc<Tx>> {
        self.txs.get(hash).map(|e| e.tx.clone())
    }

    /// Whether exactly `tx` (same body, same signature) is waiting, so its signature was
    /// checked on admission and need not be checked again in a block.
    pub fn holds_exactly(&self, tx: &Tx) -> bool {
        self.txs
            .get(&tx.hash())
            .is_some_and(|e| e.tx.signature() == tx.signature())
    }

    /// Number of waiting transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Up to `txs_max` transactions (and `bytes_max` encoded bytes) for a block built on a state
    /// where each sender's next nonce is `nonce_of(sender)`: in arrival order, per sender only
    /// the run of consecutive nonces that starts there.
    pub fn select(
        &self,
        txs_max: usize,
        bytes_max: usize,
        mut nonce_of: impl FnMut(&AccountId) -> u64,
    ) -> Vec<Tx> {
        let mut next: HashMap<AccountId, u64> = HashMap::new();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for hash in self.arrival.values() {
            if out.len() >= txs_max {
                break;
            }
            let tx = &self.txs[hash].tx;
            let sender = tx.body().sender;
            let expected = next.entry(sender).or_insert_with(|| nonce_of(&sender));
            if tx.body().nonce != *expected {
                continue;
            }
            let size = tx.encode_size();
            if bytes + size > bytes_max {
                break;
            }
            bytes += size;
            *expected += 1;
            out.push(Tx::clone(tx));
        }
        out
    }

    /// Removes what a finalized block included, and every waiting transaction of the block's
    /// senders that the new committed nonces made stale. `committed_nonce` gives a sender's
    /// nonce after the block.
    pub fn on_finalized(
        &mut self,
        included: &[Tx],
        mut committed_nonce: impl FnMut(&AccountId) -> u64,
    ) {
        let mut senders: Vec<AccountId> = Vec::new();
        for tx in included {
            self.remove(&tx.hash());
            senders.push(tx.body().sender);
        }
        senders.sort_unstable();
        senders.dedup();
        for id in senders {
            let nonce = committed_nonce(&id);
            self.prune_stale(&id, nonce);
        }
    }

    /// Drops the sender's waiting transactions with nonces below `nonce` (already used).
    fn prune_stale(&mut self, id: &AccountId, nonce: u64) {
        let stale: Vec<Hash> = match self.senders.get(id) {
            Some(s) => s.by_nonce.range(..nonce).map(|(_, h)| *h).collect(),
            None => return,
        };
        for h in stale {
            self.remove(&h);
        }
    }

    fn remove(&mut self, hash: &Hash) {
        let Some(entry) = self.txs.remove(hash) else {
            return;
        };
        self.arrival.remove(&entry.seq);
        let id = entry.tx.body().sender;
        if let Some(s) = self.senders.get_mut(&id) {
            s.by_nonce.remove(&entry.tx.body().nonce);
            s.spending = s.spending.saturating_sub(spends(&entry.tx));
            if s.by_nonce.is_empty() {
                self.senders.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcte_types::TxBody;
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    fn chain() -> ChainId {
        ChainId::new("pool").unwrap()
    }

    fn account(seed: u64) -> AccountId {
        AccountId::from_public_key(&PrivateKey::from_seed(seed).public_key())
    }

    fn transfer(from: u64, nonce: u64, amount: u64) -> Tx {
        Tx::sign(
            TxBody {
                chain_id: chain(),
                sender: account(from),
                signer: None,
                nonce,
                payload: Payload::Transfer {
                    to: account(99),
                    amount: Amount(amount),
                },
            },
            &PrivateKey::from_seed(from),
        )
    }

    fn funded(nonce: u64) -> AccountState {
        AccountState {
            balance: Amount(100),
            nonce,
            roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
            ..AccountState::default()
        }
    }

    #[test]
    fn holds_exactly_needs_the_same_signature() {
        let mut pool = Mempool::new(chain(), MempoolLimits::default());
        let tx = transfer(1, 0, 5);
        Mempool::check_signature(&chain(), &tx).unwrap();
        pool.admit(tx.clone(), funded(0)).unwrap();
        assert!(pool.holds_exactly(&tx));
        let other_sig = transfer(2, 0, 5).signature().clone();
        let forged = Tx::from_body_and_signature(tx.body().clone(), other_sig);
        assert_eq!(forged.hash(), tx.hash(), "the hash covers the body only");
        assert!(!pool.holds_exactly(&forged));
        assert!(!pool.holds_exactly(&transfer(1, 1, 5)));
    }

    #[test]
    fn admits_consecutive_nonces_and_refuses_gaps_replays_and_duplicates() {
        let mut pool = Mempool::new(chain(), MempoolLimits::default());
        pool.admit(transfer(1, 3, 10), funded(3)).unwrap();
        pool.admit(transfer(1, 4, 10), funded(3)).unwrap();
        assert_eq!(
            pool.admit(transfer(1, 6, 10), funded(3)),
            Err(AdmitError::NonceGap {
                expected: 5,
                got: 6
            })
        );
        assert_eq!(
            pool.admit(transfer(1, 2, 10), funded(3)),
            Err(AdmitError::NonceUsed {
                expected: 5,
                got: 2
            })
        );
        assert!(matches!(
            pool.admit(transfer(1, 3, 10), funded(3)),
            Err(AdmitError::Duplicate(_))
        ));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn refuses_overdrafts_counting_waiting_spend() {
        let mut pool = Mempool::new(chain(), MempoolLimits::default());
        pool.admit(transfer(1, 0, 60), funded(0)).unwrap();
        assert_eq!(
            pool.admit(transfer(1, 1, 50), funded(0)),
            Err(AdmitError::InsufficientBalance {
                balance: Amount(100),
                pending: Amount(60),
                needed: Amount(50)
            })
        );
        assert_eq!(
            pool.admit(transfer(2, 0, 0), funded(0)),
            Err(AdmitError::ZeroAmount)
        );
    }

    #[test]
    fn full_pool_and_full_sender_refuse_with_busy_errors() {
        let mut pool = Mempool::new(
            chain(),
            MempoolLimits {
                txs_max: 2,
                per_sender_max: 1,
            },
        );
        pool.admit(transfer(1, 0, 1), funded(0)).unwrap();
        let err = pool.admit(transfer(1, 1, 1), funded(0)).unwrap_err();
        assert!(err.is_busy(), "{err}");
        pool.admit(transfer(2, 0, 1), funded(0)).unwrap();
        let err = pool.admit(transfer(3, 0, 1), funded(0)).unwrap_err();
        assert_eq!(err, AdmitError::Full(2));
    }

    #[test]
    fn select_follows_the_parent_state_nonces_and_arrival_order() {
        let mut pool = Mempool::new(chain(), MempoolLimits::default());
        pool.admit(transfer(1, 0, 1), funded(0)).unwrap();
        pool.admit(transfer(2, 0, 1), funded(0)).unwrap();
        pool.admit(transfer(1, 1, 1), funded(0)).unwrap();
        let all = pool.select(10, usize::MAX, |_| 0);
        assert_eq!(
            all.iter().map(|t| t.body().nonce).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
        // On a parent that already included sender 1's nonce 0, only its nonce 1 is eligible.
        let on_parent = pool.select(10, usize::MAX, |a| u64::from(*a == account(1)));
        assert_eq!(on_parent.len(), 2);
        assert!(
            on_parent
                .iter()
                .all(|t| !(t.body().sender == account(1) && t.body().nonce == 0))
        );
        assert_eq!(pool.select(1, usize::MAX, |_| 0).len(), 1);
    }

    #[test]
    fn finalization_removes_included_and_stale_transactions() {
        let mut pool = Mempool::new(chain(), MempoolLimits::default());
        let a = transfer(1, 0, 1);
        pool.admit(a.clone(), funded(0)).unwrap();
        pool.admit(transfer(1, 1, 1), funded(0)).unwrap();
        pool.admit(transfer(1, 2, 1), funded(0)).unwrap();
        // A block included nonce 0 and (through another node) nonce 1.
        pool.on_finalized(&[a], |_| 2);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.select(10, usize::MAX, |_| 2)[0].body().nonce, 2);
    }
}
