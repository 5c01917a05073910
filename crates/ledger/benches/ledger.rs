//! Throughput of the state machine and of transaction signature checks.
//!
//! `cargo bench -p bcte-ledger` (see docs/BENCHMARKS.md for recorded figures).

use bcte_ledger::{BlockInfo, MemTree, exec, run};
use bcte_types::{
    AccountId, Allocation, Amount, ChainId, Genesis, Hash, Height, Payload, Tx, TxBody, Validator,
    tx::verify_batch,
};
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::hint::black_box;

const ACCOUNTS: u64 = 10_000;
const BLOCK_TXS: usize = 1_000;

fn chain() -> ChainId {
    ChainId::new("bench").unwrap()
}

struct Fixture {
    keys: Vec<PrivateKey>,
    tree: MemTree,
    genesis_time_ms: u64,
}

fn fixture() -> Fixture {
    let keys: Vec<PrivateKey> = (0..ACCOUNTS).map(PrivateKey::from_seed).collect();
    let genesis = Genesis {
        chain_id: chain(),
        genesis_time_ms: 0,
        validators: vec![Validator {
            name: "v".into(),
            public_key: AccountId::from_public_key(&keys[0].public_key()),
        }],
        authority: AccountId::from_public_key(&keys[0].public_key()),
        registrar: None,
        allocations: keys
            .iter()
            .map(|k| Allocation {
                account: AccountId::from_public_key(&k.public_key()),
                amount: Amount(1_000_000_000),
                roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
            })
            .collect(),
        market_clock_speed: 1,
        currency: None,
    };
    let g = exec::genesis(&genesis).unwrap();
    let mut tree = MemTree::new();
    tree.apply(&g.batch);
    Fixture {
        keys,
        tree,
        genesis_time_ms: 0,
    }
}

/// A block of transfers between random accounts, each sender's first transaction (nonce 0).
fn transfers(f: &Fixture, rng: &mut StdRng) -> Vec<Tx> {
    let mut senders: Vec<u64> = (0..ACCOUNTS).collect();
    for i in 0..BLOCK_TXS {
        let j = rng.random_range(i as u64..ACCOUNTS) as usize;
        senders.swap(i, j);
    }
    senders[..BLOCK_TXS]
        .iter()
        .map(|&s| {
            let to = rng.random_range(0..ACCOUNTS) as usize;
            let key = &f.keys[s as usize];
            Tx::sign(
                TxBody {
                    chain_id: chain(),
                    sender: AccountId::from_public_key(&key.public_key()),
                    signer: None,
                    nonce: 0,
                    payload: Payload::Transfer {
                        to: AccountId::from_public_key(&f.keys[to].public_key()),
                        amount: Amount(rng.random_range(1..1_000)),
                    },
                },
                key,
            )
        })
        .collect()
}

fn bench_apply(c: &mut Criterion) {
    let f = fixture();
    let mut rng = StdRng::seed_from_u64(7);
    let txs = transfers(&f, &mut rng);
    let info = BlockInfo {
        height: Height(1),
        timestamp_ms: f.genesis_time_ms + 1,
        parent: Hash::from([0; 32]),
    };
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.sample_size(20);
    g.bench_function(
        "block_of_1000_transfers_10k_accounts_with_state_root",
        |b| b.iter(|| black_box(run(&f.tree, info, black_box(&txs)).unwrap())),
    );
    g.finish();
}

fn bench_signatures(c: &mut Criterion) {
    let f = fixture();
    let mut rng = StdRng::seed_from_u64(8);
    let txs = transfers(&f, &mut rng);
    let chain = chain();
    let mut g = c.benchmark_group("signatures");
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.sample_size(20);
    g.bench_function("verify_1000_one_by_one", |b| {
        b.iter(|| {
            for tx in &txs {
                tx.verify(&chain).unwrap();
            }
        })
    });
    g.bench_function("verify_1000_batched", |b| {
        b.iter_batched(
            || StdRng::seed_from_u64(9),
            |mut r| verify_batch(black_box(&txs), &chain, &mut r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_signatures);
criterion_main!(benches);
