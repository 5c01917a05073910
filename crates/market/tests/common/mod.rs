//! Random markets for the property tests: small feeders with tight and closed edges, and
//! curves mixing steps, ramps and flat pieces on a coarse price grid so that ties, flat ranges
//! and prices at the floor or cap are common.

#![allow(dead_code)]

use bcte_market::{Bid, Curve, Market, Node, Point};
use bcte_units::{Price, Watts};
use proptest::prelude::*;

/// µ/MWh per currency/MWh.
pub const UNIT: i64 = 1_000_000;

/// One piece of a curve: move the price up by `rise` (0 = a step) and the power down by `drop`.
#[derive(Clone, Debug)]
pub struct Piece {
    pub rise: i64,
    pub drop: i64,
}

#[derive(Clone, Debug)]
pub struct BidSpec {
    pub node: usize,
    /// Priority class (MR-2.4), mostly 0.
    pub priority: u8,
    pub start_price: i64,
    pub start_power: i64,
    pub pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Parent among the earlier nodes (ignored for the root).
    pub parent: usize,
    pub import: Option<i64>,
    pub export: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub floor: i64,
    pub cap: i64,
    pub nodes: Vec<NodeSpec>,
    pub bids: Vec<BidSpec>,
    /// Seed for shuffling the input order.
    pub shuffle: u64,
}

fn limit() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(0)),
        5 => (0i64..30_000).prop_map(Some),
    ]
}

fn node() -> impl Strategy<Value = NodeSpec> {
    (any::<usize>(), limit(), limit()).prop_map(|(parent, import, export)| NodeSpec {
        parent,
        import,
        export,
    })
}

/// Price steps are whole currency units most of the time (ties), sometimes a few µ/MWh (grid
/// effects), sometimes zero (vertical steps).
fn piece(steps_only: bool) -> impl Strategy<Value = Piece> {
    let rise = if steps_only {
        prop_oneof![2 => Just(0i64), 3 => (1i64..30).prop_map(|u| u * UNIT)].boxed()
    } else {
        prop_oneof![2 => Just(0i64), 3 => (1i64..30).prop_map(|u| u * UNIT), 1 => 1i64..50].boxed()
    };
    let drop = prop_oneof![1 => Just(0i64), 4 => 0i64..15_000];
    // A step curve only drops at a step; between steps it is flat.
    (rise, drop).prop_map(move |(rise, drop)| Piece {
        rise,
        drop: if steps_only && rise > 0 { 0 } else { drop },
    })
}

fn bid(nodes: usize, steps_only: bool) -> impl Strategy<Value = BidSpec> {
    (
        0..nodes,
        -60i64..60,
        -20_000i64..20_000,
        prop::collection::vec(piece(steps_only), 0..5),
        prop_oneof![3 => Just(0u8), 2 => 0u8..8],
    )
        .prop_map(|(node, start, start_power, pieces, priority)| BidSpec {
            node,
            priority,
            start_price: start * UNIT,
            start_power,
            pieces,
        })
}

/// Markets with up to `max_nodes` nodes and `max_bids` bids.
pub fn spec(max_nodes: usize, max_bids: usize, steps_only: bool) -> impl Strategy<Value = Spec> {
    (1..=max_nodes).prop_flat_map(move |n| {
        (
            prop_oneof![Just(-50i64), Just(-10), Just(0), Just(-500)],
            prop_oneof![Just(50i64), Just(100), Just(3000)],
            prop::collection::vec(node(), n),
            prop::collection::vec(bid(n, steps_only), 0..=max_bids),
            any::<u64>(),
        )
            .prop_map(|(floor, cap, nodes, bids, shuffle)| Spec {
                floor: floor * UNIT,
                cap: cap * UNIT,
                nodes,
                bids,
                shuffle,
            })
    })
}

/// The points of a bid's curve, clamped into `[floor, cap]`.
pub fn points(spec: &Spec, bid: &BidSpec) -> Vec<Point> {
    let clamp = |p: i64| p.clamp(spec.floor, spec.cap);
    let mut price = clamp(bid.start_price);
    let mut power = bid.start_power;
    let mut points = vec![Point {
        price: Price(price),
        power: Watts(power),
    }];
    for piece in &bid.pieces {
        price = clamp(price + piece.rise);
        power -= piece.drop;
        points.push(Point {
            price: Price(price),
            power: Watts(power),
        });
    }
    points
}

pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

pub fn bid_id(j: usize) -> String {
    format!("b{j}")
}

/// The market's nodes and bids in the spec's order.
pub fn parts(spec: &Spec) -> (Vec<Node>, Vec<Bid>) {
    let nodes = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            id: node_id(i),
            parent: (i > 0).then(|| node_id(n.parent % i)),
            import_limit: n.import.map(Watts),
            export_limit: n.export.map(Watts),
        })
        .collect();
    let bids = spec
        .bids
        .iter()
        .enumerate()
        .map(|(j, b)| Bid {
            id: bid_id(j),
            node: node_id(b.node),
            curve: Curve::from_points(&points(spec, b)).expect("valid curve"),
            priority: b.priority,
        })
        .collect();
    (nodes, bids)
}

pub fn build(spec: &Spec) -> Market {
    let (nodes, bids) = parts(spec);
    Market::new(Price(spec.floor), Price(spec.cap), nodes, bids).expect("valid market")
}

/// A deterministic permutation of `0..n` from a seed (Fisher–Yates on SplitMix64).
pub fn permutation(n: usize, mut seed: u64) -> Vec<usize> {
    let mut next = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}
