//! Evaluation never allocates: a counting global allocator watches 100,000 decisions on
//! tables of 10 to 10,000 rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]
#![allow(
    unsafe_code,
    reason = "a GlobalAlloc implementation is unsafe by definition"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_table::{Request, Table};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to `System` unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluation_never_allocates() {
    for n in [10, 100, 1_000, 10_000] {
        let text = switchyard_benches::policy(n, 7);
        let (_, out) = policyc::compile_str("bench.yaml", &text).unwrap();
        let bytes = out.compiled.unwrap().table;
        let table = Table::from_bytes(&bytes).unwrap();
        let attrs = switchyard_benches::requests(n, 1000, 3);
        let requests: Vec<Request<'_>> = attrs.iter().map(|a| a.as_request()).collect();
        let mut checksum = 0u64;
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..100 {
            for r in &requests {
                let d = table.evaluate(r);
                checksum = checksum.wrapping_add(u64::from(d.rule_index()));
                checksum = checksum.wrapping_add(u64::from(
                    table.decided(d).endpoint().map_or(0, |e| e.index()),
                ));
            }
        }
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "{n} rules: {} allocations in 100,000 evaluations",
            after - before
        );
        assert_ne!(checksum, 0);
    }
}
