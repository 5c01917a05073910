//! A simulated day on the shipped SimBench grid without the ledger (AG-9): every interval the
//! power balances, every flow stays within its edge's limit, every site's devices add up to what
//! it was served, and the same inputs give the same day.

use bcte_agents::{
    Device,
    day::{self, DayConfig},
};
use bcte_feeders::{DerMix, SimbenchDir, der, import};
use bcte_units::{Price, Watts};
use rand::SeedableRng;
use std::path::Path;

const M: i64 = 1_000_000;

fn grid() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/simbench/1-LV-rural1--0-sw")
}

fn no_rng() -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(0)
}

fn config(day_of_year: usize, outdoor_c: i64) -> DayConfig {
    DayConfig {
        start_row: day_of_year * 96,
        intervals: 96,
        interval_ms: 900_000,
        upstream_prices: vec![(Price(100 * M), Price(30 * M))],
        import_limit: Watts(1_000_000),
        export_limit: Watts(1_000_000),
        floor: Price(-500 * M),
        cap: Price(3_000 * M),
        outdoor_mk: vec![outdoor_c * 1_000],
        alert_import_limit: Watts(500_000),
        modes: vec![],
    }
}

fn run(
    mix: &DerMix,
    seed: u64,
    day_of_year: usize,
    outdoor_c: i64,
) -> (
    Vec<day::IntervalRecord>,
    Vec<day::SiteAgent>,
    bcte_feeders::FeederModel,
    bcte_feeders::Profiles,
) {
    let mut model = import(&SimbenchDir::read(&grid()).unwrap()).unwrap();
    let profiles = SimbenchDir::profiles(&grid(), &model).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ders = der::assign(&model, mix, &mut rng);
    let chargers = der::add_chargers(&mut model, &ders).unwrap();
    let config = config(day_of_year, outdoor_c);
    let mut agents = day::agents(&model, &ders, mix, &chargers, &config, &mut rng).expect("agents");
    let records = day::run(&model, &profiles, &mut agents, &config).unwrap();
    (records, agents, model, profiles)
}

#[test]
fn a_summer_and_a_winter_day_balance_and_stay_within_every_limit() {
    // 21 June 2016 (day 172) at 20 °C, 10 January (day 9) at −5 °C, the default DER mix.
    for (day_of_year, outdoor) in [(172, 20), (9, -5)] {
        let (records, agents, model, _) = run(&DerMix::DEFAULT, 1, day_of_year, outdoor);
        assert_eq!(records.len(), 96);
        for (k, r) in records.iter().enumerate() {
            // The power balances: the sites and the upstream grid, served, sum to zero.
            let total: i64 = r.served.iter().map(|w| w.0).sum::<i64>() + r.upstream.0;
            assert_eq!(total, 0, "day {day_of_year} interval {k}");
            for (n, node) in model.nodes.iter().enumerate() {
                if let Some(limit) = node.limit {
                    assert!(
                        r.flows[n].0.abs() <= limit.0,
                        "interval {k}: {} over {}",
                        r.flows[n].0,
                        node.id
                    );
                }
            }
            // AG-6: each site's devices take exactly what it was served.
            for (s, d) in r.devices.iter().enumerate() {
                assert_eq!(
                    d.iter().map(|w| w.0).sum::<i64>(),
                    r.served[s].0,
                    "interval {k} site {s}"
                );
            }
        }
        for a in &agents {
            for d in &a.devices.devices {
                match d {
                    Device::Battery(b) => assert!((0..=b.capacity_mwh()).contains(&b.soc_mwh())),
                    Device::HeatPump(h) => {
                        let (low, high) = h.band();
                        assert!(
                            (low..=high).contains(&h.indoor_mk()),
                            "{} m°C",
                            h.indoor_mk()
                        );
                    }
                    _ => {}
                }
            }
        }
        assert!(
            agents.iter().any(|a| a.devices.devices.len() > 2),
            "the mix gave some DER"
        );
    }
}

#[test]
fn the_same_inputs_give_the_same_day_and_without_der_the_sites_draw_their_profiles() {
    let (a, _, _, _) = run(&DerMix::DEFAULT, 7, 172, 20);
    let (b, _, _, _) = run(&DerMix::DEFAULT, 7, 172, 20);
    assert_eq!(a, b);
    // SB-7.1 `none`: every site draws its load less its generation wherever its node's price
    // is positive (no curtailment, nothing to shift).
    let (records, _, model, profiles) = run(&DerMix::NONE, 7, 172, 20);
    let node_of = |s: usize| {
        model
            .nodes
            .iter()
            .position(|n| n.id == model.sites[s].node)
            .unwrap()
    };
    let mut checked = 0;
    for (k, r) in records.iter().enumerate() {
        for s in 0..model.sites.len() {
            if r.prices[node_of(s)].0 > 0 {
                let (load, generation) = model.site_power(&profiles, s, 172 * 96 + k).unwrap();
                assert_eq!(
                    r.served[s].0,
                    load.0 - generation.0,
                    "interval {k} site {s}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 96 * 10, "{checked}");
}

#[test]
fn the_kpis_of_a_day_by_hand() {
    use bcte_agents::{
        BaseLoad, Battery, Pv, Site,
        day::{IntervalRecord, SiteAgent},
        kpi::kpis,
    };
    // One site: base load, PV, a 10 kWh battery; two one-hour intervals.
    let agent = SiteAgent {
        site: 0,
        ev_of: None,
        devices: Site {
            devices: vec![
                Device::Base(BaseLoad { power: Watts(0) }),
                Device::Pv(Pv {
                    available: Watts(0),
                    threshold: Price(0),
                }),
                Device::Battery(
                    Battery::new(10_000_000, 0, Watts(5_000), Watts(5_000), 900_000).unwrap(),
                ),
            ],
        },
        priority: 0,
    };
    let record = |devices: [i64; 3], available: i64, limit_flow: i64| IntervalRecord {
        mode: bcte_types::GridMode::Normal,
        prices: vec![Price(0); 2],
        flows: vec![Watts(0), Watts(limit_flow)],
        upstream: Watts(-devices.iter().sum::<i64>()),
        served: vec![Watts(devices.iter().sum())],
        asked: vec![Watts(devices.iter().sum())],
        devices: vec![devices.map(Watts).to_vec()],
        shed: Watts(0),
        spilled: Watts(0),
        pv_available: vec![Watts(available)],
        indoor_mk: vec![None],
        battery_soc_mwh: vec![None],
    };
    // Hour 1: 1 kW of load, 3 kW of PV, 1 kW into the battery, 1 kW exported.
    // Hour 2: 2 kW of load, 1 kW from the battery, 1 kW imported.
    let records = [
        record([1_000, -3_000, 1_000], 3_500, -1_000),
        record([2_000, 0, -1_000], 0, 1_000),
    ];
    let k = kpis(&[agent], &records, &[None, Some(Watts(500))], 3_600_000);
    // KP-3 by hand: of the 3 kWh of demand 1 came from PV directly, 1 through the battery and
    // 1 from the grid: self-sufficiency 2/3; of the 3 kWh of PV 2 were used here: 2/3.
    assert_eq!(
        (k.import_wh, k.export_wh, k.peak_import_w),
        (1_000, 1_000, 1_000)
    );
    assert_eq!(
        (k.demand_wh, k.production_wh, k.curtailed_wh),
        (3_000, 3_000, 500)
    );
    assert_eq!(
        (k.self_sufficiency_ppm, k.self_consumption_ppm),
        (Some(666_666), Some(666_666))
    );
    // KP-4: 1 kW through a 500 W edge in both hours: 2 intervals, 1 kWh above the limit.
    assert_eq!((k.overload_intervals, k.overload_wh), (2, 1_000));
    // KP-5: 1 kWh discharged of 10 kWh: 0.1 cycles.
    assert_eq!(k.battery_cycles_milli, 100);
}

#[test]
fn the_legacy_day_balances_holds_the_setpoint_and_without_der_matches_the_market() {
    use bcte_agents::{kpi::kpis, legacy};
    let model = import(&SimbenchDir::read(&grid()).unwrap()).unwrap();
    let profiles = SimbenchDir::profiles(&grid(), &model).unwrap();
    let limits: Vec<_> = model.nodes.iter().map(|n| n.limit).collect();
    let ders = der::assign(
        &model,
        &DerMix::DEFAULT,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut model = model;
    let chargers = der::add_chargers(&mut model, &ders).unwrap();
    let mut agents = day::agents(
        &model,
        &ders,
        &DerMix::DEFAULT,
        &chargers,
        &config(9, -5),
        &mut rng,
    )
    .expect("agents");
    let records = legacy::run(&model, &profiles, &mut agents, &config(9, -5)).unwrap();
    for r in &records {
        assert_eq!(r.served.iter().map(|w| w.0).sum::<i64>() + r.upstream.0, 0);
        // AG-10.1: a thermostat on setpoint holds 21 °C (from above, within its rounding).
        for t in r.indoor_mk.iter().flatten() {
            assert!((21_000..21_100).contains(t), "{t}");
        }
    }
    let k = kpis(&agents, &records, &limits, 900_000);
    assert!(k.demand_wh > 0 && k.self_sufficiency_ppm.unwrap() <= 1_000_000);
    assert_eq!((k.curtailed_wh, k.unserved_wh, k.comfort_mk_h), (0, 0, 0));
    // AG-10.1: every EV charges at full power from its arrival and has its energy.
    assert!(k.ev_requested_wh > 0);
    assert_eq!((k.ev_delivered_wh, k.ev_short), (k.ev_requested_wh, 0));
    for (j, a) in agents.iter().enumerate() {
        if let Some(e) = a.charger() {
            let i = records.iter().position(|r| r.devices[j][0].0 > 0).unwrap();
            assert_eq!(i as u64, e.need().from, "charges from arrival");
            assert_eq!(
                records[i].devices[j][0],
                e.options().1.power.min(records[i].devices[j][0])
            );
        }
    }
    // With no DER and positive prices, the market serves every site its load less its
    // generation, as the legacy run does: the same flows, the same KPIs.
    let fresh = || {
        day::agents(
            &model,
            &[],
            &DerMix::NONE,
            &[],
            &config(0, 0),
            &mut no_rng(),
        )
        .expect("agents")
    };
    let (mut a, mut b) = (fresh(), fresh());
    let market = day::run(&model, &profiles, &mut a, &config(172, 20)).unwrap();
    let baseline = legacy::run(&model, &profiles, &mut b, &config(172, 20)).unwrap();
    for (m, l) in market.iter().zip(&baseline) {
        assert_eq!(
            (&m.served, &m.flows, m.upstream),
            (&l.served, &l.flows, l.upstream)
        );
    }
    assert_eq!(
        kpis(&a, &market, &limits, 900_000),
        kpis(&b, &baseline, &limits, 900_000)
    );
}

#[test]
fn a_day_without_prices_or_temperatures_is_refused_not_a_panic() {
    let model = import(&SimbenchDir::read(&grid()).unwrap()).unwrap();
    let profiles = SimbenchDir::profiles(&grid(), &model).unwrap();
    let mut agents = day::agents(
        &model,
        &[],
        &DerMix::NONE,
        &[],
        &config(0, 0),
        &mut no_rng(),
    )
    .expect("agents");
    let mut c = config(0, 0);
    c.outdoor_mk.clear();
    let e = day::run(&model, &profiles, &mut agents, &c).unwrap_err();
    assert!(e.starts_with("outdoor_mk"), "{e}");
    let mut c = config(0, 0);
    c.upstream_prices.clear();
    let e = bcte_agents::legacy::run(&model, &profiles, &mut agents, &c).unwrap_err();
    assert!(e.starts_with("upstream_prices"), "{e}");
}

#[test]
fn every_ev_gets_its_energy_by_its_deadline_and_charges_when_it_is_cheapest() {
    // The upstream grid is dear from 17:00 to 21:00 and cheap after; every option's price is
    // above both, so every contract bid's must part is served.
    let mut model = import(&SimbenchDir::read(&grid()).unwrap()).unwrap();
    let profiles = SimbenchDir::profiles(&grid(), &model).unwrap();
    let mix = DerMix {
        ev_share: 1.0,
        ..DerMix::NONE
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let ders = der::assign(&model, &mix, &mut rng);
    let chargers = der::add_chargers(&mut model, &ders).unwrap();
    assert_eq!(chargers.len(), ders.len(), "a charger per household");
    let mut c = config(172, 20);
    c.upstream_prices = (0..96)
        .map(|k| {
            let dear = (68..84).contains(&k);
            (Price(if dear { 105 } else { 95 } * M), Price(30 * M))
        })
        .collect();
    let mut agents = day::agents(&model, &ders, &mix, &chargers, &c, &mut rng).unwrap();
    let records = day::run(&model, &profiles, &mut agents, &c).unwrap();
    let (mut dear, mut cheap) = (0i64, 0i64);
    for &(home, charger) in &chargers {
        let a = &agents[charger];
        assert_eq!((a.site, a.ev_of, a.priority), (charger, Some(home), 0));
        assert_eq!(model.sites[charger].node, model.sites[home].node);
        let Some(e) = a.charger() else { continue };
        let need = e.need();
        assert!(need.deadline <= 95 && need.from <= need.deadline);
        // AG-8.3: the energy, by the deadline, never while the car is away.
        assert_eq!(
            e.delivered_wh(),
            need.energy_wh,
            "{}",
            model.sites[charger].site
        );
        for (k, r) in records.iter().enumerate() {
            let p = r.devices[charger][0].0;
            let k = k as u64;
            assert!(p >= 0 && p <= e.option().power.0);
            if !(need.from..=need.deadline).contains(&k) {
                assert_eq!(p, 0);
            } else if (68..84).contains(&k) {
                dear += p;
            } else {
                cheap += p;
            }
        }
    }
    assert!(
        cheap > 0 && cheap > 4 * dear,
        "cheap {cheap} W, dear {dear} W"
    );
    let limits: Vec<_> = model.nodes.iter().map(|n| n.limit).collect();
    let k = bcte_agents::kpi::kpis(&agents, &records, &limits, 900_000);
    assert_eq!((k.ev_delivered_wh, k.ev_short), (k.ev_requested_wh, 0));
}
