//! The market on the chain under faults, in the deterministic simulation: a feeder of 1-second
//! intervals bid for continuously while the network is split across several gate closures, and
//! while every validator crashes around a gate closure; and a gate closure that clears 10,000
//! bids. After every phase: every validator has the same blocks and state roots (the
//! [`Witness`]), every interval before the next to clear has exactly one result, written once
//! at one height and never rewritten, and no interval is skipped. Intervals settle 1.5 s after
//! their end, which falls on the gate closure three intervals on, so the crash at a gate
//! closure also falls across a settlement: every interval before the next to settle has exactly
//! one settlement, written once, never rewritten, none skipped.

use bcte_ledger::{
    StateKey, decode_value,
    market_state::{IntervalResult, Schedule},
    tree,
};
use bcte_sim as sim;
use bcte_sim::{SimNet, SimValidator, Witness, config, for_each_seed, wait_height};
use bcte_types::{
    CurveSpec, FeederId, Genesis, GridMode, Hash, Height, Interval, MarketConfig, NodeId, NodeSpec,
    Payload, Price, SiteId, SiteSpec, Tx, Watts,
    market::{BIDS_PER_TX_MAX, BidEntry, Bids, FeederRegister, GridModeSet, SitesRegister},
};
use commonware_codec::Read;
use commonware_cryptography::Signer as _;
use commonware_runtime::{Clock, Runner as _, deterministic};
use std::{collections::BTreeMap, time::Duration};

const N: u64 = 4;
/// The DSO (the genesis authority) and the owner of every site (an aggregator's portfolio).
const DSO: u64 = 0;
const OWNER: u64 = 1;
const WITHIN: Duration = Duration::from_secs(120);

fn feeder() -> FeederId {
    FeederId::new("sim").unwrap()
}

fn site(i: usize) -> SiteId {
    SiteId::new(format!("s{i}")).unwrap()
}

/// The feeder's registration, `sites` sites owned by `OWNER`, and a mode for interval 0: a
/// feeder of 1-second intervals whose gate closes half a second before, from 2 s on.
fn setup(genesis: &Genesis, sites: usize, mode: GridMode) -> Vec<Tx> {
    let config = MarketConfig {
        interval_ms: 1_000,
        gate_lead_ms: 500,
        retention_intervals: 1_000,
        // Intervals settle 1.5 s after their end (nobody reads: on their schedules, ST-3.1),
        // so settlements run under the faults too.
        settlement_delay_ms: 1_500,
        reading_window_ms: 3_000,
        ..MarketConfig::DEFAULT
    };
    let node = |id: &str, parent: Option<&str>| NodeSpec {
        id: NodeId::new(id).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        import_limit: Some(Watts(50_000)),
        export_limit: Some(Watts(50_000)),
    };
    let owner = bcte_types::AccountId::from_public_key(&sim::account_key(OWNER).public_key());
    let mut txs = vec![sim::sign(
        genesis,
        DSO,
        0,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder(),
            epoch_ms: Some(genesis.genesis_time_ms + 2_000),
            config,
            nodes: vec![node("r", None), node("a", Some("r")), node("b", Some("a"))],
            market_account: None,
            upstream_account: None,
        }),
    )];
    let specs: Vec<SiteSpec> = (0..sites)
        .map(|i| SiteSpec {
            site: site(i),
            node: NodeId::new(["r", "a", "b"][i % 3]).unwrap(),
            owner,
            priority: (i % 8) as u8,
            import_limit: None,
            export_limit: None,
        })
        .collect();
    for (n, chunk) in specs.chunks(4_096).enumerate() {
        txs.push(sim::sign(
            genesis,
            DSO,
            1 + n as u64,
            Payload::SitesRegister(SitesRegister {
                feeder: feeder(),
                sites: chunk.to_vec(),
            }),
        ));
    }
    txs.push(sim::sign(
        genesis,
        DSO,
        txs.len() as u64,
        Payload::GridMode(GridModeSet {
            feeder: feeder(),
            from: Interval(0),
            mode,
        }),
    ));
    txs
}

/// A household-like curve for site `i` in interval `k`: a flexible load, or PV.
fn curve(i: usize, k: u64) -> CurveSpec {
    let unit = 1_000_000i64;
    let shift = ((i as u64 * 7 + k * 3) % 40) as i64;
    if i % 4 == 3 {
        CurveSpec::Points(vec![
            (Price(-20 * unit), Watts(0)),
            (Price(-20 * unit), Watts(-3_000)),
        ])
    } else {
        CurveSpec::Points(vec![
            (Price((shift - 10) * unit), Watts(4_000 + 50 * shift)),
            (Price((shift + 90) * unit), Watts(500)),
        ])
    }
}

/// Reads a value at a height of one validator's store.
fn read<T: Read<Cfg = ()>>(v: &SimValidator, height: u64, key: &StateKey) -> Option<T> {
    let chain = v.chain();
    tree::read_value(&chain, Height(height), key)
        .unwrap()
        .map(|b| decode_value(&b).expect("decodes"))
}

/// The owner of every site, bidding for the next few open intervals every 200 ms (a new
/// transaction each time, replacing its earlier bids), to the running validators in turn.
struct Bidder {
    genesis: Genesis,
    nonce: u64,
    sites: usize,
    next: usize,
    submitted: Vec<Hash>,
}

impl Bidder {
    async fn run(&mut self, context: &sim::Ctx, vs: &[&SimValidator], duration: Duration) {
        let end = context.current() + duration;
        while context.current() < end {
            let running: Vec<_> = vs.iter().filter(|v| v.is_running()).collect();
            if !running.is_empty() {
                self.next = (self.next + 1) % running.len();
                let v = running[self.next];
                if let Some(s) =
                    read::<Schedule>(v, v.height().get(), &StateKey::Schedule(feeder()))
                {
                    let first = s.next_clear.0 + 1;
                    let bids = (first..first + 2)
                        .flat_map(|k| {
                            (0..self.sites).map(move |i| BidEntry {
                                site: site(i),
                                interval: Interval(k),
                                curve: Some(curve(i, k)),
                            })
                        })
                        .collect();
                    let tx = sim::sign(
                        &self.genesis,
                        OWNER,
                        self.nonce,
                        Payload::Bids(Bids {
                            feeder: feeder(),
                            bids,
                        }),
                    );
                    match v.shared().admit(tx.clone()) {
                        Ok(hash) => {
                            self.nonce += 1;
                            self.submitted.push(hash);
                            if let Some(g) = &v.gossip {
                                g.send(tx);
                            }
                        }
                        // A lost submission (its validator crashed): resume from the nonce
                        // the chain expects, on the next tick.
                        Err(
                            bcte_node::mempool::AdmitError::NonceGap { expected, .. }
                            | bcte_node::mempool::AdmitError::NonceUsed { expected, .. },
                        ) => self.nonce = expected,
                        Err(_) => {}
                    }
                }
            }
            context.sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The market's invariants over `vs` (and what `seen` recorded before): every interval before
/// the next to clear has one result, cleared at one height, the same on every validator and
/// unchanged since it was first seen; none skipped. Returns the next interval to clear.
fn check_market(vs: &[&SimValidator], seen: &mut BTreeMap<u64, (u64, IntervalResult)>) -> u64 {
    let mut next = u64::MAX;
    for v in vs {
        let tip = v.height().get();
        let Some(s) = read::<Schedule>(v, tip, &StateKey::Schedule(feeder())) else {
            continue;
        };
        next = next.min(s.next_clear.0);
        let first = seen.keys().next().copied().unwrap_or(0);
        for k in first..s.next_clear.0 {
            let key = StateKey::Result(feeder(), Interval(k));
            let r: IntervalResult = read(v, tip, &key).unwrap_or_else(|| {
                panic!(
                    "{}: interval {k} is before the next to clear but has no result",
                    v.name
                )
            });
            // Written by the block that cleared it and absent just before: cleared once.
            assert!(
                read::<IntervalResult>(v, r.height - 1, &key).is_none(),
                "{}: interval {k} had a result before the block that says it cleared it",
                v.name
            );
            match seen.get(&k) {
                Some((height, earlier)) => {
                    assert_eq!(
                        (*height, earlier),
                        (r.height, &r),
                        "{}: interval {k} was cleared again or rewritten",
                        v.name
                    )
                }
                None => {
                    seen.insert(k, (r.height, r));
                }
            }
        }
    }
    next
}

/// The settlement's invariants over `vs` (and what `seen` recorded before): every interval
/// before the next to settle has one settlement, written by one block and absent just before
/// it, the same on every validator and never rewritten; intervals settle in order, none
/// skipped, none before it is cleared (ST-2.1). Returns the next interval to settle.
fn check_settlement(
    vs: &[&SimValidator],
    seen: &mut BTreeMap<u64, bcte_ledger::settle_state::IntervalSettlement>,
) -> u64 {
    use bcte_ledger::settle_state::IntervalSettlement;
    let mut next = u64::MAX;
    for v in vs {
        let tip = v.height().get();
        let Some(s) = read::<Schedule>(v, tip, &StateKey::Schedule(feeder())) else {
            continue;
        };
        assert!(
            s.next_settle <= s.next_clear,
            "{}: settled ahead of clearing",
            v.name
        );
        next = next.min(s.next_settle.0);
        for k in 0..s.next_settle.0 {
            let key = StateKey::Settlement(feeder(), Interval(k));
            let t: IntervalSettlement = read(v, tip, &key).unwrap_or_else(|| {
                panic!(
                    "{}: interval {k} is before the next to settle but unsettled",
                    v.name
                )
            });
            assert!(
                read::<IntervalSettlement>(v, t.height - 1, &key).is_none(),
                "{}: interval {k} was settled before the block that says it settled it",
                v.name
            );
            match seen.get(&k) {
                Some(earlier) => assert_eq!(
                    earlier, &t,
                    "{}: interval {k} was settled again or rewritten",
                    v.name
                ),
                None => {
                    seen.insert(k, t);
                }
            }
        }
    }
    next
}

/// The epoch's market time on the simulated clock.
fn epoch_ms(genesis: &Genesis) -> u64 {
    genesis.genesis_time_ms + 2_000
}

#[test]
fn a_split_across_several_gate_closures_clears_every_interval_once_after_healing() {
    for_each_seed(
        "a_split_across_several_gate_closures_clears_every_interval_once_after_healing",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let genesis = sim::genesis(N, 2);
                let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
                let mut vs: Vec<_> = (0..N).map(SimValidator::new).collect();
                for v in vs.iter_mut() {
                    net.start(&context, v).await;
                }
                let refs: Vec<&SimValidator> = vs.iter().collect();
                for tx in setup(&genesis, 12, GridMode::Normal) {
                    refs[0].shared().admit(tx.clone()).expect("admitted");
                    if let Some(g) = &refs[0].gossip {
                        g.send(tx);
                    }
                }
                let mut bidder = Bidder {
                    genesis: genesis.clone(),
                    nonce: 0,
                    sites: 12,
                    next: 0,
                    submitted: Vec::new(),
                };
                bidder.run(&context, &refs, Duration::from_secs(4)).await;
                let mut witness = Witness::default();
                let mut seen = BTreeMap::new();
                witness.observe(&refs, &bidder.submitted);
                let before = check_market(&refs, &mut seen);
                assert!(before >= 2, "intervals cleared before the split: {before}");
                // A 2/2 split for 3.5 s: three gate closures pass without a quorum.
                net.partition(&[&[0, 1], &[2, 3]]).await;
                bidder
                    .run(&context, &refs, Duration::from_millis(3_500))
                    .await;
                witness.observe(&refs, &bidder.submitted);
                net.heal().await;
                bidder.run(&context, &refs, Duration::from_secs(3)).await;
                let goal = witness.height() + 5;
                wait_height(&context, &refs, goal, WITHIN).await;
                witness.observe(&refs, &bidder.submitted);
                let after = check_market(&refs, &mut seen);
                assert!(after >= before + 5, "cleared {before} then {after}");
                assert!(
                    seen.values().filter(|(_, r)| r.bids == 12).count() >= 3,
                    "the bidder's bids are cleared: {:?}",
                    seen.values().map(|(_, r)| r.bids).collect::<Vec<_>>()
                );
                // The intervals whose gates passed during the split were cleared after it, by
                // blocks that passed several gates at once, and none has a bid of the split.
                let r = &seen[&(before + 1)].1;
                assert!(r.height > 0);
            });
        },
    );
}

#[test]
fn a_crash_of_every_validator_at_a_gate_closure_clears_no_interval_twice_and_skips_none() {
    for_each_seed(
        "a_crash_of_every_validator_at_a_gate_closure_clears_no_interval_twice_and_skips_none",
        |seed| {
            let genesis = sim::genesis(N, 2);
            let stores: Vec<SimValidator> = (0..N).map(SimValidator::new).collect();
            let kept: Vec<_> = stores.iter().map(|v| v.store.clone()).collect();
            let g = genesis.clone();
            let ((mut witness, mut seen, mut settled, nonce), checkpoint) =
                deterministic::Runner::new(config(seed)).start_and_recover(|context| async move {
                    let net = SimNet::new(&context, g.clone(), sim::lan()).await;
                    let mut vs = stores;
                    for v in vs.iter_mut() {
                        net.start(&context, v).await;
                    }
                    let refs: Vec<&SimValidator> = vs.iter().collect();
                    for tx in setup(&g, 12, GridMode::Islanded) {
                        refs[0].shared().admit(tx.clone()).expect("admitted");
                        if let Some(gs) = &refs[0].gossip {
                            gs.send(tx);
                        }
                    }
                    let mut bidder = Bidder {
                        genesis: g.clone(),
                        nonce: 0,
                        sites: 12,
                        next: 0,
                        submitted: Vec::new(),
                    };
                    bidder.run(&context, &refs, Duration::from_secs(4)).await;
                    // Crash at (or just after) the gate closure of an interval, a few ms in
                    // depending on the seed: often while its clearing block is being
                    // proposed, verified or committed.
                    let now = context
                        .current()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64;
                    let k = (now.saturating_sub(epoch_ms(&g)) / 1_000) + 2;
                    let gate = epoch_ms(&g) + 1_000 * k - 500;
                    let at = gate + seed % 40;
                    context
                        .sleep(Duration::from_millis(at.saturating_sub(now)))
                        .await;
                    let mut witness = Witness::default();
                    witness.observe(&refs, &bidder.submitted);
                    let mut seen = BTreeMap::new();
                    check_market(&refs, &mut seen);
                    let mut settled = BTreeMap::new();
                    check_settlement(&refs, &mut settled);
                    (witness, seen, settled, bidder.nonce)
                });
            deterministic::Runner::from(checkpoint).start(|context| async move {
                let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
                let mut vs: Vec<SimValidator> = (0..N)
                    .zip(kept)
                    .map(|(i, store)| SimValidator::with_store(i, store))
                    .collect();
                let refs: Vec<&SimValidator> = vs.iter().collect();
                witness.observe(&refs, &[]);
                check_market(&refs, &mut seen);
                let settled_before = check_settlement(&refs, &mut settled);
                drop(refs);
                for v in vs.iter_mut() {
                    net.start(&context, v).await;
                }
                let refs: Vec<&SimValidator> = vs.iter().collect();
                let before = check_market(&refs, &mut seen);
                let mut bidder = Bidder {
                    genesis: genesis.clone(),
                    nonce,
                    sites: 12,
                    next: 0,
                    submitted: Vec::new(),
                };
                bidder.run(&context, &refs, Duration::from_secs(4)).await;
                let goal = witness.height() + 10;
                wait_height(&context, &refs, goal, WITHIN).await;
                witness.observe(&refs, &bidder.submitted);
                let after = check_market(&refs, &mut seen);
                assert!(
                    after > before + 2,
                    "the market goes on after the crash: {before} then {after}"
                );
                let settled_after = check_settlement(&refs, &mut settled);
                assert!(
                    settled_after > settled_before + 2,
                    "settlement goes on after the crash: {settled_before} then {settled_after}"
                );
                assert!(
                    settled.values().any(|t| t.sites == 12),
                    "intervals with every site's bid were settled"
                );
            });
        },
    );
}

#[test]
fn a_gate_closure_that_clears_ten_thousand_bids_nullifies_no_view() {
    const SITES: usize = 10_000;
    deterministic::Runner::new(config(11)).start(|context| async move {
        let genesis = sim::genesis(N, 2);
        let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
        let mut vs: Vec<_> = (0..N).map(SimValidator::new).collect();
        for v in vs.iter_mut() {
            net.start(&context, v).await;
        }
        let refs: Vec<&SimValidator> = vs.iter().collect();
        // Registered before interval 0's gate, with the bids in three batches of at most 4,096.
        let mut txs = setup(&genesis, SITES, GridMode::Normal);
        let bids: Vec<BidEntry> = (0..SITES)
            .map(|i| BidEntry {
                site: site(i),
                interval: Interval(2),
                curve: Some(curve(i, 2)),
            })
            .collect();
        for (n, chunk) in bids.chunks(BIDS_PER_TX_MAX).enumerate() {
            txs.push(sim::sign(
                &genesis,
                OWNER,
                n as u64,
                Payload::Bids(Bids {
                    feeder: feeder(),
                    bids: chunk.to_vec(),
                }),
            ));
        }
        for tx in txs {
            refs[0].shared().admit(tx.clone()).expect("admitted");
            if let Some(g) = &refs[0].gossip {
                g.send(tx);
            }
        }
        // Everything is final before interval 2's gate (at 2 s + 2 s - 0.5 s).
        wait_height(&context, &refs, 3, WITHIN).await;
        let v = refs[0];
        let last = site(SITES - 1);
        let key = StateKey::Bids(feeder(), Interval(2), bcte_ledger::book_bucket(&last));
        while read::<bcte_ledger::market_state::BidBucket>(v, v.height().get(), &key)
            .is_none_or(|bucket| bucket.get(&last).is_none())
        {
            context.sleep(Duration::from_millis(50)).await;
        }
        let nullified = sim::nullified_views(&context);
        let gate = epoch_ms(&genesis) + 2_000 - 500;
        let now = context
            .current()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            now < gate,
            "the bids were in before the gate ({now} < {gate})"
        );
        // Run past the gate until interval 2 is cleared everywhere.
        let mut seen = BTreeMap::new();
        loop {
            context.sleep(Duration::from_millis(100)).await;
            if check_market(&refs, &mut seen) > 2 {
                break;
            }
        }
        let r = &seen[&2].1;
        assert_eq!(r.bids as usize, SITES);
        // The metrics carry no site or account label (AC-6.4): only validators' peer keys,
        // public in every block header.
        let text = commonware_runtime::Metrics::encode(&context);
        let owner = bcte_types::AccountId::from_public_key(&sim::account_key(OWNER).public_key());
        let dso = bcte_types::AccountId::from_public_key(&sim::account_key(DSO).public_key());
        let labels: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split("=\"").skip(1).filter_map(|v| v.split('"').next()))
            .collect();
        assert!(!labels.is_empty(), "the metrics have labels to check");
        // The market's metrics, by feeder: every validator counted interval 2's 10,000 bids
        // and timed its clearing.
        let samples = |name: &str| -> Vec<(String, f64)> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    let metric = series.split('{').next()?;
                    if !metric.ends_with(name) {
                        return None;
                    }
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect()
        };
        let bids = samples("market_bids_per_interval_sum");
        assert_eq!(
            bids.len() as u64,
            N,
            "one bids histogram per validator: {bids:?}"
        );
        for (series, sum) in &bids {
            assert!(
                series.contains(&format!("feeder=\"{}\"", feeder())),
                "{series}"
            );
            assert!(
                *sum >= SITES as f64,
                "{series} counted the 10,000 bids: {sum}"
            );
        }
        for (series, n) in samples("market_intervals_cleared_total") {
            assert!(n >= 3.0, "{series}: intervals 0, 1 and 2 cleared ({n})");
        }
        let clearing = samples("market_clearing_seconds_count");
        assert_eq!(clearing.len() as u64, N, "{clearing:?}");
        assert!(clearing.iter().all(|(_, n)| *n >= 3.0), "{clearing:?}");
        assert_eq!(
            samples("market_gate_to_final_seconds_count").len() as u64,
            N
        );
        for v in labels {
            let is_site = v
                .strip_prefix('s')
                .is_some_and(|i| i.parse::<usize>().is_ok_and(|i| i < SITES));
            assert!(!is_site, "a site id as a metric label: {v}");
            assert!(
                v != owner.to_string() && v != dso.to_string(),
                "an account label: {v}"
            );
        }
        let goal = refs.iter().map(|v| v.height().get()).max().unwrap() + 3;
        wait_height(&context, &refs, goal, WITHIN).await;
        let mut witness = Witness::default();
        witness.observe(&refs, &[]);
        assert_eq!(
            sim::nullified_views(&context),
            nullified,
            "no view was nullified by the clearing"
        );
    });
}
