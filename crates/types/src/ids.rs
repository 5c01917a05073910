//! Identifiers: accounts, chains, heights and 32-byte hashes, with their one string form each.
//!
//! An ACCOUNT is the lowercase hex of its 32-byte ed25519 public key (64 characters), in the CLI,
//! the API and every file. Parsing accepts either letter case; printing is always lowercase. A
//! CHAIN ID is 1 to 32 characters of `a-z`, `0-9` and `-`, and it is part of every signed
//! transaction so that a transaction for one chain is worthless on another.

use bytes::BufMut;
use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write, varint::UInt,
};
use commonware_cryptography::{ed25519, sha256};
use core::{fmt, str::FromStr};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use thiserror::Error;

/// A 32-byte SHA-256 digest: block hashes, transaction hashes, Merkle roots.
pub type Hash = sha256::Digest;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The string is not hex of the expected length.
    #[error("expected {expected} hex characters, got {got:?}")]
    NotHex {
        /// Number of hex characters expected.
        expected: usize,
        /// The offending input (truncated to 80 characters).
        got: String,
    },
    /// The 32 bytes are not the encoding of an ed25519 public key.
    #[error("{0} is not an ed25519 public key")]
    NotAPublicKey(String),
    /// The chain id has a bad length or character.
    #[error("invalid chain id {0:?}: use 1 to 32 characters of a-z, 0-9 and '-'")]
    ChainId(String),
    /// Another kind of id or name (a role, a participant id) does not parse; the message
    /// says what was expected.
    #[error("{0}")]
    Invalid(String),
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses exactly `N` bytes of hex (either case).
pub fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], IdError> {
    let s = s.trim();
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| IdError::NotHex {
        expected: 2 * N,
        got: truncate(s),
    })?;
    Ok(out)
}

/// Parses a [`Hash`] from 64 hex characters.
pub fn parse_hash(s: &str) -> Result<Hash, IdError> {
    parse_hex_array::<32>(s).map(Hash::from)
}

/// Lowercase hex of a [`Hash`].
pub fn hash_hex(h: &Hash) -> String {
    hex::encode(h.as_ref())
}

/// An account: the 32 bytes of its owner's ed25519 public key.
///
/// The ledger treats these bytes as an opaque key; the signature check of a transaction is
/// what ties the sender account to its private key. Parsing from a string also checks that the
/// bytes are a valid public key, so that a typing error cannot send funds into an account that
/// nobody can ever sign for.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// The account of a public key.
    pub fn from_public_key(key: &ed25519::PublicKey) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(key.as_ref());
        Self(out)
    }

    /// The public key these bytes encode, if they encode one.
    pub fn to_public_key(&self) -> Option<ed25519::PublicKey> {
        use commonware_codec::DecodeExt;
        ed25519::PublicKey::decode(commonware_codec::Copying(&self.0)).ok()
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", hex::encode(self.0))
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let id = Self(parse_hex_array::<32>(s)?);
        if id.to_public_key().is_none() {
            return Err(IdError::NotAPublicKey(truncate(s.trim())));
        }
        Ok(id)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Write for AccountId {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl Read for AccountId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}

impl FixedSize for AccountId {
    const SIZE: usize = 32;
}

/// The identifier of a chain, signed into every transaction.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(String);

impl ChainId {
    /// The longest chain id, in bytes.
    pub const LEN_MAX: usize = 32;

    /// Checks and wraps a chain id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= Self::LEN_MAX
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::ChainId(truncate(&s)))
        }
    }

    /// The chain id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

impl FromStr for ChainId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(de::Error::custom)
    }
}

impl Write for ChainId {
    fn write(&self, buf: &mut impl BufMut) {
        // A one-byte length (at most 32) keeps the encoding canonical and trivially bounded.
        (self.0.len() as u8).write(buf);
        buf.put_slice(self.0.as_bytes());
    }
}

impl EncodeSize for ChainId {
    fn encode_size(&self) -> usize {
        1 + self.0.len()
    }
}

impl Read for ChainId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let len = usize::from(u8::read(buf)?);
        if len == 0 || len > Self::LEN_MAX {
            return Err(CodecError::InvalidLength(len));
        }
        if buf.remaining() < len {
            return Err(CodecError::EndOfBuffer);
        }
        let mut bytes = vec![0u8; len];
        buf.copy_to_slice(&mut bytes);
        let s = String::from_utf8(bytes).map_err(|_| CodecError::Invalid("ChainId", "utf8"))?;
        Self::new(s).map_err(|_| CodecError::Invalid("ChainId", "characters"))
    }
}

/// A block height: 0 is the genesis state, 1 the first block.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// The genesis height.
    pub const GENESIS: Self = Self(0);

    /// The raw height.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next height, or `None` at `u64::MAX`.
    pub const fn next(self) -> Option<Self> {
        match self.0.checked_add(1) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The previous height, or `None` at genesis.
    pub const fn previous(self) -> Option<Self> {
        match self.0.checked_sub(1) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Height({})", self.0)
    }
}

impl Write for Height {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl Read for Height {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(u64::read(buf)?))
    }
}

impl FixedSize for Height {
    const SIZE: usize = u64::SIZE;
}

/// Writes a collection length as a canonical varint.
pub(crate) fn write_len(len: usize, buf: &mut impl BufMut) {
    UInt(len as u64).write(buf);
}

/// The encoded size of a collection length.
pub(crate) fn len_size(len: usize) -> usize {
    UInt(len as u64).encode_size()
}

/// Reads a collection length and checks it against `max`.
pub(crate) fn read_len(buf: &mut impl Buf, max: usize) -> Result<usize, CodecError> {
    let len = UInt::<u64>::read(buf)?.0;
    let len = usize::try_from(len).map_err(|_| CodecError::InvalidUsize)?;
    if len > max {
        return Err(CodecError::InvalidLength(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    #[test]
    fn account_string_form_is_lowercase_hex_and_round_trips() {
        let key = PrivateKey::from_seed(7).public_key();
        let account = AccountId::from_public_key(&key);
        let s = account.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s, s.to_lowercase());
        assert_eq!(s.parse::<AccountId>().unwrap(), account);
        assert_eq!(s.to_uppercase().parse::<AccountId>().unwrap(), account);
    }

    #[test]
    fn account_parsing_names_the_problem() {
        assert!(matches!(
            "abc".parse::<AccountId>(),
            Err(IdError::NotHex { .. })
        ));
        // About half of all y-coordinates have no point on the curve; take the first of them.
        let not_point = (0u8..=255)
            .map(|v| {
                let mut b = [0u8; 32];
                b[0] = v;
                AccountId(b)
            })
            .find(|a| a.to_public_key().is_none())
            .expect("some small y is not on the curve");
        let s = not_point.to_string();
        assert!(matches!(
            s.parse::<AccountId>(),
            Err(IdError::NotAPublicKey(_))
        ));
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("bcte-dev-1").is_ok());
        assert!(ChainId::new("").is_err());
        assert!(ChainId::new("Upper").is_err());
        assert!(ChainId::new("a".repeat(33)).is_err());
        let id = ChainId::new("bcte").unwrap();
        assert_eq!(ChainId::decode(id.encode()).unwrap(), id);
        assert!(ChainId::decode(commonware_codec::Copying(&[0u8])).is_err());
        assert!(ChainId::decode(commonware_codec::Copying(&[2u8, b'A', b'b'])).is_err());
    }
}
