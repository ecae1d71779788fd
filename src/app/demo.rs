//! The demo routes (`--demo`): `/hello` (the benchmark route), `/echo` and `/headers`, and two
//! that behave like application work: `/sleep?ms=N` waits as a database call would, and
//! `/compute?kib=N` hashes generated data, which keeps a core busy. Those two may block, so the
//! reactor runs them on its handler pool.
//!
//! Mounted ahead of another handler, which answers every other path.

use std::borrow::Cow;

use super::{Handler, other_method};
use crate::http::{Body, Request, Response, Status, decimal, percent_decode};

pub struct Demo<H> {
    rest: H,
}

impl<H: Handler> Demo<H> {
    pub fn new(rest: H) -> Self {
        Demo { rest }
    }
}

/// The most `/sleep` waits, and the most `/compute` hashes.
const MAX_SLEEP_MS: u64 = 10_000;
const MAX_COMPUTE_KIB: u64 = 4096;

/// The demo's paths, told apart once per request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Hello,
    Headers,
    Echo,
    Sleep,
    Compute,
    /// Not one of ours: for the handler behind.
    Other,
}

impl Route {
    #[inline(always)]
    fn of(request: &Request<'_>) -> Route {
        match Route::named(request.path) {
            Route::Other => Route::escaped(request.path),
            route => route,
        }
    }

    #[inline(always)]
    fn named(path: &str) -> Route {
        match path {
            "/hello" => Route::Hello,
            "/headers" => Route::Headers,
            "/echo" => Route::Echo,
            "/sleep" => Route::Sleep,
            "/compute" => Route::Compute,
            _ => Route::Other,
        }
    }

    /// A path with escapes names what it decodes to: `/hel%6Co` is `/hello` (RFC 3986 6.2.2.2),
    /// as nginx matches locations and the static files are found. A malformed escape, or one
    /// that decodes to something that is not UTF-8, is no path of ours.
    fn escaped(path: &str) -> Route {
        if !path.as_bytes().contains(&b'%') {
            return Route::Other;
        }
        match percent_decode(path).map(String::from_utf8) {
            Some(Ok(decoded)) => Route::named(&decoded),
            _ => Route::Other,
        }
    }

    /// `/sleep` waits and `/compute` keeps a core busy: the reactor runs them on its pool.
    fn may_block(self) -> bool {
        matches!(self, Route::Sleep | Route::Compute)
    }
}

impl<H: Handler> Handler for Demo<H> {
    fn handle(&self, request: &Request<'_>) -> Response {
        self.answer(Route::of(request), request)
    }

    fn may_block(&self, request: &Request<'_>) -> bool {
        match Route::of(request) {
            Route::Other => self.rest.may_block(request),
            route => route.may_block(),
        }
    }

    /// Only `/echo` reads a body.
    fn reads_body(&self, request: &Request<'_>) -> bool {
        match Route::of(request) {
            Route::Other => self.rest.reads_body(request),
            route => route == Route::Echo,
        }
    }

    /// One look at the path decides both where the request runs and what answers it. A path
    /// that is not one of ours by its plain name is looked at again for escapes out of line:
    /// inline, that second look cost every `/hello` 8 instructions (callgrind), unused.
    fn handle_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        match Route::named(request.path) {
            Route::Other => self.escaped_unless_blocking(request),
            route => self.unless_blocking(route, request),
        }
    }
}

impl<H: Handler> Demo<H> {
    #[inline(always)]
    fn unless_blocking(&self, route: Route, request: &Request<'_>) -> Option<Response> {
        match route {
            Route::Other => self.rest.handle_unless_blocking(request),
            route if route.may_block() => None,
            route => Some(self.answer(route, request)),
        }
    }

    #[inline(never)]
    fn escaped_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        self.unless_blocking(Route::escaped(request.path), request)
    }

    #[inline(always)]
    fn answer(&self, route: Route, request: &Request<'_>) -> Response {
        let get = matches!(request.method, "GET" | "HEAD");
        match route {
            Route::Hello if get => hello(),
            Route::Headers if get => headers(request),
            Route::Echo if request.method == "POST" => echo(request),
            Route::Sleep if get => sleep(request),
            Route::Compute if get => compute(request),
            Route::Echo => other_method(request, "POST, OPTIONS"),
            Route::Other => self.rest.handle(request),
            _ => other_method(request, "GET, HEAD, OPTIONS"),
        }
    }
}

/// Blocks its thread for `ms` milliseconds, as a database call would, then says so.
fn sleep(request: &Request<'_>) -> Response {
    let Some(ms) = parameter(request, "ms", 0..=MAX_SLEEP_MS) else {
        return bad_parameter("ms", 0..=MAX_SLEEP_MS);
    };
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Response::text(Status::OK, format!("slept {ms} ms"))
}

/// Hashes `kib` KiB of generated data (byte `i` is `i % 251`) with 64-bit FNV-1a, a byte at a
/// time: CPU work that cannot be skipped, about 1.5 ms per MiB here. Answers the
/// digest in hex.
fn compute(request: &Request<'_>) -> Response {
    let Some(kib) = parameter(request, "kib", 1..=MAX_COMPUTE_KIB) else {
        return bad_parameter("kib", 1..=MAX_COMPUTE_KIB);
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..kib * 1024 {
        hash ^= i % 251;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Response::text(Status::OK, format!("{hash:016x}\n"))
}

/// The one value of `name` in the query, as a number in `range`; `None` if it is missing,
/// repeated, not valid percent-encoding, not decimal digits, or out of range. Names and values
/// are read decoded (`m%73=%31` is `ms=1`), as a form reader reads them.
fn parameter(
    request: &Request<'_>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    let mut value = None;
    for pair in request.query?.split('&') {
        let Some((key, text)) = pair.split_once('=') else {
            continue;
        };
        if percent_decode(key).as_deref() == Some(name.as_bytes()) {
            // A second value is ambiguous: refused, as the first may not be the one meant.
            if value.replace(percent_decode(text)?).is_some() {
                return None;
            }
        }
    }
    decimal(&value?).filter(|n| range.contains(n))
}

/// 400, saying what [`parameter`] wants, so that a client learns the rule from the answer.
fn bad_parameter(name: &str, range: std::ops::RangeInclusive<u64>) -> Response {
    let (low, high) = range.into_inner();
    Response::text(
        Status::BAD_REQUEST,
        format!("400 Bad Request: give {name} once, a whole number from {low} to {high}\n"),
    )
}

/// Built from static parts only: the hot path allocates nothing. A constant, so that it is
/// copied whole to the caller: built field by field, its two-byte status was read back by that
/// copy eight bytes at a time, a load the store just made cannot serve, and it waited for the
/// cache.
fn hello() -> Response {
    const HELLO: Response = Response {
        status: Status::OK,
        content_type: Some(Cow::Borrowed("text/plain")),
        headers: Vec::new(),
        last_modified: None,
        body: Body::Static(b"Hello, World!"),
    };
    HELLO
}

fn echo(request: &Request<'_>) -> Response {
    let mut response = Response::new(Status::OK).with_body(Body::Bytes(request.body.to_vec()));
    if let Some(content_type) = request.headers.get("content-type") {
        response.content_type = Some(String::from_utf8_lossy(content_type).into_owned().into());
    }
    response
}

fn headers(request: &Request<'_>) -> Response {
    let mut text = Vec::new();
    for (name, value) in request.headers.iter() {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value);
        text.push(b'\n');
    }
    // Field values may hold any byte but controls (obs-text): echoed as received, and called
    // UTF-8 only when they are.
    let content_type = match std::str::from_utf8(&text) {
        Ok(_) => "text/plain; charset=utf-8",
        Err(_) => "text/plain",
    };
    Response::new(Status::OK)
        .with_content_type(content_type)
        .with_body(Body::Bytes(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Headers, Version};

    /// Stands for what the demo routes are mounted ahead of.
    struct Rest;

    impl Handler for Rest {
        fn handle(&self, _request: &Request<'_>) -> Response {
            Response::error(Status::NOT_FOUND)
        }
    }

    fn request<'a>(
        method: &'a str,
        path: &'a str,
        headers: &'a [httparse::Header<'a>],
        body: &'a [u8],
    ) -> Request<'a> {
        Request {
            method,
            target: path,
            path,
            query: None,
            host: Some("h"),
            version: Version::Http11,
            headers: Headers::new(headers),
            body,
        }
    }

    fn body(response: &Response) -> &[u8] {
        match &response.body {
            Body::Static(bytes) => bytes,
            Body::Bytes(bytes) => bytes,
            _ => b"",
        }
    }

    #[test]
    fn routes() {
        let demo = Demo::new(Rest);
        let hello = demo.handle(&request("GET", "/hello", &[], b""));
        assert_eq!(
            (hello.status, body(&hello)),
            (Status::OK, &b"Hello, World!"[..])
        );
        assert_eq!(hello.content_type.as_deref(), Some("text/plain"));

        let fields = [httparse::Header {
            name: "Content-Type",
            value: b"application/x-thing",
        }];
        let echo = demo.handle(&request("POST", "/echo", &fields, b"\0bytes\xff"));
        assert_eq!(body(&echo), b"\0bytes\xff");
        assert_eq!(echo.content_type.as_deref(), Some("application/x-thing"));
        let bare = demo.handle(&request("POST", "/echo", &[], b"x"));
        assert_eq!(bare.content_type, None);

        let fields = [
            httparse::Header {
                name: "Host",
                value: b"h",
            },
            httparse::Header {
                name: "X-A",
                value: b"1",
            },
        ];
        let headers = demo.handle(&request("GET", "/headers", &fields, b""));
        assert_eq!(body(&headers), b"Host: h\nX-A: 1\n");
        assert_eq!(
            headers.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        // obs-text that is not UTF-8 (Latin-1 here): echoed as sent, and not called UTF-8.
        let fields = [httparse::Header {
            name: "X-A",
            value: b"caf\xe9",
        }];
        let latin = demo.handle(&request("GET", "/headers", &fields, b""));
        assert_eq!(body(&latin), b"X-A: caf\xe9\n");
        assert_eq!(latin.content_type.as_deref(), Some("text/plain"));

        let wrong = demo.handle(&request("POST", "/hello", &[], b""));
        assert_eq!(wrong.status, Status::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.header("allow"), Some("GET, HEAD, OPTIONS"));
        let wrong = demo.handle(&request("GET", "/echo", &[], b""));
        assert_eq!(wrong.header("allow"), Some("POST, OPTIONS"));
        let options = demo.handle(&request("OPTIONS", "/echo", &[], b""));
        assert_eq!(options.status, Status::NO_CONTENT);
        assert_eq!(options.header("allow"), Some("POST, OPTIONS"));
        assert_eq!(
            demo.handle(&request("GET", "/other", &[], b"")).status,
            Status::NOT_FOUND
        );
    }

    #[test]
    fn escaped_paths_name_what_they_decode_to() {
        let demo = Demo::new(Rest);
        for (path, want) in [
            ("/hel%6co", Status::OK),
            ("/%68%65%6C%6C%6F", Status::OK),
            // An escaped `?` is part of the path, not a query: `/hello?` is not `/hello`.
            ("/hello%3f", Status::NOT_FOUND),
            // Malformed, or not UTF-8 once decoded: for the handler behind.
            ("/hello%", Status::NOT_FOUND),
            ("/hel%zzo", Status::NOT_FOUND),
            ("/hello%ff", Status::NOT_FOUND),
        ] {
            let response = demo.handle(&request("GET", path, &[], b""));
            assert_eq!(response.status, want, "{path}");
        }
        assert!(demo.may_block(&with_query("/sl%65ep", "ms=1")));
    }

    fn with_query<'a>(path: &'a str, query: &'a str) -> Request<'a> {
        Request {
            query: Some(query),
            ..request("GET", path, &[], b"")
        }
    }

    #[test]
    fn sleep_and_compute() {
        let demo = Demo::new(Rest);
        let slept = demo.handle(&with_query("/sleep", "ms=0"));
        assert_eq!(
            (slept.status, body(&slept)),
            (Status::OK, &b"slept 0 ms"[..])
        );
        let started = std::time::Instant::now();
        demo.handle(&with_query("/sleep", "x=1&ms=30"));
        assert!(started.elapsed() >= std::time::Duration::from_millis(30));
        // Names and values are read percent-decoded; a malformed escape elsewhere is no matter.
        for query in ["ms=%31", "m%73=1", "x=%zz&ms=%31"] {
            let slept = demo.handle(&with_query("/sleep", query));
            assert_eq!(body(&slept), b"slept 1 ms", "{query}");
        }
        // FNV-1a 64 over bytes 0, 1, .., 250, 0, 1, .. (1 KiB): computed independently with
        // python3 -c 'h=0xcbf29ce484222325
        // for i in range(1024): h=((h^(i%251))*0x100000001b3)%2**64
        // print(f"{h:016x}")'
        let digest = demo.handle(&with_query("/compute", "kib=1"));
        assert_eq!(body(&digest), b"2233e5feed8da91d\n");
        for (path, query) in [
            ("/sleep", "ms=10001"),
            ("/sleep", "ms=-1"),
            ("/sleep", "ms="),
            ("/sleep", "ms=1&ms=2"),
            ("/sleep", "ms=1&m%73=2"),
            ("/sleep", "ms=%3"),
            ("/sleep", "ms=%zz"),
            ("/sleep", "ms=%2B5"),
            ("/sleep", "ms=+5"),
            ("/sleep", "n=5"),
            ("/compute", "kib=0"),
            ("/compute", "kib=4097"),
            ("/compute", "kib=1x"),
            ("/compute", "kib=99999999999999999999999"),
        ] {
            let response = demo.handle(&with_query(path, query));
            assert_eq!(response.status, Status::BAD_REQUEST, "{path}?{query}");
            let rule = match path {
                "/sleep" => &b"give ms once, a whole number from 0 to 10000\n"[..],
                _ => b"give kib once, a whole number from 1 to 4096\n",
            };
            assert!(body(&response).ends_with(rule), "{path}?{query}");
        }
        assert_eq!(
            demo.handle(&request("GET", "/sleep", &[], b"")).status,
            Status::BAD_REQUEST
        );
        assert!(demo.may_block(&with_query("/sleep", "ms=1")));
        assert!(demo.may_block(&with_query("/compute", "kib=1")));
        assert!(!demo.may_block(&request("GET", "/hello", &[], b"")));
        assert!(!demo.may_block(&request("GET", "/other", &[], b"")));
    }
}
