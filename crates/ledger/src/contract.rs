//! Peer-to-peer contracts on the chain (rules CT-x.y of `docs/contract-rules.md`, cited at the
//! branches): entering a contract with both parties' consent, cancelling its future intervals
//! with both parties' consent, and the contract difference each settled interval pays
//! ([`difference`], applied by [`crate::settle`]).

use crate::{
    exec::{BlockContext, ExecError},
    keys::StateKey,
    market::{Handled, reject},
    market_state::{SiteTable, read_len, write_len},
    working::Working,
};
use bcte_market::limits::{POWER_ABS_MAX, PRICE_ABS_MAX};
use bcte_types::{
    AccountId, ChainId, FeederId, Hash, Interval, Price, RejectReason, SiteId,
    contract::{
        CANCEL_NAMESPACE, CONTRACT_INTERVALS_MAX, CONTRACT_NAMESPACE, ContractCancel, ContractP2p,
        P2pTerms,
    },
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::{Verifier, ed25519::Signature};

/// Most contracts a feeder holds at once (those wholly settled are dropped when a contract is
/// entered).
pub const CONTRACTS_PER_FEEDER_MAX: usize = 4_096;

/// One contract: its id, terms and the last interval still under contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractEntry {
    /// `SHA-256(chain_id ‖ terms)`.
    pub id: Hash,
    /// The terms both parties signed.
    pub terms: P2pTerms,
    /// The last interval under contract: `terms.to`, or the interval before a cancellation.
    pub until: Interval,
}

impl ContractEntry {
    /// Whether interval `k` is under contract.
    pub fn covers(&self, k: Interval) -> bool {
        self.terms.from <= k && k <= self.until
    }
}

/// A feeder's contracts: the peer-to-peer ones and the EV charging ones, each sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContractTable {
    /// The peer-to-peer contracts.
    pub contracts: Vec<ContractEntry>,
    /// The EV charging contracts (CT-3).
    pub ev: Vec<crate::ev::EvEntry>,
}

impl ContractTable {
    /// The contract `id`.
    pub fn get(&self, id: &Hash) -> Option<&ContractEntry> {
        self.contracts
            .binary_search_by(|c| c.id.cmp(id))
            .ok()
            .map(|i| &self.contracts[i])
    }

    /// The contracts covering interval `k`.
    pub fn active(&self, k: Interval) -> impl Iterator<Item = &ContractEntry> {
        self.contracts.iter().filter(move |c| c.covers(k))
    }

    /// The EV contract `id`.
    pub fn ev(&self, id: &Hash) -> Option<&crate::ev::EvEntry> {
        self.ev
            .binary_search_by(|c| c.id.cmp(id))
            .ok()
            .map(|i| &self.ev[i])
    }

    /// CT-1.5: drops the contracts wholly settled before `next_settle`.
    pub fn drop_settled(&mut self, next_settle: Interval) {
        self.contracts.retain(|c| c.until >= next_settle);
        self.ev.retain(|c| c.terms.deadline >= next_settle);
    }

    /// Whether the table has nothing (no key is written for it then).
    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty() && self.ev.is_empty()
    }
}

impl Write for ContractTable {
    fn write(&self, buf: &mut impl BufMut) {
        write_len(self.contracts.len(), buf);
        for c in &self.contracts {
            c.id.write(buf);
            c.terms.write(buf);
            c.until.write(buf);
        }
        write_len(self.ev.len(), buf);
        for c in &self.ev {
            c.write(buf);
        }
    }
}

impl EncodeSize for ContractTable {
    fn encode_size(&self) -> usize {
        crate::market_state::len_size(self.contracts.len())
            + self
                .contracts
                .iter()
                .map(|c| Hash::SIZE + c.terms.encode_size() + 8)
                .sum::<usize>()
            + crate::market_state::len_size(self.ev.len())
            + self.ev.iter().map(EncodeSize::encode_size).sum::<usize>()
    }
}

impl Read for ContractTable {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let n = read_len(buf, CONTRACTS_PER_FEEDER_MAX)?;
        let mut contracts: Vec<ContractEntry> = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let entry = ContractEntry {
                id: Hash::read(buf)?,
                terms: P2pTerms::read(buf)?,
                until: Interval::read(buf)?,
            };
            if contracts.last().is_some_and(|l| l.id >= entry.id) {
                return Err(CodecError::Invalid("ContractTable", "ids not sorted"));
            }
            contracts.push(entry);
        }
        let n = read_len(buf, crate::ev::EV_CONTRACTS_PER_FEEDER_MAX)?;
        let mut ev: Vec<crate::ev::EvEntry> = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let entry = crate::ev::EvEntry::read(buf)?;
            if ev.last().is_some_and(|l| l.id >= entry.id) {
                return Err(CodecError::Invalid("ContractTable", "EV ids not sorted"));
            }
            ev.push(entry);
        }
        Ok(Self { contracts, ev })
    }
}

/// One contract's difference settled in an interval (CT-2.1): paid by the buyer's owner to the
/// seller's owner (negative: the other way), through the market account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractFlow {
    /// The contract.
    pub id: Hash,
    /// The buying site.
    pub buyer: SiteId,
    /// The selling site.
    pub seller: SiteId,
    /// Base units.
    pub amount: i64,
}

impl Write for ContractFlow {
    fn write(&self, buf: &mut impl BufMut) {
        self.id.write(buf);
        self.buyer.write(buf);
        self.seller.write(buf);
        self.amount.write(buf);
    }
}

impl EncodeSize for ContractFlow {
    fn encode_size(&self) -> usize {
        Hash::SIZE + self.buyer.encode_size() + self.seller.encode_size() + 8
    }
}

impl Read for ContractFlow {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            id: Hash::read(buf)?,
            buyer: SiteId::read(buf)?,
            seller: SiteId::read(buf)?,
            amount: i64::read(buf)?,
        })
    }
}

/// CT-2.1: the difference of `power` W over `interval_ms` at the contract price `price` against
/// the seller's node price `seller_price`: `power × Δ × (price − seller_price) / 3.6·10¹²` base
/// units, rounded half away from zero.
pub fn difference(power: i64, interval_ms: u64, price: Price, seller_price: Price) -> i64 {
    let dp = i128::from(price.0) - i128::from(seller_price.0);
    bcte_types::units::div_round_half_away(
        i128::from(power) * i128::from(interval_ms) * dp,
        3_600_000 * 1_000_000,
    ) as i64
}

fn consent_holds(key: &AccountId, namespace: &[u8], message: &[u8], sig: &Signature) -> bool {
    key.to_public_key()
        .is_some_and(|k| k.verify(namespace, message, sig))
}

/// The owners of two sites, or the rejection naming the unknown one.
fn owners(
    table: &SiteTable,
    a: &SiteId,
    b: &SiteId,
) -> Result<(AccountId, AccountId), RejectReason> {
    let owner = |s: &SiteId| {
        table
            .sites
            .iter()
            .find(|x| &x.id == s)
            .map(|x| x.owner)
            .ok_or_else(|| RejectReason::UnknownSite { site: s.clone() })
    };
    Ok((owner(a)?, owner(b)?))
}

/// CT-1.2, AC-4.2, AC-5.1: the accounts of the parties whose consent a contract transaction
/// carries, once the feeder's site table (and, for a cancellation, its contracts) are read: a
/// consent is checked against the consenting party's current key, and a revoked party's consent
/// counts for nothing. A second read stage, as the creditors of ST-5.3.
pub(crate) fn plan_party_reads(
    pre: &crate::Prefetched,
    txs: &[bcte_types::Tx],
) -> Result<std::collections::BTreeSet<StateKey>, ExecError> {
    use bcte_types::Payload;
    let mut keys = std::collections::BTreeSet::new();
    for tx in txs {
        let (f, sites): (&FeederId, Vec<SiteId>) = match &tx.body().payload {
            Payload::ContractP2p(op) => (
                &op.terms.feeder,
                vec![op.terms.seller.clone(), op.terms.buyer.clone()],
            ),
            Payload::ContractEv(op) => (&op.terms.feeder, vec![op.terms.site.clone()]),
            Payload::ContractCancel(op) => {
                let Some(Some(table)) =
                    pre.peek_decode::<ContractTable>(&StateKey::Contracts(op.feeder.clone()))?
                else {
                    continue;
                };
                let Ok(i) = table.contracts.binary_search_by(|c| c.id.cmp(&op.id)) else {
                    continue;
                };
                let t = &table.contracts[i].terms;
                (&op.feeder, vec![t.seller.clone(), t.buyer.clone()])
            }
            _ => continue,
        };
        let Some(Some(table)) = pre.peek_decode::<SiteTable>(&StateKey::Sites(f.clone()))? else {
            continue;
        };
        for s in &sites {
            if let Some(x) = table.sites.iter().find(|x| &x.id == s) {
                keys.insert(StateKey::Account(x.owner));
            }
        }
    }
    Ok(keys)
}

/// The key a consenting party signs with now (AC-4.2), or the rejection if it is revoked
/// (AC-5.1): its consent counts for nothing.
pub(crate) fn consenting_key(
    w: &mut Working<'_>,
    party: AccountId,
) -> Result<Result<AccountId, RejectReason>, ExecError> {
    let a = w.money.account(w.pre, party)?;
    if a.revoked {
        return Ok(Err(RejectReason::Revoked { account: party }));
    }
    Ok(Ok(a.current_key(party)))
}

/// A feeder's schedule and site table, if it is registered.
pub(crate) fn feeder_of(
    w: &mut Working<'_>,
    f: &FeederId,
) -> Result<Option<(crate::market_state::Schedule, SiteTable)>, ExecError> {
    let Some(s) = w
        .market
        .schedules
        .get(w.pre, &StateKey::Schedule(f.clone()))?
        .cloned()
    else {
        return Ok(None);
    };
    let sites = w
        .market
        .site_tables
        .get(w.pre, &StateKey::Sites(f.clone()))?
        .cloned()
        .unwrap_or_default();
    Ok(Some((s, sites)))
}

/// CT-1.2: the party that must consent when `sender` sends (`None`: the sender is neither).
fn other_party(sender: AccountId, seller: AccountId, buyer: AccountId) -> Option<AccountId> {
    if sender == buyer {
        Some(seller)
    } else if sender == seller {
        Some(buyer)
    } else {
        None
    }
}

pub(crate) fn table_of(w: &mut Working<'_>, f: &FeederId) -> Result<ContractTable, ExecError> {
    Ok(w.market
        .contracts
        .get(w.pre, &StateKey::Contracts(f.clone()))?
        .cloned()
        .unwrap_or_default())
}

/// CT-1: enters a contract.
pub(crate) fn enter(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &ContractP2p,
) -> Handled {
    let t = &op.terms;
    let f = &t.feeder;
    let Some((s, sites)) = feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    // CT-1.2: two known sites of two owners.
    let (seller_owner, buyer_owner) = match owners(&sites, &t.seller, &t.buyer) {
        Ok(o) => o,
        Err(r) => reject!(r),
    };
    if t.seller == t.buyer || seller_owner == buyer_owner {
        reject!(RejectReason::invalid(
            "buyer: a contract needs two parties; the seller's and the buyer's sites have the same owner"
        ));
    }
    if t.power.0 <= 0 || t.power.0 > POWER_ABS_MAX.0 {
        reject!(RejectReason::invalid(format!(
            "power: {} W; contract a positive power of at most {} W",
            t.power.0, POWER_ABS_MAX.0
        )));
    }
    if t.price.0.abs() > PRICE_ABS_MAX.0 {
        reject!(RejectReason::invalid(format!(
            "price: beyond ±{} µ/MWh",
            PRICE_ABS_MAX.0
        )));
    }
    if t.to < t.from || t.to.0 - t.from.0 >= CONTRACT_INTERVALS_MAX {
        reject!(RejectReason::invalid(format!(
            "to: intervals {} to {}; give 1 to {CONTRACT_INTERVALS_MAX} intervals, first to last",
            t.from.0, t.to.0
        )));
    }
    // CT-1.3: only intervals not yet cleared.
    if t.from < s.next_clear {
        reject!(RejectReason::invalid(format!(
            "from: interval {} is already cleared; the first open interval is {}",
            t.from.0, s.next_clear.0
        )));
    }
    // CT-1.2: the sender is one party and the other consents.
    let Some(other) = other_party(sender, seller_owner, buyer_owner) else {
        reject!(RejectReason::NotSiteOwner {
            site: t.buyer.clone()
        });
    };
    let chain: &ChainId = &ctx.config.chain_id;
    let key = match consenting_key(w, other)? {
        Ok(k) => k,
        Err(r) => reject!(r),
    };
    if !consent_holds(&key, CONTRACT_NAMESPACE, &t.message(chain), &op.consent) {
        reject!(RejectReason::invalid(format!(
            "consent: not the signature of the other party ({other}) over these terms; both \
             parties must sign"
        )));
    }
    let id = t.id(chain);
    let mut table = table_of(w, f)?;
    // CT-1.5: contracts wholly settled are done with.
    table.drop_settled(s.next_settle);
    let at = match table.contracts.binary_search_by(|c| c.id.cmp(&id)) {
        Ok(_) => reject!(RejectReason::invalid(format!(
            "contract {} is already entered",
            hex::encode(id)
        ))),
        Err(at) => at,
    };
    // CT-1.2: no two contracts of the same sites overlap.
    if let Some(c) = table.contracts.iter().find(|c| {
        c.terms.seller == t.seller
            && c.terms.buyer == t.buyer
            && c.terms.from <= t.to
            && t.from <= c.until
    }) {
        reject!(RejectReason::invalid(format!(
            "from: overlaps contract {} of the same sites (intervals {} to {})",
            hex::encode(c.id),
            c.terms.from.0,
            c.until.0
        )));
    }
    if table.contracts.len() >= CONTRACTS_PER_FEEDER_MAX {
        reject!(RejectReason::invalid(format!(
            "feeder {f} has {CONTRACTS_PER_FEEDER_MAX} contracts, the most it may hold"
        )));
    }
    table.contracts.insert(
        at,
        ContractEntry {
            id,
            terms: t.clone(),
            until: t.to,
        },
    );
    w.market
        .contracts
        .put(StateKey::Contracts(f.clone()), table);
    Ok(Ok(()))
}

/// CT-1.4: cancels a contract from an interval on.
pub(crate) fn cancel(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &ContractCancel,
) -> Handled {
    let f = &op.feeder;
    let Some((s, sites)) = feeder_of(w, f)? else {
        reject!(RejectReason::UnknownFeeder { feeder: f.clone() });
    };
    let mut table = table_of(w, f)?;
    let Ok(i) = table.contracts.binary_search_by(|c| c.id.cmp(&op.id)) else {
        reject!(RejectReason::invalid(format!(
            "id: no contract {} on feeder {f}",
            hex::encode(op.id)
        )));
    };
    let entry = table.contracts[i].clone();
    let (seller_owner, buyer_owner) = match owners(&sites, &entry.terms.seller, &entry.terms.buyer)
    {
        Ok(o) => o,
        Err(r) => reject!(r),
    };
    let Some(other) = other_party(sender, seller_owner, buyer_owner) else {
        reject!(RejectReason::NotSiteOwner {
            site: entry.terms.buyer.clone()
        });
    };
    let message = ContractCancel::message(&ctx.config.chain_id, f, &op.id, op.from);
    let key = match consenting_key(w, other)? {
        Ok(k) => k,
        Err(r) => reject!(r),
    };
    if !consent_holds(&key, CANCEL_NAMESPACE, &message, &op.consent) {
        reject!(RejectReason::invalid(format!(
            "consent: not the signature of the other party ({other}) over this cancellation; \
             a contract is cancelled only with both parties' consent"
        )));
    }
    // Only future intervals: those not yet cleared.
    if op.from < s.next_clear {
        reject!(RejectReason::invalid(format!(
            "from: interval {} is already cleared; cancel from interval {} on",
            op.from.0, s.next_clear.0
        )));
    }
    if op.from > entry.until {
        reject!(RejectReason::invalid(format!(
            "from: the contract ends at interval {}; nothing to cancel from {}",
            entry.until.0, op.from.0
        )));
    }
    if op.from <= entry.terms.from {
        table.contracts.remove(i);
    } else {
        table.contracts[i].until = Interval(op.from.0 - 1);
    }
    w.market
        .contracts
        .put(StateKey::Contracts(f.clone()), table);
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_the_contract_price_less_the_sellers_price_on_the_energy() {
        // Worked by hand: 2 kW for 15 minutes is 500 Wh; at 60/MWh against a seller's node
        // price of 150/MWh the buyer is owed (60 − 150) × 0.5 kWh = −0.045 currency.
        assert_eq!(
            difference(2_000, 900_000, Price(60_000_000), Price(150_000_000)),
            -45_000
        );
        assert_eq!(
            difference(2_000, 900_000, Price(60_000_000), Price(20_000_000)),
            20_000
        );
        // Half a base unit away from zero: 1 W for 1.8 s at 1/MWh difference.
        assert_eq!(difference(1, 1_800, Price(1_000_000), Price(0)), 0);
        assert_eq!(difference(1_000, 1_800, Price(1_000_000), Price(0)), 1);
        assert_eq!(difference(1_000, 1_800, Price(0), Price(1_000_000)), -1);
    }
}
