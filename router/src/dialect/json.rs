//! A small JSON writer for the encoders: objects written member by member into a byte buffer,
//! no tree, no intermediate strings.

pub use crate::codec::write_json_string as string;

/// An object being written; [`Obj::end`] closes it.
#[derive(Debug)]
pub struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes `"key":` (after a comma when needed) and returns the buffer for the value.
    /// Keys are the encoders' own field names, written as they are (nothing to escape).
    pub fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            key.bytes()
                .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f),
            "a key that needs escaping: {key:?}"
        );
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        string(self.key(key), value);
        self
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, b"null"),
        }
    }

    pub fn u64(&mut self, key: &'static str, value: u64) -> &mut Self {
        crate::codec::push_u64(self.key(key), value);
        self
    }

    pub fn f64(&mut self, key: &'static str, value: f64) -> &mut Self {
        number(self.key(key), value);
        self
    }

    pub fn bool(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.raw(key, if value { b"true" } else { b"false" })
    }

    /// A value already written as JSON text.
    pub fn raw(&mut self, key: &'static str, json: &[u8]) -> &mut Self {
        self.key(key).extend_from_slice(json);
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Writes a comma before every element but the first (`first` tracks it).
pub fn sep(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::replace(first, false) {
        out.push(b',');
    }
}

/// A finite number in JSON's grammar (Rust's shortest round-trip form never uses an
/// exponent, so it always is); a non-finite one, which JSON cannot hold, as `null`.
pub fn number(out: &mut Vec<u8>, value: f64) {
    use std::io::Write as _;
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Whether `text` is one JSON object (what a tool call's arguments must be).
#[must_use]
pub fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}
