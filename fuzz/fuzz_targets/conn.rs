//! The whole connection state machine fed an arbitrary byte stream, checked for the invariants
//! a client relies on rather than only for "no panic":
//! - the output is a sequence of well-formed HTTP/1.1 responses (parsed back);
//! - responses leave in the order the handler was called (each carries its call's number);
//! - nothing follows a response that says `Connection: close`;
//! - the same stream split differently gives the same output;
//! - a client that never reads cannot make the connection hold more than its output bound;
//! - a handler that does not read bodies gets the same bytes sent as one that does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_httpd::config::Limits;
use reactor_httpd::http::{BufferBudget, OUTPUT_HIGH_WATER};
use reactor_httpd::http::memory::{
    MemoryConn, NumberedIgnoringBody, check_responses, numbered, parse_responses, reset_calls,
    run_split, run_split_on,
};

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

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

    // Under a small buffer budget: the same responses up to the budget's refusal, if there is
    // one, which is the last: a 503 for want of room now, or a 413 for a body that could not
    // fit even with nothing else held. And the budget all given back once the connection is
    // gone.
    let budget = BufferBudget::new(16 * 1024);
    let limits = Limits {
        buffers: budget.clone(),
        ..Limits::default()
    };
    reset_calls();
    let tight = run_split_on(MemoryConn::with(limits, &numbered), input, &sizes).0;
    assert_eq!(budget.held(), 0, "a share kept after the connection is gone");
    let (ours, theirs) = (parse_responses(&tight), parse_responses(&whole));
    let agree = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    if agree == ours.len() {
        assert_eq!(tight, whole, "split {sizes:?}");
    } else {
        assert_eq!(agree + 1, ours.len(), "split {sizes:?}: more after the refusal");
        assert!(matches!(ours[agree].0, 503 | 413), "split {sizes:?}: {}", ours[agree].0);
    }

    // Bodies kept or dropped unread: the same bytes out, in any split; except that a request
    // waiting for `100 Continue` is answered at once instead, and is the connection's last.
    let ignoring = |reads_body, sizes: &[usize]| {
        reset_calls();
        let conn = MemoryConn::serving(Limits::default(), NumberedIgnoringBody { reads_body });
        run_split_on(conn, input, sizes).0
    };
    for sizes in [&[input.len().max(1)][..], &sizes[..], &[1][..]] {
        let (read, dropped) = (ignoring(true, sizes), ignoring(false, sizes));
        let Some(at) = find(&read, b"HTTP/1.1 100 Continue\r\n\r\n") else {
            assert_eq!(read, dropped, "split {sizes:?}");
            continue;
        };
        assert_eq!(read[..at], dropped[..at], "split {sizes:?}");
        let last = parse_responses(&dropped[at..]);
        assert_eq!(last.len(), 1, "split {sizes:?}");
        let (_, headers, _) = &last[0];
        assert!(headers.contains(&("connection".into(), "close".into())));
    }

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
