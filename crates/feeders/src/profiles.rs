//! The year of 15-minute profiles (SB-6): LoadProfile.csv's `<profile>_pload` columns and
//! RESProfile.csv's `<profile>` columns, one row per interval, factors of a load's peak or a
//! generator's rated power.

use crate::{FeederModel, ImportError};
use bcte_types::Watts;
use std::collections::{BTreeMap, BTreeSet};

/// Rows of a SimBench profile file: the 366 days × 96 quarter-hours of 2016 (SB-6.1).
pub const PROFILE_ROWS: usize = 366 * 96;

/// The factor columns the model's loads and generators use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    /// Rows in each column.
    pub rows: usize,
    load: BTreeMap<String, Vec<f64>>,
    generation: BTreeMap<String, Vec<f64>>,
}

/// `power × factor`, rounded half away from zero to 1 W (SB-6.2).
pub(crate) fn scale(power: Watts, factor: f64) -> Watts {
    Watts((power.0 as f64 * factor).round() as i64)
}

impl Profiles {
    /// Parses the columns `model` needs from the two profile files' contents. Every column a
    /// load or generator names must be there and every factor a finite number; SimBench's
    /// files have [`PROFILE_ROWS`] rows.
    pub fn parse(model: &FeederModel, load_csv: &str, res_csv: &str) -> Result<Self, ImportError> {
        let loads: BTreeSet<String> = model
            .loads()
            .map(|l| format!("{}_pload", l.profile))
            .collect();
        let gens: BTreeSet<String> = model.generators().map(|g| g.profile.clone()).collect();
        let load = columns("LoadProfile.csv", load_csv, &loads)?;
        let generation = columns("RESProfile.csv", res_csv, &gens)?;
        let rows = load
            .values()
            .chain(generation.values())
            .map(Vec::len)
            .next()
            .unwrap_or(PROFILE_ROWS);
        Ok(Self {
            rows,
            load: load
                .into_iter()
                .map(|(k, v)| (k.trim_end_matches("_pload").to_owned(), v))
                .collect(),
            generation,
        })
    }

    /// A load profile's factor in `row`.
    pub fn load_factor(&self, profile: &str, row: usize) -> Option<f64> {
        self.load.get(profile)?.get(row).copied()
    }

    /// A generator profile's factor in `row`.
    pub fn generation_factor(&self, profile: &str, row: usize) -> Option<f64> {
        self.generation.get(profile)?.get(row).copied()
    }
}

/// The `wanted` columns of a profile file, by name.
fn columns(
    file: &str,
    text: &str,
    wanted: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<f64>>, ImportError> {
    let (headers, records) = crate::csv_records(file, text)?;
    let mut at = Vec::with_capacity(wanted.len());
    for name in wanted {
        let Some(i) = headers.iter().position(|h| h == name) else {
            return Err(ImportError::at(
                file,
                1,
                None,
                format!("no column {name:?}, which a load or generator names as its profile"),
            ));
        };
        at.push((name.clone(), i, Vec::with_capacity(PROFILE_ROWS)));
    }
    let mut rows = 0usize;
    for record in records {
        let (line, record) = record?;
        rows += 1;
        for (name, i, values) in &mut at {
            let raw = record.get(*i).unwrap_or("");
            let v: f64 = raw
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    ImportError::at(file, line, Some(name), format!("not a number: {raw:?}"))
                })?;
            values.push(v);
        }
    }
    if rows == 0 {
        return Err(ImportError::new(file, "no rows of profiles"));
    }
    Ok(at.into_iter().map(|(name, _, v)| (name, v)).collect())
}
