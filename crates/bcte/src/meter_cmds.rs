//! Meters and settlement from the command line: `bcte tx meter register|head-end`,
//! `bcte tx reading`, `bcte tx adjust` and `bcte market settlement K` (docs/settlement-rules.md).
//!
//! Exit codes as for every transaction: 0 accepted, 1 the node failed or refused, 2 invalid
//! arguments, 3 rejected by the ledger (the receipt's reason is printed).

use crate::{
    chain_cmds::{TxCommon, emit, fail, submit},
    market_cmds::{QueryArgs, enc, input, resolve_feeder, site_id},
};
use bcte_node::{billing_api::currency, settle_api::SettlementView};
use bcte_types::{
    AccountId, Interval, Payload, WattHours,
    meter::{HeadEndSet, MEMO_BYTES_MAX, MeterRegister, Reading, SettlementAdjust},
};
use clap::{Args, Subcommand};
use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

/// `bcte tx meter` subcommands (DSO).
#[derive(Subcommand, Debug)]
pub enum MeterCommand {
    /// Register a site's meter (its own key's ACCOUNT), or swap the key of a metered site.
    Register {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The site.
        #[arg(long)]
        site: String,
        /// The meter's ACCOUNT (`bcte keys show METER.key`).
        #[arg(long, value_name = "ACCOUNT")]
        meter: AccountId,
    },
    /// Allow a head-end system to submit readings in bulk, or withdraw it.
    HeadEnd {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The head-end system's ACCOUNT.
        #[arg(long, value_name = "ACCOUNT")]
        account: AccountId,
        /// Withdraw it instead.
        #[arg(long)]
        withdraw: bool,
    },
}

/// Arguments of `bcte tx reading` (signed with the meter's key).
#[derive(Args, Debug)]
pub struct ReadingArgs {
    #[command(flatten)]
    common: TxCommon,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The site.
    #[arg(long)]
    site: String,
    /// The interval.
    #[arg(long)]
    interval: u64,
    /// The energy over the interval in Wh: positive consumed, negative fed in.
    #[arg(long, allow_hyphen_values = true)]
    wh: i64,
}

/// Arguments of `bcte tx adjust` (DSO).
#[derive(Args, Debug)]
pub struct AdjustArgs {
    #[command(flatten)]
    common: TxCommon,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The site.
    #[arg(long)]
    site: String,
    /// The settled interval it corrects.
    #[arg(long)]
    interval: u64,
    /// Base units the owner pays (negative: the owner is paid).
    #[arg(long, allow_hyphen_values = true)]
    amount: i64,
    /// Why (1 to 256 bytes; on the record).
    #[arg(long)]
    memo: String,
}

/// Runs `bcte tx meter ...`.
pub fn run_meter(cmd: MeterCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            MeterCommand::Register {
                common,
                feeder,
                site,
                meter,
            } => {
                let feeder = resolve_feeder(&common.client()?, feeder.as_deref())?;
                let site = site_id(&site)?;
                submit(
                    &common,
                    Payload::MeterRegister(MeterRegister {
                        feeder,
                        site,
                        meter,
                    }),
                    json,
                )
            }
            MeterCommand::HeadEnd {
                common,
                feeder,
                account,
                withdraw,
            } => {
                let feeder = resolve_feeder(&common.client()?, feeder.as_deref())?;
                submit(
                    &common,
                    Payload::HeadEnd(HeadEndSet {
                        feeder,
                        account,
                        allowed: !withdraw,
                    }),
                    json,
                )
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx reading ...`.
pub fn run_reading(args: ReadingArgs, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        let feeder = resolve_feeder(&args.common.client()?, args.feeder.as_deref())?;
        let payload = Payload::Reading(Reading {
            feeder,
            site: site_id(&args.site)?,
            interval: Interval(args.interval),
            wh: WattHours(args.wh),
        });
        submit(&args.common, payload, json)
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx adjust ...`.
pub fn run_adjust(args: AdjustArgs, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        if args.memo.trim().is_empty() || args.memo.len() > MEMO_BYTES_MAX {
            return Err(input(format!(
                "--memo: say why, in 1 to {MEMO_BYTES_MAX} bytes"
            )));
        }
        if args.amount == 0 {
            return Err(input("--amount: a correction of 0 corrects nothing"));
        }
        let feeder = resolve_feeder(&args.common.client()?, args.feeder.as_deref())?;
        let payload = Payload::SettlementAdjust(SettlementAdjust {
            feeder,
            site: site_id(&args.site)?,
            interval: Interval(args.interval),
            amount: args.amount,
            memo: args.memo.clone(),
        });
        submit(&args.common, payload, json)
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Prints `bcte market settlement K`.
pub fn settlement(
    q: &QueryArgs,
    interval: u64,
    site: Option<&str>,
    wait_s: u64,
    json: bool,
) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    let url = format!(
        "/v1/feeders/{}/intervals/{interval}/settlement",
        enc(feeder.as_str())
    );
    let started = Instant::now();
    let view: SettlementView = loop {
        let waiting = started.elapsed() < Duration::from_secs(wait_s);
        let view: SettlementView = match client.get(&url) {
            Ok(v) => v,
            // Not cleared yet: while waiting, wait for it to clear too.
            Err(e)
                if waiting
                    && e.downcast_ref::<crate::client::NodeError>()
                        .is_some_and(|n| {
                            n.status == 404 && n.message.contains("not cleared yet")
                        }) =>
            {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => return Err(e),
        };
        if view.status == "settled" || !waiting {
            break view;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Some(site) = site {
        let site = site_id(site)?;
        let Some(s) = view.sites.get(site.as_str()) else {
            return Err(anyhow::anyhow!(
                "site {:?} is not settled in interval {interval} of feeder {} ({})",
                site.as_str(),
                view.feeder,
                view.status
            ));
        };
        let value = serde_json::json!({
            "feeder": view.feeder, "interval": interval, "site": site.as_str(), "settlement": s,
        });
        emit(json, &value, || {
            format!(
                "site {} in interval {interval}: scheduled {} Wh, metered {}, deviation {} Wh at {} /MWh\nenergy charge {}, imbalance charge {}, total {} (currency; positive: the owner pays){}",
                site.as_str(),
                s.scheduled_wh,
                s.metered_wh
                    .map_or("none (estimated)".to_owned(), |m| format!("{m} Wh")),
                s.deviation_wh,
                s.price,
                currency(s.energy_charge),
                currency(s.imbalance_charge),
                currency(s.total),
                if s.estimated { "; estimated" } else { "" }
            )
        });
        return Ok(());
    }
    let value = serde_json::to_value(&view)?;
    emit(json, &value, || {
        let mut out = format!(
            "interval {interval} of feeder {}: {}",
            view.feeder, view.status
        );
        if let Some(m) = view.missing_readings {
            out.push_str(&format!(
                " ({m} readings missing; deadline {} ms)",
                view.deadline_ms.unwrap_or_default()
            ));
        }
        if !view.sites.is_empty() {
            out.push_str(&format!(
                "\n{:<24} {:>12} {:>12} {:>10} {:>14} {:>14} {:>14}  estimated",
                "site", "scheduled_wh", "metered_wh", "deviation", "energy", "imbalance", "total"
            ));
            for (name, s) in &view.sites {
                out.push_str(&format!(
                    "\n{:<24} {:>12} {:>12} {:>10} {:>14} {:>14} {:>14}  {}",
                    name,
                    s.scheduled_wh,
                    s.metered_wh.map_or("-".into(), |m| m.to_string()),
                    s.deviation_wh,
                    currency(s.energy_charge),
                    currency(s.imbalance_charge),
                    currency(s.total),
                    if s.estimated { "yes" } else { "no" }
                ));
            }
        }
        if let Some(t) = &view.totals {
            out.push_str(&format!(
                "\nmarket account {}: energy {}, imbalance {}, upstream {} ({} Wh), congestion rent {}, residue {}, net {}",
                t.market_account,
                currency(t.energy_charges),
                currency(t.imbalance_charges),
                currency(t.upstream_charge),
                t.upstream_wh,
                currency(t.congestion_rent),
                currency(t.residue),
                currency(t.market_net)
            ));
        }
        for c in view.totals.iter().flat_map(|t| &t.contracts) {
            out.push_str(&format!(
                "\ncontract {}: {} paid {} {} (currency; negative: the other way)",
                c.id,
                c.buyer,
                c.seller,
                currency(c.amount)
            ));
        }
        for a in &view.adjustments {
            out.push_str(&format!(
                "\nbooked here: {} of site {} for interval {}: {}{}",
                a.kind,
                a.site,
                a.of_interval,
                currency(a.amount),
                a.memo.as_ref().map_or(String::new(), |m| format!(" ({m})"))
            ));
        }
        out
    });
    Ok(())
}
