//! What a handler answers, and how its head becomes bytes.
//!
//! A handler returns a [`Response`]; the connection (`conn.rs`) decides the framing headers
//! (`Content-Length`, `Connection`) and calls [`write_head`] to append the status line and headers
//! to its output buffer. The body is bytes, copied after the head, or a region of an open file,
//! which the driver sends with sendfile.

use std::borrow::Cow;
use std::fs::File;

use super::date::Clock;

/// An HTTP status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(pub u16);

macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal,)*) => {
        impl Status {
            $(pub const $name: Status = Status($code);)*

            /// The reason phrase, or `""` for a code without one here.
            pub fn reason(self) -> &'static str {
                match self.0 { $($code => $reason,)* _ => "" }
            }

            /// The whole status line, for the codes we know, so the common case is one copy.
            fn status_line(self) -> Option<&'static [u8]> {
                match self.0 {
                    $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes()),)*
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
    PARTIAL_CONTENT = 206 "Partial Content",
    MOVED_PERMANENTLY = 301 "Moved Permanently",
    NOT_MODIFIED = 304 "Not Modified",
    BAD_REQUEST = 400 "Bad Request",
    FORBIDDEN = 403 "Forbidden",
    NOT_FOUND = 404 "Not Found",
    METHOD_NOT_ALLOWED = 405 "Method Not Allowed",
    REQUEST_TIMEOUT = 408 "Request Timeout",
    PAYLOAD_TOO_LARGE = 413 "Content Too Large",
    URI_TOO_LONG = 414 "URI Too Long",
    RANGE_NOT_SATISFIABLE = 416 "Range Not Satisfiable",
    HEADERS_TOO_LARGE = 431 "Request Header Fields Too Large",
    INTERNAL_SERVER_ERROR = 500 "Internal Server Error",
    NOT_IMPLEMENTED = 501 "Not Implemented",
    SERVICE_UNAVAILABLE = 503 "Service Unavailable",
    VERSION_NOT_SUPPORTED = 505 "HTTP Version Not Supported",
}

impl Status {
    /// Responses with these codes never carry a body (RFC 9110 6.4.1), so no Content-Length.
    pub fn forbids_body(self) -> bool {
        self.0 < 200 || self == Status::NO_CONTENT || self == Status::NOT_MODIFIED
    }
}

/// A region of an open file, sent with sendfile(2) by the driver.
#[derive(Debug)]
pub struct FileBody {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    File(FileBody),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(bytes) => bytes.len() as u64,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(file) => file.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handler's answer. The connection adds `Date`, `Server`, `Content-Length` and `Connection`.
#[derive(Debug)]
pub struct Response {
    pub status: Status,
    /// A field of its own because nearly every response has one, and a static string costs no
    /// allocation on the hot path.
    pub content_type: Option<Cow<'static, str>>,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: Status) -> Self {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
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

/// What the `Connection` header of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: say nothing.
    KeepAliveImplied,
    /// An HTTP/1.0 client asked for keep-alive: confirm it.
    KeepAlive,
    Close,
}

/// Appends the status line and headers of `response` to `out`. `content_length` is the length of
/// the body the response describes (for HEAD too, though none follows).
pub fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    content_length: u64,
    persistence: Persistence,
    clock: &Clock,
) {
    match response.status.status_line() {
        Some(line) => out.extend_from_slice(line),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(response.status.0).as_bytes());
            out.extend_from_slice(b" \r\n");
        }
    }
    out.extend_from_slice(b"Server: reactor-httpd\r\nDate: ");
    out.extend_from_slice(clock.http_date());
    if let Some(content_type) = &response.content_type {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
    }
    if !response.status.forbids_body() {
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
    }
    for (name, value) in &response.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    match persistence {
        Persistence::KeepAliveImplied => out.extend_from_slice(b"\r\n\r\n"),
        Persistence::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n"),
        Persistence::Close => out.extend_from_slice(b"\r\nConnection: close\r\n\r\n"),
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
        write_head(&mut out, response, len, persistence, &clock());
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
    fn error_bodies_are_small_text() {
        let response = Response::error(Status::NOT_FOUND);
        assert!(matches!(&response.body, Body::Bytes(b) if b == b"404 Not Found\n"));
        assert_eq!(response.body.len(), 14);
    }
}
