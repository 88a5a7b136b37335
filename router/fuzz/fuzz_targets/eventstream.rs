//! The AWS event-stream decoder on any bytes, fed in pieces whose sizes the input chooses:
//! it must not panic, and splitting must not change what it decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::dialect::eventstream::{Decoder, FrameError};

fn decode(data: &[u8], split: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut d = Decoder::default();
    let mut frames = Vec::new();
    for piece in data.chunks(split.max(1)) {
        if let Err(e) = d.push(piece, |f| {
            let _ = f.headers().count();
            frames.push(f.payload.to_vec());
        }) {
            return (frames, Some(e));
        }
    }
    (frames, d.finish().err())
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let whole = decode(data, data.len());
    let pieces = decode(data, usize::from(split));
    assert_eq!(whole, pieces);
});
