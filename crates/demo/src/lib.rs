//! The simulated day of bcte (rules DM-n of `docs/demo.md`): the same households, devices and
//! profiles on a SimBench feeder, first under a legacy flat tariff without a market, then under
//! the transactive market, on validators in-process ([`chain`]) or without the ledger; their
//! KPIs side by side ([`report`]) and an HTML report with plots ([`html`]).
//!
//! The agents and the market engine are pure; this crate is the shell around them: it reads
//! the grid, runs the network on the deterministic runtime and writes reports.

pub mod chain;
pub mod html;
pub mod report;
pub mod scenario;
pub mod seeds;

use bcte_agents::day::{self, IntervalRecord, SiteAgent};
use bcte_feeders::{DerMix, FeederModel, Profiles, SimbenchDir, der, import};
use bcte_types::Price;
use rand::SeedableRng;
use report::{ChainReport, Report, SiteReport, SiteRun};
use scenario::Scenario;
use std::path::{Path, PathBuf};

/// The shipped grid (SimBench `1-LV-rural1--0-sw`, with its licence notice), relative to the
/// repository root, and embedded in the binary so that `bcte demo` runs anywhere.
pub const SHIPPED_GRID: &str = "data/simbench/1-LV-rural1--0-sw";

/// The shipped grid's files, embedded.
macro_rules! shipped {
    ($name:literal) => {
        include_str!(concat!("../../../data/simbench/1-LV-rural1--0-sw/", $name))
    };
}

/// A feeder ready to run: its model, profiles and where it came from.
#[derive(Clone, Debug)]
pub struct Grid {
    /// The model.
    pub model: FeederModel,
    /// Its profiles.
    pub profiles: Profiles,
}

/// The prefix of a synthetic feeder's name: `synthetic:N` is N households (SB-8).
pub const SYNTHETIC: &str = "synthetic:";

/// The most households of a synthetic feeder (the registry's site limit, with its PV sites).
pub const SYNTHETIC_MAX: usize = 40_000;

/// Reads the grid of `dir`, or the shipped one; `synthetic:N` (DM-1.1) generates N households
/// from `seed` (SB-8), driven by the shipped grid's profiles.
pub fn grid(dir: Option<&Path>, seed: u64) -> Result<Grid, String> {
    let synthetic = dir
        .and_then(|d| d.to_str())
        .and_then(|d| d.strip_prefix(SYNTHETIC));
    if let Some(n) = synthetic {
        let households: usize = Some(n)
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .filter(|h| (1..=SYNTHETIC_MAX).contains(h))
            .ok_or_else(|| {
                format!("feeder: `{SYNTHETIC}{n}`: give 1 to {SYNTHETIC_MAX} households")
            })?;
        let model = bcte_feeders::synthetic::synthetic(
            households,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        );
        let profiles = Profiles::parse(
            &model,
            shipped!("LoadProfile.csv"),
            shipped!("RESProfile.csv"),
        )
        .map_err(|e| e.to_string())?;
        return Ok(Grid { model, profiles });
    }
    match dir {
        Some(dir) => {
            let model = import(&SimbenchDir::read(dir).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let profiles = SimbenchDir::profiles(dir, &model).map_err(|e| e.to_string())?;
            Ok(Grid { model, profiles })
        }
        None => {
            let dir = SimbenchDir {
                node: shipped!("Node.csv").into(),
                line: shipped!("Line.csv").into(),
                line_type: shipped!("LineType.csv").into(),
                transformer: shipped!("Transformer.csv").into(),
                transformer_type: shipped!("TransformerType.csv").into(),
                switch: shipped!("Switch.csv").into(),
                external_net: shipped!("ExternalNet.csv").into(),
                load: shipped!("Load.csv").into(),
                res: shipped!("RES.csv").into(),
            };
            let model = import(&dir).map_err(|e| e.to_string())?;
            let profiles = Profiles::parse(
                &model,
                shipped!("LoadProfile.csv"),
                shipped!("RESProfile.csv"),
            )
            .map_err(|e| e.to_string())?;
            Ok(Grid { model, profiles })
        }
    }
}

/// The DER mix of `spec`: `default`, `none` or a TOML file.
pub fn der_mix(spec: &str) -> Result<DerMix, String> {
    match spec {
        "default" => Ok(DerMix::DEFAULT),
        "none" => Ok(DerMix::NONE),
        path => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("der: {path}: {e}"))?;
            DerMix::parse(path, &text).map_err(|e| e.to_string())
        }
    }
}

/// What a day gave: the report, and the records of both runs for plots.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The transactive run's records.
    pub transactive: Vec<IntervalRecord>,
    /// The legacy run's.
    pub legacy: Vec<IntervalRecord>,
}

/// The profile rows the scenario's day reaches.
fn scenario_rows(scenario: &Scenario) -> Result<usize, String> {
    Ok(scenario::day_of_year(&scenario.date)? * 96 + scenario.intervals)
}

/// A scenario made ready to run: its grid, agents and day configuration (DM-1, DM-3).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The grid.
    pub grid: Grid,
    /// One agent per site with the DER the seed gave it, before the day.
    pub agents: Vec<SiteAgent>,
    /// The day.
    pub config: day::DayConfig,
}

/// Checks `scenario` and reads everything it names: the grid, the DER mix; assigns the DER
/// from the seed (SB-7) and builds the agents and the day (DM-1.6).
pub fn prepare(scenario: &Scenario) -> Result<Prepared, String> {
    let doy = scenario.check()?;
    let mut grid = grid(scenario.feeder.as_deref(), scenario.seed)?;
    let mix = der_mix(&scenario.der)?;
    // SB-7.3, SB-7.4, AG-8.1: the DER, the chargers, then the cars' needs, from one stream.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(scenario.seed);
    let ders = der::assign(&grid.model, &mix, &mut rng);
    let chargers = der::add_chargers(&mut grid.model, &ders)?;
    let limit = transformer(&grid.model).and_then(|i| grid.model.nodes[i].limit);
    let config = scenario.day_config(doy, limit);
    let agents = day::agents(&grid.model, &ders, &mix, &chargers, &config, &mut rng)?;
    let doy_rows = scenario_rows(scenario)?;
    if doy_rows > grid.profiles.rows {
        return Err(format!(
            "date: the day runs past the grid's profiles ({} rows)",
            grid.profiles.rows
        ));
    }
    Ok(Prepared {
        agents,
        config,
        grid,
    })
}

/// The transactive day without the ledger (`--no-chain`, DM-2.4): the same agents, clearing
/// and following as on the chain, one interval after another.
pub fn run_without_chain(
    p: &Prepared,
    agents: &mut [SiteAgent],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<IntervalRecord>, String> {
    let n = p.config.intervals;
    day::run_with_progress(
        &p.grid.model,
        &p.grid.profiles,
        agents,
        &p.config,
        &mut |k| {
            progress(k, n);
        },
    )
}

/// The index of the node below the feeder's root: the transformer's low-voltage side.
pub fn transformer(model: &FeederModel) -> Option<usize> {
    let root = &model.nodes.first()?.id;
    model
        .nodes
        .iter()
        .position(|n| n.parent.as_ref() == Some(root))
}

/// Runs `scenario`: the legacy day and the transactive day (on the chain unless
/// `no_chain`), calling `progress(done, of)` as intervals complete.
pub fn run(scenario: &Scenario, progress: &mut dyn FnMut(usize, usize)) -> Result<Outcome, String> {
    run_prepared(scenario, &prepare(scenario)?, progress)
}

/// Runs the transactive day on some chain other than the in-process network (DM-7): given
/// the model, profiles, agents, day and a progress callback, the chain's outcome, its
/// validators and its market clock speed.
pub type ChainRunner<'a> = &'a mut dyn FnMut(
    &FeederModel,
    &Profiles,
    &mut [SiteAgent],
    &day::DayConfig,
    &mut dyn FnMut(usize),
) -> Result<(chain::ChainOutcome, u64, u32), String>;

/// [`run`] on a scenario already [`prepare`]d: what fails here is the run, not the input.
pub fn run_prepared(
    scenario: &Scenario,
    p: &Prepared,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Outcome, String> {
    run_prepared_on(scenario, p, progress, None)
}

/// [`run_prepared`], the transactive day on `chain` when given (`bcte demo --network`),
/// else on the in-process network (or without the ledger when the scenario says so).
pub fn run_prepared_on(
    scenario: &Scenario,
    p: &Prepared,
    progress: &mut dyn FnMut(usize, usize),
    chain: Option<ChainRunner<'_>>,
) -> Result<Outcome, String> {
    run_prepared_watched(scenario, p, progress, chain, None)
}

/// [`run_prepared_on`]; an in-process chain's first validator is handed to `watch` as soon as
/// it runs ([`chain::run_watched`]).
pub fn run_prepared_watched(
    scenario: &Scenario,
    p: &Prepared,
    progress: &mut dyn FnMut(usize, usize),
    chain: Option<ChainRunner<'_>>,
    watch: Option<chain::Watch<'_>>,
) -> Result<Outcome, String> {
    let (g, agents, config) = (&p.grid, &p.agents, &p.config);
    let dt = config.interval_ms;
    let n = scenario.intervals;

    // The legacy day (AG-10) first: it is instant.
    let mut legacy_agents = agents.clone();
    let legacy = bcte_agents::legacy::run(&g.model, &g.profiles, &mut legacy_agents, config)?;

    // The transactive day.
    let mut t_agents: Vec<SiteAgent> = agents.clone();
    let penalty = bcte_types::MarketConfig::DEFAULT.imbalance_penalty;
    let (transactive, t_costs, t_margin, chain) = if scenario.no_chain {
        let records = run_without_chain(p, &mut t_agents, progress)?;
        let node_of = day::node_of(&g.model);
        let mut costs = Vec::with_capacity(g.model.sites.len());
        let mut margin = 0i64;
        for s in 0..g.model.sites.len() {
            let served: Vec<_> = records.iter().map(|r| r.served[s]).collect();
            let node = node_of[s];
            let prices: Vec<Price> = records.iter().map(|r| r.prices[node]).collect();
            let metered = report::metered(&records, s, dt);
            let market = report::market_cost(&served, &prices, &metered, dt, penalty);
            // CT-4.2: a charger's owner pays the option's price for what came.
            let cost = report::ev_charge(&t_agents[s], &metered).unwrap_or(market);
            margin += cost - market;
            costs.push(cost);
        }
        (records, costs, margin, None)
    } else {
        let (out, validators, clock_speed) = match chain {
            Some(runner) => runner(&g.model, &g.profiles, &mut t_agents, config, &mut |k| {
                progress(k, n)
            })?,
            None => {
                let opts = chain::ChainOptions {
                    validators: scenario.validators,
                    seed: scenario.seed,
                    clock_speed: chain::CLOCK_SPEED,
                };
                let out = chain::run_watched(
                    &g.model,
                    &g.profiles,
                    &mut t_agents,
                    config,
                    opts,
                    &mut |k| progress(k, n),
                    watch,
                )?;
                (out, scenario.validators, chain::CLOCK_SPEED)
            }
        };
        let costs = out.sites.iter().map(chain::SiteChain::cost).collect();
        let margin = out.sites.iter().map(|s| s.ev_difference).sum();
        let c = ChainReport {
            height: out.height,
            state_root: out.state_root.clone(),
            blocks: out.blocks_in_day,
            validators,
            transactions: out.transactions,
            clock_speed,
            ev_contracts: out.ev_contracts,
            upstream_charge: out.upstream_charge,
            congestion_rent: out.congestion_rent,
        };
        (out.records, costs, margin, Some(c))
    };

    let tariff = scenario.tariff();
    let n_sites = g.model.sites.len();
    let mut sites = Vec::with_capacity(n_sites);
    let (mut l_costs, mut l_unserved, mut t_unserved) = (vec![], vec![], vec![]);
    for s in 0..n_sites {
        let lm = report::metered(&legacy, s, dt);
        let tm = report::metered(&transactive, s, dt);
        let lc = report::legacy_cost(&lm, tariff);
        let lu = report::unserved(&legacy, s, &lm, dt);
        let tu = report::unserved(&transactive, s, &tm, dt);
        l_costs.push(lc);
        l_unserved.push(lu);
        t_unserved.push(tu);
        sites.push(SiteReport {
            site: g.model.sites[s].site.to_string(),
            node: g.model.sites[s].node.to_string(),
            household: der::is_household(&g.model, s),
            charger_of: agents[s].ev_of.map(|h| g.model.sites[h].site.to_string()),
            priority: agents[s].priority,
            der: report::der_names(&agents[s]),
            legacy: SiteRun {
                metered_wh: lm.iter().sum(),
                cost: lc,
                unserved_wh: lu,
            },
            transactive: SiteRun {
                metered_wh: tm.iter().sum(),
                cost: t_costs[s],
                unserved_wh: tu,
            },
        });
    }
    let transformer_limit_w = transformer(&g.model)
        .and_then(|i| g.model.nodes[i].limit)
        .map(|w| w.0);
    let report = Report {
        feeder: g.model.id.clone(),
        date: scenario.date.clone(),
        scenario: match scenario.scenario {
            scenario::Kind::Normal => "normal".into(),
            scenario::Kind::Psps => "psps".into(),
        },
        seed: scenario.seed,
        nodes: g.model.nodes.iter().map(|n| n.id.to_string()).collect(),
        transformer_limit_w,
        tariff: tariff.0,
        legacy: report::kpis(&g.model, &legacy_agents, &legacy, &l_costs, &l_unserved, dt),
        transactive: report::Kpis {
            ev_provider_margin: t_margin,
            ..report::kpis(&g.model, &t_agents, &transactive, &t_costs, &t_unserved, dt)
        },
        intervals: report::intervals(&t_agents, &transactive, &legacy),
        sites,
        chain,
    };
    Ok(Outcome {
        report,
        transactive,
        legacy,
    })
}

/// Writes every `(path, bytes)` through temporary files beside them (`NAME.partial`), renamed
/// into place only once all are written, so that a failed run never leaves a half-written
/// report, nor a new report beside a stale one.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<(), String> {
    let tmp = |path: &Path| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        path.with_file_name(name)
    };
    let clean = || {
        for (path, _) in files {
            let _ = std::fs::remove_file(tmp(path));
        }
    };
    for (path, bytes) in files {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let t: PathBuf = tmp(path);
        if let Err(e) = std::fs::write(&t, bytes) {
            clean();
            return Err(format!("{}: cannot write: {e}", t.display()));
        }
    }
    for (path, _) in files {
        if let Err(e) = std::fs::rename(tmp(path), path) {
            clean();
            return Err(format!("{}: cannot write: {e}", path.display()));
        }
    }
    Ok(())
}

/// The rows of the summary table (DM-5.2): a name, the legacy figure, the transactive one.
pub fn summary_rows(r: &Report) -> Vec<(&'static str, String, String)> {
    let kwh = |wh: i64| format!("{:.1}", wh as f64 / 1_000.0);
    let money = |b: i64| format!("{:.2}", b as f64 / 1_000_000.0);
    let pct = |p: Option<i64>| p.map_or("-".into(), |p| format!("{:.1} %", p as f64 / 10_000.0));
    let (l, t) = (&r.legacy, &r.transactive);
    let (le, te) = (&l.energy, &t.energy);
    vec![
        ("cost, all sites", money(l.cost_total), money(t.cost_total)),
        (
            "cost per household",
            money(l.cost_per_household),
            money(t.cost_per_household),
        ),
        ("import (kWh)", kwh(le.import_wh), kwh(te.import_wh)),
        ("export (kWh)", kwh(le.export_wh), kwh(te.export_wh)),
        (
            "peak import (kW)",
            kwh(le.peak_import_w),
            kwh(te.peak_import_w),
        ),
        (
            "overloaded intervals",
            le.overload_intervals.to_string(),
            te.overload_intervals.to_string(),
        ),
        ("overload (kWh)", kwh(le.overload_wh), kwh(te.overload_wh)),
        (
            "self-sufficiency",
            pct(le.self_sufficiency_ppm),
            pct(te.self_sufficiency_ppm),
        ),
        (
            "self-consumption",
            pct(le.self_consumption_ppm),
            pct(te.self_consumption_ppm),
        ),
        ("traded locally (kWh)", kwh(l.local_wh), kwh(t.local_wh)),
        (
            "PV curtailed (kWh)",
            kwh(le.curtailed_wh),
            kwh(te.curtailed_wh),
        ),
        (
            "unserved (kWh)",
            kwh(l.unserved_metered_wh),
            kwh(t.unserved_metered_wh),
        ),
        (
            "battery cycles",
            format!("{:.2}", le.battery_cycles_milli as f64 / 1_000.0),
            format!("{:.2}", te.battery_cycles_milli as f64 / 1_000.0),
        ),
        (
            "EV requested (kWh)",
            kwh(le.ev_requested_wh),
            kwh(te.ev_requested_wh),
        ),
        (
            "EV delivered (kWh)",
            kwh(le.ev_delivered_wh),
            kwh(te.ev_delivered_wh),
        ),
        (
            "comfort (°C·h outside)",
            format!("{:.1}", le.comfort_mk_h as f64 / 1_000.0),
            format!("{:.1}", te.comfort_mk_h as f64 / 1_000.0),
        ),
        ("CO₂ of imports (kg)", kwh(l.co2_g), kwh(t.co2_g)),
    ]
}

/// The summary table of both runs, side by side (DM-5.2), and the chain's figures.
pub fn summary(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · {} · {} · seed {}",
        r.feeder, r.date, r.scenario, r.seed
    );
    let _ = writeln!(out, "{:<24} {:>12} {:>12}", "", "legacy", "transactive");
    for (name, a, b) in summary_rows(r) {
        let _ = writeln!(out, "{name:<24} {a:>12} {b:>12}");
    }
    if let Some(c) = &r.chain {
        let _ = writeln!(
            out,
            "chain: {} validators, height {}, {} blocks in the day, {} transactions, state root {}",
            c.validators, c.height, c.blocks, c.transactions, c.state_root
        );
    }
    out
}
