//! Device agents (rules AG-n of `docs/agents.md`, cited at the branches): base load, PV,
//! batteries, heat pumps and EV chargers. Each device turns its
//! physics, its owner's preferences and the expected prices into a price-flexibility curve for
//! the next interval ([`Device::bid`]); a site sums its devices' curves exactly with the market
//! engine's aggregation ([`Site::bid`]); after clearing, the site's served power is split among
//! its devices by a documented rule consistent with the market's tie rules ([`split`]) and each
//! device follows its share ([`Site::follow`]).
//!
//! Pure: time (the interval's length), the grid mode and the expected prices are arguments;
//! nothing here reads a clock, a socket or a file. Power is integer W, energy integer mWh,
//! prices µ/MWh, efficiencies parts per million.

mod battery;
pub mod day;
mod ev;
mod heat_pump;
pub mod kpi;
pub mod legacy;
mod prices;

pub use battery::{ALERT_RESERVE_PPM, Battery, BatteryError};
pub use ev::{EvCharger, EvDistribution, EvNeed, choose, sample_need, within};
pub use heat_pump::{HVAC_RAMP, HeatPump, HeatPumpError};
pub use prices::{HISTORY_DEFAULT, PriceStats};

use bcte_market::{Curve, Step};
use bcte_units::{Price, Watts};

/// What a device knows when it bids for an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BidContext {
    /// The interval (of the run: interval 0 starts at midnight of the day).
    pub interval: u64,
    /// The interval's length (ms).
    pub interval_ms: u64,
    /// The expected price at the site's node (AG-4).
    pub prices: PriceStats,
    /// The interval's price floor and cap: every price bid lies within them.
    pub floor: Price,
    /// See `floor`.
    pub cap: Price,
    /// Whether the feeder is in alert mode for the interval (batteries keep their islanding
    /// reserve, AG-3.4).
    pub alert: bool,
    /// The outdoor temperature over the interval (m°C), for heat pumps (AG-7).
    pub outdoor_mk: i64,
    /// When the feeder is islanded, the intervals of the island still to come by the DSO's
    /// mode schedule, this one included (batteries ration their charge over them, AG-3.6);
    /// 0 when it is not islanded.
    pub island_left: u64,
}

impl BidContext {
    /// `p` clamped to the floor and cap.
    pub fn clamp(&self, p: i64) -> Price {
        Price(p.clamp(self.floor.0, self.cap.0))
    }
}

/// Inelastic demand: the site's base load (AG-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseLoad {
    /// What it draws this interval (W, ≥ 0).
    pub power: Watts,
}

/// A PV system (AG-2): its available output, curtailed when the price falls below its owner's
/// threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pv {
    /// What the sun gives this interval (W, ≥ 0).
    pub available: Watts,
    /// Below this price the owner would rather curtail than feed in (default 0: only negative
    /// prices curtail).
    pub threshold: Price,
}

/// One of a site's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// Base load.
    Base(BaseLoad),
    /// PV.
    Pv(Pv),
    /// A battery.
    Battery(Battery),
    /// A heat pump and its house.
    HeatPump(HeatPump),
    /// An EV charger and its car's need (AG-8): a site of its own, a charge point.
    Ev(EvCharger),
}

impl Device {
    /// The device's curve for the next interval.
    pub fn bid(&self, ctx: &BidContext) -> Curve {
        let curve = match self {
            // AG-1: the same power at every price.
            Self::Base(b) => Curve::flat(Watts(b.power.0.max(0))),
            // AG-2: nothing below the threshold, the whole output at and above it.
            Self::Pv(pv) => {
                let g = pv.available.0.max(0);
                if g == 0 {
                    Curve::flat(Watts(0))
                } else {
                    let step = Step {
                        price: ctx.clamp(pv.threshold.0),
                        drop: Watts(g),
                    };
                    Curve::from_components(Watts(0), vec![step], vec![])
                }
            }
            Self::Battery(b) => return b.bid(ctx),
            Self::HeatPump(h) => return h.bid(ctx),
            Self::Ev(e) => return e.bid(ctx),
        };
        curve.expect("a flat curve or one step within the limits is a curve")
    }

    /// The device takes `power` (W) over the interval of `ctx`: a battery's state of charge and
    /// a house's temperature move; the others only follow.
    pub fn follow(&mut self, power: Watts, ctx: &BidContext) {
        match self {
            Self::Battery(b) => {
                b.follow(power, ctx.interval_ms);
            }
            Self::HeatPump(h) => {
                h.follow(power, ctx.outdoor_mk, ctx.interval_ms);
            }
            Self::Ev(e) => {
                e.follow(power, ctx.interval, ctx.interval_ms);
            }
            Self::Base(_) | Self::Pv(_) => {}
        }
    }
}

/// A site: its devices, in the order the shedding rule reads backwards (AG-6.3): base load
/// first, the most flexible last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// Its devices.
    pub devices: Vec<Device>,
}

/// How a site's served power was split among its devices (AG-6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Each device's power, in the site's device order (W).
    pub powers: Vec<Watts>,
    /// What no device could take (W): zero unless the served power lies beyond what the
    /// devices can do at all.
    pub unfollowed: Watts,
}

impl Site {
    /// The devices' curves and their exact sum (AG-5): the site's bid.
    pub fn bid(&self, ctx: &BidContext) -> (Vec<Curve>, Curve) {
        let curves: Vec<Curve> = self.devices.iter().map(|d| d.bid(ctx)).collect();
        let sum = if curves.is_empty() {
            Curve::flat(Watts(0))
        } else {
            Curve::sum(&curves)
        }
        .expect("the sum of a site's few device curves stays within the limits");
        (curves, sum)
    }

    /// Splits the served power `served` at the node price `price` among the devices whose
    /// curves were `curves` (AG-6), and has each follow its share over the interval of `ctx`.
    pub fn follow(
        &mut self,
        curves: &[Curve],
        price: Price,
        served: Watts,
        ctx: &BidContext,
    ) -> Dispatch {
        let d = split(curves, price, served);
        for (device, &p) in self.devices.iter_mut().zip(&d.powers) {
            device.follow(p, ctx);
        }
        d
    }
}

/// AG-6: splits `served` among curves cleared at `price`.
///
/// Each curve accepts the range `[min, max]` at the price (MR-1.2). When the served power lies
/// within the sum of the ranges, each device gets its `min` plus a share of the rest pro rata to
/// its range's width (largest remainders, ties to the earlier device): a device off its step
/// gets exactly what its curve says, devices on a step share it. Served power above every
/// range (generation the feeder could not absorb, MR-2.3) raises generating devices towards 0
/// in device order; below every range (load shed, MR-2.4) lowers consuming devices towards 0
/// from the last device back.
pub fn split(curves: &[Curve], price: Price, served: Watts) -> Dispatch {
    let ranges: Vec<(i64, i64)> = curves
        .iter()
        .map(|c| {
            let r = c.range_at(price);
            (r.min.0, r.max.0)
        })
        .collect();
    let lo: i64 = ranges.iter().map(|r| r.0).sum();
    let hi: i64 = ranges.iter().map(|r| r.1).sum();
    let a = served.0;
    let mut x: Vec<i64>;
    if a < lo {
        // AG-6.3: shed consumption, the last device first.
        x = ranges.iter().map(|r| r.0).collect();
        let mut deficit = lo - a;
        for v in x.iter_mut().rev() {
            let cut = deficit.min((*v).max(0));
            *v -= cut;
            deficit -= cut;
        }
    } else if a > hi {
        // AG-6.2: curtail generation, the first device first.
        x = ranges.iter().map(|r| r.1).collect();
        let mut excess = a - hi;
        for v in x.iter_mut() {
            let lift = excess.min((-*v).max(0));
            *v += lift;
            excess -= lift;
        }
    } else {
        // AG-6.1: every device its min, the rest pro rata to the widths.
        let rest = i128::from(a - lo);
        let width: i128 = ranges.iter().map(|r| i128::from(r.1 - r.0)).sum();
        x = ranges.iter().map(|r| r.0).collect();
        if rest > 0 {
            let mut given = 0i128;
            let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(ranges.len());
            for (i, r) in ranges.iter().enumerate() {
                let w = i128::from(r.1 - r.0);
                let share = rest * w / width;
                x[i] += share as i64;
                given += share;
                remainders.push((rest * w % width, i));
            }
            remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i) in remainders.iter().take((rest - given) as usize) {
                x[i] += 1;
            }
        }
    }
    let total: i64 = x.iter().sum();
    Dispatch {
        powers: x.into_iter().map(Watts).collect(),
        unfollowed: Watts(a - total),
    }
}
