//! A simulated day without the ledger (AG-9): a feeder's sites with their devices and DER bid
//! every interval, the market engine clears the feeder with the upstream grid at its root, and
//! every site splits what it is served among its devices. The research mode of the
//! simulation (`--no-chain`): the same agents and clearing as on the chain, in one function.

use crate::{
    BaseLoad, Battery, BidContext, Device, EvCharger, EvDistribution, EvNeed, HeatPump, PriceStats,
    Pv, Site,
};
use bcte_feeders::{DerMix, FeederModel, Profiles, SiteDer};
use bcte_market::{Bid, Curve, Market, Node, Point, clear};
use bcte_types::{GridMode, contract::EvOption};
use bcte_units::{Price, Watts};
use rand::Rng;

/// A site and its devices for the day: base load and generation from its profiles, and the
/// DER the mix gave it (AG-9.1).
#[derive(Clone, Debug)]
pub struct SiteAgent {
    /// The site's index in the model.
    pub site: usize,
    /// Its devices: base load, PV, then a battery and a heat pump if it has them.
    pub devices: Site,
    /// Its priority class when load must be shed (MR-2.4; AG-9.4).
    pub priority: u8,
    /// For an EV charger (SB-7.4), the household whose car it charges: its owner's site.
    pub ev_of: Option<usize>,
}

impl SiteAgent {
    /// The EV charger of this site, if it is one with a car to charge in the run.
    pub fn charger(&self) -> Option<&EvCharger> {
        self.devices.devices.iter().find_map(|d| match d {
            Device::Ev(e) => Some(e),
            _ => None,
        })
    }
}

/// AG-9.4: a site's priority class for shedding (0 shed first, 7 last): a home (every load an
/// `H0` household profile) 4, a farm (`L` profiles) 2, any other site (businesses, generators
/// alone, EV chargers) 0.
pub fn priority_of(model: &FeederModel, site: usize) -> u8 {
    let loads = &model.sites[site].loads;
    if loads.is_empty() {
        0
    } else if loads.iter().all(|l| l.profile.starts_with("H0")) {
        4
    } else if loads.iter().all(|l| l.profile.starts_with('L')) {
        2
    } else {
        0
    }
}

/// The charging provider's slow and fast options of `mix` (SB-7.2) in the contract's units.
pub fn ev_options(mix: &DerMix) -> (EvOption, EvOption) {
    let option = |kw: f64, price: i64| EvOption {
        power: Watts((kw * 1e3).round() as i64),
        price: Price(price * 1_000_000),
    };
    (
        option(mix.ev.slow_kw, mix.ev.slow_price),
        option(mix.ev.fast_kw, mix.ev.fast_price),
    )
}

/// AG-9.1: one agent per site of `model`, with the DER of `ders` sized by `mix`, or why the
/// mix's sizes make no device (a size that rounds to nothing in the devices' integer units).
/// `chargers` are the `(household, charger)` sites SB-7.4 added to the model: each charger's
/// car gets its need for `config`'s run from `rng` in charger order (AG-8.1, AG-8.4) and the
/// owner's choice of option (AG-8.2); a car that arrives after the run leaves its charger
/// idle.
pub fn agents(
    model: &FeederModel,
    ders: &[SiteDer],
    mix: &DerMix,
    chargers: &[(usize, usize)],
    config: &DayConfig,
    rng: &mut impl Rng,
) -> Result<Vec<SiteAgent>, String> {
    let b = mix.battery;
    let h = mix.heat_pump;
    let (slow, fast) = ev_options(mix);
    // Per charger site: its household, and its charger if the car comes within the run.
    let mut evs: Vec<Option<(usize, Option<EvCharger>)>> = vec![None; model.sites.len()];
    for &(household, charger) in chargers {
        if household >= model.sites.len() || charger >= model.sites.len() {
            return Err(format!(
                "chargers: ({household}, {charger}) is not a pair of the model's sites"
            ));
        }
        let need = crate::sample_need(rng, &EvDistribution::DEFAULT, config.interval_ms);
        let ev = crate::within(need, config.intervals as u64)
            .map(|need| {
                let (choice, energy_wh) = crate::choose(&need, slow, fast, config.interval_ms);
                EvCharger::new(EvNeed { energy_wh, ..need }, choice, slow, fast)
            })
            .filter(|e| e.need().energy_wh > 0);
        evs[charger] = Some((household, ev));
    }
    (0..model.sites.len())
        .map(|site| {
            if let Some((household, ev)) = evs[site].take() {
                return Ok(SiteAgent {
                    site,
                    devices: Site {
                        devices: ev.into_iter().map(Device::Ev).collect(),
                    },
                    priority: priority_of(model, site),
                    ev_of: Some(household),
                });
            }
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
                    Battery::new(capacity, soc, power, power, eta)
                        .map_err(|e| format!("der: the battery's sizes: {e}"))?,
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
                    .map_err(|e| format!("der: the heat pump's sizes: {e}"))?,
                ));
            }
            Ok(SiteAgent {
                site,
                devices: Site { devices },
                priority: priority_of(model, site),
                ev_of: None,
            })
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
    /// The import limit at the root in alert mode (MC-4.2).
    pub alert_import_limit: Watts,
    /// Mode changes: from interval `k` on, the mode (sorted by interval; `normal` before the
    /// first, MC-4.1).
    pub modes: Vec<(usize, GridMode)>,
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

    /// The grid mode of interval `k`.
    pub fn mode_at(&self, k: usize) -> GridMode {
        self.modes
            .iter()
            .rev()
            .find(|(from, _)| *from <= k)
            .map_or(GridMode::Normal, |(_, m)| *m)
    }

    /// AG-9.5: when interval `k` is islanded, how many intervals the island has left by the
    /// mode schedule, `k` included (to the next change, or to the end of the run); 0 when it
    /// is not islanded.
    pub fn island_left(&self, k: usize) -> u64 {
        if self.mode_at(k) != GridMode::Islanded {
            return 0;
        }
        let end = self
            .modes
            .iter()
            .find(|(from, m)| *from > k && *m != GridMode::Islanded)
            .map_or(self.intervals.max(k + 1), |(from, _)| *from);
        (end - k) as u64
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
        if self.modes.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("modes: give each change once, in interval order".into());
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
    /// The interval's grid mode.
    pub mode: GridMode,
    /// The price at each node, in the model's node order.
    pub prices: Vec<Price>,
    /// The flow into each node from its parent (the root's: 0).
    pub flows: Vec<Watts>,
    /// What the upstream grid was served: positive the feeder exported, negative imported.
    pub upstream: Watts,
    /// Each site's served power (W).
    pub served: Vec<Watts>,
    /// What each site asked: its bid's allocation at its node's price; in the legacy run,
    /// what its uncontrolled devices drew (W).
    pub asked: Vec<Watts>,
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
    /// Each site's battery charge and capacity at the end of the interval, if it has one
    /// (mWh).
    pub battery_soc_mwh: Vec<Option<(i64, i64)>>,
}

/// Each site's battery charge and capacity, if it has a battery.
pub(crate) fn batteries(agents: &[SiteAgent]) -> Vec<Option<(i64, i64)>> {
    agents
        .iter()
        .map(|a| {
            a.devices.devices.iter().find_map(|d| match d {
                Device::Battery(b) => Some((b.soc_mwh(), b.capacity_mwh())),
                _ => None,
            })
        })
        .collect()
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
pub fn node_of(model: &FeederModel) -> Vec<usize> {
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

/// The agents' bids for one interval, and what they need to follow its result (AG-9.3).
#[derive(Clone, Debug)]
pub struct Bidding {
    /// The interval.
    pub k: usize,
    /// Each site's bid (the exact sum of its devices' curves), in agent order.
    pub bids: Vec<Curve>,
    curves: Vec<Vec<Curve>>,
    ctxs: Vec<BidContext>,
    pv_available: Vec<Watts>,
}

/// What the clearing of one interval gave, wherever it was cleared: by the engine here
/// ([`run`]) or on the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cleared {
    /// The price at each node, in the model's node order.
    pub prices: Vec<Price>,
    /// The flow into each node from its parent.
    pub flows: Vec<Watts>,
    /// What the upstream grid was served (positive: the feeder exported).
    pub upstream: Watts,
    /// Each site's served power, in agent order.
    pub served: Vec<Watts>,
    /// What each site's bid asked at its node's price: its allocation (W).
    pub asked: Vec<Watts>,
    /// Load shed and generation spilled over the feeder.
    pub shed: Watts,
    /// See `shed`.
    pub spilled: Watts,
}

/// A day in progress: the agents bid interval after interval and follow each result, and
/// every node's cleared prices are remembered for the next bids (AG-4). The steps of [`run`],
/// open so that the chain can clear in between.
#[derive(Clone, Debug)]
pub struct Day<'a> {
    model: &'a FeederModel,
    profiles: &'a Profiles,
    config: &'a DayConfig,
    nodes: Vec<Node>,
    node_of: Vec<usize>,
    history: Vec<Vec<Price>>,
}

impl<'a> Day<'a> {
    /// A day of `config` on `model` driven by `profiles`.
    pub fn new(
        model: &'a FeederModel,
        profiles: &'a Profiles,
        config: &'a DayConfig,
    ) -> Result<Self, String> {
        config.check()?;
        let nodes = market_nodes(model);
        Ok(Self {
            model,
            profiles,
            config,
            history: vec![Vec::new(); nodes.len()],
            node_of: node_of(model),
            nodes,
        })
    }

    /// The engine's nodes of the feeder.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Each site's node index.
    pub fn node_of(&self) -> &[usize] {
        &self.node_of
    }

    /// AG-9.3: every agent's bid for interval `k`, from its profiles' row and the last 96
    /// cleared prices at its node (the interval's import price before any); batteries keep
    /// their reserve when the interval is in alert (AG-3.4).
    pub fn bid(&self, agents: &mut [SiteAgent], k: usize) -> Result<Bidding, String> {
        let (import_price, _) = self.config.upstream_at(k);
        let outdoor_mk = self.config.outdoor_at(k);
        let alert = self.config.mode_at(k) == GridMode::Alert;
        let island_left = self.config.island_left(k);
        let pv_available =
            set_profiles(self.model, self.profiles, agents, self.config.start_row + k)?;
        let mut bids = Vec::with_capacity(agents.len());
        let mut curves = Vec::with_capacity(agents.len());
        let mut ctxs = Vec::with_capacity(agents.len());
        for a in agents.iter() {
            let h = &self.history[self.node_of[a.site]];
            let ctx = BidContext {
                interval: k as u64,
                interval_ms: self.config.interval_ms,
                prices: PriceStats::of(
                    &h[h.len().saturating_sub(crate::HISTORY_DEFAULT)..],
                    import_price,
                ),
                floor: self.config.floor,
                cap: self.config.cap,
                alert,
                outdoor_mk,
                island_left,
            };
            let (device_curves, sum) = a.devices.bid(&ctx);
            bids.push(sum);
            curves.push(device_curves);
            ctxs.push(ctx);
        }
        Ok(Bidding {
            k,
            bids,
            curves,
            ctxs,
            pv_available,
        })
    }

    /// AG-9.3: every site splits what `cleared` served it among its devices (AG-6) and they
    /// follow it; the node prices join the history. The interval's record.
    pub fn follow(
        &mut self,
        agents: &mut [SiteAgent],
        bidding: Bidding,
        cleared: Cleared,
    ) -> IntervalRecord {
        let mut devices = Vec::with_capacity(agents.len());
        for (j, a) in agents.iter_mut().enumerate() {
            let price = cleared.prices[self.node_of[a.site]];
            let d = a.devices.follow(
                &bidding.curves[j],
                price,
                cleared.served[j],
                &bidding.ctxs[j],
            );
            devices.push(d.powers);
        }
        for (n, h) in self.history.iter_mut().enumerate() {
            h.push(cleared.prices[n]);
        }
        IntervalRecord {
            mode: self.config.mode_at(bidding.k),
            prices: cleared.prices,
            flows: cleared.flows,
            upstream: cleared.upstream,
            served: cleared.served,
            asked: cleared.asked,
            devices,
            shed: cleared.shed,
            spilled: cleared.spilled,
            pv_available: bidding.pv_available,
            indoor_mk: indoor(agents),
            battery_soc_mwh: batteries(agents),
        }
    }

    /// AG-9.3: clears `bidding` with the engine as the chain would (MC-4.2, MC-7.2): the
    /// feeder's nodes with each edge's limit both ways, every site's bid with its priority, and
    /// the upstream grid at the root (none when islanded; the alert import limit in alert).
    pub fn clear(&self, agents: &[SiteAgent], bidding: &Bidding) -> Result<Cleared, String> {
        let k = bidding.k;
        let (import_price, export_price) = self.config.upstream_at(k);
        let mode = self.config.mode_at(k);
        let mut bids = Vec::with_capacity(agents.len() + 1);
        let has_upstream = mode != GridMode::Islanded;
        if has_upstream {
            let import_limit = if mode == GridMode::Alert {
                self.config.alert_import_limit
            } else {
                self.config.import_limit
            };
            bids.push(Bid::new(
                "upstream",
                self.nodes[0].id.clone(),
                upstream(
                    (import_price, import_limit),
                    (export_price, self.config.export_limit),
                ),
            ));
        }
        for (a, curve) in agents.iter().zip(&bidding.bids) {
            let mut bid = Bid::new(
                self.model.sites[a.site].site.to_string(),
                self.nodes[self.node_of[a.site]].id.clone(),
                curve.clone(),
            );
            bid.priority = a.priority;
            bids.push(bid);
        }
        let market = Market::new(self.config.floor, self.config.cap, self.nodes.clone(), bids)
            .map_err(|e| e.to_string())?;
        let c = clear(&market);
        let served_of = |i: usize| Watts(c.allocations[i].0 - c.bid_shed[i].0 + c.bid_spilled[i].0);
        let first = usize::from(has_upstream);
        Ok(Cleared {
            upstream: if has_upstream { served_of(0) } else { Watts(0) },
            served: (0..agents.len()).map(|j| served_of(j + first)).collect(),
            asked: (0..agents.len())
                .map(|j| c.allocations[j + first])
                .collect(),
            prices: c.prices.clone(),
            flows: c.flows.clone(),
            shed: Watts(c.shed.iter().map(|w| w.0).sum()),
            spilled: Watts(c.spilled.iter().map(|w| w.0).sum()),
        })
    }
}

/// AG-9.3: runs `config`'s intervals with the engine clearing each ([`Day::bid`],
/// [`Day::clear`], [`Day::follow`]).
pub fn run(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
) -> Result<Vec<IntervalRecord>, String> {
    run_with_progress(model, profiles, agents, config, &mut |_| {})
}

/// [`run`], calling `progress(done)` after each interval.
pub fn run_with_progress(
    model: &FeederModel,
    profiles: &Profiles,
    agents: &mut [SiteAgent],
    config: &DayConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<IntervalRecord>, String> {
    let mut day = Day::new(model, profiles, config)?;
    let mut records = Vec::with_capacity(config.intervals);
    for k in 0..config.intervals {
        let bidding = day.bid(agents, k)?;
        let cleared = day.clear(agents, &bidding)?;
        records.push(day.follow(agents, bidding, cleared));
        progress(k + 1);
    }
    Ok(records)
}
