//! The heaviest blocks of the market: a gate closure that clears 10,000 site bids (mixed
//! six-point curves) on a feeder of about 2,500 nodes, in a state of over a million keys, and
//! the settlement of that interval (10,000 metered sites, each with its own owner, readings from
//! one head-end batch). Timed: the whole execution of each block, as a validator runs it
//! (staged reads, clearing or settlement, writes and the state root).
//!
//! The reference, timed in the same run: the engine alone clearing the same market (the same
//! nodes, the sites' own edges, the upstream grid's bid and every curve), built here from the
//! inputs as MC-7.2 describes, and checked to reach the chain's welfare. The block's cost over
//! the reference is what being on the chain costs.
//!
//! `cargo bench -p bcte-ledger --bench gate` (figures in docs/BENCHMARKS.md). Building the state
//! takes a minute and about 2 GiB of memory; it is not timed.

use bcte_ledger::{BlockInfo, MemTree, StateKey, exec, run, tree};
use bcte_types::{
    AccountId, Allocation, Amount, ChainId, CurveSpec, FeederId, Genesis, Hash, Height, Interval,
    MarketConfig, NodeId, NodeSpec, Payload, Price, SiteId, SiteSpec, Tx, TxBody, Validator, Watts,
    market::{BIDS_PER_TX_MAX, BidEntry, Bids, FeederRegister, SITES_PER_TX_MAX, SitesRegister},
};
use commonware_codec::EncodeSize;
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::{hint::black_box, time::Duration};

const SITES: usize = 10_000;
/// Nodes below the root: 50, then 10 each (500), then 4 each (2,000): 2,551 in all.
const LEVELS: [usize; 3] = [50, 10, 4];
/// Keys in the state besides the market's: one million accounts.
const ACCOUNTS: usize = 1_000_000;
const GENESIS_MS: u64 = 1_700_000_000_000;
const UNIT: i64 = 1_000_000;

fn chain() -> ChainId {
    ChainId::new("bench").unwrap()
}

/// A household-like six-point curve: a sloped load with a step, a battery's charge and
/// discharge, PV with a curtailment price.
fn curve(rng: &mut StdRng) -> CurveSpec {
    let p = |x: i64| Price(x * UNIT);
    let w = |x: i64| Watts(x);
    let pts = match rng.random_range(0..3) {
        0 => {
            let base = rng.random_range(2_000..8_000);
            let a = rng.random_range(0..60);
            vec![
                (p(-50), w(base)),
                (p(a), w(base)),
                (p(a + 20), w(base / 2)),
                (p(a + 20), w(base / 3)),
                (p(a + 80), w(300)),
                (p(3_000), w(300)),
            ]
        }
        1 => {
            let power = rng.random_range(3_000..6_000);
            let lo = rng.random_range(10..50);
            let hi = lo + rng.random_range(20..80);
            vec![
                (p(-50), w(power)),
                (p(lo), w(power)),
                (p(lo), w(0)),
                (p(hi), w(0)),
                (p(hi), w(-power)),
                (p(3_000), w(-power)),
            ]
        }
        _ => {
            let pv = rng.random_range(1_000..9_000);
            let cut = rng.random_range(-40..0);
            vec![
                (p(-500), w(0)),
                (p(cut), w(0)),
                (p(cut), w(-pv / 2)),
                (p(cut + 10), w(-pv)),
                (p(100), w(-pv)),
                (p(3_000), w(-pv)),
            ]
        }
    };
    CurveSpec::Points(pts)
}

struct Fixture {
    tree: MemTree,
    height: Height,
    time_ms: u64,
    gate_ms: u64,
    /// The same interval's market for the engine alone.
    reference: Option<bcte_market::Market>,
    /// Transactions of 20,000 bids for interval 1, by the sites' aggregator.
    bid_block: Vec<Tx>,
    /// The DSO's next nonce.
    dso_nonce: u64,
}

fn apply(f: &mut Fixture, time_ms: u64, txs: Vec<Tx>) {
    let info = BlockInfo {
        height: Height(f.height.0 + 1),
        timestamp_ms: time_ms,
        parent: Hash::from([0; 32]),
    };
    let executed = run(&f.tree, info, &txs).expect("execution");
    assert!(
        executed
            .execution
            .receipts
            .iter()
            .all(|r| r.outcome == bcte_types::Outcome::Accepted),
        "setup transactions are accepted"
    );
    f.tree.apply(&executed.batch);
    f.height = info.height;
    f.time_ms = time_ms;
}

fn fixture() -> Fixture {
    let dso = PrivateKey::from_seed(1);
    let dso_account = AccountId::from_public_key(&dso.public_key());
    // The aggregator every site delegates its bidding to; each site has its own owner.
    let owner = PrivateKey::from_seed(2);
    let owner_account = AccountId::from_public_key(&owner.public_key());
    let owners: Vec<PrivateKey> = (0..SITES as u64)
        .map(|i| PrivateKey::from_seed(10_000 + i))
        .collect();
    // A million accounts, in the genesis state (their keys need not be real public keys).
    let mut allocations: Vec<Allocation> = (0..ACCOUNTS as u64)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            id[31] = 0xaa;
            Allocation {
                account: AccountId(id),
                amount: Amount(1),
                roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
            }
        })
        .collect();
    allocations.push(Allocation {
        account: dso_account,
        amount: Amount(1),
        roles: bcte_types::Roles::NONE,
    });
    for o in &owners {
        allocations.push(Allocation {
            account: AccountId::from_public_key(&o.public_key()),
            amount: Amount(1_000_000_000),
            roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
        });
    }
    let genesis = Genesis {
        chain_id: chain(),
        genesis_time_ms: GENESIS_MS,
        validators: vec![Validator {
            name: "v".into(),
            public_key: dso_account,
        }],
        authority: dso_account,
        registrar: None,
        allocations: Vec::new(),
        market_clock_speed: 1,
        currency: None,
    };
    let g = exec::genesis(&genesis).unwrap();
    let mut tree = MemTree::new();
    tree.apply(&g.batch);
    // The accounts are written at height 1 directly (a genesis allows at most 100,000).
    let writes: tree::WriteSet = allocations
        .iter()
        .map(|a| {
            let roles = if a.account == dso_account {
                bcte_types::Roles::of(&[bcte_types::Role::Dso, bcte_types::Role::Registrar])
            } else {
                a.roles
            };
            let state = bcte_ledger::AccountState {
                balance: a.amount,
                roles,
                ..Default::default()
            };
            (
                StateKey::Account(a.account),
                Some(bcte_ledger::state::encode_value(&state)),
            )
        })
        .collect();
    let (_, batch) = tree::commit(&tree, &writes, Height(1)).unwrap();
    tree.apply(&batch);
    let mut f = Fixture {
        tree,
        height: Height(1),
        time_ms: GENESIS_MS + 1,
        gate_ms: 0,
        reference: None,
        bid_block: Vec::new(),
        dso_nonce: 0,
    };

    // The feeder: a root and three levels, 2,551 nodes, limits loose enough to clear.
    let mut nodes = vec![NodeSpec {
        id: NodeId::new("root").unwrap(),
        parent: None,
        import_limit: None,
        export_limit: None,
    }];
    let mut level = vec!["root".to_owned()];
    for (depth, fanout) in LEVELS.iter().enumerate() {
        let mut next = Vec::new();
        for parent in &level {
            for c in 0..*fanout {
                let id = format!("{parent}.{depth}{c}");
                nodes.push(NodeSpec {
                    id: NodeId::new(&id).unwrap(),
                    parent: Some(NodeId::new(parent).unwrap()),
                    import_limit: Some(Watts(2_000_000 / (depth as i64 + 1))),
                    export_limit: Some(Watts(2_000_000 / (depth as i64 + 1))),
                });
                next.push(id);
            }
        }
        level = next;
    }
    let leaves = level;
    let feeder = FeederId::new("bench").unwrap();
    let config = MarketConfig {
        interval_ms: 900_000,
        gate_lead_ms: 300_000,
        import_price: Price(80 * UNIT),
        export_price: Price(20 * UNIT),
        import_limit: Watts(100_000_000),
        export_limit: Watts(100_000_000),
        alert_import_limit: Watts(10_000_000),
        ..MarketConfig::DEFAULT
    };
    let epoch = GENESIS_MS + 3_600_000;
    f.gate_ms = epoch - config.gate_lead_ms;
    let mut nonce = 0;
    let sign = |key: &PrivateKey, nonce: &mut u64, payload: Payload| {
        let tx = Tx::sign(
            TxBody {
                chain_id: chain(),
                sender: AccountId::from_public_key(&key.public_key()),
                signer: None,
                nonce: *nonce,
                payload,
            },
            key,
        );
        *nonce += 1;
        tx
    };
    let register = sign(
        &dso,
        &mut nonce,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder.clone(),
            epoch_ms: Some(epoch),
            config,
            nodes: nodes.clone(),
            market_account: None,
            upstream_account: None,
        }),
    );
    apply(&mut f, GENESIS_MS + 2, vec![register]);
    let sites: Vec<SiteSpec> = (0..SITES)
        .map(|i| SiteSpec {
            site: SiteId::new(format!("site-{i}")).unwrap(),
            node: NodeId::new(&leaves[i % leaves.len()]).unwrap(),
            owner: AccountId::from_public_key(&owners[i].public_key()),
            priority: (i % 8) as u8,
            import_limit: (i % 10 == 0).then_some(Watts(7_000)),
            export_limit: (i % 10 == 0).then_some(Watts(7_000)),
        })
        .collect();
    let txs: Vec<Tx> = sites
        .chunks(SITES_PER_TX_MAX)
        .map(|chunk| {
            sign(
                &dso,
                &mut nonce,
                Payload::SitesRegister(SitesRegister {
                    feeder: feeder.clone(),
                    sites: chunk.to_vec(),
                }),
            )
        })
        .collect();
    apply(&mut f, GENESIS_MS + 3, txs);
    // Every owner delegates to the aggregator; every site gets a meter (readings come from
    // the DSO's head-end system).
    let delegations: Vec<Tx> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| {
            sign(
                o,
                &mut 0,
                Payload::SiteDelegate(bcte_types::market::SiteDelegate {
                    feeder: feeder.clone(),
                    site: SiteId::new(format!("site-{i}")).unwrap(),
                    aggregator: owner_account,
                }),
            )
        })
        .collect();
    let mut meters: Vec<Tx> = (0..SITES as u64)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            id[31] = 0xbb;
            sign(
                &dso,
                &mut nonce,
                Payload::MeterRegister(bcte_types::meter::MeterRegister {
                    feeder: feeder.clone(),
                    site: SiteId::new(format!("site-{i}")).unwrap(),
                    meter: AccountId(id),
                }),
            )
        })
        .collect();
    meters.push(sign(
        &dso,
        &mut nonce,
        Payload::HeadEnd(bcte_types::meter::HeadEndSet {
            feeder: feeder.clone(),
            account: dso_account,
            allowed: true,
        }),
    ));
    apply(&mut f, GENESIS_MS + 4, delegations);
    apply(&mut f, GENESIS_MS + 5, meters);
    f.dso_nonce = nonce;
    let mut rng = StdRng::seed_from_u64(7);
    let bids: Vec<BidEntry> = (0..SITES)
        .map(|i| BidEntry {
            site: SiteId::new(format!("site-{i}")).unwrap(),
            interval: Interval(0),
            curve: Some(curve(&mut rng)),
        })
        .collect();
    let mut owner_nonce = 0;
    let txs: Vec<Tx> = bids
        .chunks(BIDS_PER_TX_MAX)
        .map(|chunk| {
            sign(
                &owner,
                &mut owner_nonce,
                Payload::Bids(Bids {
                    feeder: feeder.clone(),
                    bids: chunk.to_vec(),
                }),
            )
        })
        .collect();
    apply(&mut f, GENESIS_MS + 6, txs);
    f.reference = Some(reference(&nodes, &sites, &bids, &config));
    let revisions: Vec<BidEntry> = (0..2 * SITES)
        .map(|i| BidEntry {
            site: SiteId::new(format!("site-{}", i % SITES)).unwrap(),
            interval: Interval(1),
            curve: Some(curve(&mut rng)),
        })
        .collect();
    // Chunks of 4,000 never hold a site twice.
    f.bid_block = revisions
        .chunks(4_000)
        .map(|chunk| {
            sign(
                &owner,
                &mut owner_nonce,
                Payload::Bids(Bids {
                    feeder: feeder.clone(),
                    bids: chunk.to_vec(),
                }),
            )
        })
        .collect();
    f
}

/// MC-7.2's market of the interval, from the registrations and bids themselves.
fn reference(
    nodes: &[NodeSpec],
    sites: &[SiteSpec],
    bids: &[BidEntry],
    c: &MarketConfig,
) -> bcte_market::Market {
    use bcte_market::{Bid, Curve, Market, Node, Point};
    let mut market_nodes: Vec<Node> = nodes
        .iter()
        .map(|n| Node {
            id: n.id.as_str().to_owned(),
            parent: n.parent.as_ref().map(|p| p.as_str().to_owned()),
            import_limit: n.import_limit,
            export_limit: n.export_limit,
        })
        .collect();
    // MC-4.2: the upstream grid at the root, selling at the import price and buying at the
    // export price up to the limits.
    let pt = |price, power| Point { price, power };
    let upstream = Curve::from_points(&[
        pt(c.export_price, c.export_limit),
        pt(c.export_price, Watts(0)),
        pt(c.import_price, Watts(0)),
        pt(c.import_price, Watts(-c.import_limit.0)),
    ])
    .unwrap();
    let mut market_bids = vec![Bid::new("upstream", "root", upstream)];
    for (i, (site, bid)) in sites.iter().zip(bids).enumerate() {
        let CurveSpec::Points(pts) = bid.curve.as_ref().unwrap() else {
            unreachable!("the bench bids points")
        };
        let pts: Vec<Point> = pts.iter().map(|&(price, power)| pt(price, power)).collect();
        let mut node = site.node.as_str().to_owned();
        if site.import_limit.is_some() || site.export_limit.is_some() {
            let own = format!("#{i}");
            market_nodes.push(Node {
                id: own.clone(),
                parent: Some(node),
                import_limit: site.import_limit,
                export_limit: site.export_limit,
            });
            node = own;
        }
        let mut b = Bid::new(site.site.as_str(), node, Curve::from_points(&pts).unwrap());
        b.priority = site.priority;
        market_bids.push(b);
    }
    Market::new(c.price_floor, c.price_cap, market_nodes, market_bids).unwrap()
}

fn bench_gate(c: &mut Criterion) {
    eprintln!("building a state of {ACCOUNTS} accounts, {SITES} sites and their bids ...");
    let mut f = fixture();
    let info = BlockInfo {
        height: Height(f.height.0 + 1),
        timestamp_ms: f.gate_ms,
        parent: Hash::from([0; 32]),
    };
    // Check once that the block does clear the interval, with every bid.
    let executed = run(&f.tree, info, &[]).unwrap();
    let results = executed
        .execution
        .writes
        .keys()
        .filter(|k| matches!(k, StateKey::Results(..)))
        .count();
    let written = executed.execution.writes.len();
    eprintln!("the gate-closure block writes {written} keys ({results} buckets of site results)");
    assert!(
        results >= 250,
        "every site's result is written, bucket by bucket"
    );
    let reference = f.reference.as_ref().unwrap();
    let local = bcte_market::clear(reference);
    let on_chain: bcte_ledger::market_state::IntervalResult = bcte_ledger::decode_value(
        executed
            .execution
            .writes
            .iter()
            .find_map(|(k, v)| matches!(k, StateKey::Result(..)).then_some(v.as_ref().unwrap()))
            .unwrap(),
    )
    .expect("the interval's result");
    assert_eq!(
        on_chain.welfare, local.welfare.0,
        "the reference is the interval's market"
    );
    let mut g = c.benchmark_group("gate_closure");
    g.sample_size(20).measurement_time(Duration::from_secs(20));
    g.bench_function("reference_engine_alone", |b| {
        b.iter(|| black_box(bcte_market::clear(reference)))
    });
    g.sample_size(20).measurement_time(Duration::from_secs(20));
    g.bench_function("clear_10k_bids_2551_nodes_1m_keys", |b| {
        b.iter(|| black_box(run(&f.tree, info, &[]).unwrap()))
    });
    // Where the time goes: the staged reads, the pure apply (clearing included), and the
    // state root over its writes.
    let pre = bcte_ledger::read_planned(&f.tree, f.height, info, &[]).unwrap();
    g.bench_function("phase_reads", |b| {
        b.iter(|| black_box(bcte_ledger::read_planned(&f.tree, f.height, info, &[]).unwrap()))
    });
    g.bench_function("phase_apply", |b| {
        b.iter(|| black_box(bcte_ledger::apply(&pre, info, &[]).unwrap()))
    });
    let writes = bcte_ledger::apply(&pre, info, &[]).unwrap().writes;
    g.bench_function("phase_state_root", |b| {
        b.iter(|| black_box(tree::commit(&f.tree, &writes, info.height).unwrap()))
    });
    // A block of bids as an aggregator sends them: every site's bid for the next interval,
    // revised (each of 10,000 sites twice: 20,000 bids in five transactions). Not at a gate.
    let bid_info = BlockInfo {
        height: Height(f.height.0 + 1),
        timestamp_ms: f.time_ms + 1,
        parent: Hash::from([0; 32]),
    };
    let bid_block = f.bid_block.clone();
    let executed = run(&f.tree, bid_info, &bid_block).unwrap();
    assert!(
        executed
            .execution
            .receipts
            .iter()
            .all(|r| r.outcome == bcte_types::Outcome::Accepted),
        "the bids are accepted"
    );
    eprintln!(
        "the block of 20,000 bids writes {} keys",
        executed.execution.writes.len()
    );
    g.bench_function("bid_block_20k_bids", |b| {
        b.iter(|| black_box(run(&f.tree, bid_info, &bid_block).unwrap()))
    });
    // The settlement of interval 0 (ST-2): clear it for real, then one head-end batch of every
    // site's reading at its end, then the block that settles it, timed.
    let cleared = run(&f.tree, info, &[]).unwrap();
    f.tree.apply(&cleared.batch);
    f.height = info.height;
    f.time_ms = info.timestamp_ms;
    let end_ms = f.gate_ms + 300_000 + 900_000;
    let mut rng = StdRng::seed_from_u64(11);
    let readings = (0..SITES)
        .map(|i| bcte_types::meter::SiteEnergy {
            site: SiteId::new(format!("site-{i}")).unwrap(),
            wh: bcte_types::WattHours(rng.random_range(-2_000..2_500)),
        })
        .collect();
    let dso = PrivateKey::from_seed(1);
    let batch = Tx::sign(
        TxBody {
            chain_id: chain(),
            sender: AccountId::from_public_key(&dso.public_key()),
            signer: None,
            nonce: f.dso_nonce,
            payload: Payload::MeterBatch(bcte_types::meter::MeterBatch {
                feeder: FeederId::new("bench").unwrap(),
                interval: Interval(0),
                root: Hash::from([1; 32]),
                readings,
            }),
        },
        &dso,
    );
    eprintln!(
        "a head-end batch of {SITES} readings is {} bytes",
        batch.encode_size()
    );
    apply(&mut f, end_ms, vec![batch]);
    let settle_info = BlockInfo {
        height: Height(f.height.0 + 1),
        timestamp_ms: end_ms + 1,
        parent: Hash::from([0; 32]),
    };
    let executed = run(&f.tree, settle_info, &[]).unwrap();
    let settled = executed
        .execution
        .writes
        .keys()
        .filter(|k| matches!(k, StateKey::Settled(..)))
        .count();
    let accounts = executed
        .execution
        .writes
        .keys()
        .filter(|k| matches!(k, StateKey::Account(..)))
        .count();
    let deletions = executed
        .execution
        .writes
        .values()
        .filter(|v| v.is_none())
        .count();
    eprintln!(
        "the settlement block writes {} keys ({settled} buckets of settlements, {accounts} accounts, {deletions} deletions)",
        executed.execution.writes.len()
    );
    assert!(
        executed
            .execution
            .writes
            .keys()
            .any(|k| matches!(k, StateKey::Settlement(..))),
        "the block settles interval 0"
    );
    assert!(accounts > SITES, "every owner pays or is paid");
    g.bench_function("settle_10k_sites_1m_keys", |b| {
        b.iter(|| black_box(run(&f.tree, settle_info, &[]).unwrap()))
    });
    let pre = bcte_ledger::read_planned(&f.tree, f.height, settle_info, &[]).unwrap();
    g.bench_function("settle_phase_reads", |b| {
        b.iter(|| {
            black_box(bcte_ledger::read_planned(&f.tree, f.height, settle_info, &[]).unwrap())
        })
    });
    g.bench_function("settle_phase_apply", |b| {
        b.iter(|| black_box(bcte_ledger::apply(&pre, settle_info, &[]).unwrap()))
    });
    let writes = bcte_ledger::apply(&pre, settle_info, &[]).unwrap().writes;
    g.bench_function("settle_phase_state_root", |b| {
        b.iter(|| black_box(tree::commit(&f.tree, &writes, settle_info.height).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench_gate);
criterion_main!(benches);
