//! `Table::from_bytes` on arbitrary bytes: refuses or accepts, never panics; an accepted
//! table evaluates and dumps without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_table::{Request, Table};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Table::from_bytes(data) {
        let req = Request { tenant: Some(b"acme"), latency_budget_ms: Some(100), ..Request::default() };
        let d = t.evaluate(&req);
        let _ = t.decided(d).name();
        let _ = policyc::dump::dump(&t);
    }
});
