//! Damaged tables are refused with a clear error, never a panic: every truncation, every
//! single-bit flip, and structural damage with the checksums recomputed (so the checks
//! behind the CRCs are exercised too).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use switchyard_table::{Request, Table, TableError, reseal};

fn table() -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/policies/good/tenants-globs-sets.yaml"
    ))
    .unwrap();
    let (_, out) = policyc::compile_str("t.yaml", &text).unwrap();
    out.compiled.unwrap().table
}

/// Exercises every accessor of a table that validated, to prove they are total.
fn use_all(t: &Table<'_>) {
    let req = Request {
        tenant: Some(b"acme-eu-1"),
        data_class: Some(b"pii"),
        user_role: Some(b"admin"),
        model: Some(b"gpt-4o"),
        latency_budget_ms: Some(150),
        cost_cap_per_1k: None,
    };
    let d = t.evaluate(&req);
    let _ = t.decided(d).name();
    let _ = policyc::dump::dump(t);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = table();
    for len in 0..bytes.len() {
        let err = Table::from_bytes(&bytes[..len]).unwrap_err();
        let message = err.to_string();
        assert!(!message.is_empty());
        if len < 96 {
            assert!(matches!(err, TableError::TooShort { .. }), "{len}: {err}");
        }
    }
    assert!(Table::from_bytes(&bytes).is_ok());
}

#[test]
fn every_bit_flip_is_refused() {
    let bytes = table();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            match Table::from_bytes(&b) {
                Err(e) => assert!(!e.to_string().is_empty()),
                // Flips in alignment padding between sections are outside every checksum
                // and change nothing that is read.
                Ok(t) => {
                    use_all(&t);
                    assert_eq!(
                        t.rule_count(),
                        Table::from_bytes(&bytes).unwrap().rule_count()
                    );
                }
            }
        }
    }
}

#[test]
fn resealed_damage_never_panics() {
    let bytes = table();
    // Deterministic pseudo-random corruption, checksums recomputed afterwards.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    for _ in 0..20_000 {
        let mut b = bytes.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        reseal(&mut b);
        match Table::from_bytes(&b) {
            Ok(t) => use_all(&t),
            Err(_) => refused += 1,
        }
    }
    assert!(
        refused > 1000,
        "structural checks should refuse much of this ({refused})"
    );
}

#[test]
fn wrong_magic_and_version_are_named() {
    let mut b = table();
    b[0] = b'X';
    assert_eq!(Table::from_bytes(&b).unwrap_err(), TableError::BadMagic);
    let mut b = table();
    // A format-1 table (before endpoint `ca_file` and tenant `daily_token_budget`).
    b[8] = 1;
    reseal(&mut b);
    assert!(matches!(
        Table::from_bytes(&b).unwrap_err(),
        TableError::UnsupportedVersion { major: 1, .. }
    ));
    // A format-2 table (before the cloud endpoint settings and provider model ids): the
    // message says to recompile.
    let mut b = table();
    b[8] = 2;
    reseal(&mut b);
    let err = Table::from_bytes(&b).unwrap_err();
    assert!(
        matches!(err, TableError::UnsupportedVersion { major: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("recompile the policy"), "{err}");
}
