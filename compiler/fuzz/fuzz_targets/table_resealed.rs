//! Corrupts a real table, recomputes its checksums, and validates: this reaches the
//! structural checks that the CRCs would otherwise stop in front of.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard_table::{Request, Table, reseal};

fn seed() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let text = include_str!("../../../testdata/policies/good/tenants-globs-sets.yaml");
        let (_, out) = policyc::compile_str("t.yaml", text).expect("compiles");
        out.compiled.expect("valid").table
    })
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = seed().to_vec();
    // data = pairs of (position, value) edits.
    for pair in data.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % bytes.len();
        bytes[pos] = pair[2];
    }
    reseal(&mut bytes);
    if let Ok(t) = Table::from_bytes(&bytes) {
        for tenant in [&b"acme-eu"[..], b"beta", b"zzz"] {
            let req = Request { tenant: Some(tenant), user_role: Some(b"admin"), model: Some(b"gpt-4o"), ..Request::default() };
            let d = t.evaluate(&req);
            let _ = t.decided(d).endpoint().map(|e| e.id());
        }
        let _ = policyc::dump::dump(&t);
    }
});
