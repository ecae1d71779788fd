//! HTTPolice, an HTTP linter written by others (PyPI `HTTPolice`; `.ci/run` installs it, and
//! without it this test fails, saying so), over what the server answers to some sixty
//! requests, in every mode: files whole, in ranges (one and several), compressed as they are
//! sent and precompressed; 304, 412 and 416; HEAD, OPTIONS, 405 and 501; listings, redirects,
//! 404; the demo routes (echo by length, chunked and after `100-continue`, the handler pool's
//! `/sleep` and `/compute`); metrics; refusals of bad requests; and a pipelined keep-alive
//! stream of mixed requests. REDbot (tests/redbot.rs) probes a URL as a client would; HTTPolice
//! reads recorded exchanges, so it judges each response against the very request it answered,
//! and the framing of a whole stream of them.
//!
//! The exchanges are recorded over raw sockets and handed to it as "combined" files (the
//! request stream, then the response stream). It must find no error and no comment on any
//! response or on the streams; what it says of requests is ignored (some are wrong on purpose).
//! Two of its notices are silenced, each a choice made with eyes open:
//! - 1035, `text/javascript` deprecated: HTTPolice predates RFC 9239, which made it the type.
//! - 1146, representation fields (Content-Type, Last-Modified) in a 206 that answers `If-Range`:
//!   RFC 9110 15.3.7 says SHOULD NOT, since the client has them already; nginx sends them
//!   (1.22, checked by hand), and so do we, so that a 206 always says what its bytes are.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;

use common::{
    IO_TIMEOUT, TestServer, bounded, config, in_every_mode_at_once, linted_site, tempdir,
};
use reactor_httpd::config::Mode;

const SILENCED: [&str; 2] = ["1035", "1146"];

#[test]
fn httpolice_finds_nothing_wrong_in_any_mode() {
    bounded(180, || {
        let root = tempdir("httpolice");
        linted_site(&root);
        fs::create_dir(root.join("docs")).unwrap();
        fs::write(
            root.join("docs/index.html"),
            b"<!DOCTYPE html>\n<title>docs</title>\n<p>docs</p>\n",
        )
        .unwrap();
        in_every_mode_at_once(|mode| check(mode, &root));
    });
}

/// A request with the fields every one carries here (`Host`, and a `User-Agent`, whose absence
/// HTTPolice would note), then `fields` and `body`.
fn request(line: &str, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("{line}\r\nHost: localhost\r\nUser-Agent: httpolice-test\r\n{fields}\r\n")
            .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `bytes` on a connection of its own, says it is done sending, and reads to the end.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|err| panic!("reading the answer to {:?}: {err}", head_of(bytes)));
    answer
}

fn head_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}

/// The value of the field `name` in the head of `response`.
fn field(response: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(response);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    (text.split("\r\n"))
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn check(mode: Mode, root: &Path) {
    let mut config = config(mode);
    config.root = root.to_path_buf();
    config.compress = true;
    config.metrics_path = Some("/metrics".into());
    let server = TestServer::start(config);
    let addr = server.addr;

    let first = exchange(addr, &request("GET /notes.txt HTTP/1.1", "", b""));
    let (etag, modified) = (field(&first, "ETag"), field(&first, "Last-Modified"));
    let get = |target: &str, fields: &str| request(&format!("GET {target} HTTP/1.1"), fields, b"");
    let mut requests = vec![
        get("/hello", ""),
        request("HEAD /hello HTTP/1.1", "", b""),
        request("GET /hello HTTP/1.0", "", b""),
        request("GET /hello HTTP/1.0", "Connection: keep-alive\r\n", b""),
        get("/hello?x=1", "Connection: close\r\n"),
        get("/notes.txt", ""),
        get("/notes.txt", "Accept-Encoding: gzip\r\n"),
        get("/notes.txt", "Accept-Encoding: br;q=1, gzip;q=0.5\r\n"),
        get("/notes.txt", "Accept-Encoding: zstd\r\n"),
        request("GET /notes.txt HTTP/1.0", "Accept-Encoding: gzip\r\n", b""),
        request("HEAD /notes.txt HTTP/1.1", "Accept-Encoding: gzip\r\n", b""),
        get("/app.js", ""),
        get("/app.js", "Accept-Encoding: gzip, deflate, br, zstd\r\n"),
        request("HEAD /app.js HTTP/1.1", "Accept-Encoding: gzip\r\n", b""),
        get("/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-99\r\n"),
        get("/data.bin", ""),
        get("/data.bin", "Range: bytes=0-9\r\n"),
        get("/data.bin", "Range: bytes=-100\r\n"),
        get("/data.bin", "Range: bytes=0-9,100-199,1000-\r\n"),
        get("/data.bin", "Range: bytes=99999999-\r\n"),
        get("/data.bin", "Range: lines=1-2\r\n"),
        get("/notes.txt", &format!("If-None-Match: {etag}\r\n")),
        get(
            "/notes.txt",
            &format!("If-None-Match: \"other\", {etag}\r\n"),
        ),
        get("/notes.txt", &format!("If-Modified-Since: {modified}\r\n")),
        get("/notes.txt", "If-Match: \"other\"\r\n"),
        get(
            "/notes.txt",
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        ),
        get(
            "/notes.txt",
            &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
        ),
        get("/notes.txt", "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n"),
        request("OPTIONS /notes.txt HTTP/1.1", "", b""),
        request("OPTIONS * HTTP/1.1", "", b""),
        request(
            "POST /notes.txt HTTP/1.1",
            "Content-Type: text/plain\r\nContent-Length: 3\r\n",
            b"abc",
        ),
        request("DELETE /notes.txt HTTP/1.1", "", b""),
        get("/missing.txt", ""),
        get("/dir", ""),
        get("/dir?sort=name", ""),
        get("/dir/", ""),
        get("/dir/", "Accept: application/json\r\n"),
        get("/dir/?format=json", ""),
        get("/docs/", ""),
        get("/%2e%2e/etc/passwd", ""),
        request(
            "POST /echo HTTP/1.1",
            "Content-Type: application/json\r\nContent-Length: 7\r\n",
            b"{\"a\":1}",
        ),
        request(
            "POST /echo HTTP/1.1",
            "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
        ),
        request(
            "POST /echo HTTP/1.1",
            "Content-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 5\r\n",
            b"hello",
        ),
        request("POST /echo HTTP/1.1", "Content-Length: 0\r\n", b""),
        get("/echo", ""),
        get("/sleep?ms=1", ""),
        get("/sleep?ms=x", ""),
        get("/compute?kib=1", ""),
        get("/metrics", ""),
        // Refused.
        b"GET /hello HTTP/1.1\r\nUser-Agent: httpolice-test\r\n\r\n".to_vec(),
        request("FOO /hello HTTP/1.1", "", b""),
        request("TRACE / HTTP/1.1", "", b""),
        request(
            "POST /echo HTTP/1.1",
            "Expect: something-else\r\nContent-Length: 1\r\n",
            b"x",
        ),
        request(
            "POST /echo HTTP/1.1",
            "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        get("/hello", "Host: twice\r\n"),
    ];
    // A keep-alive stream of mixed requests, sent in one write: the framing of each response
    // must let the next be found.
    requests.push(
        [
            get("/hello", ""),
            request("HEAD /notes.txt HTTP/1.1", "", b""),
            get("/notes.txt", &format!("If-None-Match: {etag}\r\n")),
            get("/data.bin", "Range: bytes=0-9,20-29\r\n"),
            get("/notes.txt", "Accept-Encoding: gzip\r\n"),
            request(
                "POST /echo HTTP/1.1",
                "Content-Type: text/plain\r\nContent-Length: 3\r\n",
                b"abc",
            ),
            get("/missing.txt", ""),
            get("/dir/", ""),
            get(
                "/app.js",
                "Accept-Encoding: br, gzip\r\nConnection: close\r\n",
            ),
        ]
        .concat(),
    );

    let dir = tempdir(&format!("httpolice-{}", mode.name()));
    let files: Vec<_> = (requests.iter().enumerate())
        .map(|(n, bytes)| {
            let answer = exchange(addr, bytes);
            let path = dir.join(format!("{n:02}"));
            let mut combined = b"======== BEGIN INBOUND STREAM ========\r\n".to_vec();
            combined.extend_from_slice(bytes);
            combined.extend_from_slice(b"======== BEGIN OUTBOUND STREAM ========\r\n");
            combined.extend_from_slice(&answer);
            fs::write(&path, combined).unwrap();
            path
        })
        .collect();
    drop(server);

    let report = httpolice(&files);
    let complaints = complaints(&report);
    assert!(
        complaints.is_empty(),
        "{mode:?}: HTTPolice complains of responses: {complaints:#?}\nwhole report:\n{report}"
    );
}

/// The check can fail: a response with a malformed `Date` and a body to a HEAD, recorded the
/// same way, is complained of, and a bad request alone is not.
#[test]
fn a_bad_response_is_complained_of() {
    bounded(60, || {
        let dir = tempdir("httpolice-canary");
        let combined = |name: &str, inbound: &[u8], outbound: &[u8]| {
            let path = dir.join(name);
            let mut bytes = b"======== BEGIN INBOUND STREAM ========\r\n".to_vec();
            bytes.extend_from_slice(inbound);
            bytes.extend_from_slice(b"======== BEGIN OUTBOUND STREAM ========\r\n");
            bytes.extend_from_slice(outbound);
            fs::write(&path, bytes).unwrap();
            path
        };
        let bad = combined(
            "bad",
            &request("GET /a HTTP/1.1", "", b""),
            b"HTTP/1.1 200 OK\r\nDate: yesterday\r\nContent-Length: 2\r\n\r\nhi",
        );
        let report = httpolice(&[bad]);
        let found = complaints(&report);
        assert!(
            found.iter().any(|line| line.contains("Date")),
            "{found:?}\n{report}"
        );
        let refused = combined(
            "refused",
            b"GET /a HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nDate: Sun, 06 Dec 2026 00:00:00 GMT\r\n\
              Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n",
        );
        let report = httpolice(&[refused]);
        assert!(report.contains("Missing Host"), "{report}");
        assert_eq!(complaints(&report), Vec::<String>::new(), "{report}");
    });
}

/// HTTPolice's text report on the exchanges in `files` ("combined" files), with [`SILENCED`]
/// silenced.
fn httpolice(files: &[std::path::PathBuf]) -> String {
    let mut command = Command::new("httpolice");
    command.args(["-i", "combined", "-o", "text"]);
    for id in SILENCED {
        command.args(["-s", id]);
    }
    let output = command.args(files).output().unwrap_or_else(|err| {
        panic!(
            "httpolice is needed (pip install HTTPolice 'bitstring<4'; .ci/run installs it): \
             {err}"
        )
    });
    assert!(
        output.status.success(),
        "httpolice failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The errors and comments of HTTPolice's text report that are about a response, or about a
/// stream as a whole (its framing), each with the heading it came under.
fn complaints(report: &str) -> Vec<String> {
    let mut heading = "";
    let mut found = Vec::new();
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("------------") {
            heading = rest.trim();
            continue;
        }
        let about_requests = heading.starts_with("request:");
        let serious = line.starts_with("E ") || line.starts_with("C ");
        if serious && !about_requests {
            found.push(format!("{heading}: {line}"));
        }
    }
    found
}
