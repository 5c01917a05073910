//! Fuzz-style property tests of the market file parser and the engine: random bytes, mutated
//! valid files and structured JSON with extreme, malformed and contradictory values. Nothing may
//! panic; whatever the parser accepts must clear to a result that passes `verify`, and whatever
//! it refuses must get a one-line error.

mod common;

use bcte_market::file::{market_to_json, parse_market};
use bcte_market::limits::{POWER_ABS_MAX, PRICE_ABS_MAX};
use bcte_market::{clear, verify};
use common::{build, spec};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Parses; on success clears and verifies; on failure checks the message is one line.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse_market(text) {
        Ok(market) => {
            let clearing = clear(&market);
            prop_assert_eq!(verify(&market, &clearing), Ok(()));
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
        }
    }
    Ok(())
}

/// Snippets that make JSON wrong, contradictory or extreme.
const SNIPPETS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "1e999",
    "-1e308",
    "NaN",
    "Infinity",
    "-0.0",
    "0.0001",
    "1e20",
    "-1e12",
    "9007199254740993",
    "\"parent\": \"n0\"",
    "\"id\": \"n0\"",
    "\"node\": \"n1\"",
    "\"import_limit_kw\": -1",
    "\"export_limit_kw\": 1e30",
    "\"colour\": 1",
    "\"curve\": []",
    "\"curve\": [[1, 2, 3]]",
    "\"price_floor\": 10",
    "\"price_cap\": -10",
    "[0, 1e9]",
    "[1e6, 0]",
    "\\u0000",
    "é",
    "0",
    "-",
    ".",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        snippet: usize,
    },
    Replace {
        at: usize,
        len: usize,
        snippet: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        (any::<usize>(), 1usize..8, 0..SNIPPETS.len())
            .prop_map(|(at, len, snippet)| Mutation::Replace { at, len, snippet }),
    ]
}

/// Applies mutations at character boundaries.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in mutations {
        let n = chars.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let at = at % n;
                chars.drain(at..(at + len).min(chars.len()));
            }
            Mutation::Insert { at, snippet } => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, SNIPPETS[snippet].chars());
            }
            Mutation::Replace { at, len, snippet } => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                chars.splice(at.min(end)..end, SNIPPETS[snippet].chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// Numbers a user (or an attacker) might put anywhere.
fn number() -> impl Strategy<Value = Value> {
    let price_max = PRICE_ABS_MAX.0 as f64 / 1e6;
    let kw_max = POWER_ABS_MAX.0 as f64 / 1e3;
    prop_oneof![
        (-100i64..100).prop_map(|v| json!(v)),
        (-1e4f64..1e4).prop_map(|v| json!(v)),
        prop::sample::select(vec![
            0.0,
            -0.0,
            0.0005,
            0.0015,
            1e-9,
            price_max,
            -price_max,
            price_max * 1.0000001,
            kw_max,
            -kw_max,
            kw_max + 0.001,
            1e15,
            -1e15,
            1e18,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ])
        .prop_map(|v| json!(v)),
        Just(json!("12")),
        Just(Value::Null),
    ]
}

fn id(kind: &'static str) -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (0usize..6).prop_map(move |i| json!(format!("{kind}{i}"))),
        1 => Just(json!("")),
        1 => Just(json!("x".repeat(200))),
        1 => Just(json!(7)),
    ]
}

fn node_value() -> impl Strategy<Value = Value> {
    (
        id("n"),
        prop::option::of(id("n")),
        prop::option::of(number()),
        prop::option::of(number()),
    )
        .prop_map(|(id, parent, import, export)| {
            let mut node = json!({ "id": id });
            if let Some(p) = parent {
                node["parent"] = p;
            }
            if let Some(v) = import {
                node["import_limit_kw"] = v;
            }
            if let Some(v) = export {
                node["export_limit_kw"] = v;
            }
            node
        })
}

fn bid_value() -> impl Strategy<Value = Value> {
    (
        id("b"),
        id("n"),
        prop::collection::vec((number(), number()), 0..6),
    )
        .prop_map(|(id, node, curve)| json!({ "id": id, "node": node, "curve": curve }))
}

fn file_value() -> impl Strategy<Value = Value> {
    (
        prop::option::of(number()),
        prop::option::of(number()),
        prop::collection::vec(node_value(), 0..7),
        prop::collection::vec(bid_value(), 0..8),
    )
        .prop_map(|(floor, cap, nodes, bids)| {
            let mut file = json!({ "nodes": nodes, "bids": bids });
            if let Some(v) = floor {
                file["price_floor"] = v;
            }
            if let Some(v) = cap {
                file["price_cap"] = v;
            }
            file
        })
}

/// A file that is valid most of the time but full of extreme values: powers and prices at
/// their limits, limits from zero to the largest, curves across the whole price range.
fn mostly_valid_file() -> impl Strategy<Value = Value> {
    let price_max = PRICE_ABS_MAX.0 as f64 / 1e6;
    let kw_max = POWER_ABS_MAX.0 as f64 / 1e3;
    let bounds = prop::sample::select(vec![
        (-500.0, 3000.0),
        (-price_max, price_max),
        (0.0, 0.001),
        (-1.0, 1.0),
    ]);
    let limit = prop_oneof![
        3 => Just(Value::Null),
        1 => Just(json!(0)),
        1 => Just(json!(0.001)),
        1 => Just(json!(1e15)),
        1 => Just(json!(kw_max)),
        3 => (0.0f64..1e4).prop_map(|v| json!(v)),
    ];
    let node = (any::<prop::sample::Index>(), limit.clone(), limit, 0u8..40);
    let power =
        prop_oneof![4 => -1e4f64..1e4, 1 => Just(kw_max), 1 => Just(-kw_max), 1 => Just(0.0)];
    let curve = (prop::collection::vec((0.0f64..=1.0, power), 1..6), 0u8..40);
    let bid = (any::<prop::sample::Index>(), curve);
    (bounds, prop::collection::vec(node, 1..8), prop::collection::vec(bid, 0..10)).prop_map(
        |((floor, cap), nodes, bids)| {
            let n = nodes.len();
            let nodes: Vec<Value> = nodes
                .iter()
                .enumerate()
                .map(|(i, (parent, import, export, fault))| {
                    let mut node = json!({"id": format!("n{i}")});
                    if i > 0 {
                        node["parent"] = json!(format!("n{}", parent.index(i)));
                    }
                    match fault {
                        0 => node["parent"] = json!(format!("n{i}")),
                        1 => node["parent"] = json!("nowhere"),
                        2 if i > 0 => node["parent"] = Value::Null,
                        _ => {}
                    }
                    node["import_limit_kw"] = import.clone();
                    node["export_limit_kw"] = if *fault == 3 { json!(-1) } else { export.clone() };
                    node
                })
                .collect();
            let bids: Vec<Value> = bids
                .iter()
                .enumerate()
                .map(|(j, (node, (points, fault)))| {
                    // Prices spread over [floor, cap], sorted; powers sorted downwards.
                    let mut prices: Vec<f64> = points.iter().map(|(x, _)| floor + x * (cap - floor)).collect();
                    let mut powers: Vec<f64> = points.iter().map(|(_, w)| *w).collect();
                    prices.sort_by(f64::total_cmp);
                    powers.sort_by(|a, b| b.total_cmp(a));
                    if *fault == 0 {
                        prices.reverse();
                    } else if *fault == 1 {
                        powers.reverse();
                    }
                    let curve: Vec<Value> = prices.iter().zip(&powers).map(|(p, w)| json!([p, w])).collect();
                    json!({"id": format!("b{j}"), "node": format!("n{}", node.index(n)), "curve": curve})
                })
                .collect();
            json!({"price_floor": floor, "price_cap": cap, "nodes": nodes, "bids": bids})
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn mostly_valid_files_with_extreme_values_never_panic(file in mostly_valid_file()) {
        check(&file.to_string())?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_valid_files_never_panic(
        spec in spec(5, 6, false),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let text = market_to_json(&build(&spec)).expect("written");
        check(&text)?;
        check(&mutate(&text, &mutations))?;
    }

    #[test]
    fn structured_files_with_extreme_and_contradictory_values_never_panic(file in file_value()) {
        check(&file.to_string())?;
    }

    #[test]
    fn written_markets_read_back_unchanged(spec in spec(5, 8, false)) {
        let market = build(&spec);
        let again = parse_market(&market_to_json(&market).expect("written")).expect("read");
        prop_assert_eq!(market.nodes(), again.nodes());
        prop_assert_eq!(market.bids(), again.bids());
        prop_assert_eq!(clear(&market), clear(&again));
    }
}

#[test]
fn extreme_but_valid_markets_clear_without_overflow() {
    // Every power and price at its limit, edges at the largest limit, curves spanning the
    // whole price range: sums, products and welfare integrals must stay in range.
    let p = PRICE_ABS_MAX.0 as f64 / 1e6;
    let w = POWER_ABS_MAX.0 as f64 / 1e3;
    let file = json!({
        "price_floor": -p, "price_cap": p,
        "nodes": [
            {"id": "r"},
            {"id": "a", "parent": "r", "import_limit_kw": 1e15, "export_limit_kw": 1e15},
            {"id": "b", "parent": "a", "import_limit_kw": 0.001}
        ],
        "bids": [
            {"id": "x", "node": "r", "curve": [[-p, w], [p, -w]]},
            {"id": "y", "node": "a", "curve": [[-p, w], [-p, -w]]},
            {"id": "z", "node": "b", "curve": [[p, w], [p, -w]]},
            {"id": "u", "node": "b", "curve": [[-p, w], [-p + 0.000001, -w]]},
            {"id": "v", "node": "a", "curve": [[-p, w]]},
            {"id": "s", "node": "r", "curve": [[p, -w]]}
        ]
    });
    let market = parse_market(&file.to_string()).expect("valid");
    let clearing = clear(&market);
    assert_eq!(verify(&market, &clearing), Ok(()));
}
