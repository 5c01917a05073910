//! An EV and its charger (AG-8): when the car arrives, when it leaves and how much energy it
//! needs, drawn from a documented distribution with the caller's random number generator; and
//! the owner's choice of the charging provider's slow or fast option. The charging itself is
//! the EV charging contract's (docs/contract-rules.md, CT-3): once entered, the contract bids
//! for the charger with a price that rises as the deadline nears, and the charger draws what it
//! is served.

use crate::BidContext;
use bcte_ledger::{ev::bid_curve, settle::scheduled_wh};
use bcte_market::Curve;
use bcte_types::contract::{EvChoice, EvOption};
use bcte_units::{MS_PER_HOUR, Watts};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};

/// Minutes of a day.
const DAY_MIN: f64 = 1_440.0;

/// The distribution an EV's daily charging need is drawn from (AG-8.1). Times are minutes
/// after midnight of the simulated day (a departure the next morning is after 1,440).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvDistribution {
    /// Arrival: normal, mean and standard deviation (minutes).
    pub arrival: (f64, f64),
    /// Arrival is clamped to this window (minutes).
    pub arrival_window: (f64, f64),
    /// Departure: normal, mean and standard deviation (minutes).
    pub departure: (f64, f64),
    /// The latest departure (minutes); the earliest is an hour after arrival.
    pub departure_latest: f64,
    /// Energy needed: uniform between these (Wh).
    pub energy_wh: (i64, i64),
}

impl EvDistribution {
    /// AG-8.1: home charging after work. Arrival N(18:00, 1.5 h) within 12:00 to 23:45,
    /// departure N(07:30 next day, 1 h) at least an hour after arrival and by 12:00 next day,
    /// and 4 to 20 kWh (20 to 100 km at 0.2 kWh/km).
    pub const DEFAULT: Self = Self {
        arrival: (18.0 * 60.0, 90.0),
        arrival_window: (12.0 * 60.0, 23.75 * 60.0),
        departure: (DAY_MIN + 7.5 * 60.0, 60.0),
        departure_latest: DAY_MIN + 12.0 * 60.0,
        energy_wh: (4_000, 20_000),
    };
}

/// One EV's need for a day, in intervals of the day (interval 0 starts at midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvNeed {
    /// The first interval it is plugged in for all of.
    pub from: u64,
    /// The last interval it is plugged in for all of (the contract's deadline).
    pub deadline: u64,
    /// The energy it needs (Wh).
    pub energy_wh: i64,
}

/// AG-8.1: draws a need from `dist` with `rng`, for intervals of `interval_ms`. The car is
/// charged in whole intervals: from the first that starts at or after its arrival to the last
/// that ends at or before its departure.
pub fn sample_need(rng: &mut impl Rng, dist: &EvDistribution, interval_ms: u64) -> EvNeed {
    let mut normal = |(mean, sd): (f64, f64)| Normal::new(mean, sd).map_or(mean, |n| n.sample(rng));
    let arrival = normal(dist.arrival).clamp(dist.arrival_window.0, dist.arrival_window.1);
    let departure =
        normal(dist.departure).clamp(arrival + 60.0, dist.departure_latest.max(arrival + 60.0));
    let (lo, hi) = dist.energy_wh;
    let energy_wh = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let minutes = interval_ms as f64 / 60_000.0;
    let from = (arrival / minutes).ceil() as u64;
    let end = (departure / minutes).floor() as u64;
    EvNeed {
        from,
        deadline: end.saturating_sub(1).max(from),
        energy_wh,
    }
}

/// AG-8.2: the owner's choice between the provider's options for `need`, and the energy to
/// contract: the slow option if it delivers the energy by the deadline, else the fast one;
/// if neither does, the fast option with the energy it can deliver.
pub fn choose(need: &EvNeed, slow: EvOption, fast: EvOption, interval_ms: u64) -> (EvChoice, i64) {
    let intervals = i128::from(need.deadline - need.from + 1);
    let deliverable = |o: EvOption| {
        (i128::from(o.power.0) * i128::from(interval_ms) * intervals / i128::from(MS_PER_HOUR))
            as i64
    };
    if deliverable(slow) >= need.energy_wh {
        (EvChoice::Slow, need.energy_wh)
    } else {
        (EvChoice::Fast, need.energy_wh.min(deliverable(fast)))
    }
}

/// AG-8.4: an EV's need within a run of `intervals` intervals: a deadline past the run's last
/// interval moves to it (the run is the horizon; the energy is then what the option chosen by
/// AG-8.2 can deliver by then). `None` when the car arrives after the run.
pub fn within(need: EvNeed, intervals: u64) -> Option<EvNeed> {
    let last = intervals.checked_sub(1)?;
    (need.from <= last).then(|| EvNeed {
        deadline: need.deadline.min(last),
        ..need
    })
}

/// An EV charger with its car's need for the run and the option the owner chose (AG-8.3):
/// under the market the EV charging contract bids for it (CT-3.4, the same function the
/// chain runs); under the legacy tariff it charges at its full power from arrival (AG-10.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvCharger {
    need: EvNeed,
    choice: EvChoice,
    slow: EvOption,
    fast: EvOption,
    delivered_wh: i64,
}

impl EvCharger {
    /// A charger for `need` (whose energy is the contracted one), with the provider's `slow`
    /// and `fast` options and the owner's `choice`.
    pub fn new(need: EvNeed, choice: EvChoice, slow: EvOption, fast: EvOption) -> Self {
        Self {
            need,
            choice,
            slow,
            fast,
            delivered_wh: 0,
        }
    }

    /// The need (the contracted energy, its first interval and its deadline).
    pub fn need(&self) -> EvNeed {
        self.need
    }

    /// The option chosen.
    pub fn option(&self) -> EvOption {
        match self.choice {
            EvChoice::Slow => self.slow,
            EvChoice::Fast => self.fast,
        }
    }

    /// The owner's choice.
    pub fn choice(&self) -> EvChoice {
        self.choice
    }

    /// The provider's options, slow and fast.
    pub fn options(&self) -> (EvOption, EvOption) {
        (self.slow, self.fast)
    }

    /// The energy delivered so far (Wh, each interval's as settlement counts it, ST-2.2).
    pub fn delivered_wh(&self) -> i64 {
        self.delivered_wh
    }

    /// CT-3.4's `R`: the energy still needed (Wh).
    pub fn remaining_wh(&self) -> i64 {
        self.need.energy_wh - self.delivered_wh
    }

    /// Whether the car is plugged in during interval `k`.
    pub fn plugged(&self, k: u64) -> bool {
        self.need.from <= k && k <= self.need.deadline
    }

    /// AG-8.3: the contract's bid for interval `ctx.interval` (CT-3.4): nothing when the car is
    /// away or has its energy.
    pub fn bid(&self, ctx: &BidContext) -> Curve {
        let k = ctx.interval;
        let curve = if self.plugged(k) {
            bid_curve(
                self.remaining_wh(),
                self.need.deadline - k + 1,
                self.option(),
                ctx.interval_ms,
                ctx.floor,
                ctx.cap,
            )
        } else {
            None
        };
        curve.unwrap_or_else(|| Curve::flat(Watts(0)).expect("a flat zero curve"))
    }

    /// AG-10.1: what it draws under the legacy tariff in interval `k`: its full power (the
    /// fast option's) from arrival, the last interval only what completes the energy.
    pub fn legacy_power(&self, k: u64, interval_ms: u64) -> Watts {
        let r = i128::from(self.remaining_wh());
        if !self.plugged(k) || r <= 0 || interval_ms == 0 {
            return Watts(0);
        }
        let dt = i128::from(interval_ms);
        let finish = (r * i128::from(MS_PER_HOUR) + dt - 1) / dt;
        Watts(finish.min(i128::from(self.fast.power.0)) as i64)
    }

    /// The charger draws `power` over interval `k` of `interval_ms`: what it can take (nothing
    /// while the car is away, never more than the fast option's power, never negative), which
    /// it returns; the energy delivered grows by it as settlement counts it.
    pub fn follow(&mut self, power: Watts, k: u64, interval_ms: u64) -> Watts {
        let p = if self.plugged(k) {
            power.0.clamp(0, self.fast.power.0)
        } else {
            0
        };
        self.delivered_wh += scheduled_wh(p, interval_ms);
        Watts(p)
    }
}
