//! Authorization: which transactions only the chain's authority may send.
//!
//! One table ([`privilege_of`]) says, for every payload kind, whether it needs the authority
//! (the genesis token authority, who is the DSO and registrar until roles arrive), and the
//! driver enforces it in one place ([`authorize`]) before any domain sees the transaction.
//! What depends on an object (the owner of a site, its delegated aggregator) is checked by the
//! domain that owns the object, against the object's state.

use crate::state::ChainConfig;
use bcte_types::{AccountId, Payload, Privilege, RejectReason};

/// The privilege a payload needs, or `None` if any account may send it (subject to the
/// domain's own checks of ownership and delegation).
pub const fn privilege_of(payload: &Payload) -> Option<Privilege> {
    match payload {
        // LR-3.1, LR-3.2.
        Payload::Mint { .. } => Some(Privilege::Mint),
        Payload::Burn { .. } => Some(Privilege::Burn),
        // MC-3.1, MC-3.2, MC-3.4.
        Payload::FeederRegister(_) => Some(Privilege::RegisterFeeder),
        Payload::SitesRegister(_) => Some(Privilege::RegisterSites),
        Payload::EdgeLimit(_) => Some(Privilege::SetEdgeLimit),
        // MC-2.5, MC-4.1, MC-6.
        Payload::MarketConfig(_) => Some(Privilege::SetMarketConfig),
        Payload::GridMode(_) => Some(Privilege::SetGridMode),
        Payload::UpstreamPrices(_) => Some(Privilege::PostUpstreamPrices),
        // ST-1.1, ST-1.2, ST-3.3.
        Payload::MeterRegister(_) => Some(Privilege::RegisterMeter),
        Payload::HeadEnd(_) => Some(Privilege::SetHeadEnd),
        Payload::SettlementAdjust(_) => Some(Privilege::AdjustSettlement),
        // FX-1.1, FX-2.2.
        Payload::FlexRequest(_) | Payload::FlexAccept(_) => Some(Privilege::RequestFlexibility),
        // LR-3.3; MC-3.3 (the site's owner); MC-5.1 (the owner or its aggregator).
        Payload::Transfer { .. }
        | Payload::SiteDelegate(_)
        | Payload::SiteRevoke(_)
        | Payload::Bids(_)
        // ST-1.3: the site's meter; ST-1.2: a head-end system of the feeder.
        | Payload::Reading(_)
        | Payload::MeterBatch(_)
        | Payload::ContractP2p(_)
        | Payload::ContractCancel(_)
        // CT-3.2: the charger's owner or the provider, with the other's consent.
        | Payload::ContractEv(_)
        // FX-2.1: the sites' owner or their aggregator.
        | Payload::FlexOffer(_) => None,
    }
}

/// Refuses a transaction whose sender lacks the privilege its payload needs.
pub fn authorize(
    config: &ChainConfig,
    sender: AccountId,
    payload: &Payload,
) -> Result<(), RejectReason> {
    match privilege_of(payload) {
        Some(action) if sender != config.authority => Err(RejectReason::Unauthorized { action }),
        _ => Ok(()),
    }
}
