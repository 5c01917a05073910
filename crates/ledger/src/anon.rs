//! k-anonymous groups of a feeder's sites (docs/access-rules.md, AC-6.8): what the public and
//! data service providers see of volumes, so that no answer is one site's, nor dominated by one.
//!
//! The groups partition the sites of an interval; each holds whole nodes (a node's sites are
//! never split), at least [`K_ANONYMITY`] sites, and no site above [`DOMINANCE_PERCENT`] % of
//! the group's energy. They are found bottom-up: a node with too few sites (or a dominant one)
//! is merged upward into its parent's group, and what is left at the root joins the last group
//! formed; if even the whole feeder is not a valid group, no volume is published.
//!
//! Pure: a function of the tree and the sites' energies.

/// The fewest sites a group may hold.
pub const K_ANONYMITY: usize = 5;

/// The largest share of a group's energy one site may hold, percent.
pub const DOMINANCE_PERCENT: u128 = 15;

/// A group: the nodes whose sites it holds (in post-order) and the sites (indices into the
/// input), each in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Node indices.
    pub nodes: Vec<u32>,
    /// Site indices.
    pub sites: Vec<usize>,
}

/// Whether `sites` (with `energy` per site, any unit, magnitudes) may be published together.
fn valid(sites: &[usize], energy: &[u64]) -> bool {
    if sites.len() < K_ANONYMITY {
        return false;
    }
    let total: u128 = sites.iter().map(|&s| u128::from(energy[s])).sum();
    let max = sites
        .iter()
        .map(|&s| u128::from(energy[s]))
        .max()
        .unwrap_or(0);
    // max ≤ 15 % of total, in integers: 100·max ≤ 15·total.
    max * 100 <= DOMINANCE_PERCENT * total
}

/// The groups of a feeder whose node `i` has parent `parents[i]` (`u32::MAX` for the root),
/// for sites at `site_nodes[s]` with energy magnitude `energy[s]`. Empty when the whole feeder
/// is not a valid group (fewer than [`K_ANONYMITY`] sites, or one dominant site).
pub fn groups(parents: &[u32], site_nodes: &[u32], energy: &[u64]) -> Vec<Group> {
    let n = parents.len();
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, &p) in parents.iter().enumerate() {
        if p == u32::MAX || p as usize >= n {
            roots.push(i as u32);
        } else {
            children[p as usize].push(i as u32);
        }
    }
    let mut own: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, &node) in site_nodes.iter().enumerate() {
        if let Some(v) = own.get_mut(node as usize) {
            v.push(s);
        }
    }
    // Post-order without recursion (a feeder may be deep).
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<(u32, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
    while let Some((v, done)) = stack.pop() {
        if done {
            order.push(v);
            continue;
        }
        stack.push((v, true));
        for &c in children[v as usize].iter().rev() {
            stack.push((c, false));
        }
    }
    let mut pending: Vec<Group> = vec![
        Group {
            nodes: Vec::new(),
            sites: Vec::new()
        };
        n
    ];
    let mut out: Vec<Group> = Vec::new();
    for &v in &order {
        let mut g = Group {
            nodes: Vec::new(),
            sites: Vec::new(),
        };
        for &c in &children[v as usize] {
            let cg = std::mem::take(&mut pending[c as usize]);
            g.nodes.extend(cg.nodes);
            g.sites.extend(cg.sites);
        }
        g.nodes.push(v);
        g.sites.extend(own[v as usize].iter().copied());
        let is_root = parents[v as usize] == u32::MAX || parents[v as usize] as usize >= n;
        if valid(&g.sites, energy) {
            out.push(g);
        } else if is_root {
            // What is left at a root joins the last group formed, or, if that is not valid
            // either, everything becomes one group.
            match out.pop() {
                Some(mut last) => {
                    last.nodes.extend(g.nodes);
                    last.sites.extend(g.sites);
                    if valid(&last.sites, energy) {
                        out.push(last);
                    } else {
                        let mut all = last;
                        for o in out.drain(..) {
                            all.nodes.extend(o.nodes);
                            all.sites.extend(o.sites);
                        }
                        out.push(all);
                    }
                }
                None => out.push(g),
            }
        } else {
            pending[v as usize] = g;
        }
    }
    for g in &mut out {
        g.nodes.sort_unstable();
        g.sites.sort_unstable();
    }
    if out.len() == 1 && !valid(&out[0].sites, energy) {
        return Vec::new();
    }
    out.sort_by_key(|g| g.nodes.first().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: u32 = u32::MAX;

    fn check_partition(gs: &[Group], sites: usize, energy: &[u64]) {
        let mut all: Vec<usize> = gs.iter().flat_map(|g| g.sites.clone()).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..sites).collect::<Vec<_>>(),
            "a partition of the sites"
        );
        for g in gs {
            assert!(valid(&g.sites, energy), "{g:?}");
        }
    }

    #[test]
    fn a_node_with_enough_even_sites_is_its_own_group_and_a_small_one_merges_upward() {
        // root(0) ─ a(1) with 6 sites; root ─ b(2) with 2 sites; root has 3 sites.
        let parents = [ROOT, 0, 0];
        let site_nodes = [1, 1, 1, 1, 1, 1, 2, 2, 0, 0, 0];
        let energy = [10; 11];
        let gs = groups(&parents, &site_nodes, &energy);
        // a: 6 sites, each 1/6 ≈ 16.7 % > 15 %: not valid alone, so it merges upward too.
        // root: all 11 sites, each 1/11 ≈ 9.1 %: one group.
        assert_eq!(gs.len(), 1);
        assert_eq!(gs[0].nodes, [0, 1, 2]);
        check_partition(&gs, 11, &energy);
    }

    #[test]
    fn seven_even_sites_make_a_group_and_the_rest_joins_it_at_the_root() {
        // a(1): 7 sites of 10 (each 14.3 % ≤ 15 %): a group. b(2): 2 sites, root: none; the
        // leftover at the root (b's 2 sites) joins a's group: 9 sites, each 11.1 %.
        let parents = [ROOT, 0, 0];
        let site_nodes = [1, 1, 1, 1, 1, 1, 1, 2, 2];
        let energy = [10; 9];
        let gs = groups(&parents, &site_nodes, &energy);
        assert_eq!(gs.len(), 1);
        assert_eq!(gs[0].nodes, [0, 1, 2]);
        check_partition(&gs, 9, &energy);
    }

    #[test]
    fn two_large_branches_are_two_groups() {
        // a(1) and b(2) have 8 sites each of equal energy (12.5 %): two groups; the root's
        // own two sites join the last group formed (b's): 10 sites, each 10 %. Groups are
        // listed by their first node.
        let parents = [ROOT, 0, 0];
        let mut site_nodes = vec![1; 8];
        site_nodes.extend([2; 8]);
        site_nodes.extend([0; 2]);
        let energy = vec![5; 18];
        let gs = groups(&parents, &site_nodes, &energy);
        assert_eq!(gs.len(), 2);
        assert_eq!(gs[0].nodes, [0, 2]);
        assert_eq!(gs[0].sites.len(), 10);
        assert_eq!(gs[1].nodes, [1]);
        assert_eq!(gs[1].sites.len(), 8);
        check_partition(&gs, 18, &energy);
    }

    #[test]
    fn a_dominant_site_is_merged_until_it_is_diluted_or_nothing_is_published() {
        // 8 sites at a(1), one with 100 and seven with 10: 100/170 = 59 %: not valid; with the
        // root's 10 sites of 60 (total 770), 100/770 = 13 %: one group of 18.
        let parents = [ROOT, 0];
        let mut site_nodes = vec![1; 8];
        site_nodes.extend([0; 10]);
        let mut energy = vec![100];
        energy.extend([10; 7]);
        energy.extend([60; 10]);
        let gs = groups(&parents, &site_nodes, &energy);
        assert_eq!(gs.len(), 1);
        check_partition(&gs, 18, &energy);
        // A feeder of 4 sites, or one where a site holds 20 % of everything: nothing.
        assert!(groups(&[ROOT], &[0; 4], &[1; 4]).is_empty());
        let mut e = vec![10; 9];
        e.push(30); // 30 / 120 = 25 %
        assert!(groups(&[ROOT], &[0; 10], &e).is_empty());
    }

    #[test]
    fn zero_energy_sites_count_but_dominate_nothing() {
        let gs = groups(&[ROOT], &[0; 5], &[0; 5]);
        assert_eq!(gs.len(), 1);
        assert_eq!(gs[0].sites.len(), 5);
    }
}
