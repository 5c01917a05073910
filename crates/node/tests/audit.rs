//! The offline audit: an intact data directory passes; every kind of tampering is reported with
//! the block (and transaction) it concerns; random damage never makes the audit panic.

use bcte_ledger::StateKey;
use bcte_node::{
    audit::{AuditFailure, audit},
    executor::Executor,
};
use bcte_sim as sim;
use bcte_store::{ChainStore, RedbStore, Store, Table, chain::value_key_bytes};
use bcte_types::{BlockLimits, ConsensusContext, Tx};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};

/// Builds a data directory of `blocks` blocks with a few transfers each (no certificates: the
/// certificate checks are exercised on real chains by the CLI tests).
fn build_chain(dir: &Path, blocks: u64) {
    let genesis = sim::genesis(1, 4);
    let chain = ChainStore::new(
        RedbStore::open(dir.join("bcte.redb")).unwrap(),
        BlockLimits::default(),
    );
    chain.init(&genesis).unwrap();
    let ex = Executor::new(chain, genesis.chain_id.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut nonces = [0u64; 4];
    for h in 1..=blocks {
        let mut txs: Vec<Tx> = Vec::new();
        for from in 0..4u64 {
            if (h + from) % 2 == 0 {
                txs.push(sim::transfer(
                    &genesis,
                    from,
                    nonces[from as usize],
                    (from + 1) % 4,
                    10 + h,
                ));
                nonces[from as usize] += 1;
            }
        }
        // A replayed transaction, rejected: receipts must record both outcomes.
        if h == 3 {
            txs.push(sim::transfer(&genesis, 0, 0, 1, 1));
        }
        let tip = ex.tip();
        let p = ex
            .build(
                &tip.hash,
                tip.header.timestamp_ms + 10,
                ConsensusContext::GENESIS,
                txs,
            )
            .unwrap();
        ex.finalize(p.block.clone(), None, &mut rng).unwrap();
    }
}

/// Copies `src` to a fresh directory and applies `tamper` to its store.
fn tampered(src: &Path, tamper: impl FnOnce(&RedbStore)) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("bcte.redb"), dst.path().join("bcte.redb")).unwrap();
    let store = RedbStore::open(dst.path().join("bcte.redb")).unwrap();
    tamper(&store);
    drop(store);
    dst
}

/// Flips one byte of the value of `key` in `table`.
fn flip(store: &RedbStore, table: Table, key: &[u8], at: usize) {
    let mut v = store
        .get(table, key)
        .unwrap()
        .expect("entry to tamper with exists");
    let i = at.min(v.len() - 1);
    v[i] ^= 0x01;
    let mut b = bcte_store::Batch::new();
    b.put(table, key.to_vec(), v);
    store.commit(b).unwrap();
}

fn expect_block(dir: &Path, height: u64) -> AuditFailure {
    let failure = audit(dir).expect_err("tampering must be found");
    match &failure {
        AuditFailure::Block { height: h, .. } => assert_eq!(*h, height, "{failure}"),
        other => panic!("expected block {height} to be named, got: {other}"),
    }
    failure
}

fn chain(blocks: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), blocks);
    dir
}

#[test]
fn an_intact_chain_passes() {
    let dir = chain(8);
    let report = audit(dir.path()).unwrap();
    assert_eq!(report.height, 8);
    assert!(report.txs >= 16);
}

#[test]
fn a_changed_byte_in_a_stored_block_is_found_and_named() {
    let dir = chain(8);
    // A byte in a transaction's signature, in its amount, and in the header's timestamp.
    for at in [400, 300, 40] {
        let t = tampered(dir.path(), |s| {
            flip(s, Table::Blocks, &5u64.to_be_bytes(), at)
        });
        expect_block(t.path(), 5);
    }
}

#[test]
fn a_changed_byte_in_a_receipt_is_found_and_names_block_and_transaction() {
    let dir = chain(8);
    // Receipts of block 3: count (1 byte), then per receipt the tx hash (32), an outcome tag
    // and, when rejected, the reason. Flip the second receipt's outcome tag.
    let t = tampered(dir.path(), |s| {
        let v = s
            .get(Table::Receipts, &3u64.to_be_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(v[33], 0, "the first receipt of block 3 is an acceptance");
        let first_len = 32 + 1;
        flip(s, Table::Receipts, &3u64.to_be_bytes(), 1 + first_len + 32);
    });
    let failure = expect_block(t.path(), 3);
    assert!(
        matches!(failure, AuditFailure::Block { tx: Some(1), .. })
            || failure.to_string().contains("receipts unreadable"),
        "{failure}"
    );
}

#[test]
fn a_changed_byte_in_a_state_value_is_found_and_names_the_block_that_wrote_it() {
    let dir = chain(8);
    let key = StateKey::Account(bcte_types::AccountId::from_public_key(
        &commonware_cryptography::Signer::public_key(&sim::account_key(1)),
    ));
    // Account 1 receives in every even block; its value at version 6 was written by block 6.
    let t = tampered(dir.path(), |s| {
        flip(
            s,
            Table::TreeValues,
            &value_key_bytes(&key.tree_key(), 6),
            8,
        )
    });
    let failure = expect_block(t.path(), 6);
    assert!(
        failure.to_string().contains("state value of account/"),
        "{failure}"
    );
}

#[test]
fn a_changed_tree_node_a_moved_index_entry_and_extra_data_are_found() {
    let dir = chain(6);
    let t = tampered(dir.path(), |s| {
        let nodes = s.scan(Table::TreeNodes, &[], usize::MAX).unwrap();
        let (key, _) = nodes.last().unwrap().clone();
        flip(s, Table::TreeNodes, &key, 10);
    });
    assert!(audit(t.path()).is_err());

    let t = tampered(dir.path(), |s| {
        let (hash, mut loc) = s.scan(Table::TxIndex, &[], 1).unwrap().remove(0);
        loc[11] ^= 1;
        let mut b = bcte_store::Batch::new();
        b.put(Table::TxIndex, hash, loc);
        s.commit(b).unwrap();
    });
    assert!(
        audit(t.path())
            .unwrap_err()
            .to_string()
            .contains("transaction index")
    );

    let t = tampered(dir.path(), |s| {
        let mut b = bcte_store::Batch::new();
        b.put(Table::Receipts, 99u64.to_be_bytes().to_vec(), vec![0]);
        s.commit(b).unwrap();
    });
    let err = audit(t.path()).unwrap_err();
    assert!(err.to_string().contains("table receipts holds"), "{err}");
}

#[test]
fn a_removed_block_is_found() {
    let dir = chain(6);
    let t = tampered(dir.path(), |s| {
        let mut b = bcte_store::Batch::new();
        b.delete(Table::Blocks, 4u64.to_be_bytes().to_vec());
        s.commit(b).unwrap();
    });
    expect_block(t.path(), 4);
}

/// Every entry of every table of the data file at `path`.
fn dump(path: &Path) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let store = RedbStore::open(path).unwrap();
    Table::ALL
        .iter()
        .flat_map(|t| {
            store
                .scan(*t, &[], usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (*t, k, v))
        })
        .collect()
}

/// Flips one random bit at each of `cases` offsets drawn by `pick`, each in its own copy of the
/// file, and returns how many the audit reported. Panics if the audit panics, reports damage in
/// a way that names neither a block of the chain nor the file, or passes a file whose stored
/// data differs from the original's.
fn flip_bits(
    original: &[u8],
    cases: usize,
    seed: u64,
    pick: impl Fn(&mut StdRng) -> usize,
) -> usize {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("bcte.redb"), original).unwrap();
    let stored = dump(&source.path().join("bcte.redb"));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reported = 0;
    for _ in 0..cases {
        let t = tempfile::tempdir().unwrap();
        let mut bytes = original.to_vec();
        let at = pick(&mut rng);
        bytes[at] ^= 1 << rng.random_range(0..8u32);
        let path: PathBuf = t.path().join("bcte.redb");
        std::fs::write(&path, &bytes).unwrap();
        match audit(t.path()) {
            // An undetected flip must have hit bytes that hold no stored data.
            Ok(report) => {
                assert_eq!(report.height, 6);
                assert!(
                    dump(&path) == stored,
                    "undetected damage changed stored data (offset {at})"
                );
            }
            Err(AuditFailure::File { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(!reason.is_empty());
                reported += 1;
            }
            Err(AuditFailure::Block { height, .. }) => {
                assert!(height <= 6);
                reported += 1;
            }
        }
    }
    reported
}

#[test]
fn random_damage_to_the_file_never_panics_and_is_reported_or_harmless() {
    let dir = chain(6);
    let original = std::fs::read(dir.path().join("bcte.redb")).unwrap();
    // Anywhere in the file: much of a young redb file is allocated but unused space.
    let len = original.len();
    let anywhere = flip_bits(&original, 100, 42, |rng| rng.random_range(0..len));
    assert!(anywhere > 0, "no flip anywhere in the file was reported");
    // Non-zero bytes: stored data, but also stale copies of pages that earlier commits replaced.
    let live: Vec<usize> = (0..len).filter(|&i| original[i] != 0).collect();
    let on_data = flip_bits(&original, 100, 43, |rng| {
        live[rng.random_range(0..live.len())]
    });
    assert!(
        on_data >= 50,
        "only {on_data} of 100 flips of non-zero bytes were reported"
    );
}

#[test]
fn an_unreadable_directory_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let failure = audit(dir.path()).unwrap_err();
    assert!(matches!(failure, AuditFailure::File { .. }));
    assert!(failure.to_string().contains("bcte.redb"), "{failure}");
}
