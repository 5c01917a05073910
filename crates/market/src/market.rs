//! A validated market: the feeder tree, its limits, the bids and the price bounds.
//!
//! [`Market::new`] checks every rule of the model (one root, no cycle, known ids, no duplicate,
//! non-negative limits, curve prices within the bounds, the size limits) and fixes a canonical
//! order that does not depend on the order of the input: nodes in depth-first preorder with
//! children sorted by id, bids grouped by node and sorted by id. Everything the engine does
//! that could depend on an order uses this one (MR-3.4), so the same market clears to the same
//! result bit for bit however its nodes and bids were listed.
//!
//! Invariant: a `Market` always satisfies every limit of [`crate::limits`], so clearing it
//! cannot overflow or fail.

use crate::curve::{Curve, CurveView, Ramp, Step};
use crate::limits::{
    BIDS_MAX, COMPONENTS_MAX, DEPTH_MAX, ID_BYTES_MAX, LIMIT_MAX, NODES_MAX, PRICE_ABS_MAX,
};
use bcte_units::{Price, Watts};

/// Default price floor: −500 currency/MWh.
pub const DEFAULT_PRICE_FLOOR: Price = Price(-500_000_000);

/// Default price cap: 3000 currency/MWh.
pub const DEFAULT_PRICE_CAP: Price = Price(3_000_000_000);

/// A node of the feeder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// The parent's id; `None` for the root.
    pub parent: Option<String>,
    /// Most power that may flow from the parent into this node; `None` for unlimited.
    pub import_limit: Option<Watts>,
    /// Most power that may flow from this node to the parent; `None` for unlimited.
    pub export_limit: Option<Watts>,
}

/// The number of priority classes of load (MR-2.4): `0` to `PRIORITY_CLASSES - 1`.
pub const PRIORITY_CLASSES: u8 = 8;

/// A bid: one curve at one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    /// Unique id.
    pub id: String,
    /// Id of the node the bid sits at.
    pub node: String,
    /// What the bid asks at each price.
    pub curve: Curve,
    /// Its load's priority class, `0` (the default, shed first) to `7` (shed last: a hospital,
    /// a household with a medical device). See MR-2.4.
    pub priority: u8,
}

impl Bid {
    /// A bid of the default priority class 0.
    pub fn new(id: impl Into<String>, node: impl Into<String>, curve: Curve) -> Self {
        Self {
            id: id.into(),
            node: node.into(),
            curve,
            priority: 0,
        }
    }
}

/// Why a market is invalid. Every variant names the node or bid at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    /// The price floor is not below the price cap.
    #[error("price_floor {floor} is not below price_cap {cap}")]
    FloorNotBelowCap {
        /// The floor.
        floor: Price,
        /// The cap.
        cap: Price,
    },
    /// A price bound is beyond ±[`PRICE_ABS_MAX`].
    #[error("{field} {price} is beyond the limit of ±{max}", max = PRICE_ABS_MAX)]
    BoundOutOfRange {
        /// `price_floor` or `price_cap`.
        field: &'static str,
        /// The value.
        price: Price,
    },
    /// More nodes than [`NODES_MAX`].
    #[error("{count} nodes, more than the limit of {max}", max = NODES_MAX)]
    TooManyNodes {
        /// Number of nodes.
        count: usize,
    },
    /// More bids than [`BIDS_MAX`].
    #[error("{count} bids, more than the limit of {max}", max = BIDS_MAX)]
    TooManyBids {
        /// Number of bids.
        count: usize,
    },
    /// More curve components than [`COMPONENTS_MAX`] in the whole market.
    #[error("{count} curve steps and ramps in all, more than the limit of {max}", max = COMPONENTS_MAX)]
    TooManyComponents {
        /// Number of components.
        count: usize,
    },
    /// An id is empty or longer than [`ID_BYTES_MAX`].
    #[error("{kind} id {id:?} must have between 1 and {max} bytes", max = ID_BYTES_MAX)]
    BadId {
        /// `node` or `bid`.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// Two nodes share an id.
    #[error("node {id:?}: duplicate node id")]
    DuplicateNode {
        /// The id.
        id: String,
    },
    /// Two bids share an id.
    #[error("bid {id:?}: duplicate bid id")]
    DuplicateBid {
        /// The id.
        id: String,
    },
    /// No node lacks a parent.
    #[error("no root: every node has a parent, so the nodes form a cycle")]
    NoRoot,
    /// Two nodes lack a parent.
    #[error("two roots: nodes {first:?} and {second:?} both have no parent")]
    TwoRoots {
        /// One root.
        first: String,
        /// Another root.
        second: String,
    },
    /// A node names a parent that does not exist.
    #[error("node {node:?}, field parent: unknown node {parent:?}")]
    UnknownParent {
        /// The node.
        node: String,
        /// The missing parent.
        parent: String,
    },
    /// The parents form a cycle.
    #[error("node {node:?}, field parent: the parents form a cycle through this node")]
    Cycle {
        /// A node on the cycle.
        node: String,
    },
    /// A node is deeper than [`DEPTH_MAX`].
    #[error("node {node:?} is deeper than the limit of {max} levels", max = DEPTH_MAX)]
    TooDeep {
        /// The node.
        node: String,
    },
    /// A limit is negative or beyond [`LIMIT_MAX`].
    #[error("node {node:?}, field {field}: limit {limit} is not within [0, {max}]", max = LIMIT_MAX)]
    BadLimit {
        /// The node.
        node: String,
        /// `import_limit` or `export_limit`.
        field: &'static str,
        /// The value.
        limit: Watts,
    },
    /// A bid names a node that does not exist.
    #[error("bid {bid:?}, field node: unknown node {node:?}")]
    UnknownNode {
        /// The bid.
        bid: String,
        /// The missing node.
        node: String,
    },
    /// A bid's priority class is not below [`PRIORITY_CLASSES`].
    #[error("bid {bid:?}, field priority: {priority} is not a class from 0 to 7")]
    BadPriority {
        /// The bid.
        bid: String,
        /// The class given.
        priority: u8,
    },
    /// A bid's curve has a price outside `[floor, cap]`.
    #[error("bid {bid:?}, field curve: price {price} is outside [price_floor, price_cap]")]
    CurveOutsideBounds {
        /// The bid.
        bid: String,
        /// The offending price.
        price: Price,
    },
}

/// A validated market with its canonical order. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Market {
    floor: Price,
    cap: Price,
    nodes: Vec<Node>,
    bids: Vec<Bid>,
    pub(crate) tree: Tree,
    pub(crate) book: Book,
}

/// Every bid's curve, laid out contiguously in the canonical order, so the engine reads the
/// bids of a node from consecutive memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Book {
    pub(crate) base: Vec<i64>,
    pub(crate) total_drop: Vec<i64>,
    simple: Vec<bool>,
    /// Priority class of each bid (MR-2.4).
    pub(crate) priority: Vec<u8>,
    pub(crate) step_start: Vec<u32>,
    pub(crate) steps: Vec<Step>,
    pub(crate) ramp_start: Vec<u32>,
    pub(crate) ramps: Vec<Ramp>,
    /// Sum over the bids of their welfare constants `F(z)` (MR-4.1), which depend on the
    /// curves and the price bounds only.
    pub(crate) welfare_origin: i128,
}

impl Book {
    fn new(bids: &[Bid], order: &[u32], floor: Price, cap: Price) -> Self {
        let mut book = Book {
            base: Vec::with_capacity(order.len()),
            total_drop: Vec::with_capacity(order.len()),
            simple: Vec::with_capacity(order.len()),
            priority: Vec::with_capacity(order.len()),
            step_start: Vec::with_capacity(order.len() + 1),
            ramp_start: Vec::with_capacity(order.len() + 1),
            ..Book::default()
        };
        for &b in order {
            let view = bids[b as usize].curve.view();
            book.base.push(view.base);
            book.total_drop.push(view.total_drop);
            book.simple.push(view.simple);
            book.priority.push(bids[b as usize].priority);
            book.step_start.push(book.steps.len() as u32);
            book.steps.extend_from_slice(view.steps);
            book.ramp_start.push(book.ramps.len() as u32);
            book.ramps.extend_from_slice(view.ramps);
            book.welfare_origin += view.welfare_origin(floor.0, cap.0);
        }
        book.step_start.push(book.steps.len() as u32);
        book.ramp_start.push(book.ramps.len() as u32);
        book
    }

    /// The curve of the bid at canonical position `j`.
    #[inline]
    pub(crate) fn view(&self, j: usize) -> CurveView<'_> {
        CurveView {
            base: self.base[j],
            total_drop: self.total_drop[j],
            steps: &self.steps[self.step_start[j] as usize..self.step_start[j + 1] as usize],
            ramps: &self.ramps[self.ramp_start[j] as usize..self.ramp_start[j + 1] as usize],
            simple: self.simple[j],
        }
    }
}

/// The canonical order of a market, indexed by preorder position.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    /// Preorder position → node index (input order).
    pub(crate) node_at: Vec<u32>,
    /// Node index → preorder position.
    pub(crate) position_of: Vec<u32>,
    /// Parent's preorder position (the root has none: `u32::MAX`).
    pub(crate) parent: Vec<u32>,
    /// One past the last preorder position of the node's subtree.
    pub(crate) end: Vec<u32>,
    /// Import limit, `i64::MAX` when unlimited.
    pub(crate) import: Vec<i64>,
    /// Export limit, `i64::MAX` when unlimited.
    pub(crate) export: Vec<i64>,
    /// Bid indices grouped by the node's preorder position, sorted by id within a node.
    pub(crate) bids: Vec<u32>,
    /// `bids[bid_start[k]..bid_start[k + 1]]` are the bids of the node at position `k`.
    pub(crate) bid_start: Vec<u32>,
    /// Bid index → preorder position of its node.
    pub(crate) bid_position: Vec<u32>,
}

impl Market {
    /// Validates a market and fixes its canonical order.
    pub fn new(
        floor: Price,
        cap: Price,
        nodes: Vec<Node>,
        bids: Vec<Bid>,
    ) -> Result<Self, MarketError> {
        for (field, price) in [("price_floor", floor), ("price_cap", cap)] {
            if price.0.unsigned_abs() > PRICE_ABS_MAX.0.unsigned_abs() {
                return Err(MarketError::BoundOutOfRange { field, price });
            }
        }
        if floor >= cap {
            return Err(MarketError::FloorNotBelowCap { floor, cap });
        }
        if nodes.len() > NODES_MAX {
            return Err(MarketError::TooManyNodes { count: nodes.len() });
        }
        if bids.len() > BIDS_MAX {
            return Err(MarketError::TooManyBids { count: bids.len() });
        }
        let components: usize = bids
            .iter()
            .map(|b| b.curve.steps().len() + b.curve.ramps().len())
            .sum();
        if components > COMPONENTS_MAX {
            return Err(MarketError::TooManyComponents { count: components });
        }
        for node in &nodes {
            check_id("node", &node.id)?;
            for (field, limit) in [
                ("import_limit", node.import_limit),
                ("export_limit", node.export_limit),
            ] {
                if let Some(limit) = limit
                    && !(0..=LIMIT_MAX.0).contains(&limit.0)
                {
                    return Err(MarketError::BadLimit {
                        node: node.id.clone(),
                        field,
                        limit,
                    });
                }
            }
        }
        for bid in &bids {
            check_id("bid", &bid.id)?;
            if bid.priority >= PRIORITY_CLASSES {
                return Err(MarketError::BadPriority {
                    bid: bid.id.clone(),
                    priority: bid.priority,
                });
            }
            if let Some((low, high)) = bid.curve.price_span() {
                for price in [low, high] {
                    if price < floor || price > cap {
                        return Err(MarketError::CurveOutsideBounds {
                            bid: bid.id.clone(),
                            price,
                        });
                    }
                }
            }
        }

        // Node ids sorted: duplicates and lookups without hashing (no process randomness).
        let mut by_id: Vec<u32> = (0..nodes.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| nodes[a as usize].id.cmp(&nodes[b as usize].id));
        if let Some(w) = by_id
            .windows(2)
            .find(|w| nodes[w[0] as usize].id == nodes[w[1] as usize].id)
        {
            return Err(MarketError::DuplicateNode {
                id: nodes[w[0] as usize].id.clone(),
            });
        }
        let find = |id: &str| -> Option<u32> {
            by_id
                .binary_search_by(|&i| nodes[i as usize].id.as_str().cmp(id))
                .ok()
                .map(|k| by_id[k])
        };

        // Parents, the root, and children in id order.
        let mut parent_of = vec![u32::MAX; nodes.len()];
        let mut root: Option<u32> = None;
        for &i in &by_id {
            let node = &nodes[i as usize];
            match &node.parent {
                None => match root {
                    None => root = Some(i),
                    Some(r) => {
                        return Err(MarketError::TwoRoots {
                            first: nodes[r as usize].id.clone(),
                            second: node.id.clone(),
                        });
                    }
                },
                Some(parent) => {
                    parent_of[i as usize] =
                        find(parent).ok_or_else(|| MarketError::UnknownParent {
                            node: node.id.clone(),
                            parent: parent.clone(),
                        })?;
                }
            }
        }
        let root = root.ok_or(MarketError::NoRoot)?;
        let mut child_count = vec![0u32; nodes.len() + 1];
        for &p in &parent_of {
            if p != u32::MAX {
                child_count[p as usize + 1] += 1;
            }
        }
        for k in 1..child_count.len() {
            child_count[k] += child_count[k - 1];
        }
        let child_start = child_count;
        let mut fill = child_start.clone();
        let mut children = vec![0u32; nodes.len().saturating_sub(1)];
        for &i in &by_id {
            let p = parent_of[i as usize];
            if p != u32::MAX {
                children[fill[p as usize] as usize] = i;
                fill[p as usize] += 1;
            }
        }

        // Iterative depth-first preorder from the root; children pushed in reverse so the
        // smallest id comes out first.
        let n = nodes.len();
        let mut node_at = Vec::with_capacity(n);
        let mut position_of = vec![u32::MAX; n];
        let mut depth = vec![0u32; n];
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            position_of[i as usize] = node_at.len() as u32;
            node_at.push(i);
            let range = child_start[i as usize] as usize..child_start[i as usize + 1] as usize;
            for &c in children[range].iter().rev() {
                depth[c as usize] = depth[i as usize] + 1;
                if depth[c as usize] as usize > DEPTH_MAX {
                    return Err(MarketError::TooDeep {
                        node: nodes[c as usize].id.clone(),
                    });
                }
                stack.push(c);
            }
        }
        if node_at.len() < n {
            // Every unreached node has a parent, so following parents from one ends in a cycle.
            let mut i = (0..n).find(|&i| position_of[i] == u32::MAX).unwrap_or(0);
            let mut seen = vec![false; n];
            while !seen[i] {
                seen[i] = true;
                i = parent_of[i] as usize;
            }
            return Err(MarketError::Cycle {
                node: nodes[i].id.clone(),
            });
        }
        let mut parent = vec![u32::MAX; n];
        let mut end = vec![0u32; n];
        let mut import = vec![i64::MAX; n];
        let mut export = vec![i64::MAX; n];
        for (k, &i) in node_at.iter().enumerate() {
            let p = parent_of[i as usize];
            if p != u32::MAX {
                parent[k] = position_of[p as usize];
            }
            let node = &nodes[i as usize];
            import[k] = node.import_limit.map_or(i64::MAX, |w| w.0);
            export[k] = node.export_limit.map_or(i64::MAX, |w| w.0);
        }
        for k in (0..n).rev() {
            end[k] = end[k].max(k as u32 + 1);
            if parent[k] != u32::MAX {
                let p = parent[k] as usize;
                end[p] = end[p].max(end[k]);
            }
        }

        // Bids sorted by id (duplicates), then grouped by node position, keeping id order.
        let mut bid_by_id: Vec<u32> = (0..bids.len() as u32).collect();
        bid_by_id.sort_unstable_by(|&a, &b| bids[a as usize].id.cmp(&bids[b as usize].id));
        if let Some(w) = bid_by_id
            .windows(2)
            .find(|w| bids[w[0] as usize].id == bids[w[1] as usize].id)
        {
            return Err(MarketError::DuplicateBid {
                id: bids[w[0] as usize].id.clone(),
            });
        }
        let mut bid_position = vec![0u32; bids.len()];
        let mut bid_start = vec![0u32; n + 1];
        for (b, bid) in bids.iter().enumerate() {
            let node = find(&bid.node).ok_or_else(|| MarketError::UnknownNode {
                bid: bid.id.clone(),
                node: bid.node.clone(),
            })?;
            let k = position_of[node as usize];
            bid_position[b] = k;
            bid_start[k as usize + 1] += 1;
        }
        for k in 1..=n {
            bid_start[k] += bid_start[k - 1];
        }
        let mut fill = bid_start.clone();
        let mut grouped = vec![0u32; bids.len()];
        for &b in &bid_by_id {
            let k = bid_position[b as usize] as usize;
            grouped[fill[k] as usize] = b;
            fill[k] += 1;
        }

        let book = Book::new(&bids, &grouped, floor, cap);
        Ok(Self {
            floor,
            cap,
            book,
            nodes,
            bids,
            tree: Tree {
                node_at,
                position_of,
                parent,
                end,
                import,
                export,
                bids: grouped,
                bid_start,
                bid_position,
            },
        })
    }

    /// The price floor.
    pub const fn price_floor(&self) -> Price {
        self.floor
    }

    /// The price cap.
    pub const fn price_cap(&self) -> Price {
        self.cap
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The bids, in the order given.
    pub fn bids(&self) -> &[Bid] {
        &self.bids
    }

    /// Index of the root node.
    pub fn root(&self) -> usize {
        self.tree.node_at[0] as usize
    }

    /// Index of a node's parent, `None` for the root.
    pub fn parent(&self, node: usize) -> Option<usize> {
        let p = self.tree.parent[self.tree.position_of[node] as usize];
        (p != u32::MAX).then(|| self.tree.node_at[p as usize] as usize)
    }

    /// Replaces a node's edge limits (the generator tightens limits between clearings).
    /// Limits beyond [`LIMIT_MAX`] or negative are clamped into `[0, LIMIT_MAX]`.
    pub(crate) fn set_limits(&mut self, node: usize, import: Option<Watts>, export: Option<Watts>) {
        let clamp = |w: Option<Watts>| w.map(|w| Watts(w.0.clamp(0, LIMIT_MAX.0)));
        let (import, export) = (clamp(import), clamp(export));
        self.nodes[node].import_limit = import;
        self.nodes[node].export_limit = export;
        let k = self.tree.position_of[node] as usize;
        self.tree.import[k] = import.map_or(i64::MAX, |w| w.0);
        self.tree.export[k] = export.map_or(i64::MAX, |w| w.0);
    }

    /// Index of the node a bid sits at.
    pub fn node_of_bid(&self, bid: usize) -> usize {
        self.tree.node_at[self.tree.bid_position[bid] as usize] as usize
    }
}

fn check_id(kind: &'static str, id: &str) -> Result<(), MarketError> {
    if id.is_empty() || id.len() > ID_BYTES_MAX {
        return Err(MarketError::BadId {
            kind,
            id: id.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::Point;

    fn node(id: &str, parent: Option<&str>) -> Node {
        Node {
            id: id.into(),
            parent: parent.map(Into::into),
            import_limit: None,
            export_limit: None,
        }
    }

    fn bid(id: &str, node: &str) -> Bid {
        let curve = Curve::from_points(&[Point {
            price: Price(0),
            power: Watts(1),
        }])
        .unwrap();
        Bid::new(id, node, curve)
    }

    fn new(nodes: Vec<Node>, bids: Vec<Bid>) -> Result<Market, MarketError> {
        Market::new(DEFAULT_PRICE_FLOOR, DEFAULT_PRICE_CAP, nodes, bids)
    }

    #[test]
    fn the_canonical_order_is_preorder_with_children_by_id() {
        let m = new(
            vec![
                node("c", Some("r")),
                node("r", None),
                node("a", Some("r")),
                node("a1", Some("a")),
            ],
            vec![bid("z", "a"), bid("y", "a"), bid("x", "r")],
        )
        .unwrap();
        let ids: Vec<&str> = m
            .tree
            .node_at
            .iter()
            .map(|&i| m.nodes()[i as usize].id.as_str())
            .collect();
        assert_eq!(ids, ["r", "a", "a1", "c"]);
        assert_eq!(m.tree.end, [4, 3, 3, 4]);
        assert_eq!(m.tree.parent, [u32::MAX, 0, 1, 0]);
        let bids: Vec<&str> = m
            .tree
            .bids
            .iter()
            .map(|&b| m.bids()[b as usize].id.as_str())
            .collect();
        assert_eq!(bids, ["x", "y", "z"]);
        assert_eq!(m.tree.bid_start, [0, 1, 3, 3, 3]);
        assert_eq!(
            (m.node_of_bid(0), m.node_of_bid(1), m.node_of_bid(2)),
            (2, 2, 1)
        );
        assert_eq!(m.parent(3), Some(2));
        assert_eq!(m.parent(1), None);
    }

    #[test]
    fn trees_that_are_not_trees_are_refused() {
        assert_eq!(new(vec![], vec![]).unwrap_err(), MarketError::NoRoot);
        assert!(matches!(
            new(vec![node("a", None), node("b", None)], vec![]),
            Err(MarketError::TwoRoots { .. })
        ));
        assert!(matches!(
            new(
                vec![node("r", None), node("a", Some("b")), node("b", Some("a"))],
                vec![]
            ),
            Err(MarketError::Cycle { .. })
        ));
        assert!(matches!(
            new(vec![node("r", None), node("a", Some("a"))], vec![]),
            Err(MarketError::Cycle { node }) if node == "a"
        ));
        assert!(matches!(
            new(vec![node("r", None), node("a", Some("q"))], vec![]),
            Err(MarketError::UnknownParent { .. })
        ));
        assert!(matches!(
            new(vec![node("r", None), node("r", None)], vec![]),
            Err(MarketError::DuplicateNode { .. })
        ));
        assert!(matches!(
            new(vec![node("r", None)], vec![bid("b", "r"), bid("b", "r")]),
            Err(MarketError::DuplicateBid { .. })
        ));
        assert!(matches!(
            new(vec![node("r", None)], vec![bid("b", "s")]),
            Err(MarketError::UnknownNode { .. })
        ));
    }

    #[test]
    fn deep_chains_are_accepted_up_to_the_depth_limit() {
        let chain = |len: usize| {
            (0..len)
                .map(|i| {
                    let parent = (i > 0).then(|| format!("n{}", i - 1));
                    Node {
                        id: format!("n{i}"),
                        parent,
                        import_limit: None,
                        export_limit: None,
                    }
                })
                .collect::<Vec<_>>()
        };
        assert!(new(chain(DEPTH_MAX + 1), vec![]).is_ok());
        assert!(matches!(
            new(chain(DEPTH_MAX + 2), vec![]),
            Err(MarketError::TooDeep { .. })
        ));
    }
}
