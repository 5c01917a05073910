//! The SimBench import on real grids, against figures computed independently of this code: the
//! per-grid table of the SimBench folder's README (counts, installed power, transformer, yearly
//! energies and the peak of the summed load, from the SimBench package's own functions).
//!
//! The repository ships `1-LV-rural1--0-sw` (data/simbench); the other grids are checked when
//! `BCTE_SIMBENCH_DIR` names a folder holding them (e.g. `BCTE_SIMBENCH_DIR=../shared/data/simbench
//! cargo test -p bcte-feeders`).

use bcte_feeders::{FeederModel, PROFILE_ROWS, Profiles, SimbenchDir, import};
use std::path::{Path, PathBuf};

/// What the README's table says of a grid.
struct Expected {
    code: &'static str,
    lv_buses: usize,
    lines: usize,
    loads: usize,
    load_kw: f64,
    generators: usize,
    generation_kw: f64,
    transformer_kva: i64,
    /// The line type's `iMax` (A): NAYY 4x150 carries 270 A, 4x240 357 A.
    line_amps: f64,
    load_mwh: f64,
    pv_mwh: f64,
    peak_kw: f64,
}

const GRIDS: [Expected; 3] = [
    Expected {
        code: "1-LV-rural1--0-sw",
        lv_buses: 14,
        lines: 13,
        loads: 13,
        load_kw: 80.0,
        generators: 4,
        generation_kw: 160.38,
        transformer_kva: 160,
        line_amps: 270.0,
        load_mwh: 199.5,
        pv_mwh: 104.1,
        peak_kw: 74.4,
    },
    Expected {
        code: "1-LV-semiurb4--0-sw",
        lv_buses: 43,
        lines: 42,
        loads: 41,
        load_kw: 243.0,
        generators: 1,
        generation_kw: 6.48,
        transformer_kva: 400,
        line_amps: 270.0,
        load_mwh: 387.6,
        pv_mwh: 4.4,
        peak_kw: 115.5,
    },
    Expected {
        code: "1-LV-urban6--0-sw",
        lv_buses: 58,
        lines: 57,
        loads: 111,
        load_kw: 441.0,
        generators: 5,
        generation_kw: 57.13,
        transformer_kva: 630,
        line_amps: 357.0,
        load_mwh: 536.6,
        pv_mwh: 37.7,
        peak_kw: 186.1,
    },
];

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/simbench")
}

fn check(dir: &Path, want: &Expected) {
    let model: FeederModel = import(&SimbenchDir::read(dir).unwrap()).unwrap();
    let code = want.code;
    // The 20 kV bus of the external grid, the transformer's LV bus below it, every LV bus.
    assert_eq!(model.nodes.len(), want.lv_buses + 1, "{code}");
    let root = &model.nodes[0];
    assert!(root.parent.is_none() && root.voltage_kv == "20", "{code}");
    let below: Vec<_> = model
        .nodes
        .iter()
        .filter(|n| n.parent.as_ref() == Some(&root.id))
        .collect();
    assert_eq!(below.len(), 1, "{code}: one transformer");
    assert_eq!(
        below[0].limit.unwrap().0,
        want.transformer_kva * 1_000,
        "{code}"
    );
    // Every other edge is a line: √3 × 0.4 kV × iMax at 100 % loading.
    let line_w = (3f64.sqrt() * 400.0 * want.line_amps).round() as i64;
    let lines: Vec<_> = model.nodes[1..]
        .iter()
        .filter(|n| n.parent.as_ref() != Some(&root.id))
        .collect();
    assert_eq!(lines.len(), want.lines, "{code}");
    assert!(
        lines.iter().all(|n| n.limit.unwrap().0 == line_w),
        "{code}: {line_w} W"
    );
    // Every parent comes before its children.
    for (i, n) in model.nodes.iter().enumerate().skip(1) {
        let p = n.parent.as_ref().unwrap();
        assert!(
            model.nodes[..i].iter().any(|m| &m.id == p),
            "{code}: {} before {}",
            p,
            n.id
        );
    }
    assert_eq!(model.loads().count(), want.loads, "{code}");
    assert_eq!(model.generators().count(), want.generators, "{code}");
    assert_eq!(model.sites.len(), want.loads + want.generators, "{code}");
    let load_w: i64 = model.loads().map(|l| l.peak.0).sum();
    let gen_w: i64 = model.generators().map(|g| g.rated.0).sum();
    assert!(
        (load_w as f64 - want.load_kw * 1e3).abs() <= 0.5 * want.loads as f64,
        "{code}: {load_w} W"
    );
    assert!(
        (gen_w as f64 - want.generation_kw * 1e3).abs() <= 5.0,
        "{code}: {gen_w} W"
    );

    // The year: energies to the README's 0.1 MWh and the summed load's peak to its 0.1 kW.
    let profiles: Profiles = SimbenchDir::profiles(dir, &model).unwrap();
    assert_eq!(profiles.rows, PROFILE_ROWS, "{code}");
    let (mut load_wq, mut gen_wq, mut peak) = (0i64, 0i64, 0i64);
    for row in 0..profiles.rows {
        let (mut load, mut generation) = (0, 0);
        for s in 0..model.sites.len() {
            let (l, g) = model.site_power(&profiles, s, row).unwrap();
            load += l.0;
            generation += g.0;
        }
        load_wq += load;
        gen_wq += generation;
        peak = peak.max(load);
    }
    // W summed over quarter-hours / 4 is Wh; / 10⁶ MWh.
    let (load_mwh, pv_mwh) = (load_wq as f64 / 4e6, gen_wq as f64 / 4e6);
    assert!(
        (load_mwh - want.load_mwh).abs() <= 0.05,
        "{code}: {load_mwh} MWh of load"
    );
    assert!(
        (pv_mwh - want.pv_mwh).abs() <= 0.05,
        "{code}: {pv_mwh} MWh of PV"
    );
    assert!(
        (peak as f64 / 1e3 - want.peak_kw).abs() <= 0.05,
        "{code}: peak {peak} W"
    );
}

#[test]
fn the_shipped_grid_imports_with_the_data_sets_own_figures() {
    check(&shipped().join(GRIDS[0].code), &GRIDS[0]);
}

#[test]
fn every_available_simbench_grid_imports_with_its_own_figures() {
    let Some(dir) = std::env::var_os("BCTE_SIMBENCH_DIR") else {
        eprintln!("BCTE_SIMBENCH_DIR is not set: only the shipped grid was checked");
        return;
    };
    for want in &GRIDS {
        check(&Path::new(&dir).join(want.code), want);
    }
}

#[test]
fn a_missing_folder_or_file_is_named() {
    let e = SimbenchDir::read(Path::new("/nonexistent/simbench")).unwrap_err();
    assert!(e.to_string().contains("not a folder"), "{e}");
    let dir = tempdir();
    std::fs::write(dir.join("Node.csv"), "id;type\n").unwrap();
    let e = SimbenchDir::read(&dir).unwrap_err();
    assert!(e.to_string().starts_with("Line.csv: cannot read "), "{e}");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bcte-feeders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
