//! EV charging contracts on the chain (rules CT-3 and CT-4 of `docs/contract-rules.md`, cited
//! at the branches): entering a contract with both parties' consent ([`enter`]), the bid the
//! contract places for its charger at every clearing of its intervals ([`bid_curve`],
//! [`place_bids`]), what each clearing and settlement adds to its account ([`after_clearing`],
//! [`EvEntry::accrue`]) and its settlement at the deadline ([`EvEntry::close`]).
//!
//! The contracts live in the feeder's contract table (`contracts/<F>`) next to the
//! peer-to-peer ones.

use crate::{
    exec::{BlockContext, ExecError},
    keys::{StateKey, book_bucket},
    market::{Handled, check_open, reject},
    market_state::{BidRecord, Schedule, SiteTable},
    settle::scheduled_wh,
    settle_state::SiteSettlement,
    working::Working,
};
use bcte_market::{
    Curve, Step,
    limits::{POWER_ABS_MAX, PRICE_ABS_MAX},
};
use bcte_types::{
    AccountId, Hash, Interval, Price, RejectReason, SiteId, Watts,
    contract::{ContractEv, EV_INTERVALS_MAX, EV_NAMESPACE, EvOption, EvTerms},
    units::div_round_half_away,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// Most EV charging contracts a feeder holds at once (those wholly settled are dropped when a
/// contract is entered).
pub const EV_CONTRACTS_PER_FEEDER_MAX: usize = 4_096;

/// W·ms per Wh.
const MS_PER_HOUR: i128 = 3_600_000;

/// One EV charging contract and its running account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvEntry {
    /// `SHA-256(EV_NAMESPACE ‖ chain_id ‖ terms)`.
    pub id: Hash,
    /// The terms both parties signed.
    pub terms: EvTerms,
    /// The scheduled energy of the contract's intervals cleared so far (Wh).
    pub cleared_wh: i64,
    /// Of it, the scheduled energy of the intervals settled so far (Wh).
    pub settled_scheduled_wh: i64,
    /// The energy delivered in the settled intervals: metered, or scheduled where a reading
    /// was missing (Wh, CT-4.1).
    pub delivered_wh: i64,
    /// What the owner was charged for the charger in the settled intervals (base units).
    pub market_charges: i64,
}

impl EvEntry {
    fn new(id: Hash, terms: EvTerms) -> Self {
        Self {
            id,
            terms,
            cleared_wh: 0,
            settled_scheduled_wh: 0,
            delivered_wh: 0,
            market_charges: 0,
        }
    }

    /// Whether interval `k` is one of the contract's.
    pub fn covers(&self, k: Interval) -> bool {
        self.terms.from <= k && k <= self.terms.deadline
    }

    /// CT-3.4: the energy still needed at the next clearing: the energy of the contract less
    /// what was delivered in the settled intervals and scheduled in the cleared ones since.
    pub fn remaining_wh(&self) -> i64 {
        self.terms.energy_wh - self.delivered_wh - (self.cleared_wh - self.settled_scheduled_wh)
    }

    /// CT-4.1: adds a settled interval of the charger.
    pub fn accrue(&mut self, site: &SiteSettlement) {
        self.settled_scheduled_wh += site.scheduled_wh;
        self.delivered_wh += site.metered_wh.unwrap_or(site.scheduled_wh);
        self.market_charges += site.total();
    }

    /// CT-4.2 and CT-4.3: the contract's settlement at its deadline.
    pub fn close(&self) -> EvFlow {
        let delivered = self.delivered_wh.max(0);
        let price = self.terms.option().price;
        let charge =
            div_round_half_away(i128::from(delivered) * i128::from(price.0), 1_000_000) as i64;
        EvFlow {
            id: self.id,
            site: self.terms.site.clone(),
            provider: self.terms.provider,
            delivered_wh: delivered,
            shortfall_wh: (self.terms.energy_wh - delivered).max(0),
            price,
            charge,
            market_charges: self.market_charges,
            difference: charge - self.market_charges,
        }
    }
}

impl Write for EvEntry {
    fn write(&self, buf: &mut impl BufMut) {
        self.id.write(buf);
        self.terms.write(buf);
        self.cleared_wh.write(buf);
        self.settled_scheduled_wh.write(buf);
        self.delivered_wh.write(buf);
        self.market_charges.write(buf);
    }
}

impl EncodeSize for EvEntry {
    fn encode_size(&self) -> usize {
        Hash::SIZE + self.terms.encode_size() + 4 * 8
    }
}

impl Read for EvEntry {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            id: Hash::read(buf)?,
            terms: EvTerms::read(buf)?,
            cleared_wh: i64::read(buf)?,
            settled_scheduled_wh: i64::read(buf)?,
            delivered_wh: i64::read(buf)?,
            market_charges: i64::read(buf)?,
        })
    }
}

/// An EV contract settled at its deadline (CT-4.2): the owner of the charger pays the
/// provider `difference` (negative: the provider pays the owner), through the market account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvFlow {
    /// The contract.
    pub id: Hash,
    /// The charger.
    pub site: SiteId,
    /// The provider.
    pub provider: AccountId,
    /// The energy delivered over the contract (Wh, not negative).
    pub delivered_wh: i64,
    /// The energy needed but not delivered (Wh).
    pub shortfall_wh: i64,
    /// The chosen option's price (µ/MWh).
    pub price: Price,
    /// The delivered energy at that price (base units).
    pub charge: i64,
    /// What the owner was charged for the charger in the contract's intervals (base units).
    pub market_charges: i64,
    /// `charge − market_charges`: paid by the owner to the provider.
    pub difference: i64,
}

impl Write for EvFlow {
    fn write(&self, buf: &mut impl BufMut) {
        self.id.write(buf);
        self.site.write(buf);
        self.provider.write(buf);
        self.delivered_wh.write(buf);
        self.shortfall_wh.write(buf);
        self.price.write(buf);
        self.charge.write(buf);
        self.market_charges.write(buf);
        self.difference.write(buf);
    }
}

impl EncodeSize for EvFlow {
    fn encode_size(&self) -> usize {
        Hash::SIZE + self.site.encode_size() + AccountId::SIZE + 6 * 8
    }
}

impl Read for EvFlow {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            id: Hash::read(buf)?,
            site: SiteId::read(buf)?,
            provider: AccountId::read(buf)?,
            delivered_wh: i64::read(buf)?,
            shortfall_wh: i64::read(buf)?,
            price: Price::read(buf)?,
            charge: i64::read(buf)?,
            market_charges: i64::read(buf)?,
            difference: i64::read(buf)?,
        })
    }
}

/// `⌈a / b⌉` for `b > 0`.
fn div_ceil(a: i128, b: i128) -> i128 {
    a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0)
}

/// CT-3.4: the contract's bid in an interval of `interval_ms` with `left` intervals to go
/// (this one included), `remaining_wh` still needed, under `option`, within the interval's
/// price bounds `[floor, cap]`; `None` when nothing is needed.
///
/// With `R = remaining_wh × 3.6·10⁶` (W·ms), `P` the option's power and `c` its price:
/// - the most it takes is `top = min(P, ⌈R / Δ⌉)`;
/// - of it, `must = ⌈(remaining_wh − (left − 1) × e) × 3.6·10⁶ / Δ⌉` (clamped to
///   `[0, top]`), with `e` one interval's energy at full power as settlement counts it
///   (rounded to 1 Wh), is what the later intervals at full power could not make up: bid at
///   `c`;
/// - the rest at `⌊c × R / (left × P × Δ)⌋`, the share of the remaining intervals' full power
///   the need takes: cheap energy early, up to `c` as the deadline nears;
///
/// each price clamped to the interval's bounds (and the second to at most the first).
pub fn bid_curve(
    remaining_wh: i64,
    left: u64,
    option: EvOption,
    interval_ms: u64,
    floor: Price,
    cap: Price,
) -> Option<Curve> {
    if remaining_wh <= 0 || left == 0 || option.power.0 <= 0 || interval_ms == 0 {
        return None;
    }
    let r = i128::from(remaining_wh) * MS_PER_HOUR;
    let dt = i128::from(interval_ms);
    let p = i128::from(option.power.0);
    let top = p.min(div_ceil(r, dt));
    // What cannot wait: the energy the later intervals could not deliver at full power, as
    // settlement counts it (each interval's scheduled energy rounded to 1 Wh, ST-2.2).
    let per_interval = i128::from(scheduled_wh(option.power.0, interval_ms));
    let later = i128::from(left - 1) * per_interval;
    let must = div_ceil((i128::from(remaining_wh) - later) * MS_PER_HOUR, dt).clamp(0, top);
    let c = i128::from(option.price.0);
    let urgent = (c * r / (i128::from(left) * p * dt)).min(c);
    let high = c.clamp(i128::from(floor.0), i128::from(cap.0));
    let low = urgent.clamp(i128::from(floor.0), high);
    let step = |price: i128, drop: i128| Step {
        price: Price(price as i64),
        drop: Watts(drop as i64),
    };
    let steps = if must == top || low == high {
        vec![step(high, top)]
    } else if must == 0 {
        vec![step(low, top)]
    } else {
        vec![step(low, top - must), step(high, must)]
    };
    Curve::from_components(Watts(top as i64), steps, vec![]).ok()
}

fn consent_holds(
    key: &AccountId,
    message: &[u8],
    sig: &commonware_cryptography::ed25519::Signature,
) -> bool {
    use commonware_cryptography::Verifier;
    key.to_public_key()
        .is_some_and(|k| k.verify(EV_NAMESPACE, message, sig))
}

/// CT-3: enters an EV charging contract.
pub(crate) fn enter(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &ContractEv,
) -> Handled {
    let t = &op.terms;
    let f = &t.feeder;
    let Some((s, sites)) = crate::contract::feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    // CT-3.2: a known charger of another owner than the provider.
    let Some((index, info)) = sites.sites.iter().enumerate().find(|(_, x)| x.id == t.site) else {
        reject!(RejectReason::UnknownSite {
            site: t.site.clone()
        });
    };
    let owner = info.owner;
    if owner == t.provider {
        reject!(RejectReason::invalid(
            "provider: a contract needs two parties; the provider owns the charger"
        ));
    }
    // AC-3.3: the charging provider is an aggregator, a member in good standing.
    if let Err(r) =
        crate::identity::check_holds(w, t.provider, "provider", bcte_types::Role::Aggregator)?
    {
        reject!(r);
    }
    if t.energy_wh <= 0 {
        reject!(RejectReason::invalid(format!(
            "energy_wh: {} Wh; contract a positive energy",
            t.energy_wh
        )));
    }
    for (name, o) in [("slow", t.slow), ("fast", t.fast)] {
        if o.power.0 <= 0 || o.power.0 > POWER_ABS_MAX.0 {
            reject!(RejectReason::invalid(format!(
                "{name}.power: {} W; give a positive power of at most {} W",
                o.power.0, POWER_ABS_MAX.0
            )));
        }
        if o.price.0 < 0 || o.price.0 > PRICE_ABS_MAX.0 {
            reject!(RejectReason::invalid(format!(
                "{name}.price: {} µ/MWh; give a price from 0 to {} µ/MWh",
                o.price.0, PRICE_ABS_MAX.0
            )));
        }
    }
    if t.fast.power <= t.slow.power {
        reject!(RejectReason::invalid(format!(
            "fast.power: {} W is not more than the slow option's {} W",
            t.fast.power.0, t.slow.power.0
        )));
    }
    if t.deadline < t.from || t.deadline.0 - t.from.0 >= EV_INTERVALS_MAX {
        reject!(RejectReason::invalid(format!(
            "deadline: intervals {} to {}; give 1 to {EV_INTERVALS_MAX} intervals, first to last",
            t.from.0, t.deadline.0
        )));
    }
    // CT-3.3: like a bid, only while the first interval's gate is open.
    if let Err(r) = check_open(&s, t.from, ctx.now_ms) {
        reject!(r);
    }
    // CT-3.2: the chosen option can deliver the energy by the deadline.
    let option = t.option();
    let intervals = i128::from(t.deadline.0 - t.from.0 + 1);
    let per_interval = i128::from(scheduled_wh(
        option.power.0,
        s.config_at(t.from).interval_ms,
    ));
    if per_interval * intervals < i128::from(t.energy_wh) {
        reject!(RejectReason::invalid(format!(
            "energy_wh: {} Wh cannot be delivered in {intervals} intervals at the {} option's {} W",
            t.energy_wh,
            t.choice.as_str(),
            option.power.0
        )));
    }
    // CT-3.1: the charger has its own meter.
    let meters = w
        .market
        .meters
        .get(w.pre, &StateKey::Meters(f.clone()))?
        .cloned()
        .unwrap_or_default();
    if !meters.meters_for(index as u32, t.from) {
        reject!(RejectReason::invalid(format!(
            "site: {} has no meter from interval {}; a charger is a sub-metered site of its own",
            t.site, t.from.0
        )));
    }
    // CT-3.2: the sender is one party and the other consents.
    let other = if sender == owner {
        t.provider
    } else if sender == t.provider {
        owner
    } else {
        reject!(RejectReason::NotSiteOwner {
            site: t.site.clone()
        });
    };
    let chain = &ctx.config.chain_id;
    let key = match crate::contract::consenting_key(w, other)? {
        Ok(k) => k,
        Err(r) => reject!(r),
    };
    if !consent_holds(&key, &t.message(chain), &op.consent) {
        reject!(RejectReason::invalid(format!(
            "consent: not the signature of the other party ({other}) over these terms; both \
             parties must sign"
        )));
    }
    let id = t.id(chain);
    let mut table = crate::contract::table_of(w, f)?;
    table.drop_settled(s.next_settle);
    let at = match table.ev.binary_search_by(|c| c.id.cmp(&id)) {
        Ok(_) => reject!(RejectReason::invalid(format!(
            "contract {} is already entered",
            hex::encode(id)
        ))),
        Err(at) => at,
    };
    // CT-3.3: one contract at a time bids for a charger.
    if let Some(c) = table.ev.iter().find(|c| {
        c.terms.site == t.site && c.terms.from <= t.deadline && t.from <= c.terms.deadline
    }) {
        reject!(RejectReason::invalid(format!(
            "from: overlaps EV contract {} of the same charger (intervals {} to {})",
            hex::encode(c.id),
            c.terms.from.0,
            c.terms.deadline.0
        )));
    }
    if table.ev.len() >= EV_CONTRACTS_PER_FEEDER_MAX {
        reject!(RejectReason::invalid(format!(
            "feeder {f} has {EV_CONTRACTS_PER_FEEDER_MAX} EV contracts, the most it may hold"
        )));
    }
    table.ev.insert(at, EvEntry::new(id, t.clone()));
    w.market
        .contracts
        .put(StateKey::Contracts(f.clone()), table);
    Ok(Ok(()))
}

/// CT-3.3 and CT-3.4: places the bid of every EV contract covering interval `k` in its book,
/// replacing any other bid for the charger, before `k` clears. The contract table and the
/// chargers' bid buckets were read for it (see [`crate::market::plan_reads`]).
pub(crate) fn place_bids(
    w: &mut Working<'_>,
    feeder: &bcte_types::FeederId,
    k: Interval,
    s: &Schedule,
    table: &SiteTable,
) -> Result<(), ExecError> {
    let Some(contracts) = w
        .market
        .contracts
        .get(w.pre, &StateKey::Contracts(feeder.clone()))?
    else {
        return Ok(());
    };
    let c = s.config_at(k);
    let covering: Vec<&EvEntry> = contracts.ev.iter().filter(|e| e.covers(k)).collect();
    if covering.is_empty() {
        return Ok(());
    }
    // The chargers' indices in the site table, in one pass over it.
    let chargers: std::collections::HashSet<&SiteId> =
        covering.iter().map(|e| &e.terms.site).collect();
    let index_of: std::collections::HashMap<&SiteId, usize> = table
        .sites
        .iter()
        .enumerate()
        .filter(|(_, x)| chargers.contains(&x.id))
        .map(|(i, x)| (&x.id, i))
        .collect();
    // Per charger under contract, its bid, or none when nothing is left to buy (then any other
    // bid for it goes too: only the contract bids for the charger in its intervals).
    let mut placed: Vec<(SiteId, Option<BidRecord>)> = Vec::with_capacity(covering.len());
    for e in covering {
        let left = e.terms.deadline.0 - k.0 + 1;
        let curve = bid_curve(
            e.remaining_wh(),
            left,
            e.terms.option(),
            c.interval_ms,
            c.price_floor,
            c.price_cap,
        );
        let index = *index_of.get(&e.terms.site).ok_or_else(|| {
            ExecError::Bug(format!("EV contract of unknown site {}", e.terms.site))
        })?;
        let info = &table.sites[index];
        placed.push((
            info.id.clone(),
            curve.map(|curve| BidRecord {
                site: info.id.clone(),
                index: index as u32,
                bidder: info.owner,
                curve: crate::market::components_of(&curve),
            }),
        ));
    }
    for (site, record) in placed {
        let bucket = book_bucket(&site);
        let bids_key = StateKey::Bids(feeder.clone(), k, bucket);
        let book_key = StateKey::Book(feeder.clone(), k);
        match record {
            Some(record) => {
                let added = w.market.bids.get_or_default(w.pre, &bids_key)?.put(record);
                let book = w.market.books.get_or_default(w.pre, &book_key)?;
                book.bids += u32::from(added);
                book.insert(bucket);
            }
            None => {
                let held = w.market.bids.get(w.pre, &bids_key)?;
                if held.is_none_or(|b| b.get(&site).is_none()) {
                    continue;
                }
                let Some(bids) = w.market.bids.get_mut(w.pre, &bids_key)? else {
                    continue;
                };
                bids.remove(&site);
                let emptied = bids.is_empty();
                let book = w.market.books.get_mut(w.pre, &book_key)?.ok_or_else(|| {
                    ExecError::Bug(format!("a bid of {feeder} {k} without its book"))
                })?;
                book.bids -= 1;
                if emptied {
                    book.remove(bucket);
                }
            }
        }
    }
    Ok(())
}

/// CT-4.1: adds the scheduled energy of every charger under contract in the cleared interval
/// `k` (served `served(site)` W over `interval_ms`) to its contract.
pub(crate) fn after_clearing(
    w: &mut Working<'_>,
    feeder: &bcte_types::FeederId,
    k: Interval,
    interval_ms: u64,
    served: impl Fn(&SiteId) -> Option<i64>,
) -> Result<(), ExecError> {
    let key = StateKey::Contracts(feeder.clone());
    let Some(contracts) = w.market.contracts.get(w.pre, &key)? else {
        return Ok(());
    };
    if !contracts.ev.iter().any(|e| e.covers(k)) {
        return Ok(());
    }
    let mut contracts = contracts.clone();
    for e in contracts.ev.iter_mut().filter(|e| e.covers(k)) {
        if let Some(a) = served(&e.terms.site) {
            e.cleared_wh += scheduled_wh(a, interval_ms);
        }
    }
    w.market.contracts.put(key, contracts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(power: i64, price: i64) -> EvOption {
        EvOption {
            power: Watts(power),
            price: Price(price),
        }
    }

    /// The curve as (power below every price, [(price, drop)]).
    fn shape(c: &Curve) -> (i64, Vec<(i64, i64)>) {
        (
            c.max_power().0,
            c.steps().iter().map(|s| (s.price.0, s.drop.0)).collect(),
        )
    }

    const Q: u64 = 900_000;
    const FLOOR: Price = Price(-500_000_000);
    const CAP: Price = Price(3_000_000_000);

    #[test]
    fn early_the_contract_bids_its_full_power_at_a_price_below_its_option() {
        // 6 kWh in 8 quarter hours at 3.7 kW: 8 × 925 = 7,400 Wh possible. R = 2.16·10¹⁰ W·ms,
        // ⌈R/Δ⌉ = 24,000 W, so top = 3,700; must = ⌈(2.16·10¹⁰ − 7 × 3,700 × 900,000)/Δ⌉ < 0 → 0;
        // the price 250·10⁶ × 2.16·10¹⁰ / (8 × 3,700 × 900,000) = 202,702,702.7 → 202,702,702.
        let c = bid_curve(6_000, 8, option(3_700, 250_000_000), Q, FLOOR, CAP).unwrap();
        assert_eq!(shape(&c), (3_700, vec![(202_702_702, 3_700)]));
        // The fast option: 11 kW, 400/MWh: 400·10⁶ × 2.16·10¹⁰ / (8 × 11,000 × 900,000)
        // = 109,090,909.09 → 109,090,909.
        let c = bid_curve(6_000, 8, option(11_000, 400_000_000), Q, FLOOR, CAP).unwrap();
        assert_eq!(shape(&c), (11_000, vec![(109_090_909, 11_000)]));
    }

    #[test]
    fn near_the_deadline_part_of_the_power_must_be_bought_at_the_option_price() {
        // 1,500 Wh left, 2 intervals at 3.7 kW (925 Wh each): R = 5.4·10⁹; must =
        // ⌈(5.4·10⁹ − 3,700 × 900,000)/900,000⌉ = ⌈2,300⌉ = 2,300 W at 250/MWh; the other
        // 1,400 W at 250·10⁶ × 5.4·10⁹ / (2 × 3,700 × 900,000) = 202,702,702.
        let c = bid_curve(1_500, 2, option(3_700, 250_000_000), Q, FLOOR, CAP).unwrap();
        assert_eq!(
            shape(&c),
            (3_700, vec![(202_702_702, 1_400), (250_000_000, 2_300)])
        );
        // The last interval: all of it at the option price, no more than the need: 450 Wh in a
        // quarter hour is 1,800 W.
        let c = bid_curve(450, 1, option(3_700, 250_000_000), Q, FLOOR, CAP).unwrap();
        assert_eq!(shape(&c), (1_800, vec![(250_000_000, 1_800)]));
        // A need that rounds: 1 Wh in 15 minutes is 4 W (⌈3.6·10⁶ / 900,000⌉).
        let c = bid_curve(1, 1, option(3_700, 250_000_000), Q, FLOOR, CAP).unwrap();
        assert_eq!(shape(&c), (4, vec![(250_000_000, 4)]));
    }

    #[test]
    fn prices_stay_within_the_intervals_bounds_and_nothing_is_bid_when_done() {
        let c = bid_curve(
            450,
            1,
            option(3_700, 250_000_000),
            Q,
            FLOOR,
            Price(100_000_000),
        );
        assert_eq!(shape(&c.unwrap()), (1_800, vec![(100_000_000, 1_800)]));
        // 1 Wh over 96 quarter-hours: 4 W for one interval is enough, and the whole of it
        // is bid at c × R / (left × P × Δ) = 250e6 × 3.6e6 / (96 × 3,700 × 9e5) = 2,815.3.
        let c = bid_curve(1, 96, option(3_700, 250_000_000), Q, Price(0), CAP).unwrap();
        assert_eq!(shape(&c), (4, vec![(2_815, 4)]));
        // A floor above that lifts it.
        let c = bid_curve(1, 96, option(3_700, 250_000_000), Q, Price(10_000), CAP).unwrap();
        assert_eq!(shape(&c), (4, vec![(10_000, 4)]));
        assert!(bid_curve(0, 3, option(3_700, 1), Q, FLOOR, CAP).is_none());
        assert!(bid_curve(-5, 3, option(3_700, 1), Q, FLOOR, CAP).is_none());
    }

    fn entry(energy_wh: i64, price: i64) -> EvEntry {
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(1);
        use commonware_cryptography::Signer;
        EvEntry::new(
            Hash::from([7; 32]),
            EvTerms {
                feeder: bcte_types::FeederId::new("f").unwrap(),
                site: SiteId::new("ev").unwrap(),
                provider: AccountId::from_public_key(&key.public_key()),
                energy_wh,
                from: Interval(0),
                deadline: Interval(7),
                slow: option(3_700, price),
                fast: option(11_000, 2 * price),
                choice: bcte_types::contract::EvChoice::Slow,
                salt: 0,
            },
        )
    }

    fn settled(
        scheduled: i64,
        metered: Option<i64>,
        energy: i64,
        imbalance: i64,
    ) -> SiteSettlement {
        SiteSettlement {
            served: Watts(0),
            price: Price(0),
            scheduled_wh: scheduled,
            metered_wh: metered,
            deviation_wh: metered.map_or(0, |m| m - scheduled),
            energy_charge: energy,
            imbalance_charge: imbalance,
        }
    }

    #[test]
    fn the_owner_pays_the_option_price_for_what_was_delivered_and_nothing_for_a_shortfall() {
        let mut e = entry(6_000, 250_000_000);
        // Two intervals cleared at 925 Wh each; one settled on a reading of 900 Wh.
        e.cleared_wh = 1_850;
        e.accrue(&settled(925, Some(900), 46_250, -1_000));
        assert_eq!(e.remaining_wh(), 6_000 - 900 - 925);
        // The second settled without a reading: its schedule counts as delivered.
        e.accrue(&settled(925, None, 46_250, 0));
        assert_eq!((e.delivered_wh, e.market_charges), (1_825, 91_500));
        // 1,825 Wh at 250/MWh = 456,250 base units; the owner paid 91,500 to the market, so
        // it pays the provider 364,750; 4,175 Wh were not delivered and are not charged.
        let flow = e.close();
        assert_eq!(
            (
                flow.delivered_wh,
                flow.shortfall_wh,
                flow.charge,
                flow.difference
            ),
            (1_825, 4_175, 456_250, 364_750)
        );
        // More delivered than needed is charged at the price too; no shortfall.
        e.delivered_wh = 6_010;
        assert_eq!((e.close().shortfall_wh, e.close().charge), (0, 1_502_500));
        // A charger that fed in over the contract delivered nothing.
        e.delivered_wh = -40;
        assert_eq!((e.close().delivered_wh, e.close().charge), (0, 0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// CT-3.4: whenever the option's power can deliver the energy in the intervals left, a
        /// contract served no more than its bid's must-buy part (every price below the option's)
        /// has its energy by the deadline.
        #[test]
        fn the_energy_comes_by_the_deadline_whenever_the_power_allows(
            power in 1i64..50_000,
            price in 0i64..1_000_000_000,
            intervals in 1u64..200,
            dt in 1_000u64..=3_600_000,
            share in 1u32..=1_000,
        ) {
            let capacity = i128::from(scheduled_wh(power, dt)) * i128::from(intervals);
            let energy = ((capacity * i128::from(share) / 1_000) as i64).max(1);
            proptest::prop_assume!(i128::from(energy) <= capacity);
            let o = option(power, price);
            let mut remaining = energy;
            for left in (1..=intervals).rev() {
                let Some(curve) = bid_curve(remaining, left, o, dt, FLOOR, CAP) else { break };
                let served = curve.range_at(Price(price - 1)).min.0;
                remaining -= scheduled_wh(served, dt);
            }
            proptest::prop_assert!(remaining <= 0, "{remaining} Wh of {energy} short");
        }
    }
}
