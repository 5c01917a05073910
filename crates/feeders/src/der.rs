//! The DER mix on top of a feeder (SB-7): which households get a battery, an EV and a heat
//! pump, and their sizes, drawn with the caller's seeded random number generator. `none` keeps
//! exactly the data set's own loads and generators.

use crate::{FeederModel, ImportError};
use rand::{Rng, RngExt};
use serde::Deserialize;

/// The sizes and shares of a DER mix, as a DER file (TOML) gives them (SB-7.2): every field
/// optional, the rest from [`DerMix::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DerMix {
    /// The share of households with a battery, in `[0, 1]`.
    pub battery_share: f64,
    /// The share of households with an EV.
    pub ev_share: f64,
    /// The share of households with a heat pump.
    pub heat_pump_share: f64,
    /// A battery's size.
    pub battery: BatterySize,
    /// An EV charger's options.
    pub ev: EvSize,
    /// A heat pump's size and its house.
    pub heat_pump: HeatPumpSize,
}

/// A battery's size.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatterySize {
    /// Capacity (kWh).
    pub capacity_kwh: f64,
    /// Charging and discharging power (kW).
    pub power_kw: f64,
    /// Round-trip efficiency, in `(0, 1]`.
    pub round_trip: f64,
    /// State of charge at the start, a share of the capacity.
    pub initial_soc: f64,
}

/// An EV charger's options: the charging provider's slow and fast powers and their prices
/// (the EV charging contract's, CT-3.1).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvSize {
    /// The slow option's power (kW).
    pub slow_kw: f64,
    /// The fast option's power (kW).
    pub fast_kw: f64,
    /// What the owner pays per MWh delivered under the slow option (currency per MWh).
    pub slow_price: i64,
    /// See `slow_price`: under the fast option.
    pub fast_price: i64,
}

/// A heat pump and its house.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeatPumpSize {
    /// Electric power (kW).
    pub power_kw: f64,
    /// Coefficient of performance.
    pub cop: f64,
    /// The house's heat loss coefficient (W/K).
    pub ua_w_per_k: f64,
    /// The house's thermal capacitance (kWh/K).
    pub capacitance_kwh_per_k: f64,
    /// Setpoint (°C).
    pub setpoint_c: f64,
    /// Half the comfort band (°C).
    pub band_c: f64,
}

impl Default for DerMix {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Default for BatterySize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Default for EvSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Default for HeatPumpSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl BatterySize {
    /// 10 kWh, 5 kW, 90 % round trip, half full.
    pub const DEFAULT: Self = Self {
        capacity_kwh: 10.0,
        power_kw: 5.0,
        round_trip: 0.9,
        initial_soc: 0.5,
    };
}

impl EvSize {
    /// 3.7 kW (16 A single phase) at 110 per MWh slow, 11 kW (16 A three phase) at 130 per
    /// MWh fast: above the demo's dearest import price (112 per MWh, DM-1.3), so that a
    /// contract's bid at its option's price is served whenever the feeder can import.
    pub const DEFAULT: Self = Self {
        slow_kw: 3.7,
        fast_kw: 11.0,
        slow_price: 110,
        fast_price: 130,
    };
}

impl HeatPumpSize {
    /// 3 kW at COP 3 in a house of 200 W/K and 10 kWh/K (a 50-hour time constant), 21 ± 1 °C.
    pub const DEFAULT: Self = Self {
        power_kw: 3.0,
        cop: 3.0,
        ua_w_per_k: 200.0,
        capacitance_kwh_per_k: 10.0,
        setpoint_c: 21.0,
        band_c: 1.0,
    };
}

impl DerMix {
    /// SB-7.2: the default mix: a third of households with a battery, 40 % with an EV, 30 %
    /// with a heat pump.
    pub const DEFAULT: Self = Self {
        battery_share: 1.0 / 3.0,
        ev_share: 0.4,
        heat_pump_share: 0.3,
        battery: BatterySize::DEFAULT,
        ev: EvSize::DEFAULT,
        heat_pump: HeatPumpSize::DEFAULT,
    };

    /// SB-7.1: no DER beyond the data set's own.
    pub const NONE: Self = Self {
        battery_share: 0.0,
        ev_share: 0.0,
        heat_pump_share: 0.0,
        ..Self::DEFAULT
    };

    /// SB-7.2: a DER file's contents (`file` names it in errors), checked.
    pub fn parse(file: &str, text: &str) -> Result<Self, ImportError> {
        let mix: Self = toml::from_str(text).map_err(|e| ImportError::toml(file, text, &e))?;
        mix.check().map_err(|m| ImportError::new(file, m))?;
        Ok(mix)
    }

    /// Every share within `[0, 1]`, every size positive and finite, the band positive.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("battery_share", self.battery_share),
            ("ev_share", self.ev_share),
            ("heat_pump_share", self.heat_pump_share),
            ("battery.initial_soc", self.battery.initial_soc),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} = {v} is not within [0, 1]"));
            }
        }
        for (name, v) in [
            ("battery.capacity_kwh", self.battery.capacity_kwh),
            ("battery.power_kw", self.battery.power_kw),
            ("battery.round_trip", self.battery.round_trip),
            ("ev.slow_kw", self.ev.slow_kw),
            ("ev.fast_kw", self.ev.fast_kw),
            ("heat_pump.power_kw", self.heat_pump.power_kw),
            ("heat_pump.cop", self.heat_pump.cop),
            ("heat_pump.ua_w_per_k", self.heat_pump.ua_w_per_k),
            (
                "heat_pump.capacitance_kwh_per_k",
                self.heat_pump.capacitance_kwh_per_k,
            ),
            ("heat_pump.band_c", self.heat_pump.band_c),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e6) {
                return Err(format!("{name} = {v}: give a positive size"));
            }
        }
        if self.battery.round_trip > 1.0 {
            return Err(format!(
                "battery.round_trip = {} is more than 1",
                self.battery.round_trip
            ));
        }
        if self.ev.fast_kw <= self.ev.slow_kw {
            return Err(format!(
                "ev.fast_kw = {} is not more than ev.slow_kw = {}",
                self.ev.fast_kw, self.ev.slow_kw
            ));
        }
        for (name, v) in [
            ("ev.slow_price", self.ev.slow_price),
            ("ev.fast_price", self.ev.fast_price),
        ] {
            if !(0..=EV_PRICE_MAX).contains(&v) {
                return Err(format!(
                    "{name} = {v}: give 0 to {EV_PRICE_MAX} currency per MWh"
                ));
            }
        }
        if !self.heat_pump.setpoint_c.is_finite() {
            return Err("heat_pump.setpoint_c: give a temperature".into());
        }
        Ok(())
    }
}

/// The dearest EV option a DER file may give (currency per MWh): the market engine's price
/// limit is 10⁶ per MWh.
pub const EV_PRICE_MAX: i64 = 100_000;

/// The DER a household got (SB-7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteDer {
    /// The site's index in the model.
    pub site: usize,
    /// Whether it has a battery.
    pub battery: bool,
    /// Whether it has an EV.
    pub ev: bool,
    /// Whether it has a heat pump.
    pub heat_pump: bool,
}

/// SB-7.1: a household is a site with loads, every one of them of a household (`H0…`) or
/// agricultural (`L…`: a farm and its farmhouse) standard load profile.
pub fn is_household(model: &FeederModel, site: usize) -> bool {
    let loads = &model.sites[site].loads;
    !loads.is_empty()
        && loads
            .iter()
            .all(|l| l.profile.starts_with("H0") || l.profile.starts_with('L'))
}

/// SB-7.3: for every household in site order, three draws from `rng`, uniform in `[0, 1)`:
/// battery, EV, heat pump, each present if its draw is below its share. The same seed gives
/// the same mix; `DerMix::NONE` gives none (and still takes the draws, so a share changed
/// from 0 changes only its own devices).
pub fn assign(model: &FeederModel, mix: &DerMix, rng: &mut impl Rng) -> Vec<SiteDer> {
    (0..model.sites.len())
        .filter(|&s| is_household(model, s))
        .map(|site| {
            let (b, e, h): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
            SiteDer {
                site,
                battery: b < mix.battery_share,
                ev: e < mix.ev_share,
                heat_pump: h < mix.heat_pump_share,
            }
        })
        .collect()
}

/// SB-7.4: the suffix of a charger's site id: household `H1`'s charger is `H1-ev`.
pub const CHARGER_SUFFIX: &str = "-ev";

/// SB-7.4: every household of `ders` with an EV gets its charger: a site of its own (a
/// sub-metered charge point, as an EV charging contract wants, CT-3.1) at the household's
/// node, named after it with [`CHARGER_SUFFIX`], without loads or generators, appended after
/// the model's sites in household order. Returns `(household, charger)` site indices, or why
/// a charger's id cannot be made (an id too long with its suffix, or taken).
pub fn add_chargers(
    model: &mut FeederModel,
    ders: &[SiteDer],
) -> Result<Vec<(usize, usize)>, String> {
    let mut out = Vec::new();
    for d in ders.iter().filter(|d| d.ev) {
        let home = &model.sites[d.site];
        let name = format!("{}{CHARGER_SUFFIX}", home.site.as_str());
        let id = bcte_types::SiteId::new(name.clone())
            .map_err(|e| format!("site {}: its EV charger's id `{name}`: {e}", home.site))?;
        if model.sites.iter().any(|s| s.site == id) {
            return Err(format!(
                "site {}: its EV charger's id `{name}` is taken by another site",
                home.site
            ));
        }
        let site = crate::ModelSite {
            site: id,
            node: home.node.clone(),
            loads: Vec::new(),
            generators: Vec::new(),
        };
        model.sites.push(site);
        out.push((d.site, model.sites.len() - 1));
    }
    Ok(out)
}
