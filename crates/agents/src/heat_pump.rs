//! A heat pump heating a house (AG-7): a first-order thermal model, a comfort band around the
//! setpoint, and a bid in the style of the PNNL/TESP double-auction HVAC bidder: the power that
//! keeps the band at any price, the power that would bring the house to the top of the band at
//! a price that rises with how far the house is below its setpoint, scaled by the expected
//! price's spread.

use crate::BidContext;
use bcte_market::{Curve, Step};
use bcte_units::{Price, Watts};

/// How steeply the price the heat pump will pay rises across the band: at the bottom of the
/// band it bids the mean plus this many spreads (TESP's `ramp`).
pub const HVAC_RAMP: i64 = 2;

/// `3.6 × 10⁹`: µW·ms per mK·(Wh/K).
const D_UNIT: i128 = 3_600_000_000;

/// Why a heat pump's parameters are not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a heat pump needs positive UA, capacitance, COP, band and power")]
pub struct HeatPumpError;

/// A heat pump, its house and the indoor temperature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeatPump {
    /// The house's heat loss coefficient (W/K).
    ua_w_per_k: i64,
    /// The house's thermal capacitance (Wh/K).
    capacitance_wh_per_k: i64,
    /// Coefficient of performance (ppm: 3,000,000 is 3 W of heat per W).
    cop_ppm: i64,
    /// Largest electric power (W).
    power: Watts,
    /// Setpoint (m°C).
    setpoint_mk: i64,
    /// Half the comfort band (m°C): the band is `setpoint ± band`.
    band_mk: i64,
    /// Indoor temperature (m°C).
    indoor_mk: i64,
}

impl HeatPump {
    /// The setpoint (m°C).
    pub const fn setpoint_mk(&self) -> i64 {
        self.setpoint_mk
    }

    /// The largest electric power.
    pub const fn max_power(&self) -> Watts {
        self.power
    }
}

impl HeatPump {
    /// A heat pump of `power` W at `cop_ppm` in a house of `ua_w_per_k` and
    /// `capacitance_wh_per_k`, holding `setpoint_mk ± band_mk`, the house at `indoor_mk`.
    pub fn new(
        ua_w_per_k: i64,
        capacitance_wh_per_k: i64,
        cop_ppm: i64,
        power: Watts,
        setpoint_mk: i64,
        band_mk: i64,
        indoor_mk: i64,
    ) -> Result<Self, HeatPumpError> {
        if ua_w_per_k <= 0
            || capacitance_wh_per_k <= 0
            || cop_ppm <= 0
            || power.0 <= 0
            || band_mk <= 0
        {
            return Err(HeatPumpError);
        }
        Ok(Self {
            ua_w_per_k,
            capacitance_wh_per_k,
            cop_ppm,
            power,
            setpoint_mk,
            band_mk,
            indoor_mk,
        })
    }

    /// The indoor temperature (m°C).
    pub const fn indoor_mk(&self) -> i64 {
        self.indoor_mk
    }

    /// The comfort band (m°C), lowest and highest.
    pub const fn band(&self) -> (i64, i64) {
        (
            self.setpoint_mk - self.band_mk,
            self.setpoint_mk + self.band_mk,
        )
    }

    /// `UA × (outdoor − indoor)` in µW: the heat the house gains (negative: loses).
    fn loss_uw(&self, outdoor_mk: i64) -> i128 {
        i128::from(self.ua_w_per_k) * i128::from(outdoor_mk - self.indoor_mk) * 1_000
    }

    fn d(&self) -> i128 {
        D_UNIT * i128::from(self.capacitance_wh_per_k)
    }

    /// AG-7.1: the indoor temperature after `interval_ms` at `power` W with `outdoor_mk`
    /// outside: `T + ⌊(UA (T_out − T) + COP × P) × Δ / (3.6·10⁹ × C)⌋` (heat in µW, Δ in ms,
    /// C in Wh/K, T in m°C).
    pub fn next_mk(&self, power: Watts, outdoor_mk: i64, interval_ms: u64) -> i64 {
        let q = self.loss_uw(outdoor_mk) + i128::from(self.cop_ppm) * i128::from(power.0);
        self.indoor_mk + (q * i128::from(interval_ms)).div_euclid(self.d()) as i64
    }

    /// AG-7.2: the least power that keeps the house at or above the bottom of the band by the
    /// end of the interval, before clamping to `[0, power]`: above the heat pump's power, the
    /// band cannot be kept.
    pub fn must_power(&self, outdoor_mk: i64, interval_ms: u64) -> i64 {
        self.power_to_reach(self.band().0, outdoor_mk, interval_ms)
    }

    /// The least power that ends the interval at or above `target_mk`, before clamping (a
    /// thermostat holding its setpoint runs at this, AG-10.1).
    pub fn power_to_reach(&self, target_mk: i64, outdoor_mk: i64, interval_ms: u64) -> i64 {
        let need = i128::from(target_mk - self.indoor_mk);
        let dt = i128::from(interval_ms);
        // ⌊q Δ / D⌋ ≥ need ⇔ q ≥ ⌈need D / Δ⌉.
        let q = ceil_div(need * self.d(), dt);
        saturate(ceil_div(
            q - self.loss_uw(outdoor_mk),
            i128::from(self.cop_ppm),
        ))
    }

    /// AG-7.2: the most power that keeps the house at or below the top of the band by the end
    /// of the interval, before clamping.
    fn useful_power(&self, outdoor_mk: i64, interval_ms: u64) -> i64 {
        let room = i128::from(self.band().1 - self.indoor_mk);
        let dt = i128::from(interval_ms);
        // ⌊q Δ / D⌋ ≤ room ⇔ q Δ ≤ (room + 1) D − 1.
        let q = ((room + 1) * self.d() - 1).div_euclid(dt);
        saturate((q - self.loss_uw(outdoor_mk)).div_euclid(i128::from(self.cop_ppm)))
    }

    /// AG-7.3: the bid: the power that keeps the band (at any price), and the rest of what
    /// stays within the band at `mean + ramp × spread × (setpoint − T) / band`.
    pub(crate) fn bid(&self, ctx: &BidContext) -> Curve {
        let (out, dt) = (ctx.outdoor_mk, ctx.interval_ms);
        let top = self.power.0;
        let must = self.must_power(out, dt).clamp(0, top);
        let useful = self.useful_power(out, dt).clamp(must, top);
        let price = self.willing_price(ctx);
        let steps = if useful > must {
            vec![Step {
                price,
                drop: Watts(useful - must),
            }]
        } else {
            vec![]
        };
        Curve::from_components(Watts(useful), steps, vec![])
            .expect("one step within the limits is a curve")
    }

    /// AG-7.4: runs at `power` (clamped to `[0, power]`) for the interval; returns it.
    pub fn follow(&mut self, power: Watts, outdoor_mk: i64, interval_ms: u64) -> Watts {
        let p = Watts(power.0.clamp(0, self.power.0));
        self.indoor_mk = self.next_mk(p, outdoor_mk, interval_ms);
        p
    }

    /// AG-7.3: the price it bids for its flexible part, within the interval's floor and cap.
    pub fn willing_price(&self, ctx: &BidContext) -> Price {
        let offset = i128::from(HVAC_RAMP)
            * i128::from(ctx.prices.spread.0)
            * i128::from(self.setpoint_mk - self.indoor_mk)
            / i128::from(self.band_mk);
        ctx.clamp(saturate(i128::from(ctx.prices.mean.0) + offset))
    }
}

/// `v` within the range of an `i64`.
fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// `⌈a / b⌉` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    -((-a).div_euclid(b))
}
