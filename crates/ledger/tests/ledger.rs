//! The state machine end to end: genesis, execution rules, block validity, roots and proofs.

use bcte_ledger::{
    AccountState, BlockInfo, Executed, InvalidBlock, MemTree, StateKey, StateProof, exec, prove,
    run, tree, verify_block,
};
use bcte_types::{
    AccountId, Allocation, Amount, Block, ChainId, ConsensusContext, Genesis, Hash, Header, Height,
    Outcome, Payload, RejectReason, Role, Roles, Tx, TxBody, TxKind, Validator,
};
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

fn key(seed: u64) -> PrivateKey {
    PrivateKey::from_seed(seed)
}

fn account(seed: u64) -> AccountId {
    AccountId::from_public_key(&key(seed).public_key())
}

const AUTHORITY: u64 = 100;

fn chain() -> ChainId {
    ChainId::new("ledger-test").unwrap()
}

fn genesis_doc() -> Genesis {
    Genesis {
        chain_id: chain(),
        genesis_time_ms: 1_000,
        validators: vec![Validator {
            name: "v0".into(),
            public_key: account(200),
        }],
        authority: account(AUTHORITY),
        registrar: None,
        allocations: (1..=3)
            .map(|s| Allocation {
                account: account(s),
                amount: Amount(1_000),
                roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
            })
            .collect(),
        market_clock_speed: 1,
        currency: None,
    }
}

fn tx(from: u64, nonce: u64, payload: Payload) -> Tx {
    let body = TxBody {
        chain_id: chain(),
        sender: account(from),
        signer: None,
        nonce,
        payload,
    };
    Tx::sign(body, &key(from))
}

fn transfer(from: u64, nonce: u64, to: u64, amount: u64) -> Tx {
    tx(
        from,
        nonce,
        Payload::Transfer {
            to: account(to),
            amount: Amount(amount),
        },
    )
}

/// A chain in memory: the committed tree and the last header.
struct Chain {
    tree: MemTree,
    head: Header,
}

impl Chain {
    fn new() -> Self {
        let g = exec::genesis(&genesis_doc()).unwrap();
        let mut tree = MemTree::new();
        tree.apply(&g.batch);
        Self {
            tree,
            head: *g.block.header(),
        }
    }

    /// Builds the next block the way a proposer does, commits it and returns it with its result.
    fn propose(&mut self, txs: Vec<Tx>) -> (Block, Executed) {
        let info = BlockInfo {
            height: self.head.height.next().unwrap(),
            timestamp_ms: self.head.timestamp_ms + 500,
            parent: self.head.hash(),
        };
        let executed = run(&self.tree, info, &txs).unwrap();
        let header = Header {
            parent: info.parent,
            height: info.height,
            timestamp_ms: info.timestamp_ms,
            context: ConsensusContext::GENESIS,
            tx_root: Hash::from([0; 32]),
            state_root: executed.state_root,
            receipts_root: executed.receipts_root,
        };
        let block = Block::new(header, txs);
        (block, executed)
    }

    fn commit(&mut self, block: &Block, executed: &Executed) {
        self.tree.apply(&executed.batch);
        self.head = *block.header();
    }

    fn step(&mut self, txs: Vec<Tx>) -> Vec<Outcome> {
        let (block, executed) = self.propose(txs);
        // Every block a proposer builds passes full verification by another validator.
        let check = verify_block(
            &self.tree,
            &self.head,
            &block,
            &chain(),
            &mut StdRng::seed_from_u64(1),
        )
        .expect("proposed block verifies");
        assert_eq!(check.state_root, executed.state_root);
        self.commit(&block, &executed);
        executed
            .execution
            .receipts
            .into_iter()
            .map(|r| r.outcome)
            .collect()
    }

    fn account(&self, seed: u64) -> AccountState {
        let bytes = tree::read_value(
            &self.tree,
            self.head.height,
            &StateKey::Account(account(seed)),
        )
        .unwrap();
        bytes
            .map(|b| exec::decode_account(&b).unwrap())
            .unwrap_or_default()
    }

    fn supply(&self) -> u64 {
        let bytes = tree::read_value(&self.tree, self.head.height, &StateKey::Supply)
            .unwrap()
            .unwrap();
        u64::from_be_bytes(bytes.try_into().unwrap())
    }
}

#[test]
fn genesis_funds_allocations_and_sets_supply() {
    let c = Chain::new();
    assert_eq!(c.head.height, Height(0));
    assert_eq!(
        c.account(1),
        AccountState {
            balance: Amount(1_000),
            nonce: 0,
            roles: Roles::one(Role::Prosumer),
            ..AccountState::default()
        }
    );
    assert_eq!(c.supply(), 3_000);
}

#[test]
fn transfer_moves_money_and_consumes_the_nonce() {
    let mut c = Chain::new();
    assert_eq!(
        c.step(vec![transfer(1, 0, 9, 250)]),
        vec![Outcome::Accepted]
    );
    assert_eq!(
        c.account(1),
        AccountState {
            balance: Amount(750),
            nonce: 1,
            roles: Roles::one(Role::Prosumer),
            ..AccountState::default()
        }
    );
    assert_eq!(
        c.account(9),
        AccountState {
            balance: Amount(250),
            nonce: 0,
            ..AccountState::default()
        }
    );
    assert_eq!(c.supply(), 3_000);
}

#[test]
fn replayed_and_skipped_nonces_are_rejected_without_effect() {
    let mut c = Chain::new();
    let first = transfer(1, 0, 9, 10);
    c.step(vec![first.clone()]);
    let outcomes = c.step(vec![first, transfer(1, 5, 9, 10)]);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Rejected(RejectReason::BadNonce {
                expected: 1,
                got: 0
            }),
            Outcome::Rejected(RejectReason::BadNonce {
                expected: 1,
                got: 5
            }),
        ]
    );
    assert_eq!(
        c.account(1),
        AccountState {
            balance: Amount(990),
            nonce: 1,
            roles: Roles::one(Role::Prosumer),
            ..AccountState::default()
        }
    );
}

#[test]
fn overdraft_is_rejected_but_consumes_the_nonce_so_it_can_never_apply_later() {
    let mut c = Chain::new();
    let overdraft = transfer(1, 0, 9, 5_000);
    assert_eq!(
        c.step(vec![overdraft.clone()]),
        vec![Outcome::Rejected(RejectReason::InsufficientBalance {
            balance: Amount(1_000),
            needed: Amount(5_000)
        })]
    );
    assert_eq!(c.account(1).nonce, 1);
    // Funding the account afterwards does not revive the rejected transaction.
    c.step(vec![transfer(2, 0, 1, 1_000), transfer(3, 0, 1, 1_000)]);
    assert_eq!(
        c.step(vec![overdraft]),
        vec![Outcome::Rejected(RejectReason::BadNonce {
            expected: 1,
            got: 0
        })]
    );
}

#[test]
fn unknown_sender_holds_no_role_and_may_only_receive() {
    // AC-1.2: an account nobody enrolled may receive, not send.
    let mut c = Chain::new();
    assert_eq!(
        c.step(vec![transfer(42, 0, 1, 1)]),
        vec![Outcome::Rejected(RejectReason::MissingRole {
            kind: TxKind::Transfer,
            needs: Roles::of(&[Role::Dso, Role::Aggregator, Role::Prosumer, Role::Consumer])
        })]
    );
    assert_eq!(c.step(vec![transfer(1, 0, 42, 5)]), vec![Outcome::Accepted]);
    assert_eq!(c.account(42).balance, Amount(5));
    // A member with no money is refused for its balance.
    assert_eq!(
        c.step(vec![transfer(2, 0, 1, 5_000)]),
        vec![Outcome::Rejected(RejectReason::InsufficientBalance {
            balance: Amount(1_000),
            needed: Amount(5_000)
        })]
    );
}

#[test]
fn zero_amounts_and_self_transfers() {
    let mut c = Chain::new();
    assert_eq!(
        c.step(vec![transfer(1, 0, 9, 0)]),
        vec![Outcome::Rejected(RejectReason::ZeroAmount)]
    );
    assert_eq!(c.step(vec![transfer(1, 1, 1, 10)]), vec![Outcome::Accepted]);
    assert_eq!(
        c.account(1),
        AccountState {
            balance: Amount(1_000),
            nonce: 2,
            roles: Roles::one(Role::Prosumer),
            ..AccountState::default()
        }
    );
}

#[test]
fn only_the_authority_mints_and_burns_and_supply_follows() {
    let mut c = Chain::new();
    let outcomes = c.step(vec![
        tx(
            1,
            0,
            Payload::Mint {
                to: account(1),
                amount: Amount(5),
            },
        ),
        tx(
            AUTHORITY,
            0,
            Payload::Mint {
                to: account(7),
                amount: Amount(500),
            },
        ),
        tx(1, 1, Payload::Burn { amount: Amount(5) }),
        tx(AUTHORITY, 1, Payload::Burn { amount: Amount(1) }),
    ]);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Rejected(RejectReason::MissingRole {
                kind: TxKind::Mint,
                needs: Roles::one(Role::Dso)
            }),
            Outcome::Accepted,
            Outcome::Rejected(RejectReason::MissingRole {
                kind: TxKind::Burn,
                needs: Roles::one(Role::Dso)
            }),
            Outcome::Rejected(RejectReason::InsufficientBalance {
                balance: Amount(0),
                needed: Amount(1)
            }),
        ]
    );
    assert_eq!(c.supply(), 3_500);
    c.step(vec![
        transfer(1, 2, AUTHORITY, 200),
        tx(
            AUTHORITY,
            2,
            Payload::Burn {
                amount: Amount(200),
            },
        ),
    ]);
    assert_eq!(c.supply(), 3_300);
    assert_eq!(c.account(AUTHORITY).balance, Amount(0));
}

#[test]
fn mint_overflowing_the_supply_is_rejected() {
    let mut c = Chain::new();
    let outcomes = c.step(vec![tx(
        AUTHORITY,
        0,
        Payload::Mint {
            to: account(1),
            amount: Amount(u64::MAX),
        },
    )]);
    assert_eq!(outcomes, vec![Outcome::Rejected(RejectReason::Overflow)]);
    assert_eq!(c.supply(), 3_000);
}

#[test]
fn a_block_with_a_bad_signature_or_foreign_chain_is_invalid() {
    let mut c = Chain::new();
    let good = transfer(1, 0, 9, 1);
    let mut body = good.body().clone();
    body.nonce = 1;
    let forged = Tx::from_body_and_signature(body, good.signature().clone());
    let (block, _) = c.propose(vec![good.clone(), forged]);
    let err = verify_block(
        &c.tree,
        &c.head,
        &block,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(
        matches!(err, InvalidBlock::BadTransaction { index: 1, .. }),
        "{err}"
    );

    let foreign = Tx::sign(
        TxBody {
            chain_id: ChainId::new("other").unwrap(),
            sender: account(1),
            signer: None,
            nonce: 0,
            payload: Payload::Burn { amount: Amount(1) },
        },
        &key(1),
    );
    let (block, _) = c.propose(vec![foreign]);
    let err = verify_block(
        &c.tree,
        &c.head,
        &block,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(
        matches!(err, InvalidBlock::BadTransaction { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn signatures_checked_before_are_skipped_and_the_others_still_checked() {
    let mut c = Chain::new();
    let a = transfer(1, 0, 9, 1);
    let b = transfer(2, 0, 9, 1);
    let mut body = b.body().clone();
    body.nonce = 1;
    let forged = Tx::from_body_and_signature(body, b.signature().clone());
    let (block, _) = c.propose(vec![a.clone(), b.clone(), forged.clone()]);
    let rng = &mut StdRng::seed_from_u64(0);
    // What the caller vouches for is not checked again (here, wrongly, even the forgery)...
    assert!(
        exec::verify_block_with(&c.tree, &c.head, &block, &chain(), rng, |_| true, &mut ()).is_ok()
    );
    // ...and skipping the first two still finds the forgery, at its own index.
    let err = exec::verify_block_with(
        &c.tree,
        &c.head,
        &block,
        &chain(),
        rng,
        |tx| tx.hash() == a.hash() || tx.hash() == b.hash(),
        &mut (),
    )
    .unwrap_err();
    assert!(
        matches!(err, InvalidBlock::BadTransaction { index: 2, .. }),
        "{err}"
    );
    // A valid block verifies the same with or without skipping.
    let (block, _) = c.propose(vec![a.clone(), b.clone()]);
    let skipped = exec::verify_block_with(
        &c.tree,
        &c.head,
        &block,
        &chain(),
        rng,
        |tx| tx.hash() == a.hash(),
        &mut (),
    )
    .unwrap();
    let full = verify_block(&c.tree, &c.head, &block, &chain(), rng).unwrap();
    assert_eq!(skipped.state_root, full.state_root);
}

#[test]
fn a_block_with_a_wrong_root_or_link_is_invalid() {
    let mut c = Chain::new();
    let (block, _) = c.propose(vec![transfer(1, 0, 9, 1)]);
    let mut header = *block.header();
    header.state_root = Hash::from([0xee; 32]);
    let bad = Block::new(header, block.txs().to_vec());
    let err = verify_block(
        &c.tree,
        &c.head,
        &bad,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(matches!(err, InvalidBlock::StateRoot { .. }), "{err}");

    let mut header = *block.header();
    header.receipts_root = Hash::from([0xee; 32]);
    let bad = Block::new(header, block.txs().to_vec());
    let err = verify_block(
        &c.tree,
        &c.head,
        &bad,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(matches!(err, InvalidBlock::ReceiptsRoot { .. }), "{err}");

    let mut header = *block.header();
    header.timestamp_ms = c.head.timestamp_ms;
    let bad = Block::new(header, block.txs().to_vec());
    let err = verify_block(
        &c.tree,
        &c.head,
        &bad,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(
        matches!(err, InvalidBlock::TimestampNotIncreasing { .. }),
        "{err}"
    );

    let mut header = *block.header();
    header.height = Height(5);
    let bad = Block::new(header, block.txs().to_vec());
    let err = verify_block(
        &c.tree,
        &c.head,
        &bad,
        &chain(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert!(matches!(err, InvalidBlock::WrongHeight { .. }), "{err}");
}

#[test]
fn proofs_of_presence_and_absence_check_against_the_root_of_their_height() {
    let mut c = Chain::new();
    c.step(vec![transfer(1, 0, 9, 250)]);
    let root1 = c.head.state_root;
    c.step(vec![transfer(1, 1, 9, 250)]);
    let root2 = c.head.state_root;

    let present = prove(&c.tree, StateKey::Account(account(9)), Height(1)).unwrap();
    assert_eq!(present.height, Height(1));
    assert!(present.value.is_some());
    present.verify(&root1).unwrap();
    assert!(
        present.verify(&root2).is_err(),
        "a proof speaks only for its own height"
    );

    let absent = prove(&c.tree, StateKey::Account(account(55)), Height(2)).unwrap();
    assert_eq!(absent.value, None);
    absent.verify(&root2).unwrap();

    let bytes = present.to_bytes();
    assert_eq!(StateProof::from_bytes(&bytes).unwrap(), present);
}

#[test]
fn altered_values_altered_proofs_and_wrong_roots_are_refused() {
    let mut c = Chain::new();
    c.step(vec![transfer(1, 0, 9, 250)]);
    let root = c.head.state_root;
    let proof = prove(&c.tree, StateKey::Account(account(9)), Height(1)).unwrap();
    proof.verify(&root).unwrap();

    // An altered value.
    let mut altered = proof.clone();
    let mut v = altered.value.clone().unwrap();
    v[7] ^= 1;
    altered.value = Some(v);
    assert!(altered.verify(&root).is_err());

    // A claim of absence for a present key.
    let mut absent = proof.clone();
    absent.value = None;
    assert!(absent.verify(&root).is_err());

    // A wrong root.
    assert!(proof.verify(&Hash::from([0x11; 32])).is_err());

    // Any single flipped byte in the encoded proof is refused, at parse or at check. A client
    // checks a proof against the root of the height the proof names; only height 1 is known.
    let root_of = |h: Height| (h == Height(1)).then_some(root);
    let bytes = proof.to_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        if let Ok(p) = StateProof::from_bytes(&b) {
            let accepted = root_of(p.height).is_some_and(|r| p.verify(&r).is_ok());
            assert!(!accepted, "flip at byte {i} passed");
        }
    }
}

#[test]
fn the_same_blocks_give_the_same_roots() {
    let blocks = vec![
        vec![transfer(1, 0, 9, 3), transfer(2, 0, 9, 4)],
        vec![tx(
            AUTHORITY,
            0,
            Payload::Mint {
                to: account(2),
                amount: Amount(7),
            },
        )],
        vec![],
    ];
    let mut a = Chain::new();
    let mut b = Chain::new();
    for txs in blocks {
        a.step(txs.clone());
        b.step(txs);
        assert_eq!(a.head.state_root, b.head.state_root);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Transfer { from: u64, to: u64, amount: u64 },
    Mint { to: u64, amount: u64 },
    Burn { amount: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6, 1u64..8, 0u64..1_500).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        1 => (1u64..8, 0u64..500).prop_map(|(to, amount)| Op::Mint { to, amount }),
        1 => (0u64..300).prop_map(|amount| Op::Burn { amount }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the transactions, the sum of all balances equals the supply after every block,
    /// and the supply moves only by accepted mints and burns.
    #[test]
    fn balances_always_sum_to_the_supply(blocks in prop::collection::vec(prop::collection::vec(op(), 0..6), 1..6)) {
        let mut c = Chain::new();
        let mut nonces = std::collections::HashMap::<u64, u64>::new();
        for ops in blocks {
            let txs: Vec<Tx> = ops
                .iter()
                .map(|op| {
                    let (from, payload) = match *op {
                        Op::Transfer { from, to, amount } => {
                            (from, Payload::Transfer { to: account(to), amount: Amount(amount) })
                        }
                        Op::Mint { to, amount } => {
                            (AUTHORITY, Payload::Mint { to: account(to), amount: Amount(amount) })
                        }
                        Op::Burn { amount } => (AUTHORITY, Payload::Burn { amount: Amount(amount) }),
                    };
                    let n = nonces.entry(from).or_default();
                    let t = tx(from, *n, payload);
                    *n += 1;
                    t
                })
                .collect();
            c.step(txs);
            let total: u64 = (1..8).chain([AUTHORITY]).map(|s| c.account(s).balance.get()).sum();
            prop_assert_eq!(total, c.supply());
        }
    }
}
