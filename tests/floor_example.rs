//! The measuring floor (`examples/httparse_floor.rs`) answers every request it is sent, in full:
//! a floor that dropped or truncated responses under pipelining would flatter itself in
//! `benches/cpu-per-request.sh`. The example's source is compiled into this test.
//!
//! (Whether its writes ever meet WouldBlock here depends on how far the kernel grows the socket
//! buffers, so this test does not claim to cover that path; reactor-httpd's own tests do, for
//! reactor-httpd.)

mod common;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/httparse_floor.rs"]
mod floor;

use std::io::{Read, Write};
use std::sync::atomic::AtomicBool;
use std::thread;

use common::{Client, bounded, find};

#[test]
fn floor_answers_every_pipelined_request() {
    bounded(30, || {
        let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        static STOP: AtomicBool = AtomicBool::new(false);
        // The loop runs until the test process ends.
        thread::spawn(move || floor::serve(listener, &STOP));
        const REQUESTS: usize = 5_000;
        let clients: Vec<_> = (0..2)
            .map(|_| {
                thread::spawn(move || {
                    // 200 KB of requests in one write, read back through a small window: the
                    // floor's 4 KiB input buffer splits heads across reads.
                    let mut stream = Client::connect_with_small_window(addr, 4096).stream;
                    let requests =
                        b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(REQUESTS);
                    let mut reader = stream.try_clone().unwrap();
                    let answers = thread::spawn(move || {
                        // Every answer is the same length (the Date is fixed-width): read
                        // until there are bytes for all of them.
                        let mut got = Vec::new();
                        let mut buf = [0; 4096];
                        let mut expected = usize::MAX;
                        while got.len() < expected {
                            let n = reader.read(&mut buf).unwrap();
                            assert!(n > 0, "the floor closed early");
                            got.extend_from_slice(&buf[..n]);
                            if expected == usize::MAX
                                && let Some(at) = find(&got, b"Hello, World!")
                            {
                                expected = (at + 13) * REQUESTS;
                            }
                        }
                        got
                    });
                    stream.write_all(&requests).unwrap();
                    let got = answers.join().unwrap();
                    let heads = got
                        .windows(17)
                        .filter(|w| w == b"HTTP/1.1 200 OK\r\n")
                        .count();
                    assert_eq!(heads, REQUESTS);
                    assert!(got.ends_with(b"Hello, World!"));
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    });
}
