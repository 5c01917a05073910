//! Identity and access: roles, participants and the transactions of the registrar.
//!
//! A participant (a household, an aggregator, the DSO itself) is enrolled by the registrar
//! under a random UUID; the chain knows it only by that id and a salted commitment to its
//! personal data, which stays off chain (`docs/access-rules.md`, AC-2). Each of its accounts
//! holds roles ([`Roles`]); what a role may send is the one authorization table of the ledger
//! (`bcte_ledger::auth`, AC-3).
//!
//! Byte layouts (big-endian, see `docs/encoding.md`): `roles:u16` (one bit per [`Role`]);
//! `participant:16`; `enroll = n:varint (participant:16 commitment:32 roles:u16 m:varint
//! account:32 × m) × n`; `role_set = account:32 grant:u8 roles:u16`; `key_rotate =
//! new_key:32`; `key_reset = account:32 new_key:32`; `account_revoke = n:varint account:32 × n`.

use crate::ids::{AccountId, Hash, IdError, len_size, read_len, write_len};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::{fmt, str::FromStr};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A role an account may hold (AC-1). An account may hold several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Enrolls and revokes members, grants roles, resets lost keys.
    Registrar,
    /// The distribution system operator and market operator: feeders, configuration, modes,
    /// meters, flexibility requests, the token.
    Dso,
    /// Bids and offers flexibility for the sites delegated to it; provides EV charging.
    Aggregator,
    /// Owns sites that consume and produce.
    Prosumer,
    /// Owns sites that consume.
    Consumer,
    /// A meter or a head-end system: sends readings.
    Meter,
    /// Reads everything, sends nothing but its own key rotation.
    Auditor,
    /// Reads everything, sends nothing but its own key rotation.
    Regulator,
    /// Reads anonymised aggregates only.
    DataService,
    /// Runs a validator (the genesis validators' keys).
    Validator,
}

impl Role {
    /// Every role, in bit order.
    pub const ALL: [Self; 10] = [
        Self::Registrar,
        Self::Dso,
        Self::Aggregator,
        Self::Prosumer,
        Self::Consumer,
        Self::Meter,
        Self::Auditor,
        Self::Regulator,
        Self::DataService,
        Self::Validator,
    ];

    /// Its bit in [`Roles`].
    pub const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Its name, as in JSON and the docs (`"dso"`, `"data_service"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Registrar => "registrar",
            Self::Dso => "dso",
            Self::Aggregator => "aggregator",
            Self::Prosumer => "prosumer",
            Self::Consumer => "consumer",
            Self::Meter => "meter",
            Self::Auditor => "auditor",
            Self::Regulator => "regulator",
            Self::DataService => "data_service",
            Self::Validator => "validator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| IdError::Invalid(format!("{s:?} is not a role")))
    }
}

/// A set of roles, one bit each. On the wire a `u16`; in JSON a list of names.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Roles(u16);

impl Roles {
    /// No role: the account may only receive tokens (AC-1.2).
    pub const NONE: Self = Self(0);

    /// The bits no role uses.
    const UNUSED: u16 = !((1 << Role::ALL.len()) - 1);

    /// The set of one role.
    pub const fn one(role: Role) -> Self {
        Self(role.bit())
    }

    /// The set of these roles.
    pub const fn of(roles: &[Role]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// Whether the set holds `role`.
    pub const fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the two sets share a role.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set holds every role of `other`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets' roles.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// This set's roles that `other` lacks.
    #[must_use]
    pub const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The roles, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.has(*r))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no role");
        }
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(r.name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roles({self})")
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Role>::deserialize(d)?.into_iter().collect())
    }
}

impl Write for Roles {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl FixedSize for Roles {
    const SIZE: usize = 2;
}

impl Read for Roles {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let bits = u16::read(buf)?;
        if bits & Self::UNUSED != 0 {
            return Err(CodecError::Invalid("Roles", "a bit no role uses"));
        }
        Ok(Self(bits))
    }
}

/// A participant's id: a random (version 4) UUID drawn by the registrar's CLI. The chain
/// knows a participant by this id only (AC-2.1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub [u8; 16]);

impl ParticipantId {
    /// A fresh random id (version 4).
    pub fn random(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(*uuid::Builder::from_random_bytes(b).as_uuid().as_bytes())
    }
}

impl ParticipantId {
    /// The id a simulation or a benchmark gives the participant whose one account is
    /// `account`: the first 16 bytes of `SHA-256("bcte/participant/v1" ‖ account)` with the
    /// version-4 bits set. Deterministic, so the same seed gives the same chain; a real
    /// registrar draws ids with [`Self::random`].
    pub fn derived(account: &AccountId) -> Self {
        use commonware_cryptography::{Hasher, Sha256};
        let digest = Sha256::hash(&[b"bcte/participant/v1".as_slice(), &account.0]);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest.as_ref()[..16]);
        Self(*uuid::Builder::from_random_bytes(b).as_uuid().as_bytes())
    }
}

/// The domain of a personal-data commitment (AC-2.3).
pub const PII_DOMAIN: &[u8] = b"bcte/pii/v1";

/// The commitment to a participant's personal-data `record` with `salt` (AC-2.3):
/// `SHA-256("bcte/pii/v1" ‖ UUID ‖ salt ‖ record)`, the UUID as its 16 bytes, the record as the
/// exact bytes stored.
pub fn pii_commitment(participant: &ParticipantId, salt: &[u8; 32], record: &[u8]) -> Hash {
    use commonware_cryptography::{Hasher, Sha256};
    Sha256::hash(&[PII_DOMAIN, &participant.0, salt, record])
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParticipantId({self})")
    }
}

impl FromStr for ParticipantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        // Only the hyphenated form the CLI prints: one spelling per id.
        if s.len() != 36 {
            return Err(IdError::Invalid(format!(
                "{s:?} is not a participant id (a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8)"
            )));
        }
        uuid::Uuid::try_parse(s)
            .map(|u| Self(*u.as_bytes()))
            .map_err(|e| IdError::Invalid(format!("{s:?} is not a participant id: {e}")))
    }
}

impl Serialize for ParticipantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ParticipantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Write for ParticipantId {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl FixedSize for ParticipantId {
    const SIZE: usize = 16;
}

impl Read for ParticipantId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(<[u8; 16]>::read(buf)?))
    }
}

/// Most accounts one participant holds.
pub const PARTICIPANT_ACCOUNTS_MAX: usize = 16;

/// Most participants one enrollment transaction enrolls (a community's households at once).
pub const ENROLL_MAX: usize = 4096;

/// Most accounts one revocation names.
pub const REVOKE_MAX: usize = PARTICIPANT_ACCOUNTS_MAX;

/// One participant enrolled (AC-2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Its id, unique on the chain.
    pub participant: ParticipantId,
    /// The salted commitment to its personal data (AC-2.3), or all zero when it has none
    /// off chain.
    #[serde(with = "crate::meter::hash_hex")]
    pub commitment: Hash,
    /// The roles every one of its accounts receives.
    pub roles: Roles,
    /// Its accounts: 1 to [`PARTICIPANT_ACCOUNTS_MAX`], none enrolled before.
    pub accounts: Vec<AccountId>,
}

impl Write for Enrollment {
    fn write(&self, buf: &mut impl BufMut) {
        self.participant.write(buf);
        self.commitment.write(buf);
        self.roles.write(buf);
        write_len(self.accounts.len(), buf);
        for a in &self.accounts {
            a.write(buf);
        }
    }
}

impl EncodeSize for Enrollment {
    fn encode_size(&self) -> usize {
        ParticipantId::SIZE
            + Hash::SIZE
            + Roles::SIZE
            + len_size(self.accounts.len())
            + self.accounts.len() * AccountId::SIZE
    }
}

impl Read for Enrollment {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let participant = ParticipantId::read(buf)?;
        let commitment = Hash::read(buf)?;
        let roles = Roles::read(buf)?;
        let n = read_len(buf, PARTICIPANT_ACCOUNTS_MAX)?;
        if n == 0 {
            return Err(CodecError::Invalid("Enrollment", "no account"));
        }
        let accounts = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            participant,
            commitment,
            roles,
            accounts,
        })
    }
}

/// Enroll participants (the registrar).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    /// 1 to [`ENROLL_MAX`] participants.
    pub participants: Vec<Enrollment>,
}

impl Write for Enroll {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.participants.len(), buf);
        for p in &self.participants {
            p.write(buf);
        }
    }
}

impl EncodeSize for Enroll {
    fn encode_size(&self) -> usize {
        len_size(self.participants.len())
            + self
                .participants
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
    }
}

impl Read for Enroll {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, ENROLL_MAX)?;
        // At least one, so that no payload is shorter than `Payload::ENCODED_SIZE_MIN`.
        if n == 0 {
            return Err(CodecError::Invalid("Enroll", "no participant"));
        }
        let participants = (0..n)
            .map(|_| Enrollment::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self { participants })
    }
}

impl Enroll {
    /// Enrollments of one participant per account, with [`ParticipantId::derived`] ids and no
    /// off-chain record, in transactions of at most [`ENROLL_MAX`] (for simulations, benchmarks
    /// and the demo).
    pub fn each(members: impl IntoIterator<Item = (AccountId, Roles)>) -> Vec<Self> {
        let all: Vec<Enrollment> = members
            .into_iter()
            .map(|(account, roles)| Enrollment {
                participant: ParticipantId::derived(&account),
                commitment: Hash::from([0; 32]),
                roles,
                accounts: vec![account],
            })
            .collect();
        all.chunks(ENROLL_MAX)
            .map(|c| Self {
                participants: c.to_vec(),
            })
            .collect()
    }
}

/// Grant roles to an account or revoke them from it (the registrar).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSet {
    /// An enrolled account.
    pub account: AccountId,
    /// `true` to grant, `false` to revoke.
    pub grant: bool,
    /// The roles granted or revoked (not empty).
    pub roles: Roles,
}

impl Write for RoleSet {
    fn write(&self, buf: &mut impl BufMut) {
        self.account.write(buf);
        u8::from(self.grant).write(buf);
        self.roles.write(buf);
    }
}

impl FixedSize for RoleSet {
    const SIZE: usize = AccountId::SIZE + 1 + Roles::SIZE;
}

impl Read for RoleSet {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let account = AccountId::read(buf)?;
        let grant = match u8::read(buf)? {
            0 => false,
            1 => true,
            t => return Err(CodecError::InvalidEnum(t)),
        };
        Ok(Self {
            account,
            grant,
            roles: Roles::read(buf)?,
        })
    }
}

/// Replace the sender's signing key (the account itself, signed with its current key). The
/// account keeps its id (AC-4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotate {
    /// The new ed25519 public key.
    pub new_key: AccountId,
}

impl Write for KeyRotate {
    fn write(&self, buf: &mut impl BufMut) {
        self.new_key.write(buf);
    }
}

impl FixedSize for KeyRotate {
    const SIZE: usize = AccountId::SIZE;
}

impl Read for KeyRotate {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            new_key: AccountId::read(buf)?,
        })
    }
}

/// Set the key of an account whose owner lost its key (the registrar, AC-4.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReset {
    /// The account.
    pub account: AccountId,
    /// Its new ed25519 public key.
    pub new_key: AccountId,
}

impl Write for KeyReset {
    fn write(&self, buf: &mut impl BufMut) {
        self.account.write(buf);
        self.new_key.write(buf);
    }
}

impl FixedSize for KeyReset {
    const SIZE: usize = 2 * AccountId::SIZE;
}

impl Read for KeyReset {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            account: AccountId::read(buf)?,
            new_key: AccountId::read(buf)?,
        })
    }
}

/// Revoke accounts for good (the registrar, AC-5): their transactions are rejected from
/// then on; their records remain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRevoke {
    /// 1 to [`REVOKE_MAX`] accounts.
    pub accounts: Vec<AccountId>,
}

impl Write for AccountRevoke {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.accounts.len(), buf);
        for a in &self.accounts {
            a.write(buf);
        }
    }
}

impl EncodeSize for AccountRevoke {
    fn encode_size(&self) -> usize {
        len_size(self.accounts.len()) + self.accounts.len() * AccountId::SIZE
    }
}

impl Read for AccountRevoke {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, REVOKE_MAX)?;
        if n == 0 {
            return Err(CodecError::Invalid("AccountRevoke", "no account"));
        }
        let accounts = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self { accounts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn the_pii_commitment_is_the_documented_hash() {
        // Worked out with Python's hashlib: sha256(b"bcte/pii/v1" + uuid + salt + record).
        let p = ParticipantId(core::array::from_fn(|i| i as u8 + 1));
        let c = pii_commitment(&p, &[0x20; 32], br#"{"name":"Alice"}"#);
        assert_eq!(
            hex::encode(c),
            "9ef9b3e91fcdb9b4c3baa5c97c529fa9a105f164476d6da9f7a553a0013b91e6"
        );
    }

    #[test]
    fn roles_round_trip_and_refuse_unused_bits() {
        let r = Roles::of(&[Role::Dso, Role::Registrar, Role::Validator]);
        assert_eq!(r.bits(), 0b10_0000_0011);
        assert_eq!(Roles::decode(r.encode()).unwrap(), r);
        assert!(Roles::decode(commonware_codec::Copying(&[0x04, 0x00][..])).is_err());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"["registrar","dso","validator"]"#
        );
        let back: Roles = serde_json::from_str(r#"["validator","dso","registrar"]"#).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Roles>(r#"["king"]"#).is_err());
        assert_eq!(r.to_string(), "registrar, dso, validator");
    }

    #[test]
    fn participant_ids_are_hyphenated_uuids() {
        let id: ParticipantId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        assert_eq!(id.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert!(
            "67e5504410b1426f9247bb680e5fe0c8"
                .parse::<ParticipantId>()
                .is_err()
        );
        assert!("not-a-uuid".parse::<ParticipantId>().is_err());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = ParticipantId::random(&mut rng);
        assert_eq!(uuid::Uuid::from_bytes(a.0).get_version_num(), 4);
        assert_ne!(a, ParticipantId::random(&mut rng));
    }

    #[test]
    fn enroll_round_trips_and_bounds_its_lists() {
        let op = Enroll {
            participants: vec![Enrollment {
                participant: ParticipantId([7; 16]),
                commitment: Hash::from([3u8; 32]),
                roles: Roles::one(Role::Prosumer),
                accounts: vec![AccountId([1; 32]), AccountId([2; 32])],
            }],
        };
        let bytes = op.encode();
        assert_eq!(bytes.len(), op.encode_size());
        assert_eq!(Enroll::decode(bytes).unwrap(), op);
        let mut too_many = Vec::new();
        write_len(PARTICIPANT_ACCOUNTS_MAX + 1, &mut too_many);
        let mut e = vec![1u8];
        e.extend([0u8; 16 + 32 + 2]);
        e.extend(too_many);
        assert!(Enroll::decode(commonware_codec::Copying(&e[..])).is_err());
    }

    use rand::SeedableRng;
}
