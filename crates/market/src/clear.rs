//! The clearing engine: welfare-maximising prices, allocations and flows on a radial feeder.
//!
//! **What it computes.** For every node a grid price, for every bid an allocation within what
//! its curve accepts at its node's price (MR-1.2), for every edge a flow within its limits, and
//! per node the load shed (only at the cap) and the generation spilled (only at the floor), such
//! that every node balances exactly and a node's price differs from its parent's only when the
//! edge between them is at a limit in the direction of the difference. These conditions are the
//! optimality (KKT) conditions of welfare maximisation on the price grid, so the result
//! maximises welfare; [`crate::verify`] checks them independently.
//!
//! **How (MR-2).** Write `G_n(q)` for the most a subtree rooted at `n` can draw through the edge
//! above it at grid price `q`: the levels of its bids plus its children's `G`, each clipped to
//! the child's edge limits. `G_n` is non-increasing and, because grid intervals tile (MR-1.2),
//! the subtree can draw exactly `f` at price `p` whenever `G_n(p + 1) ≤ f ≤ G_n(p)`. The root's
//! price is found by bisection on `G_root` for `f = 0`, choosing within the clearing range by
//! MR-2.1. Then, top down, each node splits its flow among its own bids, its children and its
//! shedding or spilling pro rata (MR-3); a child whose flow its subtree cannot take at the
//! parent's price is behind a binding edge and gets its own price by the same bisection inside
//! its subtree, the one nearest its parent's (MR-2.2). Shedding and spilling are modelled as
//! bids just beyond the cap and the floor (MR-2.3, MR-2.4: one virtual supply per priority
//! class, lower classes nearer the cap), so real flexibility at the cap or floor is used before
//! any load is shed or generation spilled, and lower classes are shed before higher ones.
//!
//! **Cost.** A bisection first probes the two ends of its subtree's price span, where the level
//! of every node is known without looking at its bids (one pass over the nodes each). Then each
//! iteration folds into constants every component, and every whole child subtree, whose value
//! cannot change inside the remaining bracket, so late iterations touch only the few bids near
//! the clearing price. A clearing makes a few passes over the bids per level of nested binding
//! edges. Integer arithmetic only: the result is a pure function of the market, identical on
//! every machine.

use crate::curve::{
    Ramp, Step, div_round_i128, ramp_integral_to_cap, ramp_progress, step_integral_to_cap,
};
use crate::market::{Book, Market, PRIORITY_CLASSES, Tree};
use bcte_units::{Price, Watts};

/// Social welfare in W · µ/MWh, that is 10⁻¹² currency per hour (MR-4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Welfare(pub i128);

impl Welfare {
    /// W · µ/MWh per µ-currency per hour.
    pub const PER_MICRO_PER_HOUR: i128 = 1_000_000;

    /// The welfare in µ-currency per hour, rounded half away from zero.
    pub fn micro_per_hour(self) -> i128 {
        div_round_i128(self.0, Self::PER_MICRO_PER_HOUR)
    }
}

/// The result of clearing a market. Vectors are indexed like [`Market::nodes`] and
/// [`Market::bids`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clearing {
    /// Price at each node.
    pub prices: Vec<Price>,
    /// Power allocated to each bid: what its curve asks at its node's price (MR-1.2).
    pub allocations: Vec<Watts>,
    /// Net power from each node's parent into it (negative: export to the parent); zero for
    /// the root.
    pub flows: Vec<Watts>,
    /// Demand not served at each node (non-negative, only at the cap): the sum of its bids'
    /// `bid_shed`.
    pub shed: Vec<Watts>,
    /// Must-run generation not absorbed at each node (non-negative, only at the floor): the sum
    /// of its bids' `bid_spilled`.
    pub spilled: Vec<Watts>,
    /// Demand of each bid not served (MR-2.4): at most its demand at the cap, lowest priority
    /// class first. A bid's served power is its allocation less this plus `bid_spilled`.
    pub bid_shed: Vec<Watts>,
    /// Must-run generation of each bid not absorbed (MR-2.3): its share of its node's spill.
    pub bid_spilled: Vec<Watts>,
    /// Social welfare (MR-4).
    pub welfare: Welfare,
}

/// Clears one market interval. See the [module documentation](self).
pub fn clear(market: &Market) -> Clearing {
    let clearing = Engine::new(market).run();
    // The independent optimality check, in debug builds (tests) only: it costs as much again.
    debug_assert_eq!(crate::verify::verify(market, &clearing), Ok(()));
    clearing
}

/// A component being followed by a bisection: a ramp, or a step as a ramp one µ/MWh wide (a
/// step at `s` takes its whole drop from `s + 1` on, as a ramp from `s` to `s + 1` does).
#[derive(Clone, Copy, Debug)]
struct Item {
    start: i64,
    end: i64,
    drop: i64,
    count: u32,
    /// Preorder position of the node the component's bid sits at.
    node: u32,
}

impl Item {
    /// The item's (count-weighted) drop at grid price `q`.
    #[inline]
    fn progress(&self, q: i64) -> i64 {
        i64::from(self.count) * ramp_progress(self.start, self.end, self.drop, q)
    }

    /// The item's drop if it is the same at every grid price in `[lo, hi]`.
    #[inline]
    fn constant_on(&self, lo: i64, hi: i64) -> Option<i64> {
        if hi <= self.start {
            Some(0)
        } else if lo >= self.end {
            Some(i64::from(self.count) * self.drop)
        } else if (self.drop as i128) * i128::from(hi - lo) >= i128::from(self.end - self.start) {
            // The exact drop grows by at least a watt across the bracket, so its rounding does.
            None
        } else {
            let v = self.progress(lo);
            (v == self.progress(hi)).then_some(v)
        }
    }
}

/// Total drop at grid price `q` of a node's steps (which take their drop above their price).
#[inline]
fn steps_drop(steps: &[Step], q: i64) -> i64 {
    steps
        .iter()
        .map(|s| if s.price.0 < q { s.drop.0 } else { 0 })
        .sum()
}

/// Total drop at grid price `q` of a node's ramps.
#[inline]
fn ramps_drop(ramps: &[Ramp], q: i64) -> i64 {
    ramps
        .iter()
        .map(|r| i64::from(r.count) * ramp_progress(r.start.0, r.end.0, r.drop.0, q))
        .sum()
}

/// The market seen per preorder position. The components of a node's bids are two slices of
/// the market's book (its bids are consecutive there), so nothing is copied.
struct Engine<'m> {
    tree: &'m Tree,
    book: &'m Book,
    floor: i64,
    cap: i64,
    /// Sum of the own bids' levels at and below the floor.
    top: Vec<i64>,
    /// Sum of the own bids' levels above the cap.
    bottom: Vec<i64>,
    /// Net must-run generation of the own bids: what may be spilled (MR-2.3).
    spill_cap: Vec<i64>,
    /// The own bids' demand at the cap, bid by bid: what may be shed (MR-2.4).
    shed_cap: Vec<i64>,
    /// Per node, its sheddable demand by priority class: `(class, cumulative demand of the
    /// classes up to it)`, classes increasing, only classes with demand. The virtual supply of
    /// class `c` sits at `cap + 1 + c` on the extended grid (MR-2.4).
    shed_classes: Vec<(u8, i64)>,
    /// `shed_classes[shed_class_start[k]..shed_class_start[k + 1]]` are node `k`'s.
    shed_class_start: Vec<u32>,
    /// Lowest start and highest end of the own components: outside them the own level is
    /// `top` or `bottom`.
    own_span: Vec<(i64, i64)>,
    /// The same over the whole subtree: outside it `G` changes only by shedding or spilling.
    subtree_span: Vec<(i64, i64)>,
}

/// Reusable buffers of the bisection.
struct Scratch {
    v_lo: Vec<i64>,
    v_hi: Vec<i64>,
    acc: Vec<i64>,
    cst: Vec<i64>,
    dead: Vec<bool>,
    live_nodes: Vec<u32>,
    /// The live components, copied so each pass streams through a shrinking array.
    live_items: Vec<Item>,
}

impl Scratch {
    /// Buffers for `n` nodes and `components` steps and ramps, allocated once: the root's
    /// bisection starts with nearly every component live.
    fn new(n: usize, components: usize) -> Self {
        Self {
            v_lo: vec![0; n],
            v_hi: vec![0; n],
            acc: vec![0; n],
            cst: vec![0; n],
            dead: vec![false; n],
            live_nodes: Vec::with_capacity(n),
            live_items: Vec::with_capacity(components),
        }
    }
}

/// Levels of every subtree and of every node's own bids at a zone's price `p` and at `p + 1`.
struct Zone {
    g_p: Vec<i64>,
    g_p1: Vec<i64>,
    own_p: Vec<i64>,
    own_p1: Vec<i64>,
}

/// Which side of a threshold the bisection looks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// The first `q` with `G(q) ≤ t`.
    AtMost,
    /// The first `q` with `G(q) < t`.
    Below,
}

impl Bound {
    #[inline]
    fn holds(self, value: i64, target: i64) -> bool {
        match self {
            Self::AtMost => value <= target,
            Self::Below => value < target,
        }
    }
}

impl<'m> Engine<'m> {
    fn new(market: &'m Market) -> Self {
        let tree = &market.tree;
        let book = &market.book;
        let n = tree.node_at.len();
        let mut engine = Self {
            tree,
            book,
            floor: market.price_floor().0,
            cap: market.price_cap().0,
            top: vec![0; n],
            bottom: vec![0; n],
            spill_cap: vec![0; n],
            shed_cap: vec![0; n],
            shed_classes: Vec::new(),
            shed_class_start: Vec::with_capacity(n + 1),
            own_span: vec![(i64::MAX, i64::MIN); n],
            subtree_span: Vec::new(),
        };
        for k in 0..n {
            let mut by_class = [0i64; PRIORITY_CLASSES as usize];
            for j in tree.bid_start[k] as usize..tree.bid_start[k + 1] as usize {
                engine.top[k] += book.base[j];
                let at_cap = book.base[j] - book.total_drop[j];
                engine.bottom[k] += at_cap;
                // MR-2.4: each bid's own demand at the cap may be shed, in its class; a
                // generator at the same node does not net it out, so that its power can serve
                // a higher class elsewhere.
                by_class[usize::from(book.priority[j])] += at_cap.max(0);
            }
            engine
                .shed_class_start
                .push(engine.shed_classes.len() as u32);
            let mut cumulative = 0;
            for (class, &demand) in by_class.iter().enumerate() {
                if demand > 0 {
                    cumulative += demand;
                    engine.shed_classes.push((class as u8, cumulative));
                }
            }
            engine.shed_cap[k] = cumulative;
            // MR-2.3: a node spills at most its bids' net must-run generation, so summing its
            // bids changes nothing.
            engine.spill_cap[k] = (-engine.top[k]).max(0);
            let (steps, ramps) = engine.components(k);
            let span = &mut engine.own_span[k];
            // Steps of a bid are sorted, ramps by start; both are short per bid.
            for s in steps {
                span.0 = span.0.min(s.price.0);
                span.1 = span.1.max(s.price.0 + 1);
            }
            for r in ramps {
                span.0 = span.0.min(r.start.0);
                span.1 = span.1.max(r.end.0);
            }
        }
        engine
            .shed_class_start
            .push(engine.shed_classes.len() as u32);
        let mut subtree_span = engine.own_span.clone();
        for k in (1..n).rev() {
            let p = tree.parent[k] as usize;
            subtree_span[p].0 = subtree_span[p].0.min(subtree_span[k].0);
            subtree_span[p].1 = subtree_span[p].1.max(subtree_span[k].1);
        }
        engine.subtree_span = subtree_span;
        engine
    }

    /// The steps and ramps of node `k`'s bids.
    #[inline]
    fn components(&self, k: usize) -> (&'m [Step], &'m [Ramp]) {
        let (tree, book) = (self.tree, self.book);
        let (a, b) = (tree.bid_start[k] as usize, tree.bid_start[k + 1] as usize);
        let steps = &book.steps[book.step_start[a] as usize..book.step_start[b] as usize];
        let ramps = &book.ramps[book.ramp_start[a] as usize..book.ramp_start[b] as usize];
        (steps, ramps)
    }

    /// Spilling (a bid just below the floor) and shedding (a bid just above the cap) at node
    /// `k` (MR-2.3, MR-2.4).
    #[inline]
    fn virtual_level(&self, k: usize, q: i64) -> i64 {
        if q < self.floor {
            self.spill_cap[k]
        } else if q <= self.cap + 1 {
            0
        } else if q >= self.top_price() {
            -self.shed_cap[k]
        } else {
            // The supply of class c (a step at cap + 1 + c) is all taken from cap + 2 + c on.
            let last = q - self.cap - 2;
            let classes = &self.shed_classes
                [self.shed_class_start[k] as usize..self.shed_class_start[k + 1] as usize];
            -classes
                .iter()
                .take_while(|&&(c, _)| i64::from(c) <= last)
                .last()
                .map_or(0, |&(_, cumulative)| cumulative)
        }
    }

    /// The price just above the extended grid: every class of load is shed at or above it.
    #[inline]
    const fn top_price(&self) -> i64 {
        self.cap + 1 + PRIORITY_CLASSES as i64
    }

    /// How much of each of node `k`'s priority classes is shed when the node sheds `total` at
    /// extended price `p` (MR-2.4): the classes below `p`'s fully, `p`'s own class the rest.
    /// Calls `each(class, shed)` for every class with demand, increasing.
    fn shed_by_class(&self, k: usize, p: i64, total: i64, mut each: impl FnMut(u8, i64)) {
        let marginal = p - self.cap - 1;
        let classes = &self.shed_classes
            [self.shed_class_start[k] as usize..self.shed_class_start[k + 1] as usize];
        let mut before = 0;
        let mut left = total;
        for &(class, cumulative) in classes {
            let demand = cumulative - before;
            before = cumulative;
            let shed = if i64::from(class) < marginal {
                demand
            } else if i64::from(class) == marginal {
                left
            } else {
                0
            };
            let shed = shed.min(left);
            left -= shed;
            each(class, shed);
        }
        debug_assert_eq!(left, 0, "node {k} sheds more than its classes hold");
    }

    /// The own bids' summed level at node `k`, without shedding and spilling.
    #[inline]
    fn own_real(&self, k: usize, q: i64) -> i64 {
        let (low, high) = self.own_span[k];
        if q <= low {
            self.top[k]
        } else if q >= high {
            self.bottom[k]
        } else {
            let (steps, ramps) = self.components(k);
            self.top[k] - steps_drop(steps, q) - ramps_drop(ramps, q)
        }
    }

    /// Clips a subtree's level to its edge limits.
    #[inline]
    fn clip(&self, k: usize, v: i64) -> i64 {
        v.clamp(-self.tree.export[k], self.tree.import[k])
    }

    /// `out[k] = G_k(q)` (unclipped) for every `k` in the subtree of `s`. Costs one pass over
    /// the components of the nodes whose span contains `q`.
    fn eval_into(&self, s: usize, q: i64, out: &mut [i64]) {
        let end = self.tree.end[s] as usize;
        out[s..end].fill(0);
        for k in (s..end).rev() {
            let v = out[k] + self.own_real(k, q) + self.virtual_level(k, q);
            out[k] = v;
            if k != s {
                out[self.tree.parent[k] as usize] += self.clip(k, v);
            }
        }
    }

    /// One pass over the subtree of `z` at `p` and `p + 1`, filling `zone`.
    fn eval_zone(&self, z: usize, p: i64, zone: &mut Zone) {
        let end = self.tree.end[z] as usize;
        zone.g_p[z..end].fill(0);
        zone.g_p1[z..end].fill(0);
        for k in (z..end).rev() {
            let (low, high) = self.own_span[k];
            let (own_p, own_p1) = if p < low {
                (self.top[k], self.top[k])
            } else if p >= high {
                (self.bottom[k], self.bottom[k])
            } else {
                let (steps, ramps) = self.components(k);
                let (mut d, mut d1) = (0i64, 0i64);
                for s in steps {
                    d += if s.price.0 < p { s.drop.0 } else { 0 };
                    d1 += if s.price.0 <= p { s.drop.0 } else { 0 };
                }
                for r in ramps {
                    let count = i64::from(r.count);
                    d += count * ramp_progress(r.start.0, r.end.0, r.drop.0, p);
                    d1 += count * ramp_progress(r.start.0, r.end.0, r.drop.0, p + 1);
                }
                (self.top[k] - d, self.top[k] - d1)
            };
            zone.own_p[k] = own_p;
            zone.own_p1[k] = own_p1;
            let v = zone.g_p[k] + own_p + self.virtual_level(k, p);
            let v1 = zone.g_p1[k] + own_p1 + self.virtual_level(k, p + 1);
            zone.g_p[k] = v;
            zone.g_p1[k] = v1;
            if k != z {
                let parent = self.tree.parent[k] as usize;
                zone.g_p[parent] += self.clip(k, v);
                zone.g_p1[parent] += self.clip(k, v1);
            }
        }
    }

    /// The smallest `q` in `(q_lo, q_hi]` where `G_s(q)` is at most (or below) `target`, and
    /// `G_s(q)`. The caller has put `G_k(q_lo)` and `G_k(q_hi)` for the subtree's nodes in
    /// `sc.v_lo` and `sc.v_hi`; the bound must hold at `q_hi`.
    fn search(
        &self,
        sc: &mut Scratch,
        s: usize,
        target: i64,
        (q_lo, q_hi): (i64, i64),
        bound: Bound,
    ) -> (i64, i64) {
        let tree = self.tree;
        let end = tree.end[s] as usize;
        debug_assert!(bound.holds(sc.v_hi[s], target));
        let (mut lo, mut hi) = (q_lo, q_hi);

        // Outside the subtree's component prices G changes only at the virtual prices, so
        // probing the two ends of that span (one pass over the nodes each) narrows the bracket
        // before any component is evaluated.
        let (low, high) = self.subtree_span[s];
        for probe in [low.max(self.floor), high.min(self.cap + 1)] {
            if lo < probe && probe < hi {
                self.eval_into(s, probe, &mut sc.acc);
                if bound.holds(sc.acc[s], target) {
                    hi = probe;
                    sc.v_hi[s..end].copy_from_slice(&sc.acc[s..end]);
                } else {
                    lo = probe;
                    sc.v_lo[s..end].copy_from_slice(&sc.acc[s..end]);
                }
            }
        }
        if hi - lo <= 1 {
            return (hi, sc.v_hi[s]);
        }

        // What is constant on the whole bracket folds into `cst` now: whole subtrees whose
        // clipped level does not change, and components that do not change.
        sc.live_nodes.clear();
        sc.live_items.clear();
        sc.dead[s..end].fill(false);
        let mut k = s;
        while k < end {
            if k != s {
                let folded = self.clip(k, sc.v_lo[k]);
                if folded == self.clip(k, sc.v_hi[k]) {
                    sc.cst[tree.parent[k] as usize] += folded;
                    k = tree.end[k] as usize;
                    continue;
                }
            }
            sc.live_nodes.push(k as u32);
            sc.cst[k] = self.top[k];
            let (steps, ramps) = self.components(k);
            let node = k as u32;
            let items = steps
                .iter()
                .map(|st| Item {
                    start: st.price.0,
                    end: st.price.0 + 1,
                    drop: st.drop.0,
                    count: 1,
                    node,
                })
                .chain(ramps.iter().map(|r| Item {
                    start: r.start.0,
                    end: r.end.0,
                    drop: r.drop.0,
                    count: r.count,
                    node,
                }));
            for item in items {
                match item.constant_on(lo, hi) {
                    Some(v) => sc.cst[k] -= v,
                    None => sc.live_items.push(item),
                }
            }
            k += 1;
        }

        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            for &k in &sc.live_nodes {
                let k = k as usize;
                sc.acc[k] = sc.cst[k] + self.virtual_level(k, mid);
            }
            for item in &sc.live_items {
                sc.acc[item.node as usize] -= item.progress(mid);
            }
            for &k in sc.live_nodes.iter().rev() {
                let k = k as usize;
                if k != s {
                    let parent = tree.parent[k] as usize;
                    sc.acc[parent] += self.clip(k, sc.acc[k]);
                }
            }
            let up = bound.holds(sc.acc[s], target);
            if up {
                hi = mid;
            } else {
                lo = mid;
            }

            // Move one end of the bracket to `mid`, then fold what became constant.
            let mut write = 0;
            let mut skip_until = 0usize;
            for i in 0..sc.live_nodes.len() {
                let k = sc.live_nodes[i] as usize;
                if k < skip_until {
                    sc.dead[k] = true;
                    continue;
                }
                if up {
                    sc.v_hi[k] = sc.acc[k];
                } else {
                    sc.v_lo[k] = sc.acc[k];
                }
                if k != s {
                    let folded = self.clip(k, sc.v_lo[k]);
                    if folded == self.clip(k, sc.v_hi[k]) {
                        sc.cst[tree.parent[k] as usize] += folded;
                        sc.dead[k] = true;
                        skip_until = tree.end[k] as usize;
                        continue;
                    }
                }
                sc.live_nodes[write] = k as u32;
                write += 1;
            }
            sc.live_nodes.truncate(write);
            let (dead, cst) = (&sc.dead, &mut sc.cst);
            sc.live_items.retain(|item| {
                if dead[item.node as usize] {
                    return false;
                }
                match item.constant_on(lo, hi) {
                    Some(v) => {
                        cst[item.node as usize] -= v;
                        false
                    }
                    None => true,
                }
            });
        }
        (hi, sc.v_hi[s])
    }

    /// The root's price on the extended grid `[floor − 1, cap + 8]` (MR-2.1, MR-2.4).
    fn root_price(&self, sc: &mut Scratch) -> i64 {
        let (floor, cap) = (self.floor, self.cap);
        // The clearing range is [pa, pb]: G(pa + 1) ≤ 0 ≤ G(pa), and pb the last such price.
        self.eval_into(0, floor - 1, &mut sc.v_lo);
        let top = self.top_price();
        self.eval_into(0, top, &mut sc.v_hi);
        let g_top = sc.v_hi[0];
        let (q1, g1) = self.search(sc, 0, 0, (floor - 1, top), Bound::AtMost);
        let pa = q1 - 1;
        let pb = if g1 < 0 || q1 >= top {
            pa
        } else if g_top < 0 {
            self.eval_into(0, q1, &mut sc.v_lo);
            self.eval_into(0, top, &mut sc.v_hi);
            self.search(sc, 0, 0, (q1, top), Bound::Below).0 - 1
        } else {
            top - 1
        };
        // A range end is set by a bid unless it is the virtual price beyond the floor or cap.
        let lower_set_by_bid = pa >= floor;
        let upper_set_by_bid = pb <= cap;
        if pa == pb {
            pa
        } else if lower_set_by_bid && upper_set_by_bid {
            // MR-2.1 (b): both ends set by bids: the midpoint, rounded down.
            pa + (pb - pa) / 2
        } else if lower_set_by_bid {
            // MR-2.1 (c): only the lower end is set by a bid (e.g. inelastic demand exactly
            // equal to a supply step): the marginal bid's price.
            pa
        } else if upper_set_by_bid {
            // MR-2.1 (c): only the upper end is set by a bid (e.g. must-run supply exactly
            // equal to a demand step).
            pb
        } else {
            // MR-2.1 (d): no bid bounds the range: zero, within [floor, cap].
            0i64.clamp(floor, cap)
        }
    }

    /// The price of child `c` that must draw `flow`, given its parent's price `r` and every
    /// subtree level at `r` and `r + 1` (MR-2.2).
    fn child_price(
        &self,
        sc: &mut Scratch,
        c: usize,
        flow: i64,
        r: i64,
        g_r: &[i64],
        g_r1: &[i64],
    ) -> i64 {
        let end = self.tree.end[c] as usize;
        if g_r1[c] <= flow && flow <= g_r[c] {
            // MR-2.2 (a): the parent's price clears the child: no separation. This includes a
            // node without bids behind an unconstrained edge.
            r
        } else if g_r1[c] > flow {
            // MR-2.2 (b): import-limited: the lowest clearing price above the parent's.
            sc.v_lo[c..end].copy_from_slice(&g_r1[c..end]);
            self.eval_into(c, self.top_price(), &mut sc.v_hi);
            self.search(sc, c, flow, (r + 1, self.top_price()), Bound::AtMost)
                .0
                - 1
        } else {
            // MR-2.2 (b): export-limited: the highest clearing price below the parent's.
            self.eval_into(c, self.floor - 2, &mut sc.v_lo);
            sc.v_hi[c..end].copy_from_slice(&g_r[c..end]);
            self.search(sc, c, flow, (self.floor - 2, r), Bound::Below)
                .0
                - 1
        }
    }

    /// `Σ F(p)` over node `k`'s bids (MR-4.1): the welfare integral of its components from
    /// `p` to the cap, each rounded on its own exactly as [`crate::curve`] does.
    fn own_integral_to_cap(&self, k: usize, p: i64) -> i128 {
        let (steps, ramps) = self.components(k);
        let mut acc = i128::from(self.top[k]) * i128::from(self.cap - p);
        for s in steps {
            acc -= step_integral_to_cap(s.price.0, s.drop.0, p, self.cap);
        }
        for r in ramps {
            acc -= i128::from(r.count)
                * ramp_integral_to_cap(r.start.0, r.end.0, r.drop.0, p, self.cap);
        }
        acc
    }

    fn run(&self) -> Clearing {
        let (tree, book) = (self.tree, self.book);
        let n = tree.node_at.len();
        let mut sc = Scratch::new(n, book.steps.len() + book.ramps.len());
        let mut price = vec![0i64; n];
        let mut flow = vec![0i64; n];
        let mut separated = vec![false; n];
        let mut shed = vec![0i64; n];
        let mut spill = vec![0i64; n];
        let mut allocation = vec![Watts::ZERO; tree.bids.len()];
        let mut bid_shed = vec![Watts::ZERO; tree.bids.len()];
        let mut bid_spilled = vec![Watts::ZERO; tree.bids.len()];
        let mut members: Vec<usize> = Vec::new();
        let mut zone = Zone {
            g_p: vec![0; n],
            g_p1: vec![0; n],
            own_p: vec![0; n],
            own_p1: vec![0; n],
        };
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut shares: Vec<i64> = Vec::new();
        let mut order: Vec<(i128, u32)> = Vec::new();
        // MR-4.1: Σ a · p + F(p) − F(z); the F(z) are constants of the book.
        let mut welfare: i128 = -book.welfare_origin;

        let mut zones = vec![0usize];
        price[0] = self.root_price(&mut sc);
        while let Some(z) = zones.pop() {
            let p = price[z];
            self.eval_zone(z, p, &mut zone);
            let (g_p, g_p1) = (&zone.g_p, &zone.g_p1);
            let reported = p.clamp(self.floor, self.cap);
            let end = tree.end[z] as usize;
            let mut k = z;
            while k < end {
                if k != z && separated[k] {
                    k = tree.end[k] as usize;
                    continue;
                }
                price[k] = p;
                debug_assert!(
                    g_p1[k] <= flow[k] && flow[k] <= g_p[k],
                    "node {k} cannot take its flow"
                );

                // MR-3.1: the node's flow goes to its own bids as one group, each child, and
                // its shedding or spilling, pro rata to their slack at this price.
                ranges.clear();
                ranges.push((zone.own_p1[k], zone.own_p[k]));
                let mut c = k + 1;
                while c < tree.end[k] as usize {
                    ranges.push((self.clip(c, g_p1[c]), self.clip(c, g_p[c])));
                    c = tree.end[c] as usize;
                }
                ranges.push((self.virtual_level(k, p + 1), self.virtual_level(k, p)));
                split_pro_rata(&ranges, flow[k], &mut shares, &mut order);
                let own_total = shares[0];
                let virtual_share = shares[shares.len() - 1];
                if p < self.floor {
                    spill[k] = virtual_share;
                } else if p > self.cap {
                    shed[k] = -virtual_share;
                }
                let mut c = k + 1;
                let mut i = 1;
                while c < tree.end[k] as usize {
                    flow[c] = shares[i];
                    if !(g_p1[c] <= flow[c] && flow[c] <= g_p[c]) {
                        separated[c] = true;
                        price[c] = self.child_price(&mut sc, c, flow[c], p, g_p, g_p1);
                        zones.push(c);
                    }
                    i += 1;
                    c = tree.end[c] as usize;
                }

                // MR-3.2: the own group's total goes to the bids pro rata; a group at either
                // end of its range gives every bid that end.
                let own = tree.bid_start[k] as usize..tree.bid_start[k + 1] as usize;
                let at = if own_total == zone.own_p[k] {
                    Some(p)
                } else if own_total == zone.own_p1[k] {
                    Some(p + 1)
                } else {
                    None
                };
                match at {
                    Some(q) => {
                        for j in own.clone() {
                            allocation[tree.bids[j] as usize] = Watts(book.view(j).level(q));
                        }
                    }
                    None => {
                        ranges.clear();
                        for j in own.clone() {
                            let curve = book.view(j);
                            ranges.push((curve.level(p + 1), curve.level(p)));
                        }
                        split_pro_rata(&ranges, own_total, &mut shares, &mut order);
                        for (j, &a) in own.clone().zip(&shares) {
                            allocation[tree.bids[j] as usize] = Watts(a);
                        }
                    }
                }
                // MR-2.4: the node's shed, class by class (lower classes first), is shared among
                // the bids of each class pro rata to their demand at the cap (MR-3.3 rounding,
                // ties to the smaller bid id).
                if shed[k] > 0 {
                    self.shed_by_class(k, p, shed[k], |class, amount| {
                        if amount == 0 {
                            return;
                        }
                        ranges.clear();
                        members.clear();
                        for j in own.clone() {
                            if book.priority[j] == class {
                                let demand = (book.base[j] - book.total_drop[j]).max(0);
                                ranges.push((0, demand));
                                members.push(j);
                            }
                        }
                        split_pro_rata(&ranges, amount, &mut shares, &mut order);
                        for (&j, &w) in members.iter().zip(&shares) {
                            bid_shed[tree.bids[j] as usize] = Watts(w);
                        }
                    });
                }
                // MR-2.3: the node's spill is shared among its bids pro rata to their must-run
                // generation (MR-3.3 rounding).
                if spill[k] > 0 {
                    ranges.clear();
                    members.clear();
                    for j in own.clone() {
                        if book.base[j] < 0 {
                            ranges.push((0, -book.base[j]));
                            members.push(j);
                        }
                    }
                    split_pro_rata(&ranges, spill[k], &mut shares, &mut order);
                    for (&j, &w) in members.iter().zip(&shares) {
                        bid_spilled[tree.bids[j] as usize] = Watts(w);
                    }
                }
                // MR-4.1 and MR-4.2: shed load is worth the cap, spilled generation the floor.
                welfare += i128::from(own_total) * i128::from(reported)
                    + self.own_integral_to_cap(k, reported);
                welfare -= i128::from(shed[k]) * i128::from(self.cap);
                welfare += i128::from(spill[k]) * i128::from(self.floor);
                k += 1;
            }
        }

        let mut out = Clearing {
            prices: vec![Price::ZERO; n],
            allocations: allocation,
            flows: vec![Watts::ZERO; n],
            shed: vec![Watts::ZERO; n],
            spilled: vec![Watts::ZERO; n],
            bid_shed,
            bid_spilled,
            welfare: Welfare(welfare),
        };
        for k in 0..n {
            let i = tree.node_at[k] as usize;
            out.prices[i] = Price(price[k].clamp(self.floor, self.cap));
            out.flows[i] = Watts(flow[k]);
            out.shed[i] = Watts(shed[k]);
            out.spilled[i] = Watts(spill[k]);
        }
        out
    }
}

/// Splits `target` among elements accepting `[lo, hi]` each: every element gets its `lo` plus a
/// share of the rest proportional to its slack `hi − lo`, rounded down; the watts left by the
/// rounding go one each to the elements with the largest remainders, ties to the earlier
/// element (MR-3.3). Requires `Σ lo ≤ target ≤ Σ hi`.
fn split_pro_rata(
    ranges: &[(i64, i64)],
    target: i64,
    out: &mut Vec<i64>,
    order: &mut Vec<(i128, u32)>,
) {
    out.clear();
    let total_lo: i64 = ranges.iter().map(|r| r.0).sum();
    let total_slack: i64 = ranges.iter().map(|r| r.1 - r.0).sum();
    let rest = target - total_lo;
    debug_assert!(
        (0..=total_slack).contains(&rest),
        "target outside the ranges"
    );
    if rest <= 0 || total_slack == 0 {
        out.extend(ranges.iter().map(|r| r.0));
        return;
    }
    if rest >= total_slack {
        out.extend(ranges.iter().map(|r| r.1));
        return;
    }
    order.clear();
    let mut given = 0i64;
    let (rest128, slack128) = (i128::from(rest), i128::from(total_slack));
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let num = rest128 * i128::from(hi - lo);
        let share = (num / slack128) as i64;
        let remainder = num % slack128;
        out.push(lo + share);
        given += share;
        if remainder > 0 {
            order.push((remainder, i as u32));
        }
    }
    let left = (rest - given) as usize;
    if left > 0 {
        order.select_nth_unstable_by(left - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &order[..left] {
            out[i as usize] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(ranges: &[(i64, i64)], target: i64) -> Vec<i64> {
        let mut out = Vec::new();
        split_pro_rata(ranges, target, &mut out, &mut Vec::new());
        out
    }

    #[test]
    fn pro_rata_gives_the_remainder_to_the_largest_remainders_then_the_earliest() {
        assert_eq!(split(&[(0, 10), (0, 10), (0, 10)], 10), [4, 3, 3]);
        assert_eq!(split(&[(0, 10), (0, 10), (0, 10)], 20), [7, 7, 6]);
        assert_eq!(split(&[(0, 1), (0, 2), (5, 5)], 6), [0, 1, 5]);
        assert_eq!(split(&[(0, 3), (0, 6)], 4), [1, 3]);
        assert_eq!(split(&[(-4, 0), (2, 2)], -2), [-4, 2]);
        assert_eq!(split(&[(-4, 0), (2, 2)], 2), [0, 2]);
    }

    #[test]
    fn welfare_rounds_to_micro_currency_per_hour() {
        assert_eq!(Welfare(1_500_000).micro_per_hour(), 2);
        assert_eq!(Welfare(-1_499_999).micro_per_hour(), -1);
    }
}
