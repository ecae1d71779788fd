//! Request heads: find where one ends, then let httparse read it, within limits.
//!
//! httparse keeps no state between calls and would re-parse from the first byte each time more
//! arrives, and it has no byte limit. So [`HeadScan`] first looks for the blank line that ends the
//! head, resuming where it stopped, and enforces the size limits (414, 431) while it waits; only a
//! complete head is handed to httparse, once (and, for a head that arrives in pieces, each of its
//! lines, once, as soon as that line is complete: a line that cannot be one is refused then).
//! [`parse_head`] then turns it into a [`Request`] and the [`Framing`] facts the connection needs:
//! how the body is delimited, and whether the connection stays open. Anything that makes the
//! framing ambiguous is refused (400), because two parties that disagree on where a request ends
//! is how requests get smuggled.

use std::mem::MaybeUninit;

use super::request::{Headers, Request, Version, list_has_token, name_is};
use super::response::Status;
use super::uri::{is_tchar, split_target, valid_host};

/// The request line alone may not exceed this (then 414), whatever the header limit.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// More header fields than this get 431.
pub const MAX_HEADERS: usize = 100;
/// A method token longer than this is not one we could recognize: 501, and the connection is
/// closed (the longest registered method, `UPDATEREDIRECTREF`, has 17 bytes).
pub const MAX_METHOD: usize = 32;

/// How far the search for the end of the current head has got.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadScan {
    /// Bytes already searched for a line's end; the next search starts here. (Positions are
    /// 32 bits, which keeps a connection small: a head is never longer than 4 GiB.)
    scanned: u32,
    /// Where the line being read starts: every line before it was whole, and was judged.
    line_start: u32,
    /// Field lines judged so far (at most one past [`MAX_HEADERS`]).
    fields: u8,
    /// The request line is complete, and was judged: its field lines are judged as they come.
    line_done: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    NeedData,
    /// The head is the first this many bytes.
    Complete(usize),
}

impl HeadScan {
    /// Nothing of this head has been looked at yet.
    pub fn is_fresh(&self) -> bool {
        self.scanned == 0 && !self.line_done
    }

    /// Looks for the end of the head that starts at `data[0]` (leading empty lines skipped).
    /// Lines end in LF, optionally preceded by CR, as httparse reads them. Each line is judged
    /// once, when it is whole, and every byte is searched once: a head that arrives a byte at a
    /// time costs what it costs whole.
    // Out of line: a whole head is parsed at once and never comes here, and inlined into
    // `Conn::head` this body's changes moved the hot path's code (callgrind: 7 to 13
    // instructions a request, from a change to the version check below).
    #[inline(never)]
    pub fn scan(&mut self, data: &[u8], max_header_bytes: usize) -> Result<Scanned, Status> {
        loop {
            if self.line_done {
                // An empty line ends the head.
                let line_start = self.line_start as usize;
                let end = match &data[line_start..] {
                    [b'\n', ..] => line_start + 1,
                    [b'\r', b'\n', ..] => line_start + 2,
                    // Can't tell yet: look here again when more arrives.
                    [] | [b'\r'] => {
                        return self.incomplete(data, self.scanned as usize, max_header_bytes);
                    }
                    _ => 0,
                };
                if end > max_header_bytes {
                    return Err(Status::HEADERS_TOO_LARGE);
                } else if end > 0 {
                    return Ok(Scanned::Complete(end));
                }
            }
            let searched = self.scanned as usize;
            let Some(i) = memchr::memchr(b'\n', &data[searched..]) else {
                self.scanned = position(data.len())?;
                return self.incomplete(data, searched, max_header_bytes);
            };
            let lf = searched + i;
            if self.line_done {
                self.field_line(data, lf, max_header_bytes)?;
            } else {
                self.request_line(data, lf, max_header_bytes)?;
            }
            self.line_start = position(lf + 1)?;
            self.scanned = self.line_start;
        }
    }

    /// The request line, whole (`data[lf]` is its LF).
    fn request_line(
        &mut self,
        data: &[u8],
        lf: usize,
        max_header_bytes: usize,
    ) -> Result<(), Status> {
        let line_len = lf - usize::from(lf > 0 && data[lf - 1] == b'\r');
        let limit = request_line_limit(max_header_bytes);
        let within = &data[..line_len.min(limit)];
        let method_ended = method_so_far(within)?;
        // No space in its first 33 bytes: a method longer than any (RFC 9112 3: 501, as
        // `interpret` answers it in a whole head), however long the line, as `incomplete`
        // answers it at the 33rd byte. Unless the line may not even hold 33 bytes: then the
        // line's length told first, and is 414 below.
        if !method_ended && line_len > MAX_METHOD && limit > MAX_METHOD {
            return Err(Status::NOT_IMPLEMENTED);
        }
        // A CR that is not its line ending's (before the length: see `incomplete`).
        if method_ended && memchr::memchr(b'\r', within).is_some() {
            return Err(Status::BAD_REQUEST);
        }
        if line_len > limit {
            return Err(Status::URI_TOO_LONG);
        }
        request_line(&data[..=lf])?;
        self.line_done = true;
        Ok(())
    }

    /// A whole field line (`data[lf]` is its LF), judged by [`judge_field_line`]. A line that
    /// ends past the head's limit is too large (431) however it reads, except for a stray CR
    /// within the limit: [`stray_cr`] refuses that before the line's end, so it does here too.
    fn field_line(
        &mut self,
        data: &[u8],
        lf: usize,
        max_header_bytes: usize,
    ) -> Result<(), Status> {
        let start = self.line_start as usize;
        if lf < max_header_bytes {
            judge_field_line(&data[start..=lf], &mut self.fields)
        } else {
            // Every CR before the one right before the LF has a byte other than LF after it.
            stray_cr(&data[..lf], start, max_header_bytes.saturating_sub(1))
        }
    }

    /// No line end yet: what has arrived is judged as far as it can be. `searched` is where
    /// this call's new bytes begin.
    fn incomplete(
        &self,
        data: &[u8],
        searched: usize,
        max_header_bytes: usize,
    ) -> Result<Scanned, Status> {
        let line_limit = request_line_limit(max_header_bytes);
        // A CR with a byte after it is not the CR of a line's CRLF (RFC 9112 2.2): refused now,
        // not at the header timeout. No LF has arrived since `searched`, so only the new bytes
        // are searched, and the last byte before them, which may be a CR that had nothing after
        // it then. In the request line, a CR within what the line may hold (past that it is too
        // long, 414), once the method has ended (before, `method_so_far` refuses it: CR is no
        // token byte). In a field line, one httparse will read (it reads a CR only as a line
        // ending's), with the byte after it within the head's limit.
        let (judged, cr_below) = if self.line_done {
            (true, max_header_bytes.saturating_sub(1))
        } else {
            (
                method_so_far(&data[..data.len().min(line_limit)])?,
                line_limit,
            )
        };
        if judged {
            stray_cr(data, searched.saturating_sub(1), cr_below)?;
        } else if data.len() > MAX_METHOD && line_limit > MAX_METHOD {
            // (Not judged: the request line's method has not ended.) A method longer than any:
            // 501 now, not 414 when the line has run past 8 KiB.
            return Err(Status::NOT_IMPLEMENTED);
        }
        // An unfinished line may still end in the CR of its CRLF: one byte of grace, unless the
        // line alone already overflows the head.
        if !self.line_done && data.len() > (line_limit + 1).min(max_header_bytes) {
            Err(Status::URI_TOO_LONG)
        } else if data.len() > max_header_bytes {
            Err(Status::HEADERS_TOO_LARGE)
        } else {
            Ok(Scanned::NeedData)
        }
    }
}

/// 400 if a CR at a position from `from` up to (not including) `cr_below` has a byte after it
/// in `data` (one its caller knows is not LF): a CR that is no line ending's. Past the bound
/// the line or the head is too large (414, 431), whatever its bytes.
fn stray_cr(data: &[u8], from: usize, cr_below: usize) -> Result<(), Status> {
    let end = cr_below.min(data.len().saturating_sub(1));
    match data
        .get(from..end)
        .and_then(|within| memchr::memchr(b'\r', within))
    {
        Some(_) => Err(Status::BAD_REQUEST),
        None => Ok(()),
    }
}

// Field lines are counted in a u8, up to one past the limit.
const _: () = assert!(MAX_HEADERS < u8::MAX as usize);

/// One whole field line (with its line ending) of a head or a trailer section, judged as that
/// section's whole parse will judge it: httparse reads field lines one by one and stops at the
/// first it cannot read (400) or at the one past its storage of [`MAX_HEADERS`] (431).
/// `fields` counts the lines judged; past the storage no line decides anything more.
pub(super) fn judge_field_line(line: &[u8], fields: &mut u8) -> Result<(), Status> {
    if usize::from(*fields) > MAX_HEADERS {
        return Ok(());
    }
    *fields += 1;
    match httparse::parse_headers(line, &mut [httparse::EMPTY_HEADER]) {
        Err(_) => Err(Status::BAD_REQUEST),
        Ok(_) if usize::from(*fields) > MAX_HEADERS => Err(Status::HEADERS_TOO_LARGE),
        Ok(_) => Ok(()),
    }
}

/// A position in a head, as [`HeadScan`] keeps it. One past 4 GiB is past any head limit.
fn position(at: usize) -> Result<u32, Status> {
    u32::try_from(at).map_err(|_| Status::HEADERS_TOO_LARGE)
}

// A head that arrives in pieces is judged as its lines come, not only once it is whole: bytes that
// cannot begin a request (binary garbage, a method that is no token, an HTTP/0.9 line, another
// major version, a target of none of the four forms, a stray CR) and field lines httparse cannot
// read are refused at once, instead of holding the connection until the header timeout or the
// size limit. The checks run in the order the whole head's parse would make them (a method byte,
// the method's length, a stray CR within the line's first 8 KiB, the line's length, the rest of
// the line, its version, its target's form, then each field line, a stray CR in it as soon as
// the byte after the CR arrives, within the head's limit), and whole heads that httparse refuses
// come through them too (`Conn::head` falls back to the scan), so a head gets the same answer
// however it is split. A complete valid head never meets them: httparse takes it first.

/// The request line's first bytes (`line`, without its line ending if it has one): 400 at a
/// method byte no token may hold. `Ok(true)` once the method has ended (its space is within
/// the first `MAX_METHOD + 1` bytes); `Ok(false)` while it has not (past those bytes its caller
/// answers 501, a method longer than any, before the line's length: a line over 8 KiB is 414
/// only once its method has ended).
#[cold]
fn method_so_far(line: &[u8]) -> Result<bool, Status> {
    for (at, &byte) in line.iter().take(MAX_METHOD + 1).enumerate() {
        match byte {
            b' ' if at > 0 => return Ok(true),
            _ if !is_tchar(byte) => return Err(Status::BAD_REQUEST),
            _ => {}
        }
    }
    Ok(false)
}

/// A complete request line (with its line ending), as the whole head's parse will judge it:
/// 400 if httparse cannot read it (HTTP/0.9, missing or extra spaces, a bad target byte); for a
/// version httparse does not know, 505 for another major version (that parse stops at the line
/// without reading a field), 400 for no version at all, and HTTP/1.2 and the like read on, as
/// 1.1; then 400 for a target of none of the four forms (RFC 9112 3.2: `/path`,
/// `http://host/path`, `host:port` for CONNECT, `*` for OPTIONS).
#[cold]
fn request_line(line: &[u8]) -> Result<(), Status> {
    // The entry point the hot path uses: a second one (`parse`) made httparse's parser a shared
    // function that no longer knew its configuration at compile time, 17 instructions more on
    // every request.
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(line, &mut []) {
        Ok(_) => {}
        Err(httparse::Error::Version) => match request_line_version(line) {
            Some((b'1', b'0'..=b'9')) => {}
            _ if names_another_version(line) => return Err(Status::VERSION_NOT_SUPPORTED),
            _ => return Err(Status::BAD_REQUEST),
        },
        Err(_) => return Err(Status::BAD_REQUEST),
    }
    // The target's form: what `interpret` checks first in a whole head.
    match (parsed.method, parsed.path) {
        (Some(method), Some(target)) => split_target(method, target).map(drop),
        _ => Ok(()),
    }
}

/// A request line (not counting its line ending) longer than 8 KiB, or longer than the whole
/// head may be, is too long by itself: 414 rather than 431, so the client knows the URI is what
/// to shorten.
fn request_line_limit(max_header_bytes: usize) -> usize {
    MAX_REQUEST_LINE.min(max_header_bytes)
}

/// The number of leading CRLF / LF bytes a server should skip before a request line
/// (RFC 9112 2.2: clients sometimes send an extra CRLF after a body). A lone CR at the end is
/// left, to be judged when its LF arrives.
pub fn leading_empty_lines(data: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &data[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            _ => return at,
        }
    }
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    None,
    /// Content-Length; may exceed the limit (then 413).
    Length(u64),
    Chunked,
}

/// What the connection needs to know about a request, beyond what the handler sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyLength,
    /// The client allows the connection to stay open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// HEAD: the response carries headers only.
    pub head_method: bool,
    /// One of [`KNOWN_METHODS`]; the connection answers any other 501 itself.
    pub known_method: bool,
    /// `If-Match` or `If-None-Match` is present: the connection checks it against a response
    /// that has no entity tag of its own (see `response::unvalidated_precondition`).
    pub preconditions: bool,
}

/// Storage for the header fields httparse finds; uninitialized, so it costs nothing to set up.
pub type HeaderStorage<'a> = [MaybeUninit<httparse::Header<'a>>; MAX_HEADERS];

pub fn header_storage<'a>() -> HeaderStorage<'a> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// A parsed head: the request (with an empty body), its framing, and its length in bytes.
pub type Head<'a> = (Request<'a>, Framing, usize);

/// The fast path, for a head that arrived whole (the usual case: one read holds it): one
/// httparse pass over `data`, capped at the header limit. `None` when the head is not complete
/// and valid within that cap; the caller then falls back to [`HeadScan`], which waits for the
/// end of the head and reports limits and errors the same way however the input was split. An
/// error here concerns a complete head, so it too is the same for every split.
pub fn parse_whole_head<'a>(
    data: &'a [u8],
    storage: &'a mut HeaderStorage<'a>,
    max_header_bytes: usize,
) -> Option<Result<Head<'a>, Status>> {
    let capped = &data[..data.len().min(max_header_bytes)];
    let mut parsed = httparse::Request::new(&mut []);
    let Ok(httparse::Status::Complete(len)) = parsed.parse_with_uninit_headers(capped, storage)
    else {
        return None;
    };
    // The scanner would have stopped at a long request line, before anything else; so must
    // this path.
    if let Some(target) = parsed.path {
        let line_len =
            target.as_ptr() as usize - data.as_ptr() as usize + target.len() + " HTTP/1.1".len();
        if line_len > request_line_limit(max_header_bytes) {
            // The method's length is judged first, as the scanner judges it.
            return Some(Err(match parsed.method {
                Some(method) if method.len() > MAX_METHOD => Status::NOT_IMPLEMENTED,
                _ => Status::URI_TOO_LONG,
            }));
        }
    }
    // Returned as it comes: the request is large, and wrapping it again would copy it.
    Some(interpret(parsed, len))
}

/// A head that parsed when it arrived, parsed again with the body that followed it (the buffer
/// it was parsed from has moved since, or it was copied to another thread): the request as its
/// handler sees it.
pub fn parse_again<'a>(
    head: &'a [u8],
    body: &'a [u8],
    storage: &'a mut HeaderStorage<'a>,
) -> Result<(Request<'a>, Framing), Status> {
    let (request, framing) = parse_head(head, storage)?;
    Ok((Request { body, ..request }, framing))
}

/// Parses a complete head (as found by [`HeadScan`]) into a request with an empty body, and its
/// framing. The error is the status to answer with; the connection is then closed.
pub fn parse_head<'a>(
    head: &'a [u8],
    storage: &'a mut HeaderStorage<'a>,
) -> Result<(Request<'a>, Framing), Status> {
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(head, storage) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {
            interpret(parsed, len).map(|(request, framing, _)| (request, framing))
        }
        Ok(_) => Err(Status::BAD_REQUEST),
        Err(httparse::Error::TooManyHeaders) => Err(Status::HEADERS_TOO_LARGE),
        Err(httparse::Error::Version) if names_another_version(head) => {
            Err(Status::VERSION_NOT_SUPPORTED)
        }
        Err(_) => Err(Status::BAD_REQUEST),
    }
}

/// Turns what httparse found in a complete head of `len` bytes into a request and its framing.
fn interpret<'a>(parsed: httparse::Request<'a, 'a>, len: usize) -> Result<Head<'a>, Status> {
    // Complete means httparse filled in all three.
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Status::BAD_REQUEST);
    };
    if method.len() > MAX_METHOD {
        return Err(Status::NOT_IMPLEMENTED);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers = Headers::new(parsed.headers);
    let target_parts = split_target(method, target)?;
    let (framing, host_field) = framing(method, version, &headers)?;
    let request = Request {
        method,
        target,
        path: target_parts.path,
        query: target_parts.query,
        // An absolute-form target's authority is the host, whatever the Host field says.
        host: target_parts.authority.or(host_field),
        version,
        headers,
        body: &[],
    };
    Ok((request, framing, len))
}

/// Whether the request line is `METHOD SP TARGET SP HTTP/d.d` with a version httparse refused:
/// a version we do not speak (505) rather than garbage (400). A line with more parts than three
/// (`GET /a b HTTP/1.1`) is garbage whatever it ends with.
fn names_another_version(head: &[u8]) -> bool {
    request_line_version(head).is_some_and(|(major, minor)| {
        major.is_ascii_digit() && minor.is_ascii_digit() && major != b'1'
    })
}

/// The line that starts `data`, without its LF or the CR before it; `None` until its LF came.
pub fn first_line(data: &[u8]) -> Option<&[u8]> {
    let line = &data[..memchr::memchr(b'\n', data)?];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// The two digits of a request line ending in `HTTP/d.d`, if it has exactly three parts.
fn request_line_version(head: &[u8]) -> Option<(u8, u8)> {
    let line = first_line(head)?;
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_), Some(_), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => Some((*major, *minor)),
        _ => None,
    }
}

/// HTTP/1.x with x above 1 is handled as HTTP/1.1 (RFC 9110 2.5: a server SHOULD answer in the
/// highest minor version it supports, and such a message is compatible). httparse takes only
/// 1.0 and 1.1, so the minor digit of such a head is rewritten to `1` in place before it is
/// parsed; the access log then shows HTTP/1.1, which is how it was handled. Returns whether it
/// did.
pub fn downgrade_later_minor(head: &mut [u8]) -> bool {
    let Some((b'1', b'2'..=b'9')) = request_line_version(head) else {
        return false;
    };
    let line_end = first_line(head).map_or(0, <[u8]>::len);
    head[line_end - 1] = b'1';
    true
}

/// Reads the headers that decide framing and persistence, refusing the ambiguous combinations.
/// Also returns the Host field's value, checked.
fn framing<'a>(
    method: &str,
    version: Version,
    headers: &Headers<'a>,
) -> Result<(Framing, Option<&'a str>), Status> {
    let mut content_length = None;
    let mut transfer_encoding = false;
    let (mut hosts, mut host) = (0, None);
    let mut expect_continue = false;
    let (mut close, mut keep_alive_token) = (false, false);
    let mut preconditions = false;
    for (name, value) in headers.iter() {
        // Most headers are none of these: the length settles it before any comparison, and
        // the comparison is a word or two at a time.
        match name.len() {
            4 if name_is(name, b"host") => {
                hosts += 1;
                host = Some(value);
            }
            6 if name_is(name, b"expect") => {
                // The only expectation there is (RFC 9110 10.1.1); any other cannot be met.
                if !value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    return Err(Status::EXPECTATION_FAILED);
                }
                expect_continue = true;
            }
            8 if name_is(name, b"if-match") => preconditions = true,
            13 if name_is(name, b"if-none-match") => preconditions = true,
            10 if name_is(name, b"connection") => {
                close |= list_has_token(value, "close");
                keep_alive_token |= list_has_token(value, "keep-alive");
            }
            14 if name_is(name, b"content-length") => {
                let length = parse_content_length(value)?;
                // Repeats are tolerated only when they agree (RFC 9110 8.6).
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(Status::BAD_REQUEST);
                }
                content_length = Some(length);
            }
            17 if name_is(name, b"transfer-encoding") => {
                // Exactly one field, exactly `chunked`: anything else is either a coding we do
                // not implement or an obfuscation that another parser may read differently.
                if transfer_encoding || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(Status::BAD_REQUEST);
                }
                transfer_encoding = true;
            }
            _ => {}
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Err(Status::BAD_REQUEST);
    }
    // HTTP/1.0 has no chunked coding (RFC 9112 6.1), and HTTP/1.1 needs exactly one Host (3.2).
    // A Host that is there must be valid, whatever the version (3.2), and not empty (an empty
    // Host is for URIs without an authority, which http URIs never are; nginx refuses it too).
    let host_ok = match version {
        Version::Http10 => hosts <= 1 && !transfer_encoding,
        Version::Http11 => hosts == 1,
    };
    let host = match host.map(<[u8]>::trim_ascii) {
        Some(value) => Some(valid_host(value).ok_or(Status::BAD_REQUEST)?),
        None => None,
    };
    if !host_ok {
        return Err(Status::BAD_REQUEST);
    }
    let body = match (transfer_encoding, content_length) {
        (true, _) => BodyLength::Chunked,
        (false, Some(length)) if length > 0 => BodyLength::Length(length),
        _ => BodyLength::None,
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => !close && keep_alive_token,
    };
    let framing = Framing {
        body,
        keep_alive,
        // An HTTP/1.0 client cannot understand 100 Continue (RFC 9110 10.1.1).
        expect_continue: expect_continue && version == Version::Http11,
        head_method: method == "HEAD",
        known_method: is_known_method(method),
        preconditions,
    };
    Ok((framing, host))
}

/// The methods this server recognizes (RFC 9110 9.3, and PATCH from RFC 5789). Any other gets
/// 501 (RFC 9110 15.6.2); a recognized one that a resource does not allow gets 405 from its
/// handler. Methods are case-sensitive: `get` is not GET.
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

#[inline(always)]
fn is_known_method(method: &str) -> bool {
    // By length, then bytes: no call, a few compares; it runs on every request. (The same list
    // as KNOWN_METHODS; a unit test holds them together.)
    match method.len() {
        3 => matches!(method, "GET" | "PUT"),
        4 => matches!(method, "HEAD" | "POST"),
        5 => matches!(method, "TRACE" | "PATCH"),
        6 => method == "DELETE",
        7 => matches!(method, "CONNECT" | "OPTIONS"),
        _ => false,
    }
}

/// `1*DIGIT` and nothing else: no sign, no inner spaces, no list. A numeral too large for a
/// u64 is no length at all: malformed (400), as nginx, Apache and Go have it, where a length
/// merely over the limit is 413.
fn parse_content_length(value: &[u8]) -> Result<u64, Status> {
    numeral(value.trim_ascii())
        .flatten()
        .ok_or(Status::BAD_REQUEST)
}

/// `1*DIGIT` and nothing else (no sign, no space) as a number; one too large for a `u64` reads
/// as `u64::MAX`, which is past any limit or length it is compared with. A range position, a
/// demo parameter (a Content-Length too large is malformed instead: `parse_content_length`).
pub fn decimal(digits: &[u8]) -> Option<u64> {
    numeral(digits).map(|value| value.unwrap_or(u64::MAX))
}

/// `1*DIGIT` and nothing else: `None` if `digits` is not that, `Some(None)` if its value is too
/// large for a `u64`.
fn numeral(digits: &[u8]) -> Option<Option<u64>> {
    (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then(|| {
        digits.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(data: &[u8]) -> Result<Scanned, Status> {
        HeadScan::default().scan(data, 16 * 1024)
    }

    /// Feeds `data` one byte at a time, as a slow client would.
    fn scan_bytewise(data: &[u8], limit: usize) -> Result<Scanned, Status> {
        let mut scan = HeadScan::default();
        for end in 1..=data.len() {
            match scan.scan(&data[..end], limit)? {
                Scanned::NeedData => continue,
                done => return Ok(done),
            }
        }
        Ok(Scanned::NeedData)
    }

    #[test]
    fn finds_the_end_whole_bytewise_and_with_a_request_behind() {
        let cases: &[(&[u8], usize)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
            (b"GET / HTTP/1.1\nHost: a\n\n", 24),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 26),
            (b"GET / HTTP/1.0\r\n\r\n", 18),
        ];
        for &(head, len) in cases {
            assert_eq!(scan_whole(head), Ok(Scanned::Complete(len)));
            assert_eq!(scan_bytewise(head, 1 << 14), Ok(Scanned::Complete(len)));
            let mut pipelined = head.to_vec();
            pipelined.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
            assert_eq!(scan_whole(&pipelined), Ok(Scanned::Complete(len)));
            assert_eq!(scan_whole(&head[..len - 1]), Ok(Scanned::NeedData));
        }
    }

    #[test]
    fn a_bytewise_head_is_scanned_in_linear_time() {
        // 16 KiB of headers fed a byte at a time: quadratic rescanning would be ~10^8 steps.
        // (Fewer fields than MAX_HEADERS, each judged once as it completes.)
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        let field = [&b"X-Filler: "[..], &[b'a'; 200], b"\r\n"].concat();
        while head.len() < 16_000 {
            head.extend_from_slice(&field);
        }
        head.extend_from_slice(b"\r\n");
        let mut scan = HeadScan::default();
        let mut steps = 0usize;
        for end in 1..=head.len() {
            steps += end - scan.scanned as usize;
            if let Scanned::Complete(n) = scan.scan(&head[..end], 1 << 15).unwrap() {
                assert_eq!(n, head.len());
            }
        }
        assert!(steps < head.len() * 3, "{steps}");
    }

    /// The request line is judged as it arrives (method, then length, then the whole line):
    /// whole or a byte at a time, under any head limit, the verdict is the same.
    #[test]
    fn a_request_line_is_judged_alike_however_it_arrives() {
        let long_method = [b'M'; 40];
        let long_method_line = [&long_method[..], b" / HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        let long_everything =
            [&long_method[..], b" /", &[b'a'; 9000], b" HTTP/1.1\r\n\r\n"].concat();
        let inputs: [&[u8]; 10] = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\r\nHost: a\r\n\r\n",
            b"GET\r\n\r\n",
            &[b'M'; 32],
            &long_method,
            &long_method_line,
            &long_everything,
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for input in inputs {
            for limit in [8, 20, 33, 34, 40, 1 << 14] {
                assert_eq!(
                    HeadScan::default().scan(input, limit),
                    scan_bytewise(input, limit),
                    "{:?} under {limit}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        let verdict = |input: &[u8]| scan_bytewise(input, 1 << 14);
        assert_eq!(verdict(inputs[0]), Err(Status::BAD_REQUEST));
        assert_eq!(verdict(inputs[2]), Err(Status::BAD_REQUEST));
        assert_eq!(verdict(&[b'M'; 32]), Ok(Scanned::NeedData));
        // A method longer than any is 501 as soon as it is (RFC 9112 3), however long its line
        // and whether or not the line has ended.
        assert_eq!(verdict(&long_method), Err(Status::NOT_IMPLEMENTED));
        assert_eq!(verdict(&long_method_line), Err(Status::NOT_IMPLEMENTED));
        assert_eq!(verdict(&long_everything), Err(Status::NOT_IMPLEMENTED));
        assert_eq!(
            verdict(&[&[b'M'; 100_000][..], b" / HTTP/1.1\r\n\r\n"].concat()),
            Err(Status::NOT_IMPLEMENTED)
        );
        // Answered at the line, as the whole head's parse answers it.
        assert_eq!(verdict(inputs[8]), Err(Status::VERSION_NOT_SUPPORTED));
        assert_eq!(
            verdict(&inputs[8][..16]),
            Err(Status::VERSION_NOT_SUPPORTED)
        );
    }

    /// The head's length once it is whole and valid; `None` while it is neither.
    type Answer = Result<Option<usize>, Status>;

    /// What the connection answers a head that arrives in pieces of `step` bytes: the scan's
    /// refusal, or the whole head's parse once the scan finds its end.
    fn answer(data: &[u8], step: usize, limit: usize) -> Answer {
        let mut scan = HeadScan::default();
        let mut end = 0;
        while end < data.len() {
            end = (end + step).min(data.len());
            if let Scanned::Complete(len) = scan.scan(&data[..end], limit)? {
                let mut head = data[..len].to_vec();
                downgrade_later_minor(&mut head);
                return parse_head(&head, &mut header_storage()).map(|_| Some(len));
            }
        }
        Ok(None)
    }

    /// Field lines are judged as each is whole, and a stray CR in any line as soon as a byte
    /// follows it: heads that cannot be requests are refused before their end arrives, not
    /// at the header timeout. The answer is the one the whole head gets, however it arrives.
    #[test]
    fn a_head_is_refused_as_its_lines_arrive_and_alike_whole() {
        let many = |n: usize, last: &[u8]| {
            let fields = b"X: y\r\n".repeat(n);
            [
                &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
                &fields,
                last,
                b"\r\n",
            ]
            .concat()
        };
        let long_line = [&b"GET /"[..], &[b'a'; 9000], b" HTTP/1.1\r\n\r\n"].concat();
        let cr_then_long = [&b"GET /a\rb"[..], &[b'a'; 9000], b" HTTP/1.1\r\n\r\n"].concat();
        // (head, answer, the answer before its last line arrives)
        let cases: &[(&[u8], Answer, Answer)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Some(27)), Ok(None)),
            (
                b"GET / HTTP/1.1\r\nHo\x01st: a\r\nX: y\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
                Err(Status::BAD_REQUEST),
                Ok(None),
            ),
            (
                b"GET / HTTP/1.1\rHost: a\r\r",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                b"GET /a\rb HTTP/1.1\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            // Another major version: the parse stops at the line (505), whatever follows, and
            // so the line is answered as soon as it is whole.
            (
                b"GET / HTTP/2.0\r\nB\x01d: x\r\nY: z\r\n\r\n",
                Err(Status::VERSION_NOT_SUPPORTED),
                Err(Status::VERSION_NOT_SUPPORTED),
            ),
            // A target of none of the four forms: 400 as soon as the line is whole.
            (
                b"GET http//t/x HTTP/1.1\r\nHost: t\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                b"CONNECT /x HTTP/1.1\r\nHost: t\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            // No version at all: 400 as soon as the line is whole.
            (
                b"GET / HtTP/1.0\r\n\t=\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            // A later minor version is read as 1.1, fields and all.
            (
                b"GET / HTTP/1.2\r\nHost: a\r\nB\x01d: x\r\nY: z\r\n\r\n",
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Ok(Some(27)), Ok(None)),
            // Storage for MAX_HEADERS fields: the Host and 99 more fit, one more is 431, and
            // so is a bad line after it; a bad line before it is 400.
            (&many(99, b""), Ok(Some(27 + 99 * 6)), Ok(None)),
            (
                &many(100, b""),
                Err(Status::HEADERS_TOO_LARGE),
                Err(Status::HEADERS_TOO_LARGE),
            ),
            (
                &many(100, b"B\x01d: x\r\nY: z\r\n"),
                Err(Status::HEADERS_TOO_LARGE),
                Err(Status::HEADERS_TOO_LARGE),
            ),
            (
                &many(99, b"B\x01d: x\r\nY: z\r\n"),
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            (
                &long_line,
                Err(Status::URI_TOO_LONG),
                Err(Status::URI_TOO_LONG),
            ),
            // A stray CR within the line's first 8 KiB is found before its length is judged.
            (
                &cr_then_long,
                Err(Status::BAD_REQUEST),
                Err(Status::BAD_REQUEST),
            ),
            // In a field line, as soon as the byte after it arrives, before any LF.
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb",
                Err(Status::BAD_REQUEST),
                Ok(None),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\rGET",
                Err(Status::BAD_REQUEST),
                Ok(None),
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r", Ok(None), Ok(None)),
            (
                b"GET / HTTP/2.0\r\nX: a\rb",
                Err(Status::VERSION_NOT_SUPPORTED),
                Err(Status::VERSION_NOT_SUPPORTED),
            ),
        ];
        for (head, whole, early) in cases {
            let text = String::from_utf8_lossy(head);
            for step in [1, 2, 3, 7, head.len()] {
                assert_eq!(
                    answer(head, step, 1 << 14),
                    *whole,
                    "{text:?} in steps of {step}"
                );
            }
            // All but the last line: what is refused already, and what still waits.
            let last_line = head[..head.len() - 1].iter().rposition(|&b| b == b'\n');
            let before_last = &head[..last_line.map_or(head.len() - 1, |at| at + 1)];
            assert_eq!(
                answer(before_last, 1, 1 << 14),
                *early,
                "{text:?} without its last line"
            );
        }
        // A line past the head's limit is not judged: the head is too large however it reads,
        // and whole or bytewise it is 431.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nB\x01d: x\r\n\r\n";
        for step in [1, head.len()] {
            assert_eq!(answer(head, step, 30), Err(Status::HEADERS_TOO_LARGE));
        }
        // Except for a stray CR whose next byte is within the limit, in a line that ends past
        // it: refused as it arrives, so refused whole too. One byte further on, it is 431.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ab\rcdefghij\r\n\r\n";
        for (limit, verdict) in [(32, Status::BAD_REQUEST), (31, Status::HEADERS_TOO_LARGE)] {
            for step in [1, 2, 3, head.len()] {
                assert_eq!(answer(head, step, limit), Err(verdict), "{limit} {step}");
            }
        }
    }

    #[test]
    fn limits_give_414_and_431() {
        // Unterminated, 8 KiB and 2 bytes: over even if the next byte were the final LF.
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_REQUEST_LINE + 2, b'a');
        assert_eq!(scan_whole(&long_line), Err(Status::URI_TOO_LONG));
        assert_eq!(
            scan_bytewise(&long_line, 1 << 14),
            Err(Status::URI_TOO_LONG)
        );
        // Exactly 8 KiB of request line, line ending not counted, passes however it arrives;
        // one byte more is 414.
        for (extra, eol) in [(0, "\r\n"), (0, "\n"), (1, "\r\n"), (1, "\n")] {
            let mut line = b"GET /".to_vec();
            line.resize(MAX_REQUEST_LINE - " HTTP/1.1".len() + extra, b'a');
            line.extend_from_slice(format!(" HTTP/1.1{eol}Host: h{eol}{eol}").as_bytes());
            let expect_ok = extra == 0;
            let whole = scan_whole(&line);
            let bytewise = scan_bytewise(&line, 1 << 14);
            for result in [whole, bytewise] {
                match result {
                    Ok(Scanned::Complete(_)) => assert!(expect_ok, "{extra} {eol:?}"),
                    Err(Status::URI_TOO_LONG) => assert!(!expect_ok, "{extra} {eol:?}"),
                    other => panic!("{other:?}"),
                }
            }
        }

        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.resize(2000, b'a');
        assert_eq!(scan_bytewise(&big, 1000), Err(Status::HEADERS_TOO_LARGE));
        // A request line that alone overflows a small head limit is 414, not 431.
        assert_eq!(scan_bytewise(&long_line, 4096), Err(Status::URI_TOO_LONG));
        assert_eq!(
            scan_bytewise(&long_line[..5000], 4096),
            Err(Status::URI_TOO_LONG)
        );
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            HeadScan::default().scan(&big, 1000),
            Err(Status::HEADERS_TOO_LARGE)
        );
        // Exactly at the limit is allowed; one byte over is not.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            HeadScan::default().scan(head, head.len()),
            Ok(Scanned::Complete(head.len()))
        );
        assert_eq!(
            HeadScan::default().scan(head, head.len() - 1),
            Err(Status::HEADERS_TOO_LARGE)
        );
    }

    #[test]
    fn skips_leading_empty_lines() {
        assert_eq!(leading_empty_lines(b"\r\n\r\nGET"), 4);
        assert_eq!(leading_empty_lines(b"\n\r\nGET"), 3);
        assert_eq!(leading_empty_lines(b"\r"), 0);
        assert_eq!(leading_empty_lines(b"GET"), 0);
    }

    fn parse(head: &str) -> Result<(String, Option<String>, Framing), Status> {
        let mut storage = header_storage();
        let (request, framing) = parse_head(head.as_bytes(), &mut storage)?;
        Ok((
            request.path.to_string(),
            request.query.map(str::to_string),
            framing,
        ))
    }

    fn body_of(head: &str) -> Result<BodyLength, Status> {
        parse(head).map(|(_, _, framing)| framing.body)
    }

    #[test]
    fn framing_table() {
        use BodyLength::*;
        let ok: &[(&str, BodyLength)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                None,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  007 \r\n\r\n",
                Length(7),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Chunked,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
                Chunked,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
                Length(u64::MAX),
            ),
            ("GET / HTTP/1.0\r\n\r\n", None),
        ];
        for (head, body) in ok {
            assert_eq!(body_of(head), Ok(*body), "{head:?}");
        }
        let bad = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
            // One past u64::MAX, and far past it: numerals no length can have.
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
            "GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            "GET / FTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for head in bad {
            assert_eq!(body_of(head), Err(Status::BAD_REQUEST), "{head:?}");
        }
        for head in [
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            "GET / HTTP/3.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                body_of(head),
                Err(Status::VERSION_NOT_SUPPORTED),
                "{head:?}"
            );
        }
    }

    /// The one-pass path agrees with scan-then-parse, and defers to it whenever the head is not
    /// complete and valid within the limit.
    #[test]
    fn whole_heads_parse_in_one_pass() {
        let whole = |data: &[u8], limit| {
            let mut storage = header_storage();
            parse_whole_head(data, &mut storage, limit).map(|head| {
                head.map(|(request, framing, len)| (request.path.to_string(), framing.body, len))
            })
        };
        let head = b"POST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        assert_eq!(
            whole(head, 1024),
            Some(Ok((
                "/p".to_string(),
                BodyLength::Length(3),
                head.len() - 6
            )))
        );
        // Incomplete, malformed, or over the limit: deferred, not decided here.
        assert_eq!(whole(&head[..20], 1024), None);
        assert_eq!(whole(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 1024), None);
        assert_eq!(whole(head, 20), None);
        // Framing errors on a complete head are final.
        assert_eq!(
            whole(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 1024),
            Some(Err(Status::BAD_REQUEST))
        );
        // A request line over 8 KiB is 414 on this path too, even when the whole head fits.
        for eol in ["\r\n", "\n"] {
            let line = format!("GET /{} HTTP/1.1{eol}", "a".repeat(MAX_REQUEST_LINE - 14));
            let head = format!("{line}Host: h{eol}{eol}");
            assert!(
                matches!(whole(head.as_bytes(), 16 * 1024), Some(Ok(_))),
                "{eol:?}"
            );
            let line = format!("GET /{} HTTP/1.1{eol}", "a".repeat(MAX_REQUEST_LINE - 13));
            let head = format!("{line}Host: h{eol}{eol}");
            assert_eq!(
                whole(head.as_bytes(), 16 * 1024),
                Some(Err(Status::URI_TOO_LONG)),
                "{eol:?}"
            );
            // Checked before anything else, as the scanner does: 414 even when the head is
            // also wrong in another way (two Host fields).
            let head = format!("{line}Host: h{eol}Host: i{eol}{eol}");
            assert_eq!(
                whole(head.as_bytes(), 16 * 1024),
                Some(Err(Status::URI_TOO_LONG)),
                "{eol:?}"
            );
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert_eq!(body_of(&head), Err(Status::HEADERS_TOO_LARGE));
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let cases = [
            (
                "GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n",
                "/a/b",
                Some("x=1&y"),
            ),
            ("GET /? HTTP/1.1\r\nHost: h\r\n\r\n", "/", Some("")),
            (
                "GET http://h/a?q HTTP/1.1\r\nHost: h\r\n\r\n",
                "/a",
                Some("q"),
            ),
            ("GET HTTP://h:8/ HTTP/1.1\r\nHost: h\r\n\r\n", "/", None),
            ("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", "/", None),
            ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*", None),
        ];
        for (head, path, query) in cases {
            let (p, q, _) = parse(head).unwrap();
            assert_eq!((p.as_str(), q.as_deref()), (path, query), "{head:?}");
        }
    }

    /// The Host a request is for: validated wherever it comes from, and taken from an
    /// absolute-form target over the field.
    #[test]
    fn hosts() {
        let host = |head: &str| {
            let mut storage = header_storage();
            parse_head(head.as_bytes(), &mut storage)
                .map(|(request, _)| request.host.map(str::to_string))
        };
        let some = |host: &str| Ok(Some(host.to_string()));
        assert_eq!(
            host("GET / HTTP/1.1\r\nHost: a.b:80\r\n\r\n"),
            some("a.b:80")
        );
        assert_eq!(host("GET / HTTP/1.1\r\nHost:  a \r\n\r\n"), some("a"));
        assert_eq!(
            host("GET http://x:1/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            some("x:1")
        );
        assert_eq!(host("GET / HTTP/1.0\r\n\r\n"), Ok(None));
        assert_eq!(host("GET / HTTP/1.0\r\nHost: [::1]\r\n\r\n"), some("[::1]"));
        for head in [
            "GET / HTTP/1.1\r\nHost:\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a/b\r\n\r\n",
            "GET / HTTP/1.0\r\nHost:\r\n\r\n",
            "GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a:b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(host(head), Err(Status::BAD_REQUEST), "{head:?}");
        }
    }

    #[test]
    fn methods_and_expectations_the_core_refuses() {
        let framing = |head: &str| parse(head).map(|(_, _, framing)| framing);
        for method in KNOWN_METHODS {
            let target = if method == "CONNECT" { "a:443" } else { "/" };
            let head = format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(framing(&head).unwrap().known_method, "{method}");
        }
        for method in ["BREW", "get", "PROPFIND", &"X".repeat(MAX_METHOD)] {
            let head = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(!framing(&head).unwrap().known_method, "{method}");
        }
        let long = format!(
            "{} / HTTP/1.1\r\nHost: a\r\n\r\n",
            "X".repeat(MAX_METHOD + 1)
        );
        assert_eq!(framing(&long), Err(Status::NOT_IMPLEMENTED));
        for expect in ["200-ok", "100-continue, x", "", "100-continuex"] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nExpect: {expect}\r\n\r\n");
            assert_eq!(
                framing(&head),
                Err(Status::EXPECTATION_FAILED),
                "{expect:?}"
            );
        }
        assert_eq!(
            framing("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Status::BAD_REQUEST)
        );
    }

    #[test]
    fn later_minor_versions_read_as_1_1() {
        for (line, changed) in [
            ("GET / HTTP/1.2", true),
            ("GET / HTTP/1.9", true),
            ("GET / HTTP/1.1", false),
            ("GET / HTTP/1.0", false),
            ("GET / HTTP/2.2", false),
            ("GET / HTTP/1.10", false),
            ("GET /a b HTTP/1.2", false),
        ] {
            for eol in ["\r\n", "\n"] {
                let mut head = format!("{line}{eol}Host: a{eol}{eol}").into_bytes();
                assert_eq!(downgrade_later_minor(&mut head), changed, "{line}");
                if changed {
                    let mut storage = header_storage();
                    let (request, _) = parse_head(&head, &mut storage).unwrap();
                    assert_eq!(request.version, Version::Http11);
                }
            }
        }
    }

    #[test]
    fn persistence_and_expectations() {
        let framing = |head: &str| parse(head).unwrap().2;
        assert!(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n").keep_alive);
        assert!(!framing("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(framing("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            framing(
                "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
            )
            .expect_continue
        );
        assert!(
            !framing("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(framing("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").head_method);
    }
}
