//! The state machine driven by an in-memory "socket": input fed in any split, output collected.
//! Each reader is tested whole, byte by byte, and with the next request trailing behind.

use super::memory::{self, MemoryConn, NumberedIgnoringBody, parse_responses};
use super::*;
use proptest::prelude::*;
use std::io::Write as _;

/// `/shared`'s body: 100,000 bytes shared by every response that sends it. (`/held`'s is the
/// same, asked for by one test only, which counts who holds it.)
static SHARED: std::sync::LazyLock<Arc<SharedBytes>> = std::sync::LazyLock::new(|| {
    let bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    Arc::new(SharedBytes::new(bytes))
});
static HELD: std::sync::LazyLock<Arc<SharedBytes>> =
    std::sync::LazyLock::new(|| Arc::new(SharedBytes::new(SHARED.to_vec())));

/// Answers with what it saw, so a test can check what the parser delivered.
fn describe(request: &Request<'_>) -> Response {
    match request.path {
        "/big" => Response::text(Status::OK, "x".repeat(100_000)),
        "/shared" => Response::new(Status::OK).with_body(Body::Shared(SHARED.clone())),
        "/held" => Response::new(Status::OK).with_body(Body::Shared(HELD.clone())),
        "/owned" => Response::new(Status::OK).with_body(Body::Bytes(SHARED.to_vec())),
        "/nothing" => Response::new(Status::NO_CONTENT),
        _ => Response::text(
            Status::OK,
            format!(
                "{} {} {} [{}]",
                request.method,
                request.target,
                request.version.as_str(),
                String::from_utf8_lossy(request.body)
            ),
        )
        // Tells `parse_responses` which responses answer HEAD and so carry no body.
        .with_header("X-Method", request.method.to_string()),
    }
}

/// The in-memory driver, with `describe` as the default handler.
type Harness = MemoryConn;

trait DescribeByDefault {
    fn new() -> Self;
}

impl DescribeByDefault for MemoryConn {
    fn new() -> Self {
        MemoryConn::with(Limits::default(), &describe)
    }
}

/// Runs `input` split at the given sizes (cycled), as successive reads.
fn run_split(input: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
    memory::run_split(&describe, input, sizes)
}

/// Runs `f` with the batch path off: every request goes through the general path.
fn without_batching<T>(f: impl FnOnce() -> T) -> T {
    super::BATCHING.with(|batching| batching.set(false));
    let result = f();
    super::BATCHING.with(|batching| batching.set(true));
    result
}

/// The same input whole, byte by byte and in odd pieces must give the same bytes out. (Whether a
/// final close lingers may differ: it depends on whether more input was already buffered.)
fn run_all_ways(input: &[u8]) -> (String, bool) {
    let whole = run_split(input, &[input.len()]);
    assert_eq!(run_split(input, &[1]).0, whole.0, "byte by byte");
    assert_eq!(run_split(input, &[7, 2, 13]).0, whole.0, "in odd pieces");
    (String::from_utf8_lossy(&whole.0).into_owned(), whole.1)
}

fn statuses(out: &[u8]) -> Vec<u16> {
    parse_responses(out).iter().map(|r| r.0).collect()
}

fn bodies(out: &[u8]) -> Vec<String> {
    parse_responses(out)
        .into_iter()
        .filter(|r| r.0 >= 200)
        .map(|r| String::from_utf8(r.2).unwrap())
        .collect()
}

#[test]
fn answers_one_request_exactly() {
    let (out, closed) = run_all_ways(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nServer: reactor-httpd\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nX-Method: GET\r\n\r\n\
         GET /a?b HTTP/1.1 []"
    );
    assert!(!closed);
}

#[test]
fn pipelined_requests_are_answered_in_order_in_any_split() {
    let mut input = Vec::new();
    for i in 0..20 {
        input.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    input.extend_from_slice(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    input.extend_from_slice(
        b"\r\nPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    input.extend_from_slice(b"2\r\nhi\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    let (out, closed) = run_all_ways(&input);
    let got = bodies(out.as_bytes());
    let mut expected: Vec<String> = (0..20).map(|i| format!("GET /{i} HTTP/1.1 []")).collect();
    expected.push("POST /p HTTP/1.1 [abc]".into());
    expected.push("POST /c HTTP/1.1 [hi]".into());
    expected.push("GET /last HTTP/1.1 []".into());
    assert_eq!(got, expected);
    assert!(!closed);
}

#[test]
fn responses_to_one_read_leave_in_one_write() {
    let mut harness = Harness::new();
    let input = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut cx = harness.env.cx();
    assert!(matches!(harness.conn.want(&mut cx), Want::Read));
    let buf = harness.conn.read_buf(&mut cx);
    buf[..input.len()].copy_from_slice(input);
    harness.conn.received(input.len());
    match harness.conn.want(&mut cx) {
        Want::Write { bytes, .. } => assert_eq!(statuses(bytes), vec![200, 200]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn keep_alive_rules() {
    // HTTP/1.0 closes by default, stays open on request and says so.
    let (out, _) = run_all_ways(b"GET / HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n");
    assert!(out.contains("Connection: close\r\n"));
    assert_eq!(bodies(out.as_bytes()).len(), 1);
    let (_, closed) = run_all_ways(b"GET / HTTP/1.0\r\n\r\n");
    assert!(closed);
    let (out, closed) = run_all_ways(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(out.contains("Connection: keep-alive\r\n"));
    assert!(!closed);
    // HTTP/1.1 stays open unless told otherwise; nothing after `close` is answered.
    let (out, closed) = run_all_ways(
        b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(bodies(out.as_bytes()), vec!["GET /1 HTTP/1.1 []"]);
    assert!(out.contains("Connection: close\r\n"));
    assert!(!closed, "lingers, discarding what follows");
}

#[test]
fn head_gets_headers_only_with_the_length_of_the_body() {
    let (out, _) =
        run_all_ways(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n");
    let responses = parse_responses(out.as_bytes());
    assert_eq!(responses.len(), 2);
    let length = "HEAD /x HTTP/1.1 []".len().to_string();
    assert!(responses[0].1.contains(&("content-length".into(), length)));
    assert!(responses[0].2.is_empty());
    assert_eq!(responses[1].2, b"GET /y HTTP/1.1 []");
}

#[test]
fn bodiless_status_has_no_length() {
    let (out, _) = run_all_ways(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert!(!out.contains("Content-Length"));
}

#[test]
fn expect_100_continue_comes_before_the_body_is_read() {
    let mut harness = Harness::new();
    harness
        .feed(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(harness.text(), "HTTP/1.1 100 Continue\r\n\r\n");
    harness.feed(b"hello");
    assert_eq!(statuses(&harness.out), vec![100, 200]);
    assert!(harness.text().ends_with("POST /e HTTP/1.1 [hello]"));
    // The same when the body did not wait: the output does not depend on timing.
    let (out, _) = run_all_ways(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(out, harness.text());
}

#[test]
fn expect_100_continue_refused_gets_the_final_status_instead() {
    let mut harness = Harness::new();
    harness.feed(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n");
    assert_eq!(statuses(&harness.out), vec![413]);
    assert!(harness.text().contains("Connection: close\r\n"));
    assert!(
        harness.half_closed,
        "lingers: the client may send the body anyway"
    );
}

#[test]
fn error_statuses_close_the_connection() {
    let mut long_target = b"GET /".to_vec();
    long_target.resize(9000, b'a');
    long_target.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut big_head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    big_head.resize(20_000, b'a');
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"BAD REQUEST\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(), 505),
        (long_target, 414),
        (big_head, 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10485761\r\n\r\n".to_vec(), 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nA00001\r\n".to_vec(), 413),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n".to_vec(), 400),
        (b"GET http:/// HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: x\r\nContent-Length: 1\r\n\r\na".to_vec(), 417),
        (format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(33)).into_bytes(), 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n".to_vec(), 400),
        // A request hidden where trailer fields go.
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\
              GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
                .to_vec(),
            400,
        ),
    ];
    for (input, status) in cases {
        let mut followed = input.clone();
        followed.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        for input in [input, followed] {
            let mut harness = Harness::new();
            harness.feed(&input);
            harness.eof();
            assert_eq!(
                statuses(&harness.out),
                vec![status],
                "{:?}",
                String::from_utf8_lossy(&input[..60.min(input.len())])
            );
            assert!(harness.text().contains("Connection: close\r\n"));
            assert!(harness.closed);
        }
    }
}

/// Bytes that cannot begin a request are refused as they arrive, before any end of head: a
/// TLS handshake sent to the plain port, a method that is no token (at once) or too long to be
/// one (at its line's end), an HTTP/0.9 line. A head still valid so far waits for the rest.
/// Whole or byte by byte, the answer is the same.
/// A refusal's log line shows the request line it refused, as it came, once that line came
/// whole (leading empty lines skipped, as the parser skips them); `-` before then, or past the
/// longest line a request may have.
#[test]
fn a_refusal_logs_the_line_it_refused_once_it_came_whole() {
    fn line(bytes: &[u8]) -> Option<Vec<u8>> {
        match logged(Answering::Refused(bytes))? {
            LoggedRequest::Line(line) => Some(line.to_vec()),
            LoggedRequest::Parsed { .. } => panic!("bytes refused are not a parsed request"),
        }
    }
    let some = |text: &[u8]| Some(text.to_vec());
    assert_eq!(line(b"GET / HTTP/1.1\r\nX: y\r\n"), some(b"GET / HTTP/1.1"));
    assert_eq!(
        line(b"\r\n\nGET /a b HTTP/1.1\nHost"),
        some(b"GET /a b HTTP/1.1")
    );
    assert_eq!(line(b"\x16\x03\x01\n"), some(b"\x16\x03\x01"));
    for cut in [
        &b""[..],
        b"GET / HTTP/1.1\r",
        b"\r\n\r\n",
        b"\x16\x03\x01\x02",
    ] {
        assert_eq!(line(cut), None, "{cut:?}");
    }
    let longest = [
        b"GET /".as_slice(),
        &[b'a'; crate::http::MAX_REQUEST_LINE - 14],
        b" HTTP/1.1",
    ]
    .concat();
    assert_eq!(longest.len(), crate::http::MAX_REQUEST_LINE);
    assert_eq!(
        line(&[&longest[..], b"\r\n"].concat()),
        Some(longest.clone())
    );
    let over = [b"GET /a".as_slice(), &longest[5..], b"\r\n"].concat();
    assert_eq!(line(&over), None);
}

#[test]
fn a_head_that_cannot_be_a_request_is_refused_before_it_ends() {
    let long_method = format!("{} / HTTP/1.1\r\n", "M".repeat(40));
    // A method longer than any is 501, however long its line (over 8 KiB it would be 414 with a
    // method of its own length), whole (httparse reads it) or in pieces; it need not end.
    let long_everything = format!(
        "{} /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "M".repeat(40),
        "a".repeat(9000)
    );
    let cases: [(&[u8], Option<u16>); 10] = [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Some(400)),
        (b"G@T / HTTP/1.1", Some(400)),
        (b" GET / HTTP/1.1", Some(400)),
        (b"GET /\r\n", Some(400)),
        (b"GET / HTTP/1.1 x\r\n", Some(400)),
        (long_method.as_bytes(), Some(501)),
        (long_everything.as_bytes(), Some(501)),
        (&[b'M'; 40], Some(501)),
        (&[b'M'; 32], None),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", None),
    ];
    for (input, status) in cases {
        for sizes in [&[input.len()][..], &[1]] {
            let (out, _) = memory::run_split(&describe, input, sizes);
            assert_eq!(
                statuses(&out),
                Vec::from_iter(status),
                "{:?} in pieces of {sizes:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// What the conformance rules answer without closing: the framing was understood, so the
/// next request is read.
#[test]
fn conformance_answers_that_keep_the_connection() {
    let (out, closed) = run_all_ways(
        b"BREW /pot HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /a HTTP/1.2\r\nHost: x\r\n\r\n\
          POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          2 ; n = \"v\\\"\" ; m\r\nhi\r\n0\r\nA: 1\r\nB:\r\n\r\n\
          GET http://[::1]:80/b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(statuses(out.as_bytes()), vec![501, 200, 200, 200]);
    assert_eq!(
        bodies(out.as_bytes()),
        [
            "501 Not Implemented\n",
            "GET /a HTTP/1.1 []",
            "POST /t HTTP/1.1 [hi]",
            "GET http://[::1]:80/b HTTP/1.1 []"
        ]
    );
    assert!(!out.contains("Connection: close"));
    assert!(!closed);
}

/// A trailer section arriving in pieces is kept until it is whole, whatever the pieces, and then
/// read with the head's rules; the body and the next request are where they were.
#[test]
fn trailer_sections_in_any_split() {
    let mut input = b"PUT /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for i in 0..40 {
        input.extend_from_slice(format!("1;i={i}\r\n{}\r\n", i % 10).as_bytes());
    }
    input.extend_from_slice(b"0\r\n");
    for i in 0..50 {
        input.extend_from_slice(format!("X-Trailer-{i}: value {i}\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    for sizes in [&[input.len()][..], &[1], &[2, 3], &[17, 1, 64], &[300]] {
        let (out, _) = run_split(&input, sizes);
        let expected_body = "0123456789".repeat(4);
        assert_eq!(
            bodies(&out),
            [
                format!("PUT /t HTTP/1.1 [{expected_body}]"),
                "GET /next HTTP/1.1 []".into()
            ],
            "{sizes:?}"
        );
    }
}

/// What a stand-in for the reactor's pool was handed: each request's head and body.
type Taken = std::rc::Rc<std::cell::RefCell<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A stand-in for the reactor's pool: keeps what it is handed, and has no room for `/full`.
struct Away(Taken);

impl Offload for Away {
    fn hand_over(&mut self, request: &Request<'_>, head: &[u8]) -> Handover {
        if request.path == "/full" {
            return Handover::Refused(Status::SERVICE_UNAVAILABLE);
        }
        let taken = (head.to_vec(), request.body.to_vec());
        self.0.borrow_mut().push(taken);
        Handover::Away
    }
}

/// [`describe`], with `/slow` and `/full` that "may block".
struct MayBlock;

impl Handler for MayBlock {
    fn handle(&self, request: &Request<'_>) -> Response {
        describe(request)
    }

    fn may_block(&self, request: &Request<'_>) -> bool {
        matches!(request.path, "/slow" | "/full" | "/blind")
    }

    fn reads_body(&self, request: &Request<'_>) -> bool {
        request.path != "/blind"
    }
}

/// A connection serving [`MayBlock`], with [`Away`] as its pool.
fn with_pool(limits: Limits) -> (Harness, Taken) {
    let taken = Taken::default();
    let mut harness = Harness::with(limits, &describe);
    harness.env.handler = Box::new(MayBlock);
    harness.env.offload = Some(Box::new(Away(taken.clone())));
    (harness, taken)
}

/// A request handed away holds back the ones pipelined behind it (their bytes stay unread)
/// until its response comes back; then all leave in request order, whatever the split.
#[test]
fn offloaded_requests_keep_their_turn() {
    let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
        GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /full HTTP/1.1\r\nHost: x\r\n\r\n";
    for step in [input.len(), 1, 7] {
        let (mut harness, taken) = with_pool(Limits::default());
        // Fed as reads deliver it; a waiting connection takes no more.
        let mut at = 0;
        while at < input.len() {
            let took = harness.feed(&input[at..(at + step).min(input.len())]);
            if took == 0 {
                break;
            }
            at += took;
        }
        // /a answered; /slow away with its decoded body; /b waits behind it.
        assert_eq!(bodies(&harness.out), ["GET /a HTTP/1.1 []"], "{step}");
        assert_eq!(taken.borrow().len(), 1);
        assert_eq!(taken.borrow()[0].1, b"hi");
        assert!(harness.conn.is_pending());
        let mut cx = harness.env.cx();
        assert!(matches!(harness.conn.want(&mut cx), Want::Wait));
        // The answer comes back: it leaves, then /b's, then /full's refusal (the connection
        // stays open: the framing was fine).
        harness
            .conn
            .completed(Response::text(Status::OK, "slow done"), &mut cx);
        harness.feed(b"");
        while at < input.len() {
            at += harness.feed(&input[at..(at + step).min(input.len())]);
        }
        assert_eq!(
            bodies(&harness.out),
            [
                "GET /a HTTP/1.1 []",
                "slow done",
                "GET /b HTTP/1.1 []",
                "503 Service Unavailable\n"
            ],
            "{step}"
        );
        assert!(!harness.closed && !harness.half_closed);
    }
}

/// A request waiting for `100 Continue` whose handler would not read its body is answered at
/// once, without the `100`, and its connection closes after the answer, lingering over what
/// the client sends anyway: on the loop and from the pool alike, whatever came with the head.
#[test]
fn expect_100_continue_unread_gets_its_answer_at_once() {
    let head = b"PUT /blind HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9000000\r\n\r\n";
    let mut body_and_next = vec![b'a'; 9_000_000];
    body_and_next.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    for with_head in [0, 100] {
        let mut first = head.to_vec();
        first.extend_from_slice(&body_and_next[..with_head]);
        // On the loop.
        let handler = NumberedIgnoringBody { reads_body: false };
        let mut harness = MemoryConn::serving(Limits::default(), handler);
        harness.feed(&first);
        assert_eq!(statuses(&harness.out), [200], "{with_head}");
        assert!(harness.text().contains("Connection: close\r\n"));
        assert!(
            harness.half_closed,
            "lingers: the client may send the body anyway"
        );
        for piece in body_and_next[with_head..].chunks(65536) {
            harness.feed(piece);
        }
        assert_eq!(
            statuses(&harness.out),
            [200],
            "nothing read after it is answered"
        );
        // From the pool: handed over with no body, and nothing sent until it comes back.
        let (mut harness, taken) = with_pool(Limits::default());
        harness.feed(&first);
        assert_eq!(taken.borrow()[0], (head.to_vec(), Vec::new()));
        assert!(harness.out.is_empty() && harness.conn.is_pending());
        let mut cx = harness.env.cx();
        harness
            .conn
            .completed(Response::text(Status::OK, "blind done"), &mut cx);
        harness.feed(b"");
        assert_eq!(bodies(&harness.out), ["blind done"]);
        assert!(harness.text().contains("Connection: close\r\n"));
        assert!(harness.half_closed);
        harness.feed(&body_and_next[with_head..]);
        assert_eq!(bodies(&harness.out), ["blind done"]);
    }
}

/// An offloaded request that does not come back in time: 504 and close, and a late answer is
/// dropped.
#[test]
fn an_offloaded_request_that_never_returns_gets_504() {
    let limits = Limits {
        handler_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let (mut harness, _taken) = with_pool(limits);
    harness.feed(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.advance(2.5);
    assert!(harness.out.is_empty());
    harness.advance(1.0);
    assert_eq!(statuses(&harness.out), vec![504]);
    assert!(harness.text().contains("Connection: close\r\n"));
    let mut cx = harness.env.cx();
    harness
        .conn
        .completed(Response::text(Status::OK, "too late"), &mut cx);
    harness.feed(b"");
    assert_eq!(statuses(&harness.out), vec![504]);
}

/// A shared body goes out as the same bytes as an owned one, for any split, pipelined or not;
/// to a client that does not read, the connection holds the shared bytes and at most a piece
/// of them in its output, and lets go of them once they are sent.
#[test]
fn a_shared_body_is_sent_as_owned_bytes_are() {
    let two = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(2);
    for sizes in [&[usize::MAX][..], &[1], &[7, 300]] {
        let (shared, _) = run_split(two("/shared").as_bytes(), sizes);
        let (owned, _) = run_split(two("/owned").as_bytes(), sizes);
        assert!(shared == owned, "{sizes:?}");
        assert_eq!(parse_responses(&shared)[1].2, ***SHARED);
    }
    let held = Arc::strong_count(&HELD);
    let mut harness = Harness::new();
    harness.stalled = true;
    harness.feed(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\nGET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        harness.conn.unsent() <= 200 + STREAM_PIECE,
        "{}",
        harness.conn.unsent()
    );
    assert_eq!(
        Arc::strong_count(&HELD),
        held + 1,
        "the second waits its turn"
    );
    harness.stalled = false;
    harness.feed(b"");
    assert_eq!(parse_responses(&harness.out).len(), 2);
    assert_eq!(Arc::strong_count(&HELD), held);
}

#[test]
fn a_client_that_never_reads_cannot_grow_output_or_input() {
    let mut harness = Harness::new();
    harness.stalled = true;
    let request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    let flood: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 10_000)
        .collect();
    let taken = harness.feed(&flood);
    assert!(taken <= 2 * BUF_SIZE, "stopped reading early: took {taken}");
    // One response past the high-water mark at most.
    let queued = harness.conn.output.buf.len();
    assert!(queued <= OUTPUT_HIGH_WATER + 101_000, "{queued}");
    assert!(harness.conn.input.len() <= BUF_SIZE);
    // Once the client reads, everything is answered.
    harness.stalled = false;
    let mut at = taken;
    while at < flood.len() {
        at += harness.feed(&flood[at..]);
    }
    assert_eq!(statuses(&harness.out).len(), 10_000);
}

#[test]
fn timeouts() {
    let limits = Limits {
        header_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    // A head that does not finish in time: 408, then close (lingering).
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(b"GET / HT");
    harness.advance(9.0);
    assert!(harness.out.is_empty());
    harness.feed(b"TP/1.1\r\n");
    harness.advance(1.5);
    assert_eq!(statuses(&harness.out), vec![408]);
    assert!(harness.half_closed);
    harness.advance(LINGER_TIMEOUT.as_secs_f64() + 0.1);
    assert!(harness.closed);

    // A new connection that sends nothing is held to the header timeout too.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.advance(10.5);
    assert_eq!(statuses(&harness.out), vec![408]);

    // A HEAD too slow to arrive gets the 408's head alone.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(b"HEAD / HTTP/1.1\r\nHost: x\r\n");
    harness.advance(10.5);
    assert!(harness.text().starts_with("HTTP/1.1 408 "));
    assert!(harness.text().ends_with("\r\n\r\n"), "{}", harness.text());

    // Idle keep-alive: closed silently; a request restarts the clock.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.advance(4.0);
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.advance(4.0);
    assert!(!harness.closed);
    harness.advance(1.5);
    assert!(harness.closed);
    assert_eq!(statuses(&harness.out), vec![200, 200]);

    // A slow body: a byte a second, far below the minimum rate (1 KiB/s), gains a millisecond
    // a byte: 408 at the body timeout.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    for _ in 0..19 {
        harness.feed(b"x");
        harness.advance(1.0);
    }
    assert!(harness.out.is_empty());
    harness.advance(1.5);
    assert_eq!(statuses(&harness.out), vec![408]);

    // A client that stops reading is abandoned after the send timeout.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.stalled = true;
    harness.feed(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.advance(59.0);
    assert!(!harness.closed);
    harness.advance(2.0);
    assert!(harness.closed);
}

/// A body's timer gains a second for every `body_min_rate` bytes that arrive, up to the body
/// timeout from now: a body that keeps coming at the rate is never cut off; one that stops, or
/// crawls below the rate, is, later; time is not banked by sending fast first.
#[test]
fn a_body_gains_time_as_it_comes() {
    let limits = Limits {
        body_timeout: Duration::from_secs(20),
        body_min_rate: 1024,
        ..Limits::default()
    };
    let head = |len: usize| format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    // 2 KiB every two seconds, for three times the body timeout: answered.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(head(30 * 2048).as_bytes());
    for _ in 0..29 {
        harness.feed(&[b'x'; 2048]);
        harness.advance(2.0);
    }
    assert!(harness.out.is_empty());
    harness.feed(&[b'x'; 2048]);
    assert_eq!(statuses(&harness.out), vec![200]);

    // 512 bytes a second gain half a second a second: the timer started at the head runs out
    // once half the time gone is 20 s, at 39 s.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(head(100_000).as_bytes());
    for _ in 0..38 {
        harness.feed(&[b'x'; 512]);
        harness.advance(1.0);
    }
    assert!(harness.out.is_empty(), "cut off before 39 s");
    harness.feed(&[b'x'; 512]);
    harness.advance(1.0);
    assert_eq!(statuses(&harness.out), vec![408]);

    // 60 KB at once, then nothing: no time banked, 408 twenty seconds later.
    let mut harness = Harness::with(limits.clone(), &describe);
    harness.feed(head(100_000).as_bytes());
    harness.feed(&[b'x'; 60_000]);
    harness.advance(19.5);
    assert!(harness.out.is_empty());
    harness.advance(1.0);
    assert_eq!(statuses(&harness.out), vec![408]);

    // A rate of 0: the whole body within the body timeout, however fast it comes.
    let whole = Limits {
        body_min_rate: 0,
        ..limits
    };
    let mut harness = Harness::with(whole, &describe);
    harness.feed(head(100_000).as_bytes());
    for _ in 0..10 {
        assert!(harness.out.is_empty());
        harness.feed(&[b'x'; 2048]);
        harness.advance(2.0);
    }
    harness.advance(0.5);
    assert_eq!(statuses(&harness.out), vec![408]);
}

#[test]
fn idle_connections_hold_no_buffers() {
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!harness.conn.holds_buffers());
    harness.feed(b"GET / HTTP/1.1\r\nHo");
    assert!(harness.conn.holds_buffers(), "a partial head is kept");
    harness.feed(b"st: x\r\n\r\n");
    assert!(!harness.conn.holds_buffers());
    assert_eq!(harness.env.pool.pooled(), (1, 1));
}

#[test]
fn asking_again_after_read_is_the_same_answer_until_something_happens() {
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    // A driver asks at every readiness event: the short answer is still Read...
    let mut cx = harness.env.cx();
    assert!(matches!(harness.conn.want(&mut cx), Want::Read));
    // ...and a read that finds nothing (WouldBlock) must not leave the buffer it took held.
    harness.conn.read_buf(&mut cx);
    assert!(harness.conn.holds_buffers());
    assert!(matches!(harness.conn.want(&mut cx), Want::Read));
    assert!(!harness.conn.holds_buffers());
    // A timeout in between is seen: the idle connection closes.
    harness.advance(3600.0);
    assert!(harness.closed);
}

#[test]
fn end_of_input() {
    // A half-closed client still gets its answers.
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.eof();
    assert_eq!(statuses(&harness.out), vec![200]);
    assert!(harness.closed);
    // A partial request cut off is dropped without an answer.
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHo");
    harness.eof();
    assert!(harness.out.is_empty());
    assert!(harness.closed);
}

#[test]
fn lingering_discards_input_until_the_client_closes() {
    let mut harness = Harness::new();
    harness.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n");
    assert!(harness.half_closed && !harness.closed);
    let taken = harness.feed(&[b'x'; 100_000]);
    assert_eq!(taken, 100_000, "keeps reading, to discard");
    assert!(!harness.conn.holds_buffers());
    harness.eof();
    assert!(harness.closed);
    assert_eq!(statuses(&harness.out), vec![413]);
}

#[test]
fn draining_closes_idle_connections_and_finishes_requests_in_flight() {
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.conn.drain(Drain::Now);
    harness.feed(b"");
    assert!(harness.closed);

    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHo");
    harness.conn.drain(Drain::Now);
    harness.feed(b"");
    assert!(!harness.closed);
    harness.feed(b"st: x\r\n\r\n");
    assert!(harness.text().contains("Connection: close\r\n"));
    // The client meant to keep the connection, and may have sent more already: the close
    // lingers, reading (and dropping) it, until the client closes too.
    assert!(harness.half_closed && !harness.closed);
    harness.feed(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&harness.out), vec![200]);
    harness.eof();
    assert!(harness.closed);
}

#[test]
fn bytes_received_before_a_drain_are_a_request_in_flight() {
    // Between keep-alive requests, a driver hands the connection bytes and passes the drain on
    // before the connection looks at them (a blocking thread, or TLS finishing a record): they
    // came before the stop, so they are answered, with `Connection: close`.
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHo",
    ] {
        let mut harness = Harness::new();
        harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut cx = harness.env.cx();
        assert!(matches!(harness.conn.want(&mut cx), Want::Read));
        let buf = harness.conn.read_buf(&mut cx);
        buf[..request.len()].copy_from_slice(request);
        harness.conn.received(request.len());
        harness.conn.drain(Drain::Now);
        harness.feed(b"st: x\r\n\r\n");
        assert_eq!(statuses(&harness.out), vec![200, 200]);
        // The first answer keeps the connection; the second ends it.
        assert_eq!(harness.text().matches("Connection: close\r\n").count(), 1);
        assert!(harness.half_closed);
    }
}

#[test]
fn an_answer_after_a_stop_is_the_last_before_the_drain_is_passed_on() {
    // A stop asked for while the driver has not yet passed it on (an event loop mid-turn): the
    // request that comes whole now is answered as the last, and what was pipelined behind it
    // is not answered.
    let mut harness = Harness::new();
    harness.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness.env.stop_asked.store(true, Ordering::SeqCst);
    harness.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&harness.out), vec![200, 200]);
    assert_eq!(harness.text().matches("Connection: close\r\n").count(), 1);
    assert!(harness.half_closed);

    // A handover's stop: every request already received is answered, the last with
    // `Connection: close`, as `Drain::Handover` has it.
    let mut harness = Harness::new();
    harness.env.handover_asked.store(true, Ordering::SeqCst);
    harness.env.stop_asked.store(true, Ordering::SeqCst);
    harness.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&harness.out), vec![200, 200]);
    let text = harness.text();
    assert_eq!(text.matches("Connection: close\r\n").count(), 1);
    assert!(text.rfind("Connection: close").unwrap() > text.rfind("HTTP/1.1 200").unwrap());
}

fn temp_file(contents: &[u8]) -> File {
    let path = std::env::temp_dir().join(format!(
        "conn-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = File::create(&path).unwrap();
    file.write_all(contents).unwrap();
    let file = File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

fn serve_file(request: &Request<'_>) -> Response {
    let contents: &[u8] = if request.path == "/shrunk" {
        b"short"
    } else {
        b"0123456789"
    };
    let file = temp_file(contents);
    Response::new(Status::OK).with_body(Body::File(FileBody {
        file,
        offset: 2,
        len: 6,
    }))
}

#[test]
fn file_bodies_follow_their_head_and_hold_back_the_next_response() {
    let mut harness = Harness::with(Limits::default(), &serve_file);
    harness.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let responses = parse_responses(&harness.out);
    let files: Vec<&[u8]> = responses.iter().map(|r| &r.2[..]).collect();
    assert_eq!(files, vec![&b"234567"[..], &b"234567"[..]]);
    assert!(!harness.conn.holds_buffers());
    // Each head went with `more`: the file came next.
    assert_eq!(harness.held_for_file, 2);

    // HEAD: no body, and the file is not sent.
    let mut harness = Harness::with(Limits::default(), &serve_file);
    harness.feed(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(harness.text().ends_with("Content-Length: 6\r\n\r\n"));
    assert_eq!(harness.held_for_file, 0, "no file follows a HEAD's head");

    // A file that shrank: the connection ends rather than send what is not there.
    let mut harness = Harness::with(Limits::default(), &serve_file);
    harness.feed(b"GET /shrunk HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(harness.closed);
    assert!(
        harness.text().ends_with("\r\n\r\nort"),
        "{}",
        harness.text()
    );
}

fn serve_parts(request: &Request<'_>) -> Response {
    let contents: &[u8] = match request.path {
        "/shrunk" => b"0123",
        _ => b"0123456789",
    };
    let parts = super::super::Multipart::new(
        temp_file(contents),
        vec![(1, 2), (5, 5), (8, 9)],
        "text/plain",
        10,
    );
    Response::new(Status::PARTIAL_CONTENT)
        .with_content_type(parts.content_type())
        .with_body(Body::Parts(Box::new(parts)))
}

#[test]
fn multipart_bodies_send_each_range_after_its_head() {
    let expected = |boundary: &str| {
        let part = |first: &str, range: &str, bytes: &str| {
            format!(
                "{first}--{boundary}\r\nContent-Type: text/plain\r\n\
                 Content-Range: bytes {range}/10\r\n\r\n{bytes}"
            )
        };
        let body = [
            part("", "1-2", "12"),
            part("\r\n", "5-5", "5"),
            part("\r\n", "8-9", "89"),
            format!("\r\n--{boundary}--\r\n"),
        ];
        body.concat()
    };
    let boundary_of = |head: &str| {
        let at = head.find("boundary=").unwrap() + "boundary=".len();
        head[at..at + 24].to_string()
    };
    // Pipelined: each range goes out after its part's head, and the response after the body.
    let mut harness = Harness::with(Limits::default(), &serve_parts);
    harness.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = harness.text();
    let responses = parse_responses(&harness.out);
    assert_eq!(responses.len(), 2, "{text}");
    let heads: Vec<&str> = text.split("HTTP/1.1 206").skip(1).collect();
    for (response, head) in responses.iter().zip(heads) {
        let body = String::from_utf8(response.2.clone()).unwrap();
        assert_eq!(body, expected(&boundary_of(head)));
    }
    assert!(!harness.conn.holds_buffers());
    // Each part's head (the response's with the first) before its range, three a response;
    // the closing boundary went without.
    assert_eq!(harness.held_for_file, 6);

    // HEAD: the length of the body it would have, and no body.
    let mut harness = Harness::with(Limits::default(), &serve_parts);
    harness.feed(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = harness.text();
    let len = expected(&boundary_of(&text)).len();
    assert!(
        text.ends_with(&format!("Content-Length: {len}\r\n\r\n")),
        "{text}"
    );

    // A file that shrank under its second range: the connection ends there.
    let mut harness = Harness::with(Limits::default(), &serve_parts);
    harness.feed(b"GET /shrunk HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(harness.closed);
    let text = harness.text();
    assert!(
        text.ends_with("Content-Range: bytes 5-5/10\r\n\r\n"),
        "{text}"
    );
}

/// A valid request, rendered.
fn request_strategy() -> impl Strategy<Value = Vec<u8>> {
    let path = "/[a-z0-9]{0,12}";
    let body = proptest::collection::vec(any::<u8>(), 0..300);
    (0..6u8, path, body, proptest::collection::vec(1..50usize, 1..5), any::<bool>()).prop_map(
        |(kind, path, body, chunk_sizes, expect)| {
            let expect = if expect { "Expect: 100-continue\r\n" } else { "" };
            match kind {
                0 => format!("GET {path} HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n").into_bytes(),
                1 => format!("HEAD {path} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(),
                2 => format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").into_bytes(),
                3 => {
                    let mut r = format!(
                        "POST {path} HTTP/1.1\r\nHost: h\r\n{expect}Content-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                4 => {
                    let mut r = format!(
                        "PUT {path} HTTP/1.1\r\nHost: h\r\n{expect}Transfer-Encoding: chunked\r\n\r\n"
                    )
                    .into_bytes();
                    let mut rest = &body[..];
                    for size in chunk_sizes.iter().cycle() {
                        if rest.is_empty() {
                            break;
                        }
                        let n = (*size).min(rest.len());
                        let ext = [";ext=1", " ; a = \"q\\\"x\"", ";b;c=d", ""][n % 4];
                        r.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                        r.extend_from_slice(&rest[..n]);
                        r.extend_from_slice(b"\r\n");
                        rest = &rest[n..];
                    }
                    r.extend_from_slice(b"0\r\nTrailer: t\r\nOther:\tu v \r\n\r\n");
                    r
                }
                _ => format!("\r\nDELETE {path}?q=1 HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(),
            }
        },
    )
}

/// Whether the connection answers `request` before its body when its handler does not read
/// bodies: it waits for `100 Continue`, and has a body within the limit (a `Content-Length` over
/// it gets its 413 either way; one of 0 has no body to wait for).
fn answered_before_body(request: &[u8]) -> bool {
    let head = head_text(request);
    let length = |line: &str| {
        line.strip_prefix("Content-Length: ")
            .map(|n| n.parse::<u64>())
    };
    head.contains("\r\nExpect: ")
        && !head.lines().filter_map(length).any(|n| {
            let n = n.unwrap();
            n == 0 || n > small_body_limits().max_body_bytes
        })
}

/// `request` as it is answered before its body: as a request without one that asks to close
/// the connection.
fn without_body(request: &[u8]) -> Vec<u8> {
    let mut told: String = head_text(request)
        .split_inclusive("\r\n")
        .filter(|line| {
            !["Expect:", "Content-Length:", "Transfer-Encoding:"]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .collect();
    told.push_str("Connection: close\r\n\r\n");
    told.into_bytes()
}

/// A request's head, up to the CR LF of its last field line.
fn head_text(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text[..text.find("\r\n\r\n").expect("a whole head") + 2].to_string()
}

/// Limits under which some of `request_strategy`'s bodies are too large (413).
fn small_body_limits() -> Limits {
    Limits {
        max_body_bytes: 200,
        ..Limits::default()
    }
}

/// A body its handler does not read is dropped as it comes, by length or chunked, with the next
/// request right behind it or not: no more than a buffer's worth is held, the handler gets an
/// empty body, and the next request is answered as usual.
#[test]
fn an_unread_upload_holds_no_memory() {
    let mut upload =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    upload.extend(std::iter::repeat_n(b'a', 10_000_000));
    let mut chunked =
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..1000 {
        chunked.extend_from_slice(b"2710;x=y\r\n");
        chunked.extend(std::iter::repeat_n(b'c', 10_000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
    for mut input in [upload, chunked] {
        input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        let limits = Limits {
            max_body_bytes: 10_000_000,
            ..Limits::default()
        };
        let handler = NumberedIgnoringBody { reads_body: false };
        let mut harness = MemoryConn::serving(limits, handler);
        let mut at = 0;
        while at < input.len() {
            let end = (at + 65_536).min(input.len());
            at += harness.feed(&input[at..end]);
            assert!(
                harness.conn.input.capacity() <= BUF_SIZE,
                "{}",
                harness.conn.input.capacity()
            );
        }
        assert_eq!(bodies(&harness.out)[1], "GET /next");
        assert!(bodies(&harness.out)[0].ends_with(" /upload"));
        assert!(!harness.closed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whether the handler reads bodies changes nothing sent, for any split of any pipelined
    /// stream, bodies too large (413) among them; except that a request waiting for
    /// `100 Continue` is answered at once instead, its connection closing after it.
    #[test]
    fn a_body_dropped_unread_changes_nothing_sent(
        requests in proptest::collection::vec(request_strategy(), 1..8),
        sizes in proptest::collection::vec(1..64usize, 1..10),
    ) {
        let input = requests.concat();
        // What a handler that reads bodies is told to give the same answers.
        let told = match requests.iter().position(|r| answered_before_body(r)) {
            None => input.clone(),
            Some(waiting) => {
                let mut told = requests[..waiting].concat();
                told.extend(without_body(&requests[waiting]));
                told
            }
        };
        for split in [&[input.len()][..], &sizes[..], &[1][..]] {
            let run = |input: &[u8], reads_body| {
                memory::reset_calls();
                let handler = NumberedIgnoringBody { reads_body };
                memory::run_split_on(MemoryConn::serving(small_body_limits(), handler), input, split).0
            };
            prop_assert_eq!(run(&input, false), run(&told, true));
        }
    }

    // ANCHOR: any_split
    /// Any split of a valid pipelined stream yields the same requests and the same bytes.
    #[test]
    fn any_split_gives_the_same_output(
        requests in proptest::collection::vec(request_strategy(), 1..8),
        sizes in proptest::collection::vec(1..64usize, 1..10),
    ) {
        let input = requests.concat();
        let whole = run_split(&input, &[input.len()]);
        prop_assert_eq!(&run_split(&input, &sizes), &whole);
        prop_assert_eq!(&run_split(&input, &[1]), &whole);
        let finals = parse_responses(&whole.0).iter().filter(|r| r.0 >= 200).count();
        prop_assert_eq!(finals, requests.len());
        prop_assert!(!whole.1);
    }
    // ANCHOR_END: any_split

    // ANCHOR: batch_is_general
    /// The batch path (`Conn::heads`, several requests a step) gives byte-identical output to
    /// the general path (one request a step, through `Conn::next`) for any split of any
    /// pipelined stream, garbage behind it or not.
    #[test]
    fn the_batch_path_is_the_general_path(
        requests in proptest::collection::vec(prop_oneof![
            6 => request_strategy(),
            // A response past the output's high-water mark ends a batch.
            1 => Just(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            // So does one sent from shared bytes, a piece at a time.
            1 => Just(b"GET /shared HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            // So does a request refused (no Host): 400, and the connection closes.
            1 => Just(b"GET /nohost HTTP/1.1\r\n\r\n".to_vec()),
        ], 1..12),
        sizes in proptest::collection::vec(1..200usize, 1..10),
        garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
    ) {
        let mut input = requests.concat();
        input.extend(garbage.unwrap_or_default());
        for split in [&[input.len()][..], &sizes[..]] {
            let batched = run_split(&input, split);
            let general = without_batching(|| run_split(&input, split));
            prop_assert_eq!(batched, general);
        }
    }
    // ANCHOR_END: batch_is_general

    /// Arbitrary bytes: never a panic, only well-formed responses, and the connection either
    /// waits for more or closes.
    #[test]
    fn arbitrary_bytes_get_responses_or_a_close(
        input in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1..64usize, 1..10),
    ) {
        let (out, _) = run_split(&input, &sizes);
        parse_responses(&out);
    }

    /// Arbitrary bytes after a valid prefix, as garbage in a keep-alive stream would arrive.
    #[test]
    fn garbage_after_valid_requests(
        request in request_strategy(),
        garbage in proptest::collection::vec(any::<u8>(), 0..500),
    ) {
        let mut input = request;
        input.extend_from_slice(&garbage);
        let whole = run_split(&input, &[input.len()]);
        prop_assert_eq!(&run_split(&input, &[3]), &whole);
        parse_responses(&whole.0);
    }
}

/// The per-connection struct is what an idle keep-alive connection costs (its buffers are back
/// in the pool): keep it small. See benches/idle-memory.sh for the whole-server figure.
#[test]
fn an_idle_connection_is_small() {
    let size = std::mem::size_of::<Conn>();
    eprintln!("size_of::<Conn>() = {size}");
    // 144 since the trailer scan's position became a u16 (a usize had made it 160: 16 bytes
    // more for every idle connection, in benches/idle-memory.sh too); 136 since the timer's
    // start is kept in milliseconds (`Millis`) rather than as an `Instant`. (Still 136 with
    // what its buffers hold of the server's budget, a pointer: the input became a boxed slice,
    // 8 bytes smaller than a `Vec`.)
    assert!(size <= 136, "Conn grew to {size} bytes");
}

/// Empty lines before a request are skipped however they are split, even between the CR and
/// the LF of one of them (a case the `conn` fuzz target found answered 400).
#[test]
fn leading_empty_lines_in_any_split() {
    for input in [
        &b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\n\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (out, closed) = run_all_ways(input);
        assert!(!closed);
        assert!(
            statuses(out.as_bytes()).iter().all(|&status| status == 200),
            "{out}"
        );
    }
    // A CR followed by anything but LF is not an empty line: the request is malformed.
    let (out, _) = run_all_ways(b"\rGET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(out.as_bytes()), vec![400]);
}

/// A body made as it goes: three pieces.
#[derive(Debug)]
struct Pieces(u8);

impl crate::http::BodyStream for Pieces {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> std::io::Result<usize> {
        if self.0 == 3 {
            return Ok(0);
        }
        self.0 += 1;
        out.extend_from_slice(format!("piece {} ", self.0).as_bytes());
        Ok(8)
    }
}

fn serve_stream(_: &Request<'_>) -> Response {
    Response::new(Status::OK).with_body(Body::Stream(Box::new(Pieces(0))))
}

#[test]
fn streamed_bodies_are_chunked_or_end_with_the_connection() {
    // HTTP/1.1: chunked, and the connection goes on to the next request.
    let mut harness = Harness::with(Limits::default(), &serve_stream);
    harness.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = harness.text();
    let one = "Transfer-Encoding: chunked\r\n\r\n\
               00000008\r\npiece 1 \r\n00000008\r\npiece 2 \r\n00000008\r\npiece 3 \r\n0\r\n\r\n";
    assert_eq!(text.matches(one).count(), 2, "{text}");
    assert!(!text.contains("Content-Length"));
    assert!(!harness.closed);

    // HTTP/1.0: no chunks; no length either; the body ends where the connection does.
    let mut harness = Harness::with(Limits::default(), &serve_stream);
    harness.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let text = harness.text();
    assert!(
        text.ends_with("Connection: close\r\n\r\npiece 1 piece 2 piece 3 "),
        "{text}"
    );
    assert!(!text.contains("Transfer-Encoding") && !text.contains("Content-Length"));
    // The client meant to keep the connection, and may be pipelining: the close lingers.
    assert!(harness.half_closed && !harness.closed);

    // HEAD: the headers GET would have, no body.
    let mut harness = Harness::with(Limits::default(), &serve_stream);
    harness.feed(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        harness
            .text()
            .ends_with("Transfer-Encoding: chunked\r\n\r\n")
    );
}

/// `reads_no_more` is true exactly when the queued output is the connection's last and no
/// lingering read follows it: a driver that stops receiving on its word loses nothing.
#[test]
fn reads_no_more_only_before_a_plain_close() {
    let cases: [(&[u8], bool); 6] = [
        (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", false),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            true,
        ),
        (b"GET /a HTTP/1.0\r\n\r\n", true),
        (b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
        // Bytes behind the last request: the close lingers, reading them.
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b",
            false,
        ),
        // A 400: the close lingers too (the client may still be sending).
        (b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false),
    ];
    for (input, expected) in cases {
        let mut harness = Harness::new();
        harness.stalled = true;
        harness.feed(input);
        assert!(!harness.out.is_empty() || harness.conn.output.has_bytes());
        assert_eq!(
            harness.conn.reads_no_more(),
            expected,
            "{}",
            String::from_utf8_lossy(input)
        );
        // And it holds: written out, a connection that said so closes without reading.
        harness.stalled = false;
        harness.feed(b"");
        assert_eq!(harness.closed && !harness.half_closed, expected);
    }
    // A streamed body whose last bytes are all queued, part written: nothing follows them.
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let whole = memory::run_split(&serve_stream, request, &[request.len()]).0;
    let mut harness = Harness::with(Limits::default(), &serve_stream);
    harness.room = whole.len() - 2;
    harness.feed(request);
    assert!(harness.conn.reads_no_more());
    harness.room = usize::MAX;
    harness.feed(b"");
    assert!(harness.closed && !harness.half_closed);
    assert_eq!(harness.out, whole);
}

/// A connection's timeout is not reached before its whole duration has passed since the timer
/// started, though the loop's clock reads whole milliseconds, rounded down.
#[test]
fn a_timeout_is_never_reached_early() {
    let limits = Limits::default();
    let start = Millis(1_000_000).instant() + Duration::from_micros(900);
    let mut harness = Harness::new();
    harness.env.clock = Clock::at(start, std::time::SystemTime::UNIX_EPOCH);
    harness.conn = Conn::new(&harness.env.cx());
    let deadline = harness
        .conn
        .deadline(&limits)
        .expect("the header timer runs");
    let just_before = start + limits.header_timeout - Duration::from_nanos(1);
    assert!(Millis::of(just_before) < deadline);
}

/// The fuzz targets' order check through answers a precondition made: a 304 or 412 in place of
/// the handler's response still stands for its call. (The fuzzer's case: `If-None-Match: *` on
/// the first of two requests.) And a `*` inside a list is no wildcard: the handler's own answer.
#[test]
fn preconditions_keep_the_order_check() {
    let input = b"HEAD /a HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n\
        GET /b HTTP/1.1\r\nHost: t\r\nIf-Match: \"x\"\r\n\r\n\
        GET /c HTTP/1.1\r\nHost: t\r\nIf-None-Match: *, \"x\"\r\n\r\n\
        GET /d HTTP/1.1\r\nHost: t\r\n\r\n";
    memory::reset_calls();
    let (out, _) = memory::run_split(&memory::numbered, input, &[input.len()]);
    assert_eq!(statuses(&out), [304, 412, 200, 200]);
    memory::check_responses(&out);
}

/// A refused HEAD gets the refusal's head alone, whatever it was refused for and however its
/// bytes arrive; the same refusal of a GET carries its text.
#[test]
fn refusals_of_head_have_no_content() {
    // Each request after its method: `/a` with these fields.
    let after_method = |fields: &str| format!(" /a HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    let cases = [
        (400, " /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n".to_string()),
        (431, after_method(&format!("X: {}\r\n", "a".repeat(20_000)))),
        (417, after_method("Expect: x\r\n")),
        (413, after_method("Content-Length: 99999999999\r\n")),
        (
            400,
            after_method("Transfer-Encoding: chunked\r\n") + "zz\r\n\r\n",
        ),
    ];
    for (status, rest) in cases {
        for method in ["HEAD", "GET"] {
            let input = format!("{method}{rest}");
            let (out, _) = run_all_ways(input.as_bytes());
            let (head, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status} ")),
                "{input:?}: {out}"
            );
            let text = format!("{status} {}\n", Status(status).reason());
            assert_eq!(body, if method == "HEAD" { "" } else { &text }, "{input:?}");
        }
    }
}

/// Answers with the request's body.
fn echo(request: &Request<'_>) -> Response {
    Response::new(Status::OK).with_body(Body::Bytes(request.body.to_vec()))
}

/// Connections share their server's buffer budget (`--max-buffer-bytes`): a body is held only as
/// far as it goes (past it, 503 and close, the rest of the body read and dropped); a response
/// waiting for a client that does not read counts against the requests after it; and whatever
/// a connection held comes back when it lets go of it or is dropped mid-body.
#[test]
fn bodies_past_the_buffer_budget_are_refused_and_their_share_comes_back() {
    let budget = super::super::BufferBudget::new(200_000);
    let limits = Limits {
        max_body_bytes: 1 << 20,
        buffers: budget.clone(),
        ..Limits::default()
    };
    let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (part, rest) = request.split_at(100_000);
    // 100,000 bytes in a buffer grown to 128 KiB.
    let mut first = MemoryConn::with(limits.clone(), &echo);
    assert_eq!(first.feed(part), part.len());
    assert_eq!(budget.held(), 128 * 1024 - BUF_SIZE);
    // A second would need as much, and 200,000 cannot hold both.
    let mut second = MemoryConn::with(limits.clone(), &echo);
    assert_eq!(
        second.feed(part),
        part.len(),
        "read on and dropped while it lingers"
    );
    assert_eq!(statuses(&second.out), [503]);
    assert!(second.text().contains("Connection: close\r\n"));
    assert!(second.half_closed && !second.closed);
    assert_eq!(
        budget.held(),
        128 * 1024 - BUF_SIZE,
        "the refused body was let go"
    );
    // The first body ends, and its echo waits for a client that does not read.
    first.stalled = true;
    assert_eq!(first.feed(rest), rest.len());
    assert!(first.out.is_empty());
    assert!(budget.held() >= body.len() - BUF_SIZE, "{}", budget.held());
    let mut third = MemoryConn::with(limits.clone(), &echo);
    third.feed(part);
    assert_eq!(statuses(&third.out), [503], "the waiting response counts");
    // Read, it is let go; then a whole body fits again.
    first.stalled = false;
    first.feed(b"");
    let responses = parse_responses(&first.out);
    assert_eq!(responses.len(), 1);
    assert_eq!((responses[0].0, &responses[0].2), (200, &body));
    assert_eq!(budget.held(), 0);
    let mut fourth = MemoryConn::with(limits.clone(), &echo);
    assert_eq!(fourth.feed(&request), request.len());
    assert_eq!(parse_responses(&fourth.out)[0].2, body);
    // A connection dropped mid-body gives its share back.
    let mut fifth = MemoryConn::with(limits, &echo);
    fifth.feed(part);
    assert!(budget.held() > 0);
    drop(fifth);
    assert_eq!(budget.held(), 0);
}

/// A body that could not fit in the buffer budget even alone is too large (413), before it is
/// sent, or as soon as a chunked one outgrows it (one that fits is taken, though the buffer grows
/// in doubling steps); a client waiting for `100 Continue` with a body
/// that would not fit in what is left now is told 503 before it sends it; one that fits is asked
/// for it.
#[test]
fn a_body_that_would_not_fit_is_refused_before_it_is_sent() {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        buffers: super::super::BufferBudget::new(100_000),
        ..Limits::default()
    };
    let head = |length: usize, expect: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: {length}\r\n\r\n")
    };
    let expect = "Expect: 100-continue\r\n";
    for asks in ["", expect] {
        let mut too_large = MemoryConn::with(limits.clone(), &echo);
        too_large.feed(head(200_000, asks).as_bytes());
        assert_eq!(statuses(&too_large.out), [413], "{}", too_large.text());
    }
    let mut chunked = MemoryConn::with(limits.clone(), &echo);
    chunked.feed(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..20 {
        chunked.feed(format!("2710\r\n{}\r\n", "c".repeat(10_000)).as_bytes());
    }
    assert_eq!(statuses(&chunked.out), [413]);
    // One that fits is not refused for the buffer's growing in steps past the budget.
    let mut fits = MemoryConn::with(limits.clone(), &echo);
    fits.feed(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..9 {
        fits.feed(format!("2710\r\n{}\r\n", "c".repeat(10_000)).as_bytes());
    }
    fits.feed(b"0\r\n\r\n");
    assert_eq!(
        parse_responses(&fits.out)[0].2,
        "c".repeat(90_000).into_bytes()
    );
    drop((chunked, fits));
    // Another connection holds 56 KiB beyond its first 8.
    let mut holder = MemoryConn::with(limits.clone(), &echo);
    holder.feed(&head(90_000, "").into_bytes());
    holder.feed(&[b'a'; 40_000]);
    assert_eq!(limits.buffers.held(), 64 * 1024 - BUF_SIZE);
    let mut refused = MemoryConn::with(limits.clone(), &echo);
    refused.feed(head(60_000, expect).as_bytes());
    assert_eq!(statuses(&refused.out), [503], "{}", refused.text());
    assert!(refused.text().contains("Connection: close\r\n"));
    let mut asked = MemoryConn::with(limits, &echo);
    asked.feed(head(30_000, expect).as_bytes());
    assert_eq!(asked.text(), "HTTP/1.1 100 Continue\r\n\r\n");
    asked.feed(&[b'a'; 30_000]);
    assert_eq!(statuses(&asked.out[25..]), [200]);
}

/// What the access log says of the body of `GET target`'s response, served by `handler` to a
/// client that reads `room` bytes of it and then leaves: `-` read as 0.
fn logged_after(handler: &'static memory::Respond, target: &str, room: usize) -> u64 {
    let line = log_line(handler, |harness| {
        harness.room = room;
        harness.feed(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        // The client is gone.
        harness.conn.closed(&mut harness.env.cx());
    });
    match line.rsplit(' ').next().unwrap() {
        "-" => 0,
        size => size.parse().unwrap(),
    }
}

/// The one line the access log has of a connection to `handler` that `drive` drives and ends.
fn log_line(handler: &'static memory::Respond, drive: impl FnOnce(&mut Harness)) -> String {
    let path = std::env::temp_dir().join(format!(
        "conn-log-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&path);
    let target_file = crate::config::AccessLogTarget::File(path.clone());
    let mut harness = Harness::with(Limits::default(), handler);
    harness.env.log = crate::access_log::AccessLog::open(
        &target_file,
        &crate::access_log::LogTrouble::new().unwrap(),
    )
    .unwrap();
    drive(&mut harness);
    // The log is written out as the environment goes.
    drop(harness);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let [line] = &text.lines().collect::<Vec<_>>()[..] else {
        panic!("one line: {text}");
    };
    line.to_string()
}

/// A request cut off is logged as whoever cut it: the client (a head or a body cut short: 400),
/// during a stop's drain too, or the stop's end (503). Until stop 85 the drain decided, and a
/// client's reset read in the turn a loop began its drain was logged 503.
#[test]
fn a_request_cut_off_is_logged_as_whoever_cut_it() {
    let partial = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
    for (drain, by_stop, status) in [
        (false, false, "400"),
        (true, false, "400"),
        (true, true, "503"),
    ] {
        let line = log_line(&echo, |harness| {
            harness.feed(partial);
            if drain {
                harness.conn.drain(Drain::Now);
            }
            let cx = &mut harness.env.cx();
            match by_stop {
                true => harness.conn.cut_off(cx),
                false => harness.conn.closed(cx),
            }
        });
        let end = format!("\"POST /echo HTTP/1.1\" {status} -");
        assert!(
            line.ends_with(&end),
            "drain {drain}, by the stop {by_stop}: {line}"
        );
    }
}

/// The access log gives a body sent after its head the bytes of it that reached the client,
/// wherever the client stopped: a file, ranges of one (each part's lines and the closing one
/// included), a stream (its chunk framing included), a shared body. Nothing before the head
/// has gone whole; all of it once the body has.
#[test]
fn a_body_cut_short_is_logged_with_the_bytes_that_went() {
    let cases: [(&str, &'static memory::Respond, &str); 4] = [
        ("file", &serve_file, "/a"),
        ("parts", &serve_parts, "/a"),
        ("stream", &serve_stream, "/a"),
        ("shared", &describe, "/shared"),
    ];
    for (name, handler, target) in cases {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let whole = memory::run_split(handler, request.as_bytes(), &[request.len()]).0;
        let head = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = whole.len() - head;
        // Every length for the small bodies; around the pieces of the shared one.
        let rooms: Vec<usize> = if body < 1000 {
            (0..=body).collect()
        } else {
            let piece = STREAM_PIECE;
            vec![0, 1, piece - 1, piece, piece + 1, 3 * piece, body - 1, body]
        };
        assert_eq!(
            logged_after(handler, target, head - 1),
            0,
            "{name}: head cut"
        );
        for read in rooms {
            assert_eq!(
                logged_after(handler, target, head + read),
                read as u64,
                "{name}: the client read {read} of {body} bytes"
            );
        }
    }
}
