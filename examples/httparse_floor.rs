//! The floor for any server built from this project's design crates: `limit.c` rewritten on mio
//! and slab, with one addition, httparse reading every request head.
//!
//! Not a server to use. It answers every complete head with one canned `Hello, World!`, never
//! looks at what was asked, keeps no timers and logs nothing. What it measures is how close
//! reactor-httpd *could* come to `../shared/bench/limit.c`: whatever reactor-httpd costs above this
//! floor is ours to remove; what this floor costs above `limit.c` is the price of mio and
//! httparse, which no change to reactor-httpd can remove.
//!
//! Like limit.c: one thread, edge-triggered read and write interest registered once, a fixed
//! 4 KiB input buffer per connection, the responses to everything one read brought go out in one
//! write, and a read shorter than the buffer is taken to mean the socket is drained.
//!
//!   cargo run --release --example httparse_floor -- 127.0.0.1:8080
//!   SERVERS="reactor floor limit" PIPELINE=16 benches/cpu-per-request.sh

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const INPUT: usize = 4096;
const LISTENER: Token = Token(usize::MAX - 1);
const RESPONSE_HEAD: &str = "HTTP/1.1 200 OK\r\nServer: floor\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
                             Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

struct Conn {
    stream: TcpStream,
    input: Box<[u8; INPUT]>,
    len: usize,
    /// Bytes the socket did not take yet; while any are left, nothing more is read.
    unsent: Vec<u8>,
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    println!("listening on http://{addr} (httparse floor, 1 thread)");
    serve(TcpListener::from_std(socket.into()), &stop)
}

/// Serves until `stop` is set (noticed within a second).
pub fn serve(mut listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut response = RESPONSE_HEAD.as_bytes().to_vec();
    let date_at = RESPONSE_HEAD
        .find("Date: ")
        .expect("the canned head has a Date")
        + 6;
    let mut date_second = 0;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(512);
    let mut output = Vec::with_capacity(256 * 1024);
    while !stop.load(Ordering::Relaxed) {
        // Woken once a second at most, so a signal is noticed without a waker.
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != date_second {
            date_second = second;
            let date = httpdate::fmt_http_date(now);
            response[date_at..date_at + date.len()].copy_from_slice(date.as_bytes());
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns)?;
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let readable = event.is_readable() || event.is_read_closed();
            let keep = serve_conn(
                conn,
                &response,
                &mut output,
                readable,
                event.is_read_closed(),
            );
            if !keep {
                conns.remove(key);
            }
        }
    }
    Ok(())
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.set_nodelay(true)?;
        let entry = conns.vacant_entry();
        poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            stream,
            input: Box::new([0; INPUT]),
            len: 0,
            unsent: Vec::new(),
        });
    }
}

/// Flushes what is left, then reads, parses and answers until the socket is drained. Returns
/// whether the connection stays open.
fn serve_conn(
    conn: &mut Conn,
    response: &[u8],
    output: &mut Vec<u8>,
    mut readable: bool,
    peer_closed: bool,
) -> bool {
    if !conn.unsent.is_empty() {
        let unsent = std::mem::take(&mut conn.unsent);
        if !send(conn, &unsent) {
            return false;
        }
        if !conn.unsent.is_empty() {
            return true; // still full: wait for the next WRITABLE
        }
        readable = true; // flushed: read what was left waiting in the socket
    }
    if !readable {
        return true;
    }
    output.clear();
    let mut eof = peer_closed;
    loop {
        let want = INPUT - conn.len;
        if want == 0 {
            return false; // a head over 4 KiB
        }
        let read = match conn.stream.read(&mut conn.input[conn.len..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        conn.len += read;
        // httparse finds where each head ends by itself; the 4 KiB buffer is the only limit.
        let mut start = 0;
        loop {
            let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; 32];
            let mut request = httparse::Request::new(&mut []);
            match request.parse_with_uninit_headers(&conn.input[start..conn.len], &mut headers) {
                Ok(httparse::Status::Complete(head)) => {
                    output.extend_from_slice(response);
                    start += head;
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return false,
            }
        }
        conn.input.copy_within(start..conn.len, 0);
        conn.len -= start;
        if read < want {
            break; // drained: skip the read that would only say WouldBlock
        }
    }
    if !output.is_empty() && !send(conn, output) {
        return false;
    }
    !eof || !conn.unsent.is_empty()
}

/// Writes until done or WouldBlock; keeps the rest in `unsent`. False on a broken connection.
fn send(conn: &mut Conn, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match conn.stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.unsent.extend_from_slice(bytes);
                return true;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}
