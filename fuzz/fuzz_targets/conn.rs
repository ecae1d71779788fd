//! The whole connection state machine fed an arbitrary byte stream, checked for the invariants
//! a client relies on rather than only for "no panic":
//! - the output is a sequence of well-formed HTTP/1.1 responses (parsed back);
//! - responses leave in the order the handler was called (each carries its call's number);
//! - nothing follows a response that says `Connection: close`;
//! - the same stream split differently gives the same output;
//! - a client that never reads cannot make the connection hold more than its output bound.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use reactor_httpd::config::Limits;
use reactor_httpd::http::memory::{MemoryConn, parse_responses, run_split};
use reactor_httpd::http::{OUTPUT_HIGH_WATER, Request, Response, Status};

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Numbers its calls, so the order of the responses can be checked against them.
fn numbered(request: &Request<'_>) -> Response {
    let n = CALLS.with(|calls| {
        calls.set(calls.get() + 1);
        calls.get()
    });
    let body = if request.path == "/big" {
        "x".repeat(100_000)
    } else {
        format!("{} {} {}", request.method, request.path, request.body.len())
    };
    Response::text(Status::OK, body)
        .with_header("X-Call", n.to_string())
        .with_header("X-Method", request.method.to_string())
}

fn run(input: &[u8], sizes: &[usize]) -> Vec<u8> {
    CALLS.with(|calls| calls.set(0));
    run_split(&numbered, input, sizes).0
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (split, input) = data.split_at(3);
    let sizes: Vec<usize> = split.iter().map(|&b| usize::from(b) + 1).collect();

    let whole = run(input, &[input.len().max(1)]);
    assert_eq!(whole, run(input, &sizes), "split {sizes:?}");
    assert_eq!(whole, run(input, &[1]), "byte by byte");

    let responses = parse_responses(&whole);
    let mut last_call = 0;
    for (i, (_, headers, _)) in responses.iter().enumerate() {
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        if let Some(call) = header("x-call") {
            let call: u64 = call.parse().unwrap();
            assert_eq!(call, last_call + 1, "responses out of order");
            last_call = call;
        }
        if header("connection") == Some("close") {
            assert_eq!(i, responses.len() - 1, "a response after Connection: close");
        }
    }

    // A client that sends everything and reads nothing.
    CALLS.with(|calls| calls.set(0));
    let mut stalled = MemoryConn::with(Limits::default(), &numbered);
    stalled.stalled = true;
    stalled.feed(input);
    // One response may be in progress past the bound (the largest here is /big's 100 KB).
    assert!(stalled.conn.unsent() <= OUTPUT_HIGH_WATER + 101_000, "{}", stalled.conn.unsent());
});
