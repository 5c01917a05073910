//! Meters and settlement on the chain: the payloads of meter registration, readings (one by a
//! meter, many by a head-end system) and the DSO's settlement corrections.
//!
//! A meter is an ed25519 key of its own; its account (the key) signs its single readings as
//! ordinary transactions. A head-end system (the DSO's meter data collector) carries many
//! sites' readings of one interval in one transaction, with the Merkle root of the raw,
//! meter-signed readings behind them (docs/settlement-rules.md, ST-1). Energies are
//! [`WattHours`]: positive when the site consumed, negative when it fed in.

use crate::{
    AccountId, Hash, WattHours,
    ids::{len_size, read_len, write_len},
    market::{FeederId, Interval, SiteId, list_size, read_list, write_list},
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use serde::{Deserialize, Serialize};

/// Most readings one head-end transaction carries: one interval of a feeder of 20,000 sites.
pub const READINGS_PER_TX_MAX: usize = 20_000;

/// The longest memo of a settlement correction, in bytes.
pub const MEMO_BYTES_MAX: usize = 256;

/// Registers a site's meter, or replaces its key (a meter swap): earlier readings stay (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterRegister {
    /// The feeder.
    pub feeder: FeederId,
    /// The site.
    pub site: SiteId,
    /// The meter's account (its public key), which signs its readings.
    pub meter: AccountId,
}

impl Write for MeterRegister {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
        self.meter.write(buf);
    }
}

impl EncodeSize for MeterRegister {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + self.site.encode_size() + AccountId::SIZE
    }
}

impl Read for MeterRegister {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            site: SiteId::read(buf)?,
            meter: AccountId::read(buf)?,
        })
    }
}

/// Allows a head-end system to submit readings for a feeder's sites, or withdraws it (DSO).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadEndSet {
    /// The feeder.
    pub feeder: FeederId,
    /// The head-end system's account.
    pub account: AccountId,
    /// Allowed (`true`) or withdrawn.
    pub allowed: bool,
}

impl Write for HeadEndSet {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.account.write(buf);
        self.allowed.write(buf);
    }
}

impl EncodeSize for HeadEndSet {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + AccountId::SIZE + 1
    }
}

impl Read for HeadEndSet {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            account: AccountId::read(buf)?,
            allowed: bool::read(buf)?,
        })
    }
}

/// One interval's reading of a site, signed by the site's meter (the transaction's sender).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// The feeder.
    pub feeder: FeederId,
    /// The site.
    pub site: SiteId,
    /// The interval.
    pub interval: Interval,
    /// The energy over the interval (Wh; positive consumed, negative fed in).
    pub wh: WattHours,
}

impl Write for Reading {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
        self.interval.write(buf);
        self.wh.write(buf);
    }
}

impl EncodeSize for Reading {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + self.site.encode_size() + 16
    }
}

impl Read for Reading {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            site: SiteId::read(buf)?,
            interval: Interval::read(buf)?,
            wh: WattHours::read(buf)?,
        })
    }
}

/// One site's energy in a head-end batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEnergy {
    /// The site.
    pub site: SiteId,
    /// Its energy over the interval (Wh).
    pub wh: WattHours,
}

impl Write for SiteEnergy {
    fn write(&self, buf: &mut impl BufMut) {
        self.site.write(buf);
        self.wh.write(buf);
    }
}

impl EncodeSize for SiteEnergy {
    fn encode_size(&self) -> usize {
        self.site.encode_size() + 8
    }
}

impl Read for SiteEnergy {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            site: SiteId::read(buf)?,
            wh: WattHours::read(buf)?,
        })
    }
}

/// Many sites' readings of one interval from a registered head-end system: the energies
/// settlement needs, and the Merkle root of the raw meter-signed readings they come from
/// (stored off-chain, each provable against the root: ST-1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterBatch {
    /// The feeder.
    pub feeder: FeederId,
    /// The interval.
    pub interval: Interval,
    /// The Merkle root of the raw batch (hex in JSON).
    #[serde(with = "hash_hex")]
    pub root: Hash,
    /// The sites' energies.
    pub readings: Vec<SiteEnergy>,
}

impl Write for MeterBatch {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.interval.write(buf);
        self.root.write(buf);
        write_list(&self.readings, buf);
    }
}

impl EncodeSize for MeterBatch {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + 8 + Hash::SIZE + list_size(&self.readings)
    }
}

impl Read for MeterBatch {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            interval: Interval::read(buf)?,
            root: Hash::read(buf)?,
            readings: read_list(buf, 10)?,
        })
    }
}

/// A documented correction of a site's settlement by the DSO, itself on the record (ST-4.3):
/// `amount` base units paid by the site's owner to the market account (negative: paid to the
/// owner), booked in the interval whose market time the block falls in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementAdjust {
    /// The feeder.
    pub feeder: FeederId,
    /// The site.
    pub site: SiteId,
    /// The settled interval it corrects.
    pub interval: Interval,
    /// Base units; positive: the owner pays, negative: the owner is paid.
    pub amount: i64,
    /// Why (at most [`MEMO_BYTES_MAX`] bytes of UTF-8).
    pub memo: String,
}

impl Write for SettlementAdjust {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
        self.interval.write(buf);
        self.amount.write(buf);
        write_len(self.memo.len(), buf);
        buf.put_slice(self.memo.as_bytes());
    }
}

impl EncodeSize for SettlementAdjust {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size()
            + self.site.encode_size()
            + 16
            + len_size(self.memo.len())
            + self.memo.len()
    }
}

impl Read for SettlementAdjust {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let feeder = FeederId::read(buf)?;
        let site = SiteId::read(buf)?;
        let interval = Interval::read(buf)?;
        let amount = i64::read(buf)?;
        let n = read_len(buf, MEMO_BYTES_MAX)?;
        if buf.remaining() < n {
            return Err(CodecError::EndOfBuffer);
        }
        let mut bytes = vec![0u8; n];
        buf.copy_to_slice(&mut bytes);
        let memo = String::from_utf8(bytes)
            .map_err(|_| CodecError::Invalid("SettlementAdjust", "memo is not UTF-8"))?;
        Ok(Self {
            feeder,
            site,
            interval,
            amount,
            memo,
        })
    }
}

/// A [`Hash`] as 64 lowercase hex characters in JSON.
pub mod hash_hex {
    use crate::Hash;
    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    /// Parses hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        crate::ids::parse_hash(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn meter_payloads_round_trip_and_refuse_bad_bytes() {
        let feeder = FeederId::new("f").unwrap();
        let site = SiteId::new("house 1").unwrap();
        let batch = MeterBatch {
            feeder: feeder.clone(),
            interval: Interval(7),
            root: Hash::from([9; 32]),
            readings: vec![SiteEnergy {
                site: site.clone(),
                wh: WattHours(-250),
            }],
        };
        assert_eq!(MeterBatch::decode(batch.encode()).unwrap(), batch);
        assert_eq!(batch.encode().len(), batch.encode_size());
        let adjust = SettlementAdjust {
            feeder,
            site,
            interval: Interval(3),
            amount: -12,
            memo: "meter 17 read twice; refund".into(),
        };
        let bytes = adjust.encode();
        assert_eq!(SettlementAdjust::decode(bytes.clone()).unwrap(), adjust);
        assert!(SettlementAdjust::decode(bytes.slice(..bytes.len() - 1)).is_err());
        let json = serde_json::to_string(&batch).unwrap();
        assert!(json.contains(&"09".repeat(32)), "{json}");
        assert_eq!(serde_json::from_str::<MeterBatch>(&json).unwrap(), batch);
    }
}
