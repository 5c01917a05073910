//! Both stores keep the same promises: ordered reads, atomic batches, nothing half-written.

use bcte_ledger::{MemTree, StateKey, tree};
use bcte_store::{Batch, ChainStore, CommitBlock, MemStore, RedbStore, Store, StoreError, Table};
use bcte_types::{
    AccountId, Allocation, Amount, Block, BlockLimits, ChainId, ConsensusContext, Genesis, Hash,
    Header, Height, Outcome, Payload, RejectReason, Tx, TxBody, Validator,
};
use commonware_cryptography::{Signer, ed25519::PrivateKey};

fn exercise_kv(store: &impl Store) {
    let mut b = Batch::new();
    b.put(Table::Meta, b"a".to_vec(), b"1".to_vec());
    b.put(Table::Meta, b"c".to_vec(), b"3".to_vec());
    b.put(Table::Blocks, b"b".to_vec(), b"x".to_vec());
    store.commit(b).unwrap();
    assert_eq!(store.get(Table::Meta, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(Table::Meta, b"b").unwrap(), None);
    assert_eq!(
        store.last_in(Table::Meta, b"a", b"b").unwrap(),
        Some((b"a".to_vec(), b"1".to_vec()))
    );
    assert_eq!(store.last_in(Table::Meta, b"d", b"z").unwrap(), None);
    let all = store.scan(Table::Meta, b"", 10).unwrap();
    assert_eq!(all.len(), 2, "tables are separate");
    let mut b = Batch::new();
    b.delete(Table::Meta, b"a".to_vec());
    store.commit(b).unwrap();
    assert_eq!(store.get(Table::Meta, b"a").unwrap(), None);
}

#[test]
fn table_indexes_follow_all() {
    for (i, t) in Table::ALL.iter().enumerate() {
        assert_eq!(t.index(), i);
    }
}

#[test]
fn mem_store_keeps_the_kv_promises() {
    exercise_kv(&MemStore::new());
}

#[test]
fn redb_store_keeps_the_kv_promises_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.redb");
    exercise_kv(&RedbStore::open(&path).unwrap());
    let reopened = RedbStore::open(&path).unwrap();
    assert_eq!(
        reopened.get(Table::Meta, b"c").unwrap(),
        Some(b"3".to_vec())
    );
}

#[test]
fn an_injected_commit_failure_writes_nothing() {
    let store = MemStore::new();
    store.fail_commit(1);
    let mut b = Batch::new();
    b.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
    assert!(matches!(
        store.commit(b.clone()),
        Err(StoreError::Injected(1))
    ));
    assert_eq!(store.get(Table::Meta, b"k").unwrap(), None);
    store.commit(b).unwrap();
    assert_eq!(store.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
}

fn key(seed: u64) -> PrivateKey {
    PrivateKey::from_seed(seed)
}

fn account(seed: u64) -> AccountId {
    AccountId::from_public_key(&key(seed).public_key())
}

fn genesis(chain: &str) -> Genesis {
    Genesis {
        chain_id: ChainId::new(chain).unwrap(),
        genesis_time_ms: 10,
        validators: vec![Validator {
            name: "v".into(),
            public_key: account(9),
        }],
        authority: account(8),
        registrar: None,
        allocations: vec![Allocation {
            account: account(1),
            amount: Amount(100),
            roles: bcte_types::Roles::one(bcte_types::Role::Prosumer),
        }],
        market_clock_speed: 1,
        currency: None,
    }
}

/// Builds, executes and commits one block of `txs` on `chain`, and returns it.
fn commit_next<S: Store>(chain: &ChainStore<S>, txs: Vec<Tx>) -> Block {
    try_commit_next(chain, txs).unwrap()
}

fn try_commit_next<S: Store>(chain: &ChainStore<S>, txs: Vec<Tx>) -> Result<Block, StoreError> {
    let height = chain.height().unwrap().unwrap();
    let parent = chain.block(height).unwrap().unwrap();
    let info = bcte_ledger::BlockInfo {
        height: height.next().unwrap(),
        timestamp_ms: parent.header().timestamp_ms + 1,
        parent: parent.hash(),
    };
    let executed = bcte_ledger::run(chain, info, &txs).unwrap();
    let header = Header {
        parent: parent.hash(),
        height: info.height,
        timestamp_ms: info.timestamp_ms,
        context: ConsensusContext::GENESIS,
        tx_root: Hash::from([0; 32]),
        state_root: executed.state_root,
        receipts_root: executed.receipts_root,
    };
    let block = Block::new(header, txs);
    chain
        .commit_block(CommitBlock {
            block: &block,
            receipts: &executed.execution.receipts,
            writes: &executed.execution.writes,
            tree: &executed.batch,
            certificate: Some(b"cert"),
        })
        .map(|()| block)
}

fn transfer(nonce: u64, amount: u64) -> Tx {
    Tx::sign(
        TxBody {
            chain_id: ChainId::new("store-test").unwrap(),
            sender: account(1),
            signer: None,
            nonce,
            payload: Payload::Transfer {
                to: account(2),
                amount: Amount(amount),
            },
        },
        &key(1),
    )
}

#[test]
fn chain_store_commits_blocks_receipts_index_and_state_together() {
    let chain = ChainStore::new(MemStore::new(), BlockLimits::default());
    let g = chain.init(&genesis("store-test")).unwrap();
    assert_eq!(chain.height().unwrap(), Some(Height(0)));
    assert_eq!(chain.block(Height(0)).unwrap().unwrap(), g.block);

    let ok = transfer(0, 10);
    let block = commit_next(&chain, vec![ok.clone(), ok.clone()]);
    assert_eq!(chain.height().unwrap(), Some(Height(1)));
    assert_eq!(chain.block(Height(1)).unwrap().unwrap(), block);
    assert_eq!(chain.height_of(&block.hash()).unwrap(), Some(Height(1)));
    assert_eq!(
        chain.certificate(Height(1)).unwrap(),
        Some(b"cert".to_vec())
    );
    let receipts = chain.receipts(Height(1)).unwrap().unwrap();
    assert_eq!(receipts[0].outcome, Outcome::Accepted);
    assert_eq!(
        receipts[1].outcome,
        Outcome::Rejected(RejectReason::BadNonce {
            expected: 1,
            got: 0
        })
    );
    // The accepted inclusion is the one the index keeps, even though a replay followed it.
    let loc = chain.tx_location(&ok.hash()).unwrap().unwrap();
    assert_eq!((loc.height, loc.index, loc.accepted), (Height(1), 0, true));
    // A later replay in another block does not displace it either.
    commit_next(&chain, vec![ok.clone()]);
    let loc = chain.tx_location(&ok.hash()).unwrap().unwrap();
    assert_eq!((loc.height, loc.index, loc.accepted), (Height(1), 0, true));

    // The store's tree gives the header's roots and the same values as an in-memory replay.
    assert_eq!(
        tree::root_at(&chain, Height(1)).unwrap(),
        block.header().state_root
    );
    let v = tree::read_value(&chain, Height(1), &StateKey::Account(account(2))).unwrap();
    assert!(v.is_some());
    let mut mem = MemTree::new();
    mem.apply(&g.batch);
    assert_eq!(
        tree::root_at(&mem, Height(0)).unwrap(),
        g.block.header().state_root
    );
    assert_eq!(
        chain
            .preimage(&StateKey::Account(account(2)).tree_key())
            .unwrap(),
        Some(StateKey::Account(account(2)))
    );
}

#[test]
fn a_data_dir_refuses_another_chain() {
    let chain = ChainStore::new(MemStore::new(), BlockLimits::default());
    chain.init(&genesis("store-test")).unwrap();
    chain.init(&genesis("store-test")).unwrap();
    let err = chain.init(&genesis("other")).unwrap_err();
    assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
}

#[test]
fn a_failed_block_commit_leaves_the_previous_block_and_state_intact() {
    let mem = MemStore::new();
    let chain = ChainStore::new(mem.clone(), BlockLimits::default());
    chain.init(&genesis("store-test")).unwrap();
    let first = commit_next(&chain, vec![transfer(0, 1)]);
    mem.fail_commit(1);
    let err = try_commit_next(&chain, vec![transfer(1, 1)]).unwrap_err();
    assert!(matches!(err, StoreError::Injected(_)), "{err}");
    assert_eq!(chain.height().unwrap(), Some(Height(1)));
    assert_eq!(chain.block(Height(2)).unwrap(), None);
    assert_eq!(
        tree::root_at(&chain, Height(1)).unwrap(),
        first.header().state_root
    );
    assert!(tree::root_at(&chain, Height(2)).is_err());
}

#[test]
fn redb_chain_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bcte.redb");
    let root = {
        let chain = ChainStore::new(RedbStore::open(&path).unwrap(), BlockLimits::default());
        chain.init(&genesis("store-test")).unwrap();
        commit_next(&chain, vec![transfer(0, 5)])
            .header()
            .state_root
    };
    let chain = ChainStore::new(RedbStore::open(&path).unwrap(), BlockLimits::default());
    chain.init(&genesis("store-test")).unwrap();
    assert_eq!(chain.height().unwrap(), Some(Height(1)));
    assert_eq!(tree::root_at(&chain, Height(1)).unwrap(), root);
}
