//! `--fail-if METRIC OP NUMBER`: the conditions a CI gate puts on a replay, compared
//! exactly (counts, hundredths of a percent and micro-dollars as integers).

use switchyard_table::Micros;

use super::Report;

/// A metric's value, exact.
#[derive(Clone, Copy, Debug)]
pub enum Metric {
    Count(u64),
    /// A percentage in hundredths.
    Hundredths(u64),
    /// Micro-dollars.
    Usd(i128),
}

pub const METRICS: &[&str] = &[
    "records",
    "replayed",
    "skipped",
    "rerouted",
    "rerouted_pct",
    "denied",
    "allowed",
    "model_unserved",
    "cost_usd_recorded",
    "cost_usd_new",
    "cost_delta_usd",
];

/// A `--fail-if` condition: `METRIC OP NUMBER`.
#[derive(Clone, Debug)]
pub struct Condition {
    pub text: String,
    metric: String,
    op: Op,
    /// The number in micro-units (exact for money, counts and two-decimal percentages).
    micro: i128,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let at = t.find(['<', '>', '=', '!']).ok_or_else(|| {
            format!("`--fail-if {text}`: expected `METRIC OP NUMBER`, e.g. `denied > 0`")
        })?;
        let metric = t[..at].trim().to_owned();
        let rest = &t[at..];
        let (op, len) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find(|(s, _)| rest.starts_with(s))
        .map(|(s, op)| (op, s.len()))
        .ok_or_else(|| format!("`--fail-if {text}`: unknown operator"))?;
        if !METRICS.contains(&metric.as_str()) {
            return Err(format!(
                "`--fail-if {text}`: unknown metric `{metric}` (one of: {})",
                METRICS.join(", ")
            ));
        }
        let number = rest[len..].trim();
        let (negative, digits) = match number.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let micro = Micros::parse(digits)
            .map_err(|_| {
                format!("`--fail-if {text}`: `{number}` is not a number (at most 6 decimals)")
            })?
            .0;
        let micro = i128::from(micro) * if negative { -1 } else { 1 };
        Ok(Self {
            text: t.to_owned(),
            metric,
            op,
            micro,
        })
    }

    /// Whether the condition holds for `report`.
    pub fn holds(&self, report: &Report) -> bool {
        let value = match report.metric(&self.metric) {
            Some(Metric::Count(n)) => i128::from(n) * 1_000_000,
            Some(Metric::Hundredths(h)) => i128::from(h) * 10_000,
            Some(Metric::Usd(m)) => m,
            None => return false,
        };
        match self.op {
            Op::Gt => value > self.micro,
            Op::Ge => value >= self.micro,
            Op::Lt => value < self.micro,
            Op::Le => value <= self.micro,
            Op::Eq => value == self.micro,
            Op::Ne => value != self.micro,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::usd;

    #[test]
    fn conditions_parse_and_compare_exactly() {
        let mut r = Report {
            replayed: 3,
            cost_recorded: 1_000_000,
            cost_new: 101_000_001,
            ..Report::default()
        };
        r.denied.count = 1;
        let c = |t: &str| Condition::parse(t).map(|c| c.holds(&r));
        assert_eq!(c("denied > 0"), Ok(true));
        assert_eq!(c("denied>1"), Ok(false));
        assert_eq!(c("cost_delta_usd > 100"), Ok(true));
        assert_eq!(c("cost_delta_usd > 100.000001"), Ok(false));
        assert_eq!(c("cost_delta_usd >= -5"), Ok(true));
        assert_eq!(c("rerouted_pct > 5"), Ok(false));
        assert!(c("bogus > 1").is_err_and(|e| e.contains("unknown metric")));
        assert!(c("denied ~ 1").is_err());
        assert!(c("denied > x").is_err());
        assert_eq!(usd(-1_500_000), "-1.500000");
    }
}
