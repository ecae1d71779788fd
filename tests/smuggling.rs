//! Request smuggling and parser-differential vectors, from the literature (Linhart et al. 2005,
//! Kettle's "HTTP Desync Attacks" 2019, RFC 9112 section 6.3 and 11.2), and the conformance
//! rules of docs/conformance.md, each sent on a fresh connection to a real server (in every
//! mode) and followed by an innocent request on the same connection.
//!
//! A smuggling attack works when two parsers (a proxy in front, this server behind) disagree on
//! where a request ends: the bytes one treats as body, the other treats as the next request. So
//! for each vector the table states the one reading this server gives, and the test checks:
//! - a refused vector gets exactly one response (its status, `Connection: close`) and then the
//!   connection ends: nothing after the ambiguity is ever read as a request;
//! - an accepted vector gets exactly the responses stated (the `/echo` body shows where the
//!   server thought the body ended), then the follow-up's response, then the end;
//! - `/smuggled`, the path every hidden request asks for, is answered (404) only where the
//!   table says this server reads it as a request of its own, because the framing it was given
//!   says so unambiguously (`NOT_FOUND` entries).

mod common;

use std::io::{ErrorKind, Write};

use common::{Client, Response, TestServer, bounded, config};
use reactor_httpd::config::Mode;

/// What the server must make of a vector.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// This status with `Connection: close`, then nothing more.
    Refused(u16),
    /// These responses (status, body), then the follow-up's `Hello, World!`.
    Parsed(&'static [(u16, &'static str)]),
    /// These responses, then the connection ends without answering the follow-up: the server
    /// is still waiting for body bytes the follow-up was consumed as (and the client's EOF
    /// ends it). Never a response to anything inside.
    Swallowed(&'static [(u16, &'static str)]),
}

use Outcome::{Parsed, Refused, Swallowed};

const FOLLOW_UP: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
const HELLO: (u16, &str) = (200, "Hello, World!");
/// A pipelined request this server parsed as a request of its own (the demo answers a missing
/// path with an HTML 404 page; the body is not compared).
const NOT_FOUND: (u16, &str) = (404, "*");

/// (name, request bytes, outcome). `P` is the usual prefix of a POST to `/echo`.
#[rustfmt::skip]
fn vectors() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    const P: &str = "POST /echo HTTP/1.1\r\nHost: t\r\n";
    const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let v = |name, text: String, outcome| (name, text.into_bytes(), outcome);
    let chunked_smuggle = format!("0\r\n\r\n{SMUGGLED}");
    vec![
        // --- CL.TE and TE.CL: both framings present. RFC 9112 6.3 lets a server drop CL and
        // use TE; we refuse instead, because the front end may have done the opposite.
        v("CL.TE classic", format!("{P}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}", chunked_smuggle.len()), Refused(400)),
        v("TE.CL classic", format!("{P}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n"), Refused(400)),
        v("CL 0 with TE", format!("{P}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE then CL 0", format!("{P}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("CL.TE on GET", "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(), Refused(400)),
        // --- TE.TE: obfuscated Transfer-Encoding that one parser honours and another ignores.
        v("TE xchunked", format!("{P}Transfer-Encoding: xchunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE chunkedx", format!("{P}Transfer-Encoding: chunkedx\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE chunked, identity", format!("{P}Transfer-Encoding: chunked, identity\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE identity, chunked", format!("{P}Transfer-Encoding: identity, chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE gzip, chunked", format!("{P}Transfer-Encoding: gzip, chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE identity", format!("{P}Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"), Refused(400)),
        v("TE duplicated", format!("{P}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE duplicated, second bogus", format!("{P}Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE quoted", format!("{P}Transfer-Encoding: \"chunked\"\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE with parameter", format!("{P}Transfer-Encoding: chunked;q=1\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE name with space before colon", format!("{P}Transfer-Encoding : chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE name with tab before colon", format!("{P}Transfer-Encoding\t: chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE with a leading space on the name (obs-fold of the line before)", format!("{P} Transfer-Encoding: chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE folded onto a second line", format!("{P}Transfer-Encoding:\r\n chunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE with a vertical tab", format!("{P}Transfer-Encoding:\x0bchunked\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE with a NUL", format!("{P}Transfer-Encoding: chunked\0\r\n\r\n{chunked_smuggle}"), Refused(400)),
        v("TE name with underscore", format!("{P}Transfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"), Parsed(&[(200, "abc")])),
        v("TE in upper case", format!("{P}TRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), Parsed(&[(200, "abc")])),
        v("TE with surrounding spaces", format!("{P}Transfer-Encoding:   chunked  \r\n\r\n3\r\nabc\r\n0\r\n\r\n"), Parsed(&[(200, "abc")])),
        v("TE with a tab before the value", format!("{P}Transfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), Parsed(&[(200, "abc")])),
        v("TE on HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_string(), Refused(400)),
        // --- Content-Length in forms some parsers accept.
        v("CL with plus sign", format!("{P}Content-Length: +3\r\n\r\nabc"), Refused(400)),
        v("CL negative", format!("{P}Content-Length: -1\r\n\r\nabc"), Refused(400)),
        v("CL hexadecimal", format!("{P}Content-Length: 0x3\r\n\r\nabc"), Refused(400)),
        v("CL with inner space", format!("{P}Content-Length: 1 2\r\n\r\nabcdefghijkl"), Refused(400)),
        v("CL as a list of equal values", format!("{P}Content-Length: 3, 3\r\n\r\nabc"), Refused(400)),
        v("CL as a list of different values", format!("{P}Content-Length: 3, 30\r\n\r\nabc"), Refused(400)),
        v("CL twice, different", format!("{P}Content-Length: 3\r\nContent-Length: 30\r\n\r\nabc"), Refused(400)),
        v("CL twice, equal", format!("{P}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), Parsed(&[(200, "abc")])),
        v("CL empty", format!("{P}Content-Length: \r\n\r\n"), Refused(400)),
        v("CL with a trailing letter", format!("{P}Content-Length: 3a\r\n\r\nabc"), Refused(400)),
        v("CL with a decimal point", format!("{P}Content-Length: 3.0\r\n\r\nabc"), Refused(400)),
        v("CL with leading zeros", format!("{P}Content-Length: 0003\r\n\r\nabc"), Parsed(&[(200, "abc")])),
        v("CL with surrounding spaces", format!("{P}Content-Length:   3  \r\n\r\nabc"), Parsed(&[(200, "abc")])),
        v("CL name with space before colon", format!("{P}Content-Length : 3\r\n\r\nabc"), Refused(400)),
        v("CL folded onto a second line", format!("{P}Content-Length:\r\n 3\r\n\r\nabc"), Refused(400)),
        v("CL overflowing u64", format!("{P}Content-Length: 99999999999999999999999\r\n\r\nabc"), Refused(400)),
        v("CL one past u64::MAX", format!("{P}Content-Length: 18446744073709551616\r\n\r\nabc"), Refused(400)),
        v("CL of u64::MAX", format!("{P}Content-Length: 18446744073709551615\r\n\r\nabc"), Refused(413)),
        v("CL larger than the body limit", format!("{P}Content-Length: 1048577\r\n\r\n"), Refused(413)),
        v("CL shorter than the bytes sent", format!("{P}Content-Length: 3\r\n\r\nabc{SMUGGLED}"), Parsed(&[(200, "abc"), NOT_FOUND])),
        v("CL longer than the bytes sent", format!("{P}Content-Length: 40\r\n\r\nabc"), Swallowed(&[])),
        v("CL on GET", format!("GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()), Parsed(&[HELLO])),
        v("CL 0 on GET followed by a request", "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_string(), Parsed(&[HELLO])),
        // --- Chunk sizes and chunk framing.
        v("chunk size 0x-prefixed", format!("{P}Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size with a plus", format!("{P}Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size negative", format!("{P}Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size overflowing u64", format!("{P}Transfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size of u64::MAX", format!("{P}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n"), Refused(413)),
        v("chunk size overflowing u64 after leading zeros", format!("{P}Transfer-Encoding: chunked\r\n\r\n0000010000000000000003\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size over the body limit", format!("{P}Transfer-Encoding: chunked\r\n\r\n100001\r\nabc"), Refused(413)),
        v("chunk size empty", format!("{P}Transfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size with a space inside", format!("{P}Transfer-Encoding: chunked\r\n\r\n1 0\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size in upper-case hex", format!("{P}Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"), Parsed(&[(200, "0123456789")])),
        v("chunk data longer than its size", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"), Refused(400)),
        v("chunk without CRLF after data", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n"), Refused(400)),
        v("chunk extension", format!("{P}Transfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n"), Parsed(&[(200, "abc")])),
        v("chunk extension with a bare LF inside", format!("{P}Transfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("trailer fields", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"), Parsed(&[(200, "abc")])),
        // RFC 9112 7.1.2: the trailer section has the head's grammar, and a request line is not
        // a field line.
        v("trailer hiding a request", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n{SMUGGLED}"), Refused(400)),
        v("last chunk then a smuggled request", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"), Parsed(&[(200, "abc"), NOT_FOUND])),
        v("chunked but never terminated", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"), Refused(400)),
        // --- Line endings.
        v("LF-only line endings", "GET /hello HTTP/1.1\nHost: t\n\n".to_string(), Parsed(&[HELLO])),
        v("LF-only chunk lines", format!("{P}Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"), Refused(400)),
        v("bare CR in a header line", "GET /hello HTTP/1.1\r\nHost: t\rX: y\r\n\r\n".to_string(), Refused(400)),
        v("bare CR ending the request line", "GET /hello HTTP/1.1\rHost: t\r\n\r\n".to_string(), Refused(400)),
        v("leading empty lines", "\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        // --- Header names and values.
        v("space in a header name", "GET /hello HTTP/1.1\r\nHost: t\r\nX Y: z\r\n\r\n".to_string(), Refused(400)),
        v("non-token byte in a header name", "GET /hello HTTP/1.1\r\nHost: t\r\nX\"Y: z\r\n\r\n".to_string(), Refused(400)),
        v("empty header name", "GET /hello HTTP/1.1\r\nHost: t\r\n: z\r\n\r\n".to_string(), Refused(400)),
        v("header without a colon", "GET /hello HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n".to_string(), Refused(400)),
        v("obs-fold continuation line", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n".to_string(), Refused(400)),
        v("control byte in a value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n".to_string(), Refused(400)),
        v("DEL in a value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n".to_string(), Refused(400)),
        v("obs-text in a value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: caf\u{e9}\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("two Host headers", "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string(), Refused(400)),
        v("no Host on HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n".to_string(), Refused(400)),
        // --- Request line and targets.
        v("absolute-form target", "GET http://t/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("absolute-form with another host", "GET http://elsewhere/hello?x HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("absolute-form without a path", "OPTIONS http://t HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[(204, "")])),
        v("asterisk-form with OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[(204, "")])),
        v("asterisk-form with GET", "GET * HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("authority-form outside CONNECT", "GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("fragment in the target", "GET /hello#x HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("space inside the target", "GET /hel lo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("two spaces after the method", "GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("lower-case version", "GET /hello http/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("HTTP/0.9 request", "GET /hello\r\n\r\n".to_string(), Refused(400)),
        v("HTTP/2 version", "GET /hello HTTP/2.0\r\nHost: t\r\n\r\n".to_string(), Refused(505)),
        v("request line over 8 KiB", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(8200)), Refused(414)),
        // --- Bodies where none is expected, and pipelining around them.
        v("GET with a body by CL", "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_string(), Parsed(&[HELLO])),
        v("GET with a chunked body", "GET /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("GET with a body that is a request", format!("GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()), Parsed(&[HELLO])),
        v("HEAD with a body that is a request", format!("HEAD /hello HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()), Parsed(&[(200, "")])),
        v("Expect 100-continue with CL", format!("{P}Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"), Parsed(&[(100, ""), (200, "abc")])),
        v("unknown Expect", format!("{P}Expect: 200-ok\r\nContent-Length: 3\r\n\r\nabc"), Refused(417)),
        v("Connection: close stops the follow-up", format!("{P}Connection: close\r\nContent-Length: 3\r\n\r\nabc"), Swallowed(&[(200, "abc")])),
    ]
}

/// The conformance rules (RFC 9110 and 9112, see docs/conformance.md): what outside suites
/// found accepted that must not be, and the valid forms beside them that must stay accepted.
#[rustfmt::skip]
fn conformance_vectors() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    const P: &str = "POST /echo HTTP/1.1\r\nHost: t\r\n";
    const TE: &str = "Transfer-Encoding: chunked\r\n\r\n";
    const NOT_IMPLEMENTED: (u16, &str) = (501, "501 Not Implemented\n");
    let v = |name, text: String, outcome| (name, text.into_bytes(), outcome);
    let host = |value: &str| format!("GET /hello HTTP/1.1\r\nHost: {value}\r\n\r\n");
    let chunked = |framing: &str| format!("{P}{TE}{framing}");
    let mut vectors = vec![
        // --- Host (RFC 9112 3.2, RFC 3986 3.2.2-3.2.3): an invalid value MUST get 400.
        v("Host with userinfo", host("user@127.0.0.1:8080"), Refused(400)),
        v("Host with a path", host("127.0.0.1:8080/path"), Refused(400)),
        v("Host as a list", host("a, b"), Refused(400)),
        v("Host with two ports", host("example.com:80:80"), Refused(400)),
        v("Host with a port over 65535", host("example.com:123456"), Refused(400)),
        v("Host with a letter in the port", host("example.com:8o"), Refused(400)),
        v("Host with an empty label", host("..example.com"), Refused(400)),
        v("Host a lone dot", host("."), Refused(400)),
        v("Host with a slash", host("exa/mple"), Refused(400)),
        v("Host with a backslash", host("exa\\mple"), Refused(400)),
        v("Host with an unclosed IPv6 literal", host("[::1"), Refused(400)),
        v("Host with a doubled bracket", host("[::1]]"), Refused(400)),
        v("Host with dots after an IPv6 literal", host("[::1].."), Refused(400)),
        v("Host with a prefix length in an IPv6 literal", host("[a::1/2]"), Refused(400)),
        v("Host with a bad percent-escape", host("a%zz"), Refused(400)),
        v("Host with a non-ASCII byte", host("caf\u{e9}"), Refused(400)),
        v("Host empty on HTTP/1.1", host(""), Refused(400)),
        v("Host invalid on HTTP/1.0", "GET /hello HTTP/1.0\r\nHost: a/b\r\n\r\n".to_string(), Refused(400)),
        v("absolute-form with an empty authority", "GET http:/// HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("absolute-form with userinfo", "GET http://u@t/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("absolute-form with another scheme", "GET ftp://t/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("absolute-form with a bad port", "GET http://t:99999/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("Host an IPv6 literal with a port", host("[::1]:8080"), Parsed(&[HELLO])),
        v("Host an IPvFuture literal", host("[v7.a:b]"), Parsed(&[HELLO])),
        v("Host with one trailing dot", host("example.com."), Parsed(&[HELLO])),
        v("Host with leading zeros in the port", host("EXAMPLE.com:0080"), Parsed(&[HELLO])),
        v("Host with an empty port", host("example.com:"), Parsed(&[HELLO])),
        v("Host with a percent-escape", host("ex%41mple"), Parsed(&[HELLO])),
        v("absolute-form with https", "GET https://t/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("absolute-form with an IPv6 authority", "GET http://[::1]:80/hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        // --- Trailer fields (RFC 9112 7.1.2): the head's field grammar and limits.
        v("trailer without a colon", chunked("3\r\nabc\r\n0\r\nNoColonHere\r\n\r\n"), Refused(400)),
        v("trailer with a control byte", chunked("3\r\nabc\r\n0\r\nX: a\x01b\r\n\r\n"), Refused(400)),
        v("trailer obs-folded", chunked("3\r\nabc\r\n0\r\nX: a\r\n b\r\n\r\n"), Refused(400)),
        v("trailer with a space before the colon", chunked("3\r\nabc\r\n0\r\nX : a\r\n\r\n"), Refused(400)),
        v("trailer line ending in a bare LF", chunked("3\r\nabc\r\n0\r\nX: a\n\r\n"), Refused(400)),
        v("trailer section ending in a bare LF", chunked("3\r\nabc\r\n0\r\n\n"), Refused(400)),
        v("trailer section over the head limit", chunked(&format!("3\r\nabc\r\n0\r\nX: {}\r\n\r\n", "a".repeat(17_000))), Refused(431)),
        v("trailer fields, two", chunked("3\r\nabc\r\n0\r\nX-A: 1\r\nX-B:\t2 3 \r\n\r\n"), Parsed(&[(200, "abc")])),
        // --- Chunk lines (RFC 9112 7.1, 7.1.1): 1*HEXDIG, then extensions as the grammar says.
        v("chunk extension without a name", chunked("3;\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk extension name with a bracket", chunked("3;bad[=x\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size with a trailing space", chunked("3 \r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size with junk after a space", chunked("2 junk\r\nab\r\n0\r\n\r\n"), Refused(400)),
        v("chunk extension with an unterminated quote", chunked("3;a=\"def; ghi\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk extension value with a space inside", chunked("3;a=b c\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk line over 4 KiB", chunked(&format!("3;a={}\r\nabc\r\n0\r\n\r\n", "b".repeat(4100))), Refused(400)),
        v("last chunk with a trailing space", chunked("3\r\nabc\r\n0 \r\n\r\n"), Refused(400)),
        v("chunk extensions with BWS and quoted values", chunked("3 ; a = b ;c=\"d;\\\"e\"\r\nabc\r\n0;z\r\n\r\n"), Parsed(&[(200, "abc")])),
        // --- Versions (RFC 9110 2.5, 6.2).
        v("HTTP/1.2 read as HTTP/1.1", "GET /hello HTTP/1.2\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("HTTP/1.9 read as HTTP/1.1", "GET /hello HTTP/1.9\r\nHost: t\r\n\r\n".to_string(), Parsed(&[HELLO])),
        v("HTTP/3.0", "GET /hello HTTP/3.0\r\nHost: t\r\n\r\n".to_string(), Refused(505)),
        v("HTTP/0.9 with a version", "GET /hello HTTP/0.9\r\nHost: t\r\n\r\n".to_string(), Refused(505)),
        v("HTTP/1.10", "GET /hello HTTP/1.10\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        // --- Methods (RFC 9110 9.1, 9.3.6, 9.3.7, 15.5.6, 15.6.2).
        v("unknown method", "BREW /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[NOT_IMPLEMENTED])),
        v("unknown method with a body", "BREW /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_string(), Parsed(&[NOT_IMPLEMENTED])),
        v("method in lower case", "get /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[NOT_IMPLEMENTED])),
        v("method over 32 bytes", format!("{} /hello HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(40)), Refused(501)),
        v("known method not allowed", "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[(405, "405 Method Not Allowed\n")])),
        v("OPTIONS on a path", "OPTIONS /hello HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Parsed(&[(204, "")])),
        v("CONNECT in authority form", "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n".to_string(), Parsed(&[(405, "405 Method Not Allowed\n")])),
        v("CONNECT in origin form", "CONNECT / HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("CONNECT without a port", "CONNECT t HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        // --- The target (RFC 9112 3.2): visible ASCII only.
        v("non-ASCII byte in the target", "GET /hel\u{e9}lo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("DEL in the target", "GET /hel\x7flo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("control byte in the target", "GET /hel\x01lo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        // --- Expect (RFC 9110 10.1.1).
        v("Expect a list with another expectation", format!("{P}Expect: 100-continue, x\r\nContent-Length: 3\r\n\r\nabc"), Refused(417)),
        v("Expect empty", format!("{P}Expect:\r\nContent-Length: 3\r\n\r\nabc"), Refused(417)),
        // --- Line endings (RFC 9112 2.2): a bare LF ends any line of the head; a bare CR none.
        v("LF-only head with a CR in one line", "GET /hello HTTP/1.1\nHost: t\r\nX: y\n\n".to_string(), Parsed(&[HELLO])),
        v("LF-only head before a body", "POST /echo HTTP/1.1\nHost: t\nContent-Length: 3\n\nabc".to_string(), Parsed(&[(200, "abc")])),
        v("bare CR ending the head", "GET /hello HTTP/1.1\r\nHost: t\r\n\r".to_string(), Refused(400)),
        // --- Cases of Http11Probe's list (MDA2AV/Http11Probe) not covered above.
        v("method of 100,000 bytes", format!("{} /hello HTTP/1.1\r\nHost: t\r\n\r\n", "A".repeat(100_000)), Refused(501)),
        v("method over 32 bytes, no space yet", "M".repeat(40), Refused(501)),
        v("HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), Refused(505)),
        v("version with leading zeros", "GET /hello HTTP/01.01\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("version with a space inside", "GET /hello HTTP/ 1.1\r\nHost: t\r\n\r\n".to_string(), Refused(400)),
        v("CL in octal notation", format!("{P}Content-Length: 0o3\r\n\r\nabc"), Refused(400)),
        v("CL minus zero", format!("{P}Content-Length: -0\r\n\r\n"), Refused(400)),
        v("TE with a form feed", format!("{P}Transfer-Encoding: \x0cchunked\r\nContent-Length: 3\r\n\r\nabc"), Refused(400)),
        v("chunk size over 64 bits", chunked("FFFFFFFFFFFFFFFF0\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        v("chunk size with a plus sign", chunked("+0\r\n\r\n"), Refused(400)),
        v("chunk longer than its size", chunked("3\r\nabcde\r\n0\r\n\r\n"), Refused(400)),
        v("chunk extension of 64 KiB", chunked(&format!("3;ext={}\r\nabc\r\n0\r\n\r\n", "a".repeat(65_536))), Refused(400)),
    ];
    // A raw byte above 0x7E, not valid UTF-8 on its own.
    vectors.push(("raw 0xFF in the target", b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), Refused(400)));
    vectors
}

/// Every vector against a server in `mode`: all four drivers run the same HTTP code, and must
/// give the same answers.
fn run_vectors(mode: Mode) {
    bounded(120, move || {
        let mut cfg = config(mode);
        cfg.limits.max_body_bytes = 1 << 20;
        let server = TestServer::start(cfg);
        let vectors = vectors();
        assert!(vectors.len() >= 60, "{} vectors", vectors.len());
        let conformance = conformance_vectors();
        assert!(conformance.len() >= 60, "{} vectors", conformance.len());
        let mut failures = Vec::new();
        for (name, bytes, outcome) in vectors.into_iter().chain(conformance) {
            if let Err(why) = check(&server, &bytes, outcome) {
                failures.push(format!("{name}: {why}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
        // After all that, the server is still serving.
        assert_eq!(server.connect().get("/hello").text(), "Hello, World!");
    });
}

#[test]
fn reactor() {
    run_vectors(Mode::Reactor);
}

#[test]
fn uring() {
    if common::runnable(Mode::Uring) {
        run_vectors(Mode::Uring);
    }
}

#[test]
fn threaded() {
    run_vectors(Mode::Threaded);
}

#[test]
fn blocking() {
    run_vectors(Mode::Blocking);
}

#[test]
fn fork() {
    run_vectors(Mode::Fork);
}

/// Sends `bytes` and the follow-up, half-closes, and compares every response until the end.
fn check(server: &TestServer, bytes: &[u8], outcome: Outcome) -> Result<(), String> {
    let mut client = server.connect();
    // A refused request may be answered and closed before all of it, or the follow-up, is
    // written: a failing write is part of the outcome, not an error.
    let _ = client.stream.write_all(bytes);
    let _ = client.stream.write_all(FOLLOW_UP);
    let _ = client.stream.shutdown(std::net::Shutdown::Write);
    let responses = read_all(&mut client, bytes.starts_with(b"HEAD"))?;
    let seen: Vec<(u16, String)> = responses.iter().map(|r| (r.status, r.text())).collect();
    let expected: Vec<(u16, String)> = match outcome {
        Refused(status) => {
            let last = responses.last();
            if last.and_then(|r| r.header("connection")) != Some("close") {
                return Err(format!("refusal without Connection: close: {seen:?}"));
            }
            vec![(status, format!("{status} "))]
        }
        Parsed(list) => list
            .iter()
            .chain([&HELLO])
            .map(|&(status, body)| (status, body.to_string()))
            .collect(),
        Swallowed(list) => list
            .iter()
            .map(|&(status, body)| (status, body.to_string()))
            .collect(),
    };
    let matches = seen.len() == expected.len()
        && seen.iter().zip(&expected).all(|(got, want)| {
            got.0 == want.0
                && match outcome {
                    // Error bodies are `400 Bad Request\n`: the status is what matters.
                    Refused(_) => got.1.starts_with(&want.1),
                    _ => want.1 == "*" || got.1 == want.1,
                }
        });
    if matches {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {seen:?}"))
    }
}

/// Every response until the server closes, which must come between responses, never inside
/// one. A reset (the server closed with our follow-up unread) ends it like a clean close.
fn read_all(client: &mut Client, head_first: bool) -> Result<Vec<Response>, String> {
    let mut responses = Vec::new();
    loop {
        let read = if head_first && responses.is_empty() {
            client.try_head_response()
        } else {
            client.try_response()
        };
        match read {
            Ok(response) => responses.push(response),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                if client.unread() > 0 {
                    return Err(format!("closed inside a response, after {responses:?}"));
                }
                return Ok(responses);
            }
            Err(err) => return Err(format!("{err} after {} responses", responses.len())),
        }
        if responses.len() > 10 {
            return Err("more responses than requests".into());
        }
    }
}
