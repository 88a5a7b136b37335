//! Prints a generated benchmark policy: `gen-policy RULES [SEED] [EXCLUSIONS_PCT]`. Handy for timing the
//! CLI (`policyc compile`) on the same workloads as the benchmarks.

use std::io::Write as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let rules = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let exclusions = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let text = switchyard_benches::policy_with(rules, seed, exclusions);
    let _ = std::io::stdout().write_all(text.as_bytes());
}
