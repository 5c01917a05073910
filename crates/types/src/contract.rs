//! Peer-to-peer bilateral contracts (docs/contract-rules.md, CT-1): a seller site and a buyer
//! site fix the price of a constant power over a range of intervals, settled as a contract for
//! difference against the market.
//!
//! Both parties sign: the transaction's sender is one site's owner and it carries the other
//! owner's signature over the same terms, in the domain [`CONTRACT_NAMESPACE`], over
//! `chain_id ‖ terms` (so a consent is worthless on another chain). A cancellation of the
//! contract's future intervals likewise carries the other party's signature, in the domain
//! [`CANCEL_NAMESPACE`], over `chain_id ‖ feeder ‖ id ‖ from`. A contract's id is
//! `SHA-256(chain_id ‖ terms)`: the same terms signed again are the same contract.

use crate::{
    ChainId, Hash,
    market::{FeederId, Interval, SiteId},
    units::{Price, Watts},
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::{
    Hasher, Sha256, Signer,
    ed25519::{PrivateKey, Signature},
};
use serde::{Deserialize, Serialize};

/// The signing domain of a party's consent to a contract's terms.
pub const CONTRACT_NAMESPACE: &[u8] = b"bcte/contract/v1";

/// The signing domain of a party's consent to cancel a contract's future intervals.
pub const CANCEL_NAMESPACE: &[u8] = b"bcte/contract-cancel/v1";

/// The longest contract, in intervals (a year of 15-minute intervals).
pub const CONTRACT_INTERVALS_MAX: u64 = 366 * 96;

/// The terms of a peer-to-peer contract (CT-1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pTerms {
    /// The feeder of both sites.
    pub feeder: FeederId,
    /// The site that sells.
    pub seller: SiteId,
    /// The site that buys.
    pub buyer: SiteId,
    /// The contracted power in every interval (W, positive).
    pub power: Watts,
    /// The first interval.
    pub from: Interval,
    /// The last interval (inclusive).
    pub to: Interval,
    /// The fixed price (µ-currency per MWh).
    pub price: Price,
    /// Any number the parties choose, so that the same terms may be agreed twice.
    pub salt: u64,
}

/// `chain_id ‖ terms`: the bytes a party signs to consent to `terms` (after the domain).
fn consent_message(chain: &ChainId, terms: &(impl Write + EncodeSize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.encode_size() + terms.encode_size());
    chain.write(&mut out);
    terms.write(&mut out);
    out
}

impl P2pTerms {
    /// The bytes a party signs to consent (after the domain).
    pub fn message(&self, chain: &ChainId) -> Vec<u8> {
        consent_message(chain, self)
    }

    /// The contract's id.
    pub fn id(&self, chain: &ChainId) -> Hash {
        Sha256::hash(&[&self.message(chain)])
    }

    /// A party's consent with `key`.
    pub fn sign(&self, chain: &ChainId, key: &PrivateKey) -> Signature {
        key.sign(CONTRACT_NAMESPACE, &self.message(chain))
    }
}

impl Write for P2pTerms {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.seller.write(buf);
        self.buyer.write(buf);
        self.power.write(buf);
        self.from.write(buf);
        self.to.write(buf);
        self.price.write(buf);
        self.salt.write(buf);
    }
}

impl EncodeSize for P2pTerms {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + self.seller.encode_size() + self.buyer.encode_size() + 5 * 8
    }
}

impl Read for P2pTerms {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            seller: SiteId::read(buf)?,
            buyer: SiteId::read(buf)?,
            power: Watts::read(buf)?,
            from: Interval::read(buf)?,
            to: Interval::read(buf)?,
            price: Price::read(buf)?,
            salt: u64::read(buf)?,
        })
    }
}

/// Terms and the other party's signature over them: what enters a contract (the sender is
/// the first party).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consented<T> {
    /// The terms.
    pub terms: T,
    /// The other party's signature over the terms (hex in JSON).
    #[serde(with = "signature_hex")]
    pub consent: Signature,
}

impl<T: Write> Write for Consented<T> {
    fn write(&self, buf: &mut impl BufMut) {
        self.terms.write(buf);
        self.consent.write(buf);
    }
}

impl<T: EncodeSize> EncodeSize for Consented<T> {
    fn encode_size(&self) -> usize {
        self.terms.encode_size() + Signature::SIZE
    }
}

impl<T: Read<Cfg = ()>> Read for Consented<T> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            terms: T::read(buf)?,
            consent: Signature::read(buf)?,
        })
    }
}

/// Enters a peer-to-peer contract: its terms and the other owner's consent.
pub type ContractP2p = Consented<P2pTerms>;

/// Cancels a contract from an interval on, with the other party's consent (CT-1.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractCancel {
    /// The feeder.
    pub feeder: FeederId,
    /// The contract.
    #[serde(with = "crate::meter::hash_hex")]
    pub id: Hash,
    /// The first interval no longer under contract (not yet cleared).
    pub from: Interval,
    /// The other party's signature over the cancellation (hex in JSON).
    #[serde(with = "signature_hex")]
    pub consent: Signature,
}

impl ContractCancel {
    /// The bytes a party signs to consent to cancel `id` from `from` on (after the domain).
    pub fn message(chain: &ChainId, feeder: &FeederId, id: &Hash, from: Interval) -> Vec<u8> {
        let mut out = Vec::new();
        chain.write(&mut out);
        feeder.write(&mut out);
        id.write(&mut out);
        from.write(&mut out);
        out
    }

    /// A party's consent to cancel with `key`.
    pub fn sign(
        chain: &ChainId,
        feeder: &FeederId,
        id: &Hash,
        from: Interval,
        key: &PrivateKey,
    ) -> Signature {
        key.sign(CANCEL_NAMESPACE, &Self::message(chain, feeder, id, from))
    }
}

impl Write for ContractCancel {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.id.write(buf);
        self.from.write(buf);
        self.consent.write(buf);
    }
}

impl EncodeSize for ContractCancel {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size() + Hash::SIZE + 8 + Signature::SIZE
    }
}

impl Read for ContractCancel {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            id: Hash::read(buf)?,
            from: Interval::read(buf)?,
            consent: Signature::read(buf)?,
        })
    }
}

/// The signing domain of the parties' consent to an EV charging contract, and of its id.
pub const EV_NAMESPACE: &[u8] = b"bcte/ev-contract/v1";

/// The longest EV charging contract, in intervals (a week of 15-minute intervals).
pub const EV_INTERVALS_MAX: u64 = 7 * 96;

/// One charging option of an EV contract (CT-3.1): its most power and its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvOption {
    /// The most power the charger draws under this option (W, positive).
    pub power: Watts,
    /// What the owner pays per MWh delivered (µ-currency per MWh, not negative).
    pub price: Price,
}

impl Write for EvOption {
    fn write(&self, buf: &mut impl BufMut) {
        self.power.write(buf);
        self.price.write(buf);
    }
}

impl FixedSize for EvOption {
    const SIZE: usize = 16;
}

impl Read for EvOption {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            power: Watts::read(buf)?,
            price: Price::read(buf)?,
        })
    }
}

/// Which of its two options an EV contract charges by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvChoice {
    /// The slow option: less power, a lower price.
    Slow,
    /// The fast option: more power, a higher price.
    Fast,
}

impl EvChoice {
    /// Its name in the CLI and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::Fast => "fast",
        }
    }
}

impl Write for EvChoice {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self {
            Self::Slow => 0,
            Self::Fast => 1,
        });
    }
}

impl FixedSize for EvChoice {
    const SIZE: usize = 1;
}

impl Read for EvChoice {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Slow),
            1 => Ok(Self::Fast),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

/// The terms of an EV charging contract (CT-3.1): the energy an EV owner needs on its charger
/// site by a deadline, the provider's slow and fast options, and the one chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvTerms {
    /// The feeder of the charger.
    pub feeder: FeederId,
    /// The charger: a sub-metered site of its own, which only the contract bids for.
    pub site: SiteId,
    /// The account that offers the options and guarantees their price.
    pub provider: crate::AccountId,
    /// The energy needed (Wh, positive).
    pub energy_wh: i64,
    /// The first interval the EV may charge (its arrival).
    pub from: Interval,
    /// The last interval it may charge (inclusive): its departure.
    pub deadline: Interval,
    /// The slow option.
    pub slow: EvOption,
    /// The fast option.
    pub fast: EvOption,
    /// The option the contract charges by.
    pub choice: EvChoice,
    /// Any number the parties choose, so that the same terms may be agreed twice.
    pub salt: u64,
}

impl EvTerms {
    /// The option chosen.
    pub fn option(&self) -> EvOption {
        match self.choice {
            EvChoice::Slow => self.slow,
            EvChoice::Fast => self.fast,
        }
    }

    /// The bytes a party signs to consent (after the domain [`EV_NAMESPACE`]).
    pub fn message(&self, chain: &ChainId) -> Vec<u8> {
        consent_message(chain, self)
    }

    /// The contract's id: `SHA-256(EV_NAMESPACE ‖ chain_id ‖ terms)`.
    pub fn id(&self, chain: &ChainId) -> Hash {
        Sha256::hash(&[EV_NAMESPACE, &self.message(chain)])
    }

    /// A party's consent with `key`.
    pub fn sign(&self, chain: &ChainId, key: &PrivateKey) -> Signature {
        key.sign(EV_NAMESPACE, &self.message(chain))
    }
}

impl Write for EvTerms {
    fn write(&self, buf: &mut impl BufMut) {
        self.feeder.write(buf);
        self.site.write(buf);
        self.provider.write(buf);
        self.energy_wh.write(buf);
        self.from.write(buf);
        self.deadline.write(buf);
        self.slow.write(buf);
        self.fast.write(buf);
        self.choice.write(buf);
        self.salt.write(buf);
    }
}

impl EncodeSize for EvTerms {
    fn encode_size(&self) -> usize {
        self.feeder.encode_size()
            + self.site.encode_size()
            + crate::AccountId::SIZE
            + 3 * 8
            + 2 * EvOption::SIZE
            + EvChoice::SIZE
            + 8
    }
}

impl Read for EvTerms {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            feeder: FeederId::read(buf)?,
            site: SiteId::read(buf)?,
            provider: crate::AccountId::read(buf)?,
            energy_wh: i64::read(buf)?,
            from: Interval::read(buf)?,
            deadline: Interval::read(buf)?,
            slow: EvOption::read(buf)?,
            fast: EvOption::read(buf)?,
            choice: EvChoice::read(buf)?,
            salt: u64::read(buf)?,
        })
    }
}

/// Enters an EV charging contract: its terms and the other party's consent (the sender is
/// the charger's owner or the provider).
pub type ContractEv = Consented<EvTerms>;

/// A signature as 128 hex characters in JSON.
pub mod signature_hex {
    use commonware_codec::Encode;
    use commonware_cryptography::ed25519::Signature;
    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(sig.encode()))
    }

    /// Parses hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let s = String::deserialize(d)?;
        crate::batch::parse_signature(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn contract_payloads_round_trip_and_ids_depend_on_the_chain() {
        let key = PrivateKey::from_seed(3);
        let chain = ChainId::new("c").unwrap();
        let terms = P2pTerms {
            feeder: FeederId::new("f").unwrap(),
            seller: SiteId::new("pv").unwrap(),
            buyer: SiteId::new("house").unwrap(),
            power: Watts(2_000),
            from: Interval(10),
            to: Interval(13),
            price: Price(60_000_000),
            salt: 1,
        };
        let p = ContractP2p {
            consent: terms.sign(&chain, &key),
            terms: terms.clone(),
        };
        assert_eq!(ContractP2p::decode(p.encode()).unwrap(), p);
        assert_eq!(p.encode().len(), p.encode_size());
        assert_ne!(terms.id(&chain), terms.id(&ChainId::new("d").unwrap()));
        let c = ContractCancel {
            feeder: terms.feeder.clone(),
            id: terms.id(&chain),
            from: Interval(12),
            consent: ContractCancel::sign(
                &chain,
                &terms.feeder,
                &terms.id(&chain),
                Interval(12),
                &key,
            ),
        };
        assert_eq!(ContractCancel::decode(c.encode()).unwrap(), c);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ContractP2p>(&json).unwrap(), p);
    }

    #[test]
    fn ev_contracts_round_trip_and_their_ids_are_not_p2p_ids() {
        let key = PrivateKey::from_seed(4);
        let chain = ChainId::new("c").unwrap();
        let terms = EvTerms {
            feeder: FeederId::new("f").unwrap(),
            site: SiteId::new("ev").unwrap(),
            provider: crate::AccountId::from_public_key(&key.public_key()),
            energy_wh: 6_000,
            from: Interval(10),
            deadline: Interval(17),
            slow: EvOption {
                power: Watts(3_700),
                price: Price(250_000_000),
            },
            fast: EvOption {
                power: Watts(11_000),
                price: Price(400_000_000),
            },
            choice: EvChoice::Fast,
            salt: 9,
        };
        assert_eq!(terms.option().power, Watts(11_000));
        let c = ContractEv {
            consent: terms.sign(&chain, &key),
            terms: terms.clone(),
        };
        assert_eq!(ContractEv::decode(c.encode()).unwrap(), c);
        assert_eq!(c.encode().len(), c.encode_size());
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"choice\":\"fast\""), "{json}");
        assert_eq!(serde_json::from_str::<ContractEv>(&json).unwrap(), c);
        // The id is domain-separated: not the hash a P2P contract's id would be.
        assert_ne!(terms.id(&chain), Sha256::hash(&[&terms.message(&chain)]));
        let mut bad = c.encode().to_vec();
        let at = bad.len() - Signature::SIZE - 8 - 1;
        bad[at] = 2;
        assert!(
            ContractEv::decode(commonware_codec::Copying(&bad[..])).is_err(),
            "an unknown choice"
        );
    }
}
