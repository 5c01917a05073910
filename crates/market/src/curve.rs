//! Price-flexibility curves: how much power a bid draws (or feeds in) at each price, and their
//! exact sum.
//!
//! A curve is given as points `(price, power)` with prices non-decreasing and powers
//! non-increasing: flat before the first point and after the last, linear between two points
//! at different prices, and a vertical step where two points share a price. Internally a curve
//! is its power below every price (`base`) minus components that each take power away as the
//! price rises: [`Step`]s (a vertical drop at one price) and [`Ramp`]s (a linear drop between
//! two prices). Sums of curves are sums of components, so aggregation is exact: the sum of two
//! curves asks, at every price, exactly what the two ask together (MR-1.4).
//!
//! **The price grid (MR-1.2).** Prices are integers in µ/MWh. At grid price `p` a curve accepts
//! every power in [`Curve::range_at`]`(p)`, the closed interval from its level just above `p`
//! (`level(p + 1)`) to its level at `p` including a step at `p` (`level(p)`). A ramp's level at
//! a grid price is its exact linear value rounded to the nearest watt, halves towards the higher
//! power (its drop so far is rounded half down, ramp by ramp). Consecutive grid intervals share
//! their end points, so together
//! they tile every power the curve can take: some grid price always balances a node exactly.
//!
//! Invariant: steps are sorted by price with distinct prices and positive drops; ramps are
//! sorted, distinct, with `start < end`, positive drops and a positive count; every level lies
//! within ±[`POWER_ABS_MAX`] and every price within ±[`PRICE_ABS_MAX`].

use crate::limits::{COMPONENTS_PER_CURVE_MAX, POINTS_PER_CURVE_MAX, POWER_ABS_MAX, PRICE_ABS_MAX};
use bcte_units::{Price, Watts};

/// One point of a curve as written by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Price in µ/MWh.
    pub price: Price,
    /// Power at that price; positive consumes, negative produces.
    pub power: Watts,
}

/// A vertical step: at `price` the curve accepts any power in a range `drop` wide, and above
/// `price` its power is `drop` lower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Step {
    /// Price of the step.
    pub price: Price,
    /// How far the power falls across the step (positive).
    pub drop: Watts,
}

/// A linear decline: from `start` to `end` the power falls by `drop`, in `count` identical
/// copies (aggregating identical devices keeps one ramp with a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ramp {
    /// Price where the decline starts.
    pub start: Price,
    /// Price where it ends (above `start`).
    pub end: Price,
    /// Power lost between `start` and `end` by one copy (positive).
    pub drop: Watts,
    /// Number of identical copies (at least 1).
    pub count: u32,
}

/// The closed range of powers a curve accepts at one grid price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerRange {
    /// Lowest acceptable power (the level just above the price).
    pub min: Watts,
    /// Highest acceptable power (the level at the price, including a step there).
    pub max: Watts,
}

impl PowerRange {
    /// Whether `power` lies in the range.
    pub const fn contains(&self, power: Watts) -> bool {
        self.min.0 <= power.0 && power.0 <= self.max.0
    }
}

/// Why a curve could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CurveError {
    /// A curve needs at least one point.
    #[error("the curve has no points")]
    Empty,
    /// More points than [`POINTS_PER_CURVE_MAX`].
    #[error("the curve has {count} points, more than the limit of {max}", max = POINTS_PER_CURVE_MAX)]
    TooManyPoints {
        /// Number of points given.
        count: usize,
    },
    /// A point's price is below the previous point's.
    #[error("point {index}: its price is below the previous point's")]
    PriceFalls {
        /// Index of the offending point (from 0).
        index: usize,
    },
    /// A point's power is above the previous point's.
    #[error("point {index}: its power is above the previous point's")]
    PowerRises {
        /// Index of the offending point (from 0).
        index: usize,
    },
    /// A point's price is beyond ±[`PRICE_ABS_MAX`].
    #[error("point {index}: price {price} is beyond the limit of ±{max}", max = PRICE_ABS_MAX)]
    PriceOutOfRange {
        /// Index of the offending point.
        index: usize,
        /// The price.
        price: Price,
    },
    /// A point's power is beyond ±[`POWER_ABS_MAX`].
    #[error("point {index}: power {power} is beyond the limit of ±{max}", max = POWER_ABS_MAX)]
    PowerOutOfRange {
        /// Index of the offending point.
        index: usize,
        /// The power.
        power: Watts,
    },
    /// An aggregated curve would reach a power beyond ±[`POWER_ABS_MAX`].
    #[error("the aggregated curve would reach a power beyond ±{max}", max = POWER_ABS_MAX)]
    SumOutOfRange,
    /// A component's price is beyond ±[`PRICE_ABS_MAX`].
    #[error("{kind} {index}: price {price} is beyond the limit of ±{max}", max = PRICE_ABS_MAX)]
    ComponentPriceOutOfRange {
        /// `step` or `ramp`.
        kind: &'static str,
        /// Its index (from 0).
        index: usize,
        /// The price.
        price: Price,
    },
    /// A component does not drop: a step or ramp with a drop of zero or less, or a ramp whose
    /// count is zero or whose end is not above its start.
    #[error("{kind} {index}: {problem}")]
    BadComponent {
        /// `step` or `ramp`.
        kind: &'static str,
        /// Its index (from 0).
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// Components are not in their canonical order (steps by price, ramps by start, end and
    /// drop, each at most once).
    #[error(
        "{kind} {index}: not after the previous one (steps sorted by price, ramps by start, end and drop, none twice)"
    )]
    ComponentOrder {
        /// `step` or `ramp`.
        kind: &'static str,
        /// Its index (from 0).
        index: usize,
    },
    /// An aggregated curve would have more than [`COMPONENTS_PER_CURVE_MAX`] components.
    #[error(
        "the aggregated curve would have {count} steps and ramps, more than the limit of {max}",
        max = COMPONENTS_PER_CURVE_MAX
    )]
    TooManyComponents {
        /// Number of components the sum would have.
        count: usize,
    },
}

/// A price-flexibility curve. See the [module documentation](self) for its meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Curve {
    base: i64,
    total_drop: i64,
    steps: Vec<Step>,
    ramps: Vec<Ramp>,
    /// No two components overlap and every ramp has count 1, so the curve is a plain point
    /// list and can be walked piece by piece.
    simple: bool,
}

/// The drop of one ramp copy at grid price `q`: its exact linear drop rounded to the nearest
/// watt, halves down (so the level rounds halves towards the higher power; MR-1.2).
///
/// Callers guarantee `0 < drop ≤ 2 · POWER_ABS_MAX` and `start < end` within the price limits,
/// so `2 · drop · (q − start)` fits an `u128` and the result fits `drop`.
#[inline]
pub(crate) fn ramp_progress(start: i64, end: i64, drop: i64, q: i64) -> i64 {
    if q <= start {
        0
    } else if q >= end {
        drop
    } else {
        let span = end.abs_diff(start);
        let x = q.abs_diff(start);
        let d = drop.unsigned_abs();
        // ⌊(2·d·x + span − 1) / (2·span)⌋ is d·x/span rounded half down. Fast path in u64
        // (typical curves); the u128 path covers the full limits.
        let v = match d.checked_mul(2 * x).and_then(|n| n.checked_add(span - 1)) {
            Some(n) => n / (2 * span),
            None => {
                let num = 2 * u128::from(d) * u128::from(x) + u128::from(span) - 1;
                (num / (2 * u128::from(span))) as u64
            }
        };
        v as i64
    }
}

/// `num / den` rounded half away from zero, for `den > 0`.
pub(crate) fn div_round_i128(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        if num >= 0 { q + 1 } else { q - 1 }
    } else {
        q
    }
}

impl Curve {
    /// Builds a curve from its points (MR-1.1).
    pub fn from_points(points: &[Point]) -> Result<Self, CurveError> {
        let first = points.first().ok_or(CurveError::Empty)?;
        if points.len() > POINTS_PER_CURVE_MAX {
            return Err(CurveError::TooManyPoints {
                count: points.len(),
            });
        }
        for (index, point) in points.iter().enumerate() {
            if point.price.0.unsigned_abs() > PRICE_ABS_MAX.0.unsigned_abs() {
                return Err(CurveError::PriceOutOfRange {
                    index,
                    price: point.price,
                });
            }
            if point.power.0.unsigned_abs() > POWER_ABS_MAX.0.unsigned_abs() {
                return Err(CurveError::PowerOutOfRange {
                    index,
                    power: point.power,
                });
            }
            if index > 0 {
                let previous = points[index - 1];
                if point.price < previous.price {
                    return Err(CurveError::PriceFalls { index });
                }
                if point.power > previous.power {
                    return Err(CurveError::PowerRises { index });
                }
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        let mut ramps = Vec::new();
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let drop = a.power.0 - b.power.0;
            if drop == 0 {
                continue;
            }
            if a.price == b.price {
                match steps.last_mut() {
                    Some(last) if last.price == a.price => last.drop.0 += drop,
                    _ => steps.push(Step {
                        price: a.price,
                        drop: Watts(drop),
                    }),
                }
            } else {
                ramps.push(Ramp {
                    start: a.price,
                    end: b.price,
                    drop: Watts(drop),
                    count: 1,
                });
            }
        }
        let last = points[points.len() - 1];
        Ok(Self {
            base: first.power.0,
            total_drop: first.power.0 - last.power.0,
            steps,
            ramps,
            simple: true,
        })
    }

    /// Builds a curve from its components (MR-1.1): `base`, the power below every price, less
    /// each step and each ramp. Steps must be sorted by price and distinct; ramps sorted by
    /// `(start, end, drop)` and distinct (identical ramps are one ramp with a count); every drop
    /// positive, every ramp's end above its start and its count at least 1; every price within
    /// ±[`PRICE_ABS_MAX`] and both ends of the curve within ±[`POWER_ABS_MAX`]. This is the form
    /// of an exact sum of curves ([`Curve::sum`]), which a point list cannot always express.
    pub fn from_components(
        base: Watts,
        steps: Vec<Step>,
        ramps: Vec<Ramp>,
    ) -> Result<Self, CurveError> {
        let count = steps.len() + ramps.len();
        if count > COMPONENTS_PER_CURVE_MAX {
            return Err(CurveError::TooManyComponents { count });
        }
        let price_ok = |p: Price| p.0.unsigned_abs() <= PRICE_ABS_MAX.0.unsigned_abs();
        let mut total_drop: i64 = 0;
        let max = POWER_ABS_MAX.0;
        let mut add = |drop: i64| -> Result<(), CurveError> {
            total_drop = total_drop
                .checked_add(drop)
                .filter(|&t| t <= 2 * max)
                .ok_or(CurveError::SumOutOfRange)?;
            Ok(())
        };
        for (index, step) in steps.iter().enumerate() {
            let kind = "step";
            if !price_ok(step.price) {
                return Err(CurveError::ComponentPriceOutOfRange {
                    kind,
                    index,
                    price: step.price,
                });
            }
            if step.drop.0 <= 0 {
                return Err(CurveError::BadComponent {
                    kind,
                    index,
                    problem: "its drop is not positive",
                });
            }
            if index > 0 && steps[index - 1].price >= step.price {
                return Err(CurveError::ComponentOrder { kind, index });
            }
            add(step.drop.0)?;
        }
        for (index, ramp) in ramps.iter().enumerate() {
            let kind = "ramp";
            for price in [ramp.start, ramp.end] {
                if !price_ok(price) {
                    return Err(CurveError::ComponentPriceOutOfRange { kind, index, price });
                }
            }
            let problem = if ramp.drop.0 <= 0 {
                Some("its drop is not positive")
            } else if ramp.end <= ramp.start {
                Some("its end price is not above its start price")
            } else if ramp.count == 0 {
                Some("its count is zero")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CurveError::BadComponent {
                    kind,
                    index,
                    problem,
                });
            }
            if index > 0 {
                let p = ramps[index - 1];
                if (p.start, p.end, p.drop) >= (ramp.start, ramp.end, ramp.drop) {
                    return Err(CurveError::ComponentOrder { kind, index });
                }
            }
            let drop = ramp
                .drop
                .0
                .checked_mul(i64::from(ramp.count))
                .ok_or(CurveError::SumOutOfRange)?;
            add(drop)?;
        }
        if base.0.abs() > max || (base.0 - total_drop).abs() > max {
            return Err(CurveError::SumOutOfRange);
        }
        let simple = is_simple(&steps, &ramps);
        Ok(Self {
            base: base.0,
            total_drop,
            steps,
            ramps,
            simple,
        })
    }

    /// A curve that asks `power` at every price (inelastic demand, or must-run generation when
    /// negative).
    pub fn flat(power: Watts) -> Result<Self, CurveError> {
        Self::from_points(&[Point {
            price: Price::ZERO,
            power,
        }])
    }

    /// The exact sum of curves (MR-1.4): at every grid price, the sum accepts exactly the sums
    /// of what the curves accept. Identical ramps merge into one ramp with a count.
    pub fn sum<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> Result<Self, CurveError> {
        let mut base = 0i64;
        let mut total_drop = 0i64;
        let mut steps = Vec::new();
        let mut ramps = Vec::new();
        for curve in curves {
            base = base
                .checked_add(curve.base)
                .ok_or(CurveError::SumOutOfRange)?;
            total_drop = total_drop
                .checked_add(curve.total_drop)
                .ok_or(CurveError::SumOutOfRange)?;
            let count = steps.len() + ramps.len() + curve.steps.len() + curve.ramps.len();
            if count > COMPONENTS_PER_CURVE_MAX {
                return Err(CurveError::TooManyComponents { count });
            }
            steps.extend_from_slice(&curve.steps);
            ramps.extend_from_slice(&curve.ramps);
        }
        let max = POWER_ABS_MAX.0;
        if base.abs() > max || (base - total_drop).abs() > max {
            return Err(CurveError::SumOutOfRange);
        }
        steps.sort_unstable();
        steps.dedup_by(|later, kept| {
            if later.price == kept.price {
                kept.drop.0 += later.drop.0;
                true
            } else {
                false
            }
        });
        ramps.sort_unstable_by_key(|r| (r.start, r.end, r.drop));
        let mut merged: Vec<Ramp> = Vec::with_capacity(ramps.len());
        for ramp in ramps {
            match merged.last_mut() {
                Some(last)
                    if (last.start, last.end, last.drop) == (ramp.start, ramp.end, ramp.drop) =>
                {
                    last.count = last
                        .count
                        .checked_add(ramp.count)
                        .ok_or(CurveError::SumOutOfRange)?;
                }
                _ => merged.push(ramp),
            }
        }
        let simple = is_simple(&steps, &merged);
        Ok(Self {
            base,
            total_drop,
            steps,
            ramps: merged,
            simple,
        })
    }

    /// This curve plus another (see [`Curve::sum`]).
    pub fn add(&self, other: &Curve) -> Result<Self, CurveError> {
        Self::sum([self, other])
    }

    /// The power asked below every price of the curve (its largest power).
    pub const fn max_power(&self) -> Watts {
        Watts(self.base)
    }

    /// The power asked above every price of the curve (its smallest power).
    pub const fn min_power(&self) -> Watts {
        Watts(self.base - self.total_drop)
    }

    /// The steps, sorted by price.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The ramps, sorted.
    pub fn ramps(&self) -> &[Ramp] {
        &self.ramps
    }

    /// The lowest and highest price of any component, or `None` for a flat curve.
    pub fn price_span(&self) -> Option<(Price, Price)> {
        let low = self
            .steps
            .first()
            .map(|s| s.price)
            .into_iter()
            .chain(self.ramps.first().map(|r| r.start));
        let high = self
            .steps
            .last()
            .map(|s| s.price)
            .into_iter()
            .chain(self.ramps.iter().map(|r| r.end));
        Some((low.min()?, high.max()?))
    }

    /// The powers the curve accepts at grid price `price` (MR-1.2).
    pub fn range_at(&self, price: Price) -> PowerRange {
        PowerRange {
            min: Watts(self.level(price.0 + 1)),
            max: Watts(self.level(price.0)),
        }
    }

    /// The curve's level at grid price `q` (see [`CurveView::level`]).
    pub(crate) fn level(&self, q: i64) -> i64 {
        self.view().level(q)
    }

    /// A borrowed view of the curve, the form the engine evaluates.
    pub(crate) fn view(&self) -> CurveView<'_> {
        CurveView {
            base: self.base,
            total_drop: self.total_drop,
            steps: &self.steps,
            ramps: &self.ramps,
            simple: self.simple,
        }
    }

    /// The curve as points, if it is one (no overlapping components), with a flat curve placed
    /// at `flat_price`. Aggregated curves whose ramps overlap have no exact point form.
    pub fn to_points(&self, flat_price: Price) -> Option<Vec<Point>> {
        if !self.simple {
            return None;
        }
        let mut points = Vec::with_capacity(2 * (self.steps.len() + self.ramps.len()) + 1);
        let push = |points: &mut Vec<Point>, price: Price, power: i64| {
            let point = Point {
                price,
                power: Watts(power),
            };
            if points.last() != Some(&point) {
                points.push(point);
            }
        };
        let mut level = self.base;
        for component in self.view().components_in_order() {
            match component {
                Component::Step(s) => {
                    push(&mut points, s.price, level);
                    level -= s.drop.0;
                    push(&mut points, s.price, level);
                }
                Component::Ramp(r) => {
                    push(&mut points, r.start, level);
                    level -= r.drop.0;
                    push(&mut points, r.end, level);
                }
            }
        }
        if points.is_empty() {
            points.push(Point {
                price: flat_price,
                power: Watts(self.base),
            });
        }
        Some(points)
    }

    /// See [`CurveView::welfare_origin`].
    pub(crate) fn welfare_origin(&self, floor: i64, cap: i64) -> i128 {
        self.view().welfare_origin(floor, cap)
    }

    /// See [`CurveView::integral_to_cap`].
    pub(crate) fn integral_to_cap(&self, y: i64, cap: i64) -> i128 {
        self.view().integral_to_cap(y, cap)
    }
}

/// A curve's parts, borrowed from a [`Curve`] or from a market's contiguous copy of all its
/// curves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CurveView<'a> {
    pub(crate) base: i64,
    pub(crate) total_drop: i64,
    pub(crate) steps: &'a [Step],
    pub(crate) ramps: &'a [Ramp],
    pub(crate) simple: bool,
}

impl<'a> CurveView<'a> {
    /// The curve's level at grid price `q`: its highest acceptable power there. Non-increasing
    /// in `q`; `level(q)` for `q` beyond every component is the flat end.
    pub(crate) fn level(&self, q: i64) -> i64 {
        let mut v = self.base;
        for step in self.steps {
            if step.price.0 >= q {
                break;
            }
            v -= step.drop.0;
        }
        for ramp in self.ramps {
            if ramp.start.0 >= q {
                break;
            }
            v -= i64::from(ramp.count) * ramp_progress(ramp.start.0, ramp.end.0, ramp.drop.0, q);
        }
        v
    }

    /// Components in price order (steps before a ramp that starts at their price). Only
    /// meaningful for simple curves, whose components do not overlap.
    fn components_in_order(&self) -> impl Iterator<Item = Component> + 'a {
        let mut steps = self.steps.iter().peekable();
        let mut ramps = self.ramps.iter().peekable();
        core::iter::from_fn(move || match (steps.peek(), ramps.peek()) {
            (Some(s), Some(r)) if s.price <= r.start => steps.next().map(|s| Component::Step(*s)),
            (_, Some(_)) => ramps.next().map(|r| Component::Ramp(*r)),
            (Some(_), None) => steps.next().map(|s| Component::Step(*s)),
            (None, None) => None,
        })
    }

    /// The grid price where the curve crosses zero power, used as the origin of its welfare
    /// (MR-4.1): the lowest `z` in `[floor, cap]` with `level(z + 1) ≤ 0 ≤ level(z)`; `cap` for
    /// a curve that consumes at every price, `floor` for one that produces at every price.
    pub(crate) fn zero_price(&self, floor: i64, cap: i64) -> i64 {
        if self.base <= 0 {
            return floor;
        }
        if self.base - self.total_drop > 0 {
            return cap;
        }
        if self.simple {
            let mut level = self.base;
            for component in self.components_in_order() {
                match component {
                    Component::Step(s) => {
                        if level - s.drop.0 <= 0 {
                            return s.price.0.clamp(floor, cap);
                        }
                        level -= s.drop.0;
                    }
                    Component::Ramp(r) => {
                        let drop = r.drop.0;
                        if level - drop <= 0 {
                            // Smallest x with drop·x/span rounded half down ≥ level, that is
                            // 2·drop·x + span − 1 ≥ 2·span·level.
                            let span = i128::from(r.end.0 - r.start.0);
                            let num = span * (2 * i128::from(level) - 1) + 1;
                            let den = 2 * i128::from(drop);
                            let x = (num + den - 1) / den;
                            return (r.start.0 + x as i64 - 1).clamp(floor, cap);
                        }
                        level -= drop;
                    }
                }
            }
            return cap;
        }
        // Smallest q in (floor, cap + 1] with level(q) ≤ 0; level(floor) > 0 ≥ level(cap + 1).
        let (mut lo, mut hi) = (floor, cap + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.level(mid) <= 0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi - 1
    }

    /// `F(y) = ∫ from y to cap of f(x) dx` for the exact (unrounded) curve `f`, in W · µ/MWh,
    /// each component's share rounded on its own (MR-4.1). Requires `y ≤ cap`.
    pub(crate) fn integral_to_cap(&self, y: i64, cap: i64) -> i128 {
        let mut acc = i128::from(self.base) * i128::from(cap - y);
        for step in self.steps {
            acc -= step_integral_to_cap(step.price.0, step.drop.0, y, cap);
        }
        for ramp in self.ramps {
            acc -= i128::from(ramp.count)
                * ramp_integral_to_cap(ramp.start.0, ramp.end.0, ramp.drop.0, y, cap);
        }
        acc
    }

    /// The constant of the curve's welfare, `F(z)` at its zero price `z` (MR-4.1): the
    /// welfare of allocation `a` at price `p` is `a · p + F(p) − F(z)`.
    pub(crate) fn welfare_origin(&self, floor: i64, cap: i64) -> i128 {
        self.integral_to_cap(self.zero_price(floor, cap), cap)
    }
}

/// `∫ from y to cap` of what a step at `price` of `drop` takes away (`drop` above `price`).
#[inline]
pub(crate) fn step_integral_to_cap(price: i64, drop: i64, y: i64, cap: i64) -> i128 {
    let from = y.max(price);
    if from >= cap {
        0
    } else {
        i128::from(drop) * i128::from(cap - from)
    }
}

/// `∫ from y to cap` of what one copy of a ramp takes away, rounded half away from zero to
/// 1 W · µ/MWh: `drop · (A(cap) − A(y))` where `A` is the antiderivative of
/// `clamp((x − start) / (end − start), 0, 1)`.
#[inline]
pub(crate) fn ramp_integral_to_cap(start: i64, end: i64, drop: i64, y: i64, cap: i64) -> i128 {
    if cap <= start {
        return 0;
    }
    let span = i128::from(end - start);
    // 2 · span · A(x), an integer.
    let twice = |x: i64| -> i128 {
        if x <= start {
            0
        } else if x < end {
            let d = i128::from(x - start);
            d * d
        } else {
            span * span + 2 * span * i128::from(x - end)
        }
    };
    div_round_i128(i128::from(drop) * (twice(cap) - twice(y)), 2 * span)
}

#[derive(Clone, Copy)]
enum Component {
    Step(Step),
    Ramp(Ramp),
}

fn is_simple(steps: &[Step], ramps: &[Ramp]) -> bool {
    if ramps.iter().any(|r| r.count != 1) {
        return false;
    }
    if ramps.windows(2).any(|w| w[0].end > w[1].start) {
        return false;
    }
    // No step strictly inside a ramp.
    steps.iter().all(|s| {
        let i = ramps.partition_point(|r| r.end <= s.price);
        ramps.get(i).is_none_or(|r| r.start >= s.price)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(points: &[(i64, i64)]) -> Vec<Point> {
        points
            .iter()
            .map(|&(p, w)| Point {
                price: Price(p),
                power: Watts(w),
            })
            .collect()
    }

    fn curve(points: &[(i64, i64)]) -> Curve {
        Curve::from_points(&pts(points)).unwrap()
    }

    #[test]
    fn a_step_accepts_its_whole_height_at_its_price() {
        let c = curve(&[(100, 5_000), (100, 0)]);
        assert_eq!(
            c.range_at(Price(99)),
            PowerRange {
                min: Watts(5_000),
                max: Watts(5_000)
            }
        );
        assert_eq!(
            c.range_at(Price(100)),
            PowerRange {
                min: Watts(0),
                max: Watts(5_000)
            }
        );
        assert_eq!(
            c.range_at(Price(101)),
            PowerRange {
                min: Watts(0),
                max: Watts(0)
            }
        );
    }

    #[test]
    fn a_ramp_rounds_to_the_nearest_watt_and_tiles_the_power_axis() {
        // 6.5 kW at 0 down to 2 kW at 120 currency/MWh, as in the example.
        let c = curve(&[(0, 6_500), (120_000_000, 2_000), (3_000_000_000, 2_000)]);
        assert_eq!(c.range_at(Price(80_000_000)).max, Watts(3_500));
        assert_eq!(c.range_at(Price(80_000_000)).min, Watts(3_500));
        let mut previous = c.range_at(Price(-1));
        for p in 0..130 {
            let r = c.range_at(Price(p * 1_000_000));
            assert!(r.min <= r.max && r.max <= previous.max);
            previous = r;
        }
        // Neighbouring grid intervals share an end point.
        for p in [0, 1, 26_666, 26_667, 119_999_999] {
            assert_eq!(c.range_at(Price(p)).min, c.range_at(Price(p + 1)).max);
        }
    }

    #[test]
    fn points_must_have_non_decreasing_prices_and_non_increasing_powers() {
        assert_eq!(Curve::from_points(&[]), Err(CurveError::Empty));
        assert_eq!(
            Curve::from_points(&pts(&[(5, 1), (4, 0)])),
            Err(CurveError::PriceFalls { index: 1 })
        );
        assert_eq!(
            Curve::from_points(&pts(&[(5, 1), (6, 2)])),
            Err(CurveError::PowerRises { index: 1 })
        );
        assert!(matches!(
            Curve::from_points(&pts(&[(0, POWER_ABS_MAX.0 + 1)])),
            Err(CurveError::PowerOutOfRange { index: 0, .. })
        ));
    }

    #[test]
    fn sums_are_exact_at_every_grid_price() {
        let a = curve(&[(0, 7_000), (3, 0)]);
        let b = curve(&[(1, 1_001), (1, 0), (2, -5)]);
        let c = curve(&[(0, 7_000), (3, 0)]);
        let s = Curve::sum([&a, &b, &c]).unwrap();
        assert_eq!(s.ramps().len(), 2, "identical ramps merge with a count");
        for q in -3..8 {
            assert_eq!(s.level(q), a.level(q) + b.level(q) + c.level(q), "at {q}");
        }
        assert!(s.to_points(Price::ZERO).is_none());
    }

    #[test]
    fn components_build_the_same_curve_as_its_sum_and_refuse_bad_order() {
        let a = curve(&[(0, 7_000), (3, 0)]);
        let b = curve(&[(1, 1_001), (1, 0), (2, -5)]);
        let sum = Curve::sum([&a, &b, &a]).unwrap();
        let rebuilt =
            Curve::from_components(sum.max_power(), sum.steps().to_vec(), sum.ramps().to_vec())
                .unwrap();
        assert_eq!(rebuilt, sum);
        let step = |price, drop| Step {
            price: Price(price),
            drop: Watts(drop),
        };
        assert!(matches!(
            Curve::from_components(Watts(10), vec![step(5, 1), step(5, 1)], vec![]),
            Err(CurveError::ComponentOrder {
                kind: "step",
                index: 1
            })
        ));
        assert!(matches!(
            Curve::from_components(Watts(10), vec![step(5, 0)], vec![]),
            Err(CurveError::BadComponent { kind: "step", .. })
        ));
        let ramp = Ramp {
            start: Price(4),
            end: Price(4),
            drop: Watts(1),
            count: 1,
        };
        assert!(matches!(
            Curve::from_components(Watts(10), vec![], vec![ramp]),
            Err(CurveError::BadComponent { kind: "ramp", .. })
        ));
        assert_eq!(
            Curve::from_components(
                POWER_ABS_MAX,
                vec![step(0, POWER_ABS_MAX.0 * 2 + 1)],
                vec![]
            ),
            Err(CurveError::SumOutOfRange)
        );
    }

    #[test]
    fn simple_curves_round_trip_through_points() {
        let original = pts(&[(-10, 50), (-10, 20), (0, 20), (40, -30), (40, -60)]);
        let c = Curve::from_points(&original).unwrap();
        assert_eq!(c.to_points(Price::ZERO).unwrap(), original);
        let flat = Curve::flat(Watts(-3)).unwrap();
        assert_eq!(flat.to_points(Price(7)).unwrap(), pts(&[(7, -3)]));
    }

    #[test]
    fn zero_price_matches_a_scan_of_the_grid() {
        let curves = [
            curve(&[(0, 10), (100, -10)]),
            curve(&[(0, 1), (100, -1)]),
            curve(&[(0, 10), (0, -10)]),
            curve(&[(20, 5), (20, 0), (80, 0), (80, -5)]),
            curve(&[(0, 5), (10, 0), (10, -3)]),
            curve(&[(0, 3)]),
            curve(&[(0, -3)]),
        ];
        let sum = Curve::sum(&curves).unwrap();
        for c in curves.iter().chain([&sum]) {
            let expected = (-20..200)
                .find(|&z| c.level(z + 1) <= 0 && 0 <= c.level(z))
                .unwrap_or(if c.level(-20) < 0 { -20 } else { 199 });
            assert_eq!(c.view().zero_price(-20, 199), expected, "{c:?}");
        }
    }

    #[test]
    fn integrals_to_the_cap_are_trapezoids() {
        let c = curve(&[(0, 10), (10, 0)]);
        assert_eq!(c.integral_to_cap(0, 10), 50);
        assert_eq!(c.integral_to_cap(-5, 10), 100);
        // 150 from the base, less the ramp's 137.5 rounded half away from zero.
        assert_eq!(c.integral_to_cap(5, 20), 12);
        let s = curve(&[(4, 3), (4, 1)]);
        assert_eq!(s.integral_to_cap(0, 10), 3 * 4 + 6);
        assert_eq!(s.integral_to_cap(6, 10), 4);
    }
}
