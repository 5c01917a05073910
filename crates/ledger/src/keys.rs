//! State keys: what the ledger stores, each with one byte layout and one string form.
//!
//! | key               | bytes             | value                         | string form       |
//! |-------------------|-------------------|-------------------------------|-------------------|
//! | an account        | `0x01 ‖ id:32`    | [`AccountState`](crate::AccountState) | `account/<ACCOUNT>` |
//! | total supply      | `0x02`            | `Amount`                      | `supply`          |
//! | chain head        | `0x03`            | [`Head`](crate::Head)         | `head`            |
//! | chain config      | `0x04`            | [`ChainConfig`](crate::ChainConfig) | `config`    |
//!
//! The authenticated tree is keyed by `SHA-256(key bytes)`; the bytes above are the preimage.

use bcte_types::{AccountId, IdError};
use core::{fmt, str::FromStr};
use thiserror::Error;

/// A key of the ledger state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// An account's balance and nonce.
    Account(AccountId),
    /// The total supply of the settlement token.
    Supply,
    /// The height, time and parent of the last executed block.
    Head,
    /// The chain's fixed configuration (chain id, authority, validators).
    Config,
}

/// Why bytes or a string are not a state key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Unknown tag byte or bad length.
    #[error("not a state key encoding")]
    Bytes,
    /// Unknown string form.
    #[error("unknown state key {0:?}: expected account/<ACCOUNT>, supply, head or config")]
    Unknown(String),
    /// The account part is not an account.
    #[error("bad account in state key: {0}")]
    Account(#[from] IdError),
}

impl StateKey {
    const TAG_ACCOUNT: u8 = 0x01;
    const TAG_SUPPLY: u8 = 0x02;
    const TAG_HEAD: u8 = 0x03;
    const TAG_CONFIG: u8 = 0x04;

    /// The key's bytes (the preimage of its tree key).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Account(id) => {
                let mut v = Vec::with_capacity(33);
                v.push(Self::TAG_ACCOUNT);
                v.extend_from_slice(id.as_bytes());
                v
            }
            Self::Supply => vec![Self::TAG_SUPPLY],
            Self::Head => vec![Self::TAG_HEAD],
            Self::Config => vec![Self::TAG_CONFIG],
        }
    }

    /// Parses key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes {
            [Self::TAG_ACCOUNT, rest @ ..] if rest.len() == 32 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(rest);
                Ok(Self::Account(AccountId(id)))
            }
            [Self::TAG_SUPPLY] => Ok(Self::Supply),
            [Self::TAG_HEAD] => Ok(Self::Head),
            [Self::TAG_CONFIG] => Ok(Self::Config),
            _ => Err(KeyError::Bytes),
        }
    }

    /// The key of the authenticated tree: SHA-256 of the key bytes.
    pub fn tree_key(&self) -> jmt::KeyHash {
        jmt::KeyHash::with::<sha2::Sha256>(self.to_bytes())
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(id) => write!(f, "account/{id}"),
            Self::Supply => f.write_str("supply"),
            Self::Head => f.write_str("head"),
            Self::Config => f.write_str("config"),
        }
    }
}

impl FromStr for StateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        match s {
            "supply" => Ok(Self::Supply),
            "head" => Ok(Self::Head),
            "config" => Ok(Self::Config),
            _ => match s.strip_prefix("account/") {
                Some(id) => Ok(Self::Account(id.parse()?)),
                None => Err(KeyError::Unknown(s.chars().take(80).collect())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    #[test]
    fn keys_round_trip_through_bytes_and_strings() {
        let id = AccountId::from_public_key(&PrivateKey::from_seed(1).public_key());
        for key in [
            StateKey::Account(id),
            StateKey::Supply,
            StateKey::Head,
            StateKey::Config,
        ] {
            assert_eq!(StateKey::from_bytes(&key.to_bytes()), Ok(key));
            assert_eq!(key.to_string().parse::<StateKey>(), Ok(key));
        }
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(StateKey::from_bytes(&[]), Err(KeyError::Bytes));
        assert_eq!(StateKey::from_bytes(&[1, 2, 3]), Err(KeyError::Bytes));
        assert!(matches!(
            "balance".parse::<StateKey>(),
            Err(KeyError::Unknown(_))
        ));
        assert!(matches!(
            "account/xyz".parse::<StateKey>(),
            Err(KeyError::Account(_))
        ));
    }
}
