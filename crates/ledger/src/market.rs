//! The market on the chain: configurations, grid modes, upstream prices, bids, and the
//! clearing of every interval at its gate closure inside block execution.
//!
//! Rules MC-x.y of `docs/market-chain-rules.md`, cited at the branches. Market time is block
//! time (through the genesis market clock, MC-1): nothing here knows another clock. After a
//! block's transactions, [`end_of_block`] clears every interval whose gate the block's market
//! time has passed, oldest first and within a bound per block (MC-7.1): it builds the
//! interval's market from state (the feeder's nodes and limits in force, a site with a
//! connection limit behind its own edge, the upstream grid as a bid at the root in normal and
//! alert mode, every bid with its site's priority class), clears it with `bcte-market`, and
//! writes the interval's result and each site's result into state. A block that clears
//! nothing prunes intervals past their retention instead (MC-8).
//!
//! Which keys a block needs depends on state (which intervals are due, which sites bid for
//! them): [`plan_reads`] says, from the values read so far, what else to read, and the driver
//! reads in stages until it asks for nothing new. It and [`end_of_block`] decide with the same
//! functions ([`due_intervals`], [`prune_plan`]), so execution never needs a key that was not
//! read.

use crate::{
    exec::{BlockContext, ExecError},
    keys::StateKey,
    keys::book_bucket,
    market_state::{
        BidBucket, BidRecord, BookIndex, CONFIG_CHANGES_MAX, ConfigSegment, Congestion,
        FeederEntry, FeederIndex, FeederState, IntervalResult, LimitChange, MODE_CHANGES_MAX,
        ResultBucket, Schedule, SiteResult, SiteTable,
    },
    settle_state::SettleIndex,
    working::{Prefetched, Typed, Working},
};
use bcte_market::{
    Bid, Curve, CurveError, Market, Node, Point, Ramp, Step,
    limits::{POWER_ABS_MAX, PRICE_ABS_MAX},
};
use bcte_types::{
    AccountId, CurveSpec, FeederId, GridMode, Interval, MarketConfig, Payload, Price, RejectReason,
    SiteId, Tx, Watts,
    market::{
        BIDS_PER_TX_MAX, BidEntry, Bids, CURVE_PARTS_MAX, GridModeSet, MarketConfigure, RampSpec,
        SCHEDULE_HORIZON_INTERVALS, StepSpec, UPSTREAM_PRICES_PER_TX_MAX, UpstreamPrice,
        UpstreamPrices,
    },
};
use std::collections::{BTreeMap, BTreeSet};

/// Most intervals one block clears (over all feeders): MC-7.1.
pub const CLEARINGS_PER_BLOCK_MAX: usize = 8;

/// Most bids one block clears, over all the intervals it clears; the first interval it clears
/// is cleared whatever its size: MC-7.1.
pub const CLEARING_BIDS_PER_BLOCK_MAX: usize = 20_000;

/// Most book buckets (of bids and of results) one block prunes (MC-8.2).
pub const PRUNE_BUCKETS_PER_BLOCK_MAX: usize = 128;

/// The shortest interval length (ms): MC-2.4.
pub const INTERVAL_MS_MIN: u64 = 1_000;

/// The longest interval length (ms): one hour (MC-2.4). With it and the engine's limits no
/// charge of the settlement can overflow.
pub const INTERVAL_MS_MAX: u64 = 3_600_000;

/// The longest gate closure lead (ms): a week (MC-2.4).
pub const GATE_LEAD_MS_MAX: u64 = 7 * 24 * 3_600_000;

/// The longest retention of cleared intervals (MC-8).
pub const RETENTION_INTERVALS_MAX: u32 = 1_000_000;

/// The market's typed values touched by a block.
#[derive(Default)]
pub(crate) struct MarketValues {
    pub(crate) index: Typed<FeederIndex>,
    pub(crate) feeders: Typed<FeederState>,
    pub(crate) schedules: Typed<Schedule>,
    pub(crate) site_tables: Typed<SiteTable>,
    pub(crate) sites: Typed<crate::market_state::SiteState>,
    pub(crate) books: Typed<BookIndex>,
    pub(crate) bids: Typed<BidBucket>,
    pub(crate) results: Typed<IntervalResult>,
    pub(crate) site_results: Typed<ResultBucket>,
    pub(crate) upstream: Typed<UpstreamPrice>,
    pub(crate) meters: Typed<crate::settle_state::MeterTable>,
    pub(crate) readings: Typed<crate::settle_state::ReadingBucket>,
    pub(crate) settling: Typed<crate::settle_state::SettleIndex>,
    pub(crate) settled: Typed<crate::settle_state::SettledBucket>,
    pub(crate) settlements: Typed<crate::settle_state::IntervalSettlement>,
    pub(crate) adjustments: Typed<crate::settle_state::AdjustBucket>,
    pub(crate) debtors: Typed<crate::settle_state::Debtors>,
    pub(crate) contracts: Typed<crate::contract::ContractTable>,
    pub(crate) flex: Typed<crate::flex::FlexTable>,
}

/// A domain handler's answer: accepted, rejected with a reason, or a failure of execution.
pub(crate) type Handled = Result<Result<(), RejectReason>, ExecError>;

/// Returns early with a rejection.
macro_rules! reject {
    ($reason:expr) => {
        return Ok(Err($reason))
    };
}
pub(crate) use reject;

/// MC-2.4: the rules a configuration follows; the error names the field.
pub fn check_config(c: &MarketConfig) -> Result<(), String> {
    let price_ok = |p: Price| p.0.unsigned_abs() <= PRICE_ABS_MAX.0.unsigned_abs();
    let power_ok = |w: Watts| (0..=POWER_ABS_MAX.0).contains(&w.0);
    if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&c.interval_ms) {
        return Err(format!(
            "config: interval_ms {} is not within {INTERVAL_MS_MIN} to {INTERVAL_MS_MAX}",
            c.interval_ms
        ));
    }
    if c.gate_lead_ms > GATE_LEAD_MS_MAX {
        return Err(format!(
            "config: gate_lead_ms {} is above the limit of {GATE_LEAD_MS_MAX}",
            c.gate_lead_ms
        ));
    }
    for (field, p) in [("price_floor", c.price_floor), ("price_cap", c.price_cap)] {
        if !price_ok(p) {
            return Err(format!(
                "config: {field} {} is beyond the limit of ±{}",
                p.0, PRICE_ABS_MAX.0
            ));
        }
    }
    if c.price_floor >= c.price_cap {
        return Err(format!(
            "config: price_floor {} is not below price_cap {}",
            c.price_floor.0, c.price_cap.0
        ));
    }
    for (field, p) in [
        ("import_price", c.import_price),
        ("export_price", c.export_price),
    ] {
        if p < c.price_floor || p > c.price_cap {
            return Err(format!(
                "config: {field} {} is outside [price_floor, price_cap]",
                p.0
            ));
        }
    }
    if c.export_price > c.import_price {
        return Err(format!(
            "config: export_price {} is above import_price {}",
            c.export_price.0, c.import_price.0
        ));
    }
    for (field, w) in [
        ("import_limit", c.import_limit),
        ("export_limit", c.export_limit),
        ("alert_import_limit", c.alert_import_limit),
    ] {
        if !power_ok(w) {
            return Err(format!(
                "config: {field} {} W is not within [0, {}]",
                w.0, POWER_ABS_MAX.0
            ));
        }
    }
    if c.alert_import_limit > c.import_limit {
        return Err(format!(
            "config: alert_import_limit {} W is above import_limit {} W",
            c.alert_import_limit.0, c.import_limit.0
        ));
    }
    if !(1..=RETENTION_INTERVALS_MAX).contains(&c.retention_intervals) {
        return Err(format!(
            "config: retention_intervals {} is not within 1 to {RETENTION_INTERVALS_MAX}",
            c.retention_intervals
        ));
    }
    // ST-2.4: a penalty, never a reward.
    if !(0..=PRICE_ABS_MAX.0).contains(&c.imbalance_penalty.0) {
        return Err(format!(
            "config: imbalance_penalty {} is not within [0, {}]",
            c.imbalance_penalty.0, PRICE_ABS_MAX.0
        ));
    }
    // ST-2.1, ST-1.4: readings come in before the deadline or as true-ups after it (and
    // never once the interval is pruned, MC-8).
    if c.settlement_delay_ms > c.reading_window_ms {
        return Err(format!(
            "config: settlement_delay_ms {} is longer than reading_window_ms {}",
            c.settlement_delay_ms, c.reading_window_ms
        ));
    }
    // FX-3.1: a baseline of 1 to 30 days.
    if !(1..=BASELINE_DAYS_MAX).contains(&c.baseline_days) {
        return Err(format!(
            "config: baseline_days {} is not within 1 to {BASELINE_DAYS_MAX}",
            c.baseline_days
        ));
    }
    Ok(())
}

/// The most days a flexibility baseline averages (FX-3.1).
pub const BASELINE_DAYS_MAX: u32 = 30;

/// The first interval whose gate is after `now_ms` (a new feeder's first interval to clear).
pub(crate) fn first_open_interval(epoch_ms: u64, config: &MarketConfig, now_ms: u64) -> Interval {
    let reach = now_ms.saturating_add(config.gate_lead_ms);
    if reach < epoch_ms {
        return Interval(0);
    }
    Interval((reach - epoch_ms) / config.interval_ms + 1)
}

/// The schedule of a feeder as the block sees it, or the rejection that the feeder is unknown.
pub(crate) fn schedule<'w>(
    w: &'w mut Working<'_>,
    feeder: &FeederId,
) -> Result<Result<&'w Schedule, RejectReason>, ExecError> {
    let key = StateKey::Schedule(feeder.clone());
    Ok(w.market
        .schedules
        .get(w.pre, &key)?
        .ok_or(RejectReason::UnknownFeeder {
            feeder: feeder.clone(),
        }))
}

/// MC-2.5: a change from interval `from` is accepted only while `from`'s gate is open.
pub(crate) fn check_open(s: &Schedule, from: Interval, now_ms: u64) -> Result<(), RejectReason> {
    let gate_ms = s.gate_ms(from);
    if from < s.next_clear || gate_ms <= now_ms {
        return Err(RejectReason::GateClosed {
            interval: from,
            gate_ms,
            now_ms,
        });
    }
    if from.0 > s.next_clear.0.saturating_add(SCHEDULE_HORIZON_INTERVALS) {
        return Err(RejectReason::BeyondHorizon {
            interval: from,
            last: Interval(s.next_clear.0.saturating_add(SCHEDULE_HORIZON_INTERVALS)),
        });
    }
    Ok(())
}

/// Brings a feeder's index entry up to date with its schedule: its next gate closure and
/// whether an interval is due for pruning (MC-8.1).
pub(crate) fn refresh_index(w: &mut Working<'_>, feeder: &FeederId) -> Result<(), ExecError> {
    let key = StateKey::Schedule(feeder.clone());
    let Some(s) = w.market.schedules.get(w.pre, &key)? else {
        return Ok(());
    };
    let entry = FeederEntry {
        feeder: feeder.clone(),
        next_gate_ms: s.gate_ms(s.next_clear),
        prune: prune_due(s),
        settle_at_ms: s.settle_at_ms,
    };
    let index_key = StateKey::Feeders;
    let mut index = w
        .market
        .index
        .get(w.pre, &index_key)?
        .cloned()
        .unwrap_or_default();
    if index.get(feeder) != Some(&entry) {
        index.put(entry);
        w.market.index.put(index_key, index);
    }
    Ok(())
}

/// MC-8.1: the interval to prune next, if it is past its retention.
pub(crate) fn prune_due(s: &Schedule) -> Option<Interval> {
    let retention = u64::from(s.config_at(s.next_clear).retention_intervals);
    // An interval is pruned once past its retention and settled (ST-2.1).
    (s.prune_next.0.saturating_add(retention) < s.next_clear.0 && s.prune_next < s.next_settle)
        .then_some(s.prune_next)
}

/// When the next gate of any feeder closes, as the first block timestamp at or after it
/// (through the market clock, MC-1), in the state at `height`: a proposer stops waiting for
/// transactions then, so the block that clears comes on time.
pub fn next_gate_block_ms<R: jmt::storage::TreeReader>(
    reader: &R,
    height: bcte_types::Height,
) -> Result<Option<u64>, crate::tree::TreeError> {
    let corrupt =
        |key: &StateKey| crate::tree::TreeError(format!("stored value of {key} is corrupt"));
    let read = |key: &StateKey| crate::tree::read_value(reader, height, key);
    let Some(bytes) = read(&StateKey::Feeders)? else {
        return Ok(None);
    };
    let index: FeederIndex =
        crate::working::decode_value(&bytes).ok_or_else(|| corrupt(&StateKey::Feeders))?;
    let Some(gate) = index.next_gate_ms() else {
        return Ok(None);
    };
    let clock = match read(&StateKey::MarketClock)? {
        None => crate::market_state::MarketClock::REAL_TIME,
        Some(b) => {
            crate::working::decode_value(&b).ok_or_else(|| corrupt(&StateKey::MarketClock))?
        }
    };
    Ok(Some(clock.block_time_of(gate)))
}

/// Converts a curve as submitted into the engine's curve (MR-1.1), or says why it is not one.
pub fn curve_of(spec: &CurveSpec) -> Result<Curve, CurveError> {
    match spec {
        CurveSpec::Points(points) => {
            let points: Vec<Point> = points
                .iter()
                .map(|&(price, power)| Point { price, power })
                .collect();
            Curve::from_points(&points)
        }
        CurveSpec::Components { base, steps, ramps } => Curve::from_components(
            *base,
            steps
                .iter()
                .map(|s| Step {
                    price: s.price,
                    drop: s.drop,
                })
                .collect(),
            ramps
                .iter()
                .map(|r| Ramp {
                    start: r.start,
                    end: r.end,
                    drop: r.drop,
                    count: r.count,
                })
                .collect(),
        ),
    }
}

/// The component form of an engine curve, as the chain stores it.
pub fn components_of(curve: &Curve) -> CurveSpec {
    CurveSpec::Components {
        base: curve.max_power(),
        steps: curve
            .steps()
            .iter()
            .map(|s| StepSpec {
                price: s.price,
                drop: s.drop,
            })
            .collect(),
        ramps: curve
            .ramps()
            .iter()
            .map(|r| RampSpec {
                start: r.start,
                end: r.end,
                drop: r.drop,
                count: r.count,
            })
            .collect(),
    }
}

/// Whether every price of `curve` is within `[floor, cap]`.
fn within(curve: &Curve, floor: Price, cap: Price) -> bool {
    curve
        .price_span()
        .is_none_or(|(low, high)| low >= floor && high <= cap)
}

/// MC-2.5: replaces a feeder's configuration from a future interval.
pub(crate) fn configure(w: &mut Working<'_>, ctx: &BlockContext, op: &MarketConfigure) -> Handled {
    if let Err(e) = check_config(&op.config) {
        reject!(RejectReason::invalid(e));
    }
    let s = match schedule(w, &op.feeder)? {
        Ok(s) => s,
        Err(r) => reject!(r),
    };
    if let Err(r) = check_open(s, op.from, ctx.now_ms) {
        reject!(r);
    }
    // MC-2.2: a change of Δ keeps the start of its first interval.
    let start_ms = s.start_ms(op.from);
    let gate_ms = start_ms.saturating_sub(op.config.gate_lead_ms);
    if gate_ms <= ctx.now_ms {
        reject!(RejectReason::GateClosed {
            interval: op.from,
            gate_ms,
            now_ms: ctx.now_ms,
        });
    }
    // MC-2.5: gates stay increasing, so intervals clear in order.
    if op.from.0 > 0 && gate_ms <= s.gate_ms(Interval(op.from.0 - 1)) {
        reject!(RejectReason::invalid(format!(
            "config: gate_lead_ms {} would close interval {}'s gate before interval {}'s",
            op.config.gate_lead_ms,
            op.from,
            op.from.0 - 1
        )));
    }
    let mut configs: Vec<ConfigSegment> = s
        .configs
        .iter()
        .filter(|seg| seg.from < op.from)
        .copied()
        .collect();
    configs.push(ConfigSegment {
        from: op.from,
        start_ms,
        config: op.config,
    });
    if configs.len() > CONFIG_CHANGES_MAX + 1 {
        reject!(RejectReason::invalid(format!(
            "config: {CONFIG_CHANGES_MAX} changes are scheduled already"
        )));
    }
    let key = StateKey::Schedule(op.feeder.clone());
    let s = w
        .market
        .schedules
        .get_mut(w.pre, &key)?
        .expect("read above");
    s.configs = configs;
    refresh_index(w, &op.feeder)?;
    Ok(Ok(()))
}

/// MC-4.1: sets a feeder's grid mode from a future interval.
pub(crate) fn set_mode(w: &mut Working<'_>, ctx: &BlockContext, op: &GridModeSet) -> Handled {
    let s = match schedule(w, &op.feeder)? {
        Ok(s) => s,
        Err(r) => reject!(r),
    };
    if let Err(r) = check_open(s, op.from, ctx.now_ms) {
        reject!(r);
    }
    let mut modes: Vec<(Interval, GridMode)> =
        s.modes.iter().filter(|m| m.0 < op.from).copied().collect();
    modes.push((op.from, op.mode));
    if modes.len() > MODE_CHANGES_MAX + 1 {
        reject!(RejectReason::invalid(format!(
            "mode: {MODE_CHANGES_MAX} changes are scheduled already"
        )));
    }
    let key = StateKey::Schedule(op.feeder.clone());
    w.market
        .schedules
        .get_mut(w.pre, &key)?
        .expect("read above")
        .modes = modes;
    Ok(Ok(()))
}

/// MC-6: posts upstream prices for consecutive future intervals.
pub(crate) fn post_prices(w: &mut Working<'_>, ctx: &BlockContext, op: &UpstreamPrices) -> Handled {
    if op.prices.is_empty() || op.prices.len() > UPSTREAM_PRICES_PER_TX_MAX {
        reject!(RejectReason::invalid(format!(
            "prices: {} prices; post 1 to {UPSTREAM_PRICES_PER_TX_MAX} at once",
            op.prices.len()
        )));
    }
    let s = match schedule(w, &op.feeder)? {
        Ok(s) => s,
        Err(r) => reject!(r),
    };
    if let Err(r) = check_open(s, op.from, ctx.now_ms) {
        reject!(r);
    }
    let last = Interval(op.from.0.saturating_add(op.prices.len() as u64 - 1));
    if let Err(r) = check_open(s, last, ctx.now_ms) {
        reject!(r);
    }
    for (i, p) in op.prices.iter().enumerate() {
        let k = Interval(op.from.0 + i as u64);
        let c = s.config_at(k);
        for (field, price) in [
            ("import_price", p.import_price),
            ("export_price", p.export_price),
        ] {
            if price < c.price_floor || price > c.price_cap {
                reject!(RejectReason::invalid(format!(
                    "prices[{i}] (interval {k}), {field}: {} is outside the interval's \
                     [price_floor, price_cap] = [{}, {}]",
                    price.0, c.price_floor.0, c.price_cap.0
                )));
            }
        }
        if p.export_price > p.import_price {
            reject!(RejectReason::invalid(format!(
                "prices[{i}] (interval {k}): export_price {} is above import_price {}",
                p.export_price.0, p.import_price.0
            )));
        }
    }
    for (i, p) in op.prices.iter().enumerate() {
        let k = Interval(op.from.0 + i as u64);
        w.market
            .upstream
            .put(StateKey::Upstream(op.feeder.clone(), k), *p);
    }
    Ok(Ok(()))
}

/// ST-5.4: whether `owner` owes `feeder`'s market account. Only owners on the feeder's debtor
/// list can, and only their accounts are read for it; one not read counts as owing.
fn owner_in_debt(
    w: &mut Working<'_>,
    feeder: &FeederId,
    owner: AccountId,
) -> Result<bool, ExecError> {
    let listed = w
        .market
        .debtors
        .get(w.pre, &StateKey::Debtors(feeder.clone()))?
        .is_some_and(|d| d.contains(&owner));
    if !listed {
        return Ok(false);
    }
    let feeder_key = StateKey::Feeder(feeder.clone());
    if !w.market.feeders.known(w.pre, &feeder_key) || !w.money.known(w.pre, owner) {
        return Ok(true);
    }
    let market = w
        .market
        .feeders
        .get(w.pre, &feeder_key)?
        .map(|f| f.market_account)
        .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no nodes")))?;
    Ok(w.money.account(w.pre, owner)?.position(&market) < 0)
}

/// A bid that passed every check, ready to write.
struct CheckedBid {
    site: SiteId,
    index: u32,
    interval: Interval,
    curve: Option<CurveSpec>,
}

/// MC-5: bids (and withdrawals) for sites of one feeder, all or none (MC-5.5): every entry is
/// checked before any is written.
pub(crate) fn bid(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &Bids,
) -> Handled {
    if op.bids.is_empty() || op.bids.len() > BIDS_PER_TX_MAX {
        reject!(RejectReason::invalid(format!(
            "bids: {} bids; send 1 to {BIDS_PER_TX_MAX} in one transaction",
            op.bids.len()
        )));
    }
    let s = match schedule(w, &op.feeder)? {
        Ok(s) => s.clone(),
        Err(r) => reject!(r),
    };
    // CT-3.3: the chargers under EV contracts, which only their contract bids for.
    let ev: Vec<(SiteId, Interval, Interval, bcte_types::Hash)> = w
        .market
        .contracts
        .get(w.pre, &StateKey::Contracts(op.feeder.clone()))?
        .map(|t| {
            t.ev.iter()
                .map(|e| (e.terms.site.clone(), e.terms.from, e.terms.deadline, e.id))
                .collect()
        })
        .unwrap_or_default();
    let mut checked = Vec::with_capacity(op.bids.len());
    let mut seen = BTreeSet::new();
    for (i, entry) in op.bids.iter().enumerate() {
        let BidEntry {
            site,
            interval,
            curve,
        } = entry;
        let where_ = || format!("bids[{i}] (site {:?}, interval {interval})", site.as_str());
        let key = StateKey::Site(op.feeder.clone(), site.clone());
        let Some(state) = w.market.sites.get(w.pre, &key)? else {
            reject!(RejectReason::UnknownSite { site: site.clone() });
        };
        // MC-5.1: the owner, or the aggregator it delegated bidding to.
        if sender != state.owner && state.aggregator != Some(sender) {
            reject!(RejectReason::NotSiteBidder { site: site.clone() });
        }
        let index = state.index;
        // ST-5.4: an owner in debt to the market account cannot bid until it has paid.
        let owner = state.owner;
        if owner_in_debt(w, &op.feeder, owner)? {
            reject!(RejectReason::OwnerInDebt { site: site.clone() });
        }
        // MC-5.2: only while the gate is open, and not beyond the horizon.
        let gate_ms = s.gate_ms(*interval);
        if *interval < s.next_clear || gate_ms <= ctx.now_ms {
            reject!(RejectReason::GateClosed {
                interval: *interval,
                gate_ms,
                now_ms: ctx.now_ms,
            });
        }
        if *interval > s.horizon() {
            reject!(RejectReason::BeyondHorizon {
                interval: *interval,
                last: s.horizon(),
            });
        }
        if let Some((_, from, to, id)) = ev
            .iter()
            .find(|(s, from, to, _)| s == site && from <= interval && interval <= to)
        {
            reject!(RejectReason::invalid(format!(
                "{}: the site is a charger bid for by its EV contract {} in intervals {} to {}",
                where_(),
                hex::encode(id),
                from.0,
                to.0
            )));
        }
        if !seen.insert((site.clone(), *interval)) {
            reject!(RejectReason::invalid(format!(
                "{}: the site bids twice for this interval in one transaction",
                where_()
            )));
        }
        // MC-5.3: a curve within the limits and the interval's price bounds, stored in
        // component form.
        let curve = match curve {
            None => None,
            Some(spec) => {
                if spec.len() > CURVE_PARTS_MAX {
                    reject!(RejectReason::invalid(format!(
                        "{}, curve: {} points or components, more than the limit of {CURVE_PARTS_MAX}",
                        where_(),
                        spec.len()
                    )));
                }
                let curve = match curve_of(spec) {
                    Ok(c) => c,
                    Err(e) => reject!(RejectReason::invalid(format!("{}, curve: {e}", where_()))),
                };
                let c = s.config_at(*interval);
                // As in a market file, every point's price is within the bounds, even a flat
                // curve's.
                let points_within = match spec {
                    CurveSpec::Points(points) => points
                        .iter()
                        .all(|(p, _)| *p >= c.price_floor && *p <= c.price_cap),
                    CurveSpec::Components { .. } => true,
                };
                if !points_within || !within(&curve, c.price_floor, c.price_cap) {
                    reject!(RejectReason::invalid(format!(
                        "{}, curve: a price is outside the interval's [price_floor, price_cap] = [{}, {}]",
                        where_(),
                        c.price_floor.0,
                        c.price_cap.0
                    )));
                }
                Some(components_of(&curve))
            }
        };
        checked.push(CheckedBid {
            site: site.clone(),
            index,
            interval: *interval,
            curve,
        });
    }
    // MC-3.3: how far a revocation must look for bids (an upper bound: withdrawals leave it).
    let furthest = checked
        .iter()
        .filter(|b| b.curve.is_some())
        .map(|b| b.interval)
        .max();
    if let Some(k) = furthest
        && s.bids_through.is_none_or(|t| t < k)
    {
        let key = StateKey::Schedule(op.feeder.clone());
        let schedule = w
            .market
            .schedules
            .get_mut(w.pre, &key)?
            .ok_or_else(|| ExecError::Bug(format!("feeder {} has no schedule", op.feeder)))?;
        schedule.bids_through = Some(k);
    }
    for b in checked {
        // MC-5.4: a later bid replaces an earlier one; no curve withdraws it.
        let bucket = book_bucket(&b.site);
        let bids_key = StateKey::Bids(op.feeder.clone(), b.interval, bucket);
        let book_key = StateKey::Book(op.feeder.clone(), b.interval);
        // An absent bucket or index starts empty; an emptied one is deleted with the
        // block's writes.
        let bids = w.market.bids.get_or_default(w.pre, &bids_key)?;
        let change: i64 = match b.curve {
            Some(curve) => i64::from(bids.put(BidRecord {
                site: b.site,
                index: b.index,
                bidder: sender,
                curve,
            })),
            // Withdrawing a bid that does not exist changes nothing.
            None => -i64::from(bids.remove(&b.site).is_some()),
        };
        let emptied = bids.is_empty();
        let book = w.market.books.get_or_default(w.pre, &book_key)?;
        book.bids = (i64::from(book.bids) + change) as u32;
        if emptied {
            book.remove(bucket);
        } else {
            book.insert(bucket);
        }
    }
    Ok(Ok(()))
}

/// MC-3.3: withdraws `aggregator`'s bids for `site` whose gate is still open: those of the
/// intervals from the next to clear to the last any site bid for (the schedule's
/// `bids_through`). The bucket of each was read before the block (see [`plan_reads`]) or
/// written by it; one neither read nor written holds no bid.
pub(crate) fn withdraw_bids_of(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    feeder: &FeederId,
    site: &SiteId,
    aggregator: AccountId,
) -> Result<(), ExecError> {
    let s = w
        .market
        .schedules
        .get(w.pre, &StateKey::Schedule(feeder.clone()))?
        .cloned()
        .ok_or_else(|| ExecError::Bug("a site's feeder has no schedule".into()))?;
    let Some(through) = s.bids_through else {
        return Ok(());
    };
    let bucket = book_bucket(site);
    for k in s.next_clear.0..=through.0.min(s.horizon().0) {
        let k = Interval(k);
        if s.gate_ms(k) <= ctx.now_ms {
            continue;
        }
        let bids_key = StateKey::Bids(feeder.clone(), k, bucket);
        if !w.market.bids.known(w.pre, &bids_key) {
            continue;
        }
        let Some(bids) = w.market.bids.get_mut(w.pre, &bids_key)? else {
            continue;
        };
        if bids.get(site).is_none_or(|b| b.bidder != aggregator) {
            continue;
        }
        bids.remove(site);
        let emptied = bids.is_empty();
        let book = w
            .market
            .books
            .get_mut(w.pre, &StateKey::Book(feeder.clone(), k))?
            .ok_or_else(|| ExecError::Bug(format!("a bid of {feeder} {k} without its book")))?;
        book.bids -= 1;
        if emptied {
            book.remove(bucket);
        }
    }
    Ok(())
}

/// MC-7.1: the intervals a block clears, over the due feeders in id order, each from its next
/// interval on while the block's market time has passed its gate: at most
/// [`CLEARINGS_PER_BLOCK_MAX`], and no more bids than [`CLEARING_BIDS_PER_BLOCK_MAX`] once
/// one interval is cleared. `bids_of(feeder, interval)` is the interval's number of bids, or
/// `None` if its bidders are not known yet: the answer is then `Err` with that interval, which
/// the read planner reads next.
pub(crate) fn due_intervals<'s>(
    due: impl IntoIterator<Item = (&'s FeederId, &'s Schedule)>,
    now_ms: u64,
    mut bids_of: impl FnMut(&FeederId, Interval) -> Option<usize>,
) -> Result<Vec<(FeederId, Interval)>, (FeederId, Interval)> {
    let mut out = Vec::new();
    let mut bids = 0usize;
    for (feeder, s) in due {
        let mut k = s.next_clear;
        while out.len() < CLEARINGS_PER_BLOCK_MAX && s.gate_ms(k) <= now_ms {
            let n = bids_of(feeder, k).ok_or_else(|| (feeder.clone(), k))?;
            if !out.is_empty() && bids + n > CLEARING_BIDS_PER_BLOCK_MAX {
                return Ok(out);
            }
            bids += n;
            out.push((feeder.clone(), k));
            k = Interval(k.0 + 1);
        }
        if out.len() == CLEARINGS_PER_BLOCK_MAX {
            break;
        }
    }
    Ok(out)
}

/// MC-8.2: the buckets of interval `k` a block prunes for one feeder: those holding bids from
/// the schedule's cursor on, at most [`PRUNE_BUCKETS_PER_BLOCK_MAX`], and whether that finishes
/// the interval.
pub(crate) fn prune_plan(
    s: &Schedule,
    book: Option<&BookIndex>,
    idx: Option<&SettleIndex>,
) -> (Vec<u16>, bool) {
    let holds = |b: u16| {
        book.is_some_and(|x| x.contains(b))
            || idx.is_some_and(|i| {
                i.readings.contains(b) || i.settled.contains(b) || i.adjustments.contains(b)
            })
    };
    let mut buckets: Vec<u16> = (0..crate::keys::BOOK_BUCKETS)
        .filter(|&b| holds(b))
        .filter(|&b| u32::from(b) >= s.prune_cursor)
        .take(PRUNE_BUCKETS_PER_BLOCK_MAX + 1)
        .collect();
    let done = buckets.len() <= PRUNE_BUCKETS_PER_BLOCK_MAX;
    buckets.truncate(PRUNE_BUCKETS_PER_BLOCK_MAX);
    (buckets, done)
}

/// The keys a market end of block and the block's market transactions need, beyond the ones
/// every transaction names itself, given what has been read so far (see [`crate::exec`]).
pub(crate) fn plan_reads(
    pre: &Prefetched,
    now_ms: Option<u64>,
    txs: &[Tx],
) -> Result<BTreeSet<StateKey>, ExecError> {
    let mut want = BTreeSet::new();
    // Revocations and re-delegations withdraw an aggregator's open bids: the site's bucket of
    // every interval from the next to clear to the last with a bid before the block
    // (`withdraw_bids_of`; the buckets of bids made in the block are read for those bids).
    let mut schedules: BTreeMap<&FeederId, Option<Schedule>> = BTreeMap::new();
    // ST-5.4: a bid for a site whose owner is on the debtor list reads the owner's account.
    for tx in txs {
        let Payload::Bids(op) = &tx.body().payload else {
            continue;
        };
        let Some(Some(debtors)) =
            pre.peek_decode::<crate::settle_state::Debtors>(&StateKey::Debtors(op.feeder.clone()))?
        else {
            continue;
        };
        for b in &op.bids {
            if let Some(Some(site)) = pre.peek_decode::<crate::market_state::SiteState>(
                &StateKey::Site(op.feeder.clone(), b.site.clone()),
            )? && debtors.contains(&site.owner)
            {
                want.insert(StateKey::Account(site.owner));
                want.insert(StateKey::Feeder(op.feeder.clone()));
            }
        }
    }
    for tx in txs {
        let (feeder, site) = match &tx.body().payload {
            Payload::SiteDelegate(op) => (&op.feeder, &op.site),
            Payload::SiteRevoke(op) => (&op.feeder, &op.site),
            _ => continue,
        };
        if !schedules.contains_key(feeder) {
            let s = pre.peek_decode::<Schedule>(&StateKey::Schedule(feeder.clone()))?;
            schedules.insert(feeder, s.flatten());
        }
        if let Some(Some(s)) = schedules.get(feeder)
            && let Some(through) = s.bids_through
        {
            let bucket = book_bucket(site);
            for k in s.next_clear.0..=through.0.min(s.horizon().0) {
                want.insert(StateKey::Bids(feeder.clone(), Interval(k), bucket));
                want.insert(StateKey::Book(feeder.clone(), Interval(k)));
            }
        }
    }
    let (Some(now_ms), Some(Some(index))) =
        (now_ms, pre.peek_decode::<FeederIndex>(&StateKey::Feeders)?)
    else {
        return Ok(want);
    };
    let due: Vec<&FeederEntry> = index
        .feeders
        .iter()
        .filter(|e| e.next_gate_ms <= now_ms)
        .collect();
    if due.is_empty() {
        // ST-2.1: a block that clears nothing settles; MC-8.2: one that does neither prunes.
        if crate::settle::settles(&index, now_ms) {
            return Ok(want);
        }
        for e in index.feeders.iter() {
            let Some(k) = e.prune else { continue };
            let f = &e.feeder;
            for key in [
                StateKey::Schedule(f.clone()),
                StateKey::Book(f.clone(), k),
                StateKey::Upstream(f.clone(), k),
                StateKey::Settling(f.clone(), k),
                StateKey::Settlement(f.clone(), k),
            ] {
                want.insert(key);
            }
            let (Some(Some(s)), Some(book), Some(idx)) = (
                pre.peek_decode::<Schedule>(&StateKey::Schedule(f.clone()))?,
                pre.peek_decode::<BookIndex>(&StateKey::Book(f.clone(), k))?,
                pre.peek_decode::<SettleIndex>(&StateKey::Settling(f.clone(), k))?,
            ) else {
                continue;
            };
            let (buckets, _) = prune_plan(&s, book.as_ref(), idx.as_ref());
            for b in buckets {
                want.insert(StateKey::Results(f.clone(), k, b));
            }
        }
        return Ok(want);
    }
    let mut schedules: BTreeMap<FeederId, Schedule> = BTreeMap::new();
    for e in &due {
        let f = &e.feeder;
        for key in [
            StateKey::Schedule(f.clone()),
            StateKey::Feeder(f.clone()),
            StateKey::Sites(f.clone()),
            StateKey::Meters(f.clone()),
            StateKey::Flex(f.clone()),
            StateKey::Contracts(f.clone()),
        ] {
            want.insert(key);
        }
        if let Some(Some(s)) = pre.peek_decode::<Schedule>(&StateKey::Schedule(f.clone()))? {
            schedules.insert(f.clone(), s);
        }
    }
    if schedules.len() < due.len() {
        return Ok(want);
    }
    // Each interval's book is read before deciding whether it fits this block.
    let mut books: BTreeMap<(FeederId, Interval), Option<BookIndex>> = BTreeMap::new();
    let plan = loop {
        let result = due_intervals(schedules.iter(), now_ms, |f, k| {
            books
                .get(&(f.clone(), k))
                .map(|b| b.as_ref().map_or(0, |b| b.bids as usize))
        });
        match result {
            Ok(plan) => break plan,
            Err((f, k)) => {
                let key = StateKey::Book(f.clone(), k);
                want.insert(key.clone());
                want.insert(StateKey::Upstream(f.clone(), k));
                match pre.peek_decode::<BookIndex>(&key)? {
                    Some(b) => {
                        books.insert((f, k), b);
                    }
                    None => return Ok(want),
                }
            }
        }
    };
    for (f, k) in plan {
        want.insert(StateKey::Settling(f.clone(), k));
        // CT-3.3: the bid bucket of every charger whose EV contract bids in the interval.
        if let Some(Some(contracts)) =
            pre.peek_decode::<crate::contract::ContractTable>(&StateKey::Contracts(f.clone()))?
        {
            for e in contracts.ev.iter().filter(|e| e.covers(k)) {
                want.insert(StateKey::Bids(f.clone(), k, book_bucket(&e.terms.site)));
            }
        }
        if let Some(Some(book)) = books.get(&(f.clone(), k)) {
            for b in book.iter() {
                want.insert(StateKey::Bids(f.clone(), k, b));
            }
        }
    }
    Ok(want)
}

/// MC-7 and MC-8: after the block's transactions, clears the due intervals or, if there are
/// none, prunes old ones.
pub(crate) fn end_of_block(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    probe: &mut dyn crate::exec::Probe,
) -> Result<(), ExecError> {
    let Some(index) = w.market.index.get(w.pre, &StateKey::Feeders)?.cloned() else {
        return Ok(());
    };
    let due: Vec<FeederId> = index
        .feeders
        .iter()
        .filter(|e| e.next_gate_ms <= ctx.now_ms)
        .map(|e| e.feeder.clone())
        .collect();
    if due.is_empty() {
        // ST-2.1: a block that clears nothing settles; one that does neither prunes.
        if crate::settle::settle_due(w, ctx, probe)? {
            return Ok(());
        }
        let pruning = match w.pre.decode::<FeederIndex>(&StateKey::Feeders)? {
            Some(before) => before,
            None => return Ok(()),
        };
        for e in &pruning.feeders {
            if let Some(k) = e.prune {
                prune(w, &e.feeder, k)?;
            }
        }
        return Ok(());
    }
    let mut schedules = BTreeMap::new();
    for f in &due {
        let s = w
            .market
            .schedules
            .get(w.pre, &StateKey::Schedule(f.clone()))?
            .cloned()
            .ok_or_else(|| ExecError::Bug(format!("feeder {f} has no schedule")))?;
        schedules.insert(f.clone(), s);
    }
    // The books are read lazily in the order the planner read them (see `plan_reads`).
    let mut failure = None;
    let plan = due_intervals(schedules.iter(), ctx.now_ms, |f, k| {
        let key = StateKey::Book(f.clone(), k);
        match w.market.books.get(w.pre, &key) {
            Ok(b) => Some(b.map_or(0, |b| b.bids as usize)),
            Err(e) => {
                failure = Some(e);
                Some(0)
            }
        }
    })
    .map_err(|(f, k)| ExecError::Bug(format!("the book of {f} interval {k} not read")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    for (f, k) in plan {
        probe.begin();
        let before = w.events.len();
        clear_interval(w, ctx, &f, k)?;
        probe.end(w.events.get(before));
    }
    Ok(())
}

/// The market of interval `k`, as MC-7.2 builds it from state, with the site index of each
/// bid (`None` for the upstream grid's) and the sites left out (MC-7.4).
struct IntervalMarket {
    market: Market,
    bid_sites: Vec<Option<u32>>,
    excluded: Vec<u32>,
    import_price: Price,
    export_price: Price,
}

/// MC-4.2: the upstream grid as a bid at the root: supply at the import price up to the
/// import limit, demand at the export price up to the export limit.
fn upstream_curve(import_price: Price, import: Watts, export_price: Price, export: Watts) -> Curve {
    let points = [
        Point {
            price: export_price,
            power: export,
        },
        Point {
            price: export_price,
            power: Watts::ZERO,
        },
        Point {
            price: import_price,
            power: Watts::ZERO,
        },
        Point {
            price: import_price,
            power: Watts(-import.0),
        },
    ];
    Curve::from_points(&points).expect("checked by the configuration rules (MC-2.4)")
}

fn build_market(
    w: &mut Working<'_>,
    feeder: &FeederId,
    k: Interval,
    s: &Schedule,
    nodes: &FeederState,
    table: &SiteTable,
) -> Result<IntervalMarket, ExecError> {
    let c = s.config_at(k);
    let mode = s.mode_at(k);
    let mut market_nodes: Vec<Node> = nodes
        .nodes
        .iter()
        .map(|n| Node {
            id: n.id.as_str().to_owned(),
            parent: (n.parent != u32::MAX)
                .then(|| nodes.nodes[n.parent as usize].id.as_str().to_owned()),
            import_limit: n.import_limit,
            export_limit: n.export_limit,
        })
        .collect();
    let mut bids = Vec::new();
    let mut bid_sites = Vec::new();
    let mut excluded = Vec::new();
    let upstream_prices = w
        .market
        .upstream
        .get(w.pre, &StateKey::Upstream(feeder.clone(), k))?
        .copied();
    // MC-6: posted prices replace the tariff's for their interval.
    let (import_price, export_price) = match upstream_prices {
        Some(p) => (p.import_price, p.export_price),
        None => (c.import_price, c.export_price),
    };
    let root = nodes.nodes[nodes.root() as usize].id.as_str().to_owned();
    // MC-4.2: normal and alert add the upstream grid at the root; islanded adds nothing.
    let import = match mode {
        GridMode::Normal => Some(c.import_limit),
        GridMode::Alert => Some(c.alert_import_limit),
        GridMode::Islanded => None,
    };
    if let Some(import) = import {
        bids.push(Bid::new(
            SiteId::UPSTREAM,
            root,
            upstream_curve(import_price, import, export_price, c.export_limit),
        ));
        bid_sites.push(None);
    }
    let book = w
        .market
        .books
        .get(w.pre, &StateKey::Book(feeder.clone(), k))?
        .cloned()
        .unwrap_or_default();
    for bucket in book.iter() {
        let records = w
            .market
            .bids
            .get(w.pre, &StateKey::Bids(feeder.clone(), k, bucket))?
            .ok_or_else(|| ExecError::Bug(format!("bucket {bucket} of {feeder} {k} missing")))?;
        for record in &records.bids {
            let i = record.index;
            let site = table
                .sites
                .get(i as usize)
                .ok_or_else(|| ExecError::Bug(format!("bid of {} is not a site", record.site)))?;
            let curve = curve_of(&record.curve)
                .map_err(|e| ExecError::Bug(format!("stored curve of {}: {e}", site.id)))?;
            // MC-7.4: a bid the interval's price bounds no longer admit is left out.
            if !within(&curve, c.price_floor, c.price_cap) {
                excluded.push(i);
                continue;
            }
            let node = nodes.nodes[site.node as usize].id.as_str().to_owned();
            // MC-7.2: a connection limit is an edge of the site's own.
            let node = if site.import_limit.is_some() || site.export_limit.is_some() {
                let own = format!("#{i}");
                market_nodes.push(Node {
                    id: own.clone(),
                    parent: Some(node),
                    import_limit: site.import_limit,
                    export_limit: site.export_limit,
                });
                own
            } else {
                node
            };
            bids.push(Bid {
                id: site.id.as_str().to_owned(),
                node,
                curve,
                priority: site.priority,
            });
            bid_sites.push(Some(i));
        }
    }
    excluded.sort_unstable();
    let market = Market::new(c.price_floor, c.price_cap, market_nodes, bids)
        .map_err(|e| ExecError::Bug(format!("interval {k} of {feeder} is not a market: {e}")))?;
    Ok(IntervalMarket {
        market,
        bid_sites,
        excluded,
        import_price,
        export_price,
    })
}

/// MC-7: clears interval `k` of `feeder` and writes its results.
fn clear_interval(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    feeder: &FeederId,
    k: Interval,
) -> Result<(), ExecError> {
    let schedule_key = StateKey::Schedule(feeder.clone());
    let feeder_key = StateKey::Feeder(feeder.clone());
    let mut s = w
        .market
        .schedules
        .get(w.pre, &schedule_key)?
        .cloned()
        .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no schedule")))?;
    debug_assert_eq!(s.next_clear, k, "intervals clear in order");
    // MC-3.4: limit changes from this interval on take effect now.
    let (effective, pending): (Vec<LimitChange>, Vec<LimitChange>) =
        s.limits.iter().partition(|l| l.from <= k);
    if !effective.is_empty() {
        let nodes = w
            .market
            .feeders
            .get_mut(w.pre, &feeder_key)?
            .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no nodes")))?;
        for l in &effective {
            let n = &mut nodes.nodes[l.node as usize];
            n.import_limit = l.import_limit;
            n.export_limit = l.export_limit;
        }
        s.limits = pending;
    }
    let nodes = w
        .market
        .feeders
        .get(w.pre, &feeder_key)?
        .cloned()
        .ok_or_else(|| ExecError::Bug(format!("feeder {feeder} has no nodes")))?;
    let table = w
        .market
        .site_tables
        .get(w.pre, &StateKey::Sites(feeder.clone()))?
        .cloned()
        .unwrap_or_default();
    // CT-3.3: EV contracts place their chargers' bids before the book is read.
    crate::ev::place_bids(w, feeder, k, &s, &table)?;
    let built = build_market(w, feeder, k, &s, &nodes, &table)?;
    let clearing = bcte_market::clear(&built.market);
    let c = *s.config_at(k);
    let n = nodes.nodes.len();
    let congested = (0..n)
        .filter(|&i| nodes.nodes[i].parent != u32::MAX)
        .filter_map(|i| {
            let flow = clearing.flows[i];
            let node = &nodes.nodes[i];
            if node.import_limit == Some(flow) {
                Some((i as u32, Congestion::Import))
            } else if node.export_limit.map(|e| Watts(-e.0)) == Some(flow) {
                Some((i as u32, Congestion::Export))
            } else {
                None
            }
        })
        .collect();
    let sparse = |v: &[Watts]| -> Vec<(u32, Watts)> {
        v.iter()
            .take(n)
            .enumerate()
            .filter(|(_, w)| !w.is_zero())
            .map(|(i, w)| (i as u32, *w))
            .collect()
    };
    // A site behind its own edge reports its shed and spill at its node.
    let mut shed = clearing.shed[..n].to_vec();
    let mut spilled = clearing.spilled[..n].to_vec();
    let mut upstream = Watts::ZERO;
    let mut bids = 0u32;
    let mut with_results: Vec<u32> = Vec::new();
    let mut buckets: BTreeMap<u16, ResultBucket> = BTreeMap::new();
    for (b, site) in built.bid_sites.iter().enumerate() {
        let Some(i) = site else {
            // What the upstream grid is served, as for a site (ST-2.6).
            upstream = Watts(
                clearing.allocations[b].0 - clearing.bid_shed[b].0 + clearing.bid_spilled[b].0,
            );
            continue;
        };
        bids += 1;
        with_results.push(*i);
        let info = &table.sites[*i as usize];
        let node = info.node as usize;
        let own_node = built.market.node_of_bid(b);
        if own_node >= n {
            shed[node] = Watts(shed[node].0 + clearing.shed[own_node].0);
            spilled[node] = Watts(spilled[node].0 + clearing.spilled[own_node].0);
        }
        // MC-7.3: each site's result is provable on its own, with its bucket's.
        buckets
            .entry(book_bucket(&info.id))
            .or_default()
            .results
            .push((
                info.id.clone(),
                SiteResult {
                    price: clearing.prices[node],
                    allocation: clearing.allocations[b],
                    shed: clearing.bid_shed[b],
                    spilled: clearing.bid_spilled[b],
                },
            ));
    }
    // CT-4.1: what the chargers under contract were scheduled.
    crate::ev::after_clearing(w, feeder, k, c.interval_ms, |site| {
        buckets.get(&book_bucket(site)).and_then(|b| {
            b.results
                .iter()
                .find(|(s, _)| s == site)
                .map(|(_, r)| r.served().0)
        })
    })?;
    for (bucket, mut results) in buckets {
        results.results.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        w.market
            .site_results
            .put(StateKey::Results(feeder.clone(), k, bucket), results);
    }
    let result = IntervalResult {
        height: ctx.height.get(),
        mode: s.mode_at(k),
        start_ms: s.start_ms(k),
        interval_ms: c.interval_ms,
        price_floor: c.price_floor,
        price_cap: c.price_cap,
        import_price: built.import_price,
        export_price: built.export_price,
        prices: clearing.prices[..n].to_vec(),
        flows: clearing.flows[..n].to_vec(),
        shed: sparse(&shed),
        spilled: sparse(&spilled),
        congested,
        upstream,
        welfare: clearing.welfare.0,
        bids,
        excluded: built.excluded,
    };
    // ST-2.1: the interval's settlement opens; it is the next due if none is pending.
    crate::settle::open_settlement(w, feeder, k, &result, &with_results, &c)?;
    if s.next_settle == k {
        let idx = w
            .market
            .settling
            .get(w.pre, &StateKey::Settling(feeder.clone(), k))?
            .ok_or_else(|| ExecError::Bug("a settle index just written is gone".into()))?;
        s.settle_at_ms = Some(crate::settle::due_ms(idx));
    }
    w.market
        .results
        .put(StateKey::Result(feeder.clone(), k), result);
    w.events.push(crate::exec::MarketEvent::Cleared {
        feeder: feeder.clone(),
        interval: k,
        gate_ms: s.gate_ms(k),
        bids,
    });
    // Intervals clear in order; configurations and modes superseded from here on go.
    let next = Interval(k.0 + 1);
    s.next_clear = next;
    let keep_from = s
        .configs
        .partition_point(|seg| seg.from <= next)
        .saturating_sub(1);
    s.configs.drain(..keep_from);
    let keep_from = s.modes.partition_point(|m| m.0 <= next).saturating_sub(1);
    s.modes.drain(..keep_from);
    w.market.schedules.put(schedule_key, s);
    refresh_index(w, feeder)?;
    Ok(())
}

/// MC-8.2: prunes part of interval `k`, the oldest past its retention.
fn prune(w: &mut Working<'_>, feeder: &FeederId, k: Interval) -> Result<(), ExecError> {
    let schedule_key = StateKey::Schedule(feeder.clone());
    let Some(mut s) = w.market.schedules.get(w.pre, &schedule_key)?.cloned() else {
        return Err(ExecError::Bug(format!("feeder {feeder} has no schedule")));
    };
    if prune_due(&s) != Some(k) {
        // A transaction of this block changed what is due (a new retention): the next block
        // prunes with a plan that reads for it.
        return Ok(());
    }
    let book_key = StateKey::Book(feeder.clone(), k);
    let book = w.market.books.get(w.pre, &book_key)?.cloned();
    let settling_key = StateKey::Settling(feeder.clone(), k);
    let idx = w.market.settling.get(w.pre, &settling_key)?.cloned();
    let (buckets, done) = prune_plan(&s, book.as_ref(), idx.as_ref());
    for &b in &buckets {
        if book.as_ref().is_some_and(|x| x.contains(b)) {
            w.market.bids.delete(StateKey::Bids(feeder.clone(), k, b));
        }
        let results_key = StateKey::Results(feeder.clone(), k, b);
        if w.market.site_results.get(w.pre, &results_key)?.is_some() {
            w.market.site_results.delete(results_key);
        }
        if let Some(i) = &idx {
            if i.readings.contains(b) {
                w.market
                    .readings
                    .delete(StateKey::Readings(feeder.clone(), k, b));
            }
            if i.settled.contains(b) {
                w.market
                    .settled
                    .delete(StateKey::Settled(feeder.clone(), k, b));
            }
            if i.adjustments.contains(b) {
                w.market
                    .adjustments
                    .delete(StateKey::Adjustments(feeder.clone(), k, b));
            }
        }
    }
    if done {
        if book.is_some() {
            w.market.books.delete(book_key);
        }
        if idx.is_some() {
            w.market.settling.delete(settling_key);
        }
        let settlement_key = StateKey::Settlement(feeder.clone(), k);
        if w.market.settlements.get(w.pre, &settlement_key)?.is_some() {
            w.market.settlements.delete(settlement_key);
        }
        w.market.results.delete(StateKey::Result(feeder.clone(), k));
        let upstream_key = StateKey::Upstream(feeder.clone(), k);
        if w.market.upstream.get(w.pre, &upstream_key)?.is_some() {
            w.market.upstream.delete(upstream_key);
        }
        s.prune_next = Interval(k.0 + 1);
        s.prune_cursor = 0;
    } else {
        s.prune_cursor = buckets.last().map_or(0, |b| u32::from(*b) + 1);
    }
    w.market.schedules.put(schedule_key, s);
    refresh_index(w, feeder)
}
