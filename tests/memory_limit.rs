//! Under a container's memory limit (`docker run --memory`, a Kubernetes pod's
//! `limits.memory`), past which the kernel kills the process and every connection with it.
//!
//! The buffer budget is what answers 503 instead, and its default (1 GiB) was above such
//! limits: 60 clients posting 10 MiB each to `/echo` got the server killed under a 256 MiB
//! limit. Its default is now a quarter of the memory the process may use. Here, under a
//! 128 MiB limit, a flood of uploads that would take far more is answered 200 or 503, in every
//! mode that serves connections at once, and the kernel kills nothing. Needs root and a cgroup
//! memory controller it may write.

mod common;

use std::io::Write;
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
    let stop = Stopping(server);

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
