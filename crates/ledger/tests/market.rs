//! The market on the chain, driven through transactions on an in-memory chain: registry,
//! configuration, modes, bids, clearing at gate closure, and the result read back from state
//! and compared with `bcte-market` clearing the same market directly.

mod common;

use bcte_ledger::{
    StateKey,
    market_state::{BidRecord, IntervalResult, Schedule},
};
use bcte_market::{Bid, Curve, Market, Node, Point, clear};
use bcte_types::{
    CurveSpec, FeederId, GridMode, Interval, MarketConfig, NodeId, NodeSpec, Outcome, Payload,
    Price, RejectReason, SiteId, SiteSpec, Watts,
    market::{BidEntry, Bids, FeederRegister, GridModeSet, SitesRegister},
};
use common::{Chain, GENESIS_MS, accepted, account, key, rejected};

const KW: i64 = 1_000;
const UNIT: i64 = 1_000_000;
const EPOCH: u64 = GENESIS_MS + 10_000;

fn f() -> FeederId {
    FeederId::new("f").unwrap()
}

fn config() -> MarketConfig {
    MarketConfig {
        interval_ms: 2_000,
        gate_lead_ms: 1_000,
        price_floor: Price(-500 * UNIT),
        price_cap: Price(3_000 * UNIT),
        import_price: Price(80 * UNIT),
        import_limit: Watts(5_000 * KW),
        export_price: Price(20 * UNIT),
        export_limit: Watts(5_000 * KW),
        alert_import_limit: Watts(1_000 * KW),
        retention_intervals: 10,
    }
}

/// The gate closure of interval `k` (with `config()` from the epoch).
fn gate(k: u64) -> u64 {
    EPOCH + 2_000 * k - 1_000
}

fn node(
    id: &str,
    parent: Option<&str>,
    import_kw: Option<i64>,
    export_kw: Option<i64>,
) -> NodeSpec {
    NodeSpec {
        id: NodeId::new(id).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        import_limit: import_kw.map(|k| Watts(k * KW)),
        export_limit: export_kw.map(|k| Watts(k * KW)),
    }
}

fn points(pts: &[(i64, i64)]) -> CurveSpec {
    CurveSpec::Points(
        pts.iter()
            .map(|&(p, w)| (Price(p * UNIT), Watts(w)))
            .collect(),
    )
}

fn register(chain: &mut Chain, nodes: Vec<NodeSpec>) {
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f(),
            epoch_ms: Some(EPOCH),
            config: config(),
            nodes,
        }),
    ));
}

fn site(id: &str, node: &str, owner: u64, priority: u8) -> SiteSpec {
    SiteSpec {
        site: SiteId::new(id).unwrap(),
        node: NodeId::new(node).unwrap(),
        owner: account(&key(owner)),
        priority,
        import_limit: None,
        export_limit: None,
    }
}

fn bid(site: &str, k: u64, curve: Option<CurveSpec>) -> BidEntry {
    BidEntry {
        site: SiteId::new(site).unwrap(),
        interval: Interval(k),
        curve,
    }
}

fn bids(entries: Vec<BidEntry>) -> Payload {
    Payload::Bids(Bids {
        feeder: f(),
        bids: entries,
    })
}

fn result(chain: &Chain, k: u64) -> IntervalResult {
    chain
        .read(&StateKey::Result(f(), Interval(k)))
        .expect("interval cleared")
}

fn record(chain: &Chain, k: u64, site: &str) -> BidRecord {
    chain
        .read(&StateKey::Bid(f(), Interval(k), SiteId::new(site).unwrap()))
        .expect("bid stored")
}

/// The feeder-small example of the README, on the chain: the grid's offer is a site like any
/// other and the feeder is islanded, so the result is exactly `bcte clear`'s.
fn small_example(chain: &mut Chain) {
    register(
        chain,
        vec![
            node("substation", None, None, None),
            node("t1", Some("substation"), Some(400), Some(250)),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![
                site("grid", "substation", 2, 0),
                site("house-7", "t1", 3, 0),
            ],
        }),
    ));
    accepted(&chain.send(
        &dso,
        Payload::GridMode(GridModeSet {
            feeder: f(),
            from: Interval(0),
            mode: GridMode::Islanded,
        }),
    ));
    let grid = chain.sign(
        &key(2),
        bids(vec![bid(
            "grid",
            0,
            Some(points(&[
                (20, 5_000_000),
                (20, 0),
                (80, 0),
                (80, -5_000_000),
            ])),
        )]),
    );
    let house = chain.sign(
        &key(3),
        bids(vec![bid(
            "house-7",
            0,
            Some(points(&[(0, 6_500), (120, 2_000), (3_000, 2_000)])),
        )]),
    );
    let e = chain.block(1, vec![grid, house]);
    assert!(e.receipts.iter().all(|r| r.outcome == Outcome::Accepted));
}

#[test]
fn an_interval_clears_at_its_gate_closure_exactly_as_the_engine_does() {
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(0)))
            .is_none()
    );
    // The block just before the gate closes clears nothing; the first at or after it does.
    chain.block_at(gate(0) - 1, vec![]);
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(0)))
            .is_none()
    );
    chain.block_at(gate(0), vec![]);
    let r = result(&chain, 0);
    assert_eq!(r.height, chain.height.get());
    assert_eq!(r.mode, GridMode::Islanded);
    assert_eq!(r.prices, vec![Price(80 * UNIT), Price(80 * UNIT)]);
    assert_eq!(r.flows, vec![Watts(0), Watts(3_500)]);
    assert_eq!(r.upstream, Watts(0));
    let house = record(&chain, 0, "house-7").result.expect("cleared");
    assert_eq!(house.allocation, Watts(3_500));
    assert_eq!(house.price, Price(80 * UNIT));
    assert_eq!(
        record(&chain, 0, "grid").result.unwrap().allocation,
        Watts(-3_500)
    );

    // The same market cleared by the engine directly.
    let market = Market::new(
        Price(-500 * UNIT),
        Price(3_000 * UNIT),
        vec![
            Node {
                id: "substation".into(),
                parent: None,
                import_limit: None,
                export_limit: None,
            },
            Node {
                id: "t1".into(),
                parent: Some("substation".into()),
                import_limit: Some(Watts(400 * KW)),
                export_limit: Some(Watts(250 * KW)),
            },
        ],
        vec![
            Bid::new(
                "grid",
                "substation",
                Curve::from_points(&[
                    Point {
                        price: Price(20 * UNIT),
                        power: Watts(5_000_000),
                    },
                    Point {
                        price: Price(20 * UNIT),
                        power: Watts(0),
                    },
                    Point {
                        price: Price(80 * UNIT),
                        power: Watts(0),
                    },
                    Point {
                        price: Price(80 * UNIT),
                        power: Watts(-5_000_000),
                    },
                ])
                .unwrap(),
            ),
            Bid::new(
                "house-7",
                "t1",
                Curve::from_points(&[
                    Point {
                        price: Price(0),
                        power: Watts(6_500),
                    },
                    Point {
                        price: Price(120 * UNIT),
                        power: Watts(2_000),
                    },
                    Point {
                        price: Price(3_000 * UNIT),
                        power: Watts(2_000),
                    },
                ])
                .unwrap(),
            ),
        ],
    )
    .unwrap();
    let local = clear(&market);
    assert_eq!(local.prices, r.prices);
    assert_eq!(local.flows, r.flows);
    assert_eq!(local.welfare.0, r.welfare);
    // Interval 1 had no bids and clears too, once its gate passes.
    let s: Schedule = chain.read(&StateKey::Schedule(f())).unwrap();
    assert_eq!(s.next_clear, Interval(1));
    chain.block_at(gate(1), vec![]);
    assert_eq!(result(&chain, 1).bids, 0);
}

#[test]
fn a_bid_after_its_gate_or_beyond_the_horizon_is_refused_with_the_reason() {
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    chain.block_at(gate(0), vec![]);
    let late = chain.sign(
        &key(3),
        bids(vec![bid("house-7", 0, Some(points(&[(0, 1)])))]),
    );
    let e = chain.block(1, vec![late]);
    assert_eq!(
        rejected(&e.receipts[0].outcome),
        RejectReason::GateClosed {
            interval: Interval(0),
            gate_ms: gate(0),
            now_ms: gate(0) + 1
        }
    );
    let far = chain.send(
        &key(3),
        bids(vec![bid("house-7", 500, Some(points(&[(0, 1)])))]),
    );
    assert!(
        matches!(rejected(&far), RejectReason::BeyondHorizon { .. }),
        "{far:?}"
    );
    let stranger = chain.send(
        &key(9),
        bids(vec![bid("house-7", 3, Some(points(&[(0, 1)])))]),
    );
    assert_eq!(
        rejected(&stranger),
        RejectReason::NotSiteBidder {
            site: SiteId::new("house-7").unwrap()
        }
    );
}
