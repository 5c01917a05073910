//! Whole-network simulation of bcte validators on the deterministic runtime, for tests and in-process runs.
//!
//! Validators in one process on commonware's deterministic runtime and simulated network, each
//! with an in-memory store that survives a simulated crash exactly as redb survives a real one
//! (committed batches kept, nothing else). The harness lives in its own crate so that the node
//! library that validators run ships none of it.
//!
//! The validators run the same [`engine::start`] as real nodes. A simulation is a function of its
//! seed: the runtime orders tasks and draws randomness from it, and time is simulated, so the
//! same seed gives the same blocks and the same state roots, and a failure reproduces from the
//! seed it prints ([`for_each_seed`]).
//!
//! Faults: [`SimNet::partition`] and [`SimNet::heal`] cut and restore links,
//! [`SimNet::set_links`] makes them lossy or slow, [`SimValidator::kill`] crashes one validator
//! (every task it spawned is aborted at once), and the deterministic runtime's
//! `start_and_recover` crashes all of them. [`Witness`] checks the invariants after each phase:
//! no two different blocks at one height, the same state root at every height, and every
//! transaction once reported final still final with the same receipt.
//!
//! Two kinds of crash, two kinds of storage loss. The application store ([`MemStore`]) keeps
//! exactly the committed batches in both. The consensus storage (the runtime's in-memory blobs)
//! is shared by every validator of a run: a single-validator [`SimValidator::kill`] loses what the
//! node still buffered in its own memory but keeps every blob write it had issued, synced or not
//! (as the operating system keeps a `kill -9`ed process's writes), while a whole-runtime crash
//! (`start_and_recover`) also drops the unsynced blob writes (a power cut).

pub use bcte_node::cert::sign_finalization as finalization;
use bcte_node::{
    app::{BuildParams, Shared},
    chain_block::{ChainBlock, PublicKey},
    engine::{self, Channels, Running, Timing, ValidatorConfig},
    executor::Executor,
    gossip,
    mempool::AdmitError,
};
use bcte_store::{ChainStore, MemStore, TxLocation};
use bcte_types::{
    AccountId, Allocation, Amount, BlockLimits, ChainId, Genesis, Hash, Height, Payload, Receipt,
    Tx, TxBody, Validator,
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_p2p::{
    Receiver, Sender,
    simulated::{self, Link, Network, Oracle},
};
use commonware_runtime::{
    Clock, Handle, Metrics as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZUsize, ordered::Set, probability};
use std::{
    collections::{BTreeMap, BTreeSet, btree_map::Entry},
    fmt::Write as _,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    sync::{Arc, Mutex, Once},
    time::Duration,
};
use tracing::{Event, Level, Metadata, field, level_filters::LevelFilter, span};

/// The runtime context of a simulation.
pub type Ctx = deterministic::Context;

/// The chain id of simulated chains.
pub const SIM_CHAIN: &str = "bcte-sim";

/// Seeds per scenario when `BCTE_SIM_SEEDS` is not set: 20, about 2 minutes of CPU for the
/// scenarios of `tests/sim.rs` and `tests/byzantine.rs` in a test build (a seed of a scenario
/// 0.3–1.5 s). Liveness races need more seeds to show up (a restart race in `app.rs`, since
/// fixed, failed 2 of 40 seeds of `more_than_f_down…`): run `BCTE_SIM_SEEDS=100` before a
/// release.
pub const SEEDS_DEFAULT: u64 = 20;

/// Key of validator `i` (deterministic: simulations are reproducible, never secret).
pub fn validator_key(i: u64) -> PrivateKey {
    PrivateKey::from_seed(i)
}

/// Key of funded test account `i`.
pub fn account_key(i: u64) -> PrivateKey {
    PrivateKey::from_seed(1_000_000 + i)
}

/// The genesis of a simulated chain of `validators` validators and `accounts` funded accounts.
pub fn genesis(validators: u64, accounts: u64) -> Genesis {
    let acct = |k: &PrivateKey| AccountId::from_public_key(&k.public_key());
    Genesis {
        chain_id: ChainId::new(SIM_CHAIN).expect("valid"),
        genesis_time_ms: 0,
        validators: (0..validators)
            .map(|i| Validator {
                name: format!("v{i}"),
                public_key: acct(&validator_key(i)),
            })
            .collect(),
        authority: acct(&account_key(0)),
        registrar: None,
        allocations: (0..accounts)
            .map(|i| Allocation {
                account: acct(&account_key(i)),
                amount: Amount(1_000_000_000),
                roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
            })
            .collect(),
        market_clock_speed: 1,
        currency: None,
    }
}

/// The seeds to run: `BCTE_SIM_SEED=S` runs only seed S (to reproduce a failure), otherwise
/// `0..BCTE_SIM_SEEDS` (default [`SEEDS_DEFAULT`]).
pub fn seeds() -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    if let Some(seed) = var("BCTE_SIM_SEED") {
        return vec![seed];
    }
    (0..var("BCTE_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect()
}

/// The runtime configuration of a run: the seed, and a generous bound on simulated time (a
/// stuck run fails on its own deadlines first).
pub fn config(seed: u64) -> deterministic::Config {
    deterministic::Config::default()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)))
}

/// Runs `run` once per seed of [`seeds`]. A failing seed does not stop the others; at the end
/// the test fails naming every failing seed and how to rerun one.
pub fn for_each_seed(scenario: &str, run: impl Fn(u64)) {
    init_log();
    let mut failed = Vec::new();
    let mut first = None;
    for seed in seeds() {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(seed))) {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("{scenario}: seed {seed} FAILED: {msg}");
            failed.push(seed);
            first.get_or_insert(payload);
        }
    }
    if let Some(payload) = first {
        eprintln!(
            "{scenario}: failing seeds {failed:?}; rerun one with BCTE_SIM_SEED={} \
             cargo test -p bcte-node --test <file> {scenario}",
            failed[0]
        );
        resume_unwind(payload);
    }
}

/// Prints the log events of every run to stderr when `BCTE_SIM_LOG` is set (once per process;
/// [`for_each_seed`] calls it). The value takes directives like `RUST_LOG`'s: a default level
/// and `target=level` pairs, the longest matching target prefix winning, e.g.
/// `BCTE_SIM_LOG=warn` or `BCTE_SIM_LOG=warn,bcte_node=debug,commonware_consensus=debug`.
/// Validators share one thread, so their events interleave unlabelled; run one seed of one
/// scenario (`BCTE_SIM_SEED`). Warnings such as "proposal failed certification" usually name
/// the fault.
pub fn init_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(spec) = std::env::var("BCTE_SIM_LOG") {
            // Another subscriber already installed (by the test) wins.
            let _ = tracing::subscriber::set_global_default(StderrLog::parse(&spec));
        }
    });
}

/// A minimal subscriber: events only (spans are ignored), filtered per target.
struct StderrLog {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl StderrLog {
    fn parse(spec: &str) -> Self {
        let mut log = Self {
            default: LevelFilter::WARN,
            targets: Vec::new(),
        };
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.parse() {
                        log.targets.push((target.to_string(), level));
                    }
                }
                None => {
                    if let Ok(level) = directive.parse() {
                        log.default = level;
                    }
                }
            }
        }
        // Longest prefix first.
        log.targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        log
    }

    fn filter(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| target.starts_with(t.as_str()))
            .map_or(self.default, |(_, l)| *l)
    }
}

struct Fields(String);

impl field::Visit for Fields {
    fn record_debug(&mut self, field: &field::Field, value: &dyn std::fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.0, " {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

impl tracing::Subscriber for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.filter(metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .chain([self.default])
            .max()
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let level = match *meta.level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN ",
            Level::INFO => "INFO ",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        eprintln!("{level} {}:{}", meta.target(), fields.0);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// A network link: latency, jitter and the percentage of messages delivered.
pub fn link(latency_ms: u64, jitter_ms: u64, delivered_percent: u64) -> Link {
    Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        success_rate: probability!(delivered_percent, 100),
    }
}

/// A LAN link: 10 ms ± 3 ms, no loss.
pub fn lan() -> Link {
    link(10, 3, 100)
}

/// One simulated validator: its durable store outlives its incarnations.
pub struct SimValidator {
    /// Its index (and key seed).
    pub index: u64,
    /// Its name: the prefix of its consensus storage partitions and its metrics label. Twins
    /// (two nodes with one key) have one index and two names.
    pub name: String,
    /// Its durable application store.
    pub store: MemStore,
    /// Its node state, while running.
    pub shared: Option<Arc<Shared<MemStore>>>,
    /// Its transaction gossip, while running.
    pub gossip: Option<gossip::Outbox>,
    /// The task every one of its actors descends from, while running.
    task: Option<Handle<()>>,
    /// Why it stopped on its own (a task of the node ended), if it did.
    exit: Arc<Mutex<Option<String>>>,
    /// How many times it was started (keeps metric labels unique).
    incarnation: u32,
}

impl SimValidator {
    /// A validator that has never run.
    pub fn new(index: u64) -> Self {
        Self::with_store(index, MemStore::new())
    }

    /// Validator `index` over an existing store (after a whole-network crash).
    pub fn with_store(index: u64, store: MemStore) -> Self {
        Self::named(index, format!("v{index}"), store)
    }

    /// Validator `index` with its own name (a twin: same key, separate storage).
    pub fn named(index: u64, name: String, store: MemStore) -> Self {
        Self {
            index,
            name,
            store,
            shared: None,
            gossip: None,
            task: None,
            exit: Arc::new(Mutex::new(None)),
            incarnation: 0,
        }
    }

    /// Whether it is running.
    pub const fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Why it stopped on its own, if it did (a fatal error, or a panic caught by the runtime).
    pub fn exited(&self) -> Option<String> {
        self.exit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The node state. Panics if it is not running.
    pub fn shared(&self) -> &Arc<Shared<MemStore>> {
        self.shared.as_ref().expect("validator is running")
    }

    /// The committed height (from its durable store, running or not).
    pub fn height(&self) -> Height {
        self.chain()
            .height()
            .expect("memory store reads")
            .unwrap_or_default()
    }

    /// The committed store.
    pub fn chain(&self) -> ChainStore<MemStore> {
        ChainStore::new(self.store.clone(), BlockLimits::default())
    }

    /// Crashes the validator: aborts the task every one of its actors descends from, so all of
    /// them stop at once, mid-flight, as in `kill -9`. The application store keeps exactly what
    /// was committed; see the module docs for the consensus storage.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.shared = None;
        self.gossip = None;
    }
}

/// The simulated network and its validators.
pub struct SimNet {
    /// The network's control handle.
    pub oracle: Oracle<PublicKey, Ctx>,
    /// The genesis every validator starts from.
    pub genesis: Genesis,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Block building.
    pub build: BuildParams,
    /// The link new and healed connections get.
    link: Mutex<Link>,
    /// The directed links that exist, by validator index.
    links: Mutex<BTreeSet<(u64, u64)>>,
}

/// The validator set of `genesis` as the engine wants it.
pub fn participants(genesis: &Genesis) -> Set<PublicKey> {
    Set::from_iter_dedup(
        genesis
            .validators
            .iter()
            .filter_map(|v| v.public_key.to_public_key()),
    )
}

/// The p2p identity of validator `i`.
pub fn peer(i: u64) -> PublicKey {
    validator_key(i).public_key()
}

/// The channels of one node on the simulated network.
pub type SimChannels = Channels<simulated::Sender<PublicKey, Ctx>, simulated::Receiver<PublicKey>>;

impl SimNet {
    /// Creates the network for `genesis` and links every pair of validators with `link`.
    pub async fn new(context: &Ctx, genesis: Genesis, link: Link) -> Self {
        let participants = participants(&genesis);
        let n = participants.len();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: engine::max_message_size(n as u32, &BlockLimits::default()),
                max_peers_per_set: NZUsize!(n.max(1)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            participants.clone(),
        )
        .await;
        network.start();
        // Short proposal waits keep simulated time short; the timeouts are the real ones.
        let build = BuildParams {
            propose_wait: Duration::from_millis(100),
            ..BuildParams::default()
        };
        let net = Self {
            oracle,
            genesis,
            timing: Timing::default(),
            build,
            link: Mutex::new(link),
            links: Mutex::new(BTreeSet::new()),
        };
        net.heal().await;
        net
    }

    /// Number of validators.
    pub fn validators(&self) -> u64 {
        self.genesis.validators.len() as u64
    }

    /// Replaces every link between validators with `link` (and links any pair that was cut).
    pub async fn set_links(&self, link: Link) {
        let existing: Vec<_> = self.lock_links().iter().copied().collect();
        for (a, b) in existing {
            self.oracle
                .remove_link(peer(a), peer(b))
                .await
                .expect("the link exists");
        }
        self.lock_links().clear();
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = link;
        self.heal().await;
    }

    /// Cuts every link between validators of different `groups` (in both directions). Validators
    /// in no group keep their links.
    pub async fn partition(&self, groups: &[&[u64]]) {
        let group_of = |i: u64| groups.iter().position(|g| g.contains(&i));
        let cut: Vec<_> = self
            .lock_links()
            .iter()
            .copied()
            .filter(|&(a, b)| matches!((group_of(a), group_of(b)), (Some(x), Some(y)) if x != y))
            .collect();
        for (a, b) in cut {
            self.oracle
                .remove_link(peer(a), peer(b))
                .await
                .expect("the link exists");
            self.lock_links().remove(&(a, b));
        }
    }

    /// Links every pair of validators that is not linked, with the current link.
    pub async fn heal(&self) {
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let n = self.validators();
        for a in 0..n {
            for b in 0..n {
                if a != b && !self.lock_links().contains(&(a, b)) {
                    self.oracle
                        .add_link(peer(a), peer(b), link.clone())
                        .await
                        .expect("link");
                    self.lock_links().insert((a, b));
                }
            }
        }
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, u64)>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers every channel of validator `index` (replacing a previous incarnation's).
    pub async fn register(&self, index: u64) -> SimChannels {
        let control = self.oracle.control(peer(index));
        let mut regs = Vec::new();
        for ch in engine::CHANNELS {
            regs.push(
                control
                    .register(ch, engine::quota(ch))
                    .await
                    .expect("register channel"),
            );
        }
        let mut regs = regs.into_iter();
        let mut next = || regs.next().expect("one registration per channel");
        Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            backfill: next(),
            broadcast: next(),
            txs: next(),
        }
    }

    /// A node's state over `store` (initialised with the genesis if empty) and an empty
    /// mempool, with the genesis block.
    pub fn node_state(&self, store: MemStore) -> (Arc<Shared<MemStore>>, ChainBlock) {
        let chain = ChainStore::new(store, BlockLimits::default());
        let state = chain.init(&self.genesis).expect("memory store initializes");
        let executor = Executor::new(chain, self.genesis.chain_id.clone()).expect("executor");
        let shared = Arc::new(Shared::new(executor, self.build));
        (shared, ChainBlock(Arc::new(state.block)))
    }

    /// Starts (or restarts) validator `v` from its store.
    pub async fn start(&self, context: &Ctx, v: &mut SimValidator) {
        let channels = self.register(v.index).await;
        self.start_with(context, v, channels).await;
    }

    /// Starts (or restarts) validator `v` from its store on the given channels (for twins, whose
    /// channels are split between two nodes).
    pub async fn start_with<S, R>(
        &self,
        context: &Ctx,
        v: &mut SimValidator,
        channels: Channels<S, R>,
    ) where
        S: Sender<PublicKey = PublicKey>,
        R: Receiver<PublicKey = PublicKey>,
    {
        assert!(!v.is_running(), "{} is already running", v.name);
        let key = validator_key(v.index);
        let limits = BlockLimits::default();
        let (shared, genesis_block) = self.node_state(v.store.clone());
        let cfg = ValidatorConfig {
            signer: key.clone(),
            participants: participants(&self.genesis),
            chain_id: self.genesis.chain_id.clone(),
            partition_prefix: v.name.clone(),
            timing: self.timing,
            genesis: genesis_block,
            limits,
        };
        let manager = self.oracle.manager();
        let blocker = self.oracle.control(key.public_key());
        let node = shared.clone();
        let exit = v.exit.clone();
        *exit.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (started, on_started) = futures::channel::oneshot::channel();
        v.incarnation += 1;
        // Every actor is spawned from this task's context, so aborting the task stops the whole
        // node at once, like a process dying.
        let task = context
            .child("validator")
            .with_attribute("node", &v.name)
            .with_attribute("incarnation", v.incarnation)
            .spawn(move |ctx| async move {
                let Running {
                    handles, gossip, ..
                } = engine::start(ctx, cfg, node, channels, manager, blocker)
                    .await
                    .expect("a simulated validator starts");
                let _ = started.send(gossip);
                // Any actor ending means the node stopped; returning aborts the others.
                let (result, i, _) =
                    futures::future::select_all(handles.into_iter().map(Box::pin)).await;
                *exit.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("actor #{i} ended: {result:?}"));
            });
        let gossip = on_started.await.expect("the validator starts");
        v.shared = Some(shared);
        v.gossip = Some(gossip);
        v.task = Some(task);
    }
}

/// The committed heights of `vs`.
pub fn heights(vs: &[&SimValidator]) -> Vec<u64> {
    vs.iter().map(|v| v.height().get()).collect()
}

/// The current consensus view of every running validator, by name (from the runtime's
/// metrics). For failure messages: validators stuck in different views show that a quorum of
/// votes for one view never formed (say an honest validator failed to certify a block the
/// others certified, so it nullifies a view they left).
pub fn views(context: &Ctx) -> BTreeMap<String, u64> {
    context
        .encode()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("validator_simplex_voter_state_current_view{")?;
            let (labels, value) = rest.split_once("} ")?;
            let node = labels
                .split(',')
                .find_map(|l| l.strip_prefix("node=\""))?
                .trim_end_matches('"');
            Some((node.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until every validator in `vs` has committed `height`. Panics, naming the heights
/// reached, if that takes longer than `within` of simulated time or one of them stopped on
/// its own.
pub async fn wait_height(context: &Ctx, vs: &[&SimValidator], height: u64, within: Duration) {
    let deadline = context.current() + within;
    loop {
        for v in vs {
            if let Some(why) = v.exited() {
                panic!("{} stopped: {why}", v.name);
            }
        }
        if vs.iter().all(|v| v.height().get() >= height) {
            return;
        }
        assert!(
            context.current() < deadline,
            "no progress: heights {:?} of {:?} did not reach {height} within {within:?} \
             (consensus views {:?}; BCTE_SIM_LOG=warn shows why)",
            heights(vs),
            vs.iter().map(|v| &v.name).collect::<Vec<_>>(),
            views(context),
        );
        context.sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the chain of `vs` does not grow for `window` of simulated time, after letting
/// what was in flight land for `settle`: the highest committed height stays the same (a
/// validator may still catch up to it). Returns that height.
pub async fn assert_stalled(
    context: &Ctx,
    vs: &[&SimValidator],
    settle: Duration,
    window: Duration,
) -> u64 {
    context.sleep(settle).await;
    let before = heights(vs);
    context.sleep(window).await;
    let after = heights(vs);
    let tip = |h: &[u64]| h.iter().copied().max().unwrap_or(0);
    assert_eq!(
        tip(&before),
        tip(&after),
        "the chain grew without a quorum: heights {before:?} became {after:?}"
    );
    tip(&after)
}

/// A transaction of `payload` from account `from` (see [`account_key`]) with `nonce`.
pub fn sign(genesis: &Genesis, from: u64, nonce: u64, payload: Payload) -> Tx {
    let key = account_key(from);
    Tx::sign(
        TxBody {
            chain_id: genesis.chain_id.clone(),
            sender: AccountId::from_public_key(&key.public_key()),
            signer: None,
            nonce,
            payload,
        },
        &key,
    )
}

/// Counts the views that the validators' simplex engines nullified or timed out, from the
/// runtime's metrics (`nullifications` and `timeouts` of every validator).
pub fn nullified_views(context: &Ctx) -> u64 {
    bcte_node::api::nullified_views(&context.encode())
}

/// A transfer from test account `from` with `nonce`.
pub fn transfer(genesis: &Genesis, from: u64, nonce: u64, to: u64, amount: u64) -> Tx {
    let key = account_key(from);
    Tx::sign(
        TxBody {
            chain_id: genesis.chain_id.clone(),
            sender: AccountId::from_public_key(&key.public_key()),
            signer: None,
            nonce,
            payload: Payload::Transfer {
                to: AccountId::from_public_key(&account_key(to).public_key()),
                amount: Amount(amount),
            },
        },
        &key,
    )
}

/// A client load: signed transfers among `senders` funded accounts, submitted to the running
/// validators in turn (and gossiped by them), as a wallet would. A client whose transaction was
/// lost (its validator crashed before gossiping it) learns the expected nonce from the refusal
/// and resubmits from there.
pub struct Load {
    genesis: Genesis,
    nonces: Vec<u64>,
    next_sender: u64,
    next_target: usize,
    /// Hashes of every admitted transaction, in submission order (possibly repeated).
    pub submitted: Vec<Hash>,
}

impl Load {
    /// A load from the first `senders` accounts of `genesis`.
    pub fn new(genesis: &Genesis, senders: u64) -> Self {
        assert!(senders >= 2, "transfers need two accounts");
        Self {
            genesis: genesis.clone(),
            nonces: vec![0; senders as usize],
            next_sender: 0,
            next_target: 0,
            submitted: Vec::new(),
        }
    }

    fn tx(&self, from: u64) -> Tx {
        let senders = self.nonces.len() as u64;
        let nonce = self.nonces[from as usize];
        // The recipient and amount follow from the sender and nonce, so resubmitting a nonce
        // gives the same transaction (the same hash), never a conflicting one.
        transfer(
            &self.genesis,
            from,
            nonce,
            (from + 1) % senders,
            1 + nonce % 7,
        )
    }

    /// Submits one transaction to `v`; returns whether it was admitted.
    pub fn submit_one(&mut self, v: &SimValidator) -> bool {
        let from = self.next_sender;
        self.next_sender = (self.next_sender + 1) % self.nonces.len() as u64;
        for _ in 0..2 {
            let tx = self.tx(from);
            match v.shared().admit(tx.clone()) {
                Ok(hash) => {
                    self.nonces[from as usize] += 1;
                    self.submitted.push(hash);
                    if let Some(g) = &v.gossip {
                        g.send(tx);
                    }
                    return true;
                }
                Err(
                    AdmitError::NonceGap { expected, .. } | AdmitError::NonceUsed { expected, .. },
                ) => {
                    self.nonces[from as usize] = expected;
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Submits `per_tick` transactions every 50 ms of simulated time for `duration`, each to the
    /// next running validator of `vs` in turn.
    pub async fn run(
        &mut self,
        context: &Ctx,
        vs: &[&SimValidator],
        duration: Duration,
        per_tick: u64,
    ) {
        let end = context.current() + duration;
        while context.current() < end {
            let running: Vec<_> = vs.iter().filter(|v| v.is_running()).collect();
            if !running.is_empty() {
                for _ in 0..per_tick {
                    self.next_target = (self.next_target + 1) % running.len();
                    self.submit_one(running[self.next_target]);
                }
            }
            context.sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The invariants of a run, checked against everything seen so far.
///
/// Each [`Witness::observe`] checks, over the committed stores of the given (honest)
/// validators, running or crashed: no two different blocks at one height, and the same state
/// root at every height (against each other and against every earlier observation, so a
/// rewritten history is caught too); every transaction seen final (with a tx index entry and a
/// receipt) in an earlier observation is still final at the same place with the same receipt
/// on every validator that has reached its height. It then records what is final now.
#[derive(Clone, Debug, Default)]
pub struct Witness {
    /// Per height: the block hash and state root.
    pub blocks: BTreeMap<u64, (Hash, Hash)>,
    /// Per final transaction: where it is and its receipt.
    pub txs: BTreeMap<Hash, (TxLocation, Receipt)>,
}

impl Witness {
    /// The highest height observed.
    pub fn height(&self) -> u64 {
        self.blocks.keys().next_back().copied().unwrap_or(0)
    }

    /// Checks `vs` against each other and against all earlier observations (panics on a
    /// violation), then records their blocks and the final transactions among `submitted`.
    pub fn observe(&mut self, vs: &[&SimValidator], submitted: &[Hash]) {
        for v in vs {
            let chain = v.chain();
            for h in 1..=v.height().get() {
                let block = chain
                    .block(Height(h))
                    .expect("memory store reads")
                    .unwrap_or_else(|| panic!("{}: committed block {h} is missing", v.name));
                let seen = (block.hash(), block.header().state_root);
                match self.blocks.entry(h) {
                    Entry::Vacant(e) => {
                        e.insert(seen);
                    }
                    Entry::Occupied(e) => assert_eq!(
                        *e.get(),
                        seen,
                        "{}: fork at height {h}: (block, state root) differs from what another \
                         validator or an earlier observation committed",
                        v.name
                    ),
                }
            }
        }
        for v in vs {
            let chain = v.chain();
            let height = v.height().get();
            for (hash, (loc, receipt)) in &self.txs {
                if loc.height.get() > height {
                    continue;
                }
                assert_eq!(
                    chain
                        .tx_location(hash)
                        .expect("memory store reads")
                        .as_ref(),
                    Some(loc),
                    "{}: final transaction {} moved or vanished",
                    v.name,
                    hex::encode(hash)
                );
                assert_eq!(
                    receipt_at(&chain, loc).as_ref(),
                    Some(receipt),
                    "{}: the receipt of final transaction {} changed",
                    v.name,
                    hex::encode(hash)
                );
            }
        }
        for hash in submitted {
            if self.txs.contains_key(hash) {
                continue;
            }
            for v in vs {
                let chain = v.chain();
                if let Some(loc) = chain.tx_location(hash).expect("memory store reads") {
                    let receipt = receipt_at(&chain, &loc)
                        .unwrap_or_else(|| panic!("{}: final tx without a receipt", v.name));
                    assert_eq!(receipt.tx_hash, *hash, "{}: receipt of another tx", v.name);
                    self.txs.insert(*hash, (loc, receipt));
                    break;
                }
            }
        }
    }
}

fn receipt_at(chain: &ChainStore<MemStore>, loc: &TxLocation) -> Option<Receipt> {
    chain
        .receipts(loc.height)
        .expect("memory store reads")?
        .get(loc.index as usize)
        .cloned()
}
