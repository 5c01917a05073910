//! Many seeds (DM-6): the same scenario run for every seed of a range, and the spread of every
//! KPI of both runs over them.

use crate::report::{Kpis, Report};
use serde::Serialize;
use std::collections::BTreeMap;

/// DM-6.1: a range of seeds, `A..B`, both ends included.
pub fn parse_range(text: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let bad = || format!("seeds: `{text}` is not a range A..B of seeds (both included, A ≤ B)");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    if b - a >= 1_000 {
        return Err(format!("seeds: `{text}` is more than 1,000 seeds"));
    }
    Ok(a..=b)
}

/// The least, median and greatest value of one KPI over the seeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// The least.
    pub min: i64,
    /// DM-6.2: the median (of an even count, the mean of the two middle values rounded toward
    /// negative infinity).
    pub median: i64,
    /// The greatest.
    pub max: i64,
    /// Seeds for which the KPI was defined (a share without demand or production is not).
    pub seeds: usize,
}

/// DM-6.2: the spread of `values`, if there are any.
pub fn spread(mut values: Vec<i64>) -> Option<Spread> {
    values.sort_unstable();
    let n = values.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => values[n / 2],
        _ => (i128::from(values[n / 2 - 1]) + i128::from(values[n / 2])).div_euclid(2) as i64,
    };
    Some(Spread {
        min: values[0],
        median,
        max: values[n - 1],
        seeds: n,
    })
}

/// The report of many seeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeedsReport {
    /// The seeds run, in order.
    pub seeds: Vec<u64>,
    /// Every KPI of the legacy run (the names of DM-5.1), over the seeds.
    pub legacy: BTreeMap<String, Spread>,
    /// See `legacy`.
    pub transactive: BTreeMap<String, Spread>,
    /// Each seed's KPIs and chain figures.
    pub runs: Vec<SeedRun>,
}

/// One seed's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Its legacy KPIs.
    pub legacy: Kpis,
    /// Its transactive KPIs.
    pub transactive: Kpis,
    /// Its chain's state root, when it ran on one.
    pub state_root: Option<String>,
}

/// Every integer field of `kpis`, by its report name.
fn fields(kpis: &Kpis) -> BTreeMap<String, Option<i64>> {
    match serde_json::to_value(kpis) {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| (k, v.as_i64())).collect()
        }
        _ => BTreeMap::new(),
    }
}

fn spreads(kpis: &[&Kpis]) -> BTreeMap<String, Spread> {
    let mut by_name: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for k in kpis {
        for (name, v) in fields(k) {
            let values = by_name.entry(name).or_default();
            values.extend(v);
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, values)| Some((name, spread(values)?)))
        .collect()
}

/// DM-6.3: the spread of every KPI over the reports of one scenario run with several seeds.
pub fn summarise(reports: &[Report]) -> SeedsReport {
    let legacy: Vec<&Kpis> = reports.iter().map(|r| &r.legacy).collect();
    let transactive: Vec<&Kpis> = reports.iter().map(|r| &r.transactive).collect();
    SeedsReport {
        seeds: reports.iter().map(|r| r.seed).collect(),
        legacy: spreads(&legacy),
        transactive: spreads(&transactive),
        runs: reports
            .iter()
            .map(|r| SeedRun {
                seed: r.seed,
                legacy: r.legacy.clone(),
                transactive: r.transactive.clone(),
                state_root: r.chain.as_ref().map(|c| c.state_root.clone()),
            })
            .collect(),
    }
}

/// The KPIs spread in either run, in name order.
pub fn names(s: &SeedsReport) -> Vec<&str> {
    let mut names: Vec<&str> = s
        .legacy
        .keys()
        .chain(s.transactive.keys())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The spread table printed at the end: each KPI's min, median and max in both runs.
pub fn table(s: &SeedsReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (first, last) = (s.seeds.first(), s.seeds.last());
    let _ = writeln!(
        out,
        "{} seeds ({}..{}): min / median / max",
        s.seeds.len(),
        first.map_or(0, |v| *v),
        last.map_or(0, |v| *v)
    );
    let _ = writeln!(out, "{:<24} {:>30} {:>30}", "", "legacy", "transactive");
    let cell = |m: &BTreeMap<String, Spread>, k: &str| {
        m.get(k).map_or("-".to_string(), |v| {
            format!("{} / {} / {}", v.min, v.median, v.max)
        })
    };
    for name in names(s) {
        let _ = writeln!(
            out,
            "{name:<24} {:>30} {:>30}",
            cell(&s.legacy, name),
            cell(&s.transactive, name)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_both_ends_and_refuse_nonsense() {
        assert_eq!(parse_range("1..3"), Ok(1..=3));
        assert_eq!(parse_range("5..5"), Ok(5..=5));
        assert!(parse_range("3..1").is_err());
        assert!(parse_range("1-3").is_err());
        assert!(parse_range("a..3").is_err());
        assert!(parse_range("0..1000").is_err());
    }

    #[test]
    fn the_spread_by_hand() {
        assert_eq!(spread(vec![]), None);
        // 3, 1, 2 sorted: 1, 2, 3.
        assert_eq!(
            spread(vec![3, 1, 2]),
            Some(Spread {
                min: 1,
                median: 2,
                max: 3,
                seeds: 3
            })
        );
        // 1, 2, 4, 10: the median (2 + 4) / 2 = 3; of −3 and 0, ⌊−1.5⌋ = −2.
        assert_eq!(spread(vec![10, 1, 4, 2]).map(|s| s.median), Some(3));
        assert_eq!(spread(vec![0, -3]).map(|s| s.median), Some(-2));
    }

    #[test]
    fn every_kpi_is_spread_and_undefined_shares_are_left_out() {
        let a = Kpis {
            cost_total: 10,
            ..Kpis::default()
        };
        let mut b = Kpis {
            cost_total: 30,
            ..Kpis::default()
        };
        b.energy.self_sufficiency_ppm = Some(500_000);
        let r = |k: &Kpis, seed| Report {
            seed,
            legacy: k.clone(),
            transactive: k.clone(),
            ..Report::default()
        };
        let s = summarise(&[r(&a, 1), r(&b, 2)]);
        assert_eq!(s.seeds, vec![1, 2]);
        assert_eq!(
            s.legacy["cost_total"],
            Spread {
                min: 10,
                median: 20,
                max: 30,
                seeds: 2
            }
        );
        // Defined for one seed of two.
        assert_eq!(s.transactive["self_sufficiency_ppm"].seeds, 1);
        assert!(s.legacy.contains_key("import_wh") && s.legacy.contains_key("co2_g"));
    }
}
