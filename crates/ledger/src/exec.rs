//! The state machine's driver: read what a block needs, then apply it purely, then commit to
//! the result.
//!
//! Execution happens in three steps, so that the step that decides is pure:
//! 1. [`plan_reads`] lists the keys the block may touch, given the values read so far: the
//!    keys its transactions name, then (once the feeders and their schedules are read) the
//!    intervals the block clears and the bids of those intervals. [`run`] reads in stages
//!    through the caller's reader at the parent's height until the plan asks for nothing new
//!    (the only I/O). Each stage is a pure function of the values before it;
//! 2. [`apply`] runs the transactions against those values, then the end-of-block work of the
//!    market (clearing the intervals whose gate closed, or pruning), and returns the writes
//!    and one receipt per transaction. It knows no clock but the block's timestamp, no
//!    randomness and no storage, so every validator computes the same result;
//! 3. [`crate::tree::commit`] turns the writes into the new state root.
//!
//! The driver checks the signing key, nonces and the one authorization table ([`crate::auth`]) and
//! dispatches each payload to its domain ([`crate::token`], [`crate::registry`],
//! [`crate::market`]); each domain owns its reads, rules and writes. Rules (numbered LR-x.y in
//! `docs/ledger-rules.md` and MC-x.y in `docs/market-chain-rules.md`, cited at the branches): a
//! transaction's signature and chain id are checked before execution (a bad one invalidates
//! the block); in execution, a wrong nonce rejects it without consuming the nonce; any other
//! failure rejects it *and* consumes the nonce, so a rejected transaction can never take
//! effect later, and changes nothing else.
//!
//! Invariant, asserted after every block: money is conserved. The change of the sum of the
//! touched balances equals what was minted minus what was burned, and the total supply moves by
//! exactly that.

pub use crate::working::Prefetched;
use crate::{
    keys::StateKey,
    market_state::MarketClock,
    state::{AccountState, ChainConfig, Head, encode_value},
    tree::{self, TreeError, WriteSet},
    working::Working,
};
use bcte_types::{
    Amount, Block, ChainId, FeederId, Genesis, GenesisError, Hash, Header, Height, Interval,
    Outcome, Payload, Receipt, RejectReason, SignatureError, Tx, block::receipts_root,
};
use commonware_codec::{Copying, DecodeExt};
use jmt::storage::{NodeBatch, TreeReader};
use std::collections::BTreeSet;
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

/// What every handler of a block knows: its height, its timestamp and market time, and the
/// chain's configuration.
#[derive(Clone, Debug)]
pub struct BlockContext {
    /// The block's height.
    pub height: Height,
    /// The block's timestamp (ms since the Unix epoch).
    pub block_ms: u64,
    /// The block's market time (MC-1.1).
    pub now_ms: u64,
    /// The chain's configuration.
    pub config: ChainConfig,
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
    /// The state contradicts an invariant the ledger keeps (a bug, never a transaction's
    /// doing): every validator stops at the same block rather than diverge.
    #[error("ledger invariant broken: {0}")]
    Bug(String),
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

/// The keys a block's transactions name themselves, plus the chain-wide keys every block
/// uses: the first stage of [`plan_reads`].
pub fn reads_of(txs: &[Tx]) -> BTreeSet<StateKey> {
    let mut keys: BTreeSet<StateKey> = [
        StateKey::Config,
        StateKey::Supply,
        StateKey::MarketClock,
        StateKey::Feeders,
    ]
    .into();
    for tx in txs {
        keys.insert(StateKey::Account(tx.body().sender));
        crate::identity::reads_of(&tx.body().payload, &mut keys);
        // MC-3.5: the feeder whose operator a DSO transaction must be.
        if let Some(f) = crate::identity::operated_feeder(&tx.body().payload) {
            keys.insert(StateKey::Feeder(f.clone()));
        }
        let schedule = |f: &bcte_types::FeederId| StateKey::Schedule(f.clone());
        match &tx.body().payload {
            Payload::Transfer { to, .. } | Payload::Mint { to, .. } => {
                keys.insert(StateKey::Account(*to));
            }
            Payload::Burn { .. }
            | Payload::Enroll(_)
            | Payload::RoleSet(_)
            | Payload::KeyRotate(_)
            | Payload::KeyReset(_)
            | Payload::AccountRevoke(_) => {}
            Payload::FeederRegister(op) => {
                keys.insert(StateKey::Feeder(op.feeder.clone()));
            }
            Payload::SitesRegister(op) => {
                keys.insert(StateKey::Feeder(op.feeder.clone()));
                keys.insert(StateKey::Sites(op.feeder.clone()));
                for site in &op.sites {
                    keys.insert(StateKey::Site(op.feeder.clone(), site.site.clone()));
                }
            }
            Payload::SiteDelegate(op) => {
                // AC-3.3: the delegate's roles.
                keys.insert(StateKey::Account(op.aggregator));
                keys.insert(schedule(&op.feeder));
                keys.insert(StateKey::Site(op.feeder.clone(), op.site.clone()));
            }
            Payload::SiteRevoke(op) => {
                keys.insert(schedule(&op.feeder));
                keys.insert(StateKey::Site(op.feeder.clone(), op.site.clone()));
            }
            Payload::EdgeLimit(op) => {
                keys.insert(schedule(&op.feeder));
                keys.insert(StateKey::Feeder(op.feeder.clone()));
            }
            Payload::MarketConfig(op) => {
                keys.insert(schedule(&op.feeder));
            }
            Payload::GridMode(op) => {
                keys.insert(schedule(&op.feeder));
            }
            Payload::UpstreamPrices(op) => {
                keys.insert(schedule(&op.feeder));
            }
            Payload::Bids(op) => {
                keys.insert(schedule(&op.feeder));
                keys.insert(StateKey::Debtors(op.feeder.clone()));
                // CT-3.3: a charger under an EV contract is bid for by the contract only.
                keys.insert(StateKey::Contracts(op.feeder.clone()));
                for b in &op.bids {
                    keys.insert(StateKey::Site(op.feeder.clone(), b.site.clone()));
                    keys.insert(StateKey::Book(op.feeder.clone(), b.interval));
                    let bucket = crate::keys::book_bucket(&b.site);
                    keys.insert(StateKey::Bids(op.feeder.clone(), b.interval, bucket));
                }
            }
            Payload::MeterRegister(op) => {
                // AC-1.4: the meter's account receives the meter role.
                keys.insert(StateKey::Account(op.meter));
                keys.insert(schedule(&op.feeder));
                keys.insert(StateKey::Site(op.feeder.clone(), op.site.clone()));
                keys.insert(StateKey::Meters(op.feeder.clone()));
                keys.insert(StateKey::Sites(op.feeder.clone()));
            }
            Payload::HeadEnd(op) => {
                keys.insert(StateKey::Account(op.account));
                keys.insert(StateKey::Feeder(op.feeder.clone()));
            }
            Payload::Reading(op) => {
                let (f, k) = (&op.feeder, op.interval);
                reading_keys(&mut keys, f, k, std::iter::once(&op.site));
                keys.insert(StateKey::Site(f.clone(), op.site.clone()));
            }
            Payload::MeterBatch(op) => {
                let (f, k) = (&op.feeder, op.interval);
                reading_keys(&mut keys, f, k, op.readings.iter().map(|r| &r.site));
            }
            Payload::ContractP2p(op) => {
                let f = &op.terms.feeder;
                keys.insert(schedule(f));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Contracts(f.clone()));
            }
            Payload::ContractCancel(op) => {
                let f = &op.feeder;
                keys.insert(schedule(f));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Contracts(f.clone()));
            }
            Payload::ContractEv(op) => {
                let f = &op.terms.feeder;
                // AC-3.3: the provider's roles.
                keys.insert(StateKey::Account(op.terms.provider));
                keys.insert(schedule(f));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Meters(f.clone()));
                keys.insert(StateKey::Contracts(f.clone()));
            }
            Payload::FlexRequest(op) => {
                let f = &op.feeder;
                keys.insert(schedule(f));
                keys.insert(StateKey::Feeder(f.clone()));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Flex(f.clone()));
            }
            Payload::FlexOffer(op) => {
                let f = &op.feeder;
                keys.insert(schedule(f));
                keys.insert(StateKey::Feeder(f.clone()));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Flex(f.clone()));
                for site in &op.sites {
                    keys.insert(StateKey::Site(f.clone(), site.clone()));
                }
            }
            Payload::FlexAccept(op) => {
                let f = &op.feeder;
                keys.insert(schedule(f));
                keys.insert(StateKey::Feeder(f.clone()));
                keys.insert(StateKey::Sites(f.clone()));
                keys.insert(StateKey::Flex(f.clone()));
            }
            Payload::SettlementAdjust(op) => {
                let f = &op.feeder;
                for key in [
                    schedule(f),
                    StateKey::Site(f.clone(), op.site.clone()),
                    StateKey::Feeder(f.clone()),
                    StateKey::Sites(f.clone()),
                    StateKey::Settling(f.clone(), op.interval),
                    StateKey::Debtors(f.clone()),
                ] {
                    keys.insert(key);
                }
            }
        }
    }
    keys
}

/// The keys a reading of sites `sites` for interval `k` of feeder `f` names (ST-1.4).
fn reading_keys<'a>(
    keys: &mut BTreeSet<StateKey>,
    f: &bcte_types::FeederId,
    k: bcte_types::Interval,
    sites: impl Iterator<Item = &'a bcte_types::SiteId>,
) {
    for key in [
        StateKey::Schedule(f.clone()),
        StateKey::Feeder(f.clone()),
        StateKey::Sites(f.clone()),
        StateKey::Meters(f.clone()),
        StateKey::Settling(f.clone(), k),
        StateKey::Result(f.clone(), k),
        StateKey::Debtors(f.clone()),
        StateKey::Flex(f.clone()),
        StateKey::Contracts(f.clone()),
    ] {
        keys.insert(key);
    }
    let buckets: BTreeSet<u16> = sites.map(crate::keys::book_bucket).collect();
    for b in buckets {
        keys.insert(StateKey::Readings(f.clone(), k, b));
        keys.insert(StateKey::Results(f.clone(), k, b));
        keys.insert(StateKey::Settled(f.clone(), k, b));
    }
}

/// The block's market time, if the clock is known from what was read (MC-1.1).
fn market_time(pre: &Prefetched, block_ms: u64) -> Result<Option<u64>, ExecError> {
    let clock = pre.peek_decode::<MarketClock>(&StateKey::MarketClock)?;
    Ok(clock.map(|c| c.unwrap_or(MarketClock::REAL_TIME).market_time(block_ms)))
}

/// Every key the block `info` of `txs` needs, given the values `pre` holds so far. Reading
/// them and asking again eventually asks for nothing new; [`run`] does exactly that.
pub fn plan_reads(
    pre: &Prefetched,
    info: BlockInfo,
    txs: &[Tx],
) -> Result<BTreeSet<StateKey>, ExecError> {
    let mut keys = reads_of(txs);
    let now_ms = market_time(pre, info.timestamp_ms)?;
    keys.extend(crate::market::plan_reads(pre, now_ms, txs)?);
    keys.extend(crate::settle::plan_reads(pre, now_ms, txs)?);
    keys.extend(crate::contract::plan_party_reads(pre, txs)?);
    // ST-5.3: what an account in debt receives pays its creditors: every account read brings
    // the market accounts it owes.
    let mut creditors = BTreeSet::new();
    for key in &keys {
        if let StateKey::Account(_) = key
            && let Some(Some(a)) = pre.peek_decode::<AccountState>(key)?
        {
            for p in a.positions.iter().filter(|p| p.amount < 0) {
                creditors.insert(StateKey::Account(p.market));
            }
        }
    }
    keys.extend(creditors);
    Ok(keys)
}

/// The result of applying a block: the state writes and one receipt per transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// The state changes.
    pub writes: WriteSet,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// What the market's end-of-block work did, in order (facts for the shell's metrics; they
    /// are in the writes too and in no root).
    pub market: Vec<MarketEvent>,
}

/// One piece of a block's end-of-block market work (MC-7, ST-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketEvent {
    /// Interval `interval` of `feeder` cleared (MC-7).
    Cleared {
        /// The feeder.
        feeder: FeederId,
        /// The interval.
        interval: Interval,
        /// Its gate closure, in market time (ms since the Unix epoch).
        gate_ms: u64,
        /// The site bids it cleared (the upstream grid's not counted).
        bids: u32,
    },
    /// Interval `interval` of `feeder` settled (ST-2).
    Settled {
        /// The feeder.
        feeder: FeederId,
        /// The interval.
        interval: Interval,
        /// The sites settled.
        sites: u32,
        /// Those settled on their schedule for want of a reading (ST-3.1).
        estimated: u32,
    },
}

/// Hooks around each piece of end-of-block market work, for a shell that measures it: the
/// core calls [`Probe::begin`] before clearing or settling an interval and [`Probe::end`] after
/// (with what was done, or `None` if the block could not do it yet). The core itself reads no
/// clock; `()` is the probe that measures nothing.
pub trait Probe {
    /// A piece of work begins.
    fn begin(&mut self) {}
    /// The piece of work begun last is done.
    fn end(&mut self, _done: Option<&MarketEvent>) {}
}

impl Probe for () {}

/// Applies `txs` as the block described by `info` to the prefetched state, which must hold
/// every key [`plan_reads`] asks for.
///
/// The caller has already checked every transaction's chain id and signature. Each transaction
/// gets a receipt; none can make this fail. An error means the machinery failed (a key missing
/// from `pre`, a corrupt stored value, a broken invariant), and the block must not be voted on
/// or committed.
pub fn apply(pre: &Prefetched, info: BlockInfo, txs: &[Tx]) -> Result<Execution, ExecError> {
    apply_probed(pre, info, txs, &mut ())
}

/// [`apply`], calling `probe` around each piece of end-of-block market work.
pub fn apply_probed(
    pre: &Prefetched,
    info: BlockInfo,
    txs: &[Tx],
    probe: &mut dyn Probe,
) -> Result<Execution, ExecError> {
    let config: ChainConfig = pre.decode(&StateKey::Config)?.ok_or(ExecError::NoConfig)?;
    let supply: Amount = pre.decode(&StateKey::Supply)?.unwrap_or(Amount::ZERO);
    let clock = pre
        .decode::<MarketClock>(&StateKey::MarketClock)?
        .unwrap_or(MarketClock::REAL_TIME);
    let ctx = BlockContext {
        height: info.height,
        block_ms: info.timestamp_ms,
        now_ms: clock.market_time(info.timestamp_ms),
        config,
    };
    let mut w = Working::new(pre, supply);

    let mut receipts = Vec::with_capacity(txs.len());
    for tx in txs {
        let outcome = match apply_tx(&mut w, &ctx, tx)? {
            Ok(()) => Outcome::Accepted,
            Err(reason) => Outcome::Rejected(reason),
        };
        receipts.push(Receipt {
            tx_hash: tx.hash(),
            outcome,
        });
    }
    // MC-7, MC-8: after the transactions, the intervals whose gate closed are cleared.
    crate::market::end_of_block(&mut w, &ctx, probe)?;

    // LR-4: conservation over every balance any domain touched.
    w.assert_conserved(info.height)?;

    let (mut writes, market) = w.into_writes();
    let head = Head {
        height: info.height,
        timestamp_ms: info.timestamp_ms,
        parent: info.parent,
    };
    writes.insert(StateKey::Head, Some(encode_value(&head)));
    Ok(Execution {
        writes,
        receipts,
        market,
    })
}

/// Applies one transaction: `Ok(Ok(()))` accepted, `Ok(Err(reason))` rejected.
fn apply_tx(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    tx: &Tx,
) -> Result<Result<(), RejectReason>, ExecError> {
    let body = tx.body();
    let sender = w.money.account(w.pre, body.sender)?;

    // LR-2.3, AC-4.2, AC-5.1: signed with the account's current key, by an account not
    // revoked; a failure changes nothing, not even the nonce.
    if let Err(reason) = crate::auth::check_signer(body.sender, tx.signing_account(), &sender) {
        return Ok(Err(reason));
    }
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
    w.money.set_nonce(w.pre, body.sender, next)?;

    // AC-3: one table decides who may send what.
    if let Err(reason) = crate::auth::authorize(&sender, body.payload.tx_kind()) {
        return Ok(Err(reason));
    }
    let from = body.sender;
    // MC-3.5: a DSO acts on the feeders it operates only.
    if let Some(f) = crate::identity::operated_feeder(&body.payload)
        && let Err(reason) = crate::identity::check_operator(w, from, f)?
    {
        return Ok(Err(reason));
    }
    match &body.payload {
        Payload::Transfer { to, amount } => crate::token::transfer(w, from, *to, *amount),
        Payload::Mint { to, amount } => crate::token::mint(w, *to, *amount),
        Payload::Burn { amount } => crate::token::burn(w, from, *amount),
        Payload::FeederRegister(op) => crate::registry::register_feeder(w, ctx, from, op),
        Payload::SitesRegister(op) => crate::registry::register_sites(w, op),
        Payload::SiteDelegate(op) => crate::registry::delegate(w, ctx, from, op),
        Payload::SiteRevoke(op) => crate::registry::revoke(w, ctx, from, op),
        Payload::EdgeLimit(op) => crate::registry::edge_limit(w, ctx, op),
        Payload::MarketConfig(op) => crate::market::configure(w, ctx, op),
        Payload::GridMode(op) => crate::market::set_mode(w, ctx, op),
        Payload::UpstreamPrices(op) => crate::market::post_prices(w, ctx, op),
        Payload::Bids(op) => crate::market::bid(w, ctx, from, op),
        Payload::MeterRegister(op) => crate::settle::register_meter(w, op),
        Payload::HeadEnd(op) => crate::settle::set_head_end(w, op),
        Payload::Reading(op) => crate::settle::reading(w, ctx, from, op),
        Payload::MeterBatch(op) => crate::settle::batch(w, ctx, from, op),
        Payload::SettlementAdjust(op) => crate::settle::adjust(w, op),
        Payload::ContractP2p(op) => crate::contract::enter(w, ctx, from, op),
        Payload::ContractCancel(op) => crate::contract::cancel(w, ctx, from, op),
        Payload::FlexRequest(op) => crate::flex::post(w, ctx, op),
        Payload::FlexOffer(op) => crate::flex::offer(w, ctx, from, op),
        Payload::FlexAccept(op) => crate::flex::accept(w, ctx, op),
        Payload::ContractEv(op) => crate::ev::enter(w, ctx, from, op),
        Payload::Enroll(op) => crate::identity::enroll(w, ctx.height, op),
        Payload::RoleSet(op) => crate::identity::role_set(w, from, op),
        Payload::KeyRotate(op) => crate::identity::rotate(w, from, op),
        Payload::KeyReset(op) => crate::identity::reset(w, op),
        Payload::AccountRevoke(op) => crate::identity::revoke(w, from, op),
    }
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
    // MC-1: a chain whose market clock runs at real time stores none (its genesis state is
    // then what it was before markets existed).
    if genesis.market_clock_speed != 1 {
        let clock = MarketClock {
            genesis_time_ms: genesis.genesis_time_ms,
            speed: genesis.market_clock_speed,
        };
        writes.insert(StateKey::MarketClock, Some(encode_value(&clock)));
    }
    // AC-1.3: the genesis members: its DSO, its registrar, its validators, and the roles its
    // allocations name.
    let mut accounts: std::collections::BTreeMap<bcte_types::AccountId, AccountState> =
        std::collections::BTreeMap::new();
    let mut grant = |id, roles: bcte_types::Roles| {
        let a = accounts.entry(id).or_default();
        a.roles = a.roles.union(roles);
    };
    use bcte_types::{Role, Roles};
    grant(genesis.authority, Roles::one(Role::Dso));
    grant(
        genesis.registrar.unwrap_or(genesis.authority),
        Roles::one(Role::Registrar),
    );
    for v in &genesis.validators {
        grant(v.public_key, Roles::one(Role::Validator));
    }
    for a in &genesis.allocations {
        grant(a.account, a.roles);
    }
    for a in &genesis.allocations {
        accounts.entry(a.account).or_default().balance = a.amount;
    }
    for (id, state) in &accounts {
        writes.insert(StateKey::Account(*id), Some(encode_value(state)));
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
    run_probed(reader, info, txs, &mut ())
}

/// [`run`], calling `probe` around each piece of end-of-block market work.
pub fn run_probed<R: TreeReader>(
    reader: &R,
    info: BlockInfo,
    txs: &[Tx],
    probe: &mut dyn Probe,
) -> Result<Executed, ExecError> {
    let parent_height = info.height.previous().ok_or(ExecError::GenesisHeight)?;
    let pre = read_planned(reader, parent_height, info, txs)?;
    let execution = apply_probed(&pre, info, txs, probe)?;
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
    verify_block_with(reader, parent, block, chain_id, rng, |_| false, &mut ())
}

/// [`verify_block`] for a caller that has already checked some of the block's signatures (a
/// validator's mempool holds transactions whose signatures it checked on admission):
/// `already_checked(tx)` says so for a transaction with exactly these body and signature bytes,
/// and only the others are verified (in one batch). The chain id of every transaction is still
/// checked. With `|_| false` this is exactly [`verify_block`]. `probe` is called around each
/// piece of end-of-block market work ([`Probe`]).
pub fn verify_block_with<R: TreeReader>(
    reader: &R,
    parent: &Header,
    block: &Block,
    chain_id: &ChainId,
    rng: &mut impl rand_core::CryptoRng,
    already_checked: impl Fn(&Tx) -> bool,
    probe: &mut dyn Probe,
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
    let executed = run_probed(reader, BlockInfo::of(block.header()), block.txs(), probe)?;
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

/// Reads, stage by stage, every key [`plan_reads`] asks for, from the state at
/// `parent_height`.
pub fn read_planned<R: TreeReader>(
    reader: &R,
    parent_height: Height,
    info: BlockInfo,
    txs: &[Tx],
) -> Result<Prefetched, ExecError> {
    let mut pre = Prefetched::default();
    loop {
        let missing: Vec<StateKey> = plan_reads(&pre, info, txs)?
            .into_iter()
            .filter(|k| !pre.contains(k))
            .collect();
        if missing.is_empty() {
            return Ok(pre);
        }
        for key in missing {
            let value = tree::read_value(reader, parent_height, &key)?;
            pre.insert(key, value);
        }
    }
}

/// Decodes a stored account value (for readers outside execution: the API, the audit).
pub fn decode_account(bytes: &[u8]) -> Option<AccountState> {
    AccountState::decode(Copying(bytes)).ok()
}
