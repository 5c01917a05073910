//! The report of a day (DM-4, DM-5): both runs' KPIs, every interval, every site, the chain.
//! Integers throughout, in the units their names say: W, Wh, µ-currency per MWh, base units
//! of the settlement token (10⁶ to one currency unit), g of CO₂.

use crate::scenario::CO2_G_PER_KWH_HOURLY;
use bcte_agents::{
    Device,
    day::{IntervalRecord, SiteAgent},
    kpi,
};
use bcte_feeders::FeederModel;
use bcte_ledger::settle::{energy_charge, scheduled_wh, settle_site};
use bcte_types::Price;
use bcte_units::Watts;
use serde::Serialize;

/// DM-4.1: one run's KPIs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kpis {
    /// KP-1 to KP-7 (docs/kpis.md).
    #[serde(flatten)]
    pub energy: kpi::Kpis,
    /// DM-4.3: what every site's owner paid, summed (base units; negative: was paid).
    pub cost_total: i64,
    /// Of it, the households' (SB-7.1), each with its EV charger's (SB-7.4).
    pub cost_households: i64,
    /// Households counted.
    pub households: u32,
    /// DM-4.3: the households' mean cost (base units).
    pub cost_per_household: i64,
    /// DM-4.4: energy the sites bought from each other within the feeder (Wh).
    pub local_wh: i64,
    /// DM-4.5: the CO₂ of the imported energy (g).
    pub co2_g: i64,
    /// DM-4.2: the energy sites asked for and their meters did not record (Wh).
    pub unserved_metered_wh: i64,
    /// DM-4.6: what EV owners paid their charging provider beyond the market charges of
    /// their chargers (base units; the provider's margin, negative its loss; part of
    /// `cost_total`). Zero in the legacy run, which has no provider.
    pub ev_provider_margin: i64,
}

/// One site over the day in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SiteRun {
    /// Metered energy (Wh; positive: consumed).
    pub metered_wh: i64,
    /// What its owner paid (base units; negative: was paid).
    pub cost: i64,
    /// DM-4.2: what it asked for and its meter did not record (Wh).
    pub unserved_wh: i64,
}

/// One site of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SiteReport {
    /// Its id.
    pub site: String,
    /// Its node.
    pub node: String,
    /// Whether it is a household (SB-7.1).
    pub household: bool,
    /// For an EV charger (SB-7.4), the household whose car it charges.
    pub charger_of: Option<String>,
    /// Its priority class.
    pub priority: u8,
    /// Its devices beyond base load and PV.
    pub der: Vec<String>,
    /// The legacy run.
    pub legacy: SiteRun,
    /// The transactive run.
    pub transactive: SiteRun,
}

/// One interval of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IntervalReport {
    /// The interval (0 = 00:00 of the date).
    pub k: usize,
    /// Its start, `HH:MM` of the profiles' time.
    pub time: String,
    /// Its grid mode.
    pub mode: String,
    /// The price at each node (µ/MWh), in the feeder's node order.
    pub prices: Vec<i64>,
    /// The flow into each node (W).
    pub flows: Vec<i64>,
    /// Import at the root (W; negative: export), transactive and legacy.
    pub import_w: i64,
    /// See `import_w`.
    pub legacy_import_w: i64,
    /// Load shed (W), transactive and legacy.
    pub shed_w: i64,
    /// See `shed_w`.
    pub legacy_shed_w: i64,
    /// Base load over the feeder (W).
    pub load_w: i64,
    /// PV output available and fed in (W).
    pub pv_available_w: i64,
    /// See `pv_available_w`.
    pub pv_w: i64,
    /// The batteries' power (W; positive: charging) and their mean state of charge (ppm of
    /// the capacity), transactive.
    pub battery_w: i64,
    /// See `battery_w`.
    pub battery_soc_ppm: i64,
    /// The EV chargers' power (W), transactive and legacy.
    pub ev_w: i64,
    /// See `ev_w`.
    pub legacy_ev_w: i64,
}

/// The chain's part of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The height when every interval was settled.
    pub height: u64,
    /// Its state root.
    pub state_root: String,
    /// Blocks from the first interval's start to the last settlement.
    pub blocks: u64,
    /// Validators.
    pub validators: u64,
    /// Transactions submitted.
    pub transactions: u64,
    /// The market clock speed.
    pub clock_speed: u32,
    /// EV charging contracts entered and settled (CT-3, CT-4).
    pub ev_contracts: u32,
    /// What the upstream account paid the market account over the day (ST-2.6; negative:
    /// was paid; base units).
    pub upstream_charge: i64,
    /// The congestion rent the market account collected over the day (ST-2.7; base units).
    pub congestion_rent: i64,
}

/// The whole report (DM-5.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The feeder's id.
    pub feeder: String,
    /// The date.
    pub date: String,
    /// `normal` or `psps`.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The nodes, in the order of every per-node list.
    pub nodes: Vec<String>,
    /// The transformer's limit (W), if the root's child has one.
    pub transformer_limit_w: Option<i64>,
    /// The legacy flat tariff (µ-currency per MWh, DM-1.6).
    pub tariff: i64,
    /// The legacy run's KPIs.
    pub legacy: Kpis,
    /// The transactive run's KPIs.
    pub transactive: Kpis,
    /// Every interval.
    pub intervals: Vec<IntervalReport>,
    /// Every site.
    pub sites: Vec<SiteReport>,
    /// The chain, when the day ran on one.
    pub chain: Option<ChainReport>,
}

/// DM-4.3: the legacy bill of a site: its day's net metered energy at the flat tariff (net
/// metering: what it fed in offsets what it drew at the same price).
pub fn legacy_cost(metered_wh: &[i64], tariff: Price) -> i64 {
    let net: i64 = metered_wh.iter().sum();
    // `net` Wh is `net` W for an hour: ST-2.2's charge of it is Wh × µ/MWh / 10⁶ base units,
    // rounded half away from zero.
    energy_charge(net, 3_600_000, tariff)
}

/// DM-4.3: a site's market charges without the chain: ST-2.3 and ST-2.4 on its served power,
/// price and metered energy, as the chain settles them.
pub fn market_cost(
    served: &[Watts],
    prices: &[Price],
    metered: &[i64],
    interval_ms: u64,
    penalty: Price,
) -> i64 {
    served
        .iter()
        .zip(prices)
        .zip(metered)
        .map(|((a, p), m)| settle_site(a.0, *p, interval_ms, penalty, Some(*m)).total())
        .sum()
}

/// CT-4.2: what a charger's owner pays for its EV contract: the delivered energy (its metered
/// energy, not negative) at the chosen option's price, rounded half away from zero; `None`
/// for a site that is not a charger with a contract.
pub fn ev_charge(agent: &SiteAgent, metered: &[i64]) -> Option<i64> {
    let e = agent.charger()?;
    let delivered: i64 = metered.iter().sum::<i64>().max(0);
    Some(bcte_types::units::div_round_half_away(
        i128::from(delivered) * i128::from(e.option().price.0),
        1_000_000,
    ) as i64)
}

/// A site's metered energy per interval: the sum of its devices' powers over the interval.
pub fn metered(records: &[IntervalRecord], site: usize, interval_ms: u64) -> Vec<i64> {
    records
        .iter()
        .map(|r| metered_in(r, site, interval_ms))
        .collect()
}

/// What a site's meter records for one interval (DM-2.3): the sum of its devices' powers
/// over the interval, rounded to 1 Wh.
pub fn metered_in(record: &IntervalRecord, site: usize, interval_ms: u64) -> i64 {
    scheduled_wh(record.devices[site].iter().map(|w| w.0).sum(), interval_ms)
}

/// DM-4.2: what a site asked for and its meter did not record, interval by interval.
pub fn unserved(records: &[IntervalRecord], site: usize, metered: &[i64], interval_ms: u64) -> i64 {
    records
        .iter()
        .zip(metered)
        .map(|(r, m)| (scheduled_wh(r.asked[site].0, interval_ms) - m).max(0))
        .sum()
}

/// DM-4.4: energy bought within the feeder: each interval the smaller of what sites drew and
/// what sites fed in.
pub fn local_wh(records: &[IntervalRecord], interval_ms: u64) -> i64 {
    records
        .iter()
        .map(|r| {
            let drew: i64 = r.served.iter().map(|w| w.0.max(0)).sum();
            let fed: i64 = r.served.iter().map(|w| (-w.0).max(0)).sum();
            scheduled_wh(drew.min(fed), interval_ms)
        })
        .sum()
}

/// DM-4.5: the CO₂ of the imports, each interval's import at its hour's intensity.
pub fn co2_g(records: &[IntervalRecord], interval_ms: u64) -> i64 {
    records
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let imported = scheduled_wh((-r.upstream.0).max(0), interval_ms);
            // Wh × g/kWh / 1,000, rounded half up (both positive).
            (imported * CO2_G_PER_KWH_HOURLY[(k / 4) % 24] + 500) / 1_000
        })
        .sum()
}

/// The KPIs of one run: `costs` and `unserved` per site.
pub fn kpis(
    model: &FeederModel,
    agents: &[SiteAgent],
    records: &[IntervalRecord],
    costs: &[i64],
    unserved: &[i64],
    interval_ms: u64,
) -> Kpis {
    let limits: Vec<Option<Watts>> = model
        .nodes
        .iter()
        .map(|n| if n.parent.is_some() { n.limit } else { None })
        .collect();
    let households: Vec<bool> = (0..model.sites.len())
        .map(|s| bcte_feeders::der::is_household(model, s))
        .collect();
    let n = households.iter().filter(|h| **h).count() as i64;
    // A household's cost includes its EV charger's (SB-7.4).
    let cost_households: i64 = costs
        .iter()
        .enumerate()
        .filter(|&(s, _)| {
            let home = agents.get(s).and_then(|a| a.ev_of).unwrap_or(s);
            households.get(home).copied().unwrap_or(false)
        })
        .map(|(_, c)| c)
        .sum();
    Kpis {
        energy: kpi::kpis(agents, records, &limits, interval_ms),
        cost_total: costs.iter().sum(),
        cost_households,
        households: n as u32,
        cost_per_household: if n > 0 { cost_households / n } else { 0 },
        local_wh: local_wh(records, interval_ms),
        co2_g: co2_g(records, interval_ms),
        unserved_metered_wh: unserved.iter().sum(),
        ev_provider_margin: 0,
    }
}

/// The DER names of a site's devices beyond base load and PV.
pub fn der_names(agent: &SiteAgent) -> Vec<String> {
    agent
        .devices
        .devices
        .iter()
        .filter_map(|d| match d {
            Device::Battery(_) => Some("battery".to_string()),
            Device::HeatPump(_) => Some("heat_pump".to_string()),
            Device::Ev(_) => Some("ev_charger".to_string()),
            _ => None,
        })
        .collect()
}

/// The interval rows of the report.
pub fn intervals(
    agents: &[SiteAgent],
    transactive: &[IntervalRecord],
    legacy: &[IntervalRecord],
) -> Vec<IntervalReport> {
    transactive
        .iter()
        .zip(legacy)
        .enumerate()
        .map(|(k, (t, l))| {
            let (mut load, mut pv, mut bat, mut soc, mut cap) = (0i64, 0i64, 0i64, 0i128, 0i128);
            let (mut ev, mut legacy_ev) = (0i64, 0i64);
            for ((a, powers), legacy) in agents.iter().zip(&t.devices).zip(&l.devices) {
                for ((d, p), lp) in a.devices.devices.iter().zip(powers).zip(legacy) {
                    match d {
                        Device::Base(_) => load += p.0,
                        Device::Pv(_) => pv += -p.0,
                        Device::Battery(_) => bat += p.0,
                        Device::Ev(_) => {
                            ev += p.0;
                            legacy_ev += lp.0;
                        }
                        Device::HeatPump(_) => {}
                    }
                }
            }
            for (now, capacity) in t.battery_soc_mwh.iter().flatten() {
                soc += i128::from(*now);
                cap += i128::from(*capacity);
            }
            IntervalReport {
                k,
                time: format!("{:02}:{:02}", k / 4, (k % 4) * 15),
                mode: t.mode.to_string(),
                prices: t.prices.iter().map(|p| p.0).collect(),
                flows: t.flows.iter().map(|w| w.0).collect(),
                import_w: -t.upstream.0,
                legacy_import_w: -l.upstream.0,
                shed_w: t.shed.0,
                legacy_shed_w: l.shed.0,
                load_w: load,
                pv_available_w: t.pv_available.iter().map(|w| w.0).sum(),
                pv_w: pv,
                battery_w: bat,
                battery_soc_ppm: if cap > 0 {
                    (soc * 1_000_000 / cap) as i64
                } else {
                    0
                },
                ev_w: ev,
                legacy_ev_w: legacy_ev,
            }
        })
        .collect()
}
