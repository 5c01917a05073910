//! Feeders from data sets (docs/feeders.md): `bcte feeder import-simbench DIR --out
//! FEEDER.json` imports a SimBench CSV grid as a feeder model, the feeder file of `bcte tx
//! feeder register` with the grid's sites, loads and generators next to its nodes.
//!
//! Exit codes: 0 imported; 2 a missing or malformed folder (one line naming the file, the line
//! and the column) or an unwritable output; nothing is written then.

use crate::{chain_cmds::emit, market_cmds::input};
use bcte_feeders::{FeederModel, Profiles, SimbenchDir, import};
use bcte_market::file::kw;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::{path::PathBuf, process::ExitCode};

/// `bcte feeder` subcommands.
#[derive(Subcommand, Debug)]
pub enum FeederCommand {
    /// Import a SimBench CSV grid (one folder of Node.csv, Line.csv, ... and its profiles) as
    /// a feeder model.
    ImportSimbench(ImportArgs),
}

/// `bcte feeder import-simbench`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The SimBench folder (e.g. data/simbench/1-LV-rural1--0-sw).
    dir: PathBuf,
    /// Where to write the feeder model (`-`: standard output).
    #[arg(long, value_name = "FEEDER.json")]
    out: PathBuf,
}

/// The feeder model as written (docs/files.md, "Feeder model").
pub fn model_json(model: &FeederModel, source: &str) -> Value {
    let nodes: Vec<Value> = model
        .nodes
        .iter()
        .map(|n| {
            let mut v = json!({ "id": n.id.as_str() });
            if let (Some(parent), Some(limit)) = (&n.parent, n.limit) {
                v["parent"] = json!(parent.as_str());
                v["import_limit_kw"] = json!(kw(limit));
                v["export_limit_kw"] = json!(kw(limit));
            }
            v
        })
        .collect();
    let edges: serde_json::Map<String, Value> = model
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.to_string(), json!(n.edge.as_ref()?))))
        .collect();
    let sites: Vec<Value> = model
        .sites
        .iter()
        .map(|s| {
            json!({
                "site": s.site.as_str(),
                "node": s.node.as_str(),
                "loads": s.loads.iter().map(|l| json!({
                    "id": l.id, "profile": l.profile, "peak_kw": kw(l.peak)
                })).collect::<Vec<_>>(),
                "generators": s.generators.iter().map(|g| json!({
                    "id": g.id, "type": g.kind, "profile": g.profile, "rated_kw": kw(g.rated)
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": model.id,
        "source": source,
        "nodes": nodes,
        "edges": edges,
        "sites": sites,
    })
}

fn import_simbench(a: &ImportArgs, json_out: bool) -> anyhow::Result<()> {
    // The error names the file by its path in the folder.
    let at = |mut e: bcte_feeders::ImportError| {
        if e.file.ends_with(".csv") {
            e.file = a.dir.join(&e.file).display().to_string();
        }
        input(e.to_string())
    };
    let model = import(&SimbenchDir::read(&a.dir).map_err(at)?).map_err(at)?;
    // The profiles every load and generator names must be there and readable (SB-6).
    let profiles: Profiles = SimbenchDir::profiles(&a.dir, &model).map_err(at)?;
    let source = format!(
        "SimBench {}",
        a.dir.file_name().map_or_else(
            || a.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let mut text = serde_json::to_string_pretty(&model_json(&model, &source))?;
    text.push('\n');
    if a.out.as_os_str() == "-" {
        print!("{text}");
    } else {
        // Written whole or not at all: a temporary file beside it, then renamed.
        let tmp = a.out.with_extension("json.partial");
        std::fs::write(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, &a.out))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                input(format!("{}: cannot write: {e}", a.out.display()))
            })?;
    }
    let loads: i64 = model.loads().map(|l| l.peak.0).sum();
    let gens: i64 = model.generators().map(|g| g.rated.0).sum();
    let transformer = model.nodes.get(1).and_then(|n| n.limit).map_or(0.0, kw);
    let summary = json!({
        "feeder": model.id,
        "out": a.out.display().to_string(),
        "nodes": model.nodes.len(),
        "sites": model.sites.len(),
        "loads": model.loads().count(),
        "load_peak_kw": kw(bcte_types::Watts(loads)),
        "generators": model.generators().count(),
        "generation_rated_kw": kw(bcte_types::Watts(gens)),
        "transformer_kw": transformer,
        "profile_rows": profiles.rows,
    });
    if a.out.as_os_str() != "-" {
        emit(json_out, &summary, || {
            format!(
                "feeder {} from {}: {} nodes (transformer {} kW), {} sites: {} loads ({} kW peak), \
                 {} generators ({} kW rated); {} profile rows\nwritten to {}",
                model.id,
                a.dir.display(),
                model.nodes.len(),
                transformer,
                model.sites.len(),
                model.loads().count(),
                kw(bcte_types::Watts(loads)),
                model.generators().count(),
                kw(bcte_types::Watts(gens)),
                profiles.rows,
                a.out.display()
            )
        });
    }
    Ok(())
}

/// Runs `bcte feeder ...`.
pub fn run(cmd: FeederCommand, json: bool) -> ExitCode {
    let result = match cmd {
        FeederCommand::ImportSimbench(a) => import_simbench(&a, json),
    };
    result.map_or_else(|e| crate::chain_cmds::fail(&e), |()| ExitCode::SUCCESS)
}
