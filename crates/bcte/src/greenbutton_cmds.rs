//! `bcte meter greenbutton FILE.xml`: a utility's Green Button (ESPI) file read, checked and
//! totalled (`bcte_greenbutton`), and, for a site, turned into its market interval readings by
//! the rules GB-1 to GB-6 of docs/greenbutton.md and submitted: signed by the site's meter as
//! readings of its own, or by a head-end as raw batches whose readings no meter signed and are
//! therefore marked estimated (ST-1.6).
//!
//! Exit codes: 0 done, 1 the node failed or refused, 2 a file that does not parse (one line
//! naming the element and where) or a series that cannot be settled, 3 a reading rejected by
//! the ledger.

use crate::{
    batch_cmds::{Batches, import},
    chain_cmds::{DEFAULT_NODE, chain_of, emit, fail, submit_in_order},
    client::{Client, NodeError},
    market_cmds::{enc, input, resolve_feeder, site_id},
};
use anyhow::Context as _;
use bcte_greenbutton::{
    Feed, Series,
    convert::{Conversion, Grid, convert},
};
use bcte_node::files;
use bcte_node::market_api::{ResultView, ScheduleView};
use bcte_types::{
    AccountId, ChainId, FeederId, Interval, Payload, SiteId, WattHours,
    batch::{RawBatch, SignedReading},
    meter::Reading,
};
use clap::Args;
use serde_json::{Value, json};
use std::{path::PathBuf, process::ExitCode, time::Duration};

/// The largest Green Button file read (a year of 5-minute data of a few series fits).
const FILE_BYTES_MAX: u64 = 256 << 20;

/// Arguments of `bcte meter greenbutton`.
#[derive(Args, Debug)]
pub struct GreenButtonArgs {
    /// The Green Button file: an ESPI Atom feed (or one entry).
    #[arg(value_name = "FILE.xml")]
    file: PathBuf,
    /// The site the file's readings are of: print (and with --submit, submit) its interval
    /// readings on the feeder's market intervals.
    #[arg(long)]
    site: Option<String>,
    /// Submit the site's readings (needs --site and --key).
    #[arg(long, requires = "site", requires = "key")]
    submit: bool,
    /// The submitter's key file: the site's meter (its readings are signed by it), or, with
    /// --meter, a head-end of the feeder (its readings are marked estimated, ST-1.6). Also the
    /// account the node is read as.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Submit as a head-end for the site's meter ACCOUNT (the one registered for the site,
    /// whose data the file is): raw batches of readings no meter signed (ST-1.6).
    #[arg(long, value_name = "ACCOUNT", requires = "submit")]
    meter: Option<AccountId>,
    /// Use only these series (numbered from 0 as printed); repeat for several. Default: every
    /// electricity series of the file, which must all be of one usage point.
    #[arg(long = "series", value_name = "N")]
    series: Vec<usize>,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
    /// How long to wait for the transactions to be final, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

/// Runs `bcte meter greenbutton`.
pub fn run(a: GreenButtonArgs, json: bool) -> ExitCode {
    greenbutton(&a, json).unwrap_or_else(|e| fail(&e))
}

fn read_feed(a: &GreenButtonArgs) -> anyhow::Result<Feed> {
    let name = a.file.display();
    let meta = std::fs::metadata(&a.file).map_err(|e| input(format!("{name}: {e}")))?;
    if meta.len() > FILE_BYTES_MAX {
        return Err(input(format!(
            "{name}: {} bytes, more than the {FILE_BYTES_MAX} read",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| input(format!("{name}: cannot read as UTF-8 text: {e}")))?;
    bcte_greenbutton::parse(&text).map_err(|e| input(format!("{name}: {e}")))
}

fn greenbutton(a: &GreenButtonArgs, json: bool) -> anyhow::Result<ExitCode> {
    let feed = read_feed(a)?;
    let summaries: Vec<_> = feed.series.iter().map(Series::summary).collect();
    let mut value = json!({
        "file": a.file.display().to_string(),
        "series": summaries,
    });
    let Some(site) = &a.site else {
        emit(json, &value, || {
            summaries
                .iter()
                .enumerate()
                .map(|(i, s)| describe(i, s))
                .collect::<Vec<_>>()
                .join("\n")
        });
        return Ok(ExitCode::SUCCESS);
    };
    let site = site_id(site)?;
    let chosen = choose(&feed, &a.series)?;
    let key = a.key.as_deref().map(files::read_key).transpose()?;
    let mut client = Client::new(&a.node);
    if let Some(k) = &key {
        client = client.with_key(k.clone());
    }
    let feeder = resolve_feeder(&client, a.feeder.as_deref())?;
    let grid = grid_of(&client, &feeder)?;
    let series: Vec<&Series> = chosen.iter().map(|&i| &feed.series[i]).collect();
    let conversion = convert(&series, grid).map_err(|e| input(e.to_string()))?;
    let schedule: ScheduleView =
        client.get(&format!("/v1/feeders/{}/schedule", enc(feeder.as_str())))?;
    let cleared = |k: u64| schedule.last_cleared.is_some_and(|c| k <= c);
    let (ready, later): (Vec<_>, Vec<_>) = conversion
        .readings
        .iter()
        .partition(|r| cleared(r.interval));
    check_grid(&client, &feeder, grid, &ready)?;
    value["site"] = json!(site.as_str());
    value["feeder"] = json!(feeder.as_str());
    value["used_series"] = json!(chosen);
    value["readings"] = json!(conversion.readings);
    value["partial_intervals"] = json!(conversion.partial);
    value["before_interval_0"] = json!(conversion.before_epoch);
    value["exact_total_wh"] = json!(conversion.exact_total);
    value["not_cleared_yet"] = json!(later.len());
    if !a.submit {
        emit(json, &value, || {
            conversion_text(&site, &conversion, later.len())
        });
        return Ok(ExitCode::SUCCESS);
    }
    let key = key.expect("clap requires --key with --submit");
    let submitted = submit(&client, &key, &feeder, &site, a.meter, &ready, a.timeout_s)?;
    let rejected = submitted
        .iter()
        .filter(|s| s["status"] != "accepted")
        .count();
    value["submitted"] = json!(submitted);
    value["rejected"] = json!(rejected);
    emit(json, &value, || {
        let mut s = conversion_text(&site, &conversion, later.len());
        s.push_str(&format!(
            "\nsubmitted {} readings ({rejected} rejected)",
            submitted.len()
        ));
        for r in submitted.iter().filter(|s| s["status"] != "accepted") {
            s.push_str(&format!(
                "\ninterval {}: {} ({})",
                r["interval"],
                r["status"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("")
            ));
        }
        s
    });
    Ok(if rejected > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The series to convert: those named, or every electricity series of the file's one usage
/// point.
fn choose(feed: &Feed, named: &[usize]) -> anyhow::Result<Vec<usize>> {
    if !named.is_empty() {
        for &i in named {
            if i >= feed.series.len() {
                return Err(input(format!(
                    "--series {i}: the file holds {} series (0 to {})",
                    feed.series.len(),
                    feed.series.len().saturating_sub(1)
                )));
            }
        }
        let mut v = named.to_vec();
        v.sort_unstable();
        v.dedup();
        return Ok(v);
    }
    let electric: Vec<usize> = (0..feed.series.len())
        .filter(|&i| feed.series[i].commodity() == "electricity")
        .collect();
    if electric.is_empty() {
        let held: Vec<String> = feed
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| format!("series {i} is {}", s.commodity()))
            .collect();
        return Err(input(format!(
            "the file holds no electricity series ({}): nothing to settle (GB-1)",
            if held.is_empty() {
                "no series at all".to_owned()
            } else {
                held.join(", ")
            }
        )));
    }
    let points: std::collections::BTreeSet<_> = electric
        .iter()
        .map(|&i| feed.series[i].usage_point.clone())
        .collect();
    if points.len() > 1 {
        return Err(input(format!(
            "the file's electricity series are of {} usage points: choose a site's with --series",
            points.len()
        )));
    }
    Ok(electric)
}

/// The feeder's interval grid, from the configuration in force (interval `from` starts at
/// `start_ms`, every interval `interval_ms` long).
fn grid_of(client: &Client, feeder: &FeederId) -> anyhow::Result<Grid> {
    let s: ScheduleView = client.get(&format!("/v1/feeders/{}/schedule", enc(feeder.as_str())))?;
    let c = s
        .configs
        .first()
        .context("the node reports a schedule without a configuration")?;
    let interval_ms = c.config.interval_ms;
    let epoch_ms = c
        .from
        .checked_mul(interval_ms)
        .and_then(|back| c.start_ms.checked_sub(back))
        .context("the feeder's intervals do not reach back to interval 0")?;
    Ok(Grid {
        epoch_ms,
        interval_ms,
    })
}

/// Checks that the grid places the first and last intervals to submit where the chain cleared
/// them (it would not if the interval length changed in between: submit per configuration).
fn check_grid(
    client: &Client,
    feeder: &FeederId,
    grid: Grid,
    ready: &[&bcte_greenbutton::convert::IntervalEnergy],
) -> anyhow::Result<()> {
    let ends = [ready.first(), ready.last()];
    for r in ends.into_iter().flatten() {
        let k = r.interval;
        let result: Option<ResultView> = match client.get(&format!(
            "/v1/feeders/{}/intervals/{k}/result",
            enc(feeder.as_str())
        )) {
            Ok(v) => Some(v),
            // Pruned (MC-8): nothing to compare with.
            Err(e)
                if e.downcast_ref::<NodeError>()
                    .is_some_and(|n| n.status == 404) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(v) = result {
            let start = grid.epoch_ms + k * grid.interval_ms;
            if (v.start_ms, v.interval_ms) != (start, grid.interval_ms) {
                return Err(input(format!(
                    "interval {k} cleared from {} for {} ms, not from {start} for {} ms as the \
                     configuration in force places it: the interval length changed; submit the \
                     file in parts",
                    v.start_ms, v.interval_ms, grid.interval_ms
                )));
            }
        }
    }
    Ok(())
}

/// Submits `ready` as `key`'s: without `meter`, the key is the site's meter and sends
/// readings of its own; with the site's `meter` named, the key is a head-end's and sends raw
/// batches of readings no meter signed (ST-1.6). The ledger refuses anyone else.
fn submit(
    client: &Client,
    key: &commonware_cryptography::ed25519::PrivateKey,
    feeder: &FeederId,
    site: &SiteId,
    meter: Option<AccountId>,
    ready: &[&bcte_greenbutton::convert::IntervalEnergy],
    timeout_s: u64,
) -> anyhow::Result<Vec<Value>> {
    let chain = chain_of(client)?;
    let sender = AccountId::from_public_key(&commonware_cryptography::Signer::public_key(key));
    let timeout = Duration::from_secs(timeout_s);
    let meter = match meter {
        Some(m) if m != sender => m,
        _ => return as_meter(client, key, &chain, feeder, site, ready, timeout),
    };
    let batches = Batches {
        batches: ready
            .iter()
            .map(|r| RawBatch {
                chain_id: chain.clone(),
                feeder: feeder.clone(),
                interval: Interval(r.interval),
                readings: vec![SignedReading::unsigned(
                    site.clone(),
                    WattHours(r.wh),
                    meter,
                )],
            })
            .collect(),
        lines: ready.iter().map(|_| vec![0]).collect(),
    };
    let imported = import(client, key, &chain, &batches, timeout)?;
    Ok(imported
        .into_iter()
        .zip(ready)
        .map(|(i, r)| {
            json!({
                "interval": i.interval,
                "wh": r.wh,
                "estimated": true,
                "root": i.root,
                "hash": i.hash,
                "status": i.status,
                "reason": i.reason,
            })
        })
        .collect())
}

/// The meter's own readings, one transaction per interval with consecutive nonces.
fn as_meter(
    client: &Client,
    key: &commonware_cryptography::ed25519::PrivateKey,
    chain: &ChainId,
    feeder: &FeederId,
    site: &SiteId,
    ready: &[&bcte_greenbutton::convert::IntervalEnergy],
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let payloads = ready
        .iter()
        .map(|r| {
            Payload::Reading(Reading {
                feeder: feeder.clone(),
                site: site.clone(),
                interval: Interval(r.interval),
                wh: WattHours(r.wh),
            })
        })
        .collect();
    let statuses = submit_in_order(client, key, chain, payloads, timeout, |_| Ok(()))?;
    Ok(statuses
        .into_iter()
        .zip(ready)
        .map(|(status, r)| {
            json!({
                "interval": r.interval,
                "wh": r.wh,
                "estimated": false,
                "hash": status.hash,
                "status": status.status,
                "reason": status.reason,
            })
        })
        .collect())
}

fn describe(i: usize, s: &bcte_greenbutton::Summary) -> String {
    let mut out = format!(
        "series {i}: {} {}, {} readings{} from {} to {}\n  meter reading {}\n  usage point   {}\n  total {} {} (raw {}, ×10^{})",
        s.commodity,
        s.flow.unwrap_or("(no flow direction)"),
        s.reading_count,
        s.interval_s.map_or(String::new(), |d| format!(
            " of {d} s{}",
            if s.uniform { "" } else { " (mixed)" }
        )),
        s.first_start.as_deref().unwrap_or("-"),
        s.last_end.as_deref().unwrap_or("-"),
        s.meter_reading,
        s.usage_point.as_deref().unwrap_or("(none linked)"),
        s.total,
        s.unit,
        s.total_raw,
        s.power_of_ten_multiplier,
    );
    if let (Some(c), Some(raw)) = (&s.cost, s.cost_raw) {
        out.push_str(&format!(
            "; cost {c} {} (raw {raw} ×10^-5)",
            s.currency.as_deref().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "\n  {} gaps, {} overlaps, {} duplicates ({} conflicting); blocks {} ({:?})",
        s.gap_count, s.overlaps, s.duplicates, s.conflicting_duplicates, s.blocks, s.block_order
    ));
    if s.billing_periods {
        out.push_str("\n  billing periods, not interval data: refused for settlement");
    }
    if !s.quality.is_empty() {
        let q: Vec<String> = s.quality.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("\n  quality: {}", q.join(", ")));
    }
    out
}

fn conversion_text(site: &SiteId, c: &Conversion, later: usize) -> String {
    let total: i64 = c.readings.iter().map(|r| r.wh).sum();
    let span = match (c.readings.first(), c.readings.last()) {
        (Some(a), Some(b)) => format!("intervals {} to {}", a.interval, b.interval),
        _ => "no interval".into(),
    };
    format!(
        "site {}: {} interval readings ({span}), {total} Wh; {} partial intervals left out, {} \
         readings before interval 0, {later} intervals not cleared yet",
        site.as_str(),
        c.readings.len(),
        c.partial.len(),
        c.before_epoch
    )
}
