//! The whole front end on arbitrary text: YAML, checker, analyses and lowering never
//! panic, and whatever compiles yields a table that validates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((sources, out)) = policyc::compile_str("fuzz.yaml", text) {
            let _ = policyc::diag::render_human(&sources, &out.diagnostics);
            if let Some(c) = out.compiled {
                assert!(switchyard_table::Table::from_bytes(&c.table).is_ok());
            }
        }
    }
});
