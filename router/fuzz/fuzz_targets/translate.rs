//! Every upstream dialect's answer decoder, joined to each client encoder, on any bytes — as a
//! stream (SSE, or AWS event-stream frames for Bedrock) and as a whole answer, fed in pieces
//! whose sizes the input chooses: it must not panic, and splitting must not change what the
//! client gets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::dialect::Wire;
use switchyard::dialect::de::Parser;
use switchyard::dialect::translate::{Options, Translator};

const FROM: [Wire; 5] = [
    Wire::OpenAi,
    Wire::Anthropic,
    Wire::Bedrock,
    Wire::BedrockInvoke,
    Wire::Gemini,
];

fn run(from: Wire, to: Wire, stream: bool, data: &[u8], split: usize) -> (Vec<u8>, bool) {
    let mut parser = Parser::default();
    let o = Options {
        stream,
        include_usage: true,
        created: 1,
        id: "id",
        model: "m",
        error_status: None,
        endpoint: "fuzz",
    };
    let mut t = Translator::new(from, to, &o, &mut parser);
    let mut out = Vec::new();
    for piece in data.chunks(split.max(1)) {
        if t.push(piece, &mut out).is_err() {
            return (out, false);
        }
    }
    let ok = t.finish(&mut out).is_ok();
    (out, ok)
}

fuzz_target!(|input: &[u8]| {
    let Some((&choice, data)) = input.split_first() else {
        return;
    };
    let from = FROM[usize::from(choice) % FROM.len()];
    let to = if choice & 0x10 == 0 { Wire::OpenAi } else { Wire::Anthropic };
    let stream = choice & 0x20 == 0;
    let split = usize::from(choice >> 6) * 7 + 1;
    let whole = run(from, to, stream, data, data.len());
    let pieces = run(from, to, stream, data, split);
    if stream {
        assert_eq!(whole, pieces);
    }
});
