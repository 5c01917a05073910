//! Whole-network simulation: validators in one process on commonware's deterministic runtime and
//! simulated network, each with an in-memory store that survives a simulated crash exactly as
//! redb survives a real one (committed batches kept, nothing else).
//!
//! The validators run the same [`engine::start`] as real nodes. A simulation is a function of its
//! seed: the runtime orders tasks and draws randomness from it, and time is simulated, so the
//! same seed gives the same blocks and the same state roots, and a failure reproduces from the
//! seed it prints.

use crate::{
    app::{BuildParams, Shared},
    chain_block::{ChainBlock, PublicKey},
    engine::{self, Channels, Running, Timing, ValidatorConfig},
    executor::Executor,
    mempool::{Mempool, MempoolLimits},
};
use bcte_store::{ChainStore, MemStore};
use bcte_types::{
    AccountId, Allocation, Amount, BlockLimits, ChainId, Genesis, Hash, Height, Payload, Tx,
    TxBody, Validator,
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Handle, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, ordered::Set, probability};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

/// The runtime context of a simulation.
pub type Ctx = deterministic::Context;

/// The chain id of simulated chains.
pub const SIM_CHAIN: &str = "bcte-sim";

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
        allocations: (0..accounts)
            .map(|i| Allocation {
                account: acct(&account_key(i)),
                amount: Amount(1_000_000_000),
            })
            .collect(),
    }
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
    /// Its durable application store.
    pub store: MemStore,
    /// Its node state, while running.
    pub shared: Option<Arc<Shared<MemStore>>>,
    /// Its tasks, while running.
    pub running: Option<Running>,
}

impl SimValidator {
    /// A validator that has never run.
    pub fn new(index: u64) -> Self {
        Self {
            index,
            store: MemStore::new(),
            shared: None,
            running: None,
        }
    }

    /// The node state. Panics if it is not running.
    pub fn shared(&self) -> &Arc<Shared<MemStore>> {
        self.shared.as_ref().expect("validator is running")
    }

    /// The committed height (from its durable store, running or not).
    pub fn height(&self) -> Height {
        ChainStore::new(self.store.clone(), BlockLimits::default())
            .height()
            .expect("memory store reads")
            .unwrap_or_default()
    }

    /// The committed store.
    pub fn chain(&self) -> ChainStore<MemStore> {
        ChainStore::new(self.store.clone(), BlockLimits::default())
    }

    /// Kills the validator: aborts every task (an unclean stop; its store keeps what it
    /// committed).
    pub async fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            for h in running.handles {
                h.abort();
                let _ = h.await;
            }
        }
        self.shared = None;
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
        for a in participants.iter() {
            for b in participants.iter() {
                if a != b {
                    oracle
                        .add_link(a.clone(), b.clone(), link.clone())
                        .await
                        .expect("link");
                }
            }
        }
        // Short proposal waits keep simulated time short; the timeouts are the real ones.
        let build = BuildParams {
            propose_wait: Duration::from_millis(100),
            ..BuildParams::default()
        };
        Self {
            oracle,
            genesis,
            timing: Timing::default(),
            build,
        }
    }

    /// Starts (or restarts) validator `v` from its store. `incarnation` keeps metric names unique.
    pub async fn start(&self, context: &Ctx, v: &mut SimValidator, incarnation: u32) {
        let key = validator_key(v.index);
        let pk = key.public_key();
        let limits = BlockLimits::default();
        let chain = ChainStore::new(v.store.clone(), limits);
        let state = chain.init(&self.genesis).expect("memory store initializes");
        let executor =
            Arc::new(Executor::new(chain, self.genesis.chain_id.clone()).expect("executor"));
        let shared = Arc::new(Shared {
            executor,
            mempool: Arc::new(Mutex::new(Mempool::new(
                self.genesis.chain_id.clone(),
                MempoolLimits::default(),
            ))),
            mempool_notify: Arc::new(Notify::new()),
            params: self.build,
        });
        let control = self.oracle.control(pk.clone());
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
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            backfill: next(),
            broadcast: next(),
            txs: next(),
        };
        let ctx = context
            .child("validator")
            .with_attribute("index", v.index)
            .with_attribute("incarnation", incarnation);
        let running = engine::start(
            ctx,
            ValidatorConfig {
                signer: key,
                participants: participants(&self.genesis),
                chain_id: self.genesis.chain_id.clone(),
                partition_prefix: format!("v{}", v.index),
                timing: self.timing,
                genesis: ChainBlock(Arc::new(state.block)),
                limits,
            },
            shared.clone(),
            channels,
            self.oracle.manager(),
            control,
        )
        .await
        .expect("a simulated validator starts");
        v.shared = Some(shared);
        v.running = Some(running);
    }
}

/// Waits until every running validator in `vs` has committed `height`.
pub async fn wait_height(context: &Ctx, vs: &[&SimValidator], height: u64) {
    while !vs.iter().all(|v| v.height().get() >= height) {
        context.sleep(Duration::from_millis(50)).await;
    }
}

/// A transfer from test account `from` with `nonce`.
pub fn transfer(genesis: &Genesis, from: u64, nonce: u64, to: u64, amount: u64) -> Tx {
    let key = account_key(from);
    Tx::sign(
        TxBody {
            chain_id: genesis.chain_id.clone(),
            sender: AccountId::from_public_key(&key.public_key()),
            nonce,
            payload: Payload::Transfer {
                to: AccountId::from_public_key(&account_key(to).public_key()),
                amount: Amount(amount),
            },
        },
        &key,
    )
}

/// Submits `count` transfers from accounts `0..senders` (round robin) to validator `v`, spread
/// over simulated time, and returns their hashes. Nonces start from `first_nonce[sender]`.
pub async fn submit_load(
    context: &Ctx,
    genesis: &Genesis,
    v: &SimValidator,
    senders: u64,
    count: u64,
    nonces: &mut [u64],
) -> Vec<Hash> {
    let mut hashes = Vec::new();
    for i in 0..count {
        let from = i % senders;
        let tx = transfer(
            genesis,
            from,
            nonces[from as usize],
            (from + 1) % senders.max(2),
            1 + i % 7,
        );
        nonces[from as usize] += 1;
        let shared = v.shared();
        if let Ok(h) = shared.admit(tx.clone()) {
            hashes.push(h);
            if let Some(r) = &v.running {
                r.gossip.send(tx);
            }
        }
        if i % 10 == 9 {
            context.sleep(Duration::from_millis(20)).await;
        }
    }
    hashes
}

/// Joins a set of handles, for tests that want to wait on tasks.
pub async fn join(handles: Vec<Handle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
