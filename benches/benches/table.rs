//! Decision-table benchmarks: evaluation per decision, load+validate, and compile time,
//! at 10, 100, 1,000 and 10,000 rules. Setup (generating and compiling policies) happens
//! outside the timed loops; every result is checked against the reference interpreter
//! before timing starts. Results and targets: benches/RESULTS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "benchmark harness"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_benches::Arena;
use switchyard_table::Table;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn compiled(rules: usize) -> policyc::Compiled {
    let text = switchyard_benches::policy(rules, 7);
    let (_, out) = policyc::compile_str("bench.yaml", &text).unwrap();
    out.compiled.unwrap()
}

fn evaluate(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let compiled = compiled(n);
        let table = Table::from_bytes(&compiled.table).unwrap();
        let attrs = switchyard_benches::requests(n, 4096, 11);
        for a in &attrs {
            let expected = policyc::interp::first_match(&compiled.policy, a);
            assert_eq!(
                table.evaluate(&a.as_request()).rule_index() as usize,
                expected
            );
        }
        // Header values live in one contiguous buffer, as they do in a router's
        // connection buffer, not in 16,000 scattered heap strings.
        let arena = Arena::of(&attrs);
        let requests = arena.requests();
        for (a, r) in attrs.iter().zip(&requests) {
            assert_eq!(*r, a.as_request());
        }
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("mixed", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(table.evaluate(black_box(&requests[i])))
            });
        });
        // The same request again and again: every branch predicted, every line cached.
        // The gap to `mixed` is what unpredictable traffic costs.
        let one = requests[7];
        g.bench_with_input(BenchmarkId::new("repeated", n), &n, |b, _| {
            b.iter(|| black_box(table.evaluate(black_box(&one))));
        });
    }
    g.finish();
}

fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_validate");
    for n in SIZES {
        let bytes = compiled(n).table;
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| {
            b.iter(|| black_box(Table::from_bytes(black_box(bytes)).unwrap().rule_count()));
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in SIZES {
        let text = switchyard_benches::policy(n, 7);
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| {
                let (_, out) = policyc::compile_str("bench.yaml", black_box(text)).unwrap();
                assert!(out.compiled.is_some());
                out
            });
        });
    }
    g.finish();
}

criterion_group!(benches, evaluate, load, compile);
criterion_main!(benches);
