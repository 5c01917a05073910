//! Seeded random markets for tests and benchmarks.
//!
//! [`generate`] builds a feeder of a given size and depth (a substation, then levels of nodes
//! each attached round-robin to the level above), an upstream-grid bid at the root and a mix of
//! household devices at the nodes, then tightens edge limits until at least the requested share
//! of edges is at its limit in the clearing. The same parameters give the same market on every
//! machine: the random numbers come from a SplitMix64 stream of the seed, and the calibration
//! clears with the (deterministic) engine.
//!
//! Every price is a multiple of 0.01 currency/MWh and every power a whole watt, so the market
//! survives a round trip through a market file unchanged.

use crate::clear::clear;
use crate::curve::{Curve, CurveError, Point};
use crate::market::{Bid, DEFAULT_PRICE_CAP, DEFAULT_PRICE_FLOOR, Market, MarketError, Node};
use bcte_units::{Price, Watts};

/// What kind of curves the devices bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveMix {
    /// Sloped household curves (loads, batteries, heat pumps) mixed with steps (PV, EVs).
    Mixed,
    /// Step curves only (PowerMatcher-style demand and supply staircases), which a linear
    /// program represents exactly.
    Steps,
}

/// Parameters of [`generate`].
#[derive(Clone, Debug)]
pub struct Params {
    /// Number of bids, the upstream-grid bid included.
    pub bids: usize,
    /// Number of nodes, the root included.
    pub nodes: usize,
    /// Levels below the root (at least 1).
    pub levels: usize,
    /// Seed of the random stream.
    pub seed: u64,
    /// Share of edges to bring to their limit, in thousandths.
    pub congested_permille: u32,
    /// Kind of curves.
    pub mix: CurveMix,
}

/// A generated market and how congested it turned out.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The market.
    pub market: Market,
    /// Number of edges (non-root nodes).
    pub edges: usize,
    /// Edges at their limit in the market's clearing.
    pub congested: usize,
}

/// Why a market could not be generated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// Fewer nodes than levels plus the root.
    #[error("{nodes} nodes cannot fill {levels} levels below a root")]
    TooFewNodes {
        /// Nodes asked for.
        nodes: usize,
        /// Levels asked for.
        levels: usize,
    },
    /// No bids at all: at least the upstream grid is needed.
    #[error("at least one bid (the upstream grid) is needed")]
    NoBids,
    /// More than 1000 thousandths.
    #[error("the congested share {0}‰ is above 1000‰")]
    BadShare(u32),
    /// A curve breaks a limit (too many bids for their powers to fit).
    #[error(transparent)]
    Curve(#[from] CurveError),
    /// The market breaks a limit.
    #[error(transparent)]
    Market(#[from] MarketError),
}

/// SplitMix64: small, fast, and fixed forever, so a seed always gives the same market.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A price in whole hundredths of a currency unit per MWh.
fn cents(c: i64) -> Price {
    Price(c * 10_000)
}

fn curve(points: &[(Price, i64)]) -> Result<Curve, CurveError> {
    let points: Vec<Point> = points
        .iter()
        .map(|&(price, w)| Point {
            price,
            power: Watts(w),
        })
        .collect();
    Curve::from_points(&points)
}

/// One household-scale device curve, powers multiplied by `scale`.
fn device(rng: &mut Rng, mix: CurveMix, scale: i64) -> Result<Curve, CurveError> {
    match mix {
        CurveMix::Mixed => match rng.range(0, 99) {
            // Base load: sloped demand, a floor of essential load.
            0..40 => {
                let hi = rng.range(1_000, 8_000);
                let lo = rng.range(100, 1_000).min(hi / 3);
                curve(&[
                    (cents(0), hi * scale),
                    (cents(rng.range(4_000, 25_000)), lo * scale),
                ])
            }
            // PV: produces unless the price falls below its curtailment price.
            40..60 => {
                let p = cents(rng.range(-4_000, 1_000));
                curve(&[(p, 0), (p, -rng.range(500, 8_000) * scale)])
            }
            // Battery: charges when cheap, discharges when dear.
            60..75 => {
                let c = rng.range(1_000, 7_000) * scale;
                let a = rng.range(1_000, 7_000);
                curve(&[(cents(a), c), (cents(a + rng.range(1_000, 13_000)), -c)])
            }
            // EV charger: charges below its price.
            75..90 => {
                let p = cents(rng.range(3_000, 20_000));
                curve(&[(p, rng.range(3_000, 11_000) * scale), (p, 0)])
            }
            // Heat pump: flexible above a comfort threshold.
            _ => {
                let q = rng.range(1_000, 5_000) * scale;
                let p = rng.range(2_000, 12_000);
                curve(&[
                    (cents(0), q),
                    (cents(p), q),
                    (cents(p + rng.range(500, 10_000)), q / 4),
                ])
            }
        },
        CurveMix::Steps => {
            let steps = rng.range(1, 3) as usize;
            let mut prices: Vec<i64> = (0..steps).map(|_| rng.range(-2_000, 25_000)).collect();
            prices.sort_unstable();
            let quantities: Vec<i64> = (0..steps).map(|_| rng.range(200, 5_000) * scale).collect();
            let total: i64 = quantities.iter().sum();
            // Demand staircases start at the total and step down to zero; supply staircases
            // start at zero and step down to minus the total.
            let mut level = if rng.chance(55) { total } else { 0 };
            let mut points = Vec::with_capacity(2 * steps);
            for (&p, &q) in prices.iter().zip(&quantities) {
                points.push((cents(p), level));
                level -= q;
                points.push((cents(p), level));
            }
            curve(&points)
        }
    }
}

/// Generates a market. See the [module documentation](self).
pub fn generate(params: &Params) -> Result<Generated, GenerateError> {
    let levels = params.levels.max(1);
    if params.nodes < levels + 1 {
        return Err(GenerateError::TooFewNodes {
            nodes: params.nodes,
            levels,
        });
    }
    if params.bids == 0 {
        return Err(GenerateError::NoBids);
    }
    if params.congested_permille > 1000 {
        return Err(GenerateError::BadShare(params.congested_permille));
    }
    let mut rng = Rng(params.seed);

    // Level sizes: branching b with b + b² + … + b^levels ≤ nodes − 1, the rest on the last level.
    let below_root = (params.nodes - 1) as u128;
    let fits = |b: u128| {
        (1..=levels as u32)
            .try_fold(0u128, |acc, k| b.checked_pow(k).map(|x| acc + x))
            .is_some_and(|t| t <= below_root)
    };
    let mut branching = 1u128;
    while fits(branching + 1) {
        branching += 1;
    }
    let mut sizes: Vec<usize> = (1..levels as u32)
        .map(|k| branching.pow(k) as usize)
        .collect();
    sizes.push(params.nodes - 1 - sizes.iter().sum::<usize>());

    let mut nodes = vec![Node {
        id: "substation".into(),
        parent: None,
        import_limit: None,
        export_limit: None,
    }];
    let mut level_ids: Vec<Vec<String>> = vec![vec!["substation".into()]];
    for (k, &size) in sizes.iter().enumerate() {
        let above = &level_ids[k];
        let ids: Vec<String> = (0..size).map(|j| format!("l{}-{j}", k + 1)).collect();
        for (j, id) in ids.iter().enumerate() {
            nodes.push(Node {
                id: id.clone(),
                parent: Some(above[j % above.len()].clone()),
                import_limit: None,
                export_limit: None,
            });
        }
        level_ids.push(ids);
    }

    // Bids: the upstream grid at the root, then devices, mostly at the last level.
    let leaves = &level_ids[levels];
    let mut bids = Vec::with_capacity(params.bids);
    let mut peak = 0i64;
    let mut devices = Vec::with_capacity(params.bids - 1);
    for i in 1..params.bids {
        let (node, scale) = if levels > 1 && rng.chance(8) {
            let level = rng.range(1, levels as i64 - 1) as usize;
            let ids = &level_ids[level];
            (
                ids[rng.range(0, ids.len() as i64 - 1) as usize].clone(),
                rng.range(5, 30),
            )
        } else {
            (
                leaves[rng.range(0, leaves.len() as i64 - 1) as usize].clone(),
                1,
            )
        };
        let c = device(&mut rng, params.mix, scale)?;
        peak += c.max_power().0.max(0);
        devices.push(Bid::new(format!("b{i}"), node, c));
    }
    // The grid imports above its import price and exports below its export price, each up to
    // a third of the devices' peak demand, so local bids set the price much of the time.
    let capacity = (peak / 3).max(10_000);
    let (export_price, import_price) = (
        cents(rng.range(1_000, 3_000)),
        cents(rng.range(7_000, 11_000)),
    );
    bids.push(Bid::new(
        "grid",
        "substation",
        curve(&[
            (export_price, capacity),
            (export_price, 0),
            (import_price, 0),
            (import_price, -capacity),
        ])?,
    ));
    bids.extend(devices);

    let mut market = Market::new(DEFAULT_PRICE_FLOOR, DEFAULT_PRICE_CAP, nodes, bids)?;
    let edges = params.nodes - 1;
    let target = (edges * params.congested_permille as usize).div_ceil(1000);

    // Edge ratings: generous everywhere, then tightened below the flow on random edges until
    // enough bind. Tightening one edge can relieve another, hence the rounds.
    let mut order: Vec<usize> = (0..params.nodes).filter(|&i| i != market.root()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.range(0, i as i64) as usize);
    }
    let mut result = clear(&market);
    for &i in &order {
        let rating = (result.flows[i].0.abs() * 3).max(100_000);
        market.set_limits(i, Some(Watts(rating)), Some(Watts(rating)));
    }
    let mut congested = 0;
    let mut next = 0;
    for _round in 0..30 {
        result = clear(&market);
        let binding = |i: usize, m: &Market| {
            let f = result.flows[i].0;
            let node = &m.nodes()[i];
            f != 0 && (node.import_limit == Some(Watts(f)) || node.export_limit == Some(Watts(-f)))
        };
        congested = order.iter().filter(|&&i| binding(i, &market)).count();
        if congested >= target || next >= order.len() {
            break;
        }
        let mut wanted = target - congested;
        while wanted > 0 && next < order.len() {
            let i = order[next];
            next += 1;
            let f = result.flows[i].0;
            if f == 0 || binding(i, &market) {
                continue;
            }
            let tight = Watts(f.abs() * rng.range(50, 85) / 100);
            let node = &market.nodes()[i];
            if f > 0 {
                market.set_limits(i, Some(tight), node.export_limit);
            } else {
                market.set_limits(i, node.import_limit, Some(tight));
            }
            wanted -= 1;
        }
    }
    Ok(Generated {
        market,
        edges,
        congested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify;

    #[test]
    fn the_same_seed_gives_the_same_market_with_the_congestion_asked_for() {
        let params = Params {
            bids: 600,
            nodes: 60,
            levels: 3,
            seed: 7,
            congested_permille: 150,
            mix: CurveMix::Mixed,
        };
        let a = generate(&params).unwrap();
        let b = generate(&params).unwrap();
        assert_eq!(a.market.nodes(), b.market.nodes());
        assert_eq!(a.market.bids(), b.market.bids());
        assert_eq!(a.edges, 59);
        assert!(
            a.congested * 1000 >= 150 * a.edges,
            "{} of {}",
            a.congested,
            a.edges
        );
        verify(&a.market, &clear(&a.market)).unwrap();
    }

    #[test]
    fn step_markets_have_only_steps() {
        let params = Params {
            bids: 200,
            nodes: 20,
            levels: 2,
            seed: 1,
            congested_permille: 100,
            mix: CurveMix::Steps,
        };
        let g = generate(&params).unwrap();
        assert!(g.market.bids().iter().all(|b| b.curve.ramps().is_empty()));
        verify(&g.market, &clear(&g.market)).unwrap();
    }
}
