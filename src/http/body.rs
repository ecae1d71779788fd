//! Request bodies: the chunked decoder. (A Content-Length body needs no decoder: the connection
//! waits until that many bytes follow the head.)
//!
//! The decoder works in place on the connection's input buffer. Given the bytes after the head,
//! it moves each chunk's data down over the framing before it, so when the last chunk arrives
//! the body is one contiguous slice right after the head, ready to lend to the handler, and the
//! bytes after the framing are the next pipelined request.
//!
//! Chunk lines are read a byte at a time by a state machine that follows RFC 9112 7.1 exactly
//! (`1*HEXDIG`, then `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`, then
//! CRLF), so a body split across reads at any point decodes the same, and a line is bounded
//! ([`MAX_CHUNK_LINE`]) without being buffered. The trailer section is a header section (7.1.2):
//! it is kept in the buffer until its blank line arrives, bounded like a head, each field line
//! read by httparse as it ends and the whole section once more at the end, with the same field
//! rules as the head. Nothing a client sends after the last chunk can hide in it.

use super::parse::{MAX_HEADERS, judge_field_line};
use super::response::Status;
use super::uri::is_tchar;

/// One chunk line (size and extensions, without its CRLF) longer than this is refused (400):
/// extensions are ignored, and a client must not make us read without limit to skip them.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` so far.
    Size {
        digits: u8,
    },
    /// Inside the extensions of a chunk line.
    Extension(Ext),
    /// CR seen at the end of a chunk line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Chunk data done: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section, up to and including its blank line, starts at
    /// `raw_len` and stays in the buffer until it is complete; `scanned` bytes of it were
    /// searched for its end, and `fields` of its lines were judged. (A u16 that stops at 65,535:
    /// past that a walk starts again there, which gives the same answer, only later. A usize
    /// here made every idle connection 16 bytes larger.)
    Trailers {
        scanned: u16,
        fields: u8,
    },
    Done,
}

/// Where a chunk line's extensions are (RFC 9112 7.1.1). BWS is optional whitespace that a
/// sender should not send but a recipient must accept, and only where the grammar puts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// After the size or a value: only whitespace then `;` (or the line's end) may follow.
    BeforeSemicolon,
    /// After `;`: whitespace, then a name.
    BeforeName,
    Name,
    /// Whitespace after a name: then `=` or `;`.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    BeforeValue,
    Token,
    Quoted,
    /// After a backslash inside a quoted string.
    QuotedPair,
    /// Just after a quoted string's closing quote.
    AfterValue,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    NeedData,
    /// The whole body is decoded.
    Done,
}

/// Decodes `Transfer-Encoding: chunked` in place.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current chunk still to come (in `Data`), or its size being read (in `Size`).
    chunk: u64,
    /// Decoded body bytes so far: they sit at `buf[..body_len]`, when they are kept.
    body_len: u64,
    /// Raw bytes consumed so far: the next undecoded byte is `buf[raw_len]`.
    raw_len: u64,
    /// Bytes of the current chunk line so far, bounded by [`MAX_CHUNK_LINE`].
    line_len: u16,
    /// Whether the body is kept for the handler, or dropped as it is decoded (one that does not
    /// read it): then `body_len` only counts, toward the limit.
    keep: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            chunk: 0,
            body_len: 0,
            raw_len: 0,
            line_len: 0,
            keep: true,
        }
    }

    /// A decoder that drops the body as it decodes it, checking everything else the same way
    /// (framing, the body's limit, the trailer section).
    pub fn dropping() -> Self {
        ChunkedDecoder {
            keep: false,
            ..ChunkedDecoder::new()
        }
    }

    /// Whether the body is kept.
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// The decoded body kept so far, at the start of `buf` (none, when dropping).
    pub fn body_len(&self) -> usize {
        if self.keep { self.body_len as usize } else { 0 }
    }

    /// Raw bytes consumed, framing included: the next request starts here.
    pub fn raw_len(&self) -> usize {
        self.raw_len as usize
    }

    /// Drops the framing decoded so far from `buf` (as given to `decode`), keeping the body (if
    /// it is kept) and what is not yet consumed (a trailer section in progress) after it, and
    /// returns the length `buf` should be cut to. This keeps the buffer as large as the body
    /// plus one trailer section, however much framing (tiny chunks, long extensions) the client
    /// sends.
    pub fn discard_framing(&mut self, buf: &mut [u8]) -> usize {
        let (body_len, raw_len) = (self.body_len(), self.raw_len());
        buf.copy_within(raw_len.., body_len);
        self.raw_len = body_len as u64;
        buf.len() - (raw_len - body_len)
    }

    /// Decodes what it can of `buf`, which holds everything received after the head (decoded
    /// body first, then raw bytes from `raw_len`). Errors: 400 for bad framing or a malformed
    /// trailer field, 413 when the body would exceed `max_body`, 431 for a trailer section over
    /// `max_trailer` bytes or [`MAX_HEADERS`] fields.
    pub fn decode(
        &mut self,
        buf: &mut [u8],
        max_body: u64,
        max_trailer: usize,
    ) -> Result<Decoded, Status> {
        let mut at = self.raw_len as usize;
        while at < buf.len() {
            match self.state {
                State::Data => {
                    // The one bulk step: move a run of chunk data down to the end of the body.
                    let run =
                        (buf.len() - at).min(usize::try_from(self.chunk).unwrap_or(usize::MAX));
                    if self.keep {
                        let body_end = self.body_len as usize;
                        buf.copy_within(at..at + run, body_end);
                    }
                    at += run;
                    self.body_len += run as u64;
                    self.chunk -= run as u64;
                    if self.chunk == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Trailers {
                    scanned,
                    mut fields,
                } => {
                    self.raw_len = at as u64;
                    let section = &buf[at..];
                    return match trailer_section(section, scanned, &mut fields, max_trailer)? {
                        Some(len) => {
                            self.raw_len += len as u64;
                            self.state = State::Done;
                            Ok(Decoded::Done)
                        }
                        None => {
                            self.state = State::Trailers {
                                scanned: u16::try_from(buf.len() - at).unwrap_or(u16::MAX),
                                fields,
                            };
                            Ok(Decoded::NeedData)
                        }
                    };
                }
                State::Done => break,
                _ => {
                    let byte = buf[at];
                    at += 1;
                    self.state = self.step(byte, max_body)?;
                }
            }
        }
        self.raw_len = at as u64;
        Ok(if self.state == State::Done {
            Decoded::Done
        } else {
            Decoded::NeedData
        })
    }

    /// One byte of a chunk line or of the CRLF after chunk data.
    fn step(&mut self, byte: u8, max_body: u64) -> Result<State, Status> {
        let bad = Err(Status::BAD_REQUEST);
        if matches!(self.state, State::Size { .. } | State::Extension(_)) && byte != b'\r' {
            self.line_len += 1;
            if usize::from(self.line_len) > MAX_CHUNK_LINE {
                return bad;
            }
        }
        let is_ws = byte == b' ' || byte == b'\t';
        Ok(match (self.state, byte) {
            (State::Size { digits }, _) if byte.is_ascii_hexdigit() => {
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                // Sixteen hex digits fill a u64, leading zeros aside: a seventeenth is a numeral
                // no length can have, so the line is malformed (400), as a Content-Length too
                // large for a u64 is.
                let Some(shifted) = self.chunk.checked_mul(16) else {
                    return bad;
                };
                self.chunk = shifted + u64::from(digit);
                State::Size {
                    digits: digits.saturating_add(1),
                }
            }
            (State::Size { digits: 0 }, _) => return bad,
            // The size is judged against the limit once its digits end, before any of its data.
            (State::Size { .. }, b'\r' | b';' | b' ' | b'\t')
                if self.chunk > max_body.saturating_sub(self.body_len) =>
            {
                return Err(Status::PAYLOAD_TOO_LARGE);
            }
            (State::Size { .. }, b'\r') => State::SizeLf,
            (State::Size { .. }, b';') => State::Extension(Ext::BeforeName),
            (State::Size { .. }, _) if is_ws => State::Extension(Ext::BeforeSemicolon),
            // The line may end right after a name or a value, never after whitespace.
            (State::Extension(Ext::Name | Ext::Token | Ext::AfterValue), b'\r') => State::SizeLf,
            (State::Extension(ext), _) => State::Extension(extension(ext, byte)?),
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                if self.chunk == 0 {
                    State::Trailers {
                        scanned: 0,
                        fields: 0,
                    }
                } else {
                    State::Data
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            _ => return bad,
        })
    }
}

/// The next place in a chunk line's extensions after `byte` (not the CR that ends the line).
fn extension(ext: Ext, byte: u8) -> Result<Ext, Status> {
    let is_ws = byte == b' ' || byte == b'\t';
    // qdtext and the escaped byte of a quoted-pair: visible ASCII, space, tab, obs-text.
    let is_qdtext = is_ws || (0x21..=0x7e).contains(&byte) || byte >= 0x80;
    Ok(match (ext, byte) {
        (Ext::BeforeSemicolon | Ext::AfterName | Ext::AfterValue, b';') => Ext::BeforeName,
        (Ext::BeforeSemicolon | Ext::BeforeName | Ext::AfterName | Ext::BeforeValue, _)
            if is_ws =>
        {
            ext
        }
        (Ext::BeforeName | Ext::Name, _) if is_tchar(byte) => Ext::Name,
        (Ext::Name, b';') | (Ext::Token, b';') => Ext::BeforeName,
        (Ext::Name | Ext::AfterName, b'=') => Ext::BeforeValue,
        (Ext::Name, _) if is_ws => Ext::AfterName,
        (Ext::BeforeValue | Ext::Token, _) if is_tchar(byte) => Ext::Token,
        (Ext::BeforeValue, b'"') => Ext::Quoted,
        (Ext::Token | Ext::AfterValue, _) if is_ws => Ext::BeforeSemicolon,
        (Ext::Quoted, b'"') => Ext::AfterValue,
        (Ext::Quoted, b'\\') => Ext::QuotedPair,
        (Ext::Quoted | Ext::QuotedPair, _) if is_qdtext => Ext::Quoted,
        _ => return Err(Status::BAD_REQUEST),
    })
}

/// Looks for the end of the trailer section at the start of `data` (`scanned` bytes of it
/// already walked, `fields` lines of it judged) and, once it is there, checks it. `Some(len)`:
/// the section, blank line included, is the first `len` bytes, and valid.
///
/// The bytes are walked in order and the first thing found decides (the limit, a lone CR or LF,
/// a field line httparse cannot read, the blank line), so the answer is the same however the
/// input was split. Lines end in CRLF only, as chunk lines do: after the head, a bare LF is a
/// framing disagreement waiting to happen (golang/go#71988), not a tolerance.
fn trailer_section(
    data: &[u8],
    scanned: u16,
    fields: &mut u8,
    max_trailer: usize,
) -> Result<Option<usize>, Status> {
    for at in usize::from(scanned)..data.len() {
        if at >= max_trailer {
            return Err(Status::HEADERS_TOO_LARGE);
        }
        let previous = if at > 0 { data[at - 1] } else { 0 };
        let byte = data[at];
        if (previous == b'\r') != (byte == b'\n') {
            return Err(Status::BAD_REQUEST);
        }
        let blank_line_ends = byte == b'\n' && (at == 1 || data[..at - 1].ends_with(b"\r\n"));
        if byte == b'\n' && !blank_line_ends {
            field_line(data, at, fields)?;
        }
        if !blank_line_ends {
            continue;
        }
        let section = &data[..=at];
        if at == 1 {
            return Ok(Some(2)); // No trailer fields, the usual case.
        }
        // httparse reads the fields exactly as it reads a head's.
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        return match httparse::parse_headers(section, &mut fields) {
            Ok(httparse::Status::Complete((len, _))) if len == section.len() => Ok(Some(len)),
            Err(httparse::Error::TooManyHeaders) => Err(Status::HEADERS_TOO_LARGE),
            _ => Err(Status::BAD_REQUEST),
        };
    }
    Ok(None)
}

/// A trailer field line has just ended at `data[lf]`: judged now, as the whole section's parse
/// will judge it ([`judge_field_line`], as a head's lines are), so a section that breaks the
/// rules is refused before its blank line, not at the body timeout. Only lines that end before
/// the walk's resume point saturates (65,535) are judged here, so none is judged, and counted,
/// twice; the parse of the whole section judges every line again.
fn field_line(data: &[u8], lf: usize, fields: &mut u8) -> Result<(), Status> {
    if lf >= usize::from(u16::MAX) {
        return Ok(());
    }
    let start = memchr::memrchr(b'\n', &data[..lf]).map_or(0, |before| before + 1);
    judge_field_line(&data[start..=lf], fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    /// Decodes `raw` fed in pieces of `step` bytes, as reads would deliver it, dropping spent
    /// framing between reads as the connection does; returns the body and the raw length
    /// consumed (counted over the whole input).
    fn decode_in_steps(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), Status> {
        let mut buf = Vec::new();
        let mut decoder = ChunkedDecoder::new();
        let mut dropped = 0;
        for piece in raw.chunks(step) {
            buf.extend_from_slice(piece);
            if decoder.decode(&mut buf, MAX, 1024)? == Decoded::Done {
                let raw_len = decoder.raw_len() + dropped;
                return Ok((buf[..decoder.body_len()].to_vec(), raw_len));
            }
            let kept = decoder.discard_framing(&mut buf);
            dropped += buf.len() - kept;
            buf.truncate(kept);
        }
        Err(Status(0))
    }

    fn decode_all_ways(raw: &[u8]) -> Result<(Vec<u8>, usize), Status> {
        let whole = decode_in_steps(raw, raw.len().max(1));
        assert_eq!(decode_in_steps(raw, 1), whole, "byte by byte");
        assert_eq!(decode_in_steps(raw, 3), whole, "in threes");
        whole
    }

    #[test]
    fn decodes_whole_bytewise_and_with_a_request_behind() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"0\r\n\r\n", b""),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"00a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
            (b"5;name=value;x\r\nhello\r\n0;last\r\n\r\n", b"hello"),
            (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"5\r\nhello\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n",
                b"hello",
            ),
            (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),
            // Extensions as RFC 9112 7.1.1 writes them: BWS around ";" and "=", token or
            // quoted values, quoted-pairs.
            (b"5 ; a = b\t;c\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"x; \\\"y\\\\\"\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"\";b=\"\xe9\"\r\nhello\r\n0;z\r\n\r\n", b"hello"),
            (b"5;!#$%&'*+-.^_`|~09aZ\r\nhello\r\n0\r\n\r\n", b"hello"),
            // Trailer fields, read with the head's rules.
            (b"0\r\nX: y\r\nEmpty:\r\n\r\n", b""),
            (b"0\r\nX:\ty z \r\n\r\n", b""),
        ];
        for &(raw, body) in cases {
            assert_eq!(
                decode_all_ways(raw),
                Ok((body.to_vec(), raw.len())),
                "{raw:?}"
            );
            let mut pipelined = raw.to_vec();
            pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(decode_all_ways(&pipelined), Ok((body.to_vec(), raw.len())));
        }
    }

    #[test]
    fn refuses_malformed_framing() {
        let cases: &[&[u8]] = &[
            b"\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nTrailer: x\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5;a\0\r\nhello\r\n0\r\n\r\n",
            b"g\r\nhello\r\n0\r\n\r\n",
            b"5\r\r\nhello\r\n0\r\n\r\n",
            // Chunk lines outside RFC 9112 7.1.
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"2 junk\r\nhi\r\n0\r\n\r\n",
            b"5;bad[=x\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"def; ghi\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\" \r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;a= \r\nhello\r\n0\r\n\r\n",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a=b=c\r\nhello\r\n0\r\n\r\n",
            b"5;a;;b\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            // Trailer sections outside RFC 9112 7.1.2 (the head's field grammar).
            b"3\r\nabc\r\n0\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
            b"0\r\nNoColonHere\r\n\r\n",
            b"0\r\nX: a\x01b\r\n\r\n",
            b"0\r\nX: a\r\n folded\r\n\r\n",
            b"0\r\nX : a\r\n\r\n",
            b"0\r\n: a\r\n\r\n",
            b"0\r\nX: a\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\n\n",
            b"0\r\n\r\r\n",
            // The same, refused as the line ends, before the section's blank line arrives.
            b"0\r\nNoColonHere\r\n",
            b"0\r\nX: a\x01b\r\n",
            b"0\r\nX: a\r\n folded\r\n",
            b"3\r\nabc\r\n0\r\nOk: 1\r\nGET /hello HTTP/1.1\r\n",
        ];
        for raw in cases {
            assert_eq!(decode_all_ways(raw), Err(Status::BAD_REQUEST), "{raw:?}");
        }
    }

    /// A trailer field line is judged once it is whole (`Status(0)` means still waiting).
    #[test]
    fn a_trailer_line_is_judged_as_it_ends() {
        assert_eq!(decode_all_ways(b"0\r\nOk: 1\r\n"), Err(Status(0)));
        // The field past MAX_HEADERS is 431 as it ends, and a bad line after it changes nothing;
        // a bad line before it is 400.
        let fields = [&b"0\r\n"[..], &b"A: b\r\n".repeat(MAX_HEADERS)].concat();
        let too_many = [&fields[..], b"A: b\r\n"].concat();
        assert_eq!(decode_all_ways(&too_many), Err(Status::HEADERS_TOO_LARGE));
        let bad_after = [&too_many[..], b"Bad\r\n"].concat();
        assert_eq!(decode_all_ways(&bad_after), Err(Status::HEADERS_TOO_LARGE));
        let bad_before = [&fields[..], b"Bad\r\nA: b\r\n"].concat();
        assert_eq!(decode_all_ways(&bad_before), Err(Status::BAD_REQUEST));
    }

    #[test]
    fn limits_body_size_and_overflowing_sizes() {
        assert_eq!(
            decode_all_ways(b"100001\r\n"),
            Err(Status::PAYLOAD_TOO_LARGE),
            "one chunk over the limit is refused before its data"
        );
        // Sixteen digits still make a size (over the limit); a seventeenth no size at all.
        assert_eq!(
            decode_all_ways(b"ffffffffffffffff\r\n"),
            Err(Status::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(
            decode_all_ways(b"00000000000000000000100001;a=b\r\n"),
            Err(Status::PAYLOAD_TOO_LARGE),
            "leading zeros count for nothing"
        );
        assert_eq!(
            decode_all_ways(b"ffffffffffffffffffffffff\r\n"),
            Err(Status::BAD_REQUEST)
        );
        assert_eq!(
            decode_all_ways(b"10000000000000000\r\n"),
            Err(Status::BAD_REQUEST)
        );
        let mut many = Vec::new();
        for _ in 0..=(MAX / 0x8000) {
            many.extend_from_slice(b"8000\r\n");
            many.extend(std::iter::repeat_n(b'x', 0x8000));
            many.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode_in_steps(&many, 4096), Err(Status::PAYLOAD_TOO_LARGE));
        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.resize(2000, b'a');
        assert_eq!(
            decode_all_ways(&long_trailer),
            Err(Status::HEADERS_TOO_LARGE)
        );
        // The trailer limit counts the whole section, blank line included, as a head's does.
        let mut at_limit = b"0\r\nX: ".to_vec();
        at_limit.resize(3 + 1024 - 4, b'a');
        at_limit.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode_all_ways(&at_limit), Ok((Vec::new(), at_limit.len())));
        at_limit.insert(5, b'a');
        assert_eq!(decode_all_ways(&at_limit), Err(Status::HEADERS_TOO_LARGE));
        // As many trailer fields as a head may have, and one more.
        let mut fields = b"0\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            fields.extend_from_slice(b"A: b\r\n");
        }
        let mut too_many = fields.clone();
        fields.extend_from_slice(b"\r\n");
        assert!(decode_all_ways(&fields).is_ok());
        too_many.extend_from_slice(b"A: b\r\n\r\n");
        let decoded = decode_in_steps(&too_many, too_many.len());
        assert_eq!(decoded, Err(Status::HEADERS_TOO_LARGE));
        // One chunk line is bounded, however it is spent.
        let mut long_line = b"5;a=".to_vec();
        long_line.resize(MAX_CHUNK_LINE, b'b');
        long_line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            decode_all_ways(&long_line),
            Ok((b"hello".to_vec(), long_line.len()))
        );
        long_line.insert(5, b'b');
        assert_eq!(decode_all_ways(&long_line), Err(Status::BAD_REQUEST));
        let mut zeros = vec![b'0'; MAX_CHUNK_LINE + 1];
        zeros.extend_from_slice(b"5\r\n");
        assert_eq!(decode_all_ways(&zeros), Err(Status::BAD_REQUEST));
    }
}
