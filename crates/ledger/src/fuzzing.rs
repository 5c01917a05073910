//! Fuzz body for state proof checking, shared by the cargo-fuzz target in `fuzz/` and by an
//! ordinary test that replays a seed corpus.

use crate::proof::StateProof;
use bcte_types::Hash;

/// Parses proof bytes and checks the proof against a few roots. Must never panic; an accepted
/// encoding must be canonical.
pub fn check_proof(data: &[u8]) {
    if let Ok(proof) = StateProof::from_bytes(data) {
        assert_eq!(proof.to_bytes(), data, "proof encoding is not canonical");
        for root in [[0u8; 32], [0xff; 32]] {
            let _ = proof.verify(&Hash::from(root));
        }
    }
}
