//! Receipts: the ledger's verdict on each transaction of a block, `accepted` or `rejected: reason`.
//!
//! A well-signed transaction that fails on state (a wrong nonce, too little balance, missing
//! rights) is still included in its block; its receipt records why it had no effect. A bad
//! transaction is data, not a crash. Receipts are committed to by the block's `receipts_root`.

use crate::{
    ids::AccountId,
    ids::{Hash, len_size, read_len, write_len},
    market::{FeederId, Interval, NodeId, SiteId},
    role::Roles,
    tx::TxKind,
    units::Amount,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The longest free-text reason a receipt carries, in bytes.
pub const REASON_BYTES_MAX: usize = 1024;

/// Why a transaction was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RejectReason {
    /// The nonce is not the sender's next nonce (a replay, or a skipped nonce).
    BadNonce {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender's balance does not cover the amount.
    InsufficientBalance {
        /// The sender's balance.
        balance: Amount,
        /// The amount asked for.
        needed: Amount,
    },
    /// The sender holds none of the roles the transaction's kind needs (AC-3).
    MissingRole {
        /// The transaction's kind.
        kind: TxKind,
        /// The roles that may send it (any one of them).
        needs: Roles,
    },
    /// The amount is zero.
    ZeroAmount,
    /// The result would not fit in 64 bits (total supply or a balance).
    Overflow,
    /// No feeder has this id.
    UnknownFeeder {
        /// The id.
        feeder: FeederId,
    },
    /// The feeder has no site with this id.
    UnknownSite {
        /// The id.
        site: SiteId,
    },
    /// The feeder has no node with this id.
    UnknownNode {
        /// The id.
        node: NodeId,
    },
    /// A feeder with this id exists already.
    DuplicateFeeder {
        /// The id.
        feeder: FeederId,
    },
    /// A site with this id exists already on the feeder (or twice in the transaction).
    DuplicateSite {
        /// The id.
        site: SiteId,
    },
    /// Only the site's owner may do this.
    NotSiteOwner {
        /// The site.
        site: SiteId,
    },
    /// Only the site's owner or its delegated aggregator may bid for it.
    NotSiteBidder {
        /// The site.
        site: SiteId,
    },
    /// The interval's gate has closed (or the change is for a past interval).
    GateClosed {
        /// The interval.
        interval: Interval,
        /// When its gate closed (or closes), market time in ms.
        gate_ms: u64,
        /// The block's market time in ms.
        now_ms: u64,
    },
    /// The interval is further ahead than the bidding horizon.
    BeyondHorizon {
        /// The interval.
        interval: Interval,
        /// The last interval open for bids now.
        last: Interval,
    },
    /// The payload breaks a rule; the text names the field, item or id and the rule.
    Invalid {
        /// What is wrong (at most [`REASON_BYTES_MAX`] bytes).
        message: String,
    },
    /// The sender is not the site's registered meter (or the site has none).
    NotSiteMeter {
        /// The site.
        site: SiteId,
    },
    /// The site has a reading for the interval already.
    DuplicateReading {
        /// The site.
        site: SiteId,
        /// The interval.
        interval: Interval,
    },
    /// Readings of the interval are not accepted now: before the interval has ended, or
    /// after its reading window.
    ReadingClosed {
        /// The interval.
        interval: Interval,
        /// When readings of it are first accepted (its end), market time in ms.
        opens_ms: u64,
        /// When they are last accepted, market time in ms.
        closes_ms: u64,
        /// The block's market time in ms.
        now_ms: u64,
    },
    /// The site's owner owes an unpaid settlement; it cannot bid until it is paid.
    OwnerInDebt {
        /// The site.
        site: SiteId,
    },
    /// The sender is not a head-end system of the feeder.
    NotHeadEnd {
        /// The feeder.
        feeder: FeederId,
    },
    /// The transaction is signed with a key the account no longer uses (AC-4.2).
    KeyRotated {
        /// The account's current key.
        current: AccountId,
    },
    /// The transaction names a signing key that was never the account's (AC-4.2).
    NotAccountKey,
    /// The sender was revoked by the registrar (AC-5.1).
    Revoked {
        /// The account.
        account: AccountId,
    },
    /// The feeder is operated by another DSO (MC-3.5).
    NotFeederOperator {
        /// The feeder.
        feeder: FeederId,
    },
}

impl RejectReason {
    const fn tag(&self) -> u8 {
        match self {
            Self::BadNonce { .. } => 0,
            Self::InsufficientBalance { .. } => 1,
            Self::MissingRole { .. } => 2,
            Self::ZeroAmount => 3,
            Self::Overflow => 4,
            Self::UnknownFeeder { .. } => 5,
            Self::UnknownSite { .. } => 6,
            Self::UnknownNode { .. } => 7,
            Self::DuplicateFeeder { .. } => 8,
            Self::DuplicateSite { .. } => 9,
            Self::NotSiteOwner { .. } => 10,
            Self::NotSiteBidder { .. } => 11,
            Self::GateClosed { .. } => 12,
            Self::BeyondHorizon { .. } => 13,
            Self::Invalid { .. } => 14,
            Self::NotSiteMeter { .. } => 15,
            Self::DuplicateReading { .. } => 16,
            Self::ReadingClosed { .. } => 17,
            Self::OwnerInDebt { .. } => 18,
            Self::NotHeadEnd { .. } => 19,
            Self::KeyRotated { .. } => 20,
            Self::NotAccountKey => 21,
            Self::Revoked { .. } => 22,
            Self::NotFeederOperator { .. } => 23,
        }
    }

    /// A free-text reason, cut to [`REASON_BYTES_MAX`] bytes at a character boundary.
    pub fn invalid(message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > REASON_BYTES_MAX {
            let mut end = REASON_BYTES_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self::Invalid { message }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadNonce { expected, got } if got < expected => {
                write!(
                    f,
                    "bad nonce: {got} was already used (next nonce is {expected})"
                )
            }
            Self::BadNonce { expected, got } => {
                write!(f, "bad nonce: {got} skips ahead (next nonce is {expected})")
            }
            Self::InsufficientBalance { balance, needed } => {
                write!(f, "insufficient balance: has {balance}, needs {needed}")
            }
            Self::MissingRole { kind, needs } if needs.is_empty() => {
                write!(f, "unauthorized: no role may send {kind}")
            }
            Self::MissingRole { kind, needs } => {
                write!(f, "unauthorized: {kind} needs the role {}", needs.to_string().replace(", ", " or "))
            }
            Self::ZeroAmount => f.write_str("amount must be positive"),
            Self::Overflow => f.write_str("amount overflows a balance or the total supply"),
            Self::UnknownFeeder { feeder } => write!(f, "unknown feeder {:?}", feeder.as_str()),
            Self::UnknownSite { site } => write!(f, "unknown site {:?}", site.as_str()),
            Self::UnknownNode { node } => write!(f, "unknown node {:?}", node.as_str()),
            Self::DuplicateFeeder { feeder } => {
                write!(f, "feeder {:?} exists already", feeder.as_str())
            }
            Self::DuplicateSite { site } => write!(f, "site {:?} exists already", site.as_str()),
            Self::NotSiteOwner { site } => {
                write!(
                    f,
                    "unauthorized: only the owner of site {site:?} may do this"
                )
            }
            Self::NotSiteBidder { site } => write!(
                f,
                "unauthorized: only the owner of site {:?} or its delegated aggregator may bid for it",
                site.as_str()
            ),
            Self::GateClosed {
                interval,
                gate_ms,
                now_ms,
            } => write!(
                f,
                "the gate of interval {interval} closed at {gate_ms} (market time now {now_ms})"
            ),
            Self::BeyondHorizon { interval, last } => write!(
                f,
                "interval {interval} is beyond the bidding horizon (the last open interval is {last})"
            ),
            Self::Invalid { message } => f.write_str(message),
            Self::NotSiteMeter { site } => write!(
                f,
                "unauthorized: only the registered meter of site {:?} may send its readings",
                site.as_str()
            ),
            Self::DuplicateReading { site, interval } => write!(
                f,
                "site {:?} has a reading for interval {interval} already",
                site.as_str()
            ),
            Self::ReadingClosed {
                interval,
                opens_ms,
                closes_ms,
                now_ms,
            } => write!(
                f,
                "readings of interval {interval} are accepted from {opens_ms} to {closes_ms} \
                 (market time now {now_ms})"
            ),
            Self::OwnerInDebt { site } => write!(
                f,
                "the owner of site {:?} has an unpaid settlement; it cannot bid until it is paid",
                site.as_str()
            ),
            Self::NotHeadEnd { feeder } => write!(
                f,
                "unauthorized: the sender is not a head-end system of feeder {:?}",
                feeder.as_str()
            ),
            Self::KeyRotated { current } => write!(
                f,
                "key rotated: the account's current key is {current}; sign with it"
            ),
            Self::NotAccountKey => f.write_str(
                "wrong key: the signing key is not the account's (an account that never rotated signs with its id)",
            ),
            Self::Revoked { account } => {
                write!(f, "revoked: account {account} was revoked by the registrar")
            }
            Self::NotFeederOperator { feeder } => write!(
                f,
                "unauthorized: feeder {:?} is operated by another DSO",
                feeder.as_str()
            ),
        }
    }
}

impl Write for RejectReason {
    fn write(&self, buf: &mut impl BufMut) {
        self.tag().write(buf);
        match self {
            Self::BadNonce { expected, got } => {
                expected.write(buf);
                got.write(buf);
            }
            Self::InsufficientBalance { balance, needed } => {
                balance.write(buf);
                needed.write(buf);
            }
            Self::MissingRole { kind, needs } => {
                kind.index().write(buf);
                needs.write(buf);
            }
            Self::ZeroAmount | Self::Overflow => {}
            Self::UnknownFeeder { feeder } | Self::DuplicateFeeder { feeder } => feeder.write(buf),
            Self::UnknownSite { site }
            | Self::DuplicateSite { site }
            | Self::NotSiteOwner { site }
            | Self::NotSiteBidder { site } => site.write(buf),
            Self::UnknownNode { node } => node.write(buf),
            Self::GateClosed {
                interval,
                gate_ms,
                now_ms,
            } => {
                interval.write(buf);
                gate_ms.write(buf);
                now_ms.write(buf);
            }
            Self::BeyondHorizon { interval, last } => {
                interval.write(buf);
                last.write(buf);
            }
            Self::Invalid { message } => {
                write_len(message.len(), buf);
                buf.put_slice(message.as_bytes());
            }
            Self::NotSiteMeter { site } | Self::OwnerInDebt { site } => site.write(buf),
            Self::DuplicateReading { site, interval } => {
                site.write(buf);
                interval.write(buf);
            }
            Self::ReadingClosed {
                interval,
                opens_ms,
                closes_ms,
                now_ms,
            } => {
                interval.write(buf);
                opens_ms.write(buf);
                closes_ms.write(buf);
                now_ms.write(buf);
            }
            Self::NotHeadEnd { feeder } | Self::NotFeederOperator { feeder } => feeder.write(buf),
            Self::KeyRotated { current: account } | Self::Revoked { account } => account.write(buf),
            Self::NotAccountKey => {}
        }
    }
}

impl EncodeSize for RejectReason {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::BadNonce { .. } => 16,
            Self::InsufficientBalance { .. } => 16,
            Self::MissingRole { .. } => 3,
            Self::ZeroAmount | Self::Overflow => 0,
            Self::UnknownFeeder { feeder } | Self::DuplicateFeeder { feeder } => {
                feeder.encode_size()
            }
            Self::UnknownSite { site }
            | Self::DuplicateSite { site }
            | Self::NotSiteOwner { site }
            | Self::NotSiteBidder { site } => site.encode_size(),
            Self::UnknownNode { node } => node.encode_size(),
            Self::GateClosed { .. } => 24,
            Self::BeyondHorizon { .. } => 16,
            Self::Invalid { message } => len_size(message.len()) + message.len(),
            Self::NotSiteMeter { site } | Self::OwnerInDebt { site } => site.encode_size(),
            Self::DuplicateReading { site, .. } => site.encode_size() + 8,
            Self::ReadingClosed { .. } => 32,
            Self::NotHeadEnd { feeder } | Self::NotFeederOperator { feeder } => {
                feeder.encode_size()
            }
            Self::KeyRotated { .. } | Self::Revoked { .. } => 32,
            Self::NotAccountKey => 0,
        }
    }
}

impl Read for RejectReason {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => Self::BadNonce {
                expected: u64::read(buf)?,
                got: u64::read(buf)?,
            },
            1 => Self::InsufficientBalance {
                balance: Amount::read(buf)?,
                needed: Amount::read(buf)?,
            },
            2 => Self::MissingRole {
                kind: {
                    let t = u8::read(buf)?;
                    TxKind::from_index(t).ok_or(CodecError::InvalidEnum(t))?
                },
                needs: Roles::read(buf)?,
            },
            3 => Self::ZeroAmount,
            4 => Self::Overflow,
            5 => Self::UnknownFeeder {
                feeder: FeederId::read(buf)?,
            },
            6 => Self::UnknownSite {
                site: SiteId::read(buf)?,
            },
            7 => Self::UnknownNode {
                node: NodeId::read(buf)?,
            },
            8 => Self::DuplicateFeeder {
                feeder: FeederId::read(buf)?,
            },
            9 => Self::DuplicateSite {
                site: SiteId::read(buf)?,
            },
            10 => Self::NotSiteOwner {
                site: SiteId::read(buf)?,
            },
            11 => Self::NotSiteBidder {
                site: SiteId::read(buf)?,
            },
            12 => Self::GateClosed {
                interval: Interval::read(buf)?,
                gate_ms: u64::read(buf)?,
                now_ms: u64::read(buf)?,
            },
            13 => Self::BeyondHorizon {
                interval: Interval::read(buf)?,
                last: Interval::read(buf)?,
            },
            14 => {
                let len = read_len(buf, REASON_BYTES_MAX)?;
                if buf.remaining() < len {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut bytes = vec![0u8; len];
                buf.copy_to_slice(&mut bytes);
                let message = String::from_utf8(bytes)
                    .map_err(|_| CodecError::Invalid("RejectReason", "reason is not UTF-8"))?;
                Self::Invalid { message }
            }
            15 => Self::NotSiteMeter {
                site: SiteId::read(buf)?,
            },
            16 => Self::DuplicateReading {
                site: SiteId::read(buf)?,
                interval: Interval::read(buf)?,
            },
            17 => Self::ReadingClosed {
                interval: Interval::read(buf)?,
                opens_ms: u64::read(buf)?,
                closes_ms: u64::read(buf)?,
                now_ms: u64::read(buf)?,
            },
            18 => Self::OwnerInDebt {
                site: SiteId::read(buf)?,
            },
            19 => Self::NotHeadEnd {
                feeder: FeederId::read(buf)?,
            },
            20 => Self::KeyRotated {
                current: AccountId::read(buf)?,
            },
            21 => Self::NotAccountKey,
            22 => Self::Revoked {
                account: AccountId::read(buf)?,
            },
            23 => Self::NotFeederOperator {
                feeder: FeederId::read(buf)?,
            },
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// The outcome of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction took effect.
    Accepted,
    /// The transaction had no effect, for this reason.
    Rejected(RejectReason),
}

impl Outcome {
    /// `"accepted"` or `"rejected"`.
    pub const fn status(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected(_) => "rejected",
        }
    }

    /// The rejection reason, if any.
    pub const fn reason(&self) -> Option<&RejectReason> {
        match self {
            Self::Accepted => None,
            Self::Rejected(r) => Some(r),
        }
    }
}

/// The ledger's verdict on one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// What happened.
    pub outcome: Outcome,
}

impl Write for Receipt {
    fn write(&self, buf: &mut impl BufMut) {
        self.tx_hash.write(buf);
        match &self.outcome {
            Outcome::Accepted => 0u8.write(buf),
            Outcome::Rejected(reason) => {
                1u8.write(buf);
                reason.write(buf);
            }
        }
    }
}

impl EncodeSize for Receipt {
    fn encode_size(&self) -> usize {
        Hash::SIZE
            + 1
            + match &self.outcome {
                Outcome::Accepted => 0,
                Outcome::Rejected(r) => r.encode_size(),
            }
    }
}

impl Read for Receipt {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let tx_hash = Hash::read(buf)?;
        let outcome = match u8::read(buf)? {
            0 => Outcome::Accepted,
            1 => Outcome::Rejected(RejectReason::read(buf)?),
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self { tx_hash, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn reasons_read_as_sentences() {
        let r = RejectReason::BadNonce {
            expected: 3,
            got: 1,
        };
        assert_eq!(
            r.to_string(),
            "bad nonce: 1 was already used (next nonce is 3)"
        );
        let r = RejectReason::InsufficientBalance {
            balance: Amount(1),
            needed: Amount(2),
        };
        assert_eq!(r.to_string(), "insufficient balance: has 1, needs 2");
        let r = RejectReason::MissingRole {
            kind: TxKind::Bids,
            needs: Roles::of(&[
                crate::role::Role::Aggregator,
                crate::role::Role::Prosumer,
                crate::role::Role::Consumer,
            ]),
        };
        assert_eq!(
            r.to_string(),
            "unauthorized: bids needs the role aggregator or prosumer or consumer"
        );
    }

    #[test]
    fn receipts_round_trip() {
        let reasons = [
            RejectReason::BadNonce {
                expected: 1,
                got: 2,
            },
            RejectReason::InsufficientBalance {
                balance: Amount(1),
                needed: Amount(2),
            },
            RejectReason::MissingRole {
                kind: TxKind::Burn,
                needs: Roles::one(crate::role::Role::Dso),
            },
            RejectReason::ZeroAmount,
            RejectReason::Overflow,
            RejectReason::KeyRotated {
                current: AccountId([3; 32]),
            },
            RejectReason::NotAccountKey,
            RejectReason::NotFeederOperator {
                feeder: FeederId::new("f").unwrap(),
            },
            RejectReason::Revoked {
                account: AccountId([4; 32]),
            },
            RejectReason::UnknownFeeder {
                feeder: FeederId::new("f").unwrap(),
            },
            RejectReason::UnknownSite {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::UnknownNode {
                node: NodeId::new("n").unwrap(),
            },
            RejectReason::DuplicateFeeder {
                feeder: FeederId::new("f").unwrap(),
            },
            RejectReason::DuplicateSite {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::NotSiteOwner {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::NotSiteBidder {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::GateClosed {
                interval: Interval(3),
                gate_ms: 10,
                now_ms: 11,
            },
            RejectReason::NotSiteMeter {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::DuplicateReading {
                site: SiteId::new("s").unwrap(),
                interval: Interval(4),
            },
            RejectReason::ReadingClosed {
                interval: Interval(4),
                opens_ms: 1,
                closes_ms: 2,
                now_ms: 3,
            },
            RejectReason::OwnerInDebt {
                site: SiteId::new("s").unwrap(),
            },
            RejectReason::NotHeadEnd {
                feeder: FeederId::new("f").unwrap(),
            },
            RejectReason::MissingRole {
                kind: TxKind::AccountRevoke,
                needs: Roles::of(&[crate::role::Role::Registrar, crate::role::Role::Dso]),
            },
            RejectReason::BeyondHorizon {
                interval: Interval(300),
                last: Interval(200),
            },
            RejectReason::invalid("curve: point 1: the power rises"),
        ];
        let mut receipts = vec![Receipt {
            tx_hash: Hash::from([1; 32]),
            outcome: Outcome::Accepted,
        }];
        receipts.extend(reasons.into_iter().map(|r| Receipt {
            tx_hash: Hash::from([2; 32]),
            outcome: Outcome::Rejected(r),
        }));
        for r in receipts {
            assert_eq!(r.encode().len(), r.encode_size());
            assert_eq!(Receipt::decode(r.encode()).unwrap(), r);
        }
    }
}
