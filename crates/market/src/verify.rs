//! An independent check that a clearing is optimal: the conditions any observer can verify.
//!
//! [`verify`] uses only the market and the result, not the engine: every price within
//! `[floor, cap]`; every allocation within what its curve accepts at its node's price
//! (MR-1.2); every node balanced exactly; every flow within its edge's limits; a node priced
//! above its parent only when importing at its limit and below only when exporting at its
//! limit; shedding only at the cap and spilling only at the floor, only after every bid at the
//! node has gone to the end of its curve, each bid shedding at most its demand at the cap and
//! each node spilling at most its net must-run generation (MR-2.3, MR-2.4); load shed in
//! priority order (MR-2.4: there are extended prices above the cap, one per node, equal across
//! every edge not at a limit, under which every shed bid's class is at or below its node's and
//! every bid of a lower class is shed in full); the reported welfare equal to the welfare of
//! the allocations (MR-4). Together these are the optimality conditions of welfare
//! maximisation on the extended price grid, so a result that passes is optimal.
//!
//! Invariant: `verify` never panics, whatever the clearing holds.

use crate::clear::{Clearing, Welfare};
use crate::market::{Market, PRIORITY_CLASSES};
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
    /// A bid's shed is negative, above its demand at the cap, or does not add up to its node's.
    #[error("bid {bid:?}: {shed} shed, but it may shed between 0 and its demand at the cap")]
    BadBidShed {
        /// The bid.
        bid: String,
        /// Its shed power.
        shed: Watts,
    },
    /// A bid's spill is negative, above its must-run generation, or does not add up to its
    /// node's.
    #[error(
        "bid {bid:?}: {spilled} spilled, but it may spill between 0 and its must-run generation"
    )]
    BadBidSpill {
        /// The bid.
        bid: String,
        /// Its spilled power.
        spilled: Watts,
    },
    /// Load is shed out of priority order: no extended prices explain the shed (MR-2.4).
    #[error(
        "node {node:?}: load is shed out of priority order (a class is shed while a lower class \
         it shares the cap price with is not shed in full)"
    )]
    PriorityOrder {
        /// A node of the region where the order is broken.
        node: String,
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
        || clearing.bid_shed.len() != bids.len()
        || clearing.bid_spilled.len() != bids.len()
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
    let mut must_run = vec![0i128; n];
    let mut bids_shed = vec![0i128; n];
    let mut bids_spilled = vec![0i128; n];
    let mut welfare: i128 = 0;
    for (b, bid) in bids.iter().enumerate() {
        let node = market.node_of_bid(b);
        must_run[node] -= i128::from(bid.curve.max_power().0);
        let (shed, spilled) = (clearing.bid_shed[b], clearing.bid_spilled[b]);
        if shed.0 < 0 || shed.0 > bid.curve.min_power().0.max(0) {
            return Err(Violation::BadBidShed {
                bid: bid.id.clone(),
                shed,
            });
        }
        if spilled.0 < 0 || spilled.0 > (-bid.curve.max_power().0).max(0) {
            return Err(Violation::BadBidSpill {
                bid: bid.id.clone(),
                spilled,
            });
        }
        bids_shed[node] += i128::from(shed.0);
        bids_spilled[node] += i128::from(spilled.0);
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
            || i128::from(shed.0) != bids_shed[i]
            || (shed.0 > 0 && (clearing.prices[i] != cap || !at_least[i]))
        {
            return Err(Violation::BadShed { node: id(), shed });
        }
        if spilled.0 < 0
            || i128::from(spilled.0) != bids_spilled[i]
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
    check_priority_order(market, clearing)?;
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

/// MR-2.4: load is shed in priority order. Every node at the cap has an extended price
/// `cap + 1 + c` (`c` a class, or below `cap + 1` when it sheds nothing) such that every bid of
/// a class below its node's is shed in full and no bid of a class above it sheds. Extended
/// prices are equal across an edge not at a limit, no lower in the child across an edge at its
/// import limit and no higher across one at its export limit. A tree of such constraints is
/// satisfiable exactly when, bottom up, each node's interval of possible classes stays
/// non-empty once its children's constraints are applied, which is what this checks.
fn check_priority_order(market: &Market, clearing: &Clearing) -> Result<(), Violation> {
    let nodes = market.nodes();
    let cap = market.price_cap();
    let n = nodes.len();
    // Classes on a scale where -1 means "below cap + 1 (sheds nothing)" and 0..=7 the shedding
    // classes; `lo..=hi` is what the node's own bids allow.
    let top = i32::from(PRIORITY_CLASSES) - 1;
    let mut lo = vec![-1i32; n];
    let mut hi = vec![top; n];
    for (b, bid) in market.bids().iter().enumerate() {
        let node = market.node_of_bid(b);
        if clearing.prices[node] != cap {
            continue;
        }
        let class = i32::from(bid.priority);
        let demand = bid.curve.min_power().0.max(0);
        let shed = clearing.bid_shed[b].0;
        if shed > 0 {
            lo[node] = lo[node].max(class);
        }
        if shed < demand {
            // Not shed in full: the node's class is at most this bid's.
            hi[node] = hi[node].min(class);
        }
    }
    // Children come after their parents in no particular input order, so walk the tree from
    // the leaves: a node's depth-first post-order through an explicit stack.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut root = 0;
    for i in 0..n {
        match market.parent(i) {
            Some(p) => children[p].push(i),
            None => root = i,
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().copied());
    }
    for &c in order.iter().rev() {
        if clearing.prices[c] != cap {
            continue;
        }
        if lo[c] > hi[c] {
            return Err(Violation::PriorityOrder {
                node: nodes[c].id.clone(),
            });
        }
        let Some(p) = market.parent(c) else { continue };
        if clearing.prices[p] != cap {
            continue;
        }
        let node = &nodes[c];
        let flow = clearing.flows[c].0;
        let at_import = node.import_limit.is_some_and(|w| w.0 == flow);
        let at_export = node.export_limit.is_some_and(|w| -w.0 == flow);
        match (at_import, at_export) {
            // A closed edge: no constraint between the two.
            (true, true) => {}
            // The child's class is at least the parent's: the parent's is at most the child's.
            (true, false) => hi[p] = hi[p].min(hi[c]),
            (false, true) => lo[p] = lo[p].max(lo[c]),
            (false, false) => {
                lo[p] = lo[p].max(lo[c]);
                hi[p] = hi[p].min(hi[c]);
            }
        }
    }
    Ok(())
}
