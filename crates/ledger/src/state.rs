//! Typed state values and their canonical encodings.
//!
//! Values are stored in the authenticated tree as the bytes given here; the tree commits to
//! `SHA-256(bytes)`, so the encodings are part of the consensus rules and are pinned by tests.

use bcte_types::{
    AccountId, Amount, ChainId, Hash, Height, ParticipantId, Roles, genesis::VALIDATORS_MAX,
};
use bytes::BufMut;
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write, varint::UInt,
};

/// Most counterparties an account has open positions with. Positions are only ever held
/// against feeders' market accounts (ST-5.1), so the bound is the number of feeders.
pub const POSITIONS_MAX: usize = crate::market_state::FEEDERS_MAX;

/// What an account and a market account owe each other after settlement (ST-5): base units,
/// negative when the account owes the market account (a debt), positive when the market
/// account owes it (a payment it could not make yet). Never zero in state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The market account on the other side.
    pub market: AccountId,
    /// Base units: negative, owed by this account; positive, owed to it.
    pub amount: i64,
}

/// An account's balance, next nonce, open positions and membership. A missing account reads
/// as zero balance, nonce 0, no positions, no role: an account that may only receive (AC-1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// Settlement-token base units held.
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// Open positions against market accounts, sorted by market account, none zero (ST-5).
    pub positions: Vec<Position>,
    /// Its roles (AC-1).
    pub roles: Roles,
    /// The participant it belongs to, once enrolled (AC-2.1).
    pub participant: Option<ParticipantId>,
    /// Its current signing key, once it differs from its id (AC-4); never equal to the id.
    pub key: Option<AccountId>,
    /// Whether the registrar revoked it (AC-5): for good.
    pub revoked: bool,
}

impl AccountState {
    /// Its position against `market` (0 if none).
    pub fn position(&self, market: &AccountId) -> i64 {
        self.positions
            .binary_search_by(|p| p.market.cmp(market))
            .map_or(0, |i| self.positions[i].amount)
    }

    /// Sets its position against `market`, removing it at zero.
    pub fn set_position(&mut self, market: AccountId, amount: i64) {
        match self.positions.binary_search_by(|p| p.market.cmp(&market)) {
            Ok(i) if amount == 0 => {
                self.positions.remove(i);
            }
            Ok(i) => self.positions[i].amount = amount,
            Err(_) if amount == 0 => {}
            Err(i) => self.positions.insert(i, Position { market, amount }),
        }
    }

    /// Whether it owes any market account.
    pub fn in_debt(&self) -> bool {
        self.positions.iter().any(|p| p.amount < 0)
    }

    /// The key its transactions must be signed with (AC-4.1): its current key, or its id.
    pub fn current_key(&self, id: AccountId) -> AccountId {
        self.key.unwrap_or(id)
    }

    /// Whether it is a member: enrolled, or holding a role (from genesis, or as a registered
    /// meter).
    pub const fn is_member(&self) -> bool {
        self.participant.is_some() || !self.roles.is_empty()
    }

    const FLAG_POSITIONS: u8 = 1;
    const FLAG_ROLES: u8 = 2;
    const FLAG_PARTICIPANT: u8 = 4;
    const FLAG_KEY: u8 = 8;
    const FLAG_REVOKED: u8 = 16;

    /// Which optional parts it has; 0 means it encodes as the 16 bytes of balance and nonce.
    fn flags(&self) -> u8 {
        let mut f = 0;
        if !self.positions.is_empty() {
            f |= Self::FLAG_POSITIONS;
        }
        if !self.roles.is_empty() {
            f |= Self::FLAG_ROLES;
        }
        if self.participant.is_some() {
            f |= Self::FLAG_PARTICIPANT;
        }
        if self.key.is_some() {
            f |= Self::FLAG_KEY;
        }
        if self.revoked {
            f |= Self::FLAG_REVOKED;
        }
        f
    }
}

/// `balance:u64 nonce:u64`, then, when anything else is set, `flags:u8` and the parts it
/// names in this order: `roles:u16`, `participant:16`, `key:32`, `count:varint position ×
/// count` (revoked is a flag alone). An account with nothing but a balance and a nonce keeps
/// its 16 bytes.
impl Write for AccountState {
    fn write(&self, buf: &mut impl BufMut) {
        self.balance.write(buf);
        self.nonce.write(buf);
        let flags = self.flags();
        if flags == 0 {
            return;
        }
        flags.write(buf);
        if flags & Self::FLAG_ROLES != 0 {
            self.roles.write(buf);
        }
        if let Some(p) = &self.participant {
            p.write(buf);
        }
        if let Some(k) = &self.key {
            k.write(buf);
        }
        if !self.positions.is_empty() {
            UInt(self.positions.len() as u64).write(buf);
            for p in &self.positions {
                p.market.write(buf);
                p.amount.write(buf);
            }
        }
    }
}

impl EncodeSize for AccountState {
    fn encode_size(&self) -> usize {
        let flags = self.flags();
        if flags == 0 {
            return 16;
        }
        let mut n = 17;
        if flags & Self::FLAG_ROLES != 0 {
            n += Roles::SIZE;
        }
        if self.participant.is_some() {
            n += ParticipantId::SIZE;
        }
        if self.key.is_some() {
            n += AccountId::SIZE;
        }
        if !self.positions.is_empty() {
            n += UInt(self.positions.len() as u64).encode_size() + self.positions.len() * 40;
        }
        n
    }
}

impl Read for AccountState {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let mut a = Self {
            balance: Amount::read(buf)?,
            nonce: u64::read(buf)?,
            ..Self::default()
        };
        if !buf.has_remaining() {
            return Ok(a);
        }
        let flags = u8::read(buf)?;
        if flags == 0 || flags >= 32 {
            return Err(CodecError::Invalid("AccountState", "bad flags"));
        }
        if flags & Self::FLAG_ROLES != 0 {
            a.roles = Roles::read(buf)?;
            if a.roles.is_empty() {
                return Err(CodecError::Invalid("AccountState", "an empty role set"));
            }
        }
        if flags & Self::FLAG_PARTICIPANT != 0 {
            a.participant = Some(ParticipantId::read(buf)?);
        }
        if flags & Self::FLAG_KEY != 0 {
            a.key = Some(AccountId::read(buf)?);
        }
        a.revoked = flags & Self::FLAG_REVOKED != 0;
        if flags & Self::FLAG_POSITIONS != 0 {
            let n = UInt::<u64>::read(buf)?.0;
            if n == 0 || n > POSITIONS_MAX as u64 {
                return Err(CodecError::InvalidLength(n as usize));
            }
            for _ in 0..n {
                let market = AccountId::read(buf)?;
                let amount = i64::read(buf)?;
                if amount == 0 {
                    return Err(CodecError::Invalid("AccountState", "a zero position"));
                }
                a.positions.push(Position { market, amount });
            }
            if a.positions.windows(2).any(|w| w[0].market >= w[1].market) {
                return Err(CodecError::Invalid("AccountState", "positions not sorted"));
            }
        }
        Ok(a)
    }
}

/// The last executed block, as the state itself records it. Written by every block, so every
/// height has its own state root and a proof at height `h` shows that it speaks for `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The block's height.
    pub height: Height,
    /// The block's timestamp.
    pub timestamp_ms: u64,
    /// The block's parent hash (all zero at genesis).
    pub parent: Hash,
}

impl Write for Head {
    fn write(&self, buf: &mut impl BufMut) {
        self.height.write(buf);
        self.timestamp_ms.write(buf);
        self.parent.write(buf);
    }
}

impl Read for Head {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            height: Height::read(buf)?,
            timestamp_ms: u64::read(buf)?,
            parent: Hash::read(buf)?,
        })
    }
}

impl FixedSize for Head {
    const SIZE: usize = Height::SIZE + 8 + Hash::SIZE;
}

/// What a chain fixes at genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// The chain id.
    pub chain_id: ChainId,
    /// The token authority (registrar / DSO), the only account that may mint or burn.
    pub authority: AccountId,
    /// The validators' public keys, in genesis order.
    pub validators: Vec<AccountId>,
}

impl Write for ChainConfig {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain_id.write(buf);
        self.authority.write(buf);
        UInt(self.validators.len() as u64).write(buf);
        for v in &self.validators {
            v.write(buf);
        }
    }
}

impl EncodeSize for ChainConfig {
    fn encode_size(&self) -> usize {
        self.chain_id.encode_size()
            + AccountId::SIZE
            + UInt(self.validators.len() as u64).encode_size()
            + self.validators.len() * AccountId::SIZE
    }
}

impl Read for ChainConfig {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let chain_id = ChainId::read(buf)?;
        let authority = AccountId::read(buf)?;
        let n = UInt::<u64>::read(buf)?.0;
        if n > VALIDATORS_MAX as u64 {
            return Err(CodecError::InvalidLength(n as usize));
        }
        let validators = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            chain_id,
            authority,
            validators,
        })
    }
}

/// Encodes any state value.
pub fn encode_value(value: &impl Encode) -> Vec<u8> {
    value.encode().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::DecodeExt;

    #[test]
    fn value_layouts_are_fixed() {
        let a = AccountState {
            balance: Amount(5),
            nonce: 2,
            ..AccountState::default()
        };
        assert_eq!(hex::encode(a.encode()), "00000000000000050000000000000002");
        assert_eq!(AccountState::decode(a.encode()).unwrap(), a);
        // A member: flags 0x1f, roles, participant, key, one position.
        let m = AccountState {
            balance: Amount(5),
            nonce: 2,
            positions: vec![Position {
                market: AccountId([4; 32]),
                amount: -3,
            }],
            roles: Roles::of(&[bcte_types::Role::Prosumer]),
            participant: Some(ParticipantId([7; 16])),
            key: Some(AccountId([8; 32])),
            revoked: true,
        };
        let hex = hex::encode(m.encode());
        assert_eq!(m.encode().len(), m.encode_size());
        assert!(
            hex.starts_with("000000000000000500000000000000021f0008"),
            "{hex}"
        );
        assert_eq!(AccountState::decode(m.encode()).unwrap(), m);
        // Non-canonical forms are refused: no flags, unknown flags, an empty role set.
        for bad in [
            "0000000000000005000000000000000200",
            "0000000000000005000000000000000220",
            "00000000000000050000000000000002020000",
        ] {
            let bytes = hex::decode(bad).unwrap();
            assert!(
                AccountState::decode(commonware_codec::Copying(&bytes[..])).is_err(),
                "{bad}"
            );
        }
        let h = Head {
            height: Height(1),
            timestamp_ms: 2,
            parent: Hash::from([3; 32]),
        };
        assert_eq!(Head::decode(h.encode()).unwrap(), h);
        let c = ChainConfig {
            chain_id: ChainId::new("x").unwrap(),
            authority: AccountId([9; 32]),
            validators: vec![AccountId([1; 32]), AccountId([2; 32])],
        };
        assert_eq!(ChainConfig::decode(c.encode()).unwrap(), c);
    }
}
