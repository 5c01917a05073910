//! `bcte demo` (docs/demo.md): a simulated day on a SimBench feeder, first under the legacy
//! tariff, then under the transactive market on validators in-process (or without the chain),
//! with the KPIs side by side, a JSON report and an HTML report with plots.
//!
//! Exit codes: 0 the day ran and the reports are written; 2 invalid flags, scenario file, grid
//! or DER mix, or reports that cannot be written (one line saying what and where; nothing is
//! written); 1 the run itself failed (nothing is written either).

use crate::chain_cmds::{InputError, emit};
use bcte_demo::scenario::{Kind, Scenario};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// `bcte demo`. Every flag overrides the scenario file's field of the same name.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// A scenario file (TOML) setting any of the fields below (docs/demo.md, DM-1.1).
    #[arg(long, value_name = "SCENARIO.toml")]
    config: Option<PathBuf>,
    /// A SimBench grid folder; default: the shipped 1-LV-rural1--0-sw.
    #[arg(long, value_name = "DIR")]
    feeder: Option<PathBuf>,
    /// `normal`, or `psps`: a public-safety power shutoff (alert, then islanded).
    #[arg(long)]
    scenario: Option<Kind>,
    /// The day of the profile year, 2016-MM-DD (default 2016-06-21).
    #[arg(long)]
    date: Option<String>,
    /// The DER mix: `default`, `none` (exactly SimBench's loads and PV) or a TOML file.
    #[arg(long)]
    der: Option<String>,
    /// The seed of the DER mix and the network (default 1).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed of `A..B` (both included) and report the spread of every KPI.
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
    /// Validators in-process (default 4).
    #[arg(long)]
    validators: Option<u64>,
    /// Intervals of 15 minutes from midnight (default 96, the whole day).
    #[arg(long)]
    intervals: Option<usize>,
    /// Run the same agents, clearing and settlement rules without the ledger.
    #[arg(long, conflicts_with = "network")]
    no_chain: bool,
    /// Run the transactive day on the running validators of a local network (a directory
    /// of `bcte localnet init`, with `bcte localnet run` running) over their HTTP API, at the
    /// network's market clock speed (DM-7).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["seeds", "validators"])]
    network: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(
        long,
        value_name = "FILE.json",
        default_value = "bcte-demo/report.json"
    )]
    report: PathBuf,
    /// Where to write the HTML report.
    #[arg(
        long,
        value_name = "FILE.html",
        default_value = "bcte-demo/report.html"
    )]
    html: PathBuf,
    /// Where to serve the dashboard of the in-process chain while the day runs (docs/dashboard.md;
    /// port 0 picks a free port); the address is printed. With --network, each node serves its
    /// own.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    dashboard: std::net::SocketAddr,
    /// Serve no dashboard.
    #[arg(long, conflicts_with = "stay")]
    no_dashboard: bool,
    /// After the day, keep serving the dashboard (the chain's final state) until Ctrl-C.
    #[arg(long)]
    stay: bool,
}

impl DemoArgs {
    /// The scenario: the file's, then the flags over it.
    fn scenario(&self) -> Result<Scenario, String> {
        let mut s = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
                let mut s: Scenario = toml::from_str(&text).map_err(|e| {
                    bcte_feeders::ImportError::toml(&path.display().to_string(), &text, &e)
                        .to_string()
                })?;
                // A relative grid folder or DER-mix file in the file is relative to the file.
                let dir = path.parent().unwrap_or(std::path::Path::new(""));
                let synthetic = |f: &Path| {
                    f.to_str()
                        .is_some_and(|f| f.starts_with(bcte_demo::SYNTHETIC))
                };
                if let Some(f) = s
                    .feeder
                    .as_mut()
                    .filter(|f| f.is_relative() && !synthetic(f))
                {
                    *f = dir.join(&*f);
                }
                if !matches!(s.der.as_str(), "default" | "none") && Path::new(&s.der).is_relative()
                {
                    s.der = dir.join(&s.der).display().to_string();
                }
                s
            }
            None => Scenario::default(),
        };
        if let Some(f) = &self.feeder {
            s.feeder = Some(f.clone());
        }
        if let Some(k) = self.scenario {
            s.scenario = k;
        }
        if let Some(d) = &self.date {
            s.date = d.clone();
        }
        if let Some(d) = &self.der {
            s.der = d.clone();
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if let Some(v) = self.validators {
            s.validators = v;
        }
        if let Some(v) = self.intervals {
            s.intervals = v;
        }
        if self.no_chain {
            s.no_chain = true;
        }
        s.check()?;
        Ok(s)
    }
}

/// The bar of `intervals` intervals on a terminal's stderr; hidden with `--json` or without a
/// terminal.
fn progress_bar(intervals: usize, json_out: bool) -> ProgressBar {
    let bar = ProgressBar::new(intervals as u64);
    if json_out || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} intervals {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// DM-6: every seed of the range, then the spread of every KPI.
fn demo_seeds(a: &DemoArgs, range: &str, json_out: bool) -> anyhow::Result<()> {
    let seeds = bcte_demo::seeds::parse_range(range).map_err(InputError)?;
    let base = a.scenario().map_err(InputError)?;
    let count = seeds.clone().count();
    let bar = progress_bar(count * base.intervals, json_out);
    let started = std::time::Instant::now();
    let mut reports = Vec::with_capacity(count);
    for (i, seed) in seeds.enumerate() {
        bar.set_prefix(format!("seed {seed}"));
        let scenario = Scenario {
            seed,
            ..base.clone()
        };
        let done = i * base.intervals;
        let prepared = bcte_demo::prepare(&scenario).map_err(|e| {
            bar.abandon();
            InputError(e)
        })?;
        let outcome = bcte_demo::run_prepared(&scenario, &prepared, &mut |k, _| {
            bar.set_position((done + k) as u64);
        })
        .map_err(|e| {
            bar.abandon();
            anyhow::anyhow!("seed {seed}: the day failed: {e}")
        })?;
        reports.push(outcome.report);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let summary = bcte_demo::seeds::summarise(&reports);
    let mut text = serde_json::to_string_pretty(&summary)?;
    text.push('\n');
    let table = bcte_demo::seeds::table(&summary);
    let html = bcte_demo::html::render_seeds(&base, &summary);
    bcte_demo::write_all_atomic(&[(&a.report, text.as_bytes()), (&a.html, html.as_bytes())])
        .map_err(InputError)?;
    let value = json!({
        "report": a.report.display().to_string(),
        "html": a.html.display().to_string(),
        "seconds": seconds,
        "summary": summary,
    });
    emit(json_out, &value, || {
        format!(
            "{}\nran in {seconds:.1} s; reports written to {} and {}",
            table.trim_end(),
            a.report.display(),
            a.html.display()
        )
    });
    Ok(())
}

fn demo(a: &DemoArgs, json_out: bool) -> anyhow::Result<()> {
    if let Some(range) = &a.seeds {
        return demo_seeds(a, range, json_out);
    }
    let scenario = a.scenario().map_err(InputError)?;
    let network = match &a.network {
        Some(dir) => Some(
            crate::demo_live::Network::read(dir)
                .map_err(|e| InputError(format!("--network: {e:#}")))?,
        ),
        None => None,
    };
    let bar = progress_bar(scenario.intervals, json_out);
    bar.set_prefix(match &network {
        _ if scenario.no_chain => "market (no chain)".to_string(),
        Some(n) => format!(
            "market on the network's {} validators (clock ×{})",
            n.urls.len(),
            n.genesis.market_clock_speed
        ),
        None => format!("market on {} validators", scenario.validators),
    });
    if let Some(n) = &network {
        // DM-7.3: how long the day takes in wall time at the network's clock speed.
        let minutes =
            scenario.intervals as f64 * 15.0 / f64::from(n.genesis.market_clock_speed.max(1));
        bar.println(format!(
            "the day's {} intervals take about {minutes:.0} minutes at the network's market \
             clock speed ×{}",
            scenario.intervals, n.genesis.market_clock_speed
        ));
    }
    let started = std::time::Instant::now();
    // The grid, the DER mix and the day are read and checked before anything runs: their
    // errors are the user's input (exit 2); what fails after is the run (exit 1).
    let prepared = bcte_demo::prepare(&scenario).map_err(InputError)?;
    // Printed above the progress bar, or on stderr when there is none.
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    // The dashboard, once the input is known good (bad input prints one line only): the
    // network's own nodes serve it; the in-process chain's is served from here, read-only, once
    // its first validator runs.
    let mut listener = None;
    let in_process = network.is_none();
    let dashboard = match &network {
        _ if scenario.no_chain || a.no_dashboard => None,
        Some(n) => n.urls.first().map(|u| format!("{u}/")),
        None => {
            let l = std::net::TcpListener::bind(a.dashboard).map_err(|e| {
                InputError(format!("--dashboard {}: cannot listen: {e}", a.dashboard))
            })?;
            let url = format!("http://{}/", l.local_addr()?);
            listener = Some(l);
            Some(url)
        }
    };
    if let Some(url) = &dashboard {
        say(format!("dashboard: {url}"));
    }
    let mut serve = |shared| {
        if let Some(l) = listener.take()
            && let Err(e) = bcte_node::dashboard::spawn_viewer(l, shared)
        {
            eprintln!("warning: the dashboard could not start: {e}");
        }
    };
    let mut live = |model: &bcte_feeders::FeederModel,
                    profiles: &bcte_feeders::Profiles,
                    agents: &mut [bcte_agents::day::SiteAgent],
                    config: &bcte_agents::day::DayConfig,
                    progress: &mut dyn FnMut(usize)| {
        let n = network.as_ref().expect("only with --network");
        crate::demo_live::run(n, model, profiles, agents, config, progress)
    };
    let runner: Option<bcte_demo::ChainRunner<'_>> = match network {
        Some(_) => Some(&mut live),
        None => None,
    };
    let outcome = bcte_demo::run_prepared_watched(
        &scenario,
        &prepared,
        &mut |done, _| {
            bar.set_position(done as u64);
        },
        runner,
        Some(&mut serve),
    )
    .map_err(|e| {
        bar.abandon();
        anyhow::anyhow!("the day failed: {e}")
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut report = serde_json::to_string_pretty(&outcome.report)?;
    report.push('\n');
    let html = bcte_demo::html::render(&outcome);
    bcte_demo::write_all_atomic(&[(&a.report, report.as_bytes()), (&a.html, html.as_bytes())])
        .map_err(InputError)?;
    let value = json!({
        "report": a.report.display().to_string(),
        "html": a.html.display().to_string(),
        "seconds": seconds,
        "dashboard": dashboard,
        "summary": outcome.report,
    });
    emit(json_out, &value, || {
        format!(
            "{}\nran in {seconds:.1} s; reports written to {} and {}",
            bcte_demo::summary(&outcome.report).trim_end(),
            a.report.display(),
            a.html.display()
        )
    });
    if a.stay
        && in_process
        && let Some(url) = &dashboard
    {
        eprintln!("the dashboard stays at {url}: Ctrl-C ends");
        let (tx, rx) = std::sync::mpsc::channel();
        ctrlc::set_handler(move || {
            let _ = tx.send(());
        })?;
        let _ = rx.recv();
    }
    Ok(())
}

/// Runs `bcte demo`.
pub fn run(a: DemoArgs, json: bool) -> ExitCode {
    demo(&a, json).map_or_else(|e| crate::chain_cmds::fail(&e), |()| ExitCode::SUCCESS)
}
