//! Authorization: the one table of who may send what (`docs/access-rules.md`, AC-3).
//!
//! [`rule_of`] gives, for every transaction kind, the roles that may send it (any one of
//! them) and the object the sender must own or be delegated, and the driver enforces the roles
//! in one place ([`authorize`]) before any domain sees the transaction; the same function
//! pre-checks admission at the mempool. The object checks (the owner of a site, its
//! delegated aggregator, the site's meter, a contract's parties) need the object's state and
//! are made by the domain that owns the object, against the [`Object`] the table names.
//!
//! The table is also written out in `docs/access-rules.md`; a test parses that table and
//! checks it equals this one, and walks every kind against every role.

use crate::state::AccountState;
use bcte_types::{AccountId, RejectReason, Role, Roles, TxKind};

/// What the sender must own or be delegated, beyond its role (checked by the domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// Nothing beyond the role.
    None,
    /// The feeder it names: its operator, the DSO that registered it (MC-3.5).
    Feeder,
    /// The site it names: its owner (MC-3.3).
    SiteOwner,
    /// Every site it names: its owner or its delegated aggregator (MC-5.1, FX-2.1).
    SiteBidder,
    /// The site it names: the site's registered meter (ST-1.3).
    SiteMeter,
    /// The feeder it names: one of its head-end systems (ST-1.2).
    HeadEnd,
    /// The contract: the owner of one of its sites, with the other's signed consent (CT-1,
    /// CT-2), or the charging provider named in it (CT-3.2).
    ContractParty,
    /// The sender's own account (its key).
    Itself,
    /// An enrolled account it names (AC-2, AC-4.3, AC-5).
    Member,
}

impl Object {
    /// Its name in the documented table.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::Feeder => "feeder operator",
            Self::SiteOwner => "site owner",
            Self::SiteBidder => "site owner or delegated aggregator",
            Self::SiteMeter => "the site's meter",
            Self::HeadEnd => "head-end of the feeder",
            Self::ContractParty => "contract party",
            Self::Itself => "its own account",
            Self::Member => "an enrolled account",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The roles that may send the kind: any one of them.
    pub roles: Roles,
    /// What the sender must own or be delegated.
    pub object: Object,
}

const DSO: Roles = Roles::one(Role::Dso);
const REGISTRAR: Roles = Roles::one(Role::Registrar);
const METER: Roles = Roles::one(Role::Meter);
/// Who holds money and trades it: the market's participants and the DSO.
const HOLDERS: Roles = Roles::of(&[Role::Dso, Role::Aggregator, Role::Prosumer, Role::Consumer]);
/// Who owns sites.
const OWNERS: Roles = Roles::of(&[Role::Prosumer, Role::Consumer]);
/// Who bids for sites: their owners and aggregators.
const BIDDERS: Roles = Roles::of(&[Role::Aggregator, Role::Prosumer, Role::Consumer]);
/// Every role.
const ANY: Roles = Roles::of(&Role::ALL);

/// The table: who may send a transaction of `kind` (AC-3.1). One `match`, so that a new kind
/// without a row does not compile.
pub const fn rule_of(kind: TxKind) -> Rule {
    const fn r(roles: Roles, object: Object) -> Rule {
        Rule { roles, object }
    }
    match kind {
        // LR-3.3: any holder of money.
        TxKind::Transfer => r(HOLDERS, Object::None),
        // LR-3.1, LR-3.2.
        TxKind::Mint | TxKind::Burn => r(DSO, Object::None),
        // MC-3.1: a new feeder; the sender becomes its operator.
        TxKind::FeederRegister => r(DSO, Object::None),
        // MC-3.2, MC-3.4, MC-2.5, MC-4.1, MC-6, ST-1.1, ST-1.2, ST-3.3, FX-1.1, FX-2.2.
        TxKind::SitesRegister
        | TxKind::EdgeLimit
        | TxKind::MarketConfig
        | TxKind::GridMode
        | TxKind::UpstreamPrices
        | TxKind::MeterRegister
        | TxKind::HeadEnd
        | TxKind::SettlementAdjust
        | TxKind::FlexRequest
        | TxKind::FlexAccept => r(DSO, Object::Feeder),
        // MC-3.3.
        TxKind::SiteDelegate | TxKind::SiteRevoke => r(OWNERS, Object::SiteOwner),
        // MC-5.1, FX-2.1.
        TxKind::Bids | TxKind::FlexOffer => r(BIDDERS, Object::SiteBidder),
        // ST-1.3.
        TxKind::Reading => r(METER, Object::SiteMeter),
        // ST-1.2.
        TxKind::MeterBatch => r(METER, Object::HeadEnd),
        // CT-1, CT-2, CT-3.2.
        TxKind::ContractP2p | TxKind::ContractCancel | TxKind::ContractEv => {
            r(BIDDERS, Object::ContractParty)
        }
        // AC-2.1, AC-1.5, AC-4.3, AC-5.1.
        TxKind::Enroll => r(REGISTRAR, Object::None),
        TxKind::RoleSet | TxKind::KeyReset | TxKind::AccountRevoke => r(REGISTRAR, Object::Member),
        // AC-4.1: any member, for itself.
        TxKind::KeyRotate => r(ANY, Object::Itself),
    }
}

/// Checks a transaction's signer and sender against the sender's state, before anything
/// else (LR-2.3, AC-4.2, AC-5.1). A failure changes nothing, not even the nonce: a replaced
/// or stolen key cannot use up the account's nonces.
pub fn check_signer(
    sender: AccountId,
    signer: AccountId,
    account: &AccountState,
) -> Result<(), RejectReason> {
    let current = account.current_key(sender);
    if signer != current {
        return Err(if account.key.is_some() || signer == sender {
            RejectReason::KeyRotated { current }
        } else {
            RejectReason::NotAccountKey
        });
    }
    if account.revoked {
        return Err(RejectReason::Revoked { account: sender });
    }
    Ok(())
}

/// Refuses a transaction of `kind` whose sender holds none of the roles the table gives it
/// (AC-3.2).
pub fn authorize(account: &AccountState, kind: TxKind) -> Result<(), RejectReason> {
    let rule = rule_of(kind);
    if account.roles.intersects(rule.roles) {
        Ok(())
    } else {
        Err(RejectReason::MissingRole {
            kind,
            needs: rule.roles,
        })
    }
}
