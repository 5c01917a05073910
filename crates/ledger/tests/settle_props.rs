//! Settlement properties over random feeders, bids, funds and readings
//! (docs/settlement-rules.md): every metered or allocated site is settled exactly as ST-2.2 to
//! ST-2.4 say, recomputed here from the interval's published result with this file's own
//! arithmetic; every owner's balance and position together move by exactly what it owes
//! (ST-2.5, ST-5), a P2P contract's difference included (CT-2.1); no token is created or
//! destroyed (LR-4); and the congestion rent and residue are what ST-2.7 says.

mod common;

use bcte_ledger::{
    AccountState, StateKey, book_bucket,
    market_state::{IntervalResult, SiteTable},
    settle_state::{IntervalSettlement, SettledBucket},
};
use bcte_types::contract::{ContractP2p, P2pTerms};
use bcte_types::{
    Amount, CurveSpec, FeederId, Interval, MarketConfig, NodeId, NodeSpec, Payload, Price, SiteId,
    SiteSpec, WattHours, Watts,
    market::{BidEntry, Bids, FeederRegister, SitesRegister},
    meter::{MeterRegister, Reading},
};
use common::{Chain, GENESIS_MS, accepted, account, key};
use proptest::prelude::*;

const UNIT: i64 = 1_000_000;
const DT: u64 = 900_000;
const EPOCH: u64 = GENESIS_MS + 1_000_000;
const PENALTY: i64 = 20 * UNIT;
const MARKET: u64 = 7;
const UPSTREAM: u64 = 8;

/// One site of a random case.
#[derive(Clone, Debug)]
struct SiteCase {
    /// 0: at the substation, 1: on the street behind the limit.
    node: usize,
    /// Owner seed, 2 to 4.
    owner: u64,
    /// Its bid: power (W, negative: generation) up to a price (currency/MWh), then nothing.
    bid: Option<(i64, i64)>,
    /// Metered, and if so its reading (Wh) if it reads.
    meter: Option<Option<i64>>,
}

fn site_case() -> impl Strategy<Value = SiteCase> {
    (
        0usize..2,
        2u64..5,
        proptest::option::weighted(0.8, (-6_000i64..8_000, 0i64..300)),
        proptest::option::weighted(0.7, proptest::option::weighted(0.8, -3_000i64..3_000)),
    )
        .prop_map(|(node, owner, bid, meter)| SiteCase {
            node,
            owner,
            bid,
            meter,
        })
}

/// Rounds `num / den` half away from zero (den > 0): this file's own, not the ledger's.
fn round(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

fn state(chain: &Chain, seed: u64) -> AccountState {
    chain
        .read::<AccountState>(&StateKey::Account(account(&key(seed))))
        .unwrap_or_default()
}

/// A P2P contract of a random case: seller and buyer site indexes, power (W) and price.
type ContractCase = Option<(usize, usize, i64, i64)>;

fn run_case(
    sites: &[SiteCase],
    street_limit: i64,
    funds: [u64; 3],
    contract: ContractCase,
) -> Result<(), TestCaseError> {
    let f = FeederId::new("f").unwrap();
    let mut chain = Chain::new(1);
    let dso = chain.dso.clone();
    let node = |id: &str, parent: Option<&str>, import: Option<i64>| NodeSpec {
        id: NodeId::new(id).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        import_limit: import.map(Watts),
        export_limit: import.map(Watts),
    };
    accepted(&chain.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f.clone(),
            epoch_ms: Some(EPOCH),
            config: MarketConfig {
                interval_ms: DT,
                gate_lead_ms: 60_000,
                import_price: Price(80 * UNIT),
                export_price: Price(20 * UNIT),
                imbalance_penalty: Price(PENALTY),
                settlement_delay_ms: 1_800_000,
                reading_window_ms: 3_600_000,
                ..MarketConfig::DEFAULT
            },
            nodes: vec![
                node("sub", None, None),
                node("t1", Some("sub"), Some(street_limit)),
            ],
            market_account: Some(account(&key(MARKET))),
            upstream_account: Some(account(&key(UPSTREAM))),
        }),
    ));
    let ids: Vec<SiteId> = (0..sites.len())
        .map(|i| SiteId::new(format!("s{i}")).unwrap())
        .collect();
    accepted(
        &chain.send(
            &dso,
            Payload::SitesRegister(SitesRegister {
                feeder: f.clone(),
                sites: sites
                    .iter()
                    .zip(&ids)
                    .map(|(c, id)| SiteSpec {
                        site: id.clone(),
                        node: NodeId::new(["sub", "t1"][c.node]).unwrap(),
                        owner: account(&key(c.owner)),
                        priority: 0,
                        import_limit: None,
                        export_limit: None,
                    })
                    .collect(),
            }),
        ),
    );
    for (i, c) in sites.iter().enumerate() {
        if c.meter.is_some() {
            accepted(&chain.send(
                &dso,
                Payload::MeterRegister(MeterRegister {
                    feeder: f.clone(),
                    site: ids[i].clone(),
                    meter: account(&key(100 + i as u64)),
                }),
            ));
        }
    }
    for (owner, amount) in (2u64..5).zip(funds) {
        if amount > 0 {
            accepted(&chain.send(
                &dso,
                Payload::Mint {
                    to: account(&key(owner)),
                    amount: Amount(amount),
                },
            ));
        }
    }
    for (i, c) in sites.iter().enumerate() {
        if let Some((w, p)) = c.bid {
            // Demand of `w` up to `p`; generation of `-w` from `p` on (powers never rise).
            let (low, high) = if w >= 0 { (w, 0) } else { (0, w) };
            let curve = CurveSpec::Points(vec![
                (Price(-500 * UNIT), Watts(low)),
                (Price(p * UNIT), Watts(low)),
                (Price(p * UNIT), Watts(high)),
                (Price(3_000 * UNIT), Watts(high)),
            ]);
            accepted(&chain.send(
                &key(c.owner),
                Payload::Bids(Bids {
                    feeder: f.clone(),
                    bids: vec![BidEntry {
                        site: ids[i].clone(),
                        interval: Interval(0),
                        curve: Some(curve),
                    }],
                }),
            ));
        }
    }
    // A contract between two sites of two owners, if the case has one (CT-1).
    let contract = contract
        .map(|(a, b, w, c)| (a % sites.len(), b % sites.len(), w, c))
        .filter(|(a, b, _, _)| sites[*a].owner != sites[*b].owner);
    if let Some((seller, buyer, power, price)) = contract {
        let terms = P2pTerms {
            feeder: f.clone(),
            seller: ids[seller].clone(),
            buyer: ids[buyer].clone(),
            power: Watts(power),
            from: Interval(0),
            to: Interval(0),
            price: Price(price * UNIT),
            salt: 0,
        };
        let consent = terms.sign(&chain.chain_id, &key(sites[seller].owner));
        accepted(&chain.send(
            &key(sites[buyer].owner),
            Payload::ContractP2p(ContractP2p { terms, consent }),
        ));
    }
    chain.block_at(EPOCH - 60_000, vec![]);
    let result: IntervalResult = chain
        .read(&StateKey::Result(f.clone(), Interval(0)))
        .unwrap();
    // Before the interval ends.
    let accounts = [1u64, 2, 3, 4, MARKET, UPSTREAM];
    let before: Vec<AccountState> = accounts.iter().map(|&a| state(&chain, a)).collect();
    // Every reading in the block at the interval's end: the settlement that block may make
    // (ST-2.1) sees them all.
    let mut readings = Vec::new();
    for (i, c) in sites.iter().enumerate() {
        if let Some(Some(wh)) = c.meter {
            readings.push(chain.sign(
                &key(100 + i as u64),
                Payload::Reading(Reading {
                    feeder: f.clone(),
                    site: ids[i].clone(),
                    interval: Interval(0),
                    wh: WattHours(wh),
                }),
            ));
        }
    }
    let x = chain.block_at(EPOCH + DT, readings);
    for r in &x.receipts {
        accepted(&r.outcome);
    }
    // Past the deadline: settled, whoever read.
    chain.block_at(EPOCH + DT + 1_800_000 + 1, vec![]);
    chain.block(1, vec![]);
    let t: IntervalSettlement = chain
        .read(&StateKey::Settlement(f.clone(), Interval(0)))
        .expect("interval 0 is settled");
    let after: Vec<AccountState> = accounts.iter().map(|&a| state(&chain, a)).collect();
    let table: SiteTable = chain.read(&StateKey::Sites(f.clone())).unwrap();

    // ST-2.2 to ST-2.4, recomputed.
    let dt = i128::from(DT);
    let mut owed = [0i128; 5];
    let (mut settled, mut energy_sum) = (0u32, 0i128);
    for (i, c) in sites.iter().enumerate() {
        let r = chain.site_result(&f, Interval(0), &ids[i]);
        let got = chain
            .read::<SettledBucket>(&StateKey::Settled(
                f.clone(),
                Interval(0),
                book_bucket(&ids[i]),
            ))
            .and_then(|b| b.get(&ids[i]).copied());
        if r.is_none() && c.meter.is_none() {
            prop_assert!(
                got.is_none(),
                "site {i} neither metered nor allocated was settled"
            );
            continue;
        }
        let got = got.ok_or_else(|| TestCaseError::fail(format!("site {i} not settled")))?;
        settled += 1;
        let (a, p) = match r {
            Some(r) => (r.allocation.0 - r.shed.0 + r.spilled.0, r.price.0),
            None => (0, result.prices[table.sites[i].node as usize].0),
        };
        let e = round(i128::from(a) * dt, 3_600_000);
        let energy = round(i128::from(a) * dt * i128::from(p), 3_600_000 * 1_000_000);
        let m = c.meter.flatten();
        let d = m.map_or(0, |m| i128::from(m) - e);
        let rate = if d > 0 { p + PENALTY } else { p - PENALTY };
        let imbalance = round(d * i128::from(rate), 1_000_000);
        prop_assert_eq!(
            (
                got.scheduled_wh,
                got.metered_wh,
                got.deviation_wh,
                got.energy_charge,
                got.imbalance_charge
            ),
            (e as i64, m, d as i64, energy as i64, imbalance as i64),
            "site {} ({:?})",
            i,
            c
        );
        owed[c.owner as usize] += energy + imbalance;
        energy_sum += energy;
    }
    prop_assert_eq!(t.sites, settled);
    // CT-2.1, recomputed: P × Δ × (c − p_seller), buyer to seller.
    match contract {
        Some((seller, buyer, power, price)) => {
            let p_s = result.prices[table.sites[seller].node as usize].0;
            let diff = round(
                i128::from(power) * dt * (i128::from(price * UNIT) - i128::from(p_s)),
                3_600_000 * 1_000_000,
            );
            prop_assert_eq!(t.contracts.len(), 1);
            prop_assert_eq!(i128::from(t.contracts[0].amount), diff);
            owed[sites[buyer].owner as usize] += diff;
            owed[sites[seller].owner as usize] -= diff;
        }
        None => prop_assert!(t.contracts.is_empty()),
    }

    // ST-2.5, ST-5: each owner's balance and position move by exactly what it owes.
    for owner in 2..5usize {
        let (b, a) = (&before[owner - 1], &after[owner - 1]);
        let market = account(&key(MARKET));
        let moved = i128::from(a.balance.0) - i128::from(b.balance.0)
            + i128::from(a.position(&market))
            - i128::from(b.position(&market));
        prop_assert_eq!(moved, -owed[owner], "owner {}", owner);
        prop_assert!(a.balance.0 <= b.balance.0 || owed[owner] <= 0);
    }
    // LR-4: settlement moves tokens, it makes none.
    let total = |v: &[AccountState]| v.iter().map(|s| u128::from(s.balance.0)).sum::<u128>();
    prop_assert_eq!(total(&before), total(&after));
    // ST-2.6, ST-2.7: the upstream at the root's price, the rent and the residue.
    let up = i128::from(result.upstream.0);
    let root_price = i128::from(result.prices[0].0);
    let upstream_charge = round(up * dt * root_price, 3_600_000 * 1_000_000);
    prop_assert_eq!(i128::from(t.upstream_charge), upstream_charge);
    let rent_num = i128::from(result.flows[1].0)
        * (i128::from(result.prices[1].0) - i128::from(result.prices[0].0));
    let rent = round(rent_num * dt, 3_600_000 * 1_000_000);
    prop_assert_eq!(i128::from(t.congestion_rent), rent);
    prop_assert_eq!(i128::from(t.residue), energy_sum + upstream_charge - rent);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn settlement_follows_the_rules_and_conserves_money(
        sites in proptest::collection::vec(site_case(), 1..8),
        street_limit in 500i64..10_000,
        funds in [0u64..300_000, 0u64..300_000, 0u64..300_000],
        contract in proptest::option::of((0usize..8, 0usize..8, 1i64..5_000, -100i64..300)),
    ) {
        run_case(&sites, street_limit, funds, contract)?;
    }
}
