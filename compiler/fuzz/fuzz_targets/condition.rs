//! The condition grammar on arbitrary strings: never panics, and errors point inside the
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = policyc::condition::parse(text) {
            assert!(e.start <= text.len() && e.end <= text.len() && e.start <= e.end);
            assert!(text.is_char_boundary(e.start));
        }
    }
});
