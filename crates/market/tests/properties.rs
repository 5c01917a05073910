//! Property tests on random feeders and bids: every result satisfies the optimality conditions
//! (checked by `verify`, independently of the engine), aggregation is exact, and the result is
//! deterministic and independent of the order of the input.

mod common;

use bcte_market::{Bid, Curve, Market, clear, verify};
use bcte_units::{Price, Watts};
use common::{Spec, build, parts, permutation, spec};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A clearing keyed by id, to compare markets listed in different orders.
#[derive(Debug, PartialEq, Eq)]
struct ById {
    prices: BTreeMap<String, Price>,
    flows: BTreeMap<String, Watts>,
    shed: BTreeMap<String, Watts>,
    spilled: BTreeMap<String, Watts>,
    allocations: BTreeMap<String, Watts>,
    welfare: i128,
}

fn keyed<T: Copy>(market: &Market, values: &[T]) -> BTreeMap<String, T> {
    market
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .zip(values.iter().copied())
        .collect()
}

fn by_id(market: &Market) -> ById {
    let c = clear(market);
    ById {
        prices: keyed(market, &c.prices),
        flows: keyed(market, &c.flows),
        shed: keyed(market, &c.shed),
        spilled: keyed(market, &c.spilled),
        allocations: market
            .bids()
            .iter()
            .map(|b| b.id.clone())
            .zip(c.allocations.iter().copied())
            .collect(),
        welfare: c.welfare.0,
    }
}

/// The same market with its nodes and bids listed in another order.
fn shuffled(spec: &Spec) -> Market {
    let (nodes, bids) = parts(spec);
    let node_order = permutation(nodes.len(), spec.shuffle);
    let bid_order = permutation(bids.len(), spec.shuffle.rotate_left(17));
    let nodes = node_order.iter().map(|&i| nodes[i].clone()).collect();
    let bids = bid_order.iter().map(|&j| bids[j].clone()).collect();
    Market::new(Price(spec.floor), Price(spec.cap), nodes, bids).expect("valid market")
}

/// The same market with the bids of each node summed into one.
fn aggregated(market: &Market) -> Market {
    let mut per_node: BTreeMap<&str, Vec<&Curve>> = BTreeMap::new();
    for bid in market.bids() {
        per_node
            .entry(bid.node.as_str())
            .or_default()
            .push(&bid.curve);
    }
    let bids = per_node
        .into_iter()
        .map(|(node, curves)| {
            Bid::new(
                format!("all-{node}"),
                node,
                Curve::sum(curves).expect("sum within limits"),
            )
        })
        .collect();
    Market::new(
        market.price_floor(),
        market.price_cap(),
        market.nodes().to_vec(),
        bids,
    )
    .expect("valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn every_clearing_satisfies_the_optimality_conditions(spec in spec(8, 12, false)) {
        let market = build(&spec);
        let clearing = clear(&market);
        prop_assert_eq!(verify(&market, &clearing), Ok(()));
    }

    #[test]
    fn clearing_is_deterministic_and_independent_of_input_order(spec in spec(8, 12, false)) {
        let market = build(&spec);
        let first = by_id(&market);
        prop_assert_eq!(&first, &by_id(&market));
        prop_assert_eq!(&first, &by_id(&shuffled(&spec)));
    }

    #[test]
    fn aggregating_the_bids_of_a_node_changes_no_price_flow_or_node_total(spec in spec(8, 12, false)) {
        let market = build(&spec);
        let whole = aggregated(&market);
        let (a, b) = (clear(&market), clear(&whole));
        prop_assert_eq!(verify(&whole, &b), Ok(()));
        if a.shed.iter().any(|w| w.0 != 0) {
            // MR-2.4: shedding is per bid and class, so a node's sum sheds differently (its
            // generation nets its load out); the total shed is what the feeder lacks either way.
            let total = |c: &bcte_market::Clearing| c.shed.iter().map(|w| w.0).sum::<i64>();
            prop_assert_eq!(total(&a), total(&b));
            return Ok(());
        }
        prop_assert_eq!(&a.prices, &b.prices);
        prop_assert_eq!(&a.flows, &b.flows);
        prop_assert_eq!(&a.shed, &b.shed);
        prop_assert_eq!(&a.spilled, &b.spilled);
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for (bid, w) in market.bids().iter().zip(&a.allocations) {
            *totals.entry(bid.node.as_str()).or_default() += w.0;
        }
        for (bid, w) in whole.bids().iter().zip(&b.allocations) {
            prop_assert_eq!(totals.get(bid.node.as_str()).copied().unwrap_or(0), w.0);
        }
    }

    #[test]
    fn a_sum_of_curves_accepts_exactly_the_sums_at_every_price(
        spec in spec(1, 6, false),
        prices in prop::collection::vec(-70i64..70, 1..20),
        offsets in prop::collection::vec(-3i64..3, 1..20),
    ) {
        let (_, bids) = parts(&spec);
        let sum = Curve::sum(bids.iter().map(|b| &b.curve)).expect("sum");
        for (p, o) in prices.iter().zip(offsets.iter().cycle()) {
            let price = Price(p * common::UNIT + o);
            let range = sum.range_at(price);
            let (min, max) = bids.iter().fold((0, 0), |(lo, hi), b| {
                let r = b.curve.range_at(price);
                (lo + r.min.0, hi + r.max.0)
            });
            prop_assert_eq!((range.min.0, range.max.0), (min, max));
        }
    }
}
