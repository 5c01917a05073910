//! Key performance indicators of a simulated day (docs/kpis.md, KP-n), the same for the legacy
//! baseline and the transactive run, computed from their interval records.

use crate::{
    Device,
    day::{IntervalRecord, SiteAgent},
};
use bcte_units::Watts;

/// W·ms per Wh.
const WMS_PER_WH: i128 = 3_600_000;

/// A day's KPIs (energies in Wh, powers in W, shares and cycles in parts per million or
/// thousandths as named), serialised under these names in the demo's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Kpis {
    /// KP-1: energy imported through the transformer.
    pub import_wh: i64,
    /// KP-1: energy exported.
    pub export_wh: i64,
    /// KP-1: the highest import in an interval (W).
    pub peak_import_w: i64,
    /// KP-2: the loads' energy (base loads and heat pumps).
    pub demand_wh: i64,
    /// KP-2: the PV energy fed in or used.
    pub production_wh: i64,
    /// KP-2: PV energy curtailed.
    pub curtailed_wh: i64,
    /// KP-3: self-sufficiency (ppm), `None` without demand.
    pub self_sufficiency_ppm: Option<i64>,
    /// KP-3: self-consumption (ppm), `None` without production.
    pub self_consumption_ppm: Option<i64>,
    /// KP-4: intervals with an edge above its limit.
    pub overload_intervals: u32,
    /// KP-4: energy above the edges' limits.
    pub overload_wh: i64,
    /// KP-5: the batteries' equivalent full cycles (thousandths).
    pub battery_cycles_milli: i64,
    /// KP-6: degree-hours outside the comfort bands (m°C·h).
    pub comfort_mk_h: i64,
    /// KP-7: energy of load shed.
    pub unserved_wh: i64,
    /// KP-8: the EVs' energy requested: the sum of their needs within the run (AG-8.4).
    pub ev_requested_wh: i64,
    /// KP-8: the energy the EVs were delivered (each interval's as settlement counts it).
    pub ev_delivered_wh: i64,
    /// KP-8: EVs that left with less than they requested.
    pub ev_short: u32,
}

fn wh(w_ms: i128) -> i64 {
    let q = w_ms / WMS_PER_WH;
    let r = w_ms % WMS_PER_WH;
    (if 2 * r.abs() >= WMS_PER_WH {
        q + w_ms.signum()
    } else {
        q
    }) as i64
}

/// KP-1 to KP-8 of `records` (intervals of `interval_ms`) for the sites of `agents` (whose
/// devices name what each record's device powers are), with the edge above each node limited
/// to `limits` (the root's `None`).
pub fn kpis(
    agents: &[SiteAgent],
    records: &[IntervalRecord],
    limits: &[Option<Watts>],
    interval_ms: u64,
) -> Kpis {
    let dt = i128::from(interval_ms);
    let (mut import, mut export, mut demand, mut production, mut curtailed) =
        (0i128, 0i128, 0i128, 0i128, 0i128);
    let (mut self_consumed, mut over, mut discharged, mut comfort, mut shed) =
        (0i128, 0i128, 0i128, 0i128, 0i128);
    let mut k = Kpis::default();
    let capacity: i128 = agents
        .iter()
        .flat_map(|a| &a.devices.devices)
        .filter_map(|d| match d {
            Device::Battery(b) => Some(i128::from(b.capacity_mwh())),
            _ => None,
        })
        .sum();
    for r in records {
        let imp = i128::from((-r.upstream.0).max(0));
        import += imp * dt;
        export += i128::from(r.upstream.0.max(0)) * dt;
        k.peak_import_w = k.peak_import_w.max(imp as i64);
        let (mut d_k, mut charging) = (0i128, 0i128);
        for (a, powers) in agents.iter().zip(&r.devices) {
            for (dev, p) in a.devices.devices.iter().zip(powers) {
                let p = i128::from(p.0);
                match dev {
                    Device::Base(_) | Device::HeatPump(_) | Device::Ev(_) => d_k += p.max(0),
                    Device::Pv(_) => production += -p.min(0) * dt,
                    Device::Battery(_) => {
                        charging += p.max(0);
                        discharged += -p.min(0) * dt;
                    }
                }
            }
        }
        demand += d_k * dt;
        // KP-3: the loads' energy not covered by imports (imports charge batteries first).
        self_consumed += (d_k - (imp - charging).max(0)).max(0) * dt;
        let available: i128 = r.pv_available.iter().map(|w| i128::from(w.0)).sum();
        let produced: i128 = agents
            .iter()
            .zip(&r.devices)
            .flat_map(|(a, p)| a.devices.devices.iter().zip(p))
            .filter(|(d, _)| matches!(d, Device::Pv(_)))
            .map(|(_, p)| i128::from(-p.0))
            .sum();
        curtailed += (available - produced).max(0) * dt;
        // KP-4: every edge's flow beyond its limit, either way.
        let beyond: i128 = r
            .flows
            .iter()
            .zip(limits)
            .filter_map(|(f, l)| l.map(|l| (i128::from(f.0.abs()) - i128::from(l.0)).max(0)))
            .sum();
        if beyond > 0 {
            k.overload_intervals += 1;
            over += beyond * dt;
        }
        // KP-6: how far each house is outside its band at the end of the interval.
        for (a, t) in agents.iter().zip(&r.indoor_mk) {
            if let (Some(t), Some(Device::HeatPump(h))) = (
                t,
                a.devices
                    .devices
                    .iter()
                    .find(|d| matches!(d, Device::HeatPump(_))),
            ) {
                let (low, high) = h.band();
                comfort += i128::from((low - t).max(t - high).max(0)) * dt;
            }
        }
        shed += i128::from(r.shed.0) * dt;
    }
    // KP-8: each EV's need against what its charger drew, interval by interval (ST-2.2).
    for (j, a) in agents.iter().enumerate() {
        let ev = a
            .devices
            .devices
            .iter()
            .enumerate()
            .find_map(|(i, d)| match d {
                Device::Ev(e) => Some((i, e)),
                _ => None,
            });
        if let Some((i, e)) = ev {
            let delivered: i64 = records
                .iter()
                .map(|r| bcte_ledger::settle::scheduled_wh(r.devices[j][i].0, interval_ms))
                .sum();
            k.ev_requested_wh += e.need().energy_wh;
            k.ev_delivered_wh += delivered;
            k.ev_short += u32::from(delivered < e.need().energy_wh);
        }
    }
    k.import_wh = wh(import);
    k.export_wh = wh(export);
    k.demand_wh = wh(demand);
    k.production_wh = wh(production);
    k.curtailed_wh = wh(curtailed);
    k.overload_wh = wh(over);
    k.unserved_wh = wh(shed);
    k.comfort_mk_h = wh(comfort);
    let share = |num: i128, den: i128| (den > 0).then(|| (num * 1_000_000 / den) as i64);
    k.self_sufficiency_ppm = share(self_consumed, demand);
    k.self_consumption_ppm = share(self_consumed.min(production), production);
    // mWh of capacity: discharged W·ms / 3,600 is mWh.
    k.battery_cycles_milli = if capacity > 0 {
        (discharged / 3_600 * 1_000 / capacity) as i64
    } else {
        0
    };
    k
}
