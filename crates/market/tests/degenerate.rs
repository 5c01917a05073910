//! The degenerate markets general-purpose auctions keep getting wrong, each with its full
//! expected result worked out by hand from the rules in `docs/market-rules.md`.
//!
//! Every case goes through the market file parser, the engine, the optimality checker and the
//! result writer, and is compared with the expected result as JSON values (prices in
//! currency/MWh, powers in kW, welfare in currency/h). Units in the comments: kW, currency/MWh,
//! and welfare in kW · currency/MWh before the division by 1000.

use bcte_market::file::{clearing_to_json, parse_market};
use bcte_market::{clear, verify};
use serde_json::{Value, json};

/// Clears a market file and returns its result without `stats`.
fn cleared(market: &str) -> Value {
    let market = parse_market(market).expect("valid market");
    let clearing = clear(&market);
    verify(&market, &clearing).expect("optimal");
    let mut result: Value =
        serde_json::from_str(&clearing_to_json(&market, &clearing, 0.0).expect("json"))
            .expect("parse");
    result.as_object_mut().expect("object").remove("stats");
    result
}

#[track_caller]
fn assert_clears(market: &str, expected: Value) {
    assert_eq!(cleared(market), expected);
}

#[test]
fn no_sellers_sheds_the_inelastic_demand_at_the_cap_after_the_flexible_demand_has_gone() {
    // Nothing supplies: the price rises to the cap, the elastic load (5 kW at 0 down to 0 at
    // 100) asks nothing there, and the 10 kW that holds at every price is shed (MR-2.3).
    // Welfare: 10 · 3000 for the load, −10 · 3000 for shedding it.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "load-a", "node": "r", "curve": [[0, 10]]},
            {"id": "load-b", "node": "r", "curve": [[0, 5], [100, 0]]}]}"#,
        json!({
            "prices": {"r": 3000.0},
            "allocations": {"load-a": 10.0, "load-b": 0.0},
            "flows": {},
            "shed_kw": {"r": 10.0},
            "spilled_kw": {},
            "bid_shed_kw": {"load-a": 10.0},
            "bid_spilled_kw": {},
            "welfare": 0.0
        }),
    );
}

#[test]
fn no_buyers_prices_at_the_cheapest_offer_not_the_floor() {
    // Every price up to 40 clears (nothing trades); only the upper end is set by a bid, the
    // cheapest offer, so that is the price (MR-2.1 c).
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "gen-b", "node": "r", "curve": [[60, 0], [60, -5]]},
            {"id": "gen-a", "node": "r", "curve": [[40, 0], [40, -10]]}]}"#,
        json!({
            "prices": {"r": 40.0},
            "allocations": {"gen-b": 0.0, "gen-a": 0.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 0.0
        }),
    );
}

#[test]
fn inelastic_demand_equal_to_a_supply_step_prices_at_the_step_not_the_cap() {
    // 10 kW of inelastic demand meets exactly a 10 kW offer at 50: every price from 50 to the
    // cap clears; the offer sets the lower end, nothing the upper (MR-2.1 c): 50.
    // Welfare: 10 · 3000 (demand at every price counts at the cap) − 10 · 50 = 29500.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "load", "node": "r", "curve": [[0, 10]]},
            {"id": "gen", "node": "r", "curve": [[50, 0], [50, -10]]}]}"#,
        json!({
            "prices": {"r": 50.0},
            "allocations": {"load": 10.0, "gen": -10.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 29.5
        }),
    );
}

#[test]
fn must_run_supply_equal_to_a_demand_step_prices_at_the_step_not_the_floor() {
    // Mirror image: 10 kW of must-run generation meets exactly a 10 kW bid at 40: price 40.
    // Welfare: must-run counts at the floor, −10 · −500 = 5000, plus the bid's 10 · 40 = 400.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "pv", "node": "r", "curve": [[0, -10]]},
            {"id": "load", "node": "r", "curve": [[40, 10], [40, 0]]}]}"#,
        json!({
            "prices": {"r": 40.0},
            "allocations": {"pv": -10.0, "load": 10.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 5.4
        }),
    );
}

#[test]
fn many_offers_at_one_price_share_pro_rata_with_the_remainder_to_the_largest_remainders() {
    // 35 kW from offers of 10, 20 and 30 kW at 50: each supplies 35/60 of its size. 25 kW are
    // split: 4166.67, 8333.33 and 12500 W; the watt left by rounding down goes to the largest
    // remainder, s10's (MR-3.3). Welfare: 35 · 3000 − 35 · 50 = 103250.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "s30", "node": "r", "curve": [[50, 0], [50, -30]]},
            {"id": "load", "node": "r", "curve": [[0, 35]]},
            {"id": "s10", "node": "r", "curve": [[50, 0], [50, -10]]},
            {"id": "s20", "node": "r", "curve": [[50, 0], [50, -20]]}]}"#,
        json!({
            "prices": {"r": 50.0},
            "allocations": {"s30": -17.5, "load": 35.0, "s10": -5.833, "s20": -11.667},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 103.25
        }),
    );
}

#[test]
fn equal_offers_at_one_price_break_remainder_ties_by_id() {
    // Three equal offers share 10 kW: 3333.33 W each, equal remainders, so the two watts left
    // go to the first two ids (MR-3.3), whatever the order in the file.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "c", "node": "r", "curve": [[50, 0], [50, -10]]},
            {"id": "load", "node": "r", "curve": [[0, 10]]},
            {"id": "a", "node": "r", "curve": [[50, 0], [50, -10]]},
            {"id": "b", "node": "r", "curve": [[50, 0], [50, -10]]}]}"#,
        json!({
            "prices": {"r": 50.0},
            "allocations": {"c": -3.334, "load": 10.0, "a": -3.333, "b": -3.333},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 29.5
        }),
    );
}

#[test]
fn zero_quantity_bids_change_nothing_and_a_price_range_between_two_bids_takes_its_midpoint() {
    // A 5 kW bid at 100 and a 5 kW offer at 20 trade; every price from 20 to 100 clears and
    // both ends are set by bids, so the midpoint, 60 (MR-2.1 b). Bids of zero power anywhere
    // take zero. Welfare: 5 · 100 − 5 · 20 = 400.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "demand", "node": "r", "curve": [[100, 5], [100, 0]]},
            {"id": "supply", "node": "r", "curve": [[20, 0], [20, -5]]},
            {"id": "flat-zero", "node": "r", "curve": [[50, 0]]},
            {"id": "flat-zero-2", "node": "r", "curve": [[10, 0], [20, 0]]},
            {"id": "zero-step", "node": "r", "curve": [[30, 0], [30, 0]]}]}"#,
        json!({
            "prices": {"r": 60.0},
            "allocations": {"demand": 5.0, "supply": -5.0, "flat-zero": 0.0, "flat-zero-2": 0.0, "zero-step": 0.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 0.4
        }),
    );
}

#[test]
fn a_one_sided_market_of_bids_only_prices_at_the_highest_bid() {
    // Only buyers with prices: nothing trades, every price from 120 up clears, and the lower
    // end is set by the highest bid (MR-2.1 c).
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "d80", "node": "r", "curve": [[80, 2], [80, 0]]},
            {"id": "d120", "node": "r", "curve": [[120, 3], [120, 0]]}]}"#,
        json!({
            "prices": {"r": 120.0},
            "allocations": {"d80": 0.0, "d120": 0.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 0.0
        }),
    );
}

#[test]
fn an_islanded_shortage_sheds_every_load_of_a_class_pro_rata_whatever_its_node_generates() {
    // 10 kW of inelastic demand (4 at r, 6 at c) and 6 kW of supply at r: the price is the cap
    // and 4 kW are shed. A generator does not net out the load of its own node (MR-2.4): both
    // loads are class 0 and share the 4 kW in proportion to their demand, 4 : 6, so r sheds
    // 1.6 and c 2.4, and c draws 6 − 2.4 = 3.6 from r's generator.
    // Welfare: 10 · 3000 − 6 · 50 − 4 · 3000 = 17700.
    assert_clears(
        r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r"}], "bids": [
            {"id": "gen", "node": "r", "curve": [[50, 0], [50, -6]]},
            {"id": "load-r", "node": "r", "curve": [[0, 4]]},
            {"id": "load-c", "node": "c", "curve": [[0, 6]]}]}"#,
        json!({
            "prices": {"r": 3000.0, "c": 3000.0},
            "allocations": {"gen": -6.0, "load-r": 4.0, "load-c": 6.0},
            "flows": {"c": 3.6},
            "shed_kw": {"r": 1.6, "c": 2.4},
            "spilled_kw": {},
            "bid_shed_kw": {"load-r": 1.6, "load-c": 2.4},
            "bid_spilled_kw": {},
            "welfare": 17.7
        }),
    );
}

#[test]
fn oversupply_spills_must_run_generation_at_the_floor_after_every_load_is_at_its_most() {
    // 10 kW must-run, 7 kW of demand at the floor (4 + 3): 3 kW spilled at the floor. The
    // loads take their most: 4, and 3 from the ramp that reaches 3 kW at −100.
    // Welfare: must-run 10 · 500 = 5000; d1 4 · 30 = 120; d2 3 · −500 plus its area
    // 3 · 400 + 3 · 100 / 2 = −150; spill 3 · −500 = −1500. Total 3470.
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "pv", "node": "r", "curve": [[0, -10]]},
            {"id": "d1", "node": "r", "curve": [[30, 4], [30, 0]]},
            {"id": "d2", "node": "r", "curve": [[-100, 3], [0, 0]]}]}"#,
        json!({
            "prices": {"r": -500.0},
            "allocations": {"pv": -10.0, "d1": 4.0, "d2": 3.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {"r": 3.0},
            "bid_shed_kw": {},
            "bid_spilled_kw": {"pv": 3.0},
            "welfare": 3.47
        }),
    );
}

#[test]
fn zero_capacity_edges_isolate_a_node_and_an_empty_node_takes_its_parents_price() {
    // c trades only with itself (its 2 kW load against its offer at 80): price 80. d is empty
    // behind a closed edge and e empty behind an open one: both take r's price (MR-2.2 a).
    // Welfare: 10 · 3000 − 10 · 50 + 2 · 3000 − 2 · 80 = 35340.
    assert_clears(
        r#"{"nodes": [
            {"id": "r"},
            {"id": "c", "parent": "r", "import_limit_kw": 0, "export_limit_kw": 0},
            {"id": "d", "parent": "r", "import_limit_kw": 0, "export_limit_kw": 0},
            {"id": "e", "parent": "r"}],
          "bids": [
            {"id": "grid", "node": "r", "curve": [[50, 0], [50, -100]]},
            {"id": "load-r", "node": "r", "curve": [[0, 10]]},
            {"id": "load-c", "node": "c", "curve": [[0, 2]]},
            {"id": "gen-c", "node": "c", "curve": [[80, 0], [80, -3]]}]}"#,
        json!({
            "prices": {"r": 50.0, "c": 80.0, "d": 50.0, "e": 50.0},
            "allocations": {"grid": -10.0, "load-r": 10.0, "load-c": 2.0, "gen-c": -2.0},
            "flows": {"c": 0.0, "d": 0.0, "e": 0.0},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 35.34
        }),
    );
}

#[test]
fn a_single_node_clears_where_sloped_curves_cross() {
    // Demand falls from 10 kW at 0 to 0 at 100, supply from 0 to −10 kW: they cross at 50,
    // 5 kW. Welfare: the triangle between them, 10 · 50 / 2 = 250.
    assert_clears(
        r#"{"nodes": [{"id": "only"}], "bids": [
            {"id": "demand", "node": "only", "curve": [[0, 10], [100, 0]]},
            {"id": "supply", "node": "only", "curve": [[0, 0], [100, -10]]}]}"#,
        json!({
            "prices": {"only": 50.0},
            "allocations": {"demand": 5.0, "supply": -5.0},
            "flows": {},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 0.25
        }),
    );
}

#[test]
fn an_empty_market_prices_at_zero() {
    // No bid bounds the clearing range at either end: zero (MR-2.1 d), for every node.
    assert_clears(
        r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r", "import_limit_kw": 0}]}"#,
        json!({
            "prices": {"r": 0.0, "c": 0.0},
            "allocations": {},
            "flows": {"c": 0.0},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 0.0
        }),
    );
}

#[test]
fn a_chain_a_thousand_nodes_deep_separates_prices_at_its_one_binding_edge() {
    // n0 (grid at 50) – n1 – … – n999 (10 kW load, 10 kW offer at 200). Every edge carries
    // 1000 kW except the one into n500, 6 kW. So 6 kW flow down the whole chain at 50, and
    // below n500 the local offer supplies the other 4 kW at 200.
    // Welfare: 10 · 3000 − 6 · 50 − 4 · 200 = 28900.
    let depth = 1000;
    let nodes: Vec<String> = (0..depth)
        .map(|i| match i {
            0 => r#"{"id": "n0"}"#.to_owned(),
            500 => r#"{"id": "n500", "parent": "n499", "import_limit_kw": 6}"#.to_owned(),
            _ => format!(
                r#"{{"id": "n{i}", "parent": "n{}", "import_limit_kw": 1000}}"#,
                i - 1
            ),
        })
        .collect();
    let market = format!(
        r#"{{"nodes": [{}], "bids": [
            {{"id": "grid", "node": "n0", "curve": [[50, 0], [50, -1000]]}},
            {{"id": "load", "node": "n999", "curve": [[0, 10]]}},
            {{"id": "gen", "node": "n999", "curve": [[200, 0], [200, -10]]}}]}}"#,
        nodes.join(",")
    );
    let prices: serde_json::Map<String, Value> = (0..depth)
        .map(|i| (format!("n{i}"), json!(if i < 500 { 50.0 } else { 200.0 })))
        .collect();
    let flows: serde_json::Map<String, Value> =
        (1..depth).map(|i| (format!("n{i}"), json!(6.0))).collect();
    assert_clears(
        &market,
        json!({
            "prices": prices,
            "allocations": {"grid": -6.0, "load": 10.0, "gen": -4.0},
            "flows": flows,
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 28.9
        }),
    );
}

#[test]
fn the_example_of_the_issue_clears_as_documented() {
    let text = include_str!("../../../examples/market/feeder-small.json");
    assert_clears(
        text,
        json!({
            "prices": {"substation": 80.0, "t1": 80.0},
            "allocations": {"grid": -3.5, "house-7": 3.5},
            "flows": {"t1": 3.5},
            "shed_kw": {},
            "spilled_kw": {},
            "bid_shed_kw": {},
            "bid_spilled_kw": {},
            "welfare": 5.87
        }),
    );
}

#[test]
fn shedding_is_shared_pro_rata_to_demand_across_nodes_at_the_cap() {
    // Two nodes short by 9 kW in all, demand at the cap 6 at r and 3 at c: r sheds 6, c 3,
    // in proportion (MR-2.4, MR-3.1); no supply at all. Welfare: 9 · 3000 − 9 · 3000 = 0.
    assert_clears(
        r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r"}], "bids": [
            {"id": "load-r", "node": "r", "curve": [[0, 6]]},
            {"id": "load-c", "node": "c", "curve": [[0, 3]]}]}"#,
        json!({
            "prices": {"r": 3000.0, "c": 3000.0},
            "allocations": {"load-r": 6.0, "load-c": 3.0},
            "flows": {"c": 0.0},
            "shed_kw": {"r": 6.0, "c": 3.0},
            "spilled_kw": {},
            "bid_shed_kw": {"load-r": 6.0, "load-c": 3.0},
            "bid_spilled_kw": {},
            "welfare": 0.0
        }),
    );
}

#[test]
fn a_hospital_is_shed_only_after_every_lower_class_in_its_region() {
    // Islanded, 12 kW of generation at r, 20 kW of demand: 8 kW short. Class 0 (households:
    // 3 kW at r and 2 kW at c, a 5 kW class in all) goes first, in full; then class 3 (the
    // school, 4 kW at c) in full; the remaining 8 − 5 − 4 < 0, so the school sheds only 3 and the
    // hospital (class 7, 11 kW at c) keeps everything. The edge r–c is not at a limit, so r and
    // c are one region (MR-2.4). Flows: c draws 2 + 4 + 11 − (2 + 3) = 12 from r.
    // Welfare: 20 · 3000 − 12 · 40 − 8 · 3000 = 35520.
    assert_clears(
        r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r", "import_limit_kw": 50}], "bids": [
            {"id": "gen", "node": "r", "curve": [[40, 0], [40, -12]]},
            {"id": "house-r", "node": "r", "curve": [[0, 3]]},
            {"id": "house-c", "node": "c", "curve": [[0, 2]]},
            {"id": "school", "node": "c", "curve": [[0, 4]], "priority": 3},
            {"id": "hospital", "node": "c", "curve": [[0, 11]], "priority": 7}]}"#,
        json!({
            "prices": {"r": 3000.0, "c": 3000.0},
            "allocations": {"gen": -12.0, "house-r": 3.0, "house-c": 2.0, "school": 4.0,
                            "hospital": 11.0},
            "flows": {"c": 12.0},
            "shed_kw": {"r": 3.0, "c": 5.0},
            "spilled_kw": {},
            "bid_shed_kw": {"house-r": 3.0, "house-c": 2.0, "school": 3.0},
            "bid_spilled_kw": {},
            "welfare": 35.52
        }),
    );
}

#[test]
fn behind_a_binding_edge_a_higher_class_is_shed_before_a_lower_one_elsewhere() {
    // c imports at most 5 kW: its 6 kW hospital (class 7) and 2 kW household (class 0) lack 3,
    // which c must shed itself (the household's 2, then 1 of the hospital), while r's own
    // class-0 load is served by the generator: the limit separates the two regions, and priority
    // is only within one (MR-2.4). r: 10 kW of generation, 4 of load, 5 sent to c, 1 kW of the
    // generator unused, so r clears at the generator's price, 40.
    // Welfare: (4 + 6 + 2) · 3000 − 9 · 40 − 3 · 3000 = 26640.
    assert_clears(
        r#"{"nodes": [{"id": "r"}, {"id": "c", "parent": "r", "import_limit_kw": 5}], "bids": [
            {"id": "gen", "node": "r", "curve": [[40, 0], [40, -10]]},
            {"id": "house-r", "node": "r", "curve": [[0, 4]]},
            {"id": "house-c", "node": "c", "curve": [[0, 2]]},
            {"id": "hospital", "node": "c", "curve": [[0, 6]], "priority": 7}]}"#,
        json!({
            "prices": {"r": 40.0, "c": 3000.0},
            "allocations": {"gen": -9.0, "house-r": 4.0, "house-c": 2.0, "hospital": 6.0},
            "flows": {"c": 5.0},
            "shed_kw": {"c": 3.0},
            "spilled_kw": {},
            "bid_shed_kw": {"house-c": 2.0, "hospital": 1.0},
            "bid_spilled_kw": {},
            "welfare": 26.64
        }),
    );
}

#[test]
fn loads_of_one_class_at_one_node_share_its_shed_pro_rata_ties_to_the_smaller_id() {
    // 10 kW short at one node; three class-0 loads of 3 kW each and one class-1 load of 5 kW:
    // the 9 kW of class 0 go in full, then 1 kW of class 1. Then an even split with a
    // remainder: 1 kW of class 0 shared by three equal 3 kW loads is 334, 333, 333 W, the extra
    // watt to the smallest id (MR-3.3).
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "gen", "node": "r", "curve": [[10, 0], [10, -4]]},
            {"id": "b", "node": "r", "curve": [[0, 3]]},
            {"id": "a", "node": "r", "curve": [[0, 3]]},
            {"id": "c", "node": "r", "curve": [[0, 3]]},
            {"id": "d", "node": "r", "curve": [[0, 5]], "priority": 1}]}"#,
        json!({
            "prices": {"r": 3000.0},
            "allocations": {"gen": -4.0, "b": 3.0, "a": 3.0, "c": 3.0, "d": 5.0},
            "flows": {},
            "shed_kw": {"r": 10.0},
            "spilled_kw": {},
            "bid_shed_kw": {"b": 3.0, "a": 3.0, "c": 3.0, "d": 1.0},
            "bid_spilled_kw": {},
            "welfare": 11.96
        }),
    );
    assert_clears(
        r#"{"nodes": [{"id": "r"}], "bids": [
            {"id": "gen", "node": "r", "curve": [[10, 0], [10, -8]]},
            {"id": "b", "node": "r", "curve": [[0, 3]]},
            {"id": "a", "node": "r", "curve": [[0, 3]]},
            {"id": "c", "node": "r", "curve": [[0, 3]]}]}"#,
        json!({
            "prices": {"r": 3000.0},
            "allocations": {"gen": -8.0, "b": 3.0, "a": 3.0, "c": 3.0},
            "flows": {},
            "shed_kw": {"r": 1.0},
            "spilled_kw": {},
            "bid_shed_kw": {"b": 0.333, "a": 0.334, "c": 0.333},
            "bid_spilled_kw": {},
            "welfare": 23.92
        }),
    );
}

#[test]
fn a_priority_outside_the_classes_is_refused_naming_the_bid() {
    let err = parse_market(
        r#"{"nodes": [{"id": "r"}], "bids": [{"id": "x", "node": "r", "curve": [[0, 1]], "priority": 8}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "bid \"x\" (bids[0], line 1), field priority: priority 8 is not a class from 0 to 7"
    );
}
