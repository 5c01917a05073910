//! The state values of meters and settlement and their canonical encodings (docs/encoding.md,
//! "Settlement state").
//!
//! Per feeder: its meters ([`MeterTable`], by site index) and the owners that may be in debt to
//! its market account ([`Debtors`]). Per interval: what is known about its settlement
//! ([`SettleIndex`]: how many metered sites with a result still have no reading, the deadlines,
//! which buckets hold readings, settlements and adjustments, the roots of head-end batches),
//! the readings bucket by bucket ([`ReadingBucket`]), once settled each site's settlement
//! bucket by bucket ([`SettledBucket`]) and the interval's totals ([`IntervalSettlement`]), and
//! the true-ups and corrections booked in it ([`AdjustBucket`]). Buckets are the book's
//! ([`crate::keys::book_bucket`]), so a site proves its reading and its settlement as it proves
//! its result: with one bucket.
//!
//! Every decoder bounds its lists and refuses unsorted or non-canonical input.

use crate::{
    keys::BOOK_BUCKETS,
    market_state::{len_size, read_len, write_len},
};
use bcte_types::{
    AccountId, Hash, Interval, Price, SiteId, WattHours, Watts, market::FEEDER_SITES_MAX,
    meter::MEMO_BYTES_MAX,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// Most head-end batches one interval records.
pub const BATCHES_PER_INTERVAL_MAX: usize = 64;

/// A set of an interval's buckets: one bit per bucket (bit `b` of byte `b / 8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSet([u8; BOOK_BUCKETS as usize / 8]);

impl Default for BucketSet {
    fn default() -> Self {
        Self([0; BOOK_BUCKETS as usize / 8])
    }
}

impl BucketSet {
    /// Whether bucket `b` is in the set.
    pub fn contains(&self, b: u16) -> bool {
        self.0[usize::from(b / 8)] & (1 << (b % 8)) != 0
    }

    /// Adds bucket `b`.
    pub fn insert(&mut self, b: u16) {
        self.0[usize::from(b / 8)] |= 1 << (b % 8);
    }

    /// Removes bucket `b`.
    pub fn remove(&mut self, b: u16) {
        self.0[usize::from(b / 8)] &= !(1 << (b % 8));
    }

    /// The buckets in the set, increasing.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..BOOK_BUCKETS).filter(|&b| self.contains(b))
    }
}

impl Write for BucketSet {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl Read for BucketSet {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(<[u8; BOOK_BUCKETS as usize / 8]>::read(buf)?))
    }
}

impl FixedSize for BucketSet {
    const SIZE: usize = BOOK_BUCKETS as usize / 8;
}

/// A site's meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterEntry {
    /// The site's index in the feeder's site table.
    pub site: u32,
    /// The meter's account (its public key).
    pub meter: AccountId,
    /// The first interval its site is counted as metered for (ST-2.1): the feeder's next
    /// interval to clear when it was first registered; a key swap keeps it.
    pub since: Interval,
}

/// A feeder's meters, sorted by site index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterTable {
    /// The meters.
    pub meters: Vec<MeterEntry>,
}

impl MeterTable {
    /// The meter of site `index`.
    pub fn get(&self, index: u32) -> Option<&MeterEntry> {
        self.meters
            .binary_search_by(|m| m.site.cmp(&index))
            .ok()
            .map(|i| &self.meters[i])
    }

    /// Sets the meter of `entry.site`.
    pub fn put(&mut self, entry: MeterEntry) {
        match self.meters.binary_search_by(|m| m.site.cmp(&entry.site)) {
            Ok(i) => self.meters[i] = entry,
            Err(i) => self.meters.insert(i, entry),
        }
    }

    /// Whether site `index` counts as metered for interval `k`.
    pub fn meters_for(&self, index: u32, k: Interval) -> bool {
        self.get(index).is_some_and(|m| m.since <= k)
    }
}

impl Write for MeterTable {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.meters.len(), buf);
        for m in &self.meters {
            m.site.write(buf);
            m.meter.write(buf);
            m.since.write(buf);
        }
    }
}

impl EncodeSize for MeterTable {
    fn encode_size(&self) -> usize {
        len_size(self.meters.len()) + self.meters.len() * 44
    }
}

impl Read for MeterTable {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        if n.saturating_mul(44) > buf.remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        let mut meters = Vec::with_capacity(n);
        for _ in 0..n {
            meters.push(MeterEntry {
                site: u32::read(buf)?,
                meter: AccountId::read(buf)?,
                since: Interval::read(buf)?,
            });
        }
        if meters.windows(2).any(|w| w[0].site >= w[1].site) {
            return Err(CodecError::Invalid("MeterTable", "meters not sorted"));
        }
        Ok(Self { meters })
    }
}

/// Where a reading came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadingSource {
    /// A transaction signed by the site's meter.
    Meter,
    /// A head-end batch: the index of its root in the interval's [`SettleIndex::batches`].
    Batch(u8),
}

/// A site's reading of an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadingRecord {
    /// The site.
    pub site: SiteId,
    /// Its energy (Wh; positive consumed).
    pub wh: WattHours,
    /// Where it came from.
    pub source: ReadingSource,
    /// Whether it came after the interval was settled (a true-up, ST-3.2).
    pub late: bool,
}

/// The readings of one bucket's sites for an interval, sorted by site id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadingBucket {
    /// The readings.
    pub readings: Vec<ReadingRecord>,
}

impl ReadingBucket {
    /// The reading of `site`.
    pub fn get(&self, site: &SiteId) -> Option<&ReadingRecord> {
        self.readings
            .binary_search_by(|r| r.site.cmp(site))
            .ok()
            .map(|i| &self.readings[i])
    }

    /// Adds a reading of a site that has none; `false` (and nothing changes) if it has one.
    pub fn insert(&mut self, record: ReadingRecord) -> bool {
        match self.readings.binary_search_by(|r| r.site.cmp(&record.site)) {
            Ok(_) => false,
            Err(i) => {
                self.readings.insert(i, record);
                true
            }
        }
    }
}

impl Write for ReadingBucket {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.readings.len(), buf);
        for r in &self.readings {
            r.site.write(buf);
            r.wh.write(buf);
            let (tag, batch) = match r.source {
                ReadingSource::Meter => (0u8, 0u8),
                ReadingSource::Batch(i) => (1, i),
            };
            (tag | if r.late { 2 } else { 0 }).write(buf);
            if tag == 1 {
                batch.write(buf);
            }
        }
    }
}

impl EncodeSize for ReadingBucket {
    fn encode_size(&self) -> usize {
        len_size(self.readings.len())
            + self
                .readings
                .iter()
                .map(|r| {
                    r.site.encode_size()
                        + 9
                        + usize::from(matches!(r.source, ReadingSource::Batch(_)))
                })
                .sum::<usize>()
    }
}

impl Read for ReadingBucket {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        let mut readings = Vec::with_capacity(n.min(1_024));
        for _ in 0..n {
            let site = SiteId::read(buf)?;
            let wh = WattHours::read(buf)?;
            let flags = u8::read(buf)?;
            let source = match flags & 1 {
                0 => ReadingSource::Meter,
                _ => ReadingSource::Batch(u8::read(buf)?),
            };
            if flags > 3 {
                return Err(CodecError::InvalidEnum(flags));
            }
            readings.push(ReadingRecord {
                site,
                wh,
                source,
                late: flags & 2 != 0,
            });
        }
        if readings.windows(2).any(|w| w[0].site >= w[1].site) {
            return Err(CodecError::Invalid("ReadingBucket", "readings not sorted"));
        }
        Ok(Self { readings })
    }
}

/// What is known about an interval's settlement, from its clearing on (ST-2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleIndex {
    /// Metered sites with a result that have no reading yet (ST-2.1).
    pub missing: u32,
    /// When the interval ends, market time: readings are accepted from then (ST-1.4).
    pub end_ms: u64,
    /// The settlement deadline, market time (ST-2.1).
    pub deadline_ms: u64,
    /// The last market time a reading is accepted (ST-1.4).
    pub readings_until_ms: u64,
    /// The imbalance penalty it settles with (µ/MWh).
    pub imbalance_penalty: Price,
    /// Buckets holding readings.
    pub readings: BucketSet,
    /// Buckets holding settlements.
    pub settled: BucketSet,
    /// Buckets holding adjustments booked in this interval.
    pub adjustments: BucketSet,
    /// The roots of the head-end batches with readings of it, in order.
    pub batches: Vec<Hash>,
}

impl Write for SettleIndex {
    fn write(&self, buf: &mut impl BufMut) {
        self.missing.write(buf);
        self.end_ms.write(buf);
        self.deadline_ms.write(buf);
        self.readings_until_ms.write(buf);
        self.imbalance_penalty.write(buf);
        self.readings.write(buf);
        self.settled.write(buf);
        self.adjustments.write(buf);
        write_len(self.batches.len(), buf);
        for h in &self.batches {
            h.write(buf);
        }
    }
}

impl EncodeSize for SettleIndex {
    fn encode_size(&self) -> usize {
        4 + 32 + 3 * BucketSet::SIZE + len_size(self.batches.len()) + 32 * self.batches.len()
    }
}

impl Read for SettleIndex {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let missing = u32::read(buf)?;
        let end_ms = u64::read(buf)?;
        let deadline_ms = u64::read(buf)?;
        let readings_until_ms = u64::read(buf)?;
        let imbalance_penalty = Price::read(buf)?;
        let readings = BucketSet::read(buf)?;
        let settled = BucketSet::read(buf)?;
        let adjustments = BucketSet::read(buf)?;
        let n = read_len(buf, BATCHES_PER_INTERVAL_MAX)?;
        let batches = (0..n)
            .map(|_| Hash::read(buf))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            missing,
            end_ms,
            deadline_ms,
            readings_until_ms,
            imbalance_penalty,
            readings,
            settled,
            adjustments,
            batches,
        })
    }
}

/// One site's settlement of an interval (ST-2.2 to ST-2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteSettlement {
    /// Its served power `a` (W).
    pub served: Watts,
    /// Its node's price `p` (µ/MWh).
    pub price: Price,
    /// Its scheduled energy `e` (Wh).
    pub scheduled_wh: i64,
    /// Its metered energy `m` (Wh); `None`: estimated on the schedule (ST-3.1).
    pub metered_wh: Option<i64>,
    /// Its deviation `d = m − e` (Wh), 0 when estimated.
    pub deviation_wh: i64,
    /// Its energy charge (base units; positive: the owner pays).
    pub energy_charge: i64,
    /// Its imbalance charge (base units; positive: the owner pays).
    pub imbalance_charge: i64,
}

impl SiteSettlement {
    /// What the owner pays for the site (negative: is paid).
    pub fn total(&self) -> i64 {
        self.energy_charge + self.imbalance_charge
    }

    /// Whether it was settled on its schedule for want of a reading.
    pub fn estimated(&self) -> bool {
        self.metered_wh.is_none()
    }
}

/// The settlements of one bucket's sites for an interval, sorted by site id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettledBucket {
    /// The settlements.
    pub sites: Vec<(SiteId, SiteSettlement)>,
}

impl SettledBucket {
    /// The settlement of `site`.
    pub fn get(&self, site: &SiteId) -> Option<&SiteSettlement> {
        self.sites
            .binary_search_by(|(s, _)| s.cmp(site))
            .ok()
            .map(|i| &self.sites[i].1)
    }
}

impl Write for SettledBucket {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.sites.len(), buf);
        for (site, s) in &self.sites {
            site.write(buf);
            s.served.write(buf);
            s.price.write(buf);
            s.scheduled_wh.write(buf);
            match s.metered_wh {
                None => 0u8.write(buf),
                Some(m) => {
                    1u8.write(buf);
                    m.write(buf);
                }
            }
            s.deviation_wh.write(buf);
            s.energy_charge.write(buf);
            s.imbalance_charge.write(buf);
        }
    }
}

impl EncodeSize for SettledBucket {
    fn encode_size(&self) -> usize {
        len_size(self.sites.len())
            + self
                .sites
                .iter()
                .map(|(site, s)| {
                    site.encode_size() + 49 + if s.metered_wh.is_some() { 8 } else { 0 }
                })
                .sum::<usize>()
    }
}

impl Read for SettledBucket {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        let mut sites = Vec::with_capacity(n.min(1_024));
        for _ in 0..n {
            let site = SiteId::read(buf)?;
            let served = Watts::read(buf)?;
            let price = Price::read(buf)?;
            let scheduled_wh = i64::read(buf)?;
            let metered_wh = match u8::read(buf)? {
                0 => None,
                1 => Some(i64::read(buf)?),
                t => return Err(CodecError::InvalidEnum(t)),
            };
            sites.push((
                site,
                SiteSettlement {
                    served,
                    price,
                    scheduled_wh,
                    metered_wh,
                    deviation_wh: i64::read(buf)?,
                    energy_charge: i64::read(buf)?,
                    imbalance_charge: i64::read(buf)?,
                },
            ));
        }
        if sites.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(CodecError::Invalid("SettledBucket", "sites not sorted"));
        }
        Ok(Self { sites })
    }
}

/// An interval's settlement totals (ST-2.7): what the market account took in and paid out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalSettlement {
    /// The block that settled it.
    pub height: u64,
    /// Sites settled.
    pub sites: u32,
    /// Of them, settled on their schedule for want of a reading.
    pub estimated: u32,
    /// The sum of the sites' energy charges (base units).
    pub energy_charges: i64,
    /// The sum of the sites' imbalance charges (base units).
    pub imbalance_charges: i64,
    /// The upstream exchange's energy (Wh; positive: the feeder exported).
    pub upstream_wh: i64,
    /// What the upstream account pays the market account (negative: is paid), ST-2.6.
    pub upstream_charge: i64,
    /// The congestion rent, `Σ flow × (p_child − p_parent) × Δ`, rounded (base units).
    pub congestion_rent: i64,
    /// The rounding residue: energy charges plus the upstream charge less the rent.
    pub residue: i64,
    /// The contract differences settled in the interval (CT-2), by contract id.
    pub contracts: Vec<crate::contract::ContractFlow>,
    /// The flexibility delivered and paid in the interval (FX-3), by request and offer.
    pub flexibility: Vec<crate::flex::FlexFlow>,
    /// The EV charging contracts whose deadline the interval is (CT-4.2), by id.
    pub ev: Vec<crate::ev::EvFlow>,
}

impl IntervalSettlement {
    /// What the market account paid for flexibility in the interval (base units).
    pub fn flexibility_paid(&self) -> i64 {
        self.flexibility.iter().map(|f| f.amount).sum()
    }
}

impl Write for IntervalSettlement {
    fn write(&self, buf: &mut impl BufMut) {
        self.height.write(buf);
        self.sites.write(buf);
        self.estimated.write(buf);
        self.energy_charges.write(buf);
        self.imbalance_charges.write(buf);
        self.upstream_wh.write(buf);
        self.upstream_charge.write(buf);
        self.congestion_rent.write(buf);
        self.residue.write(buf);
        crate::market_state::write_len(self.contracts.len(), buf);
        for c in &self.contracts {
            c.write(buf);
        }
        crate::market_state::write_len(self.flexibility.len(), buf);
        for x in &self.flexibility {
            x.write(buf);
        }
        crate::market_state::write_len(self.ev.len(), buf);
        for x in &self.ev {
            x.write(buf);
        }
    }
}

impl Read for IntervalSettlement {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            height: u64::read(buf)?,
            sites: u32::read(buf)?,
            estimated: u32::read(buf)?,
            energy_charges: i64::read(buf)?,
            imbalance_charges: i64::read(buf)?,
            upstream_wh: i64::read(buf)?,
            upstream_charge: i64::read(buf)?,
            congestion_rent: i64::read(buf)?,
            residue: i64::read(buf)?,
            contracts: {
                let n =
                    crate::market_state::read_len(buf, crate::contract::CONTRACTS_PER_FEEDER_MAX)?;
                let mut v = Vec::with_capacity(n.min(256));
                for _ in 0..n {
                    v.push(crate::contract::ContractFlow::read(buf)?);
                }
                v
            },
            flexibility: {
                let n = crate::market_state::read_len(
                    buf,
                    crate::flex::FLEX_REQUESTS_PER_FEEDER_MAX * crate::flex::FLEX_OFFERS_MAX,
                )?;
                let mut v = Vec::with_capacity(n.min(256));
                for _ in 0..n {
                    v.push(crate::flex::FlexFlow::read(buf)?);
                }
                v
            },
            ev: {
                let n = crate::market_state::read_len(buf, crate::ev::EV_CONTRACTS_PER_FEEDER_MAX)?;
                let mut v = Vec::with_capacity(n.min(256));
                for _ in 0..n {
                    v.push(crate::ev::EvFlow::read(buf)?);
                }
                v
            },
        })
    }
}

impl EncodeSize for IntervalSettlement {
    fn encode_size(&self) -> usize {
        8 + 4
            + 4
            + 6 * 8
            + crate::market_state::len_size(self.contracts.len())
            + self
                .contracts
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
            + crate::market_state::len_size(self.flexibility.len())
            + self
                .flexibility
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
            + crate::market_state::len_size(self.ev.len())
            + self.ev.iter().map(EncodeSize::encode_size).sum::<usize>()
    }
}

/// What an adjustment is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdjustKind {
    /// A reading that came after its interval was settled on an estimate (ST-3.2).
    TrueUp {
        /// The reading (Wh).
        metered_wh: i64,
        /// Its deviation from the schedule (Wh).
        deviation_wh: i64,
    },
    /// The DSO's correction (ST-3.3).
    Correction {
        /// Why.
        memo: String,
    },
}

/// A true-up or correction, booked in the interval it was posted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    /// The site.
    pub site: SiteId,
    /// The settled interval it concerns.
    pub of: Interval,
    /// Base units paid by the owner (negative: paid to it).
    pub amount: i64,
    /// What it is.
    pub kind: AdjustKind,
}

/// The adjustments booked in an interval for one bucket's sites, in the order they came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdjustBucket {
    /// The adjustments.
    pub items: Vec<Adjustment>,
}

/// Most adjustments booked for one bucket in one interval.
pub const ADJUSTMENTS_PER_BUCKET_MAX: usize = 65_536;

impl Write for AdjustBucket {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.items.len(), buf);
        for a in &self.items {
            a.site.write(buf);
            a.of.write(buf);
            a.amount.write(buf);
            match &a.kind {
                AdjustKind::TrueUp {
                    metered_wh,
                    deviation_wh,
                } => {
                    0u8.write(buf);
                    metered_wh.write(buf);
                    deviation_wh.write(buf);
                }
                AdjustKind::Correction { memo } => {
                    1u8.write(buf);
                    write_len(memo.len(), buf);
                    buf.put_slice(memo.as_bytes());
                }
            }
        }
    }
}

impl EncodeSize for AdjustBucket {
    fn encode_size(&self) -> usize {
        len_size(self.items.len())
            + self
                .items
                .iter()
                .map(|a| {
                    a.site.encode_size()
                        + 17
                        + match &a.kind {
                            AdjustKind::TrueUp { .. } => 16,
                            AdjustKind::Correction { memo } => len_size(memo.len()) + memo.len(),
                        }
                })
                .sum::<usize>()
    }
}

impl Read for AdjustBucket {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, ADJUSTMENTS_PER_BUCKET_MAX)?;
        let mut items = Vec::with_capacity(n.min(1_024));
        for _ in 0..n {
            let site = SiteId::read(buf)?;
            let of = Interval::read(buf)?;
            let amount = i64::read(buf)?;
            let kind = match u8::read(buf)? {
                0 => AdjustKind::TrueUp {
                    metered_wh: i64::read(buf)?,
                    deviation_wh: i64::read(buf)?,
                },
                1 => {
                    let len = read_len(buf, MEMO_BYTES_MAX)?;
                    if buf.remaining() < len {
                        return Err(CodecError::EndOfBuffer);
                    }
                    let mut bytes = vec![0u8; len];
                    buf.copy_to_slice(&mut bytes);
                    AdjustKind::Correction {
                        memo: String::from_utf8(bytes)
                            .map_err(|_| CodecError::Invalid("AdjustBucket", "memo not UTF-8"))?,
                    }
                }
                t => return Err(CodecError::InvalidEnum(t)),
            };
            items.push(Adjustment {
                site,
                of,
                amount,
                kind,
            });
        }
        Ok(Self { items })
    }
}

/// The owners that may owe a feeder's market account (ST-5.4): a superset of those that do,
/// kept by settlement; sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Debtors {
    /// The owners.
    pub owners: Vec<AccountId>,
}

impl Debtors {
    /// Whether `owner` is listed.
    pub fn contains(&self, owner: &AccountId) -> bool {
        self.owners.binary_search(owner).is_ok()
    }

    /// Lists or unlists `owner`.
    pub fn set(&mut self, owner: AccountId, listed: bool) {
        match (self.owners.binary_search(&owner), listed) {
            (Err(i), true) => self.owners.insert(i, owner),
            (Ok(i), false) => {
                self.owners.remove(i);
            }
            _ => {}
        }
    }

    /// Whether nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

impl Write for Debtors {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.owners.len(), buf);
        for a in &self.owners {
            a.write(buf);
        }
    }
}

impl EncodeSize for Debtors {
    fn encode_size(&self) -> usize {
        len_size(self.owners.len()) + 32 * self.owners.len()
    }
}

impl Read for Debtors {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, FEEDER_SITES_MAX)?;
        if n.saturating_mul(32) > buf.remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        let owners = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<Vec<_>, _>>()?;
        if owners.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CodecError::Invalid("Debtors", "owners not sorted"));
        }
        Ok(Self { owners })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    fn site(s: &str) -> SiteId {
        SiteId::new(s).unwrap()
    }

    #[test]
    fn settlement_values_round_trip_and_refuse_disorder() {
        let mut readings = ReadingBucket::default();
        assert!(readings.insert(ReadingRecord {
            site: site("b"),
            wh: WattHours(-5),
            source: ReadingSource::Batch(3),
            late: true,
        }));
        assert!(readings.insert(ReadingRecord {
            site: site("a"),
            wh: WattHours(7),
            source: ReadingSource::Meter,
            late: false,
        }));
        assert!(!readings.insert(ReadingRecord {
            site: site("a"),
            wh: WattHours(8),
            source: ReadingSource::Meter,
            late: false,
        }));
        assert_eq!(ReadingBucket::decode(readings.encode()).unwrap(), readings);
        assert_eq!(readings.encode().len(), readings.encode_size());

        let s = SiteSettlement {
            served: Watts(1_000),
            price: Price(80_000_000),
            scheduled_wh: 250,
            metered_wh: Some(260),
            deviation_wh: 10,
            energy_charge: 20_000,
            imbalance_charge: 1_000,
        };
        let bucket = SettledBucket {
            sites: vec![
                (site("a"), s),
                (
                    site("b"),
                    SiteSettlement {
                        metered_wh: None,
                        ..s
                    },
                ),
            ],
        };
        assert_eq!(SettledBucket::decode(bucket.encode()).unwrap(), bucket);
        assert_eq!(bucket.encode().len(), bucket.encode_size());
        let unsorted = SettledBucket {
            sites: bucket.sites.iter().rev().cloned().collect(),
        };
        assert!(SettledBucket::decode(unsorted.encode()).is_err());

        let mut index = SettleIndex {
            missing: 3,
            end_ms: 10,
            deadline_ms: 20,
            readings_until_ms: 30,
            imbalance_penalty: Price(5),
            batches: vec![Hash::from([1; 32])],
            ..Default::default()
        };
        index.readings.insert(255);
        index.settled.insert(0);
        assert_eq!(SettleIndex::decode(index.encode()).unwrap(), index);
        assert_eq!(index.encode().len(), index.encode_size());

        let adjust = AdjustBucket {
            items: vec![
                Adjustment {
                    site: site("a"),
                    of: Interval(4),
                    amount: -3,
                    kind: AdjustKind::TrueUp {
                        metered_wh: 1,
                        deviation_wh: -2,
                    },
                },
                Adjustment {
                    site: site("a"),
                    of: Interval(4),
                    amount: 9,
                    kind: AdjustKind::Correction {
                        memo: "meter swap".into(),
                    },
                },
            ],
        };
        assert_eq!(AdjustBucket::decode(adjust.encode()).unwrap(), adjust);
        assert_eq!(adjust.encode().len(), adjust.encode_size());

        let mut meters = MeterTable::default();
        meters.put(MeterEntry {
            site: 9,
            meter: AccountId([1; 32]),
            since: Interval(2),
        });
        meters.put(MeterEntry {
            site: 1,
            meter: AccountId([2; 32]),
            since: Interval(0),
        });
        assert!(meters.meters_for(9, Interval(2)) && !meters.meters_for(9, Interval(1)));
        assert_eq!(MeterTable::decode(meters.encode()).unwrap(), meters);

        let mut debtors = Debtors::default();
        debtors.set(AccountId([3; 32]), true);
        debtors.set(AccountId([1; 32]), true);
        debtors.set(AccountId([3; 32]), false);
        assert_eq!(debtors.owners, vec![AccountId([1; 32])]);
        assert_eq!(Debtors::decode(debtors.encode()).unwrap(), debtors);
    }
}
