//! Identity and access on the chain: enrollment, roles, key rotation and revocation
//! (`docs/access-rules.md`, AC-1, AC-2, AC-4, AC-5).
//!
//! A participant's record holds only its random id, a salted commitment to its personal data
//! (which stays off chain) and its accounts; each account holds its roles, its participant,
//! its current key and whether it is revoked ([`crate::state::AccountState`]).

use crate::{
    exec::ExecError,
    keys::StateKey,
    market::{Handled, reject},
    market_state::{len_size, read_len, write_len},
    working::Working,
};
use bcte_types::{
    AccountId, Hash, Height, RejectReason, Role, Roles,
    role::{AccountRevoke, Enroll, KeyReset, KeyRotate, PARTICIPANT_ACCOUNTS_MAX, RoleSet},
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use std::collections::BTreeSet;

/// An enrolled participant, as the chain knows it (AC-2.2): no personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantState {
    /// The salted commitment to its off-chain personal data (AC-2.3).
    pub commitment: Hash,
    /// Its accounts, in enrollment order.
    pub accounts: Vec<AccountId>,
    /// The height of the block that enrolled it.
    pub enrolled: Height,
}

impl Write for ParticipantState {
    fn write(&self, buf: &mut impl BufMut) {
        self.commitment.write(buf);
        write_len(self.accounts.len(), buf);
        for a in &self.accounts {
            a.write(buf);
        }
        self.enrolled.write(buf);
    }
}

impl EncodeSize for ParticipantState {
    fn encode_size(&self) -> usize {
        Hash::SIZE
            + len_size(self.accounts.len())
            + self.accounts.len() * AccountId::SIZE
            + Height::SIZE
    }
}

impl Read for ParticipantState {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let commitment = Hash::read(buf)?;
        let n = read_len(buf, PARTICIPANT_ACCOUNTS_MAX)?;
        let accounts = (0..n)
            .map(|_| AccountId::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            commitment,
            accounts,
            enrolled: Height::read(buf)?,
        })
    }
}

/// The keys an identity transaction names (its first read stage).
pub(crate) fn reads_of(payload: &bcte_types::Payload, keys: &mut BTreeSet<StateKey>) {
    use bcte_types::Payload;
    match payload {
        Payload::Enroll(op) => {
            for p in &op.participants {
                keys.insert(StateKey::Participant(p.participant));
                keys.extend(p.accounts.iter().map(|a| StateKey::Account(*a)));
            }
        }
        Payload::RoleSet(RoleSet { account, .. }) | Payload::KeyReset(KeyReset { account, .. }) => {
            keys.insert(StateKey::Account(*account));
        }
        Payload::AccountRevoke(op) => {
            keys.extend(op.accounts.iter().map(|a| StateKey::Account(*a)));
        }
        _ => {}
    }
}

/// AC-1.6: roles the registrar may grant (the validator role is the genesis's: the validator
/// set is fixed there).
fn check_grantable(roles: Roles) -> Result<(), RejectReason> {
    if roles.is_empty() {
        return Err(RejectReason::invalid("roles: name at least one role"));
    }
    if roles.has(Role::Validator) {
        return Err(RejectReason::invalid(
            "roles: the validator role is held by the genesis validators only",
        ));
    }
    Ok(())
}

fn check_key(what: &str, key: &AccountId) -> Result<(), RejectReason> {
    if key.to_public_key().is_none() {
        return Err(RejectReason::invalid(format!(
            "{what}: {key} is not an ed25519 public key"
        )));
    }
    Ok(())
}

/// AC-2.1: enrolls participants, all or none.
pub(crate) fn enroll(w: &mut Working<'_>, height: Height, op: &Enroll) -> Handled {
    if op.participants.is_empty() {
        reject!(RejectReason::invalid("participants: enroll at least one"));
    }
    let mut ids = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for (i, p) in op.participants.iter().enumerate() {
        let at =
            |m: String| RejectReason::invalid(format!("participant {i} ({}): {m}", p.participant));
        if !ids.insert(p.participant) {
            reject!(at("appears twice".into()));
        }
        if let Err(e) = check_grantable(p.roles) {
            reject!(at(e.to_string()));
        }
        if p.accounts.is_empty() {
            reject!(at("accounts: name at least one".into()));
        }
        // AC-2.1: an id is used once, whatever became of its participant.
        if w.participants
            .get(w.pre, &StateKey::Participant(p.participant))?
            .is_some()
        {
            reject!(at("is enrolled already".into()));
        }
        for a in &p.accounts {
            if let Err(e) = check_key("account", a) {
                reject!(at(e.to_string()));
            }
            if !accounts.insert(*a) {
                reject!(at(format!("account {a} appears twice")));
            }
            let state = w.money.account(w.pre, *a)?;
            // AC-2.1: an account belongs to one participant, once.
            if state.is_member() || state.revoked {
                reject!(at(format!("account {a} is a member already")));
            }
        }
    }
    for p in &op.participants {
        for a in &p.accounts {
            let state = w.money.account_mut(w.pre, *a)?;
            state.roles = p.roles;
            state.participant = Some(p.participant);
        }
        w.participants.put(
            StateKey::Participant(p.participant),
            ParticipantState {
                commitment: p.commitment,
                accounts: p.accounts.clone(),
                enrolled: height,
            },
        );
    }
    Ok(Ok(()))
}

/// The member `account` as the registrar may change it: enrolled (or a genesis member) and
/// not revoked.
fn member(
    w: &mut Working<'_>,
    account: AccountId,
) -> Result<Result<crate::state::AccountState, RejectReason>, ExecError> {
    let state = w.money.account(w.pre, account)?;
    if state.revoked {
        return Ok(Err(RejectReason::Revoked { account }));
    }
    if !state.is_member() {
        return Ok(Err(RejectReason::invalid(format!(
            "account {account} is not enrolled"
        ))));
    }
    Ok(Ok(state))
}

/// AC-1.5: grants or revokes roles of a member.
pub(crate) fn role_set(w: &mut Working<'_>, from: AccountId, op: &RoleSet) -> Handled {
    if let Err(e) = check_grantable(op.roles) {
        reject!(e);
    }
    let state = match member(w, op.account)? {
        Ok(s) => s,
        Err(e) => reject!(e),
    };
    // AC-1.5: the registrar cannot drop its own registrar role (a chain without one could
    // never enroll again).
    if !op.grant && op.account == from && op.roles.has(Role::Registrar) {
        reject!(RejectReason::invalid(
            "roles: a registrar cannot revoke its own registrar role"
        ));
    }
    let roles = if op.grant {
        state.roles.union(op.roles)
    } else {
        state.roles.minus(op.roles)
    };
    w.money.account_mut(w.pre, op.account)?.roles = roles;
    Ok(Ok(()))
}

/// AC-4.1: the sender replaces its own key.
pub(crate) fn rotate(w: &mut Working<'_>, from: AccountId, op: &KeyRotate) -> Handled {
    if let Err(e) = check_key("new_key", &op.new_key) {
        reject!(e);
    }
    set_key(w, from, op.new_key)
}

/// AC-4.3: the registrar replaces a member's lost key.
pub(crate) fn reset(w: &mut Working<'_>, op: &KeyReset) -> Handled {
    if let Err(e) = check_key("new_key", &op.new_key) {
        reject!(e);
    }
    if let Err(e) = member(w, op.account)? {
        reject!(e);
    }
    set_key(w, op.account, op.new_key)
}

fn set_key(w: &mut Working<'_>, account: AccountId, new_key: AccountId) -> Handled {
    let state = w.money.account_mut(w.pre, account)?;
    if state.current_key(account) == new_key {
        reject!(RejectReason::invalid(format!(
            "new_key: {new_key} is the account's current key already"
        )));
    }
    // The id is the first key: going back to it stores no key.
    state.key = (new_key != account).then_some(new_key);
    Ok(Ok(()))
}

/// AC-5.1: revokes members for good.
pub(crate) fn revoke(w: &mut Working<'_>, from: AccountId, op: &AccountRevoke) -> Handled {
    if op.accounts.is_empty() {
        reject!(RejectReason::invalid("accounts: name at least one"));
    }
    let mut seen = BTreeSet::new();
    for a in &op.accounts {
        if !seen.insert(*a) {
            reject!(RejectReason::invalid(format!("account {a} appears twice")));
        }
        if *a == from {
            reject!(RejectReason::invalid(
                "accounts: a registrar cannot revoke itself"
            ));
        }
        if let Err(e) = member(w, *a)? {
            reject!(e);
        }
    }
    for a in &op.accounts {
        w.money.account_mut(w.pre, *a)?.revoked = true;
    }
    Ok(Ok(()))
}

/// MC-3.5, AC-3.3: a DSO transaction about a feeder must come from the feeder's operator. The
/// feeder a payload names, when its row's object is [`crate::auth::Object::Feeder`].
pub(crate) const fn operated_feeder(
    payload: &bcte_types::Payload,
) -> Option<&bcte_types::FeederId> {
    use bcte_types::Payload;
    Some(match payload {
        Payload::SitesRegister(op) => &op.feeder,
        Payload::EdgeLimit(op) => &op.feeder,
        Payload::MarketConfig(op) => &op.feeder,
        Payload::GridMode(op) => &op.feeder,
        Payload::UpstreamPrices(op) => &op.feeder,
        Payload::MeterRegister(op) => &op.feeder,
        Payload::HeadEnd(op) => &op.feeder,
        Payload::SettlementAdjust(op) => &op.feeder,
        Payload::FlexRequest(op) => &op.feeder,
        Payload::FlexAccept(op) => &op.feeder,
        _ => return None,
    })
}

/// Rejects `from` if feeder `f` exists and another DSO operates it (an unknown feeder is the
/// domain's to reject, with its own reason).
pub(crate) fn check_operator(
    w: &mut Working<'_>,
    from: AccountId,
    f: &bcte_types::FeederId,
) -> Handled {
    let operator = w
        .market
        .feeders
        .get(w.pre, &StateKey::Feeder(f.clone()))?
        .map(|s| s.operator);
    match operator {
        Some(op) if op != from => Ok(Err(RejectReason::NotFeederOperator { feeder: f.clone() })),
        _ => Ok(Ok(())),
    }
}

/// AC-3.3: `account`, named in a transaction as its `what` (a site's aggregator, a charging
/// provider), holds `role` and is not revoked.
pub(crate) fn check_holds(
    w: &mut Working<'_>,
    account: AccountId,
    what: &str,
    role: Role,
) -> Handled {
    let a = w.money.account(w.pre, account)?;
    if a.revoked {
        reject!(RejectReason::Revoked { account });
    }
    if !a.roles.has(role) {
        reject!(RejectReason::invalid(format!(
            "{what}: account {account} does not hold the {role} role"
        )));
    }
    Ok(Ok(()))
}
