//! What a handler answers, and how its head becomes bytes.
//!
//! A handler returns a [`Response`]; the connection (`conn.rs`) decides the framing headers
//! (`Content-Length`, `Connection`) and has the loop's [`HeadCache`] append the status line and
//! headers to its output buffer: a copy of the last head when the response is the same kind as
//! the last one, otherwise [`write_head`]. The body is bytes, copied after the head, or a region
//! of an open file, which the driver sends with sendfile.

use std::borrow::Cow;
use std::fs::File;
use std::num::NonZeroU64;
use std::sync::Arc;

use super::buf::{BufferBudget, Charge};
use super::date::{Civil, Clock};
use super::request::{EntityTags, Request};

/// An HTTP status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(pub u16);

/// What follows every status line: a macro, so `concat!` can join it to each one.
macro_rules! SERVER_AND_DATE {
    () => {
        "Server: reactor-httpd\r\nDate: "
    };
}

macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal,)*) => {
        impl Status {
            $(pub const $name: Status = Status($code);)*

            /// The reason phrase, or `""` for a code without one here.
            pub fn reason(self) -> &'static str {
                match self.0 { $($code => $reason,)* _ => "" }
            }

            /// The status line and the fixed header that follows it, up to the `Date` value, for
            /// the codes we know: the common case starts with one copy.
            fn head_start(self) -> Option<&'static [u8]> {
                match self.0 {
                    $($code => Some(concat!(
                        "HTTP/1.1 ", $code, " ", $reason, "\r\n", SERVER_AND_DATE!()
                    ).as_bytes()),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    CONTINUE = 100 "Continue",
    OK = 200 "OK",
    NO_CONTENT = 204 "No Content",
    CREATED = 201 "Created",
    PARTIAL_CONTENT = 206 "Partial Content",
    MOVED_PERMANENTLY = 301 "Moved Permanently",
    NOT_MODIFIED = 304 "Not Modified",
    BAD_REQUEST = 400 "Bad Request",
    FORBIDDEN = 403 "Forbidden",
    NOT_FOUND = 404 "Not Found",
    METHOD_NOT_ALLOWED = 405 "Method Not Allowed",
    REQUEST_TIMEOUT = 408 "Request Timeout",
    PRECONDITION_FAILED = 412 "Precondition Failed",
    PAYLOAD_TOO_LARGE = 413 "Content Too Large",
    URI_TOO_LONG = 414 "URI Too Long",
    RANGE_NOT_SATISFIABLE = 416 "Range Not Satisfiable",
    EXPECTATION_FAILED = 417 "Expectation Failed",
    HEADERS_TOO_LARGE = 431 "Request Header Fields Too Large",
    INTERNAL_SERVER_ERROR = 500 "Internal Server Error",
    NOT_IMPLEMENTED = 501 "Not Implemented",
    SERVICE_UNAVAILABLE = 503 "Service Unavailable",
    GATEWAY_TIMEOUT = 504 "Gateway Timeout",
    VERSION_NOT_SUPPORTED = 505 "HTTP Version Not Supported",
}

impl Status {
    /// Responses with these codes never carry a body (RFC 9110 6.4.1), so no Content-Length.
    pub fn forbids_body(self) -> bool {
        self.0 < 200 || self == Status::NO_CONTENT || self == Status::NOT_MODIFIED
    }
}

/// What the preconditions of `request` make of `response` when the response has no entity tag
/// of its own (a handler's answer, such as `/hello`); `None` when they let it stand.
///
/// With no entity tag, nothing can match one (RFC 9110 13.1.1, 13.1.2): an `If-Match` holds only
/// as `*`, and fails with 412 otherwise; an `If-None-Match: *` fails for a representation that
/// exists, with 304 for GET and HEAD and 412 for other methods, while a list of tags holds.
/// `*` is the whole value or nothing: in a list it makes the field malformed ([`EntityTags`]),
/// and a malformed field matches nothing, so it fails as an `If-Match` and holds as an
/// `If-None-Match`. A handler that sends an `ETag` (the static files) has evaluated the
/// conditions itself, and a response other than 2xx ignores them (13.2.1). `If-Match` is
/// evaluated first (13.2.2).
pub fn unvalidated_precondition(request: &Request<'_>, response: &Response) -> Option<Status> {
    if !(200..300).contains(&response.status.0)
        || (response.headers.iter()).any(|(name, _)| name.eq_ignore_ascii_case("etag"))
    {
        return None;
    }
    // For a field that is there: whether it is `*`.
    let any = |name| {
        let list = request.headers.get_list(name)?;
        Some(EntityTags::parse(&list) == Some(EntityTags::Any))
    };
    if any("if-match") == Some(false) {
        return Some(Status::PRECONDITION_FAILED);
    }
    if any("if-none-match") == Some(true) {
        return Some(match request.method {
            "GET" | "HEAD" => Status::NOT_MODIFIED,
            _ => Status::PRECONDITION_FAILED,
        });
    }
    None
}

impl Response {
    /// The answer to a request whose precondition failed with `status` (see
    /// [`unvalidated_precondition`]), in place of this response. A 304 keeps the fields a cache
    /// updates its copy with (RFC 9110 15.4.5).
    pub fn failed_precondition(&mut self, status: Status) {
        const KEPT: [&str; 4] = ["vary", "cache-control", "expires", "content-location"];
        *self = match status {
            Status::NOT_MODIFIED => {
                let mut headers = std::mem::take(&mut self.headers);
                headers.retain(|(name, _)| KEPT.iter().any(|kept| name.eq_ignore_ascii_case(kept)));
                Response {
                    headers,
                    ..Response::new(status)
                }
            }
            _ => Response::error(status),
        };
    }
}

/// A region of an open file, sent with sendfile(2) by the driver.
#[derive(Debug)]
pub struct FileBody {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// Several ranges of one file as a `multipart/byteranges` body (RFC 9110 14.6): before each
/// range a small head of its own (a boundary line, `Content-Type`, `Content-Range`), after the
/// last a closing boundary line. The heads go into the output buffer as the connection reaches
/// them; the ranges go out with sendfile like any file body, one after another. Its length is
/// known in advance, so it goes with a `Content-Length`.
#[derive(Debug)]
pub struct Multipart {
    /// The file, and the range being sent (`len` 0 between ranges).
    current: FileBody,
    /// Every range, `(start, end)` inclusive, in the order sent.
    ranges: Vec<(u64, u64)>,
    /// The next range to send is `ranges[next]`.
    next: usize,
    /// Separates the parts; also in the response's Content-Type.
    boundary: String,
    /// The Content-Type of the file, which every part has.
    part_type: String,
    file_len: u64,
    /// The whole body's length.
    len: u64,
}

impl Multipart {
    /// `ranges` of a file of `file_len` bytes whose own Content-Type is `part_type`: each
    /// `(start, end)` with `start <= end < file_len`, at least one (see
    /// `static_files::range::parse_range`, which also leaves out what RFC 9110 14.2 lets a
    /// server ignore). The boundary is random, 24 hex digits, so that a file is most unlikely
    /// to hold it.
    pub fn new(file: File, ranges: Vec<(u64, u64)>, part_type: &str, file_len: u64) -> Self {
        assert!(
            !ranges.is_empty()
                && ranges
                    .iter()
                    .all(|&(start, end)| start <= end && end < file_len),
            "multipart ranges must lie within the file"
        );
        use std::hash::{BuildHasher, Hasher};
        let random = || {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let mut parts = Multipart {
            current: FileBody {
                file,
                offset: 0,
                len: 0,
            },
            ranges,
            next: 0,
            boundary: format!("{:016x}{:08x}", random(), random() as u32),
            part_type: part_type.to_string(),
            file_len,
            len: 0,
        };
        let mut heads = Vec::new();
        for index in 0..parts.ranges.len() {
            parts.part_head(index, &mut heads);
        }
        parts.closing(&mut heads);
        let ranges: u64 = (parts.ranges.iter())
            .map(|&(start, end)| end - start + 1)
            .sum();
        parts.len = heads.len() as u64 + ranges;
        parts
    }

    /// The response's Content-Type.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The range being sent, while some of it is left.
    pub(crate) fn current(&self) -> Option<&FileBody> {
        (self.current.len > 0).then_some(&self.current)
    }

    pub(crate) fn current_mut(&mut self) -> &mut FileBody {
        &mut self.current
    }

    /// Once the current range is sent: appends the head of the next part to `out`, and makes
    /// its range current; after the last, appends the closing line. Returns whether a range
    /// follows (false: the body is complete).
    pub(crate) fn advance(&mut self, out: &mut Vec<u8>) -> bool {
        debug_assert_eq!(self.current.len, 0);
        let Some(&(start, end)) = self.ranges.get(self.next) else {
            self.closing(out);
            return false;
        };
        self.part_head(self.next, out);
        self.next += 1;
        self.current.offset = start;
        self.current.len = end - start + 1;
        true
    }

    /// `--boundary`, the part's fields, and the blank line; every part after the first starts
    /// on a line of its own.
    fn part_head(&self, index: usize, out: &mut Vec<u8>) {
        let (start, end) = self.ranges[index];
        let separator = if index == 0 { "" } else { "\r\n" };
        let head = format!(
            "{separator}--{}\r\nContent-Type: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\r\n",
            self.boundary, self.part_type, self.file_len
        );
        out.extend_from_slice(head.as_bytes());
    }

    fn closing(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("\r\n--{}--\r\n", self.boundary).as_bytes());
    }
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    File(FileBody),
    /// Several ranges of one file (`multipart/byteranges`).
    Parts(Box<Multipart>),
    /// Bytes shared between responses (a directory's listing, made once for every client that
    /// asks for it at the same time): copied out a piece at a time as the connection sends, so
    /// a client that reads slowly holds a reference, not a copy.
    Shared(Arc<SharedBytes>),
    /// Made as it is sent, a bounded piece at a time; its length is not known in advance, so it
    /// goes with chunked transfer coding, or to an HTTP/1.0 client as a body that ends with the
    /// connection.
    Stream(Box<dyn BodyStream>),
}

/// The bytes of a [`Body::Shared`], with the share of the buffer budget (`--max-buffer-bytes`)
/// they hold, if they were made to count against it: given back when the last response holding
/// them lets go, however its connection ends.
pub struct SharedBytes {
    bytes: Vec<u8>,
    _charge: Option<Charge>,
}

impl SharedBytes {
    /// Bytes that count against no budget.
    pub fn new(bytes: Vec<u8>) -> Self {
        SharedBytes {
            bytes,
            _charge: None,
        }
    }

    /// `bytes`, their allocation shrunk to their length, holding that much of `budget`; `None`
    /// if it has not that much left.
    pub(crate) fn charged(mut bytes: Vec<u8>, budget: &Arc<BufferBudget>) -> Option<Self> {
        bytes.shrink_to_fit();
        let mut charge = Charge::new(budget);
        charge.try_grow(bytes.capacity()).then_some(SharedBytes {
            bytes,
            _charge: Some(charge),
        })
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.bytes.len())
    }
}

/// A body made as it goes (a file compressed on the fly, say). The connection asks for one
/// piece at a time, when its output has room, and frames each as a chunk (HTTP/1.1).
pub trait BodyStream: Send + std::fmt::Debug {
    /// Appends the next piece of the body to `out`, reading at most
    /// [`STREAM_PIECE`](super::conn::STREAM_PIECE) of its source; returns how many bytes it
    /// appended, 0 once the body is complete. An error ends the connection (the response cannot
    /// be completed).
    fn next_piece(&mut self, out: &mut Vec<u8>) -> std::io::Result<usize>;
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(bytes) => bytes.len() as u64,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Shared(bytes) => bytes.len() as u64,
            Body::File(file) => file.len,
            Body::Parts(parts) => parts.len,
            Body::Stream(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the body: an empty one (what is left once the connection has queued it, as it does
    /// for every response with a body) with no call. Dropped as a field of its response, the
    /// body's drop code, too large to inline since `Parts` joined the kinds, was called out of
    /// line for every response: 14 instructions per pipelined request under callgrind.
    #[inline(always)]
    pub(crate) fn discard(self) {
        match self {
            // Forgotten, not dropped: an empty body owns nothing, and its drop would still be
            // a call.
            Body::Empty => std::mem::forget(self),
            body => drop_body(body),
        }
    }
}

#[cold]
#[inline(never)]
fn drop_body(body: Body) {
    drop(body);
}

/// A handler's answer. The connection adds `Date`, `Server`, `Content-Length` and `Connection`.
#[derive(Debug)]
pub struct Response {
    pub status: Status,
    /// A field of its own because nearly every response has one, and a static string costs no
    /// allocation on the hot path.
    pub content_type: Option<Cow<'static, str>>,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// `Last-Modified`, in whole seconds since the epoch. The head writes it as of its own
    /// `Date` when that is earlier (RFC 9110 8.8.2.1: an origin server with a clock never sends
    /// a modification date after the message's origination), so a handler needs no clock of its
    /// own, and the two fields cannot disagree.
    pub last_modified: Option<Modified>,
    pub body: Body,
}

impl Response {
    pub fn new(status: Status) -> Self {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            last_modified: None,
            body: Body::Empty,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: Status, body: impl Into<Cow<'static, str>>) -> Self {
        let body = match body.into() {
            Cow::Borrowed(text) => Body::Static(text.as_bytes()),
            Cow::Owned(text) => Body::Bytes(text.into_bytes()),
        };
        Response {
            content_type: Some(Cow::Borrowed("text/plain; charset=utf-8")),
            body,
            ..Response::new(status)
        }
    }

    /// The small plain-text body every error status gets: `404 Not Found`.
    pub fn error(status: Status) -> Self {
        let mut text = String::with_capacity(40);
        text.push_str(itoa::Buffer::new().format(status.0));
        text.push(' ');
        text.push_str(status.reason());
        text.push('\n');
        Response::text(status, text)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_content_type(mut self, content_type: impl Into<Cow<'static, str>>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// `Last-Modified` (see [`Response::last_modified`]).
    pub fn with_last_modified(mut self, unix_seconds: u64) -> Self {
        self.last_modified = Some(Modified::at(unix_seconds));
        self
    }

    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// The value of an extra header this response carries, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// A modification time, for `Last-Modified`: whole seconds since the epoch. Held as one more
/// than that, in a `NonZeroU64`, so that `Option<Modified>` takes 8 bytes rather than 16: every
/// response carries the option and is moved several times on its way to the head, and the
/// larger one cost each `/hello` 15 instructions more (callgrind), the smaller 0 (4 for a
/// pipelined one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modified(NonZeroU64);

impl Modified {
    /// `unix_seconds` after the epoch (the last representable second is one short of the
    /// largest `u64`, which no date this server writes comes near).
    pub fn at(unix_seconds: u64) -> Self {
        Modified(NonZeroU64::MIN.saturating_add(unix_seconds))
    }

    pub fn unix_seconds(self) -> u64 {
        self.0.get() - 1
    }
}

/// What the `Connection` header of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: say nothing.
    KeepAliveImplied,
    /// An HTTP/1.0 client asked for keep-alive: confirm it.
    KeepAlive,
    Close,
    /// Close, and the body ends where the connection does: a streamed body to an HTTP/1.0
    /// client, which knows no chunked coding. Neither Content-Length nor Transfer-Encoding.
    CloseDelimited,
}

/// Appends the status line and headers of `response` to `out`. `content_length` is the length of
/// the body the response describes (for HEAD too, though none follows).
pub fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    content_length: u64,
    persistence: Persistence,
    clock: &Clock,
    always: &[(String, String)],
) {
    let content_type = response.content_type.as_deref().unwrap_or_default();
    let fields = || {
        let own = response
            .headers
            .iter()
            .map(|(name, value)| (*name, &**value));
        own.chain(always.iter().map(|(name, value)| (&**name, &**value)))
    };
    let extra: usize = fields()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    // One reservation for the whole head, so none of the appends below has to grow the buffer.
    out.reserve(HEAD_MAX_FIXED + content_type.len() + extra);
    match response.status.head_start() {
        Some(start) => out.extend_from_slice(start),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(response.status.0).as_bytes());
            out.extend_from_slice(concat!(" \r\n", SERVER_AND_DATE!()).as_bytes());
        }
    }
    out.extend_from_slice(clock.http_date());
    if response.content_type.is_some() {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
    }
    if matches!(response.body, Body::Stream(_)) {
        if persistence != Persistence::CloseDelimited {
            out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
        }
    } else if !response.status.forbids_body() {
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
    }
    if let Some(modified) = response.last_modified {
        out.extend_from_slice(b"\r\nLast-Modified: ");
        let date = Civil::of_secs(modified.unix_seconds().min(clock.unix_second())).http_date();
        out.extend_from_slice(&date);
    }
    for (name, value) in fields() {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    match persistence {
        Persistence::KeepAliveImplied => out.extend_from_slice(b"\r\n\r\n"),
        Persistence::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n"),
        Persistence::Close | Persistence::CloseDelimited => {
            out.extend_from_slice(b"\r\nConnection: close\r\n\r\n")
        }
    }
}

/// An upper bound on a head's length apart from its content type and extra headers: the longest
/// status line and the fixed fields, with a 20-digit length.
const HEAD_MAX_FIXED: usize = 64
    + SERVER_AND_DATE!().len()
    + 29
    + "\r\nContent-Type: ".len()
    + "\r\nContent-Length: ".len()
    + 20
    + "\r\nLast-Modified: ".len()
    + 29
    + "\r\nConnection: keep-alive\r\n\r\n".len();

/// The head last serialized on one loop, reused while identical responses follow one another
/// within the same second: a server answering the same small resource again and again (a health
/// check, a favicon, the benchmark's `/hello`) then copies one slice per response instead of
/// assembling the head field by field. Like the `Date` value, it is rebuilt at most once a second
/// per kind of response. Only heads made of static parts are kept, because their identity can be
/// checked by address, without comparing text.
#[derive(Default)]
pub struct HeadCache {
    key: Option<HeadKey>,
    head: Vec<u8>,
    /// `--header`: fields every response carries, after its own.
    always: Arc<[(String, String)]>,
}

/// Everything a cacheable head depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct HeadKey {
    status: Status,
    /// The address and length of a `&'static str`: static text never changes, so equal
    /// addresses mean equal text.
    content_type: Option<(usize, usize)>,
    content_length: u64,
    persistence: Persistence,
    second: u64,
}

impl HeadKey {
    /// `None` for a head that has parts the key cannot identify cheaply: extra headers, a
    /// modification date, or a content type built at run time.
    fn of(
        response: &Response,
        content_length: u64,
        persistence: Persistence,
        clock: &Clock,
    ) -> Option<HeadKey> {
        if !response.headers.is_empty() || response.last_modified.is_some() {
            return None;
        }
        let content_type = match &response.content_type {
            None => None,
            Some(Cow::Borrowed(text)) => Some((text.as_ptr() as usize, text.len())),
            Some(Cow::Owned(_)) => return None,
        };
        Some(HeadKey {
            status: response.status,
            content_type,
            content_length,
            persistence,
            second: clock.unix_second(),
        })
    }
}

impl HeadCache {
    /// A cache whose heads all carry `always` (`--header`), after each response's own fields.
    pub fn with_headers(always: Arc<[(String, String)]>) -> Self {
        HeadCache {
            always,
            ..HeadCache::default()
        }
    }

    /// `--header`: the fields every response carries.
    pub fn always(&self) -> &[(String, String)] {
        &self.always
    }

    /// Appends the head of `response` to `out`, exactly as [`write_head`] would.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        response: &Response,
        content_length: u64,
        persistence: Persistence,
        clock: &Clock,
    ) {
        let key = HeadKey::of(response, content_length, persistence, clock);
        if key.is_some() && key == self.key {
            out.extend_from_slice(&self.head);
            return;
        }
        let start = out.len();
        write_head(
            out,
            response,
            content_length,
            persistence,
            clock,
            &self.always,
        );
        if key.is_some() {
            self.head.clear();
            self.head.extend_from_slice(&out[start..]);
            self.key = key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn clock() -> Clock {
        Clock::at(Instant::now(), UNIX_EPOCH + Duration::from_secs(784111777))
    }

    fn head(response: &Response, len: u64, persistence: Persistence) -> String {
        let mut out = Vec::new();
        write_head(&mut out, response, len, persistence, &clock(), &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hello_head_is_exact() {
        let response = Response::text(Status::OK, "Hello, World!").with_content_type("text/plain");
        assert_eq!(
            head(&response, 13, Persistence::KeepAliveImplied),
            "HTTP/1.1 200 OK\r\nServer: reactor-httpd\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        );
    }

    /// Last-Modified goes first among a response's own fields, as the head's `Date` has it at
    /// the latest: a file dated after the clock (a clock set wrong, an archive unpacked with its
    /// dates, a file changed in the second the clock has not yet read) is sent as modified at the
    /// response's own time (RFC 9110 8.8.2.1). Its entity tag still says what it is.
    #[test]
    fn last_modified_is_never_after_the_date() {
        let clock_second = 784_111_777;
        for (modified, expected) in [
            (784_000_000, "Sat, 05 Nov 1994 01:46:40 GMT"),
            (clock_second, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (clock_second + 1, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (u64::MAX, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ] {
            let response = Response::new(Status::OK)
                .with_last_modified(modified)
                .with_header("ETag", "\"x\"");
            let text = head(&response, 0, Persistence::KeepAliveImplied);
            let fields =
                format!("Content-Length: 0\r\nLast-Modified: {expected}\r\nETag: \"x\"\r\n");
            assert!(text.contains(&fields), "{modified}: {text}");
        }
        // Not a head the cache may hand to another response.
        let mut cache = HeadCache::default();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let dated = |at| Response::new(Status::OK).with_last_modified(at);
        cache.write(
            &mut first,
            &dated(1),
            0,
            Persistence::KeepAliveImplied,
            &clock(),
        );
        cache.write(
            &mut second,
            &dated(2),
            0,
            Persistence::KeepAliveImplied,
            &clock(),
        );
        assert_ne!(first, second);
    }

    #[test]
    fn extra_headers_and_connection() {
        let response = Response::new(Status::MOVED_PERMANENTLY).with_header("Location", "/d/");
        let text = head(&response, 0, Persistence::Close);
        assert!(text.starts_with("HTTP/1.1 301 Moved Permanently\r\n"));
        assert!(
            text.contains("\r\nContent-Length: 0\r\nLocation: /d/\r\nConnection: close\r\n\r\n")
        );
        let text = head(&response, 0, Persistence::KeepAlive);
        assert!(text.ends_with("\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn bodiless_statuses_have_no_content_length() {
        for status in [Status::NOT_MODIFIED, Status::NO_CONTENT, Status::CONTINUE] {
            let text = head(&Response::new(status), 0, Persistence::KeepAliveImplied);
            assert!(!text.contains("Content-Length"), "{text}");
        }
    }

    #[test]
    fn unknown_status_gets_a_numeric_line() {
        let text = head(
            &Response::new(Status(299)),
            0,
            Persistence::KeepAliveImplied,
        );
        assert!(text.starts_with("HTTP/1.1 299 \r\n"));
    }

    #[test]
    fn cached_heads_are_the_heads() {
        let static_type = Response::text(Status::OK, "hi");
        let responses = [
            (static_type, 2, Persistence::KeepAliveImplied),
            (Response::error(Status::NOT_FOUND), 14, Persistence::Close),
            (Response::text(Status::OK, "hi"), 2, Persistence::KeepAlive),
            (
                Response::text(Status::OK, "hi"),
                3,
                Persistence::KeepAliveImplied,
            ),
            (
                Response::new(Status::OK).with_content_type(String::from("a/b")),
                1,
                Persistence::Close,
            ),
            (
                Response::new(Status::OK).with_content_type(String::from("c/d")),
                1,
                Persistence::Close,
            ),
            (
                Response::new(Status::MOVED_PERMANENTLY).with_header("Location", "/d/"),
                0,
                Persistence::Close,
            ),
            (
                Response::new(Status::NO_CONTENT),
                0,
                Persistence::KeepAliveImplied,
            ),
        ];
        let mut cache = HeadCache::default();
        let mut clock = clock();
        // Every order of pairs, twice over, and once more after the second changes.
        for round in 0..3 {
            if round == 2 {
                clock = Clock::at(Instant::now(), UNIX_EPOCH + Duration::from_secs(784111778));
            }
            for (a, b) in
                (0..responses.len()).flat_map(|a| (0..responses.len()).map(move |b| (a, b)))
            {
                for &(ref response, len, persistence) in [&responses[a], &responses[b]] {
                    let mut expected = b"earlier bytes".to_vec();
                    let mut cached = expected.clone();
                    write_head(&mut expected, response, len, persistence, &clock, &[]);
                    cache.write(&mut cached, response, len, persistence, &clock);
                    assert_eq!(
                        String::from_utf8(cached).unwrap(),
                        String::from_utf8(expected).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn error_bodies_are_small_text() {
        let response = Response::error(Status::NOT_FOUND);
        assert!(matches!(&response.body, Body::Bytes(b) if b == b"404 Not Found\n"));
        assert_eq!(response.body.len(), 14);
    }
}
