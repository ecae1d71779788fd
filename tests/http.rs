//! HTTP behaviour over real sockets, the same for every mode: each test below runs once per
//! driver (see `modes!` at the end).

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, TestServer, bounded, config};
use reactor_httpd::config::Mode;

fn hello_request() -> &'static [u8] {
    b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"
}

/// Whether the mode serves several connections at once. The blocking mode serves one until it
/// closes; a second client waits in the kernel's backlog meanwhile, so tests that keep one
/// connection open while using another cannot run against it.
fn concurrent(mode: Mode) -> bool {
    mode != Mode::Blocking
}

fn keep_alive(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    for _ in 0..5 {
        let response = client.request(hello_request());
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "Hello, World!");
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.header("server"), Some("reactor-httpd"));
        assert!(response.header("date").is_some());
        assert_eq!(response.header("connection"), None);
    }
    // An escaped path names what it decodes to (RFC 3986 6.2.2.2), as nginx reads it; in the
    // reactor, `/sl%65ep` goes to the handler pool as `/sleep` does.
    let response = client.request(b"GET /hel%6Co HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.text(), "Hello, World!");
    let response = client.request(b"GET /sl%65ep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.text(), "slept 0 ms");
    // HTTP/1.0 asks for keep-alive explicitly and gets it confirmed.
    let response = client.request(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(response.header("connection"), Some("keep-alive"));
    let response = client.request(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(response.header("connection"), Some("close"));
    client.expect_close();
}

fn connection_close_is_honoured(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    let response = client.request(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(response.header("connection"), Some("close"));
    client.expect_close();
}

fn pipelined_hundred_in_one_write(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    let mut batch = Vec::new();
    for i in 0..100 {
        if i % 10 == 9 {
            let body = format!("body-{i}");
            batch.extend_from_slice(
                format!(
                    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        } else {
            batch.extend_from_slice(hello_request());
        }
    }
    client.send(&batch);
    for i in 0..100 {
        let response = client.response();
        assert_eq!(response.status, 200);
        let expected = if i % 10 == 9 {
            format!("body-{i}")
        } else {
            "Hello, World!".into()
        };
        assert_eq!(response.text(), expected, "response {i} out of order");
    }
}

fn dribbled_one_byte_at_a_time(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    client.stream.set_nodelay(true).unwrap();
    let request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: a/b\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
    for &byte in request {
        client.send(&[byte]);
    }
    let response = client.response();
    assert_eq!(response.text(), "abcde");
    assert_eq!(response.header("content-type"), Some("a/b"));
}

/// A 6 MiB echo read back 4 KiB at a time: the server's writes hit a full socket, wait for
/// WRITABLE, and resume where they stopped.
fn large_echo_read_slowly(mode: Mode) {
    let (_server, mut client) = echo_read_slowly(mode, "");
    // The connection is still good.
    assert_eq!(client.request(hello_request()).status, 200);
}

/// The same as the connection's last response (`Connection: close`): every byte arrives before
/// the close, though the server stops receiving as soon as it has queued them (the uring driver
/// cancels its receive together with the first send of them).
fn last_large_echo_read_slowly(mode: Mode) {
    let (_server, mut client) = echo_read_slowly(mode, "Connection: close\r\n");
    client.expect_close();
}

/// POSTs 6 MiB to /echo with the extra `fields`, reads the answer 4 KiB at a time while still
/// sending, and checks it is the body, whole. The body is larger than the server's socket
/// buffer can grow to, and the client's receive window is small: the server's sends stop short.
/// Returns the server and the connection.
fn echo_read_slowly(mode: Mode, fields: &str) -> (TestServer, Client) {
    let server = TestServer::start(config(mode));
    let (mut client, body, writer) = large_echo(&server, fields, b"");
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    let expected_len = body.len() + 1000;
    while received.len() < expected_len {
        let n = client.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&chunk[..n]);
        if let Some(end) = common::find(&received, b"\r\n\r\n")
            && received.len() >= end + 4 + body.len()
        {
            assert_eq!(&received[end + 4..], &body[..]);
            break;
        }
    }
    writer.join().unwrap();
    (server, client)
}

/// Starts sending a POST of 6 MiB to /echo, with the extra `fields`, and `then` right behind
/// it, from a client with a 16 KiB receive window. Returns the client, the body, and the thread
/// that is sending.
fn large_echo(
    server: &TestServer,
    fields: &str,
    then: &'static [u8],
) -> (Client, Vec<u8>, thread::JoinHandle<()>) {
    let client = Client::connect_with_small_window(server.addr, 16 * 1024);
    let body: Vec<u8> = (0..6 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\n{fields}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = {
        let mut stream = client.stream.try_clone().unwrap();
        let body = body.clone();
        thread::spawn(move || {
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            stream.write_all(then).unwrap();
        })
    };
    (client, body, writer)
}

fn expect_100_continue(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = client.response();
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    let response = client.response();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    drop(client); // the blocking mode serves the next connection once this one is gone

    // Refused before the body: the final status instead of 100.
    let mut client = server.connect();
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    drop(client);

    // A resource that reads no body: its answer at once, not a 100, and the connection closes
    // (lingering over a body sent anyway).
    let mut client = server.connect();
    client.send(
        b"POST /hello HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("connection"), Some("close"));
    client.send(&[b'x'; 65536]);
    client.expect_close();
    drop(client);
    // The same from the handler pool (reactor and uring; the others answer on their thread).
    let mut client = server.connect();
    client.send(
        b"GET /sleep?ms=1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "slept 1 ms")
    );
    assert_eq!(response.header("connection"), Some("close"));
    client.send(b"hello");
    client.expect_close();
}

fn chunked_bodies(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut expected = Vec::new();
    for size in [1usize, 10, 100, 1000, 10_000, 100_000] {
        request.extend_from_slice(format!("{size:x};n={size}\r\n").as_bytes());
        let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        request.extend_from_slice(&data);
        request.extend_from_slice(b"\r\n");
        expected.extend_from_slice(&data);
    }
    request.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let response = client.request(&request);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, expected);
    assert_eq!(client.request(hello_request()).status, 200);
}

/// Each bad request gets its status, with `Connection: close`, and the connection is closed;
/// a second connection is unaffected.
fn error_statuses(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.max_body_bytes = 1000;
    cfg.limits.max_header_bytes = 4096;
    let server = TestServer::start(cfg);
    let mut bystander = concurrent(mode).then(|| server.connect());
    if let Some(bystander) = &mut bystander {
        assert_eq!(bystander.request(hello_request()).status, 200);
    }
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\n".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n".to_vec(), 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        (long_target.into_bytes(), 414),
        (big_head.into_bytes(), 431),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".to_vec(), 413),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n".to_vec(), 413),
        // No end of head: refused as the bytes arrive (a 408 would mean they were held).
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), 400),
        (b"GET /\r\n".to_vec(), 400),
        (format!("{} / HTTP/1.1\r\n", "M".repeat(40)).into_bytes(), 501),
        // A method longer than any is 501 at its 33rd byte, not 414 when its line has run on
        // past 8 KiB (RFC 9112 3), whether or not the line ever ends.
        (b"M".repeat(33), 501),
        (
            format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "A".repeat(100_000)).into_bytes(),
            501,
        ),
        // A line of the head that breaks the rules, refused once it is whole; a CR once a
        // byte other than LF follows it, in the request line or a field line.
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad\x01Name: x\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\r\n".to_vec(), 400),
        (b"GET /hello HTTP/1.1\rHost: t\r\r".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n\rGET".to_vec(), 400),
        (
            [&b"GET / HTTP/1.1\r\nHost: t\r\n"[..], &b"X: y\r\n".repeat(100)].concat(),
            431,
        ),
    ];
    for (request, status) in cases {
        let mut client = server.connect();
        client.send(&request);
        let response = client.try_response().unwrap_or_else(|err| {
            panic!(
                "{err} for {:?}",
                String::from_utf8_lossy(&request[..60.min(request.len())])
            )
        });
        assert_eq!(
            response.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&request[..40.min(request.len())])
        );
        assert_eq!(response.header("connection"), Some("close"));
        assert!(response.text().starts_with(&status.to_string()));
        client.half_close();
        client.expect_close();
    }
    // Not framing errors: answered, and the connection stays open.
    let mut client = server.connect();
    let response = client.request(b"DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    let response =
        client.request(b"BREW /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(response.status, 501);
    assert_eq!(client.get("/missing").status, 404);
    assert_eq!(client.request(hello_request()).status, 200);
    if let Some(bystander) = &mut bystander {
        assert_eq!(bystander.request(hello_request()).status, 200);
    }
}

fn head_requests(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    client.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.header("content-length"), Some("13"));
    assert!(response.body.is_empty());
    assert_eq!(client.request(hello_request()).text(), "Hello, World!");
    // A HEAD the server refuses, closing the connection, gets the head alone too (RFC 9110
    // 9.3.2): with the length a GET's refusal would have, and nothing after it but the close.
    // The same request as GET gets the refusal's text.
    let refused = [
        ("/hello", "Expect: something\r\n", 417),
        ("/hello", "Content-Length: 99999999999\r\n", 413),
        ("/hello", "Host: a\r\n", 400),
        ("/echo", "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ];
    for (path, fields, status) in refused {
        for method in ["HEAD", "GET"] {
            let mut client = server.connect();
            let request = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
            client.send(request.as_bytes());
            let response = client.head_response();
            assert_eq!(response.status, status, "{method} {fields:?}");
            assert_eq!(response.header("connection"), Some("close"));
            let length: usize = response.header("content-length").unwrap().parse().unwrap();
            let rest = client.read_to_end();
            match method {
                "HEAD" => assert!(rest.is_empty(), "{fields:?}: {rest:?}"),
                _ => assert_eq!(rest.len(), length, "{fields:?}: {rest:?}"),
            }
        }
    }
}

/// Preconditions on responses that have no entity tag (`/hello`, `/echo`, OPTIONS): nothing can
/// match one, so `If-Match` fails with 412 unless it is `*`, and `If-None-Match: *` fails, with
/// 304 for GET and HEAD and 412 for other methods (RFC 9110 13.1.1, 13.1.2); a list of tags in
/// `If-None-Match` holds. Responses other than 2xx ignore them (13.2.1). The connection goes on.
fn preconditions_without_an_entity_tag(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    let with = |client: &mut Client, method: &str, path: &str, field: &str| {
        let body = if method == "POST" { "abc" } else { "" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{field}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.send(request.as_bytes());
        if method == "HEAD" {
            client.head_response()
        } else {
            client.response()
        }
    };
    let cases = [
        ("GET", "/hello", "If-Match: \"x\"", 412),
        ("GET", "/hello", "If-Match: *", 200),
        ("GET", "/hello", "If-None-Match: *", 304),
        ("HEAD", "/hello", "If-None-Match: *", 304),
        // `*` is the whole value or malformed, and a malformed value matches nothing.
        ("GET", "/hello", "If-Match: \"x\", *", 412),
        ("GET", "/hello", "If-Match: *\r\nIf-Match: *", 412),
        ("HEAD", "/hello", "If-None-Match: \"x\", *", 200),
        ("GET", "/hello", "If-None-Match: *, x", 200),
        ("GET", "/hello", "If-None-Match: \"x\"", 200),
        ("GET", "/hello", "If-Match: *\r\nIf-None-Match: *", 304),
        ("GET", "/hello", "If-Match: \"x\"\r\nIf-None-Match: *", 412),
        ("POST", "/echo", "If-None-Match: *", 412),
        ("POST", "/echo", "If-Match: \"x\"", 412),
        ("POST", "/echo", "If-Match: *", 200),
        ("OPTIONS", "/hello", "If-Match: \"x\"", 412),
        ("GET", "/missing", "If-Match: \"x\"", 404),
        ("DELETE", "/hello", "If-None-Match: *", 405),
    ];
    for (method, path, field, status) in cases {
        let response = with(&mut client, method, path, field);
        assert_eq!(response.status, status, "{method} {path} {field:?}");
        if status == 304 {
            assert!(response.body.is_empty());
            assert_eq!(response.header("content-length"), None);
        }
    }
    assert_eq!(client.request(hello_request()).text(), "Hello, World!");
}

fn slowloris_gets_408(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.header_timeout = Duration::from_secs(1);
    let server = TestServer::start(cfg);
    let mut client = server.connect();
    let start = Instant::now();
    // A slow client: a byte every 100 ms would take 3 s for this head.
    let mut answer = None;
    for &byte in b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaa\r\n\r\n" {
        if client.stream.write_all(&[byte]).is_err() {
            break;
        }
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut peek = [0; 1];
        if client.stream.peek(&mut peek).is_ok_and(|n| n > 0) {
            client
                .stream
                .set_read_timeout(Some(common::IO_TIMEOUT))
                .unwrap();
            answer = Some(client.response());
            break;
        }
    }
    let response = answer.expect("the server answered before the head was complete");
    assert_eq!(response.status, 408);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
}

/// A head whose line already tells it can never be a request is answered as soon as that line
/// is whole, not at the end of a head that may never come (the header timeout is a minute
/// here): a binary handshake, a method no token, a bad field line, another major version, no
/// version, a target of none of the four forms. The connection closes after the answer.
fn a_head_is_refused_at_the_line_that_tells(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.header_timeout = Duration::from_secs(60);
    let server = TestServer::start(cfg);
    let cases: [(&[u8], u16); 7] = [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (b"G@T / HTTP/1.1\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\nX-More: ", 400),
        (b"GET /hello HTTP/2.0\r\nHost: t\r\n", 505),
        (b"GET /hello HtTP/1.1\r\nHost: t\r\n", 400),
        (b"GET http//t/hello HTTP/1.1\r\nHost: t\r\n", 400),
        (b"CONNECT /hello HTTP/1.1\r\nHost: t\r\n", 400),
    ];
    for (head, status) in cases {
        let mut client = server.connect();
        let start = Instant::now();
        client.send(head);
        let response = client.response();
        let text = String::from_utf8_lossy(head);
        assert_eq!(response.status, status, "{text:?}");
        assert_eq!(response.header("connection"), Some("close"), "{text:?}");
        client.expect_close();
        assert!(start.elapsed() < Duration::from_secs(5), "{text:?}");
    }
}

fn idle_keep_alive_is_closed(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.keep_alive_timeout = Duration::from_secs(1);
    let server = TestServer::start(cfg);
    let mut client = server.connect();
    assert_eq!(client.request(hello_request()).status, 200);
    let waited = client.expect_close();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

/// `--keep-alive-timeout 0`, as nginx's `keepalive_timeout 0`: every response says
/// `Connection: close` and the connection ends with it, whatever the client asked for;
/// requests pipelined behind the first are not answered. The same for an answer that comes
/// from the handler pool (`/sleep` in reactor and uring mode).
fn keep_alive_off(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.keep_alive_timeout = Duration::ZERO;
    let server = TestServer::start(cfg);
    for first in ["/hello", "/sleep?ms=0"] {
        let mut client = server.connect();
        let request = format!("GET {first} HTTP/1.1\r\nHost: t\r\n\r\n");
        client.send(&[request.as_bytes(), hello_request()].concat());
        let response = client.response();
        assert_eq!(response.status, 200, "{first}");
        assert_eq!(response.header("connection"), Some("close"), "{first}");
        assert!(client.expect_close() < Duration::from_secs(2), "{first}");
    }
    let mut client = server.connect();
    let response = client.request(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(response.text(), "Hello, World!");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.expect_close() < Duration::from_secs(2));
}

fn many_concurrent_connections(mode: Mode) {
    let server = TestServer::start(config(mode));
    let addr = server.addr;
    let clients: Vec<_> = (0..500)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for r in 0..20 {
                    let body = format!("{c}-{r}");
                    let response = client.request(
                        format!(
                            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    assert_eq!(response.text(), body);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// Connects and makes one request, retrying while the server answers 503: it may not yet have
/// noticed that an earlier client left. Returns a client the server has counted.
fn admitted(server: &TestServer) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = server.connect();
        let response = client.request(hello_request());
        if response.status == 200 {
            return client;
        }
        assert_eq!(response.status, 503);
        assert!(
            Instant::now() < deadline,
            "a departed client's slot was never freed"
        );
    }
}

/// A client that vanishes mid-response, or mid-request, frees its slot and disturbs no one.
fn vanishing_clients(mode: Mode) {
    let mut cfg = config(mode);
    cfg.max_connections = 2;
    let server = TestServer::start(cfg);
    let mut bystander = admitted(&server);
    for _ in 0..5 {
        // Mid-response: ask for 4 MiB back, read a little, drop the socket.
        let mut client = admitted(&server);
        let body = vec![b'x'; 4 << 20];
        client.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        client.send(&body);
        let mut some = [0; 1000];
        client.stream.read_exact(&mut some).unwrap();
        drop(client);
        // Mid-request.
        let mut client = admitted(&server);
        client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part");
        drop(client);
    }
    // The last slot is free again.
    drop(admitted(&server));
    assert_eq!(bystander.request(hello_request()).status, 200);
}

fn over_max_connections_gets_503(mode: Mode) {
    let mut cfg = config(mode);
    cfg.max_connections = 3;
    let server = TestServer::start(cfg);
    let mut held: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    for client in &mut held {
        assert_eq!(client.request(hello_request()).status, 200);
    }
    let mut extra = server.connect();
    let response = extra.request(hello_request());
    assert_eq!(response.status, 503);
    assert_eq!(response.header("connection"), Some("close"));
    if mode.has_loops() {
        // It lingers after the answer, reading, until the client's side closes.
        extra.half_close();
    }
    // The other modes refuse without lingering (`blocking::refuse`): the close may come as a
    // reset if the request arrived after the server's last read, which `expect_close` allows.
    extra.expect_close();
    // The held connections are unaffected.
    for client in &mut held {
        assert_eq!(client.request(hello_request()).status, 200);
    }
}

/// A server about to be stopped, with one loop (with several, each drains when its own wake-up
/// arrives, and which client sees it first would be a race), and an idle kept-alive connection
/// to it, closed as soon as the drain begins. None in blocking mode: a second connection would
/// be waiting in the backlog there, not being served.
fn to_be_stopped(mode: Mode) -> (TestServer, Option<Client>) {
    let mut cfg = config(mode);
    cfg.cores = reactor_httpd::config::Cores::Count(1);
    let server = TestServer::start(cfg);
    let mut idle = concurrent(mode).then(|| server.connect());
    if let Some(idle) = &mut idle {
        assert_eq!(idle.request(hello_request()).status, 200);
    }
    (server, idle)
}

/// Shutdown: idle connections close, the request in flight is answered (with close), and
/// `run` returns well within 5 s.
fn graceful_shutdown(mode: Mode) {
    let (mut server, mut idle) = to_be_stopped(mode);
    let mut busy = server.connect();
    // The interim 100 Continue proves the server is inside this request.
    busy.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
    );
    assert_eq!(busy.response().status, 100);
    let start = Instant::now();
    server.trigger_shutdown();
    // Idle connections are closed as soon as the drain begins...
    if let Some(idle) = &mut idle {
        idle.expect_close();
    }
    // ...while the request in flight may still finish.
    busy.send(b"half done");
    let response = busy.response();
    assert_eq!(response.text(), "half done");
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    busy.expect_close();
    server.stop();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still accepting"
    );
}

/// A request of which the first bytes have arrived when the server is asked to stop is the
/// request in flight: it is answered, however the drain and those bytes cross, then the
/// connection closes. (Before stop 55 the blocking, threaded and fork modes could pass the
/// drain on between reading such bytes and looking at them, and close without an answer.)
fn a_request_begun_at_shutdown_is_answered(mode: Mode) {
    // The idle connection's close means this one has seen the drain too.
    let (mut server, mut witness) = to_be_stopped(mode);
    let mut client = server.connect();
    client.stream.set_nodelay(true).unwrap();
    assert_eq!(client.request(hello_request()).status, 200);
    let request = b"GET /hello?begun HTTP/1.1\r\nHost: t\r\n\r\n";
    client.send(&request[..10]);
    server.trigger_shutdown();
    if let Some(witness) = &mut witness {
        witness.expect_close();
    }
    client.send(&request[10..]);
    let response = client.response();
    assert_eq!(response.text(), "Hello, World!");
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    client.expect_close();
    // Closed, so that the server need not linger for it.
    drop(client);
    server.stop();
}

/// The same on two loops at once, with many connections: each loop drains on its own, and a
/// request whose first bytes had arrived is answered on whichever loop serves it, as the last.
/// (With two rings, `--mode uring` closed some such connections unanswered: the kernel had not
/// yet delivered their bytes when the ring looked. In some rounds only, so there are five.)
fn requests_begun_at_shutdown_on_every_loop_are_answered(mode: Mode) {
    let request = b"GET /hello?begun HTTP/1.1\r\nHost: t\r\n\r\n";
    for round in 0..5 {
        // Two loops (the tests' default): connections fall to both.
        let mut server = TestServer::start(config(mode));
        let mut idle: Vec<Client> = (0..6).map(|_| server.connect()).collect();
        let mut begun: Vec<Client> = (0..6).map(|_| server.connect()).collect();
        for client in idle.iter_mut().chain(&mut begun) {
            assert_eq!(client.request(hello_request()).status, 200);
        }
        for client in &mut begun {
            client.stream.set_nodelay(true).unwrap();
            client.send(&request[..10]);
        }
        server.trigger_shutdown();
        // An idle connection's close: the stop has begun.
        idle[0].expect_close();
        for client in &mut begun {
            client.send(&request[10..]);
        }
        for (index, client) in begun.iter_mut().enumerate() {
            let response = (client.try_response())
                .unwrap_or_else(|err| panic!("round {round}, connection {index}: {err}"));
            assert_eq!(response.text(), "Hello, World!", "round {round}");
            // The last answer, in every mode. The reactor and the ring pass a stop on to their
            // connections once a turn; a loop still in the turn that began before the stop
            // answered the rest with keep-alive, then closed (the reactor in 1 run of this test
            // in 20), until each answer looked at the stop itself (`http::StopSignal`).
            let close = response.header("connection");
            assert_eq!(close, Some("close"), "round {round}, connection {index}");
            client.expect_close();
        }
        // Closed, so that the server need not linger for them.
        drop((idle, begun));
        server.stop();
    }
}

/// Shutdown while a long response is on its way to a client that has already sent its next
/// request: the response still arrives whole, then the connection ends (with the next request
/// answered, or not). A server that closes a socket over unread input gets it reset by the
/// kernel, and what of the response was still queued to send is lost.
fn a_response_in_flight_at_shutdown_arrives_whole(mode: Mode) {
    let server = TestServer::start(config(mode));
    // The next request goes before a byte of the answer is read.
    let (mut client, body, writer) = large_echo(&server, "", hello_request());
    // The answer's head: the server has the whole body and is sending it back.
    let response = client.head_response();
    assert_eq!(response.status, 200);
    writer.join().unwrap();
    server.trigger_shutdown();
    let mut received = client.take_unread();
    let mut chunk = [0; 4096];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(err) => panic!(
                "{err} after {} of the {} bytes of the answer",
                received.len(),
                body.len()
            ),
        }
    }
    assert!(received.len() >= body.len(), "{} bytes", received.len());
    assert!(received[..body.len()] == body[..], "the answer differs");
    let rest = &received[body.len()..];
    assert!(
        rest.is_empty() || (rest.starts_with(b"HTTP/1.1 200 OK") && rest.ends_with(b"World!")),
        "after the answer: {:?}",
        String::from_utf8_lossy(rest)
    );
}

fn custom_handler_sees_the_request(mode: Mode) {
    use reactor_httpd::app::Handler;
    use reactor_httpd::http::{Request, Response, Status};
    struct Inspect;
    impl Handler for Inspect {
        fn handle(&self, request: &Request<'_>) -> Response {
            Response::text(
                Status::OK,
                format!(
                    "{}|{}|{:?}|{}|{}",
                    request.method,
                    request.path,
                    request.query,
                    request.headers.get_all("x-multi").count(),
                    request.body.len()
                ),
            )
        }
    }
    let server = TestServer::with_handler(config(mode), Arc::new(Inspect));
    let mut client = server.connect();
    let response = client.request(
        b"PUT http://example.com/a/b?c=d HTTP/1.1\r\nHost: t\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: 3\r\n\r\nxyz",
    );
    assert_eq!(response.text(), "PUT|/a/b|Some(\"c=d\")|2|3");
}

/// A handler that panics: that request gets a 500, the connection and the loop go on, and
/// every other connection is served as before.
fn handler_panic_is_a_500(mode: Mode) {
    use reactor_httpd::app::Handler;
    use reactor_httpd::http::{Request, Response, Status};
    struct Fragile;
    impl Handler for Fragile {
        fn handle(&self, request: &Request<'_>) -> Response {
            assert!(
                request.path != "/panic",
                "deliberate panic in a test handler"
            );
            Response::text(Status::OK, "fine")
        }
    }
    let mut cfg = config(mode);
    cfg.cores = reactor_httpd::config::Cores::Count(1);
    let server = TestServer::with_handler(cfg, Arc::new(Fragile));
    let mut other = concurrent(mode).then(|| server.connect());
    if let Some(other) = &mut other {
        assert_eq!(other.get("/").text(), "fine");
    }
    let mut client = server.connect();
    for _ in 0..3 {
        let response = client.get("/panic");
        assert_eq!(response.status, 500);
        assert_eq!(response.text(), "500 Internal Server Error\n");
        assert_eq!(client.get("/").text(), "fine");
    }
    drop(client);
    if let Some(other) = &mut other {
        assert_eq!(other.get("/").text(), "fine");
    }
}

/// Every accepted socket has Nagle's algorithm off: without it, a response written in two
/// pieces (a file's head, then its body) waits for the client's delayed ACK. The server sets
/// TCP_NODELAY on its listeners and each accepted socket inherits it; this finds the server's
/// end of a connection among this process's descriptors (the server runs in it) by its peer
/// address, and asks.
fn accepted_sockets_have_no_nagle(mode: Mode) {
    let server = TestServer::start(config(mode));
    let mut client = server.connect();
    assert_eq!(client.request(hello_request()).status, 200);
    let ours = client.stream.local_addr().unwrap();
    let nodelay = server_end_nodelay(ours).expect("the server's end of the connection");
    assert!(nodelay, "TCP_NODELAY is off on an accepted socket");
}

/// TCP_NODELAY of the socket in this process whose peer is `peer`.
fn server_end_nodelay(peer: std::net::SocketAddr) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only asked about, never closed. One that another test's
        // thread closes meanwhile gives an error, or another peer, and is skipped.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        if socket.peer_addr().ok().and_then(|addr| addr.as_socket()) == Some(peer) {
            return socket.tcp_nodelay().ok();
        }
    }
    None
}

/// One test for one mode, under a time bound.
macro_rules! t {
    ($name:ident, $secs:expr, $mode:expr) => {
        #[test]
        fn $name() {
            if common::runnable($mode) {
                bounded($secs, || super::$name($mode));
            }
        }
    };
}

/// What every mode must do.
macro_rules! every_mode {
    ($mode:expr) => {
        t!(keep_alive, 20, $mode);
        t!(connection_close_is_honoured, 20, $mode);
        t!(pipelined_hundred_in_one_write, 20, $mode);
        t!(dribbled_one_byte_at_a_time, 20, $mode);
        t!(large_echo_read_slowly, 30, $mode);
        t!(last_large_echo_read_slowly, 30, $mode);
        t!(expect_100_continue, 20, $mode);
        t!(chunked_bodies, 20, $mode);
        t!(error_statuses, 30, $mode);
        t!(head_requests, 20, $mode);
        t!(preconditions_without_an_entity_tag, 20, $mode);
        t!(slowloris_gets_408, 20, $mode);
        t!(a_head_is_refused_at_the_line_that_tells, 20, $mode);
        t!(idle_keep_alive_is_closed, 20, $mode);
        t!(keep_alive_off, 20, $mode);
        t!(many_concurrent_connections, 60, $mode);
        // A stop drains every connection; in fork mode the parent passes it on to its
        // children (until stop 33 it did not, and these two ran in the other modes only).
        t!(graceful_shutdown, 20, $mode);
        t!(a_response_in_flight_at_shutdown_arrives_whole, 30, $mode);
        t!(a_request_begun_at_shutdown_is_answered, 20, $mode);
    };
}

/// Tests that run the server in this process: a handler of the test's own, and the accepted
/// socket looked at from inside. Not the fork mode, whose parent runs as the binary.
macro_rules! in_process {
    ($mode:expr) => {
        t!(custom_handler_sees_the_request, 20, $mode);
        t!(handler_panic_is_a_500, 20, $mode);
        t!(accepted_sockets_have_no_nagle, 20, $mode);
    };
}

/// Tests that keep a connection open while using another: not the blocking mode, where the
/// second client waits in the backlog until the first closes.
macro_rules! concurrent {
    ($mode:expr) => {
        t!(vanishing_clients, 30, $mode);
        t!(over_max_connections_gets_503, 20, $mode);
        t!(
            requests_begun_at_shutdown_on_every_loop_are_answered,
            30,
            $mode
        );
    };
}

mod reactor {
    use super::*;
    every_mode!(Mode::Reactor);
    in_process!(Mode::Reactor);
    concurrent!(Mode::Reactor);
}

mod uring {
    use super::*;
    every_mode!(Mode::Uring);
    in_process!(Mode::Uring);
    concurrent!(Mode::Uring);
}

mod threaded {
    use super::*;
    every_mode!(Mode::Threaded);
    in_process!(Mode::Threaded);
    concurrent!(Mode::Threaded);
}

mod blocking {
    use super::*;
    every_mode!(Mode::Blocking);
    in_process!(Mode::Blocking);
}

mod fork {
    use super::*;
    every_mode!(Mode::Fork);
    concurrent!(Mode::Fork);
}

/// The ring names a connection's socket by its slot in the ring's table of registered files
/// when it has one, and by descriptor past the table's end (`REACTOR_HTTPD_URING_FIXED_FILES`
/// caps it at two slots here). Both serve alike: keep-alive, pipelining, a file read and sent,
/// a file spliced; a registered socket the server closes reaches its client's end (the table
/// holds a reference of its own, dropped at the close), and its slot serves the next
/// connection given the same key.
#[test]
fn uring_sockets_registered_or_not_serve_alike() {
    if !common::runnable(Mode::Uring) {
        return;
    }
    bounded(60, || {
        let root = common::tempdir("uring-fixed-files");
        let small: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let large: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 253) as u8).collect();
        std::fs::write(root.join("small.bin"), &small).unwrap();
        std::fs::write(root.join("large.bin"), &large).unwrap();
        let mut config = config(Mode::Uring);
        config.cores = reactor_httpd::config::Cores::Count(1);
        config.root = root.to_path_buf();
        let server = TestServer::subprocess(&config, |command| {
            command.env("REACTOR_HTTPD_URING_FIXED_FILES", "2");
        });
        let serves = |client: &mut Client| {
            assert_eq!(client.get("/hello").text(), "Hello, World!");
            assert!(client.get("/small.bin").body == small);
            assert!(client.get("/large.bin").body == large);
            client.send(&b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3));
            for _ in 0..3 {
                assert_eq!(client.response().text(), "Hello, World!");
            }
        };
        // Accepted one after another: keys 0 and 1 get the two slots, 2 to 5 none.
        let mut clients: Vec<Client> = (0..6)
            .map(|_| {
                let mut client = server.connect();
                serves(&mut client);
                client
            })
            .collect();
        for client in &mut clients {
            serves(client);
        }
        // The server ends the connection in slot 0 and the one past the table: both clients
        // see the end.
        for at in [0, 4] {
            let client = &mut clients[at];
            client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            assert_eq!(client.response().status, 200);
            client.expect_close();
        }
        // Keys 4 and 0 again (the slab hands out the last freed first), for new connections:
        // the one at 0 registered in the slot its predecessor left.
        for _ in 0..2 {
            let mut again = server.connect();
            serves(&mut again);
            again.send(b"GET /hello HTTP/1.0\r\n\r\n");
            assert_eq!(again.response().status, 200);
            again.expect_close();
        }
        // The others serve on.
        serves(&mut clients[1]);
        serves(&mut clients[5]);
    });
}
