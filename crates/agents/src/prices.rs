//! What a device expects the price to be (AG-4): the mean and spread of its node's recent
//! cleared prices, or the tariff before there are any.

use bcte_units::Price;

/// The expected price at a node: a mean and a spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceStats {
    /// The mean (µ/MWh).
    pub mean: Price,
    /// The spread: the population standard deviation (µ/MWh, ≥ 0).
    pub spread: Price,
}

/// How many of the latest cleared prices the statistics read by default (a day of quarter-hours).
pub const HISTORY_DEFAULT: usize = 96;

impl PriceStats {
    /// AG-4.1: the mean of `history`, rounded half away from zero, and its population standard
    /// deviation, rounded down, both to 1 µ/MWh; `tariff` with no spread when `history` is
    /// empty.
    pub fn of(history: &[Price], tariff: Price) -> Self {
        if history.is_empty() {
            return Self {
                mean: tariff,
                spread: Price(0),
            };
        }
        let n = history.len() as i128;
        let sum: i128 = history.iter().map(|p| i128::from(p.0)).sum();
        let mean = div_round(sum, n);
        // Σ (p − mean)² / n with the exact mean sum / n: (n Σp² − (Σp)²) / n².
        let sq: i128 = history
            .iter()
            .map(|p| i128::from(p.0) * i128::from(p.0))
            .sum();
        let var = ((n * sq - sum * sum) / (n * n)).max(0) as u128;
        Self {
            mean: Price(mean as i64),
            spread: Price(isqrt(var) as i64),
        }
    }
}

fn div_round(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// ⌊√v⌋.
fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let mut x = (v as f64).sqrt() as u128;
    while x * x > v {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= v {
        x += 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_and_spread_of_the_history_or_the_tariff_alone() {
        assert_eq!(
            PriceStats::of(&[], Price(100_000_000)),
            PriceStats {
                mean: Price(100_000_000),
                spread: Price(0)
            }
        );
        // 40, 60, 80, 100/MWh: mean 70, variance (900 + 100 + 100 + 900) / 4 = 500, σ = 22.36.
        let h = [40, 60, 80, 100].map(|p| Price(p * 1_000_000));
        let s = PriceStats::of(&h, Price(0));
        assert_eq!(s.mean, Price(70_000_000));
        assert_eq!(s.spread, Price(22_360_679));
        // Negative prices too: −3 and 4 µ/MWh, mean 0.5 → 1 (half away from zero), σ 3.5 → 3.
        assert_eq!(
            PriceStats::of(&[Price(-3), Price(4)], Price(0)),
            PriceStats {
                mean: Price(1),
                spread: Price(3)
            }
        );
    }
}
