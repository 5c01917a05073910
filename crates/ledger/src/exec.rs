//! The state machine: read what a block needs, then apply it purely, then commit to the result.
//!
//! Execution happens in three steps, so that the step that decides is pure:
//! 1. [`reads_of`] lists the keys the block's transactions may touch, and [`Prefetched::load`]
//!    reads them from the state at the parent's height (the only I/O, done by the caller's
//!    reader);
//! 2. [`apply`] runs the transactions against those values and returns the writes and one
//!    receipt per transaction. It knows no clock but the block's timestamp, no randomness and no
//!    storage, so every validator computes the same result;
//! 3. [`crate::tree::commit`] turns the writes into the new state root.
//!
//! Rules (numbered LR-x.y in `docs/ledger-rules.md`, cited at the branches):
//! a transaction's signature and chain id are checked before execution (a bad one invalidates
//! the block); in execution, a wrong nonce rejects it without consuming the nonce; any other
//! failure (balance, rights, zero amount, overflow) rejects it *and* consumes the nonce, so a
//! rejected transaction can never take effect later.
//!
//! Invariant, asserted after every block: money is conserved. The change of the sum of the
//! touched balances equals what was minted minus what was burned, and the total supply moves by
//! exactly that.

use crate::{
    keys::StateKey,
    state::{AccountState, ChainConfig, Head, encode_value},
    tree::{self, TreeError, WriteSet},
};
use bcte_types::{
    AccountId, Amount, Block, ChainId, Genesis, GenesisError, Hash, Header, Height, Outcome,
    Payload, Privilege, Receipt, RejectReason, SignatureError, Tx, block::receipts_root,
};
use commonware_codec::{Copying, Decode, DecodeExt, Read};
use jmt::storage::{NodeBatch, TreeReader};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Where and when a block executes: the parts of its header known before execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block's height.
    pub height: Height,
    /// The block's timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// The parent block's hash.
    pub parent: Hash,
}

impl BlockInfo {
    /// The info of an existing header.
    pub const fn of(header: &Header) -> Self {
        Self {
            height: header.height,
            timestamp_ms: header.timestamp_ms,
            parent: header.parent,
        }
    }
}

/// A failure of the execution machinery itself (never caused by a transaction's content).
#[derive(Debug, Error)]
pub enum ExecError {
    /// `apply` needed a key that was not prefetched: a bug in [`reads_of`].
    #[error("key {0} was not prefetched")]
    NotPrefetched(StateKey),
    /// A stored value does not decode: the state is corrupt.
    #[error("stored value of {0} is corrupt")]
    CorruptValue(StateKey),
    /// The chain configuration is missing from the state.
    #[error("the state has no chain configuration")]
    NoConfig,
    /// Height 0 is the genesis state, built by [`genesis`], never executed as a block.
    #[error("height 0 is genesis and is not executed")]
    GenesisHeight,
    /// Reading or updating the tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// Why a proposed block is invalid (validators vote against it).
#[derive(Debug, Error)]
pub enum InvalidBlock {
    /// The block does not name its parent.
    #[error("parent is {got}, expected {expected}")]
    WrongParent {
        /// The parent's hash.
        expected: String,
        /// The hash the block names.
        got: String,
    },
    /// The height is not the parent's plus one.
    #[error("height {got}, expected {expected}")]
    WrongHeight {
        /// Parent height + 1.
        expected: Height,
        /// The block's height.
        got: Height,
    },
    /// The timestamp does not move forward.
    #[error("timestamp {got} ms is not after the parent's {parent} ms")]
    TimestampNotIncreasing {
        /// The parent's timestamp.
        parent: u64,
        /// The block's timestamp.
        got: u64,
    },
    /// A transaction has a wrong chain id or signature.
    #[error("transaction {index}: {error}")]
    BadTransaction {
        /// Position in the block.
        index: usize,
        /// What is wrong.
        error: SignatureError,
    },
    /// The state root in the header is not the result of executing the block.
    #[error("state root {declared} does not match execution result {computed}")]
    StateRoot {
        /// In the header, hex.
        declared: String,
        /// Computed, hex.
        computed: String,
    },
    /// The receipts root in the header is not the result of executing the block.
    #[error("receipts root {declared} does not match execution result {computed}")]
    ReceiptsRoot {
        /// In the header, hex.
        declared: String,
        /// Computed, hex.
        computed: String,
    },
    /// Execution could not run (storage or corrupt state, not the block's fault).
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl InvalidBlock {
    /// Whether the failure is the block's fault (vote against it) rather than ours (a storage
    /// failure, after which a node must stop rather than vote).
    pub const fn is_block_fault(&self) -> bool {
        !matches!(self, Self::Exec(_))
    }
}

/// The keys a block's transactions may read or write, plus the chain-wide keys every block uses.
pub fn reads_of(txs: &[Tx]) -> BTreeSet<StateKey> {
    let mut keys: BTreeSet<StateKey> = [StateKey::Config, StateKey::Supply].into();
    for tx in txs {
        keys.insert(StateKey::Account(tx.body().sender));
        match &tx.body().payload {
            Payload::Transfer { to, .. } | Payload::Mint { to, .. } => {
                keys.insert(StateKey::Account(*to));
            }
            Payload::Burn { .. } => {}
        }
    }
    keys
}

/// The values of a set of keys at one height, read before execution.
#[derive(Clone, Debug, Default)]
pub struct Prefetched {
    values: BTreeMap<StateKey, Option<Vec<u8>>>,
}

impl Prefetched {
    /// Reads `keys` from the state at `height` through `reader`.
    pub fn load<R: TreeReader>(
        reader: &R,
        height: Height,
        keys: impl IntoIterator<Item = StateKey>,
    ) -> Result<Self, TreeError> {
        let mut values = BTreeMap::new();
        for key in keys {
            let v = tree::read_value(reader, height, &key)?;
            values.insert(key, v);
        }
        Ok(Self { values })
    }

    /// Builds a prefetched set from known values (tests, benchmarks).
    pub fn from_values(values: BTreeMap<StateKey, Option<Vec<u8>>>) -> Self {
        Self { values }
    }

    fn get(&self, key: &StateKey) -> Result<Option<&[u8]>, ExecError> {
        match self.values.get(key) {
            Some(v) => Ok(v.as_deref()),
            None => Err(ExecError::NotPrefetched(*key)),
        }
    }

    fn decode<T: Read<Cfg = ()>>(&self, key: &StateKey) -> Result<Option<T>, ExecError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => T::decode_cfg(Copying(bytes), &())
                .map(Some)
                .map_err(|_| ExecError::CorruptValue(*key)),
        }
    }
}

/// The result of applying a block: the state writes and one receipt per transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// The state changes.
    pub writes: WriteSet,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
}

/// The working set of one block's execution: typed values, written back at the end.
struct Working<'a> {
    pre: &'a Prefetched,
    accounts: BTreeMap<AccountId, AccountState>,
    supply: Amount,
    minted: Amount,
    burned: Amount,
}

impl Working<'_> {
    fn account(&mut self, id: AccountId) -> Result<AccountState, ExecError> {
        if let Some(a) = self.accounts.get(&id) {
            return Ok(*a);
        }
        let a = self
            .pre
            .decode::<AccountState>(&StateKey::Account(id))?
            .unwrap_or_default();
        self.accounts.insert(id, a);
        Ok(a)
    }

    fn set(&mut self, id: AccountId, a: AccountState) {
        self.accounts.insert(id, a);
    }
}

/// Applies `txs` as the block described by `info` to the prefetched state.
///
/// The caller has already checked every transaction's chain id and signature. Each transaction
/// gets a receipt; none can make this fail. An error means the machinery failed (a key missing
/// from `pre`, a corrupt stored value), and the block must not be voted on or committed.
pub fn apply(pre: &Prefetched, info: BlockInfo, txs: &[Tx]) -> Result<Execution, ExecError> {
    let config: ChainConfig = pre.decode(&StateKey::Config)?.ok_or(ExecError::NoConfig)?;
    let supply: Amount = pre.decode(&StateKey::Supply)?.unwrap_or(Amount::ZERO);
    let mut w = Working {
        pre,
        accounts: BTreeMap::new(),
        supply,
        minted: Amount::ZERO,
        burned: Amount::ZERO,
    };

    let mut receipts = Vec::with_capacity(txs.len());
    for tx in txs {
        let outcome = match apply_tx(&mut w, &config, tx)? {
            Ok(()) => Outcome::Accepted,
            Err(reason) => Outcome::Rejected(reason),
        };
        receipts.push(Receipt {
            tx_hash: tx.hash(),
            outcome,
        });
    }

    // Conservation (LR-4): balances moved by exactly minted - burned, and so did the supply.
    let mut before: i128 = 0;
    let mut after: i128 = 0;
    for (id, a) in &w.accounts {
        let old = pre
            .decode::<AccountState>(&StateKey::Account(*id))?
            .unwrap_or_default();
        before += i128::from(old.balance.get());
        after += i128::from(a.balance.get());
    }
    let net = i128::from(w.minted.get()) - i128::from(w.burned.get());
    assert_eq!(
        after - before,
        net,
        "money conservation violated at height {}",
        info.height
    );
    assert_eq!(
        i128::from(w.supply.get()) - i128::from(supply.get()),
        net,
        "supply moved by other than minted - burned at height {}",
        info.height
    );

    let mut writes = WriteSet::new();
    for (id, a) in &w.accounts {
        writes.insert(StateKey::Account(*id), Some(encode_value(a)));
    }
    if w.supply != supply {
        writes.insert(StateKey::Supply, Some(encode_value(&w.supply)));
    }
    let head = Head {
        height: info.height,
        timestamp_ms: info.timestamp_ms,
        parent: info.parent,
    };
    writes.insert(StateKey::Head, Some(encode_value(&head)));
    Ok(Execution { writes, receipts })
}

/// Applies one transaction: `Ok(Ok(()))` accepted, `Ok(Err(reason))` rejected.
fn apply_tx(
    w: &mut Working<'_>,
    config: &ChainConfig,
    tx: &Tx,
) -> Result<Result<(), RejectReason>, ExecError> {
    let body = tx.body();
    let mut sender = w.account(body.sender)?;

    // LR-2.1: the nonce must be the sender's next one; a wrong nonce changes nothing.
    if body.nonce != sender.nonce {
        return Ok(Err(RejectReason::BadNonce {
            expected: sender.nonce,
            got: body.nonce,
        }));
    }
    // LR-2.2: from here on the nonce is consumed, whatever the outcome.
    let Some(next) = sender.nonce.checked_add(1) else {
        return Ok(Err(RejectReason::Overflow));
    };
    sender.nonce = next;
    w.set(body.sender, sender);

    let result = match &body.payload {
        Payload::Transfer { to, amount } => transfer(w, body.sender, *to, *amount)?,
        Payload::Mint { to, amount } => {
            // LR-3.1: only the authority mints.
            if body.sender != config.authority {
                Err(RejectReason::Unauthorized {
                    action: Privilege::Mint,
                })
            } else if amount.is_zero() {
                Err(RejectReason::ZeroAmount)
            } else {
                mint(w, *to, *amount)?
            }
        }
        Payload::Burn { amount } => {
            // LR-3.2: only the authority burns, and only its own balance.
            if body.sender != config.authority {
                Err(RejectReason::Unauthorized {
                    action: Privilege::Burn,
                })
            } else if amount.is_zero() {
                Err(RejectReason::ZeroAmount)
            } else {
                burn(w, body.sender, *amount)?
            }
        }
    };
    Ok(result)
}

fn transfer(
    w: &mut Working<'_>,
    from: AccountId,
    to: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    // LR-3.3: a positive amount, covered by the sender's balance.
    if amount.is_zero() {
        return Ok(Err(RejectReason::ZeroAmount));
    }
    let mut sender = w.account(from)?;
    let Some(left) = sender.balance.checked_sub(amount) else {
        return Ok(Err(RejectReason::InsufficientBalance {
            balance: sender.balance,
            needed: amount,
        }));
    };
    if from == to {
        // A transfer to oneself is accepted and moves nothing.
        return Ok(Ok(()));
    }
    let mut recipient = w.account(to)?;
    let Some(credited) = recipient.balance.checked_add(amount) else {
        return Ok(Err(RejectReason::Overflow));
    };
    sender.balance = left;
    recipient.balance = credited;
    w.set(from, sender);
    w.set(to, recipient);
    Ok(Ok(()))
}

fn mint(
    w: &mut Working<'_>,
    to: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    let mut recipient = w.account(to)?;
    let (Some(supply), Some(credited), Some(minted)) = (
        w.supply.checked_add(amount),
        recipient.balance.checked_add(amount),
        w.minted.checked_add(amount),
    ) else {
        return Ok(Err(RejectReason::Overflow));
    };
    recipient.balance = credited;
    w.set(to, recipient);
    w.supply = supply;
    w.minted = minted;
    Ok(Ok(()))
}

fn burn(
    w: &mut Working<'_>,
    from: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    let mut holder = w.account(from)?;
    let Some(left) = holder.balance.checked_sub(amount) else {
        return Ok(Err(RejectReason::InsufficientBalance {
            balance: holder.balance,
            needed: amount,
        }));
    };
    let (Some(supply), Some(burned)) = (w.supply.checked_sub(amount), w.burned.checked_add(amount))
    else {
        return Ok(Err(RejectReason::Overflow));
    };
    holder.balance = left;
    w.set(from, holder);
    w.supply = supply;
    w.burned = burned;
    Ok(Ok(()))
}

/// The state at height 0: configuration, allocations, supply and head.
pub fn genesis_writes(genesis: &Genesis) -> Result<WriteSet, GenesisError> {
    let supply = genesis.validate()?;
    let mut writes = WriteSet::new();
    let config = ChainConfig {
        chain_id: genesis.chain_id.clone(),
        authority: genesis.authority,
        validators: genesis.validators.iter().map(|v| v.public_key).collect(),
    };
    writes.insert(StateKey::Config, Some(encode_value(&config)));
    writes.insert(StateKey::Supply, Some(encode_value(&supply)));
    for a in &genesis.allocations {
        let state = AccountState {
            balance: a.amount,
            nonce: 0,
        };
        writes.insert(StateKey::Account(a.account), Some(encode_value(&state)));
    }
    let head = Head {
        height: Height::GENESIS,
        timestamp_ms: genesis.genesis_time_ms,
        parent: <Hash as commonware_cryptography::Digest>::EMPTY,
    };
    writes.insert(StateKey::Head, Some(encode_value(&head)));
    Ok(writes)
}

/// The genesis block and the state it stands for.
#[derive(Debug)]
pub struct GenesisState {
    /// The block at height 0: no transactions, the genesis time, the genesis state root.
    pub block: Block,
    /// The state writes of height 0.
    pub writes: WriteSet,
    /// The tree nodes and values of version 0.
    pub batch: NodeBatch,
}

/// Builds the genesis block and state. Every node of a chain computes the same block from the
/// same genesis document, so its hash identifies the chain's history.
pub fn genesis(genesis: &Genesis) -> Result<GenesisState, GenesisError> {
    let writes = genesis_writes(genesis)?;
    // The empty tree is the only base of version 0.
    let (state_root, batch) = tree::commit(&tree::MemTree::new(), &writes, Height::GENESIS)
        .expect("committing to an empty in-memory tree cannot fail");
    let header = Header {
        parent: <Hash as commonware_cryptography::Digest>::EMPTY,
        height: Height::GENESIS,
        timestamp_ms: genesis.genesis_time_ms,
        context: bcte_types::ConsensusContext::GENESIS,
        tx_root: <Hash as commonware_cryptography::Digest>::EMPTY,
        state_root,
        receipts_root: receipts_root(&[]),
    };
    Ok(GenesisState {
        block: Block::new(header, Vec::new()),
        writes,
        batch,
    })
}

/// A block executed on top of its parent's state, not yet committed.
#[derive(Debug)]
pub struct Executed {
    /// Writes and receipts.
    pub execution: Execution,
    /// The state root after the block.
    pub state_root: Hash,
    /// The root over the receipts.
    pub receipts_root: Hash,
    /// The tree nodes and values to persist as version `height`.
    pub batch: NodeBatch,
}

/// Runs `txs` as the block `info` on the state read through `reader` (which must see the
/// parent's state at `info.height - 1`), and computes the roots. Used by the proposer, which
/// then writes the roots into the header, and by [`verify_block`].
pub fn run<R: TreeReader>(reader: &R, info: BlockInfo, txs: &[Tx]) -> Result<Executed, ExecError> {
    let parent_height = info.height.previous().ok_or(ExecError::GenesisHeight)?;
    let pre = Prefetched::load(reader, parent_height, reads_of(txs))?;
    let execution = apply(&pre, info, txs)?;
    let (state_root, batch) = tree::commit(reader, &execution.writes, info.height)?;
    let receipts_root = receipts_root(&execution.receipts);
    Ok(Executed {
        execution,
        state_root,
        receipts_root,
        batch,
    })
}

/// Checks that `header` follows `parent`: its hash, the next height, a later timestamp.
pub fn check_link(parent: &Header, parent_hash: Hash, header: &Header) -> Result<(), InvalidBlock> {
    // LR-1.3: the block names its parent and is one higher.
    if header.parent != parent_hash {
        return Err(InvalidBlock::WrongParent {
            expected: hex::encode(parent_hash),
            got: hex::encode(header.parent),
        });
    }
    let expected = parent.height.next().expect("heights do not reach u64::MAX");
    if header.height != expected {
        return Err(InvalidBlock::WrongHeight {
            expected,
            got: header.height,
        });
    }
    // LR-1.2: time moves forward; the ledger's only clock is this timestamp.
    if header.timestamp_ms <= parent.timestamp_ms {
        return Err(InvalidBlock::TimestampNotIncreasing {
            parent: parent.timestamp_ms,
            got: header.timestamp_ms,
        });
    }
    Ok(())
}

/// Fully checks `block` against its parent and the parent's state: link, signatures (batched),
/// execution, and both roots. On success returns the execution, ready to commit.
pub fn verify_block<R: TreeReader>(
    reader: &R,
    parent: &Header,
    block: &Block,
    chain_id: &ChainId,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Executed, InvalidBlock> {
    verify_block_with(reader, parent, block, chain_id, rng, |_| false)
}

/// [`verify_block`] for a caller that has already checked some of the block's signatures (a
/// validator's mempool holds transactions whose signatures it checked on admission):
/// `already_checked(tx)` says so for a transaction with exactly these body and signature bytes,
/// and only the others are verified (in one batch). The chain id of every transaction is still
/// checked. With `|_| false` this is exactly [`verify_block`].
pub fn verify_block_with<R: TreeReader>(
    reader: &R,
    parent: &Header,
    block: &Block,
    chain_id: &ChainId,
    rng: &mut impl rand_core::CryptoRng,
    already_checked: impl Fn(&Tx) -> bool,
) -> Result<Executed, InvalidBlock> {
    check_link(parent, parent.hash(), block.header())?;
    // LR-1.1: one bad signature or chain id makes the whole block invalid.
    for (index, tx) in block.txs().iter().enumerate() {
        tx.check_chain(chain_id)
            .map_err(|error| InvalidBlock::BadTransaction { index, error })?;
    }
    let (positions, unchecked): (Vec<usize>, Vec<Tx>) = block
        .txs()
        .iter()
        .enumerate()
        .filter(|(_, tx)| !already_checked(tx))
        .map(|(i, tx)| (i, tx.clone()))
        .unzip();
    bcte_types::tx::verify_batch(&unchecked, chain_id, rng).map_err(|(index, error)| {
        InvalidBlock::BadTransaction {
            index: positions[index],
            error,
        }
    })?;
    let executed = run(reader, BlockInfo::of(block.header()), block.txs())?;
    check_roots(block.header(), &executed)?;
    Ok(executed)
}

/// Checks the header's roots against an execution result (LR-1.4).
pub fn check_roots(header: &Header, executed: &Executed) -> Result<(), InvalidBlock> {
    if header.state_root != executed.state_root {
        return Err(InvalidBlock::StateRoot {
            declared: hex::encode(header.state_root),
            computed: hex::encode(executed.state_root),
        });
    }
    if header.receipts_root != executed.receipts_root {
        return Err(InvalidBlock::ReceiptsRoot {
            declared: hex::encode(header.receipts_root),
            computed: hex::encode(executed.receipts_root),
        });
    }
    Ok(())
}

/// Decodes a stored account value (for readers outside execution: the API, the audit).
pub fn decode_account(bytes: &[u8]) -> Option<AccountState> {
    AccountState::decode(Copying(bytes)).ok()
}
