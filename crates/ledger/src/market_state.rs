//! The market's state values and their canonical encodings (docs/encoding.md, "Market state").
//!
//! Per feeder: its nodes ([`FeederState`]), its schedule ([`Schedule`]: the next interval to
//! clear, the configurations, modes and limit changes in force and to come), its site table
//! ([`SiteTable`]: each site's node, priority and connection limit, by index) and per site the
//! mutable part ([`SiteState`]: owner, aggregator). Per interval: how many bids and in which
//! buckets ([`BookIndex`]), the bids bucket by bucket ([`BidBucket`]), once cleared each
//! site's result bucket by bucket ([`ResultBucket`]), and the interval's result
//! ([`IntervalResult`]). Chain-wide: the feeders with their next gate closures
//! ([`FeederIndex`]), read by every block.
//!
//! Every decoder bounds its lists by the registry's limits, so a stored value can never make a
//! reader allocate without bound; the values are part of the consensus rules (the state root
//! commits to their bytes) and are pinned by golden tests.

use bcte_types::{
    AccountId, CurveSpec, FeederId, GridMode, Interval, MarketConfig, NodeId, Price, SiteId, Watts,
    market::{BID_HORIZON_INTERVALS, FEEDER_NODES_MAX, FEEDER_SITES_MAX},
};
use bytes::BufMut;
use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write, varint::UInt,
};

/// Most feeders on one chain.
pub const FEEDERS_MAX: usize = 64;
/// Most configuration changes scheduled at once for a feeder (beyond the one in force).
pub const CONFIG_CHANGES_MAX: usize = 16;
/// Most mode changes scheduled at once for a feeder.
pub const MODE_CHANGES_MAX: usize = 64;
/// Most edge-limit changes scheduled at once for a feeder.
pub const LIMIT_CHANGES_MAX: usize = 1_024;
/// Most excluded bids an interval's result lists.
const EXCLUDED_MAX: usize = FEEDER_SITES_MAX;

pub(crate) fn write_len(n: usize, buf: &mut impl BufMut) {
    UInt(n as u64).write(buf);
}

pub(crate) fn len_size(n: usize) -> usize {
    UInt(n as u64).encode_size()
}

pub(crate) fn read_len(buf: &mut impl Buf, max: usize) -> Result<usize, CodecError> {
    let n = UInt::<u64>::read(buf)?.0;
    let n = usize::try_from(n).map_err(|_| CodecError::InvalidUsize)?;
    if n > max {
        return Err(CodecError::InvalidLength(n));
    }
    Ok(n)
}

pub(crate) fn write_opt_u64(v: Option<u64>, buf: &mut impl BufMut) {
    match v {
        None => 0u8.write(buf),
        Some(x) => {
            1u8.write(buf);
            x.write(buf);
        }
    }
}

pub(crate) fn opt_u64_size(v: Option<u64>) -> usize {
    if v.is_some() { 9 } else { 1 }
}

pub(crate) fn read_opt_u64(buf: &mut impl Buf) -> Result<Option<u64>, CodecError> {
    match u8::read(buf)? {
        0 => Ok(None),
        1 => Ok(Some(u64::read(buf)?)),
        t => Err(CodecError::InvalidEnum(t)),
    }
}

fn write_opt_watts(v: Option<Watts>, buf: &mut impl BufMut) {
    match v {
        None => 0u8.write(buf),
        Some(w) => {
            1u8.write(buf);
            w.write(buf);
        }
    }
}

fn opt_watts_size(v: Option<Watts>) -> usize {
    if v.is_some() { 9 } else { 1 }
}

fn read_opt_watts(buf: &mut impl Buf) -> Result<Option<Watts>, CodecError> {
    match u8::read(buf)? {
        0 => Ok(None),
        1 => Ok(Some(Watts::read(buf)?)),
        t => Err(CodecError::InvalidEnum(t)),
    }
}

/// The genesis market clock (docs/market-chain-rules.md, MC-1). Absent from the state when the
/// speed is 1: market time is then block time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketClock {
    /// The genesis time (ms since the Unix epoch).
    pub genesis_time_ms: u64,
    /// Market ms per block-time ms.
    pub speed: u32,
}

impl MarketClock {
    /// The clock of a chain without one stored: market time is block time.
    pub const REAL_TIME: Self = Self {
        genesis_time_ms: 0,
        speed: 1,
    };

    /// The market time of a block stamped `block_ms` (MC-1.1), saturating far beyond any
    /// real date.
    pub fn market_time(&self, block_ms: u64) -> u64 {
        let elapsed = u128::from(block_ms.saturating_sub(self.genesis_time_ms));
        let t = u128::from(self.genesis_time_ms) + elapsed * u128::from(self.speed);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The first block time whose market time is at least `market_ms` (for a proposer that
    /// must not wait past a gate closure).
    pub fn block_time_of(&self, market_ms: u64) -> u64 {
        if market_ms <= self.genesis_time_ms {
            return self.genesis_time_ms;
        }
        let ahead = market_ms - self.genesis_time_ms;
        self.genesis_time_ms
            .saturating_add(ahead.div_ceil(u64::from(self.speed)))
    }
}

impl Write for MarketClock {
    fn write(&self, buf: &mut impl BufMut) {
        self.genesis_time_ms.write(buf);
        self.speed.write(buf);
    }
}

impl Read for MarketClock {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            genesis_time_ms: u64::read(buf)?,
            speed: u32::read(buf)?,
        })
    }
}

impl FixedSize for MarketClock {
    const SIZE: usize = 12;
}

/// One feeder in the chain-wide index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeederEntry {
    /// The feeder.
    pub feeder: FeederId,
    /// Market time of the gate closure of its next interval to clear.
    pub next_gate_ms: u64,
    /// The interval to prune next, when one is past its retention (MC-8).
    pub prune: Option<Interval>,
    /// Market time when its next cleared interval is due for settlement (ST-2.1), if any.
    pub settle_at_ms: Option<u64>,
}

/// Every feeder of the chain, sorted by id: the one value every block reads to learn whether it
/// closes a gate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeederIndex {
    /// The feeders, sorted by id, distinct.
    pub feeders: Vec<FeederEntry>,
}

impl FeederIndex {
    /// The entry of `feeder`, if registered.
    pub fn get(&self, feeder: &FeederId) -> Option<&FeederEntry> {
        self.feeders
            .binary_search_by(|e| e.feeder.cmp(feeder))
            .ok()
            .map(|i| &self.feeders[i])
    }

    /// Inserts or replaces the entry of its feeder, keeping the order.
    pub fn put(&mut self, entry: FeederEntry) {
        match self
            .feeders
            .binary_search_by(|e| e.feeder.cmp(&entry.feeder))
        {
            Ok(i) => self.feeders[i] = entry,
            Err(i) => self.feeders.insert(i, entry),
        }
    }

    /// The earliest next gate closure of any feeder.
    pub fn next_gate_ms(&self) -> Option<u64> {
        self.feeders.iter().map(|e| e.next_gate_ms).min()
    }

    /// The feeders due for settlement at market time `now_ms` (ST-2.1), in id order, at most
    /// [`SETTLEMENTS_PER_BLOCK_MAX`](crate::settle::SETTLEMENTS_PER_BLOCK_MAX).
    pub fn settling(&self, now_ms: u64) -> impl Iterator<Item = &FeederEntry> {
        self.feeders
            .iter()
            .filter(move |e| e.settle_at_ms.is_some_and(|t| t <= now_ms))
            .take(crate::settle::SETTLEMENTS_PER_BLOCK_MAX)
    }
}

impl Write for FeederIndex {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.feeders.len(), buf);
        for e in &self.feeders {
            e.feeder.write(buf);
            e.next_gate_ms.write(buf);
            write_opt_u64(e.prune.map(|k| k.0), buf);
            write_opt_u64(e.settle_at_ms, buf);
        }
    }
}

impl EncodeSize for FeederIndex {
    fn encode_size(&self) -> usize {
        len_size(self.feeders.len())
            + self
                .feeders
                .iter()
                .map(|e| {
                    e.feeder.encode_size()
                        + 8
                        + opt_u64_size(e.prune.map(|k| k.0))
                        + opt_u64_size(e.settle_at_ms)
                })
                .sum::<usize>()
    }
}

impl Read for FeederIndex {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDERS_MAX)?;
        let mut feeders = Vec::with_capacity(n);
        for _ in 0..n {
            let feeder = FeederId::read(buf)?;
            let next_gate_ms = u64::read(buf)?;
            let prune = read_opt_u64(buf)?.map(Interval);
            let settle_at_ms = read_opt_u64(buf)?;
            feeders.push(FeederEntry {
                feeder,
                next_gate_ms,
                prune,
                settle_at_ms,
            });
        }
        if feeders.windows(2).any(|w| w[0].feeder >= w[1].feeder) {
            return Err(CodecError::Invalid("FeederIndex", "feeders not sorted"));
        }
        Ok(Self { feeders })
    }
}

/// A node of a registered feeder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeederNode {
    /// Its id.
    pub id: NodeId,
    /// Index of its parent in the feeder's node list; `u32::MAX` for the root.
    pub parent: u32,
    /// The edge's import limit in force for the next interval to clear (W).
    pub import_limit: Option<Watts>,
    /// The edge's export limit in force for the next interval to clear (W).
    pub export_limit: Option<Watts>,
}

/// Most head-end systems of one feeder.
pub const HEAD_ENDS_MAX: usize = 8;

/// A registered feeder: its nodes (in registration order), its market epoch, its settlement
/// accounts and its head-end systems.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeederState {
    /// When interval 0 starts, market time (ms).
    pub epoch_ms: u64,
    /// The nodes; the root has parent `u32::MAX`.
    pub nodes: Vec<FeederNode>,
    /// The market account: the counterparty of every settlement payment (ST-2.5).
    pub market_account: AccountId,
    /// The account the upstream exchange settles against (ST-2.6).
    pub upstream_account: AccountId,
    /// The head-end systems allowed to submit readings in bulk (ST-1.2), sorted.
    pub head_ends: Vec<AccountId>,
    /// The DSO that registered the feeder and alone operates it (MC-3.5, AC-3.3).
    pub operator: AccountId,
}

impl FeederState {
    /// The index of node `id`, if the feeder has it.
    pub fn node_index(&self, id: &NodeId) -> Option<u32> {
        self.nodes
            .iter()
            .position(|n| &n.id == id)
            .map(|i| i as u32)
    }

    /// The root's index.
    pub fn root(&self) -> u32 {
        self.nodes
            .iter()
            .position(|n| n.parent == u32::MAX)
            .unwrap_or(0) as u32
    }
}

impl Write for FeederState {
    fn write(&self, buf: &mut impl BufMut) {
        self.epoch_ms.write(buf);
        write_len(self.nodes.len(), buf);
        for n in &self.nodes {
            n.id.write(buf);
            n.parent.write(buf);
            write_opt_watts(n.import_limit, buf);
            write_opt_watts(n.export_limit, buf);
        }
        self.market_account.write(buf);
        self.upstream_account.write(buf);
        write_len(self.head_ends.len(), buf);
        for a in &self.head_ends {
            a.write(buf);
        }
        self.operator.write(buf);
    }
}

impl EncodeSize for FeederState {
    fn encode_size(&self) -> usize {
        8 + len_size(self.nodes.len())
            + self
                .nodes
                .iter()
                .map(|n| {
                    n.id.encode_size()
                        + 4
                        + opt_watts_size(n.import_limit)
                        + opt_watts_size(n.export_limit)
                })
                .sum::<usize>()
            + 64
            + len_size(self.head_ends.len())
            + 32 * self.head_ends.len()
            + 32
    }
}

impl Read for FeederState {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let epoch_ms = u64::read(buf)?;
        let n = read_len(buf, FEEDER_NODES_MAX)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(FeederNode {
                id: NodeId::read(buf)?,
                parent: u32::read(buf)?,
                import_limit: read_opt_watts(buf)?,
                export_limit: read_opt_watts(buf)?,
            });
        }
        let market_account = AccountId::read(buf)?;
        let upstream_account = AccountId::read(buf)?;
        let n = read_len(buf, HEAD_ENDS_MAX)?;
        let head_ends = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<Vec<_>, _>>()?;
        if head_ends.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CodecError::Invalid("FeederState", "head-ends not sorted"));
        }
        Ok(Self {
            epoch_ms,
            nodes,
            market_account,
            upstream_account,
            head_ends,
            operator: AccountId::read(buf)?,
        })
    }
}

/// A configuration in force from interval `from` on; `start_ms` is when interval `from`
/// starts (MC-2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigSegment {
    /// The first interval it applies to.
    pub from: Interval,
    /// Market time when interval `from` starts.
    pub start_ms: u64,
    /// The configuration.
    pub config: MarketConfig,
}

/// A change of one edge's limits from an interval on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitChange {
    /// The first interval it applies to.
    pub from: Interval,
    /// The node below the edge (index in the feeder's node list).
    pub node: u32,
    /// The new import limit.
    pub import_limit: Option<Watts>,
    /// The new export limit.
    pub export_limit: Option<Watts>,
}

/// A feeder's schedule (MC-2, MC-3, MC-4, MC-6, MC-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The next interval to clear: every interval before it is cleared.
    pub next_clear: Interval,
    /// Configurations, by `from`, increasing; the first applies to `next_clear`.
    pub configs: Vec<ConfigSegment>,
    /// Grid modes from an interval on, increasing; the first applies to `next_clear`.
    pub modes: Vec<(Interval, GridMode)>,
    /// Limit changes still to come (`from` after the last cleared interval), by `from`.
    pub limits: Vec<LimitChange>,
    /// The next interval whose bids and results are to be pruned (MC-8).
    pub prune_next: Interval,
    /// Within `prune_next`, the bucket to prune from.
    pub prune_cursor: u32,
    /// The last interval any site has bid for (`None` before the first bid): no interval
    /// after it holds a bid, so a revocation (MC-3.3) looks no further.
    pub bids_through: Option<Interval>,
    /// The next interval to settle: every interval before it is settled (ST-2.1).
    pub next_settle: Interval,
    /// When `next_settle` is due for settlement, market time, once it is cleared.
    pub settle_at_ms: Option<u64>,
}

impl Schedule {
    /// The configuration segment that applies to interval `k`.
    pub fn segment_at(&self, k: Interval) -> &ConfigSegment {
        let i = self.configs.partition_point(|s| s.from <= k);
        &self.configs[i.saturating_sub(1)]
    }

    /// The configuration of interval `k`.
    pub fn config_at(&self, k: Interval) -> &MarketConfig {
        &self.segment_at(k).config
    }

    /// When interval `k` starts, market time (MC-2.1), saturating.
    pub fn start_ms(&self, k: Interval) -> u64 {
        let s = self.segment_at(k);
        let n = k.0.saturating_sub(s.from.0);
        s.start_ms
            .saturating_add(n.saturating_mul(s.config.interval_ms))
    }

    /// When interval `k`'s gate closes, market time (MC-2.3).
    pub fn gate_ms(&self, k: Interval) -> u64 {
        self.start_ms(k)
            .saturating_sub(self.config_at(k).gate_lead_ms)
    }

    /// The grid mode of interval `k`.
    pub fn mode_at(&self, k: Interval) -> GridMode {
        let i = self.modes.partition_point(|(from, _)| *from <= k);
        self.modes
            .get(i.wrapping_sub(1))
            .map_or(GridMode::Normal, |m| m.1)
    }

    /// The last interval open for bids: the horizon ahead of the next to clear (MC-5.2).
    pub fn horizon(&self) -> Interval {
        Interval(self.next_clear.0.saturating_add(BID_HORIZON_INTERVALS))
    }
}

impl Write for Schedule {
    fn write(&self, buf: &mut impl BufMut) {
        self.next_clear.write(buf);
        write_len(self.configs.len(), buf);
        for s in &self.configs {
            s.from.write(buf);
            s.start_ms.write(buf);
            s.config.write(buf);
        }
        write_len(self.modes.len(), buf);
        for (from, mode) in &self.modes {
            from.write(buf);
            mode.write(buf);
        }
        write_len(self.limits.len(), buf);
        for l in &self.limits {
            l.from.write(buf);
            l.node.write(buf);
            write_opt_watts(l.import_limit, buf);
            write_opt_watts(l.export_limit, buf);
        }
        self.prune_next.write(buf);
        self.prune_cursor.write(buf);
        write_opt_u64(self.bids_through.map(|k| k.0), buf);
        self.next_settle.write(buf);
        write_opt_u64(self.settle_at_ms, buf);
    }
}

impl EncodeSize for Schedule {
    fn encode_size(&self) -> usize {
        8 + len_size(self.configs.len())
            + self.configs.len() * (16 + MarketConfig::SIZE)
            + len_size(self.modes.len())
            + self.modes.len() * 9
            + len_size(self.limits.len())
            + self
                .limits
                .iter()
                .map(|l| 12 + opt_watts_size(l.import_limit) + opt_watts_size(l.export_limit))
                .sum::<usize>()
            + 12
            + opt_u64_size(self.bids_through.map(|k| k.0))
            + 8
            + opt_u64_size(self.settle_at_ms)
    }
}

impl Read for Schedule {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let next_clear = Interval::read(buf)?;
        let n = read_len(buf, CONFIG_CHANGES_MAX + 1)?;
        let mut configs = Vec::with_capacity(n);
        for _ in 0..n {
            configs.push(ConfigSegment {
                from: Interval::read(buf)?,
                start_ms: u64::read(buf)?,
                config: MarketConfig::read(buf)?,
            });
        }
        if configs.is_empty() {
            return Err(CodecError::Invalid("Schedule", "no configuration"));
        }
        let n = read_len(buf, MODE_CHANGES_MAX + 1)?;
        let mut modes = Vec::with_capacity(n);
        for _ in 0..n {
            modes.push((Interval::read(buf)?, GridMode::read(buf)?));
        }
        let n = read_len(buf, LIMIT_CHANGES_MAX)?;
        let mut limits = Vec::with_capacity(n);
        for _ in 0..n {
            limits.push(LimitChange {
                from: Interval::read(buf)?,
                node: u32::read(buf)?,
                import_limit: read_opt_watts(buf)?,
                export_limit: read_opt_watts(buf)?,
            });
        }
        Ok(Self {
            next_clear,
            configs,
            modes,
            limits,
            prune_next: Interval::read(buf)?,
            prune_cursor: u32::read(buf)?,
            bids_through: read_opt_u64(buf)?.map(Interval),
            next_settle: Interval::read(buf)?,
            settle_at_ms: read_opt_u64(buf)?,
        })
    }
}

/// What the clearing needs of a site, fixed at its registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    /// The site's id.
    pub id: SiteId,
    /// Its owner, who pays and is paid for it (fixed at registration).
    pub owner: AccountId,
    /// Its node's index in the feeder.
    pub node: u32,
    /// Its priority class (MR-2.4).
    pub priority: u8,
    /// The most it may draw.
    pub import_limit: Option<Watts>,
    /// The most it may feed in.
    pub export_limit: Option<Watts>,
}

/// A feeder's sites by index (registration order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteTable {
    /// The sites.
    pub sites: Vec<SiteInfo>,
}

impl Write for SiteTable {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.sites.len(), buf);
        for s in &self.sites {
            s.id.write(buf);
            s.owner.write(buf);
            s.node.write(buf);
            s.priority.write(buf);
            write_opt_watts(s.import_limit, buf);
            write_opt_watts(s.export_limit, buf);
        }
    }
}

impl EncodeSize for SiteTable {
    fn encode_size(&self) -> usize {
        len_size(self.sites.len())
            + self
                .sites
                .iter()
                .map(|s| {
                    s.id.encode_size()
                        + 32
                        + 5
                        + opt_watts_size(s.import_limit)
                        + opt_watts_size(s.export_limit)
                })
                .sum::<usize>()
    }
}

impl Read for SiteTable {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        let mut sites = Vec::with_capacity(n);
        for _ in 0..n {
            sites.push(SiteInfo {
                id: SiteId::read(buf)?,
                owner: AccountId::read(buf)?,
                node: u32::read(buf)?,
                priority: u8::read(buf)?,
                import_limit: read_opt_watts(buf)?,
                export_limit: read_opt_watts(buf)?,
            });
        }
        Ok(Self { sites })
    }
}

/// A site's owner and aggregator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteState {
    /// Its index in the feeder's site table.
    pub index: u32,
    /// Its owner.
    pub owner: AccountId,
    /// The aggregator it delegated bidding to, if any.
    pub aggregator: Option<AccountId>,
}

impl Write for SiteState {
    fn write(&self, buf: &mut impl BufMut) {
        self.index.write(buf);
        self.owner.write(buf);
        match &self.aggregator {
            None => 0u8.write(buf),
            Some(a) => {
                1u8.write(buf);
                a.write(buf);
            }
        }
    }
}

impl EncodeSize for SiteState {
    fn encode_size(&self) -> usize {
        4 + 32 + 1 + if self.aggregator.is_some() { 32 } else { 0 }
    }
}

impl Read for SiteState {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let index = u32::read(buf)?;
        let owner = AccountId::read(buf)?;
        let aggregator = match u8::read(buf)? {
            0 => None,
            1 => Some(AccountId::read(buf)?),
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            index,
            owner,
            aggregator,
        })
    }
}

/// How many bids an interval has, and which of its
/// [`BOOK_BUCKETS`](crate::keys::BOOK_BUCKETS) buckets hold any: one bit per bucket (bit `b` of
/// byte `b / 8`, least significant first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookIndex {
    /// The number of sites with a bid.
    pub bids: u32,
    buckets: crate::settle_state::BucketSet,
}

impl BookIndex {
    /// Whether bucket `b` holds a bid.
    pub fn contains(&self, b: u16) -> bool {
        self.buckets.contains(b)
    }

    /// Marks bucket `b` as holding bids.
    pub fn insert(&mut self, b: u16) {
        self.buckets.insert(b);
    }

    /// Marks bucket `b` as empty.
    pub fn remove(&mut self, b: u16) {
        self.buckets.remove(b);
    }

    /// The buckets holding bids, increasing.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.buckets.iter()
    }

    /// Whether no site has a bid.
    pub fn is_empty(&self) -> bool {
        self.bids == 0
    }
}

impl Write for BookIndex {
    fn write(&self, buf: &mut impl BufMut) {
        self.bids.write(buf);
        self.buckets.write(buf);
    }
}

impl Read for BookIndex {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let bids = u32::read(buf)?;
        let buckets = crate::settle_state::BucketSet::read(buf)?;
        Ok(Self { bids, buckets })
    }
}

impl FixedSize for BookIndex {
    const SIZE: usize = 4 + crate::settle_state::BucketSet::SIZE;
}

/// A site's bid for an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidRecord {
    /// The site.
    pub site: SiteId,
    /// Its index in the feeder's site table.
    pub index: u32,
    /// Who submitted it (the owner or its aggregator).
    pub bidder: AccountId,
    /// The curve, in component form.
    pub curve: CurveSpec,
}

/// The bids of one bucket's sites for an interval, sorted by site id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BidBucket {
    /// The bids, by site id.
    pub bids: Vec<BidRecord>,
}

impl BidBucket {
    fn position(&self, site: &SiteId) -> Result<usize, usize> {
        self.bids.binary_search_by(|b| b.site.cmp(site))
    }

    /// The bid of `site`, if it has one.
    pub fn get(&self, site: &SiteId) -> Option<&BidRecord> {
        self.position(site).ok().map(|i| &self.bids[i])
    }

    /// Sets `record`'s site's bid; `true` if the site had none.
    pub fn put(&mut self, record: BidRecord) -> bool {
        match self.position(&record.site) {
            Ok(i) => {
                self.bids[i] = record;
                false
            }
            Err(i) => {
                self.bids.insert(i, record);
                true
            }
        }
    }

    /// Removes `site`'s bid, returning it.
    pub fn remove(&mut self, site: &SiteId) -> Option<BidRecord> {
        self.position(site).ok().map(|i| self.bids.remove(i))
    }

    /// Whether the bucket holds no bid.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty()
    }
}

impl Write for BidBucket {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.bids.len(), buf);
        for b in &self.bids {
            b.site.write(buf);
            b.index.write(buf);
            b.bidder.write(buf);
            b.curve.write(buf);
        }
    }
}

impl EncodeSize for BidBucket {
    fn encode_size(&self) -> usize {
        len_size(self.bids.len())
            + self
                .bids
                .iter()
                .map(|b| b.site.encode_size() + 4 + 32 + b.curve.encode_size())
                .sum::<usize>()
    }
}

impl Read for BidBucket {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        let mut bids = Vec::with_capacity(n.min(1_024));
        for _ in 0..n {
            bids.push(BidRecord {
                site: SiteId::read(buf)?,
                index: u32::read(buf)?,
                bidder: AccountId::read(buf)?,
                curve: CurveSpec::read(buf)?,
            });
        }
        if bids.windows(2).any(|w| w[0].site >= w[1].site) {
            return Err(CodecError::Invalid("BidBucket", "bids not sorted by site"));
        }
        Ok(Self { bids })
    }
}

/// A site's result in an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteResult {
    /// Its node's price (µ/MWh).
    pub price: Price,
    /// What its curve asks at that price (W).
    pub allocation: Watts,
    /// Its demand not served (W, MR-2.4).
    pub shed: Watts,
    /// Its generation not absorbed (W, MR-2.3).
    pub spilled: Watts,
}

impl SiteResult {
    /// What it is served: allocation less shed plus spilled (W).
    pub fn served(&self) -> Watts {
        Watts(self.allocation.0 - self.shed.0 + self.spilled.0)
    }
}

/// The results of one bucket's sites in a cleared interval, sorted by site id: the value a
/// site's proof of its result shows (MC-7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultBucket {
    /// The results, by site id.
    pub results: Vec<(SiteId, SiteResult)>,
}

impl ResultBucket {
    /// The result of `site`, if it has one.
    pub fn get(&self, site: &SiteId) -> Option<&SiteResult> {
        self.results
            .binary_search_by(|(s, _)| s.cmp(site))
            .ok()
            .map(|i| &self.results[i].1)
    }
}

impl Write for ResultBucket {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.results.len(), buf);
        for (site, r) in &self.results {
            site.write(buf);
            r.price.write(buf);
            r.allocation.write(buf);
            r.shed.write(buf);
            r.spilled.write(buf);
        }
    }
}

impl EncodeSize for ResultBucket {
    fn encode_size(&self) -> usize {
        len_size(self.results.len())
            + self
                .results
                .iter()
                .map(|(s, _)| s.encode_size() + 32)
                .sum::<usize>()
    }
}

impl Read for ResultBucket {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        let mut results = Vec::with_capacity(n.min(1_024));
        for _ in 0..n {
            let site = SiteId::read(buf)?;
            results.push((
                site,
                SiteResult {
                    price: Price::read(buf)?,
                    allocation: Watts::read(buf)?,
                    shed: Watts::read(buf)?,
                    spilled: Watts::read(buf)?,
                },
            ));
        }
        if results.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(CodecError::Invalid(
                "ResultBucket",
                "results not sorted by site",
            ));
        }
        Ok(Self { results })
    }
}

/// Which limit an edge is at in a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    /// Importing at its import limit.
    Import,
    /// Exporting at its export limit.
    Export,
}

/// An interval's result (MC-7.3). Per-node vectors are indexed like the feeder's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntervalResult {
    /// The block that cleared it.
    pub height: u64,
    /// Its grid mode.
    pub mode: GridMode,
    /// When it starts, market time (ms).
    pub start_ms: u64,
    /// Its nominal length (ms): the `Δ` of money and energy, whatever the block times.
    pub interval_ms: u64,
    /// The floor it cleared with.
    pub price_floor: Price,
    /// The cap it cleared with.
    pub price_cap: Price,
    /// The upstream import price it cleared with (tariff or posted).
    pub import_price: Price,
    /// The upstream export price it cleared with.
    pub export_price: Price,
    /// The price of each node.
    pub prices: Vec<Price>,
    /// The flow into each node from its parent (zero for the root).
    pub flows: Vec<Watts>,
    /// Nodes with shed load.
    pub shed: Vec<(u32, Watts)>,
    /// Nodes with spilled generation.
    pub spilled: Vec<(u32, Watts)>,
    /// Edges at a limit, by the node below them.
    pub congested: Vec<(u32, Congestion)>,
    /// The upstream bid's allocation (negative: the feeder imports); zero when islanded.
    pub upstream: Watts,
    /// Welfare, W · µ/MWh (MR-4).
    pub welfare: i128,
    /// How many bids it cleared.
    pub bids: u32,
    /// Site indices whose bids were left out (their curve left the price bounds, MC-7.4).
    pub excluded: Vec<u32>,
}

fn write_node_watts(list: &[(u32, Watts)], buf: &mut impl BufMut) {
    write_len(list.len(), buf);
    for (i, w) in list {
        i.write(buf);
        w.write(buf);
    }
}

fn read_node_watts(buf: &mut impl Buf) -> Result<Vec<(u32, Watts)>, CodecError> {
    let n = read_len(buf, FEEDER_NODES_MAX)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((u32::read(buf)?, Watts::read(buf)?));
    }
    Ok(out)
}

impl Write for IntervalResult {
    fn write(&self, buf: &mut impl BufMut) {
        self.height.write(buf);
        self.mode.write(buf);
        self.start_ms.write(buf);
        self.interval_ms.write(buf);
        self.price_floor.write(buf);
        self.price_cap.write(buf);
        self.import_price.write(buf);
        self.export_price.write(buf);
        write_len(self.prices.len(), buf);
        for p in &self.prices {
            p.write(buf);
        }
        write_len(self.flows.len(), buf);
        for f in &self.flows {
            f.write(buf);
        }
        write_node_watts(&self.shed, buf);
        write_node_watts(&self.spilled, buf);
        write_len(self.congested.len(), buf);
        for (i, c) in &self.congested {
            i.write(buf);
            let tag: u8 = match c {
                Congestion::Import => 0,
                Congestion::Export => 1,
            };
            tag.write(buf);
        }
        self.upstream.write(buf);
        buf.put_slice(&self.welfare.to_be_bytes());
        self.bids.write(buf);
        write_len(self.excluded.len(), buf);
        for i in &self.excluded {
            i.write(buf);
        }
    }
}

impl EncodeSize for IntervalResult {
    fn encode_size(&self) -> usize {
        8 + 1
            + 6 * 8
            + len_size(self.prices.len())
            + 8 * self.prices.len()
            + len_size(self.flows.len())
            + 8 * self.flows.len()
            + len_size(self.shed.len())
            + 12 * self.shed.len()
            + len_size(self.spilled.len())
            + 12 * self.spilled.len()
            + len_size(self.congested.len())
            + 5 * self.congested.len()
            + 8
            + 16
            + 4
            + len_size(self.excluded.len())
            + 4 * self.excluded.len()
    }
}

impl Read for IntervalResult {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let height = u64::read(buf)?;
        let mode = GridMode::read(buf)?;
        let start_ms = u64::read(buf)?;
        let interval_ms = u64::read(buf)?;
        let price_floor = Price::read(buf)?;
        let price_cap = Price::read(buf)?;
        let import_price = Price::read(buf)?;
        let export_price = Price::read(buf)?;
        let n = read_len(buf, FEEDER_NODES_MAX)?;
        let prices = (0..n).map(|_| Price::read(buf)).collect::<Result<_, _>>()?;
        let n = read_len(buf, FEEDER_NODES_MAX)?;
        let flows = (0..n).map(|_| Watts::read(buf)).collect::<Result<_, _>>()?;
        let shed = read_node_watts(buf)?;
        let spilled = read_node_watts(buf)?;
        let n = read_len(buf, FEEDER_NODES_MAX)?;
        let mut congested = Vec::with_capacity(n);
        for _ in 0..n {
            let i = u32::read(buf)?;
            let c = match u8::read(buf)? {
                0 => Congestion::Import,
                1 => Congestion::Export,
                t => return Err(CodecError::InvalidEnum(t)),
            };
            congested.push((i, c));
        }
        let upstream = Watts::read(buf)?;
        let welfare = i128::from_be_bytes(<[u8; 16]>::read(buf)?);
        let bids = u32::read(buf)?;
        let n = read_len(buf, EXCLUDED_MAX)?;
        let excluded = (0..n).map(|_| u32::read(buf)).collect::<Result<_, _>>()?;
        Ok(Self {
            height,
            mode,
            start_ms,
            interval_ms,
            price_floor,
            price_cap,
            import_price,
            export_price,
            prices,
            flows,
            shed,
            spilled,
            congested,
            upstream,
            welfare,
            bids,
            excluded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::BOOK_BUCKETS;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn book_indices_and_buckets_round_trip_and_keep_their_order() {
        let mut index = BookIndex::default();
        index.insert(3);
        index.insert(BOOK_BUCKETS - 1);
        index.bids = 5;
        assert_eq!(index.iter().collect::<Vec<_>>(), vec![3, BOOK_BUCKETS - 1]);
        index.remove(3);
        assert_eq!(BookIndex::decode(index.encode()).unwrap(), index);
        let record = |site: &str| BidRecord {
            site: SiteId::new(site).unwrap(),
            index: 1,
            bidder: AccountId([7; 32]),
            curve: CurveSpec::Points(vec![(Price(0), Watts(1))]),
        };
        let mut bucket = BidBucket::default();
        assert!(bucket.put(record("b")));
        assert!(bucket.put(record("a")));
        assert!(!bucket.put(record("a")), "a replacement");
        assert_eq!(BidBucket::decode(bucket.encode()).unwrap(), bucket);
        assert_eq!(bucket.encode().len(), bucket.encode_size());
        assert!(bucket.remove(&SiteId::new("a").unwrap()).is_some());
        assert!(bucket.get(&SiteId::new("a").unwrap()).is_none());
        // Out of order: refused.
        let unsorted = BidBucket {
            bids: vec![record("b"), record("a")],
        };
        assert!(BidBucket::decode(unsorted.encode()).is_err());
    }

    #[test]
    fn the_clock_maps_both_ways() {
        let c = MarketClock {
            genesis_time_ms: 1_000,
            speed: 3_600,
        };
        assert_eq!(c.market_time(1_000), 1_000);
        assert_eq!(c.market_time(1_250), 1_000 + 250 * 3_600);
        assert_eq!(c.block_time_of(1_000 + 900_000), 1_250);
        assert_eq!(c.block_time_of(1_000 + 900_001), 1_251);
        assert!(c.market_time(c.block_time_of(5_000_000)) >= 5_000_000);
        assert_eq!(MarketClock::REAL_TIME.market_time(77), 77);
    }

    #[test]
    fn schedules_find_the_configuration_and_mode_of_an_interval() {
        let a = MarketConfig::DEFAULT;
        let b = MarketConfig {
            interval_ms: 5 * 60 * 1000,
            ..a
        };
        let s = Schedule {
            next_clear: Interval(3),
            configs: vec![
                ConfigSegment {
                    from: Interval(0),
                    start_ms: 0,
                    config: a,
                },
                ConfigSegment {
                    from: Interval(10),
                    start_ms: 10 * 900_000,
                    config: b,
                },
            ],
            modes: vec![(Interval(5), GridMode::Islanded)],
            limits: vec![],
            prune_next: Interval(0),
            prune_cursor: 0,
            bids_through: Some(Interval(9)),
            next_settle: Interval(2),
            settle_at_ms: Some(3 * 900_000),
        };
        assert_eq!(s.start_ms(Interval(4)), 4 * 900_000);
        assert_eq!(s.start_ms(Interval(12)), 10 * 900_000 + 2 * 300_000);
        assert_eq!(s.gate_ms(Interval(4)), 4 * 900_000 - 300_000);
        assert_eq!(s.mode_at(Interval(4)), GridMode::Normal);
        assert_eq!(s.mode_at(Interval(5)), GridMode::Islanded);
        assert_eq!(Schedule::decode(s.encode()).unwrap(), s);
        assert_eq!(s.encode().len(), s.encode_size());
    }
}
