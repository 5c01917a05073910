//! Fuzz bodies for the decoders of this crate, shared by the cargo-fuzz targets in `fuzz/` and
//! by ordinary tests that replay a seed corpus, so CI exercises them without a fuzzer.
//!
//! Each body must never panic on any input; the assertions inside are the properties the
//! decoders promise (canonical encodings).

use crate::{Block, BlockLimits, ChainId, Tx};
use commonware_codec::{Copying, Decode, DecodeExt, Encode};

/// Decodes a transaction; an accepted input must re-encode to itself, and checking its
/// signature must not panic.
pub fn decode_tx(data: &[u8]) {
    if let Ok(tx) = Tx::decode(Copying(data)) {
        assert_eq!(
            tx.encode().as_ref(),
            data,
            "transaction encoding is not canonical"
        );
        let chain = tx.body().chain_id.clone();
        let _ = tx.verify(&chain);
        let _ = tx.verify(&ChainId::new("fuzz").expect("valid"));
    }
}

/// Decodes a block under small limits; an accepted input must re-encode to itself.
pub fn decode_block(data: &[u8]) {
    let limits = BlockLimits {
        txs_max: 64,
        bytes_max: 64 * 1024,
    };
    if let Ok(block) = Block::decode_cfg(Copying(data), &limits) {
        assert_eq!(
            block.encode().as_ref(),
            data,
            "block encoding is not canonical"
        );
        assert_eq!(block.hash(), block.header().hash());
    }
}
