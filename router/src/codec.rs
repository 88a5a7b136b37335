//! The router's small text codings, once: lowercase hex (key hashes, ids, chunk sizes) and
//! percent-encoding (URL path segments, Hive partition values, query strings).

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Writes the lowercase hex of `bytes` into the front of `out` (twice as long; no
/// allocation, for ids written per request).
pub fn hex_to(out: &mut [u8], bytes: &[u8]) {
    // Four bytes at a time, in a word: their nibbles spread one to a byte, then each made a
    // digit by adding `'0'`, and `'a' - '0' - 10` more where the nibble is 10 or more.
    let mut outs = out.chunks_exact_mut(8);
    let mut ins = bytes.chunks_exact(4);
    for (eight, four) in (&mut outs).zip(&mut ins) {
        let mut word = [0u8; 4];
        word.copy_from_slice(four);
        let mut v = u64::from(u32::from_be_bytes(word));
        v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
        v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
        v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        let digits = v + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10);
        eight.copy_from_slice(&digits.to_be_bytes());
    }
    let rest = bytes.len() / 4 * 4;
    let done = rest * 2;
    for (pair, &b) in out
        .get_mut(done..)
        .unwrap_or_default()
        .chunks_exact_mut(2)
        .zip(bytes.get(rest..).unwrap_or_default())
    {
        pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
}

/// The bytes of a hex string of exactly `N` bytes (either case).
#[must_use]
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        *slot = (digit(*pair.first()?)? << 4) | digit(*pair.get(1)?)?;
    }
    Some(out)
}

/// The value of one hex digit.
#[must_use]
pub fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in lowercase hex, no leading zeros (chunk sizes).
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Appends `n` as exactly 16 lowercase hex digits (ids).
pub fn push_hex16(out: &mut [u8; 16], n: u64) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Appends `s` as a JSON string literal (RFC 8259 §7: `"`, `\\` and control characters
/// escaped; everything else, UTF-8 included, as it is). Translated answers are mostly text, so
/// this is on the streaming path: plain bytes are found eight at a time (SWAR) and copied in
/// runs.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[run..i]` is clean and not yet copied.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean text 16 bytes at a time, then 8.
        while let Some(w) = bytes.get(i..).and_then(<[u8]>::first_chunk::<16>) {
            let (a, b) = w.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
            let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
            if needs_escape(a) || needs_escape(b) {
                break;
            }
            i += 16;
        }
        if let Some(w) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>)
            && !needs_escape(u64::from_le_bytes(*w))
        {
            i += 8;
            continue;
        }
        // A word with something to escape (or the last few bytes): byte by byte.
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes.iter().enumerate().take(end).skip(i) {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..0x20 | 0x7f => b"",
                _ => continue,
            };
            out.extend_from_slice(bytes.get(run..j).unwrap_or_default());
            run = j + 1;
            if escape.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(escape);
            }
        }
        i = end;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// Whether any of the eight bytes of `w` must be escaped in a JSON string: below 0x20, `"`,
/// `\\` or DEL. (The classic "has a zero byte" test; it may also flag a byte next to a real
/// hit, which only sends that word to the byte-by-byte path.)
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space
        | zero(w ^ (ONES * b'"' as u64))
        | zero(w ^ (ONES * b'\\' as u64))
        | zero(w ^ (ONES * 0x7f)))
        != 0
}

/// `bytes` in standard base64 (RFC 4648 §4, padded).
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `bytes` in base64url without padding (RFC 4648 §5; JWTs).
#[must_use]
pub fn base64url(bytes: &[u8]) -> String {
    base64(bytes)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// Appends the bytes of standard base64 text (RFC 4648 §4; padding optional) to `out`;
/// `None` for a character outside the alphabet or a length no encoding has.
#[must_use]
pub fn base64_decode(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    out.reserve(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..chunk.len()).unwrap_or_default());
    }
    Some(())
}

/// Appends `s` percent-encoded: bytes `keep` accepts as they are, every other byte as `%XX`.
pub fn percent_encode(s: &str, keep: impl Fn(usize, u8) -> bool, out: &mut String) {
    for (i, b) in s.bytes().enumerate() {
        if keep(i, b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)].to_ascii_uppercase()));
            out.push(char::from(HEX[usize::from(b & 0xf)].to_ascii_uppercase()));
        }
    }
}

/// RFC 3986 unreserved characters: what a URL path segment keeps as is.
#[must_use]
pub fn unreserved(_: usize, b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in a query string);
/// `None` for a bad escape or bytes that are not UTF-8.
#[must_use]
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = digit(*b.get(i + 1)?)?;
                let lo = digit(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from((i * 37 + 11) % 256).unwrap_or(0))
                .collect();
            let text = base64(&bytes);
            let mut back = Vec::new();
            assert_eq!(base64_decode(text.as_bytes(), &mut back), Some(()));
            assert_eq!(back, bytes, "{text}");
            let mut unpadded = Vec::new();
            assert_eq!(
                base64_decode(text.trim_end_matches('=').as_bytes(), &mut unpadded),
                Some(())
            );
            assert_eq!(unpadded, bytes);
        }
        assert_eq!(base64_decode(b"ab*d", &mut Vec::new()), None);
        assert_eq!(base64_decode(b"abcde", &mut Vec::new()), None);
    }

    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        // Word at a time and byte at a time agree, for every byte value in every place.
        let all: Vec<u8> = (0..=255u8).chain(0..=6).collect();
        for len in [1, 3, 4, 5, 8, 16, 25, all.len()] {
            for start in 0..=all.len() - len {
                let bytes = &all[start..start + len];
                let mut out = vec![0u8; 2 * len];
                hex_to(&mut out, bytes);
                assert_eq!(std::str::from_utf8(&out).unwrap(), hex(bytes), "{bytes:?}");
            }
        }
        assert_eq!(unhex::<3>("00ABff"), Some([0x00, 0xab, 0xff]));
        assert_eq!(unhex::<3>("00abf"), None);
        assert_eq!(unhex::<1>("zz"), None);
        let mut out = Vec::new();
        push_hex(&mut out, 0x1a2b);
        push_hex(&mut out, 0);
        assert_eq!(out, b"1a2b0");
        let mut id = [0u8; 16];
        push_hex16(&mut id, 0xabc);
        assert_eq!(&id, b"0000000000000abc");
        let mut enc = String::new();
        percent_encode("gpt 4o/é", unreserved, &mut enc);
        assert_eq!(enc, "gpt%204o%2F%C3%A9");
        assert_eq!(percent_decode(&enc, false).as_deref(), Some("gpt 4o/é"));
        assert_eq!(percent_decode("a+b%2", true), None);
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let mut json = Vec::new();
        write_json_string(&mut json, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(json, "\"a\\\"b\\\\c\\nd\\u0001é\\u007f\"".as_bytes());
        // Every byte that needs escaping, at every position of a word, agrees with serde_json.
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', 'é', ' ', '~'] {
            for at in 0..20 {
                let mut text: String = "abcdefghijklmnopqrst".chars().take(at).collect();
                text.push(special);
                text.push_str("uvwxyz0123456789");
                let mut ours = Vec::new();
                write_json_string(&mut ours, &text);
                let back: String = serde_json::from_slice(&ours).unwrap_or_default();
                assert_eq!(back, text, "{}", String::from_utf8_lossy(&ours));
            }
        }
    }
}
