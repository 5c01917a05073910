//! Fixed-point quantities of bcte: power, energy, price and money as integer newtypes.
//!
//! Every quantity is an integer count of one named base unit, so arithmetic is exact and the
//! same on every machine. Floats exist only at the edges (a user's decimal file, a report) and
//! are converted there, at a documented resolution, by the code that reads or writes them.
//!
//! | type        | base unit                          | sign                                   |
//! |-------------|------------------------------------|----------------------------------------|
//! | [`Watts`]     | 1 W                                | `> 0` consumes (draws), `< 0` produces |
//! | [`WattHours`] | 1 Wh                               | as for power                           |
//! | [`Price`]     | 10⁻⁶ currency units per MWh ("µ/MWh") | any                                 |
//! | [`Amount`]    | 1 token base unit = 10⁻⁶ currency unit | never negative                     |
//!
//! So 1 currency/MWh is `Price(1_000_000)`, 0.001 currency/MWh is `Price(1_000)`, and one token
//! (one currency unit) is `Amount(1_000_000)`. The cost of `e` Wh at `p` µ/MWh is
//! `e · p / 10⁶` base units ([`Price::cost_of`]).
//!
//! Invariant: no operation here wraps. Sums use `checked_*` and return `None` on overflow; the
//! caller decides what an overflow means (a rejected transaction, an invalid input file).

//! The crate has no dependency but serde; its canonical binary encoding (fixed-width
//! big-endian integers, through commonware-codec) is behind the `codec` feature, which the
//! chain's types enable and the market engine does not.

#[cfg(feature = "codec")]
use bytes::BufMut;
#[cfg(feature = "codec")]
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::fmt;
use serde::{Deserialize, Serialize};

/// Micro-units per unit, the scale of [`Price`] and [`Amount`].
pub const MICRO: i64 = 1_000_000;

/// Milliseconds per hour, used to turn power over a duration into energy.
pub const MS_PER_HOUR: i64 = 3_600_000;

/// Divides `num` by a positive `den`, rounding half away from zero.
///
/// This is the one rounding rule of every unit conversion in this module, and of every charge
/// of the settlement (docs/settlement-rules.md).
pub const fn div_round_half_away(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        if num >= 0 { q + 1 } else { q - 1 }
    } else {
        q
    }
}

macro_rules! signed_quantity {
    ($(#[$meta:meta])* $name:ident, $unit:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// The largest representable value.
            pub const MAX: Self = Self(i64::MAX);
            /// The smallest representable value.
            pub const MIN: Self = Self(i64::MIN);

            /// The raw integer count of base units.
            pub const fn get(self) -> i64 {
                self.0
            }

            /// `self + rhs`, or `None` on overflow.
            pub const fn checked_add(self, rhs: Self) -> Option<Self> {
                match self.0.checked_add(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - rhs`, or `None` on overflow.
            pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
                match self.0.checked_sub(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `-self`, or `None` for [`Self::MIN`].
            pub const fn checked_neg(self) -> Option<Self> {
                match self.0.checked_neg() {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The absolute value, or `None` for [`Self::MIN`].
            pub const fn checked_abs(self) -> Option<Self> {
                match self.0.checked_abs() {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Whether the value is zero.
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// Sums an iterator, or `None` on overflow.
            pub fn checked_sum(items: impl IntoIterator<Item = Self>) -> Option<Self> {
                items.into_iter().try_fold(Self::ZERO, Self::checked_add)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!("{} ", $unit), self.0)
            }
        }

        #[cfg(feature = "codec")]
        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf);
            }
        }

        #[cfg(feature = "codec")]
        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                Ok(Self(i64::read(buf)?))
            }
        }

        #[cfg(feature = "codec")]
        impl FixedSize for $name {
            const SIZE: usize = i64::SIZE;
        }
    };
}

signed_quantity!(
    /// Power in watts. Positive draws power from the grid (consumption, import), negative feeds
    /// power into it (production, export).
    Watts,
    "W"
);

signed_quantity!(
    /// Energy in watt-hours, with the sign convention of [`Watts`].
    WattHours,
    "Wh"
);

signed_quantity!(
    /// Price in micro-units of currency per MWh (`1 currency/MWh = Price(1_000_000)`).
    ///
    /// Prices may be negative (a floor below zero pays consumers to absorb surplus).
    Price,
    "µ/MWh"
);

impl Watts {
    /// Energy delivered by this constant power over `duration_ms` milliseconds, rounded half
    /// away from zero to 1 Wh. `None` if the result does not fit.
    pub fn energy_over(self, duration_ms: u64) -> Option<WattHours> {
        let wh = div_round_half_away(
            i128::from(self.0) * i128::from(duration_ms),
            i128::from(MS_PER_HOUR),
        );
        i64::try_from(wh).ok().map(WattHours)
    }
}

impl Price {
    /// Builds a price from whole currency units per MWh, or `None` on overflow.
    pub const fn from_units_per_mwh(units: i64) -> Option<Self> {
        match units.checked_mul(MICRO) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The cost of `energy` at this price, in token base units (micro-currency), rounded half
    /// away from zero. Positive when a consumer pays (positive energy, positive price).
    ///
    /// `Wh × µ/MWh = 10⁻⁶ MWh × 10⁻⁶ currency/MWh = 10⁻¹² currency`, hence the division by
    /// 10⁶ to reach base units of 10⁻⁶ currency. The result is an `i128` so that no product of
    /// two `i64` can overflow; callers narrow it with checks where it becomes a balance.
    pub const fn cost_of(self, energy: WattHours) -> i128 {
        div_round_half_away(energy.0 as i128 * self.0 as i128, MICRO as i128)
    }
}

/// An amount of the settlement token in base units (1 token = 10⁶ base units = 1 currency unit).
///
/// Balances and transfer amounts are never negative; a debit that would take a balance below
/// zero is refused by the ledger, not represented.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The largest representable amount.
    pub const MAX: Self = Self(u64::MAX);
    /// Base units per token.
    pub const PER_TOKEN: u64 = MICRO as u64;

    /// The raw count of base units.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Builds an amount from whole tokens, or `None` on overflow.
    pub const fn from_tokens(tokens: u64) -> Option<Self> {
        match tokens.checked_mul(Self::PER_TOKEN) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self + rhs`, or `None` on overflow.
    pub const fn checked_add(self, rhs: Self) -> Option<Self> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if `rhs > self`.
    pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Sums an iterator, or `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Self>) -> Option<Self> {
        items.into_iter().try_fold(Self::ZERO, Self::checked_add)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(feature = "codec")]
impl Write for Amount {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

#[cfg(feature = "codec")]
impl Read for Amount {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(u64::read(buf)?))
    }
}

#[cfg(feature = "codec")]
impl FixedSize for Amount {
    const SIZE: usize = u64::SIZE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 2), 3);
        assert_eq!(div_round_half_away(-5, 2), -3);
        assert_eq!(div_round_half_away(4, 3), 1);
        assert_eq!(div_round_half_away(-4, 3), -1);
        assert_eq!(div_round_half_away(0, 7), 0);
    }

    #[test]
    fn one_kilowatt_for_a_quarter_hour_is_250_wh() {
        assert_eq!(
            Watts(1_000).energy_over(15 * 60 * 1000),
            Some(WattHours(250))
        );
        assert_eq!(
            Watts(-1_000).energy_over(15 * 60 * 1000),
            Some(WattHours(-250))
        );
        assert_eq!(Watts(i64::MAX).energy_over(u64::MAX), None);
    }

    #[test]
    fn one_mwh_at_80_per_mwh_costs_80_tokens() {
        let price = Price::from_units_per_mwh(80).unwrap();
        assert_eq!(price.cost_of(WattHours(1_000_000)), 80 * i128::from(MICRO));
        // 1 Wh at 0.5 µ/MWh-steps rounds half away from zero.
        assert_eq!(Price(500_000).cost_of(WattHours(1)), 1);
        assert_eq!(Price(499_999).cost_of(WattHours(1)), 0);
        assert_eq!(Price(-500_000).cost_of(WattHours(1)), -1);
    }

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Watts::MAX.checked_add(Watts(1)), None);
        assert_eq!(Watts::MIN.checked_neg(), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount::checked_sum([Amount(u64::MAX), Amount(1)]), None);
        assert_eq!(Watts::checked_sum([Watts(2), Watts(-5)]), Some(Watts(-3)));
    }

    #[cfg(feature = "codec")]
    #[test]
    fn quantities_encode_as_fixed_big_endian() {
        use commonware_codec::{DecodeExt, Encode};
        assert_eq!(Watts(-2).encode().as_ref(), &(-2i64).to_be_bytes());
        assert_eq!(Amount(7).encode().as_ref(), &7u64.to_be_bytes());
        assert_eq!(Price::decode(Price(42).encode()).unwrap(), Price(42));
    }

    #[test]
    fn quantities_serialize_as_plain_integers() {
        assert_eq!(serde_json::to_string(&Watts(-3500)).unwrap(), "-3500");
        assert_eq!(serde_json::from_str::<Amount>("12").unwrap(), Amount(12));
    }
}
