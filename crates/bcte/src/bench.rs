//! `bcte bench chain`: throughput and submit-to-finality latency of a local network.
//!
//! The network is exactly what `bcte localnet init` writes (fsync on, every validator checks
//! every signature and computes the state root), plus genesis funds for the load's senders. The
//! load generator runs in this process: it signs every transaction before the timed window, then
//! submits them over HTTP in batches, each sender always through the same node (so its nonces
//! arrive in order), at a fixed rate (`--rate`) or, without it, as fast as the network absorbs
//! them with a bounded number in flight. A watcher follows node 0's finalized blocks; a
//! transaction's latency is the time from the start of its submission to the moment node 0
//! serves the block that holds it. The load starts `--warmup` seconds before the timed window;
//! only transactions finalized (for throughput) or submitted (for latency) inside the window
//! count.

use crate::localnet;
use anyhow::{Context as _, bail};
use bcte_node::{
    api::{HeadView, SubmitBatchRequest, SubmitBatchResponse},
    config::Tuning,
    files,
};
use bcte_types::{AccountId, Allocation, Amount, ChainId, Hash, Payload, Tx, TxBody};
use clap::{Args, Subcommand};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde_json::json;
use std::{
    collections::HashMap,
    process::{Child, ExitCode},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// `bcte bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Start a local network, drive signed transfers into it, report throughput and latency.
    Chain(ChainArgs),
    /// Start a local network with a feeder, stream bids into it across gate closures, report
    /// bids final per second, their latency, and gate closure to result on every validator.
    Market(crate::bench_market::MarketArgs),
    /// Start a local network with a feeder of metered sites, let a day of intervals clear,
    /// then import the day's meter-signed readings through a head-end as `bcte meter submit`
    /// does, and report how long until every batch is final.
    Meters(crate::bench_meters::MetersArgs),
}

/// Arguments of `bcte bench chain`.
#[derive(Args, Debug)]
pub struct ChainArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Length of the timed window, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before the timed window, not counted (fills the pipeline).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Offered load in transactions per second (default: as fast as the network absorbs).
    #[arg(long, value_name = "TX_PER_S")]
    rate: Option<u64>,
    /// Funded accounts that send the load.
    #[arg(long, default_value_t = 256)]
    senders: usize,
    /// Keep the network's directory (logs, data) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Transactions signed for saturation runs, per second of the window.
const SATURATION_TX_PER_S: u64 = 25_000;
/// In saturation runs, at most this many submitted transactions not yet seen final (about two
/// full blocks: enough to keep every proposer busy without a long queue).
const IN_FLIGHT_MAX: u64 = 16_384;
/// Transactions per HTTP batch.
const BATCH: usize = 1_024;

/// The part of a `GET /v1/blocks/{h}` answer the watcher needs: only the transaction hashes
/// (parsing whole transactions of full blocks would take CPU from the validators).
#[derive(serde::Deserialize)]
struct BlockTxs {
    txs: Vec<TxHash>,
}

#[derive(serde::Deserialize)]
struct TxHash {
    hash: String,
    status: String,
    reason: Option<String>,
}

/// One of our transactions seen in a finalized block.
pub(crate) struct Seen {
    /// Its index in the load.
    pub index: usize,
    /// When the watcher saw its block (ns since the load's start).
    pub at_ns: u64,
    /// Why it was rejected, if it was.
    pub rejected: Option<String>,
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Signs `count` transfers spread over `keys`: transaction i is sent by key i % K with nonce
/// i / K, to the next key. Two threads.
fn sign_all(keys: &[PrivateKey], chain_id: &ChainId, count: usize) -> Vec<Tx> {
    let accounts: Vec<AccountId> = keys
        .iter()
        .map(|k| AccountId::from_public_key(&k.public_key()))
        .collect();
    let k = keys.len();
    let sign = |i: usize| {
        Tx::sign(
            TxBody {
                chain_id: chain_id.clone(),
                sender: accounts[i % k],
                signer: None,
                nonce: (i / k) as u64,
                payload: Payload::Transfer {
                    to: accounts[(i + 1) % k],
                    amount: Amount(1),
                },
            },
            &keys[i % k],
        )
    };
    let half = count / 2;
    thread::scope(|s| {
        let first = s.spawn(|| (0..half).map(sign).collect::<Vec<_>>());
        let second: Vec<Tx> = (half..count).map(sign).collect();
        let mut all = first.join().expect("signing thread");
        all.extend(second);
        all
    })
}

pub(crate) struct Shared {
    /// Nanoseconds since the window's start at which each transaction's batch was sent.
    pub submitted_at: Vec<AtomicU64>,
    /// Index of each transaction by hash.
    pub index: HashMap<Hash, usize>,
    /// Submitted so far.
    pub submitted: AtomicU64,
    /// Seen final so far (ours).
    pub finalized: AtomicU64,
    pub stop_submitting: AtomicBool,
    pub stop_watching: AtomicBool,
}

impl Shared {
    /// The shared state of a load of the transactions in `index`.
    pub fn new(index: HashMap<Hash, usize>) -> Self {
        Self {
            submitted_at: (0..index.len()).map(|_| AtomicU64::new(UNSENT)).collect(),
            index,
            submitted: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            stop_submitting: AtomicBool::new(false),
            stop_watching: AtomicBool::new(false),
        }
    }
}

pub(crate) const UNSENT: u64 = u64::MAX;

/// Submits node `j`'s share (`txs`, indices into the whole list) to `url`.
fn submit(
    url: &str,
    txs: &[(usize, Vec<u8>)],
    shared: &Shared,
    start: Instant,
    rate_per_node: Option<f64>,
) -> anyhow::Result<()> {
    let agent = agent();
    let mut sent = 0usize;
    while sent < txs.len() && !shared.stop_submitting.load(Ordering::SeqCst) {
        let due = match rate_per_node {
            Some(r) => ((start.elapsed().as_secs_f64() * r) as usize).min(txs.len()),
            None => {
                let in_flight = shared.submitted.load(Ordering::SeqCst)
                    - shared
                        .finalized
                        .load(Ordering::SeqCst)
                        .min(shared.submitted.load(Ordering::SeqCst));
                if in_flight >= IN_FLIGHT_MAX {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                txs.len()
            }
        };
        if due <= sent {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let end = due.min(sent + BATCH);
        let batch = &txs[sent..end];
        let at = start.elapsed().as_nanos() as u64;
        for (i, _) in batch {
            shared.submitted_at[*i].store(at, Ordering::SeqCst);
        }
        let request = SubmitBatchRequest {
            txs: batch.iter().map(|(_, bytes)| hex::encode(bytes)).collect(),
        };
        let response: SubmitBatchResponse = agent
            .post(&format!("{url}/v1/txs/batch"))
            .send_json(&request)
            .with_context(|| format!("submitting to {url}"))?
            .body_mut()
            .read_json()
            .context("reading a batch answer")?;
        if let Some(refused) = response.results.iter().find_map(|r| r.error.clone()) {
            bail!("{url} refused a load transaction: {refused}");
        }
        shared
            .submitted
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        sent = end;
    }
    Ok(())
}

/// Follows node 0's finalized blocks; returns each of our transactions it sees, with the time
/// (ns since start) it saw it and its outcome.
pub(crate) fn watch(url: &str, shared: &Shared, start: Instant, first_height: u64) -> Vec<Seen> {
    let agent = agent();
    let mut next = first_height + 1;
    let mut seen = Vec::new();
    while !shared.stop_watching.load(Ordering::SeqCst) {
        let Ok(head) = agent
            .get(&format!("{url}/v1/head"))
            .call()
            .and_then(|mut r| r.body_mut().read_json::<HeadView>())
        else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let at = start.elapsed().as_nanos() as u64;
        while next <= head.height {
            let Ok(block) = agent
                .get(&format!("{url}/v1/blocks/{next}"))
                .call()
                .and_then(|mut r| r.body_mut().read_json::<BlockTxs>())
            else {
                break;
            };
            let mut ours = 0;
            for t in &block.txs {
                if let Some(&i) = bcte_types::ids::parse_hash(&t.hash)
                    .ok()
                    .and_then(|h| shared.index.get(&h))
                {
                    seen.push(Seen {
                        index: i,
                        at_ns: at,
                        rejected: (t.status != "accepted")
                            .then(|| t.reason.clone().unwrap_or_default()),
                    });
                    ours += 1;
                }
            }
            shared.finalized.fetch_add(ours, Ordering::SeqCst);
            next += 1;
        }
        thread::sleep(Duration::from_millis(5));
    }
    seen
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Node processes, killed when dropped.
pub(crate) struct Nodes(pub Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A local network started for a benchmark: its directory (deleted on drop unless kept), what
/// `localnet init` wrote, the node processes and their API URLs.
pub(crate) struct Network {
    pub dir: tempfile::TempDir,
    pub net: localnet::Init,
    pub nodes: Nodes,
    pub urls: Vec<String>,
}

impl Network {
    /// Stops every node; keeps the directory (and says where) if `keep`.
    pub fn stop(self, keep: bool) {
        drop(self.nodes);
        if keep {
            let kept = self.dir.keep();
            eprintln!("network kept in {}", kept.display());
        }
    }
}

/// Writes a network of `validators` as `bcte localnet init` does, with `allocations` in its
/// genesis, and starts every validator as its own process.
pub(crate) fn launch(validators: usize, allocations: &[Allocation]) -> anyhow::Result<Network> {
    launch_at(validators, allocations, 1)
}

/// [`launch`] with the market clock at `market_clock_speed` (MC-1).
pub(crate) fn launch_at(
    validators: usize,
    allocations: &[Allocation],
    market_clock_speed: u32,
) -> anyhow::Result<Network> {
    let dir = tempfile::Builder::new()
        .prefix("bcte-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let net = localnet::init(
        dir.path(),
        validators,
        0,
        None,
        allocations,
        Tuning::default(),
        market_clock_speed,
    )?;
    let mut nodes = Nodes(Vec::new());
    for node in &net.nodes {
        let log = node.config.with_file_name(&node.name).join("node.log");
        nodes.0.push(localnet::spawn_node(&node.config, &log)?);
    }
    let urls = net
        .nodes
        .iter()
        .map(|n| format!("http://{}", n.http))
        .collect();
    Ok(Network {
        dir,
        net,
        nodes,
        urls,
    })
}

/// Waits (at most a minute) until every node serves a block; returns the highest tip seen.
pub(crate) fn wait_up(network: &Network) -> anyhow::Result<u64> {
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first_height = 0;
    for url in &network.urls {
        loop {
            if let Ok(head) = agent
                .get(&format!("{url}/v1/head"))
                .call()
                .and_then(|mut r| r.body_mut().read_json::<HeadView>())
                && head.height >= 1
            {
                first_height = first_height.max(head.height);
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the network did not start within a minute (logs in {})",
                    network.dir.path().display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(first_height)
}

fn run_chain(args: &ChainArgs, json: bool) -> anyhow::Result<()> {
    if args.validators == 0 || args.duration == 0 || args.senders == 0 {
        bail!("--validators, --duration and --senders must be positive");
    }
    let keys: Vec<PrivateKey> = (0..args.senders).map(|_| files::generate_key()).collect();
    let allocations: Vec<Allocation> = keys
        .iter()
        .map(|k| Allocation {
            account: AccountId::from_public_key(&k.public_key()),
            amount: Amount(1_000_000 * Amount::PER_TOKEN),
            roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
        })
        .collect();
    let network = launch(args.validators, &allocations)?;
    let (dir, net, urls) = (&network.dir, &network.net, &network.urls);

    // Sign while the nodes start.
    let count = args.rate.unwrap_or(SATURATION_TX_PER_S) * (args.warmup + args.duration);
    let count = usize::try_from(count).context("too many transactions")?;
    eprintln!(
        "signing {count} transfers from {} senders for {} validators ...",
        args.senders, args.validators
    );
    let txs = sign_all(&keys, &net.chain_id, count);
    let index: HashMap<Hash, usize> = txs.iter().enumerate().map(|(i, t)| (t.hash(), i)).collect();
    let mut per_node: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); urls.len()];
    for (i, tx) in txs.iter().enumerate() {
        per_node[(i % args.senders) % urls.len()].push((i, tx.encode().to_vec()));
    }
    drop(txs);

    let first_height = wait_up(&network)?;

    let shared = Arc::new(Shared::new(index));
    eprintln!(
        "network up; offering load for {} s of warm-up and {} s timed ...",
        args.warmup, args.duration
    );
    let start = Instant::now();
    let window = Duration::from_secs(args.warmup + args.duration);
    let rate_per_node = args.rate.map(|r| r as f64 / urls.len() as f64);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = thread::scope(|s| {
        let watcher = {
            let shared = &shared;
            let url = urls[0].clone();
            s.spawn(move || watch(&url, shared, start, first_height))
        };
        for (url, share) in urls.iter().zip(&per_node) {
            let shared = &shared;
            let errors = errors.clone();
            s.spawn(move || {
                if let Err(e) = submit(url, share, shared, start, rate_per_node) {
                    errors.lock().expect("errors").push(format!("{e:#}"));
                    shared.stop_submitting.store(true, Ordering::SeqCst);
                }
            });
        }
        while start.elapsed() < window && !shared.stop_submitting.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        shared.stop_submitting.store(true, Ordering::SeqCst);
        // Let what is in flight become final, for the latency of the window's last transactions.
        let drain = Instant::now() + Duration::from_secs(15);
        while shared.finalized.load(Ordering::SeqCst) < shared.submitted.load(Ordering::SeqCst)
            && Instant::now() < drain
        {
            thread::sleep(Duration::from_millis(20));
        }
        shared.stop_watching.store(true, Ordering::SeqCst);
        watcher.join().expect("watcher")
    });
    if let Some(e) = errors.lock().expect("errors").first() {
        bail!("{e} (logs in {})", dir.path().display());
    }

    let from_ns = Duration::from_secs(args.warmup).as_nanos() as u64;
    let to_ns = window.as_nanos() as u64;
    let inside = |t: u64| (from_ns..to_ns).contains(&t);
    let submitted_in_window = shared
        .submitted_at
        .iter()
        .filter(|t| inside(t.load(Ordering::SeqCst)))
        .count();
    let final_in_window = seen.iter().filter(|t| inside(t.at_ns)).count();
    let mut latencies: Vec<f64> = seen
        .iter()
        .filter_map(|t| {
            let sent = shared.submitted_at[t.index].load(Ordering::SeqCst);
            inside(sent).then(|| t.at_ns.saturating_sub(sent) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let secs = args.duration as f64;
    let report = json!({
        "validators": args.validators,
        "duration_s": args.duration,
        "offered_tx_per_s": (submitted_in_window as f64 / secs).round(),
        "finalized_tx_per_s": (final_in_window as f64 / secs).round(),
        "latency_ms": {
            "p50": (percentile(&latencies, 50.0) * 10.0).round() / 10.0,
            "p99": (percentile(&latencies, 99.0) * 10.0).round() / 10.0,
        },
        "submitted": submitted_in_window,
        "finalized": final_in_window,
        "warmup_s": args.warmup,
        "latency_samples": latencies.len(),
        "mode": if args.rate.is_some() { "fixed rate" } else { "saturation" },
    });
    network.stop(args.keep);
    if json {
        println!("{report}");
    } else {
        println!(
            "{} validators, {} s, {}: offered {} tx/s, finalized {} tx/s, latency p50 {} ms, p99 {} ms",
            args.validators,
            args.duration,
            report["mode"].as_str().unwrap_or_default(),
            report["offered_tx_per_s"],
            report["finalized_tx_per_s"],
            report["latency_ms"]["p50"],
            report["latency_ms"]["p99"],
        );
    }
    Ok(())
}

/// Runs a `bcte bench` subcommand.
pub fn run_bench(cmd: BenchCommand, json: bool) -> ExitCode {
    let result = match cmd {
        BenchCommand::Chain(args) => run_chain(&args, json),
        BenchCommand::Market(args) => crate::bench_market::run_market(&args, json),
        BenchCommand::Meters(args) => crate::bench_meters::run_meters(&args, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
