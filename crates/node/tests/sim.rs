//! Deterministic whole-network runs: the real validator wiring on the simulated network, with the
//! application store surviving simulated crashes as redb survives real ones.
//!
//! `BCTE_SIM_SEEDS=N` runs N seeds per scenario (default 3); a failure names its seed.

use bcte_node::sim::{self, SimNet, SimValidator};
use bcte_types::{Hash, Height};
use commonware_runtime::{Runner as _, deterministic};
use std::time::Duration;

fn seeds() -> Vec<u64> {
    let n = std::env::var("BCTE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    (0..n).collect()
}

fn config(seed: u64) -> deterministic::Config {
    deterministic::Config::default()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)))
}

/// What a run committed: per height, the block hash and state root of validator 0, after
/// checking that every validator committed the same.
fn committed(vs: &[SimValidator], upto: u64) -> Vec<(Hash, Hash)> {
    (1..=upto)
        .map(|h| {
            let mut seen = None;
            for v in vs {
                let b = v
                    .chain()
                    .block(Height(h))
                    .unwrap()
                    .expect("committed block present");
                let pair = (b.hash(), b.header().state_root);
                match seen {
                    None => seen = Some(pair),
                    Some(s) => assert_eq!(s, pair, "validators disagree at height {h}"),
                }
            }
            seen.unwrap()
        })
        .collect()
}

/// Runs `validators` validators under load to `target`, crashes all of them at once, restarts
/// them from what survived and runs to `target + 20`. Checks that no committed block or final
/// transaction was lost and that all validators agree. Returns the hash and root at `target`.
fn crash_all_and_recover(seed: u64, validators: u64, target: u64) -> (Hash, Hash) {
    let genesis = sim::genesis(validators, 8);
    let stores: Vec<SimValidator> = (0..validators).map(SimValidator::new).collect();
    let kept: Vec<_> = stores.iter().map(|v| v.store.clone()).collect();

    let g = genesis.clone();
    let ((before, finals), checkpoint) = deterministic::Runner::new(config(seed))
        .start_and_recover(|context| async move {
            let net = SimNet::new(&context, g.clone(), sim::lan()).await;
            let mut vs = stores;
            for v in vs.iter_mut() {
                net.start(&context, v, 0).await;
            }
            let mut nonces = vec![0u64; 8];
            let hashes = sim::submit_load(&context, &g, &vs[0], 8, 120, &mut nonces).await;
            sim::wait_height(&context, &vs.iter().collect::<Vec<_>>(), target).await;
            let upto = vs.iter().map(|v| v.height().get()).min().unwrap();
            let before = committed(&vs, upto);
            // Transactions final so far, with their outcome.
            let chain = vs[0].chain();
            let finals: Vec<_> = hashes
                .iter()
                .filter_map(|h| chain.tx_location(h).unwrap().map(|l| (*h, l)))
                .collect();
            assert!(
                !finals.is_empty(),
                "seed {seed}: load produced no final transaction"
            );
            // Returning drops every task mid-flight: an unclean crash of the whole network.
            (before, finals)
        });

    let g = genesis.clone();
    deterministic::Runner::from(checkpoint).start(|context| async move {
        let net = SimNet::new(&context, g.clone(), sim::lan()).await;
        let mut vs: Vec<SimValidator> = (0..validators)
            .zip(kept)
            .map(|(i, store)| SimValidator {
                index: i,
                store,
                shared: None,
                running: None,
            })
            .collect();
        // What survived: every block committed before the crash, with the same root.
        let survived = committed(&vs, before.len() as u64);
        assert_eq!(
            survived, before,
            "seed {seed}: committed blocks changed across the crash"
        );
        let chain = vs[0].chain();
        for (hash, loc) in &finals {
            assert_eq!(
                chain.tx_location(hash).unwrap().as_ref(),
                Some(loc),
                "seed {seed}: final tx lost"
            );
        }
        for (i, v) in vs.iter_mut().enumerate() {
            net.start(&context, v, 1 + i as u32).await;
        }
        let goal = before.len() as u64 + 20;
        sim::wait_height(&context, &vs.iter().collect::<Vec<_>>(), goal).await;
        let after = committed(&vs, goal);
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "seed {seed}: history rewritten"
        );
        before[target as usize - 1]
    })
}

#[test]
fn one_validator_survives_a_crash_with_its_state() {
    for seed in seeds() {
        crash_all_and_recover(seed, 1, 10);
    }
}

#[test]
fn four_validators_survive_a_crash_of_all_of_them() {
    for seed in seeds() {
        crash_all_and_recover(seed, 4, 10);
    }
}

#[test]
fn the_same_seed_gives_the_same_blocks_and_state_root() {
    let a = crash_all_and_recover(7, 4, 8);
    let b = crash_all_and_recover(7, 4, 8);
    assert_eq!(a, b);
}
