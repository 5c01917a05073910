//! Feeders for bcte (rules SB-n of `docs/feeders.md`, cited at the branches): a SimBench CSV
//! grid imported as what the platform runs on, a radial tree of nodes with the limit of the
//! edge above each ([`FeederModel::nodes`]), the sites with their loads and generators
//! ([`FeederModel::sites`]), and the year of 15-minute profiles that drive them
//! ([`Profiles`]).
//!
//! Parsing is pure: [`import`] and [`Profiles::parse`] take the files' contents, so the import
//! can be checked on any text; [`SimbenchDir::read`] is the one function that touches files.
//! Every error names the file, the line and, where there is one, the column
//! ([`ImportError`]). Powers are integer watts ([`Watts`]), rounded half away from zero from the
//! files' MW.

pub mod der;
mod profiles;
mod simbench;
pub mod synthetic;

pub use der::{DerMix, SiteDer};
pub use profiles::{PROFILE_ROWS, Profiles};
pub use simbench::{SimbenchDir, import};

use bcte_types::{NodeId, SiteId, Watts};
use std::fmt;

/// Why a SimBench folder cannot be imported: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    /// The file (its name in the folder, e.g. `Line.csv`).
    pub file: String,
    /// The line of the file (1 is the header), if the error is in one.
    pub line: Option<u64>,
    /// The column, if the error is in one.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ImportError {
    /// A TOML file's parse error: its message at the line its span starts on (not the
    /// excerpt toml's own message adds), so that it prints as one line.
    pub fn toml(file: &str, text: &str, e: &toml::de::Error) -> Self {
        Self {
            file: file.to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() as u64 + 1),
            column: None,
            message: e.message().to_owned(),
        }
    }

    pub(crate) fn new(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(
        file: &str,
        line: u64,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line: Some(line),
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// One record of a SimBench file and its line, or why it cannot be read.
pub(crate) type CsvLine = Result<(u64, csv::StringRecord), ImportError>;

/// A `;`-separated SimBench file's header and its records, each with its line (SB-1.2); a
/// record that cannot be read is an error naming the file and the line.
pub(crate) fn csv_records<'t>(
    file: &'t str,
    text: &'t str,
) -> Result<(csv::StringRecord, impl Iterator<Item = CsvLine> + 't), ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ImportError::at(file, 1, None, format!("unreadable header: {e}")))?
        .clone();
    let records = reader.into_records().map(move |record| {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            ImportError::at(file, line, None, e.to_string())
        })?;
        Ok((record.position().map_or(0, |p| p.line()), record))
    });
    Ok((headers, records))
}

/// A node of the feeder's tree: a bus (switch-joined nodes merged, SB-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelNode {
    /// The bus, named after its busbar.
    pub id: NodeId,
    /// The bus above it (`None` for the root, the external grid's bus).
    pub parent: Option<NodeId>,
    /// The limit of the edge from the parent, both directions (SB-4); `None` at the root.
    pub limit: Option<Watts>,
    /// The line or transformer that is that edge.
    pub edge: Option<String>,
    /// The bus's rated voltage, kV as written.
    pub voltage_kv: String,
}

/// A load of a site (SB-5): its power in a row is `peak × <profile>_pload(row)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelLoad {
    /// Its SimBench id.
    pub id: String,
    /// Its profile's name (the columns `<profile>_pload` and `_qload` of LoadProfile.csv).
    pub profile: String,
    /// `pLoad`: the profile's factor 1 (every SimBench load profile peaks at 1).
    pub peak: Watts,
}

/// A generator of a site (SB-5): its output in a row is `rated × <profile>(row)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelGenerator {
    /// Its SimBench id.
    pub id: String,
    /// Its technology as written (`PV`, `Wind`, ...).
    pub kind: String,
    /// Its profile's name (a column of RESProfile.csv).
    pub profile: String,
    /// `pRES`, its rated power.
    pub rated: Watts,
}

/// A site: a metering point at a bus, with its loads and generators (SB-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSite {
    /// The site, named after its first load (or its generator, if it has no load).
    pub site: SiteId,
    /// Its bus.
    pub node: NodeId,
    /// Its loads.
    pub loads: Vec<ModelLoad>,
    /// Its generators.
    pub generators: Vec<ModelGenerator>,
}

/// An imported feeder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeederModel {
    /// The low-voltage grid's subnet name (`LV1.101`), the feeder's id.
    pub id: String,
    /// The buses, the root first, every parent before its children.
    pub nodes: Vec<ModelNode>,
    /// The sites, in the order of their first load (Load.csv), then generator-only sites
    /// (RES.csv).
    pub sites: Vec<ModelSite>,
}

impl FeederModel {
    /// Every load of every site.
    pub fn loads(&self) -> impl Iterator<Item = &ModelLoad> {
        self.sites.iter().flat_map(|s| &s.loads)
    }

    /// Every generator of every site.
    pub fn generators(&self) -> impl Iterator<Item = &ModelGenerator> {
        self.sites.iter().flat_map(|s| &s.generators)
    }

    /// The site's load and generation in profile row `row` (W, both ≥ 0: loads in the
    /// consumer convention, generators in the generator convention; the site's net draw is
    /// their difference, SB-6), or `None` for a row past the profiles or a profile missing.
    pub fn site_power(
        &self,
        profiles: &Profiles,
        site: usize,
        row: usize,
    ) -> Option<(Watts, Watts)> {
        let s = self.sites.get(site)?;
        let mut load = 0i64;
        for l in &s.loads {
            load += profiles::scale(l.peak, profiles.load_factor(&l.profile, row)?).0;
        }
        let mut generation = 0i64;
        for g in &s.generators {
            generation += profiles::scale(g.rated, profiles.generation_factor(&g.profile, row)?).0;
        }
        Some((Watts(load), Watts(generation)))
    }
}
