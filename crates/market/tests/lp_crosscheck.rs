//! Cross-check against a general LP solver: on random step-curve markets, the engine's welfare
//! equals the optimum of the welfare-maximisation linear program solved by `microlp`.
//!
//! The LP is built from the market's points, independently of the engine: a bid is its power
//! at the cap plus one variable per vertical step, worth the step's price per kW; each node has
//! a balance row, each edge a bounded flow, each bid shedding (worth minus the cap) up to its
//! demand at the cap (MR-2.4) and each node spilling (worth the floor) up to its net must-run
//! generation (MR-2.3). Priority classes order the shedding but do not change its worth, so
//! the optimum's welfare does not depend on them. Step curves are exact on the price grid, so the two optima must agree to the
//! solver's precision. Sloped curves are covered by the optimality checks of `properties.rs`.

mod common;

use bcte_market::clear;
use common::{Spec, build, points, spec};
use microlp::{ComparisonOp, OptimizationDirection, Problem};
use proptest::prelude::*;

const KW: f64 = 1_000.0;
const PER_UNIT: f64 = common::UNIT as f64;

/// The area under a step curve's inverse from 0 to its lowest power (kW · currency/MWh):
/// demand that holds at every price counts at the cap, generation that runs at every price at
/// the floor (MR-4.1).
fn welfare_at_lowest(lowest: f64, highest: f64, steps: &[(f64, f64)], floor: f64, cap: f64) -> f64 {
    if lowest >= 0.0 {
        return lowest * cap;
    }
    let mut area = 0.0;
    let mut level = highest;
    for &(price, height) in steps {
        let (top, bottom) = (level, level - height);
        area += price * (top.min(0.0) - bottom.max(lowest)).max(0.0);
        level = bottom;
    }
    if highest < 0.0 {
        area += floor * -highest;
    }
    -area
}

/// The optimal welfare of the market's linear program, kW · currency/MWh.
fn lp_welfare(spec: &Spec) -> f64 {
    let (floor, cap) = (spec.floor as f64 / PER_UNIT, spec.cap as f64 / PER_UNIT);
    let n = spec.nodes.len();
    let mut problem = Problem::new(OptimizationDirection::Maximize);
    let mut rows: Vec<Vec<(microlp::Variable, f64)>> = vec![Vec::new(); n];
    let mut rhs = vec![0.0; n];
    let mut top = vec![0.0; n];
    let mut constant = 0.0;
    for bid in &spec.bids {
        let pts: Vec<(f64, f64)> = points(spec, bid)
            .iter()
            .map(|p| (p.price.0 as f64 / PER_UNIT, p.power.0 as f64 / KW))
            .collect();
        let (highest, lowest) = (pts[0].1, pts[pts.len() - 1].1);
        let steps: Vec<(f64, f64)> = pts
            .windows(2)
            .filter(|w| w[0].1 > w[1].1)
            .map(|w| (w[0].0, w[0].1 - w[1].1))
            .collect();
        constant += welfare_at_lowest(lowest, highest, &steps, floor, cap);
        if lowest > 0.0 {
            rows[bid.node].push((problem.add_var(-cap, (0.0, lowest)), -1.0));
        }
        rhs[bid.node] -= lowest;
        top[bid.node] += highest;
        for &(price, height) in &steps {
            rows[bid.node].push((problem.add_var(price, (0.0, height)), 1.0));
        }
    }
    for i in 0..n {
        rows[i].push((problem.add_var(floor, (0.0, f64::max(0.0, -top[i]))), 1.0));
        if i > 0 {
            let node = &spec.nodes[i];
            let import = node.import.map_or(f64::INFINITY, |w| w as f64 / KW);
            let export = node.export.map_or(f64::INFINITY, |w| w as f64 / KW);
            let flow = problem.add_var(0.0, (-export, import));
            rows[i].push((flow, -1.0));
            rows[node.parent % i].push((flow, 1.0));
        }
    }
    for (row, rhs) in rows.iter().zip(rhs) {
        problem.add_constraint(row.as_slice(), ComparisonOp::Eq, rhs);
    }
    let outcome = problem
        .solve()
        .expect("the LP is feasible: shedding and spilling balance any node");
    let solution = outcome.into_solution().expect("solved");
    solution.objective() + constant
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn welfare_equals_the_lp_optimum_on_step_curves(spec in spec(6, 10, true)) {
        let ours = clear(&build(&spec)).welfare.0 as f64 / 1e9;
        let lp = lp_welfare(&spec);
        let tolerance = 1e-6 * lp.abs().max(1.0);
        prop_assert!((ours - lp).abs() <= tolerance, "engine {ours} vs LP {lp}");
    }
}
