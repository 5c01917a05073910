//! Decimal numbers of the market file to and from fixed-point integers.
//!
//! The JSON parser reads a number as the nearest IEEE-754 double. [`to_fixed`] takes that
//! double's shortest decimal form (the digits as written, for any number written with at most
//! 15 significant digits), shifts it by the unit's number of decimals and rounds half away from
//! zero, so `0.0015` kW is 2 W, not the 1 W that `0.0015 * 1000.0` would give. [`from_fixed`]
//! goes back: an integer below 2⁵³ becomes the double nearest its decimal value, which prints as
//! exactly that decimal.
//!
//! Invariant: both directions are pure integer or correctly rounded IEEE operations, so the
//! same on every machine.

use core::fmt::Write;

/// A stack buffer for formatting one number without allocating.
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(core::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `x · 10^decimals` as an integer, rounded half away from zero; `None` when `x` is not finite
/// or the result does not fit an `i64`.
pub(crate) fn to_fixed(x: f64, decimals: u32) -> Option<i64> {
    if !x.is_finite() {
        return None;
    }
    let mut buf = Buf {
        bytes: [0; 64],
        len: 0,
    };
    write!(buf, "{x:e}").ok()?;
    let text = core::str::from_utf8(&buf.bytes[..buf.len]).ok()?;
    let (mantissa, exponent) = text.split_once('e')?;
    let exponent: i64 = exponent.parse().ok()?;
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        digits = digits
            .checked_mul(10)?
            .checked_add(u128::from(c.checked_sub(b'0')?))?;
    }
    let shift = exponent - frac_part.len() as i64 + i64::from(decimals);
    let magnitude: u128 = if digits == 0 {
        0
    } else if shift >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
        digits.checked_mul(factor)?
    } else if shift < -38 {
        0
    } else {
        let factor = 10u128.pow((-shift) as u32);
        let (q, r) = (digits / factor, digits % factor);
        if 2 * r >= factor { q + 1 } else { q }
    };
    let magnitude = i64::try_from(magnitude).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// `v / 10^decimals` as the nearest double.
pub(crate) fn from_fixed(v: i128, decimals: u32) -> f64 {
    v as f64 / 10f64.powi(decimals as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_as_written_with_half_away_from_zero() {
        assert_eq!(to_fixed(0.0015, 3), Some(2));
        assert_eq!(to_fixed(-0.0015, 3), Some(-2));
        assert_eq!(to_fixed(0.0014999, 3), Some(1));
        assert_eq!(to_fixed(6.5, 3), Some(6_500));
        assert_eq!(to_fixed(80.0, 6), Some(80_000_000));
        assert_eq!(to_fixed(-500.0, 6), Some(-500_000_000));
        assert_eq!(to_fixed(0.1, 6), Some(100_000));
        assert_eq!(to_fixed(1e-30, 6), Some(0));
        assert_eq!(to_fixed(0.0, 3), Some(0));
        assert_eq!(to_fixed(-0.0, 3), Some(0));
        assert_eq!(to_fixed(1e300, 3), None);
        assert_eq!(to_fixed(f64::NAN, 3), None);
        assert_eq!(to_fixed(f64::INFINITY, 3), None);
        assert_eq!(to_fixed(9.3e15, 3), None);
        assert_eq!(to_fixed(123456.789, 3), Some(123_456_789));
    }

    #[test]
    fn fixed_values_print_as_their_decimal() {
        assert_eq!(from_fixed(3_500, 3).to_string(), "3.5");
        assert_eq!(from_fixed(-1, 3).to_string(), "-0.001");
        assert_eq!(from_fixed(80_000_000, 6).to_string(), "80");
        assert_eq!(from_fixed(999_999_999_999, 3).to_string(), "999999999.999");
        for v in [1i128, 7, 123_456_789, -987_654_321_012, 1_000_000_000_000] {
            assert_eq!(to_fixed(from_fixed(v, 3), 3), Some(v as i64));
            assert_eq!(to_fixed(from_fixed(v, 6), 6), Some(v as i64));
        }
    }
}
