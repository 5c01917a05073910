//! Scenarios (DM-1): what a simulated day is run on and against, from flags or a TOML file,
//! and the documented synthetic profiles the day uses (upstream prices, outdoor temperature,
//! CO₂ intensity).

use bcte_agents::day::DayConfig;
use bcte_types::GridMode;
use bcte_units::{Price, Watts};
use serde::Deserialize;
use std::path::PathBuf;

/// µ-currency per MWh in one currency unit per MWh.
pub const MICRO: i64 = 1_000_000;

/// DM-1.3: the synthetic wholesale day-ahead price of each hour (currency/MWh): low at night,
/// a morning and a higher evening peak, a midday dip where solar output is high; the shape
/// of a typical central-European day-ahead day of 2016, not a recorded day.
pub const WHOLESALE_HOURLY: [i64; 24] = [
    27, 25, 24, 23, 23, 25, 29, 34, 37, 36, 34, 32, 30, 29, 29, 31, 33, 37, 41, 42, 39, 35, 32, 29,
];

/// DM-1.5: the synthetic CO₂ intensity of imported energy for each hour (g/kWh): about the
/// 2016 German mix's 520 g/kWh on average, lower around midday when solar output is high.
pub const CO2_G_PER_KWH_HOURLY: [i64; 24] = [
    540, 540, 535, 535, 535, 540, 545, 540, 520, 500, 480, 460, 450, 450, 460, 480, 510, 540, 565,
    570, 565, 555, 550, 545,
];

/// Which day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A normal day.
    #[default]
    Normal,
    /// A public-safety power shutoff (DM-1.2).
    Psps,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Self::Normal),
            "psps" => Ok(Self::Psps),
            _ => Err(format!("scenario: `{s}` is not normal or psps")),
        }
    }
}

/// A scenario: everything the flags of `bcte demo` set (DM-1.1). Absent fields keep their
/// defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A SimBench grid folder; absent: the shipped grid.
    pub feeder: Option<PathBuf>,
    /// `normal` or `psps`.
    pub scenario: Kind,
    /// The day of the profile year 2016, `YYYY-MM-DD`.
    pub date: String,
    /// `default`, `none` or a DER-mix TOML file.
    pub der: String,
    /// The seed of the DER mix and the network.
    pub seed: u64,
    /// Validators in-process.
    pub validators: u64,
    /// Intervals of 15 minutes from 00:00 (96 a whole day).
    pub intervals: usize,
    /// The network charge on every kWh imported, in both runs (currency/MWh).
    pub network_charge: i64,
    /// When the shutoff's alert starts (hour of the day); alert 2 h, islanded 4 h after it.
    pub psps_start_hour: usize,
    /// Run without the ledger (`--no-chain`).
    pub no_chain: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            feeder: None,
            scenario: Kind::Normal,
            date: "2016-06-21".into(),
            der: "default".into(),
            seed: 1,
            validators: 4,
            intervals: 96,
            network_charge: 70,
            psps_start_hour: 8,
            no_chain: false,
        }
    }
}

/// DM-1.6: the least the upstream grid offers each way at the root (W).
pub const UPSTREAM_MIN_W: i64 = 1_000_000;

/// DM-1.1: the day of the year (0 = 1 January) of `date` in the profile year 2016 (a leap
/// year), or why it is not one.
pub fn day_of_year(date: &str) -> Result<usize, String> {
    let bad = || format!("date: `{date}` is not a day of 2016 (YYYY-MM-DD)");
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let (y, m, d): (u32, usize, usize) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    const DAYS: [usize; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y != 2016 || !(1..=12).contains(&m) || d == 0 || d > DAYS[m - 1] {
        return Err(bad());
    }
    Ok(DAYS[..m - 1].iter().sum::<usize>() + d - 1)
}

/// DM-1.4: the synthetic outdoor temperature (m°C) of interval `k` of day `doy`: a daily mean
/// following the season (1 °C on 15 January to 19 °C on 15 July, a cosine) and a ±4 °C swing
/// over the day, coolest at 03:00 and warmest at 15:00.
pub fn outdoor_mk(doy: usize, k: usize) -> i64 {
    let season = (2.0 * std::f64::consts::PI * (doy as f64 - 196.0) / 366.0).cos();
    let mean = 10.0 + 9.0 * season;
    let hour = k as f64 / 4.0;
    let swing = -4.0 * (2.0 * std::f64::consts::PI * (hour - 3.0) / 24.0).cos();
    ((mean + swing) * 1_000.0).round() as i64
}

impl Scenario {
    /// Why the scenario cannot be run, if it cannot.
    pub fn check(&self) -> Result<usize, String> {
        let doy = day_of_year(&self.date)?;
        if self.validators == 0 || self.validators > 16 {
            return Err(format!(
                "validators: {} is not within 1 to 16",
                self.validators
            ));
        }
        if self.intervals == 0 || self.intervals > 96 {
            return Err(format!(
                "intervals: {} is not within 1 to 96 (one day)",
                self.intervals
            ));
        }
        if doy * 96 + self.intervals > bcte_feeders::PROFILE_ROWS {
            return Err("date: the day runs past the profiles' year".into());
        }
        if !(0..=1_000).contains(&self.network_charge) {
            return Err("network_charge: give 0 to 1,000 currency/MWh".into());
        }
        if self.psps_start_hour > 18 {
            return Err("psps_start_hour: give 0 to 18 (the shutoff ends by midnight)".into());
        }
        Ok(doy)
    }

    /// The grid modes of the day (DM-1.2): a shutoff is alert for 2 h from its start, then
    /// islanded for 4 h, then normal again.
    pub fn modes(&self) -> Vec<(usize, GridMode)> {
        match self.scenario {
            Kind::Normal => vec![],
            Kind::Psps => {
                let s = self.psps_start_hour * 4;
                vec![
                    (s, GridMode::Alert),
                    (s + 8, GridMode::Islanded),
                    (s + 24, GridMode::Normal),
                ]
            }
        }
    }

    /// DM-1.3: the upstream prices of interval `k`: import at the wholesale price plus the
    /// network charge, export at the wholesale price (µ/MWh).
    pub fn upstream(&self, k: usize) -> (Price, Price) {
        let w = WHOLESALE_HOURLY[(k / 4) % 24];
        (Price((w + self.network_charge) * MICRO), Price(w * MICRO))
    }

    /// DM-1.3: the legacy flat retail tariff: the day's mean wholesale price plus the network
    /// charge (µ/MWh), so both runs buy the same upstream energy at the same average cost.
    pub fn tariff(&self) -> Price {
        let mean = WHOLESALE_HOURLY.iter().sum::<i64>() * MICRO / 24;
        Price(mean + self.network_charge * MICRO)
    }

    /// DM-1.6: the day's configuration for the agents (AG-9.2) on a feeder whose transformer
    /// carries at most `transformer` (W; `None`: no limit known): the upstream grid offers as
    /// much each way as the transformer carries, and at least 1 MW, so that the transformer's
    /// limit is what binds.
    pub fn day_config(&self, doy: usize, transformer: Option<Watts>) -> DayConfig {
        let upstream = Watts(transformer.map_or(UPSTREAM_MIN_W, |w| w.0.max(UPSTREAM_MIN_W)));
        DayConfig {
            start_row: doy * 96,
            intervals: self.intervals,
            interval_ms: 900_000,
            upstream_prices: (0..self.intervals).map(|k| self.upstream(k)).collect(),
            import_limit: upstream,
            export_limit: upstream,
            floor: Price(-500 * MICRO),
            cap: Price(3_000 * MICRO),
            outdoor_mk: (0..self.intervals).map(|k| outdoor_mk(doy, k)).collect(),
            alert_import_limit: upstream,
            modes: self.modes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_2016_only() {
        assert_eq!(day_of_year("2016-01-01"), Ok(0));
        // 31 + 29 + 31 + 30 + 31 + 20 = 172.
        assert_eq!(day_of_year("2016-06-21"), Ok(172));
        assert_eq!(day_of_year("2016-12-31"), Ok(365));
        assert_eq!(day_of_year("2016-02-29"), Ok(59));
        for bad in [
            "2016-02-30",
            "2015-06-21",
            "2016-13-01",
            "21-06-2016",
            "2016-6-21",
            "",
        ] {
            assert!(day_of_year(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_shutoff_is_two_hours_alert_then_four_islanded() {
        let s = Scenario {
            scenario: Kind::Psps,
            psps_start_hour: 8,
            ..Scenario::default()
        };
        let c = s.day_config(172, None);
        assert_eq!(c.mode_at(31), GridMode::Normal);
        assert_eq!(c.mode_at(32), GridMode::Alert);
        assert_eq!(c.mode_at(39), GridMode::Alert);
        assert_eq!(c.mode_at(40), GridMode::Islanded);
        assert_eq!(c.mode_at(55), GridMode::Islanded);
        assert_eq!(c.mode_at(56), GridMode::Normal);
        // AG-9.5: the island's intervals still to come, the current one included.
        assert_eq!(
            [39, 40, 41, 55, 56].map(|k| c.island_left(k)),
            [0, 16, 15, 1, 0]
        );
    }

    #[test]
    fn the_upstream_offers_what_the_transformer_carries_and_at_least_a_megawatt() {
        let s = Scenario::default();
        let limits = |t: Option<i64>| {
            let c = s.day_config(172, t.map(Watts));
            (c.import_limit.0, c.export_limit.0, c.alert_import_limit.0)
        };
        assert_eq!(
            limits(Some(15_000_000)),
            (15_000_000, 15_000_000, 15_000_000)
        );
        assert_eq!(limits(Some(160_000)), (1_000_000, 1_000_000, 1_000_000));
        assert_eq!(limits(None), (1_000_000, 1_000_000, 1_000_000));
    }

    #[test]
    fn the_tariff_is_the_mean_wholesale_price_plus_the_network_charge() {
        // The 24 hourly prices sum to 756: a mean of 31.5 currency/MWh; plus 70.
        let s = Scenario::default();
        assert_eq!(s.tariff(), Price(101_500_000));
        // 08:00 is hour 8 (37), interval 32.
        assert_eq!(s.upstream(32), (Price(107 * MICRO), Price(37 * MICRO)));
    }

    #[test]
    fn the_outdoor_temperature_follows_season_and_hour() {
        // 15 July (day 196) at 15:00 (interval 60): 19 + 4 = 23 °C; 03:00: 15 °C.
        assert_eq!(outdoor_mk(196, 60), 23_000);
        assert_eq!(outdoor_mk(196, 12), 15_000);
    }
}
