//! Named limits on every input of the market engine.
//!
//! Each limit exists so that no input can make the engine overflow, run without bound or exhaust
//! memory: a market that passes them clears with plain `i64` power sums and `i128` products and
//! never panics. The arithmetic argument is written next to each limit.

use bcte_units::{Price, Watts};

/// Largest absolute price anywhere in a market: 10⁶ currency/MWh.
///
/// Price differences on the extended grid stay below 2⁴², so the products of a price span with
/// a power swing and with itself (welfare integrals) stay below 2¹²⁴ and fit an `i128`.
pub const PRICE_ABS_MAX: Price = Price(1_000_000_000_000);

/// Largest absolute power of any point of any curve: 10¹² W (1 TW, 10⁹ kW).
pub const POWER_ABS_MAX: Watts = Watts(1_000_000_000_000);

/// Largest import or export limit of an edge: 10¹⁸ W. A larger limit could never bind anyway.
pub const LIMIT_MAX: Watts = Watts(1_000_000_000_000_000_000);

/// Most bids in one market. With [`POWER_ABS_MAX`] every sum of powers stays below
/// 2 × 10¹⁸ W, inside an `i64`.
pub const BIDS_MAX: usize = 2_000_000;

/// Most nodes in one feeder.
pub const NODES_MAX: usize = 1_000_000;

/// Deepest node (the root has depth 0).
///
/// Clearing costs O(B · log P) per nesting level of congested edges, so the depth bounds the
/// worst case; real feeders are a few tens of levels deep.
pub const DEPTH_MAX: usize = 4_096;

/// Most points in one curve of a market file.
pub const POINTS_PER_CURVE_MAX: usize = 4_096;

/// Most components (steps plus ramps) of one curve, aggregated or not.
pub const COMPONENTS_PER_CURVE_MAX: usize = 1 << 20;

/// Most curve components in one market.
pub const COMPONENTS_MAX: usize = 1 << 24;

/// Most bytes in a node or bid id.
pub const ID_BYTES_MAX: usize = 128;

/// Most bytes in a market file.
pub const FILE_BYTES_MAX: usize = 1 << 30;
