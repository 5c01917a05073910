//! Wiring of one validator: p2p channels, block broadcast, marshal, simplex, the application,
//! the finalizer and transaction gossip.
//!
//! [`start`] is generic over the runtime (tokio in production, commonware's deterministic runtime
//! in simulation) and over the p2p network (authenticated `lookup` on real sockets, `simulated`
//! in tests), so the exact same code runs a dev chain of one validator, a local network and the
//! deterministic simulation. Nothing here is a dev shortcut.

use crate::{
    app::{App, Scheme, Shared},
    chain_block::{ChainBlock, Digest, PublicKey},
    finalizer::Finalizer,
    gossip,
};
use bcte_store::Store;
use bcte_types::{BlockLimits, ChainId, tx::TX_BYTES_LIMIT};
use commonware_broadcast::buffered;
use commonware_consensus::{
    marshal::{
        self,
        core::{Actor as MarshalActor, Mailbox as MarshalMailbox},
        resolver::p2p as marshal_resolver,
        standard::{Deferred, Standard},
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, FixedEpocher, Height as ConsensusHeight, ViewDelta},
};
use commonware_cryptography::{
    Digested, Sha256, Signer as _,
    certificate::{ConstantProvider, Verifier as _},
    ed25519,
};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    Clock, Handle, Metrics, Quota, Spawner, Storage, buffer::paged::CacheRef,
};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZU16, NZU32, NZU64, NZUsize, ordered::Set, vec::NonEmptyVec};
use rand::{CryptoRng, Rng};
use std::{
    num::{NonZeroU16, NonZeroU64, NonZeroUsize},
    sync::Arc,
    time::Duration,
};
use tracing::info;

/// The consensus signing namespace of a chain. Votes and certificates of one chain are worthless
/// on another, even with the same validators. Changing it is a breaking change.
pub fn consensus_namespace(chain_id: &ChainId) -> Vec<u8> {
    format!("bcte/consensus/v1/{chain_id}").into_bytes()
}

/// The p2p handshake namespace of a chain.
pub fn p2p_namespace(chain_id: &ChainId) -> Vec<u8> {
    format!("bcte/p2p/v1/{chain_id}").into_bytes()
}

/// Simplex votes.
pub const CH_VOTES: u64 = 0;
/// Simplex certificates.
pub const CH_CERTS: u64 = 1;
/// Simplex's fetcher of missing certificates.
pub const CH_RESOLVER: u64 = 2;
/// Marshal's backfill of missing blocks and finalizations.
pub const CH_BACKFILL: u64 = 3;
/// Block dissemination (buffered broadcast).
pub const CH_BROADCAST: u64 = 4;
/// Transaction gossip.
pub const CH_TXS: u64 = 5;
/// Every channel, in registration order.
pub const CHANNELS: [u64; 6] = [
    CH_VOTES,
    CH_CERTS,
    CH_RESOLVER,
    CH_BACKFILL,
    CH_BROADCAST,
    CH_TXS,
];

/// Per-peer rate limit of a channel. Quotas also size receive buffers, so they are realistic
/// values, never `u32::MAX` (ENGINE-NOTES pitfall 3).
pub fn quota(channel: u64) -> Quota {
    match channel {
        CH_VOTES | CH_CERTS => Quota::per_second(NZU32!(2_048)),
        CH_RESOLVER => Quota::per_second(NZU32!(256)),
        CH_BACKFILL | CH_BROADCAST => Quota::per_second(NZU32!(1_024)),
        _ => Quota::per_second(NZU32!(8_192)),
    }
}

/// The largest message any component sends, for the network's `max_message_size`.
pub fn max_message_size(participants: u32, limits: &BlockLimits) -> u32 {
    commonware_p2p::max_message_size(&[
        simplex::max_payload_size::<Scheme, Digest>(participants),
        marshal::max_payload_size::<Standard<ChainBlock>, Scheme>(participants, limits),
        gossip::max_message_size(TX_BYTES_LIMIT),
    ])
}

const PAGE_SIZE: NonZeroU16 = NZU16!(4_096);
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(1_024);
const IO_BUFFER: NonZeroUsize = NZUsize!(64 * 1024);
const REPLAY_BUFFER: NonZeroUsize = NZUsize!(1024 * 1024);
/// Items per archive section; fixed for the life of a data directory.
const IMMUTABLE_ITEMS_PER_SECTION: NonZeroU64 = NZU64!(4_096);
const PRUNABLE_ITEMS_PER_SECTION: NonZeroU64 = NZU64!(1_024);
/// One epoch: the validator set is fixed at genesis.
const EPOCH_LENGTH: NonZeroU64 = NZU64!(u64::MAX);

/// Consensus timeouts. The happy path does not wait on them (it is bound by the network and
/// disk); they decide how fast a crashed or slow leader is skipped.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long to wait for the leader's proposal.
    pub leader_timeout: Duration,
    /// How long to wait for a notarized proposal to be certified.
    pub certification_timeout: Duration,
    /// How often to retry after a timeout.
    pub timeout_retry: Duration,
    /// After how long a silent leader's remaining term is skipped.
    pub skip_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            leader_timeout: Duration::from_millis(2_000),
            certification_timeout: Duration::from_millis(3_000),
            timeout_retry: Duration::from_millis(1_000),
            skip_timeout: Duration::from_millis(10_000),
        }
    }
}

/// What a validator needs to run.
pub struct ValidatorConfig {
    /// The validator's key (p2p identity and consensus votes).
    pub signer: ed25519::PrivateKey,
    /// The validator set.
    pub participants: Set<PublicKey>,
    /// The chain id (namespaces).
    pub chain_id: ChainId,
    /// Prefix of every consensus storage partition (several nodes may share one runtime).
    pub partition_prefix: String,
    /// Consensus timeouts.
    pub timing: Timing,
    /// The genesis block.
    pub genesis: ChainBlock,
    /// Block limits.
    pub limits: BlockLimits,
}

/// One sender/receiver pair per channel.
pub struct Channels<S, R> {
    /// [`CH_VOTES`].
    pub votes: (S, R),
    /// [`CH_CERTS`].
    pub certificates: (S, R),
    /// [`CH_RESOLVER`].
    pub resolver: (S, R),
    /// [`CH_BACKFILL`].
    pub backfill: (S, R),
    /// [`CH_BROADCAST`].
    pub broadcast: (S, R),
    /// [`CH_TXS`].
    pub txs: (S, R),
}

/// A running validator.
pub struct Running {
    /// Every long-running task. Any of them ending means the node stopped.
    pub handles: Vec<Handle<()>>,
    /// Marshal's mailbox (finalizations, blocks).
    pub marshal: MarshalMailbox<Scheme, Standard<ChainBlock>>,
    /// The gossip handle: send admitted transactions to peers.
    pub gossip: gossip::Outbox,
}

/// Initial slots of each archive's hash table. The table doubles as it fills (in steps of
/// 16,384 slots, spread over syncs), and its size is recorded in the archive's checkpoint, so
/// the initial size matters only when a data directory is created. Every start scans the
/// whole table: 4,096 slots (192 KiB) instead of the 65,536 of the storage crate's example
/// cut the simulation suite, which starts nodes thousands of times, from 67 s to 42 s.
const ARCHIVE_TABLE_INITIAL_SIZE: u32 = 4_096;

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: ARCHIVE_TABLE_INITIAL_SIZE,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 16_384,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 256 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: IMMUTABLE_ITEMS_PER_SECTION,
        freezer_key_write_buffer: IO_BUFFER,
        freezer_value_write_buffer: IO_BUFFER,
        ordinal_write_buffer: IO_BUFFER,
        replay_buffer: REPLAY_BUFFER,
        codec_config,
    }
}

/// A validator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The validator's key is not in the validator set.
    #[error("this node's key is not in the validator set")]
    NotAValidator,
    /// The validator set is empty.
    #[error("the validator set is empty")]
    NoValidators,
    /// A consensus archive could not be opened (damaged or unreadable storage).
    #[error("cannot open the consensus archive {name:?} (under consensus/): {reason}")]
    Archive {
        /// The archive.
        name: &'static str,
        /// The storage error.
        reason: String,
    },
}

/// Starts every actor of a validator and returns their handles.
pub async fn start<E, S, R, P, B, St>(
    context: E,
    cfg: ValidatorConfig,
    shared: Arc<Shared<St>>,
    channels: Channels<S, R>,
    peer_provider: P,
    blocker: B,
) -> Result<Running, StartError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng + Rng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    St: Store,
{
    let me = cfg.signer.public_key();
    let prefix = cfg.partition_prefix.clone();
    let namespace = consensus_namespace(&cfg.chain_id);
    let scheme = Scheme::signer(&namespace, cfg.participants.clone(), cfg.signer.clone())
        .ok_or(StartError::NotAValidator)?;
    let epocher = FixedEpocher::new(EPOCH_LENGTH);
    let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);

    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size: NZUsize!(1_024),
            deque_size: 16,
            priority: false,
            codec_config: cfg.limits,
            peer_provider: peer_provider.clone(),
            strategy: Sequential,
        },
    );
    let broadcast_handle = broadcast_engine.start(channels.broadcast);

    let genesis_digest = cfg.genesis.0.hash();
    let marshal = start_marshal(
        &context,
        &prefix,
        scheme.clone(),
        &cfg.genesis,
        cfg.limits,
        &shared,
        channels.backfill,
        peer_provider.clone(),
        blocker.clone(),
        me.clone(),
        Some(buffer),
        page_cache.clone(),
    )
    .await?;
    let marshal_mailbox = marshal.mailbox.clone();

    let app = App::new(shared.clone());
    let deferred = Deferred::new(
        context.child("deferred"),
        app,
        marshal_mailbox.clone(),
        epocher,
    );

    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: blocker.clone(),
            automaton: deferred.clone(),
            relay: deferred.clone(),
            reporter: deferred,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(1_024),
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(genesis_digest),
            replay_buffer: REPLAY_BUFFER,
            write_buffer: IO_BUFFER,
            page_cache,
            leader_timeout: cfg.timing.leader_timeout,
            certification_timeout: cfg.timing.certification_timeout,
            timeout_retry: cfg.timing.timeout_retry,
            view_retention: ViewDelta::new(256),
            skip: SkipPolicy::Enabled {
                timeout: cfg.timing.skip_timeout,
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::SilentLeader,
            track_historical_votes: false,
        },
    );
    let simplex_handle = engine.start(channels.votes, channels.certificates, channels.resolver);

    let (gossip_handle, outbox) = gossip::start(context.child("gossip"), shared, channels.txs);

    info!(validators = cfg.participants.len(), genesis = %genesis_digest, "validator started");
    let mut handles = marshal.handles;
    handles.extend([broadcast_handle, simplex_handle, gossip_handle]);
    Ok(Running {
        handles,
        marshal: marshal_mailbox,
        gossip: outbox,
    })
}

/// Marshal with its archives and resolver, and the finalizer it delivers to: what validators
/// and full nodes share.
struct Marshal {
    mailbox: MarshalMailbox<Scheme, Standard<ChainBlock>>,
    handles: Vec<Handle<()>>,
}

#[allow(clippy::too_many_arguments)]
async fn start_marshal<E, S, R, P, B, St>(
    context: &E,
    prefix: &str,
    scheme: Scheme,
    genesis: &ChainBlock,
    limits: BlockLimits,
    shared: &Arc<Shared<St>>,
    backfill: (S, R),
    peer_provider: P,
    blocker: B,
    me: PublicKey,
    buffer: Option<buffered::Mailbox<PublicKey, ChainBlock>>,
    page_cache: CacheRef,
) -> Result<Marshal, StartError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng + Rng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    St: Store,
{
    // Marshal's durable stores of finalized blocks and certificates.
    let finalizations = immutable::Archive::init(
        context.child("finalizations"),
        archive_config(
            prefix,
            "finalizations",
            page_cache.clone(),
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .map_err(|e| StartError::Archive {
        name: "finalizations",
        reason: e.to_string(),
    })?;
    let blocks = immutable::Archive::init(
        context.child("blocks"),
        archive_config(prefix, "blocks", page_cache.clone(), limits),
    )
    .await
    .map_err(|e| StartError::Archive {
        name: "blocks",
        reason: e.to_string(),
    })?;

    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: me,
            peer_provider,
            blocker,
            mailbox_size: NZUsize!(1_024),
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        backfill,
    );

    let genesis_digest = genesis.0.hash();
    let (actor, mailbox, floor) = MarshalActor::<_, Standard<ChainBlock>, _, _, _, _, _>::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::<Scheme, Epoch>::new(scheme),
            epocher: FixedEpocher::new(EPOCH_LENGTH),
            start: marshal::Start::Genesis(Digested::precomputed(genesis.clone(), genesis_digest)),
            partition_prefix: prefix.to_string(),
            mailbox_size: NZUsize!(1_024),
            view_retention: ViewDelta::new(256),
            prunable_items_per_section: PRUNABLE_ITEMS_PER_SECTION,
            page_cache,
            replay_buffer: REPLAY_BUFFER,
            key_write_buffer: IO_BUFFER,
            value_write_buffer: IO_BUFFER,
            block_codec_config: limits,
            max_repair: NZUsize!(64),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;
    info!(processed = ?floor.processed(), "marshal ready");

    let (finalizer, finalizer_mailbox) = Finalizer::new(
        shared.executor.clone(),
        shared.mempool.clone(),
        crate::market_metrics::MarketMetrics::register(&context.child("market")),
    );
    let finalizer_marshal = mailbox.clone();
    let finalizer_handle = context.child("finalizer").spawn(move |ctx| async move {
        // A fatal error was logged by the finalizer; ending this task stops the node.
        let _ = finalizer.run(finalizer_marshal, ctx).await;
    });
    let marshal_handle = match buffer {
        Some(buffer) => actor.start(finalizer_mailbox, buffer, resolver),
        None => actor.start_unbuffered(finalizer_mailbox, resolver),
    };
    Ok(Marshal {
        mailbox,
        handles: vec![marshal_handle, finalizer_handle],
    })
}

/// What a full node needs to run.
pub struct FollowerConfig {
    /// The node's p2p identity (not a validator key).
    pub identity: ed25519::PrivateKey,
    /// The validator set, whose certificates it checks.
    pub participants: Set<PublicKey>,
    /// The chain id (namespaces).
    pub chain_id: ChainId,
    /// Prefix of every consensus storage partition.
    pub partition_prefix: String,
    /// The genesis block.
    pub genesis: ChainBlock,
    /// Block limits.
    pub limits: BlockLimits,
}

/// How often a full node asks validators for the next finalized blocks.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// How many heights ahead of its tip a full node asks for at a time.
pub const FOLLOW_AHEAD: u64 = 16;

/// Reads and drops everything arriving on a channel this node does not use.
///
/// Validators send votes, certificates and blocks to every connected peer, full nodes included,
/// and the p2p layer closes a connection that delivers a message on a channel the receiver has
/// not registered. A full node therefore registers every channel and drains the ones it does
/// not use; unregistered, its connections to the validators were closed within ~100 ms of
/// every dial, and with them its backfill and transaction gossip.
fn drain<E: Spawner, R: Receiver>(context: E, mut receiver: R) -> Handle<()> {
    context.spawn(|_| async move { while receiver.recv().await.is_ok() {} })
}

/// Starts a full node: marshal fetches finalized blocks and their certificates from the
/// validators, checks every certificate against the validator set (a light client of its own),
/// and delivers the blocks to the finalizer, which executes and commits them like a validator
/// does. It never votes. Transactions submitted to it are gossiped to the validators. It uses
/// the backfill and transaction channels and drains the others (see [`drain`]).
pub async fn start_follower<E, S, R, P, B, St>(
    context: E,
    cfg: FollowerConfig,
    shared: Arc<Shared<St>>,
    channels: Channels<S, R>,
    peer_provider: P,
    blocker: B,
) -> Result<Running, StartError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng + Rng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    St: Store,
{
    let Channels {
        votes,
        certificates,
        resolver,
        backfill,
        broadcast,
        txs,
    } = channels;
    let mut handles: Vec<Handle<()>> = [votes, certificates, resolver, broadcast]
        .into_iter()
        .map(|(_, receiver)| drain(context.child("drain"), receiver))
        .collect();
    let me = cfg.identity.public_key();
    let verifier = Scheme::verifier(
        &consensus_namespace(&cfg.chain_id),
        cfg.participants.clone(),
    );
    let marshal = start_marshal(
        &context,
        &cfg.partition_prefix,
        verifier,
        &cfg.genesis,
        cfg.limits,
        &shared,
        backfill,
        peer_provider,
        blocker,
        me,
        None,
        CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES),
    )
    .await?;
    let targets = NonEmptyVec::try_from(cfg.participants.iter().cloned().collect::<Vec<_>>())
        .map_err(|_| StartError::NoValidators)?;
    let follow_marshal = marshal.mailbox.clone();
    let executor = shared.executor.clone();
    let follow_handle = context.child("follow").spawn(move |ctx| async move {
        loop {
            let tip = executor.tip().height.get();
            for h in tip + 1..=tip + FOLLOW_AHEAD {
                follow_marshal.hint_finalized(ConsensusHeight::new(h), targets.clone());
            }
            ctx.sleep(FOLLOW_INTERVAL).await;
        }
    });
    let (gossip_handle, outbox) = gossip::start(context.child("gossip"), shared, txs);
    info!(validators = cfg.participants.len(), "full node started");
    handles.extend(marshal.handles);
    handles.extend([follow_handle, gossip_handle]);
    Ok(Running {
        handles,
        marshal: marshal.mailbox,
        gossip: outbox,
    })
}
