//! The fuzz bodies as ordinary tests: the checked-in seed corpus of every cargo-fuzz target, every
//! single-byte mutation and truncation of valid encodings, and random bytes. None may panic.
//!
//! `BCTE_WRITE_SEEDS=1 cargo test -p bcte-ledger --test fuzz_replay` rewrites `fuzz/seeds/`
//! from the valid encodings built here.

use bcte_ledger::{BlockInfo, MemTree, StateKey, exec, fuzzing::check_proof, prove, run};
use bcte_types::{
    AccountId, Allocation, Amount, Block, ChainId, ConsensusContext, Genesis, Hash, Header, Height,
    Payload, Tx, TxBody, Validator,
    fuzzing::{decode_block, decode_tx},
};
use commonware_codec::Encode;
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use proptest::prelude::*;
use std::path::PathBuf;

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn account(k: &PrivateKey) -> AccountId {
    AccountId::from_public_key(&k.public_key())
}

/// A valid bid transaction: a batch of two curves, in point and component form, and a
/// withdrawal.
fn valid_bids() -> Vec<u8> {
    use bcte_types::{
        CurveSpec, FeederId, Interval, Price, SiteId, Watts,
        market::{BidEntry, Bids, RampSpec, StepSpec},
    };
    let a = PrivateKey::from_seed(3);
    let site = |s: &str| SiteId::new(s).unwrap();
    let tx = Tx::sign(
        TxBody {
            chain_id: ChainId::new("fuzz").unwrap(),
            sender: account(&a),
            signer: None,
            nonce: 4,
            payload: Payload::Bids(Bids {
                feeder: FeederId::new("feeder-1").unwrap(),
                bids: vec![
                    BidEntry {
                        site: site("house 7"),
                        interval: Interval(96),
                        curve: Some(CurveSpec::Points(vec![
                            (Price(0), Watts(6_500)),
                            (Price(120_000_000), Watts(2_000)),
                        ])),
                    },
                    BidEntry {
                        site: site("pv-3"),
                        interval: Interval(96),
                        curve: Some(CurveSpec::Components {
                            base: Watts(3_000),
                            steps: vec![StepSpec {
                                price: Price(-10_000_000),
                                drop: Watts(1_000),
                            }],
                            ramps: vec![RampSpec {
                                start: Price(0),
                                end: Price(50_000_000),
                                drop: Watts(500),
                                count: 3,
                            }],
                        }),
                    },
                    BidEntry {
                        site: site("ev-1"),
                        interval: Interval(97),
                        curve: None,
                    },
                ],
            }),
        },
        &a,
    );
    tx.encode().to_vec()
}

/// Valid encodings of a transaction, a block and a proof.
fn valid() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let a = PrivateKey::from_seed(1);
    let chain = ChainId::new("fuzz").unwrap();
    let genesis = Genesis {
        chain_id: chain.clone(),
        genesis_time_ms: 0,
        validators: vec![Validator {
            name: "v".into(),
            public_key: account(&a),
        }],
        authority: account(&a),
        registrar: None,
        allocations: vec![Allocation {
            account: account(&a),
            amount: Amount(100),
            roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
        }],
        market_clock_speed: 1,
        currency: None,
    };
    let g = exec::genesis(&genesis).unwrap();
    let mut tree = MemTree::new();
    tree.apply(&g.batch);
    let tx = Tx::sign(
        TxBody {
            chain_id: chain,
            sender: account(&a),
            signer: None,
            nonce: 0,
            payload: Payload::Transfer {
                to: account(&PrivateKey::from_seed(2)),
                amount: Amount(7),
            },
        },
        &a,
    );
    let info = BlockInfo {
        height: Height(1),
        timestamp_ms: 1,
        parent: g.block.hash(),
    };
    let executed = run(&tree, info, std::slice::from_ref(&tx)).unwrap();
    let header = Header {
        parent: g.block.hash(),
        height: Height(1),
        timestamp_ms: 1,
        context: ConsensusContext::GENESIS,
        tx_root: Hash::from([0; 32]),
        state_root: executed.state_root,
        receipts_root: executed.receipts_root,
    };
    let block = Block::new(header, vec![tx.clone()]);
    tree.apply(&executed.batch);
    let proof = prove(&tree, StateKey::Account(account(&a)), Height(1)).unwrap();
    (
        tx.encode().to_vec(),
        block.encode().to_vec(),
        proof.to_bytes(),
    )
}

fn replay_dir(target: &str, body: fn(&[u8])) -> usize {
    let dir = seeds_dir(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        body(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

fn mutations(valid: &[u8], body: fn(&[u8])) {
    body(valid);
    for cut in 0..valid.len() {
        body(&valid[..cut]);
    }
    for i in 0..valid.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = valid.to_vec();
            m[i] ^= bit;
            body(&m);
        }
    }
    let mut long = valid.to_vec();
    long.push(0);
    body(&long);
}

#[test]
fn seed_corpus_replays_without_panic() {
    let (tx, block, proof) = valid();
    if std::env::var("BCTE_WRITE_SEEDS").is_ok() {
        for (target, name, bytes) in [
            ("decode_tx", "valid", &tx),
            ("decode_tx", "bids", &valid_bids()),
            ("decode_block", "valid", &block),
            ("check_proof", "valid", &proof),
        ] {
            let dir = seeds_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    assert!(replay_dir("decode_tx", decode_tx) > 0);
    assert!(replay_dir("decode_block", decode_block) > 0);
    assert!(replay_dir("check_proof", check_proof) > 0);
}

#[test]
fn every_single_byte_mutation_of_valid_encodings_is_handled() {
    let (tx, block, proof) = valid();
    mutations(&tx, decode_tx);
    mutations(&valid_bids(), decode_tx);
    mutations(&block, decode_block);
    mutations(&proof, check_proof);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_handled(data in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_tx(&data);
        decode_block(&data);
        check_proof(&data);
    }
}
