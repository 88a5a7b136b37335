//! A fast hash without a key (FxHash's mixing) for maps whose keys come from the table —
//! endpoint ids, metric label values, attribute tuples a replay remembers — and never from a
//! client on a path where collisions could be forced: SipHash's resistance to chosen keys is
//! not needed there, and it costs several times more per lookup. (Here, in the crate both
//! the router and the compiler depend on.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash's multiplier.
const K: u64 = 0x517c_c1b7_2722_0a95;

/// The hasher: a word at a time, rotate, xor, multiply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        // The last 1–7 bytes as one word, zero-padded (a string and the same string with
        // NULs added then hash alike: a collision, which the maps resolve by comparing keys).
        // (In fixed-size pieces: a copy of variable length is a call to `memcpy`.)
        let mut rest = chunks.remainder();
        if rest.is_empty() {
            return;
        }
        let mut word = 0u64;
        let mut shift = 0;
        if let Some((four, tail)) = rest.split_first_chunk::<4>() {
            word = u64::from(u32::from_le_bytes(*four));
            shift = 32;
            rest = tail;
        }
        if let Some((two, tail)) = rest.split_first_chunk::<2>() {
            word |= u64::from(u16::from_le_bytes(*two)) << shift;
            shift += 16;
            rest = tail;
        }
        if let Some(&b) = rest.first() {
            word |= u64::from(b) << shift;
        }
        self.add(word);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A map keyed by table-made values.
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

#[cfg(test)]
mod tests {
    use std::hash::{Hash, Hasher};

    use super::Fx;

    fn of(parts: &[&str]) -> u64 {
        let mut h = Fx::default();
        for p in parts {
            p.hash(&mut h);
        }
        h.finish()
    }

    #[test]
    fn strings_are_kept_apart_at_their_ends() {
        // `str`'s `Hash` ends each string with a separator.
        assert_ne!(of(&["ab", "c"]), of(&["a", "bc"]));
        assert_ne!(of(&["gpu-a"]), of(&["gpu-b"]));
        assert_eq!(
            of(&["a long endpoint id", "x"]),
            of(&["a long endpoint id", "x"])
        );
    }
}
