//! The AWS event-stream framing Bedrock streams in (`application/vnd.amazon.eventstream`),
//! decoded incrementally over whatever pieces the socket gives (`research/dialects.md` §C6).
//!
//! A frame: `[total u32][headers_len u32][prelude CRC u32][headers][payload][message CRC u32]`,
//! big-endian, both CRCs standard CRC-32 (IEEE, as zlib — not CRC32C) over the bytes before
//! them. A header: `[name_len u8][name][type u8][value]`. Every check a peer could fail is
//! made — both CRCs, lengths that fit, headers that parse to their exact length, no repeated
//! header — so that a cut or corrupt stream is an error, never a shorter answer. Nothing here
//! panics on any input (fuzz target `router/fuzz/fuzz_targets/eventstream.rs`).

use crc_fast::{CrcAlgorithm, checksum};

/// The largest frame accepted: botocore's limits (24 MiB payload, 128 KiB headers) plus the
/// frame's own 16 bytes.
pub const MAX_FRAME: usize = 24 * 1024 * 1024 + 128 * 1024 + 16;

const PRELUDE: usize = 12;
const MIN_FRAME: usize = 16;

/// Why a stream of frames cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an event-stream frame declares {0} bytes (the most accepted is {MAX_FRAME})")]
    TooLarge(usize),
    #[error("an event-stream frame declares {total} bytes with {headers} bytes of headers")]
    BadLengths { total: usize, headers: usize },
    #[error("an event-stream frame's prelude checksum does not match")]
    PreludeChecksum,
    #[error("an event-stream frame's checksum does not match")]
    MessageChecksum,
    #[error("an event-stream frame's headers are malformed: {0}")]
    BadHeaders(&'static str),
    #[error("the event stream ended inside a frame ({0} bytes of it came)")]
    Truncated(usize),
}

/// One header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    Timestamp(i64),
    Uuid(&'a [u8; 16]),
}

/// A decoded frame, borrowing its headers and payload.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The headers, in order (they were checked when the frame was decoded).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + use<'a> {
        let mut rest = self.headers;
        std::iter::from_fn(move || {
            let (name, value, after) = header(rest).ok()??;
            rest = after;
            Some((name, value))
        })
    }

    /// A string header's value (`:message-type`, `:event-type`, `:exception-type`, …).
    #[must_use]
    pub fn string(&self, name: &str) -> Option<&'a str> {
        self.headers().find_map(|(n, v)| match v {
            Value::String(s) if n == name => Some(s),
            _ => None,
        })
    }
}

/// Reads frames from the bytes of a stream as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
}

impl Decoder {
    /// Takes the next bytes; `each` is called for every frame they complete, in order.
    /// After an error the stream cannot be read further.
    pub fn push(&mut self, data: &[u8], mut each: impl FnMut(Frame<'_>)) -> Result<(), FrameError> {
        self.buf.extend_from_slice(data);
        loop {
            let rest = self.buf.get(self.start..).unwrap_or_default();
            match frame(rest)? {
                Some((f, len)) => {
                    each(f);
                    self.start += len;
                }
                None => break,
            }
        }
        // Keep only the incomplete frame's bytes.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    /// The stream ended: an error when it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() - self.start {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC is 32 bits wide; the crate returns it in a u64.
    u32::try_from(checksum(CrcAlgorithm::Crc32IsoHdlc, bytes)).unwrap_or(u32::MAX)
}

/// The frame at the start of `b` and its length, `None` when `b` does not hold all of it yet.
/// Checks the prelude as soon as it is here, so that a bad length is refused before its
/// bytes are waited for.
pub fn frame(b: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let (Some(total), Some(headers_len), Some(prelude_crc)) =
        (u32_at(b, 0), u32_at(b, 4), u32_at(b, 8))
    else {
        return Ok(None);
    };
    if crc32(b.get(..8).unwrap_or_default()) != prelude_crc {
        return Err(FrameError::PreludeChecksum);
    }
    let total = total as usize;
    let headers_len = headers_len as usize;
    if total > MAX_FRAME {
        return Err(FrameError::TooLarge(total));
    }
    if total < MIN_FRAME || headers_len > total - MIN_FRAME {
        return Err(FrameError::BadLengths {
            total,
            headers: headers_len,
        });
    }
    let Some(whole) = b.get(..total) else {
        return Ok(None);
    };
    let body_end = total - 4;
    if u32_at(whole, body_end) != Some(crc32(whole.get(..body_end).unwrap_or_default())) {
        return Err(FrameError::MessageChecksum);
    }
    let headers = whole
        .get(PRELUDE..PRELUDE + headers_len)
        .unwrap_or_default();
    check_headers(headers)?;
    let payload = whole
        .get(PRELUDE + headers_len..body_end)
        .unwrap_or_default();
    Ok(Some((Frame { headers, payload }, total)))
}

/// Every header parses, to exactly the headers' length, and no name comes twice.
fn check_headers(mut b: &[u8]) -> Result<(), FrameError> {
    let mut names: Vec<&str> = Vec::new();
    while !b.is_empty() {
        let Some((name, _, rest)) = header(b)? else {
            return Err(FrameError::BadHeaders("a header runs past the headers"));
        };
        if names.contains(&name) {
            return Err(FrameError::BadHeaders("a header name comes twice"));
        }
        names.push(name);
        b = rest;
    }
    Ok(())
}

type Header<'a> = (&'a str, Value<'a>, &'a [u8]);

/// The header at the start of `b` and what follows it; `Ok(None)` when `b` is empty or ends
/// inside it.
fn header(b: &[u8]) -> Result<Option<Header<'_>>, FrameError> {
    let Some((&name_len, rest)) = b.split_first() else {
        return Ok(None);
    };
    if name_len == 0 {
        return Err(FrameError::BadHeaders("a header with an empty name"));
    }
    let Some((name, rest)) = rest.split_at_checked(usize::from(name_len)) else {
        return Ok(None);
    };
    let name = std::str::from_utf8(name)
        .map_err(|_| FrameError::BadHeaders("a name that is not UTF-8"))?;
    let Some((&kind, rest)) = rest.split_first() else {
        return Ok(None);
    };
    let fixed = |n: usize| rest.split_at_checked(n);
    let sized = || {
        let (len, rest) = rest.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        rest.split_at_checked(len)
    };
    let parsed = match kind {
        0 => Some((Value::Bool(true), rest)),
        1 => Some((Value::Bool(false), rest)),
        2 => fixed(1).map(|(v, r)| (Value::Byte(i8::from_be_bytes([v[0]])), r)),
        3 => fixed(2).map(|(v, r)| (Value::Short(i16::from_be_bytes([v[0], v[1]])), r)),
        4 => fixed(4)
            .and_then(|(v, r)| Some((Value::Int(i32::from_be_bytes(v.try_into().ok()?)), r))),
        5 | 8 => fixed(8).and_then(|(v, r)| {
            let n = i64::from_be_bytes(v.try_into().ok()?);
            Some((
                if kind == 5 {
                    Value::Long(n)
                } else {
                    Value::Timestamp(n)
                },
                r,
            ))
        }),
        6 => sized().map(|(v, r)| (Value::Bytes(v), r)),
        7 => match sized() {
            Some((v, r)) => Some((
                Value::String(
                    std::str::from_utf8(v)
                        .map_err(|_| FrameError::BadHeaders("a string that is not UTF-8"))?,
                ),
                r,
            )),
            None => None,
        },
        9 => fixed(16).and_then(|(v, r)| Some((Value::Uuid(v.try_into().ok()?), r))),
        _ => return Err(FrameError::BadHeaders("an unknown header value type")),
    };
    Ok(parsed.map(|(v, r)| (name, v, r)))
}

/// Writes one frame (the tests' and the mock's encoder; string headers only).
pub fn encode(headers: &[(&str, &str)], payload: &[u8], out: &mut Vec<u8>) {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = MIN_FRAME + h.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden frame of `research/dialects.md` §C6, decoded there by botocore.
    const GOLDEN: &str = "0000009400000057b4ab9aee0b3a6576656e742d74797065070011636f6e74656e74426c6f636b44656c74610d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b22636f6e74656e74426c6f636b496e646578223a302c2264656c7461223a7b2274657874223a224869227d7d1f944657";

    fn golden() -> Vec<u8> {
        (0..GOLDEN.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    fn decode_all(bytes: &[u8], split: usize) -> Result<Vec<(String, Vec<u8>)>, FrameError> {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            d.push(piece, |f| {
                got.push((
                    f.string(":event-type").unwrap_or_default().to_owned(),
                    f.payload.to_vec(),
                ));
            })?;
        }
        d.finish()?;
        Ok(got)
    }

    #[test]
    fn the_golden_frame_decodes_and_our_encoder_writes_it_byte_for_byte() {
        let g = golden();
        let (f, len) = frame(&g).unwrap().unwrap();
        assert_eq!(len, 148);
        assert_eq!(f.string(":event-type"), Some("contentBlockDelta"));
        assert_eq!(f.string(":content-type"), Some("application/json"));
        assert_eq!(f.string(":message-type"), Some("event"));
        assert_eq!(
            f.payload,
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#
        );
        let mut mine = Vec::new();
        encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            f.payload,
            &mut mine,
        );
        assert_eq!(mine, g);
    }

    #[test]
    fn frames_split_at_every_byte_decode_the_same() {
        let mut stream = golden();
        encode(
            &[(":event-type", "messageStop")],
            br#"{"stopReason":"end_turn"}"#,
            &mut stream,
        );
        encode(&[], b"", &mut stream);
        for split in 1..=stream.len() {
            let got = decode_all(&stream, split).unwrap();
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[1].0, "messageStop");
            assert!(got[2].1.is_empty());
        }
    }

    #[test]
    fn corrupt_frames_are_refused() {
        let g = golden();
        let mut bad = g.clone();
        bad[9] ^= 1;
        assert_eq!(frame(&bad).unwrap_err(), FrameError::PreludeChecksum);
        let mut bad = g.clone();
        bad[100] ^= 1;
        assert_eq!(frame(&bad).unwrap_err(), FrameError::MessageChecksum);
        let mut bad = g.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(frame(&bad).unwrap_err(), FrameError::MessageChecksum);
        // A cut stream is an error at its end, not a shorter answer.
        assert_eq!(
            decode_all(&g[..100], 7).unwrap_err(),
            FrameError::Truncated(100)
        );
    }

    /// A prelude (with a good checksum) declaring impossible lengths.
    fn prelude(total: u32, headers: u32) -> Vec<u8> {
        let mut b = total.to_be_bytes().to_vec();
        b.extend_from_slice(&headers.to_be_bytes());
        let crc = crc32(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn impossible_lengths_are_refused_before_their_bytes_are_awaited() {
        assert_eq!(
            frame(&prelude(u32::MAX, 0)).unwrap_err(),
            FrameError::TooLarge(u32::MAX as usize)
        );
        assert!(matches!(
            frame(&prelude(15, 0)).unwrap_err(),
            FrameError::BadLengths { .. }
        ));
        assert!(matches!(
            frame(&prelude(100, 90)).unwrap_err(),
            FrameError::BadLengths { .. }
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let with_headers = |h: &[u8]| {
            let total = u32::try_from(MIN_FRAME + h.len()).unwrap_or(0);
            let mut b = prelude(total, u32::try_from(h.len()).unwrap_or(0));
            b.extend_from_slice(h);
            let crc = crc32(&b);
            b.extend_from_slice(&crc.to_be_bytes());
            frame(&b).map(|f| f.map(|(f, _)| f.headers().count()))
        };
        assert_eq!(with_headers(b"\x01a\x00"), Ok(Some(1)));
        assert!(with_headers(b"\x01a\x0a").is_err(), "unknown type");
        assert!(
            with_headers(b"\x01a\x07\x00\x05ab").is_err(),
            "string past the end"
        );
        assert!(with_headers(b"\x00\x00").is_err(), "empty name");
        assert!(
            with_headers(b"\x01a\x00\x01a\x01").is_err(),
            "repeated name"
        );
        assert!(with_headers(b"\x01a\x07\x00\x01\xff").is_err(), "not UTF-8");
        assert_eq!(
            with_headers(b"\x01a\x04\x00\x00\x00\x07\x01b\x09AAAAAAAAAAAAAAAA"),
            Ok(Some(2))
        );
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: no panic, and the cut changes nothing. Half the inputs
        /// are valid frames with a byte flipped, so the checks past the prelude run too.
        #[test]
        fn any_input_decodes_the_same_whatever_the_split(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            flip in proptest::num::usize::ANY,
            split in 1usize..64,
            framed in proptest::bool::ANY,
        ) {
            let input = if framed {
                let mut b = Vec::new();
                encode(&[(":event-type", "chunk")], &payload, &mut b);
                let at = flip % (b.len() + 1);
                if let Some(x) = b.get_mut(at) {
                    *x ^= 0x5a;
                }
                b.extend_from_slice(&noise);
                b
            } else {
                noise
            };
            let whole = decode_all(&input, input.len());
            let pieces = decode_all(&input, split);
            proptest::prop_assert_eq!(whole, pieces);
        }
    }
}
