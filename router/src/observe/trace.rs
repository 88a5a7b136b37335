//! W3C Trace Context (`traceparent`): the trace a request runs under — the client's, when it
//! sent a valid `traceparent`, or a new one — and the ids of the router's own spans.

/// A request's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub trace_id: [u8; 16],
    /// The client's span (the parent of ours), when it sent one.
    pub parent: Option<[u8; 8]>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl Context {
    /// The client's `traceparent` (version 00 layout; a later version's first four fields
    /// are read the same way, as the spec asks), or `None` when absent or malformed (an
    /// all-zero id is invalid).
    #[must_use]
    pub fn parse(header: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(header).ok()?.trim();
        let mut parts = text.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = unhex(trace)?;
        let parent: [u8; 8] = unhex(parent)?;
        let [flags]: [u8; 1] = unhex(flags)?;
        unhex::<1>(version)?;
        if trace_id == [0; 16] || parent == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent: Some(parent),
            flags,
        })
    }

    /// A new trace (sampled), its id from `random`.
    #[must_use]
    pub fn start(random: u128) -> Self {
        let mut trace_id = random.to_be_bytes();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self {
            trace_id,
            parent: None,
            flags: 1,
        }
    }

    /// The trace id, as the audit record holds it.
    #[must_use]
    pub fn id(&self) -> TraceId {
        TraceId(self.trace_id)
    }

    /// The `traceparent` value naming `span` as the parent.
    #[must_use]
    pub fn header(&self, span: [u8; 8]) -> Traceparent {
        let mut v = *b"00-________________________________-________________-__";
        crate::codec::hex_to(&mut v[3..35], &self.trace_id);
        crate::codec::hex_to(&mut v[36..52], &span);
        crate::codec::hex_to(&mut v[53..55], &[self.flags]);
        Traceparent(v)
    }
}

/// A trace id as an audit record holds it: bytes on the request path (no allocation per
/// request), 32 lower-case hex digits wherever it is written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// The 32 hex digits, on the stack.
    #[must_use]
    pub fn hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        crate::codec::hex_to(&mut out, &self.0);
        out
    }

    /// 32 hex digits (either case), as a stored record spells it.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        crate::codec::unhex(text).map(Self)
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `traceparent` header value (version 00), built on the stack: one is written per
/// upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traceparent([u8; 55]);

impl Traceparent {
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Exactly `2N` lower-case hex digits (the spec forbids upper case).
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    crate::codec::unhex(s)
}

/// A span id from `random` (never all zero).
#[must_use]
pub fn span_id(random: u64) -> [u8; 8] {
    random.max(1).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_example_and_refuses_bad_ones() {
        let c = Context::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap_or_else(|| panic!("valid traceparent"));
        assert_eq!(c.id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            TraceId::parse("4BF92F3577B34DA6A3CE929D0E0E4736"),
            Some(c.id())
        );
        assert_eq!(c.flags, 1);
        assert_eq!(
            c.header(span_id(0xabc)).as_bytes(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"garbage",
        ] {
            assert_eq!(
                Context::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may append fields.
        assert!(
            Context::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what")
                .is_some()
        );
    }
}
