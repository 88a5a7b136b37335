//! Fixed-point money. Every USD amount Switchyard handles (prices, cost caps, budgets) is
//! an integer count of micro-dollars: decimals are parsed digit by digit, never through a
//! float, so `0.002` is exactly 2,000 and comparisons are exact.

use std::fmt;

/// An amount in millionths of a US dollar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

/// Why a decimal could not be read as an amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected a decimal number such as `0.002`")]
    Syntax,
    #[error("amounts cannot be negative")]
    Negative,
    #[error("at most 6 decimal places are allowed (micro-dollar precision)")]
    TooPrecise,
    #[error("amount is too large")]
    Overflow,
}

impl Micros {
    /// Micro-dollars in one dollar.
    pub const PER_DOLLAR: u64 = 1_000_000;

    /// Parses a plain decimal (`12`, `0.002`, `+1.5`). Exponents, `inf`, `nan` and more
    /// than six decimal places are refused rather than rounded.
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty())
            || !all_digits(whole)
            || !all_digits(frac)
            || (text.contains('.') && frac.is_empty())
        {
            return Err(MoneyError::Syntax);
        }
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > 6 {
            return Err(MoneyError::TooPrecise);
        }
        let mut dollars: u64 = 0;
        for b in whole.bytes() {
            dollars = dollars
                .checked_mul(10)
                .and_then(|d| d.checked_add(u64::from(b - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        let mut micros: u64 = 0;
        for i in 0..6 {
            let digit = frac_trimmed.as_bytes().get(i).map_or(0, |b| b - b'0');
            micros = micros * 10 + u64::from(digit);
        }
        dollars
            .checked_mul(Self::PER_DOLLAR)
            .and_then(|d| d.checked_add(micros))
            .map(Micros)
            .ok_or(MoneyError::Overflow)
    }
}

impl fmt::Display for Micros {
    /// Prints the shortest exact decimal: `0.002`, `1`, `1.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::PER_DOLLAR;
        let frac = self.0 % Self::PER_DOLLAR;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(Micros::parse("0.002"), Ok(Micros(2_000)));
        assert_eq!(Micros::parse("1"), Ok(Micros(1_000_000)));
        assert_eq!(Micros::parse("1.5"), Ok(Micros(1_500_000)));
        assert_eq!(Micros::parse("0.000001"), Ok(Micros(1)));
        assert_eq!(Micros::parse("0.1000000"), Ok(Micros(100_000)));
        assert_eq!(Micros::parse(".5"), Ok(Micros(500_000)));
        assert_eq!(Micros::parse("+3"), Ok(Micros(3_000_000)));
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        assert_eq!(Micros::parse("0.0000001"), Err(MoneyError::TooPrecise));
        assert_eq!(Micros::parse("-1"), Err(MoneyError::Negative));
        assert_eq!(Micros::parse("1e-3"), Err(MoneyError::Syntax));
        assert_eq!(Micros::parse(""), Err(MoneyError::Syntax));
        assert_eq!(Micros::parse("."), Err(MoneyError::Syntax));
        assert_eq!(Micros::parse("1."), Err(MoneyError::Syntax));
        assert_eq!(Micros::parse("nan"), Err(MoneyError::Syntax));
        assert_eq!(
            Micros::parse("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn displays_shortest_exact_form() {
        assert_eq!(Micros(2_000).to_string(), "0.002");
        assert_eq!(Micros(1_000_000).to_string(), "1");
        assert_eq!(Micros(1_500_000).to_string(), "1.5");
        assert_eq!(Micros(1).to_string(), "0.000001");
    }
}
