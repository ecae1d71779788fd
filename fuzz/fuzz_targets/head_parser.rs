//! The request-head parser: the incremental scanner must find the same end (or the same error)
//! whether the head arrives whole or in pieces, and the one-pass fast path must agree with the
//! scanner followed by the full parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_httpd::http::{
    HeadScan, Scanned, Status, header_storage, leading_empty_lines, parse_head, parse_whole_head,
};

const LIMIT: usize = 4096;

fn scan_in_pieces(data: &[u8], step: usize) -> Result<Scanned, Status> {
    let mut scan = HeadScan::default();
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        match scan.scan(&data[..end], LIMIT)? {
            Scanned::NeedData => {}
            done => return Ok(done),
        }
    }
    Ok(Scanned::NeedData)
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, data)) = input.split_first() else {
        return;
    };
    // The connection skips empty lines before a request and only then scans: so must this.
    let data = &data[leading_empty_lines(data)..];
    let whole = HeadScan::default().scan(data, LIMIT);
    assert_eq!(whole, scan_in_pieces(data, 1), "byte by byte");
    assert_eq!(
        whole,
        scan_in_pieces(data, usize::from(step).max(1)),
        "in pieces of {step}"
    );

    let mut storage = header_storage();
    let fast = parse_whole_head(data, &mut storage, LIMIT)
        .map(|parsed| parsed.map(|parsed| format!("{parsed:?}")));
    match whole {
        Ok(Scanned::Complete(end)) => {
            assert!(end <= LIMIT && end <= data.len());
            let mut storage = header_storage();
            let slow = parse_head(&data[..end], &mut storage);
            // The fast path may decline (None); when it answers, it answers the same.
            match (&fast, slow) {
                (None, _) => {}
                (Some(Ok(fast)), Ok((request, framing))) => {
                    assert_eq!(fast, &format!("{:?}", (request, framing, end)));
                }
                (Some(Err(fast)), Err(slow)) => assert_eq!(*fast, slow),
                (fast, slow) => panic!("fast {fast:?}, slow {slow:?}"),
            }
        }
        // Incomplete or over a limit: the fast path must not have found a request.
        _ => assert!(!matches!(fast, Some(Ok(_))), "{fast:?} but scan {whole:?}"),
    }
});
