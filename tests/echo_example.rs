//! The book's echo loop (`examples/echo.rs`) really echoes: two clients at once, a payload
//! large enough to need partial writes, and the echo completed after the client half-closes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

use common::{IO_TIMEOUT, bounded};

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn echo_loop_echoes() {
    bounded(30, || {
        let mut child = Command::new(example("echo"))
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("examples/echo is built by cargo test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().strip_prefix("echo on ").unwrap().to_string();
        let clients: Vec<_> = (0..2u8)
            .map(|id| {
                let addr = addr.clone();
                thread::spawn(move || {
                    let mut stream = TcpStream::connect(&addr).unwrap();
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
        child.kill().unwrap();
        child.wait().unwrap();
    });
}
