//! DSO flexibility requests (docs/flexibility-rules.md, FX-1 to FX-3): the DSO asks for a load
//! reduction (or increase) at a node or a set of sites over a range of intervals, at a price;
//! site owners and aggregators offer; the DSO accepts offers; delivery is measured against a
//! baseline from the sites' own earlier meter readings and paid at settlement.
//!
//! A request's id is `SHA-256(FLEX_NAMESPACE ‖ chain_id ‖ request)`: the same request posted
//! twice is the same request (post it with another `salt` to ask again). Offers are numbered
//! in the order the chain accepted them, from 0.

use crate::market::{list_size, read_list, write_list};
use crate::{
    ChainId, Hash,
    market::{FeederId, Interval, NodeId, SiteId},
    units::{Price, Watts},
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::{Hasher, Sha256};
use serde::{Deserialize, Serialize};

/// The domain of a request's id.
pub const FLEX_NAMESPACE: &[u8] = b"bcte/flex-request/v1";

/// The most sites a request may name, and the most one offer may hold.
pub const FLEX_SITES_MAX: usize = 1_024;

/// The most offers one acceptance may name.
pub const FLEX_ACCEPT_MAX: usize = 1_024;

/// The longest request, in intervals (a week of 15-minute intervals).
pub const FLEX_INTERVALS_MAX: u64 = 7 * 96;

/// What the DSO asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlexDirection {
    /// Take less from the grid (or feed in more) than the baseline.
    Reduce,
    /// Take more from the grid (or feed in less) than the baseline.
    Increase,
}

impl FlexDirection {
    /// Its name in the CLI and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reduce => "reduce",
            Self::Increase => "increase",
        }
    }
}

impl Write for FlexDirection {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self {
            Self::Reduce => 0,
            Self::Increase => 1,
        });
    }
}

impl FixedSize for FlexDirection {
    const SIZE: usize = 1;
}

impl Read for FlexDirection {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Reduce),
            1 => Ok(Self::Increase),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

/// Where the flexibility is wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FlexTarget {
    /// Every site at this node.
    Node(NodeId),
    /// These sites (1 to [`FLEX_SITES_MAX`], each once, sorted in the encoding).
    Sites(Vec<SiteId>),
}

impl FlexTarget {
    /// Whether `site` at node `node` is targeted.
    pub fn includes(&self, site: &SiteId, node: &NodeId) -> bool {
        match self {
            Self::Node(n) => n == node,
            Self::Sites(s) => s.binary_search(site).is_ok(),
        }
    }
}

impl Write for FlexTarget {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Node(n) => {
                buf.put_u8(0);
                n.write(buf);
            }
            Self::Sites(s) => {
                buf.put_u8(1);
                write_list(s, buf);
            }
        }
    }
}

impl EncodeSize for FlexTarget {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Node(n) => n.encode_size(),
            Self::Sites(s) => list_size(s),
        }
    }
}

impl Read for FlexTarget {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Node(NodeId::read(buf)?)),
            1 => Ok(Self::Sites(read_sites(buf, "FlexTarget")?)),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

/// Reads 1 to [`FLEX_SITES_MAX`] site ids, strictly increasing (so each is there once).
fn read_sites(buf: &mut impl Buf, what: &'static str) -> Result<Vec<SiteId>, CodecError> {
    let sites: Vec<SiteId> = read_list(buf, 2)?;
    if sites.is_empty() || sites.len() > FLEX_SITES_MAX {
        return Err(CodecError::Invalid(what, "not 1 to 1,024 sites"));
    }
    if sites.windows(2).any(|w| w[0] >= w[1]) {
        return Err(CodecError::Invalid(what, "sites not strictly increasing"));
    }
    Ok(sites)
}

/// A flexibility request (FX-1), posted by the DSO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexRequest {
    /// The feeder.
    pub feeder: FeederId,
    /// Less or more load than the baseline.
    pub direction: FlexDirection,
    /// Where.
    pub target: FlexTarget,
    /// The power wanted in every interval (W, positive): what the accepted offers may add up
    /// to.
    pub power: Watts,
    /// The first interval.
    pub from: Interval,
    /// The last interval (inclusive).
    pub to: Interval,
    /// What the DSO pays per MWh delivered (µ-currency per MWh, positive).
    pub price: Price,
    /// Offers are taken while this interval's market gate is open (at most `from`).
    pub gate: Interval,
    /// Any number, so that the same request may be posted again.
    pub salt: u64,
}

impl FlexRequest {
    /// The request's id on chain `chain`.
    pub fn id(&self, chain: &ChainId) -> Hash {
        let mut msg = Vec::with_capacity(chain.encode_size() + self.encode_size());
        chain.write(&mut msg);
        self.write(&mut msg);
        Sha256::hash(&[FLEX_NAMESPACE, &msg])
    }
}

impl Write for FlexRequest {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.direction.write(buf);
        self.target.write(buf);
        self.power.write(buf);
        self.from.write(buf);
        self.to.write(buf);
        self.price.write(buf);
        self.gate.write(buf);
        self.salt.write(buf);
    }
}

impl EncodeSize for FlexRequest {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + 1 + self.target.encode_size() + 6 * 8
    }
}

impl Read for FlexRequest {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            direction: FlexDirection::read(buf)?,
            target: FlexTarget::read(buf)?,
            power: Watts::read(buf)?,
            from: Interval::read(buf)?,
            to: Interval::read(buf)?,
            price: Price::read(buf)?,
            gate: Interval::read(buf)?,
            salt: u64::read(buf)?,
        })
    }
}

/// An offer to a request (FX-2.1): a site's owner for its site, or an aggregator for sites
/// delegated to it, offers `power` from these sites together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexOffer {
    /// The feeder.
    pub feeder: FeederId,
    /// The request.
    #[serde(with = "crate::meter::hash_hex")]
    pub request: Hash,
    /// The sites (1 to [`FLEX_SITES_MAX`], sorted, each once).
    pub sites: Vec<SiteId>,
    /// The power offered in every interval of the request (W, positive).
    pub power: Watts,
}

impl Write for FlexOffer {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.request.write(buf);
        write_list(&self.sites, buf);
        self.power.write(buf);
    }
}

impl EncodeSize for FlexOffer {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + Hash::SIZE + list_size(&self.sites) + 8
    }
}

impl Read for FlexOffer {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            request: Hash::read(buf)?,
            sites: read_sites(buf, "FlexOffer")?,
            power: Watts::read(buf)?,
        })
    }
}

/// The DSO accepts offers to a request (FX-2.2), by number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexAccept {
    /// The feeder.
    pub feeder: FeederId,
    /// The request.
    #[serde(with = "crate::meter::hash_hex")]
    pub request: Hash,
    /// The offers' numbers (1 to [`FLEX_ACCEPT_MAX`], strictly increasing).
    pub offers: Vec<u32>,
}

impl Write for FlexAccept {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.request.write(buf);
        write_list(&self.offers, buf);
    }
}

impl EncodeSize for FlexAccept {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + Hash::SIZE + list_size(&self.offers)
    }
}

impl Read for FlexAccept {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let feeder = FeederId::read(buf)?;
        let request = Hash::read(buf)?;
        let offers: Vec<u32> = read_list(buf, 4)?;
        if offers.is_empty() || offers.len() > FLEX_ACCEPT_MAX {
            return Err(CodecError::Invalid("FlexAccept", "not 1 to 1,024 offers"));
        }
        if offers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CodecError::Invalid(
                "FlexAccept",
                "offers not strictly increasing",
            ));
        }
        Ok(Self {
            feeder,
            request,
            offers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    fn request() -> FlexRequest {
        FlexRequest {
            feeder: FeederId::new("f").unwrap(),
            direction: FlexDirection::Reduce,
            target: FlexTarget::Sites(vec![SiteId::new("a").unwrap(), SiteId::new("b").unwrap()]),
            power: Watts(3_000),
            from: Interval(10),
            to: Interval(12),
            price: Price(200_000_000),
            gate: Interval(9),
            salt: 0,
        }
    }

    #[test]
    fn flexibility_payloads_round_trip_and_ids_depend_on_chain_and_salt() {
        let r = request();
        assert_eq!(FlexRequest::decode(r.encode()).unwrap(), r);
        assert_eq!(r.encode().len(), r.encode_size());
        let c = ChainId::new("c").unwrap();
        assert_ne!(r.id(&c), r.id(&ChainId::new("d").unwrap()));
        assert_ne!(
            r.id(&c),
            FlexRequest {
                salt: 1,
                ..r.clone()
            }
            .id(&c)
        );
        let node = FlexRequest {
            target: FlexTarget::Node(NodeId::new("t1").unwrap()),
            ..r.clone()
        };
        assert_eq!(FlexRequest::decode(node.encode()).unwrap(), node);
        let o = FlexOffer {
            feeder: r.feeder.clone(),
            request: r.id(&c),
            sites: vec![SiteId::new("a").unwrap()],
            power: Watts(1_000),
        };
        assert_eq!(FlexOffer::decode(o.encode()).unwrap(), o);
        let a = FlexAccept {
            feeder: r.feeder.clone(),
            request: r.id(&c),
            offers: vec![0, 2],
        };
        assert_eq!(FlexAccept::decode(a.encode()).unwrap(), a);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""direction":"reduce""#), "{json}");
        assert_eq!(serde_json::from_str::<FlexRequest>(&json).unwrap(), r);
    }

    #[test]
    fn unsorted_or_repeated_sites_and_offers_do_not_decode() {
        let mut r = request();
        r.target = FlexTarget::Sites(vec![SiteId::new("b").unwrap(), SiteId::new("a").unwrap()]);
        assert!(FlexRequest::decode(r.encode()).is_err());
        r.target = FlexTarget::Sites(vec![]);
        assert!(FlexRequest::decode(r.encode()).is_err());
        let a = FlexAccept {
            feeder: r.feeder.clone(),
            request: Hash::from([0; 32]),
            offers: vec![1, 1],
        };
        assert!(FlexAccept::decode(a.encode()).is_err());
    }
}
