//! Signed transactions: what an account asks the ledger to do, bound to one chain and one nonce.
//!
//! A transaction is a [`TxBody`] (chain id, sender, nonce, payload) and an ed25519 signature by
//! the sender over the body's canonical encoding, in the signing domain [`TX_NAMESPACE`]. The
//! chain id inside the signed bytes makes a transaction worthless on any other chain; the
//! per-account nonce, checked by the ledger, makes it worthless a second time on this one.
//!
//! The transaction hash is SHA-256 of the encoded body, not of the signature: ed25519 under
//! ZIP-215 admits more than one encoding of a valid signature, and a hash over the signature
//! would let anyone relaying a transaction change the hash its sender waits for.
//!
//! Byte layout (all integers big-endian, see `docs/encoding.md`):
//! `body = chain_id_len:u8 chain_id sender:32 signer:opt(32) nonce:u64 payload`,
//! `tx = body signature:64`.
//!
//! The signature is checked against the key the body names: `signer` when present (an
//! account whose key was rotated, AC-4), else the sender's id, which is its first key. That
//! check needs no state, so a bad signature still makes a block invalid (LR-1.1); whether the
//! named key is the account's current one is the ledger's verdict (LR-2.3).

use crate::{
    ids::{AccountId, ChainId, Hash},
    market::{
        Bids, EdgeLimit, FeederRegister, GridModeSet, MarketConfigure, SiteDelegate, SiteRevoke,
        SitesRegister, UpstreamPrices,
    },
    meter::{HeadEndSet, MeterBatch, MeterRegister, Reading, SettlementAdjust},
    role::{AccountRevoke, Enroll, KeyReset, KeyRotate, RoleSet},
    units::Amount,
};
use bytes::{BufMut, Bytes};
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write,
};
use commonware_cryptography::{
    BatchEntry, BatchVerifier, Hasher, Sha256, Signer, Verifier,
    ed25519::{PrivateKey, PublicKey, Signature},
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The signing domain of transactions. Changing it invalidates every signature: a breaking change.
/// Version 2 added the body's `signer` (AC-4); a version-1 transaction no longer decodes.
pub const TX_NAMESPACE: &[u8] = b"bcte/tx/v2";

/// The largest encoded transaction of an ordinary kind, in bytes: what a decoder enforces
/// before doing any work (see [`Payload::bytes_max`]).
pub const TX_BYTES_MAX: usize = 16 * 1024;

/// The largest encoded transaction of a bulk kind (a feeder's registration, sites registered
/// together, an aggregator's batch of bids, a day of upstream prices), in bytes.
pub const BULK_TX_BYTES_MAX: usize = 1024 * 1024;

/// The largest encoded transaction of any kind: what a message carrying transactions must hold.
pub const TX_BYTES_LIMIT: usize = BULK_TX_BYTES_MAX;

/// What a transaction does.
///
/// Tags on the wire: `0` transfer, `1` mint, `2` burn (the token); `0x10` feeder register,
/// `0x11` sites register, `0x12` site delegate, `0x13` site revoke, `0x14` edge limit (the
/// registry); `0x20` market config, `0x21` grid mode, `0x22` upstream prices, `0x28` bids
/// (the market); `0x30` meter register, `0x31` head-end, `0x32` reading, `0x33` meter batch,
/// `0x38` settlement adjust (meters and settlement); `0x40` P2P contract, `0x41` contract
/// cancel, `0x42` flexibility request, `0x43` flexibility offer, `0x44` flexibility accept,
/// `0x45` EV charging contract (contracts); `0x50` enroll, `0x51` role set, `0x52` key rotate,
/// `0x53` key reset, `0x54` account revoke (identity and access). An unknown tag is a decode error. The payloads of the registry and the market
/// are defined in [`crate::market`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    /// Move `amount` base units of the settlement token from the sender to `to`.
    Transfer {
        /// The receiving account (created if it does not exist).
        to: AccountId,
        /// Base units to move; must be positive.
        amount: Amount,
    },
    /// Create `amount` new base units in `to`. Only the chain's token authority may mint.
    Mint {
        /// The receiving account.
        to: AccountId,
        /// Base units to create; must be positive.
        amount: Amount,
    },
    /// Destroy `amount` base units of the sender's own balance. Only the token authority may burn
    /// (holders redeem by transferring to it).
    Burn {
        /// Base units to destroy; must be positive.
        amount: Amount,
    },
    /// Register a feeder (DSO).
    FeederRegister(FeederRegister),
    /// Register sites of a feeder (DSO).
    SitesRegister(SitesRegister),
    /// Delegate bidding for a site to an aggregator (the site's owner).
    SiteDelegate(SiteDelegate),
    /// Revoke a site's delegation (the site's owner).
    SiteRevoke(SiteRevoke),
    /// Change an edge's limits from a future interval (DSO).
    EdgeLimit(EdgeLimit),
    /// Change a feeder's market configuration from a future interval (DSO).
    MarketConfig(MarketConfigure),
    /// Set a feeder's grid mode from a future interval (DSO).
    GridMode(GridModeSet),
    /// Post upstream prices for future intervals (DSO).
    UpstreamPrices(UpstreamPrices),
    /// Bid for sites and intervals (a site's owner or its aggregator).
    Bids(Bids),
    /// Register a site's meter or swap its key (DSO).
    MeterRegister(MeterRegister),
    /// Allow or withdraw a head-end system (DSO).
    HeadEnd(HeadEndSet),
    /// One site's reading of one interval (the site's meter).
    Reading(Reading),
    /// Many sites' readings of one interval with the root of their raw data (a head-end).
    MeterBatch(MeterBatch),
    /// Correct a site's settlement (DSO).
    SettlementAdjust(SettlementAdjust),
    /// Enter a peer-to-peer contract (one party, with the other's consent).
    ContractP2p(crate::contract::ContractP2p),
    /// Cancel a contract's future intervals (one party, with the other's consent).
    ContractCancel(crate::contract::ContractCancel),
    /// Ask for flexibility at a node or from sites (DSO).
    FlexRequest(crate::flex::FlexRequest),
    /// Offer flexibility to a request (the sites' owner or their aggregator).
    FlexOffer(crate::flex::FlexOffer),
    /// Accept offers to a request (DSO).
    FlexAccept(crate::flex::FlexAccept),
    /// Enter an EV charging contract (the charger's owner or the provider, with the other's
    /// consent).
    ContractEv(crate::contract::ContractEv),
    /// Enroll participants with their roles and accounts (registrar).
    Enroll(Enroll),
    /// Grant or revoke an account's roles (registrar).
    RoleSet(RoleSet),
    /// Replace the sender's own signing key (any member).
    KeyRotate(KeyRotate),
    /// Replace a member's lost key (registrar).
    KeyReset(KeyReset),
    /// Revoke accounts for good (registrar).
    AccountRevoke(AccountRevoke),
}

/// The kind of a transaction: one name per [`Payload`] variant, without its content. The
/// authorization table (`bcte_ledger::auth`) has one row per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // each is its payload's kind; see [`Payload`]
pub enum TxKind {
    Transfer,
    Mint,
    Burn,
    FeederRegister,
    SitesRegister,
    SiteDelegate,
    SiteRevoke,
    EdgeLimit,
    MarketConfig,
    GridMode,
    UpstreamPrices,
    Bids,
    MeterRegister,
    HeadEnd,
    Reading,
    MeterBatch,
    SettlementAdjust,
    ContractP2p,
    ContractCancel,
    FlexRequest,
    FlexOffer,
    FlexAccept,
    ContractEv,
    Enroll,
    RoleSet,
    KeyRotate,
    KeyReset,
    AccountRevoke,
}

impl TxKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 28] = [
        Self::Transfer,
        Self::Mint,
        Self::Burn,
        Self::FeederRegister,
        Self::SitesRegister,
        Self::SiteDelegate,
        Self::SiteRevoke,
        Self::EdgeLimit,
        Self::MarketConfig,
        Self::GridMode,
        Self::UpstreamPrices,
        Self::Bids,
        Self::MeterRegister,
        Self::HeadEnd,
        Self::Reading,
        Self::MeterBatch,
        Self::SettlementAdjust,
        Self::ContractP2p,
        Self::ContractCancel,
        Self::FlexRequest,
        Self::FlexOffer,
        Self::FlexAccept,
        Self::ContractEv,
        Self::Enroll,
        Self::RoleSet,
        Self::KeyRotate,
        Self::KeyReset,
        Self::AccountRevoke,
    ];

    /// Its name, as in JSON (`"transfer"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Mint => "mint",
            Self::Burn => "burn",
            Self::FeederRegister => "feeder_register",
            Self::SitesRegister => "sites_register",
            Self::SiteDelegate => "site_delegate",
            Self::SiteRevoke => "site_revoke",
            Self::EdgeLimit => "edge_limit",
            Self::MarketConfig => "market_config",
            Self::GridMode => "grid_mode",
            Self::UpstreamPrices => "upstream_prices",
            Self::Bids => "bids",
            Self::MeterRegister => "meter_register",
            Self::HeadEnd => "head_end",
            Self::Reading => "reading",
            Self::MeterBatch => "meter_batch",
            Self::SettlementAdjust => "settlement_adjust",
            Self::ContractP2p => "contract_p2p",
            Self::ContractCancel => "contract_cancel",
            Self::FlexRequest => "flex_request",
            Self::FlexOffer => "flex_offer",
            Self::FlexAccept => "flex_accept",
            Self::ContractEv => "contract_ev",
            Self::Enroll => "enroll",
            Self::RoleSet => "role_set",
            Self::KeyRotate => "key_rotate",
            Self::KeyReset => "key_reset",
            Self::AccountRevoke => "account_revoke",
        }
    }

    /// Its position in [`Self::ALL`] (its tag in a receipt).
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// The kind at `index` in [`Self::ALL`].
    pub fn from_index(index: u8) -> Option<Self> {
        Self::ALL.get(usize::from(index)).copied()
    }
}

impl core::fmt::Display for TxKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl Payload {
    const TAG_TRANSFER: u8 = 0;
    const TAG_MINT: u8 = 1;
    const TAG_BURN: u8 = 2;
    const TAG_FEEDER_REGISTER: u8 = 0x10;
    const TAG_SITES_REGISTER: u8 = 0x11;
    const TAG_SITE_DELEGATE: u8 = 0x12;
    const TAG_SITE_REVOKE: u8 = 0x13;
    const TAG_EDGE_LIMIT: u8 = 0x14;
    const TAG_MARKET_CONFIG: u8 = 0x20;
    const TAG_GRID_MODE: u8 = 0x21;
    const TAG_UPSTREAM_PRICES: u8 = 0x22;
    const TAG_BIDS: u8 = 0x28;
    const TAG_METER_REGISTER: u8 = 0x30;
    const TAG_HEAD_END: u8 = 0x31;
    const TAG_READING: u8 = 0x32;
    const TAG_METER_BATCH: u8 = 0x33;
    const TAG_SETTLEMENT_ADJUST: u8 = 0x38;
    const TAG_CONTRACT_P2P: u8 = 0x40;
    const TAG_CONTRACT_CANCEL: u8 = 0x41;
    const TAG_FLEX_REQUEST: u8 = 0x42;
    const TAG_FLEX_OFFER: u8 = 0x43;
    const TAG_FLEX_ACCEPT: u8 = 0x44;
    const TAG_CONTRACT_EV: u8 = 0x45;
    const TAG_ENROLL: u8 = 0x50;
    const TAG_ROLE_SET: u8 = 0x51;
    const TAG_KEY_ROTATE: u8 = 0x52;
    const TAG_KEY_RESET: u8 = 0x53;
    const TAG_ACCOUNT_REVOKE: u8 = 0x54;

    /// The fewest bytes any payload encodes to (a bid transaction for no site, of a feeder
    /// with a one-byte id: tag, id and an empty list). The block decoder relies on it to refuse
    /// a transaction count the input cannot hold.
    pub const ENCODED_SIZE_MIN: usize = 4;

    /// A short name of the payload kind, as used in JSON (`"transfer"`, ...).
    pub const fn kind(&self) -> &'static str {
        self.tx_kind().name()
    }

    /// The payload's kind.
    pub const fn tx_kind(&self) -> TxKind {
        match self {
            Self::Transfer { .. } => TxKind::Transfer,
            Self::Mint { .. } => TxKind::Mint,
            Self::Burn { .. } => TxKind::Burn,
            Self::FeederRegister(_) => TxKind::FeederRegister,
            Self::SitesRegister(_) => TxKind::SitesRegister,
            Self::SiteDelegate(_) => TxKind::SiteDelegate,
            Self::SiteRevoke(_) => TxKind::SiteRevoke,
            Self::EdgeLimit(_) => TxKind::EdgeLimit,
            Self::MarketConfig(_) => TxKind::MarketConfig,
            Self::GridMode(_) => TxKind::GridMode,
            Self::UpstreamPrices(_) => TxKind::UpstreamPrices,
            Self::Bids(_) => TxKind::Bids,
            Self::MeterRegister(_) => TxKind::MeterRegister,
            Self::HeadEnd(_) => TxKind::HeadEnd,
            Self::Reading(_) => TxKind::Reading,
            Self::MeterBatch(_) => TxKind::MeterBatch,
            Self::SettlementAdjust(_) => TxKind::SettlementAdjust,
            Self::ContractP2p(_) => TxKind::ContractP2p,
            Self::ContractCancel(_) => TxKind::ContractCancel,
            Self::FlexRequest(_) => TxKind::FlexRequest,
            Self::FlexOffer(_) => TxKind::FlexOffer,
            Self::FlexAccept(_) => TxKind::FlexAccept,
            Self::ContractEv(_) => TxKind::ContractEv,
            Self::Enroll(_) => TxKind::Enroll,
            Self::RoleSet(_) => TxKind::RoleSet,
            Self::KeyRotate(_) => TxKind::KeyRotate,
            Self::KeyReset(_) => TxKind::KeyReset,
            Self::AccountRevoke(_) => TxKind::AccountRevoke,
        }
    }

    /// The largest encoded transaction of this kind ([`TX_BYTES_MAX`], or
    /// [`BULK_TX_BYTES_MAX`] for the bulk kinds).
    pub const fn bytes_max(&self) -> usize {
        match self {
            Self::FeederRegister(_)
            | Self::SitesRegister(_)
            | Self::UpstreamPrices(_)
            | Self::Bids(_)
            | Self::MeterBatch(_)
            | Self::FlexRequest(_)
            | Self::FlexOffer(_)
            | Self::Enroll(_) => BULK_TX_BYTES_MAX,
            _ => TX_BYTES_MAX,
        }
    }
}

impl Write for Payload {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Transfer { to, amount } => {
                Self::TAG_TRANSFER.write(buf);
                to.write(buf);
                amount.write(buf);
            }
            Self::Mint { to, amount } => {
                Self::TAG_MINT.write(buf);
                to.write(buf);
                amount.write(buf);
            }
            Self::Burn { amount } => {
                Self::TAG_BURN.write(buf);
                amount.write(buf);
            }
            Self::FeederRegister(p) => {
                Self::TAG_FEEDER_REGISTER.write(buf);
                p.write(buf);
            }
            Self::SitesRegister(p) => {
                Self::TAG_SITES_REGISTER.write(buf);
                p.write(buf);
            }
            Self::SiteDelegate(p) => {
                Self::TAG_SITE_DELEGATE.write(buf);
                p.write(buf);
            }
            Self::SiteRevoke(p) => {
                Self::TAG_SITE_REVOKE.write(buf);
                p.write(buf);
            }
            Self::EdgeLimit(p) => {
                Self::TAG_EDGE_LIMIT.write(buf);
                p.write(buf);
            }
            Self::MarketConfig(p) => {
                Self::TAG_MARKET_CONFIG.write(buf);
                p.write(buf);
            }
            Self::GridMode(p) => {
                Self::TAG_GRID_MODE.write(buf);
                p.write(buf);
            }
            Self::UpstreamPrices(p) => {
                Self::TAG_UPSTREAM_PRICES.write(buf);
                p.write(buf);
            }
            Self::Bids(p) => {
                Self::TAG_BIDS.write(buf);
                p.write(buf);
            }
            Self::MeterRegister(p) => {
                Self::TAG_METER_REGISTER.write(buf);
                p.write(buf);
            }
            Self::HeadEnd(p) => {
                Self::TAG_HEAD_END.write(buf);
                p.write(buf);
            }
            Self::Reading(p) => {
                Self::TAG_READING.write(buf);
                p.write(buf);
            }
            Self::MeterBatch(p) => {
                Self::TAG_METER_BATCH.write(buf);
                p.write(buf);
            }
            Self::SettlementAdjust(p) => {
                Self::TAG_SETTLEMENT_ADJUST.write(buf);
                p.write(buf);
            }
            Self::ContractP2p(p) => {
                Self::TAG_CONTRACT_P2P.write(buf);
                p.write(buf);
            }
            Self::ContractCancel(p) => {
                Self::TAG_CONTRACT_CANCEL.write(buf);
                p.write(buf);
            }
            Self::FlexRequest(p) => {
                Self::TAG_FLEX_REQUEST.write(buf);
                p.write(buf);
            }
            Self::FlexOffer(p) => {
                Self::TAG_FLEX_OFFER.write(buf);
                p.write(buf);
            }
            Self::FlexAccept(p) => {
                Self::TAG_FLEX_ACCEPT.write(buf);
                p.write(buf);
            }
            Self::ContractEv(p) => {
                Self::TAG_CONTRACT_EV.write(buf);
                p.write(buf);
            }
            Self::Enroll(p) => {
                Self::TAG_ENROLL.write(buf);
                p.write(buf);
            }
            Self::RoleSet(p) => {
                Self::TAG_ROLE_SET.write(buf);
                p.write(buf);
            }
            Self::KeyRotate(p) => {
                Self::TAG_KEY_ROTATE.write(buf);
                p.write(buf);
            }
            Self::KeyReset(p) => {
                Self::TAG_KEY_RESET.write(buf);
                p.write(buf);
            }
            Self::AccountRevoke(p) => {
                Self::TAG_ACCOUNT_REVOKE.write(buf);
                p.write(buf);
            }
        }
    }
}

impl EncodeSize for Payload {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Transfer { .. } | Self::Mint { .. } => AccountId::SIZE + Amount::SIZE,
            Self::Burn { .. } => Amount::SIZE,
            Self::FeederRegister(p) => p.encode_size(),
            Self::SitesRegister(p) => p.encode_size(),
            Self::SiteDelegate(p) => p.encode_size(),
            Self::SiteRevoke(p) => p.encode_size(),
            Self::EdgeLimit(p) => p.encode_size(),
            Self::MarketConfig(p) => p.encode_size(),
            Self::GridMode(p) => p.encode_size(),
            Self::UpstreamPrices(p) => p.encode_size(),
            Self::Bids(p) => p.encode_size(),
            Self::MeterRegister(p) => p.encode_size(),
            Self::HeadEnd(p) => p.encode_size(),
            Self::Reading(p) => p.encode_size(),
            Self::MeterBatch(p) => p.encode_size(),
            Self::SettlementAdjust(p) => p.encode_size(),
            Self::ContractP2p(p) => p.encode_size(),
            Self::ContractCancel(p) => p.encode_size(),
            Self::FlexRequest(p) => p.encode_size(),
            Self::FlexOffer(p) => p.encode_size(),
            Self::FlexAccept(p) => p.encode_size(),
            Self::ContractEv(p) => p.encode_size(),
            Self::Enroll(p) => p.encode_size(),
            Self::RoleSet(p) => p.encode_size(),
            Self::KeyRotate(p) => p.encode_size(),
            Self::KeyReset(p) => p.encode_size(),
            Self::AccountRevoke(p) => p.encode_size(),
        }
    }
}

impl Read for Payload {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            Self::TAG_TRANSFER => Ok(Self::Transfer {
                to: AccountId::read(buf)?,
                amount: Amount::read(buf)?,
            }),
            Self::TAG_MINT => Ok(Self::Mint {
                to: AccountId::read(buf)?,
                amount: Amount::read(buf)?,
            }),
            Self::TAG_BURN => Ok(Self::Burn {
                amount: Amount::read(buf)?,
            }),
            Self::TAG_FEEDER_REGISTER => Ok(Self::FeederRegister(ReadExt::read(buf)?)),
            Self::TAG_SITES_REGISTER => Ok(Self::SitesRegister(ReadExt::read(buf)?)),
            Self::TAG_SITE_DELEGATE => Ok(Self::SiteDelegate(ReadExt::read(buf)?)),
            Self::TAG_SITE_REVOKE => Ok(Self::SiteRevoke(ReadExt::read(buf)?)),
            Self::TAG_EDGE_LIMIT => Ok(Self::EdgeLimit(ReadExt::read(buf)?)),
            Self::TAG_MARKET_CONFIG => Ok(Self::MarketConfig(ReadExt::read(buf)?)),
            Self::TAG_GRID_MODE => Ok(Self::GridMode(ReadExt::read(buf)?)),
            Self::TAG_UPSTREAM_PRICES => Ok(Self::UpstreamPrices(ReadExt::read(buf)?)),
            Self::TAG_BIDS => Ok(Self::Bids(ReadExt::read(buf)?)),
            Self::TAG_METER_REGISTER => Ok(Self::MeterRegister(ReadExt::read(buf)?)),
            Self::TAG_HEAD_END => Ok(Self::HeadEnd(ReadExt::read(buf)?)),
            Self::TAG_READING => Ok(Self::Reading(ReadExt::read(buf)?)),
            Self::TAG_METER_BATCH => Ok(Self::MeterBatch(ReadExt::read(buf)?)),
            Self::TAG_SETTLEMENT_ADJUST => Ok(Self::SettlementAdjust(ReadExt::read(buf)?)),
            Self::TAG_CONTRACT_P2P => Ok(Self::ContractP2p(ReadExt::read(buf)?)),
            Self::TAG_CONTRACT_CANCEL => Ok(Self::ContractCancel(ReadExt::read(buf)?)),
            Self::TAG_FLEX_REQUEST => Ok(Self::FlexRequest(ReadExt::read(buf)?)),
            Self::TAG_FLEX_OFFER => Ok(Self::FlexOffer(ReadExt::read(buf)?)),
            Self::TAG_FLEX_ACCEPT => Ok(Self::FlexAccept(ReadExt::read(buf)?)),
            Self::TAG_CONTRACT_EV => Ok(Self::ContractEv(ReadExt::read(buf)?)),
            Self::TAG_ENROLL => Ok(Self::Enroll(ReadExt::read(buf)?)),
            Self::TAG_ROLE_SET => Ok(Self::RoleSet(ReadExt::read(buf)?)),
            Self::TAG_KEY_ROTATE => Ok(Self::KeyRotate(ReadExt::read(buf)?)),
            Self::TAG_KEY_RESET => Ok(Self::KeyReset(ReadExt::read(buf)?)),
            Self::TAG_ACCOUNT_REVOKE => Ok(Self::AccountRevoke(ReadExt::read(buf)?)),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxBody {
    /// The chain this transaction is for.
    pub chain_id: ChainId,
    /// The account that signs and pays.
    pub sender: AccountId,
    /// The key that signs, when it is not the sender's id (after a key rotation, AC-4); never
    /// equal to `sender`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<AccountId>,
    /// The sender's next nonce: 0 for its first transaction, then one more each time.
    pub nonce: u64,
    /// What to do.
    pub payload: Payload,
}

impl Write for TxBody {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain_id.write(buf);
        self.sender.write(buf);
        match &self.signer {
            None => 0u8.write(buf),
            Some(k) => {
                1u8.write(buf);
                k.write(buf);
            }
        }
        self.nonce.write(buf);
        self.payload.write(buf);
    }
}

impl EncodeSize for TxBody {
    fn encode_size(&self) -> usize {
        self.chain_id.encode_size()
            + AccountId::SIZE
            + 1
            + self.signer.map_or(0, |_| AccountId::SIZE)
            + u64::SIZE
            + self.payload.encode_size()
    }
}

impl Read for TxBody {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let chain_id = ChainId::read(buf)?;
        let sender = AccountId::read(buf)?;
        let signer = match u8::read(buf)? {
            0 => None,
            1 => {
                let k = AccountId::read(buf)?;
                // One encoding per body: a signer equal to the sender is written as absent.
                if k == sender {
                    return Err(CodecError::Invalid("TxBody", "signer equals sender"));
                }
                Some(k)
            }
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            chain_id,
            sender,
            signer,
            nonce: u64::read(buf)?,
            payload: Payload::read(buf)?,
        })
    }
}

/// Why a transaction's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The transaction names another chain.
    #[error("wrong chain id: transaction is for {got:?}, this chain is {expected:?}")]
    WrongChain {
        /// This chain's id.
        expected: ChainId,
        /// The id in the transaction.
        got: ChainId,
    },
    /// The signing key's bytes (the signer, or else the sender) are not an ed25519 public key.
    #[error("signing key {0} is not an ed25519 public key")]
    SenderNotAKey(AccountId),
    /// The signature does not verify against the sender and body.
    #[error("bad signature")]
    BadSignature,
}

/// A signed transaction. Immutable once built: its hash and encoded body are computed once.
#[derive(Clone, Debug)]
pub struct Tx {
    body: TxBody,
    signature: Signature,
    body_bytes: Bytes,
    hash: Hash,
}

impl PartialEq for Tx {
    fn eq(&self, other: &Self) -> bool {
        self.body_bytes == other.body_bytes && self.signature == other.signature
    }
}

impl Eq for Tx {}

impl Tx {
    /// Signs `body` with `key`. The caller is responsible for `body.signer` (or, when absent,
    /// `body.sender`) naming `key`.
    pub fn sign(body: TxBody, key: &PrivateKey) -> Self {
        let body_bytes = body.encode();
        let signature = key.sign(TX_NAMESPACE, &body_bytes);
        Self::from_parts(body, body_bytes, signature)
    }

    /// Assembles a transaction from a body and a signature (not checked here).
    pub fn from_body_and_signature(body: TxBody, signature: Signature) -> Self {
        let body_bytes = body.encode();
        Self::from_parts(body, body_bytes, signature)
    }

    fn from_parts(body: TxBody, body_bytes: Bytes, signature: Signature) -> Self {
        let hash = Sha256::hash(&[&body_bytes]);
        Self {
            body,
            signature,
            body_bytes,
            hash,
        }
    }

    /// The signed body.
    pub const fn body(&self) -> &TxBody {
        &self.body
    }

    /// The signature.
    pub const fn signature(&self) -> &Signature {
        &self.signature
    }

    /// SHA-256 of the encoded body: the transaction's identity.
    pub const fn hash(&self) -> Hash {
        self.hash
    }

    /// The encoded body, exactly the bytes that were signed (without the namespace).
    pub const fn body_bytes(&self) -> &Bytes {
        &self.body_bytes
    }

    /// The account whose key signs: the signer, or else the sender.
    pub fn signing_account(&self) -> AccountId {
        self.body.signer.unwrap_or(self.body.sender)
    }

    /// The signing key, if its bytes are one ([`Self::signing_account`]).
    pub fn sender_key(&self) -> Result<PublicKey, SignatureError> {
        let id = self.signing_account();
        id.to_public_key().ok_or(SignatureError::SenderNotAKey(id))
    }

    /// Checks the chain id and the signature.
    pub fn verify(&self, chain_id: &ChainId) -> Result<(), SignatureError> {
        self.check_chain(chain_id)?;
        let key = self.sender_key()?;
        if key.verify(TX_NAMESPACE, &self.body_bytes, &self.signature) {
            Ok(())
        } else {
            Err(SignatureError::BadSignature)
        }
    }

    /// Checks only that the transaction is for `chain_id`.
    pub fn check_chain(&self, chain_id: &ChainId) -> Result<(), SignatureError> {
        if &self.body.chain_id != chain_id {
            return Err(SignatureError::WrongChain {
                expected: chain_id.clone(),
                got: self.body.chain_id.clone(),
            });
        }
        Ok(())
    }
}

/// Verifies the chain id and signature of every transaction in `txs`, batching the signature
/// checks. On failure it names the index of the first bad transaction.
///
/// `rng` seeds the batch verifier's random coefficients (see the batch-verification notes of
/// `commonware-cryptography`); it affects only the probability of accepting a forged batch,
/// never the verdict on valid signatures, so the outcome is deterministic for honest input.
pub fn verify_batch(
    txs: &[Tx],
    chain_id: &ChainId,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(), (usize, SignatureError)> {
    // Decoding a public key decompresses a curve point, about a third of a signature check:
    // decode each sender once per batch (an aggregator sends many transactions from one account).
    let mut decoded: std::collections::HashMap<AccountId, PublicKey> =
        std::collections::HashMap::new();
    let mut keys = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        tx.check_chain(chain_id).map_err(|e| (i, e))?;
        let key = match decoded.get(&tx.signing_account()) {
            Some(key) => key.clone(),
            None => {
                let key = tx.sender_key().map_err(|e| (i, e))?;
                decoded.insert(tx.signing_account(), key.clone());
                key
            }
        };
        keys.push(key);
    }
    if txs.is_empty() {
        return Ok(());
    }
    let ok = PublicKey::verify_batch(
        rng,
        txs,
        |i, tx| BatchEntry {
            namespace: TX_NAMESPACE,
            message: &tx.body_bytes,
            public_key: &keys[i],
            signature: &tx.signature,
        },
        &commonware_parallel::Sequential,
    );
    if ok {
        return Ok(());
    }
    // The batch failed: find the first culprit one by one, so the error is precise.
    for (i, (tx, key)) in txs.iter().zip(&keys).enumerate() {
        if !key.verify(TX_NAMESPACE, &tx.body_bytes, &tx.signature) {
            return Err((i, SignatureError::BadSignature));
        }
    }
    // Batch and single verification disagree only for adversarial signatures that single
    // verification accepts; ZIP-215 makes the two equivalent, so this is unreachable in
    // practice. Refuse rather than accept what the batch refused.
    Err((0, SignatureError::BadSignature))
}

impl Write for Tx {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.body_bytes);
        self.signature.write(buf);
    }
}

impl EncodeSize for Tx {
    fn encode_size(&self) -> usize {
        self.body_bytes.len() + Signature::SIZE
    }
}

impl Read for Tx {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let start = buf.remaining();
        let body = TxBody::read(buf)?;
        let body_len = start - buf.remaining();
        let signature = Signature::read(buf)?;
        if body_len + Signature::SIZE > body.payload.bytes_max() {
            return Err(CodecError::InvalidLength(body_len + Signature::SIZE));
        }
        // Re-encode rather than keep the input slice: the codec is canonical (fixed-width
        // integers, tagged enums, bounded lengths), so the bytes are identical, and the
        // signature is then checked over exactly what the ledger will interpret.
        let body_bytes = body.encode();
        debug_assert_eq!(body_bytes.len(), body_len);
        Ok(Self::from_parts(body, body_bytes, signature))
    }
}

/// The smallest instance of every payload kind, in [`TxKind::ALL`] order (for tests: the
/// codec's, and the authorization matrix of `bcte-ledger`). The match makes a new kind
/// without an example here fail to compile.
#[doc(hidden)]
pub fn examples() -> Vec<Payload> {
    use crate::market::*;
    use commonware_codec::DecodeExt;
    let f = || FeederId::new("f").unwrap();
    let s = || SiteId::new("s").unwrap();
    let a = AccountId::from_public_key(&PrivateKey::from_seed(9).public_key());
    let all = vec![
        Payload::Transfer {
            to: a,
            amount: Amount(1),
        },
        Payload::Mint {
            to: a,
            amount: Amount(1),
        },
        Payload::Burn { amount: Amount(1) },
        Payload::FeederRegister(FeederRegister {
            feeder: f(),
            epoch_ms: None,
            config: MarketConfig::DEFAULT,
            nodes: vec![],
            market_account: None,
            upstream_account: None,
        }),
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![],
        }),
        Payload::SiteDelegate(SiteDelegate {
            feeder: f(),
            site: s(),
            aggregator: a,
        }),
        Payload::SiteRevoke(SiteRevoke {
            feeder: f(),
            site: s(),
        }),
        Payload::EdgeLimit(EdgeLimit {
            feeder: f(),
            from: Interval(0),
            node: NodeId::new("n").unwrap(),
            import_limit: None,
            export_limit: None,
        }),
        Payload::MarketConfig(MarketConfigure {
            feeder: f(),
            from: Interval(0),
            config: MarketConfig::DEFAULT,
        }),
        Payload::GridMode(GridModeSet {
            feeder: f(),
            from: Interval(0),
            mode: GridMode::Islanded,
        }),
        Payload::UpstreamPrices(UpstreamPrices {
            feeder: f(),
            from: Interval(0),
            prices: vec![],
        }),
        Payload::Bids(Bids {
            feeder: f(),
            bids: vec![],
        }),
        Payload::MeterRegister(crate::meter::MeterRegister {
            feeder: f(),
            site: s(),
            meter: a,
        }),
        Payload::HeadEnd(crate::meter::HeadEndSet {
            feeder: f(),
            account: a,
            allowed: true,
        }),
        Payload::Reading(crate::meter::Reading {
            feeder: f(),
            site: s(),
            interval: Interval(0),
            wh: crate::WattHours(0),
        }),
        Payload::MeterBatch(crate::meter::MeterBatch {
            feeder: f(),
            interval: Interval(0),
            root: Hash::from([0; 32]),
            readings: vec![],
        }),
        Payload::SettlementAdjust(crate::meter::SettlementAdjust {
            feeder: f(),
            site: s(),
            interval: Interval(0),
            amount: 0,
            memo: String::new(),
        }),
        Payload::ContractP2p(crate::contract::ContractP2p {
            terms: crate::contract::P2pTerms {
                feeder: f(),
                seller: s(),
                buyer: s(),
                power: crate::Watts(0),
                from: Interval(0),
                to: Interval(0),
                price: crate::Price(0),
                salt: 0,
            },
            consent: commonware_cryptography::ed25519::Signature::decode(
                commonware_codec::Copying(&[0u8; 64][..]),
            )
            .unwrap(),
        }),
        Payload::ContractCancel(crate::contract::ContractCancel {
            feeder: f(),
            id: Hash::from([0; 32]),
            from: Interval(0),
            consent: commonware_cryptography::ed25519::Signature::decode(
                commonware_codec::Copying(&[0u8; 64][..]),
            )
            .unwrap(),
        }),
        Payload::FlexRequest(crate::flex::FlexRequest {
            feeder: f(),
            direction: crate::flex::FlexDirection::Reduce,
            target: crate::flex::FlexTarget::Sites(vec![s()]),
            power: crate::Watts(0),
            from: Interval(0),
            to: Interval(0),
            price: crate::Price(0),
            gate: Interval(0),
            salt: 0,
        }),
        Payload::FlexOffer(crate::flex::FlexOffer {
            feeder: f(),
            request: Hash::from([0; 32]),
            sites: vec![s()],
            power: crate::Watts(0),
        }),
        Payload::FlexAccept(crate::flex::FlexAccept {
            feeder: f(),
            request: Hash::from([0; 32]),
            offers: vec![0],
        }),
        Payload::ContractEv(crate::contract::ContractEv {
            terms: crate::contract::EvTerms {
                feeder: f(),
                site: s(),
                provider: AccountId::from_public_key(
                    &commonware_cryptography::ed25519::PrivateKey::from_seed(0).public_key(),
                ),
                energy_wh: 0,
                from: Interval(0),
                deadline: Interval(0),
                slow: crate::contract::EvOption {
                    power: crate::Watts(0),
                    price: crate::Price(0),
                },
                fast: crate::contract::EvOption {
                    power: crate::Watts(0),
                    price: crate::Price(0),
                },
                choice: crate::contract::EvChoice::Slow,
                salt: 0,
            },
            consent: commonware_cryptography::ed25519::Signature::decode(
                commonware_codec::Copying(&[0u8; 64][..]),
            )
            .unwrap(),
        }),
        Payload::Enroll(crate::role::Enroll {
            participants: vec![crate::role::Enrollment {
                participant: crate::role::ParticipantId([1; 16]),
                commitment: Hash::from([0; 32]),
                roles: crate::role::Roles::NONE,
                accounts: vec![AccountId([1; 32])],
            }],
        }),
        Payload::RoleSet(crate::role::RoleSet {
            account: AccountId([1; 32]),
            grant: true,
            roles: crate::role::Roles::NONE,
        }),
        Payload::KeyRotate(crate::role::KeyRotate {
            new_key: AccountId([1; 32]),
        }),
        Payload::KeyReset(crate::role::KeyReset {
            account: AccountId([1; 32]),
            new_key: AccountId([2; 32]),
        }),
        Payload::AccountRevoke(crate::role::AccountRevoke {
            accounts: vec![AccountId([1; 32])],
        }),
    ];
    for p in &all {
        match p {
            Payload::Transfer { .. }
            | Payload::Mint { .. }
            | Payload::Burn { .. }
            | Payload::FeederRegister(_)
            | Payload::SitesRegister(_)
            | Payload::SiteDelegate(_)
            | Payload::SiteRevoke(_)
            | Payload::EdgeLimit(_)
            | Payload::MarketConfig(_)
            | Payload::GridMode(_)
            | Payload::UpstreamPrices(_)
            | Payload::Bids(_)
            | Payload::MeterRegister(_)
            | Payload::HeadEnd(_)
            | Payload::Reading(_)
            | Payload::MeterBatch(_)
            | Payload::SettlementAdjust(_)
            | Payload::ContractP2p(_)
            | Payload::ContractCancel(_)
            | Payload::FlexRequest(_)
            | Payload::FlexOffer(_)
            | Payload::FlexAccept(_)
            | Payload::ContractEv(_)
            | Payload::Enroll(_)
            | Payload::RoleSet(_)
            | Payload::KeyRotate(_)
            | Payload::KeyReset(_)
            | Payload::AccountRevoke(_) => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Decode, DecodeExt};

    fn key(seed: u64) -> PrivateKey {
        PrivateKey::from_seed(seed)
    }

    fn transfer(from: &PrivateKey, nonce: u64, chain: &str) -> Tx {
        let body = TxBody {
            chain_id: ChainId::new(chain).unwrap(),
            sender: AccountId::from_public_key(&from.public_key()),
            signer: None,
            nonce,
            payload: Payload::Transfer {
                to: AccountId::from_public_key(&key(2).public_key()),
                amount: Amount(5),
            },
        };
        Tx::sign(body, from)
    }

    #[test]
    fn signed_transaction_verifies_only_on_its_chain() {
        let tx = transfer(&key(1), 0, "alpha");
        assert_eq!(tx.verify(&ChainId::new("alpha").unwrap()), Ok(()));
        assert!(matches!(
            tx.verify(&ChainId::new("beta").unwrap()),
            Err(SignatureError::WrongChain { .. })
        ));
    }

    #[test]
    fn altered_body_fails_signature() {
        let tx = transfer(&key(1), 0, "alpha");
        let mut body = tx.body().clone();
        body.nonce = 1;
        let forged = Tx::from_body_and_signature(body, tx.signature().clone());
        assert_eq!(
            forged.verify(&ChainId::new("alpha").unwrap()),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn encoding_round_trips_and_hash_ignores_signature_bytes() {
        let tx = transfer(&key(1), 3, "alpha");
        let bytes = tx.encode();
        let back = Tx::decode(bytes.clone()).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.hash(), tx.hash());
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn decoder_refuses_truncated_and_trailing_bytes_and_unknown_tags() {
        let bytes = transfer(&key(1), 3, "alpha").encode().to_vec();
        for cut in 0..bytes.len() {
            assert!(
                Tx::decode(commonware_codec::Copying(&bytes[..cut])).is_err(),
                "cut {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Tx::decode(commonware_codec::Copying(&long)).is_err());
        // The payload tag sits right after chain id (1 + 5), sender (32), the absent signer (1)
        // and nonce (8).
        let mut bad_tag = bytes;
        bad_tag[1 + 5 + 32 + 1 + 8] = 9;
        assert!(matches!(
            Tx::decode_cfg(commonware_codec::Copying(&bad_tag), &()),
            Err(CodecError::InvalidEnum(9))
        ));
    }

    #[test]
    fn batch_verification_names_the_first_bad_transaction() {
        let chain = ChainId::new("alpha").unwrap();
        let mut txs: Vec<Tx> = (0..8).map(|n| transfer(&key(1), n, "alpha")).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(verify_batch(&txs, &chain, &mut rng), Ok(()));
        let mut body = txs[5].body().clone();
        body.nonce = 99;
        txs[5] = Tx::from_body_and_signature(body, txs[5].signature().clone());
        assert_eq!(
            verify_batch(&txs, &chain, &mut rng),
            Err((5, SignatureError::BadSignature))
        );
        txs[2] = transfer(&key(1), 2, "beta");
        assert!(matches!(
            verify_batch(&txs, &chain, &mut rng),
            Err((2, SignatureError::WrongChain { .. }))
        ));
    }

    use rand::SeedableRng;

    #[test]
    fn every_payload_kind_round_trips_and_none_is_below_the_minimum_size() {
        let all = examples();
        assert_eq!(all.len(), TxKind::ALL.len(), "one example per kind");
        let kinds: Vec<TxKind> = all.iter().map(Payload::tx_kind).collect();
        assert_eq!(kinds, TxKind::ALL, "in declaration order");
        let smallest = all.iter().map(EncodeSize::encode_size).min().unwrap();
        assert_eq!(smallest, Payload::ENCODED_SIZE_MIN);
        for payload in all {
            let bytes = payload.encode();
            assert_eq!(bytes.len(), payload.encode_size(), "{}", payload.kind());
            assert!(
                bytes.len() >= Payload::ENCODED_SIZE_MIN,
                "{}",
                payload.kind()
            );
            assert_eq!(Payload::decode(bytes).unwrap(), payload);
        }
    }

    #[test]
    fn bulk_kinds_may_exceed_the_ordinary_size_and_others_may_not() {
        use crate::market::*;
        let key = key(1);
        let sign = |payload: Payload| {
            Tx::sign(
                TxBody {
                    chain_id: ChainId::new("alpha").unwrap(),
                    sender: AccountId::from_public_key(&key.public_key()),
                    signer: None,
                    nonce: 0,
                    payload,
                },
                &key,
            )
        };
        let prices = |n: usize| {
            Payload::UpstreamPrices(UpstreamPrices {
                feeder: FeederId::new("f").unwrap(),
                from: Interval(0),
                prices: vec![
                    UpstreamPrice {
                        import_price: crate::Price(1),
                        export_price: crate::Price(0),
                    };
                    n
                ],
            })
        };
        let big = sign(prices(4_000)).encode();
        assert!(big.len() > TX_BYTES_MAX);
        assert!(Tx::decode(big).is_ok());
        let huge = sign(prices(BULK_TX_BYTES_MAX / 16)).encode();
        assert!(Tx::decode(huge).is_err());
    }
}
