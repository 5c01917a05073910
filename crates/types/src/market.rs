//! The market's vocabulary on the chain: feeder, node and site ids, interval numbers, curves in
//! their on-chain form, market configurations, grid modes, and the payloads of the registry and
//! market transactions.
//!
//! Ids are short strings chosen by their registrant: 1 to [`ID_BYTES_MAX`] bytes of printable
//! ASCII, no `/` (ids are path segments of state keys and API routes), not starting with `#`
//! (reserved for the engine's internal nodes) and without leading or trailing spaces. Curves
//! travel either in the point form of the market file or in the component form the market
//! engine uses internally (a base power less steps and ramps with counts), so that a site
//! controller's exact sum of its devices' curves is a valid bid.
//!
//! Decoding is structural: it checks tags, lengths and id characters, and bounds every list by
//! the transaction's size, so `encode(decode(b)) == b`. Whether a curve is monotone or a tree is
//! a tree is the ledger's verdict (a rejected receipt that says why), not a decoding error.

use crate::{
    AccountId, Price, Watts,
    ids::{len_size, read_len, write_len},
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The longest feeder, node or site id, in bytes.
pub const ID_BYTES_MAX: usize = 128;

/// Why a string is not a market id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} id {id:?}: use 1 to 128 printable ASCII characters, no '/', not starting with \
     '#', no leading or trailing space"
)]
pub struct MarketIdError {
    /// `feeder`, `node` or `site`.
    pub kind: &'static str,
    /// The offending id (truncated to 80 characters).
    pub id: String,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= ID_BYTES_MAX
        && s.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'/')
        && !s.starts_with('#')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

macro_rules! market_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps an id.
            pub fn new(s: impl Into<String>) -> Result<Self, MarketIdError> {
                let s = s.into();
                if valid_id(&s) {
                    Ok(Self(s))
                } else {
                    Err(MarketIdError {
                        kind: $kind,
                        id: s.chars().take(80).collect(),
                    })
                }
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = MarketIdError;
            fn from_str(s: &str) -> Result<Self, MarketIdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(de::Error::custom)
            }
        }

        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                // At most 128 bytes: a one-byte length is canonical and bounded.
                (self.0.len() as u8).write(buf);
                buf.put_slice(self.0.as_bytes());
            }
        }

        impl EncodeSize for $name {
            fn encode_size(&self) -> usize {
                1 + self.0.len()
            }
        }

        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                let len = usize::from(u8::read(buf)?);
                if len == 0 || len > ID_BYTES_MAX {
                    return Err(CodecError::InvalidLength(len));
                }
                if buf.remaining() < len {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut bytes = vec![0u8; len];
                buf.copy_to_slice(&mut bytes);
                let s = String::from_utf8(bytes)
                    .map_err(|_| CodecError::Invalid(stringify!($name), "not ASCII"))?;
                Self::new(s).map_err(|_| CodecError::Invalid(stringify!($name), "characters"))
            }
        }
    };
}

market_id!(
    /// A feeder: one market of the chain, with its own nodes, sites, schedule and mode.
    FeederId,
    "feeder"
);
market_id!(
    /// A node of a feeder (a bus, a transformer, a cable joint).
    NodeId,
    "node"
);
market_id!(
    /// A site (a metering point) of a feeder. `upstream` is reserved for the upstream grid.
    SiteId,
    "site"
);

impl SiteId {
    /// The reserved id of the upstream grid's bid in an interval's result.
    pub const UPSTREAM: &'static str = "upstream";
}

/// A market interval of a feeder: interval `K` starts at the feeder's epoch plus `K` interval
/// lengths (see docs/market-chain-rules.md, MC-2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Interval(pub u64);

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Write for Interval {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl Read for Interval {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(u64::read(buf)?))
    }
}

impl FixedSize for Interval {
    const SIZE: usize = 8;
}

/// Writes an optional power: `0x00` absent, `0x01 ‖ W:i64` present.
fn write_opt_watts(v: &Option<Watts>, buf: &mut impl BufMut) {
    match v {
        None => 0u8.write(buf),
        Some(w) => {
            1u8.write(buf);
            w.write(buf);
        }
    }
}

fn opt_watts_size(v: &Option<Watts>) -> usize {
    1 + if v.is_some() { 8 } else { 0 }
}

fn read_opt_watts(buf: &mut impl Buf) -> Result<Option<Watts>, CodecError> {
    match u8::read(buf)? {
        0 => Ok(None),
        1 => Ok(Some(Watts::read(buf)?)),
        t => Err(CodecError::InvalidEnum(t)),
    }
}

/// Reads a list length and checks that the rest of the input can hold that many items of at
/// least `item_min` bytes, before anything is allocated.
fn read_list_len(buf: &mut impl Buf, item_min: usize) -> Result<usize, CodecError> {
    let len = read_len(buf, usize::MAX)?;
    if len.saturating_mul(item_min) > buf.remaining() {
        return Err(CodecError::EndOfBuffer);
    }
    Ok(len)
}

/// A vertical step of a curve in component form: at `price` the power falls by `drop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Price of the step (µ/MWh).
    pub price: Price,
    /// How far the power falls (W, positive).
    pub drop: Watts,
}

/// A linear decline of a curve in component form, `count` identical copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RampSpec {
    /// Where the decline starts (µ/MWh).
    pub start: Price,
    /// Where it ends (µ/MWh, above `start`).
    pub end: Price,
    /// Power lost by one copy from `start` to `end` (W, positive).
    pub drop: Watts,
    /// Number of identical copies (at least 1).
    pub count: u32,
}

/// A price-flexibility curve as a transaction carries it (market rules MR-1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveSpec {
    /// Points `(price, power)` as in the market file: prices non-decreasing, powers
    /// non-increasing.
    Points(Vec<(Price, Watts)>),
    /// The engine's form: `base` (the power below every price) less every step and ramp.
    /// Steps sorted by price, distinct; ramps sorted by `(start, end, drop)`, distinct.
    Components {
        /// Power below every price (W).
        base: Watts,
        /// Steps.
        steps: Vec<StepSpec>,
        /// Ramps.
        ramps: Vec<RampSpec>,
    },
}

impl CurveSpec {
    /// Number of points or components.
    pub fn len(&self) -> usize {
        match self {
            Self::Points(p) => p.len(),
            Self::Components { steps, ramps, .. } => steps.len() + ramps.len(),
        }
    }

    /// Whether the curve has no points or components.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Write for CurveSpec {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Points(points) => {
                0u8.write(buf);
                write_len(points.len(), buf);
                for (p, w) in points {
                    p.write(buf);
                    w.write(buf);
                }
            }
            Self::Components { base, steps, ramps } => {
                1u8.write(buf);
                base.write(buf);
                write_len(steps.len(), buf);
                for s in steps {
                    s.price.write(buf);
                    s.drop.write(buf);
                }
                write_len(ramps.len(), buf);
                for r in ramps {
                    r.start.write(buf);
                    r.end.write(buf);
                    r.drop.write(buf);
                    r.count.write(buf);
                }
            }
        }
    }
}

impl EncodeSize for CurveSpec {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Points(points) => len_size(points.len()) + 16 * points.len(),
            Self::Components { steps, ramps, .. } => {
                8 + len_size(steps.len())
                    + 16 * steps.len()
                    + len_size(ramps.len())
                    + 28 * ramps.len()
            }
        }
    }
}

impl Read for CurveSpec {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => {
                let n = read_list_len(buf, 16)?;
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    points.push((Price::read(buf)?, Watts::read(buf)?));
                }
                Ok(Self::Points(points))
            }
            1 => {
                let base = Watts::read(buf)?;
                let n = read_list_len(buf, 16)?;
                let mut steps = Vec::with_capacity(n);
                for _ in 0..n {
                    steps.push(StepSpec {
                        price: Price::read(buf)?,
                        drop: Watts::read(buf)?,
                    });
                }
                let n = read_list_len(buf, 28)?;
                let mut ramps = Vec::with_capacity(n);
                for _ in 0..n {
                    ramps.push(RampSpec {
                        start: Price::read(buf)?,
                        end: Price::read(buf)?,
                        drop: Watts::read(buf)?,
                        count: u32::read(buf)?,
                    });
                }
                Ok(Self::Components { base, steps, ramps })
            }
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

/// A feeder's operating mode (docs/market-chain-rules.md, MC-4).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GridMode {
    /// Grid-connected: the upstream grid supplies and absorbs at the tariff.
    #[default]
    Normal,
    /// Still connected, but import is capped at the alert import limit.
    Alert,
    /// No upstream exchange: the feeder balances alone.
    Islanded,
}

impl GridMode {
    /// `"normal"`, `"alert"` or `"islanded"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Alert => "alert",
            Self::Islanded => "islanded",
        }
    }
}

impl fmt::Display for GridMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for GridMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Self::Normal),
            "alert" => Ok(Self::Alert),
            "islanded" => Ok(Self::Islanded),
            other => Err(format!(
                "unknown grid mode {other:?}: expected normal, alert or islanded"
            )),
        }
    }
}

impl Write for GridMode {
    fn write(&self, buf: &mut impl BufMut) {
        let tag: u8 = match self {
            Self::Normal => 0,
            Self::Alert => 1,
            Self::Islanded => 2,
        };
        tag.write(buf);
    }
}

impl Read for GridMode {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Normal),
            1 => Ok(Self::Alert),
            2 => Ok(Self::Islanded),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

impl FixedSize for GridMode {
    const SIZE: usize = 1;
}

/// A feeder's market configuration (docs/market-chain-rules.md, MC-2 and MC-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// The nominal interval length `Δ` in ms (at most one hour).
    pub interval_ms: u64,
    /// How long before an interval starts its gate closes, in ms.
    pub gate_lead_ms: u64,
    /// The lowest price (µ/MWh).
    pub price_floor: Price,
    /// The highest price (µ/MWh).
    pub price_cap: Price,
    /// The tariff's import price: what upstream energy costs (µ/MWh).
    pub import_price: Price,
    /// The most the feeder may import in normal mode (W).
    pub import_limit: Watts,
    /// The tariff's export price: what the feeder's surplus earns upstream (µ/MWh).
    pub export_price: Price,
    /// The most the feeder may export (W).
    pub export_limit: Watts,
    /// The most the feeder may import in alert mode (W).
    pub alert_import_limit: Watts,
    /// How many intervals a cleared interval's bids and results stay in the current state
    /// before they are pruned (they stay provable at the heights that held them).
    pub retention_intervals: u32,
    /// The imbalance penalty `π` (µ/MWh, at least 0): a deviation from the schedule costs
    /// this much per MWh more than trading it would have (ST-2.4).
    #[serde(default = "MarketConfig::default_imbalance_penalty")]
    pub imbalance_penalty: Price,
    /// The settlement deadline, after the interval's end (ms of market time): an interval is
    /// settled when every metered site with a result has a reading, or then (ST-2.1).
    #[serde(default = "MarketConfig::default_settlement_delay_ms")]
    pub settlement_delay_ms: u64,
    /// How long after the interval's end a reading is accepted (ms of market time, at least
    /// the settlement delay); one after the settlement is a true-up (ST-3.2).
    #[serde(default = "MarketConfig::default_reading_window_ms")]
    pub reading_window_ms: u64,
    /// `N`: how many earlier days without a flexibility request make a site's baseline
    /// (FX-3.1), 1 to 30.
    #[serde(default = "MarketConfig::default_baseline_days")]
    pub baseline_days: u32,
    /// The length of a baseline "day" in intervals: the same interval `d` days ago is `d` times
    /// this many intervals back (FX-3.1). 0, the default, is a calendar day: 86,400,000 ms
    /// divided by `interval_ms`.
    #[serde(default)]
    pub baseline_day_intervals: u32,
}

impl MarketConfig {
    /// The defaults of a feeder registered without a configuration (docs/market-chain-rules.md).
    pub const DEFAULT: Self = Self {
        interval_ms: 15 * 60 * 1000,
        gate_lead_ms: 5 * 60 * 1000,
        price_floor: Price(-500_000_000),
        price_cap: Price(3_000_000_000),
        import_price: Price(100_000_000),
        import_limit: Watts(1_000_000),
        export_price: Price(30_000_000),
        export_limit: Watts(1_000_000),
        alert_import_limit: Watts(500_000),
        retention_intervals: 7 * 96,
        imbalance_penalty: Price(20_000_000),
        settlement_delay_ms: 3_600_000,
        reading_window_ms: 2 * 24 * 3_600_000,
        baseline_days: 5,
        baseline_day_intervals: 0,
    };

    const fn default_imbalance_penalty() -> Price {
        Self::DEFAULT.imbalance_penalty
    }

    const fn default_settlement_delay_ms() -> u64 {
        Self::DEFAULT.settlement_delay_ms
    }

    const fn default_reading_window_ms() -> u64 {
        Self::DEFAULT.reading_window_ms
    }

    const fn default_baseline_days() -> u32 {
        Self::DEFAULT.baseline_days
    }

    /// FX-3.1: how many intervals back the same interval of the previous day is (at least 1).
    pub const fn day_intervals(&self) -> u64 {
        if self.baseline_day_intervals > 0 {
            return self.baseline_day_intervals as u64;
        }
        match 86_400_000u64.checked_div(self.interval_ms) {
            Some(0) | None => 1,
            Some(d) => d,
        }
    }
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Write for MarketConfig {
    fn write(&self, buf: &mut impl BufMut) {
        self.interval_ms.write(buf);
        self.gate_lead_ms.write(buf);
        self.price_floor.write(buf);
        self.price_cap.write(buf);
        self.import_price.write(buf);
        self.import_limit.write(buf);
        self.export_price.write(buf);
        self.export_limit.write(buf);
        self.alert_import_limit.write(buf);
        self.retention_intervals.write(buf);
        self.imbalance_penalty.write(buf);
        self.settlement_delay_ms.write(buf);
        self.reading_window_ms.write(buf);
        self.baseline_days.write(buf);
        self.baseline_day_intervals.write(buf);
    }
}

impl Read for MarketConfig {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            interval_ms: u64::read(buf)?,
            gate_lead_ms: u64::read(buf)?,
            price_floor: Price::read(buf)?,
            price_cap: Price::read(buf)?,
            import_price: Price::read(buf)?,
            import_limit: Watts::read(buf)?,
            export_price: Price::read(buf)?,
            export_limit: Watts::read(buf)?,
            alert_import_limit: Watts::read(buf)?,
            retention_intervals: u32::read(buf)?,
            imbalance_penalty: Price::read(buf)?,
            settlement_delay_ms: u64::read(buf)?,
            reading_window_ms: u64::read(buf)?,
            baseline_days: u32::read(buf)?,
            baseline_day_intervals: u32::read(buf)?,
        })
    }
}

impl FixedSize for MarketConfig {
    const SIZE: usize = 12 * 8 + 3 * 4;
}

/// A node of a feeder as registered: its parent and the limits of the edge to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's id.
    pub id: NodeId,
    /// The parent's id; absent for the root.
    #[serde(default)]
    pub parent: Option<NodeId>,
    /// Most power from the parent into the node (W); absent: unlimited.
    #[serde(default)]
    pub import_limit: Option<Watts>,
    /// Most power from the node to the parent (W); absent: unlimited.
    #[serde(default)]
    pub export_limit: Option<Watts>,
}

impl Write for NodeSpec {
    fn write(&self, buf: &mut impl BufMut) {
        self.id.write(buf);
        match &self.parent {
            None => 0u8.write(buf),
            Some(p) => {
                1u8.write(buf);
                p.write(buf);
            }
        }
        write_opt_watts(&self.import_limit, buf);
        write_opt_watts(&self.export_limit, buf);
    }
}

impl EncodeSize for NodeSpec {
    fn encode_size(&self) -> usize {
        self.id.encode_size()
            + 1
            + self.parent.as_ref().map_or(0, EncodeSize::encode_size)
            + opt_watts_size(&self.import_limit)
            + opt_watts_size(&self.export_limit)
    }
}

impl Read for NodeSpec {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let id = NodeId::read(buf)?;
        let parent = match u8::read(buf)? {
            0 => None,
            1 => Some(NodeId::read(buf)?),
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            id,
            parent,
            import_limit: read_opt_watts(buf)?,
            export_limit: read_opt_watts(buf)?,
        })
    }
}

/// A site as registered: where it is, who owns it, its priority class and connection limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// The site's id.
    pub site: SiteId,
    /// The node it is connected at.
    pub node: NodeId,
    /// The account that owns it (bids for it, or delegates bidding).
    pub owner: AccountId,
    /// Its priority class, 0 (default, shed first) to 7 (shed last), market rule MR-2.4.
    #[serde(default)]
    pub priority: u8,
    /// The most the site may draw (W); absent: unlimited.
    #[serde(default)]
    pub import_limit: Option<Watts>,
    /// The most the site may feed in (W); absent: unlimited.
    #[serde(default)]
    pub export_limit: Option<Watts>,
}

impl Write for SiteSpec {
    fn write(&self, buf: &mut impl BufMut) {
        self.site.write(buf);
        self.node.write(buf);
        self.owner.write(buf);
        self.priority.write(buf);
        write_opt_watts(&self.import_limit, buf);
        write_opt_watts(&self.export_limit, buf);
    }
}

impl EncodeSize for SiteSpec {
    fn encode_size(&self) -> usize {
        self.site.encode_size()
            + self.node.encode_size()
            + AccountId::SIZE
            + 1
            + opt_watts_size(&self.import_limit)
            + opt_watts_size(&self.export_limit)
    }
}

impl Read for SiteSpec {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            site: SiteId::read(buf)?,
            node: NodeId::read(buf)?,
            owner: AccountId::read(buf)?,
            priority: u8::read(buf)?,
            import_limit: read_opt_watts(buf)?,
            export_limit: read_opt_watts(buf)?,
        })
    }
}

/// One bid of a bid transaction: a curve for one site and one interval, or `None` to
/// withdraw the site's bid for that interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidEntry {
    /// The site.
    pub site: SiteId,
    /// The interval.
    pub interval: Interval,
    /// The curve; `None` withdraws the bid.
    pub curve: Option<CurveSpec>,
}

impl Write for BidEntry {
    fn write(&self, buf: &mut impl BufMut) {
        self.site.write(buf);
        self.interval.write(buf);
        match &self.curve {
            None => 0u8.write(buf),
            Some(c) => {
                1u8.write(buf);
                c.write(buf);
            }
        }
    }
}

impl EncodeSize for BidEntry {
    fn encode_size(&self) -> usize {
        self.site.encode_size() + 8 + 1 + self.curve.as_ref().map_or(0, EncodeSize::encode_size)
    }
}

impl Read for BidEntry {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let site = SiteId::read(buf)?;
        let interval = Interval::read(buf)?;
        let curve = match u8::read(buf)? {
            0 => None,
            1 => Some(CurveSpec::read(buf)?),
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            site,
            interval,
            curve,
        })
    }
}

/// Upstream prices for one interval, posted by the DSO ahead of time (its wholesale
/// purchases): they replace the tariff's prices for that interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPrice {
    /// What importing costs (µ/MWh).
    pub import_price: Price,
    /// What exporting earns (µ/MWh).
    pub export_price: Price,
}

/// Writes a list with a varint length.
pub(crate) fn write_list<T: Write>(items: &[T], buf: &mut impl BufMut) {
    write_len(items.len(), buf);
    for item in items {
        item.write(buf);
    }
}

/// The encoded size of a list with a varint length.
pub(crate) fn list_size<T: EncodeSize>(items: &[T]) -> usize {
    len_size(items.len()) + items.iter().map(EncodeSize::encode_size).sum::<usize>()
}

/// Reads a list with a varint length, each item at least `item_min` bytes long.
pub(crate) fn read_list<T: Read<Cfg = ()>>(
    buf: &mut impl Buf,
    item_min: usize,
) -> Result<Vec<T>, CodecError> {
    let n = read_list_len(buf, item_min)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(T::read(buf)?);
    }
    Ok(out)
}

impl Write for UpstreamPrice {
    fn write(&self, buf: &mut impl BufMut) {
        self.import_price.write(buf);
        self.export_price.write(buf);
    }
}

impl Read for UpstreamPrice {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            import_price: Price::read(buf)?,
            export_price: Price::read(buf)?,
        })
    }
}

impl FixedSize for UpstreamPrice {
    const SIZE: usize = 16;
}

/// Most nodes of one feeder.
pub const FEEDER_NODES_MAX: usize = 16_384;
/// Most sites of one feeder.
pub const FEEDER_SITES_MAX: usize = 65_536;
/// Most sites registered by one transaction.
pub const SITES_PER_TX_MAX: usize = 4_096;
/// Most bids in one bid transaction.
pub const BIDS_PER_TX_MAX: usize = 4_096;
/// Most points or components of one curve on the chain.
pub const CURVE_PARTS_MAX: usize = 256;
/// Most intervals of upstream prices one transaction posts.
pub const UPSTREAM_PRICES_PER_TX_MAX: usize = 1_024;
/// How far ahead of the next interval to clear a bid may be: at most this many intervals.
pub const BID_HORIZON_INTERVALS: u64 = 192;
/// How far ahead of the next interval to clear the DSO may schedule a change or post prices.
pub const SCHEDULE_HORIZON_INTERVALS: u64 = 100_000;

/// Registers a feeder: its nodes (a tree), its market epoch and its first configuration (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeederRegister {
    /// The new feeder's id.
    pub feeder: FeederId,
    /// When interval 0 starts, in market time (ms since the Unix epoch). Absent: the first
    /// multiple of the interval length at or after the registering block's market time.
    #[serde(default)]
    pub epoch_ms: Option<u64>,
    /// The configuration from interval 0 on.
    pub config: MarketConfig,
    /// The nodes, one of them the root.
    pub nodes: Vec<NodeSpec>,
    /// The market account: the central counterparty of every settlement payment (ST-2.5).
    /// Absent: the registering DSO's own account.
    #[serde(default)]
    pub market_account: Option<AccountId>,
    /// The account the upstream exchange is settled against (ST-2.6). Absent: the DSO's.
    #[serde(default)]
    pub upstream_account: Option<AccountId>,
}

fn write_opt_account(v: &Option<AccountId>, buf: &mut impl BufMut) {
    match v {
        None => 0u8.write(buf),
        Some(a) => {
            1u8.write(buf);
            a.write(buf);
        }
    }
}

fn read_opt_account(buf: &mut impl Buf) -> Result<Option<AccountId>, CodecError> {
    match u8::read(buf)? {
        0 => Ok(None),
        1 => Ok(Some(AccountId::read(buf)?)),
        t => Err(CodecError::InvalidEnum(t)),
    }
}

impl Write for FeederRegister {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        match self.epoch_ms {
            None => 0u8.write(buf),
            Some(e) => {
                1u8.write(buf);
                e.write(buf);
            }
        }
        self.config.write(buf);
        write_list(&self.nodes, buf);
        write_opt_account(&self.market_account, buf);
        write_opt_account(&self.upstream_account, buf);
    }
}

impl EncodeSize for FeederRegister {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size()
            + 1
            + if self.epoch_ms.is_some() { 8 } else { 0 }
            + MarketConfig::SIZE
            + list_size(&self.nodes)
            + [self.market_account, self.upstream_account]
                .iter()
                .map(|a| 1 + if a.is_some() { AccountId::SIZE } else { 0 })
                .sum::<usize>()
    }
}

impl Read for FeederRegister {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let feeder = FeederId::read(buf)?;
        let epoch_ms = match u8::read(buf)? {
            0 => None,
            1 => Some(u64::read(buf)?),
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            feeder,
            epoch_ms,
            config: MarketConfig::read(buf)?,
            nodes: read_list(buf, 5)?,
            market_account: read_opt_account(buf)?,
            upstream_account: read_opt_account(buf)?,
        })
    }
}

/// Registers sites of a feeder (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesRegister {
    /// The feeder.
    pub feeder: FeederId,
    /// The new sites.
    pub sites: Vec<SiteSpec>,
}

impl Write for SitesRegister {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        write_list(&self.sites, buf);
    }
}

impl EncodeSize for SitesRegister {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + list_size(&self.sites)
    }
}

impl Read for SitesRegister {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            sites: read_list(buf, 39)?,
        })
    }
}

/// Delegates bidding for a site to an aggregator (the site's owner), replacing any earlier
/// delegation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDelegate {
    /// The feeder.
    pub feeder: FeederId,
    /// The site.
    pub site: SiteId,
    /// The aggregator's account.
    pub aggregator: AccountId,
}

impl Write for SiteDelegate {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
        self.aggregator.write(buf);
    }
}

impl EncodeSize for SiteDelegate {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + self.site.encode_size() + AccountId::SIZE
    }
}

impl Read for SiteDelegate {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            site: SiteId::read(buf)?,
            aggregator: AccountId::read(buf)?,
        })
    }
}

/// Revokes a site's delegation (the site's owner); the aggregator's bids for intervals whose
/// gate is still open are withdrawn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRevoke {
    /// The feeder.
    pub feeder: FeederId,
    /// The site.
    pub site: SiteId,
}

impl Write for SiteRevoke {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
    }
}

impl EncodeSize for SiteRevoke {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + self.site.encode_size()
    }
}

impl Read for SiteRevoke {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            site: SiteId::read(buf)?,
        })
    }
}

/// Changes the limits of the edge above a node from a future interval on (DSO): a planned
/// outage, or a dynamic rating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeLimit {
    /// The feeder.
    pub feeder: FeederId,
    /// The first interval the new limits apply to.
    pub from: Interval,
    /// The node below the edge.
    pub node: NodeId,
    /// The new import limit (W); absent: unlimited.
    #[serde(default)]
    pub import_limit: Option<Watts>,
    /// The new export limit (W); absent: unlimited.
    #[serde(default)]
    pub export_limit: Option<Watts>,
}

impl Write for EdgeLimit {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.from.write(buf);
        self.node.write(buf);
        write_opt_watts(&self.import_limit, buf);
        write_opt_watts(&self.export_limit, buf);
    }
}

impl EncodeSize for EdgeLimit {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size()
            + 8
            + self.node.encode_size()
            + opt_watts_size(&self.import_limit)
            + opt_watts_size(&self.export_limit)
    }
}

impl Read for EdgeLimit {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            from: Interval::read(buf)?,
            node: NodeId::read(buf)?,
            import_limit: read_opt_watts(buf)?,
            export_limit: read_opt_watts(buf)?,
        })
    }
}

/// Replaces a feeder's market configuration from a future interval on (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfigure {
    /// The feeder.
    pub feeder: FeederId,
    /// The first interval the configuration applies to.
    pub from: Interval,
    /// The configuration.
    pub config: MarketConfig,
}

impl Write for MarketConfigure {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.from.write(buf);
        self.config.write(buf);
    }
}

impl EncodeSize for MarketConfigure {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + 8 + MarketConfig::SIZE
    }
}

impl Read for MarketConfigure {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            from: Interval::read(buf)?,
            config: MarketConfig::read(buf)?,
        })
    }
}

/// Sets a feeder's grid mode from a future interval on (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridModeSet {
    /// The feeder.
    pub feeder: FeederId,
    /// The first interval in the new mode.
    pub from: Interval,
    /// The mode.
    pub mode: GridMode,
}

impl Write for GridModeSet {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.from.write(buf);
        self.mode.write(buf);
    }
}

impl EncodeSize for GridModeSet {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + 8 + 1
    }
}

impl Read for GridModeSet {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            from: Interval::read(buf)?,
            mode: GridMode::read(buf)?,
        })
    }
}

/// Posts upstream prices for consecutive intervals from `from` on (DSO): they replace the
/// tariff's prices for those intervals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPrices {
    /// The feeder.
    pub feeder: FeederId,
    /// The interval of the first price.
    pub from: Interval,
    /// One price pair per interval.
    pub prices: Vec<UpstreamPrice>,
}

impl Write for UpstreamPrices {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.from.write(buf);
        write_list(&self.prices, buf);
    }
}

impl EncodeSize for UpstreamPrices {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + 8 + len_size(self.prices.len()) + 16 * self.prices.len()
    }
}

impl Read for UpstreamPrices {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            from: Interval::read(buf)?,
            prices: read_list(buf, 16)?,
        })
    }
}

/// Bids of one or more sites of a feeder: from each site's owner or its delegated aggregator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bids {
    /// The feeder.
    pub feeder: FeederId,
    /// The bids, each for one site and interval.
    pub bids: Vec<BidEntry>,
}

impl Write for Bids {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        write_list(&self.bids, buf);
    }
}

impl EncodeSize for Bids {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + list_size(&self.bids)
    }
}

impl Read for Bids {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            bids: read_list(buf, 11)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Copying, DecodeExt, Encode};

    #[test]
    fn ids_follow_the_rules() {
        for ok in ["f1", "LV1.101 Bus 1", "a:b-c_d.e(f)", &"x".repeat(128)] {
            assert!(SiteId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "#hidden",
            " lead",
            "trail ",
            "tab\t",
            "é",
            &"x".repeat(129),
        ] {
            assert!(SiteId::new(bad).is_err(), "{bad:?}");
        }
        let err = NodeId::new("a/b").unwrap_err().to_string();
        assert!(err.starts_with("invalid node id \"a/b\""), "{err}");
    }

    #[test]
    fn ids_and_curves_round_trip_and_refuse_bad_bytes() {
        let id = FeederId::new("feeder-1").unwrap();
        assert_eq!(FeederId::decode(id.encode()).unwrap(), id);
        assert!(FeederId::decode(Copying(&[1u8, b'/'])).is_err());
        assert!(FeederId::decode(Copying(&[0u8])).is_err());
        let curves = [
            CurveSpec::Points(vec![(Price(0), Watts(5)), (Price(10), Watts(-1))]),
            CurveSpec::Components {
                base: Watts(7),
                steps: vec![StepSpec {
                    price: Price(3),
                    drop: Watts(2),
                }],
                ramps: vec![RampSpec {
                    start: Price(1),
                    end: Price(9),
                    drop: Watts(4),
                    count: 3,
                }],
            },
        ];
        for c in curves {
            let bytes = c.encode();
            assert_eq!(bytes.len(), c.encode_size());
            assert_eq!(CurveSpec::decode(bytes).unwrap(), c);
        }
        // A claimed count larger than the input refuses before allocating.
        assert!(CurveSpec::decode(Copying(&[0u8, 0xff, 0xff, 0x03])).is_err());
    }

    #[test]
    fn specs_round_trip() {
        let node = NodeSpec {
            id: NodeId::new("t1").unwrap(),
            parent: Some(NodeId::new("root").unwrap()),
            import_limit: Some(Watts(400_000)),
            export_limit: None,
        };
        assert_eq!(NodeSpec::decode(node.encode()).unwrap(), node);
        assert_eq!(node.encode().len(), node.encode_size());
        let cfg = MarketConfig::DEFAULT;
        assert_eq!(MarketConfig::decode(cfg.encode()).unwrap(), cfg);
        let entry = BidEntry {
            site: SiteId::new("s").unwrap(),
            interval: Interval(9),
            curve: None,
        };
        assert_eq!(BidEntry::decode(entry.encode()).unwrap(), entry);
        assert_eq!("alert".parse::<GridMode>(), Ok(GridMode::Alert));
    }
}
