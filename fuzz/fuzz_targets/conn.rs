//! The whole connection state machine fed an arbitrary byte stream, checked for the invariants
//! a client relies on rather than only for "no panic":
//! - the output is a sequence of well-formed HTTP/1.1 responses (parsed back);
//! - responses leave in the order the handler was called (each carries its call's number);
//! - nothing follows a response that says `Connection: close`;
//! - the same stream split differently gives the same output;
//! - a client that never reads cannot make the connection hold more than its output bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_httpd::config::Limits;
use reactor_httpd::http::OUTPUT_HIGH_WATER;
use reactor_httpd::http::memory::{MemoryConn, check_responses, numbered, reset_calls, run_split};

fn run(input: &[u8], sizes: &[usize]) -> Vec<u8> {
    reset_calls();
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

    check_responses(&whole);

    // A client that sends everything and reads nothing.
    reset_calls();
    let mut stalled = MemoryConn::with(Limits::default(), &numbered);
    stalled.stalled = true;
    stalled.feed(input);
    // One response may be in progress past the bound (the largest here is /big's 100 KB).
    assert!(
        stalled.conn.unsent() <= OUTPUT_HIGH_WATER + 101_000,
        "{}",
        stalled.conn.unsent()
    );
});
