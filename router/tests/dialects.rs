//! The dialect golden harness: every fixture under `testdata/dialects/` is translated into
//! the other dialect and compared with the expected translation beside it.
//!
//! | input | expected |
//! | --- | --- |
//! | `requests/<from>/<case>.json` | `requests/<from>/<case>.<to>.json`: `{"body", "dropped"}` or `{"refused"}` |
//! | `responses/<from>/<case>.json` (a whole answer) | `responses/<from>/<case>.<to>.json` |
//! | `streams/<from>/<case>.sse` (an event stream) | `streams/<from>/<case>.<to>.sse`, byte for byte, whatever the byte the input is split at |
//! | `errors/<from>/<case>-<status>.<ext>` (an error body) | `errors/<from>/<case>-<status>.<to>.json` |
//!
//! A new fixture is an input file; `SWITCHYARD_BLESS=1 cargo test --test dialects` writes its
//! expected file from what the code does now, for review in the diff. Without it, a missing
//! or different expected file fails the test.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

use std::path::{Path, PathBuf};

use switchyard::dialect::openai::write::Limit;
use switchyard::dialect::translate::{Options, Translator};
use switchyard::dialect::{Wire, anthropic, openai};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dialects")
}

fn bless() -> bool {
    std::env::var_os("SWITCHYARD_BLESS").is_some_and(|v| v == "1")
}

fn other(w: Wire) -> Wire {
    match w {
        Wire::OpenAi => Wire::Anthropic,
        Wire::Anthropic => Wire::OpenAi,
        Wire::Bedrock | Wire::BedrockInvoke | Wire::Gemini | Wire::VertexAnthropic => {
            panic!(
                "the golden fixtures are OpenAI and Anthropic (the cloud dialects' are unit tests)"
            )
        }
    }
}

fn name(w: Wire) -> &'static str {
    match w {
        Wire::OpenAi => "openai",
        Wire::Anthropic => "anthropic",
        Wire::Bedrock | Wire::BedrockInvoke => "bedrock",
        Wire::Gemini | Wire::VertexAnthropic => "vertex",
    }
}

/// The input fixtures of `kind/<from>/`: files named `<case>.<ext>` (one dot).
fn inputs(kind: &str, from: Wire) -> Vec<(String, PathBuf)> {
    let dir = root().join(kind).join(name(from));
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let file = p.file_name()?.to_str()?.to_owned();
            let (case, _) = file.split_once('.')?;
            (file.matches('.').count() == 1).then(|| (case.to_owned(), p))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// Compares `actual` with the expected file (or writes it when blessing); a mismatch is
/// added to `failures`.
fn check(expected: &Path, actual: &str, json: bool, failures: &mut Vec<String>) {
    if bless() {
        std::fs::write(expected, actual).unwrap();
        return;
    }
    let Ok(want) = std::fs::read_to_string(expected) else {
        failures.push(format!(
            "{} is missing (SWITCHYARD_BLESS=1 writes it); the translation is:\n{actual}",
            expected.display()
        ));
        return;
    };
    let same = if json {
        serde_json::from_str::<serde_json::Value>(&want).ok()
            == serde_json::from_str::<serde_json::Value>(actual).ok()
    } else {
        want == actual
    };
    if !same {
        failures.push(format!(
            "{} differs.\n--- expected\n{want}\n--- actual\n{actual}",
            expected.display()
        ));
    }
}

fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

/// A request translated from `from` into the other dialect, as the expected file holds it.
fn translate_request(from: Wire, body: &[u8]) -> serde_json::Value {
    let mut buf = body.to_vec();
    let mut parser = switchyard::dialect::de::Parser::default();
    let read = match from {
        Wire::OpenAi
        | Wire::Bedrock
        | Wire::BedrockInvoke
        | Wire::Gemini
        | Wire::VertexAnthropic => openai::read::read(&mut buf, &mut parser),
        Wire::Anthropic => anthropic::read::read(&mut buf, &mut parser),
    };
    let refused = |r: switchyard::dialect::Refusal| serde_json::json!({"refused": {"param": r.param, "invalid": r.invalid, "message": r.message}});
    let req = match read {
        Ok(r) => r,
        Err(r) => return refused(r),
    };
    let mut out = Vec::new();
    let mut dropped: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    let written = match other(from) {
        Wire::Anthropic => anthropic::write::write(&req, "target-model", &mut out, &mut dropped),
        Wire::Bedrock | Wire::BedrockInvoke | Wire::Gemini | Wire::VertexAnthropic => {
            panic!(
                "the golden fixtures are OpenAI and Anthropic (the cloud dialects' are unit tests)"
            )
        }
        Wire::OpenAi => openai::write::write(
            &req,
            "target-model",
            Limit::MaxTokens,
            &mut out,
            &mut dropped,
        ),
    };
    if let Err(r) = written {
        return refused(r);
    }
    let body: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "the translation is not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    let mut names: Vec<String> = req.dropped.iter().map(ToString::to_string).collect();
    names.extend(dropped.iter().map(ToString::to_string));
    serde_json::json!({"body": body, "dropped": names})
}

#[test]
fn requests_translate_both_ways() {
    let mut failures = Vec::new();
    for from in [Wire::OpenAi, Wire::Anthropic] {
        for (case, path) in inputs("requests", from) {
            let actual = translate_request(from, &std::fs::read(&path).unwrap());
            let expected = path.with_file_name(format!("{case}.{}.json", name(other(from))));
            check(&expected, &pretty(&actual), true, &mut failures);
        }
    }
    report(&failures);
}

fn options(stream: bool, include_usage: bool, error_status: Option<u16>) -> Options<'static> {
    Options {
        stream,
        include_usage,
        created: 1_700_000_000,
        id: "fallback-id",
        model: "fallback-model",
        error_status,
        endpoint: "upstream",
    }
}

/// Translates `input` fed in `parts`; returns the client's bytes.
fn run(from: Wire, o: &Options<'_>, parts: &[&[u8]]) -> Vec<u8> {
    let mut parser = switchyard::dialect::de::Parser::default();
    let mut t = Translator::new(from, other(from), o, &mut parser);
    let mut out = Vec::new();
    for p in parts {
        if t.push(p, &mut out).is_err() {
            return out;
        }
    }
    let _ = t.finish(&mut out);
    out
}

#[test]
fn whole_answers_translate_both_ways() {
    let mut failures = Vec::new();
    for from in [Wire::OpenAi, Wire::Anthropic] {
        for (case, path) in inputs("responses", from) {
            let input = std::fs::read(&path).unwrap();
            let out = run(from, &options(false, false, None), &[&input]);
            let actual: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                panic!("{case}: not JSON ({e}): {}", String::from_utf8_lossy(&out))
            });
            let expected = path.with_file_name(format!("{case}.{}.json", name(other(from))));
            check(&expected, &pretty(&actual), true, &mut failures);
        }
    }
    report(&failures);
}

#[test]
fn streams_translate_event_by_event_whatever_the_split() {
    let mut failures = Vec::new();
    for from in [Wire::OpenAi, Wire::Anthropic] {
        for (case, path) in inputs("streams", from) {
            let input = std::fs::read(&path).unwrap();
            let o = options(true, !case.contains("no-usage-chunk"), None);
            let whole = run(from, &o, &[&input]);
            let text = String::from_utf8(whole.clone()).unwrap();
            let expected = path.with_file_name(format!("{case}.{}.sse", name(other(from))));
            check(&expected, &text, false, &mut failures);
            // Split at every byte boundary, and fed one byte at a time: the same bytes out.
            for cut in 0..=input.len() {
                let split = run(from, &o, &[&input[..cut], &input[cut..]]);
                if split != whole {
                    failures.push(format!(
                        "{}: split at byte {cut} gives another translation:\n{}",
                        path.display(),
                        String::from_utf8_lossy(&split)
                    ));
                    break;
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            if run(from, &o, &bytes) != whole {
                failures.push(format!(
                    "{}: fed one byte at a time, it translates differently",
                    path.display()
                ));
            }
        }
    }
    report(&failures);
}

#[test]
fn error_bodies_translate_both_ways() {
    let mut failures = Vec::new();
    for from in [Wire::OpenAi, Wire::Anthropic] {
        for (case, path) in inputs("errors", from) {
            let status: u16 = case
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{case}: name it <what>-<status>"));
            let input = std::fs::read(&path).unwrap();
            let out = run(from, &options(false, false, Some(status)), &[&input]);
            let actual: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let expected = path.with_file_name(format!("{case}.{}.json", name(other(from))));
            check(&expected, &pretty(&actual), true, &mut failures);
        }
    }
    report(&failures);
}

/// Every expected file has its input (a renamed input must not leave a stale expectation).
#[test]
fn no_expected_file_without_its_input() {
    let mut orphans = Vec::new();
    for kind in ["requests", "responses", "streams", "errors"] {
        for from in ["openai", "anthropic"] {
            let dir = root().join(kind).join(from);
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let file = p.file_name().unwrap().to_str().unwrap().to_owned();
                if file.matches('.').count() != 2 {
                    continue;
                }
                let case = file.split('.').next().unwrap();
                let has_input = std::fs::read_dir(&dir).unwrap().any(|e| {
                    let f = e.unwrap().file_name().into_string().unwrap();
                    f.matches('.').count() == 1 && f.split('.').next() == Some(case)
                });
                if !has_input {
                    orphans.push(p.display().to_string());
                }
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "expected files without an input: {orphans:?}"
    );
}
