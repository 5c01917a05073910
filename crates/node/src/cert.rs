//! Finality certificates: decode and check one knowing only the genesis validator keys.
//!
//! A certificate is simplex's `Finalization`: the proposal (round, parent view, block hash) and
//! the signatures of a quorum of validators over it, in the chain's consensus namespace. Checking
//! it needs no node and no trust: the validator public keys from the genesis suffice. This is the
//! light-client check, used by `bcte verify` on every stored certificate.
//!
//! Not every finalized block has a certificate of its own: when the finalize votes of a view do
//! not reach a quorum in time but a later block's do, the later block's finalization finalizes
//! its ancestors too. Such a block is proven final by the certificate of its nearest certified
//! descendant and the headers in between, each naming the hash of the one before as its parent
//! ([`prove_final`] checks the links).

use crate::{app::Scheme, chain_block::Digest, engine::consensus_namespace};
use bcte_types::{ChainId, Genesis, Hash, Header};
use commonware_codec::{Copying, Decode, DecodeExt as _};
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
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
    /// The header bytes are not a block header.
    #[error("not a block header: {0}")]
    Header(String),
    /// A descendant header is not a header, or does not extend the one before it.
    #[error("descendant {index}: {reason}")]
    Descendant {
        /// Its position in the list (0 = the block's child).
        index: usize,
        /// What is wrong.
        reason: String,
    },
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

/// Most descendant headers a proof of finality may carry (a block's nearest certified
/// descendant is normally its child or grandchild).
pub const DESCENDANTS_MAX: usize = 256;

/// A certificate file, as `bcte query cert` saves it and `bcte verify-cert` reads it: the block
/// header (which commits to the height, the parent, the transactions and the state root) and the
/// finality certificate over the header's hash, or, for a block finalized through a descendant,
/// the headers from its child up to the certified descendant and that descendant's certificate.
/// All byte strings are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// The chain the certificate claims to belong to (informative; the signatures decide).
    pub chain_id: String,
    /// The block height (informative; the header decides).
    pub height: u64,
    /// The block hash (informative; the header decides).
    pub block_hash: String,
    /// The canonical encoding of the block header.
    pub header: String,
    /// Headers of the blocks from `height + 1` up to the certified one, in order, when the
    /// block was finalized through a descendant (empty when the certificate is its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descendants: Vec<String>,
    /// The encoded simplex finalization (of the block, or of the last descendant).
    pub certificate: String,
}

/// A block proven final by [`prove_final`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenFinal {
    /// The block's header (height, parent, state root, ...), now known to be final.
    pub header: Header,
    /// The block hash.
    pub block_hash: Hash,
    /// The height of the block the certificate signs: the block's own, or its descendant's.
    pub certified_height: u64,
    /// The consensus view of the certified block.
    pub view: u64,
    /// How many validators signed.
    pub signers: usize,
    /// The size of the validator set.
    pub validators: usize,
}

/// Proves that the block of `header` is final on the chain of `genesis`: the header decodes,
/// each of `descendants` (at most [`DESCENDANTS_MAX`]) is a header whose parent is the hash of
/// the one before it and whose height is one more, the certificate's signatures verify against
/// the genesis validator keys in the chain's namespace with at least a quorum of signers, and
/// the certificate finalizes exactly the last header's hash (with no descendants, the block's
/// own). A finalized block's ancestors are final, so this proves the first header final.
/// Trusts nothing but the genesis.
pub fn prove_final(
    genesis: &Genesis,
    header: &[u8],
    descendants: &[Vec<u8>],
    certificate: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<ProvenFinal, CertError> {
    let header = Header::decode(Copying(header)).map_err(|e| CertError::Header(e.to_string()))?;
    if descendants.len() > DESCENDANTS_MAX {
        return Err(CertError::Descendant {
            index: DESCENDANTS_MAX,
            reason: format!("more than {DESCENDANTS_MAX} descendants"),
        });
    }
    let block_hash = header.hash();
    let (mut last_hash, mut last_height) = (block_hash, header.height.get());
    for (index, bytes) in descendants.iter().enumerate() {
        let refuse = |reason: String| CertError::Descendant { index, reason };
        let child = Header::decode(Copying(bytes.as_slice()))
            .map_err(|e| refuse(format!("not a block header: {e}")))?;
        if child.parent != last_hash {
            return Err(refuse(format!(
                "its parent is {}, not {}",
                hex::encode(child.parent),
                hex::encode(last_hash)
            )));
        }
        if child.height.get() != last_height + 1 {
            return Err(refuse(format!(
                "height {} does not follow {last_height}",
                child.height
            )));
        }
        (last_hash, last_height) = (child.hash(), child.height.get());
    }
    let verifier = verifier(genesis);
    let cert = verify_certificate(&verifier, certificate, Some(last_hash), rng)?;
    Ok(ProvenFinal {
        header,
        block_hash,
        certified_height: last_height,
        view: cert.proposal.round.view().get(),
        signers: cert.certificate.signers.count(),
        validators: genesis.validators.len(),
    })
}

/// A finality certificate of `block` (the encoded simplex finalization in `view`) signed by the
/// first `signers` of `keys`, the validators of a chain `chain_id`: certificates for tests and
/// tools that do not run consensus.
pub fn sign_finalization(
    chain_id: &ChainId,
    keys: &[PrivateKey],
    signers: usize,
    block: Hash,
    view: u64,
) -> Vec<u8> {
    use commonware_codec::Encode as _;
    use commonware_consensus::{
        simplex::types::{Finalization, Finalize, Proposal},
        types::{Epoch, Round, View},
    };
    let participants = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
    let namespace = consensus_namespace(chain_id);
    let proposal = Proposal {
        round: Round::new(Epoch::new(0), View::new(view)),
        parent: View::new(view.saturating_sub(1)),
        payload: block,
    };
    let votes: Vec<Finalize<Scheme, Hash>> = keys
        .iter()
        .take(signers)
        .map(|k| {
            let scheme = Scheme::signer(&namespace, participants.clone(), k.clone())
                .expect("a key of the set");
            Finalize::sign(&scheme, proposal.clone()).expect("signs")
        })
        .collect();
    let scheme = Scheme::verifier(&namespace, participants);
    Finalization::from_finalizes(
        &scheme,
        commonware_utils::iter::NonEmpty::try_new(votes.iter()).expect("at least one signer"),
        &commonware_parallel::Sequential,
    )
    .expect("the votes agree")
    .encode()
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::generate_key;
    use bcte_types::{AccountId, Allocation, Amount, ChainId, Height, Validator};
    use commonware_codec::Encode as _;
    use commonware_cryptography::certificate::Signers;

    fn genesis_of(keys: &[PrivateKey], chain: &str) -> Genesis {
        let account = AccountId::from_public_key(&keys[0].public_key());
        Genesis {
            chain_id: ChainId::new(chain).unwrap(),
            genesis_time_ms: 1,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: format!("v{i}"),
                    public_key: AccountId::from_public_key(&k.public_key()),
                })
                .collect(),
            authority: account,
            registrar: None,
            allocations: vec![Allocation {
                account,
                amount: Amount(1),
                roles: bcte_types::Roles::NONE,
            }],
            market_clock_speed: 1,
            currency: None,
        }
    }

    fn header(height: u64) -> Header {
        Header {
            parent: [7; 32].into(),
            height: Height(height),
            timestamp_ms: 1_000 + height,
            context: bcte_types::ConsensusContext {
                epoch: 0,
                view: 9,
                leader: [5; 32],
                parent_view: 8,
                parent: [7; 32].into(),
            },
            tx_root: [1; 32].into(),
            state_root: [2; 32].into(),
            receipts_root: [3; 32].into(),
        }
    }

    /// A finalization of `header` signed by the first `signers` validators.
    fn certify(genesis: &Genesis, keys: &[PrivateKey], header: &Header, signers: usize) -> Vec<u8> {
        sign_finalization(&genesis.chain_id, keys, signers, header.hash(), 9)
    }

    fn setup() -> (Vec<PrivateKey>, Genesis, Header, Vec<u8>) {
        let keys: Vec<PrivateKey> = (0..4).map(|_| generate_key()).collect();
        let genesis = genesis_of(&keys, "cert-test");
        let header = header(12);
        let cert = certify(&genesis, &keys, &header, 3);
        (keys, genesis, header, cert)
    }

    #[test]
    fn a_quorum_certificate_proves_its_block_final() {
        let (_, genesis, header, cert) = setup();
        let proven = prove_final(&genesis, &header.encode(), &[], &cert, &mut rand::rng()).unwrap();
        assert_eq!(proven.header, header);
        assert_eq!(proven.block_hash, header.hash());
        assert_eq!((proven.signers, proven.validators, proven.view), (3, 4, 9));
        assert_eq!(proven.certified_height, 12);
    }

    /// The child of `parent`: the next height, naming `parent`'s hash.
    fn child_of(parent: &Header) -> Header {
        Header {
            parent: parent.hash(),
            height: Height(parent.height.get() + 1),
            timestamp_ms: parent.timestamp_ms + 1,
            ..*parent
        }
    }

    #[test]
    fn a_descendants_certificate_and_the_headers_between_prove_a_block_final() {
        let keys: Vec<PrivateKey> = (0..4).map(|_| generate_key()).collect();
        let genesis = genesis_of(&keys, "cert-test");
        let block = header(12);
        let child = child_of(&block);
        let grandchild = child_of(&child);
        let cert = certify(&genesis, &keys, &grandchild, 3);
        let chain = [child.encode().to_vec(), grandchild.encode().to_vec()];
        let proven =
            prove_final(&genesis, &block.encode(), &chain, &cert, &mut rand::rng()).unwrap();
        assert_eq!(proven.header, block);
        assert_eq!(proven.block_hash, block.hash());
        assert_eq!(proven.certified_height, 14);

        // The child is proven by the same certificate with one header fewer.
        let proven =
            prove_final(&genesis, &chain[0], &chain[1..], &cert, &mut rand::rng()).unwrap();
        assert_eq!(proven.header, child);

        // A gap, a reordered chain, a header of another branch and junk are refused.
        let refused = |descendants: &[Vec<u8>]| {
            prove_final(
                &genesis,
                &block.encode(),
                descendants,
                &cert,
                &mut rand::rng(),
            )
            .unwrap_err()
        };
        let err = refused(&chain[1..]);
        assert!(
            matches!(err, CertError::Descendant { index: 0, .. }),
            "{err}"
        );
        let err = refused(&[chain[1].clone(), chain[0].clone()]);
        assert!(
            matches!(err, CertError::Descendant { index: 0, .. }),
            "{err}"
        );
        let other_branch = Header {
            state_root: [9; 32].into(),
            ..child
        };
        let err = refused(&[other_branch.encode().to_vec(), chain[1].clone()]);
        assert!(
            matches!(err, CertError::Descendant { index: 1, .. }),
            "{err}"
        );
        let err = refused(&[chain[0].clone(), b"junk".to_vec()]);
        assert!(
            matches!(err, CertError::Descendant { index: 1, .. }),
            "{err}"
        );
        // Without the headers, the descendant's certificate is not the block's.
        let err = refused(&[]);
        assert!(matches!(err, CertError::OtherBlock { .. }), "{err}");
        // A height that skips, even with a correct parent link, is refused.
        let skipping = Header {
            height: Height(20),
            ..child
        };
        let err = refused(&[skipping.encode().to_vec()]);
        assert!(
            matches!(err, CertError::Descendant { index: 0, .. }),
            "{err}"
        );
        // Too many headers are refused before any work.
        let err = refused(&vec![chain[0].clone(); DESCENDANTS_MAX + 1]);
        assert!(matches!(err, CertError::Descendant { .. }), "{err}");
    }

    #[test]
    fn an_altered_signature_is_refused() {
        let (_, genesis, header, cert) = setup();
        // The last 64 bytes are the last signature; flip one bit in each of its halves in turn.
        for offset in [cert.len() - 1, cert.len() - 40] {
            let mut bad = cert.clone();
            bad[offset] ^= 0x01;
            let err =
                prove_final(&genesis, &header.encode(), &[], &bad, &mut rand::rng()).unwrap_err();
            assert!(
                matches!(err, CertError::Signatures | CertError::Decode(_)),
                "{err}"
            );
        }
    }

    #[test]
    fn too_few_signers_are_refused() {
        let (_, genesis, header, cert) = setup();
        // Drop one of the three signatures: 2 of 4 is below the quorum of 3, although each
        // remaining signature is genuine.
        let verifier = verifier(&genesis);
        let mut parsed = Finalization::<Scheme, Digest>::decode_cfg(
            Copying(cert.as_slice()),
            &verifier.certificate_codec_config(),
        )
        .unwrap();
        let kept: Vec<_> = parsed.certificate.signers.iter().take(2).collect();
        parsed.certificate.signers = Signers::new(4, kept).unwrap();
        parsed.certificate.signatures.truncate(2);
        let bad = parsed.encode().to_vec();
        let err = prove_final(&genesis, &header.encode(), &[], &bad, &mut rand::rng()).unwrap_err();
        assert_eq!(err, CertError::Signatures);
    }

    #[test]
    fn another_validator_set_is_refused() {
        let (_, _, header, cert) = setup();
        let others: Vec<PrivateKey> = (0..4).map(|_| generate_key()).collect();
        let genesis = genesis_of(&others, "cert-test");
        let err =
            prove_final(&genesis, &header.encode(), &[], &cert, &mut rand::rng()).unwrap_err();
        assert_eq!(err, CertError::Signatures);
    }

    #[test]
    fn the_same_validators_on_another_chain_are_refused() {
        let (keys, _, header, cert) = setup();
        let genesis = genesis_of(&keys, "other-chain");
        let err =
            prove_final(&genesis, &header.encode(), &[], &cert, &mut rand::rng()).unwrap_err();
        assert_eq!(err, CertError::Signatures);
    }

    #[test]
    fn a_certificate_for_another_block_is_refused() {
        let (_, genesis, _, cert) = setup();
        let other = header(13);
        let err = prove_final(&genesis, &other.encode(), &[], &cert, &mut rand::rng()).unwrap_err();
        assert!(matches!(err, CertError::OtherBlock { .. }), "{err}");
        let err = prove_final(&genesis, b"junk", &[], &cert, &mut rand::rng()).unwrap_err();
        assert!(matches!(err, CertError::Header(_)), "{err}");
    }
}
