//! Finality certificates: decode and check one knowing only the genesis validator keys.
//!
//! A certificate is simplex's `Finalization`: the proposal (round, parent view, block hash) and
//! the signatures of a quorum of validators over it, in the chain's consensus namespace. Checking
//! it needs no node and no trust: the validator public keys from the genesis suffice. This is the
//! light-client check, used by `bcte verify` on every stored certificate.

use crate::{app::Scheme, chain_block::Digest, engine::consensus_namespace};
use bcte_types::{Genesis, Hash};
use commonware_codec::{Copying, Decode};
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::certificate::Verifier as _;
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use rand::CryptoRng;
use thiserror::Error;

/// Why a certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// The bytes are not a certificate (or carry more signatures than validators).
    #[error("not a finality certificate: {0}")]
    Decode(String),
    /// The signatures do not verify against the validator set (altered, too few, other set).
    #[error("signatures do not verify against the genesis validator set")]
    Signatures,
    /// The certificate finalizes another block.
    #[error("certificate is for block {got}, not {expected}")]
    OtherBlock {
        /// The block it should finalize.
        expected: String,
        /// The block it finalizes.
        got: String,
    },
}

/// A verifier for the chain of `genesis`: its validator public keys and consensus namespace.
pub fn verifier(genesis: &Genesis) -> Scheme {
    let participants = Set::from_iter_dedup(
        genesis
            .validators
            .iter()
            .filter_map(|v| v.public_key.to_public_key()),
    );
    Scheme::verifier(&consensus_namespace(&genesis.chain_id), participants)
}

/// Decodes and checks a certificate; with `block`, also that it finalizes that block.
pub fn verify_certificate(
    verifier: &Scheme,
    bytes: &[u8],
    block: Option<Hash>,
    rng: &mut impl CryptoRng,
) -> Result<Finalization<Scheme, Digest>, CertError> {
    let cert = Finalization::<Scheme, Digest>::decode_cfg(
        Copying(bytes),
        &verifier.certificate_codec_config(),
    )
    .map_err(|e| CertError::Decode(e.to_string()))?;
    if !cert.verify(rng, verifier, &Sequential) {
        return Err(CertError::Signatures);
    }
    if let Some(expected) = block
        && cert.proposal.payload != expected
    {
        return Err(CertError::OtherBlock {
            expected: hex::encode(expected),
            got: hex::encode(cert.proposal.payload),
        });
    }
    Ok(cert)
}
