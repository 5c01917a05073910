//! Receipts: the ledger's verdict on each transaction of a block, `accepted` or `rejected: reason`.
//!
//! A well-signed transaction that fails on state (a wrong nonce, too little balance, missing
//! rights) is still included in its block; its receipt records why it had no effect. A bad
//! transaction is data, not a crash. Receipts are committed to by the block's `receipts_root`.

use crate::{ids::Hash, units::Amount};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::fmt;
use serde::{Deserialize, Serialize};

/// An action only the token authority may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Creating tokens.
    Mint,
    /// Destroying tokens.
    Burn,
}

impl Privilege {
    const fn tag(self) -> u8 {
        match self {
            Self::Mint => 0,
            Self::Burn => 1,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, CodecError> {
        match tag {
            0 => Ok(Self::Mint),
            1 => Ok(Self::Burn),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

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
    /// The sender may not take this action.
    Unauthorized {
        /// The action.
        action: Privilege,
    },
    /// The amount is zero.
    ZeroAmount,
    /// The result would not fit in 64 bits (total supply or a balance).
    Overflow,
}

impl RejectReason {
    const fn tag(&self) -> u8 {
        match self {
            Self::BadNonce { .. } => 0,
            Self::InsufficientBalance { .. } => 1,
            Self::Unauthorized { .. } => 2,
            Self::ZeroAmount => 3,
            Self::Overflow => 4,
        }
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
            Self::Unauthorized {
                action: Privilege::Mint,
            } => f.write_str("unauthorized: only the token authority may mint"),
            Self::Unauthorized {
                action: Privilege::Burn,
            } => f.write_str("unauthorized: only the token authority may burn"),
            Self::ZeroAmount => f.write_str("amount must be positive"),
            Self::Overflow => f.write_str("amount overflows a balance or the total supply"),
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
            Self::Unauthorized { action } => action.tag().write(buf),
            Self::ZeroAmount | Self::Overflow => {}
        }
    }
}

impl EncodeSize for RejectReason {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::BadNonce { .. } => 16,
            Self::InsufficientBalance { .. } => 16,
            Self::Unauthorized { .. } => 1,
            Self::ZeroAmount | Self::Overflow => 0,
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
            2 => Self::Unauthorized {
                action: Privilege::from_tag(u8::read(buf)?)?,
            },
            3 => Self::ZeroAmount,
            4 => Self::Overflow,
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
            RejectReason::Unauthorized {
                action: Privilege::Burn,
            },
            RejectReason::ZeroAmount,
            RejectReason::Overflow,
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
            assert_eq!(Receipt::decode(r.encode()).unwrap(), r);
        }
    }
}
