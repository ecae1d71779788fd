//! The demo routes (`--demo`): `/hello` (the benchmark route), `/echo` and `/headers`.
//!
//! Mounted ahead of another handler, which answers every other path.

use std::borrow::Cow;

use super::{Handler, other_method};
use crate::http::{Body, Request, Response, Status};

pub struct Demo<H> {
    rest: H,
}

impl<H: Handler> Demo<H> {
    pub fn new(rest: H) -> Self {
        Demo { rest }
    }
}

impl<H: Handler> Handler for Demo<H> {
    fn handle(&self, request: &Request<'_>) -> Response {
        let get = matches!(request.method, "GET" | "HEAD");
        match request.path {
            "/hello" if get => hello(),
            "/headers" if get => headers(request),
            "/echo" if request.method == "POST" => echo(request),
            "/hello" | "/headers" => other_method(request, "GET, HEAD, OPTIONS"),
            "/echo" => other_method(request, "POST, OPTIONS"),
            _ => self.rest.handle(request),
        }
    }
}

/// Built from static parts only: the hot path allocates nothing.
fn hello() -> Response {
    Response {
        status: Status::OK,
        content_type: Some(Cow::Borrowed("text/plain")),
        headers: Vec::new(),
        body: Body::Static(b"Hello, World!"),
    }
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
    Response::new(Status::OK)
        .with_content_type("text/plain; charset=utf-8")
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
}
