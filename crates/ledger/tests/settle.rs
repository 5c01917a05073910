//! Meters, readings and settlement on an in-memory chain, against figures worked out by hand
//! (docs/settlement-rules.md): a congested feeder, five sites, a settled interval, the money
//! that moved, a debt and its repayment, a true-up, a correction, a meter swap and a head-end
//! batch; and every way a reading can be wrong.

mod common;

use bcte_ledger::contract::ContractTable;
use bcte_ledger::flex::FlexTable;
use bcte_ledger::{
    StateKey, book_bucket,
    market_state::IntervalResult,
    settle_state::{AdjustBucket, AdjustKind, IntervalSettlement, SettleIndex, SettledBucket},
};
use bcte_types::contract::{
    ContractCancel, ContractEv, ContractP2p, EvChoice, EvOption, EvTerms, P2pTerms,
};
use bcte_types::flex::{FlexAccept, FlexDirection, FlexOffer, FlexRequest, FlexTarget};
use bcte_types::{
    Amount, CurveSpec, FeederId, Hash, Interval, MarketConfig, NodeId, NodeSpec, Payload, Price,
    RejectReason, SiteId, SiteSpec, WattHours, Watts,
    market::{BidEntry, Bids, FeederRegister, SitesRegister},
    meter::{HeadEndSet, MeterBatch, MeterRegister, Reading, SettlementAdjust, SiteEnergy},
};
use common::{Chain, GENESIS_MS, accepted, account, key, rejected};

const UNIT: i64 = 1_000_000;
const DT: u64 = 900_000;
const EPOCH: u64 = GENESIS_MS + 1_000_000;

fn f() -> FeederId {
    FeederId::new("f").unwrap()
}

fn s(id: &str) -> SiteId {
    SiteId::new(id).unwrap()
}

fn config() -> MarketConfig {
    MarketConfig {
        interval_ms: DT,
        gate_lead_ms: 60_000,
        import_price: Price(80 * UNIT),
        export_price: Price(20 * UNIT),
        retention_intervals: 10,
        imbalance_penalty: Price(20 * UNIT),
        settlement_delay_ms: 1_800_000,
        reading_window_ms: 3_600_000,
        ..MarketConfig::DEFAULT
    }
}

fn gate(k: u64) -> u64 {
    EPOCH + DT * k - 60_000
}

fn end(k: u64) -> u64 {
    EPOCH + DT * (k + 1)
}

fn points(pts: &[(i64, i64)]) -> Option<CurveSpec> {
    Some(CurveSpec::Points(
        pts.iter()
            .map(|&(p, w)| (Price(p * UNIT), Watts(w)))
            .collect(),
    ))
}

fn balance(chain: &Chain, seed: u64) -> u64 {
    chain
        .read::<bcte_ledger::AccountState>(&StateKey::Account(account(&key(seed))))
        .map_or(0, |a| a.balance.0)
}

fn position(chain: &Chain, seed: u64) -> i64 {
    chain
        .read::<bcte_ledger::AccountState>(&StateKey::Account(account(&key(seed))))
        .map_or(0, |a| a.position(&account(&key(MARKET))))
}

fn reading(site: &str, k: u64, wh: i64) -> Payload {
    Payload::Reading(Reading {
        feeder: f(),
        site: s(site),
        interval: Interval(k),
        wh: WattHours(wh),
    })
}

fn settled(chain: &Chain, k: u64, site: &str) -> bcte_ledger::settle_state::SiteSettlement {
    let key = StateKey::Settled(f(), Interval(k), book_bucket(&s(site)));
    *chain
        .read::<SettledBucket>(&key)
        .and_then(|b| b.get(&s(site)).copied())
        .as_ref()
        .expect("settled")
}

/// Owners are keys 2 to 6; the market account 7, the upstream account 8, the head-end 9.
const MARKET: u64 = 7;
const UPSTREAM: u64 = 8;
const HEAD_END: u64 = 9;
/// Meters: key 100 + the owner's seed.
fn meter(owner: u64) -> u64 {
    100 + owner
}

/// The feeder: the substation and, below it behind a 5 kW import limit, the street `t1`.
/// `home` (owner 2, 8 kW up to 150/MWh, 6 kW above), `pv` (3, 2 kW
/// of generation), `meterless` (5, 1 kW, no meter) and `quiet` (6, metered, never bids) are
/// on `t1`; `shop` (4, 3 kW) at the substation.
fn feeder() -> Chain {
    feeder_with(config())
}

/// [`feeder`] with another market configuration.
fn feeder_with(config: MarketConfig) -> Chain {
    let mut chain = Chain::new(1);
    let dso = chain.dso.clone();
    let node = |id: &str, parent: Option<&str>, import: Option<i64>| NodeSpec {
        id: NodeId::new(id).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        import_limit: import.map(Watts),
        export_limit: None,
    };
    accepted(&chain.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f(),
            epoch_ms: Some(EPOCH),
            config,
            nodes: vec![
                node("sub", None, None),
                node("t1", Some("sub"), Some(5_000)),
            ],
            market_account: Some(account(&key(MARKET))),
            upstream_account: Some(account(&key(UPSTREAM))),
        }),
    ));
    let site = |id: &str, node: &str, owner: u64| SiteSpec {
        site: s(id),
        node: NodeId::new(node).unwrap(),
        owner: account(&key(owner)),
        priority: 0,
        import_limit: None,
        export_limit: None,
    };
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![
                site("home", "t1", 2),
                site("pv", "t1", 3),
                site("shop", "sub", 4),
                site("meterless", "t1", 5),
                site("quiet", "t1", 6),
            ],
        }),
    ));
    for (id, owner) in [("home", 2), ("pv", 3), ("shop", 4), ("quiet", 6)] {
        accepted(&chain.send(
            &dso,
            Payload::MeterRegister(MeterRegister {
                feeder: f(),
                site: s(id),
                meter: account(&key(meter(owner))),
            }),
        ));
    }
    // Funds: home 1 token, shop less than it will owe, meterless and quiet 0.1 token.
    for (seed, amount) in [(2, 1_000_000), (4, 30_000), (5, 100_000), (6, 100_000)] {
        accepted(&chain.send(
            &dso,
            Payload::Mint {
                to: account(&key(seed)),
                amount: Amount(amount),
            },
        ));
    }
    chain
}

fn bid(chain: &mut Chain, owner: u64, site: &str, k: u64, curve: Option<CurveSpec>) {
    accepted(&chain.send(
        &key(owner),
        Payload::Bids(Bids {
            feeder: f(),
            bids: vec![BidEntry {
                site: s(site),
                interval: Interval(k),
                curve,
            }],
        }),
    ));
}

/// Interval 0 bid and cleared: `t1` is congested at 150/MWh, the substation at 80/MWh.
fn cleared() -> Chain {
    clear_zero(feeder())
}

/// [`cleared`] on a given feeder chain.
fn clear_zero(mut chain: Chain) -> Chain {
    bid(
        &mut chain,
        2,
        "home",
        0,
        points(&[(-500, 8_000), (150, 8_000), (150, 6_000), (3_000, 6_000)]),
    );
    bid(
        &mut chain,
        3,
        "pv",
        0,
        points(&[(-500, 0), (0, 0), (0, -2_000), (3_000, -2_000)]),
    );
    bid(
        &mut chain,
        4,
        "shop",
        0,
        points(&[(-500, 3_000), (3_000, 3_000)]),
    );
    bid(
        &mut chain,
        5,
        "meterless",
        0,
        points(&[(-500, 1_000), (3_000, 1_000)]),
    );
    let exec = chain.block_at(gate(0), vec![]);
    // What the block did, for the node's metrics: one interval cleared with four site bids.
    assert!(
        matches!(
            &exec.market[..],
            [bcte_ledger::MarketEvent::Cleared {
                interval: Interval(0),
                bids: 4,
                ..
            }]
        ),
        "{:?}",
        exec.market
    );
    let r: IntervalResult = chain.read(&StateKey::Result(f(), Interval(0))).unwrap();
    // Worked by hand: t1 may import 5 kW; it needs home + 1 kW - 2 kW of it, so home takes
    // 6 kW, on its step at 150/MWh. The substation buys upstream at 80/MWh.
    assert_eq!(r.prices, vec![Price(80 * UNIT), Price(150 * UNIT)]);
    assert_eq!(r.flows[1], Watts(5_000));
    assert_eq!(r.upstream, Watts(-8_000));
    chain
}

#[test]
fn an_interval_settles_by_the_rules_and_moves_exactly_the_worked_figures() {
    let mut chain = cleared();
    // Readings after the interval's end: home 1,600 Wh, pv -450 Wh, shop 700 Wh, quiet 100.
    chain.block_at(end(0), vec![]);
    for (owner, site, wh) in [(2, "home", 1_600), (3, "pv", -450), (4, "shop", 700)] {
        accepted(&chain.send(&key(meter(owner)), reading(site, 0, wh)));
    }
    let idx: SettleIndex = chain.read(&StateKey::Settling(f(), Interval(0))).unwrap();
    assert_eq!(
        idx.missing, 0,
        "home, pv and shop were the metered sites with a result"
    );
    // Every metered site with a result has read: the next block that clears nothing settles,
    // after its own transactions (quiet's reading).
    let tx = chain.sign(&key(meter(6)), reading("quiet", 0, 100));
    let exec = chain.block(1, vec![tx]);
    accepted(&exec.receipts[0].outcome);
    // What the block did, for the node's metrics: five sites settled, one of them estimated.
    assert!(
        matches!(
            &exec.market[..],
            [bcte_ledger::MarketEvent::Settled {
                interval: Interval(0),
                sites: 5,
                estimated: 1,
                ..
            }]
        ),
        "{:?}",
        exec.market
    );
    let t: IntervalSettlement = chain.read(&StateKey::Settlement(f(), Interval(0))).unwrap();

    // ST-2.2 to ST-2.4, by hand (15 minutes = 0.25 h; base units are µ-currency):
    // home: 6 kW → 1,500 Wh at 150 = 225,000; read 1,600: +100 Wh at 150 + 20 = 17,000.
    let home = settled(&chain, 0, "home");
    assert_eq!(
        (
            home.scheduled_wh,
            home.deviation_wh,
            home.energy_charge,
            home.imbalance_charge
        ),
        (1_500, 100, 225_000, 17_000)
    );
    // pv: -2 kW → -500 Wh at 150 = -75,000; read -450: +50 Wh (fed in less) at 170 = 8,500.
    let pv = settled(&chain, 0, "pv");
    assert_eq!(
        (
            pv.scheduled_wh,
            pv.deviation_wh,
            pv.energy_charge,
            pv.imbalance_charge
        ),
        (-500, 50, -75_000, 8_500)
    );
    // shop: 3 kW → 750 Wh at 80 = 60,000; read 700: -50 Wh at 80 - 20 = -3,000.
    let shop = settled(&chain, 0, "shop");
    assert_eq!(
        (shop.energy_charge, shop.imbalance_charge, shop.total()),
        (60_000, -3_000, 57_000)
    );
    // meterless: 1 kW → 250 Wh at 150 = 37,500, estimated (ST-3.1).
    let meterless = settled(&chain, 0, "meterless");
    assert!(meterless.estimated());
    assert_eq!(
        (meterless.energy_charge, meterless.imbalance_charge),
        (37_500, 0)
    );
    // quiet: no bid, served nothing at t1's 150; read 100 Wh: 100 × 170 = 17,000.
    let quiet = settled(&chain, 0, "quiet");
    assert_eq!((quiet.served, quiet.price), (Watts(0), Price(150 * UNIT)));
    assert_eq!(quiet.imbalance_charge, 17_000);

    // ST-2.6, ST-2.7: the upstream supplied 8 kW (2,000 Wh) at 80: the market pays 160,000;
    // congestion rent 5 kW × 0.25 h × 70/MWh = 87,500 = 225,000 - 75,000 + 60,000 + 37,500
    // - 160,000, so no residue.
    assert_eq!(t.sites, 5);
    assert_eq!(t.estimated, 1);
    assert_eq!(t.energy_charges, 247_500);
    assert_eq!(t.imbalance_charges, 17_000 + 8_500 - 3_000 + 17_000);
    assert_eq!((t.upstream_wh, t.upstream_charge), (-2_000, -160_000));
    assert_eq!((t.congestion_rent, t.residue), (87_500, 0));

    // ST-2.5, ST-5: the money. home pays 242,000; pv is paid 66,500; shop owes 57,000 but has
    // 30,000: it pays that and owes 27,000; meterless pays 37,500, quiet 17,000; the upstream
    // account is paid 160,000; the market account keeps the rest.
    assert_eq!(balance(&chain, 2), 1_000_000 - 242_000);
    assert_eq!(balance(&chain, 3), 66_500);
    assert_eq!((balance(&chain, 4), position(&chain, 4)), (0, -27_000));
    assert_eq!(balance(&chain, 5), 100_000 - 37_500);
    assert_eq!(balance(&chain, 6), 100_000 - 17_000);
    assert_eq!(balance(&chain, UPSTREAM), 160_000);
    assert_eq!(
        balance(&chain, MARKET),
        242_000 + 30_000 + 37_500 + 17_000 - 66_500 - 160_000
    );
    // ST-5.4: an owner in debt cannot bid; once paid (a transfer in repays first), it can.
    let tx = chain.sign(
        &key(4),
        Payload::Bids(Bids {
            feeder: f(),
            bids: vec![BidEntry {
                site: s("shop"),
                interval: Interval(3),
                curve: points(&[(-500, 1_000), (3_000, 1_000)]),
            }],
        }),
    );
    let out = chain.block(1, vec![tx]);
    assert_eq!(
        rejected(&out.receipts[0].outcome),
        RejectReason::OwnerInDebt { site: s("shop") }
    );
    accepted(&chain.send(
        &key(2),
        Payload::Transfer {
            to: account(&key(4)),
            amount: Amount(30_000),
        },
    ));
    assert_eq!((balance(&chain, 4), position(&chain, 4)), (3_000, 0));
    bid(
        &mut chain,
        4,
        "shop",
        3,
        points(&[(-500, 1_000), (3_000, 1_000)]),
    );
}

#[test]
fn late_readings_true_up_corrections_are_booked_and_meters_can_be_swapped() {
    let mut chain = cleared();
    // Nobody reads interval 0 until its deadline: it settles on the schedule.
    chain.block_at(end(0) + 1_800_000, vec![]);
    chain.block(1, vec![]);
    assert!(settled(&chain, 0, "home").estimated());
    assert_eq!(settled(&chain, 0, "home").total(), 225_000);
    let home_before = balance(&chain, 2);
    // ST-3.2: home's reading comes late: 1,600 Wh against its 1,500 scheduled, priced as
    // ST-2.4: 100 × 170 = 17,000, booked in the interval next to clear.
    accepted(&chain.send(&key(meter(2)), reading("home", 0, 1_600)));
    assert_eq!(balance(&chain, 2), home_before - 17_000);
    let next = chain
        .read::<bcte_ledger::market_state::Schedule>(&StateKey::Schedule(f()))
        .unwrap()
        .next_clear;
    let booked: AdjustBucket = chain
        .read(&StateKey::Adjustments(f(), next, book_bucket(&s("home"))))
        .unwrap();
    assert_eq!(booked.items.len(), 1);
    assert_eq!(booked.items[0].amount, 17_000);
    assert!(matches!(
        booked.items[0].kind,
        AdjustKind::TrueUp {
            metered_wh: 1_600,
            deviation_wh: 100
        }
    ));
    // The settlement itself is not reopened.
    assert!(settled(&chain, 0, "home").estimated());
    // Twice is a duplicate.
    assert_eq!(
        rejected(&chain.send(&key(meter(2)), reading("home", 0, 1_600))),
        RejectReason::DuplicateReading {
            site: s("home"),
            interval: Interval(0)
        }
    );
    // ST-3.3: the DSO refunds 5,000 with a reason on the record.
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::SettlementAdjust(SettlementAdjust {
            feeder: f(),
            site: s("home"),
            interval: Interval(0),
            amount: -5_000,
            memo: "meter drift confirmed on site".into(),
        }),
    ));
    assert_eq!(balance(&chain, 2), home_before - 17_000 + 5_000);
    // ST-1.1: a meter swap: the old key may no longer read; the new one may; earlier
    // readings stay.
    let swap = Payload::MeterRegister(MeterRegister {
        feeder: f(),
        site: s("pv"),
        meter: account(&key(55)),
    });
    accepted(&chain.send(&dso, swap));
    assert_eq!(
        rejected(&chain.send(&key(meter(3)), reading("pv", 0, -450))),
        RejectReason::NotSiteMeter { site: s("pv") }
    );
    accepted(&chain.send(&key(55), reading("pv", 0, -450)));
    // After the reading window: closed.
    chain.block_at(end(0) + 3_600_001, vec![]);
    let out = rejected(&chain.send(&key(meter(4)), reading("shop", 0, 700)));
    assert!(matches!(out, RejectReason::ReadingClosed { .. }), "{out}");
}

#[test]
fn bad_readings_are_rejected_with_reasons_and_change_nothing_but_the_nonce() {
    let mut chain = cleared();
    // Before the interval's end.
    let early = rejected(&chain.send(&key(meter(2)), reading("home", 0, 1_000)));
    assert_eq!(
        early,
        RejectReason::ReadingClosed {
            interval: Interval(0),
            opens_ms: end(0),
            closes_ms: end(0) + 3_600_000,
            now_ms: chain.time_ms
        }
    );
    chain.block_at(end(0), vec![]);
    let before = chain.read::<SettleIndex>(&StateKey::Settling(f(), Interval(0)));
    let cases: Vec<(u64, Payload, &str)> = vec![
        (
            meter(3),
            reading("home", 0, 1_000),
            "unauthorized: only the registered meter",
        ),
        (meter(2), reading("nobody", 0, 1_000), "unknown site"),
        (
            meter(2),
            reading("home", 1, 1_000),
            "readings of interval 1 are accepted from",
        ),
        (
            meter(2),
            reading("home", 0, bcte_ledger::settle::READING_WH_ABS_MAX + 1),
            "beyond the limit",
        ),
        // AC-3: the site's owner is no meter.
        (
            2,
            reading("home", 0, 1_000),
            "unauthorized: reading needs the role meter",
        ),
    ];
    for (signer, payload, says) in cases {
        let r = rejected(&chain.send(&key(signer), payload));
        assert!(r.to_string().contains(says), "{r} / {says}");
    }
    assert_eq!(
        chain.read::<SettleIndex>(&StateKey::Settling(f(), Interval(0))),
        before
    );
    // A head-end system: allowed by the DSO only; all of a batch or none of it.
    let batch = |readings: Vec<(&str, i64)>| {
        Payload::MeterBatch(MeterBatch {
            feeder: f(),
            interval: Interval(0),
            root: Hash::from([7; 32]),
            readings: readings
                .into_iter()
                .map(|(site, wh)| SiteEnergy {
                    site: s(site),
                    wh: WattHours(wh),
                })
                .collect(),
        })
    };
    // Not yet a head-end: it holds no meter role (AC-1.4 grants it with the DSO's allowance).
    assert!(matches!(
        rejected(&chain.send(&key(HEAD_END), batch(vec![("home", 1)]))),
        RejectReason::MissingRole { .. }
    ));
    let dso = chain.dso.clone();
    let allow = Payload::HeadEnd(HeadEndSet {
        feeder: f(),
        account: account(&key(HEAD_END)),
        allowed: true,
    });
    assert!(matches!(
        rejected(&chain.send(&key(2), allow.clone())),
        RejectReason::MissingRole { .. }
    ));
    accepted(&chain.send(&dso, allow));
    let r = rejected(&chain.send(&key(HEAD_END), batch(vec![("home", 1), ("home", 2)])));
    assert!(r.to_string().contains("twice"), "{r}");
    assert_eq!(
        rejected(&chain.send(&key(HEAD_END), batch(vec![("home", 1), ("meterless", 2)]))),
        RejectReason::NotSiteMeter {
            site: s("meterless")
        }
    );
    assert_eq!(
        chain.read::<SettleIndex>(&StateKey::Settling(f(), Interval(0))),
        before
    );
    accepted(&chain.send(
        &key(HEAD_END),
        batch(vec![("home", 1_600), ("pv", -450), ("shop", 700)]),
    ));
    let idx: SettleIndex = chain.read(&StateKey::Settling(f(), Interval(0))).unwrap();
    assert_eq!(
        (idx.missing, idx.batches.clone()),
        (0, vec![Hash::from([7; 32])])
    );
    // A reading the batch carried cannot come again from the meter.
    assert!(matches!(
        rejected(&chain.send(&key(meter(2)), reading("home", 0, 1_600))),
        RejectReason::DuplicateReading { .. }
    ));
    chain.block(1, vec![]);
    assert_eq!(settled(&chain, 0, "home").metered_wh, Some(1_600));
    // An unknown feeder.
    let bad = Payload::Reading(Reading {
        feeder: FeederId::new("g").unwrap(),
        site: s("home"),
        interval: Interval(0),
        wh: WattHours(1),
    });
    assert!(matches!(
        rejected(&chain.send(&key(meter(2)), bad)),
        RejectReason::UnknownFeeder { .. }
    ));
}

fn p2p(
    seller: &str,
    buyer: &str,
    power: i64,
    from: u64,
    to: u64,
    price: i64,
    salt: u64,
) -> P2pTerms {
    P2pTerms {
        feeder: f(),
        seller: s(seller),
        buyer: s(buyer),
        power: Watts(power),
        from: Interval(from),
        to: Interval(to),
        price: Price(price * UNIT),
        salt,
    }
}

fn enter(chain: &mut Chain, sender: u64, consenting: u64, terms: &P2pTerms) -> bcte_types::Outcome {
    let consent = terms.sign(&chain.chain_id, &key(consenting));
    chain.send(
        &key(sender),
        Payload::ContractP2p(ContractP2p {
            terms: terms.clone(),
            consent,
        }),
    )
}

#[test]
fn a_p2p_contract_pays_its_difference_at_the_sellers_price_with_both_parties_consent() {
    let mut chain = feeder();
    // pv (owner 3) sells home (owner 2) 2 kW at 60/MWh for intervals 0 to 3.
    let terms = p2p("pv", "home", 2_000, 0, 3, 60, 0);
    // CT-1.2: one signature is not a contract (home signs its own consent), nor is a third
    // party's; the parties must be two, the sites known, the power positive.
    let r = rejected(&enter(&mut chain, 2, 2, &terms));
    assert!(
        r.to_string()
            .contains("consent: not the signature of the other party"),
        "{r}"
    );
    assert!(matches!(
        rejected(&enter(&mut chain, 4, 3, &terms)),
        RejectReason::NotSiteOwner { .. }
    ));
    assert!(matches!(
        rejected(&enter(
            &mut chain,
            2,
            3,
            &p2p("nowhere", "home", 2_000, 0, 1, 60, 0)
        )),
        RejectReason::UnknownSite { .. }
    ));
    let r = rejected(&enter(
        &mut chain,
        2,
        3,
        &p2p("pv", "home", -2_000, 0, 1, 60, 0),
    ));
    assert!(r.to_string().contains("power"), "{r}");
    let r = rejected(&enter(
        &mut chain,
        2,
        3,
        &p2p("pv", "home", 2_000, 3, 1, 60, 0),
    ));
    assert!(r.to_string().contains("first to last"), "{r}");
    accepted(&enter(&mut chain, 2, 3, &terms));
    // The seller may send it too, but the same terms are the same contract.
    let r = rejected(&enter(&mut chain, 3, 2, &terms));
    assert!(r.to_string().contains("already entered"), "{r}");
    // A second contract of the same sites may not overlap the first.
    let r = rejected(&enter(
        &mut chain,
        3,
        2,
        &p2p("pv", "home", 1_000, 1, 4, 70, 1),
    ));
    assert!(r.to_string().contains("overlaps contract"), "{r}");
    let table: ContractTable = chain.read(&StateKey::Contracts(f())).unwrap();
    assert_eq!(table.contracts.len(), 1);
    let id = table.contracts[0].id;
    assert_eq!(id, terms.id(&chain.chain_id));

    let mut chain = clear_zero(chain);
    // CT-1.3: an interval already cleared cannot be contracted any more.
    let r = rejected(&enter(
        &mut chain,
        2,
        3,
        &p2p("pv", "home", 1_000, 0, 0, 60, 7),
    ));
    assert!(r.to_string().contains("already cleared"), "{r}");
    chain.block_at(end(0), vec![]);
    for (owner, site, wh) in [
        (2, "home", 1_600),
        (3, "pv", -450),
        (4, "shop", 700),
        (6, "quiet", 100),
    ] {
        accepted(&chain.send(&key(meter(owner)), reading(site, 0, wh)));
    }
    chain.block(1, vec![]);
    // CT-2.1 by hand: 2 kW for 0.25 h is 500 Wh; at 60/MWh against pv's node price of
    // 150/MWh (t1 congested) the difference is 0.5 MWh × (60 − 150) = −45 currency... in base
    // units −45,000: home is paid 45,000 and pv pays it, on top of their settlements of the
    // first test (home 242,000, pv paid 66,500).
    let t: IntervalSettlement = chain.read(&StateKey::Settlement(f(), Interval(0))).unwrap();
    assert_eq!(t.contracts.len(), 1);
    assert_eq!((t.contracts[0].id, t.contracts[0].amount), (id, -45_000));
    assert_eq!(balance(&chain, 2), 1_000_000 - 242_000 + 45_000);
    assert_eq!(balance(&chain, 3), 66_500 - 45_000);
    // The market account is where it was without the contract: the difference passes through.
    assert_eq!(
        balance(&chain, MARKET),
        242_000 + 30_000 + 37_500 + 17_000 - 66_500 - 160_000
    );

    let cancel = |chain: &mut Chain, sender: u64, consenting: u64, from: u64| {
        let consent =
            ContractCancel::sign(&chain.chain_id, &f(), &id, Interval(from), &key(consenting));
        chain.send(
            &key(sender),
            Payload::ContractCancel(ContractCancel {
                feeder: f(),
                id,
                from: Interval(from),
                consent,
            }),
        )
    };
    // CT-1.4: cancelling needs the other party's consent too, and only future intervals go:
    // interval 1 cleared with interval 0's readings (its gate is before interval 0's end).
    let r = rejected(&cancel(&mut chain, 3, 3, 2));
    assert!(r.to_string().contains("both parties' consent"), "{r}");
    let r = rejected(&cancel(&mut chain, 3, 2, 1));
    assert!(r.to_string().contains("already cleared"), "{r}");
    accepted(&cancel(&mut chain, 3, 2, 2));
    let table: ContractTable = chain.read(&StateKey::Contracts(f())).unwrap();
    assert_eq!(table.contracts[0].until, Interval(1));
    let r = rejected(&cancel(&mut chain, 3, 2, 2));
    assert!(r.to_string().contains("nothing to cancel"), "{r}");
    // Interval 1 had no bids: only the upstream's import (80/MWh) and export (20/MWh) bound
    // the price, which clears at their midpoint, 50/MWh (MR-2.1 b), so the difference is
    // 0.5 MWh × (60 − 50) = 5,000, paid by home. Interval 2 is no longer under contract.
    chain.block_at(end(1) + config().settlement_delay_ms, vec![]);
    chain.block(1, vec![]);
    let t: IntervalSettlement = chain.read(&StateKey::Settlement(f(), Interval(1))).unwrap();
    assert_eq!(
        t.contracts.iter().map(|c| c.amount).collect::<Vec<_>>(),
        vec![5_000]
    );
    chain.block_at(end(2) + config().settlement_delay_ms, vec![]);
    chain.block(1, vec![]);
    let t: IntervalSettlement = chain.read(&StateKey::Settlement(f(), Interval(2))).unwrap();
    assert!(t.contracts.is_empty());
}

/// The aggregator of the flexibility test.
const AGGREGATOR: u64 = 10;

fn flex_request(k: u64, gate: u64, power: i64, salt: u64) -> FlexRequest {
    FlexRequest {
        feeder: f(),
        direction: FlexDirection::Reduce,
        target: FlexTarget::Node(NodeId::new("t1").unwrap()),
        power: Watts(power),
        from: Interval(k),
        to: Interval(k),
        price: Price(200 * UNIT),
        gate: Interval(gate),
        salt,
    }
}

fn flex_offer(
    chain: &mut Chain,
    sender: u64,
    id: Hash,
    sites: &[&str],
    power: i64,
) -> bcte_types::Outcome {
    chain.send(
        &key(sender),
        Payload::FlexOffer(FlexOffer {
            feeder: f(),
            request: id,
            sites: sites.iter().map(|x| s(x)).collect(),
            power: Watts(power),
        }),
    )
}

fn flex_accept(chain: &mut Chain, sender: u64, id: Hash, offers: &[u32]) -> bcte_types::Outcome {
    chain.send(
        &key(sender),
        Payload::FlexAccept(FlexAccept {
            feeder: f(),
            request: id,
            offers: offers.to_vec(),
        }),
    )
}

/// Everything an owner holds against the market: its balance plus its position.
fn worth(chain: &Chain, seed: u64) -> i64 {
    balance(chain, seed) as i64 + position(chain, seed)
}

#[test]
fn flexibility_is_paid_for_what_was_delivered_against_the_baseline_and_split_by_share() {
    // Baseline days of 2 intervals, 2 of them (FX-3.1), so interval 4's baseline is the mean
    // of intervals 2 and 0.
    let mut chain = feeder_with(MarketConfig {
        baseline_days: 2,
        baseline_day_intervals: 2,
        ..config()
    });
    let dso = chain.dso.clone();
    for seed in [2, 6] {
        accepted(&chain.send(
            &dso,
            Payload::Mint {
                to: account(&key(seed)),
                amount: Amount(5_000_000),
            },
        ));
    }
    // home (2) and quiet (6) delegate to the aggregator.
    for (owner, site) in [(2, "home"), (6, "quiet")] {
        accepted(&chain.send(
            &key(owner),
            Payload::SiteDelegate(bcte_types::market::SiteDelegate {
                feeder: f(),
                site: s(site),
                aggregator: account(&key(AGGREGATOR)),
            }),
        ));
    }
    let r1 = flex_request(4, 3, 3_000, 0);
    let id1 = r1.id(&chain.chain_id);
    // FX-1.1: only the DSO requests; a gate after the first interval, a price of 0 or an
    // unknown node are refused.
    assert!(matches!(
        rejected(&chain.send(&key(2), Payload::FlexRequest(r1.clone()))),
        RejectReason::MissingRole { .. }
    ));
    let r = rejected(&chain.send(&dso, Payload::FlexRequest(flex_request(4, 5, 3_000, 0))));
    assert!(r.to_string().contains("gate: interval 5 is after"), "{r}");
    let r = rejected(&chain.send(
        &dso,
        Payload::FlexRequest(FlexRequest {
            price: Price(0),
            ..r1.clone()
        }),
    ));
    assert!(r.to_string().contains("price"), "{r}");
    let r = rejected(&chain.send(
        &dso,
        Payload::FlexRequest(FlexRequest {
            target: FlexTarget::Node(NodeId::new("nowhere").unwrap()),
            ..r1.clone()
        }),
    ));
    assert!(r.to_string().contains("no node nowhere"), "{r}");
    accepted(&chain.send(&dso, Payload::FlexRequest(r1.clone())));
    let r = rejected(&chain.send(&dso, Payload::FlexRequest(r1.clone())));
    assert!(r.to_string().contains("already posted"), "{r}");

    // FX-2.1: offer 0, the aggregator's portfolio; offer 1, pv's own; offer 2, meterless.
    accepted(&flex_offer(
        &mut chain,
        AGGREGATOR,
        id1,
        &["home", "quiet"],
        2_000,
    ));
    accepted(&flex_offer(&mut chain, 3, id1, &["pv"], 1_000));
    accepted(&flex_offer(&mut chain, 5, id1, &["meterless"], 1_000));
    // Refused: shop is at the substation, not at t1; home is in offer 0 already (its owner
    // may still offer, but not twice); quiet is not pv's owner's; more than was requested.
    let r = rejected(&flex_offer(&mut chain, 4, id1, &["shop"], 1_000));
    assert!(r.to_string().contains("not a site the request asks"), "{r}");
    let r = rejected(&flex_offer(&mut chain, 2, id1, &["home"], 1_000));
    assert!(r.to_string().contains("already in offer 0"), "{r}");
    assert!(matches!(
        rejected(&flex_offer(&mut chain, 3, id1, &["quiet"], 1_000)),
        RejectReason::NotSiteBidder { .. }
    ));
    let r = rejected(&flex_offer(&mut chain, 4, id1, &["nowhere"], 1_000));
    assert!(matches!(r, RejectReason::UnknownSite { .. }), "{r}");
    let r = rejected(&flex_offer(&mut chain, 3, id1, &["pv"], 4_000));
    assert!(
        r.to_string().contains("at most the 3000 W requested"),
        "{r}"
    );
    // FX-2.2: only the DSO accepts, no more than was requested in all.
    assert!(matches!(
        rejected(&flex_accept(&mut chain, 2, id1, &[0])),
        RejectReason::MissingRole { .. }
    ));
    accepted(&flex_accept(&mut chain, 1, id1, &[0, 1]));
    let r = rejected(&flex_accept(&mut chain, 1, id1, &[2]));
    assert!(r.to_string().contains("4000 W accepted in all"), "{r}");
    let r = rejected(&flex_accept(&mut chain, 1, id1, &[7]));
    assert!(r.to_string().contains("no offer 7"), "{r}");

    // Readings (Wh): the odd intervals are noise a baseline of 2-interval days never reads.
    let readings: [[(u64, &str, i64); 4]; 7] = std::array::from_fn(|k| {
        let odd = k % 2 == 1;
        let pick = |even: [i64; 4], noise: i64| if odd { noise } else { even[k / 2] };
        [
            (2, "home", pick([1_000, 1_400, 600, 1_000], 3_000)),
            (6, "quiet", pick([300, 501, 200, 300], 2_000)),
            (3, "pv", pick([-400, -600, -300, -300], -2_000)),
            (4, "shop", 0),
        ]
    });
    let mut worth_before = std::collections::BTreeMap::new();
    for k in 0..=6u64 {
        if chain.time_ms < gate(k) {
            chain.block_at(gate(k), vec![]);
        }
        if k == 3 {
            // FX-2.1: offers close with the request's gate.
            let r = rejected(&flex_offer(&mut chain, 4, id1, &["quiet"], 1_000));
            assert!(matches!(r, RejectReason::GateClosed { .. }), "{r}");
            // A second request for interval 6, its offer accepted: home's baseline will
            // skip interval 4, when home was asked for flexibility (FX-3.1).
            let r2 = flex_request(6, 5, 1_000, 1);
            accepted(&chain.send(&dso, Payload::FlexRequest(r2.clone())));
            let id2 = r2.id(&chain.chain_id);
            accepted(&flex_offer(&mut chain, AGGREGATOR, id2, &["home"], 1_000));
            accepted(&flex_accept(&mut chain, 1, id2, &[0]));
        }
        if k == 4 {
            // FX-3.2: the offers' sites are waited for, bid or not: home, quiet and pv are
            // metered (meterless is not, and its offer was not accepted).
            let idx: SettleIndex = chain.read(&StateKey::Settling(f(), Interval(4))).unwrap();
            assert_eq!(idx.missing, 3);
        }
        chain.block_at(end(k), vec![]);
        for seed in [2, 3, 6, MARKET] {
            worth_before.insert(seed, worth(&chain, seed));
        }
        let txs = readings[k as usize]
            .iter()
            .map(|&(owner, site, wh)| chain.sign(&key(meter(owner)), reading(site, k, wh)))
            .collect();
        chain.block(1, txs);
        // The interval is due once its last reading is in: the next block settles it.
        chain.block(1, vec![]);
        let t: IntervalSettlement = chain
            .read(&StateKey::Settlement(f(), Interval(k)))
            .unwrap_or_else(|| panic!("interval {k} settled with its readings"));
        assert_eq!(t.estimated, 0);
        match k {
            4 => {
                // Worked by hand (FX-3): home's baseline (1,400 + 1,000) / 2 = 1,200 Wh, it
                // read 600: 600 Wh; quiet's (501 + 300) / 2 = 400.5 → 401, it read 200:
                // 201 Wh. The portfolio delivered 801 Wh, capped at its 2 kW × 0.25 h =
                // 500 Wh: 0.5 MWh × 200/MWh = 100,000 base units, split 600 : 201 as
                // 74,906.4 and 25,093.6 → 74,906 and 25,094. pv's baseline is
                // (−600 − 400) / 2 = −500 Wh and it fed in only 300: −200 Wh, nothing
                // delivered, nothing paid.
                assert_eq!(t.flexibility.len(), 2);
                let (agg, pv) = (&t.flexibility[0], &t.flexibility[1]);
                assert_eq!(
                    (agg.request, agg.offer, agg.by),
                    (id1, 0, account(&key(AGGREGATOR)))
                );
                assert_eq!((agg.delivered_wh, agg.amount), (500, 100_000));
                assert_eq!(
                    agg.sites
                        .iter()
                        .map(|x| (x.baseline_wh, x.metered_wh, x.delivered_wh, x.amount))
                        .collect::<Vec<_>>(),
                    vec![
                        (Some(1_200), Some(600), 600, 74_906),
                        (Some(401), Some(200), 201, 25_094)
                    ]
                );
                assert_eq!((pv.offer, pv.delivered_wh, pv.amount), (1, 0, 0));
                assert_eq!(pv.sites[0].delivered_wh, -200);
                assert_eq!(t.flexibility_paid(), 100_000);
                // The money: nobody bid, so every site is served nothing at the midpoint,
                // 50/MWh, and its whole reading is a deviation (ST-2.4, π = 20/MWh): home
                // pays 600 Wh × 70/MWh = 42,000 and is paid 74,906; quiet pays 14,000 and is
                // paid 25,094; pv is paid 300 Wh × 30/MWh = 9,000.
                let delta = |seed| worth(&chain, seed) - worth_before[&seed];
                assert_eq!(delta(2), 74_906 - 42_000);
                assert_eq!(delta(6), 25_094 - 14_000);
                assert_eq!(delta(3), 9_000);
                // The market account pays for the flexibility (shop took nothing).
                assert_eq!(delta(MARKET), 42_000 + 14_000 - 9_000 - 100_000);
            }
            6 => {
                // Interval 4 is no baseline day for home (it was asked then): its baseline is
                // intervals 2 and 0 again, 1,200 Wh; it read 1,000, capped at 1 kW × 0.25 h
                // = 250 Wh: 200 Wh, 40,000 base units.
                assert_eq!(t.flexibility.len(), 1);
                let x = &t.flexibility[0];
                assert_eq!(x.sites[0].baseline_wh, Some(1_200));
                assert_eq!((x.delivered_wh, x.amount), (200, 40_000));
            }
            _ => assert!(t.flexibility.is_empty(), "interval {k}"),
        }
    }
    let table: FlexTable = chain.read(&StateKey::Flex(f())).unwrap();
    assert_eq!(table.requests.len(), 2);
    assert!(table.get(&id1).unwrap().offers[0].accepted);
}

/// The EV test's charger owner and its charging provider.
const DRIVER: u64 = 11;
const PROVIDER: u64 = 12;

/// [`feeder`] with two chargers of the driver at the substation: `ev`, metered, and `ev2`,
/// without a meter; the driver and the market account hold 5 tokens each.
fn ev_feeder() -> Chain {
    let mut chain = feeder();
    let dso = chain.dso.clone();
    let charger = |id: &str| SiteSpec {
        site: s(id),
        node: NodeId::new("sub").unwrap(),
        owner: account(&key(DRIVER)),
        priority: 0,
        import_limit: None,
        export_limit: None,
    };
    accepted(&chain.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f(),
            sites: vec![charger("ev"), charger("ev2")],
        }),
    ));
    accepted(&chain.send(
        &dso,
        Payload::MeterRegister(MeterRegister {
            feeder: f(),
            site: s("ev"),
            meter: account(&key(meter(DRIVER))),
        }),
    ));
    for seed in [DRIVER, MARKET] {
        accepted(&chain.send(
            &dso,
            Payload::Mint {
                to: account(&key(seed)),
                amount: Amount(5 * UNIT as u64),
            },
        ));
    }
    chain
}

/// `energy` Wh on `ev` in intervals `from` to `deadline`: slow 3.7 kW at 250/MWh, fast 11 kW
/// at 400/MWh.
fn ev_terms(from: u64, deadline: u64, energy: i64, choice: EvChoice, salt: u64) -> EvTerms {
    EvTerms {
        feeder: f(),
        site: s("ev"),
        provider: account(&key(PROVIDER)),
        energy_wh: energy,
        from: Interval(from),
        deadline: Interval(deadline),
        slow: EvOption {
            power: Watts(3_700),
            price: Price(250 * UNIT),
        },
        fast: EvOption {
            power: Watts(11_000),
            price: Price(400 * UNIT),
        },
        choice,
        salt,
    }
}

fn enter_ev(
    chain: &mut Chain,
    sender: u64,
    consenting: u64,
    terms: &EvTerms,
) -> bcte_types::Outcome {
    let consent = terms.sign(&chain.chain_id, &key(consenting));
    chain.send(
        &key(sender),
        Payload::ContractEv(ContractEv {
            terms: terms.clone(),
            consent,
        }),
    )
}

#[test]
fn an_ev_contract_bids_for_its_charger_and_the_owner_pays_the_option_price_for_what_came() {
    let mut chain = ev_feeder();
    let fast = ev_terms(0, 3, 6_000, EvChoice::Fast, 0);
    let slow = ev_terms(4, 7, 3_000, EvChoice::Slow, 0);
    let short = ev_terms(9, 10, 900, EvChoice::Slow, 0);
    // CT-3.2: both parties sign, two of them; the options are sane, the energy fits the
    // chosen option's power, the charger has a meter.
    let r = rejected(&enter_ev(&mut chain, DRIVER, DRIVER, &fast));
    assert!(
        r.to_string()
            .contains("consent: not the signature of the other party"),
        "{r}"
    );
    assert!(matches!(
        rejected(&enter_ev(&mut chain, 4, PROVIDER, &fast)),
        RejectReason::NotSiteOwner { .. }
    ));
    let own = EvTerms {
        provider: account(&key(DRIVER)),
        ..fast.clone()
    };
    let r = rejected(&enter_ev(&mut chain, DRIVER, DRIVER, &own));
    assert!(r.to_string().contains("needs two parties"), "{r}");
    // 3.7 kW for two quarter-hours is 1,850 Wh, short of 3,000.
    let r = rejected(&enter_ev(
        &mut chain,
        DRIVER,
        PROVIDER,
        &ev_terms(4, 5, 3_000, EvChoice::Slow, 0),
    ));
    assert!(
        r.to_string()
            .contains("cannot be delivered in 2 intervals at the slow option's 3700 W"),
        "{r}"
    );
    let r = rejected(&enter_ev(
        &mut chain,
        DRIVER,
        PROVIDER,
        &EvTerms {
            site: s("ev2"),
            ..fast.clone()
        },
    ));
    assert!(r.to_string().contains("ev2 has no meter"), "{r}");
    let backwards = EvTerms {
        fast: fast.slow,
        slow: fast.fast,
        ..fast.clone()
    };
    let r = rejected(&enter_ev(&mut chain, DRIVER, PROVIDER, &backwards));
    assert!(r.to_string().contains("fast.power"), "{r}");
    // The provider may send it as well as the driver.
    accepted(&enter_ev(&mut chain, PROVIDER, DRIVER, &fast));
    let r = rejected(&enter_ev(&mut chain, DRIVER, PROVIDER, &fast));
    assert!(r.to_string().contains("already entered"), "{r}");
    // CT-3.3: one contract at a time bids for a charger.
    let r = rejected(&enter_ev(
        &mut chain,
        DRIVER,
        PROVIDER,
        &ev_terms(3, 6, 3_000, EvChoice::Slow, 1),
    ));
    assert!(r.to_string().contains("overlaps EV contract"), "{r}");
    accepted(&enter_ev(&mut chain, DRIVER, PROVIDER, &slow));
    // A bid the owner made for interval 10 before the contract covered it goes when the
    // contract, with nothing left to buy there, places none (CT-3.3).
    let bid_10 = Payload::Bids(Bids {
        feeder: f(),
        bids: vec![BidEntry {
            site: s("ev"),
            interval: Interval(10),
            curve: points(&[(-500, 2_000), (3_000, 2_000)]),
        }],
    });
    accepted(&chain.send(&key(DRIVER), bid_10));
    accepted(&enter_ev(&mut chain, DRIVER, PROVIDER, &short));
    // CT-3.3: the contract is the charger's only bidder in its intervals; after them the
    // owner bids again.
    let ev_bid = |k: u64| {
        Payload::Bids(Bids {
            feeder: f(),
            bids: vec![BidEntry {
                site: s("ev"),
                interval: Interval(k),
                curve: points(&[(-500, 1_000), (3_000, 1_000)]),
            }],
        })
    };
    let r = rejected(&chain.send(&key(DRIVER), ev_bid(1)));
    assert!(r.to_string().contains("bid for by its EV contract"), "{r}");
    accepted(&chain.send(&key(DRIVER), ev_bid(8)));
    // A price spike: interval 6 imports at 300/MWh, above the slow option's 250.
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::UpstreamPrices(bcte_types::market::UpstreamPrices {
            feeder: f(),
            from: Interval(6),
            prices: vec![bcte_types::market::UpstreamPrice {
                import_price: Price(300 * UNIT),
                export_price: Price(20 * UNIT),
            }],
        }),
    ));
    let (fast_id, slow_id, short_id) = (
        fast.id(&chain.chain_id),
        slow.id(&chain.chain_id),
        short.id(&chain.chain_id),
    );

    // Worked by hand (CT-3.4, Δ = 900 s, R = remaining Wh × 3.6e6 W·ms, nobody else bids, so
    // the charger buys upstream at 80/MWh when its price reaches that):
    // fast, 6,000 Wh over 0–3 at 11 kW, 400/MWh:
    //   0: all 11 kW at 400 × 2.16e10 / (4 × 11,000 × 9e5) = 218.18/MWh: served, 2,750 Wh;
    //      it reads 2,700;
    //   1: 3,250 Wh left (interval 0 not yet settled), at 157.58: served, 2,750 Wh;
    //   2: 6,000 − 2,700 read − 2,750 scheduled = 550 Wh: 2.2 kW at 40/MWh: not served;
    //   3: the last interval: the 550 Wh must come, 2.2 kW at 400: served, 550 Wh.
    // slow, 3,000 Wh over 4–7 at 3.7 kW, 250/MWh:
    //   4: must ⌈(3,000 − 3 × 925) × 3.6e6 / 9e5⌉ = 900 W at 250, the other 2,800 W at
    //      250 × 1.08e10 / (4 × 3,700 × 9e5) = 202.70: served 3.7 kW, 925 Wh;
    //   5: 2,075 Wh left: 900 W must, served 3.7 kW, 925 Wh;
    //   6: 1,150 Wh left: 900 W at 250, 2,800 W at 155.41; upstream asks 300: not served;
    //   7: the last: 4,600 W would be needed, 3,700 can be had at 250: served, 925 Wh.
    // 8: the owner's own bid, 1 kW: 250 Wh.
    // short, 900 Wh over 9–10 slow:
    //   9: 3.6 kW would finish it, none of it must come now: all at
    //      250 × 3.24e9 / (2 × 3,700 × 9e5) = 121.62: served, 900 Wh;
    //  10: nothing is left, no bid: the charger has no result, its reading is waited for.
    let expected_served = [
        11_000, 11_000, 0, 2_200, 3_700, 3_700, 0, 3_700, 1_000, 3_600, 0,
    ];
    let reads = [2_700, 2_750, 0, 550, 925, 925, 0, 925, 250, 900, 0];
    let mut before = std::collections::BTreeMap::new();
    for k in 0..=10u64 {
        if chain.time_ms < gate(k) {
            chain.block_at(gate(k), vec![]);
        }
        let result = chain.site_result(&f(), Interval(k), &s("ev"));
        assert_eq!(result.is_none(), k == 10, "interval {k}");
        assert_eq!(
            result.map_or(0, |r| r.served().0),
            expected_served[k as usize],
            "interval {k}"
        );
        if k == 2 || k == 10 {
            // CT-4.1: the charger's reading is waited for though it was served nothing, or
            // had no bid at all.
            let idx: SettleIndex = chain.read(&StateKey::Settling(f(), Interval(k))).unwrap();
            assert_eq!(idx.missing, 1);
        }
        if k == 6 {
            let bid = chain.bid_of(&f(), Interval(6), &s("ev")).unwrap();
            assert_eq!(bid.bidder, account(&key(DRIVER)));
            let CurveSpec::Components { base, steps, .. } = bid.curve else {
                panic!("a contract bids in component form")
            };
            assert_eq!(base, Watts(3_700));
            assert_eq!(
                steps
                    .iter()
                    .map(|x| (x.price.0, x.drop.0))
                    .collect::<Vec<_>>(),
                vec![(155_405_405, 2_800), (250 * UNIT, 900)]
            );
        }
        chain.block_at(end(k), vec![]);
        for seed in [DRIVER, PROVIDER, MARKET] {
            before.insert(seed, worth(&chain, seed));
        }
        let tx = chain.sign(&key(meter(DRIVER)), reading("ev", k, reads[k as usize]));
        chain.block(1, vec![tx]);
        chain.block(1, vec![]);
        let t: IntervalSettlement = chain
            .read(&StateKey::Settlement(f(), Interval(k)))
            .unwrap_or_else(|| panic!("interval {k} settled"));
        let delta = |seed| worth(&chain, seed) - before[&seed];
        match k {
            3 => {
                // CT-4: 6,000 Wh delivered × 400/MWh = 2,400,000; the market charged
                // 11 kW × 0.25 h × 80/MWh = 220,000 in intervals 0 and 1, less interval 0's
                // 50 Wh not taken refunded at 80 − 20 = 60/MWh (3,000), and 44,000 in
                // interval 3: 481,000. The driver pays the provider the 1,919,000 between.
                assert_eq!(t.ev.len(), 1);
                let x = &t.ev[0];
                assert_eq!(
                    (x.id, x.site.clone(), x.provider),
                    (fast_id, s("ev"), account(&key(PROVIDER)))
                );
                assert_eq!(
                    (
                        x.delivered_wh,
                        x.shortfall_wh,
                        x.price,
                        x.charge,
                        x.market_charges,
                        x.difference
                    ),
                    (6_000, 0, Price(400 * UNIT), 2_400_000, 481_000, 1_919_000)
                );
                assert_eq!(delta(DRIVER), -44_000 - 1_919_000);
                assert_eq!(delta(PROVIDER), 1_919_000);
            }
            7 => {
                // 2,775 Wh came of 3,000: the 225 Wh short are not charged. 2,775 Wh ×
                // 250/MWh = 693,750 against the market's 3 × 74,000 = 222,000: 471,750.
                assert_eq!(t.ev.len(), 1);
                let x = &t.ev[0];
                assert_eq!(x.id, slow_id);
                assert_eq!(
                    (
                        x.delivered_wh,
                        x.shortfall_wh,
                        x.price,
                        x.charge,
                        x.market_charges,
                        x.difference
                    ),
                    (2_775, 225, Price(250 * UNIT), 693_750, 222_000, 471_750)
                );
                assert_eq!(delta(DRIVER), -74_000 - 471_750);
                assert_eq!(delta(PROVIDER), 471_750);
            }
            10 => {
                // 900 Wh × 250/MWh = 225,000 against the market's 3.6 kW × 0.25 h × 80/MWh
                // = 72,000: 153,000, settled with the reading of an interval without a bid.
                assert_eq!(t.ev.len(), 1);
                let x = &t.ev[0];
                assert_eq!(x.id, short_id);
                assert_eq!(
                    (
                        x.delivered_wh,
                        x.shortfall_wh,
                        x.charge,
                        x.market_charges,
                        x.difference
                    ),
                    (900, 0, 225_000, 72_000, 153_000)
                );
                assert_eq!(delta(DRIVER), -153_000);
                assert_eq!(delta(PROVIDER), 153_000);
            }
            _ => {
                assert!(t.ev.is_empty(), "interval {k}");
                assert_eq!(delta(PROVIDER), 0, "interval {k}");
            }
        }
        // The difference passes through the market account: it keeps the market charges only.
        let market_charges = [
            217_000, 220_000, 0, 44_000, 74_000, 74_000, 0, 74_000, 20_000, 72_000, 0,
        ][k as usize];
        assert_eq!(
            t.energy_charges + t.imbalance_charges,
            market_charges,
            "interval {k}"
        );
        assert_eq!(
            delta(MARKET),
            market_charges + t.upstream_charge,
            "interval {k}"
        );
    }
    // Over both contracts the driver paid exactly its options' prices for what came.
    assert_eq!(worth(&chain, PROVIDER), 1_919_000 + 471_750 + 153_000);
    let table: ContractTable = chain.read(&StateKey::Contracts(f())).unwrap();
    let progress: Vec<_> = table
        .ev
        .iter()
        .map(|e| (e.id, e.delivered_wh, e.remaining_wh()))
        .collect();
    let mut want = vec![
        (fast_id, 6_000, 0),
        (slow_id, 2_775, 225),
        (short_id, 900, 0),
    ];
    want.sort();
    assert_eq!(progress, want);
    // Interval 8 is the owner's again: its own bid stands.
    let bid = chain.bid_of(&f(), Interval(8), &s("ev")).unwrap();
    assert_eq!(bid.bidder, account(&key(DRIVER)));
    assert!(
        matches!(bid.curve, CurveSpec::Components { base: Watts(1_000), ref steps, .. } if steps.is_empty())
    );
}

#[test]
fn a_consent_is_checked_against_the_partys_current_key_and_a_revoked_party_consents_nothing() {
    use bcte_types::role::{AccountRevoke, KeyRotate};
    let mut chain = feeder();
    // pv's owner (3) rotates its key (AC-4.1): its consent with the replaced key no longer
    // counts, with the new one it does (AC-4.2).
    let new = key(7_777);
    accepted(&chain.send(
        &key(3),
        Payload::KeyRotate(KeyRotate {
            new_key: account(&new),
        }),
    ));
    let terms = p2p("pv", "home", 2_000, 0, 3, 60, 0);
    let send = |chain: &mut Chain, consent| {
        chain.send(
            &key(2),
            Payload::ContractP2p(ContractP2p {
                terms: terms.clone(),
                consent,
            }),
        )
    };
    let old = terms.sign(&chain.chain_id, &key(3));
    let r = rejected(&send(&mut chain, old));
    assert!(r.to_string().contains("consent: not the signature"), "{r}");
    let fresh = terms.sign(&chain.chain_id, &new);
    accepted(&send(&mut chain, fresh));
    // The registrar (the DSO here) revokes shop's owner (4): its consent counts for nothing
    // (AC-5.1), though it signed while a member.
    let shop = p2p("shop", "home", 1_000, 0, 3, 60, 1);
    let consent = shop.sign(&chain.chain_id, &key(4));
    let dso = chain.dso.clone();
    accepted(&chain.send(
        &dso,
        Payload::AccountRevoke(AccountRevoke {
            accounts: vec![account(&key(4))],
        }),
    ));
    let r = rejected(&chain.send(
        &key(2),
        Payload::ContractP2p(ContractP2p {
            terms: shop,
            consent,
        }),
    ));
    assert_eq!(
        r,
        RejectReason::Revoked {
            account: account(&key(4))
        }
    );
}
