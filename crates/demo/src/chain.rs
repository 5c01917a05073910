//! The day on the chain (DM-2): every validator of a network on commonware's deterministic
//! runtime, running the same engine as a real node (every transaction signed and verified,
//! blocks finalized by simplex), the agents bidding through their aggregators, the head-end
//! posting the meters' signed readings, and the chain clearing and settling every interval.
//! A run is a function of its seed: the same seed gives the same blocks and state root.

use bcte_agents::day::{Bidding, Cleared, Day, DayConfig, IntervalRecord, SiteAgent};
use bcte_feeders::{FeederModel, Profiles};
use bcte_ledger::{
    Head, StateKey, book_bucket,
    contract::ContractTable,
    decode_value,
    ev::EV_CONTRACTS_PER_FEEDER_MAX,
    market::components_of,
    market_state::{IntervalResult, MarketClock, ResultBucket, Schedule},
    settle_state::{IntervalSettlement, SettledBucket},
    tree,
};
use bcte_market::Curve;
use bcte_sim::{self as sim, SimNet, SimValidator};
use bcte_types::{
    AccountId, CurveSpec, FeederId, Genesis, Height, Interval, MarketConfig, NodeSpec, Payload,
    Price, Role, Roles, SiteId, SiteSpec, Tx, WattHours, Watts,
    batch::{RawBatch, SignedReading},
    contract::{ContractEv, EvTerms},
    market::{
        BIDS_PER_TX_MAX, BidEntry, Bids, FeederRegister, GridModeSet, SiteDelegate, SitesRegister,
        UpstreamPrice, UpstreamPrices,
    },
    meter::{HeadEndSet, MeterRegister, READINGS_PER_TX_MAX},
    role::Enroll,
};
use commonware_codec::Read;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_runtime::{Clock as _, Runner as _, deterministic};
use std::{collections::BTreeMap, time::Duration};

/// DM-2.1: the genesis market clock speed of the in-process run: a 15-minute interval spans
/// 3.75 s of block time, about 26 blocks on the simulated LAN, each carrying whatever bids,
/// readings and settlements are due. (At 180, 35 blocks an interval, the shipped feeder's
/// day took 3,392 blocks and about 29 s on this machine; the time follows the blocks.)
pub const CLOCK_SPEED: u32 = 240;

/// DM-7.2: what the DSO pays every owner and the provider at the set-up on a network whose
/// genesis did not fund them: 1,000 tokens.
pub const FUNDING: bcte_types::Amount = bcte_types::Amount(1_000 * bcte_types::Amount::PER_TOKEN);

/// The DSO: the genesis authority, registrar of the feeder, its sites and meters.
const DSO: u64 = 0;
/// The head-end system that posts every meter's readings in one batch per interval.
const HEAD_END: u64 = 1;
/// The first aggregator; aggregator `a` batches the bids of sites `a × 4,096 …`.
const AGGREGATOR0: u64 = 2;

/// How the in-process network is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainOptions {
    /// Validators (1 to 16).
    pub validators: u64,
    /// The runtime's seed: message order, latencies and every random draw of the network.
    pub seed: u64,
    /// The genesis market clock speed (MC-1.1).
    pub clock_speed: u32,
}

/// What one site did on the chain over the day, from its settlements (ST-2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteChain {
    /// Its metered energy per interval (Wh; positive: consumed).
    pub metered_wh: Vec<i64>,
    /// The sum of its energy charges (base units; positive: its owner paid).
    pub energy_charge: i64,
    /// The sum of its imbalance charges.
    pub imbalance_charge: i64,
    /// Intervals settled on its schedule for want of a reading.
    pub estimated: u32,
    /// For an EV charger, what its owner paid its charging provider at the contract's
    /// deadline (CT-4.2; negative: was paid): its market charges and this make the option's
    /// price for what came.
    pub ev_difference: i64,
}

impl SiteChain {
    /// What the site's owner paid for it over the day: its market charges and, for a charger,
    /// the contract's difference.
    pub fn cost(&self) -> i64 {
        self.energy_charge + self.imbalance_charge + self.ev_difference
    }
}

/// The chain's part of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOutcome {
    /// The records of the intervals, as the agents followed the chain's results.
    pub records: Vec<IntervalRecord>,
    /// Per site, in the model's order.
    pub sites: Vec<SiteChain>,
    /// The last height, when every interval was settled.
    pub height: u64,
    /// Its state root (hex).
    pub state_root: String,
    /// Blocks from the feeder's first interval's start to its last's settlement.
    pub blocks_in_day: u64,
    /// Transactions the driver submitted (setup, contracts, bids, readings).
    pub transactions: u64,
    /// EV charging contracts entered (CT-3) and settled at their deadline (CT-4.2).
    pub ev_contracts: u32,
    /// What the upstream account paid the market account over the day (ST-2.6; negative:
    /// was paid).
    pub upstream_charge: i64,
    /// The congestion rent collected over the day (ST-2.7).
    pub congestion_rent: i64,
    /// The sum of every account's balance before and after (tokens only move).
    pub balances_before: u128,
    /// See `balances_before`.
    pub balances_after: u128,
}

/// The account index of site `i`'s owner (every site has its own but a charger, whose owner
/// is its household's: see [`owner_of`]).
fn owner(aggregators: u64, i: usize) -> u64 {
    AGGREGATOR0 + aggregators + i as u64
}

/// The account index of `agent`'s owner: its own site's, or for an EV charger its
/// household's (SB-7.4).
fn owner_of(aggregators: u64, agent: &SiteAgent) -> u64 {
    owner(aggregators, agent.ev_of.unwrap_or(agent.site))
}

fn account(i: u64) -> AccountId {
    AccountId::from_public_key(&sim::account_key(i).public_key())
}

/// Site `i`'s meter key (deterministic, like every key of a simulation).
fn meter_key(i: usize) -> PrivateKey {
    PrivateKey::from_seed(3_000_000 + i as u64)
}

/// A curve as the chain takes it: the engine's components, or one point for a flat curve
/// (MC-5.3 wants at least one).
fn spec_of(curve: &Curve) -> CurveSpec {
    if curve.steps().is_empty() && curve.ramps().is_empty() {
        CurveSpec::Points(vec![(Price(0), curve.range_at(Price(0)).max)])
    } else {
        components_of(curve)
    }
}

/// The feeder's id on the chain: the model's, or `demo` when that is not a valid id.
pub fn feeder_id(model: &FeederModel) -> FeederId {
    FeederId::new(model.id.clone()).unwrap_or_else(|_| FeederId::new("demo").expect("valid"))
}

/// The network: validators, the driver's view of the chain through validator 0, nonces.
struct Net<'a> {
    context: &'a sim::Ctx,
    genesis: Genesis,
    vs: Vec<SimValidator>,
    nonces: Vec<u64>,
    submitted: u64,
}

/// What the driver needs of a chain (DM-2): accounts and their keys, submitting signed
/// transactions, reading the state at the tip, and waiting. The in-process network is one;
/// a network's HTTP API is another (`bcte demo --network`, DM-7).
#[allow(async_fn_in_trait)]
pub trait Ledger {
    /// The chain's id.
    fn chain_id(&self) -> bcte_types::ChainId;
    /// The account of the driver's account index `i` (0 the DSO, 1 the head-end, ...).
    fn account(&self, i: u64) -> AccountId;
    /// Its key (to sign a consent).
    fn key(&self, i: u64) -> PrivateKey;
    /// Signs `payload` from account `from` with its next nonce and submits it.
    fn submit(&mut self, from: u64, payload: Payload) -> Result<(), String>;
    /// The next nonce the driver will give account `i`.
    fn next_nonce(&self, i: u64) -> u64;
    /// The raw value of `key` at the tip.
    fn read_bytes(&self, key: &StateKey) -> Option<Vec<u8>>;
    /// The tip's height.
    fn tip(&self) -> u64;
    /// The tip's state root (hex).
    fn state_root(&self) -> Result<String, String>;
    /// The wall (or simulated) clock (ms since the Unix epoch).
    fn now_ms(&self) -> u64;
    /// Transactions submitted so far.
    fn submitted(&self) -> u64;
    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: u64);

    /// Stores a raw meter batch where the chain's nodes keep them (ME-3), before its
    /// transaction is submitted; the in-process network's validators need none.
    fn upload_batch(&mut self, _raw: &RawBatch) -> Result<(), String> {
        Ok(())
    }

    /// Whether the genesis gave the driver's accounts their tokens; if not, the DSO pays
    /// each site owner and the charging provider [`FUNDING`] at the set-up.
    fn funded(&self) -> bool {
        true
    }

    /// The value of `key` at the tip, decoded.
    fn read<T: Read<Cfg = ()>>(&self, key: &StateKey) -> Option<T> {
        self.read_bytes(key).and_then(|b| decode_value(&b))
    }

    /// The market time at the tip (MC-1.1): the tip's block time on `clock`.
    fn market_time(&self, clock: &MarketClock) -> u64 {
        self.read::<Head>(&StateKey::Head)
            .map_or(0, |h| clock.market_time(h.timestamp_ms))
    }

    /// Waits until every account in `from` has had its submitted transactions executed.
    async fn settle_nonces(&self, from: &[u64]) -> Result<(), String> {
        for _ in 0..600 {
            let done = from.iter().all(|&a| {
                self.read::<bcte_ledger::AccountState>(&StateKey::Account(self.account(a)))
                    .map_or(0, |s| s.nonce)
                    >= self.next_nonce(a)
            });
            if done {
                return Ok(());
            }
            self.sleep(100).await;
        }
        Err("the chain did not execute the set-up transactions within 60 s of block time".into())
    }
}

impl Ledger for Net<'_> {
    fn chain_id(&self) -> bcte_types::ChainId {
        self.genesis.chain_id.clone()
    }

    fn account(&self, i: u64) -> AccountId {
        account(i)
    }

    fn key(&self, i: u64) -> PrivateKey {
        sim::account_key(i)
    }

    /// Submits to the account's validator, which gossips it. An account always submits to
    /// the same one (the accounts spread over the validators): a pool admits an account's
    /// nonces only in order, and gossip could deliver them to another out of order.
    fn submit(&mut self, from: u64, payload: Payload) -> Result<(), String> {
        let nonce = self.nonces[from as usize];
        let tx: Tx = sim::sign(&self.genesis, from, nonce, payload);
        let v = &self.vs[from as usize % self.vs.len()];
        v.shared().admit(tx.clone()).map_err(|e| {
            format!(
                "validator {} refused a transaction of account {from}: {e}",
                v.name
            )
        })?;
        if let Some(g) = &v.gossip {
            g.send(tx);
        }
        self.nonces[from as usize] += 1;
        self.submitted += 1;
        Ok(())
    }

    fn next_nonce(&self, i: u64) -> u64 {
        self.nonces[i as usize]
    }

    fn read_bytes(&self, key: &StateKey) -> Option<Vec<u8>> {
        let chain = self.vs[0].chain();
        tree::read_value(&chain, Height(self.tip()), key)
            .ok()
            .flatten()
    }

    fn tip(&self) -> u64 {
        self.vs[0].height().get()
    }

    fn state_root(&self) -> Result<String, String> {
        let root =
            tree::root_at(&self.vs[0].chain(), Height(self.tip())).map_err(|e| e.to_string())?;
        Ok(hex::encode(root.as_ref()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            self.context
                .current()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(0)
    }

    fn submitted(&self) -> u64 {
        self.submitted
    }

    async fn sleep(&self, ms: u64) {
        self.context.sleep(Duration::from_millis(ms)).await;
    }
}

/// DM-2: runs `config`'s intervals on an in-process network of `opts.validators`. Every EV's
/// owner enters its charging contract at the start, and the contract bids for the charger
/// (CT-3). The agents bid for interval `k` once `k − 1` is cleared and followed, through
/// aggregators that batch up to 4,096 sites' bids per transaction; after `k` ends (market time), every site's meter
/// signs its energy (the sum of its devices' powers over the interval) and the head-end posts
/// them in one batch; the chain settles each interval when its readings are in. `progress` is
/// called with each interval followed.
pub fn run(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
    opts: ChainOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<ChainOutcome, String> {
    run_watched(model, profiles, agents, config, opts, progress, None)
}

/// Called once with the first validator's node state as soon as it runs, so that a shell can
/// serve it (the dashboard of `bcte demo`) while the day goes on and after it. Whoever serves
/// it must only read: a transaction admitted from outside would change the run.
pub type Watch<'a> =
    &'a mut dyn FnMut(std::sync::Arc<bcte_node::app::Shared<bcte_store::MemStore>>);

/// [`run`], handing the first validator's node state to `watch`.
pub fn run_watched(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
    opts: ChainOptions,
    progress: &mut dyn FnMut(usize),
    watch: Option<Watch<'_>>,
) -> Result<ChainOutcome, String> {
    config.check()?;
    if agents.iter().enumerate().any(|(j, a)| a.site != j) || agents.len() != model.sites.len() {
        return Err("agents: give one per site of the model, in its order".into());
    }
    if !(1..=16).contains(&opts.validators) {
        return Err(format!(
            "validators: {} is not within 1 to 16",
            opts.validators
        ));
    }
    let n_sites = model.sites.len();
    let aggregators = n_sites.div_ceil(BIDS_PER_TX_MAX).max(1) as u64;
    // The charging provider of every EV contract comes after the owners.
    let provider = owner(aggregators, n_sites);
    let accounts = provider + 1;
    let evs = agents.iter().filter(|a| a.charger().is_some()).count();
    if evs > EV_CONTRACTS_PER_FEEDER_MAX {
        return Err(format!(
            "{evs} EVs: a feeder holds at most {EV_CONTRACTS_PER_FEEDER_MAX} EV charging \
             contracts at once; lower the DER mix's ev_share"
        ));
    }
    let mut genesis = sim::genesis(opts.validators, accounts);
    genesis.market_clock_speed = opts.clock_speed;
    // The genesis funds the driver's accounts; the DSO, the registrar, enrolls them (DM-2.2).
    for a in &mut genesis.allocations {
        a.roles = bcte_types::Roles::NONE;
    }
    let speed = u64::from(opts.clock_speed);
    let dt = config.interval_ms;
    // A day of block time, and then some: the loop's own deadline comes first.
    let sim_ms = (config.intervals as u64 + 20) * dt / speed + 2 * n_sites as u64 + 600_000;
    let runtime = deterministic::Config::default()
        .with_seed(opts.seed)
        .with_timeout(Some(Duration::from_millis(sim_ms)));
    deterministic::Runner::new(runtime).start(|context| async move {
        let net_sim = SimNet::new(&context, genesis.clone(), sim::lan()).await;
        let mut vs: Vec<SimValidator> = (0..opts.validators).map(SimValidator::new).collect();
        for v in vs.iter_mut() {
            net_sim.start(&context, v).await;
        }
        if let Some(w) = watch {
            w(vs[0].shared().clone());
        }
        let mut net = Net {
            context: &context,
            genesis: genesis.clone(),
            vs,
            nonces: vec![0; accounts as usize],
            submitted: 0,
        };
        drive(
            &mut net,
            feeder_id(model),
            model,
            profiles,
            agents,
            config,
            opts.clock_speed,
            progress,
        )
        .await
    })
}

/// DM-2.2 to DM-2.4 on any ledger: the set-up, the day and what settlement booked, driven
/// through `l` (the in-process network of [`run`], or a network's HTTP API), with the feeder
/// registered as `feeder` at the genesis market clock speed `clock_speed`.
#[allow(clippy::too_many_arguments)]
pub async fn drive<L: Ledger>(
    l: &mut L,
    feeder: FeederId,
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
    clock_speed: u32,
    progress: &mut dyn FnMut(usize),
) -> Result<ChainOutcome, String> {
    config.check()?;
    if agents.iter().enumerate().any(|(j, a)| a.site != j) || agents.len() != model.sites.len() {
        return Err("agents: give one per site of the model, in its order".into());
    }
    let n_sites = model.sites.len();
    let aggregators = n_sites.div_ceil(BIDS_PER_TX_MAX).max(1) as u64;
    let provider = owner(aggregators, n_sites);
    let accounts = provider + 1;
    let speed = u64::from(clock_speed);
    let dt = config.interval_ms;
    let evs = agents.iter().filter(|a| a.charger().is_some()).count();
    let chain_id = l.chain_id();
    let site_ids: Vec<SiteId> = model.sites.iter().map(|s| s.site.clone()).collect();
    // Derived once: a key's derivation costs as much as a signature.
    let meter_keys: Vec<PrivateKey> = (0..n_sites).map(meter_key).collect();
    // DM-7.2: on a network whose genesis does not know the driver's accounts, the DSO gives
    // every owner and the provider what their charges can take from them.
    if !l.funded() {
        let mut payees: Vec<u64> = agents.iter().map(|a| owner_of(aggregators, a)).collect();
        payees.push(provider);
        payees.sort_unstable();
        payees.dedup();
        for (i, &to) in payees.iter().enumerate() {
            if i % 4_000 == 3_999 {
                l.settle_nonces(&[DSO]).await?;
            }
            let to = l.account(to);
            l.submit(
                DSO,
                Payload::Transfer {
                    to,
                    amount: FUNDING,
                },
            )?;
        }
        l.settle_nonces(&[DSO]).await?;
    }
    // DM-2.2, AC-2.1: the DSO, also the registrar, enrolls the owners as prosumers and the
    // aggregators and the charging provider as aggregators (the head-end and the meters get
    // the meter role from their registration, AC-1.4).
    let members: Vec<(AccountId, Roles)> = (AGGREGATOR0..accounts)
        .map(|i| {
            let role = if i < owner(aggregators, 0) || i == provider {
                Role::Aggregator
            } else {
                Role::Prosumer
            };
            (l.account(i), Roles::one(role))
        })
        .filter(|(a, _)| {
            !l.read::<bcte_ledger::AccountState>(&StateKey::Account(*a))
                .is_some_and(|s| s.is_member())
        })
        .collect();
    for op in Enroll::each(members) {
        l.submit(DSO, Payload::Enroll(op))?;
    }
    l.settle_nonces(&[DSO]).await?;
    let balances_before = balances(l, accounts);

    // DM-2.2: the set-up, in two steps: the DSO's registrations, then the owners'
    // delegations to their aggregators.
    let lead = dt / 3;
    let now = l.now_ms();
    // Interval 0's gate 20 s of block time from now, and 2 s more per 1,000 sites: the
    // set-up is in by then.
    let setup_ms = 20_000 + 2 * n_sites as u64;
    // MC-1.1: the chain's market clock, as the genesis set it.
    let clock = l
        .read::<MarketClock>(&StateKey::MarketClock)
        .unwrap_or(MarketClock {
            genesis_time_ms: 0,
            speed: clock_speed,
        });
    if clock.speed != clock_speed {
        return Err(format!(
            "the chain's market clock runs at ×{}, not ×{clock_speed}",
            clock.speed
        ));
    }
    let epoch = clock.market_time(now + setup_ms) + lead;
    let (import_price, export_price) = config.upstream_at(0);
    let market = MarketConfig {
        interval_ms: dt,
        gate_lead_ms: lead,
        price_floor: config.floor,
        price_cap: config.cap,
        import_price,
        export_price,
        import_limit: config.import_limit,
        export_limit: config.export_limit,
        alert_import_limit: config.alert_import_limit,
        retention_intervals: (config.intervals as u32 + 96).max(672),
        // An interval settles at its end once its readings are in (ST-2.1); a silent
        // meter is settled on schedule one interval later.
        settlement_delay_ms: dt,
        ..MarketConfig::DEFAULT
    };
    let nodes: Vec<NodeSpec> = model
        .nodes
        .iter()
        .map(|n| NodeSpec {
            id: n.id.clone(),
            parent: n.parent.clone(),
            import_limit: n.limit,
            export_limit: n.limit,
        })
        .collect();
    l.submit(
        DSO,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder.clone(),
            epoch_ms: Some(epoch),
            config: market,
            nodes,
            market_account: None,
            upstream_account: None,
        }),
    )?;
    let specs: Vec<SiteSpec> = agents
        .iter()
        .map(|a| SiteSpec {
            site: site_ids[a.site].clone(),
            node: model.sites[a.site].node.clone(),
            owner: l.account(owner_of(aggregators, a)),
            priority: a.priority,
            import_limit: None,
            export_limit: None,
        })
        .collect();
    for chunk in specs.chunks(4_096) {
        l.submit(
            DSO,
            Payload::SitesRegister(SitesRegister {
                feeder: feeder.clone(),
                sites: chunk.to_vec(),
            }),
        )?;
    }
    l.submit(
        DSO,
        Payload::HeadEnd(HeadEndSet {
            feeder: feeder.clone(),
            account: l.account(HEAD_END),
            allowed: true,
        }),
    )?;
    for (i, id) in site_ids.iter().enumerate() {
        // A pool holds at most 4,096 waiting transactions of one sender.
        if i % 4_000 == 3_999 {
            l.settle_nonces(&[DSO]).await?;
        }
        l.submit(
            DSO,
            Payload::MeterRegister(MeterRegister {
                feeder: feeder.clone(),
                site: id.clone(),
                meter: AccountId::from_public_key(&meter_keys[i].public_key()),
            }),
        )?;
    }
    // MC-6: the day-ahead upstream prices, up to 1,024 intervals per transaction.
    let prices: Vec<UpstreamPrice> = (0..config.intervals)
        .map(|k| {
            let (i, e) = config.upstream_at(k);
            UpstreamPrice {
                import_price: i,
                export_price: e,
            }
        })
        .collect();
    for (c, chunk) in prices.chunks(1_024).enumerate() {
        l.submit(
            DSO,
            Payload::UpstreamPrices(UpstreamPrices {
                feeder: feeder.clone(),
                from: Interval((c * 1_024) as u64),
                prices: chunk.to_vec(),
            }),
        )?;
    }
    // MC-4.1: the scenario's grid modes.
    for &(from, mode) in &config.modes {
        l.submit(
            DSO,
            Payload::GridMode(GridModeSet {
                feeder: feeder.clone(),
                from: Interval(from as u64),
                mode,
            }),
        )?;
    }
    l.settle_nonces(&[DSO]).await?;
    // A charger bids only through its EV contract (CT-3.3): it has no aggregator.
    for a in agents.iter().filter(|a| a.ev_of.is_none()) {
        let aggregator = AGGREGATOR0 + (a.site / BIDS_PER_TX_MAX) as u64;
        l.submit(
            owner(aggregators, a.site),
            Payload::SiteDelegate(SiteDelegate {
                feeder: feeder.clone(),
                site: site_ids[a.site].clone(),
                aggregator: l.account(aggregator),
            }),
        )?;
    }
    // AG-8.3: every EV's owner enters its charging contract with the provider's consent
    // (CT-3.2), while every gate of the day is open (CT-3.3).
    for (j, a) in agents.iter().enumerate() {
        let Some(e) = a.charger() else { continue };
        let need = e.need();
        let (slow, fast) = e.options();
        let terms = EvTerms {
            feeder: feeder.clone(),
            site: site_ids[j].clone(),
            provider: l.account(provider),
            energy_wh: need.energy_wh,
            from: Interval(need.from),
            deadline: Interval(need.deadline),
            slow,
            fast,
            choice: e.choice(),
            salt: 0,
        };
        let consent = terms.sign(&chain_id, &l.key(provider));
        l.submit(
            owner_of(aggregators, a),
            Payload::ContractEv(ContractEv { terms, consent }),
        )?;
    }
    let owners: Vec<u64> = (0..n_sites).map(|i| owner(aggregators, i)).collect();
    l.settle_nonces(&owners).await?;
    let entered = l
        .read::<ContractTable>(&StateKey::Contracts(feeder.clone()))
        .map_or(0, |t| t.ev.len());
    if entered != evs {
        return Err(format!(
            "the chain entered {entered} of the {evs} EV charging contracts"
        ));
    }
    if l.market_time(&clock) + 2 * speed * 1_000 >= epoch - lead {
        return Err("the set-up took past interval 0's gate".to_string());
    }

    // DM-2.3: the day.
    let mut day = Day::new(model, profiles, config)?;
    let buckets: Vec<u16> = site_ids.iter().map(book_bucket).collect();
    let index: BTreeMap<SiteId, usize> = site_ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, s)| (s, i))
        .collect();
    let mut distinct = buckets.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut records: Vec<IntervalRecord> = Vec::with_capacity(config.intervals);
    let mut sites = vec![SiteChain::default(); n_sites];
    let mut pending: Option<Bidding> = None;
    let (mut next_bid, mut next_read) = (0usize, 0usize);
    let mut first_height = None;
    loop {
        let schedule: Schedule = l
            .read(&StateKey::Schedule(feeder.clone()))
            .ok_or("the feeder has no schedule")?;
        let market_now = l.market_time(&clock);
        if first_height.is_none() && market_now >= epoch {
            first_height = Some(l.tip());
        }
        // Follow the interval that was bid for once it is cleared.
        if let Some(bidding) = pending.take() {
            let k = bidding.k;
            if schedule.next_clear.0 > k as u64 {
                let cleared = read_cleared(l, &feeder, k, &index, &distinct)?;
                records.push(day.follow(agents, bidding, cleared));
                progress(records.len());
            } else {
                pending = Some(bidding);
            }
        }
        // Bid for the next interval once the last is followed, while its gate is open.
        if pending.is_none() && next_bid < config.intervals && records.len() == next_bid {
            let gate = epoch + next_bid as u64 * dt - lead;
            // The bids must reach a block before the gate: 3 s of block time, or a third of
            // an interval when the clock runs so fast that an interval is shorter.
            if market_now + (3 * speed * 1_000).min(dt / 3) >= gate {
                return Err(format!(
                    "interval {next_bid}: the agents were too late for its gate"
                ));
            }
            let bidding = day.bid(agents, next_bid)?;
            for (chunk_index, chunk) in agents.chunks(BIDS_PER_TX_MAX).enumerate() {
                // A charger's bid is its contract's, placed by the chain (CT-3.3).
                let bids: Vec<BidEntry> = chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.ev_of.is_none())
                    .map(|(j, a)| BidEntry {
                        site: site_ids[a.site].clone(),
                        interval: Interval(next_bid as u64),
                        curve: Some(spec_of(&bidding.bids[chunk_index * BIDS_PER_TX_MAX + j])),
                    })
                    .collect();
                if bids.is_empty() {
                    continue;
                }
                l.submit(
                    AGGREGATOR0 + chunk_index as u64,
                    Payload::Bids(Bids {
                        feeder: feeder.clone(),
                        bids,
                    }),
                )?;
            }
            pending = Some(bidding);
            next_bid += 1;
        }
        // Read the meters of every followed interval that has ended.
        if next_read < records.len() && market_now >= epoch + (next_read as u64 + 1) * dt {
            let k = next_read;
            let metered: Vec<i64> = (0..agents.len())
                .map(|j| crate::report::metered_in(&records[k], j, dt))
                .collect();
            for (a, &m) in agents.iter().zip(&metered) {
                sites[a.site].metered_wh.push(m);
            }
            let readings = sign_readings(
                &chain_id,
                &feeder,
                Interval(k as u64),
                &site_ids,
                &metered,
                &meter_keys,
            );
            // ME-3: at most READINGS_PER_TX_MAX readings per batch transaction.
            for chunk in readings.chunks(READINGS_PER_TX_MAX) {
                let batch = RawBatch {
                    chain_id: chain_id.clone(),
                    feeder: feeder.clone(),
                    interval: Interval(k as u64),
                    readings: chunk.to_vec(),
                };
                l.upload_batch(&batch)?;
                l.submit(HEAD_END, Payload::MeterBatch(batch.to_payload()))?;
            }
            next_read += 1;
        }
        if schedule.next_settle.0 >= config.intervals as u64 {
            break;
        }
        // A chain that stopped clearing or settling is an error, not a wait for ever.
        let deadline = epoch + (config.intervals as u64 + 8) * dt;
        if market_now > deadline {
            return Err(format!(
                "the chain had cleared {} and settled {} of {} intervals two hours (market \
                 time) after the last one ended",
                schedule.next_clear.0, schedule.next_settle.0, config.intervals
            ));
        }
        l.sleep(50).await;
    }

    // DM-2.4: what settlement booked.
    let (mut upstream_charge, mut congestion_rent, mut ev_contracts) = (0i64, 0i64, 0u32);
    for k in 0..config.intervals {
        let key = StateKey::Settlement(feeder.clone(), Interval(k as u64));
        let t: IntervalSettlement = l
            .read(&key)
            .ok_or_else(|| format!("interval {k} is settled but has no totals"))?;
        upstream_charge += t.upstream_charge;
        congestion_rent += t.congestion_rent;
        for f in &t.ev {
            if let Some(&i) = index.get(&f.site) {
                sites[i].ev_difference += f.difference;
                ev_contracts += 1;
            }
        }
        for &b in &distinct {
            let key = StateKey::Settled(feeder.clone(), Interval(k as u64), b);
            let bucket: SettledBucket = l.read(&key).unwrap_or_default();
            for (id, s) in &bucket.sites {
                if let Some(&i) = index.get(id) {
                    sites[i].energy_charge += s.energy_charge;
                    sites[i].imbalance_charge += s.imbalance_charge;
                    sites[i].estimated += u32::from(s.estimated());
                }
            }
        }
    }
    // Every site had its reading in and every transaction of the day was applied: a
    // refused registration, bid or batch would show here as a site settled on its
    // schedule.
    if let Some((i, _)) = sites.iter().enumerate().find(|(_, s)| s.estimated > 0) {
        return Err(format!(
            "site {}: settled without its reading in {} intervals",
            site_ids[i].as_str(),
            sites[i].estimated
        ));
    }
    let height = l.tip();
    let state_root = l.state_root()?;
    Ok(ChainOutcome {
        records,
        sites,
        height,
        state_root,
        blocks_in_day: height - first_height.unwrap_or(height),
        transactions: l.submitted(),
        ev_contracts,
        upstream_charge,
        congestion_rent,
        balances_before,
        balances_after: balances(l, accounts),
    })
}

/// Every site's meter signs its reading of interval `k` (`metered[i]` Wh for site `i`, with
/// `keys[i]`), the sites split across the machine's cores: signing is most of what a large
/// feeder's driver does. The same readings, in site order, however many threads.
fn sign_readings(
    chain: &bcte_types::ChainId,
    feeder: &FeederId,
    k: Interval,
    sites: &[SiteId],
    metered: &[i64],
    keys: &[PrivateKey],
) -> Vec<SignedReading> {
    let sign = |i: usize| {
        SignedReading::sign(
            chain,
            feeder,
            k,
            sites[i].clone(),
            WattHours(metered[i]),
            &keys[i],
        )
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || metered.len() < 1_000 {
        return (0..metered.len()).map(sign).collect();
    }
    let per = metered.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..metered.len())
            .step_by(per)
            .map(|from| {
                let sign = &sign;
                s.spawn(move || {
                    (from..(from + per).min(metered.len()))
                        .map(sign)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a signing thread does not panic"))
            .collect()
    })
}

/// The sum of the balances of accounts `0..accounts`.
fn balances(net: &impl Ledger, accounts: u64) -> u128 {
    (0..accounts)
        .map(|a| {
            net.read::<bcte_ledger::AccountState>(&StateKey::Account(net.account(a)))
                .map_or(0, |s| u128::from(s.balance.0))
        })
        .sum()
}

/// Interval `k`'s result on the chain as the agents take it, and each site's allocation.
fn read_cleared(
    net: &impl Ledger,
    feeder: &FeederId,
    k: usize,
    index: &BTreeMap<SiteId, usize>,
    distinct: &[u16],
) -> Result<Cleared, String> {
    let r: IntervalResult = net
        .read(&StateKey::Result(feeder.clone(), Interval(k as u64)))
        .ok_or_else(|| format!("interval {k} is cleared but has no result"))?;
    let mut served = vec![Watts(0); index.len()];
    let mut asked = vec![Watts(0); index.len()];
    for &b in distinct {
        let bucket: ResultBucket = net
            .read(&StateKey::Results(feeder.clone(), Interval(k as u64), b))
            .unwrap_or_default();
        for (site, result) in &bucket.results {
            if let Some(&i) = index.get(site) {
                served[i] = result.served();
                asked[i] = result.allocation;
            }
        }
    }
    Ok(Cleared {
        prices: r.prices.clone(),
        flows: r.flows.clone(),
        upstream: r.upstream,
        served,
        asked,
        shed: Watts(r.shed.iter().map(|(_, w)| w.0).sum()),
        spilled: Watts(r.spilled.iter().map(|(_, w)| w.0).sum()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_signed_across_threads_are_the_readings_signed_one_by_one() {
        let chain = bcte_types::ChainId::new("test").expect("valid");
        let feeder = FeederId::new("f").expect("valid");
        let n = 1_000;
        let sites: Vec<SiteId> = (0..n)
            .map(|i| SiteId::new(format!("s{i}")).expect("valid"))
            .collect();
        let metered: Vec<i64> = (0..n as i64).map(|i| i * 7 - 300).collect();
        let keys: Vec<PrivateKey> = (0..n).map(meter_key).collect();
        let all = sign_readings(&chain, &feeder, Interval(3), &sites, &metered, &keys);
        assert_eq!(all.len(), n);
        for (i, r) in all.iter().enumerate() {
            let one = SignedReading::sign(
                &chain,
                &feeder,
                Interval(3),
                sites[i].clone(),
                WattHours(metered[i]),
                &keys[i],
            );
            assert_eq!(r, &one, "reading {i}");
            assert!(r.verify(&chain, &feeder, Interval(3)));
        }
    }
}
