//! Under a container's memory limit (`docker run --memory`, a Kubernetes pod's
//! `limits.memory`), past which the kernel kills the process and every connection with it.
//!
//! The buffer budget is what answers 503 instead, and its default (1 GiB) was above such
//! limits: 60 clients posting 10 MiB each to `/echo` got the server killed under a 256 MiB
//! limit. Its default is now a quarter of the memory the process may use. Here, under a
//! 128 MiB limit, a flood of uploads that would take far more is answered 200 or 503, in every
//! mode that serves connections at once, and the kernel kills nothing.
//!
//! What the budget does not count is what each open connection holds to start with (an 8 KiB
//! input buffer once a request head arrives; a whole process in fork mode), and 10,000 of them
//! did not fit under 64 MiB: clients that each send most of a request head and wait got the
//! server killed. `--max-connections` is now, unless given, what half the memory holds of them;
//! here those clients past it get 503, and the kernel kills nothing.
//!
//! Needs root and a cgroup memory controller it may write.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::cgroup::{Cgroup, Limit};
use common::{Client, IO_TIMEOUT, bounded, listening_addr, wait_with_timeout};

const LIMIT: u64 = 128 << 20;
const BODY: usize = 4 << 20;
const CLIENTS: usize = 40;

#[test]
fn a_flood_of_uploads_gets_503_not_the_oom_killer() {
    bounded(180, || {
        let cgroup = Cgroup::new(Limit::memory(LIMIT)).unwrap_or_else(|err| panic!("{err}"));
        // Blocking mode serves one connection at a time: it holds one body, never a flood.
        for mode in ["reactor", "uring", "threaded", "fork"] {
            if common::runnable_name(mode) {
                flood(&cgroup, mode);
            }
        }
    });
}

fn flood(cgroup: &Cgroup, mode: &str) {
    let (addr, stop) = serve_in(cgroup, mode);

    // The default budget: a quarter of the limit.
    let metrics = Client::connect(addr).get("/metrics").text();
    let budget = common::metric(&metrics, "reactor_httpd_buffered_limit_bytes");
    assert_eq!(budget, Some(LIMIT / 4), "{mode}");

    // Every client sends its whole body before any reads its answer, so the answers wait in
    // the server too: asked for together, 40 bodies and their echoes are 320 MiB.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || upload(addr, &barrier))
        })
        .collect();
    let outcomes: Vec<Outcome> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let count = |outcome: Outcome| outcomes.iter().filter(|&&o| o == outcome).count();
    assert_eq!(cgroup.oom_kills(), 0, "{mode}: {outcomes:?}");
    assert!(count(Outcome::Echoed) > 0, "{mode}: {outcomes:?}");
    assert_eq!(
        count(Outcome::Echoed) + count(Outcome::Refused),
        CLIENTS,
        "{mode}: {outcomes:?}"
    );
    // And it serves on.
    assert_eq!(
        Client::connect(addr).get("/hello").text(),
        "Hello, World!",
        "{mode}"
    );
    drop(stop);
}

/// Clients that each send all but the end of a request head, and wait, as many as open at once
/// (a slowloris): each makes a loop's connection take its input buffer, and a fork-mode parent a
/// child.
#[test]
fn a_crowd_of_unfinished_heads_gets_503_not_the_oom_killer() {
    common::raise_fd_limit();
    bounded(180, || {
        let cgroup = Cgroup::new(Limit::memory(64 << 20)).unwrap_or_else(|err| panic!("{err}"));
        // 9,000 connections of 8 KiB held are 70 MiB, and 500 children at about 220 KiB each
        // 105 MiB: each over the limit, which the old default (10,000) let them reach.
        for (mode, clients, limit) in [
            ("reactor", 9_000, 1_638),
            ("uring", 9_000, 1_638),
            ("fork", 500, 128),
        ] {
            if common::runnable_name(mode) {
                unfinished_heads(&cgroup, mode, clients, limit);
            }
        }
    });
}

fn unfinished_heads(cgroup: &Cgroup, mode: &str, clients: usize, limit: u64) {
    let (addr, stop) = serve_in(cgroup, mode);
    let scrape = || Client::connect(addr).get("/metrics").text();
    let limit_said = common::metric(&scrape(), "reactor_httpd_connections_limit");
    assert_eq!(limit_said, Some(limit), "{mode}: half of 64 MiB");

    // All but the blank line that ends the head: 8,150 bytes, most of an input buffer.
    let head = format!(
        "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n",
        "p".repeat(8_110)
    );
    let mut open = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{mode}: {e}"));
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        // Refused already (503, then closed) is as good as sent.
        let _ = stream.write_all(head.as_bytes());
        open.push(stream);
    }
    // Past the limit a connection is answered 503 as it is accepted, or, past the few hundred
    // refusals that may wait at once for their clients, closed unanswered: at once either way.
    let past = hello(addr, IO_TIMEOUT).map(|response| response.status);
    let waited = past
        .as_ref()
        .is_err_and(|err| matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    assert!(
        matches!(past, Ok(503) | Err(_)) && !waited,
        "{mode}: {past:?}"
    );
    assert_eq!(cgroup.oom_kills(), 0, "{mode}");

    // Those that were let in are served once their heads end; the others were refused. All
    // the heads end first, then each answer is read: none waits on another.
    let ended: Vec<bool> = (open.iter_mut().step_by(clients / 50))
        .map(|stream| stream.write_all(b"\r\n").is_ok())
        .collect();
    let mut served = 0;
    for (stream, ended) in open.iter_mut().step_by(clients / 50).zip(ended) {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let answer = ended.then(|| Client::wrap(&mut *stream).try_response());
        match answer.map(|answer| answer.map(|response| response.status)) {
            Some(Ok(200)) => served += 1,
            Some(Err(err)) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{mode}: a connection neither served nor refused")
            }
            // Refused: 503, or closed (the write of the head's end, or the read, failed).
            Some(Ok(503) | Err(_)) | None => {}
            Some(Ok(status)) => panic!("{mode}: {status}"),
        }
    }
    assert!(served > 0, "{mode}: none of those let in was served");
    drop(open);
    // Once they have gone, the server serves on.
    // (Refused, 503 or closed, until it has seen the crowd's connections close.)
    let served = (0..200).find_map(|_| match hello(addr, IO_TIMEOUT) {
        Ok(response) if response.status == 200 => Some(response.text()),
        _ => {
            std::thread::sleep(Duration::from_millis(50));
            None
        }
    });
    assert_eq!(served.as_deref(), Some("Hello, World!"), "{mode}");
    assert_eq!(cgroup.oom_kills(), 0, "{mode}");
    drop(stop);
}

/// `GET /hello` on a connection of its own; an error where the server closed it unanswered, or
/// has not answered within `patience`.
fn hello(addr: SocketAddr, patience: Duration) -> std::io::Result<common::Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(patience))?;
    // A connection refused may be closed before this is written: its answer is read anyway.
    let _ = stream.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    Client::wrap(stream).try_response()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200 with the body back, whole.
    Echoed,
    /// 503, or the connection closed while the body was still being sent (the server refuses
    /// a body as soon as it cannot hold it, and closes).
    Refused,
    /// Anything else: an answer cut short, or a connection reset once its body was sent.
    Lost,
}

fn upload(addr: SocketAddr, barrier: &Barrier) -> Outcome {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&vec![b'x'; BODY]));
    barrier.wait();
    let answer = Client::wrap(stream).try_response();
    match (sent, answer) {
        (_, Ok(response)) if response.status == 503 => Outcome::Refused,
        (Ok(()), Ok(response)) if response.status == 200 && response.body.len() == BODY => {
            Outcome::Echoed
        }
        (Err(_), _) => Outcome::Refused,
        _ => Outcome::Lost,
    }
}

/// A demo server in `mode` with metrics at /metrics, run in `cgroup`: its address, and what
/// stops it.
fn serve_in(cgroup: &Cgroup, mode: &str) -> (SocketAddr, Stopping) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reactor-httpd"));
    command
        .env_remove("NOTIFY_SOCKET")
        .args(["--bind", "127.0.0.1:0", "--mode", mode, "--demo", "--quiet"])
        .args(["--metrics-path", "/metrics", "--no-pin"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped());
    cgroup.put_in(&mut command);
    let mut server = command.spawn().expect("run reactor-httpd");
    let addr = listening_addr(&mut server).unwrap_or_else(|line| panic!("{mode}: {line:?}"));
    (addr, Stopping(server))
}

/// Stops the server (SIGTERM, then waits) however the test ends, so that its cgroup empties.
struct Stopping(Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        // SAFETY: kill only signals our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        if wait_with_timeout(&mut self.0, Duration::from_secs(10)).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
