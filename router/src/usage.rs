//! Token usage reported by the upstream, captured from the tail of the relayed body.
//!
//! OpenAI-compatible servers report `usage` at the end of a JSON response and, for streams,
//! in the last chunk before `[DONE]` (when asked with `stream_options.include_usage`). The
//! relay feeds every body byte through [`UsageTap`], which keeps only the last few KiB, so
//! capturing usage costs no buffering of the response.

use memchr::memmem;

/// Bytes of the body tail kept.
const TAIL: usize = 4096;

/// Prompt and completion token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Keeps the tail of a body and finds the last `usage` block in it.
#[derive(Debug)]
pub struct UsageTap<'b> {
    tail: &'b mut Vec<u8>,
}

impl<'b> UsageTap<'b> {
    /// A tap keeping its tail in `buf` (cleared first).
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Self { tail: buf }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail
                .extend_from_slice(data.get(data.len() - TAIL..).unwrap_or_default());
            return;
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
        }
    }

    /// The last usage block seen, if any.
    #[must_use]
    pub fn usage(&self) -> Option<Usage> {
        find_usage(self.tail)
    }
}

/// Finds the last `"usage": {...}` in `text` and reads its token counts.
#[must_use]
pub fn find_usage(text: &[u8]) -> Option<Usage> {
    let at = memmem::rfind(text, b"\"usage\"")?;
    let block = text.get(at..)?;
    let end = memchr::memchr(b'}', block).unwrap_or(block.len());
    let block = block.get(..end)?;
    let number = |key: &[u8]| -> Option<u64> {
        let k = memmem::find(block, key)?;
        let rest = block.get(k + key.len()..)?;
        let rest = rest
            .iter()
            .position(|b| b.is_ascii_digit())
            .and_then(|i| rest.get(i..))?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok()
    };
    Some(Usage {
        prompt_tokens: number(b"\"prompt_tokens\"")?,
        completion_tokens: number(b"\"completion_tokens\"").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn json_and_stream_usage() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#;
        assert_eq!(
            find_usage(json),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 34
            })
        );
        let mut buf = Vec::new();
        let mut tap = UsageTap::new(&mut buf);
        for part in [
            &b"data: {\"choices\":[{\"delta\":{}}]}\n\n"[..],
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\": 7,",
            b" \"completion_tokens\": 9}}\n\ndata: [DONE]\n\n",
        ] {
            tap.feed(part);
        }
        assert_eq!(
            tap.usage(),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 9
            })
        );
        let mut buf2 = Vec::new();
        let mut big = UsageTap::new(&mut buf2);
        big.feed(&vec![b'x'; 100_000]);
        big.feed(json);
        assert_eq!(big.usage().unwrap().completion_tokens, 34);
        assert_eq!(find_usage(b"{\"choices\":[]}"), None);
    }
}
