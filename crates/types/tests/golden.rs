//! Golden vectors: the exact bytes of a transaction, a receipt and a block.
//!
//! These bytes are the wire and storage format. If a change to the codec makes this test fail,
//! the change breaks every stored chain and every signed transaction in flight: regenerating the
//! vectors is a reviewed decision (a new format version), never a way to make the test pass.

use bcte_types::{
    AccountId, Amount, Block, BlockLimits, ChainId, ConsensusContext, Hash, Header, Height,
    Outcome, Payload, Receipt, RejectReason, Tx, TxBody,
};
use commonware_codec::{Copying, Decode, DecodeExt, Encode};
use commonware_cryptography::{Signer, ed25519::PrivateKey};

fn key(byte: u8) -> PrivateKey {
    PrivateKey::decode(Copying(&[byte; 32])).expect("any 32 bytes are an ed25519 seed")
}

fn golden_tx() -> Tx {
    let sender = key(1);
    Tx::sign(
        TxBody {
            chain_id: ChainId::new("bcte-golden").unwrap(),
            sender: AccountId::from_public_key(&sender.public_key()),
            signer: None,
            nonce: 7,
            payload: Payload::Transfer {
                to: AccountId::from_public_key(&key(2).public_key()),
                amount: Amount(1_234_000),
            },
        },
        &sender,
    )
}

/// Format version 2 (the body's `signer`, absent here: the `00` after the sender). Checked
/// independently: Python's `cryptography` (OpenSSL) Ed25519 verifies the last 64 bytes
/// over `len(ns):u8 ‖ ns ‖ body` with `ns = b"bcte/tx/v2"`, and `sha256(body)` gives the hash.
const TX_HEX: &str = "0b626374652d676f6c64656e8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d9412\
1bf3748801b40f6f5c000000000000000007008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b\
8fc9b394000000000012d450a4472bfa7554d7453493160ca3119f277bdbe7a30f7c922444b93a44206c6df2d3adcc\
ede7b53ea03046ef706617c04d1a73c17212d0296a0ba1d4e40a680103";
const TX_HASH_HEX: &str = "9bba8db0de6164904552a88459c77ce7b7490cf7e08fcf68058443ad163592d4";
const RECEIPT_HEX: &str = "9bba8db0de6164904552a88459c77ce7b7490cf7e08fcf68058443ad163592d4010000000000000000030000000000000007";
const BLOCK_HASH_HEX: &str = "8b24d44b3c3cb96f1ea035a9901e8d15f68fc7b7902be4e9183f6a933d5964ce";

fn golden_block() -> Block {
    let header = Header {
        parent: Hash::from([0xaa; 32]),
        height: Height(42),
        timestamp_ms: 1_764_000_000_000,
        context: ConsensusContext {
            epoch: 0,
            view: 45,
            leader: key(3).public_key().as_ref().try_into().unwrap(),
            parent_view: 44,
            parent: Hash::from([0xaa; 32]),
        },
        tx_root: Hash::from([0; 32]),
        state_root: Hash::from([0xbb; 32]),
        receipts_root: Hash::from([0xcc; 32]),
    };
    Block::new(header, vec![golden_tx()])
}

#[test]
fn transaction_bytes_and_hash_are_stable() {
    let tx = golden_tx();
    assert_eq!(hex::encode(tx.encode()), TX_HEX);
    assert_eq!(hex::encode(tx.hash()), TX_HASH_HEX);
    let back = Tx::decode(Copying(&hex::decode(TX_HEX).unwrap())).unwrap();
    assert_eq!(back, tx);
    assert_eq!(back.verify(&ChainId::new("bcte-golden").unwrap()), Ok(()));
}

#[test]
fn receipt_bytes_are_stable() {
    let receipt = Receipt {
        tx_hash: golden_tx().hash(),
        outcome: Outcome::Rejected(RejectReason::BadNonce {
            expected: 3,
            got: 7,
        }),
    };
    assert_eq!(hex::encode(receipt.encode()), RECEIPT_HEX);
}

#[test]
fn block_hash_is_stable_and_block_round_trips() {
    let block = golden_block();
    assert_eq!(hex::encode(block.hash()), BLOCK_HASH_HEX);
    let bytes = block.encode();
    assert_eq!(
        Block::decode_cfg(bytes, &BlockLimits::default()).unwrap(),
        block
    );
}
