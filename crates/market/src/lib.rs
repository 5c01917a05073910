//! Congestion-aware clearing of price-flexibility curves on a radial distribution feeder.
//!
//! One market interval: a feeder (a tree of nodes with import and export limits on each edge),
//! bids (price-flexibility [`Curve`]s at nodes), a price floor and cap. [`clear`] returns a
//! price per node, an allocation per bid, a flow per edge and the load shed and generation
//! spilled per node, maximising welfare subject to every limit. The rules that settle every
//! choice the optimum leaves open are numbered in `docs/market-rules.md` (MR-x.y) and cited at
//! the code that implements them.
//!
//! The crate is pure and deterministic: no clock, no files, no sockets, no threads, no floats
//! in the engine or its results, so every validator computes the same result bit for bit.
//! Powers are [`Watts`](bcte_units::Watts), prices [`Price`](bcte_units::Price)s in µ/MWh.
//! The `file` module (feature `json`, on by default) converts the user-facing JSON market file (kW and currency/MWh as
//! decimals) at the boundary; [`verify`] checks a result against the optimality conditions;
//! [`generate`] makes seeded test markets.

pub mod clear;
pub mod curve;
#[cfg(feature = "json")]
mod decimal;
#[cfg(feature = "json")]
pub mod file;
pub mod generate;
pub mod limits;
pub mod market;
pub mod verify;

pub use clear::{Clearing, Welfare, clear};
pub use curve::{Curve, CurveError, Point, PowerRange, Ramp, Step};
pub use market::{
    Bid, DEFAULT_PRICE_CAP, DEFAULT_PRICE_FLOOR, Market, MarketError, Node, PRIORITY_CLASSES,
};
pub use verify::{Violation, verify};
