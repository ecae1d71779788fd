//! systemd socket activation, with `systemd-socket-activate` (Debian's `systemd` package; it
//! runs without systemd as init, and `.ci/run` installs it if missing; without it these tests
//! fail, saying so). It binds the sockets, and starts the server with them on the first
//! connection: the server must serve on them, and bind nothing itself.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, bounded, wait_with_timeout};

/// A port that is free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `systemd-socket-activate` listening on `ports`, to run the server with `args`.
fn activate(ports: &[u16], args: &[&str]) -> Child {
    let mut command = Command::new("systemd-socket-activate");
    for port in ports {
        command.args(["-l", &format!("127.0.0.1:{port}")]);
    }
    command
        .arg(env!("CARGO_BIN_EXE_reactor-httpd"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|err| {
        panic!("systemd-socket-activate is needed (apt-get install systemd; .ci/run does): {err}")
    });
    // It says "Listening on ..." on stderr once its sockets exist.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    for _ in ports {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.contains("Listening on"), "{line:?}");
    }
    std::thread::spawn(move || {
        let mut rest = String::new();
        while stderr.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    });
    child
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on a child of this process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(
        wait_with_timeout(&mut child, Duration::from_secs(10)).is_some(),
        "no exit after SIGTERM"
    );
}

fn listening_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// One socket passed, two loops: both share it, and the server answers on it.
#[test]
fn one_passed_socket_shared_by_two_loops() {
    bounded(30, || {
        let port = free_port();
        let mut child = activate(&[port], &["--demo", "--quiet", "--cores", "2", "--no-pin"]);
        // The first connection starts the server; the socket held its place in the queue.
        let mut client = Client::connect(([127, 0, 0, 1], port).into());
        assert_eq!(client.get("/hello").text(), "Hello, World!");
        let line = listening_line(&mut child);
        assert_eq!(
            line.trim(),
            format!("listening on http://127.0.0.1:{port} (reactor, 2 loops)")
        );
        for _ in 0..20 {
            let mut other = Client::connect(([127, 0, 0, 1], port).into());
            assert_eq!(other.get("/hello").status, 200);
        }
        stop(child);
    });
}

/// Three sockets passed (more than the two loops), in every mode: each mode serves every one of
/// them, and its listening line names the first. (A socket left alone would hold its clients
/// unanswered forever: the kernel completes their handshakes.)
#[test]
fn every_mode_serves_every_socket_passed() {
    bounded(60, || {
        for (mode, describe) in [
            ("reactor", "reactor, 2 loops"),
            ("threaded", "threaded, 64 threads"),
            ("blocking", "blocking, 1 thread"),
            ("fork", "fork, 1 process per connection"),
            ("uring", "uring, 2 rings"),
        ] {
            if !common::runnable_name(mode) {
                continue;
            }
            let ports = [free_port(), free_port(), free_port()];
            let mut child = activate(
                &ports,
                &[
                    "--demo", "--quiet", "--mode", mode, "--cores", "2", "--no-pin",
                ],
            );
            for _ in 0..3 {
                for port in ports {
                    let mut client = Client::connect(([127, 0, 0, 1], port).into());
                    let text = client.get("/hello").text();
                    assert_eq!(text, "Hello, World!", "{mode}, port {port}");
                }
            }
            assert_eq!(
                listening_line(&mut child).trim(),
                format!("listening on http://127.0.0.1:{} ({describe})", ports[0])
            );
            stop(child);
        }
    });
}

/// A `--bind` that names another address than the socket passed, or one of two that names none:
/// one line, exit 2.
#[test]
fn a_contradicting_bind_is_refused() {
    bounded(30, || {
        let port = free_port();
        let passed = format!("127.0.0.1:{port}");
        contradicted(
            port,
            &["--bind", "127.0.0.1:1"],
            "--bind 127.0.0.1:1 contradicts the socket passed in",
        );
        contradicted(
            port,
            &["--bind", &passed, "--bind", "127.0.0.2:0"],
            "--bind 127.0.0.2:0 names no socket passed in",
        );
    });
}

/// The server started on the socket of `port` with `binds` exits 2, saying `expected`.
fn contradicted(port: u16, binds: &[&str], expected: &str) {
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(env!("CARGO_BIN_EXE_reactor-httpd"))
        .arg("--demo")
        .args(binds)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("systemd-socket-activate");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    // Starting it: a connection, which it will not serve.
    let _client = Client::connect(([127, 0, 0, 1], port).into());
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exit");
    // After the activator's own lines ("Communication attempt...", "Execing..."), ours.
    let mut said = String::new();
    while stderr.read_line(&mut said).is_ok_and(|n| n > 0) {}
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(said.contains(expected), "{said:?}");
}
