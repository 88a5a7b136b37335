//! Server-Sent Events (the WHATWG HTML "server-sent events" section): cutting a byte stream
//! into events whatever the line endings, reading an event's `data`, and writing one.

use std::borrow::Cow;

/// Largest event held back until it is complete. A longer one means the stream is not one we
/// can follow: the translator refuses it, the meter passes the rest on unread.
pub const MAX_EVENT: usize = 1024 * 1024;

/// The length of the first complete event in `buf` (through the blank line that ends it),
/// if there is one. Lines end with LF, CRLF or CR (the SSE specification allows all three).
pub fn event_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', buf.get(from..)?) {
        let at = from + i;
        let eol = match (buf.get(at), buf.get(at + 1)) {
            (Some(b'\r'), Some(b'\n')) => at + 2,
            // A CR at the very end may be the first half of a CRLF: wait for more.
            (Some(b'\r'), None) => return None,
            _ => at + 1,
        };
        match (buf.get(eol), buf.get(eol + 1)) {
            (Some(b'\n'), _) => return Some(eol + 1),
            (Some(b'\r'), Some(b'\n')) => return Some(eol + 2),
            (Some(b'\r'), Some(_)) => return Some(eol + 1),
            (Some(b'\r'), None) | (None, _) => return None,
            _ => from = eol,
        }
    }
    None
}

/// The data of an event: its `data:` lines joined with LF (one leading space dropped from
/// each); `None` when it has none.
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    for line in event.split(|&b| b == b'\n' || b == b'\r') {
        let Some(value) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match value.first() {
            Some(b':') => value.get(1..).unwrap_or_default(),
            None => value,
            Some(_) => continue,
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// The name of an event (its `event:` field), if it has one.
#[must_use]
pub fn event_name(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n' || b == b'\r').find_map(|line| {
        let value = line.strip_prefix(b"event:")?;
        Some(value.strip_prefix(b" ").unwrap_or(value))
    })
}

/// Appends one event: an optional `event:` line, then `data:` with the bytes `write` puts
/// (which must hold no line break: JSON written by our encoders never does).
pub fn write_event(out: &mut Vec<u8>, name: Option<&str>, write: impl FnOnce(&mut Vec<u8>)) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    write(out);
    out.extend_from_slice(b"\n\n");
}

/// Cuts bytes into whole events, holding back an incomplete last one.
#[derive(Debug, Default)]
pub struct Splitter {
    held: Vec<u8>,
}

impl Splitter {
    /// Appends `data` and calls `each` with every event now complete, in order. `Err` when
    /// an event grows past [`MAX_EVENT`].
    pub fn push(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), usize> {
        // The common case, nothing held: events are read straight from `data`.
        let mut input: &[u8] = data;
        let joined;
        if !self.held.is_empty() {
            self.held.extend_from_slice(data);
            joined = std::mem::take(&mut self.held);
            input = &joined;
        }
        let mut at = 0;
        while let Some(len) = event_len(input.get(at..).unwrap_or_default()) {
            each(input.get(at..at + len).unwrap_or_default());
            at += len;
        }
        let rest = input.get(at..).unwrap_or_default();
        if rest.len() > MAX_EVENT {
            return Err(rest.len());
        }
        self.held.clear();
        self.held.extend_from_slice(rest);
        Ok(())
    }

    /// The incomplete event held at the end of the stream (an unterminated last event).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn event_boundaries() {
        assert_eq!(event_len(b"data: x\n\nrest"), Some(9));
        assert_eq!(event_len(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_len(b"data: x\r\rrest"), Some(9));
        assert_eq!(event_len(b"data: x\r\n\r"), None);
        assert_eq!(event_len(b"data: x\n"), None);
        assert_eq!(event_len(b"data: x\r"), None);
        assert_eq!(event_len(b": comment\ndata: y\n\n"), Some(19));
        assert_eq!(
            event_data(b"event: e\ndata: a\ndata:b\n\n").as_deref(),
            Some(&b"a\nb"[..])
        );
        assert_eq!(event_name(b"event: ping\ndata: {}\n\n"), Some(&b"ping"[..]));
    }

    #[test]
    fn split_at_every_byte() {
        let stream = b"event: a\r\ndata: 1\r\n\r\ndata: 2\n\n: c\n\ndata: 3\r\r";
        for cut in 0..=stream.len() {
            let mut s = Splitter::default();
            let mut seen = Vec::new();
            s.push(&stream[..cut], |e| seen.push(e.to_vec())).unwrap();
            s.push(&stream[cut..], |e| seen.push(e.to_vec())).unwrap();
            // The last event's `\r\r` may yet be the start of `\r\n`: it is held.
            assert_eq!(seen.len(), 3, "cut at {cut}");
            seen.push(s.take_rest());
            assert_eq!(seen.concat(), stream, "cut at {cut}");
        }
    }
}
