//! Evaluates the benchmark's mixed traffic: `eval-count RULES PASSES` compiles
//! `policy(RULES, 7)`, checks every decision of `requests(RULES, 4096, 11)` against the
//! reference interpreter, then evaluates the 4,096 requests PASSES times round-robin.
//!
//! Run under `valgrind --tool=cachegrind --cache-sim=yes` at two pass counts (see
//! `benches/eval_counts.py`), the difference gives instructions and simulated cache misses
//! per decision: figures this noisy VM cannot blur, for comparing two evaluators.

use std::hint::black_box;
use std::io::Write as _;
use std::process::ExitCode;

use switchyard_benches::Arena;
use switchyard_table::Table;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(rules), Some(passes)) = (
        args.next().and_then(|a| a.parse::<usize>().ok()),
        args.next().and_then(|a| a.parse::<usize>().ok()),
    ) else {
        let _ = fail(format_args!("usage: eval-count RULES PASSES"));
        return ExitCode::from(2);
    };
    let text = switchyard_benches::policy(rules, 7);
    let Some(compiled) = policyc::compile_str("bench.yaml", &text)
        .ok()
        .and_then(|(_, out)| out.compiled)
    else {
        return fail(format_args!(
            "eval-count: the generated policy did not compile"
        ));
    };
    let table = match Table::from_bytes(&compiled.table) {
        Ok(t) => t,
        Err(e) => return fail(format_args!("eval-count: {e}")),
    };
    let attrs = switchyard_benches::requests(rules, 4096, 11);
    let arena = Arena::of(&attrs);
    let requests = arena.requests();
    for (a, r) in attrs.iter().zip(&requests) {
        let expected = policyc::interp::first_match(&compiled.policy, a);
        if table.evaluate(r).rule_index() as usize != expected {
            return fail(format_args!(
                "eval-count: the table disagrees with the interpreter on {a:?}"
            ));
        }
    }
    let mut sum = 0u64;
    for _ in 0..passes {
        for r in &requests {
            sum = sum.wrapping_add(u64::from(
                black_box(table.evaluate(black_box(r))).rule_index(),
            ));
        }
    }
    let _ = writeln!(std::io::stdout(), "{sum}");
    ExitCode::SUCCESS
}

fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{message}");
    ExitCode::FAILURE
}
