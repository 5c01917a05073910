//! The authenticated state: a Jellyfish Merkle Tree (JMT) whose versions are block heights.
//!
//! Why the JMT (crate `jmt`, from Diem, maintained by Penumbra): it is a sparse Merkle tree over
//! hashed keys with O(log n) inclusion *and* absence proofs, and it is versioned, so the tree at
//! every past height stays provable without copying it. Its storage is two plain maps (nodes by
//! `(version, nibble path)`, values by `(key hash, version)`), behind the small `TreeReader`
//! trait, which fits any key-value store; bcte puts both maps in the same redb transaction as the
//! block, so a block, its receipts and its state become durable together or not at all.
//!
//! Version `h` is the state after executing the block at height `h` (version 0 is genesis), and
//! the root of version `h` is the `state_root` in the header of block `h`.
//!
//! Nodes are immutable once written (a version never changes), which is what lets speculative
//! execution stack [`Overlay`]s of uncommitted blocks over the committed tree without copying.

use crate::keys::StateKey;
use bcte_types::{Hash, Height};
use jmt::{
    JellyfishMerkleTree, KeyHash, OwnedValue, Version,
    storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader},
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};
use thiserror::Error;

/// The tree type: JMT with SHA-256.
pub type Tree<'a, R> = JellyfishMerkleTree<'a, R, sha2::Sha256>;

/// Changes to the state: `Some(bytes)` writes a value, `None` deletes the key.
pub type WriteSet = BTreeMap<StateKey, Option<Vec<u8>>>;

/// An error reading or updating the tree (missing nodes, a corrupt node, a storage failure).
#[derive(Debug, Error)]
#[error("state tree: {0}")]
pub struct TreeError(pub String);

impl From<anyhow::Error> for TreeError {
    fn from(e: anyhow::Error) -> Self {
        Self(format!("{e:#}"))
    }
}

/// Reads the value of `key` in the state at `height`.
pub fn read_value<R: TreeReader>(
    reader: &R,
    height: Height,
    key: &StateKey,
) -> Result<Option<Vec<u8>>, TreeError> {
    Ok(reader.get_value_option(height.get(), key.tree_key())?)
}

/// The state root at `height`.
pub fn root_at<R: TreeReader>(reader: &R, height: Height) -> Result<Hash, TreeError> {
    let root = Tree::new(reader).get_root_hash(height.get())?;
    Ok(Hash::from(root.0))
}

/// Applies `writes` on top of the tree at `height - 1` (or the empty tree at genesis) and
/// returns the new root and the nodes and values to persist as version `height`.
pub fn commit<R: TreeReader>(
    reader: &R,
    writes: &WriteSet,
    height: Height,
) -> Result<(Hash, NodeBatch), TreeError> {
    let tree = Tree::new(reader);
    // The batch insertion computes each touched internal node once per block instead of once
    // per key, but takes no deletions; the rare write set with one falls back to the per-key path.
    let (root, update) = if writes.values().all(Option::is_some) && !writes.is_empty() {
        let set = writes
            .iter()
            .map(|(k, v)| (k.tree_key(), v.clone().expect("checked")))
            .collect();
        let (roots, update) = tree.batch_put_value_sets(vec![set], None, height.get())?;
        (roots[0], update)
    } else {
        let value_set = writes.iter().map(|(k, v)| (k.tree_key(), v.clone()));
        tree.put_value_set(value_set, height.get())?
    };
    Ok((Hash::from(root.0), update.node_batch))
}

/// An in-memory tree: for tests, the offline audit's replay and benchmarks.
#[derive(Default, Clone, Debug)]
pub struct MemTree {
    nodes: HashMap<NodeKey, Node>,
    values: BTreeMap<([u8; 32], Version), Option<OwnedValue>>,
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Persists a batch produced by [`commit`].
    pub fn apply(&mut self, batch: &NodeBatch) {
        for (k, n) in batch.nodes() {
            self.nodes.insert(k.clone(), n.clone());
        }
        for ((version, key), value) in batch.values() {
            self.values.insert((key.0, *version), value.clone());
        }
    }

    /// Number of stored nodes (all versions).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of stored values (all versions, deletions included).
    pub fn value_count(&self) -> usize {
        self.values.len()
    }
}

impl TreeReader for MemTree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .values
            .range((key_hash.0, 0)..=(key_hash.0, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported")
    }
}

/// The tree changes of one executed block that is not yet committed to storage.
#[derive(Debug)]
pub struct Layer {
    version: Version,
    batch: NodeBatch,
    // Values by key hash, for O(log n) lookups (the batch keys them by version first).
    values: HashMap<[u8; 32], Option<OwnedValue>>,
}

impl Layer {
    /// Wraps the batch that [`commit`] produced for `height`.
    pub fn new(height: Height, batch: NodeBatch) -> Self {
        let values = batch
            .values()
            .iter()
            .map(|((_, k), v)| (k.0, v.clone()))
            .collect();
        Self {
            version: height.get(),
            batch,
            values,
        }
    }

    /// The height this layer is the state of.
    pub const fn height(&self) -> Height {
        Height(self.version)
    }

    /// The nodes and values to persist.
    pub const fn batch(&self) -> &NodeBatch {
        &self.batch
    }
}

/// A tree reader that sees uncommitted [`Layer`]s (newest first) over a committed base.
///
/// Layers must be consecutive heights descending from the newest, directly above the base's
/// newest committed version.
pub struct Overlay<'a, R> {
    base: &'a R,
    layers: &'a [Arc<Layer>],
}

impl<'a, R: TreeReader> Overlay<'a, R> {
    /// A reader over `base` with `layers` (newest first) on top.
    pub fn new(base: &'a R, layers: &'a [Arc<Layer>]) -> Self {
        debug_assert!(layers.windows(2).all(|w| w[0].version == w[1].version + 1));
        Self { base, layers }
    }
}

impl<R: TreeReader> TreeReader for Overlay<'_, R> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        for layer in self.layers {
            if node_key.version() == layer.version {
                return Ok(layer.batch.get_node(node_key).cloned());
            }
        }
        self.base.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        for layer in self.layers {
            if layer.version <= max_version
                && let Some(v) = layer.values.get(&key_hash.0)
            {
                return Ok(v.clone());
            }
        }
        self.base.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcte_types::AccountId;

    fn writes(pairs: &[(u8, Option<&[u8]>)]) -> WriteSet {
        pairs
            .iter()
            .map(|(b, v)| {
                (
                    StateKey::Account(AccountId([*b; 32])),
                    v.map(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    #[test]
    fn versions_are_heights_and_old_versions_stay_readable() {
        let mut tree = MemTree::new();
        let (r0, b0) = commit(&tree, &writes(&[(1, Some(b"a"))]), Height(0)).unwrap();
        tree.apply(&b0);
        let (r1, b1) = commit(
            &tree,
            &writes(&[(1, Some(b"b")), (2, Some(b"c"))]),
            Height(1),
        )
        .unwrap();
        tree.apply(&b1);
        assert_ne!(r0, r1);
        assert_eq!(root_at(&tree, Height(0)).unwrap(), r0);
        assert_eq!(root_at(&tree, Height(1)).unwrap(), r1);
        let k1 = StateKey::Account(AccountId([1; 32]));
        assert_eq!(
            read_value(&tree, Height(0), &k1).unwrap(),
            Some(b"a".to_vec())
        );
        assert_eq!(
            read_value(&tree, Height(1), &k1).unwrap(),
            Some(b"b".to_vec())
        );
        let k2 = StateKey::Account(AccountId([2; 32]));
        assert_eq!(read_value(&tree, Height(0), &k2).unwrap(), None);
    }

    #[test]
    fn batch_and_per_key_insertion_give_the_same_tree() {
        let mut tree = MemTree::new();
        let (_, b0) = commit(
            &tree,
            &writes(&[(1, Some(b"a")), (2, Some(b"b"))]),
            Height(0),
        )
        .unwrap();
        tree.apply(&b0);
        let next = writes(&[(1, Some(b"c")), (3, Some(b"d")), (4, Some(b"e"))]);
        let (batch_root, batch) = commit(&tree, &next, Height(1)).unwrap();
        let per_key = next.iter().map(|(k, v)| (k.tree_key(), v.clone()));
        let (root, update) = Tree::new(&tree).put_value_set(per_key, 1).unwrap();
        assert_eq!(Hash::from(root.0), batch_root);
        assert_eq!(update.node_batch.values(), batch.values());
        assert_eq!(update.node_batch.nodes(), batch.nodes());
    }

    #[test]
    fn overlay_sees_uncommitted_layers_and_gives_the_same_roots() {
        let mut committed = MemTree::new();
        let (_, b0) = commit(&committed, &writes(&[(1, Some(b"a"))]), Height(0)).unwrap();
        committed.apply(&b0);

        // Speculatively execute heights 1 and 2 on top of the committed genesis.
        let (r1, b1) = commit(&committed, &writes(&[(2, Some(b"x"))]), Height(1)).unwrap();
        let l1 = Arc::new(Layer::new(Height(1), b1.clone()));
        let layers = vec![l1];
        let ov = Overlay::new(&committed, &layers);
        let (r2, b2) = commit(&ov, &writes(&[(1, None), (3, Some(b"y"))]), Height(2)).unwrap();
        let layers = vec![
            Arc::new(Layer::new(Height(2), b2.clone())),
            layers[0].clone(),
        ];
        let ov = Overlay::new(&committed, &layers);
        let k1 = StateKey::Account(AccountId([1; 32]));
        assert_eq!(read_value(&ov, Height(2), &k1).unwrap(), None);
        assert_eq!(
            read_value(&ov, Height(1), &k1).unwrap(),
            Some(b"a".to_vec())
        );
        assert_eq!(root_at(&ov, Height(2)).unwrap(), r2);

        // Committing the same layers in order reproduces the same roots.
        let mut direct = committed.clone();
        direct.apply(&b1);
        direct.apply(&b2);
        assert_eq!(root_at(&direct, Height(1)).unwrap(), r1);
        assert_eq!(root_at(&direct, Height(2)).unwrap(), r2);
    }
}
