//! Device agents against figures worked by hand (docs/agents.md) and their properties: a
//! battery never leaves its bounds, a split gives every device what its curve accepts and adds
//! up to the served power, every curve is monotone.

use bcte_agents::{BaseLoad, Battery, BidContext, Device, PriceStats, Pv, Site, split};
use bcte_market::Curve;
use bcte_units::{Price, Watts};
use proptest::prelude::*;

const M: i64 = 1_000_000;
const Q: u64 = 900_000;

fn ctx(mean: i64, spread: i64, alert: bool) -> BidContext {
    BidContext {
        interval: 0,
        interval_ms: Q,
        prices: PriceStats {
            mean: Price(mean * M),
            spread: Price(spread * M),
        },
        floor: Price(-500 * M),
        cap: Price(3_000 * M),
        alert,
        outdoor_mk: 0,
        island_left: 0,
    }
}

/// (base, [(price µ/MWh, drop W)]).
fn shape(c: &Curve) -> (i64, Vec<(i64, i64)>) {
    let base = c.range_at(Price(-1_000_000 * M)).max.0;
    (
        base,
        c.steps().iter().map(|s| (s.price.0, s.drop.0)).collect(),
    )
}

/// 10 kWh, half full, 5 kW each way, 90 % round trip.
fn battery(soc_kwh_milli: i64) -> Battery {
    Battery::new(
        10_000_000,
        soc_kwh_milli,
        Watts(5_000),
        Watts(5_000),
        900_000,
    )
    .unwrap()
}

#[test]
fn a_battery_charges_below_its_low_price_and_discharges_above_its_high_one() {
    let b = Device::Battery(battery(5_000_000));
    // AG-3.3: mean 100, spread 40: charge below 80/MWh, discharge above max(120, 80 / 0.9 =
    // 88.9) = 120. Room for 5 kWh at √0.9 = 94.87 % is 21 kW for a quarter-hour: 5 kW it is.
    assert_eq!(
        shape(&b.bid(&ctx(100, 40, false))),
        (5_000, vec![(80 * M, 5_000), (120 * M, 5_000)])
    );
    // A flat tariff (no spread): 100/MWh and 100 / 0.9 = 111.111112.
    assert_eq!(
        shape(&b.bid(&ctx(100, 0, false))),
        (5_000, vec![(100 * M, 5_000), (111_111_112, 5_000)])
    );
    // AG-3.4: in alert mode, at 4 kWh of a 5 kWh reserve it must buy 1 kWh / 0.9487 in
    // 0.25 h: 4,216.3 → 4,217 W at any price, and discharges nothing.
    let b = Device::Battery(battery(4_000_000));
    assert_eq!(
        shape(&b.bid(&ctx(100, 40, true))),
        (5_000, vec![(80 * M, 783)])
    );
}

#[test]
fn a_battery_gains_and_loses_charge_by_its_one_way_efficiency() {
    let mut b = battery(5_000_000);
    // AG-3.5: 5 kW for 0.25 h is 1.25 kWh, × 0.948683 = 1,185,853.75 → 1,185,853 mWh stored.
    assert_eq!(b.follow(Watts(5_000), Q), Watts(5_000));
    assert_eq!(b.soc_mwh(), 5_000_000 + 1_185_853);
    // Discharging 1.25 kWh costs 1.25 / 0.948683 = 1,317,616.1 → 1,317,617 mWh.
    assert_eq!(b.follow(Watts(-5_000), Q), Watts(-5_000));
    assert_eq!(b.soc_mwh(), 5_000_000 + 1_185_853 - 1_317_617);
    // Nearly full, it takes only what fits: 10 Wh of room is 10 / 0.25 / 0.948683 = 42.2 W.
    let mut b = battery(9_990_000);
    assert_eq!(b.max_charge(Q), Watts(42));
    assert_eq!(b.follow(Watts(5_000), Q), Watts(42));
    assert!(b.soc_mwh() <= b.capacity_mwh());
}

#[test]
fn pv_is_curtailed_below_its_threshold_and_base_load_is_flat() {
    let pv = Device::Pv(Pv {
        available: Watts(3_000),
        threshold: Price(0),
    });
    // AG-2: nothing below 0/MWh, −3 kW from 0 up.
    assert_eq!(shape(&pv.bid(&ctx(100, 40, false))), (0, vec![(0, 3_000)]));
    let base = Device::Base(BaseLoad { power: Watts(700) });
    assert_eq!(shape(&base.bid(&ctx(100, 40, false))), (700, vec![]));
}

#[test]
fn a_site_sums_its_devices_and_splits_what_it_is_served_by_the_rules() {
    let mut site = Site {
        devices: vec![
            Device::Base(BaseLoad { power: Watts(700) }),
            Device::Pv(Pv {
                available: Watts(3_000),
                threshold: Price(0),
            }),
            Device::Battery(battery(5_000_000)),
        ],
    };
    let c = ctx(100, 40, false);
    let (curves, sum) = site.bid(&c);
    // AG-5: 700 + 5,000 below 0; −3,000 from 0; the battery's 5 kW off at 80 and −5 kW at 120.
    assert_eq!(sum.range_at(Price(-1)).max, Watts(5_700));
    assert_eq!(sum.range_at(Price(50 * M)).max, Watts(2_700));
    assert_eq!(sum.range_at(Price(100 * M)).max, Watts(-2_300));
    assert_eq!(sum.range_at(Price(200 * M)).max, Watts(-7_300));
    // AG-6.1: at 80/MWh the battery is on its step, [0, 5,000]; served 1,000 W: base 700,
    // PV −3,000, the battery the remaining 3,300.
    let d = site.follow(&curves, Price(80 * M), Watts(1_000), &c);
    assert_eq!(d.powers, vec![Watts(700), Watts(-3_000), Watts(3_300)]);
    assert_eq!(d.unfollowed, Watts(0));
    // AG-6.1 at 0/MWh, PV on its step ([−3,000, 0]) and the battery off its own (5,000 below
    // 80): served 3,700 = 700 + 5,000 − 2,000 leaves PV −2,000.
    let d = split(&curves, Price(0), Watts(3_700));
    assert_eq!(d.powers, vec![Watts(700), Watts(-2_000), Watts(5_000)]);
    // AG-6.2: served more than the curves accept at 200/MWh (spilled generation): PV curtails.
    let d = split(&curves, Price(200 * M), Watts(-6_000));
    assert_eq!(d.powers, vec![Watts(700), Watts(-1_700), Watts(-5_000)]);
    // AG-6.3: served less (shed) at −10/MWh: the battery's charging goes first, then base load.
    let d = split(&curves, Price(-10 * M), Watts(300));
    assert_eq!(d.powers, vec![Watts(300), Watts(0), Watts(0)]);
    // Pro rata with largest remainders: two equal steps share 3 W as 2 and 1.
    let step = |w| {
        Curve::from_components(
            Watts(w),
            vec![bcte_market::Step {
                price: Price(0),
                drop: Watts(w),
            }],
            vec![],
        )
        .unwrap()
    };
    let d = split(&[step(10), step(10)], Price(0), Watts(3));
    assert_eq!(d.powers, vec![Watts(2), Watts(1)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A battery driven by random prices and served powers stays within [0, capacity], and in
    /// alert mode never discharges below its reserve by its own bids.
    #[test]
    fn a_battery_never_leaves_its_bounds(
        capacity in 1_000i64..50_000_000,
        soc_share in 0u32..=1_000,
        charge in 0i64..20_000,
        discharge in 0i64..20_000,
        eta in 500_000u32..=1_000_000,
        steps in prop::collection::vec((-100i64..400, 0i64..100, any::<bool>(), -30_000i64..30_000, 1u64..3_600_000), 1..40),
    ) {
        let soc = (i128::from(capacity) * i128::from(soc_share) / 1_000) as i64;
        let mut site = Site { devices: vec![Device::Battery(Battery::new(capacity, soc, Watts(charge), Watts(discharge), eta).unwrap())] };
        for (mean, spread, alert, served, dt) in steps {
            let mut c = ctx(mean, spread, alert);
            c.interval_ms = dt;
            let before = match &site.devices[0] { Device::Battery(b) => b.clone(), _ => unreachable!() };
            let (curves, _) = site.bid(&c);
            let price = Price(mean * M);
            let d = site.follow(&curves, price, Watts(served), &c);
            let Device::Battery(b) = &site.devices[0] else { unreachable!() };
            prop_assert!(0 <= b.soc_mwh() && b.soc_mwh() <= b.capacity_mwh(), "soc {} of {}", b.soc_mwh(), b.capacity_mwh());
            let p = d.powers[0].0;
            prop_assert!(p <= charge && -p <= discharge);
            if alert && before.soc_mwh() >= before.reserve_mwh(true) {
                prop_assert!(b.soc_mwh() >= b.reserve_mwh(true), "below the reserve");
            }
        }
    }

    /// Any mix of devices: the site's curve is monotone, and a split of a served power within
    /// the site's range at the price adds up to it, each device within its own range.
    #[test]
    fn a_split_adds_up_and_respects_every_curve(
        base in prop::collection::vec(0i64..10_000, 0..3),
        pv in prop::collection::vec((0i64..10_000, -50i64..50), 0..3),
        batteries in prop::collection::vec((0u32..=1_000, 0i64..10_000), 0..3),
        mean in -100i64..300,
        spread in 0i64..200,
        price in -150i64..400,
        at in 0u32..=1_000,
    ) {
        let mut devices = Vec::new();
        devices.extend(base.iter().map(|&w| Device::Base(BaseLoad { power: Watts(w) })));
        devices.extend(pv.iter().map(|&(w, t)| Device::Pv(Pv { available: Watts(w), threshold: Price(t * M) })));
        devices.extend(batteries.iter().map(|&(share, w)| Device::Battery(
            Battery::new(20_000_000, i64::from(share) * 20_000, Watts(w), Watts(w), 900_000).unwrap())));
        let site = Site { devices };
        let (curves, sum) = site.bid(&ctx(mean, spread, false));
        for q in (-600..3_100).step_by(37) {
            prop_assert!(sum.range_at(Price(q * M)).max >= sum.range_at(Price((q + 1) * M)).max);
        }
        let price = Price(price * M);
        let r = sum.range_at(price);
        let served = r.min.0 + (i128::from(r.max.0 - r.min.0) * i128::from(at) / 1_000) as i64;
        let d = split(&curves, price, Watts(served));
        prop_assert_eq!(d.unfollowed, Watts(0));
        prop_assert_eq!(d.powers.iter().map(|w| w.0).sum::<i64>(), served);
        for (c, p) in curves.iter().zip(&d.powers) {
            prop_assert!(c.range_at(price).contains(*p));
        }
    }
}

/// 200 W/K, 10 kWh/K, COP 3, 3 kW, 21 ± 1 °C.
fn heat_pump(indoor_mk: i64) -> bcte_agents::HeatPump {
    bcte_agents::HeatPump::new(
        200,
        10_000,
        3_000_000,
        Watts(3_000),
        21_000,
        1_000,
        indoor_mk,
    )
    .unwrap()
}

#[test]
fn a_heat_pump_keeps_its_band_at_any_price_and_bids_the_rest_by_how_cold_it_is() {
    let mut c = ctx(100, 40, false);
    // AG-7.1 at 0 °C outside, 20.5 °C inside: the house loses 200 × 20.5 = 4.1 kW, 1.025 kWh
    // in a quarter-hour, 0.1025 K of its 10 kWh/K: 20,397.5 → 20,397 m°C with the heat off;
    // with 3 kW at COP 3 it gains 9 − 4.1 = 4.9 kW: +122.5 → 20,622.
    let h = heat_pump(20_500);
    assert_eq!(h.next_mk(Watts(0), 0, Q), 20_397);
    assert_eq!(h.next_mk(Watts(3_000), 0, Q), 20_622);
    // AG-7.2/7.3: nothing must run (it would stay above 20 °C); all 3 kW stay below 22 °C and
    // are bid at 100 + 2 × 40 × 0.5 / 1 = 140/MWh.
    assert_eq!(
        shape(&Device::HeatPump(h.clone()).bid(&c)),
        (3_000, vec![(140 * M, 3_000)])
    );
    // At −10 °C outside and 20.05 °C inside it loses 6.01 kW: 1,337 W keep 20.000 °C
    // (1,336 W would end at 19.999), bid at any price; the rest at 100 + 2 × 40 × 0.95 = 176.
    c.outdoor_mk = -10_000;
    let h = heat_pump(20_050);
    assert_eq!(h.must_power(-10_000, Q), 1_337);
    assert_eq!(h.next_mk(Watts(1_337), -10_000, Q), 20_000);
    assert_eq!(h.next_mk(Watts(1_336), -10_000, Q), 19_999);
    assert_eq!(
        shape(&Device::HeatPump(h).bid(&c)),
        (3_000, vec![(176 * M, 1_663)])
    );
    // Warm inside (21.9 °C) on a mild day: only what stays under 22 °C, at a price below the
    // mean (100 − 2 × 40 × 0.9 = 28/MWh).
    c.outdoor_mk = 15_000;
    let h = heat_pump(21_900);
    let (base, steps) = shape(&Device::HeatPump(h.clone()).bid(&c));
    assert!(h.next_mk(Watts(base), 15_000, Q) <= 22_000);
    assert!(h.next_mk(Watts(base + 1), 15_000, Q) > 22_000);
    assert_eq!(steps, vec![(28 * M, base)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// AG-7: whenever its power allows, a heat pump following any power its curve accepts keeps
    /// the house within its band.
    #[test]
    fn a_heat_pump_keeps_the_band_whenever_its_power_allows(
        ua in 50i64..500,
        cap in 2_000i64..30_000,
        cop in 1_500_000i64..5_000_000,
        power in 1_000i64..10_000,
        setpoint in 18_000i64..23_000,
        band in 500i64..2_000,
        start in 0u32..=1_000,
        steps in prop::collection::vec((-15_000i64..15_000, 60_000u64..3_600_000, -100i64..400, 0u32..=1_000), 1..30),
    ) {
        let indoor = setpoint - band + (2 * band * i64::from(start) / 1_000);
        let mut site = Site { devices: vec![Device::HeatPump(
            bcte_agents::HeatPump::new(ua, cap, cop, Watts(power), setpoint, band, indoor).unwrap())] };
        for (outdoor, dt, price, at) in steps {
            let mut c = ctx(100, 40, false);
            c.outdoor_mk = outdoor;
            c.interval_ms = dt;
            let Device::HeatPump(before) = site.devices[0].clone() else { unreachable!() };
            let (curves, sum) = site.bid(&c);
            let price = Price(price * M);
            let r = sum.range_at(price);
            let served = r.min.0 + (i128::from(r.max.0 - r.min.0) * i128::from(at) / 1_000) as i64;
            site.follow(&curves, price, Watts(served), &c);
            let Device::HeatPump(h) = &site.devices[0] else { unreachable!() };
            let (low, high) = h.band();
            let t = h.indoor_mk();
            if before.must_power(outdoor, dt) <= power {
                prop_assert!(t >= low, "{t} below {low}");
            }
            prop_assert!(t <= high.max(before.next_mk(Watts(0), outdoor, dt)), "{t} above {high}");
            if t < low || t > high {
                // Out of the band (its power did not allow): start the next step inside again.
                let fresh = bcte_agents::HeatPump::new(ua, cap, cop, Watts(power), setpoint, band, setpoint).unwrap();
                site.devices[0] = Device::HeatPump(fresh);
            }
        }
    }
}

#[test]
fn ev_needs_are_drawn_from_the_documented_distribution_reproducibly() {
    use bcte_agents::{EvDistribution, sample_need};
    use rand::SeedableRng;
    let draw = |seed| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..2_000)
            .map(|_| sample_need(&mut rng, &EvDistribution::DEFAULT, Q))
            .collect::<Vec<_>>()
    };
    let needs = draw(7);
    assert_eq!(needs, draw(7), "the same seed, the same needs");
    assert_ne!(needs, draw(8));
    for n in &needs {
        // AG-8.1: plugged in from 12:00 (interval 48) at the earliest, out by 12:00 the next
        // day (interval 143 the last), at least three whole quarter-hours, 4 to 20 kWh.
        assert!(
            n.from >= 48 && n.deadline <= 143 && n.deadline >= n.from + 2,
            "{n:?}"
        );
        assert!((4_000..=20_000).contains(&n.energy_wh), "{n:?}");
    }
    // The means: arrival 18:00 (interval 72, 73 once rounded up to a whole quarter-hour),
    // 12 kWh.
    let mean = |f: &dyn Fn(&bcte_agents::EvNeed) -> f64| needs.iter().map(f).sum::<f64>() / 2_000.0;
    let from = mean(&|n| n.from as f64);
    assert!((72.0..74.0).contains(&from), "{from}");
    let kwh = mean(&|n| n.energy_wh as f64 / 1_000.0);
    assert!((11.5..12.5).contains(&kwh), "{kwh}");
}

#[test]
fn the_owner_chooses_slow_when_it_is_enough_and_fast_otherwise() {
    use bcte_agents::{EvNeed, choose};
    use bcte_types::contract::{EvChoice, EvOption};
    let slow = EvOption {
        power: Watts(3_700),
        price: Price(250 * M),
    };
    let fast = EvOption {
        power: Watts(11_000),
        price: Price(400 * M),
    };
    // AG-8.2: 8 hours at 3.7 kW is 29.6 kWh: slow for 10 kWh.
    let night = EvNeed {
        from: 72,
        deadline: 103,
        energy_wh: 10_000,
    };
    assert_eq!(choose(&night, slow, fast, Q), (EvChoice::Slow, 10_000));
    // 45 minutes: slow gives 2,775 Wh, fast 8,250: fast, for what it can deliver.
    let dash = EvNeed {
        from: 72,
        deadline: 74,
        energy_wh: 10_000,
    };
    assert_eq!(choose(&dash, slow, fast, Q), (EvChoice::Fast, 8_250));
    let short = EvNeed {
        energy_wh: 5_000,
        ..dash
    };
    assert_eq!(choose(&short, slow, fast, Q), (EvChoice::Fast, 5_000));
}

fn charger(energy_wh: i64, from: u64, deadline: u64) -> bcte_agents::EvCharger {
    use bcte_types::contract::EvOption;
    let slow = EvOption {
        power: Watts(3_700),
        price: Price(110 * M),
    };
    let fast = EvOption {
        power: Watts(11_000),
        price: Price(130 * M),
    };
    let need = bcte_agents::EvNeed {
        from,
        deadline,
        energy_wh,
    };
    let (choice, energy) = bcte_agents::choose(&need, slow, fast, Q);
    bcte_agents::EvCharger::new(
        bcte_agents::EvNeed {
            energy_wh: energy,
            ..need
        },
        choice,
        slow,
        fast,
    )
}

#[test]
fn a_legacy_ev_charges_at_full_power_from_arrival_and_stops_when_full() {
    // 6 kWh from interval 10: 11 kW is 2,750 Wh a quarter-hour, so 11 kW, 11 kW, then the
    // last 500 Wh at 2 kW; nothing before arrival or after.
    let mut e = charger(6_000, 10, 40);
    let mut drawn = vec![];
    for k in 8..15 {
        let p = e.legacy_power(k, Q);
        drawn.push(e.follow(p, k, Q).0);
    }
    assert_eq!(drawn, vec![0, 0, 11_000, 11_000, 2_000, 0, 0]);
    assert_eq!(e.delivered_wh(), 6_000);
    // Away, it draws nothing whatever it is given; plugged in, at most its full power.
    assert_eq!(e.follow(Watts(5_000), 41, Q), Watts(0));
    let mut e = charger(6_000, 10, 40);
    assert_eq!(e.follow(Watts(50_000), 10, Q), Watts(11_000));
    assert_eq!(e.follow(Watts(-50_000), 11, Q), Watts(0));
}

#[test]
fn an_ev_bids_nothing_while_away_and_its_contract_curve_while_plugged_in() {
    let e = charger(3_000, 4, 7);
    let at = |k: u64| BidContext {
        interval: k,
        ..ctx(100, 10, false)
    };
    assert_eq!(e.bid(&at(3)).max_power(), Watts(0));
    assert_eq!(e.bid(&at(8)).max_power(), Watts(0));
    // CT-3.4 at interval 4, slow (3.7 kW, 925 Wh an interval, 4 intervals): 3,000 Wh is
    // 12,000 W over a quarter-hour, so top = 3,700 W; must = ⌈(3,000 − 3 × 925) × 4⌉ = 900 W
    // at 110/MWh; the rest at ⌊110 × 3,000 / (4 × 925)⌋ = 89.189189/MWh.
    let c = e.bid(&at(4));
    assert_eq!(
        shape(&c),
        (3_700, vec![(89_189_189, 2_800), (110 * M, 900)])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// AG-8.3: served what its curve accepts at any price below its option's, every interval
    /// of its stay, an EV has its energy by its deadline whenever the option's power allows.
    #[test]
    fn an_ev_reaches_its_energy_by_its_deadline_whenever_its_power_allows(
        energy in 1i64..60_000,
        from in 0u64..60,
        stay in 0u64..40,
        prices in proptest::collection::vec(-50i64..109, 100),
    ) {
        let mut e = charger(energy, from, from + stay);
        for k in 0..(from + stay + 2) {
            let c = at_interval(k);
            let curve = e.bid(&c);
            let price = Price(prices[k as usize % prices.len()] * M);
            let served = curve.range_at(price).min;
            e.follow(served, k, Q);
        }
        let deliverable = 11_000 * (stay as i64 + 1) / 4;
        prop_assert_eq!(e.delivered_wh(), e.need().energy_wh);
        prop_assert_eq!(e.need().energy_wh, energy.min(deliverable));
    }
}

fn at_interval(k: u64) -> BidContext {
    BidContext {
        interval: k,
        ..ctx(100, 10, false)
    }
}

#[test]
fn an_islanded_battery_spreads_its_charge_over_the_island() {
    // AG-3.6: 10 kWh, half full (5 kWh), √0.9 = 948,683 ppm one way, four quarter-hours of
    // island left: 5,000,000 mWh × 3,600 × 948,683 / (900,000 ms × 10⁶ × 4) = 4,743 W, under
    // its 5 kW; with one left, the 5 kW limit binds; on the mains, no share applies.
    let b = battery(5_000_000);
    let island = |left| BidContext {
        island_left: left,
        ..ctx(100, 40, false)
    };
    assert_eq!(b.island_share(Q, 4), Watts(4_743));
    assert_eq!(
        shape(&Device::Battery(b.clone()).bid(&island(4))).1[1],
        (120 * M, 4_743)
    );
    assert_eq!(
        shape(&Device::Battery(b.clone()).bid(&island(1))).1[1],
        (120 * M, 5_000)
    );
    assert_eq!(
        shape(&Device::Battery(b.clone()).bid(&island(0))).1[1],
        (120 * M, 5_000)
    );
    // Served its share every interval, it lasts the island: after four quarter-hours at most
    // a rounding of charge is left, and it never ran dry before.
    let mut b = b;
    for left in (1..=4).rev() {
        let share = b.island_share(Q, left);
        assert!(share.0 > 0, "{left} left");
        b.follow(Watts(-share.0), Q);
    }
    assert!(b.soc_mwh() < 5_000_000 / 100, "{} mWh left", b.soc_mwh());
}
