//! Meters, readings and settlement on the chain (rules ST-x.y of `docs/settlement-rules.md`,
//! cited at the branches).
//!
//! The DSO registers a meter for a site (its own key) and head-end systems for a feeder. A
//! meter's reading of a cleared interval is a transaction it signs; a head-end system's batch
//! carries many sites' energies of one interval and the Merkle root of the raw meter-signed
//! readings behind them. Each cleared interval is settled, in order, when every metered site
//! with a result has a reading or at its settlement deadline: every metered or allocated site
//! pays or is paid its energy charge at its node's price and its imbalance charge on its
//! deviation, the upstream exchange is settled against the upstream account, and every payment
//! goes through the feeder's market account. What an account cannot pay becomes its debt
//! ([`crate::state::Position`]): nothing is minted, nothing blocks the chain. Readings after
//! the settlement are true-ups, booked in the interval then next to clear, as are the DSO's
//! corrections.
//!
//! Reads follow the market's pattern: [`plan_reads`] says, from what has been read so far,
//! which keys a block's meter transactions and its settlement need; [`settle_due`] settles an
//! interval only if every key it touches was read (otherwise the next block, whose plan reads
//! them, does), so execution never needs a key that was not read.

use crate::{
    exec::{BlockContext, ExecError},
    keys::{StateKey, book_bucket},
    market::{Handled, reject},
    market_state::{FeederIndex, HEAD_ENDS_MAX, IntervalResult, Schedule, SiteTable},
    settle_state::{
        AdjustKind, Adjustment, BATCHES_PER_INTERVAL_MAX, IntervalSettlement, MeterEntry,
        ReadingRecord, ReadingSource, SettleIndex, SettledBucket, SiteSettlement,
    },
    working::{Prefetched, Working},
};
use bcte_market::limits::POWER_ABS_MAX;
use bcte_types::{
    AccountId, FeederId, Interval, Payload, Price, RejectReason, SiteId, Tx, WattHours,
    meter::{
        HeadEndSet, MEMO_BYTES_MAX, MeterBatch, MeterRegister, READINGS_PER_TX_MAX, Reading,
        SettlementAdjust,
    },
    units::div_round_half_away,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most feeders one block settles an interval of (ST-2.1).
pub const SETTLEMENTS_PER_BLOCK_MAX: usize = 4;

/// The largest reading (Wh, either sign): an hour at the engine's largest power (ST-1.4).
pub const READING_WH_ABS_MAX: i64 = POWER_ABS_MAX.0;

/// W·ms per Wh.
const MS_PER_HOUR: i128 = 3_600_000;
/// W·ms·(µ/MWh) per base unit: 3.6·10⁶ ms/h × 10⁶ Wh/MWh.
const ENERGY_CHARGE_DIVISOR: i128 = 3_600_000 * 1_000_000;

/// An i128 sum narrowed to i64, saturating (far beyond any real feeder's money).
fn saturate(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// ST-2.2: the scheduled energy of `served` W over `interval_ms`, in Wh.
pub fn scheduled_wh(served: i64, interval_ms: u64) -> i64 {
    div_round_half_away(i128::from(served) * i128::from(interval_ms), MS_PER_HOUR) as i64
}

/// ST-2.3: the energy charge of `served` W over `interval_ms` at `price`, in base units.
pub fn energy_charge(served: i64, interval_ms: u64, price: Price) -> i64 {
    div_round_half_away(
        i128::from(served) * i128::from(interval_ms) * i128::from(price.0),
        ENERGY_CHARGE_DIVISOR,
    ) as i64
}

/// ST-2.4: the imbalance charge of a deviation of `deviation_wh` at `price` with penalty
/// `penalty`, in base units: `d × (p + π)` for a shortfall of supply (`d > 0`), `d × (p − π)`
/// for a surplus (`d < 0`), over 10⁶.
pub fn imbalance_charge(deviation_wh: i64, price: Price, penalty: Price) -> i64 {
    let rate = if deviation_wh > 0 {
        i128::from(price.0) + i128::from(penalty.0)
    } else {
        i128::from(price.0) - i128::from(penalty.0)
    };
    div_round_half_away(i128::from(deviation_wh) * rate, 1_000_000) as i64
}

/// A site's settlement from its served power, price and reading (ST-2.2 to ST-2.4, ST-3.1).
pub fn settle_site(
    served: i64,
    price: Price,
    interval_ms: u64,
    penalty: Price,
    metered_wh: Option<i64>,
) -> SiteSettlement {
    let scheduled = scheduled_wh(served, interval_ms);
    // ST-3.1: without a reading, the site is settled on its schedule.
    let deviation = metered_wh.map_or(0, |m| m - scheduled);
    SiteSettlement {
        served: bcte_types::Watts(served),
        price,
        scheduled_wh: scheduled,
        metered_wh,
        deviation_wh: deviation,
        energy_charge: energy_charge(served, interval_ms, price),
        imbalance_charge: imbalance_charge(deviation, price, penalty),
    }
}

fn schedule_of(w: &mut Working<'_>, feeder: &FeederId) -> Result<Option<Schedule>, ExecError> {
    Ok(w.market
        .schedules
        .get(w.pre, &StateKey::Schedule(feeder.clone()))?
        .cloned())
}

/// A registered feeder's state.
pub(crate) fn feeder_state(
    w: &mut Working<'_>,
    feeder: &FeederId,
) -> Result<crate::market_state::FeederState, ExecError> {
    w.market
        .feeders
        .get(w.pre, &StateKey::Feeder(feeder.clone()))?
        .cloned()
        .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no nodes")))
}

fn site_table(w: &mut Working<'_>, feeder: &FeederId) -> Result<SiteTable, ExecError> {
    Ok(w.market
        .site_tables
        .get(w.pre, &StateKey::Sites(feeder.clone()))?
        .cloned()
        .unwrap_or_default())
}

/// ST-1.1: registers a site's meter, or swaps its key (its earlier readings stay).
pub(crate) fn register_meter(w: &mut Working<'_>, op: &MeterRegister) -> Handled {
    let Some(s) = schedule_of(w, &op.feeder)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    let key = StateKey::Site(op.feeder.clone(), op.site.clone());
    let Some(index) = w.market.sites.get(w.pre, &key)?.map(|s| s.index) else {
        reject!(RejectReason::UnknownSite {
            site: op.site.clone()
        });
    };
    let meters_key = StateKey::Meters(op.feeder.clone());
    let other = w
        .market
        .meters
        .get(w.pre, &meters_key)?
        .and_then(|t| {
            t.meters
                .iter()
                .find(|m| m.meter == op.meter && m.site != index)
        })
        .map(|m| m.site);
    // ST-1.1: one meter, one site.
    if let Some(other) = other {
        let table = site_table(w, &op.feeder)?;
        let name = table
            .sites
            .get(other as usize)
            .map_or_else(|| other.to_string(), |s| s.id.as_str().to_owned());
        reject!(RejectReason::invalid(format!(
            "meter {} is the meter of site {name:?} already",
            op.meter
        )));
    }
    if let Err(reason) = grant_meter_role(w, op.meter)? {
        reject!(reason);
    }
    let meters = w.market.meters.get_or_default(w.pre, &meters_key)?;
    let since = meters.get(index).map_or(s.next_clear, |m| m.since);
    meters.put(MeterEntry {
        site: index,
        meter: op.meter,
        since,
    });
    Ok(Ok(()))
}

/// AC-1.4: the DSO installs meters and head-end systems, so registering one gives its account
/// the meter role (a revoked account cannot be one).
fn grant_meter_role(w: &mut Working<'_>, account: AccountId) -> Handled {
    let a = w.money.account_mut(w.pre, account)?;
    if a.revoked {
        reject!(RejectReason::Revoked { account });
    }
    a.roles = a
        .roles
        .union(bcte_types::Roles::one(bcte_types::Role::Meter));
    Ok(Ok(()))
}

/// ST-1.2: allows or withdraws a head-end system.
pub(crate) fn set_head_end(w: &mut Working<'_>, op: &HeadEndSet) -> Handled {
    let key = StateKey::Feeder(op.feeder.clone());
    let Some(f) = w.market.feeders.get(w.pre, &key)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    let at = f.head_ends.binary_search(&op.account);
    if op.allowed && at.is_err() && f.head_ends.len() >= HEAD_ENDS_MAX {
        reject!(RejectReason::invalid(format!(
            "feeder {:?} has {HEAD_ENDS_MAX} head-end systems, the most it may have",
            op.feeder.as_str()
        )));
    }
    if op.allowed
        && let Err(reason) = grant_meter_role(w, op.account)?
    {
        reject!(reason);
    }
    let f = w.market.feeders.get_mut(w.pre, &key)?.expect("read above");
    match (at, op.allowed) {
        (Err(i), true) => f.head_ends.insert(i, op.account),
        (Ok(i), false) => {
            f.head_ends.remove(i);
        }
        _ => {}
    }
    Ok(Ok(()))
}

/// Why readings of interval `k` are not accepted now, if they are not (ST-1.4).
fn reading_window(
    s: &Schedule,
    index: Option<&SettleIndex>,
    k: Interval,
    now_ms: u64,
) -> Result<(), RejectReason> {
    match index {
        Some(idx) if k < s.next_clear => {
            if now_ms < idx.end_ms || now_ms > idx.readings_until_ms {
                return Err(RejectReason::ReadingClosed {
                    interval: k,
                    opens_ms: idx.end_ms,
                    closes_ms: idx.readings_until_ms,
                    now_ms,
                });
            }
            Ok(())
        }
        _ if k < s.next_clear => Err(RejectReason::invalid(format!(
            "interval {k} is past its retention: its readings are closed"
        ))),
        _ => {
            let c = s.config_at(k);
            let opens_ms = s.start_ms(k).saturating_add(c.interval_ms);
            Err(RejectReason::ReadingClosed {
                interval: k,
                opens_ms,
                closes_ms: opens_ms.saturating_add(c.reading_window_ms),
                now_ms,
            })
        }
    }
}

/// A reading checked and ready to write.
struct CheckedReading {
    site: SiteId,
    index: u32,
    wh: WattHours,
}

/// ST-1.4: checks one reading of a site of the feeder against the interval's state.
fn check_reading(
    w: &mut Working<'_>,
    feeder: &FeederId,
    k: Interval,
    site: &SiteId,
    wh: WattHours,
) -> Result<Result<(), RejectReason>, ExecError> {
    if wh.0.unsigned_abs() > READING_WH_ABS_MAX.unsigned_abs() {
        return Ok(Err(RejectReason::invalid(format!(
            "site {:?}, wh: {} Wh is beyond the limit of ±{READING_WH_ABS_MAX} Wh",
            site.as_str(),
            wh.0
        ))));
    }
    let key = StateKey::Readings(feeder.clone(), k, book_bucket(site));
    if w.market
        .readings
        .get(w.pre, &key)?
        .is_some_and(|b| b.get(site).is_some())
    {
        return Ok(Err(RejectReason::DuplicateReading {
            site: site.clone(),
            interval: k,
        }));
    }
    Ok(Ok(()))
}

/// Writes checked readings of interval `k` and does what each implies: one fewer missing
/// before the settlement (ST-2.1), a true-up after it (ST-3.2).
fn apply_readings(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    feeder: &FeederId,
    k: Interval,
    readings: Vec<CheckedReading>,
    source: ReadingSource,
) -> Result<(), ExecError> {
    let s = schedule_of(w, feeder)?
        .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no schedule")))?;
    let late = k < s.next_settle;
    let settling_key = StateKey::Settling(feeder.clone(), k);
    let meters = w
        .market
        .meters
        .get(w.pre, &StateKey::Meters(feeder.clone()))?
        .cloned()
        .unwrap_or_default();
    // FX-3.2: the sites of accepted flexibility offers are waited for as if they had results.
    let offered: BTreeSet<&SiteId> =
        match w.market.flex.get(w.pre, &StateKey::Flex(feeder.clone()))? {
            Some(flex) => readings
                .iter()
                .map(|r| &r.site)
                .filter(|site| flex.engaged(site, k))
                .collect(),
            None => BTreeSet::new(),
        };
    // CT-4.1: and the chargers of the EV contracts covering `k`, served or not.
    let chargers: BTreeSet<SiteId> = w
        .market
        .contracts
        .get(w.pre, &StateKey::Contracts(feeder.clone()))?
        .map(|t| {
            t.ev.iter()
                .filter(|e| e.covers(k))
                .map(|e| e.terms.site.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut found = 0u32;
    for r in &readings {
        let bucket = book_bucket(&r.site);
        let inserted = w
            .market
            .readings
            .get_or_default(w.pre, &StateKey::Readings(feeder.clone(), k, bucket))?
            .insert(ReadingRecord {
                site: r.site.clone(),
                wh: r.wh,
                source,
                late,
            });
        if !inserted {
            return Err(ExecError::Bug(format!(
                "a checked reading of {} is a duplicate",
                r.site
            )));
        }
        if !late
            && meters.meters_for(r.index, k)
            && (offered.contains(&r.site)
                || chargers.contains(&r.site)
                || w.market
                    .site_results
                    .get(w.pre, &StateKey::Results(feeder.clone(), k, bucket))?
                    .is_some_and(|b| b.get(&r.site).is_some()))
        {
            found += 1;
        }
    }
    let idx = w
        .market
        .settling
        .get_mut(w.pre, &settling_key)?
        .ok_or_else(|| ExecError::Bug(format!("interval {k} of {feeder} has no settle index")))?;
    for r in &readings {
        idx.readings.insert(book_bucket(&r.site));
    }
    if late {
        for r in readings {
            true_up(w, ctx, feeder, &s, k, r)?;
        }
        return Ok(());
    }
    idx.missing = idx.missing.saturating_sub(found);
    // ST-2.1: the last missing reading of the next interval to settle makes it due.
    if idx.missing == 0 && k == s.next_settle {
        let end_ms = idx.end_ms;
        let key = StateKey::Schedule(feeder.clone());
        let schedule = w
            .market
            .schedules
            .get_mut(w.pre, &key)?
            .expect("read above");
        schedule.settle_at_ms = Some(end_ms);
        crate::market::refresh_index(w, feeder)?;
    }
    Ok(())
}

/// ST-1.3: one site's reading, signed by its meter.
pub(crate) fn reading(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &Reading,
) -> Handled {
    let Some(s) = schedule_of(w, &op.feeder)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    let key = StateKey::Site(op.feeder.clone(), op.site.clone());
    let Some(index) = w.market.sites.get(w.pre, &key)?.map(|s| s.index) else {
        reject!(RejectReason::UnknownSite {
            site: op.site.clone()
        });
    };
    let meter = w
        .market
        .meters
        .get(w.pre, &StateKey::Meters(op.feeder.clone()))?
        .and_then(|m| m.get(index).map(|e| e.meter));
    if meter != Some(sender) {
        reject!(RejectReason::NotSiteMeter {
            site: op.site.clone()
        });
    }
    let settling = w
        .market
        .settling
        .get(w.pre, &StateKey::Settling(op.feeder.clone(), op.interval))?
        .cloned();
    if let Err(r) = reading_window(&s, settling.as_ref(), op.interval, ctx.now_ms) {
        reject!(r);
    }
    if let Err(r) = check_reading(w, &op.feeder, op.interval, &op.site, op.wh)? {
        reject!(r);
    }
    let checked = vec![CheckedReading {
        site: op.site.clone(),
        index,
        wh: op.wh,
    }];
    apply_readings(
        w,
        ctx,
        &op.feeder,
        op.interval,
        checked,
        ReadingSource::Meter,
    )?;
    Ok(Ok(()))
}

/// ST-1.2, ST-1.3: many sites' readings of one interval from a head-end system, all or none.
pub(crate) fn batch(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &MeterBatch,
) -> Handled {
    let Some(s) = schedule_of(w, &op.feeder)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    if !feeder_state(w, &op.feeder)?.head_ends.contains(&sender) {
        reject!(RejectReason::NotHeadEnd {
            feeder: op.feeder.clone()
        });
    }
    if op.readings.is_empty() || op.readings.len() > READINGS_PER_TX_MAX {
        reject!(RejectReason::invalid(format!(
            "readings: {} readings; send 1 to {READINGS_PER_TX_MAX} in one transaction",
            op.readings.len()
        )));
    }
    let settling_key = StateKey::Settling(op.feeder.clone(), op.interval);
    let settling = w.market.settling.get(w.pre, &settling_key)?.cloned();
    if let Err(r) = reading_window(&s, settling.as_ref(), op.interval, ctx.now_ms) {
        reject!(r);
    }
    let settling = settling.expect("the window is open");
    let batch_index = match settling.batches.iter().position(|h| *h == op.root) {
        Some(i) => i,
        None if settling.batches.len() >= BATCHES_PER_INTERVAL_MAX => {
            reject!(RejectReason::invalid(format!(
                "interval {} has {BATCHES_PER_INTERVAL_MAX} head-end batches, the most it may have",
                op.interval
            )))
        }
        None => settling.batches.len(),
    };
    let table = site_table(w, &op.feeder)?;
    let by_id: HashMap<&SiteId, u32> = table
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i as u32))
        .collect();
    let meters = w
        .market
        .meters
        .get(w.pre, &StateKey::Meters(op.feeder.clone()))?
        .cloned()
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(op.readings.len());
    for (i, r) in op.readings.iter().enumerate() {
        let Some(&index) = by_id.get(&r.site) else {
            reject!(RejectReason::UnknownSite {
                site: r.site.clone()
            });
        };
        // ST-1.2: a head-end system reports registered meters only.
        if meters.get(index).is_none() {
            reject!(RejectReason::NotSiteMeter {
                site: r.site.clone()
            });
        }
        if !seen.insert(&r.site) {
            reject!(RejectReason::invalid(format!(
                "readings[{i}] (site {:?}): the site is in the batch twice",
                r.site.as_str()
            )));
        }
        if let Err(reason) = check_reading(w, &op.feeder, op.interval, &r.site, r.wh)? {
            reject!(reason);
        }
        checked.push(CheckedReading {
            site: r.site.clone(),
            index,
            wh: r.wh,
        });
    }
    let idx = w
        .market
        .settling
        .get_mut(w.pre, &settling_key)?
        .expect("read above");
    if batch_index == idx.batches.len() {
        idx.batches.push(op.root);
    }
    apply_readings(
        w,
        ctx,
        &op.feeder,
        op.interval,
        checked,
        ReadingSource::Batch(batch_index as u8),
    )?;
    Ok(Ok(()))
}

/// Moves `amount` (positive: the owner pays) between a site's owner and the market account,
/// keeps the feeder's debtor list (ST-5.4), and returns the owner's open position.
fn charge_owner(
    w: &mut Working<'_>,
    feeder: &FeederId,
    market: AccountId,
    owner: AccountId,
    amount: i64,
) -> Result<i64, ExecError> {
    let left = w.money.settle_position(w.pre, owner, market, -amount)?;
    let key = StateKey::Debtors(feeder.clone());
    let in_debt = left < 0;
    let listed = w
        .market
        .debtors
        .get(w.pre, &key)?
        .is_some_and(|d| d.contains(&owner));
    if in_debt != listed {
        w.market
            .debtors
            .get_or_default(w.pre, &key)?
            .set(owner, in_debt);
    }
    Ok(left)
}

/// Books an adjustment in the interval next to clear (ST-3.2, ST-3.3) and charges it.
fn book_adjustment(
    w: &mut Working<'_>,
    feeder: &FeederId,
    s: &Schedule,
    owner: AccountId,
    adjustment: Adjustment,
) -> Result<(), ExecError> {
    let market = feeder_state(w, feeder)?.market_account;
    let bucket = book_bucket(&adjustment.site);
    let amount = adjustment.amount;
    let k = s.next_clear;
    w.market
        .adjustments
        .get_or_default(w.pre, &StateKey::Adjustments(feeder.clone(), k, bucket))?
        .items
        .push(adjustment);
    w.market
        .settling
        .get_or_default(w.pre, &StateKey::Settling(feeder.clone(), k))?
        .adjustments
        .insert(bucket);
    charge_owner(w, feeder, market, owner, amount)?;
    Ok(())
}

/// ST-3.2: a reading of a settled interval: its deviation from the schedule the site was
/// settled on, priced by ST-2.4, booked as a true-up.
fn true_up(
    w: &mut Working<'_>,
    _ctx: &BlockContext,
    feeder: &FeederId,
    s: &Schedule,
    k: Interval,
    r: CheckedReading,
) -> Result<(), ExecError> {
    let bucket = book_bucket(&r.site);
    let settled = w
        .market
        .settled
        .get(w.pre, &StateKey::Settled(feeder.clone(), k, bucket))?
        .and_then(|b| b.get(&r.site).copied());
    let table = site_table(w, feeder)?;
    let info = table
        .sites
        .get(r.index as usize)
        .ok_or_else(|| ExecError::Bug(format!("site {} is not in its table", r.site)))?
        .clone();
    let penalty = w
        .market
        .settling
        .get(w.pre, &StateKey::Settling(feeder.clone(), k))?
        .map_or(Price(0), |i| i.imbalance_penalty);
    let (scheduled, price) = match settled {
        Some(rec) if rec.metered_wh.is_none() => (rec.scheduled_wh, rec.price),
        Some(_) => {
            return Err(ExecError::Bug(format!(
                "site {} was settled on a reading of interval {k} it has not",
                r.site
            )));
        }
        // Not settled (no meter and no result then): served nothing at its node's price.
        None => {
            let result = w
                .market
                .results
                .get(w.pre, &StateKey::Result(feeder.clone(), k))?
                .ok_or_else(|| ExecError::Bug(format!("{feeder} {k} has no result")))?;
            (0, result.prices[info.node as usize])
        }
    };
    let deviation = r.wh.0 - scheduled;
    let amount = imbalance_charge(deviation, price, penalty);
    book_adjustment(
        w,
        feeder,
        s,
        info.owner,
        Adjustment {
            site: r.site,
            of: k,
            amount,
            kind: AdjustKind::TrueUp {
                metered_wh: r.wh.0,
                deviation_wh: deviation,
            },
        },
    )
}

/// ST-3.3: the DSO's documented correction of a settled site.
pub(crate) fn adjust(w: &mut Working<'_>, op: &SettlementAdjust) -> Handled {
    let Some(s) = schedule_of(w, &op.feeder)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    let key = StateKey::Site(op.feeder.clone(), op.site.clone());
    let Some(owner) = w.market.sites.get(w.pre, &key)?.map(|s| s.owner) else {
        reject!(RejectReason::UnknownSite {
            site: op.site.clone()
        });
    };
    if op.interval >= s.next_settle {
        reject!(RejectReason::invalid(format!(
            "interval {} is not settled yet (the next to settle is {}): a correction \
             follows a settlement",
            op.interval, s.next_settle
        )));
    }
    let known = w
        .market
        .settling
        .get(w.pre, &StateKey::Settling(op.feeder.clone(), op.interval))?
        .is_some();
    if !known {
        reject!(RejectReason::invalid(format!(
            "interval {} is past its retention",
            op.interval
        )));
    }
    if op.amount == 0 {
        reject!(RejectReason::invalid(
            "amount: a correction of 0 corrects nothing"
        ));
    }
    if op.memo.trim().is_empty() || op.memo.len() > MEMO_BYTES_MAX {
        reject!(RejectReason::invalid(format!(
            "memo: say why, in 1 to {MEMO_BYTES_MAX} bytes"
        )));
    }
    book_adjustment(
        w,
        &op.feeder,
        &s,
        owner,
        Adjustment {
            site: op.site.clone(),
            of: op.interval,
            amount: op.amount,
            kind: AdjustKind::Correction {
                memo: op.memo.clone(),
            },
        },
    )?;
    Ok(Ok(()))
}

/// ST-2.1: at clearing, the interval's settlement index: how many metered sites with a result
/// must read before it settles early, and its deadlines. Returns the index's due time.
pub(crate) fn open_settlement(
    w: &mut Working<'_>,
    feeder: &FeederId,
    k: Interval,
    result: &IntervalResult,
    sites_with_results: &[u32],
    config: &bcte_types::MarketConfig,
) -> Result<(), ExecError> {
    let meters = w
        .market
        .meters
        .get(w.pre, &StateKey::Meters(feeder.clone()))?
        .cloned()
        .unwrap_or_default();
    // FX-3.2: the sites of accepted flexibility offers are waited for too, bid or not.
    let mut waited: BTreeSet<u32> = sites_with_results.iter().copied().collect();
    let mut also_waited: BTreeSet<SiteId> = w
        .market
        .flex
        .get(w.pre, &StateKey::Flex(feeder.clone()))?
        .map(|flex| {
            flex.accepted(k)
                .flat_map(|(_, _, o)| o.sites.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    // CT-4.1: and the chargers of the EV contracts covering `k`, served or not: what they
    // delivered decides their contracts.
    if let Some(contracts) = w
        .market
        .contracts
        .get(w.pre, &StateKey::Contracts(feeder.clone()))?
    {
        also_waited.extend(
            contracts
                .ev
                .iter()
                .filter(|e| e.covers(k))
                .map(|e| e.terms.site.clone()),
        );
    }
    if !also_waited.is_empty() {
        let table = site_table(w, feeder)?;
        waited.extend(
            table
                .sites
                .iter()
                .enumerate()
                .filter(|(_, s)| also_waited.contains(&s.id))
                .map(|(i, _)| i as u32),
        );
    }
    let missing = waited.iter().filter(|&&i| meters.meters_for(i, k)).count() as u32;
    let end_ms = result.start_ms.saturating_add(result.interval_ms);
    let idx = w
        .market
        .settling
        .get_or_default(w.pre, &StateKey::Settling(feeder.clone(), k))?;
    idx.missing = missing;
    idx.end_ms = end_ms;
    idx.deadline_ms = end_ms.saturating_add(config.settlement_delay_ms);
    idx.readings_until_ms = end_ms.saturating_add(config.reading_window_ms);
    idx.imbalance_penalty = config.imbalance_penalty;
    Ok(())
}

/// When interval `idx` is due for settlement (ST-2.1): at its end once nothing is missing,
/// else at its deadline.
pub(crate) fn due_ms(idx: &SettleIndex) -> u64 {
    if idx.missing == 0 {
        idx.end_ms
    } else {
        idx.deadline_ms
    }
}

/// The intervals a block settles (ST-2.1): for each feeder due in the index as the block
/// found it, its next interval to settle, if the block clears nothing.
fn due_settlements(index: &FeederIndex, now_ms: u64) -> Vec<FeederId> {
    if index.feeders.iter().any(|e| e.next_gate_ms <= now_ms) {
        return Vec::new();
    }
    index.settling(now_ms).map(|e| e.feeder.clone()).collect()
}

/// Whether a block at `now_ms` settles anything (it then prunes nothing).
pub(crate) fn settles(index: &FeederIndex, now_ms: u64) -> bool {
    !due_settlements(index, now_ms).is_empty()
}

/// ST-2: settles the due intervals, after the block's transactions, in a block that clears
/// nothing.
pub(crate) fn settle_due(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    probe: &mut dyn crate::exec::Probe,
) -> Result<bool, ExecError> {
    let Some(index) = w.pre.decode::<FeederIndex>(&StateKey::Feeders)? else {
        return Ok(false);
    };
    let due = due_settlements(&index, ctx.now_ms);
    for f in &due {
        probe.begin();
        let before = w.events.len();
        settle_interval(w, ctx, f)?;
        probe.end(w.events.get(before));
    }
    Ok(!due.is_empty())
}

/// Everything one interval's settlement reads, if the block read it all.
struct SettleInputs {
    s: Schedule,
    k: Interval,
    idx: SettleIndex,
    result: IntervalResult,
    feeder: crate::market_state::FeederState,
    table: SiteTable,
    meters: crate::settle_state::MeterTable,
    /// Site index → its result (price, served).
    results: BTreeMap<u32, crate::market_state::SiteResult>,
    /// Site index → its reading.
    readings: BTreeMap<u32, i64>,
    /// The contracts covering the interval (CT-2), with their seller's and buyer's site index.
    contracts: Vec<(crate::contract::ContractEntry, u32, u32)>,
    /// The accepted offers of the flexibility requests covering the interval (FX-3): the
    /// request, the offer's number, the offer, and each site's index and baseline.
    flex: Vec<FlexInput>,
    /// The feeder's contract table, whose EV contracts the settlement adds to (CT-4).
    contract_table: crate::contract::ContractTable,
    /// The EV contracts covering the interval: their charger's index → the contract's place
    /// in `contract_table.ev`.
    ev: BTreeMap<u32, usize>,
}

/// One accepted offer to settle (FX-3).
struct FlexInput {
    id: bcte_types::Hash,
    request: bcte_types::flex::FlexRequest,
    number: u32,
    offer: crate::flex::OfferEntry,
    sites: Vec<(u32, Option<i64>)>,
}

/// Gathers a settlement's inputs, or `None` if a key it needs was not read (the next block's
/// plan reads it).
fn settle_inputs(w: &mut Working<'_>, f: &FeederId) -> Result<Option<SettleInputs>, ExecError> {
    let pre = w.pre;
    let Some(s) = schedule_of(w, f)? else {
        return Ok(None);
    };
    let k = s.next_settle;
    if k >= s.next_clear {
        return Ok(None);
    }
    let keys = [
        StateKey::Settling(f.clone(), k),
        StateKey::Result(f.clone(), k),
        StateKey::Book(f.clone(), k),
        StateKey::Meters(f.clone()),
        StateKey::Sites(f.clone()),
        StateKey::Feeder(f.clone()),
        StateKey::Debtors(f.clone()),
    ];
    let m = &w.market;
    let known = m.settling.known(pre, &keys[0])
        && m.results.known(pre, &keys[1])
        && m.books.known(pre, &keys[2])
        && m.meters.known(pre, &keys[3])
        && m.site_tables.known(pre, &keys[4])
        && m.feeders.known(pre, &keys[5])
        && m.debtors.known(pre, &keys[6])
        && m.contracts.known(pre, &StateKey::Contracts(f.clone()))
        && m.flex.known(pre, &StateKey::Flex(f.clone()))
        && (Interval(k.0 + 1) >= s.next_clear
            || m.settling
                .known(pre, &StateKey::Settling(f.clone(), Interval(k.0 + 1))));
    if !known {
        return Ok(None);
    }
    let Some(idx) = w.market.settling.get(pre, &keys[0])?.cloned() else {
        return Err(ExecError::Bug(format!(
            "cleared {f} {k} has no settle index"
        )));
    };
    let result = w
        .market
        .results
        .get(pre, &keys[1])?
        .cloned()
        .ok_or_else(|| ExecError::Bug(format!("cleared {f} {k} has no result")))?;
    let book = w
        .market
        .books
        .get(pre, &keys[2])?
        .cloned()
        .unwrap_or_default();
    let meters = w
        .market
        .meters
        .get(pre, &keys[3])?
        .cloned()
        .unwrap_or_default();
    let table = site_table(w, f)?;
    let feeder = feeder_state(w, f)?;
    for b in book.iter() {
        if !w
            .market
            .site_results
            .known(pre, &StateKey::Results(f.clone(), k, b))
        {
            return Ok(None);
        }
    }
    for b in idx.readings.iter() {
        if !w
            .market
            .readings
            .known(pre, &StateKey::Readings(f.clone(), k, b))
        {
            return Ok(None);
        }
    }
    let by_id: HashMap<&SiteId, u32> = table
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i as u32))
        .collect();
    let mut results = BTreeMap::new();
    for b in book.iter() {
        if let Some(bucket) = w
            .market
            .site_results
            .get(pre, &StateKey::Results(f.clone(), k, b))?
        {
            for (site, r) in &bucket.results {
                let i = *by_id
                    .get(site)
                    .ok_or_else(|| ExecError::Bug(format!("result of unknown site {site}")))?;
                results.insert(i, *r);
            }
        }
    }
    let mut readings = BTreeMap::new();
    for b in idx.readings.iter() {
        if let Some(bucket) = w
            .market
            .readings
            .get(pre, &StateKey::Readings(f.clone(), k, b))?
        {
            for r in &bucket.readings {
                let i = *by_id
                    .get(&r.site)
                    .ok_or_else(|| ExecError::Bug(format!("reading of unknown site {}", r.site)))?;
                readings.insert(i, r.wh.0);
            }
        }
    }
    // Every owner paid or charged, and both settlement accounts.
    let mut accounts: BTreeSet<AccountId> = [feeder.market_account, feeder.upstream_account].into();
    for &i in results.keys() {
        accounts.insert(table.sites[i as usize].owner);
    }
    for m in &meters.meters {
        if m.since <= k {
            accounts.insert(table.sites[m.site as usize].owner);
        }
    }
    let contract_table = w
        .market
        .contracts
        .get(pre, &StateKey::Contracts(f.clone()))?
        .cloned()
        .unwrap_or_default();
    let active: Vec<crate::contract::ContractEntry> = contract_table.active(k).cloned().collect();
    // CT-4: the chargers of the EV contracts covering the interval; at its deadline, the
    // provider is paid or charged too.
    let mut ev = BTreeMap::new();
    for (at, e) in contract_table.ev.iter().enumerate() {
        if !e.covers(k) {
            continue;
        }
        let i = *by_id.get(&e.terms.site).ok_or_else(|| {
            ExecError::Bug(format!("EV contract of unknown site {}", e.terms.site))
        })?;
        accounts.insert(table.sites[i as usize].owner);
        if e.terms.deadline == k {
            accounts.insert(e.terms.provider);
        }
        ev.insert(i, at);
    }
    let mut contracts = Vec::with_capacity(active.len());
    for c in active {
        let index = |site: &SiteId| {
            by_id
                .get(site)
                .copied()
                .ok_or_else(|| ExecError::Bug(format!("contract of unknown site {site}")))
        };
        let (seller, buyer) = (index(&c.terms.seller)?, index(&c.terms.buyer)?);
        accounts.insert(table.sites[seller as usize].owner);
        accounts.insert(table.sites[buyer as usize].owner);
        contracts.push((c, seller, buyer));
    }
    // FX-3: every site of every accepted offer of a request covering the interval, its owner
    // and its baseline from the readings of its baseline days (FX-3.1).
    let table_flex = w
        .market
        .flex
        .get(pre, &StateKey::Flex(f.clone()))?
        .cloned()
        .unwrap_or_default();
    let config = s.config_at(k);
    let (day, days) = (config.day_intervals(), config.baseline_days);
    let back = crate::flex::baseline_intervals(&s, k);
    let mut flex = Vec::new();
    for (r, number, o) in table_flex.accepted(k) {
        let mut sites = Vec::with_capacity(o.sites.len());
        for site in &o.sites {
            let i = *by_id
                .get(site)
                .ok_or_else(|| ExecError::Bug(format!("offer of unknown site {site}")))?;
            accounts.insert(table.sites[i as usize].owner);
            let mut history: BTreeMap<u64, i64> = BTreeMap::new();
            for &at in &back {
                if table_flex.engaged(site, at) {
                    continue;
                }
                let key = StateKey::Readings(f.clone(), at, book_bucket(site));
                if !w.market.readings.known(pre, &key) {
                    return Ok(None);
                }
                if let Some(wh) = w
                    .market
                    .readings
                    .get(pre, &key)?
                    .and_then(|b| b.readings.iter().find(|x| &x.site == site))
                    .map(|x| x.wh.0)
                {
                    history.insert(at.0, wh);
                }
            }
            let b = crate::flex::baseline(
                k,
                day,
                days,
                |at| history.get(&at.0).copied(),
                |at| table_flex.engaged(site, at),
            );
            sites.push((i, b));
        }
        flex.push(FlexInput {
            id: r.id,
            request: r.request.clone(),
            number,
            offer: o.clone(),
            sites,
        });
    }
    if accounts.iter().any(|a| !w.money.known(pre, *a)) {
        return Ok(None);
    }
    Ok(Some(SettleInputs {
        s,
        k,
        idx,
        result,
        feeder,
        table,
        meters,
        results,
        readings,
        contracts,
        flex,
        contract_table,
        ev,
    }))
}

/// ST-2: settles the next interval of `f`, if everything it needs was read.
fn settle_interval(w: &mut Working<'_>, ctx: &BlockContext, f: &FeederId) -> Result<(), ExecError> {
    let Some(inp) = settle_inputs(w, f)? else {
        return Ok(());
    };
    let SettleInputs {
        mut s,
        k,
        mut idx,
        result,
        feeder,
        table,
        meters,
        results,
        readings,
        contracts,
        flex,
        mut contract_table,
        ev,
    } = inp;
    let dt = result.interval_ms;
    let penalty = idx.imbalance_penalty;
    // ST-2.1: every metered site and every site with a result.
    let mut settle: BTreeSet<u32> = results.keys().copied().collect();
    settle.extend(
        meters
            .meters
            .iter()
            .filter(|m| m.since <= k)
            .map(|m| m.site),
    );
    let mut buckets: BTreeMap<u16, SettledBucket> = BTreeMap::new();
    // Sums in i128: every charge fits an i64, and no sum of up to FEEDER_SITES_MAX of them can
    // overflow an i128; they are narrowed, saturating, where they become a position.
    let mut owed: BTreeMap<AccountId, i128> = BTreeMap::new();
    let (mut energy_sum, mut imbalance_sum) = (0i128, 0i128);
    let mut totals = IntervalSettlement {
        height: ctx.height.get(),
        ..Default::default()
    };
    // ST-2.7: the identity of the market account's energy revenue, on exact numerators.
    let mut revenue: i128 = 0;
    for i in settle {
        let info = &table.sites[i as usize];
        let (served, price) = match results.get(&i) {
            Some(r) => (r.served().0, r.price),
            // ST-2.1: without a bid, a metered site is served nothing at its node's price.
            None => (0, result.prices[info.node as usize]),
        };
        revenue += i128::from(served) * i128::from(price.0);
        // ST-3.1: an unmetered site, or one without a reading, is settled on its schedule.
        let reading = if meters.meters_for(i, k) {
            readings.get(&i).copied()
        } else {
            None
        };
        let site = settle_site(served, price, dt, penalty, reading);
        totals.sites += 1;
        totals.estimated += u32::from(site.estimated());
        energy_sum += i128::from(site.energy_charge);
        imbalance_sum += i128::from(site.imbalance_charge);
        *owed.entry(info.owner).or_default() +=
            i128::from(site.energy_charge) + i128::from(site.imbalance_charge);
        // CT-4.1: a charger's settlement counts in its EV contract.
        if let Some(&at) = ev.get(&i) {
            contract_table.ev[at].accrue(&site);
        }
        buckets
            .entry(book_bucket(&info.id))
            .or_default()
            .sites
            .push((info.id.clone(), site));
    }
    // CT-2.1: each contract covering the interval pays its difference, buyer to seller, at the
    // seller's node price; both through the market account like every settlement payment.
    for (c, seller, buyer) in contracts {
        let (seller, buyer) = (&table.sites[seller as usize], &table.sites[buyer as usize]);
        let amount = crate::contract::difference(
            c.terms.power.0,
            dt,
            c.terms.price,
            result.prices[seller.node as usize],
        );
        *owed.entry(buyer.owner).or_default() += i128::from(amount);
        *owed.entry(seller.owner).or_default() -= i128::from(amount);
        totals.contracts.push(crate::contract::ContractFlow {
            id: c.id,
            buyer: c.terms.buyer.clone(),
            seller: c.terms.seller.clone(),
            amount,
        });
    }
    // FX-3: each accepted offer of a request covering the interval is paid what it delivered
    // against its sites' baselines, by the market account, split among the sites' owners.
    for FlexInput {
        id,
        request,
        number,
        offer,
        sites,
    } in flex
    {
        let measured: Vec<(Option<i64>, Option<i64>)> = sites
            .iter()
            .map(|&(i, b)| {
                let m = if meters.meters_for(i, k) {
                    readings.get(&i).copied()
                } else {
                    None
                };
                (b, m)
            })
            .collect();
        let (delivered_wh, amount, deliveries) =
            crate::flex::settle_offer(&request, &offer, dt, &measured);
        for (&(i, _), d) in sites.iter().zip(&deliveries) {
            *owed.entry(table.sites[i as usize].owner).or_default() -= i128::from(d.amount);
        }
        totals.flexibility.push(crate::flex::FlexFlow {
            request: id,
            offer: number,
            by: offer.by,
            delivered_wh,
            amount,
            sites: deliveries,
        });
    }
    // CT-4.2: an EV contract whose deadline this is settles: the owner pays the provider the
    // delivered energy at the option's price less what the market charged it for the charger.
    for (&site, &at) in &ev {
        let e = &contract_table.ev[at];
        if e.terms.deadline != k {
            continue;
        }
        let flow = e.close();
        let owner = table.sites[site as usize].owner;
        *owed.entry(owner).or_default() += i128::from(flow.difference);
        *owed.entry(flow.provider).or_default() -= i128::from(flow.difference);
        totals.ev.push(flow);
    }
    totals.ev.sort_unstable_by_key(|a| a.id);
    if !ev.is_empty() {
        w.market
            .contracts
            .put(StateKey::Contracts(f.clone()), contract_table);
    }
    // ST-2.6: the upstream exchange at the root's price.
    let root = feeder.root() as usize;
    let root_price = result.prices[root];
    revenue += i128::from(result.upstream.0) * i128::from(root_price.0);
    let mut rent: i128 = 0;
    for (n, node) in feeder.nodes.iter().enumerate() {
        if node.parent != u32::MAX {
            let dp =
                i128::from(result.prices[n].0) - i128::from(result.prices[node.parent as usize].0);
            rent += i128::from(result.flows[n].0) * dp;
        }
    }
    if revenue != rent {
        return Err(ExecError::Bug(format!(
            "settlement of {f} {k}: Σ a·p = {revenue} but Σ flow·Δp = {rent} (ST-2.7)"
        )));
    }
    totals.upstream_wh = scheduled_wh(result.upstream.0, dt);
    totals.upstream_charge = energy_charge(result.upstream.0, dt, root_price);
    totals.congestion_rent =
        div_round_half_away(rent * i128::from(dt), ENERGY_CHARGE_DIVISOR) as i64;
    totals.energy_charges = saturate(energy_sum);
    totals.imbalance_charges = saturate(imbalance_sum);
    totals.residue = saturate(
        energy_sum + i128::from(totals.upstream_charge) - i128::from(totals.congestion_rent),
    );
    // ST-2.5: payers first, then payees, each in account order, all through the market account.
    let market = feeder.market_account;
    let mut payments: Vec<(AccountId, i64, bool)> = owed
        .into_iter()
        .map(|(a, v)| (a, saturate(v), true))
        .collect();
    payments.push((feeder.upstream_account, totals.upstream_charge, false));
    payments.sort_by_key(|&(a, v, _)| (v <= 0, a));
    for (account, amount, is_owner) in payments {
        if amount == 0 {
            continue;
        }
        if is_owner {
            charge_owner(w, f, market, account, amount)?;
        } else {
            w.money.settle_position(w.pre, account, market, -amount)?;
        }
    }
    for (b, mut bucket) in buckets {
        bucket.sites.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        idx.settled.insert(b);
        w.market
            .settled
            .put(StateKey::Settled(f.clone(), k, b), bucket);
    }
    w.market.settling.put(StateKey::Settling(f.clone(), k), idx);
    w.events.push(crate::exec::MarketEvent::Settled {
        feeder: f.clone(),
        interval: k,
        sites: totals.sites,
        estimated: totals.estimated,
    });
    w.market
        .settlements
        .put(StateKey::Settlement(f.clone(), k), totals);
    // Intervals settle in order: the next one's due time, if it is cleared.
    let next = Interval(k.0 + 1);
    s.next_settle = next;
    s.settle_at_ms = if next < s.next_clear {
        let idx = w
            .market
            .settling
            .get(w.pre, &StateKey::Settling(f.clone(), next))?
            .ok_or_else(|| ExecError::Bug(format!("cleared {f} {next} has no settle index")))?;
        Some(due_ms(idx))
    } else {
        None
    };
    w.market.schedules.put(StateKey::Schedule(f.clone()), s);
    crate::market::refresh_index(w, f)?;
    Ok(())
}

/// The keys of the meter transactions of a block (beyond those [`crate::exec::reads_of`]
/// names) and of its settlement, given what has been read so far.
pub(crate) fn plan_reads(
    pre: &Prefetched,
    now_ms: Option<u64>,
    txs: &[Tx],
) -> Result<BTreeSet<StateKey>, ExecError> {
    let mut want = BTreeSet::new();
    let schedule = |f: &FeederId| -> Result<Option<Schedule>, ExecError> {
        Ok(pre
            .peek_decode::<Schedule>(&StateKey::Schedule(f.clone()))?
            .flatten())
    };
    let accounts_of = |f: &FeederId, want: &mut BTreeSet<StateKey>| -> Result<(), ExecError> {
        if let Some(Some(feeder)) =
            pre.peek_decode::<crate::market_state::FeederState>(&StateKey::Feeder(f.clone()))?
        {
            want.insert(StateKey::Account(feeder.market_account));
            want.insert(StateKey::Account(feeder.upstream_account));
        }
        Ok(())
    };
    for tx in txs {
        match &tx.body().payload {
            // A reading may be a true-up and a correction is charged: the owner, the market
            // account and the interval that books them.
            Payload::Reading(Reading { feeder, site, .. })
            | Payload::SettlementAdjust(SettlementAdjust { feeder, site, .. }) => {
                accounts_of(feeder, &mut want)?;
                if let Some(s) = schedule(feeder)? {
                    want.insert(StateKey::Settling(feeder.clone(), s.next_clear));
                    want.insert(StateKey::Adjustments(
                        feeder.clone(),
                        s.next_clear,
                        book_bucket(site),
                    ));
                }
                if let Some(Some(state)) = pre.peek_decode::<crate::market_state::SiteState>(
                    &StateKey::Site(feeder.clone(), site.clone()),
                )? {
                    want.insert(StateKey::Account(state.owner));
                }
            }
            Payload::MeterBatch(op) => {
                // Late readings are true-ups: their owners, the market account, the interval
                // that books them.
                let Some(s) = schedule(&op.feeder)? else {
                    continue;
                };
                if op.interval >= s.next_settle {
                    continue;
                }
                accounts_of(&op.feeder, &mut want)?;
                want.insert(StateKey::Settling(op.feeder.clone(), s.next_clear));
                if let Some(Some(table)) =
                    pre.peek_decode::<SiteTable>(&StateKey::Sites(op.feeder.clone()))?
                {
                    let owners: HashMap<&SiteId, AccountId> =
                        table.sites.iter().map(|s| (&s.id, s.owner)).collect();
                    for r in &op.readings {
                        want.insert(StateKey::Adjustments(
                            op.feeder.clone(),
                            s.next_clear,
                            book_bucket(&r.site),
                        ));
                        if let Some(owner) = owners.get(&r.site) {
                            want.insert(StateKey::Account(*owner));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (Some(now_ms), Some(Some(index))) =
        (now_ms, pre.peek_decode::<FeederIndex>(&StateKey::Feeders)?)
    else {
        return Ok(want);
    };
    for f in due_settlements(&index, now_ms) {
        for key in [
            StateKey::Schedule(f.clone()),
            StateKey::Feeder(f.clone()),
            StateKey::Sites(f.clone()),
            StateKey::Meters(f.clone()),
            StateKey::Debtors(f.clone()),
            StateKey::Contracts(f.clone()),
            StateKey::Flex(f.clone()),
        ] {
            want.insert(key);
        }
        accounts_of(&f, &mut want)?;
        let Some(s) = schedule(&f)? else { continue };
        let k = s.next_settle;
        for key in [
            StateKey::Settling(f.clone(), k),
            StateKey::Settling(f.clone(), Interval(k.0 + 1)),
            StateKey::Result(f.clone(), k),
            StateKey::Book(f.clone(), k),
        ] {
            want.insert(key);
        }
        let book = pre
            .peek_decode::<crate::market_state::BookIndex>(&StateKey::Book(f.clone(), k))?
            .map(Option::unwrap_or_default);
        let idx = pre
            .peek_decode::<SettleIndex>(&StateKey::Settling(f.clone(), k))?
            .flatten();
        let (Some(book), Some(idx)) = (book, idx) else {
            continue;
        };
        for b in book.iter() {
            want.insert(StateKey::Results(f.clone(), k, b));
        }
        for b in idx.readings.iter() {
            want.insert(StateKey::Readings(f.clone(), k, b));
        }
        let (Some(Some(table)), Some(meters)) = (
            pre.peek_decode::<SiteTable>(&StateKey::Sites(f.clone()))?,
            pre.peek_decode::<crate::settle_state::MeterTable>(&StateKey::Meters(f.clone()))?,
        ) else {
            continue;
        };
        for m in meters.unwrap_or_default().meters {
            if m.since <= k
                && let Some(site) = table.sites.get(m.site as usize)
            {
                want.insert(StateKey::Account(site.owner));
            }
        }
        let owners: HashMap<&SiteId, AccountId> =
            table.sites.iter().map(|s| (&s.id, s.owner)).collect();
        // CT-2.1: both parties of every contract covering the interval.
        if let Some(Some(contracts)) =
            pre.peek_decode::<crate::contract::ContractTable>(&StateKey::Contracts(f.clone()))?
        {
            for c in contracts.active(k) {
                for site in [&c.terms.seller, &c.terms.buyer] {
                    if let Some(owner) = owners.get(site) {
                        want.insert(StateKey::Account(*owner));
                    }
                }
            }
        }
        // CT-4: the owners of chargers under EV contracts, and a provider at the deadline.
        if let Some(Some(contracts)) =
            pre.peek_decode::<crate::contract::ContractTable>(&StateKey::Contracts(f.clone()))?
        {
            for e in contracts.ev.iter().filter(|e| e.covers(k)) {
                if let Some(owner) = owners.get(&e.terms.site) {
                    want.insert(StateKey::Account(*owner));
                }
                if e.terms.deadline == k {
                    want.insert(StateKey::Account(e.terms.provider));
                }
            }
        }
        // FX-3: the owners of the sites of accepted offers, and their baseline days.
        if let Some(Some(flex)) =
            pre.peek_decode::<crate::flex::FlexTable>(&StateKey::Flex(f.clone()))?
        {
            let back = crate::flex::baseline_intervals(&s, k);
            for (_, _, o) in flex.accepted(k) {
                for site in &o.sites {
                    if let Some(owner) = owners.get(site) {
                        want.insert(StateKey::Account(*owner));
                    }
                    for &at in &back {
                        if !flex.engaged(site, at) {
                            want.insert(StateKey::Readings(f.clone(), at, book_bucket(site)));
                        }
                    }
                }
            }
        }
        for b in book.iter() {
            if let Some(Some(bucket)) = pre.peek_decode::<crate::market_state::ResultBucket>(
                &StateKey::Results(f.clone(), k, b),
            )? {
                for (site, _) in &bucket.results {
                    if let Some(owner) = owners.get(site) {
                        want.insert(StateKey::Account(*owner));
                    }
                }
            }
        }
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures worked out by hand (docs/settlement-rules.md, the worked example).
    #[test]
    fn the_rules_give_the_worked_figures() {
        // 4 kW for 15 minutes: 1,000 Wh; at 80/MWh: 0.08 currency = 80,000 base units.
        assert_eq!(scheduled_wh(4_000, 900_000), 1_000);
        assert_eq!(energy_charge(4_000, 900_000, Price(80_000_000)), 80_000);
        // 1 W for 15 minutes is 0.25 Wh: rounds to 0; 2 W is 0.5 Wh: rounds away to 1.
        assert_eq!(scheduled_wh(1, 900_000), 0);
        assert_eq!(scheduled_wh(2, 900_000), 1);
        assert_eq!(scheduled_wh(-2, 900_000), -1);
        // Took 1,100 Wh: 100 Wh more at 80 + 20 = 100/MWh: 10,000 base units.
        let s = settle_site(
            4_000,
            Price(80_000_000),
            900_000,
            Price(20_000_000),
            Some(1_100),
        );
        assert_eq!(s.deviation_wh, 100);
        assert_eq!(s.imbalance_charge, 10_000);
        assert_eq!(s.total(), 90_000);
        // Took 900 Wh: -100 Wh at 80 - 20 = 60/MWh: -6,000 (paid back less than bought).
        let s = settle_site(
            4_000,
            Price(80_000_000),
            900_000,
            Price(20_000_000),
            Some(900),
        );
        assert_eq!(s.imbalance_charge, -6_000);
        assert_eq!(s.total(), 74_000);
        // A deviation costs π × |d| more than trading it: 100 Wh × 20/MWh = 2,000 both ways.
        assert_eq!(10_000 - 100 * 80, 2_000);
        assert_eq!(-6_000 - (-100 * 80), 2_000);
        // A PV site fed in 2 kW at -10/MWh: it pays 5,000 base units for 500 Wh.
        assert_eq!(energy_charge(-2_000, 900_000, Price(-10_000_000)), 5_000);
        // Estimated: no deviation, no imbalance.
        let s = settle_site(-2_000, Price(30_000_000), 900_000, Price(20_000_000), None);
        assert!(s.estimated() && s.deviation_wh == 0 && s.imbalance_charge == 0);
        assert_eq!(s.energy_charge, -15_000);
        // Half a base unit rounds away from zero: 1 W × 1.8 s × 1/MWh... 0.5 base units.
        assert_eq!(energy_charge(1_000, 1_800, Price(1_000_000)), 1);
        assert_eq!(energy_charge(-1_000, 1_800, Price(1_000_000)), -1);
    }

    #[test]
    fn no_charge_overflows_at_the_limits() {
        let p = bcte_market::limits::PRICE_ABS_MAX;
        let a = POWER_ABS_MAX.0;
        let e = energy_charge(a, crate::market::INTERVAL_MS_MAX, p);
        assert!(e > 0);
        let i = imbalance_charge(READING_WH_ABS_MAX * 2, p, p);
        assert!(i > 0);
    }
}
