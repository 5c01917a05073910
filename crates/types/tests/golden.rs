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
            nonce: 7,
            payload: Payload::Transfer {
                to: AccountId::from_public_key(&key(2).public_key()),
                amount: Amount(1_234_000),
            },
        },
        &sender,
    )
}

/// Checked independently: Python's `cryptography` (OpenSSL) Ed25519 verifies the last 64 bytes
/// over `len(ns):u8 ‖ ns ‖ body` with `ns = b"bcte/tx/v1"`, and `sha256(body)` gives the hash.
const TX_HEX: &str = "0b626374652d676f6c64656e8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d9412\
1bf3748801b40f6f5c0000000000000007008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8f\
c9b394000000000012d4501cb100a89ad892936b12076e19424021ace5be640b5e5e50d4b7bec1d006fc19e9ccacc4\
272b2c2d4a8504ba4384bed197cbbe2ca96544504fe2ae401ece0100";
const TX_HASH_HEX: &str = "30a30381683f32a9bf7a1c4dd7672cd094d39e0bb9401238a870b37bcc9c69fc";
const RECEIPT_HEX: &str = "30a30381683f32a9bf7a1c4dd7672cd094d39e0bb9401238a870b37bcc9c69fc010000000000000000030000000000000007";
const BLOCK_HASH_HEX: &str = "583d779309689a22c525359b25248777dd083139559bb285c8c832526d2d9f2b";

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
