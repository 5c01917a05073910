//! State proofs: "key K had value V (or no value) at height H", checkable against H's state root.
//!
//! A proof carries the height it speaks for, the key, the value and the JMT's sparse Merkle
//! proof (O(log n) sibling hashes). [`StateProof::verify`] needs nothing but the state root of
//! block H; a client gets that root from a header it trusts (a finalized block).
//!
//! Wire layout (see `docs/encoding.md`): `height:u64 ‖ key_len:varint ‖ key ‖ has_value:u8 ‖
//! [value_len:varint ‖ value] ‖ proof_len:varint ‖ proof (borsh, as the jmt crate defines it)`,
//! lengths as canonical LEB128 varints. The encoding is total: every key and every value the
//! state can hold has one, and the parser refuses anything it did not write.

use crate::{
    keys::StateKey,
    tree::{Tree, TreeError},
};
use bcte_types::{Hash, Height};
use jmt::{RootHash, proof::SparseMerkleProof, storage::TreeReader};
use thiserror::Error;

/// The largest state value a proof may carry: above the largest value the state can hold (a
/// site table of the most sites with the longest ids).
pub const PROOF_VALUE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The longest state key, in bytes (a site's key: its tag and two ids of 128 bytes).
pub const PROOF_KEY_BYTES_MAX: usize = 1 + 2 * (1 + 128);

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
        let value_len = self.value.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(8 + 10 + key.len() + 11 + value_len + 5 + proof.len());
        out.extend_from_slice(&self.height.get().to_be_bytes());
        write_varint(&mut out, key.len());
        out.extend_from_slice(&key);
        match &self.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                write_varint(&mut out, v.len());
                out.extend_from_slice(v);
            }
        }
        write_varint(&mut out, proof.len());
        out.extend_from_slice(&proof);
        out
    }

    /// Parses proof bytes, refusing anything malformed, oversized or non-canonical.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let mut r = Reader(bytes);
        let height = Height(u64::from_be_bytes(r.array("height")?));
        let key_len = r.varint("key length", PROOF_KEY_BYTES_MAX)?;
        let key = StateKey::from_bytes(r.take(key_len, "key")?)
            .map_err(|_| ProofError::Malformed("key"))?;
        let value = match r.array::<1>("value flag")?[0] {
            0 => None,
            1 => {
                let len = r.varint("value length", PROOF_VALUE_BYTES_MAX)?;
                Some(r.take(len, "value")?.to_vec())
            }
            _ => return Err(ProofError::Malformed("value flag")),
        };
        let len = r.varint("proof length", PROOF_BYTES_MAX)?;
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

/// Appends `n` as a canonical LEB128 varint.
fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A canonical LEB128 varint of at most `max` (no redundant trailing zero group).
    fn varint(&mut self, what: &'static str, max: usize) -> Result<usize, ProofError> {
        let mut n: u64 = 0;
        for i in 0..10 {
            let byte = self.array::<1>(what)?[0];
            n |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(ProofError::Malformed(what));
                }
                return usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= max)
                    .ok_or(ProofError::Malformed(what));
            }
        }
        Err(ProofError::Malformed(what))
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{MemTree, WriteSet, commit};
    use bcte_types::{FeederId, SiteId};

    #[test]
    fn varints_are_canonical_and_bounded() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 30] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(Reader(&out).varint("n", usize::MAX), Ok(n), "{n}");
        }
        assert!(Reader(&[0x80, 0x00]).varint("n", usize::MAX).is_err());
        assert!(Reader(&[0x81]).varint("n", usize::MAX).is_err());
        assert!(Reader(&[0xff, 0x01]).varint("n", 200).is_err());
    }

    #[test]
    fn long_keys_and_values_over_64_kib_round_trip() {
        let long = "x".repeat(128);
        let key = StateKey::Site(
            FeederId::new(long.clone()).unwrap(),
            SiteId::new(long).unwrap(),
        );
        assert_eq!(key.to_bytes().len(), PROOF_KEY_BYTES_MAX);
        let value = vec![7u8; 300 * 1024];
        let mut writes = WriteSet::new();
        writes.insert(key.clone(), Some(value.clone()));
        let (root, batch) = commit(&MemTree::new(), &writes, Height(0)).unwrap();
        let mut tree = MemTree::new();
        tree.apply(&batch);
        let proof = prove(&tree, key, Height(0)).unwrap();
        assert_eq!(proof.value.as_deref(), Some(value.as_slice()));
        let bytes = proof.to_bytes();
        let back = StateProof::from_bytes(&bytes).unwrap();
        assert_eq!(back, proof);
        back.verify(&root).unwrap();
        // Truncations and a trailing byte are refused.
        for cut in [0, 8, 9, 10, bytes.len() - 1] {
            assert!(StateProof::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StateProof::from_bytes(&longer).is_err());
    }

    /// The bytes of a proof are a format clients store: pinned here.
    #[test]
    fn golden_proof_of_absence_in_an_empty_tree() {
        let tree = MemTree::new();
        let (_, batch) = commit(&tree, &WriteSet::new(), Height(0)).unwrap();
        let mut tree = MemTree::new();
        tree.apply(&batch);
        let proof = prove(&tree, StateKey::Supply, Height(0)).unwrap();
        // height 0 (8 bytes) ‖ key length 1 ‖ key `supply` (0x02) ‖ absent (0x00) ‖ proof
        // length 5 ‖ borsh of the jmt proof: no leaf (0x00), no siblings (u32 0).
        assert_eq!(
            hex::encode(proof.to_bytes()),
            "0000000000000000010200050000000000"
        );
    }
}
