//! The signing domain of authenticated reads (AC-6.1): what an account signs to prove to a node
//! that it holds its key, so that the node issues it a read token.
//!
//! A client asks a node for a challenge (32 random bytes), signs
//! `chain id ‖ challenge` in the namespace [`AUTH_NAMESPACE`] with its account's current key,
//! and trades the signature for a token. No transaction is signed in this namespace (they use
//! [`crate::tx::TX_NAMESPACE`]), so a read signature can never be replayed as a transaction,
//! nor a transaction's signature as a login.

use crate::ids::ChainId;
use commonware_cryptography::{Signer as _, Verifier as _, ed25519};

/// The namespace of a read-authentication signature.
pub const AUTH_NAMESPACE: &[u8] = b"bcte/auth/v1";

/// The length of a challenge, bytes.
pub const CHALLENGE_LEN: usize = 32;

/// The message signed for `challenge` on `chain_id`: the chain id's bytes, then the challenge
/// (fixed-length, so the concatenation is unambiguous).
pub fn auth_message(chain_id: &ChainId, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(chain_id.as_str().len() + CHALLENGE_LEN);
    m.extend_from_slice(chain_id.as_str().as_bytes());
    m.extend_from_slice(challenge);
    m
}

/// Signs `challenge` on `chain_id` with `key`.
pub fn sign_challenge(
    key: &ed25519::PrivateKey,
    chain_id: &ChainId,
    challenge: &[u8; CHALLENGE_LEN],
) -> ed25519::Signature {
    key.sign(AUTH_NAMESPACE, &auth_message(chain_id, challenge))
}

/// Whether `signature` is `key`'s over `challenge` on `chain_id`.
pub fn verify_challenge(
    key: &ed25519::PublicKey,
    chain_id: &ChainId,
    challenge: &[u8; CHALLENGE_LEN],
    signature: &ed25519::Signature,
) -> bool {
    key.verify(
        AUTH_NAMESPACE,
        &auth_message(chain_id, challenge),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{TX_NAMESPACE, Tx};

    #[test]
    fn a_challenge_signature_checks_only_for_its_key_chain_and_challenge() {
        let key = ed25519::PrivateKey::from_seed(1);
        let chain = ChainId::new("bcte-test").unwrap();
        let c = [7u8; CHALLENGE_LEN];
        let sig = sign_challenge(&key, &chain, &c);
        assert!(verify_challenge(&key.public_key(), &chain, &c, &sig));
        let other = ed25519::PrivateKey::from_seed(2).public_key();
        assert!(!verify_challenge(&other, &chain, &c, &sig));
        assert!(!verify_challenge(
            &key.public_key(),
            &chain,
            &[8u8; 32],
            &sig
        ));
        let chain2 = ChainId::new("bcte-other").unwrap();
        assert!(!verify_challenge(&key.public_key(), &chain2, &c, &sig));
    }

    #[test]
    fn the_read_domain_is_not_the_transaction_domain() {
        assert_ne!(AUTH_NAMESPACE, TX_NAMESPACE);
        // The same bytes signed as a transaction body do not verify as a login.
        let key = ed25519::PrivateKey::from_seed(3);
        let chain = ChainId::new("bcte-test").unwrap();
        let c = [1u8; CHALLENGE_LEN];
        let as_tx = key.sign(TX_NAMESPACE, &auth_message(&chain, &c));
        assert!(!verify_challenge(&key.public_key(), &chain, &c, &as_tx));
        let _ = Tx::sign; // the transaction signer uses TX_NAMESPACE
    }
}
