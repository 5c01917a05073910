//! The market on the chain, driven through transactions on an in-memory chain: registry,
//! configuration, modes, bids, clearing at gate closure, and the result read back from state
//! and compared with `bcte-market` clearing the same market directly.

mod common;

use bcte_ledger::{
    StateKey,
    market_state::{IntervalResult, Schedule, SiteResult},
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
        imbalance_penalty: Price(20 * UNIT),
        settlement_delay_ms: 4_000,
        reading_window_ms: 10_000,
        ..MarketConfig::DEFAULT
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
            market_account: None,
            upstream_account: None,
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

/// A site's result in interval `k`.
fn site_result(chain: &Chain, k: u64, site: &str) -> SiteResult {
    chain
        .site_result(&f(), Interval(k), &SiteId::new(site).unwrap())
        .expect("the site's result")
}

/// Whether a site has a bid for interval `k`.
fn has_bid(chain: &Chain, k: u64, site: &str) -> bool {
    chain
        .bid_of(&f(), Interval(k), &SiteId::new(site).unwrap())
        .is_some()
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
    let house = site_result(&chain, 0, "house-7");
    assert_eq!(house.allocation, Watts(3_500));
    assert_eq!(house.price, Price(80 * UNIT));
    assert_eq!(site_result(&chain, 0, "grid").allocation, Watts(-3_500));

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

/// A feeder `root` — `t1` with one site, `load` at t1 owned by key(2), and the configuration's
/// tariff (import at 80 up to 5,000 kW, 1,000 kW in alert; export at 20).
fn load_feeder(chain: &mut Chain) {
    register(
        chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), None, None),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![site("load", "t1", 2, 0)],
        }),
    ));
}

fn set_mode(chain: &mut Chain, from: u64, mode: GridMode) -> Outcome {
    let dso = chain.dso.clone();
    chain.send(
        &dso,
        Payload::GridMode(GridModeSet {
            feeder: f(),
            from: Interval(from),
            mode,
        }),
    )
}

#[test]
fn each_mode_adds_the_right_upstream_bid_normal_alert_islanded_normal() {
    let mut chain = Chain::new(1);
    load_feeder(&mut chain);
    accepted(&set_mode(&mut chain, 1, GridMode::Alert));
    accepted(&set_mode(&mut chain, 2, GridMode::Islanded));
    accepted(&set_mode(&mut chain, 3, GridMode::Normal));
    let entries = (0..4)
        .map(|k| bid("load", k, Some(points(&[(0, 2_000 * KW)]))))
        .collect();
    accepted(&chain.send(&key(2), bids(entries)));
    for k in 0..4 {
        chain.block_at(gate(k), vec![]);
    }
    let cap = Price(3_000 * UNIT);
    // Normal: the grid imports all 2,000 kW at its import price.
    let r = result(&chain, 0);
    assert_eq!(
        (r.mode, r.upstream, r.prices[0]),
        (GridMode::Normal, Watts(-2_000 * KW), Price(80 * UNIT))
    );
    assert!(r.shed.is_empty());
    // Alert: import capped at 1,000 kW; the other 1,000 kW are shed at the cap.
    let r = result(&chain, 1);
    assert_eq!(
        (r.mode, r.upstream, r.prices[1]),
        (GridMode::Alert, Watts(-1_000 * KW), cap)
    );
    assert_eq!(r.shed, vec![(1, Watts(1_000 * KW))]);
    assert_eq!(site_result(&chain, 1, "load").shed, Watts(1_000 * KW));
    // Islanded: no upstream bid at all; everything is shed.
    let r = result(&chain, 2);
    assert_eq!((r.mode, r.upstream), (GridMode::Islanded, Watts(0)));
    assert_eq!(r.shed, vec![(1, Watts(2_000 * KW))]);
    assert_eq!(site_result(&chain, 2, "load").served(), Watts(0));
    // Normal again.
    let r = result(&chain, 3);
    assert_eq!((r.mode, r.upstream), (GridMode::Normal, Watts(-2_000 * KW)));
}

#[test]
fn islanded_the_lowest_priority_class_is_shed_first_across_the_feeder() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("r", None, None, None),
            node("c", Some("r"), Some(50), None),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![
                site("gen", "r", 2, 0),
                site("house-r", "r", 3, 0),
                site("house-c", "c", 4, 0),
                site("school", "c", 5, 3),
                site("hospital", "c", 6, 7),
            ],
        }),
    ));
    accepted(&set_mode(&mut chain, 0, GridMode::Islanded));
    let offers = [
        (2, "gen", points(&[(40, 0), (40, -12 * KW)])),
        (3, "house-r", points(&[(0, 3 * KW)])),
        (4, "house-c", points(&[(0, 2 * KW)])),
        (5, "school", points(&[(0, 4 * KW)])),
        (6, "hospital", points(&[(0, 11 * KW)])),
    ];
    let txs = offers
        .into_iter()
        .map(|(k, s, c)| chain.sign(&key(k), bids(vec![bid(s, 0, Some(c))])))
        .collect();
    chain.block(1, txs);
    chain.block_at(gate(0), vec![]);
    // The worked example of market rule MR-2.4 (docs and the engine's tests): 8 kW short; both
    // households (class 0) in full, then 3 of the school's 4 (class 3); the hospital keeps all.
    let shed = |s| site_result(&chain, 0, s).shed;
    assert_eq!(shed("house-r"), Watts(3 * KW));
    assert_eq!(shed("house-c"), Watts(2 * KW));
    assert_eq!(shed("school"), Watts(3 * KW));
    assert_eq!(shed("hospital"), Watts(0));
    assert_eq!(site_result(&chain, 0, "hospital").served(), Watts(11 * KW));
    let r = result(&chain, 0);
    assert_eq!(r.shed, vec![(0, Watts(3 * KW)), (1, Watts(5 * KW))]);
    assert_eq!(r.flows[1], Watts(12 * KW));
}

#[test]
fn a_later_bid_replaces_an_earlier_one_and_an_empty_bid_withdraws_it() {
    let mut chain = Chain::new(1);
    load_feeder(&mut chain);
    accepted(&chain.send(
        &key(2),
        bids(vec![bid("load", 0, Some(points(&[(0, 100 * KW)])))]),
    ));
    accepted(&chain.send(
        &key(2),
        bids(vec![bid("load", 0, Some(points(&[(0, 40 * KW)])))]),
    ));
    accepted(&chain.send(
        &key(2),
        bids(vec![bid("load", 1, Some(points(&[(0, 40 * KW)])))]),
    ));
    accepted(&chain.send(&key(2), bids(vec![bid("load", 1, None)])));
    // Withdrawing what is not there changes nothing and is not an error.
    accepted(&chain.send(&key(2), bids(vec![bid("load", 2, None)])));
    chain.block_at(gate(0), vec![]);
    chain.block_at(gate(1), vec![]);
    assert_eq!(site_result(&chain, 0, "load").allocation, Watts(40 * KW));
    assert_eq!(result(&chain, 0).bids, 1);
    assert_eq!(result(&chain, 1).bids, 0);
    assert!(!has_bid(&chain, 1, "load"));
}

fn delegate(chain: &mut Chain, owner: u64, site: &str, aggregator: u64) -> Outcome {
    chain.send(
        &key(owner),
        Payload::SiteDelegate(bcte_types::market::SiteDelegate {
            feeder: f(),
            site: SiteId::new(site).unwrap(),
            aggregator: account(&key(aggregator)),
        }),
    )
}

fn revoke(chain: &mut Chain, owner: u64, site: &str) -> Outcome {
    chain.send(
        &key(owner),
        Payload::SiteRevoke(bcte_types::market::SiteRevoke {
            feeder: f(),
            site: SiteId::new(site).unwrap(),
        }),
    )
}

#[test]
fn a_delegated_aggregator_bids_in_batch_and_a_revoked_one_loses_its_open_bids() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), None, None),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![
                site("a", "t1", 2, 0),
                site("b", "t1", 3, 0),
                site("c", "t1", 4, 0),
            ],
        }),
    ));
    let aggregator = 7;
    for (owner, s) in [(2, "a"), (3, "b"), (4, "c")] {
        accepted(&delegate(&mut chain, owner, s, aggregator));
    }
    let batch: Vec<BidEntry> = ["a", "b", "c"]
        .iter()
        .flat_map(|s| (0..2).map(move |k| bid(s, k, Some(points(&[(0, 10 * KW)])))))
        .collect();
    accepted(&chain.send(&key(aggregator), bids(batch)));
    // Site b revokes: the aggregator's bids for b with open gates go.
    accepted(&revoke(&mut chain, 3, "b"));
    let refused = chain.send(
        &key(aggregator),
        bids(vec![bid("b", 1, Some(points(&[(0, 1)])))]),
    );
    assert_eq!(
        rejected(&refused),
        RejectReason::NotSiteBidder {
            site: SiteId::new("b").unwrap()
        }
    );
    // A revocation only the owner may send; a second one has nothing to revoke.
    assert_eq!(
        rejected(&revoke(&mut chain, aggregator, "a")),
        RejectReason::NotSiteOwner {
            site: SiteId::new("a").unwrap()
        }
    );
    assert!(matches!(
        rejected(&revoke(&mut chain, 3, "b")),
        RejectReason::Invalid { .. }
    ));
    chain.block_at(gate(0), vec![]);
    let r = result(&chain, 0);
    assert_eq!(r.bids, 2, "a and c only");
    assert!(
        chain
            .site_result(&f(), Interval(0), &SiteId::new("a").unwrap())
            .is_some()
    );
    assert!(!has_bid(&chain, 0, "b"));
    // The owner still bids for its own site.
    accepted(&chain.send(
        &key(3),
        bids(vec![bid("b", 1, Some(points(&[(0, 5 * KW)])))]),
    ));
    chain.block_at(gate(1), vec![]);
    assert_eq!(site_result(&chain, 1, "b").allocation, Watts(5 * KW));
}

#[test]
fn a_revocation_withdraws_every_open_bid_of_the_aggregator_however_far_ahead_and_no_other() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), None, None),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![site("a", "t1", 2, 0), site("z", "t1", 3, 0)],
        }),
    ));
    let curve = || Some(points(&[(0, KW)]));
    accepted(&delegate(&mut chain, 2, "a", 7));
    // The aggregator bids near and far ahead (the horizon is 192 intervals); the owner bids
    // for an interval of its own; another site's bids are the aggregator's too.
    accepted(&chain.send(
        &key(7),
        bids(vec![
            bid("a", 0, curve()),
            bid("a", 5, curve()),
            bid("a", 150, curve()),
        ]),
    ));
    accepted(&chain.send(&key(2), bids(vec![bid("a", 3, curve())])));
    accepted(&delegate(&mut chain, 3, "z", 7));
    accepted(&chain.send(&key(7), bids(vec![bid("z", 150, curve())])));
    // In one block: the aggregator bids further still, then the owner revokes.
    let late = chain.sign(&key(7), bids(vec![bid("a", 190, curve())]));
    let revocation = chain.sign(
        &key(2),
        Payload::SiteRevoke(bcte_types::market::SiteRevoke {
            feeder: f(),
            site: SiteId::new("a").unwrap(),
        }),
    );
    let e = chain.block(1, vec![late, revocation]);
    assert!(e.receipts.iter().all(|r| r.outcome == Outcome::Accepted));
    for k in [0, 5, 150, 190] {
        assert!(
            !has_bid(&chain, k, "a"),
            "the aggregator's bid for {k} is withdrawn"
        );
    }
    assert!(has_bid(&chain, 3, "a"), "the owner's own bid stays");
    assert!(has_bid(&chain, 150, "z"), "another site's bid stays");
    assert_eq!(
        chain
            .read::<bcte_ledger::market_state::BookIndex>(&StateKey::Book(f(), Interval(150)))
            .unwrap()
            .bids,
        1
    );
    // A new aggregator's bids go when the owner moves to a third one.
    accepted(&delegate(&mut chain, 2, "a", 8));
    accepted(&chain.send(&key(8), bids(vec![bid("a", 9, curve())])));
    accepted(&delegate(&mut chain, 2, "a", 9));
    assert!(!has_bid(&chain, 9, "a"));
    assert!(has_bid(&chain, 3, "a"));
}

#[test]
fn a_connection_limit_clips_the_site_and_it_still_pays_its_nodes_price() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), None, None),
        ],
    );
    let dso = chain.dso.clone();
    let mut limited = site("ev", "t1", 2, 0);
    limited.import_limit = Some(Watts(3 * KW));
    limited.export_limit = Some(Watts(0));
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![limited, site("pv", "t1", 3, 0)],
        }),
    ));
    accepted(&chain.send(
        &key(2),
        bids(vec![bid("ev", 0, Some(points(&[(0, 11 * KW), (500, 0)])))]),
    ));
    accepted(&chain.send(
        &key(3),
        bids(vec![bid("pv", 0, Some(points(&[(0, -2 * KW)])))]),
    ));
    chain.block_at(gate(0), vec![]);
    let ev = site_result(&chain, 0, "ev");
    let r = result(&chain, 0);
    assert_eq!(ev.allocation, Watts(3 * KW), "clipped to its import limit");
    assert_eq!(ev.price, r.prices[1], "the site sees its node's price");
    assert_eq!(
        r.prices.len(),
        2,
        "the site's own edge is not a node of the result"
    );
    assert_eq!(r.flows[1], Watts(KW), "3 kW charging less 2 kW of PV");
}

#[test]
fn an_edge_limit_change_applies_from_its_interval_on() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), Some(400), None),
        ],
    );
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![site("load", "t1", 2, 0)],
        }),
    ));
    let change = Payload::EdgeLimit(bcte_types::market::EdgeLimit {
        feeder: f(),
        from: Interval(1),
        node: NodeId::new("t1").unwrap(),
        import_limit: Some(Watts(100 * KW)),
        export_limit: None,
    });
    accepted(&chain.send(&dso, change));
    let curve = points(&[(0, 300 * KW), (3_000, 300 * KW)]);
    accepted(&chain.send(
        &key(2),
        bids(vec![
            bid("load", 0, Some(curve.clone())),
            bid("load", 1, Some(curve)),
        ]),
    ));
    chain.block_at(gate(0), vec![]);
    chain.block_at(gate(1), vec![]);
    assert_eq!(result(&chain, 0).flows[1], Watts(300 * KW));
    let r = result(&chain, 1);
    assert_eq!(r.flows[1], Watts(100 * KW));
    assert_eq!(
        r.congested,
        vec![(1, bcte_ledger::market_state::Congestion::Import)]
    );
    assert_eq!(r.shed, vec![(1, Watts(200 * KW))]);
}

#[test]
fn a_new_interval_length_keeps_the_start_of_its_first_interval() {
    let mut chain = Chain::new(1);
    load_feeder(&mut chain);
    let dso = chain.dso.clone();
    let shorter = MarketConfig {
        interval_ms: 1_000,
        gate_lead_ms: 400,
        settlement_delay_ms: 2_000,
        reading_window_ms: 5_000,
        ..config()
    };
    accepted(&chain.send(
        &dso,
        Payload::MarketConfig(bcte_types::market::MarketConfigure {
            feeder: f(),
            from: Interval(3),
            config: shorter,
        }),
    ));
    let s: Schedule = chain.read(&StateKey::Schedule(f())).unwrap();
    assert_eq!(s.start_ms(Interval(3)), EPOCH + 3 * 2_000);
    assert_eq!(s.start_ms(Interval(5)), EPOCH + 3 * 2_000 + 2 * 1_000);
    assert_eq!(s.gate_ms(Interval(5)), EPOCH + 3 * 2_000 + 2 * 1_000 - 400);
    // A change whose first gate would close before the previous interval's is refused, and
    // so is one for an interval whose gate has closed.
    let bad = MarketConfig {
        gate_lead_ms: 5_000,
        ..config()
    };
    let r = chain.send(
        &dso,
        Payload::MarketConfig(bcte_types::market::MarketConfigure {
            feeder: f(),
            from: Interval(2),
            config: bad,
        }),
    );
    assert!(
        matches!(
            rejected(&r),
            RejectReason::Invalid { .. } | RejectReason::GateClosed { .. }
        ),
        "{r:?}"
    );
    chain.block_at(gate(0), vec![]);
    let r = chain.send(
        &dso,
        Payload::MarketConfig(bcte_types::market::MarketConfigure {
            feeder: f(),
            from: Interval(0),
            config: config(),
        }),
    );
    assert!(matches!(rejected(&r), RejectReason::GateClosed { .. }));
    // Intervals 3 and 4 clear on the new grid.
    for k in 1..5 {
        let s: Schedule = chain.read(&StateKey::Schedule(f())).unwrap();
        chain.block_at(s.gate_ms(Interval(k)).max(chain.time_ms + 1), vec![]);
    }
    assert_eq!(result(&chain, 3).interval_ms, 1_000);
    assert_eq!(result(&chain, 4).start_ms, EPOCH + 3 * 2_000 + 1_000);
}

#[test]
fn posted_upstream_prices_replace_the_tariff_for_their_intervals() {
    let mut chain = Chain::new(1);
    load_feeder(&mut chain);
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::UpstreamPrices(bcte_types::market::UpstreamPrices {
            feeder: f(),
            from: Interval(1),
            prices: vec![bcte_types::market::UpstreamPrice {
                import_price: Price(150 * UNIT),
                export_price: Price(60 * UNIT),
            }],
        }),
    ));
    let curve = points(&[(0, 50 * KW)]);
    accepted(&chain.send(
        &key(2),
        bids(vec![
            bid("load", 0, Some(curve.clone())),
            bid("load", 1, Some(curve)),
        ]),
    ));
    chain.block_at(gate(0), vec![]);
    chain.block_at(gate(1), vec![]);
    assert_eq!(result(&chain, 0).prices[0], Price(80 * UNIT));
    let r = result(&chain, 1);
    assert_eq!(
        (r.import_price, r.prices[0]),
        (Price(150 * UNIT), Price(150 * UNIT))
    );
}

#[test]
fn cleared_intervals_past_their_retention_leave_the_state_but_stay_provable() {
    let mut chain = Chain::new(1);
    load_feeder(&mut chain);
    accepted(&chain.send(
        &key(2),
        bids(vec![bid("load", 0, Some(points(&[(0, 5 * KW)])))]),
    ));
    chain.block_at(gate(0), vec![]);
    let cleared_at = chain.height;
    // Retention is 10 intervals: clear 11 more, each gate in its own block, with blocks that
    // clear nothing in between (the first settles an interval, ST-2.1, the second prunes).
    for k in 1..=12 {
        chain.block_at(gate(k), vec![]);
        chain.block(1, vec![]);
        chain.block(1, vec![]);
    }
    let load = SiteId::new("load").unwrap();
    let key0 = StateKey::Bids(f(), Interval(0), bcte_ledger::book_bucket(&load));
    assert!(!has_bid(&chain, 0, "load"), "pruned");
    assert!(
        chain.site_result(&f(), Interval(0), &load).is_none(),
        "pruned"
    );
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(0)))
            .is_none()
    );
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(5)))
            .is_some()
    );
    // Still there at the height that cleared it.
    let old = bcte_ledger::tree::read_value(&chain.tree, cleared_at, &key0).unwrap();
    assert!(old.is_some());
}

#[test]
fn an_interval_with_more_buckets_than_a_block_prunes_leaves_the_state_over_two_blocks() {
    let mut chain = Chain::new(1);
    register(
        &mut chain,
        vec![
            node("root", None, None, None),
            node("t1", Some("root"), None, None),
        ],
    );
    let dso = chain.dso.clone();
    let ids: Vec<String> = (0..400).map(|i| format!("s{i}")).collect();
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: ids.iter().map(|s| site(s, "t1", 2, 0)).collect(),
        }),
    ));
    accepted(
        &chain.send(
            &key(2),
            bids(
                ids.iter()
                    .map(|s| bid(s, 0, Some(points(&[(0, KW)]))))
                    .collect(),
            ),
        ),
    );
    let book = |chain: &Chain| {
        chain.read::<bcte_ledger::market_state::BookIndex>(&StateKey::Book(f(), Interval(0)))
    };
    let used = book(&chain).unwrap().iter().count();
    assert!(
        used > bcte_ledger::market::PRUNE_BUCKETS_PER_BLOCK_MAX,
        "400 sites use {used} buckets"
    );
    // Clear 0 to 11 (retention 10), each gate in its own block, so no block prunes yet.
    for k in 0..=11 {
        chain.block_at(gate(k), vec![]);
    }
    let in_state = |chain: &Chain| {
        ids.iter()
            .filter(|s| {
                chain
                    .site_result(&f(), Interval(0), &SiteId::new(s.as_str()).unwrap())
                    .is_some()
            })
            .count()
    };
    assert_eq!(in_state(&chain), 400);
    // Blocks that clear nothing settle first, one interval each (ST-2.1): the ten that have
    // ended by now.
    for _ in 0..10 {
        chain.block(1, vec![]);
    }
    assert_eq!(in_state(&chain), 400);
    // The first block that neither clears nor settles prunes 128 buckets, the second the rest
    // and the interval's result and book.
    chain.block(1, vec![]);
    let left = in_state(&chain);
    assert!(
        0 < left && left < 400,
        "{left} results left after one block"
    );
    assert!(book(&chain).is_some());
    chain.block(1, vec![]);
    assert_eq!(in_state(&chain), 0);
    assert!(book(&chain).is_none());
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(0)))
            .is_none()
    );
    assert!(!has_bid(&chain, 0, "s0"));
    // Interval 1 had no bids: the next block prunes its result.
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(1)))
            .is_some()
    );
    chain.block(1, vec![]);
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(1)))
            .is_none()
    );
}

#[test]
fn the_same_transactions_give_the_same_state_root() {
    let run = || {
        let mut chain = Chain::new(1);
        small_example(&mut chain);
        chain.block_at(gate(0), vec![]);
        chain.root()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_market_clock_speed_runs_intervals_in_less_block_time() {
    // At speed 1000, a 15-minute interval passes in 0.9 s of block time.
    let mut chain = Chain::new(1_000);
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f(),
            epoch_ms: Some(GENESIS_MS + 900_000),
            config: MarketConfig::DEFAULT,
            nodes: vec![node("root", None, None, None)],
            market_account: None,
            upstream_account: None,
        }),
    ));
    let s: Schedule = chain.read(&StateKey::Schedule(f())).unwrap();
    // The registering block at genesis + 1 ms is at market time genesis + 1 s; interval 0
    // starts 15 minutes after genesis and its gate closes 5 minutes before, at block time
    // genesis + 600 ms.
    assert_eq!(s.next_clear, Interval(0));
    chain.block_at(GENESIS_MS + 599, vec![]);
    assert!(
        chain
            .read::<IntervalResult>(&StateKey::Result(f(), Interval(0)))
            .is_none()
    );
    chain.block_at(GENESIS_MS + 600, vec![]);
    let r = result(&chain, 0);
    assert_eq!(
        r.interval_ms,
        15 * 60 * 1000,
        "the nominal length, whatever the block times"
    );
}

/// Sends `payload` alone in a block and returns its rejection, after checking that the block
/// wrote nothing but the sender's account (its nonce is consumed, LR-2.2) and the head.
#[track_caller]
fn refused(chain: &mut Chain, k: u64, payload: Payload) -> RejectReason {
    let sender = account(&key(k));
    let before: Option<bcte_ledger::AccountState> = chain.read(&StateKey::Account(sender));
    let tx = chain.sign(&key(k), payload);
    let e = chain.block(1, vec![tx]);
    let reason = rejected(&e.receipts[0].outcome);
    let keys: Vec<&StateKey> = e.writes.keys().collect();
    assert_eq!(
        keys,
        vec![&StateKey::Account(sender), &StateKey::Head],
        "{reason}"
    );
    let after: bcte_ledger::AccountState = chain.read(&StateKey::Account(sender)).unwrap();
    assert_eq!(
        after.nonce,
        before.map_or(0, |a| a.nonce) + 1,
        "the nonce is consumed"
    );
    reason
}

fn message(r: RejectReason) -> String {
    match r {
        RejectReason::Invalid { message } => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn every_bad_bid_is_refused_with_a_reason_that_names_it() {
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    let house = |curve| bids(vec![bid("house-7", 1, Some(curve))]);
    assert_eq!(
        refused(
            &mut chain,
            3,
            bids(vec![bid("nobody", 1, Some(points(&[(0, 1)])))])
        ),
        RejectReason::UnknownSite {
            site: SiteId::new("nobody").unwrap()
        }
    );
    assert_eq!(
        refused(
            &mut chain,
            3,
            Payload::Bids(Bids {
                feeder: FeederId::new("elsewhere").unwrap(),
                bids: vec![bid("house-7", 1, None)]
            })
        ),
        RejectReason::UnknownFeeder {
            feeder: FeederId::new("elsewhere").unwrap()
        }
    );
    assert_eq!(
        message(refused(&mut chain, 3, house(points(&[(0, 1), (10, 5)])))),
        "bids[0] (site \"house-7\", interval 1), curve: point 1: its power is above the previous point's"
    );
    assert_eq!(
        message(refused(&mut chain, 3, house(points(&[(10, 1), (5, 0)])))),
        "bids[0] (site \"house-7\", interval 1), curve: point 1: its price is below the previous point's"
    );
    let oversized: Vec<(i64, i64)> = (0..257).map(|i| (i, 0)).collect();
    assert!(
        message(refused(&mut chain, 3, house(points(&oversized))))
            .contains("257 points or components, more than the limit of 256")
    );
    assert!(
        message(refused(&mut chain, 3, house(points(&[(5_000, 1)]))))
            .contains("outside the interval's [price_floor, price_cap]")
    );
    assert!(message(refused(&mut chain, 3, bids(vec![]))).starts_with("bids: 0 bids"));
    let twice = bids(vec![
        bid("house-7", 1, None),
        bid("house-7", 1, Some(points(&[(0, 1)]))),
    ]);
    assert!(message(refused(&mut chain, 3, twice)).contains("bids twice for this interval"));
    // One bad entry refuses the whole batch (the good one is not stored either).
    let mixed = bids(vec![
        bid("house-7", 1, Some(points(&[(0, 1)]))),
        bid("grid", 1, None),
    ]);
    assert_eq!(
        refused(&mut chain, 3, mixed),
        RejectReason::NotSiteBidder {
            site: SiteId::new("grid").unwrap()
        }
    );
}

#[test]
fn every_dso_action_by_anyone_else_is_refused_naming_the_action() {
    use bcte_types::{
        Role, Roles, TxKind,
        market::{EdgeLimit, MarketConfigure, UpstreamPrice, UpstreamPrices},
    };
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    let f = f;
    let cases = [
        (
            Payload::FeederRegister(FeederRegister {
                feeder: FeederId::new("g").unwrap(),
                epoch_ms: None,
                config: config(),
                nodes: vec![node("r", None, None, None)],
                market_account: None,
                upstream_account: None,
            }),
            TxKind::FeederRegister,
        ),
        (
            Payload::SitesRegister(SitesRegister {
                feeder: f(),
                sites: vec![site("new", "t1", 3, 0)],
            }),
            TxKind::SitesRegister,
        ),
        (
            Payload::EdgeLimit(EdgeLimit {
                feeder: f(),
                from: Interval(2),
                node: NodeId::new("t1").unwrap(),
                import_limit: None,
                export_limit: None,
            }),
            TxKind::EdgeLimit,
        ),
        (
            Payload::MarketConfig(MarketConfigure {
                feeder: f(),
                from: Interval(2),
                config: config(),
            }),
            TxKind::MarketConfig,
        ),
        (
            Payload::GridMode(GridModeSet {
                feeder: f(),
                from: Interval(2),
                mode: GridMode::Alert,
            }),
            TxKind::GridMode,
        ),
        (
            Payload::UpstreamPrices(UpstreamPrices {
                feeder: f(),
                from: Interval(2),
                prices: vec![UpstreamPrice {
                    import_price: Price(0),
                    export_price: Price(0),
                }],
            }),
            TxKind::UpstreamPrices,
        ),
    ];
    for (payload, kind) in cases {
        assert_eq!(payload.tx_kind(), kind);
        let reason = refused(&mut chain, 3, payload);
        assert_eq!(
            reason,
            RejectReason::MissingRole {
                kind,
                needs: Roles::one(Role::Dso)
            }
        );
        assert_eq!(
            reason.to_string(),
            format!("unauthorized: {kind} needs the role dso"),
        );
    }
}

#[test]
fn changes_for_an_interval_whose_gate_closed_are_refused() {
    use bcte_types::market::{EdgeLimit, UpstreamPrice, UpstreamPrices};
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    chain.block_at(gate(0), vec![]);
    let closed = |r: RejectReason| {
        matches!(
            r,
            RejectReason::GateClosed {
                interval: Interval(0),
                ..
            }
        )
    };
    assert!(closed(refused(
        &mut chain,
        1,
        Payload::GridMode(GridModeSet {
            feeder: f(),
            from: Interval(0),
            mode: GridMode::Normal,
        })
    )));
    assert!(closed(refused(
        &mut chain,
        1,
        Payload::EdgeLimit(EdgeLimit {
            feeder: f(),
            from: Interval(0),
            node: NodeId::new("t1").unwrap(),
            import_limit: None,
            export_limit: None,
        })
    )));
    assert!(closed(refused(
        &mut chain,
        1,
        Payload::UpstreamPrices(UpstreamPrices {
            feeder: f(),
            from: Interval(0),
            prices: vec![UpstreamPrice {
                import_price: Price(0),
                export_price: Price(0)
            }],
        })
    )));
}

#[test]
fn bad_feeders_sites_and_limits_are_refused_with_the_reason() {
    let mut chain = Chain::new(1);
    small_example(&mut chain);
    let feeder = |id: &str, nodes| {
        Payload::FeederRegister(FeederRegister {
            feeder: FeederId::new(id).unwrap(),
            epoch_ms: None,
            config: config(),
            nodes,
            market_account: None,
            upstream_account: None,
        })
    };
    assert_eq!(
        refused(
            &mut chain,
            1,
            feeder("f", vec![node("r", None, None, None)])
        ),
        RejectReason::DuplicateFeeder { feeder: f() }
    );
    let cycle = vec![
        node("r", None, None, None),
        node("a", Some("b"), None, None),
        node("b", Some("a"), None, None),
    ];
    assert!(
        message(refused(&mut chain, 1, feeder("g", cycle))).contains("the parents form a cycle")
    );
    let two_roots = vec![node("r", None, None, None), node("s", None, None, None)];
    assert!(message(refused(&mut chain, 1, feeder("g", two_roots))).contains("two roots"));
    let orphan = vec![
        node("r", None, None, None),
        node("a", Some("q"), None, None),
    ];
    assert!(message(refused(&mut chain, 1, feeder("g", orphan))).contains("unknown node \"q\""));
    let twice = vec![
        node("r", None, None, None),
        node("r", Some("r"), None, None),
    ];
    assert!(message(refused(&mut chain, 1, feeder("g", twice))).contains("duplicate node id"));
    let mut bad_config = config();
    bad_config.export_price = Price(200 * UNIT);
    assert!(
        message(refused(
            &mut chain,
            1,
            Payload::FeederRegister(FeederRegister {
                feeder: FeederId::new("g").unwrap(),
                epoch_ms: None,
                config: bad_config,
                nodes: vec![node("r", None, None, None)],
                market_account: None,
                upstream_account: None,
            })
        ))
        .contains("export_price 200000000 is above import_price 80000000")
    );

    let sites = |list| {
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: list,
        })
    };
    assert_eq!(
        refused(&mut chain, 1, sites(vec![site("x", "nowhere", 3, 0)])),
        RejectReason::UnknownNode {
            node: NodeId::new("nowhere").unwrap()
        }
    );
    assert_eq!(
        refused(&mut chain, 1, sites(vec![site("house-7", "t1", 3, 0)])),
        RejectReason::DuplicateSite {
            site: SiteId::new("house-7").unwrap()
        }
    );
    assert_eq!(
        refused(
            &mut chain,
            1,
            sites(vec![site("x", "t1", 3, 0), site("x", "t1", 4, 0)])
        ),
        RejectReason::DuplicateSite {
            site: SiteId::new("x").unwrap()
        }
    );
    assert!(
        message(refused(&mut chain, 1, sites(vec![site("x", "t1", 3, 8)])))
            .contains("priority: 8 is not a class from 0 to 7")
    );
    assert!(
        message(refused(
            &mut chain,
            1,
            sites(vec![site("upstream", "t1", 3, 0)])
        ))
        .contains("reserved")
    );

    let limit = |n: &str| {
        Payload::EdgeLimit(bcte_types::market::EdgeLimit {
            feeder: f(),
            from: Interval(1),
            node: NodeId::new(n).unwrap(),
            import_limit: Some(Watts(1)),
            export_limit: None,
        })
    };
    assert_eq!(
        refused(&mut chain, 1, limit("nowhere")),
        RejectReason::UnknownNode {
            node: NodeId::new("nowhere").unwrap()
        }
    );
    assert!(message(refused(&mut chain, 1, limit("substation"))).contains("is the root"));
}
