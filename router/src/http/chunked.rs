//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally.
//!
//! [`Decoder::decode`] consumes what it can of the bytes it is given and hands back the data
//! it found as a range of that input, so request and response bodies are decoded without
//! copying. Chunk extensions and trailer fields are accepted and dropped. Line lengths are
//! capped so a peer cannot make the decoder buffer without bound. Bare `LF` line endings are
//! refused everywhere — size lines, after data, trailers and the blank line that ends them
//! (lenient line parsing is how request smuggling starts); request heads follow the same
//! rule ([`super::request`]).

use std::ops::Range;

/// Longest chunk-size line (digits plus extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Largest total trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// A malformed chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(pub &'static str);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// After the size: extensions up to CR.
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf {
        blank: bool,
    },
    Done,
}

/// What one call to [`Decoder::decode`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes: this range of the input.
    Data(Range<usize>),
    /// The body is complete.
    End,
}

/// Incremental chunked-body decoder.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    /// Bytes left in the current chunk.
    remaining: u64,
    line: usize,
    trailers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            remaining: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Whether the terminating chunk and trailers have been read.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`. Returns how many bytes were consumed and, when it
    /// found some, a data range within `input` or the end of the body. Call again with the
    /// unconsumed rest; `(n, None)` with `n == input.len()` means more input is needed.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Chunk>), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    if let Some(v) = crate::codec::digit(b) {
                        if digits >= 15 {
                            return Err(ChunkError("chunk size is too large"));
                        }
                        self.remaining = self.remaining << 4 | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError("chunk size is not a hex number"));
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Extension;
                        self.line = 0;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else {
                        return Err(ChunkError("invalid character in chunk size"));
                    }
                    i += 1;
                }
                State::Extension => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError("invalid character in chunk extension"));
                    }
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("chunk extension is too long"));
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line must end with CRLF"));
                    }
                    i += 1;
                    if self.remaining == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let avail = input.len() - i;
                    let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i + take, Some(Chunk::Data(i..i + take))));
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data must be followed by CRLF"));
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data must be followed by CRLF"));
                    }
                    self.state = State::Size { digits: 0 };
                    self.remaining = 0;
                    i += 1;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { blank: true };
                    } else if b == b'\n' {
                        // `0\r\n\n`: a lenient peer ends the body here, a strict one reads on
                        // into the next request — the desync request smuggling needs.
                        return Err(ChunkError("the last chunk must end with CRLF CRLF"));
                    } else {
                        self.state = State::Trailer;
                        self.line = 1;
                        self.trailers += 1;
                    }
                    i += 1;
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { blank: false };
                    } else if b == b'\n' {
                        return Err(ChunkError("trailer line must end with CRLF"));
                    }
                    self.line += 1;
                    self.trailers += 1;
                    if self.line > MAX_LINE || self.trailers > MAX_TRAILERS {
                        return Err(ChunkError("trailer section is too large"));
                    }
                    i += 1;
                }
                State::TrailerLf { blank } => {
                    if b != b'\n' {
                        return Err(ChunkError("trailer line must end with CRLF"));
                    }
                    i += 1;
                    if blank {
                        self.state = State::Done;
                        return Ok((i, Some(Chunk::End)));
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok((i, Some(Chunk::End))),
            }
        }
        if self.state == State::Done {
            return Ok((i, Some(Chunk::End)));
        }
        Ok((i, None))
    }
}

/// Decodes all of `input` as one chunked body, appending the data to `out`.
/// Returns whether the body ended and how many bytes were consumed.
pub fn decode_into(
    decoder: &mut Decoder,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(bool, usize), ChunkError> {
    let mut at = 0;
    loop {
        let rest = input.get(at..).unwrap_or_default();
        let (used, found) = decoder.decode(rest)?;
        match found {
            Some(Chunk::Data(r)) => {
                out.extend_from_slice(rest.get(r).unwrap_or_default());
                at += used;
            }
            Some(Chunk::End) => return Ok((true, at + used)),
            None => return Ok((false, at + used)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    const BODY: &[u8] = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";

    #[test]
    fn whole_body() {
        let mut out = Vec::new();
        let (done, used) = decode_into(&mut Decoder::new(), BODY, &mut out).unwrap();
        assert!(done);
        assert_eq!(out, b"hello, world");
        assert_eq!(&BODY[used..], b"NEXT");
    }

    #[test]
    fn every_split_point_gives_the_same_body() {
        let end = BODY.len() - 4;
        for cut in 0..BODY.len() {
            let mut dec = Decoder::new();
            let mut out = Vec::new();
            let (done, used) = decode_into(&mut dec, &BODY[..cut], &mut out).unwrap();
            let consumed = if done {
                used
            } else {
                assert_eq!(used, cut, "a partial body is consumed whole (cut at {cut})");
                let (done2, used2) = decode_into(&mut dec, &BODY[cut..], &mut out).unwrap();
                assert!(done2, "cut at {cut}");
                cut + used2
            };
            assert_eq!(consumed, end, "cut at {cut}");
            assert_eq!(out, b"hello, world", "cut at {cut}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        let mut done = false;
        for b in BODY.chunks(1) {
            if done {
                break;
            }
            done = decode_into(&mut dec, b, &mut out).unwrap().0;
        }
        assert!(done);
        assert_eq!(out, b"hello, world");
    }

    #[test]
    fn malformed_bodies() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"ffffffffffffffffff\r\n",
            b"-1\r\n",
            b"0\r\nTrailer: x\n",
            b"0\r\n\n",
            b"0\r\nTrailer: x\r\n\n",
            b"5\r\nhello\n0\r\n\r\n",
        ] {
            assert!(
                decode_into(&mut Decoder::new(), bad, &mut Vec::new()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = [b"1;".as_slice(), &[b'a'; MAX_LINE + 1]].concat();
        assert!(decode_into(&mut Decoder::new(), &long_ext, &mut Vec::new()).is_err());
    }
}
