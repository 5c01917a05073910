//! From Green Button series to a market's interval readings, by the rules GB-1 to GB-6 of
//! `docs/greenbutton.md`: electricity energy only, signed by flow direction, duplicates
//! counted once, each reading spread over the market intervals it overlaps in proportion to
//! time with cumulative rounding (so the parts sum to the reading exactly), one rounding to
//! whole Wh per market interval, and only intervals every series covers completely.

use crate::{Series, rfc3339, scaled};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// A market's intervals: interval `k` covers `[epoch_ms + k × interval_ms, epoch_ms + (k + 1) ×
/// interval_ms)` (market time, which is UTC on a chain without an accelerated clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The start of interval 0, ms since the Unix epoch.
    pub epoch_ms: u64,
    /// The interval length, ms (positive).
    pub interval_ms: u64,
}

/// One market interval's energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IntervalEnergy {
    /// The interval.
    pub interval: u64,
    /// Its energy in Wh: positive consumed, negative fed in.
    pub wh: i64,
}

/// The result of [`convert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversion {
    /// The energies of the intervals every series covers completely, in order.
    pub readings: Vec<IntervalEnergy>,
    /// Intervals some series covers only partly (GB-6): left out, so they settle as missing.
    pub partial: Vec<u64>,
    /// Readings (or parts of readings) before interval 0, left out.
    pub before_epoch: usize,
    /// The sum of the series' signed energies in the readings' own unit (10^`unit_power` Wh)
    /// over the intervals produced, before rounding to Wh.
    pub exact_total: String,
}

/// Why series cannot be converted: which series and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertError {
    /// No series to convert.
    #[error("no series to convert")]
    NoSeries,
    /// GB-1: not electricity.
    #[error("series {series} ({href}) is {commodity}, not electricity: refused for settlement")]
    NotElectricity {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// What it measures.
        commodity: &'static str,
    },
    /// GB-1: not energy in Wh.
    #[error("series {series} ({href}) is in {unit}, not energy in Wh: refused for settlement")]
    NotEnergy {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// Its unit.
        unit: String,
    },
    /// GB-1: billing periods, not intervals.
    #[error(
        "series {series} ({href}) holds billing periods (a reading of {seconds} s from {at}), not \
         interval data: refused for settlement"
    )]
    BillingPeriods {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// The longest reading.
        seconds: u32,
        /// Where it starts.
        at: String,
    },
    /// GB-2: a flow direction that is neither forward, reverse nor net.
    #[error(
        "series {series} ({href}) has flow direction {code}, neither forward (1), reverse (19) nor \
         net (4)"
    )]
    FlowDirection {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// The code.
        code: u32,
    },
    /// GB-3: two readings of one period with different values.
    #[error("series {series} ({href}) has two different readings of the period starting {at}")]
    ConflictingDuplicate {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// The period's start.
        at: String,
    },
    /// GB-3: a reading overlapping the one before.
    #[error("series {series} ({href}) has a reading starting {at} inside the one before it")]
    Overlap {
        /// Its index.
        series: usize,
        /// Its meter reading.
        href: String,
        /// Its start.
        at: String,
    },
    /// An interval's energy does not fit the ledger's range.
    #[error("interval {interval}'s energy is out of range")]
    Overflow {
        /// The interval.
        interval: u64,
    },
}

/// Rounds `n / d` half away from zero (`d > 0`).
fn div_round(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

/// Converts `series` (all of one site) into the market intervals of `grid` (GB-1 to GB-6).
pub fn convert(series: &[&Series], grid: Grid) -> Result<Conversion, ConvertError> {
    if series.is_empty() {
        return Err(ConvertError::NoSeries);
    }
    assert!(grid.interval_ms > 0, "a market interval has a length");
    // GB-1, GB-2: what may be converted, and its sign.
    let mut signs = Vec::with_capacity(series.len());
    for (i, s) in series.iter().enumerate() {
        let href = || s.meter_reading.clone();
        let commodity = s.commodity();
        if commodity != "electricity" {
            return Err(ConvertError::NotElectricity {
                series: i,
                href: href(),
                commodity,
            });
        }
        if s.reading_type.uom != Some(72) {
            return Err(ConvertError::NotEnergy {
                series: i,
                href: href(),
                unit: crate::unit(s.reading_type.uom),
            });
        }
        if let Some(r) = s.readings.iter().max_by_key(|r| r.duration)
            && r.duration >= 86_400
        {
            return Err(ConvertError::BillingPeriods {
                series: i,
                href: href(),
                seconds: r.duration,
                at: rfc3339(r.start),
            });
        }
        signs.push(match s.reading_type.flow_direction {
            None | Some(1) | Some(4) => 1i128,
            Some(19) => -1,
            Some(code) => {
                return Err(ConvertError::FlowDirection {
                    series: i,
                    href: href(),
                    code,
                });
            }
        });
    }
    // GB-4: the common unit is 10^p Wh, p the smallest multiplier (at most 0).
    let p = series
        .iter()
        .map(|s| s.reading_type.power_of_ten_multiplier.min(0))
        .min()
        .unwrap_or(0);
    let dt = i128::from(grid.interval_ms);
    let epoch = i128::from(grid.epoch_ms);
    // interval → (energy in 10^p Wh, ms covered per series)
    let mut acc: BTreeMap<i128, (i128, Vec<i128>)> = BTreeMap::new();
    let mut before_epoch = 0;
    for (i, s) in series.iter().enumerate() {
        let scale = 10i128.pow((s.reading_type.power_of_ten_multiplier - p) as u32);
        let mut end: Option<i64> = None;
        for (j, r) in s.readings.iter().enumerate() {
            // GB-3: a repeated period counts once; a different value for it, or an overlap, is
            // refused.
            if j > 0 {
                let b = &s.readings[j - 1];
                if (b.start, b.duration) == (r.start, r.duration) {
                    if b.value != r.value {
                        return Err(ConvertError::ConflictingDuplicate {
                            series: i,
                            href: s.meter_reading.clone(),
                            at: rfc3339(r.start),
                        });
                    }
                    continue;
                }
            }
            if end.is_some_and(|e| r.start < e) {
                return Err(ConvertError::Overlap {
                    series: i,
                    href: s.meter_reading.clone(),
                    at: rfc3339(r.start),
                });
            }
            end = Some(r.end());
            if r.duration == 0 {
                continue;
            }
            let energy = signs[i] * i128::from(r.value) * scale;
            let (start, stop) = (i128::from(r.start) * 1_000, i128::from(r.end()) * 1_000);
            let length = stop - start;
            // GB-4: cumulative rounding: the part up to each boundary is rounded, and each
            // interval gets the difference, so the parts sum to the reading exactly.
            let mut k = (start - epoch).div_euclid(dt);
            let mut done = 0i128;
            let mut t = start;
            while t < stop {
                let boundary = (epoch + (k + 1) * dt).min(stop);
                let upto = div_round(energy * (boundary - start), length);
                let part = upto - done;
                done = upto;
                if k < 0 {
                    before_epoch += 1;
                } else {
                    let e = acc.entry(k).or_insert_with(|| (0, vec![0; series.len()]));
                    e.0 += part;
                    e.1[i] += boundary - t;
                }
                t = boundary;
                k += 1;
            }
        }
    }
    // GB-5, GB-6: whole intervals only, rounded once to Wh.
    let unit = 10i128.pow(p.unsigned_abs());
    let mut readings = Vec::new();
    let mut partial = Vec::new();
    let mut exact: i128 = 0;
    for (k, (energy, covered)) in acc {
        let k = u64::try_from(k).expect("negative intervals were left out");
        if covered.iter().any(|&c| c != dt) {
            partial.push(k);
            continue;
        }
        exact += energy;
        let wh = i64::try_from(div_round(energy, unit))
            .ok()
            .filter(|w| w.unsigned_abs() <= 1_000_000_000_000)
            .ok_or(ConvertError::Overflow { interval: k })?;
        readings.push(IntervalEnergy { interval: k, wh });
    }
    Ok(Conversion {
        readings,
        partial,
        before_epoch,
        exact_total: scaled(exact, p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockOrder, Reading, ReadingType};
    use proptest::prelude::*;

    fn series(readings: &[(i64, u32, i64)], power: i32, flow: Option<u32>) -> Series {
        Series {
            usage_point: None,
            service_kind: Some(0),
            meter_reading: "/mr/1".into(),
            reading_type: ReadingType {
                commodity: Some(1),
                uom: Some(72),
                power_of_ten_multiplier: power,
                flow_direction: flow,
                ..Default::default()
            },
            tz_offset_s: None,
            readings: readings
                .iter()
                .map(|&(start, duration, value)| Reading {
                    start,
                    duration,
                    value,
                    cost: None,
                    quality: vec![],
                })
                .collect(),
            blocks: 1,
            block_order: BlockOrder::Single,
        }
    }

    const QUARTER: Grid = Grid {
        epoch_ms: 1_000_000_000_000,
        interval_ms: 900_000,
    };
    const T0: i64 = 1_000_000_000;

    #[test]
    fn an_hour_splits_into_four_quarters_that_sum_to_it() {
        // 1,001 Wh over an hour: 250.25 each; cumulative rounding gives 250, 251, 250, 250
        // (250.25 → 250, 500.5 → 501, 750.75 → 751, 1001).
        let s = series(&[(T0, 3600, 1001)], 0, Some(1));
        let c = convert(&[&s], QUARTER).unwrap();
        let wh: Vec<i64> = c.readings.iter().map(|r| r.wh).collect();
        assert_eq!(wh, vec![250, 251, 250, 250]);
        assert_eq!(c.readings[0].interval, 0);
        assert!(c.partial.is_empty());
    }

    #[test]
    fn five_minute_readings_sum_and_a_partial_quarter_is_left_out() {
        // Three 5-minute readings fill interval 0; interval 1 has only one of its three.
        let s = series(
            &[
                (T0, 300, 10),
                (T0 + 300, 300, 20),
                (T0 + 600, 300, 30),
                (T0 + 900, 300, 7),
            ],
            0,
            None,
        );
        let c = convert(&[&s], QUARTER).unwrap();
        assert_eq!(
            c.readings,
            vec![IntervalEnergy {
                interval: 0,
                wh: 60
            }]
        );
        assert_eq!(c.partial, vec![1]);
    }

    #[test]
    fn kilowatt_hours_with_decimals_round_once_per_interval() {
        // Multiplier -3 (values in mWh): 0.4 Wh + 0.4 Wh + 0.4 Wh in one interval is 1.2 Wh → 1,
        // not three roundings of 0.4 → 0.
        let s = series(
            &[(T0, 300, 400), (T0 + 300, 300, 400), (T0 + 600, 300, 400)],
            -3,
            None,
        );
        let c = convert(&[&s], QUARTER).unwrap();
        assert_eq!(c.readings, vec![IntervalEnergy { interval: 0, wh: 1 }]);
        assert_eq!(c.exact_total, "1.2");
    }

    #[test]
    fn reverse_flow_is_feed_in_and_nets_with_forward() {
        let fwd = series(&[(T0, 900, 500)], 0, Some(1));
        let rev = series(&[(T0, 900, 800)], 0, Some(19));
        let c = convert(&[&fwd, &rev], QUARTER).unwrap();
        assert_eq!(
            c.readings,
            vec![IntervalEnergy {
                interval: 0,
                wh: -300
            }]
        );
        // A quarter only one of them covers is partial.
        let rev = series(&[(T0 + 900, 900, 800)], 0, Some(19));
        let c = convert(&[&fwd, &rev], QUARTER).unwrap();
        assert!(c.readings.is_empty());
        assert_eq!(c.partial, vec![0, 1]);
    }

    #[test]
    fn duplicates_count_once_and_conflicts_or_overlaps_are_refused() {
        let s = series(&[(T0, 900, 5), (T0, 900, 5)], 0, None);
        assert_eq!(convert(&[&s], QUARTER).unwrap().readings[0].wh, 5);
        let s = series(&[(T0, 900, 5), (T0, 900, 6)], 0, None);
        assert!(matches!(
            convert(&[&s], QUARTER),
            Err(ConvertError::ConflictingDuplicate { .. })
        ));
        let s = series(&[(T0, 900, 5), (T0 + 600, 900, 6)], 0, None);
        assert!(matches!(
            convert(&[&s], QUARTER),
            Err(ConvertError::Overlap { .. })
        ));
    }

    #[test]
    fn gas_power_and_billing_periods_are_refused() {
        let mut gas = series(&[(T0, 900, 5)], 0, None);
        gas.reading_type.commodity = Some(7);
        assert!(matches!(
            convert(&[&gas], QUARTER),
            Err(ConvertError::NotElectricity {
                commodity: "gas",
                ..
            })
        ));
        let mut watts = series(&[(T0, 900, 5)], 0, None);
        watts.reading_type.uom = Some(38);
        assert!(matches!(
            convert(&[&watts], QUARTER),
            Err(ConvertError::NotEnergy { .. })
        ));
        let month = series(&[(T0, 2_678_400, 5)], 0, None);
        assert!(matches!(
            convert(&[&month], QUARTER),
            Err(ConvertError::BillingPeriods { .. })
        ));
    }

    #[test]
    fn readings_before_interval_zero_are_left_out() {
        let s = series(&[(T0 - 900, 900, 5), (T0, 900, 6)], 0, None);
        let c = convert(&[&s], QUARTER).unwrap();
        assert_eq!(c.readings, vec![IntervalEnergy { interval: 0, wh: 6 }]);
        assert_eq!(c.before_epoch, 1);
    }

    proptest! {
        /// GB-4: however readings fall on the grid, the interval energies of a fully covered
        /// span sum to the readings' total (integer Wh, multiplier 0).
        #[test]
        fn the_parts_sum_to_the_whole(
            values in proptest::collection::vec(-100_000i64..100_000, 1..50),
            duration in prop_oneof![Just(300u32), Just(900), Just(1800), Just(3600), Just(420)],
            offset in 0i64..900,
        ) {
            let readings: Vec<(i64, u32, i64)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (T0 + offset + i as i64 * i64::from(duration), duration, v))
                .collect();
            let s = series(&readings, 0, Some(1));
            let c = convert(&[&s], QUARTER).unwrap();
            // Only the partial edges are left out: the full intervals' sum plus what fell in the
            // partial ones equals the total.
            let inside: i64 = c.readings.iter().map(|r| r.wh).sum();
            let first = c.readings.first().map(|r| r.interval);
            if let Some(first) = first {
                let last = c.readings.last().unwrap().interval;
                prop_assert_eq!(c.readings.len() as u64, last - first + 1, "contiguous");
            }
            prop_assert!(c.partial.len() <= 2);
            if c.partial.is_empty() {
                prop_assert_eq!(inside, values.iter().sum::<i64>());
            }
        }
    }
}
