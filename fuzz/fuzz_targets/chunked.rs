//! The chunked body decoder, in place: the same body, the same end and the same error however
//! the input is split, the body never larger than its limit nor than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_httpd::http::{ChunkedDecoder, Decoded, Status};

const MAX_BODY: u64 = 64 * 1024;

fn decode_in_pieces(raw: &[u8], step: usize) -> Result<Option<(Vec<u8>, u64)>, Status> {
    let mut buf = Vec::new();
    let mut decoder = ChunkedDecoder::new();
    for piece in raw.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        if decoder.decode(&mut buf, MAX_BODY, 1024)? == Decoded::Done {
            let body = buf[..decoder.body_len()].to_vec();
            assert!(decoder.raw_len() as usize <= raw.len());
            return Ok(Some((body, decoder.raw_len() as u64)));
        }
        assert!(decoder.body_len() as u64 <= MAX_BODY);
    }
    Ok(None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, raw)) = input.split_first() else {
        return;
    };
    let whole = decode_in_pieces(raw, raw.len().max(1));
    if let Ok(Some((body, _))) = &whole {
        assert!(body.len() as u64 <= MAX_BODY && body.len() <= raw.len());
    }
    assert_eq!(whole, decode_in_pieces(raw, 1), "byte by byte");
    assert_eq!(whole, decode_in_pieces(raw, usize::from(step | 1)), "in pieces of {step}");
});
