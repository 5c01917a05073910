//! The working set of one block's execution: the values read before execution, the typed
//! values the block's transactions and end-of-block work have touched, and the money moved.
//!
//! Reads go to what this block already wrote, then to the prefetched values; a key that is
//! neither is a bug in the read planning ([`crate::exec::plan_reads`]) and fails the block's
//! execution, never a transaction. Writes stay typed until the block ends, so a large value
//! (a feeder, its site table) is decoded once and encoded once per block however many
//! transactions touch it.
//!
//! Money moves only through [`Money`]: [`Money::transfer`], [`Money::mint`] and
//! [`Money::burn`]. It records every balance it changed and what was minted and burned, so the
//! conservation check (LR-4) at the end of the block covers every domain at once.

use crate::{
    exec::ExecError,
    keys::StateKey,
    state::{AccountState, encode_value},
    tree::WriteSet,
};
use bcte_types::{AccountId, Amount, RejectReason};
use commonware_codec::{Copying, Decode, Encode, Read};
use std::collections::BTreeMap;

/// The values of a set of keys at one height, read before execution.
#[derive(Clone, Debug, Default)]
pub struct Prefetched {
    values: BTreeMap<StateKey, Option<Vec<u8>>>,
}

impl Prefetched {
    /// Builds a prefetched set from known values (tests, benchmarks).
    pub fn from_values(values: BTreeMap<StateKey, Option<Vec<u8>>>) -> Self {
        Self { values }
    }

    /// Adds a value read from the state (`None`: the key is absent).
    pub fn insert(&mut self, key: StateKey, value: Option<Vec<u8>>) {
        self.values.insert(key, value);
    }

    /// Whether `key` was read.
    pub fn contains(&self, key: &StateKey) -> bool {
        self.values.contains_key(key)
    }

    /// Number of keys read.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `key`: `Err` if it was not read.
    pub fn get(&self, key: &StateKey) -> Result<Option<&[u8]>, ExecError> {
        match self.values.get(key) {
            Some(v) => Ok(v.as_deref()),
            None => Err(ExecError::NotPrefetched(key.clone())),
        }
    }

    /// The value of `key` if it was read: `None` if not read, `Some(None)` if absent.
    pub fn peek(&self, key: &StateKey) -> Option<Option<&[u8]>> {
        self.values.get(key).map(|v| v.as_deref())
    }

    /// The decoded value of `key`.
    pub fn decode<T: Read<Cfg = ()>>(&self, key: &StateKey) -> Result<Option<T>, ExecError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => decode_bytes(key, bytes).map(Some),
        }
    }

    /// The decoded value of `key` if it was read (see [`Self::peek`]); a corrupt value is an
    /// error.
    pub fn peek_decode<T: Read<Cfg = ()>>(
        &self,
        key: &StateKey,
    ) -> Result<Option<Option<T>>, ExecError> {
        match self.peek(key) {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(bytes)) => decode_bytes(key, bytes).map(|v| Some(Some(v))),
        }
    }
}

fn decode_bytes<T: Read<Cfg = ()>>(key: &StateKey, bytes: &[u8]) -> Result<T, ExecError> {
    T::decode_cfg(Copying(bytes), &()).map_err(|_| ExecError::CorruptValue(key.clone()))
}

/// One cached value: what the block sees now, whether it must be written, and whether the
/// key is known to have been absent before the block (so deleting it writes nothing).
#[derive(Debug)]
struct Slot<V> {
    value: Option<V>,
    dirty: bool,
    absent_before: bool,
}

/// Typed values of one kind touched by the block.
#[derive(Debug)]
pub(crate) struct Typed<V> {
    slots: BTreeMap<StateKey, Slot<V>>,
}

impl<V> Default for Typed<V> {
    fn default() -> Self {
        Self {
            slots: BTreeMap::new(),
        }
    }
}

impl<V: Read<Cfg = ()> + Encode> Typed<V> {
    fn load(&mut self, pre: &Prefetched, key: &StateKey) -> Result<&mut Slot<V>, ExecError> {
        if !self.slots.contains_key(key) {
            let value = pre.decode::<V>(key)?;
            let absent_before = value.is_none();
            self.slots.insert(
                key.clone(),
                Slot {
                    value,
                    dirty: false,
                    absent_before,
                },
            );
        }
        Ok(self.slots.get_mut(key).expect("inserted above"))
    }

    /// The value of `key` as the block sees it.
    pub(crate) fn get(
        &mut self,
        pre: &Prefetched,
        key: &StateKey,
    ) -> Result<Option<&V>, ExecError> {
        Ok(self.load(pre, key)?.value.as_ref())
    }

    /// The value of `key`, to change in place (it will be written).
    pub(crate) fn get_mut(
        &mut self,
        pre: &Prefetched,
        key: &StateKey,
    ) -> Result<Option<&mut V>, ExecError> {
        let slot = self.load(pre, key)?;
        if slot.value.is_some() {
            slot.dirty = true;
        }
        Ok(slot.value.as_mut())
    }

    /// Whether `key` was read before the block or written by it (so reading it cannot fail
    /// for want of a prefetch).
    pub(crate) fn known(&self, pre: &Prefetched, key: &StateKey) -> bool {
        self.slots.contains_key(key) || pre.contains(key)
    }

    /// The value of `key` to change in place, starting from the default if it is absent.
    pub(crate) fn get_or_default(
        &mut self,
        pre: &Prefetched,
        key: &StateKey,
    ) -> Result<&mut V, ExecError>
    where
        V: Default,
    {
        let slot = self.load(pre, key)?;
        slot.dirty = true;
        Ok(slot.value.get_or_insert_with(V::default))
    }

    fn set(&mut self, key: StateKey, value: Option<V>) {
        let absent_before = self.slots.get(&key).is_some_and(|s| s.absent_before);
        self.slots.insert(
            key,
            Slot {
                value,
                dirty: true,
                absent_before,
            },
        );
    }

    /// Sets `key` to `value`.
    pub(crate) fn put(&mut self, key: StateKey, value: V) {
        self.set(key, Some(value));
    }

    /// Deletes `key`.
    pub(crate) fn delete(&mut self, key: StateKey) {
        self.set(key, None);
    }

    /// Adds the changed values to `out`; a value `gone` says is empty is deleted instead.
    fn write_into_unless(self, out: &mut WriteSet, gone: impl Fn(&V) -> bool) {
        for (key, slot) in self.slots {
            if slot.dirty {
                let value = slot.value.filter(|v| !gone(v));
                if value.is_none() && slot.absent_before {
                    // Created and removed within the block: nothing to write.
                    continue;
                }
                out.insert(key, value.map(|v| encode_value(&v)));
            }
        }
    }

    /// Adds the changed values to `out`.
    fn write_into(self, out: &mut WriteSet) {
        self.write_into_unless(out, |_| false);
    }
}

/// Balances touched by the block, and what it minted and burned.
#[derive(Debug)]
pub(crate) struct Money {
    accounts: BTreeMap<AccountId, AccountState>,
    pub(crate) supply: Amount,
    pub(crate) minted: Amount,
    pub(crate) burned: Amount,
}

impl Money {
    fn new(supply: Amount) -> Self {
        Self {
            accounts: BTreeMap::new(),
            supply,
            minted: Amount::ZERO,
            burned: Amount::ZERO,
        }
    }

    /// An account as the block sees it (a missing account reads as empty).
    pub(crate) fn account(
        &mut self,
        pre: &Prefetched,
        id: AccountId,
    ) -> Result<AccountState, ExecError> {
        Ok(self.account_ref(pre, id)?.clone())
    }

    fn account_ref(&mut self, pre: &Prefetched, id: AccountId) -> Result<&AccountState, ExecError> {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.accounts.entry(id) {
            let a = pre
                .decode::<AccountState>(&StateKey::Account(id))?
                .unwrap_or_default();
            slot.insert(a);
        }
        Ok(&self.accounts[&id])
    }

    /// An account to change in place (it will be written).
    pub(crate) fn account_mut(
        &mut self,
        pre: &Prefetched,
        id: AccountId,
    ) -> Result<&mut AccountState, ExecError> {
        self.account_ref(pre, id)?;
        Ok(self.accounts.get_mut(&id).expect("loaded above"))
    }

    /// Whether `id`'s account can be read without a missing prefetch.
    pub(crate) fn known(&self, pre: &Prefetched, id: AccountId) -> bool {
        self.accounts.contains_key(&id) || pre.contains(&StateKey::Account(id))
    }

    /// Moves `amount`, which `from` holds, to `to`: the one primitive every payment uses.
    fn move_held(
        &mut self,
        pre: &Prefetched,
        from: AccountId,
        to: AccountId,
        amount: u64,
    ) -> Result<(), ExecError> {
        if amount == 0 || from == to {
            return Ok(());
        }
        let payer = self.account_mut(pre, from)?;
        payer.balance = Amount(payer.balance.0.checked_sub(amount).ok_or_else(|| {
            ExecError::Bug(format!(
                "a payment of {amount} exceeds the balance of {from}"
            ))
        })?);
        let payee = self.account_mut(pre, to)?;
        payee.balance = Amount(payee.balance.0.checked_add(amount).ok_or_else(|| {
            ExecError::Bug(format!(
                "a payment of {amount} overflows the balance of {to}"
            ))
        })?);
        Ok(())
    }

    /// ST-5.3: pays `id`'s debts from its balance, to each market account it owes in the
    /// order of their ids, as far as the balance goes. A repayment received is not passed on.
    /// A creditor whose account the block did not read keeps its claim until a block that
    /// reads it (the planner reads every creditor of an account it reads, so none is missed).
    pub(crate) fn repay_debts(&mut self, pre: &Prefetched, id: AccountId) -> Result<(), ExecError> {
        let debts: Vec<(AccountId, i64)> = self
            .account_ref(pre, id)?
            .positions
            .iter()
            .filter(|p| p.amount < 0)
            .map(|p| (p.market, p.amount))
            .collect();
        for (market, owed) in debts {
            let balance = self.account_ref(pre, id)?.balance.0;
            if balance == 0 {
                break;
            }
            if !self.known(pre, market) {
                continue;
            }
            let paid = balance.min(owed.unsigned_abs());
            self.move_held(pre, id, market, paid)?;
            let a = self.account_mut(pre, id)?;
            a.set_position(market, owed + paid as i64);
        }
        Ok(())
    }

    /// ST-5.1, ST-5.2: adds `delta` to `id`'s position against `market` (negative: `id` owes
    /// more), then settles it as far as the balances go: a debt is paid from `id`'s balance, a
    /// claim from `market`'s (and what `id` receives pays its other debts first). Returns the
    /// position left open.
    pub(crate) fn settle_position(
        &mut self,
        pre: &Prefetched,
        id: AccountId,
        market: AccountId,
        delta: i64,
    ) -> Result<i64, ExecError> {
        if id == market {
            // Owing oneself is nothing.
            return Ok(0);
        }
        let a = self.account_ref(pre, id)?;
        let position = a.position(&market).checked_add(delta).ok_or_else(|| {
            ExecError::Bug(format!("the position of {id} against {market} overflows"))
        })?;
        let left = if position < 0 {
            let paid = a.balance.0.min(position.unsigned_abs());
            self.move_held(pre, id, market, paid)?;
            position + paid as i64
        } else if position > 0 {
            let paid = self
                .account_ref(pre, market)?
                .balance
                .0
                .min(position as u64);
            self.move_held(pre, market, id, paid)?;
            position - paid as i64
        } else {
            0
        };
        self.account_mut(pre, id)?.set_position(market, left);
        if position > 0 {
            self.repay_debts(pre, id)?;
        }
        Ok(self.account_ref(pre, id)?.position(&market))
    }

    /// Sets an account's nonce (the driver's LR-2).
    pub(crate) fn set_nonce(
        &mut self,
        pre: &Prefetched,
        id: AccountId,
        nonce: u64,
    ) -> Result<(), ExecError> {
        self.account_mut(pre, id)?.nonce = nonce;
        Ok(())
    }

    /// Moves `amount` from `from` to `to` (LR-3.3): positive, covered by `from`'s balance.
    pub(crate) fn transfer(
        &mut self,
        pre: &Prefetched,
        from: AccountId,
        to: AccountId,
        amount: Amount,
    ) -> Result<Result<(), RejectReason>, ExecError> {
        if amount.is_zero() {
            return Ok(Err(RejectReason::ZeroAmount));
        }
        let mut sender = self.account(pre, from)?;
        let Some(left) = sender.balance.checked_sub(amount) else {
            return Ok(Err(RejectReason::InsufficientBalance {
                balance: sender.balance,
                needed: amount,
            }));
        };
        if from == to {
            // A transfer to oneself is accepted and moves nothing.
            return Ok(Ok(()));
        }
        let mut recipient = self.account(pre, to)?;
        let Some(credited) = recipient.balance.checked_add(amount) else {
            return Ok(Err(RejectReason::Overflow));
        };
        sender.balance = left;
        recipient.balance = credited;
        self.accounts.insert(from, sender);
        self.accounts.insert(to, recipient);
        // ST-5.3: what an account in debt receives pays its debts first.
        self.repay_debts(pre, to)?;
        Ok(Ok(()))
    }

    /// Creates `amount` in `to` (LR-3.1), within the supply's and the balance's range.
    pub(crate) fn mint(
        &mut self,
        pre: &Prefetched,
        to: AccountId,
        amount: Amount,
    ) -> Result<Result<(), RejectReason>, ExecError> {
        let mut recipient = self.account(pre, to)?;
        let (Some(supply), Some(credited), Some(minted)) = (
            self.supply.checked_add(amount),
            recipient.balance.checked_add(amount),
            self.minted.checked_add(amount),
        ) else {
            return Ok(Err(RejectReason::Overflow));
        };
        recipient.balance = credited;
        self.accounts.insert(to, recipient);
        self.supply = supply;
        self.minted = minted;
        self.repay_debts(pre, to)?;
        Ok(Ok(()))
    }

    /// Destroys `amount` of `from`'s balance (LR-3.2).
    pub(crate) fn burn(
        &mut self,
        pre: &Prefetched,
        from: AccountId,
        amount: Amount,
    ) -> Result<Result<(), RejectReason>, ExecError> {
        let mut holder = self.account(pre, from)?;
        let Some(left) = holder.balance.checked_sub(amount) else {
            return Ok(Err(RejectReason::InsufficientBalance {
                balance: holder.balance,
                needed: amount,
            }));
        };
        let (Some(supply), Some(burned)) = (
            self.supply.checked_sub(amount),
            self.burned.checked_add(amount),
        ) else {
            return Ok(Err(RejectReason::Overflow));
        };
        holder.balance = left;
        self.accounts.insert(from, holder);
        self.supply = supply;
        self.burned = burned;
        Ok(Ok(()))
    }

    /// LR-4: the touched balances moved by exactly what was minted less what was burned, and
    /// so did the supply. A violation is a bug: it stops the node before anything is
    /// committed.
    pub(crate) fn assert_conserved(
        &self,
        pre: &Prefetched,
        supply_before: Amount,
        height: bcte_types::Height,
    ) -> Result<(), ExecError> {
        let mut before: i128 = 0;
        let mut after: i128 = 0;
        for (id, a) in &self.accounts {
            let old = pre
                .decode::<AccountState>(&StateKey::Account(*id))?
                .unwrap_or_default();
            before += i128::from(old.balance.get());
            after += i128::from(a.balance.get());
        }
        let net = i128::from(self.minted.get()) - i128::from(self.burned.get());
        assert_eq!(
            after - before,
            net,
            "money conservation violated at height {height}"
        );
        assert_eq!(
            i128::from(self.supply.get()) - i128::from(supply_before.get()),
            net,
            "supply moved by other than minted - burned at height {height}"
        );
        Ok(())
    }

    fn write_into(self, out: &mut WriteSet, supply_before: Amount) {
        for (id, a) in &self.accounts {
            out.insert(StateKey::Account(*id), Some(encode_value(a)));
        }
        if self.supply != supply_before {
            out.insert(StateKey::Supply, Some(encode_value(&self.supply)));
        }
    }
}

/// Everything one block's execution has read and changed.
pub(crate) struct Working<'a> {
    /// The values read before execution.
    pub(crate) pre: &'a Prefetched,
    /// Balances and the supply.
    pub(crate) money: Money,
    supply_before: Amount,
    /// The market's typed values.
    pub(crate) market: crate::market::MarketValues,
    /// Enrolled participants touched by the block.
    pub(crate) participants: Typed<crate::identity::ParticipantState>,
    /// What the market's end-of-block work did, in order.
    pub(crate) events: Vec<crate::exec::MarketEvent>,
}

impl<'a> Working<'a> {
    pub(crate) fn new(pre: &'a Prefetched, supply: Amount) -> Self {
        Self {
            pre,
            money: Money::new(supply),
            supply_before: supply,
            market: Default::default(),
            participants: Typed::default(),
            events: Vec::new(),
        }
    }

    /// LR-4 over every balance the block touched.
    pub(crate) fn assert_conserved(&self, height: bcte_types::Height) -> Result<(), ExecError> {
        self.money
            .assert_conserved(self.pre, self.supply_before, height)
    }

    /// The block's writes.
    pub(crate) fn into_writes(self) -> (WriteSet, Vec<crate::exec::MarketEvent>) {
        let mut out = WriteSet::new();
        self.money.write_into(&mut out, self.supply_before);
        self.market.write_into(&mut out);
        self.participants.write_into(&mut out);
        (out, self.events)
    }
}

impl crate::market::MarketValues {
    fn write_into(self, out: &mut WriteSet) {
        let Self {
            index,
            feeders,
            schedules,
            site_tables,
            sites,
            books,
            bids,
            results,
            site_results,
            upstream,
            meters,
            readings,
            settling,
            settled,
            settlements,
            adjustments,
            debtors,
            contracts,
            flex,
        } = self;
        index.write_into(out);
        feeders.write_into(out);
        schedules.write_into(out);
        site_tables.write_into(out);
        sites.write_into(out);
        // An interval nobody bids for any more has no book, and an emptied bucket no key.
        books.write_into_unless(out, crate::market_state::BookIndex::is_empty);
        bids.write_into_unless(out, crate::market_state::BidBucket::is_empty);
        results.write_into(out);
        site_results.write_into(out);
        upstream.write_into(out);
        meters.write_into(out);
        readings.write_into(out);
        settling.write_into(out);
        settled.write_into(out);
        settlements.write_into(out);
        adjustments.write_into(out);
        debtors.write_into_unless(out, crate::settle_state::Debtors::is_empty);
        contracts.write_into_unless(out, crate::contract::ContractTable::is_empty);
        flex.write_into_unless(out, crate::flex::FlexTable::is_empty);
    }
}

/// Decodes a value read outside execution (the API, the audit).
pub fn decode_value<T: Decode<Cfg = ()>>(bytes: &[u8]) -> Option<T> {
    T::decode_cfg(Copying(bytes), &()).ok()
}
