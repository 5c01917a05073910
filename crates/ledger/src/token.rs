//! The settlement token: transfers between accounts, and the authority's mint and burn
//! (ledger rules LR-3.1 to LR-3.3). Money itself moves through [`crate::working::Money`].

use crate::{exec::ExecError, working::Working};
use bcte_types::{AccountId, Amount, RejectReason};

/// LR-3.3: moves a positive amount covered by the sender's balance.
pub(crate) fn transfer(
    w: &mut Working<'_>,
    sender: AccountId,
    to: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    w.money.transfer(w.pre, sender, to, amount)
}

/// LR-3.1: creates a positive amount (the driver has checked the privilege).
pub(crate) fn mint(
    w: &mut Working<'_>,
    to: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    if amount.is_zero() {
        return Ok(Err(RejectReason::ZeroAmount));
    }
    w.money.mint(w.pre, to, amount)
}

/// LR-3.2: destroys a positive amount of the sender's own balance.
pub(crate) fn burn(
    w: &mut Working<'_>,
    sender: AccountId,
    amount: Amount,
) -> Result<Result<(), RejectReason>, ExecError> {
    if amount.is_zero() {
        return Ok(Err(RejectReason::ZeroAmount));
    }
    w.money.burn(w.pre, sender, amount)
}
