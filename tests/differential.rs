//! Differential tests against two independent HTTP/1.1 parsers: h11 (Python, >= 0.16), lax in
//! places, and llhttp (Node.js's parser), strict.
//!
//! Request streams are generated from seeds (valid requests of every framing, and the shapes of
//! the smuggling literature) and mutated (bytes inserted, deleted, duplicated; case flipped;
//! whitespace added; CR and LF swapped; lines repeated), with a seeded generator so a run can
//! be repeated. Each stream goes through reactor-httpd's `http::Conn` in memory (the code every
//! driver runs) and through the other parser (`tests/differential/h11_oracle.py`,
//! `tests/differential/llhttp_oracle.js`), and the two readings are compared: which requests
//! each found, with what method, target, version and body, and how the stream ended (idle,
//! waiting for more, closed, refused).
//!
//! A disagreement is either a defect, or one of the deliberate divergences that
//! docs/conformance.md lists with their reasons ([`STRICTER`] for both parsers, and each
//! parser's [`Oracle::laxer`]). Any other fails the test, printing the streams. Two readings of
//! the same bytes as different requests (the smuggling class) are never deliberate.
//!
//! `cargo test --test differential` runs a seeded slice against each (`DIFFERENTIAL_STREAMS`,
//! default 50,000; `DIFFERENTIAL_SEED` to vary it). It needs python3 with h11 >= 0.16 (`.ci/run`
//! installs it) and node (on the machine), and fails, saying so, without them.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{Rng, bounded, env_or};
use reactor_httpd::config::Limits;
use reactor_httpd::http::memory::{MemoryConn, parse_responses};
use reactor_httpd::http::{
    KNOWN_METHODS, MAX_METHOD, Request, Response, Status, is_tchar, leading_empty_lines,
    split_target, valid_host,
};

/// One request as a parser delivered it: method, target, version (`1.1`), body.
type Seen = (String, String, String, Vec<u8>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// Every byte was part of a complete request.
    Idle,
    /// Waiting for the rest of a request.
    Partial,
    /// The connection closes after the last request (Connection: close, HTTP/1.0).
    Closed,
    /// The stream was refused, with this status.
    Refused(u16),
}

#[derive(Clone, Debug)]
struct Reading {
    /// `None` for a request this server answered 501 (its method unknown) without a handler.
    requests: Vec<Option<Seen>>,
    end: End,
    /// The other parser's words for a refusal (ours: empty).
    reason: String,
    /// The other parser's header fields of each request (names lowercased; ours: empty).
    fields: Vec<Vec<(String, Vec<u8>)>>,
    /// The other parser's byte range of each request in the stream (ours: empty).
    spans: Vec<(usize, usize)>,
}

// ---- reactor-httpd's reading ----

thread_local! {
    static HANDLED: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
}

fn record(request: &Request<'_>) -> Response {
    let version = request
        .version
        .as_str()
        .trim_start_matches("HTTP/")
        .to_string();
    let seen = (
        request.method.to_string(),
        request.target.to_string(),
        version,
        request.body.to_vec(),
    );
    HANDLED.with(|handled| handled.borrow_mut().push(seen));
    Response::new(Status::OK).with_header("X-Method", request.method.to_string())
}

fn ours(stream: &[u8]) -> Reading {
    HANDLED.with(|handled| handled.borrow_mut().clear());
    let limits = Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut conn = MemoryConn::with(limits, &record);
    conn.feed(stream);
    let mut handled = HANDLED.with(|handled| handled.take()).into_iter();
    let mut requests = Vec::new();
    let mut refused = None;
    for (status, _, _) in parse_responses(&conn.out) {
        match status {
            100 => {}
            200 => requests.push(Some(handled.next().expect("a response the handler gave"))),
            // The core's answer to a method it does not recognize: a request all the same.
            501 => requests.push(None),
            status => refused = Some(status),
        }
    }
    let end = match refused {
        Some(status) => End::Refused(status),
        None if conn.closed || conn.half_closed => End::Closed,
        None if conn.conn.is_idle() => End::Idle,
        None => End::Partial,
    };
    Reading {
        requests,
        end,
        reason: String::new(),
        fields: Vec::new(),
        spans: Vec::new(),
    }
}

// ---- the other parser's reading ----

/// An independent parser, run as a child process, and what it is known to read otherwise.
struct Oracle {
    name: &'static str,
    program: &'static str,
    script: &'static str,
    /// What to install when it cannot run.
    needs: &'static str,
    /// Where it reads no further while we read on: whatever we make of what follows, it never
    /// saw it.
    stops: &'static [(&'static str, Explains)],
    /// It refuses (or stops) where we read on.
    laxer: &'static [(&'static str, Explains)],
}

fn read_by(oracle: &Oracle, streams: &[Vec<u8>]) -> Vec<Reading> {
    let script = format!(
        "{}/tests/differential/{}",
        env!("CARGO_MANIFEST_DIR"),
        oracle.script
    );
    let child = Command::new(oracle.program)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|err| {
        panic!(
            "cannot run {} ({err}): the {} oracle needs {}",
            oracle.program, oracle.name, oracle.needs
        )
    });
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = streams
        .iter()
        .flat_map(|s| {
            (s.len() as u32)
                .to_be_bytes()
                .into_iter()
                .chain(s.iter().copied())
        })
        .collect();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut readings = Vec::with_capacity(streams.len());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
        let unhex = |v: &serde_json::Value| {
            let hex = v.as_str().unwrap();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let offset = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let (mut fields, mut spans) = (Vec::new(), Vec::new());
        let requests = value["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let headers = r[4].as_array().unwrap();
                fields.push(
                    headers
                        .iter()
                        .map(|h| (text(&h[0]), unhex(&h[1])))
                        .collect(),
                );
                spans.push((offset(&r[5]), offset(&r[6])));
                // Methods and targets come as Latin-1; only ASCII ones get this far.
                Some((text(&r[0]), text(&r[1]), text(&r[2]), unhex(&r[3])))
            })
            .collect();
        let end = match value["end"].as_str().unwrap() {
            "idle" => End::Idle,
            "partial" => End::Partial,
            "closed" => End::Closed,
            _ => End::Refused(value["status"].as_u64().unwrap_or(0) as u16),
        };
        let reason = text(&value["reason"]);
        readings.push(Reading {
            requests,
            end,
            reason,
            fields,
            spans,
        });
    }
    writer.join().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && readings.len() == streams.len(),
        "the {} oracle failed (it needs {}): {}",
        oracle.name,
        oracle.needs,
        String::from_utf8_lossy(&output.stderr)
    );
    readings
}

// ---- the streams ----

/// Valid requests of every framing, and the shapes of the smuggling literature.
#[rustfmt::skip]
const SEEDS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nUser-Agent: x/1.0\r\n\r\n",
    "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6 ; c = \"d;e\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\n\r\n",
    "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
    "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
    "DELETE /d HTTP/1.1\r\nHost: [::1]:80\r\n\r\nPATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\nHost: a\n\n",
    // Smuggling shapes: both framings, obfuscated TE, CL lists, odd chunk sizes, hidden
    // requests in bodies and trailers.
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 34\r\n\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
    "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
];

/// Bytes that tend to matter to a parser.
const INTERESTING: &[u8] = b" \t\r\n:;=\",\\#?/@[]. %0Aa\x00\x01\x0b\x7f\x80\xff";

fn mutate(rng: &mut Rng, stream: &mut Vec<u8>) {
    let at = rng.below(stream.len() + 1);
    match rng.below(8) {
        0 => stream.insert(at, *rng.pick(INTERESTING)),
        1 if at < stream.len() => {
            stream.remove(at);
        }
        2 if at < stream.len() => {
            let end = (at + 1 + rng.below(8)).min(stream.len());
            let run = stream[at..end].to_vec();
            stream.splice(at..at, run);
        }
        3 if at < stream.len() && stream[at].is_ascii_alphabetic() => stream[at] ^= 0x20,
        4 => stream.insert(at, *rng.pick(b" \t")),
        5 => {
            // A CR or LF becomes the other, or goes, or doubles.
            let ends: Vec<usize> = (0..stream.len())
                .filter(|&i| matches!(stream[i], b'\r' | b'\n'))
                .collect();
            if !ends.is_empty() {
                let i = *rng.pick(&ends);
                match rng.below(3) {
                    0 => stream[i] = if stream[i] == b'\r' { b'\n' } else { b'\r' },
                    1 => {
                        stream.remove(i);
                    }
                    _ => stream.insert(i, stream[i]),
                }
            }
        }
        6 => {
            // A line repeated: a second header field of the same name, a doubled chunk line.
            let starts: Vec<usize> = std::iter::once(0)
                .chain(
                    (0..stream.len())
                        .filter(|&i| stream[i] == b'\n')
                        .map(|i| i + 1),
                )
                .filter(|&i| i < stream.len())
                .collect();
            let start = *rng.pick(&starts);
            let end = stream[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(stream.len(), |i| start + i + 1);
            let line = stream[start..end].to_vec();
            stream.splice(start..start, line);
        }
        _ if at < stream.len() && stream[at].is_ascii_digit() => {
            stream[at] = *rng.pick(b"0123456789aF")
        }
        _ => {}
    }
}

/// One stream: one to three seeds, pipelined, with up to three mutations (a tenth unmutated).
fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..1 + rng.below(3) {
        stream.extend_from_slice(rng.pick(SEEDS).as_bytes());
    }
    if rng.below(10) > 0 {
        for _ in 0..1 + rng.below(3) {
            mutate(rng, &mut stream);
        }
    }
    stream
}

// ---- the comparison ----

/// Where two readings part: the first request they do not share, and what each made of it.
#[derive(Debug, PartialEq, Eq)]
enum Divergence {
    /// Both took a request there, and read it differently: the smuggling class.
    Framing,
    /// We took a request there; h11 refused the stream, or waited for more, or closed.
    OnlyOurs,
    /// h11 took a request there; we did not.
    OnlyTheirs,
    /// The same requests, and a different end.
    End,
}

fn same_request(ours: &Option<Seen>, theirs: &Option<Seen>) -> bool {
    match (ours, theirs) {
        // HTTP/1.2 and the like, which we read as 1.1 (RFC 9110 2.5).
        (Some(a), Some(b)) => {
            let later_minor = b.2.len() == 3 && b.2.starts_with("1.") && b.2.as_bytes()[2] > b'1';
            a.0 == b.0 && a.1 == b.1 && a.3 == b.3 && (a.2 == b.2 || (later_minor && a.2 == "1.1"))
        }
        // Our 501 for a method h11 took as any other.
        (None, Some(b)) => !KNOWN_METHODS.contains(&b.0.as_str()),
        _ => false,
    }
}

fn divergence(ours: &Reading, theirs: &Reading) -> Option<Divergence> {
    let shared = ours
        .requests
        .iter()
        .zip(&theirs.requests)
        .take_while(|(a, b)| same_request(a, b))
        .count();
    match (ours.requests.get(shared), theirs.requests.get(shared)) {
        (Some(_), Some(_)) => Some(Divergence::Framing),
        (Some(_), None) => Some(Divergence::OnlyOurs),
        (None, Some(_)) => Some(Divergence::OnlyTheirs),
        (None, None) => match (&ours.end, &theirs.end) {
            (End::Refused(_), End::Refused(_)) => None,
            (a, b) if a == b => None,
            _ => Some(Divergence::End),
        },
    }
}

/// A deliberate divergence (docs/conformance.md): its name, and whether it explains a
/// disagreement, from the bytes of the request where the readings part and the two readings.
type Explains = fn(&[u8], &Reading, &Reading) -> bool;

// The rules a request the other parser took may break, named once: `STRICTER` explains by them,
// and so does `broken_rule`.
const HOST_VALUE: &str = "Host value (RFC 3986 grammar; h11 checks presence, llhttp nothing)";
const TARGET_FORM: &str =
    "request target (the four RFC 9112 3.2 forms, no fragment; the others take more)";
const METHOD: &str =
    "method over 32 bytes, or not recognized (501; h11 knows no methods, llhttp more)";
const EXPECT: &str = "Expect other than 100-continue (417; the others ignore Expect)";
const MAJOR_VERSION: &str = "major version other than 1 (505; h11 takes any d.d)";
const LATER_MINOR_HOST: &str = "HTTP/1.x above 1.1 without Host (read as 1.1, which needs one)";
const LENGTH_LIST: &str =
    "Content-Length as a list (h11 merges equal values; RFC 9110 8.6 lets us refuse)";
const CONTROL_BYTE: &str = "control byte in a field value (h11 admits them; httparse refuses)";
const HOST_COUNT: &str =
    "Host repeated, or missing on HTTP/1.1 (RFC 9112 3.2; llhttp does not look)";

/// We refuse (or stop) where the other parser reads on: we are stricter, on purpose. Our own rules,
/// the same against either parser.
const STRICTER: &[(&str, Explains)] = &[
    (HOST_VALUE, |s, _, _| {
        field_values(s, b"host:")
            .iter()
            .any(|v| valid_host(v.trim_ascii()).is_none())
    }),
    (TARGET_FORM, |s, _, _| {
        request_lines(s).iter().any(|l| odd_target(l))
    }),
    (METHOD, |_, ours, _| {
        ours.end == End::Refused(501) || ours.requests.contains(&None)
    }),
    (EXPECT, |s, ours, _| {
        ours.end == End::Refused(417) && has_ci(s, b"expect:")
    }),
    (MAJOR_VERSION, |_, ours, _| ours.end == End::Refused(505)),
    (LATER_MINOR_HOST, |s, _, _| {
        request_lines(s).iter().any(|l| later_minor(l))
    }),
    (LENGTH_LIST, |s, _, _| {
        field_values(s, b"content-length:")
            .iter()
            .any(|v| has(v, b","))
    }),
    (CONTROL_BYTE, |s, _, _| {
        s.iter()
            .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f)
    }),
    (
        "obs-fold (h11 unfolds it; RFC 9112 5.2 lets us refuse)",
        |s, _, _| {
            let head = head(s);
            has(head, b"\n ") || has(head, b"\n\t")
        },
    ),
    (
        "chunk line or trailer section (h11: chunk-ext is `;.*`, whitespace before CRLF, control bytes and LF-only lines in trailers; here RFC 9112 7.1)",
        |s, _, _| has_ci(head(s), b"transfer-encoding"),
    ),
    (
        "bare CR (h11 takes a CR before a line's LF anywhere; here a CR must precede LF)",
        |s, _, _| s.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') || s.ends_with(b"\r"),
    ),
    (
        "whitespace before a header field's colon or after its name (httparse refuses; h11 too, found later)",
        |s, _, _| {
            lines(s).any(|l| {
                l.iter()
                    .position(|&b| b == b':')
                    .is_some_and(|c| c > 0 && matches!(l[c - 1], b' ' | b'\t'))
            })
        },
    ),
    (
        "a head refused once a line of it is known bad (a method no token or too long, a \
         request line or field line httparse refuses), before its head ends (the other parser \
         waits for the head)",
        |s, _, theirs| theirs.end == End::Partial && !has(s, b"\n\n") && !has(s, b"\n\r\n"),
    ),
    (HOST_COUNT, |s, _, _| {
        let head = head(s);
        let hosts = field_values(head, b"host:").len();
        hosts > 1
            || hosts == 0
                && request_lines(head)
                    .first()
                    .is_some_and(|l| l.ends_with(b" HTTP/1.1"))
    }),
    (
        "whitespace in the request line other than one SP between its parts (RFC 9112 3; \
         llhttp takes more spaces)",
        |s, _, _| request_line(s).is_some_and(|l| has(l, b"  ") || has(l, b"\t")),
    ),
    (
        "`Connection: close` with whitespace after it (RFC 9110 5.5: OWS is no part of a value; \
         llhttp misses the token and reads on)",
        |s, ours, _| {
            ours.end == End::Closed
                && field_values(head(s), b"connection:")
                    .iter()
                    .any(|v| ows_after(v) && has_ci(v, b"close"))
        },
    ),
    (
        "a request line with no version (HTTP/0.9; llhttp waits for more)",
        |s, _, theirs| {
            theirs.end == End::Partial
                && request_line(s).is_some_and(|l| l.split(|&b| b == b' ').count() < 3)
        },
    ),
];

/// h11 refuses (or stops) where we read on.
const H11_LAXER: &[(&str, Explains)] = &[
    (
        "empty lines before a request line (RFC 9112 2.2: SHOULD ignore; h11 refuses)",
        |_, _, theirs| theirs.reason == "no request line received",
    ),
    (
        "a lone CR where a request line may start (we wait for its LF; h11 refuses at once)",
        |s, ours, theirs| ours.end == End::Partial && refuses(theirs) && s.ends_with(b"\r"),
    ),
    (
        "BWS before `;` in a chunk extension (RFC 9112 7.1.1 allows it; h11 refuses)",
        |s, _, theirs| {
            theirs.reason.starts_with("illegal chunk header") && (has(s, b" ;") || has(s, b"\t;"))
        },
    ),
    (
        "an invalid request line refused before its end (h11 judges its first bytes; we wait for the line)",
        |_, ours, theirs| ours.end == End::Partial && theirs.reason == "illegal request line",
    ),
    (
        "Content-Length fields with the same decimal value written differently, `3` and `03` \
         (RFC 9110 8.6: one length; h11 compares the text)",
        |s, _, theirs| theirs.reason == "conflicting Content-Length headers" && one_length(s),
    ),
];

/// llhttp refuses (or stops) where we read on.
const LLHTTP_LAXER: &[(&str, Explains)] = &[
    (
        "a line ending in a bare LF in the head (RFC 9112 2.2 lets a server take it; llhttp \
         wants CR LF)",
        |s, _, _| {
            // The head and the empty line that ends it.
            let head = &s[..s.len().min(head(s).len() + 1)];
            (0..head.len()).any(|i| head[i] == b'\n' && (i == 0 || head[i - 1] != b'\r'))
        },
    ),
    (
        "HTTP/1.x above 1.1, read as 1.1 (RFC 9110 2.5; llhttp refuses it)",
        |s, _, _| request_lines(s).iter().any(|l| later_minor(l)),
    ),
    (
        "BWS around `;` and `=` in a chunk extension (RFC 9112 7.1.1 allows it; llhttp refuses)",
        |s, _, theirs| {
            (theirs.reason.starts_with("HPE_INVALID_CHUNK_SIZE")
                || theirs.reason.starts_with("HPE_STRICT"))
                && [
                    &b" ;"[..],
                    b"\t;",
                    b"; ",
                    b";\t",
                    b" =",
                    b"\t=",
                    b"= ",
                    b"=\t",
                ]
                .iter()
                .any(|bws| has(s, bws))
        },
    ),
    (
        "Content-Length repeated with one value (RFC 9110 8.6: one length; llhttp refuses a \
         second field)",
        |s, _, theirs| theirs.reason.starts_with("HPE_UNEXPECTED_CONTENT_LENGTH") && one_length(s),
    ),
    (
        "a method we do not recognize, answered 501 on a connection kept open (llhttp refuses \
         a method not on its list)",
        |s, ours, theirs| {
            let method = request_line(s)
                .and_then(|l| l.split(|&b| b == b' ').next())
                .unwrap_or_default();
            theirs.reason.starts_with("HPE_INVALID_METHOD")
                && (ours.requests.get(theirs.requests.len()) == Some(&None)
                    || ours.end == End::Refused(501)
                    // Its body still to come.
                    || ours.end == End::Partial
                        && !method.is_empty()
                        && method.iter().all(|&b| is_tchar(b))
                        && !KNOWN_METHODS.iter().any(|m| m.as_bytes() == method))
        },
    ),
    (
        "whitespace after a Content-Length or Transfer-Encoding value (RFC 9110 5.5: OWS is no \
         part of a value; llhttp refuses a tab there)",
        |s, _, theirs| {
            (theirs.reason.starts_with("HPE_INVALID_CONTENT_LENGTH")
                || theirs.reason.starts_with("HPE_INVALID_TRANSFER_ENCODING"))
                && [&b"content-length:"[..], b"transfer-encoding:"]
                    .iter()
                    .flat_map(|name| field_values(head(s), name))
                    .any(ows_after)
        },
    ),
    (
        "a lone CR after a request (we wait for its LF: an empty line to skip; llhttp drops it)",
        |s, ours, theirs| ours.end == End::Partial && theirs.end == End::Idle && s.ends_with(b"\r"),
    ),
    (
        "a line refused before its end (llhttp judges each byte; we judge a line when it ends, \
         and a head's field values when the head ends)",
        |s, ours, theirs| ours.end == End::Partial && refuses(theirs) && !s.ends_with(b"\n"),
    ),
];

/// Whether the Content-Length fields of the head at the start of `stream`, more than one, are
/// one decimal number however written.
fn one_length(stream: &[u8]) -> bool {
    let values: Vec<&[u8]> = field_values(head(stream), b"content-length:")
        .into_iter()
        .map(<[u8]>::trim_ascii)
        .collect();
    let number = |v: &[u8]| -> Option<u64> {
        v.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(v).ok()?.parse().ok())?
    };
    values.len() > 1
        && values
            .iter()
            .all(|v| number(v).is_some() && number(v) == number(values[0]))
}

/// Whether the other parser closed after its last request, which we took too and answered
/// keeping the connection (and this holds of that request).
fn closed_after(ours: &Reading, theirs: &Reading, last: impl Fn(&Seen) -> bool) -> bool {
    theirs.end == End::Closed
        && ours.requests.len() >= theirs.requests.len()
        && theirs
            .requests
            .last()
            .is_some_and(|r| r.as_ref().is_some_and(&last))
}

const H11: Oracle = Oracle {
    name: "h11",
    program: "python3",
    script: "h11_oracle.py",
    needs: "python3 with h11 >= 0.16: pip install 'h11>=0.16'",
    stops: &[(
        "HTTP/1.0 keep-alive (h11 closes after every 1.0 request; we read on)",
        |s, ours, theirs| closed_after(ours, theirs, |r| r.2 == "1.0") && has(s, b" HTTP/1.0"),
    )],
    laxer: H11_LAXER,
};

const LLHTTP: Oracle = Oracle {
    name: "llhttp",
    program: "node",
    script: "llhttp_oracle.js",
    needs: "Node.js (node), whose HTTP parser llhttp is",
    stops: &[
        (
            "CONNECT (llhttp hands the connection to the tunnel that would follow; we answer 405 \
             and read on)",
            |_, ours, theirs| closed_after(ours, theirs, |r| r.0 == "CONNECT"),
        ),
        (
            "HTTP/1.0 `Connection: keep-alive` with whitespace after it (RFC 9110 5.5: OWS is no \
             part of a value; llhttp closes)",
            |s, ours, theirs| {
                closed_after(ours, theirs, |r| r.2 == "1.0")
                    && field_values(s, b"connection:").iter().any(|v| ows_after(v))
            },
        ),
    ],
    laxer: LLHTTP_LAXER,
};

fn refuses(reading: &Reading) -> bool {
    matches!(reading.end, End::Refused(_))
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn has_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The head at the start of `request`: up to its first empty line.
fn head(request: &[u8]) -> &[u8] {
    let end = (1..request.len())
        .find(|&i| {
            request[i] == b'\n' && (request[i - 1] == b'\n' || request[..i].ends_with(b"\n\r"))
        })
        .unwrap_or(request.len());
    &request[..end]
}

fn lines(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    stream
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// The values of the field lines in `stream` that start with `name` (with its colon, any case).
fn field_values<'a>(stream: &'a [u8], name: &[u8]) -> Vec<&'a [u8]> {
    lines(stream)
        .filter(|l| l.len() >= name.len() && l[..name.len()].eq_ignore_ascii_case(name))
        .map(|l| &l[name.len()..])
        .collect()
}

/// Whether a field value ends in whitespace (OWS, RFC 9110 5.6.3).
fn ows_after(value: &[u8]) -> bool {
    value.ends_with(b" ") || value.ends_with(b"\t")
}

/// The first line of `stream` that is not empty.
fn request_line(stream: &[u8]) -> Option<&[u8]> {
    lines(stream).find(|l| !l.is_empty())
}

fn request_lines(stream: &[u8]) -> Vec<&[u8]> {
    lines(stream).filter(|l| has(l, b" HTTP/")).collect()
}

fn later_minor(line: &[u8]) -> bool {
    matches!(
        line,
        [
            ..,
            b' ',
            b'H',
            b'T',
            b'T',
            b'P',
            b'/',
            b'1',
            b'.',
            b'2'..=b'9'
        ]
    )
}

fn odd_target(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return false;
    };
    match target.first() {
        Some(b'/') => has(target, b"#"),
        _ => !(target == b"*" && method == b"OPTIONS"),
    }
}

/// When the other parser took a request we did not: which of our rules that request breaks,
/// judged on the request as it read it.
fn broken_rule(theirs: &Reading, at: usize) -> Option<&'static str> {
    let (method, target, version, _) = theirs.requests.get(at)?.as_ref()?;
    let fields = &theirs.fields[at];
    let values = |name: &'static str| {
        fields
            .iter()
            .filter(move |f| f.0 == name)
            .map(|f| f.1.trim_ascii())
    };
    let later_minor = version.starts_with("1.") && version != "1.0" && version != "1.1";
    Some(
        if method.len() > MAX_METHOD || !KNOWN_METHODS.contains(&method.as_str()) {
            METHOD
        } else if !version.starts_with("1.") {
            MAJOR_VERSION
        } else if split_target(method, target).is_err() {
            TARGET_FORM
        } else if values("host").any(|v| valid_host(v).is_none()) {
            HOST_VALUE
        } else if later_minor && values("host").count() != 1 {
            LATER_MINOR_HOST
        } else if values("host").count() > 1 || version == "1.1" && values("host").count() == 0 {
            HOST_COUNT
        } else if values("expect").any(|v| !v.eq_ignore_ascii_case(b"100-continue")) {
            EXPECT
        } else if values("content-length").any(|v| v.contains(&b',')) {
            LENGTH_LIST
        } else if fields
            .iter()
            .any(|f| f.1.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f))
        {
            CONTROL_BYTE
        } else {
            return None;
        },
    )
}

/// The deliberate divergence that explains a disagreement, if one does. A request both took and
/// read differently is never deliberate.
fn explain(
    oracle: &Oracle,
    stream: &[u8],
    ours: &Reading,
    theirs: &Reading,
) -> Option<&'static str> {
    let divergence = divergence(ours, theirs)?;
    if divergence != Divergence::Framing {
        if let Some(stops) = class_in(oracle.stops, stream, ours, theirs) {
            return Some(stops);
        }
        // We closed after our last request where the other parser read on: why is in that
        // request.
        let last = ours.requests.len().checked_sub(1);
        if let (End::Closed, Some(&(start, end))) =
            (&ours.end, last.and_then(|at| theirs.spans.get(at)))
            && (theirs.end != End::Closed || theirs.requests.len() > ours.requests.len())
        {
            return class_in(STRICTER, &stream[start..end], ours, theirs);
        }
    }
    if divergence == Divergence::OnlyTheirs {
        if let Some(rule) = broken_rule(theirs, ours.requests.len()) {
            return Some(rule);
        }
    }
    // The bytes of the request where the readings part, as the other parser delimited it:
    // from the end of the last request both took, past the empty lines both skip, so that a CR
    // or other bytes one parser skipped and the other did not belong to it too.
    let shared = ours.requests.len().min(theirs.requests.len());
    let start = shared
        .checked_sub(1)
        .map_or(0, |before| theirs.spans[before].1);
    let local = match theirs.spans.get(shared) {
        Some(&(_, end)) if divergence == Divergence::OnlyTheirs => &stream[start..end],
        _ => &stream[start.min(stream.len())..],
    };
    let local = &local[leading_empty_lines(local)..];
    let table = match divergence {
        Divergence::Framing => return Some("-"),
        Divergence::OnlyTheirs => STRICTER,
        Divergence::OnlyOurs => oracle.laxer,
        // We refuse where the other parser waits or idles.
        Divergence::End if refuses(ours) => STRICTER,
        // It refuses where we wait or idle; or neither refuses, and one waits for more.
        Divergence::End => oracle.laxer,
    };
    class_in(table, local, ours, theirs)
}

/// The first class of `table` that explains the disagreement over `stream`.
fn class_in(
    table: &[(&'static str, Explains)],
    stream: &[u8],
    ours: &Reading,
    theirs: &Reading,
) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, explains)| explains(stream, ours, theirs))
        .map(|(class, _)| *class)
}

#[test]
fn reactor_httpd_and_h11_read_streams_alike() {
    bounded(600, || read_alike(&H11));
}

#[test]
fn reactor_httpd_and_llhttp_read_streams_alike() {
    bounded(600, || read_alike(&LLHTTP));
}

fn read_alike(oracle: &Oracle) {
    let count: usize = env_or("DIFFERENTIAL_STREAMS", 50_000);
    let seed: u64 = env_or("DIFFERENTIAL_SEED", 0x5eed_1234);
    let mut rng = Rng::seeded(seed);
    let streams: Vec<Vec<u8>> = (0..count).map(|_| generate(&mut rng)).collect();
    let theirs = read_by(oracle, &streams);
    let mut classes: BTreeMap<&str, (usize, Vec<u8>)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut agreed = 0;
    for (stream, theirs) in streams.iter().zip(&theirs) {
        let ours = ours(stream);
        let Some(divergence) = divergence(&ours, theirs) else {
            agreed += 1;
            continue;
        };
        match explain(oracle, stream, &ours, theirs) {
            Some(class) if class != "-" => {
                classes.entry(class).or_insert((0, stream.clone())).0 += 1;
            }
            _ => unexplained.push(format!(
                "{divergence:?} {:?}\n  ours: {ours:?}\n  {}: {theirs:?}",
                String::from_utf8_lossy(stream),
                oracle.name
            )),
        }
    }
    println!(
        "{count} streams (seed {seed:#x}): {agreed} read alike by us and {}",
        oracle.name
    );
    for (class, (n, example)) in &classes {
        println!(
            "  {n:>6}  {class}\n          e.g. {:?}",
            String::from_utf8_lossy(example)
        );
    }
    println!("  {:>6}  unexplained", unexplained.len());
    assert!(
        unexplained.is_empty(),
        "{} disagreements no deliberate divergence explains; the first:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
