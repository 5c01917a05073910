//! The legacy baseline (AG-10): the same devices and profiles with no market and no control,
//! under a flat retail tariff with net metering; its flows on the same feeder, so its limit
//! violations show.

use crate::{
    Device,
    day::{DayConfig, IntervalRecord, SiteAgent, batteries, indoor, node_of, set_profiles},
};
use bcte_feeders::{FeederModel, Profiles};
use bcte_types::GridMode;
use bcte_units::{Price, Watts};

/// AG-10: runs `config`'s intervals without a market. Each site: its base load; its PV at its
/// full output (no curtailment); its heat pump's thermostat holding the setpoint (the least
/// power that ends the interval at the setpoint or above, within its power); its EV charging
/// at the charger's full power from arrival until it has its energy; its battery for
/// self-consumption (charging from what the site would feed in, discharging into what it would
/// draw, within its bounds). Nothing is shed or spilled and no limit is enforced: the flows are
/// the sums of the sites' powers below each edge. The records carry the interval's import
/// price as every node's price (there is no market price).
pub fn run(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
) -> Result<Vec<IntervalRecord>, String> {
    config.check()?;
    let node_of = node_of(model);
    // Each node's parent's index (parents come before children, SB-3.1).
    let parent_of: Vec<Option<usize>> = model
        .nodes
        .iter()
        .map(|n| {
            n.parent.as_ref().map(|p| {
                model
                    .nodes
                    .iter()
                    .position(|m| &m.id == p)
                    .expect("a parent")
            })
        })
        .collect();
    let dt = config.interval_ms;
    let mut records = Vec::with_capacity(config.intervals);
    for k in 0..config.intervals {
        let outdoor = config.outdoor_at(k);
        let (import_price, _) = config.upstream_at(k);
        let pv_available = set_profiles(model, profiles, agents, config.start_row + k)?;
        let mut served = Vec::with_capacity(agents.len());
        let mut devices = Vec::with_capacity(agents.len());
        // AG-10.3: a shutoff (islanded) leaves every site without supply: no market and no
        // islanding controller, PV inverters trip (anti-islanding), batteries and heat pumps
        // stop, EVs do not charge; what the loads and EVs asked for is shed.
        let off = config.mode_at(k) == GridMode::Islanded;
        let mut shed = 0i64;
        let mut asked = Vec::with_capacity(agents.len());
        for a in agents.iter_mut() {
            if off {
                let before = shed;
                let mut powers = vec![0i64; a.devices.devices.len()];
                for (i, d) in a.devices.devices.iter_mut().enumerate() {
                    match d {
                        Device::Base(b) => shed += b.power.0.max(0),
                        Device::HeatPump(h) => {
                            shed += h
                                .power_to_reach(h.setpoint_mk(), outdoor, dt)
                                .clamp(0, h.max_power().0);
                            powers[i] = h.follow(Watts(0), outdoor, dt).0;
                        }
                        // The EV cannot charge: what it would have drawn is shed too.
                        Device::Ev(e) => shed += e.legacy_power(k as u64, dt).0,
                        Device::Pv(_) | Device::Battery(_) => {}
                    }
                }
                served.push(Watts(0));
                asked.push(Watts(shed - before));
                devices.push(powers.into_iter().map(Watts).collect());
                continue;
            }
            // AG-10.1: the uncontrolled devices first, then the thermostat, then the battery
            // on what is left.
            let mut powers: Vec<i64> = vec![0; a.devices.devices.len()];
            for (i, d) in a.devices.devices.iter_mut().enumerate() {
                match d {
                    Device::Base(b) => powers[i] = b.power.0,
                    Device::Pv(p) => powers[i] = -p.available.0,
                    Device::HeatPump(h) => {
                        let p = h
                            .power_to_reach(h.setpoint_mk(), outdoor, dt)
                            .clamp(0, h.max_power().0);
                        powers[i] = h.follow(Watts(p), outdoor, dt).0;
                    }
                    // AG-10.1: an EV charges at full power from its arrival.
                    Device::Ev(e) => {
                        let p = e.legacy_power(k as u64, dt);
                        powers[i] = e.follow(p, k as u64, dt).0;
                    }
                    Device::Battery(_) => {}
                }
            }
            let net: i64 = powers.iter().sum();
            for (i, d) in a.devices.devices.iter_mut().enumerate() {
                if let Device::Battery(b) = d {
                    powers[i] = b.follow(Watts(-net), dt).0;
                }
            }
            served.push(Watts(powers.iter().sum()));
            asked.push(Watts(powers.iter().sum()));
            devices.push(powers.into_iter().map(Watts).collect());
        }
        // The flow into each node: everything below it (parents come before children, SB-3.1).
        let mut below: Vec<i64> = vec![0; model.nodes.len()];
        for (s, w) in served.iter().enumerate() {
            below[node_of[agents[s].site]] += w.0;
        }
        for n in (1..model.nodes.len()).rev() {
            if let Some(p) = parent_of[n] {
                below[p] += below[n];
            }
        }
        let total: i64 = served.iter().map(|w| w.0).sum();
        let mut flows: Vec<Watts> = below.into_iter().map(Watts).collect();
        flows[0] = Watts(0);
        records.push(IntervalRecord {
            mode: config.mode_at(k),
            prices: vec![Price(import_price.0); model.nodes.len()],
            flows,
            upstream: Watts(-total),
            served,
            asked,
            devices,
            shed: Watts(shed),
            spilled: Watts(0),
            pv_available,
            indoor_mk: indoor(agents),
            battery_soc_mwh: batteries(agents),
        });
    }
    Ok(records)
}
