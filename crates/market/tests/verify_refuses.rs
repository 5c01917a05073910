//! `verify` refuses wrong clearings: each test takes a clearing the engine produced (and
//! `verify` accepted), breaks one optimality condition by the smallest step possible, and
//! checks that `verify` names exactly that breach.

mod common;

use bcte_market::{Clearing, Violation, clear, file::parse_market, verify};
use bcte_units::{Price, Watts};
use common::{build, spec};
use proptest::prelude::*;

/// Two nodes; c imports at most 5 kW, so its price separates from r's. At c, `step-c` is
/// partly served on its step at 100 (it takes what the edge leaves after `fixed-c`); at r,
/// `gen` is partly used on its step at 40.
const CONGESTED: &str = r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r", "import_limit_kw": 5}],
  "bids": [
    {"id": "gen", "node": "r", "curve": [[40, 0], [40, -10]]},
    {"id": "load-r", "node": "r", "curve": [[0, 4]]},
    {"id": "fixed-c", "node": "c", "curve": [[0, 2]]},
    {"id": "step-c", "node": "c", "curve": [[100, 6], [100, 0]]},
    {"id": "offer-c", "node": "c", "curve": [[200, 0], [200, -1]]}]}"#;

fn cleared(text: &str) -> (bcte_market::Market, Clearing) {
    let market = parse_market(text).expect("valid");
    let clearing = clear(&market);
    assert_eq!(verify(&market, &clearing), Ok(()));
    (market, clearing)
}

fn index(ids: impl Iterator<Item = String>, id: &str) -> usize {
    ids.into_iter().position(|x| x == id).expect("known id")
}

#[test]
fn the_example_clears_as_the_tests_assume() {
    let (market, c) = cleared(CONGESTED);
    let node = |id| index(market.nodes().iter().map(|n| n.id.clone()), id);
    let bid = |id| index(market.bids().iter().map(|b| b.id.clone()), id);
    assert_eq!(c.prices[node("r")], Price(40_000_000));
    assert_eq!(c.prices[node("c")], Price(100_000_000));
    assert_eq!(c.flows[node("c")], Watts(5_000));
    assert_eq!(c.allocations[bid("step-c")], Watts(3_000));
    assert_eq!(c.allocations[bid("gen")], Watts(-9_000));
}

#[test]
fn a_price_moved_by_one_micro_unit_is_refused() {
    let (market, clearing) = cleared(CONGESTED);
    let c = index(market.nodes().iter().map(|n| n.id.clone()), "c");
    for delta in [1, -1] {
        let mut wrong = clearing.clone();
        wrong.prices[c].0 += delta;
        assert!(
            matches!(verify(&market, &wrong), Err(Violation::OffCurve { ref bid, .. }) if bid == "step-c"),
            "{delta}: {:?}",
            verify(&market, &wrong)
        );
    }
    // At r the generator's step makes any move off 40 put it off its curve too.
    let r = index(market.nodes().iter().map(|n| n.id.clone()), "r");
    let mut wrong = clearing.clone();
    wrong.prices[r].0 -= 1;
    assert!(
        matches!(verify(&market, &wrong), Err(Violation::OffCurve { ref bid, .. }) if bid == "gen")
    );
}

#[test]
fn one_watt_moved_between_two_bids_of_a_node_is_refused() {
    let (market, clearing) = cleared(CONGESTED);
    let bid = |id| index(market.bids().iter().map(|b| b.id.clone()), id);
    let mut wrong = clearing.clone();
    wrong.allocations[bid("step-c")].0 -= 1;
    wrong.allocations[bid("fixed-c")].0 += 1;
    assert!(matches!(
        verify(&market, &wrong),
        Err(Violation::OffCurve { ref bid, .. }) if bid == "fixed-c"
    ));
}

#[test]
fn an_unbalanced_node_is_refused() {
    let (market, clearing) = cleared(CONGESTED);
    let bid = |id| index(market.bids().iter().map(|b| b.id.clone()), id);
    let mut wrong = clearing.clone();
    // Still on its curve (the step accepts 0 to 6 kW at 100), but c no longer balances.
    wrong.allocations[bid("step-c")].0 += 1;
    assert_eq!(
        verify(&market, &wrong),
        Err(Violation::Unbalanced {
            node: "c".into(),
            excess: -1
        })
    );
}

#[test]
fn load_shed_out_of_priority_order_is_refused() {
    let text = r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r"}], "bids": [
        {"id": "gen", "node": "r", "curve": [[40, 0], [40, -12]]},
        {"id": "house", "node": "r", "curve": [[0, 5]]},
        {"id": "hospital", "node": "c", "curve": [[0, 11]], "priority": 7}]}"#;
    let (market, clearing) = cleared(text);
    let bid = |id| index(market.bids().iter().map(|b| b.id.clone()), id);
    let node = |id| index(market.nodes().iter().map(|n| n.id.clone()), id);
    assert_eq!(clearing.bid_shed[bid("house")], Watts(4_000));
    // The same 4 kW shed from the hospital instead, balanced by the flow: every other
    // condition holds, only the order is wrong.
    let mut wrong = clearing.clone();
    wrong.bid_shed[bid("house")] = Watts(0);
    wrong.shed[node("r")] = Watts(0);
    wrong.bid_shed[bid("hospital")] = Watts(4_000);
    wrong.shed[node("c")] = Watts(4_000);
    wrong.flows[node("c")].0 -= 4_000;
    assert_eq!(
        verify(&market, &wrong),
        Err(Violation::PriorityOrder { node: "r".into() })
    );
    // Part of the house and part of the hospital: still out of order.
    let mut wrong = clearing.clone();
    wrong.bid_shed[bid("house")].0 -= 1;
    wrong.shed[node("r")].0 -= 1;
    wrong.bid_shed[bid("hospital")].0 += 1;
    wrong.shed[node("c")].0 += 1;
    wrong.flows[node("c")].0 -= 1;
    assert!(matches!(
        verify(&market, &wrong),
        Err(Violation::PriorityOrder { .. })
    ));
}

#[test]
fn a_bid_shed_that_does_not_add_up_to_its_node_is_refused() {
    let text = r#"{"nodes": [{"id": "r"}], "bids": [{"id": "a", "node": "r", "curve": [[0, 5]]}]}"#;
    let (market, clearing) = cleared(text);
    let mut wrong = clearing.clone();
    wrong.bid_shed[0].0 -= 1;
    assert!(matches!(
        verify(&market, &wrong),
        Err(Violation::BadShed { .. })
    ));
    let mut wrong = clearing;
    wrong.bid_shed[0].0 += 1;
    assert!(matches!(
        verify(&market, &wrong),
        Err(Violation::BadBidShed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One watt more on any edge breaks a balance or a limit, whatever the market.
    #[test]
    fn a_flow_moved_by_one_watt_is_refused(spec in spec(6, 10, false), pick in any::<usize>()) {
        let market = build(&spec);
        prop_assume!(market.nodes().len() > 1);
        let clearing = clear(&market);
        let node = 1 + pick % (market.nodes().len() - 1);
        for delta in [1, -1] {
            let mut wrong = clearing.clone();
            wrong.flows[node].0 += delta;
            prop_assert!(verify(&market, &wrong).is_err());
        }
    }
}
