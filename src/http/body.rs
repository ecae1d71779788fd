//! Request bodies: the chunked decoder. (A Content-Length body needs no decoder: the connection
//! waits until that many bytes follow the head.)
//!
//! The decoder works in place on the connection's input buffer. Given the bytes after the head,
//! it moves each chunk's data down over the framing before it, so when the last chunk arrives
//! the body is one contiguous slice right after the head, ready to lend to the handler, and the
//! bytes after the framing are the next pipelined request. It is a byte-level state machine, so a
//! body split across reads at any point decodes the same, and it never buffers what it skips
//! (extensions, trailers), so framing cannot make it hold more than one read.

use super::response::Status;

/// A chunk-size line may carry extensions; beyond this many bytes of them, 400.
const MAX_EXTENSION: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: optional whitespace, then `;ext` up to CR.
    Extension {
        len: u16,
    },
    /// CR seen at the end of a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Chunk data done: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// CR seen at the end of a trailer line; `blank` if the line was empty (the end).
    TrailerLf {
        blank: bool,
    },
    Done,
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
    /// Decoded body bytes so far: they sit at `buf[..body_len]`.
    body_len: u64,
    /// Raw bytes consumed so far: the next undecoded byte is `buf[raw_len]`.
    raw_len: u64,
    /// Bytes of trailer fields so far, bounded like a head.
    trailer_len: u32,
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
            trailer_len: 0,
        }
    }

    /// The decoded body so far, at the start of `buf`.
    pub fn body_len(&self) -> usize {
        self.body_len as usize
    }

    /// Raw bytes consumed, framing included: the next request starts here.
    pub fn raw_len(&self) -> usize {
        self.raw_len as usize
    }

    /// Forgets the framing bytes decoded so far: the caller drops `buf[body_len..]`, which
    /// holds nothing but consumed framing once `decode` has asked for more data. This keeps the
    /// buffer as large as the body, however much framing (tiny chunks, long extensions) the
    /// client sends.
    pub fn discard_framing(&mut self) {
        self.raw_len = self.body_len;
    }

    /// Decodes what it can of `buf`, which holds everything received after the head (decoded
    /// body first, then raw bytes from `raw_len`). Errors: 400 for bad framing, 413 when the
    /// body would exceed `max_body`, 431 for oversized trailers.
    pub fn decode(
        &mut self,
        buf: &mut [u8],
        max_body: u64,
        max_trailer: usize,
    ) -> Result<Decoded, Status> {
        let mut at = self.raw_len as usize;
        while at < buf.len() {
            if self.state == State::Data {
                // The one bulk step: move a run of chunk data down to the end of the body.
                let run = (buf.len() - at).min(usize::try_from(self.chunk).unwrap_or(usize::MAX));
                let body_end = self.body_len as usize;
                buf.copy_within(at..at + run, body_end);
                at += run;
                self.body_len += run as u64;
                self.chunk -= run as u64;
                if self.chunk == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = buf[at];
            at += 1;
            self.state = self.step(byte, max_body, max_trailer)?;
            if self.state == State::Done {
                break;
            }
        }
        self.raw_len = at as u64;
        Ok(if self.state == State::Done {
            Decoded::Done
        } else {
            Decoded::NeedData
        })
    }

    /// One framing byte.
    fn step(&mut self, byte: u8, max_body: u64, max_trailer: usize) -> Result<State, Status> {
        let bad = Err(Status::BAD_REQUEST);
        Ok(match (self.state, byte) {
            (State::Size { digits }, _) if byte.is_ascii_hexdigit() => {
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                self.chunk = self.chunk * 16 + u64::from(digit);
                // Checked per digit, so the size never overflows and the limit bites at once.
                if self.chunk > max_body.saturating_sub(self.body_len) {
                    return Err(Status::PAYLOAD_TOO_LARGE);
                }
                State::Size {
                    digits: digits.saturating_add(1),
                }
            }
            (State::Size { digits: 0 }, _) => return bad,
            (State::Size { .. }, b'\r') => State::SizeLf,
            (State::Size { .. }, b';' | b' ' | b'\t') => State::Extension { len: 1 },
            (State::Extension { .. }, b'\r') => State::SizeLf,
            (State::Extension { len }, _) => {
                // Extensions are accepted and ignored, but they are text: no control bytes.
                if (byte < 0x20 && byte != b'\t')
                    || byte == 0x7f
                    || usize::from(len) >= MAX_EXTENSION
                {
                    return bad;
                }
                State::Extension { len: len + 1 }
            }
            (State::SizeLf, b'\n') if self.chunk == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            (State::TrailerStart, b'\r') => State::TrailerLf { blank: true },
            (State::TrailerStart | State::Trailer, _) => {
                self.trailer_len += 1;
                if self.trailer_len as usize > max_trailer {
                    return Err(Status::HEADERS_TOO_LARGE);
                }
                match byte {
                    b'\r' => State::TrailerLf { blank: false },
                    b'\n' | 0 => return bad,
                    _ => State::Trailer,
                }
            }
            (State::TrailerLf { blank: true }, b'\n') => State::Done,
            (State::TrailerLf { blank: false }, b'\n') => State::TrailerStart,
            _ => return bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    /// Decodes `raw` fed in pieces of `step` bytes, as reads would deliver it; returns the body
    /// and the raw length consumed.
    fn decode_in_steps(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), Status> {
        let mut buf = Vec::new();
        let mut decoder = ChunkedDecoder::new();
        for piece in raw.chunks(step) {
            buf.extend_from_slice(piece);
            if decoder.decode(&mut buf, MAX, 1024)? == Decoded::Done {
                return Ok((buf[..decoder.body_len()].to_vec(), decoder.raw_len()));
            }
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
        ];
        for raw in cases {
            assert_eq!(decode_all_ways(raw), Err(Status::BAD_REQUEST), "{raw:?}");
        }
    }

    #[test]
    fn limits_body_size_and_overflowing_sizes() {
        assert_eq!(
            decode_all_ways(b"100001\r\n"),
            Err(Status::PAYLOAD_TOO_LARGE),
            "one chunk over the limit is refused before its data"
        );
        assert_eq!(
            decode_all_ways(b"ffffffffffffffffffffffff\r\n"),
            Err(Status::PAYLOAD_TOO_LARGE)
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
    }
}
