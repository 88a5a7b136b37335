//! The body scanner and `model` rewrite against a full JSON parse (serde_json) on generated
//! bodies: random key order, whitespace, escapes (keys and values), unicode and nesting.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchyard::gateway::body::{BodyError, rewrite_model, scan};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-z \"\\\\/\u{e9}\u{4e2d}\u{1f600}\n\t]{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("(model|messages|[a-z]{1,6})", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A chat body: top-level keys in random order, `model` among them.
fn body() -> impl Strategy<Value = (Vec<(String, Value)>, String)> {
    (
        prop::collection::vec(("[a-z_]{1,10}", value()), 0..6),
        "[a-zA-Z0-9 ._:/\"\\\\\u{e9}\u{1f600}-]{1,20}",
        any::<u64>(),
    )
        .prop_map(|(mut kv, model, at)| {
            kv.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "model" | "messages" | "stream" | "max_tokens" | "max_completion_tokens"
                )
            });
            kv.push(("messages".into(), Value::Array(vec![Value::from("hi")])));
            let at = (at as usize) % (kv.len() + 1);
            kv.insert(at, ("model".into(), Value::String(model.clone())));
            (kv, model)
        })
}

/// Serializes with random formatting choices driven by `seed`.
struct Writer {
    seed: u64,
    out: String,
}

impl Writer {
    fn roll(&mut self, n: u64) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % n
    }

    fn ws(&mut self) {
        for _ in 0..self.roll(3) {
            let c = [" ", "\n", "\t", "\r\n"][self.roll(4) as usize];
            self.out.push_str(c);
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => {
                    let esc = if self.roll(2) == 0 { "\\n" } else { "\\u000a" };
                    self.out.push_str(esc);
                }
                '\t' => self.out.push_str("\\t"),
                '/' if self.roll(2) == 0 => self.out.push_str("\\/"),
                c if self.roll(5) == 0 => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{u:04X}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Object(m) => self.object(m.iter().map(|(k, v)| (k.as_str(), v))),
            Value::Array(a) => {
                self.out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(x);
                    self.ws();
                }
                self.out.push(']');
            }
            Value::String(s) => self.string(s),
            other => self.out.push_str(&other.to_string()),
        }
    }

    fn object<'a>(&mut self, kv: impl Iterator<Item = (&'a str, &'a Value)>) {
        self.out.push('{');
        for (i, (k, v)) in kv.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            self.string(k);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(v);
            self.ws();
        }
        self.out.push('}');
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn scan_and_rewrite_agree_with_a_full_parse((kv, model) in body(), seed in any::<u64>(), new in "[a-z0-9.\"\\\\\u{e9}-]{1,16}") {
        let mut w = Writer { seed: seed | 1, out: String::new() };
        w.ws();
        w.object(kv.iter().map(|(k, v)| (k.as_str(), v)));
        w.ws();
        let text = w.out;
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let fields = scan(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        let m = fields.model.unwrap();
        prop_assert_eq!(&*m.value, model.as_str());
        prop_assert_eq!(parsed["model"].as_str().unwrap(), model.as_str());
        prop_assert!(fields.has_messages);

        let mut out = Vec::new();
        rewrite_model(text.as_bytes(), m.span.clone(), &new, &mut out);
        let rewritten: Value = serde_json::from_slice(&out).unwrap();
        let mut expected = parsed;
        expected["model"] = Value::String(new.clone());
        prop_assert_eq!(rewritten, expected);
        // Byte-for-byte outside the model token.
        prop_assert_eq!(&out[..m.span.start], &text.as_bytes()[..m.span.start]);
        let tail = text.len() - m.span.end;
        prop_assert_eq!(&out[out.len() - tail..], &text.as_bytes()[m.span.end..]);
    }

    #[test]
    fn scan_accepts_exactly_what_a_parser_accepts(
        (kv, _model) in body(),
        seed in any::<u64>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut w = Writer { seed: seed | 1, out: String::new() };
        w.object(kv.iter().map(|(k, v)| (k.as_str(), v)));
        let mut bytes = w.out.into_bytes();
        for (at, b, op) in edits {
            let at = at % bytes.len().max(1);
            match op {
                0 if !bytes.is_empty() => bytes[at] = b,
                1 if !bytes.is_empty() => { bytes.remove(at); }
                _ => bytes.insert(at, b),
            }
        }
        let ours = scan(&bytes);
        let theirs = serde_json::from_slice::<Value>(&bytes);
        match (&ours, &theirs) {
            (Ok(_), Ok(v)) => prop_assert!(v.is_object()),
            // Valid JSON that serde_json cannot represent (RFC 8259 §6 allows any magnitude).
            (Ok(_), Err(e)) if e.to_string().contains("number out of range") => {}
            (Ok(_), Err(e)) => prop_assert!(false, "accepted what serde_json refuses ({e}): {}", String::from_utf8_lossy(&bytes)),
            (Err(BodyError::Syntax { .. }), Ok(v)) => {
                prop_assert!(false, "refused valid JSON {v}: {}", String::from_utf8_lossy(&bytes));
            }
            (Err(BodyError::NotObject), Ok(v)) => prop_assert!(!v.is_object()),
            // Type and duplicate checks are ours alone; so is a syntax error.
            (Err(_), _) => {}
        }
    }
}

#[test]
fn lone_surrogates_are_refused() {
    assert!(scan(br#"{"model":"\ud800","messages":[]}"#).is_err());
    assert!(scan(br#"{"x":"\ud800","model":"a","messages":[]}"#).is_err());
    assert!(scan(br#"{"x":"\udc00","model":"a","messages":[]}"#).is_err());
    assert!(scan(br#"{"x":"\ud83d\ude00","model":"a","messages":[]}"#).is_ok());
}
