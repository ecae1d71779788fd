//! The book's echo loop (`examples/echo.rs`) really echoes: two clients at once, a payload
//! large enough to need partial writes, and the echo completed after the client half-closes.
//! The example's source is compiled into this test, so the test runs whatever the example says.

mod common;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/echo.rs"]
mod echo;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use common::{IO_TIMEOUT, bounded};

#[test]
fn echo_loop_echoes() {
    bounded(30, || {
        let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // The loop runs until the test process ends.
        thread::spawn(move || echo::serve(listener));
        let clients: Vec<_> = (0..2u8)
            .map(|id| {
                thread::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let payload: Vec<u8> =
                        (0..2_000_000u32).map(|i| (i % 251) as u8 ^ id).collect();
                    let mut reader = stream.try_clone().unwrap();
                    let echoed = thread::spawn(move || {
                        let mut back = Vec::new();
                        reader.read_to_end(&mut back).unwrap();
                        back
                    });
                    stream.write_all(&payload).unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    assert!(echoed.join().unwrap() == payload, "client {id}: wrong echo");
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    });
}
