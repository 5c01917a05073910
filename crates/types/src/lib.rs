//! Ids, fixed-point quantities, transactions and blocks of bcte, with their canonical encoding.
//!
//! This crate is the vocabulary every other bcte crate speaks. It is pure: it never touches a
//! clock, a socket or a file. Every quantity is an integer newtype with its unit in its name
//! and its documentation, so no float ever reaches state, the wire or money.

pub mod units;

pub use units::{Amount, Price, WattHours, Watts};
