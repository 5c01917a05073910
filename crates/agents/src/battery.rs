//! A battery (AG-3): capacity, charge and discharge power, round-trip efficiency, its state of
//! charge kept within bounds; it charges when the price is low and discharges when it is high
//! against the expected price, and keeps an islanding reserve in alert mode.

use crate::BidContext;
use bcte_market::{Curve, Step};
use bcte_units::Watts;

/// The islanding reserve in alert mode: half the capacity (AG-3.4).
pub const ALERT_RESERVE_PPM: u32 = 500_000;

/// mWh of energy per W·ms: `P × Δ / 3,600` mWh.
const W_MS_PER_MWH: i128 = 3_600;
const PPM: i128 = 1_000_000;

/// `⌈a / b⌉` for `a ≥ 0`, `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

/// Why a battery's parameters are not a battery.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatteryError {
    /// Capacity or power not positive, or the state of charge outside `[0, capacity]`.
    #[error(
        "a battery needs a positive capacity and powers ≥ 0, and a charge within [0, capacity]"
    )]
    Bounds,
    /// The round-trip efficiency is not in `(0, 100 %]`.
    #[error("the round-trip efficiency must be more than 0 and at most 1,000,000 ppm")]
    Efficiency,
}

/// A battery and its state of charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Battery {
    capacity_mwh: i64,
    soc_mwh: i64,
    charge: Watts,
    discharge: Watts,
    /// One-way efficiency, the square root of the round trip (ppm).
    one_way_ppm: i64,
    round_trip_ppm: i64,
}

impl Battery {
    /// A battery of `capacity_mwh`, charged to `soc_mwh`, charging at up to `charge` and
    /// discharging at up to `discharge`, with a round-trip efficiency of `round_trip_ppm`
    /// (split evenly between charging and discharging: each way `√η`, AG-3.1).
    pub fn new(
        capacity_mwh: i64,
        soc_mwh: i64,
        charge: Watts,
        discharge: Watts,
        round_trip_ppm: u32,
    ) -> Result<Self, BatteryError> {
        if capacity_mwh <= 0
            || !(0..=capacity_mwh).contains(&soc_mwh)
            || charge.0 < 0
            || discharge.0 < 0
        {
            return Err(BatteryError::Bounds);
        }
        if round_trip_ppm == 0 || round_trip_ppm > 1_000_000 {
            return Err(BatteryError::Efficiency);
        }
        let one_way = (f64::from(round_trip_ppm) * 1e6).sqrt().round() as i64;
        Ok(Self {
            capacity_mwh,
            soc_mwh,
            charge,
            discharge,
            one_way_ppm: one_way.min(1_000_000),
            round_trip_ppm: i64::from(round_trip_ppm),
        })
    }

    /// The state of charge (mWh).
    pub const fn soc_mwh(&self) -> i64 {
        self.soc_mwh
    }

    /// The capacity (mWh).
    pub const fn capacity_mwh(&self) -> i64 {
        self.capacity_mwh
    }

    /// AG-3.4: the lowest state of charge it discharges to: the islanding reserve in alert
    /// mode, empty otherwise.
    pub fn reserve_mwh(&self, alert: bool) -> i64 {
        if alert {
            (i128::from(self.capacity_mwh) * i128::from(ALERT_RESERVE_PPM) / PPM) as i64
        } else {
            0
        }
    }

    /// AG-3.2: the most it can charge for `interval_ms` without passing its capacity.
    pub fn max_charge(&self, interval_ms: u64) -> Watts {
        let room = i128::from(self.capacity_mwh - self.soc_mwh);
        let p =
            room * W_MS_PER_MWH * PPM / (i128::from(interval_ms) * i128::from(self.one_way_ppm));
        Watts(p.min(i128::from(self.charge.0)) as i64)
    }

    /// AG-3.2: the most it can discharge for `interval_ms` without going below `reserve`.
    pub fn max_discharge(&self, interval_ms: u64, reserve_mwh: i64) -> Watts {
        let above = i128::from((self.soc_mwh - reserve_mwh).max(0));
        let p =
            above * W_MS_PER_MWH * i128::from(self.one_way_ppm) / (i128::from(interval_ms) * PPM);
        Watts(p.min(i128::from(self.discharge.0)) as i64)
    }

    /// AG-3.6: in an island with `left` intervals to go (this one included), the most it
    /// discharges in this one: its charge spread evenly over them,
    /// `⌊s × 3,600 × √η / (Δ × 10⁶ × left)⌋` W.
    pub fn island_share(&self, interval_ms: u64, left: u64) -> Watts {
        let p = i128::from(self.soc_mwh.max(0)) * W_MS_PER_MWH * i128::from(self.one_way_ppm)
            / (i128::from(interval_ms) * PPM * i128::from(left.max(1)));
        Watts(p.min(i128::from(i64::MAX)) as i64)
    }

    /// AG-3.3: the bid. With the expected mean `m` and spread `s`, it charges at full power
    /// below `m − s/2` and discharges at full power above `max(m + s/2, (m − s/2) / η)` (so a
    /// cycle at its thresholds pays for its losses), idle between; in alert mode below its
    /// reserve it buys what reaches the reserve at any price (AG-3.4); in an island it
    /// discharges at most its share of the island's intervals (AG-3.6).
    pub(crate) fn bid(&self, ctx: &BidContext) -> Curve {
        let dt = ctx.interval_ms;
        let reserve = self.reserve_mwh(ctx.alert);
        let c = self.max_charge(dt).0;
        let mut d = self.max_discharge(dt, reserve).0;
        if ctx.island_left > 0 {
            d = d.min(self.island_share(dt, ctx.island_left).0);
        }
        // What must be bought to reach the reserve this interval (never more than it can take).
        let must = if self.soc_mwh < reserve {
            let gap = i128::from(reserve - self.soc_mwh);
            let p = ceil_div(
                gap * W_MS_PER_MWH * PPM,
                i128::from(dt) * i128::from(self.one_way_ppm),
            );
            (p as i64).min(c)
        } else {
            0
        };
        let (m, s) = (ctx.prices.mean.0, ctx.prices.spread.0);
        let low = m.saturating_sub(s / 2);
        let mut high = m.saturating_add(s / 2);
        if low > 0 {
            let breakeven = ceil_div(i128::from(low) * PPM, i128::from(self.round_trip_ppm));
            high = high.max(breakeven.min(i128::from(i64::MAX)) as i64);
        }
        let (mut low, mut high) = (ctx.clamp(low).0, ctx.clamp(high).0);
        if high <= low {
            if low < ctx.cap.0 {
                high = low + 1;
            } else {
                low = high - 1;
            }
        }
        let mut steps = Vec::with_capacity(2);
        if c - must > 0 {
            steps.push(Step {
                price: bcte_units::Price(low),
                drop: Watts(c - must),
            });
        }
        if d > 0 {
            steps.push(Step {
                price: bcte_units::Price(high),
                drop: Watts(d),
            });
        }
        Curve::from_components(Watts(c), steps, vec![])
            .expect("two steps at distinct prices within the limits are a curve")
    }

    /// AG-3.5: takes `power` for `interval_ms` (positive charges, negative discharges),
    /// clamped to what it can do, and returns what it took. Charging gains
    /// `⌊P × Δ × √η / 3,600⌋` mWh; discharging costs `⌈|P| × Δ / (3,600 √η)⌉`.
    pub fn follow(&mut self, power: Watts, interval_ms: u64) -> Watts {
        let dt = i128::from(interval_ms);
        if power.0 > 0 {
            let p = power.0.min(self.max_charge(interval_ms).0);
            let gain = i128::from(p) * dt * i128::from(self.one_way_ppm) / (W_MS_PER_MWH * PPM);
            self.soc_mwh += gain as i64;
            Watts(p)
        } else if power.0 < 0 {
            let p = (-power.0).min(self.max_discharge(interval_ms, 0).0);
            let cost = ceil_div(
                i128::from(p) * dt * PPM,
                W_MS_PER_MWH * i128::from(self.one_way_ppm),
            );
            self.soc_mwh -= cost as i64;
            Watts(-p)
        } else {
            Watts(0)
        }
    }
}
