//! Genesis: the chain id, the validators, the token authority and the initial token allocations.
//!
//! A genesis is a plain JSON document (see `docs/files.md`). Every node of a chain starts from
//! the same one; the ledger turns it into the state at height 0 and the genesis block.

use crate::{
    ids::{AccountId, ChainId},
    units::Amount,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The most validators a chain may have.
pub const VALIDATORS_MAX: usize = 100;

/// The most initial allocations.
pub const ALLOCATIONS_MAX: usize = 100_000;

/// A validator of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    /// A human name (the operator), for logs and dashboards.
    pub name: String,
    /// The validator's ed25519 public key, as an ACCOUNT string.
    pub public_key: AccountId,
}

/// Tokens an account holds at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The account.
    pub account: AccountId,
    /// Base units.
    pub amount: Amount,
    /// Roles the account holds from genesis (AC-1.3): a devnet's or a benchmark's members,
    /// enrolled without the registrar. Empty: the account may only receive.
    #[serde(default, skip_serializing_if = "no_roles")]
    pub roles: crate::role::Roles,
}

/// The genesis of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id signed into every transaction.
    pub chain_id: ChainId,
    /// The genesis block's timestamp, in ms since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The validator set, in a fixed order.
    pub validators: Vec<Validator>,
    /// The first DSO (AC-1.3): it holds the DSO role from genesis, and a feeder registered
    /// without a market or upstream account uses it for both. Also the first registrar unless
    /// `registrar` names another account.
    pub authority: AccountId,
    /// The first registrar, when it is not `authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrar: Option<AccountId>,
    /// Initial balances.
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    /// How fast the markets' clock runs: market time = genesis time + (block time − genesis
    /// time) × speed (docs/market-chain-rules.md, MC-1). 1, the default, on a real network; a
    /// simulated day at a few dozen blocks per interval needs a few thousand.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub market_clock_speed: u32,
    /// The currency the tokens stand for, an ISO 4217 code (`EUR`, the default, `USD`, ...):
    /// what prices are quoted in outside the chain (the OpenADR VTN's events). Not in the
    /// state: it changes no root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The currency of a genesis that names none.
pub const DEFAULT_CURRENCY: &str = "EUR";

impl Genesis {
    /// The currency the tokens stand for (ISO 4217).
    pub fn currency(&self) -> &str {
        self.currency.as_deref().unwrap_or(DEFAULT_CURRENCY)
    }
}

/// The fastest market clock a genesis may set.
pub const MARKET_CLOCK_SPEED_MAX: u32 = 1_000_000;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn no_roles(r: &crate::role::Roles) -> bool {
    r.is_empty()
}

const fn one() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn is_one(v: &u32) -> bool {
    *v == 1
}

/// Why a genesis is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenesisError {
    /// No validators.
    #[error("genesis has no validators")]
    NoValidators,
    /// Too many validators.
    #[error("genesis has {0} validators; at most {VALIDATORS_MAX} are allowed")]
    TooManyValidators(usize),
    /// A validator key appears twice.
    #[error("validator {0} appears twice in genesis")]
    DuplicateValidator(AccountId),
    /// A validator's key is not a public key.
    #[error("validator {0:?} has a public key that is not an ed25519 key")]
    BadValidatorKey(String),
    /// Too many allocations.
    #[error("genesis has {0} allocations; at most {ALLOCATIONS_MAX} are allowed")]
    TooManyAllocations(usize),
    /// An account is allocated twice.
    #[error("account {0} is allocated twice in genesis")]
    DuplicateAllocation(AccountId),
    /// The allocations sum past `u64::MAX`.
    #[error("genesis allocations overflow the token supply")]
    SupplyOverflow,
    /// The currency is not an ISO 4217 code.
    #[error("currency {0:?} is not an ISO 4217 code (three capital letters, such as EUR)")]
    BadCurrency(String),
    /// The market clock speed is zero or too fast.
    #[error("market_clock_speed {0} is not within 1 to {MARKET_CLOCK_SPEED_MAX}")]
    BadClockSpeed(u32),
}

impl Genesis {
    /// Checks the rules a genesis must follow, and returns the total supply.
    pub fn validate(&self) -> Result<Amount, GenesisError> {
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if self.validators.len() > VALIDATORS_MAX {
            return Err(GenesisError::TooManyValidators(self.validators.len()));
        }
        let mut seen = BTreeSet::new();
        for v in &self.validators {
            if v.public_key.to_public_key().is_none() {
                return Err(GenesisError::BadValidatorKey(v.name.clone()));
            }
            if !seen.insert(v.public_key) {
                return Err(GenesisError::DuplicateValidator(v.public_key));
            }
        }
        if let Some(c) = &self.currency
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(GenesisError::BadCurrency(c.clone()));
        }
        if !(1..=MARKET_CLOCK_SPEED_MAX).contains(&self.market_clock_speed) {
            return Err(GenesisError::BadClockSpeed(self.market_clock_speed));
        }
        if self.allocations.len() > ALLOCATIONS_MAX {
            return Err(GenesisError::TooManyAllocations(self.allocations.len()));
        }
        let mut seen = BTreeSet::new();
        for a in &self.allocations {
            if !seen.insert(a.account) {
                return Err(GenesisError::DuplicateAllocation(a.account));
            }
        }
        Amount::checked_sum(self.allocations.iter().map(|a| a.amount))
            .ok_or(GenesisError::SupplyOverflow)
    }
}

/// A key file: an ed25519 key pair as JSON. The private key is lowercase hex of its 32-byte seed.
///
/// `account` and `public_key` are the same string (an account is its public key); both are
/// written so that a reader never has to know that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The account this key controls.
    pub account: AccountId,
    /// The public key, hex.
    pub public_key: String,
    /// The private key, hex. Keep the file private.
    pub private_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    fn account(seed: u64) -> AccountId {
        AccountId::from_public_key(&PrivateKey::from_seed(seed).public_key())
    }

    fn genesis() -> Genesis {
        Genesis {
            chain_id: ChainId::new("test").unwrap(),
            genesis_time_ms: 0,
            validators: vec![Validator {
                name: "dso".into(),
                public_key: account(1),
            }],
            authority: account(2),
            registrar: None,
            allocations: vec![Allocation {
                account: account(3),
                amount: Amount(10),
                roles: crate::Roles::one(crate::Role::Prosumer),
            }],
            market_clock_speed: 1,
            currency: None,
        }
    }

    #[test]
    fn valid_genesis_gives_its_supply() {
        assert_eq!(genesis().validate(), Ok(Amount(10)));
    }

    #[test]
    fn genesis_rules_are_enforced() {
        let mut g = genesis();
        g.validators.clear();
        assert_eq!(g.validate(), Err(GenesisError::NoValidators));
        let mut g = genesis();
        g.validators.push(g.validators[0].clone());
        assert!(matches!(
            g.validate(),
            Err(GenesisError::DuplicateValidator(_))
        ));
        let mut g = genesis();
        g.allocations.push(Allocation {
            account: account(3),
            amount: Amount(1),
            roles: crate::Roles::one(crate::Role::Prosumer),
        });
        assert!(matches!(
            g.validate(),
            Err(GenesisError::DuplicateAllocation(_))
        ));
        let mut g = genesis();
        g.allocations.push(Allocation {
            account: account(4),
            amount: Amount(u64::MAX),
            roles: crate::Roles::one(crate::Role::Prosumer),
        });
        assert_eq!(g.validate(), Err(GenesisError::SupplyOverflow));
    }

    #[test]
    fn genesis_json_refuses_unknown_fields() {
        let json = serde_json::to_string(&genesis()).unwrap();
        let back: Genesis = serde_json::from_str(&json).unwrap();
        assert_eq!(back, genesis());
        let bad = json.replacen("{", "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<Genesis>(&bad).is_err());
    }
}
