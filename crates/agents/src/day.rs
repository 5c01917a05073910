//! A simulated day without the ledger (AG-9): a feeder's sites with their devices and DER bid
//! every interval, the market engine clears the feeder with the upstream grid at its root, and
//! every site splits what it is served among its devices. The research mode of the
//! simulation (`--no-chain`): the same agents and clearing as on the chain, in one function.

use crate::{BaseLoad, Battery, BidContext, Device, HeatPump, PriceStats, Pv, Site};
use bcte_feeders::{DerMix, FeederModel, Profiles, SiteDer};
use bcte_market::{Bid, Curve, Market, Node, Point, clear};
use bcte_units::{Price, Watts};

/// A site and its devices for the day: base load and generation from its profiles, and the
/// DER the mix gave it (AG-9.1).
#[derive(Clone, Debug)]
pub struct SiteAgent {
    /// The site's index in the model.
    pub site: usize,
    /// Its devices: base load, PV, then a battery and a heat pump if it has them.
    pub devices: Site,
}

/// AG-9.1: one agent per site of `model`, with the DER of `ders` sized by `mix`.
pub fn agents(model: &FeederModel, ders: &[SiteDer], mix: &DerMix) -> Vec<SiteAgent> {
    let b = mix.battery;
    let h = mix.heat_pump;
    (0..model.sites.len())
        .map(|site| {
            let mut devices = vec![
                Device::Base(BaseLoad { power: Watts(0) }),
                Device::Pv(Pv {
                    available: Watts(0),
                    threshold: Price(0),
                }),
            ];
            let der = ders
                .iter()
                .find(|d| d.site == site)
                .copied()
                .unwrap_or_default();
            if der.battery {
                let capacity = (b.capacity_kwh * 1e6).round() as i64;
                let power = Watts((b.power_kw * 1e3).round() as i64);
                let soc = (capacity as f64 * b.initial_soc).round() as i64;
                let eta = (b.round_trip * 1e6).round() as u32;
                devices.push(Device::Battery(
                    Battery::new(capacity, soc, power, power, eta).expect("a checked DER mix"),
                ));
            }
            if der.heat_pump {
                let setpoint = (h.setpoint_c * 1e3).round() as i64;
                devices.push(Device::HeatPump(
                    HeatPump::new(
                        h.ua_w_per_k.round() as i64,
                        (h.capacitance_kwh_per_k * 1e3).round() as i64,
                        (h.cop * 1e6).round() as i64,
                        Watts((h.power_kw * 1e3).round() as i64),
                        setpoint,
                        (h.band_c * 1e3).round() as i64,
                        setpoint,
                    )
                    .expect("a checked DER mix"),
                ));
            }
            SiteAgent {
                site,
                devices: Site { devices },
            }
        })
        .collect()
}

/// What the day is run against (AG-9.2).
#[derive(Clone, Debug)]
pub struct DayConfig {
    /// The profile row of the first interval (SB-6.1).
    pub start_row: usize,
    /// How many intervals.
    pub intervals: usize,
    /// Their length (ms; SimBench's rows are 15 minutes).
    pub interval_ms: u64,
    /// The upstream grid's import and export prices, one pair per interval (the last repeats).
    pub upstream_prices: Vec<(Price, Price)>,
    /// The feeder's import and export limits at the root.
    pub import_limit: Watts,
    /// See `import_limit`.
    pub export_limit: Watts,
    /// The price floor and cap.
    pub floor: Price,
    /// See `floor`.
    pub cap: Price,
    /// The outdoor temperature of each interval (m°C; the last repeats).
    pub outdoor_mk: Vec<i64>,
}

impl DayConfig {
    /// The upstream import and export prices of interval `k` (the last pair repeats).
    pub fn upstream_at(&self, k: usize) -> (Price, Price) {
        self.upstream_prices[k.min(self.upstream_prices.len() - 1)]
    }

    /// The outdoor temperature of interval `k` (the last repeats).
    pub fn outdoor_at(&self, k: usize) -> i64 {
        self.outdoor_mk[k.min(self.outdoor_mk.len() - 1)]
    }

    /// Why the configuration cannot be run, if it cannot: a day needs at least one upstream
    /// price pair and one outdoor temperature, and intervals of a positive length.
    pub fn check(&self) -> Result<(), String> {
        if self.upstream_prices.is_empty() {
            return Err("upstream_prices: give at least one (import, export) pair".into());
        }
        if self.outdoor_mk.is_empty() {
            return Err("outdoor_mk: give at least one outdoor temperature".into());
        }
        if self.interval_ms == 0 {
            return Err("interval_ms: give a positive interval".into());
        }
        Ok(())
    }
}

/// One cleared interval of the day (AG-9.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntervalRecord {
    /// The price at each node, in the model's node order.
    pub prices: Vec<Price>,
    /// The flow into each node from its parent (the root's: 0).
    pub flows: Vec<Watts>,
    /// What the upstream grid was served: positive the feeder exported, negative imported.
    pub upstream: Watts,
    /// Each site's served power (W).
    pub served: Vec<Watts>,
    /// Each site's devices' powers (W), in its device order.
    pub devices: Vec<Vec<Watts>>,
    /// Load shed and generation spilled over the feeder (W).
    pub shed: Watts,
    /// See `shed`.
    pub spilled: Watts,
    /// Each site's available PV output before any curtailment (W).
    pub pv_available: Vec<Watts>,
    /// Each site's indoor temperature at the end of the interval, if it has a heat pump (m°C).
    pub indoor_mk: Vec<Option<i64>>,
}

/// Each site's indoor temperature, if it has a heat pump.
pub(crate) fn indoor(agents: &[SiteAgent]) -> Vec<Option<i64>> {
    agents
        .iter()
        .map(|a| {
            a.devices.devices.iter().find_map(|d| match d {
                Device::HeatPump(h) => Some(h.indoor_mk()),
                _ => None,
            })
        })
        .collect()
}

/// The model's nodes as the engine takes them, each edge's limit both ways (SB-4).
pub(crate) fn market_nodes(model: &FeederModel) -> Vec<Node> {
    model
        .nodes
        .iter()
        .map(|n| Node {
            id: n.id.to_string(),
            parent: n.parent.as_ref().map(ToString::to_string),
            import_limit: n.limit,
            export_limit: n.limit,
        })
        .collect()
}

/// Each site's node index.
pub(crate) fn node_of(model: &FeederModel) -> Vec<usize> {
    model
        .sites
        .iter()
        .map(|s| {
            model
                .nodes
                .iter()
                .position(|n| n.id == s.node)
                .expect("a site's node")
        })
        .collect()
}

/// Sets every agent's base load and available PV to its profiles' `row`; returns each site's
/// available PV.
pub(crate) fn set_profiles(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    row: usize,
) -> Result<Vec<Watts>, String> {
    let mut available = Vec::with_capacity(agents.len());
    for a in agents.iter_mut() {
        let (load, generation) = model.site_power(profiles, a.site, row).ok_or_else(|| {
            format!(
                "profile row {row} is past the profiles' {} rows",
                profiles.rows
            )
        })?;
        for d in &mut a.devices.devices {
            match d {
                Device::Base(b) => b.power = load,
                Device::Pv(p) => p.available = generation,
                _ => {}
            }
        }
        available.push(generation);
    }
    Ok(available)
}

/// The upstream grid at the root (MC-4.2): it sells at the import price up to the import
/// limit and buys at the export price up to the export limit.
fn upstream(import: (Price, Watts), export: (Price, Watts)) -> Curve {
    Curve::from_points(&[
        Point {
            price: export.0,
            power: export.1,
        },
        Point {
            price: export.0,
            power: Watts(0),
        },
        Point {
            price: import.0,
            power: Watts(0),
        },
        Point {
            price: import.0,
            power: Watts(-import.1.0),
        },
    ])
    .expect("export price at most the import price, limits within range")
}

/// AG-9.3: runs `config`'s intervals: each site's agents bid from their profiles' row and the
/// last 96 cleared prices at their node (the import price before any), the engine clears the
/// feeder with the upstream grid, and every site follows what it is served.
pub fn run(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
) -> Result<Vec<IntervalRecord>, String> {
    config.check()?;
    let nodes = market_nodes(model);
    let node_of = node_of(model);
    let mut history: Vec<Vec<Price>> = vec![Vec::new(); nodes.len()];
    let mut records = Vec::with_capacity(config.intervals);
    for k in 0..config.intervals {
        let row = config.start_row + k;
        let (import_price, export_price) = config.upstream_at(k);
        let outdoor_mk = config.outdoor_at(k);
        let mut bids = vec![Bid::new(
            "upstream",
            nodes[0].id.clone(),
            upstream(
                (import_price, config.import_limit),
                (export_price, config.export_limit),
            ),
        )];
        let mut curves = Vec::with_capacity(agents.len());
        let mut ctxs = Vec::with_capacity(agents.len());
        let pv_available = set_profiles(model, profiles, agents, row)?;
        for a in agents.iter_mut() {
            let n = node_of[a.site];
            let h = &history[n];
            let ctx = BidContext {
                interval_ms: config.interval_ms,
                prices: PriceStats::of(
                    &h[h.len().saturating_sub(crate::HISTORY_DEFAULT)..],
                    import_price,
                ),
                floor: config.floor,
                cap: config.cap,
                alert: false,
                outdoor_mk,
            };
            let (device_curves, sum) = a.devices.bid(&ctx);
            bids.push(Bid::new(
                model.sites[a.site].site.to_string(),
                nodes[n].id.clone(),
                sum,
            ));
            curves.push(device_curves);
            ctxs.push(ctx);
        }
        let market = Market::new(config.floor, config.cap, nodes.clone(), bids)
            .map_err(|e| e.to_string())?;
        let c = clear(&market);
        let served_of = |i: usize| Watts(c.allocations[i].0 - c.bid_shed[i].0 + c.bid_spilled[i].0);
        let mut served = Vec::with_capacity(agents.len());
        let mut devices = Vec::with_capacity(agents.len());
        for (j, a) in agents.iter_mut().enumerate() {
            let s = served_of(j + 1);
            let price = c.prices[node_of[a.site]];
            let d = a.devices.follow(&curves[j], price, s, &ctxs[j]);
            served.push(s);
            devices.push(d.powers);
        }
        for (n, h) in history.iter_mut().enumerate() {
            h.push(c.prices[n]);
        }
        records.push(IntervalRecord {
            prices: c.prices.clone(),
            flows: c.flows.clone(),
            upstream: served_of(0),
            served,
            devices,
            shed: Watts(c.shed.iter().map(|w| w.0).sum()),
            spilled: Watts(c.spilled.iter().map(|w| w.0).sum()),
            pv_available,
            indoor_mk: indoor(agents),
        });
    }
    Ok(records)
}
