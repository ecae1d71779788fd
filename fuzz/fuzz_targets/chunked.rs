//! The chunked body decoder, in place, as the connection drives it (spent framing dropped
//! between reads):
//! - the same body, the same end and the same error however the input is split;
//! - the body never larger than its limit nor than the input;
//! - it accepts a complete body exactly when a second, whole-input reading of RFC 9112 7.1
//!   written here does (chunk lines by 7.1.1's grammar, the trailer section by the head's field
//!   rules with CRLF line ends), with the same body and the same length: the incremental state
//!   machine and the plain reading cannot disagree on where a body ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_httpd::http::{ChunkedDecoder, Decoded, MAX_CHUNK_LINE, MAX_HEADERS, Status, is_tchar};

const MAX_BODY: u64 = 64 * 1024;
const MAX_TRAILER: usize = 1024;

type Outcome = Result<Option<(Vec<u8>, usize)>, Status>;

fn decode_in_pieces(raw: &[u8], step: usize) -> Outcome {
    let mut buf = Vec::new();
    let mut decoder = ChunkedDecoder::new();
    let mut dropped = 0;
    for piece in raw.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        if decoder.decode(&mut buf, MAX_BODY, MAX_TRAILER)? == Decoded::Done {
            let body = buf[..decoder.body_len()].to_vec();
            let raw_len = decoder.raw_len() + dropped;
            assert!(raw_len <= raw.len());
            return Ok(Some((body, raw_len)));
        }
        assert!(decoder.body_len() as u64 <= MAX_BODY);
        let kept = decoder.discard_framing(&mut buf);
        dropped += buf.len() - kept;
        buf.truncate(kept);
        // What is kept is the body and at most one trailer section in progress.
        assert!(buf.len() <= decoder.body_len() + MAX_TRAILER + step);
    }
    Ok(None)
}

/// RFC 9112 7.1 read plainly, from the whole input. `None`: not complete (or refused: this
/// reading does not tell the two apart; only complete bodies are compared).
fn reference(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let line = &raw[at..line_end];
        if line.len() > MAX_CHUNK_LINE {
            return None;
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || !extensions(&line[digits..]) {
            return None;
        }
        let size = line[..digits].iter().try_fold(0u64, |n, &d| {
            let d = u64::from((d as char).to_digit(16)?);
            n.checked_mul(16)?.checked_add(d)
        })?;
        at = line_end + 2;
        if size == 0 {
            let section = trailer_section(&raw[at..])?;
            return Some((body, at + section));
        }
        if size > MAX_BODY - body.len() as u64 {
            return None;
        }
        let data_end = at.checked_add(usize::try_from(size).ok()?)?;
        if raw.get(data_end..data_end + 2)? != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&raw[at..data_end]);
        at = data_end + 2;
    }
}

/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`, the whole of `ext`.
fn extensions(mut ext: &[u8]) -> bool {
    let token = |s: &[u8]| s.iter().take_while(|&&b| is_tchar(b)).count();
    while !ext.is_empty() {
        let Some(rest) = bws(ext).strip_prefix(b";") else {
            return false;
        };
        let rest = bws(rest);
        let name = token(rest);
        if name == 0 {
            return false;
        }
        ext = &rest[name..];
        if let Some(rest) = bws(ext).strip_prefix(b"=") {
            let rest = bws(rest);
            let value = if rest.first() == Some(&b'"') {
                match quoted_string(rest) {
                    Some(n) => n,
                    None => return false,
                }
            } else {
                token(rest)
            };
            if value == 0 {
                return false;
            }
            ext = &rest[value..];
        }
    }
    true
}

/// `s` past its leading whitespace (BWS).
fn bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// The length of the quoted-string `s` starts with, if it is one.
fn quoted_string(s: &[u8]) -> Option<usize> {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' if text(*s.get(i + 1)?) => i += 2,
            b'\\' => return None,
            b if text(b) => i += 1,
            _ => return None,
        }
    }
}

/// The trailer section at the start of `s`: its length, blank line included, if it is
/// complete and valid within the limits.
fn trailer_section(s: &[u8]) -> Option<usize> {
    let end = if s.starts_with(b"\r\n") {
        2
    } else {
        find(s, b"\r\n\r\n")? + 4
    };
    let section = &s[..end];
    let paired = section.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => section.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && section[i - 1] == b'\r',
        _ => true,
    });
    if end > MAX_TRAILER || !paired {
        return None;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((len, _))) if len == end => Some(end),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    assert_eq!(
        whole,
        decode_in_pieces(raw, usize::from(step | 1)),
        "in pieces of {step}"
    );
    let plain = reference(raw);
    match (&whole, &plain) {
        (Ok(Some(decoded)), Some(read)) => assert_eq!(decoded, read),
        (Ok(Some(decoded)), None) => panic!("decoded {decoded:?}, which RFC 9112 7.1 refuses"),
        (_, Some(read)) => panic!("{whole:?}, but RFC 9112 7.1 reads {read:?}"),
        _ => {}
    }
});
