//! The smallest useful event loop: an echo server on mio, in about sixty lines.
//!
//! Chapter 3 of the book walks through it. One thread, one `Poll`, a listener and a map of
//! connections. Everything the reactor in `src/server/reactor.rs` does is here in miniature:
//! register, wait, and on each readiness event do I/O until the kernel says WouldBlock.
//!
//! Run: `cargo run --example echo -- 127.0.0.1:7000`, then `nc 127.0.0.1 7000`.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

// ANCHOR: loop
const LISTENER: Token = Token(usize::MAX);

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7000".into());
    let listener = TcpListener::bind(addr.parse().map_err(io::Error::other)?)?;
    println!("echo on {}", listener.local_addr()?);
    serve(listener)
}

/// The event loop: never returns unless polling itself fails.
pub fn serve(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<Token, (TcpStream, Vec<u8>)> = HashMap::new();
    let mut events = Events::with_capacity(128);
    let mut next = 0;
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                // Edge-triggered: accept until the queue is empty, or lose connections.
                while let Ok((mut stream, _)) = listener.accept() {
                    let token = Token(next);
                    next += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut stream, token, interest)?;
                    conns.insert(token, (stream, Vec::new()));
                }
                continue;
            }
            let Some((stream, pending)) = conns.get_mut(&event.token()) else {
                continue; // an event for a connection already closed
            };
            if pump(stream, pending).is_err() {
                conns.remove(&event.token()); // dropping the stream closes it
            }
        }
    }
}

/// Reads until WouldBlock, queueing what arrives; writes until WouldBlock or all is sent.
/// `Err` means the connection is finished (the peer closed and has had its echo, or it failed).
fn pump(stream: &mut TcpStream, pending: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0; 4096];
    let mut peer_done = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                peer_done = true;
                break;
            }
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    while !pending.is_empty() {
        match stream.write(pending) {
            Ok(n) => drop(pending.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if peer_done && pending.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
// ANCHOR_END: loop
