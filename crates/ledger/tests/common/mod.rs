//! A chain in memory for the ledger's tests: blocks applied with `run` on a `MemTree`, one
//! per call, at a chosen timestamp, with every transaction signed by a key and its next nonce.

#![allow(dead_code)]

use bcte_ledger::{BlockInfo, Execution, MemTree, StateKey, decode_value, exec, run, tree};
use bcte_types::{
    AccountId, Allocation, Amount, ChainId, Genesis, Hash, Height, Outcome, Payload, RejectReason,
    Tx, TxBody, Validator,
};
use commonware_codec::Read;
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use std::collections::HashMap;

/// The genesis time of every test chain (ms).
pub const GENESIS_MS: u64 = 1_700_000_000_000;

pub fn key(seed: u64) -> PrivateKey {
    PrivateKey::from_seed(seed)
}

pub fn account(k: &PrivateKey) -> AccountId {
    AccountId::from_public_key(&k.public_key())
}

/// The keys enrolled at genesis as market participants (sites' owners, aggregators,
/// providers); the others hold no role.
pub const MEMBER_SEEDS: std::ops::RangeInclusive<u64> = 2..=199;

/// The roles of [`MEMBER_SEEDS`].
pub const MEMBER_ROLES: bcte_types::Roles = bcte_types::Roles::of(&[
    bcte_types::Role::Prosumer,
    bcte_types::Role::Consumer,
    bcte_types::Role::Aggregator,
]);

pub struct Chain {
    pub tree: MemTree,
    pub height: Height,
    pub parent: Hash,
    pub time_ms: u64,
    pub chain_id: ChainId,
    nonces: HashMap<AccountId, u64>,
    /// The DSO (the genesis authority).
    pub dso: PrivateKey,
}

impl Chain {
    /// A chain whose authority is `key(1)`, with a market clock of `speed`.
    pub fn new(speed: u32) -> Self {
        let dso = key(1);
        let genesis = Genesis {
            chain_id: ChainId::new("market-test").unwrap(),
            genesis_time_ms: GENESIS_MS,
            validators: vec![Validator {
                name: "v".into(),
                public_key: account(&key(0)),
            }],
            authority: account(&dso),
            registrar: None,
            allocations: std::iter::once(Allocation {
                account: account(&dso),
                amount: Amount(1_000_000),
                roles: bcte_types::Roles::NONE,
            })
            .chain(MEMBER_SEEDS.map(|s| Allocation {
                account: account(&key(s)),
                amount: Amount(0),
                roles: MEMBER_ROLES,
            }))
            .collect(),
            market_clock_speed: speed,
            currency: None,
        };
        let g = exec::genesis(&genesis).unwrap();
        let mut tree = MemTree::new();
        tree.apply(&g.batch);
        Self {
            tree,
            height: Height(0),
            parent: g.block.hash(),
            time_ms: GENESIS_MS,
            chain_id: genesis.chain_id,
            nonces: HashMap::new(),
            dso,
        }
    }

    /// Signs `payload` by `key` with its next nonce.
    pub fn sign(&mut self, key: &PrivateKey, payload: Payload) -> Tx {
        let sender = account(key);
        let nonce = self.nonces.entry(sender).or_insert(0);
        let tx = Tx::sign(
            TxBody {
                chain_id: self.chain_id.clone(),
                sender,
                signer: None,
                nonce: *nonce,
                payload,
            },
            key,
        );
        *nonce += 1;
        tx
    }

    /// Applies a block of `txs` stamped `time_ms` and commits it.
    pub fn block_at(&mut self, time_ms: u64, txs: Vec<Tx>) -> Execution {
        assert!(time_ms > self.time_ms, "blocks move forward in time");
        let info = BlockInfo {
            height: Height(self.height.0 + 1),
            timestamp_ms: time_ms,
            parent: self.parent,
        };
        let executed = run(&self.tree, info, &txs).expect("execution");
        self.tree.apply(&executed.batch);
        self.height = info.height;
        self.time_ms = time_ms;
        // Any distinct value will do as the parent of the next block here.
        self.parent = executed.state_root;
        executed.execution
    }

    /// Applies a block `step_ms` after the last one.
    pub fn block(&mut self, step_ms: u64, txs: Vec<Tx>) -> Execution {
        self.block_at(self.time_ms + step_ms, txs)
    }

    /// Signs and applies one transaction in its own block and returns its outcome.
    pub fn send(&mut self, key: &PrivateKey, payload: Payload) -> Outcome {
        let tx = self.sign(key, payload);
        self.block(1, vec![tx]).receipts[0].outcome.clone()
    }

    /// The decoded value of `key` at the tip.
    pub fn read<T: Read<Cfg = ()>>(&self, key: &StateKey) -> Option<T> {
        tree::read_value(&self.tree, self.height, key)
            .unwrap()
            .map(|b| decode_value::<T>(&b).expect("decodes"))
    }

    /// A site's result in a cleared interval, from its result bucket.
    pub fn site_result(
        &self,
        feeder: &bcte_types::FeederId,
        k: bcte_types::Interval,
        site: &bcte_types::SiteId,
    ) -> Option<bcte_ledger::market_state::SiteResult> {
        let key = StateKey::Results(feeder.clone(), k, bcte_ledger::book_bucket(site));
        self.read::<bcte_ledger::market_state::ResultBucket>(&key)
            .and_then(|b| b.get(site).copied())
    }

    /// A site's bid for an interval, from its bid bucket.
    pub fn bid_of(
        &self,
        feeder: &bcte_types::FeederId,
        k: bcte_types::Interval,
        site: &bcte_types::SiteId,
    ) -> Option<bcte_ledger::market_state::BidRecord> {
        let key = StateKey::Bids(feeder.clone(), k, bcte_ledger::book_bucket(site));
        self.read::<bcte_ledger::market_state::BidBucket>(&key)
            .and_then(|b| b.get(site).cloned())
    }

    /// The state root at the tip.
    pub fn root(&self) -> Hash {
        tree::root_at(&self.tree, self.height).unwrap()
    }
}

#[track_caller]
pub fn accepted(outcome: &Outcome) {
    assert_eq!(outcome, &Outcome::Accepted);
}

#[track_caller]
pub fn rejected(outcome: &Outcome) -> RejectReason {
    match outcome {
        Outcome::Rejected(r) => r.clone(),
        Outcome::Accepted => panic!("expected a rejection"),
    }
}
