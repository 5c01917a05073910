//! One Byzantine validator of four (f = 1) on the simulated network: the three honest validators
//! (a quorum) keep finalizing the same chain with the same state roots, and every transaction
//! that became final stays final.
//!
//! The Byzantine behaviours are simplex's own test actors (`commonware_consensus::simplex::mocks`,
//! feature `mocks`, a dev-dependency only), run on the Byzantine validator's vote (and
//! certificate) channel in place of its consensus engine: the conflicter (notarizes and
//! finalizes a random payload next to every real one), the equivocator (as leader, notarizes two
//! different proposals and shows each to part of the network), the nuller (nullifies and
//! finalizes the same view), the impersonator (votes carrying another validator's index) and the
//! outdated voter (replays votes from old views). Twins are two complete bcte nodes with the same
//! validator key and separate storage, each talking to part of the network: every message the
//! key signs may have a conflicting twin.
//!
//! Seeds as in `tests/sim.rs` (`BCTE_SIM_SEEDS`, `BCTE_SIM_SEED`); the seed also picks which
//! validator is Byzantine and how twins split the network.

use bcte_node::{
    app::Scheme,
    chain_block::PublicKey,
    engine::{self, Channels},
};
use bcte_sim as sim;
use bcte_sim::{Load, SimNet, SimValidator, Witness, config, for_each_seed, wait_height};
use bcte_store::MemStore;
use commonware_consensus::{
    simplex::{
        elector::RoundRobin,
        mocks::{conflicter, equivocator, impersonator, nuller, outdated, relay::Relay},
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::Sha256;
use commonware_p2p::{
    Recipients,
    simulated::{SplitForwarder, SplitOrigin, SplitRouter, SplitTarget},
};
use commonware_runtime::{IoBuf, Runner as _, Supervisor as _, deterministic};
use std::{sync::Arc, time::Duration};

const N: u64 = 4;
const SENDERS: u64 = 8;
/// Simulated time allowed for the honest validators' progress (every fourth view has a
/// Byzantine leader and may time out).
const WITHIN: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
enum Byzantine {
    Conflicter,
    Equivocator,
    Nuller,
    Impersonator,
    Outdated,
}

/// Starts the Byzantine actor for validator `index` on its consensus channels.
async fn start_byzantine(context: &sim::Ctx, net: &SimNet, index: u64, kind: Byzantine) {
    let scheme = Scheme::signer(
        &engine::consensus_namespace(&net.genesis.chain_id),
        sim::participants(&net.genesis),
        sim::validator_key(index),
    )
    .expect("a validator");
    let control = net.oracle.control(sim::peer(index));
    let votes = control
        .register(engine::CH_VOTES, engine::quota(engine::CH_VOTES))
        .await
        .expect("register votes");
    let ctx = context.child("byzantine");
    match kind {
        Byzantine::Conflicter => {
            conflicter::Conflicter::<_, _, Sha256>::new(ctx, conflicter::Config { scheme })
                .start(votes);
        }
        Byzantine::Nuller => {
            nuller::Nuller::<_, _, Sha256>::new(ctx, nuller::Config { scheme }).start(votes);
        }
        Byzantine::Impersonator => {
            impersonator::Impersonator::<_, _, Sha256>::new(ctx, impersonator::Config { scheme })
                .start(votes);
        }
        Byzantine::Outdated => {
            outdated::Outdated::<_, _, Sha256>::new(
                ctx,
                outdated::Config {
                    scheme,
                    view_delta: ViewDelta::new(5),
                },
            )
            .start(votes);
        }
        Byzantine::Equivocator => {
            let certificates = control
                .register(engine::CH_CERTS, engine::quota(engine::CH_CERTS))
                .await
                .expect("register certificates");
            // Its payloads go to the mock relay nobody listens to: honest validators see two
            // conflicting proposals whose blocks they can never fetch.
            equivocator::Equivocator::<_, _, RoundRobin<Sha256>, Sha256>::new(
                ctx,
                equivocator::Config {
                    scheme,
                    elector: RoundRobin::<Sha256>::default(),
                    epoch: Epoch::zero(),
                    relay: Arc::new(Relay::new()),
                },
            )
            .start(votes, certificates);
        }
    }
}

/// Runs three honest validators and `kind` as validator `seed % 4`; the honest ones must reach
/// 15 blocks past the first observation and agree. Returns the network for extra checks.
fn honest_majority_survives(seed: u64, kind: Byzantine) -> Vec<(PublicKey, PublicKey)> {
    deterministic::Runner::new(config(seed)).start(|context| async move {
        let genesis = sim::genesis(N, SENDERS);
        let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
        let byzantine = seed % N;
        let mut honest: Vec<_> = (0..N)
            .filter(|&i| i != byzantine)
            .map(SimValidator::new)
            .collect();
        for v in honest.iter_mut() {
            net.start(&context, v).await;
        }
        start_byzantine(&context, &net, byzantine, kind).await;

        let vs: Vec<_> = honest.iter().collect();
        let mut load = Load::new(&genesis, SENDERS);
        let mut witness = Witness::default();
        load.run(&context, &vs, Duration::from_secs(1), 2).await;
        wait_height(&context, &vs, 5, WITHIN).await;
        witness.observe(&vs, &load.submitted);
        load.run(&context, &vs, Duration::from_secs(1), 2).await;
        wait_height(&context, &vs, witness.height() + 10, WITHIN).await;
        witness.observe(&vs, &load.submitted);
        assert!(!witness.txs.is_empty(), "no transaction became final");
        net.oracle.blocked().await.expect("network runs")
    })
}

fn assert_blocked(seed: u64, blocked: &[(PublicKey, PublicKey)]) {
    let byzantine = sim::peer(seed % N);
    assert!(
        blocked.iter().any(|(_, b)| *b == byzantine),
        "no honest validator blocked the Byzantine one: {blocked:?}"
    );
    assert!(
        blocked.iter().all(|(_, b)| *b == byzantine),
        "an honest validator was blocked: {blocked:?}"
    );
}

#[test]
fn honest_validators_agree_and_finalize_beside_a_conflicter() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_a_conflicter",
        |seed| {
            let blocked = honest_majority_survives(seed, Byzantine::Conflicter);
            assert_blocked(seed, &blocked);
        },
    );
}

#[test]
fn honest_validators_agree_and_finalize_beside_an_equivocating_leader() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_an_equivocating_leader",
        |seed| {
            honest_majority_survives(seed, Byzantine::Equivocator);
        },
    );
}

#[test]
fn honest_validators_agree_and_finalize_beside_a_nuller() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_a_nuller",
        |seed| {
            let blocked = honest_majority_survives(seed, Byzantine::Nuller);
            assert_blocked(seed, &blocked);
        },
    );
}

#[test]
fn honest_validators_agree_and_finalize_beside_an_impersonator() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_an_impersonator",
        |seed| {
            let blocked = honest_majority_survives(seed, Byzantine::Impersonator);
            assert_blocked(seed, &blocked);
        },
    );
}

#[test]
fn honest_validators_agree_and_finalize_beside_an_outdated_voter() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_an_outdated_voter",
        |seed| {
            honest_majority_survives(seed, Byzantine::Outdated);
        },
    );
}

/// Restricts what a twin sends to its half of the network.
fn forwarder(primary: Vec<PublicKey>, secondary: Vec<PublicKey>) -> impl SplitForwarder<PublicKey> {
    move |origin: SplitOrigin, to: &Recipients<PublicKey>, _: &IoBuf| {
        let half = match origin {
            SplitOrigin::Primary => &primary,
            SplitOrigin::Secondary => &secondary,
        };
        let to: Vec<_> = match to {
            Recipients::All => half.clone(),
            Recipients::One(p) => half.iter().filter(|h| *h == p).cloned().collect(),
            Recipients::Some(ps) => half.iter().filter(|h| ps.contains(h)).cloned().collect(),
        };
        (!to.is_empty()).then_some(Recipients::Some(to))
    }
}

/// Delivers what a peer sends to the twin (or twins) in its half.
fn router(primary: Vec<PublicKey>, secondary: Vec<PublicKey>) -> impl SplitRouter<PublicKey> {
    move |(from, _): &(PublicKey, IoBuf)| match (primary.contains(from), secondary.contains(from)) {
        (true, true) => SplitTarget::Both,
        (true, false) => SplitTarget::Primary,
        (false, true) => SplitTarget::Secondary,
        (false, false) => SplitTarget::None,
    }
}

/// Twins: validator `seed % 4` runs as two full bcte nodes with one key, each seeing part of
/// the honest validators (disjoint halves or overlapping ones, by seed). The honest validators
/// keep finalizing and agree, and no twin ever commits a block the honest ones did not.
#[test]
fn honest_validators_agree_and_finalize_beside_twins() {
    for_each_seed(
        "honest_validators_agree_and_finalize_beside_twins",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let genesis = sim::genesis(N, SENDERS);
                let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
                let twin = seed % N;
                let honest_ix: Vec<u64> = (0..N).filter(|&i| i != twin).collect();
                let mut honest: Vec<_> = honest_ix.iter().map(|&i| SimValidator::new(i)).collect();
                for v in honest.iter_mut() {
                    net.start(&context, v).await;
                }

                let keys: Vec<_> = honest_ix.iter().map(|&i| sim::peer(i)).collect();
                let (primary, secondary) = if (seed / N).is_multiple_of(2) {
                    (keys[..1].to_vec(), keys[1..].to_vec())
                } else {
                    (keys[..2].to_vec(), keys[1..].to_vec())
                };
                let fwd = forwarder(primary.clone(), secondary.clone());
                let split_ctx = context.child("twin_split");
                let split = |(s, r): (_, commonware_p2p::simulated::Receiver<PublicKey>)| {
                    let (s1, s2) = commonware_p2p::simulated::Sender::split_with(s, fwd.clone());
                    let (r1, r2) = r.split_with(
                        split_ctx.child("router"),
                        router(primary.clone(), secondary.clone()),
                    );
                    ((s1, r1), (s2, r2))
                };
                let ch = net.register(twin).await;
                let (votes_a, votes_b) = split(ch.votes);
                let (certs_a, certs_b) = split(ch.certificates);
                let (resolver_a, resolver_b) = split(ch.resolver);
                let (backfill_a, backfill_b) = split(ch.backfill);
                let (broadcast_a, broadcast_b) = split(ch.broadcast);
                let (txs_a, txs_b) = split(ch.txs);
                let mut twin_a = SimValidator::named(twin, format!("v{twin}a"), MemStore::new());
                let mut twin_b = SimValidator::named(twin, format!("v{twin}b"), MemStore::new());
                let channels_a = Channels {
                    votes: votes_a,
                    certificates: certs_a,
                    resolver: resolver_a,
                    backfill: backfill_a,
                    broadcast: broadcast_a,
                    txs: txs_a,
                };
                let channels_b = Channels {
                    votes: votes_b,
                    certificates: certs_b,
                    resolver: resolver_b,
                    backfill: backfill_b,
                    broadcast: broadcast_b,
                    txs: txs_b,
                };
                net.start_with(&context, &mut twin_a, channels_a).await;
                net.start_with(&context, &mut twin_b, channels_b).await;

                let vs: Vec<_> = honest.iter().collect();
                let mut load = Load::new(&genesis, SENDERS);
                let mut witness = Witness::default();
                load.run(&context, &vs, Duration::from_secs(1), 2).await;
                wait_height(&context, &vs, 5, WITHIN).await;
                witness.observe(&vs, &load.submitted);
                load.run(&context, &vs, Duration::from_secs(1), 2).await;
                wait_height(&context, &vs, witness.height() + 10, WITHIN).await;
                witness.observe(&vs, &load.submitted);
                assert!(!witness.txs.is_empty(), "no transaction became final");
                // A twin that commits a block commits the honest validators' block: a certificate
                // needs two honest signatures beside the twins' one.
                witness.observe(&[&twin_a, &twin_b], &[]);
            });
        },
    );
}
