//! `bcte bench market`: the market on a local network under a stream of bids.
//!
//! The network is what `bcte localnet init` writes (fsync on, every validator checks every
//! signature, clears every interval and computes the state root), started as one process per
//! validator. Set-up, not timed: the faucet (the DSO) registers a feeder generated as
//! `bcte market gen` generates markets (a substation and three levels of nodes with edge
//! limits) and one site per generated device, each owned by a fresh key funded with a million
//! tokens (its intervals are settled, ST-2, and an owner that could not pay could not bid,
//! ST-5.4); with `--load batch` each site delegates its bidding to one of `--aggregators`
//! aggregators.
//!
//! The load is a rolling bid stream at `--rate` bids per second: bid `i` is for site
//! `i mod sites`, due at `i / rate` seconds, for the first interval whose gate closes at least
//! [`MARGIN_MS`] after it is due (so every site revises its bid for the interval ahead several
//! times, and each interval's gate closes during the load with every site's bid in it). Its
//! curve is the device's curve from the generated market. With `--load batch` an aggregator
//! packs its sites' due bids into one transaction every [`BATCH_PERIOD_MS`] (at most 4,096 bids
//! and 1 MiB each) and submits it through its validator; with `--load single` every bid is its
//! own transaction, signed by its site's key, each site always through the same validator.
//! Everything is signed before the timed window.
//!
//! Measured over the window (after `--warmup` seconds of load): the bids accepted in blocks that
//! node 0 serves as final, per second, and their latency from submission; for every gate that
//! closes in the window (and whose interval's whole bidding span lies in the load), the time from the gate (market time, which is wall time at the localnet's
//! clock speed of 1) until every validator serves the interval as cleared (its schedule polled
//! every 5 ms from just before the gate); and the views every validator nullified or timed out
//! (its `/metrics`), which a clearing that delayed consensus would show.

use crate::bench::{self, Network, Seen, Shared, UNSENT, agent, percentile};
use crate::client::Client;
use anyhow::{Context as _, bail};
use bcte_market::generate::{CurveMix, Params, generate};
use bcte_node::api::{HeadView, SubmitBatchRequest, SubmitBatchResponse};
use bcte_node::files;
use bcte_node::market_api::{FeederView, ResultView, ScheduleView};
use bcte_types::{
    AccountId, ChainId, CurveSpec, FeederId, Hash, Interval, MarketConfig, NodeId, NodeSpec,
    Payload, Price, Role, Roles, SiteId, SiteSpec, Tx, TxBody, Watts,
    market::{
        BIDS_PER_TX_MAX, BidEntry, Bids, FeederRegister, SITES_PER_TX_MAX, SiteDelegate,
        SitesRegister,
    },
    role::Enroll,
    tx::BULK_TX_BYTES_MAX,
};
use clap::{Args, ValueEnum};
use commonware_codec::{Encode as _, EncodeSize as _};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, atomic::Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How the bids arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Load {
    /// Aggregators' batch transactions, each carrying many sites' bids.
    Batch,
    /// One transaction per bid, signed by the site's own key.
    Single,
}

/// Arguments of `bcte bench market`.
#[derive(Args, Debug)]
pub struct MarketArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// How the bids arrive.
    #[arg(long, value_enum, default_value_t = Load::Batch)]
    load: Load,
    /// Offered load, in bids per second.
    #[arg(long, value_name = "BIDS_PER_S", default_value_t = 20_000)]
    rate: u64,
    /// Sites on the feeder (one generated device each).
    #[arg(long, default_value_t = 10_000)]
    sites: usize,
    /// Nodes of the feeder, the substation included.
    #[arg(long, default_value_t = 250)]
    nodes: usize,
    /// Aggregators bidding for the sites (`--load batch`), each through one validator in turn.
    #[arg(long, default_value_t = 4)]
    aggregators: usize,
    /// The market interval, in ms (market time; the localnet's clock runs at speed 1).
    #[arg(long, default_value_t = 2_000)]
    interval_ms: u64,
    /// The gate closure lead time, in ms.
    #[arg(long, default_value_t = 500)]
    lead_ms: u64,
    /// Length of the timed window, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before the timed window, not counted.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seed of the generated feeder and curves.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the network's directory (logs, data) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// A bid is for the first interval whose gate closes at least this long after the bid is due.
pub const MARGIN_MS: u64 = 1_000;
/// An aggregator submits the bids due in this period together.
pub const BATCH_PERIOD_MS: u64 = 250;
/// Room left in a batch transaction for everything but its bids.
const TX_OVERHEAD_BYTES: usize = 4_096;
/// Hex characters per HTTP batch of transactions (the node takes 8 MiB bodies).
const HTTP_BATCH_HEX_MAX: usize = 6 * 1024 * 1024;
/// The feeder's id.
const FEEDER: &str = "bench";

/// One planned transaction.
struct Planned {
    /// When it is due (ns after the load's start).
    at_ns: u64,
    /// The validator it goes to.
    node: usize,
    /// The signed transaction.
    tx: Vec<u8>,
    hash: Hash,
    /// Bids it carries.
    bids: usize,
}

/// The feeder's market clock, as registered.
#[derive(Clone, Copy)]
struct Clock {
    epoch_ms: u64,
    interval_ms: u64,
    lead_ms: u64,
}

impl Clock {
    fn gate_ms(&self, k: u64) -> u64 {
        self.epoch_ms + k * self.interval_ms - self.lead_ms
    }

    /// The first interval whose gate is at or after `ms`.
    fn first_gate_at_or_after(&self, ms: u64) -> u64 {
        let from = ms + self.lead_ms;
        if from <= self.epoch_ms {
            return 0;
        }
        (from - self.epoch_ms).div_ceil(self.interval_ms)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn sign(chain: &ChainId, key: &PrivateKey, nonce: u64, payload: Payload) -> Tx {
    Tx::sign(
        TxBody {
            chain_id: chain.clone(),
            sender: AccountId::from_public_key(&key.public_key()),
            signer: None,
            nonce,
            payload,
        },
        key,
    )
}

/// Appends to `txs` (the DSO's, from nonce `txs.len()`) the registration of `specs`, in
/// transactions of at most [`SITES_PER_TX_MAX`] sites.
pub(crate) fn register_sites(
    txs: &mut Vec<Tx>,
    chain: &ChainId,
    dso: &PrivateKey,
    feeder: &FeederId,
    specs: &[SiteSpec],
) {
    for chunk in specs.chunks(SITES_PER_TX_MAX) {
        let nonce = txs.len() as u64;
        txs.push(sign(
            chain,
            dso,
            nonce,
            Payload::SitesRegister(SitesRegister {
                feeder: feeder.clone(),
                sites: chunk.to_vec(),
            }),
        ));
    }
}

/// Submits `txs` to `url` in HTTP batches and waits until node 0 (`watch_url`) serves every one
/// final and accepted, or fails naming the first rejection.
pub(crate) fn settle(url: &str, txs: &[Tx], what: &str) -> anyhow::Result<()> {
    let client = Client::new(url);
    let head: HeadView = client.get("/v1/head")?;
    let mut wanted: HashSet<String> = HashSet::new();
    for chunk in txs.chunks(bcte_node::api::BATCH_TXS_MAX) {
        let answer: SubmitBatchResponse = client.post(
            "/v1/txs/batch",
            &SubmitBatchRequest {
                txs: chunk.iter().map(|t| hex::encode(t.encode())).collect(),
            },
        )?;
        if let Some(e) = answer.results.iter().find_map(|r| r.error.clone()) {
            bail!("the node refused {what}: {e}");
        }
        wanted.extend(chunk.iter().map(|t| t.hash().to_string()));
    }
    #[derive(serde::Deserialize)]
    struct Block {
        txs: Vec<BlockTx>,
    }
    #[derive(serde::Deserialize)]
    struct BlockTx {
        hash: String,
        status: String,
        reason: Option<String>,
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = head.height + 1;
    while !wanted.is_empty() {
        let tip: HeadView = client.get("/v1/head")?;
        while next <= tip.height {
            let block: Block = client.get(&format!("/v1/blocks/{next}"))?;
            for t in block.txs {
                if wanted.remove(&t.hash) && t.status != "accepted" {
                    bail!(
                        "{what} was rejected: {}",
                        t.reason.unwrap_or_else(|| t.status.clone())
                    );
                }
            }
            next += 1;
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: {} transactions not final after 2 minutes",
                wanted.len()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Nullified and timed-out views a node counted so far (its `/metrics`).
fn nullified_views(url: &str) -> anyhow::Result<u64> {
    let text = agent()
        .get(&format!("{url}/metrics"))
        .call()
        .with_context(|| format!("reading {url}/metrics"))?
        .body_mut()
        .read_to_string()
        .context("reading the metrics")?;
    Ok(bcte_node::api::nullified_views(&text))
}

/// Sends one validator's share of the load, each transaction when it is due.
fn submit(
    url: &str,
    txs: &[(usize, &Planned)],
    shared: &Shared,
    start: Instant,
) -> anyhow::Result<()> {
    let agent = agent();
    let mut sent = 0;
    while sent < txs.len() && !shared.stop_submitting.load(Ordering::SeqCst) {
        let now = start.elapsed().as_nanos() as u64;
        let mut end = sent;
        let mut hex_len = 0;
        while end < txs.len()
            && txs[end].1.at_ns <= now
            && end - sent < bcte_node::api::BATCH_TXS_MAX
            && (end == sent || hex_len + 2 * txs[end].1.tx.len() <= HTTP_BATCH_HEX_MAX)
        {
            hex_len += 2 * txs[end].1.tx.len();
            end += 1;
        }
        if end == sent {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let batch = &txs[sent..end];
        let at = start.elapsed().as_nanos() as u64;
        for (i, _) in batch {
            shared.submitted_at[*i].store(at, Ordering::SeqCst);
        }
        let request = SubmitBatchRequest {
            txs: batch.iter().map(|(_, p)| hex::encode(&p.tx)).collect(),
        };
        let response: SubmitBatchResponse = agent
            .post(&format!("{url}/v1/txs/batch"))
            .send_json(&request)
            .with_context(|| format!("submitting to {url}"))?
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .context("reading a batch answer")?;
        if let Some(refused) = response.results.iter().find_map(|r| r.error.clone()) {
            bail!("{url} refused a bid transaction: {refused}");
        }
        shared
            .submitted
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        sent = end;
    }
    Ok(())
}

/// For each gate in `[from_ms, to_ms)`, the time (µs) from the gate until every validator
/// serves its interval as cleared; `None` for one that no validator cleared within 10 s.
fn watch_gates(
    urls: &[String],
    clock: Clock,
    from_ms: u64,
    to_ms: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(u64, Option<u64>)> {
    let agent = agent();
    let path = format!("/v1/feeders/{FEEDER}/schedule");
    let mut out = Vec::new();
    let mut k = clock.first_gate_at_or_after(from_ms);
    while clock.gate_ms(k) < to_ms && !stop.load(Ordering::SeqCst) {
        let gate_us = clock.gate_ms(k) * 1_000;
        // Wake just before the gate.
        let wake = gate_us.saturating_sub(20_000);
        let now = now_us();
        if now < wake {
            thread::sleep(Duration::from_micros(wake - now));
        }
        let mut pending: Vec<&String> = urls.iter().collect();
        let mut last = None;
        let give_up = gate_us + 10_000_000;
        while !pending.is_empty() && now_us() < give_up {
            pending.retain(|url| {
                let cleared = agent
                    .get(&format!("{url}{path}"))
                    .call()
                    .and_then(|mut r| r.body_mut().read_json::<ScheduleView>())
                    .is_ok_and(|s| s.next_interval > k);
                if cleared {
                    last = Some(now_us());
                }
                !cleared
            });
            if !pending.is_empty() {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let latency = pending
            .is_empty()
            .then(|| last.map_or(0, |t: u64| t.saturating_sub(gate_us)));
        out.push((k, latency));
        k += 1;
    }
    out
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs `bcte bench market`.
pub(crate) fn run_market(args: &MarketArgs, json: bool) -> anyhow::Result<()> {
    if args.validators == 0 || args.duration == 0 || args.rate == 0 || args.sites == 0 {
        bail!("--validators, --duration, --rate and --sites must be positive");
    }
    if args.load == Load::Batch && args.aggregators == 0 {
        bail!("--aggregators must be positive");
    }
    if args.sites > bcte_types::market::FEEDER_SITES_MAX {
        bail!(
            "--sites {} is above the feeder limit of {}",
            args.sites,
            bcte_types::market::FEEDER_SITES_MAX
        );
    }
    let aggregators = args.aggregators.min(args.sites);

    let feeder = generate_feeder(args)?;
    let config = MarketConfig {
        interval_ms: args.interval_ms,
        gate_lead_ms: args.lead_ms,
        import_price: Price::from_units_per_mwh(90).expect("a price"),
        export_price: Price::from_units_per_mwh(20).expect("a price"),
        import_limit: Watts(1_000_000_000),
        export_limit: Watts(1_000_000_000),
        alert_import_limit: Watts(100_000_000),
        ..MarketConfig::DEFAULT
    };
    bcte_ledger::market::check_config(&config)
        .map_err(|e| anyhow::anyhow!("--interval-ms or --lead-ms: {e}"))?;
    eprintln!(
        "starting {} validators; a feeder of {} nodes and {} sites ...",
        args.validators, args.nodes, args.sites
    );
    let network: Network = bench::launch(args.validators, &[])?;
    match drive(args, json, &network, feeder, config, aggregators) {
        Ok(()) => {
            network.stop(args.keep);
            Ok(())
        }
        Err(e) => {
            // Keep the logs of a failed run.
            let dir = network.dir.path().display().to_string();
            network.stop(true);
            Err(e.context(format!("the network's logs are in {dir}")))
        }
    }
}

/// The feeder of a run: nodes, and per site its node, priority class and curve.
struct Feeder {
    nodes: Vec<NodeSpec>,
    sites: Vec<(NodeId, u8)>,
    curves: Vec<CurveSpec>,
}

/// A feeder as `bcte market gen` generates markets, one site per device.
fn generate_feeder(args: &MarketArgs) -> anyhow::Result<Feeder> {
    let generated = generate(&Params {
        bids: args.sites + 1,
        nodes: args.nodes,
        levels: 3,
        seed: args.seed,
        congested_permille: 100,
        mix: CurveMix::Mixed,
    })
    .context("generating the feeder")?;
    let market = &generated.market;
    let nodes = market
        .nodes()
        .iter()
        .map(|n| -> anyhow::Result<NodeSpec> {
            Ok(NodeSpec {
                id: NodeId::new(&n.id)?,
                parent: n.parent.as_deref().map(NodeId::new).transpose()?,
                import_limit: n.import_limit,
                export_limit: n.export_limit,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    // The generator's first bid is its upstream grid; the chain adds its own (MC-4.2).
    let mut sites = Vec::with_capacity(args.sites);
    let mut curves = Vec::with_capacity(args.sites);
    for (j, b) in market.bids().iter().enumerate().skip(1) {
        sites.push((
            NodeId::new(&market.nodes()[market.node_of_bid(j)].id)?,
            b.priority,
        ));
        curves.push(bcte_ledger::market::components_of(&b.curve));
    }
    Ok(Feeder {
        nodes,
        sites,
        curves,
    })
}

/// Sets the feeder up on the running `network`, then offers the load and reports.
fn drive(
    args: &MarketArgs,
    json: bool,
    network: &Network,
    generated: Feeder,
    config: MarketConfig,
    aggregators: usize,
) -> anyhow::Result<()> {
    let Feeder {
        nodes,
        sites,
        curves,
    } = generated;
    let first_height = bench::wait_up(network)?;
    let urls = network.urls.clone();
    let v = urls.len();
    let site_ids: Vec<SiteId> = (0..args.sites)
        .map(|j| SiteId::new(format!("site-{j}")).expect("a valid id"))
        .collect();

    let dso = files::read_key(&network.net.faucet)?;
    let chain = network.net.chain_id.clone();
    let feeder = FeederId::new(FEEDER).expect("a valid id");
    let site_keys: Vec<PrivateKey> = (0..args.sites).map(|_| files::generate_key()).collect();
    let aggregator_keys: Vec<PrivateKey> =
        (0..aggregators).map(|_| files::generate_key()).collect();
    let mut dso_txs = vec![sign(
        &chain,
        &dso,
        0,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder.clone(),
            epoch_ms: None,
            config,
            nodes,
            market_account: None,
            upstream_account: None,
        }),
    )];
    let specs: Vec<SiteSpec> = sites
        .iter()
        .enumerate()
        .map(|(j, (node, priority))| SiteSpec {
            site: site_ids[j].clone(),
            node: node.clone(),
            owner: AccountId::from_public_key(&site_keys[j].public_key()),
            priority: *priority,
            import_limit: None,
            export_limit: None,
        })
        .collect();
    register_sites(&mut dso_txs, &chain, &dso, &feeder, &specs);
    // AC-2.1: the owners and aggregators are enrolled by the DSO, the network's registrar.
    let members = site_keys
        .iter()
        .map(|k| (k, Role::Prosumer))
        .chain(aggregator_keys.iter().map(|k| (k, Role::Aggregator)))
        .map(|(k, r)| (AccountId::from_public_key(&k.public_key()), Roles::one(r)));
    for op in Enroll::each(members) {
        let nonce = dso_txs.len() as u64;
        dso_txs.push(sign(&chain, &dso, nonce, Payload::Enroll(op)));
    }
    settle(&urls[0], &dso_txs, "the feeder's registration")?;
    // Owners pay their settlements (the sites are unmetered: settled on their schedule), in
    // rounds within the mempool's limit per sender.
    let mints: Vec<Tx> = site_keys
        .iter()
        .enumerate()
        .map(|(j, key)| {
            sign(
                &chain,
                &dso,
                (dso_txs.len() + j) as u64,
                Payload::Mint {
                    to: AccountId::from_public_key(&key.public_key()),
                    amount: bcte_types::Amount::from_tokens(1_000_000).expect("fits"),
                },
            )
        })
        .collect();
    for round in mints.chunks(4_000) {
        settle(&urls[0], round, "an owner's funding")?;
    }
    if args.load == Load::Batch {
        let delegations: Vec<Tx> = site_keys
            .iter()
            .enumerate()
            .map(|(j, key)| {
                sign(
                    &chain,
                    key,
                    0,
                    Payload::SiteDelegate(SiteDelegate {
                        feeder: feeder.clone(),
                        site: site_ids[j].clone(),
                        aggregator: AccountId::from_public_key(
                            &aggregator_keys[j % aggregators].public_key(),
                        ),
                    }),
                )
            })
            .collect();
        settle(&urls[0], &delegations, "a delegation")?;
    }
    // The DSO operates the feeder: it reads every site's result (AC-6.3).
    let client = Client::new(&urls[0]).with_key(dso.clone());
    let f: FeederView = client.get(&format!("/v1/feeders/{FEEDER}"))?;
    let s: ScheduleView = client.get(&format!("/v1/feeders/{FEEDER}/schedule"))?;
    if s.clock_speed != 1 {
        bail!(
            "the network's market clock runs at speed {}, not 1",
            s.clock_speed
        );
    }
    let clock = Clock {
        epoch_ms: f.epoch_ms,
        interval_ms: args.interval_ms,
        lead_ms: args.lead_ms,
    };

    // Plan and sign the load, due from a start far enough ahead to finish signing first.
    let total =
        usize::try_from(args.rate * (args.warmup + args.duration)).context("too many bids")?;
    let probe = Instant::now();
    for j in 0..64 {
        let _ = sign(
            &chain,
            &site_keys[j % args.sites],
            0,
            Payload::Burn {
                amount: bcte_types::Amount(1),
            },
        );
    }
    let per_sig = probe.elapsed() / 64;
    let signatures = match args.load {
        Load::Batch => total / 100 + 1,
        Load::Single => total,
    };
    let signing = per_sig * signatures as u32;
    let start_ms = now_ms() + 2_000 + (signing.as_millis() as u64) * 2;
    let due_ns = |i: usize| (i as u128 * 1_000_000_000 / u128::from(args.rate)) as u64;
    let target = |i: usize| {
        Interval(clock.first_gate_at_or_after(start_ms + due_ns(i) / 1_000_000 + MARGIN_MS))
    };
    let entry = |i: usize| BidEntry {
        site: site_ids[i % args.sites].clone(),
        interval: target(i),
        curve: Some(curves[i % args.sites].clone()),
    };
    eprintln!("signing {total} bids ({:?} load) ...", args.load);
    let plan: Vec<Planned> = match args.load {
        Load::Single => {
            let sign_one = |i: usize| {
                let j = i % args.sites;
                let tx = sign(
                    &chain,
                    &site_keys[j],
                    (i / args.sites) as u64,
                    Payload::Bids(Bids {
                        feeder: feeder.clone(),
                        bids: vec![entry(i)],
                    }),
                );
                Planned {
                    at_ns: due_ns(i),
                    node: j % v,
                    hash: tx.hash(),
                    tx: tx.encode().to_vec(),
                    bids: 1,
                }
            };
            let half = total / 2;
            thread::scope(|sc| {
                let first = sc.spawn(|| (0..half).map(sign_one).collect::<Vec<_>>());
                let second: Vec<Planned> = (half..total).map(sign_one).collect();
                let mut all = first.join().expect("signing thread");
                all.extend(second);
                all
            })
        }
        Load::Batch => {
            let mut plan = Vec::new();
            let period_ns = BATCH_PERIOD_MS * 1_000_000;
            let budget = BULK_TX_BYTES_MAX - TX_OVERHEAD_BYTES;
            for (a, key) in aggregator_keys.iter().enumerate() {
                let sites_of_a = (args.sites - a).div_ceil(aggregators);
                let cap = BIDS_PER_TX_MAX.min(sites_of_a);
                let mut nonce = 0;
                let mut open: Vec<BidEntry> = Vec::new();
                let mut open_at = 0;
                let mut bytes = 0;
                let mut flush = |open: &mut Vec<BidEntry>, at: u64, plan: &mut Vec<Planned>| {
                    if open.is_empty() {
                        return;
                    }
                    let bids = open.len();
                    let tx = sign(
                        &chain,
                        key,
                        nonce,
                        Payload::Bids(Bids {
                            feeder: feeder.clone(),
                            bids: std::mem::take(open),
                        }),
                    );
                    nonce += 1;
                    plan.push(Planned {
                        at_ns: at,
                        node: a % v,
                        hash: tx.hash(),
                        tx: tx.encode().to_vec(),
                        bids,
                    });
                };
                for i in (0..total).filter(|i| (i % args.sites) % aggregators == a) {
                    let e = entry(i);
                    let size = e.encode_size();
                    let at = due_ns(i);
                    if !open.is_empty()
                        && (open.len() == cap || bytes + size > budget || at >= open_at + period_ns)
                    {
                        flush(&mut open, open_at, &mut plan);
                        bytes = 0;
                    }
                    if open.is_empty() {
                        open_at = at;
                    }
                    bytes += size;
                    open.push(e);
                }
                flush(&mut open, open_at, &mut plan);
            }
            plan
        }
    };
    eprintln!("signed {} transactions", plan.len());
    let index: HashMap<Hash, usize> = plan.iter().enumerate().map(|(i, p)| (p.hash, i)).collect();
    let mut per_node: Vec<Vec<(usize, &Planned)>> = vec![Vec::new(); v];
    for (i, p) in plan.iter().enumerate() {
        per_node[p.node].push((i, p));
    }
    for share in &mut per_node {
        share.sort_by_key(|(_, p)| p.at_ns);
    }
    let behind = now_ms().saturating_sub(start_ms);
    if behind > 0 {
        bail!("signing took {behind} ms longer than planned; the bids' intervals no longer fit");
    }
    thread::sleep(Duration::from_millis(start_ms - now_ms()));

    // The load.
    let shared = Arc::new(Shared::new(index));
    let nullified_before: Vec<u64> = urls
        .iter()
        .map(|u| nullified_views(u))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "offering {} bids/s for {} s of warm-up and {} s timed ...",
        args.rate, args.warmup, args.duration
    );
    let start = Instant::now();
    let window_from_ms = start_ms + args.warmup * 1_000;
    let window_to_ms = start_ms + (args.warmup + args.duration) * 1_000;
    let window = Duration::from_secs(args.warmup + args.duration);
    // The gates measured: those in the window whose interval had bids due over its whole
    // bidding span (from the previous gate less the margin), none before the load began; an
    // interval whose span began before the load would have bids from only some sites.
    let gates_from_ms = window_from_ms.max(start_ms + MARGIN_MS + args.interval_ms);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let stop_gates = std::sync::atomic::AtomicBool::new(false);
    let (seen, gates, nullified_after) = thread::scope(|sc| {
        let watcher = {
            let shared = &shared;
            let url = urls[0].clone();
            sc.spawn(move || bench::watch(&url, shared, start, first_height))
        };
        let gate_watcher = {
            let (urls, stop) = (&urls, &stop_gates);
            sc.spawn(move || watch_gates(urls, clock, gates_from_ms, window_to_ms, stop))
        };
        for (url, share) in urls.iter().zip(&per_node) {
            let shared = &shared;
            let errors = errors.clone();
            sc.spawn(move || {
                if let Err(e) = submit(url, share, shared, start) {
                    errors.lock().expect("errors").push(format!("{e:#}"));
                    shared.stop_submitting.store(true, Ordering::SeqCst);
                }
            });
        }
        while start.elapsed() < window && !shared.stop_submitting.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        shared.stop_submitting.store(true, Ordering::SeqCst);
        let nullified_after: Vec<anyhow::Result<u64>> =
            urls.iter().map(|u| nullified_views(u)).collect();
        let drain = Instant::now() + Duration::from_secs(15);
        while shared.finalized.load(Ordering::SeqCst) < shared.submitted.load(Ordering::SeqCst)
            && Instant::now() < drain
        {
            thread::sleep(Duration::from_millis(20));
        }
        shared.stop_watching.store(true, Ordering::SeqCst);
        let gates = gate_watcher.join().expect("gate watcher");
        stop_gates.store(true, Ordering::SeqCst);
        (watcher.join().expect("watcher"), gates, nullified_after)
    });
    if let Some(e) = errors.lock().expect("errors").first() {
        bail!("{e}");
    }
    let nullified: u64 = nullified_after
        .into_iter()
        .zip(&nullified_before)
        .map(|(after, before)| after.map(|a| a.saturating_sub(*before)))
        .sum::<anyhow::Result<u64>>()?;

    // What was final in the window.
    let from_ns = Duration::from_secs(args.warmup).as_nanos() as u64;
    let to_ns = window.as_nanos() as u64;
    let inside = |t: u64| (from_ns..to_ns).contains(&t);
    let in_window: Vec<&Seen> = seen.iter().filter(|t| inside(t.at_ns)).collect();
    let accepted_bids: usize = in_window
        .iter()
        .filter(|t| t.rejected.is_none())
        .map(|t| plan[t.index].bids)
        .sum();
    let accepted_txs = in_window.iter().filter(|t| t.rejected.is_none()).count();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut rejected_bids = 0;
    for t in seen.iter().filter(|t| t.rejected.is_some()) {
        rejected_bids += plan[t.index].bids;
        *reasons
            .entry(t.rejected.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let offered_bids: usize = plan
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let at = shared.submitted_at[*i].load(Ordering::SeqCst);
            at != UNSENT && inside(at)
        })
        .map(|(_, p)| p.bids)
        .sum();
    // Submission to finality, per bid.
    let mut latencies: Vec<f64> = Vec::new();
    for t in seen.iter().filter(|t| t.rejected.is_none()) {
        let sent = shared.submitted_at[t.index].load(Ordering::SeqCst);
        if inside(sent) {
            let ms = t.at_ns.saturating_sub(sent) as f64 / 1e6;
            latencies.extend(std::iter::repeat_n(ms, plan[t.index].bids));
        }
    }
    latencies.sort_by(f64::total_cmp);
    let missed: Vec<u64> = gates
        .iter()
        .filter(|(_, l)| l.is_none())
        .map(|(k, _)| *k)
        .collect();
    let mut gate_ms: Vec<f64> = gates
        .iter()
        .filter_map(|(_, l)| l.map(|us| us as f64 / 1e3))
        .collect();
    gate_ms.sort_by(f64::total_cmp);
    // The bids each of those intervals cleared with (read after the load).
    let mut bids_cleared = 0;
    let mut bids_per_interval = BTreeMap::new();
    for (k, _) in gates.iter().filter(|(_, l)| l.is_some()) {
        let r: ResultView = client.get(&format!("/v1/feeders/{FEEDER}/intervals/{k}/result"))?;
        bids_cleared += r.sites.len();
        bids_per_interval.insert(k.to_string(), r.sites.len());
    }
    let secs = args.duration as f64;
    let report = json!({
        "load": match args.load { Load::Batch => "batch", Load::Single => "single" },
        "validators": args.validators,
        "sites": args.sites,
        "nodes": args.nodes,
        "aggregators": (args.load == Load::Batch).then_some(aggregators),
        "interval_ms": args.interval_ms,
        "lead_ms": args.lead_ms,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "offered_bids_per_s": (offered_bids as f64 / secs).round(),
        "final_bids_per_s": (accepted_bids as f64 / secs).round(),
        "final_txs_per_s": (accepted_txs as f64 / secs).round(),
        "bid_latency_ms": {
            "p50": round1(percentile(&latencies, 50.0)),
            "p99": round1(percentile(&latencies, 99.0)),
        },
        "tx_bytes_per_bid": (plan.iter().map(|p| p.tx.len()).sum::<usize>() as f64 / total as f64).round(),
        "rejected_bids": rejected_bids,
        "rejections": reasons,
        "gate_closures": gates.len(),
        "gates_not_cleared": missed,
        "bids_cleared": bids_cleared,
        "bids_per_interval": bids_per_interval,
        "gate_to_final_ms": {
            "p50": round1(percentile(&gate_ms, 50.0)),
            "p99": round1(percentile(&gate_ms, 99.0)),
            "max": round1(gate_ms.last().copied().unwrap_or(f64::NAN)),
        },
        "nullified_views": nullified,
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "{} validators, {:?} load, {} s: offered {} bids/s, final {} bids/s ({} tx/s), bid \
             latency p50 {} ms, p99 {} ms; {} gate closures ({} bids cleared), gate to final on \
             every validator p50 {} ms, p99 {} ms, max {} ms; {} rejected bids; {} nullified views",
            args.validators,
            args.load,
            args.duration,
            report["offered_bids_per_s"],
            report["final_bids_per_s"],
            report["final_txs_per_s"],
            report["bid_latency_ms"]["p50"],
            report["bid_latency_ms"]["p99"],
            gates.len(),
            bids_cleared,
            report["gate_to_final_ms"]["p50"],
            report["gate_to_final_ms"]["p99"],
            report["gate_to_final_ms"]["max"],
            rejected_bids,
            nullified,
        );
        if !missed.is_empty() {
            println!("intervals not cleared on every validator within 10 s: {missed:?}");
        }
        for (reason, n) in &reasons {
            println!("rejected ({n} transactions): {reason}");
        }
    }
    Ok(())
}
