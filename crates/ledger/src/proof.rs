//! State proofs: "key K had value V (or no value) at height H", checkable against H's state root.
//!
//! A proof carries the height it speaks for, the key, the value and the JMT's sparse Merkle
//! proof (O(log n) sibling hashes). [`StateProof::verify`] needs nothing but the state root of
//! block H; a client gets that root from a header it trusts (a finalized block).
//!
//! Wire layout (see `docs/encoding.md`): `height:u64 ‖ key_len:u8 ‖ key ‖ has_value:u8 ‖
//! [value_len:u32 ‖ value] ‖ proof_len:u32 ‖ proof (borsh, as the jmt crate defines it)`.

use crate::{
    keys::StateKey,
    tree::{Tree, TreeError},
};
use bcte_types::{Hash, Height};
use jmt::{RootHash, proof::SparseMerkleProof, storage::TreeReader};
use thiserror::Error;

/// The largest state value a proof may carry.
pub const PROOF_VALUE_BYTES_MAX: usize = 64 * 1024;

/// The largest encoded sparse Merkle proof (256 siblings of at most 65 bytes, and framing).
pub const PROOF_BYTES_MAX: usize = 256 * 80 + 64;

/// A proof of one key's value (or absence) at one height.
#[derive(Clone, Debug, PartialEq)]
pub struct StateProof {
    /// The height the proof speaks for: the state after executing block `height`.
    pub height: Height,
    /// The key.
    pub key: StateKey,
    /// The value, or `None` for a proof of absence.
    pub value: Option<Vec<u8>>,
    /// The sparse Merkle proof.
    pub proof: SparseMerkleProof<sha2::Sha256>,
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The bytes are not a proof.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof does not lead to the expected root.
    #[error("proof does not match state root {root}: {reason}")]
    Mismatch {
        /// The root it was checked against, hex.
        root: String,
        /// What the check found.
        reason: String,
    },
}

/// Builds the proof for `key` at `height`.
pub fn prove<R: TreeReader>(
    reader: &R,
    key: StateKey,
    height: Height,
) -> Result<StateProof, TreeError> {
    let (value, proof) = Tree::new(reader).get_with_proof(key.tree_key(), height.get())?;
    Ok(StateProof {
        height,
        key,
        value,
        proof,
    })
}

impl StateProof {
    /// Checks the proof against `root`, the state root of block `self.height`.
    pub fn verify(&self, root: &Hash) -> Result<(), ProofError> {
        let mut r = [0u8; 32];
        r.copy_from_slice(root.as_ref());
        self.proof
            .verify(RootHash(r), self.key.tree_key(), self.value.as_deref())
            .map_err(|e| ProofError::Mismatch {
                root: hex::encode(r),
                reason: e.to_string(),
            })
    }

    /// The canonical bytes of the proof.
    pub fn to_bytes(&self) -> Vec<u8> {
        let key = self.key.to_bytes();
        let proof = borsh::to_vec(&self.proof).expect("serializing into a Vec cannot fail");
        let mut out = Vec::with_capacity(8 + 1 + key.len() + 5 + 4 + proof.len() + 64);
        out.extend_from_slice(&self.height.get().to_be_bytes());
        out.push(key.len() as u8);
        out.extend_from_slice(&key);
        match &self.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
        out.extend_from_slice(&(proof.len() as u32).to_be_bytes());
        out.extend_from_slice(&proof);
        out
    }

    /// Parses proof bytes, refusing anything malformed, oversized or non-canonical.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let mut r = Reader(bytes);
        let height = Height(u64::from_be_bytes(r.array("height")?));
        let key_len = usize::from(r.array::<1>("key length")?[0]);
        let key = StateKey::from_bytes(r.take(key_len, "key")?)
            .map_err(|_| ProofError::Malformed("key"))?;
        let value = match r.array::<1>("value flag")?[0] {
            0 => None,
            1 => {
                let len = u32::from_be_bytes(r.array("value length")?) as usize;
                if len > PROOF_VALUE_BYTES_MAX {
                    return Err(ProofError::Malformed("value too long"));
                }
                Some(r.take(len, "value")?.to_vec())
            }
            _ => return Err(ProofError::Malformed("value flag")),
        };
        let len = u32::from_be_bytes(r.array("proof length")?) as usize;
        if len > PROOF_BYTES_MAX {
            return Err(ProofError::Malformed("proof too long"));
        }
        let raw = r.take(len, "proof")?;
        if !r.0.is_empty() {
            return Err(ProofError::Malformed("trailing bytes"));
        }
        let proof: SparseMerkleProof<sha2::Sha256> =
            borsh::from_slice(raw).map_err(|_| ProofError::Malformed("sparse Merkle proof"))?;
        let parsed = Self {
            height,
            key,
            value,
            proof,
        };
        // Borsh admits only one encoding per value, but check anyway: a proof's bytes are what
        // a client may store and compare.
        if parsed.to_bytes() != bytes {
            return Err(ProofError::Malformed("non-canonical encoding"));
        }
        Ok(parsed)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProofError> {
        if self.0.len() < n {
            return Err(ProofError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProofError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}
