//! Property: for random feeders, priorities and bids submitted as transactions, the chain's
//! result of an interval is exactly what `bcte-market` gives for the same market (the market
//! file the chain's registry and bids describe), and `verify` accepts it.

mod common;

use bcte_ledger::{StateKey, market_state::IntervalResult};
use bcte_market::{Bid, Curve, Market, Node, Point, clear, verify};
use bcte_types::{
    CurveSpec, FeederId, GridMode, Interval, MarketConfig, NodeId, NodeSpec, Outcome, Payload,
    Price, SiteId, SiteSpec, Watts,
    market::{BidEntry, Bids, FeederRegister, GridModeSet, SitesRegister},
};
use common::{Chain, GENESIS_MS, account, key};
use proptest::prelude::*;

const UNIT: i64 = 1_000_000;
const EPOCH: u64 = GENESIS_MS + 10_000;

#[derive(Clone, Debug)]
struct NodeGen {
    parent: usize,
    import: Option<i64>,
    export: Option<i64>,
}

#[derive(Clone, Debug)]
struct SiteGen {
    node: usize,
    priority: u8,
    start_price: i64,
    start_power: i64,
    /// (price rise in whole units or 0 for a step, power drop in W)
    pieces: Vec<(i64, i64)>,
}

fn limit() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![3 => Just(None), 1 => Just(Some(0)), 4 => (0i64..20_000).prop_map(Some)]
}

fn spec() -> impl Strategy<Value = (Vec<NodeGen>, Vec<SiteGen>)> {
    (1usize..7).prop_flat_map(|n| {
        let nodes = prop::collection::vec(
            (any::<usize>(), limit(), limit()).prop_map(|(parent, import, export)| NodeGen {
                parent,
                import,
                export,
            }),
            n,
        );
        let site = (
            0..n,
            prop_oneof![3 => Just(0u8), 2 => 0u8..8],
            -40i64..40,
            -15_000i64..15_000,
            prop::collection::vec((prop_oneof![Just(0i64), 1i64..20], 0i64..8_000), 0..4),
        )
            .prop_map(
                |(node, priority, start_price, start_power, pieces)| SiteGen {
                    node,
                    priority,
                    start_price,
                    start_power,
                    pieces,
                },
            );
        (nodes, prop::collection::vec(site, 0..10))
    })
}

fn points(s: &SiteGen) -> Vec<(Price, Watts)> {
    let clamp = |p: i64| p.clamp(-50, 100);
    let mut price = clamp(s.start_price);
    let mut power = s.start_power;
    let mut out = vec![(Price(price * UNIT), Watts(power))];
    for &(rise, drop) in &s.pieces {
        price = clamp(price + rise);
        power -= drop;
        out.push((Price(price * UNIT), Watts(power)));
    }
    out
}

fn node_id(i: usize) -> String {
    format!("n{i}")
}

fn site_id(j: usize) -> String {
    format!("s{j}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_chain_clears_exactly_as_the_engine_and_verify_accepts((nodes, sites) in spec()) {
        let config = MarketConfig {
            interval_ms: 2_000,
            gate_lead_ms: 1_000,
            price_floor: Price(-50 * UNIT),
            price_cap: Price(100 * UNIT),
            import_price: Price(0),
            export_price: Price(0),
            ..MarketConfig::DEFAULT
        };
        let node_specs: Vec<NodeSpec> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeSpec {
                id: NodeId::new(node_id(i)).unwrap(),
                parent: (i > 0).then(|| NodeId::new(node_id(n.parent % i)).unwrap()),
                import_limit: n.import.map(Watts),
                export_limit: n.export.map(Watts),
            })
            .collect();
        let mut chain = Chain::new(1);
        let dso = chain.dso.clone();
        let f = FeederId::new("f").unwrap();
        let mut setup = vec![
            chain.sign(&dso, Payload::FeederRegister(FeederRegister {
                feeder: f.clone(),
                epoch_ms: Some(EPOCH),
                config,
                nodes: node_specs.clone(),
                market_account: None,
                upstream_account: None,
            })),
            chain.sign(&dso, Payload::GridMode(GridModeSet {
                feeder: f.clone(),
                from: Interval(0),
                mode: GridMode::Islanded,
            })),
        ];
        if !sites.is_empty() {
            setup.push(chain.sign(&dso, Payload::SitesRegister(SitesRegister {
                feeder: f.clone(),
                sites: sites
                    .iter()
                    .enumerate()
                    .map(|(j, s)| SiteSpec {
                        site: SiteId::new(site_id(j)).unwrap(),
                        node: NodeId::new(node_id(s.node)).unwrap(),
                        owner: account(&key(100 + j as u64)),
                        priority: s.priority,
                        import_limit: None,
                        export_limit: None,
                    })
                    .collect(),
            })));
        }
        let e = chain.block(1, setup);
        prop_assert!(e.receipts.iter().all(|r| r.outcome == Outcome::Accepted), "{:?}", e.receipts);
        let txs: Vec<_> = sites
            .iter()
            .enumerate()
            .map(|(j, s)| {
                chain.sign(&key(100 + j as u64), Payload::Bids(Bids {
                    feeder: f.clone(),
                    bids: vec![BidEntry {
                        site: SiteId::new(site_id(j)).unwrap(),
                        interval: Interval(0),
                        curve: Some(CurveSpec::Points(points(s))),
                    }],
                }))
            })
            .collect();
        let e = chain.block(1, txs);
        prop_assert!(e.receipts.iter().all(|r| r.outcome == Outcome::Accepted), "{:?}", e.receipts);
        chain.block_at(EPOCH - 1_000, vec![]);
        let result: IntervalResult = chain.read(&StateKey::Result(f.clone(), Interval(0))).unwrap();

        // The market file the registry and the bids describe, cleared directly.
        let market = Market::new(
            config.price_floor,
            config.price_cap,
            node_specs
                .iter()
                .map(|n| Node {
                    id: n.id.as_str().to_owned(),
                    parent: n.parent.as_ref().map(|p| p.as_str().to_owned()),
                    import_limit: n.import_limit,
                    export_limit: n.export_limit,
                })
                .collect(),
            sites
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let pts: Vec<Point> = points(s).into_iter().map(|(price, power)| Point { price, power }).collect();
                    Bid {
                        id: site_id(j),
                        node: node_id(s.node),
                        curve: Curve::from_points(&pts).unwrap(),
                        priority: s.priority,
                    }
                })
                .collect(),
        )
        .unwrap();
        let local = clear(&market);
        prop_assert_eq!(verify(&market, &local), Ok(()));
        prop_assert_eq!(&result.prices, &local.prices);
        prop_assert_eq!(&result.flows, &local.flows);
        prop_assert_eq!(result.welfare, local.welfare.0);
        let sparse = |v: &[Watts]| -> Vec<(u32, Watts)> {
            v.iter().enumerate().filter(|(_, w)| !w.is_zero()).map(|(i, w)| (i as u32, *w)).collect()
        };
        prop_assert_eq!(&result.shed, &sparse(&local.shed));
        prop_assert_eq!(&result.spilled, &sparse(&local.spilled));
        for (j, _) in sites.iter().enumerate() {
            let r = chain
                .site_result(&f, Interval(0), &SiteId::new(site_id(j)).unwrap())
                .expect("every site's result");
            prop_assert_eq!(r.allocation, local.allocations[j]);
            prop_assert_eq!(r.shed, local.bid_shed[j]);
            prop_assert_eq!(r.spilled, local.bid_spilled[j]);
            prop_assert_eq!(r.price, local.prices[sites[j].node]);
        }
    }
}
