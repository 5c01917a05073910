//! A short day on the chain and the shutoff without it (docs/demo.md): the chain's day is the
//! ledger-free day, interval for interval; power balances, money is conserved, every site is
//! settled on its reading; the same seed gives the same state root; islanded intervals have
//! no upstream exchange and the unserved energy from requests and meters agrees with the
//! market's shed.

use bcte_agents::day::IntervalRecord;
use bcte_demo::{
    chain::{self, ChainOptions},
    prepare, report,
    scenario::{Kind, Scenario},
};
use bcte_ledger::settle::scheduled_wh;
use bcte_types::{GridMode, MarketConfig, Price};

/// Every interval: the sites and the upstream grid sum to zero, and each site's devices add
/// up to what it was served.
fn balanced(records: &[IntervalRecord]) {
    for (k, r) in records.iter().enumerate() {
        let sites: i64 = r.served.iter().map(|w| w.0).sum();
        assert_eq!(
            sites + r.upstream.0,
            0,
            "interval {k}: power does not balance"
        );
        for (s, (served, devices)) in r.served.iter().zip(&r.devices).enumerate() {
            let sum: i64 = devices.iter().map(|w| w.0).sum();
            assert_eq!(sum, served.0, "interval {k}, site {s}: devices ≠ served");
        }
    }
}

fn chain_day(s: &Scenario) -> (bcte_demo::Prepared, chain::ChainOutcome) {
    let p = prepare(s).expect("the scenario is valid");
    let mut agents = p.agents.clone();
    let opts = ChainOptions {
        validators: s.validators,
        seed: s.seed,
        clock_speed: chain::CLOCK_SPEED,
    };
    let out = chain::run(
        &p.grid.model,
        &p.grid.profiles,
        &mut agents,
        &p.config,
        opts,
        &mut |_| {},
    )
    .expect("the day runs");
    (p, out)
}

#[test]
fn a_short_day_on_the_chain_is_the_day_without_it_balances_conserves_money_and_repeats() {
    let s = Scenario {
        intervals: 3,
        ..Scenario::default()
    };
    let (p, out) = chain_day(&s);
    let n_sites = p.grid.model.sites.len();

    // The agents followed the chain's results: the same prices, flows and powers as the
    // engine gives them without the ledger.
    let mut agents = p.agents.clone();
    let without = bcte_demo::run_without_chain(&p, &mut agents, &mut |_, _| {}).expect("runs");
    assert_eq!(out.records.len(), 3);
    assert_eq!(
        out.records, without,
        "the chain's day differs from the ledger-free day"
    );
    balanced(&out.records);
    assert!(
        out.records.iter().any(|r| r.upstream.0 != 0),
        "the feeder traded with the upstream grid"
    );

    // Settlement moved tokens only, and every site was settled on its reading.
    assert_eq!(
        out.balances_before, out.balances_after,
        "tokens were minted or burned"
    );
    assert_eq!(out.sites.len(), n_sites);
    let dt = p.config.interval_ms;
    let penalty = MarketConfig::DEFAULT.imbalance_penalty;
    let node_of = bcte_agents::day::node_of(&p.grid.model);
    let mut paid = 0i64;
    for (i, site) in out.sites.iter().enumerate() {
        assert_eq!(site.estimated, 0, "site {i} settled without its reading");
        // Its meter signed what its devices drew.
        let metered = report::metered(&out.records, i, dt);
        assert_eq!(site.metered_wh, metered, "site {i}: readings");
        // Its charges are ST-2's on its served power, its node's price and its reading.
        let served: Vec<_> = out.records.iter().map(|r| r.served[i]).collect();
        let prices: Vec<Price> = out.records.iter().map(|r| r.prices[node_of[i]]).collect();
        let expected = report::market_cost(&served, &prices, &metered, dt, penalty);
        assert_eq!(
            site.energy_charge + site.imbalance_charge,
            expected,
            "site {i}: charges"
        );
        paid += expected;
    }
    assert!(
        paid > 0,
        "a night's energy costs the feeder's sites something"
    );

    // The same seed gives the same chain.
    let (_, again) = chain_day(&s);
    assert_eq!(again.state_root, out.state_root);
    assert_eq!(again.height, out.height);
    assert_eq!(again.records, out.records);
}

#[test]
fn ev_contracts_on_the_chain_bid_as_the_agents_do_and_their_owners_pay_the_option_price() {
    use bcte_agents::{Device, EvCharger, EvNeed, choose};
    // Four intervals after midnight; every charger's car is plugged in for intervals 1 to 3
    // and needs 5 kWh: more than the slow option's 3.7 kW gives in three quarter-hours
    // (2,775 Wh), so the owner takes the fast one (11 kW at 130/MWh, DER mix default).
    let s = Scenario {
        intervals: 4,
        ..Scenario::default()
    };
    let mut p = prepare(&s).expect("valid");
    let mut chargers = 0;
    let (slow, fast) = bcte_agents::day::ev_options(&bcte_feeders::DerMix::DEFAULT);
    for a in p.agents.iter_mut().filter(|a| a.ev_of.is_some()) {
        // A car that arrives after four intervals leaves its charger idle.
        assert!(a.charger().is_none());
        let need = EvNeed {
            from: 1,
            deadline: 3,
            energy_wh: 5_000,
        };
        let (choice, energy) = choose(&need, slow, fast, p.config.interval_ms);
        assert_eq!((choice.as_str(), energy), ("fast", 5_000));
        a.devices.devices = vec![Device::Ev(EvCharger::new(need, choice, slow, fast))];
        chargers += 1;
    }
    assert!(chargers > 0, "the default mix gives some household an EV");
    let mut agents = p.agents.clone();
    let out = chain::run(
        &p.grid.model,
        &p.grid.profiles,
        &mut agents,
        &p.config,
        ChainOptions {
            validators: 1,
            seed: 5,
            clock_speed: chain::CLOCK_SPEED,
        },
        &mut |_| {},
    )
    .expect("the day runs");
    // CT-3.4 on the chain is the agents' bid: the same day as without the ledger.
    let mut without_agents = p.agents.clone();
    let without =
        bcte_demo::run_without_chain(&p, &mut without_agents, &mut |_, _| {}).expect("runs");
    assert_eq!(out.records, without);
    balanced(&out.records);
    assert_eq!(out.ev_contracts, chargers);
    assert_eq!(out.balances_before, out.balances_after);
    for (i, a) in agents.iter().enumerate() {
        if a.ev_of.is_none() {
            assert_eq!(out.sites[i].ev_difference, 0);
            continue;
        }
        // Its car got its 5 kWh by interval 3, none before it arrived; its owner paid
        // 5 kWh × 130/MWh = 0.65 in all (650,000 base units): its market charges and the
        // difference it settled with the provider at the deadline (CT-4.2).
        let metered = &out.sites[i].metered_wh;
        assert_eq!(metered[0], 0);
        assert_eq!(metered.iter().sum::<i64>(), 5_000, "site {i}");
        assert_eq!(out.sites[i].cost(), 650_000, "site {i}");
        assert_eq!(report::ev_charge(a, metered), Some(650_000));
        assert_ne!(out.sites[i].ev_difference, 0);
    }
}

/// The index of the node below the root (the transformer's low-voltage side).
fn transformer(nodes: &[String], s: &Scenario) -> usize {
    let g = bcte_demo::grid(s.feeder.as_deref(), s.seed).expect("grid");
    let i = bcte_demo::transformer(&g.model).expect("a node below the root");
    assert_eq!(nodes[i], g.model.nodes[i].id.to_string());
    i
}

#[test]
fn a_shutoff_on_the_chain_islands_the_feeder_as_the_day_without_it_does() {
    // Alert from 00:00, islanded from 02:00: the last two of ten intervals.
    let s = Scenario {
        scenario: Kind::Psps,
        psps_start_hour: 0,
        intervals: 10,
        ..Scenario::default()
    };
    let (p, out) = chain_day(&s);
    let mut agents = p.agents.clone();
    let without = bcte_demo::run_without_chain(&p, &mut agents, &mut |_, _| {}).expect("runs");
    assert_eq!(
        out.records, without,
        "the chain's shutoff differs from the ledger-free one"
    );
    balanced(&out.records);
    let modes: Vec<GridMode> = out.records.iter().map(|r| r.mode).collect();
    assert_eq!(modes[..8], [GridMode::Alert; 8]);
    assert_eq!(modes[8..], [GridMode::Islanded; 2]);
    for r in &out.records[8..] {
        assert_eq!(
            r.upstream.0, 0,
            "the chain cleared an islanded interval with the grid"
        );
    }
    assert!(
        out.records[..8].iter().any(|r| r.upstream.0 != 0),
        "in alert the feeder still trades upstream"
    );
    assert_eq!(out.balances_before, out.balances_after);
}

#[test]
fn a_winter_shutoff_islands_the_feeder_and_its_unserved_energy_is_the_shed_load() {
    // 1 December: little PV, so the four islanded hours cannot be served in full.
    let s = Scenario {
        scenario: Kind::Psps,
        date: "2016-12-01".into(),
        no_chain: true,
        ..Scenario::default()
    };
    let out = bcte_demo::run(&s, &mut |_, _| {}).expect("the day runs");
    let t = &out.transactive;
    balanced(t);
    let dt = 900_000;
    let islanded: Vec<usize> = (0..t.len())
        .filter(|&k| t[k].mode == GridMode::Islanded)
        .collect();
    // DM-1.2: alert from 08:00 for two hours, islanded from 10:00 for four.
    assert_eq!(islanded, (40..56).collect::<Vec<_>>());
    assert_eq!(t[32].mode, GridMode::Alert);
    assert_eq!(t[56].mode, GridMode::Normal);
    let transformer = transformer(&out.report.nodes, &s);
    for &k in &islanded {
        assert_eq!(
            t[k].upstream.0, 0,
            "interval {k}: islanded, yet traded upstream"
        );
        assert_eq!(
            t[k].flows[transformer].0, 0,
            "interval {k}: the transformer carried power"
        );
    }
    // The unserved energy (requests less meters, DM-4.2) is the market's shed energy, to
    // within the rounding of each site's reading and request to 1 Wh and of each interval's
    // shed energy.
    let n_sites = out.report.sites.len() as i64;
    let unserved: i64 = out
        .report
        .sites
        .iter()
        .map(|s| s.transactive.unserved_wh)
        .sum();
    let shed: i64 = t.iter().map(|r| scheduled_wh(r.shed.0, dt)).sum();
    assert!(shed > 0, "the winter shutoff sheds load");
    assert!(
        (unserved - shed).abs() <= (n_sites + 1) * islanded.len() as i64,
        "unserved {unserved} Wh against shed {shed} Wh"
    );
    assert_eq!(out.report.transactive.unserved_metered_wh, unserved);
    // AG-3.6 and MR-2.4: the batteries carry the whole island, so the lowest class is shed
    // first in every interval: the homes (class 4) lose far less than the farms (class 2).
    let by_class = |c: u8| -> i64 {
        out.report
            .sites
            .iter()
            .filter(|s| s.priority == c)
            .map(|s| s.transactive.unserved_wh)
            .sum()
    };
    assert!(
        by_class(4) * 5 < by_class(2),
        "homes {} Wh, farms {} Wh",
        by_class(4),
        by_class(2)
    );
    let soc_end = out.report.intervals[islanded[islanded.len() - 1]].battery_soc_ppm;
    assert!(
        soc_end < 10_000,
        "the batteries kept {soc_end} ppm past the island"
    );
    let soc_first = out.report.intervals[islanded[0]].battery_soc_ppm;
    assert!(
        soc_first > 400_000,
        "the batteries sold out in the first interval"
    );
    // Outside the shutoff nothing is shed.
    for (k, r) in t.iter().enumerate() {
        if r.mode == GridMode::Normal {
            assert_eq!(r.shed.0, 0, "interval {k}: shed in normal operation");
        }
    }
    // The legacy feeder is dark for the four hours: everything its sites asked for then went
    // unserved, more than the islanded market left unserved.
    let l = &out.legacy;
    for &k in &islanded {
        assert_eq!(l[k].upstream.0, 0);
        assert!(
            l[k].served.iter().all(|w| w.0 == 0),
            "interval {k}: legacy supply"
        );
    }
    let asked: i64 = islanded
        .iter()
        .map(|&k| {
            l[k].asked
                .iter()
                .map(|w| scheduled_wh(w.0.max(0), dt))
                .sum::<i64>()
        })
        .sum();
    let legacy_unserved = out.report.legacy.unserved_metered_wh;
    assert!(
        (legacy_unserved - asked).abs() <= n_sites * islanded.len() as i64,
        "legacy unserved {legacy_unserved} Wh against asked {asked} Wh"
    );
    assert!(
        legacy_unserved > unserved,
        "the market served some of the shutoff"
    );
}

#[test]
fn bad_scenarios_are_refused_with_what_is_wrong() {
    let bad = |s: Scenario| prepare(&s).expect_err("refused");
    let d = Scenario::default;
    assert!(
        bad(Scenario {
            date: "2016-02-30".into(),
            ..d()
        })
        .starts_with("date:")
    );
    assert!(
        bad(Scenario {
            date: "2017-01-01".into(),
            ..d()
        })
        .starts_with("date:")
    );
    assert!(
        bad(Scenario {
            validators: 0,
            ..d()
        })
        .starts_with("validators:")
    );
    assert!(
        bad(Scenario {
            intervals: 97,
            ..d()
        })
        .starts_with("intervals:")
    );
    let e = bad(Scenario {
        feeder: Some("/nonexistent/simbench".into()),
        ..d()
    });
    assert!(e.contains("/nonexistent/simbench"), "{e}");
    let e = bad(Scenario {
        der: "/nonexistent/mix.toml".into(),
        ..d()
    });
    assert!(e.contains("/nonexistent/mix.toml"), "{e}");
    // 31 December runs to the end of the profiles' year.
    prepare(&Scenario {
        date: "2016-12-31".into(),
        ..d()
    })
    .expect("the last day runs");
}
