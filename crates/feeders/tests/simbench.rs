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

#[test]
fn the_der_mix_goes_to_households_reproducibly_and_none_adds_nothing() {
    use bcte_feeders::{DerMix, der};
    use rand::SeedableRng;
    let dir = shipped().join(GRIDS[0].code);
    let model = import(&SimbenchDir::read(&dir).unwrap()).unwrap();
    // SB-7.1: households are the loads of H0 and L profiles (counted in Load.csv directly:
    // rural1 has 3 homes and 10 farms).
    let text = std::fs::read_to_string(dir.join("Load.csv")).unwrap();
    let households = text
        .lines()
        .filter(|l| {
            l.split(';')
                .nth(2)
                .is_some_and(|p| p.starts_with("H0") || p.starts_with('L'))
        })
        .count();
    assert_eq!(households, 13);
    let mix = |m: &DerMix, seed| {
        der::assign(&model, m, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    };
    let a = mix(&DerMix::DEFAULT, 1);
    assert_eq!(a.len(), households);
    assert!(a.iter().all(|d| der::is_household(&model, d.site)));
    assert_eq!(a, mix(&DerMix::DEFAULT, 1), "the same seed, the same mix");
    assert!(
        mix(&DerMix::NONE, 1)
            .iter()
            .all(|d| !d.battery && !d.ev && !d.heat_pump)
    );
    let all = DerMix {
        battery_share: 1.0,
        ev_share: 1.0,
        heat_pump_share: 1.0,
        ..DerMix::DEFAULT
    };
    assert!(
        mix(&all, 3)
            .iter()
            .all(|d| d.battery && d.ev && d.heat_pump)
    );
    // Over many seeds the shares come out as set: a third, 40 % and 30 %.
    let (mut n, mut b, mut e, mut h) = (0, 0, 0, 0);
    for seed in 0..400 {
        for d in mix(&DerMix::DEFAULT, seed) {
            n += 1;
            b += usize::from(d.battery);
            e += usize::from(d.ev);
            h += usize::from(d.heat_pump);
        }
    }
    let share = |k: usize| k as f64 / n as f64;
    assert!(
        (share(b) - 1.0 / 3.0).abs() < 0.03
            && (share(e) - 0.4).abs() < 0.03
            && (share(h) - 0.3).abs() < 0.03,
        "{b} {e} {h} of {n}"
    );
}

#[test]
fn a_der_file_sets_what_it_names_and_a_bad_one_is_named() {
    use bcte_feeders::DerMix;
    let m = DerMix::parse(
        "mix.toml",
        "ev_share = 0.8\n[battery]\ncapacity_kwh = 13.5\n",
    )
    .unwrap();
    assert_eq!((m.ev_share, m.battery.capacity_kwh), (0.8, 13.5));
    assert_eq!(
        (m.battery_share, m.battery.power_kw, m.heat_pump),
        (
            DerMix::DEFAULT.battery_share,
            5.0,
            DerMix::DEFAULT.heat_pump
        )
    );
    let e = DerMix::parse("mix.toml", "ev_share = 1.5\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "mix.toml: ev_share = 1.5 is not within [0, 1]"
    );
    let e = DerMix::parse("mix.toml", "ev_share = 0.5\nbatery_share = 0.2\n").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("mix.toml", Some(2)), "{e}");
    assert!(e.message.contains("batery_share"), "{e}");
    let e = DerMix::parse("mix.toml", "[ev]\nslow_kw = 11\nfast_kw = 3.7\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("ev.fast_kw = 3.7 is not more than ev.slow_kw = 11"),
        "{e}"
    );
    let e = DerMix::parse("mix.toml", "[ev]\nfast_price = -5\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "mix.toml: ev.fast_price = -5: give 0 to 100000 currency per MWh"
    );
    let m = DerMix::parse("mix.toml", "[ev]\nslow_price = 95\n").unwrap();
    assert_eq!((m.ev.slow_price, m.ev.fast_price), (95, 130));
}

#[test]
fn every_household_with_an_ev_gets_a_charger_site_at_its_node() {
    use bcte_feeders::{DerMix, der};
    use rand::SeedableRng;
    let dir = shipped().join(GRIDS[0].code);
    let mut model = import(&SimbenchDir::read(&dir).unwrap()).unwrap();
    let before = model.sites.len();
    let all = DerMix {
        ev_share: 1.0,
        ..DerMix::NONE
    };
    let ders = der::assign(&model, &all, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let chargers = der::add_chargers(&mut model, &ders).unwrap();
    // SB-7.4: the 13 households of rural1, each with a charger appended in household order.
    assert_eq!(chargers.len(), 13);
    assert_eq!(model.sites.len(), before + 13);
    for (i, &(home, charger)) in chargers.iter().enumerate() {
        assert_eq!(charger, before + i);
        let (h, c) = (&model.sites[home], &model.sites[charger]);
        assert_eq!(c.site.as_str(), format!("{}-ev", h.site.as_str()));
        assert_eq!(c.node, h.node);
        assert!(c.loads.is_empty() && c.generators.is_empty());
        assert!(!der::is_household(&model, charger));
    }
    // Twice is refused: the ids are taken.
    let e = der::add_chargers(&mut model, &ders).unwrap_err();
    assert!(e.contains("is taken by another site"), "{e}");
}

#[test]
fn a_synthetic_feeder_of_any_size_is_a_radial_tree_driven_by_the_shipped_profiles() {
    use bcte_feeders::synthetic::{CABLE_LIMIT, synthetic};
    use rand::SeedableRng;
    let make = |n, seed| synthetic(n, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let m = make(10_000, 1);
    assert_eq!(m, make(10_000, 1), "the same seed, the same feeder");
    // SB-8: 2,500 buses of 4 homes, 250 cables of 10, below the transformer and the grid.
    assert_eq!(m.nodes.len(), 2 + 2_500);
    assert_eq!(m.nodes[1].limit, Some(bcte_types::Watts(15_000_000)));
    assert!(m.nodes[2..].iter().all(|n| n.limit == Some(CABLE_LIMIT)));
    for (i, n) in m.nodes.iter().enumerate().skip(1) {
        let p = n.parent.as_ref().unwrap();
        assert!(
            m.nodes[..i].iter().any(|x| &x.id == p),
            "{} before {}",
            p,
            n.id
        );
    }
    assert_eq!(m.loads().count(), 10_000);
    let pv = m.generators().count();
    assert!(
        (3_000..3_700).contains(&pv),
        "{pv} PV systems, about a third"
    );
    assert!(m.loads().all(|l| (3_000..=6_000).contains(&l.peak.0)));
    // Its profiles are the shipped grid's: every site has power in every row.
    let profiles = SimbenchDir::profiles(&shipped().join(GRIDS[0].code), &m).unwrap();
    assert!((0..m.sites.len()).all(|s| m.site_power(&profiles, s, 40 * 96 + 48).is_some()));
    // A small one: 1 home still makes a bus and a 100 kW transformer.
    let small = make(1, 2);
    assert_eq!(
        (small.nodes.len(), small.nodes[1].limit),
        (3, Some(bcte_types::Watts(100_000)))
    );
}
