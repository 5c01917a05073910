//! An independent check that a clearing is optimal: the conditions any observer can verify.
//!
//! [`verify`] uses only the market and the result, not the engine: every price within
//! `[floor, cap]`; every allocation within what its curve accepts at its node's price
//! (MR-1.2); every node balanced exactly; every flow within its edge's limits; a node priced
//! above its parent only when importing at its limit and below only when exporting at its
//! limit; shedding only at the cap and spilling only at the floor, only after every bid at the
//! node has gone to the end of its curve, and at most the node's net demand at the cap or net
//! must-run generation (MR-2.3); the reported welfare equal to the welfare of the
//! allocations (MR-4). Together these are the optimality conditions of welfare maximisation on
//! the price grid, so a result that passes is optimal.
//!
//! Invariant: `verify` never panics, whatever the clearing holds.

use crate::clear::{Clearing, Welfare};
use crate::market::Market;
use bcte_units::{Price, Watts};

/// The first optimality condition a clearing breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The result's vectors do not match the market's nodes and bids.
    #[error("the result has the wrong number of entries")]
    Shape,
    /// A price is outside `[floor, cap]`.
    #[error("node {node:?}: price {price} is outside [floor, cap]")]
    PriceOutOfBounds {
        /// The node.
        node: String,
        /// Its price.
        price: Price,
    },
    /// An allocation is not on its curve at its node's price.
    #[error(
        "bid {bid:?}: allocation {allocation} is outside [{min}, {max}], what its curve accepts at {price}"
    )]
    OffCurve {
        /// The bid.
        bid: String,
        /// Its allocation.
        allocation: Watts,
        /// Its node's price.
        price: Price,
        /// Least the curve accepts there.
        min: Watts,
        /// Most the curve accepts there.
        max: Watts,
    },
    /// A node does not balance.
    #[error("node {node:?} does not balance: {excess} W more in than out")]
    Unbalanced {
        /// The node.
        node: String,
        /// Power in minus power out (W).
        excess: i128,
    },
    /// The root has a flow.
    #[error("the root has a flow")]
    RootFlow,
    /// A flow exceeds a limit.
    #[error("node {node:?}: flow {flow} exceeds its edge's limits")]
    OverLimit {
        /// The node.
        node: String,
        /// Its flow.
        flow: Watts,
    },
    /// Prices differ across an edge that is not at its limit in the direction of the difference.
    #[error(
        "node {node:?}: price {price} differs from its parent's {parent_price} but its edge is not at its limit"
    )]
    SeparationWithoutCongestion {
        /// The node.
        node: String,
        /// Its price.
        price: Price,
        /// The parent's price.
        parent_price: Price,
    },
    /// Load is shed where it should not be.
    #[error(
        "node {node:?}: {shed} shed, but only demand at the cap, after every bid is at its least, may be"
    )]
    BadShed {
        /// The node.
        node: String,
        /// The shed power.
        shed: Watts,
    },
    /// Generation is spilled where it should not be.
    #[error(
        "node {node:?}: {spilled} spilled, but only must-run generation at the floor, after every bid is at its most, may be"
    )]
    BadSpill {
        /// The node.
        node: String,
        /// The spilled power.
        spilled: Watts,
    },
    /// The reported welfare is not the welfare of the allocations.
    #[error("welfare {reported:?} differs from {expected:?}, the welfare of the allocations")]
    Welfare {
        /// As reported.
        reported: Welfare,
        /// As recomputed.
        expected: Welfare,
    },
}

/// Checks a clearing against the optimality conditions. See the [module documentation](self).
pub fn verify(market: &Market, clearing: &Clearing) -> Result<(), Violation> {
    let nodes = market.nodes();
    let bids = market.bids();
    let (floor, cap) = (market.price_floor(), market.price_cap());
    let n = nodes.len();
    if clearing.prices.len() != n
        || clearing.flows.len() != n
        || clearing.shed.len() != n
        || clearing.spilled.len() != n
        || clearing.allocations.len() != bids.len()
    {
        return Err(Violation::Shape);
    }
    for (node, &price) in nodes.iter().zip(&clearing.prices) {
        if price < floor || price > cap {
            return Err(Violation::PriceOutOfBounds {
                node: node.id.clone(),
                price,
            });
        }
    }

    // Net power into each node from outside: its flow, less what its bids draw, plus what it
    // sheds, less what it spills, less its children's flows. Must be zero.
    let mut excess: Vec<i128> = clearing.flows.iter().map(|f| i128::from(f.0)).collect();
    let mut at_least = vec![true; n];
    let mut at_most = vec![true; n];
    let mut demand_at_cap = vec![0i128; n];
    let mut must_run = vec![0i128; n];
    let mut welfare: i128 = 0;
    for (b, bid) in bids.iter().enumerate() {
        let node = market.node_of_bid(b);
        demand_at_cap[node] += i128::from(bid.curve.min_power().0);
        must_run[node] -= i128::from(bid.curve.max_power().0);
        let price = clearing.prices[node];
        let allocation = clearing.allocations[b];
        let range = bid.curve.range_at(price);
        if !range.contains(allocation) {
            return Err(Violation::OffCurve {
                bid: bid.id.clone(),
                allocation,
                price,
                min: range.min,
                max: range.max,
            });
        }
        at_least[node] &= allocation == range.min;
        at_most[node] &= allocation == range.max;
        excess[node] -= i128::from(allocation.0);
        welfare += i128::from(allocation.0) * i128::from(price.0)
            + bid.curve.integral_to_cap(price.0, cap.0)
            - bid.curve.welfare_origin(floor.0, cap.0);
    }
    for i in 0..n {
        let (shed, spilled) = (clearing.shed[i], clearing.spilled[i]);
        let id = || nodes[i].id.clone();
        if shed.0 < 0
            || (shed.0 > 0
                && (clearing.prices[i] != cap
                    || !at_least[i]
                    || i128::from(shed.0) > demand_at_cap[i]))
        {
            return Err(Violation::BadShed { node: id(), shed });
        }
        if spilled.0 < 0
            || (spilled.0 > 0
                && (clearing.prices[i] != floor
                    || !at_most[i]
                    || i128::from(spilled.0) > must_run[i]))
        {
            return Err(Violation::BadSpill {
                node: id(),
                spilled,
            });
        }
        excess[i] += i128::from(shed.0) - i128::from(spilled.0);
        welfare -= i128::from(shed.0) * i128::from(cap.0);
        welfare += i128::from(spilled.0) * i128::from(floor.0);
        match market.parent(i) {
            None => {
                if clearing.flows[i] != Watts::ZERO {
                    return Err(Violation::RootFlow);
                }
            }
            Some(p) => {
                excess[p] -= i128::from(clearing.flows[i].0);
                let node = &nodes[i];
                let flow = clearing.flows[i];
                let import = node.import_limit.map_or(i64::MAX, |w| w.0);
                let export = node.export_limit.map_or(i64::MAX, |w| w.0);
                if flow.0 > import || flow.0 < -export {
                    return Err(Violation::OverLimit { node: id(), flow });
                }
                let (price, parent_price) = (clearing.prices[i], clearing.prices[p]);
                if (price > parent_price && flow.0 != import)
                    || (price < parent_price && flow.0 != -export)
                {
                    return Err(Violation::SeparationWithoutCongestion {
                        node: id(),
                        price,
                        parent_price,
                    });
                }
            }
        }
    }
    if let Some(i) = excess.iter().position(|&e| e != 0) {
        return Err(Violation::Unbalanced {
            node: nodes[i].id.clone(),
            excess: excess[i],
        });
    }
    if clearing.welfare != Welfare(welfare) {
        return Err(Violation::Welfare {
            reported: clearing.welfare,
            expected: Welfare(welfare),
        });
    }
    Ok(())
}
