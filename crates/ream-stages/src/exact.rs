//! Exact decimal sums and averages: units in i256 at the largest scale seen, so no sum of
//! decimals can wrap (a 38-digit column would pass i128 after two rows), and values of
//! different scales (a PostgreSQL `numeric` without precision) add without rounding.
//! A result that no decimal output holds (more than 38 digits) is an error the caller
//! names the variable in.

use arrow_buffer::i256;

/// Digits a decimal value may hold, in every output.
pub(crate) const MAX_DIGITS: u32 = 38;

/// Digits an average keeps after the point beyond its values' own, up to 38: the average
/// of `numeric(12,2)` values has scale 8, rounded half away from zero, as SQL rounds.
pub(crate) const AVG_EXTRA_SCALE: i8 = 6;

/// Why an exact result cannot be given.
#[derive(Debug, PartialEq)]
pub(crate) enum Inexact {
    /// More digits than a decimal holds (the count).
    TooManyDigits(usize),
    /// A scale past 38 digits after the point.
    Scale(i32),
    /// Past what the accumulator holds on the way (76 digits).
    Overflow,
}

impl std::fmt::Display for Inexact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inexact::TooManyDigits(n) => write!(f, "has {n} digits, more than the {MAX_DIGITS} a decimal holds"),
            Inexact::Scale(s) => {
                write!(f, "has {s} digits after the point, more than the {MAX_DIGITS} a decimal holds")
            }
            Inexact::Overflow => write!(f, "has more than 76 digits on the way"),
        }
    }
}

/// A running exact sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ExactSum {
    units: i256,
    scale: i8,
}

fn ten_pow(n: i32) -> Option<i256> {
    i256::from_i128(10).checked_pow(u32::try_from(n).ok()?)
}

impl ExactSum {
    pub const ZERO: ExactSum = ExactSum { units: i256::ZERO, scale: 0 };

    /// A sum of values of one known scale.
    pub fn at_scale(scale: i8) -> ExactSum {
        ExactSum { units: i256::ZERO, scale }
    }

    /// Add `units × 10^-scale`, moving the sum to the larger scale.
    pub fn add(&mut self, units: i128, scale: i8) -> Result<(), Inexact> {
        let mut v = i256::from_i128(units);
        if scale > self.scale {
            let up = ten_pow(i32::from(scale) - i32::from(self.scale)).ok_or(Inexact::Scale(scale.into()))?;
            self.units = self.units.checked_mul(up).ok_or(Inexact::Overflow)?;
            self.scale = scale;
        } else if scale < self.scale {
            let up = ten_pow(i32::from(self.scale) - i32::from(scale)).ok_or(Inexact::Scale(self.scale.into()))?;
            v = v.checked_mul(up).ok_or(Inexact::Overflow)?;
        }
        self.units = self.units.checked_add(v).ok_or(Inexact::Overflow)?;
        Ok(())
    }

    /// Add values that all have the sum's scale (no rescaling: the hot path of a
    /// `numeric(p,s)` column). i128 values cannot carry an i256 sum past its range in
    /// fewer than 2^127 additions.
    #[inline]
    pub fn add_units(&mut self, units: impl Iterator<Item = i128>) {
        self.units = units.fold(self.units, |acc, v| acc.wrapping_add(i256::from_i128(v)));
    }

    /// The sum as decimal units and scale.
    pub fn value(&self) -> Result<(i128, i8), Inexact> {
        fits(self.units).map(|u| (u, self.scale))
    }

    /// The sum over `n` values, rounded half away from zero at the scale the average
    /// keeps: [`AVG_EXTRA_SCALE`] more digits than the values, fewer where the average
    /// would not fit 38 digits, never fewer than the values' own.
    pub fn average(&self, n: u64) -> Result<(i128, i8), Inexact> {
        let most = self.scale.saturating_add(AVG_EXTRA_SCALE).clamp(self.scale, MAX_DIGITS as i8);
        let mut last = Inexact::Overflow;
        for scale in (self.scale..=most).rev() {
            match self.average_at(n, scale) {
                Ok(units) => return Ok((units, scale)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn average_at(&self, n: u64, scale: i8) -> Result<i128, Inexact> {
        let up = ten_pow(i32::from(scale) - i32::from(self.scale)).ok_or(Inexact::Scale(scale.into()))?;
        let num = self.units.checked_mul(up).ok_or(Inexact::Overflow)?;
        let n = i256::from_i128(i128::from(n.max(1)));
        let (q, r) = (num.wrapping_div(n), num.wrapping_rem(n));
        let twice = r.wrapping_abs().wrapping_mul(i256::from_i128(2));
        let q = match twice >= n {
            true if num.is_negative() => q.wrapping_sub(i256::ONE),
            true => q.wrapping_add(i256::ONE),
            false => q,
        };
        fits(q)
    }
}

/// Units that a 38-digit decimal holds.
fn fits(units: i256) -> Result<i128, Inexact> {
    units
        .to_i128()
        .filter(|u| u.unsigned_abs() < 10u128.pow(MAX_DIGITS))
        .ok_or_else(|| Inexact::TooManyDigits(units.to_string().trim_start_matches('-').len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_different_scales_add_exactly() {
        let mut s = ExactSum::ZERO;
        for (u, sc) in [(12345, 2), (1, 4), (-7, 0), (5, 1)] {
            s.add(u, sc).unwrap();
        }
        // 123.45 + 0.0001 - 7 + 0.5
        assert_eq!(s.value(), Ok((1169501, 4)));
    }

    #[test]
    fn an_average_keeps_six_more_digits_and_rounds_half_away_from_zero() {
        let mut s = ExactSum::at_scale(2);
        s.add_units([100, 100, 101].into_iter());
        // 3.01 / 3 = 1.00333333…
        assert_eq!(s.average(3), Ok((100333333, 8)));
        let mut s = ExactSum::at_scale(0);
        s.add_units([-1, -2].into_iter());
        // -1.5 rounds away from zero at scale 6: -1.500000 exactly.
        assert_eq!(s.average(2), Ok((-1500000, 6)));
        let mut s = ExactSum::at_scale(0);
        s.add_units([2].into_iter());
        assert_eq!(s.average(3), Ok((666667, 6)));
        let mut s = ExactSum::at_scale(0);
        s.add_units([-2].into_iter());
        assert_eq!(s.average(3), Ok((-666667, 6)));
    }

    #[test]
    fn a_sum_past_38_digits_says_how_many_it_has() {
        let mut s = ExactSum::at_scale(0);
        let big = 10i128.pow(37) * 9;
        s.add_units([big, big].into_iter());
        assert_eq!(s.value(), Err(Inexact::TooManyDigits(39)));
        // Its average fits, at the values' own scale.
        assert_eq!(s.average(2), Ok((big, 0)));
        assert_eq!(ExactSum::at_scale(0).value(), Ok((0, 0)));
    }
}
