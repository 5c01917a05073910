//! DSO flexibility requests on the chain (rules FX-x.y of `docs/flexibility-rules.md`, cited
//! at the branches): posting a request, offering to it, accepting offers, and what a settled
//! interval pays for the flexibility delivered ([`settle_request`], applied by
//! [`crate::settle`]): a baseline from the sites' own earlier readings ([`baseline`]), the
//! delivery measured against it, and the payment split by delivered share ([`split`]).

use crate::{
    exec::{BlockContext, ExecError},
    keys::StateKey,
    market::{Handled, reject},
    market_state::{FeederState, Schedule, SiteTable, len_size, read_len, write_len},
    working::Working,
};
use bcte_market::limits::{POWER_ABS_MAX, PRICE_ABS_MAX};
use bcte_types::{
    AccountId, FeederId, Hash, Interval, RejectReason, SiteId, Watts,
    flex::{
        FLEX_INTERVALS_MAX, FLEX_SITES_MAX, FlexAccept, FlexDirection, FlexOffer, FlexRequest,
        FlexTarget,
    },
    units::div_round_half_away,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// Most requests a feeder holds at once (FX-1.3).
pub const FLEX_REQUESTS_PER_FEEDER_MAX: usize = 64;

/// Most offers one request takes (FX-2.1).
pub const FLEX_OFFERS_MAX: usize = 1_024;

/// Most sites all the offers to one request may name together (FX-2.1).
pub const FLEX_OFFERED_SITES_MAX: usize = 4_096;

/// One offer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferEntry {
    /// Who offered: the sites' owner or their aggregator.
    pub by: AccountId,
    /// The sites, sorted.
    pub sites: Vec<SiteId>,
    /// The power offered in every interval (W).
    pub power: Watts,
    /// Whether the DSO accepted it.
    pub accepted: bool,
}

/// One request with its offers, numbered from 0 in the order they were taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlexEntry {
    /// `SHA-256(FLEX_NAMESPACE ‖ chain_id ‖ request)`.
    pub id: Hash,
    /// The request as the DSO posted it.
    pub request: FlexRequest,
    /// The offers.
    pub offers: Vec<OfferEntry>,
}

impl FlexEntry {
    /// Whether interval `k` is within the request.
    pub fn covers(&self, k: Interval) -> bool {
        self.request.from <= k && k <= self.request.to
    }

    /// The power accepted so far (W).
    pub fn accepted_power(&self) -> i64 {
        self.offers
            .iter()
            .filter(|o| o.accepted)
            .map(|o| o.power.0)
            .sum()
    }

    /// Whether `site` is in an accepted offer of this request in interval `k`.
    pub fn engages(&self, site: &SiteId, k: Interval) -> bool {
        self.covers(k)
            && self
                .offers
                .iter()
                .any(|o| o.accepted && o.sites.binary_search(site).is_ok())
    }
}

/// A feeder's flexibility requests, sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlexTable {
    /// The requests.
    pub requests: Vec<FlexEntry>,
}

impl FlexTable {
    /// The request `id`.
    pub fn get(&self, id: &Hash) -> Option<&FlexEntry> {
        self.requests
            .binary_search_by(|c| c.id.cmp(id))
            .ok()
            .map(|i| &self.requests[i])
    }

    /// The requests covering interval `k` with an accepted offer.
    pub fn active(&self, k: Interval) -> impl Iterator<Item = &FlexEntry> {
        self.requests
            .iter()
            .filter(move |r| r.covers(k) && r.offers.iter().any(|o| o.accepted))
    }

    /// The accepted offers of the requests covering interval `k`: each with its request and
    /// its number, in request and offer order.
    pub fn accepted(&self, k: Interval) -> impl Iterator<Item = (&FlexEntry, u32, &OfferEntry)> {
        self.active(k).flat_map(|r| {
            r.offers
                .iter()
                .enumerate()
                .filter(|(_, o)| o.accepted)
                .map(move |(n, o)| (r, n as u32, o))
        })
    }

    /// FX-3.1: whether `site` was asked for flexibility in interval `k` (in an accepted
    /// offer of any request): such an interval is no baseline day.
    pub fn engaged(&self, site: &SiteId, k: Interval) -> bool {
        self.requests.iter().any(|r| r.engages(site, k))
    }

    /// Whether the table has nothing (no key is written for it then).
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

impl Write for OfferEntry {
    fn write(&self, buf: &mut impl BufMut) {
        self.by.write(buf);
        write_len(self.sites.len(), buf);
        for s in &self.sites {
            s.write(buf);
        }
        self.power.write(buf);
        self.accepted.write(buf);
    }
}

impl EncodeSize for OfferEntry {
    fn encode_size(&self) -> usize {
        AccountId::SIZE
            + len_size(self.sites.len())
            + self
                .sites
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
            + 8
            + 1
    }
}

impl Read for OfferEntry {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let by = AccountId::read(buf)?;
        let n = read_len(buf, FLEX_SITES_MAX)?;
        let mut sites: Vec<SiteId> = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let s = SiteId::read(buf)?;
            if sites.last().is_some_and(|l| *l >= s) {
                return Err(CodecError::Invalid("OfferEntry", "sites not sorted"));
            }
            sites.push(s);
        }
        Ok(Self {
            by,
            sites,
            power: Watts::read(buf)?,
            accepted: bool::read(buf)?,
        })
    }
}

impl Write for FlexTable {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.requests.len(), buf);
        for r in &self.requests {
            r.id.write(buf);
            r.request.write(buf);
            write_len(r.offers.len(), buf);
            for o in &r.offers {
                o.write(buf);
            }
        }
    }
}

impl EncodeSize for FlexTable {
    fn encode_size(&self) -> usize {
        len_size(self.requests.len())
            + self
                .requests
                .iter()
                .map(|r| {
                    Hash::SIZE
                        + r.request.encode_size()
                        + len_size(r.offers.len())
                        + r.offers.iter().map(EncodeSize::encode_size).sum::<usize>()
                })
                .sum::<usize>()
    }
}

impl Read for FlexTable {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FLEX_REQUESTS_PER_FEEDER_MAX)?;
        let mut requests: Vec<FlexEntry> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = Hash::read(buf)?;
            let request = FlexRequest::read(buf)?;
            let m = read_len(buf, FLEX_OFFERS_MAX)?;
            let mut offers = Vec::with_capacity(m.min(256));
            for _ in 0..m {
                offers.push(OfferEntry::read(buf)?);
            }
            if requests.last().is_some_and(|l| l.id >= id) {
                return Err(CodecError::Invalid("FlexTable", "ids not sorted"));
            }
            requests.push(FlexEntry {
                id,
                request,
                offers,
            });
        }
        Ok(Self { requests })
    }
}

/// What one site of an accepted offer delivered in a settled interval (FX-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteDelivery {
    /// The site.
    pub site: SiteId,
    /// Its baseline (Wh), if it had a baseline day (FX-3.1).
    pub baseline_wh: Option<i64>,
    /// Its reading (Wh), if it had one when the interval settled.
    pub metered_wh: Option<i64>,
    /// Its delivery against the baseline in the request's direction (Wh; 0 without a
    /// baseline or a reading), FX-3.2.
    pub delivered_wh: i64,
    /// What it is paid (base units), FX-3.4.
    pub amount: i64,
}

/// One accepted offer's delivery and payment in a settled interval (FX-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlexFlow {
    /// The request.
    pub request: Hash,
    /// The offer's number.
    pub offer: u32,
    /// Who offered.
    pub by: AccountId,
    /// The offer's delivery, netted over its sites and capped at its power (Wh), FX-3.3.
    pub delivered_wh: i64,
    /// What the market account pays for it (base units), FX-3.3.
    pub amount: i64,
    /// Its sites, in order.
    pub sites: Vec<SiteDelivery>,
}

fn write_opt(v: Option<i64>, buf: &mut impl BufMut) {
    match v {
        None => buf.put_u8(0),
        Some(x) => {
            buf.put_u8(1);
            x.write(buf);
        }
    }
}

fn read_opt(buf: &mut impl Buf) -> Result<Option<i64>, CodecError> {
    match u8::read(buf)? {
        0 => Ok(None),
        1 => Ok(Some(i64::read(buf)?)),
        t => Err(CodecError::InvalidEnum(t)),
    }
}

impl Write for FlexFlow {
    fn write(&self, buf: &mut impl BufMut) {
        self.request.write(buf);
        self.offer.write(buf);
        self.by.write(buf);
        self.delivered_wh.write(buf);
        self.amount.write(buf);
        write_len(self.sites.len(), buf);
        for s in &self.sites {
            s.site.write(buf);
            write_opt(s.baseline_wh, buf);
            write_opt(s.metered_wh, buf);
            s.delivered_wh.write(buf);
            s.amount.write(buf);
        }
    }
}

impl EncodeSize for FlexFlow {
    fn encode_size(&self) -> usize {
        let opt = |v: Option<i64>| 1 + if v.is_some() { 8 } else { 0 };
        Hash::SIZE
            + 4
            + AccountId::SIZE
            + 16
            + len_size(self.sites.len())
            + self
                .sites
                .iter()
                .map(|s| s.site.encode_size() + opt(s.baseline_wh) + opt(s.metered_wh) + 16)
                .sum::<usize>()
    }
}

impl Read for FlexFlow {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let request = Hash::read(buf)?;
        let offer = u32::read(buf)?;
        let by = AccountId::read(buf)?;
        let delivered_wh = i64::read(buf)?;
        let amount = i64::read(buf)?;
        let n = read_len(buf, FLEX_SITES_MAX)?;
        let mut sites = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            sites.push(SiteDelivery {
                site: SiteId::read(buf)?,
                baseline_wh: read_opt(buf)?,
                metered_wh: read_opt(buf)?,
                delivered_wh: i64::read(buf)?,
                amount: i64::read(buf)?,
            });
        }
        Ok(Self {
            request,
            offer,
            by,
            delivered_wh,
            amount,
            sites,
        })
    }
}

/// FX-3.1: a site's baseline for interval `k`: the mean of its readings in the same interval
/// of the previous days (`day` intervals apart), over the first `days` of the previous
/// `2 × days` days that have a reading (`reading_at`) and no flexibility asked of the site
/// (`engaged`), rounded half away from zero to 1 Wh. `None` if no day qualifies.
pub fn baseline(
    k: Interval,
    day: u64,
    days: u32,
    reading_at: impl Fn(Interval) -> Option<i64>,
    engaged: impl Fn(Interval) -> bool,
) -> Option<i64> {
    let (mut sum, mut count) = (0i128, 0i128);
    for d in 1..=2 * u64::from(days) {
        if count == i128::from(days) {
            break;
        }
        let Some(back) = d.checked_mul(day).and_then(|b| k.0.checked_sub(b)) else {
            break;
        };
        let at = Interval(back);
        if engaged(at) {
            continue;
        }
        if let Some(wh) = reading_at(at) {
            sum += i128::from(wh);
            count += 1;
        }
    }
    (count > 0).then(|| div_round_half_away(sum, count) as i64)
}

/// FX-3.4: splits `amount` base units among sites by their shares (the positive deliveries):
/// each gets `⌊amount × share / Σ shares⌋`, and the units left go one each to the largest
/// remainders, the first site first on a tie. Sums to `amount` exactly (0 if no share).
pub fn split(amount: i64, shares: &[i64]) -> Vec<i64> {
    let total: i128 = shares.iter().map(|&s| i128::from(s.max(0))).sum();
    if total == 0 || amount == 0 {
        return vec![0; shares.len()];
    }
    let a = i128::from(amount);
    let mut out: Vec<i64> = Vec::with_capacity(shares.len());
    let mut rems: Vec<(i128, usize)> = Vec::with_capacity(shares.len());
    for (i, &s) in shares.iter().enumerate() {
        let n = a * i128::from(s.max(0));
        out.push((n / total) as i64);
        rems.push((n % total, i));
    }
    let left = amount - out.iter().sum::<i64>();
    rems.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    for &(_, i) in rems.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

/// FX-3.2 to FX-3.4: what one accepted offer delivered in an interval of `interval_ms` and
/// what it is paid at `price`, from each site's baseline and reading.
pub fn settle_offer(
    request: &FlexRequest,
    offer: &OfferEntry,
    interval_ms: u64,
    sites: &[(Option<i64>, Option<i64>)],
) -> (i64, i64, Vec<SiteDelivery>) {
    // FX-3.2: each site's delivery in the request's direction, 0 if it cannot be verified.
    let delivered: Vec<i64> = sites
        .iter()
        .map(|&(b, m)| match (b, m) {
            (Some(b), Some(m)) => match request.direction {
                FlexDirection::Reduce => b - m,
                FlexDirection::Increase => m - b,
            },
            _ => 0,
        })
        .collect();
    // FX-3.3: netted over the offer's sites, capped at the offered power's energy.
    let cap = crate::settle::scheduled_wh(offer.power.0, interval_ms);
    let net: i64 = delivered.iter().sum();
    let energy = net.clamp(0, cap);
    let amount =
        div_round_half_away(i128::from(energy) * i128::from(request.price.0), 1_000_000) as i64;
    // FX-3.4: split by the sites' positive deliveries.
    let shares = split(amount, &delivered);
    let out = offer
        .sites
        .iter()
        .zip(sites)
        .zip(delivered.iter().zip(shares))
        .map(|((site, &(b, m)), (&d, pay))| SiteDelivery {
            site: site.clone(),
            baseline_wh: b,
            metered_wh: m,
            delivered_wh: d,
            amount: pay,
        })
        .collect();
    (energy, amount, out)
}

/// A feeder's schedule, state and site table, if it is registered.
fn feeder_of(
    w: &mut Working<'_>,
    f: &FeederId,
) -> Result<Option<(Schedule, FeederState, SiteTable)>, ExecError> {
    let Some((s, sites)) = crate::contract::feeder_of(w, f)? else {
        return Ok(None);
    };
    Ok(Some((s, crate::settle::feeder_state(w, f)?, sites)))
}

/// Where request `id` is in `table`, or the rejection naming it.
fn request_index(table: &FlexTable, f: &FeederId, id: &Hash) -> Result<usize, RejectReason> {
    table
        .requests
        .binary_search_by(|r| r.id.cmp(id))
        .map_err(|_| {
            RejectReason::invalid(format!(
                "request: no flexibility request {} on feeder {f}",
                hex::encode(id)
            ))
        })
}

fn table_of(w: &mut Working<'_>, f: &FeederId) -> Result<FlexTable, ExecError> {
    Ok(w.market
        .flex
        .get(w.pre, &StateKey::Flex(f.clone()))?
        .cloned()
        .unwrap_or_default())
}

/// FX-2.1: whether `k`'s market gate is still open at `now_ms`.
fn gate_open(s: &Schedule, k: Interval, now_ms: u64) -> bool {
    k >= s.next_clear && s.gate_ms(k) > now_ms
}

/// How long a request is kept after its last interval settles: as far back as a baseline
/// looks (FX-1.3).
fn lookback(s: &Schedule, k: Interval) -> u64 {
    let c = s.config_at(k);
    c.day_intervals()
        .saturating_mul(2 * u64::from(c.baseline_days))
}

/// FX-1: the DSO posts a request.
pub(crate) fn post(w: &mut Working<'_>, ctx: &BlockContext, op: &FlexRequest) -> Handled {
    let f = &op.feeder;
    let Some((s, state, sites)) = feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    // FX-1.1: a positive power and price within the engine's limits.
    if op.power.0 <= 0 || op.power.0 > POWER_ABS_MAX.0 {
        reject!(RejectReason::invalid(format!(
            "power: {} W; request a positive power of at most {} W",
            op.power.0, POWER_ABS_MAX.0
        )));
    }
    if op.price.0 <= 0 || op.price.0 > PRICE_ABS_MAX.0 {
        reject!(RejectReason::invalid(format!(
            "price: {} µ/MWh; pay a positive price of at most {} µ/MWh",
            op.price.0, PRICE_ABS_MAX.0
        )));
    }
    if op.to < op.from || op.to.0 - op.from.0 >= FLEX_INTERVALS_MAX {
        reject!(RejectReason::invalid(format!(
            "to: intervals {} to {}; give 1 to {FLEX_INTERVALS_MAX} intervals, first to last",
            op.from.0, op.to.0
        )));
    }
    // FX-1.2: a gate still open, at or before the first interval.
    if op.gate > op.from {
        reject!(RejectReason::invalid(format!(
            "gate: interval {} is after the request's first interval {}",
            op.gate.0, op.from.0
        )));
    }
    if !gate_open(&s, op.gate, ctx.now_ms) {
        reject!(RejectReason::GateClosed {
            interval: op.gate,
            gate_ms: s.gate_ms(op.gate),
            now_ms: ctx.now_ms,
        });
    }
    // FX-1.1: a known node, or known sites.
    match &op.target {
        FlexTarget::Node(n) => {
            if state.node_index(n).is_none() {
                reject!(RejectReason::invalid(format!(
                    "target: feeder {f} has no node {n}"
                )));
            }
        }
        FlexTarget::Sites(list) => {
            if let Some(site) = list
                .iter()
                .find(|x| !sites.sites.iter().any(|y| &y.id == *x))
            {
                reject!(RejectReason::UnknownSite { site: site.clone() });
            }
        }
    }
    let id = op.id(&ctx.config.chain_id);
    let mut table = table_of(w, f)?;
    // FX-1.3: requests settled longer ago than a baseline looks back are done with.
    table
        .requests
        .retain(|r| r.request.to.0.saturating_add(lookback(&s, r.request.to)) >= s.next_settle.0);
    let at = match table.requests.binary_search_by(|r| r.id.cmp(&id)) {
        Ok(_) => reject!(RejectReason::invalid(format!(
            "request {} is already posted; post it with another salt to ask again",
            hex::encode(id)
        ))),
        Err(at) => at,
    };
    if table.requests.len() >= FLEX_REQUESTS_PER_FEEDER_MAX {
        reject!(RejectReason::invalid(format!(
            "feeder {f} has {FLEX_REQUESTS_PER_FEEDER_MAX} requests, the most it may hold"
        )));
    }
    table.requests.insert(
        at,
        FlexEntry {
            id,
            request: op.clone(),
            offers: Vec::new(),
        },
    );
    w.market.flex.put(StateKey::Flex(f.clone()), table);
    Ok(Ok(()))
}

/// FX-2.1: a site's owner or its aggregator offers.
pub(crate) fn offer(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &FlexOffer,
) -> Handled {
    let f = &op.feeder;
    let Some((s, state, table_sites)) = feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    let mut table = table_of(w, f)?;
    let i = match request_index(&table, f, &op.request) {
        Ok(i) => i,
        Err(r) => reject!(r),
    };
    let entry = &table.requests[i];
    let r = &entry.request;
    if !gate_open(&s, r.gate, ctx.now_ms) {
        reject!(RejectReason::GateClosed {
            interval: r.gate,
            gate_ms: s.gate_ms(r.gate),
            now_ms: ctx.now_ms,
        });
    }
    if op.power.0 <= 0 || op.power.0 > r.power.0 {
        reject!(RejectReason::invalid(format!(
            "power: {} W; offer a positive power of at most the {} W requested",
            op.power.0, r.power.0
        )));
    }
    for site in &op.sites {
        let Some(st) = w
            .market
            .sites
            .get(w.pre, &StateKey::Site(f.clone(), site.clone()))?
            .cloned()
        else {
            reject!(RejectReason::UnknownSite { site: site.clone() });
        };
        // FX-2.1: the owner, or the aggregator it delegated to.
        if sender != st.owner && st.aggregator != Some(sender) {
            reject!(RejectReason::NotSiteBidder { site: site.clone() });
        }
        let node = table_sites
            .sites
            .get(st.index as usize)
            .and_then(|x| state.nodes.get(x.node as usize))
            .map(|n| &n.id)
            .ok_or_else(|| ExecError::Bug(format!("site {site} has no node")))?;
        if !r.target.includes(site, node) {
            reject!(RejectReason::invalid(format!(
                "sites: {site} (at node {node}) is not a site the request asks"
            )));
        }
        if let Some(n) = entry
            .offers
            .iter()
            .position(|o| o.sites.binary_search(site).is_ok())
        {
            reject!(RejectReason::invalid(format!(
                "sites: {site} is already in offer {n} to this request"
            )));
        }
    }
    let offered: usize = entry.offers.iter().map(|o| o.sites.len()).sum();
    if entry.offers.len() >= FLEX_OFFERS_MAX || offered + op.sites.len() > FLEX_OFFERED_SITES_MAX {
        reject!(RejectReason::invalid(format!(
            "request {} has all the offers it takes ({FLEX_OFFERS_MAX} offers, \
             {FLEX_OFFERED_SITES_MAX} sites)",
            hex::encode(op.request)
        )));
    }
    table.requests[i].offers.push(OfferEntry {
        by: sender,
        sites: op.sites.clone(),
        power: op.power,
        accepted: false,
    });
    w.market.flex.put(StateKey::Flex(f.clone()), table);
    Ok(Ok(()))
}

/// FX-2.2: the DSO accepts offers.
pub(crate) fn accept(w: &mut Working<'_>, ctx: &BlockContext, op: &FlexAccept) -> Handled {
    let f = &op.feeder;
    let Some((s, _, _)) = feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    let mut table = table_of(w, f)?;
    let i = match request_index(&table, f, &op.request) {
        Ok(i) => i,
        Err(r) => reject!(r),
    };
    let entry = &mut table.requests[i];
    // FX-2.2: before the request's first interval clears.
    if !gate_open(&s, entry.request.from, ctx.now_ms) {
        reject!(RejectReason::GateClosed {
            interval: entry.request.from,
            gate_ms: s.gate_ms(entry.request.from),
            now_ms: ctx.now_ms,
        });
    }
    for &n in &op.offers {
        match entry.offers.get(n as usize) {
            None => reject!(RejectReason::invalid(format!(
                "offers: no offer {n}; the request has {} offers",
                entry.offers.len()
            ))),
            Some(o) if o.accepted => reject!(RejectReason::invalid(format!(
                "offers: offer {n} is already accepted"
            ))),
            Some(_) => {}
        }
    }
    let adding: i64 = op
        .offers
        .iter()
        .map(|&n| entry.offers[n as usize].power.0)
        .sum();
    let total = entry.accepted_power() + adding;
    if total > entry.request.power.0 {
        reject!(RejectReason::invalid(format!(
            "offers: {total} W accepted in all, more than the {} W requested",
            entry.request.power.0
        )));
    }
    for &n in &op.offers {
        entry.offers[n as usize].accepted = true;
    }
    w.market.flex.put(StateKey::Flex(f.clone()), table);
    Ok(Ok(()))
}

/// The intervals a baseline of interval `k` may read (FX-3.1), newest first.
pub(crate) fn baseline_intervals(s: &Schedule, k: Interval) -> Vec<Interval> {
    let c = s.config_at(k);
    let day = c.day_intervals();
    (1..=2 * u64::from(c.baseline_days))
        .map_while(|d| d.checked_mul(day).and_then(|b| k.0.checked_sub(b)))
        .map(Interval)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcte_types::Price;
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    #[test]
    fn the_baseline_averages_the_first_days_with_a_reading_and_no_request() {
        // Worked by hand: days of 4 intervals, 3 baseline days, interval 30. Interval 26 has
        // no reading, 22 was under a request; 18, 14 and 10 make the baseline:
        // (500 + 700 + 601) / 3 = 600.33 → 600.
        let readings = |k: Interval| match k.0 {
            26 => None,
            22 => Some(100),
            18 => Some(500),
            14 => Some(700),
            10 => Some(601),
            6 => Some(9_999),
            _ => None,
        };
        let engaged = |k: Interval| k.0 == 22;
        assert_eq!(baseline(Interval(30), 4, 3, readings, engaged), Some(600));
        // Only two qualify within 2 × 3 days back (26 … 6): still a mean, of those.
        assert_eq!(
            baseline(
                Interval(30),
                4,
                3,
                |k| (k.0 == 18 || k.0 == 6).then_some(-51),
                |_| false
            ),
            Some(-51)
        );
        // Half away from zero: (1 + 2) / 2 = 1.5 → 2, (−1 − 2) / 2 → −2.
        assert_eq!(
            baseline(Interval(10), 1, 2, |k| Some(k.0 as i64 - 7), |_| false),
            Some(2)
        );
        assert_eq!(
            baseline(Interval(10), 1, 2, |k| Some(-(k.0 as i64 - 7)), |_| false),
            Some(-2)
        );
        // None before the first day, and none without a reading.
        assert_eq!(baseline(Interval(3), 4, 3, |_| Some(1), |_| false), None);
        assert_eq!(baseline(Interval(30), 4, 3, |_| None, |_| false), None);
    }

    #[test]
    fn a_split_sums_to_the_amount_and_gives_the_remainder_to_the_largest_fractions() {
        // 100 by 1 : 1 : 1 → 33.3 each, one unit left to the first: 34, 33, 33.
        assert_eq!(split(100, &[5, 5, 5]), vec![34, 33, 33]);
        // 10 by 1 : 2 (and a site that went the wrong way gets nothing): 3.33 → 3, 6.67 → 7.
        assert_eq!(split(10, &[100, 200, -50]), vec![3, 7, 0]);
        assert_eq!(split(7, &[0, 0]), vec![0, 0]);
        assert_eq!(split(0, &[1]), vec![0]);
    }

    #[test]
    fn an_offer_is_paid_its_netted_delivery_up_to_its_power() {
        let request = FlexRequest {
            feeder: FeederId::new("f").unwrap(),
            direction: FlexDirection::Reduce,
            target: FlexTarget::Node(bcte_types::NodeId::new("t1").unwrap()),
            power: Watts(10_000),
            from: Interval(10),
            to: Interval(10),
            price: Price(200_000_000),
            gate: Interval(10),
            salt: 0,
        };
        let offer = OfferEntry {
            by: AccountId::from_public_key(&PrivateKey::from_seed(1).public_key()),
            sites: vec![SiteId::new("a").unwrap(), SiteId::new("b").unwrap()],
            power: Watts(4_000),
            accepted: true,
        };
        // Worked by hand, 15-minute interval: the cap is 4 kW × 0.25 h = 1,000 Wh. `a` cut
        // 800 Wh (1,500 → 700), `b` 400 Wh (900 → 500): 1,200 Wh netted, capped at 1,000 Wh,
        // paid 1 kWh × 0.2 /kWh = 200,000 base units, split 2 : 1 as 133,333.3 and 66,666.7
        // → 133,333 and 66,667.
        let (e, amount, sites) = settle_offer(
            &request,
            &offer,
            900_000,
            &[(Some(1_500), Some(700)), (Some(900), Some(500))],
        );
        assert_eq!((e, amount), (1_000, 200_000));
        assert_eq!(
            sites
                .iter()
                .map(|s| (s.delivered_wh, s.amount))
                .collect::<Vec<_>>(),
            vec![(800, 133_333), (400, 66_667)]
        );
        // `b` took 300 Wh more instead: 800 − 300 = 500 Wh netted, 100,000 base units, all
        // to `a`, the one that delivered.
        let (e, amount, sites) = settle_offer(
            &request,
            &offer,
            900_000,
            &[(Some(1_500), Some(700)), (Some(900), Some(1_200))],
        );
        assert_eq!((e, amount), (500, 100_000));
        assert_eq!(sites[0].amount, 100_000);
        assert_eq!(sites[1].amount, 0);
        // No reading for `a`, or no baseline: not verified, nothing delivered; the offer as a
        // whole took more than its baseline: paid nothing, and charged nothing either.
        let (e, amount, _) = settle_offer(
            &request,
            &offer,
            900_000,
            &[(Some(1_500), None), (None, Some(0))],
        );
        assert_eq!((e, amount), (0, 0));
        let increase = FlexRequest {
            direction: FlexDirection::Increase,
            ..request
        };
        let (e, _, _) = settle_offer(
            &increase,
            &offer,
            900_000,
            &[(Some(-1_000), Some(-700)), (Some(0), Some(100))],
        );
        assert_eq!(e, 400);
    }
}
