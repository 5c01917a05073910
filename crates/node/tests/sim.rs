//! Deterministic whole-network runs under faults: the real validator wiring on the simulated
//! network, with the application store surviving simulated crashes as redb survives real ones.
//!
//! Every scenario runs [`sim::SEEDS_DEFAULT`] seeds (`BCTE_SIM_SEEDS=N` for more,
//! `BCTE_SIM_SEED=S` for one); a failure names its seed. After every phase a [`Witness`] checks
//! the invariants over the honest validators' stores: no two different blocks at one height, the
//! same state root at every height, and every transaction once final still final with the same
//! receipt. Progress is asserted whenever at most f = 1 of the 4 validators is faulty.

use bcte_sim as sim;
use bcte_sim::{
    Load, SimNet, SimValidator, Witness, assert_stalled, config, for_each_seed, wait_height,
};
use bcte_types::Hash;
use commonware_runtime::{Runner as _, deterministic};
use std::time::Duration;

/// Validators of the networks below (f = 1).
const N: u64 = 4;
/// Funded accounts that send the load.
const SENDERS: u64 = 8;
/// Simulated time allowed for any expected progress; real progress takes a few seconds.
const WITHIN: Duration = Duration::from_secs(120);

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn refs(vs: &[SimValidator]) -> Vec<&SimValidator> {
    vs.iter().collect()
}

fn pick<'a>(vs: &'a [SimValidator], indices: &[u64]) -> Vec<&'a SimValidator> {
    indices.iter().map(|&i| &vs[i as usize]).collect()
}

fn others(excluded: &[u64]) -> Vec<u64> {
    (0..N).filter(|i| !excluded.contains(i)).collect()
}

fn tip(vs: &[&SimValidator]) -> u64 {
    vs.iter().map(|v| v.height().get()).max().unwrap_or(0)
}

/// Starts `N` validators on `link` and runs them under load to height 5.
async fn started(
    context: &sim::Ctx,
    link: commonware_p2p::simulated::Link,
) -> (SimNet, Vec<SimValidator>, Load, Witness) {
    let genesis = sim::genesis(N, SENDERS);
    let net = SimNet::new(context, genesis.clone(), link).await;
    let mut vs: Vec<_> = (0..N).map(SimValidator::new).collect();
    for v in vs.iter_mut() {
        net.start(context, v).await;
    }
    let mut load = Load::new(&genesis, SENDERS);
    load.run(context, &refs(&vs), secs(1), 2).await;
    wait_height(context, &refs(&vs), 5, WITHIN).await;
    let mut witness = Witness::default();
    witness.observe(&refs(&vs), &load.submitted);
    (net, vs, load, witness)
}

/// Runs `validators` validators under load to `target`, crashes all of them at once (the
/// runtime drops unsynced consensus writes too), restarts them from what survived and runs 20
/// more blocks. Returns the block hash and state root at `target`.
fn crash_all_and_recover(seed: u64, validators: u64, target: u64) -> (Hash, Hash) {
    let genesis = sim::genesis(validators, SENDERS);
    let stores: Vec<SimValidator> = (0..validators).map(SimValidator::new).collect();
    let kept: Vec<_> = stores.iter().map(|v| v.store.clone()).collect();

    let g = genesis.clone();
    let (mut witness, checkpoint) =
        deterministic::Runner::new(config(seed)).start_and_recover(|context| async move {
            let net = SimNet::new(&context, g.clone(), sim::lan()).await;
            let mut vs = stores;
            for v in vs.iter_mut() {
                net.start(&context, v).await;
            }
            let mut load = Load::new(&g, SENDERS);
            load.run(&context, &refs(&vs), secs(1), 4).await;
            wait_height(&context, &refs(&vs), target, WITHIN).await;
            let mut witness = Witness::default();
            witness.observe(&refs(&vs), &load.submitted);
            assert!(
                !witness.txs.is_empty(),
                "load produced no final transaction"
            );
            // Returning drops every task mid-flight: an unclean crash of the whole network.
            witness
        });

    deterministic::Runner::from(checkpoint).start(|context| async move {
        let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
        let mut vs: Vec<SimValidator> = (0..validators)
            .zip(kept)
            .map(|(i, store)| SimValidator::with_store(i, store))
            .collect();
        // What survived: every block and final transaction, unchanged.
        witness.observe(&refs(&vs), &[]);
        for v in vs.iter_mut() {
            net.start(&context, v).await;
        }
        let goal = witness.height() + 20;
        let mut load = Load::new(&genesis, SENDERS);
        load.run(&context, &refs(&vs), secs(1), 2).await;
        wait_height(&context, &refs(&vs), goal, WITHIN).await;
        witness.observe(&refs(&vs), &load.submitted);
        witness.blocks[&target]
    })
}

#[test]
fn one_validator_survives_a_crash_with_its_state() {
    for_each_seed("one_validator_survives_a_crash_with_its_state", |seed| {
        crash_all_and_recover(seed, 1, 10);
    });
}

#[test]
fn four_validators_survive_a_crash_of_all_of_them() {
    for_each_seed("four_validators_survive_a_crash_of_all_of_them", |seed| {
        crash_all_and_recover(seed, N, 10);
    });
}

#[test]
fn the_same_seed_gives_the_same_blocks_and_state_root() {
    let a = crash_all_and_recover(7, N, 8);
    let b = crash_all_and_recover(7, N, 8);
    assert_eq!(a, b);
}

/// 2/2: neither half has a quorum, so nothing is finalized and nothing forks; after the heal
/// the chain resumes.
#[test]
fn an_even_split_stops_the_chain_without_forking_and_healing_resumes_it() {
    for_each_seed(
        "an_even_split_stops_the_chain_without_forking_and_healing_resumes_it",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let (net, vs, mut load, mut witness) = started(&context, sim::lan()).await;
                let half = [0, 1 + seed % 3];
                net.partition(&[&half, &others(&half)]).await;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                assert_stalled(&context, &refs(&vs), secs(3), secs(10)).await;
                witness.observe(&refs(&vs), &load.submitted);

                net.heal().await;
                let goal = tip(&refs(&vs)) + 5;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &refs(&vs), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);
                assert!(!witness.txs.is_empty(), "no transaction became final");
            });
        },
    );
}

/// 3/1: the majority is a quorum and keeps finalizing; the isolated validator catches up after
/// the heal.
#[test]
fn the_majority_side_of_a_split_keeps_finalizing_and_the_minority_catches_up() {
    for_each_seed(
        "the_majority_side_of_a_split_keeps_finalizing_and_the_minority_catches_up",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let (net, vs, mut load, mut witness) = started(&context, sim::lan()).await;
                let alone = [seed % N];
                let majority = others(&alone);
                net.partition(&[&alone, &majority]).await;
                let goal = witness.height() + 10;
                load.run(&context, &pick(&vs, &majority), secs(1), 2).await;
                wait_height(&context, &pick(&vs, &majority), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);
                assert!(
                    vs[alone[0] as usize].height().get() < goal,
                    "the isolated validator finalized without a quorum"
                );

                net.heal().await;
                let goal = tip(&refs(&vs)) + 3;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &refs(&vs), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);
            });
        },
    );
}

/// Lossy, slow, jittery links (10–20 % loss, 50–200 ms latency, chosen by the seed): the chain
/// still finalizes, and everyone agrees.
#[test]
fn lossy_slow_links_still_finalize_and_agree() {
    for_each_seed("lossy_slow_links_still_finalize_and_agree", |seed| {
        deterministic::Runner::new(config(seed)).start(|context| async move {
            let latency_ms = 50 + (seed * 37) % 151;
            let lossy = sim::link(latency_ms, latency_ms / 4, 80 + seed % 11);
            let (_net, vs, mut load, mut witness) = started(&context, lossy).await;
            let goal = witness.height() + 10;
            load.run(&context, &refs(&vs), secs(2), 2).await;
            wait_height(&context, &refs(&vs), goal, WITHIN).await;
            witness.observe(&refs(&vs), &load.submitted);
            assert!(!witness.txs.is_empty(), "no transaction became final");
        });
    });
}

/// One validator crashes under load: the other three keep finalizing; restarted from what it
/// had, it catches up, and nothing it had committed changes.
#[test]
fn the_others_keep_finalizing_while_one_validator_is_down_and_it_catches_up() {
    for_each_seed(
        "the_others_keep_finalizing_while_one_validator_is_down_and_it_catches_up",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let (net, mut vs, mut load, mut witness) = started(&context, sim::lan()).await;
                let down = seed % N;
                let up = others(&[down]);
                // Crash it mid-load, with transactions in flight.
                load.run(
                    &context,
                    &refs(&vs),
                    Duration::from_millis(100 + 50 * (seed % 5)),
                    4,
                )
                .await;
                vs[down as usize].kill().await;
                witness.observe(&refs(&vs), &load.submitted);

                let goal = tip(&refs(&vs)) + 10;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &pick(&vs, &up), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);

                net.start(&context, &mut vs[down as usize]).await;
                let goal = tip(&refs(&vs)) + 3;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &refs(&vs), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);
            });
        },
    );
}

/// Two of four down (more than f): the chain stops; when one returns it resumes with no fork,
/// and the last one catches up.
#[test]
fn more_than_f_down_stops_the_chain_and_it_resumes_without_fork_when_enough_return() {
    for_each_seed(
        "more_than_f_down_stops_the_chain_and_it_resumes_without_fork_when_enough_return",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let (net, mut vs, mut load, mut witness) = started(&context, sim::lan()).await;
                let first = seed % N;
                let second = (first + 1 + (seed / N) % 3) % N;
                load.run(&context, &refs(&vs), Duration::from_millis(200), 4)
                    .await;
                vs[first as usize].kill().await;
                vs[second as usize].kill().await;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                assert_stalled(&context, &refs(&vs), secs(3), secs(10)).await;
                witness.observe(&refs(&vs), &load.submitted);

                net.start(&context, &mut vs[first as usize]).await;
                let goal = tip(&refs(&vs)) + 5;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &pick(&vs, &others(&[second])), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);

                net.start(&context, &mut vs[second as usize]).await;
                let goal = tip(&refs(&vs)) + 3;
                load.run(&context, &refs(&vs), secs(1), 2).await;
                wait_height(&context, &refs(&vs), goal, WITHIN).await;
                witness.observe(&refs(&vs), &load.submitted);
            });
        },
    );
}
