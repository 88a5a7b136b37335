//! Reading bodies with `simd-json`: the parse entry point (strings borrowed from the body,
//! which it unescapes in place) and the shapes both dialects use — a string or a list, a
//! value kept as JSON text.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use simd_json::prelude::Writable as _;

use super::Refusal;

/// A reusable `simd-json` parser: its buffers and its tape are kept from one parse to the
/// next, so parsing a request or a stream's events allocates nothing once they have grown
/// (each core keeps a few in its free lists).
/// A new one allocates nothing until its first parse.
#[derive(Default)]
pub struct Parser {
    buffers: Option<simd_json::Buffers>,
    tape: Option<simd_json::value::tape::Tape<'static>>,
    /// The largest input parsed: what the buffers have grown to hold.
    pub largest: usize,
    /// A buffer for whoever holds this parser to copy input into (`simd-json` parses in
    /// place), kept with the parser so that it is reused too.
    pub spare: Vec<u8>,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("largest", &self.largest)
            .finish_non_exhaustive()
    }
}

impl Parser {
    /// Parses `input` as a `T` whose strings borrow from it (it is unescaped in place, and
    /// padding is appended for the SIMD stage).
    pub fn parse<'a, T: Deserialize<'a>>(&mut self, input: &'a mut Vec<u8>) -> Result<T, String> {
        let len = input.len();
        self.largest = self.largest.max(len);
        input.resize(len + simd_json::INPUT_PADDING, b' ');
        let buffers = self
            .buffers
            .get_or_insert_with(|| simd_json::Buffers::new(len));
        let input: &'a mut [u8] = Vec::as_mut_slice(input);
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| simd_json::value::tape::Tape(Vec::new()))
            .reset();
        if let Err(e) = simd_json::fill_tape_padded(input, len, buffers, &mut tape) {
            self.tape = Some(tape.reset());
            return Err(e.to_string());
        }
        let mut de = simd_json::Deserializer::from_tape(tape);
        let parsed = T::deserialize(&mut de).map_err(|e| e.to_string());
        self.tape = Some(de.into_tape().reset());
        parsed
    }

    /// Parses a request body; a malformed one is refused naming the problem.
    pub fn request<'a, T: Deserialize<'a>>(&mut self, body: &'a mut Vec<u8>) -> Result<T, Refusal> {
        self.parse(body)
            .map_err(|e| Refusal::invalid("", format!("request body: {e}")))
    }
}

/// A string or a list of strings (`stop`), as a list.
#[derive(Debug, Default)]
pub struct OneOrMany<'a>(pub Vec<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for OneOrMany<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![s]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<&'de str>()? {
                    all.push(s);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(V)
    }
}

/// Message content: a plain string, or a list of parts (blocks).
#[derive(Debug)]
pub enum Content<'a, P> {
    Text(&'a str),
    Parts(Vec<P>),
}

impl<'de: 'a, 'a, P: Deserialize<'de>> Deserialize<'de> for Content<'a, P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<P>(PhantomData<P>);
        impl<'de, P: Deserialize<'de>> Visitor<'de> for V<P> {
            type Value = Content<'de, P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(p) = seq.next_element::<P>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V(PhantomData)).map(|c| match c {
            Content::Text(t) => Content::Text(t),
            Content::Parts(p) => Content::Parts(p),
        })
    }
}

/// Any JSON value, kept to be written out again as JSON text (a tool's schema, a tool
/// call's input).
#[derive(Debug)]
pub struct Json<'a>(pub simd_json::BorrowedValue<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        simd_json::BorrowedValue::<'de>::deserialize(d).map(Json)
    }
}

impl Json<'_> {
    /// The value as compact JSON text.
    #[must_use]
    pub fn text(&self) -> Cow<'static, str> {
        Cow::Owned(self.0.encode())
    }

    /// Whether the value is an object.
    #[must_use]
    pub fn is_object(&self) -> bool {
        matches!(self.0, simd_json::BorrowedValue::Object(_))
    }
}
