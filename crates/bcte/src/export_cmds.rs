//! `bcte export billing`: per-participant billing statements of a period for a legacy billing
//! system, as CSV or JSON (docs/billing-rules.md). Exit codes: 0 written, 1 the node failed or
//! refused, 2 invalid input (an inverted or empty period, a file that cannot be written).

use crate::{
    chain_cmds::{DEFAULT_NODE, fail},
    client::Client,
    market_cmds::{enc, input, resolve_feeder},
};
use bcte_node::billing_api::{BillView, BillingView, check_period, currency};
use clap::{Args, Subcommand, ValueEnum};
use std::{io::Write as _, path::PathBuf, process::ExitCode};

/// `bcte export` subcommands.
#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Billing statements of a period (both ends inclusive), per participant and site and per
    /// aggregator, for a legacy billing system.
    Billing(BillingArgs),
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per participant and site, then per aggregator (documented columns).
    Csv,
    /// The node's statement as it serves it.
    Json,
}

/// Arguments of `bcte export billing`.
#[derive(Args, Debug)]
pub struct BillingArgs {
    /// The first interval of the period.
    #[arg(long, value_name = "K1")]
    from_interval: u64,
    /// The last interval of the period (inclusive).
    #[arg(long, value_name = "K2")]
    to_interval: u64,
    /// csv or json.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Write here instead of to stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
    /// Read as this key's account (AC-6); without it, only what is public.
    #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
    key: Option<PathBuf>,
}

/// Runs `bcte export ...`.
pub fn run(cmd: ExportCommand) -> ExitCode {
    match cmd {
        ExportCommand::Billing(a) => billing(&a).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS),
    }
}

fn kwh(wh: i64) -> String {
    let sign = if wh < 0 { "-" } else { "" };
    let w = wh.unsigned_abs();
    format!("{sign}{}.{:03}", w / 1_000, w % 1_000)
}

/// The CSV header (docs/billing-rules.md, "The CSV").
pub const CSV_HEADER: [&str; 17] = [
    "participant",
    "role",
    "site",
    "period",
    "intervals",
    "estimated",
    "kwh_bought",
    "kwh_sold",
    "energy_charge",
    "imbalance",
    "adjustments",
    "contracts",
    "flexibility",
    "total",
    "total_base_units",
    "net_deviation_kwh",
    "netted_imbalance",
];

fn row(participant: &str, role: &str, site: &str, period: &str, b: &BillView) -> Vec<String> {
    vec![
        participant.to_owned(),
        role.to_owned(),
        site.to_owned(),
        period.to_owned(),
        b.intervals.to_string(),
        b.estimated.to_string(),
        kwh(b.wh_bought),
        kwh(b.wh_sold),
        currency(b.energy_charge),
        currency(b.imbalance_charge),
        currency(b.adjustments),
        currency(b.contracts),
        currency(b.flexibility),
        currency(b.total),
        b.total.to_string(),
        String::new(),
        String::new(),
    ]
}

/// Writes `view` as the documented CSV.
pub fn write_csv(view: &BillingView, out: impl std::io::Write) -> anyhow::Result<()> {
    let period = format!("{}-{}", view.from_interval, view.to_interval);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    for s in &view.statements {
        for (site, b) in &s.sites {
            w.write_record(row(&s.participant, "owner", site, &period, b))?;
        }
    }
    for p in &view.providers {
        for (site, b) in &p.chargers {
            w.write_record(row(&p.provider, "provider", site, &period, b))?;
        }
    }
    for p in &view.portfolios {
        let mut r = row(&p.aggregator, "aggregator", "*", &period, &p.total);
        r[15] = kwh(p.net_deviation_wh);
        r[16] = currency(p.netted_imbalance);
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(())
}

fn billing(a: &BillingArgs) -> anyhow::Result<()> {
    check_period(a.from_interval, a.to_interval)
        .map_err(|e| input(format!("--from-interval/--to-interval: {e}")))?;
    let client = Client::reading(&a.node, a.key.as_deref())?;
    let feeder = resolve_feeder(&client, a.feeder.as_deref())?;
    let view: BillingView = client.get(&format!(
        "/v1/feeders/{}/billing?from_interval={}&to_interval={}",
        enc(feeder.as_str()),
        a.from_interval,
        a.to_interval
    ))?;
    if view.settled_intervals == 0 {
        return Err(input(format!(
            "no interval from {} to {} is settled yet: nothing to bill (open: {})",
            a.from_interval,
            a.to_interval,
            if view.open_intervals.len() > 8 {
                format!("{} intervals", view.open_intervals.len())
            } else {
                format!("{:?}", view.open_intervals)
            }
        )));
    }
    let mut bytes = Vec::new();
    match a.format {
        Format::Csv => write_csv(&view, &mut bytes)?,
        Format::Json => {
            serde_json::to_writer(&mut bytes, &view)?;
            bytes.push(b'\n');
        }
    }
    match &a.out {
        None => std::io::stdout().write_all(&bytes)?,
        Some(path) => std::fs::write(path, &bytes)
            .map_err(|e| input(format!("{}: cannot write: {e}", path.display())))?,
    }
    if !view.open_intervals.is_empty() {
        eprintln!(
            "note: {} intervals of the period are not settled yet; the statement is not final",
            view.open_intervals.len()
        );
    }
    Ok(())
}
