//! `bcte bench meters`: a day of meter data imported through a head-end on a local network.
//!
//! Set-up, not timed: a local network (what `bcte localnet init` writes, one process per
//! validator) whose market clock runs at `--clock-speed` (450 by default: a 15-minute interval
//! passes in 2 s), a feeder of `--sites` metered sites (each meter its own key, registered by
//! the DSO) and a head-end system; the first site bids in every interval of the day, so each
//! interval waits for its readings before it settles (ST-2.1; the settlement deadline is set to
//! the reading window). While the day's `--intervals` intervals clear, every meter signs its
//! reading of every interval and the signed readings are written as the CSV `bcte meter submit`
//! reads.
//!
//! Timed, once the last interval has ended: exactly what `bcte meter submit` does: parse the
//! file, check every meter signature (every core, batch verification), build each interval's
//! batch and Merkle tree, store it on the node, submit its transaction and wait until every
//! transaction is final. Reported with the phases, and afterwards the time until the node
//! serves the last interval as settled.

use crate::{
    batch_cmds::{self, Batches},
    bench::{self, Network},
    bench_market::{register_sites, settle, sign},
    client::Client,
};
use anyhow::{Context as _, bail};
use bcte_node::{files, market_api::ScheduleView, settle_api::SettlementView};
use bcte_types::{
    AccountId, Amount, CurveSpec, FeederId, Interval, MarketConfig, NodeId, NodeSpec, Payload,
    Price, SiteId, SiteSpec, Tx, WattHours, Watts,
    batch::SignedReading,
    market::{BidEntry, Bids, FeederRegister},
    meter::{HeadEndSet, MeterRegister},
};
use clap::Args;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde_json::json;
use std::{
    io::Write as _,
    thread,
    time::{Duration, Instant},
};

/// Arguments of `bcte bench meters`.
#[derive(Args, Debug)]
pub struct MetersArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Metered sites on the feeder.
    #[arg(long, default_value_t = 10_000)]
    sites: usize,
    /// Intervals of readings (96: a day of 15-minute intervals).
    #[arg(long, default_value_t = 96)]
    intervals: u64,
    /// The interval length, market ms.
    #[arg(long, default_value_t = 900_000)]
    interval_ms: u64,
    /// The market clock's speed (market ms per wall ms).
    #[arg(long, default_value_t = 450)]
    clock_speed: u32,
    /// Keep the network's directory (logs, data, the readings file) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

const FEEDER: &str = "meters";
const DAY_MS: u64 = 86_400_000;

/// Runs `bcte bench meters`.
pub(crate) fn run_meters(args: &MetersArgs, json: bool) -> anyhow::Result<()> {
    if args.validators == 0 || args.sites == 0 || args.intervals == 0 {
        bail!("--validators, --sites and --intervals must be positive");
    }
    if args.intervals > bcte_types::market::BID_HORIZON_INTERVALS - 2 {
        bail!(
            "--intervals: at most {} (the bidding horizon)",
            bcte_types::market::BID_HORIZON_INTERVALS - 2
        );
    }
    eprintln!(
        "starting {} validators (market clock ×{}); a feeder of {} metered sites ...",
        args.validators, args.clock_speed, args.sites
    );
    let network = bench::launch_at(args.validators, &[], args.clock_speed)?;
    match drive(args, json, &network) {
        Ok(()) => {
            network.stop(args.keep);
            Ok(())
        }
        Err(e) => {
            let dir = network.dir.path().display().to_string();
            network.stop(true);
            Err(e.context(format!("the network's logs are in {dir}")))
        }
    }
}

fn schedule(client: &Client) -> anyhow::Result<ScheduleView> {
    client.get(&format!("/v1/feeders/{FEEDER}/schedule"))
}

fn drive(args: &MetersArgs, json: bool, network: &Network) -> anyhow::Result<()> {
    bench::wait_up(network)?;
    let url = network.urls[0].clone();
    let dso = files::read_key(&network.net.faucet)?;
    // The DSO operates the feeder: it reads the settlement's totals (AC-6.3).
    let client = Client::new(&url).with_key(dso.clone());
    let chain = network.net.chain_id.clone();
    let feeder = FeederId::new(FEEDER).expect("a valid id");
    let root = NodeId::new("substation").expect("a valid id");
    let owner = files::generate_key();
    let owner_account = AccountId::from_public_key(&owner.public_key());
    let head_end = files::generate_key();
    let meters: Vec<PrivateKey> = (0..args.sites).map(|_| files::generate_key()).collect();
    let site_ids: Vec<SiteId> = (0..args.sites)
        .map(|j| SiteId::new(format!("site-{j:05}")).expect("a valid id"))
        .collect();

    // The feeder, its sites (one owner), the owner's funds, the head-end.
    let config = MarketConfig {
        interval_ms: args.interval_ms,
        gate_lead_ms: args.interval_ms / 3,
        import_price: Price::from_units_per_mwh(90).expect("a price"),
        export_price: Price::from_units_per_mwh(20).expect("a price"),
        import_limit: Watts(1_000_000_000),
        export_limit: Watts(1_000_000_000),
        alert_import_limit: Watts(100_000_000),
        settlement_delay_ms: 2 * DAY_MS,
        reading_window_ms: 2 * DAY_MS,
        ..MarketConfig::DEFAULT
    };
    bcte_ledger::market::check_config(&config)
        .map_err(|e| anyhow::anyhow!("--interval-ms: {e}"))?;
    let mut dso_txs: Vec<Tx> = vec![sign(
        &chain,
        &dso,
        0,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder.clone(),
            epoch_ms: None,
            config,
            nodes: vec![NodeSpec {
                id: root.clone(),
                parent: None,
                import_limit: None,
                export_limit: None,
            }],
            market_account: None,
            upstream_account: None,
        }),
    )];
    let specs: Vec<SiteSpec> = site_ids
        .iter()
        .map(|site| SiteSpec {
            site: site.clone(),
            node: root.clone(),
            owner: owner_account,
            priority: 0,
            import_limit: None,
            export_limit: None,
        })
        .collect();
    register_sites(&mut dso_txs, &chain, &dso, &feeder, &specs);
    for payload in [
        Payload::Mint {
            to: owner_account,
            amount: Amount::from_tokens(1_000_000).expect("fits"),
        },
        Payload::HeadEnd(HeadEndSet {
            feeder: feeder.clone(),
            account: AccountId::from_public_key(&head_end.public_key()),
            allowed: true,
        }),
    ] {
        let nonce = dso_txs.len() as u64;
        dso_txs.push(sign(&chain, &dso, nonce, payload));
    }
    settle(&url, &dso_txs, "the feeder's registration")?;
    let registrations: Vec<Tx> = meters
        .iter()
        .zip(&site_ids)
        .enumerate()
        .map(|(j, (meter, site))| {
            sign(
                &chain,
                &dso,
                (dso_txs.len() + j) as u64,
                Payload::MeterRegister(MeterRegister {
                    feeder: feeder.clone(),
                    site: site.clone(),
                    meter: AccountId::from_public_key(&meter.public_key()),
                }),
            )
        })
        .collect();
    for round in registrations.chunks(4_000) {
        settle(&url, round, "a meter's registration")?;
    }

    // The first site bids in every interval of the day, so each waits for its readings.
    let s = schedule(&client)?;
    let first = s.next_interval + 1;
    let last = first + args.intervals - 1;
    let curve = CurveSpec::Points(vec![
        (Price::from_units_per_mwh(0).expect("a price"), Watts(2_000)),
        (Price::from_units_per_mwh(200).expect("a price"), Watts(0)),
    ]);
    let bids = Payload::Bids(Bids {
        feeder: feeder.clone(),
        bids: (first..=last)
            .map(|k| BidEntry {
                site: site_ids[0].clone(),
                interval: Interval(k),
                curve: Some(curve.clone()),
            })
            .collect(),
    });
    settle(
        &url,
        &[sign(&chain, &owner, 0, bids)],
        "the first site's bids",
    )?;
    eprintln!(
        "intervals {first} to {last} clear over the next {:.0} s; the meters sign meanwhile ...",
        (args.intervals * args.interval_ms) as f64 / f64::from(args.clock_speed) / 1_000.0
    );

    // Every meter signs every interval's reading (as meters do), into the CSV a head-end reads.
    let csv = network.dir.path().join("readings.csv");
    let signing = Instant::now();
    write_signed(&csv, &chain, &feeder, &site_ids, &meters, first, last)?;
    let signed_s = signing.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&csv).map_or(0, |m| m.len());

    // Wait until the last interval has ended (its readings open).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = schedule(&client)?;
        if s.next_interval > last
            && s.market_time_ms >= s.next_start_ms - (s.next_interval - last - 1) * args.interval_ms
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("interval {last} did not end within 10 minutes");
        }
        thread::sleep(Duration::from_millis(200));
    }

    // Timed: `bcte meter submit`.
    eprintln!(
        "importing {} readings ...",
        args.sites as u64 * args.intervals
    );
    let start = Instant::now();
    let batches: Batches = batch_cmds::read_signed(&csv, &chain, &feeder)?;
    let parsed = start.elapsed();
    batch_cmds::verify_all(&csv, &batches)?;
    let verified = start.elapsed();
    let imported = batch_cmds::import(
        &client,
        &head_end,
        &chain,
        &batches,
        Duration::from_secs(600),
    )?;
    let total = start.elapsed();
    if let Some(bad) = imported.iter().find(|i| i.status != "accepted") {
        bail!(
            "interval {}'s batch was {}: {}",
            bad.interval,
            bad.status,
            bad.reason.clone().unwrap_or_default()
        );
    }
    let readings: usize = imported.iter().map(|i| i.readings).sum();

    // Afterwards: until the last interval is settled.
    let url_last = format!("/v1/feeders/{FEEDER}/intervals/{last}/settlement");
    let settled: SettlementView = loop {
        let v: SettlementView = client.get(&url_last)?;
        if v.status == "settled" {
            break v;
        }
        if start.elapsed() > Duration::from_secs(900) {
            bail!("interval {last} was not settled within 15 minutes of the import");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let all_settled = start.elapsed();
    let totals = settled.totals.as_ref().context("settled without totals")?;
    if totals.sites as usize != args.sites || totals.estimated != 0 {
        bail!(
            "interval {last} settled {} sites, {} estimated; expected {} metered",
            totals.sites,
            totals.estimated,
            args.sites
        );
    }
    let report = json!({
        "validators": args.validators,
        "sites": args.sites,
        "intervals": args.intervals,
        "readings": readings,
        "batches": imported.len(),
        "csv_bytes": bytes,
        "signing_s (untimed)": round2(signed_s),
        "parse_s": round2(parsed.as_secs_f64()),
        "verify_s": round2((verified - parsed).as_secs_f64()),
        "store_submit_final_s": round2((total - verified).as_secs_f64()),
        "import_s": round2(total.as_secs_f64()),
        "readings_per_s": (readings as f64 / total.as_secs_f64()).round(),
        "until_last_settled_s": round2(all_settled.as_secs_f64()),
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "{} validators: {readings} meter-signed readings ({} sites × {} intervals, {} batches) imported in {:.2} s (parse {:.2}, signatures {:.2}, store + submit + final {:.2}); the last interval settled {:.2} s after the import began",
            args.validators,
            args.sites,
            args.intervals,
            imported.len(),
            total.as_secs_f64(),
            parsed.as_secs_f64(),
            (verified - parsed).as_secs_f64(),
            (total - verified).as_secs_f64(),
            all_settled.as_secs_f64()
        );
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Signs every site's reading of every interval in `first..=last` with its meter's key (on
/// every core) and writes them as a signed readings CSV. The energies are a deterministic
/// pattern of consumption and feed-in.
fn write_signed(
    path: &std::path::Path,
    chain: &bcte_types::ChainId,
    feeder: &FeederId,
    sites: &[SiteId],
    meters: &[PrivateKey],
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let threads = thread::available_parallelism().map_or(2, |n| n.get());
    let intervals: Vec<u64> = (first..=last).collect();
    let parts: Vec<Vec<u8>> = thread::scope(|s| {
        let workers: Vec<_> = intervals
            .chunks(intervals.len().div_ceil(threads))
            .map(|ks| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for &k in ks {
                        for (j, (site, key)) in sites.iter().zip(meters).enumerate() {
                            let wh = ((j as i64 * 37 + k as i64 * 11) % 900) - 200;
                            let r = SignedReading::sign(
                                chain,
                                feeder,
                                Interval(k),
                                site.clone(),
                                WattHours(wh),
                                key,
                            );
                            let _ = writeln!(
                                out,
                                "{},{k},{wh},{},{}",
                                site.as_str(),
                                r.meter,
                                r.signature_hex().unwrap_or_default()
                            );
                        }
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    f.write_all(b"site,interval,wh,meter,signature\n")?;
    for p in parts {
        f.write_all(&p)?;
    }
    f.flush()?;
    Ok(())
}
