//! The binary as users run it: the listening line, exit codes, one-line errors, signals, the
//! access log.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::cgroup::{Cgroup, Limit};
use common::{Client, bounded, limit_descriptors};

const BIN: &str = env!("CARGO_BIN_EXE_reactor-httpd");

/// A running `reactor-httpd`, killed if the test fails before it exits.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Running {
    /// Starts the binary with `args` and reads its listening line, which must match `describe`
    /// (`reactor, 2 loops`).
    fn start(args: &[&str], describe: &str) -> Running {
        Running::spawn(Command::new(BIN), args, describe)
    }

    /// As [`Running::start`], in `cgroup`.
    fn start_in(cgroup: &Cgroup, args: &[&str], describe: &str) -> Running {
        let mut command = Command::new(BIN);
        cgroup.put_in(&mut command);
        Running::spawn(command, args, describe)
    }

    /// Runs `command`, the server's binary, with `args` added.
    fn spawn(mut command: Command, args: &[&str], describe: &str) -> Running {
        let mut child = command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reactor-httpd");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let line = line.trim_end();
        let rest = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (addr, how) = rest.split_once(' ').unwrap();
        assert_eq!(how, format!("({describe})"));
        let addr: SocketAddr = addr.parse().unwrap();
        assert_ne!(addr.port(), 0);
        // The address asked for (where one was, not a host name), with the port the kernel picked.
        let asked = args[args.iter().position(|&a| a == "--bind").unwrap() + 1];
        if let Ok(asked) = asked.parse::<SocketAddr>() {
            assert_eq!(addr.ip(), asked.ip(), "{line}");
        }
        Running {
            child,
            stdout,
            addr,
        }
    }

    /// The next line the server wrote on stderr (one it writes before its listening line is
    /// there already), without its line break.
    fn stderr_line(&mut self) -> String {
        let stderr = self.child.stderr.as_mut().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        // A byte at a time: what follows the line stays in the pipe for `wait`.
        while stderr.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }

    fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// How many threads the process runs, from /proc.
    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .count()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// How many of the server's descriptors (the parent's, in fork mode) name `path`.
    fn descriptors_on(&self, path: &std::path::Path) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    /// SIGTERM, and an exit 0 (`what` names the server in the failure); returns stderr.
    fn stop(self, what: &str) -> String {
        self.signal(libc::SIGTERM);
        let (code, _, stderr, _) = self.wait();
        assert_eq!(code, Some(0), "{what}: {stderr}");
        stderr
    }

    /// Waits for an exit with status 0 within the 5 s a stop may take (`what` names the server
    /// in the failure); returns the rest of stdout, and stderr.
    fn exits_cleanly(self, what: &str) -> (String, String) {
        let (code, rest, stderr, took) = self.wait();
        assert_eq!(code, Some(0), "{what}: {stderr}");
        assert!(took < Duration::from_secs(5), "{what}: {took:?}");
        (rest, stderr)
    }

    /// Waits for the exit; returns the code, the rest of stdout, stderr, and how long it took.
    fn wait(mut self) -> (Option<i32>, String, String, Duration) {
        let start = Instant::now();
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status.code(), rest, stderr, start.elapsed())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion; returns (code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, mentions: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("reactor-httpd: "), "{stderr:?}");
    assert!(
        stderr.contains(mentions),
        "{stderr:?} should mention {mentions:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn serves_logs_and_exits_cleanly_on_sigterm() {
    bounded(30, || {
        let server = Running::start(
            &[
                "--bind",
                "127.0.0.1:0",
                "--demo",
                "--cores",
                "2",
                "--no-pin",
            ],
            "reactor, 2 loops",
        );
        let mut client = server.client();
        assert_eq!(client.get("/hello").text(), "Hello, World!");
        // One per loop; none for signals, which the first loop polls. (Counted after an answer:
        // the listening line is printed before the second loop's thread starts, and the first
        // loop serves only once the others are started.)
        assert_eq!(server.threads(), 2);
        let missing = client.get("/nothing-here");
        assert_eq!(missing.status, 404);
        server.signal(libc::SIGTERM);
        let (rest, _) = server.exits_cleanly("reactor, 2 loops");
        // The access log (stdout by default), flushed at shutdown.
        let lines: Vec<&str> = rest.lines().collect();
        assert_eq!(lines.len(), 2, "{rest:?}");
        assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
        assert!(
            lines[0].ends_with("] \"GET /hello HTTP/1.1\" 200 13"),
            "{}",
            lines[0]
        );
        let logged = format!(
            "] \"GET /nothing-here HTTP/1.1\" 404 {}",
            missing.body.len()
        );
        assert!(lines[1].ends_with(&logged), "{}", lines[1]);
    });
}

/// The io_uring driver's multishot accept reports no peer address; the ring asks for it when
/// there is an access log to write it to.
#[test]
fn uring_logs_the_peer() {
    if !common::runnable_name("uring") {
        return;
    }
    bounded(30, || {
        let server = Running::start(
            &[
                "--bind",
                "127.0.0.1:0",
                "--demo",
                "--mode",
                "uring",
                "--cores",
                "1",
            ],
            "uring, 1 ring",
        );
        assert_eq!(server.client().get("/hello").status, 200);
        server.signal(libc::SIGTERM);
        let (code, rest, stderr, _) = server.wait();
        assert_eq!(code, Some(0), "{stderr}");
        let line = rest.lines().next().unwrap_or_default();
        assert!(line.starts_with("127.0.0.1 - - ["), "{rest:?}");
        assert!(line.ends_with("] \"GET /hello HTTP/1.1\" 200 13"), "{line}");
    });
}

#[test]
fn sigint_too_and_quiet_logs_nothing() {
    bounded(30, || {
        let server = Running::start(
            &["--bind", "127.0.0.1:0", "--demo", "--cores", "1", "--quiet"],
            "reactor, 1 loop",
        );
        assert_eq!(server.client().get("/hello").status, 200);
        // The loop runs on the main thread, and signals come through it: one thread in all.
        assert_eq!(server.threads(), 1);
        server.signal(libc::SIGINT);
        let (code, rest, _, _) = server.wait();
        assert_eq!(code, Some(0));
        assert_eq!(rest, "");
    });
}

/// SIGQUIT stops as SIGTERM does, in every mode: nginx takes it for its graceful stop (its
/// container image says `STOPSIGNAL SIGQUIT`, so `docker stop` sends it), and Ctrl-\\ sends it to
/// the terminal's whole process group, every child of the fork mode with the parent. An idle
/// connection is closed, a request begun is answered (its answer closing), and the process exits
/// 0 within 5 s. (Until stop 84 SIGQUIT kept its default action: the process ended at once,
/// with a core dump and every response in flight.) The blocking mode serves one connection at
/// a time, so it has no idle one to tell when the stop is seen: the request may be answered
/// just before, with keep-alive, and its connection closed just after, as idle.
#[test]
fn sigquit_stops_gracefully_like_nginx() {
    bounded(90, || {
        // Every mode signalled alone, and the fork mode's whole group too.
        let fork = every_mode().filter(|(mode, _)| *mode == "fork");
        let runs = (every_mode().map(|(mode, describe)| (mode, describe, false)))
            .chain(fork.map(|(mode, describe)| (mode, describe, true)));
        for (mode, describe, group) in runs {
            let args = [&DEMO[..], &mode_flags(mode)].concat();
            let mut command = Command::new(BIN);
            // A group of its own, to be signalled whole as a terminal signals its foreground.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let server = Running::spawn(command, &args, describe);
            let mut idle = (mode != "blocking").then(|| server.client());
            if let Some(idle) = &mut idle {
                assert_eq!(idle.get("/hello").status, 200, "{mode}");
            }
            let mut begun = server.client();
            assert_eq!(begun.get("/hello").status, 200, "{mode}");
            let request = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
            begun.send(&request[..8]);
            let pid = server.child.id() as libc::pid_t;
            let target = if group { -pid } else { pid };
            // SAFETY: kill only sends a signal, to the server (or its group) this test started.
            assert_eq!(unsafe { libc::kill(target, libc::SIGQUIT) }, 0);
            if let Some(mut idle) = idle {
                idle.expect_close();
            }
            begun.send(&request[8..]);
            let response = begun.response();
            assert_eq!(response.text(), "Hello, World!", "{mode}, group {group}");
            if mode != "blocking" {
                assert_eq!(response.header("connection"), Some("close"), "{mode}");
            }
            begun.expect_close();
            drop(begun);
            server.exits_cleanly(&format!("{mode}, group {group}"));
        }
    });
}

/// Connections the kernel has completed, requests and all, when the stop comes are answered, not
/// reset, in every mode: a stop takes what is queued on the listeners before it closes them.
/// Made certain here by holding the server stopped (SIGSTOP) while the clients connect and
/// send, so that it finds the stop and the queued connections at once; each is closed after
/// its answer. (Until stop 84 the fork
/// mode's parent left as soon as it saw the stop: the kernel reset every queued connection, in
/// most runs of a script that connected and signalled at once.)
#[test]
fn connections_queued_at_a_stop_are_answered() {
    bounded(60, || {
        for (mode, describe) in every_mode() {
            let server = Running::start(&[&DEMO[..], &mode_flags(mode)].concat(), describe);
            server.signal(libc::SIGSTOP);
            let mut queued: Vec<Client> = (0..5).map(|_| server.client()).collect();
            for client in &mut queued {
                client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
            }
            server.signal(libc::SIGTERM);
            server.signal(libc::SIGCONT);
            for (index, mut client) in queued.into_iter().enumerate() {
                let response = (client.try_response())
                    .unwrap_or_else(|err| panic!("{mode}: connection {index}: {err}"));
                assert_eq!(response.text(), "Hello, World!", "{mode}");
                // With `Connection: close`, or answered before the stop was taken (a loop that
                // does not watch the signals may get there first) and closed as idle after.
                client.expect_close();
            }
            server.exits_cleanly(mode);
        }
    });
}

#[test]
fn quiet_agrees_with_a_log_switched_off() {
    bounded(30, || {
        let args = ["--bind", "127.0.0.1:0", "--demo", "--cores", "1"];
        let server = Running::start(
            &[&args[..], &["--quiet", "--access-log", "off"]].concat(),
            "reactor, 1 loop",
        );
        assert_eq!(server.client().get("/hello").status, 200);
        server.signal(libc::SIGTERM);
        let (code, rest, _, _) = server.wait();
        assert_eq!(code, Some(0));
        assert_eq!(rest, "");
    });
}

#[test]
fn every_mode_says_how_it_runs() {
    bounded(30, || {
        for (args, describe) in [
            (
                &["--mode", "threaded", "--threads", "8"][..],
                "threaded, 8 threads",
            ),
            (&["--mode", "blocking"][..], "blocking, 1 thread"),
            (&["--mode", "fork"][..], "fork, 1 process per connection"),
            (
                &["--mode", "reactor", "--cores", "1"][..],
                "reactor, 1 loop",
            ),
            (&["--mode", "uring", "--cores", "1"][..], "uring, 1 ring"),
            (
                &["--mode", "uring", "--cores", "2", "--no-pin"][..],
                "uring, 2 rings",
            ),
        ] {
            if !common::runnable_name(args[1]) {
                continue;
            }
            let mut all = vec!["--bind", "127.0.0.1:0", "--demo", "--quiet"];
            all.extend_from_slice(args);
            let server = Running::start(&all, describe);
            assert_eq!(server.client().get("/hello").text(), "Hello, World!");
            server.signal(libc::SIGTERM);
            server.exits_cleanly(describe);
        }
    });
}

/// A handler still running when the drain time is up (`/sleep?ms=10000`: inline on a worker in
/// the blocking modes, on the pool in the loop modes) does not keep the process: it exits 0
/// within 5 s of SIGTERM all the same, and the sleeper's connection is closed by then. Stderr
/// says so, in one line (in the loop modes, before stop 79, nothing did).
#[test]
fn a_handler_still_running_does_not_hold_up_a_stop() {
    bounded(60, || {
        for (mode, describe) in [
            ("threaded", "threaded, 8 threads"),
            ("blocking", "blocking, 1 thread"),
            ("reactor", "reactor, 1 loop"),
            ("uring", "uring, 1 ring"),
        ] {
            if !common::runnable_name(mode) {
                continue;
            }
            let flags = ["--mode", mode, "--threads", "8", "--cores", "1"];
            let server = Running::start(&[&DEMO[..], &flags].concat(), describe);
            let mut sleeper = sleeping(&server, 10_000, mode);
            server.signal(libc::SIGTERM);
            let (_, stderr) = server.exits_cleanly(mode);
            let said = match mode {
                "threaded" | "blocking" => "a handler is still running 4.5s after the stop",
                _ => "1 request still in a handler at the end of the stop; closed unanswered",
            };
            assert_eq!(
                stderr.lines().filter(|line| line.contains(said)).count(),
                1,
                "{mode}: {stderr}"
            );
            sleeper.expect_close();
        }
    });
}

/// A stop signal is the stop for every loop from the moment it is delivered, not from when the
/// first loop (the one that takes the signals, on the main thread) gets round to it. Here that
/// loop is busy in a handler (`/sleep`, no pool) while the other serves: requests it reads after
/// the SIGTERM was delivered are answered as the last, `Connection: close` (or, idle when it
/// began its drain, closed). Until stop 85 the other loop answered them with keep-alive, and
/// closed the connections only once the first loop woke and took the signal.
#[test]
fn a_stop_signal_reaches_every_loop_at_once() {
    bounded(60, || {
        for (mode, describe) in [("reactor", "reactor, 2 loops"), ("uring", "uring, 2 rings")] {
            if !common::runnable_name(mode) {
                continue;
            }
            let no_pool = ["--handler-threads", "0"];
            let flags = [&DEMO[..], &mode_flags(mode), &no_pool].concat();
            let server = Running::start(&flags, describe);
            let pid = server.child.id();
            // Keep-alive connections, spread over the two loops by the kernel; which loop has
            // each is seen by which thread a short sleep on it puts in `clock_nanosleep`.
            let (mut first, mut other) = (Vec::new(), Vec::new());
            for _ in 0..16 {
                let mut client = sleeping(&server, 100, mode);
                let on_first = sleeping_threads(pid).contains(&pid);
                assert_eq!(client.response().status, 200, "{mode}");
                match on_first {
                    true => first.push(client),
                    false => other.push(client),
                }
            }
            assert!(
                !first.is_empty() && !other.is_empty(),
                "{mode}: one loop had all"
            );
            // The first loop asleep in a handler, the signal delivered (no longer pending).
            let mut sleeper = first.pop().unwrap();
            sleeper.send(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n");
            while !sleeping_threads(pid).contains(&pid) {
                std::thread::yield_now();
            }
            server.signal(libc::SIGTERM);
            while term_pending(pid) {
                std::thread::yield_now();
            }
            for client in &mut other {
                client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
            }
            let mut answered = 0;
            for client in &mut other {
                let Ok(response) = client.try_response() else {
                    continue; // idle when the drain began: closed
                };
                answered += 1;
                assert_eq!(response.header("connection"), Some("close"), "{mode}");
                client.expect_close();
            }
            // The premise: all this while the first loop slept, the signal untaken. (The stop
            // started a thread that sleeps too: the bound on the exit.)
            let premise = sleeping_threads(pid).contains(&pid);
            assert!(premise, "{mode}: the sleep ended first");
            assert!(
                answered > 0,
                "{mode}: the request that woke the loop went unanswered"
            );
            let response = sleeper.response();
            assert_eq!(response.header("connection"), Some("close"), "{mode}");
            server.exits_cleanly(mode);
        }
    });
}

/// The threads of process `pid` in `clock_nanosleep`, as `/proc/PID/task/TID/syscall` shows
/// them (the system call's number, then its arguments).
fn sleeping_threads(pid: u32) -> Vec<u32> {
    let sleeping = libc::SYS_clock_nanosleep.to_string();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    (tasks.flatten())
        .filter(|task| {
            std::fs::read_to_string(task.path().join("syscall"))
                .is_ok_and(|call| call.split(' ').next() == Some(sleeping.as_str()))
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a SIGTERM sent to process `pid` waits still to be delivered to one of its threads.
fn term_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let pending = (status.lines())
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap();
    pending & (1 << (libc::SIGTERM - 1)) != 0
}

/// A client whose `GET /sleep?ms=MS` is being handled: sent, and a thread of the server is
/// asleep in `clock_nanosleep`.
fn sleeping(server: &Running, ms: u32, mode: &str) -> Client {
    let mut sleeper = server.client();
    sleeper.send(format!("GET /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping_threads(server.child.id()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{mode}: the handler never started"
        );
        std::thread::yield_now();
    }
    sleeper
}

/// `--bind [::1]:0`: every mode serves over IPv6, says so on its listening line, and logs the
/// peer as `::1`. Skipped, saying why, only where the loopback has no IPv6 address.
#[test]
fn every_mode_serves_ipv6() {
    if let Err(error) = TcpListener::bind("[::1]:0") {
        // Straight to stderr, past the harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: no IPv6 loopback here ({error})"
        );
        return;
    }
    bounded(60, || {
        for (mode, describe) in [
            ("reactor", "reactor, 2 loops"),
            ("uring", "uring, 2 rings"),
            ("threaded", "threaded, 8 threads"),
            ("blocking", "blocking, 1 thread"),
            ("fork", "fork, 1 process per connection"),
        ] {
            if !common::runnable_name(mode) {
                continue;
            }
            let server = Running::start(
                &[
                    "--bind",
                    "[::1]:0",
                    "--demo",
                    "--mode",
                    mode,
                    "--cores",
                    "2",
                    "--no-pin",
                    "--threads",
                    "8",
                ],
                describe,
            );
            let mut client = server.client();
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode}");
            // The Host a client sends for an IPv6 address is its bracketed literal.
            let response = client.request(b"GET /hello HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
            assert_eq!(response.status, 200, "{mode}");
            drop(client);
            server.signal(libc::SIGTERM);
            let (rest, _) = server.exits_cleanly(mode);
            let lines: Vec<&str> = rest.lines().collect();
            assert_eq!(lines.len(), 2, "{mode}: {rest:?}");
            for line in lines {
                assert!(line.starts_with("::1 - - ["), "{mode}: {line}");
                assert!(
                    line.ends_with("] \"GET /hello HTTP/1.1\" 200 13"),
                    "{mode}: {line}"
                );
            }
        }
    });
}

/// `--bind` twice: every mode listens on both addresses (each loop on each), names the first on
/// its listening line and the other on stderr, and serves on both. Two loopback addresses, so
/// that it runs where the loopback has no IPv6.
#[test]
fn every_address_bound_is_served() {
    bounded(60, || {
        let both = "--bind 127.0.0.1:0 --bind 127.0.0.2:0 --demo --quiet --cores 2 --no-pin";
        for (mode, describe) in every_mode() {
            let mut args: Vec<&str> = both.split(' ').collect();
            args.extend(["--threads", "4", "--mode", mode]);
            let mut server = Running::start(&args, describe);
            let said = server.stderr_line();
            let other: SocketAddr = said
                .strip_prefix("reactor-httpd: also listening on http://")
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("{mode}: {said:?}"));
            assert_eq!(other.ip().to_string(), "127.0.0.2", "{mode}");
            // Enough connections on each that both loops take some on each address.
            for addr in [server.addr, other].into_iter().cycle().take(16) {
                let mut client = Client::connect(addr);
                assert_eq!(
                    client.get("/hello").text(),
                    "Hello, World!",
                    "{mode} {addr}"
                );
            }
            assert_eq!(server.stop(mode), "", "{mode}");
        }
    });
}

/// `--bind localhost:0`: a host name is resolved at start and listened on at its addresses (here
/// the loopback's, one or both families), as nginx's `listen localhost:8080`.
#[test]
fn a_host_name_is_listened_on_at_its_addresses() {
    bounded(30, || {
        let args = ["--bind", "localhost:0", "--demo", "--quiet", "--cores", "1"];
        let server = Running::start(&args, "reactor, 1 loop");
        assert!(server.addr.ip().is_loopback(), "{}", server.addr);
        assert_eq!(server.client().get("/hello").text(), "Hello, World!");
        server.stop("localhost");
    });
}

#[test]
fn access_log_to_a_file() {
    bounded(30, || {
        let path = std::env::temp_dir().join(format!("reactor-httpd-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = logging_to(path.to_str().unwrap());
        let mut client = server.client();
        for _ in 0..3 {
            client.get("/hello");
        }
        server.signal(libc::SIGTERM);
        let (code, rest, _, _) = server.wait();
        assert_eq!(code, Some(0));
        assert_eq!(rest, "", "nothing on stdout when logging to a file");
        let log = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(log.lines().count(), 3);
        assert!(
            log.lines()
                .all(|l| l.contains("\"GET /hello HTTP/1.1\" 200 13"))
        );
    });
}

/// A request begun and never answered, because its client closed or reset the connection part
/// way (an upload that failed, a head cut short) or the server's stop ended it at the end of
/// its drain time, gets its access log line with nothing sent, as nginx writes one: 400 for the
/// client's doing, 503 for the stop's; in the loop modes a request whole, its handler still
/// running on the pool, 499 when its client resets the connection (nginx's "client closed
/// request"), 503 when the stop ends it. A connection that sent nothing, or only empty lines,
/// gets none. Every mode, the fork mode too, whose children still serving at the end of the
/// drain time are told to end their connections themselves, and write their lines (before stop
/// 84 they were killed, and wrote none). (Until stop 84 none of these was logged: a failed
/// upload left no trace.)
#[test]
fn requests_never_answered_are_logged_as_nginx_logs_them() {
    let path = std::env::temp_dir().join(format!("reactor-httpd-cut-{}", std::process::id()));
    for (mode, describe) in every_mode() {
        let path = path.clone();
        bounded(30, move || {
            let _ = std::fs::remove_file(&path);
            let server = logging_mode(path.to_str().unwrap(), mode, describe, &[]);
            let mut answered = server.client();
            assert_eq!(answered.get("/hello").status, 200, "{mode}");
            drop(answered);
            let cut: [&[u8]; 7] = [
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                b"GET /hello HTTP/1.1\r\nHost: t\r\nAcc",
                b"GET /hel",
                // A request answered, and the next begun behind it.
                b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hel",
                b"\r\n",
                b"",
            ];
            for (index, bytes) in cut.iter().enumerate() {
                let mut client = server.client();
                client.send(bytes);
                if index == 4 {
                    assert_eq!(client.response().status, 200, "{mode}");
                }
                if index % 2 == 1 {
                    client.reset();
                }
            }
            let pool = matches!(mode, "reactor" | "uring");
            if pool {
                sleeping(&server, 3000, mode).reset();
            }
            // Held across the stop: part of a body sent; a handler that sleeps past the stop.
            let mut held = Vec::new();
            let mut client = server.client();
            client.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
            held.push(client);
            if pool {
                let mut client = server.client();
                client.send(b"GET /sleep?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n");
                held.push(client);
            }
            // Each connection's end is seen before the stop, or by the stop's drain.
            let stderr = server.stop(describe);
            let said = match pool {
                true => {
                    "reactor-httpd: 1 request still in a handler at the end of the stop; \
                         closed unanswered\n"
                }
                false => "",
            };
            assert_eq!(stderr, said, "{mode}");
            let log = std::fs::read_to_string(&path).unwrap();
            let mut lines: Vec<&str> = (log.lines())
                .map(|line| line.split_once("] ").expect("a date").1)
                .collect();
            lines.sort_unstable();
            let mut expected = vec![
                "\"-\" 400 -",
                "\"-\" 400 -",
                "\"GET /hello HTTP/1.1\" 200 13",
                "\"GET /hello HTTP/1.1\" 200 13",
                "\"GET /hello HTTP/1.1\" 400 -",
                "\"POST /echo HTTP/1.1\" 400 -",
                "\"POST /echo HTTP/1.1\" 400 -",
                "\"PUT /echo HTTP/1.1\" 503 -",
            ];
            if pool {
                expected.push("\"GET /sleep?ms=10000 HTTP/1.1\" 503 -");
                expected.push("\"GET /sleep?ms=3000 HTTP/1.1\" 499 -");
                expected.sort_unstable();
            }
            assert_eq!(lines, expected, "{mode}: {log}");
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// The demo on one loop, its access log written to `path`.
fn logging_to(path: &str) -> Running {
    logging_in(path, &["--cores", "1"], "reactor, 1 loop")
}

/// The demo in the mode `extra` names, logging to `path`.
fn logging_in(path: &str, extra: &[&str], describe: &str) -> Running {
    let mut args = vec!["--bind", "127.0.0.1:0", "--demo", "--access-log", path];
    args.extend_from_slice(extra);
    Running::start(&args, describe)
}

/// The demo in `mode` as [`every_mode`] describes it (two loops, four threads), logging to
/// `path`, with `extra` flags.
fn logging_mode(path: &str, mode: &str, how: &str, extra: &[&str]) -> Running {
    logging_in(path, &[&mode_flags(mode), extra].concat(), how)
}

/// The demo on a port of its own, logging nothing.
const DEMO: [&str; 4] = ["--bind", "127.0.0.1:0", "--demo", "--quiet"];

/// The flags that run `mode` as [`every_mode`] describes it: two loops, four threads.
fn mode_flags(mode: &str) -> [&str; 7] {
    ["--mode", mode, "--cores", "2", "--no-pin", "--threads", "4"]
}

/// Each mode that runs here, and its listening line as [`logging_mode`] starts it.
fn every_mode() -> impl Iterator<Item = (&'static str, &'static str)> {
    [
        ("reactor", "reactor, 2 loops"),
        ("uring", "uring, 2 rings"),
        ("threaded", "threaded, 4 threads"),
        ("blocking", "blocking, 1 thread"),
        ("fork", "fork, 1 process per connection"),
    ]
    .into_iter()
    .filter(|(mode, _)| common::runnable_name(mode))
}

/// An access log that cannot be written (here `/dev/full`: every write fails with ENOSPC) costs
/// its lines, never a request, and is said once for the server when it begins and once at exit,
/// with the lines it cost: not once per flush, which under load is many times a second, nor once
/// per log: two loops, 64 worker threads, a child per connection, each with a log of its own.
#[test]
fn an_unwritable_access_log_is_said_once() {
    let modes: [(&[&str], &str); 4] = [
        (&["--cores", "1"], "reactor, 1 loop"),
        (&["--cores", "2", "--no-pin"], "reactor, 2 loops"),
        (&["--mode", "threaded"], "threaded, 64 threads"),
        (&["--mode", "fork"], "fork, 1 process per connection"),
    ];
    for (extra, describe) in modes {
        bounded(30, move || {
            let server = logging_in("/dev/full", extra, describe);
            // About 70 bytes a line: 3,000 lines fill the 64 KiB buffer of one log three times
            // over, and each time it is flushed; spread over six connections, several logs'.
            let batch = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
            let mut clients: Vec<Client> = (0..6).map(|_| server.client()).collect();
            for _ in 0..5 {
                for client in &mut clients {
                    client.send(&batch);
                    for _ in 0..100 {
                        assert_eq!(client.response().text(), "Hello, World!");
                    }
                }
            }
            // Fork mode's children flush as their connections end; the others' logs at exit.
            drop(clients);
            let stderr = server.stop(describe);
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 2, "{describe}: {stderr}");
            assert!(lines[0].contains("No space left on device"), "{stderr}");
            assert!(
                lines[1].ends_with("(3000 lines dropped)"),
                "{describe}: {stderr}"
            );
        });
    }
}

/// An access log whose reader stops reading (stdout a pipe that fills: a container's log driver
/// that stalls) stops no request: the lines it has no room for wait, up to a megabyte, and past
/// that are dropped, said once; once the reader reads again the log is written again, saying
/// how many lines it cost, and every line is either in it, whole, or counted. Every mode.
/// (Until stop 82 the server stopped answering once the pipe's 64 KiB were full.)
#[test]
fn a_log_reader_that_stops_stops_no_request() {
    for (mode, describe) in every_mode() {
        bounded(60, move || {
            let mut server = logging_mode("-", mode, describe, &[]);
            // 25,000 lines of about 70 bytes: past the pipe's 64 KiB and the megabyte a log
            // holds; nothing reads them yet.
            const SENT: usize = 25_000;
            let batch = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n".repeat(500);
            let mut client = server.client();
            for _ in 0..SENT / 500 {
                client.send(&batch);
                for _ in 0..500 {
                    assert_eq!(client.response().text(), "Hello, World!", "{mode}");
                }
            }
            drop(client);
            let said = server.stderr_line();
            assert!(
                said.contains("lines are dropped until it does"),
                "{mode}: {said}"
            );
            // The reader reads again; once it has, one more request, whose line must come.
            let addr = server.addr;
            let (read_some, go) = std::sync::mpsc::channel::<()>();
            let last = std::thread::spawn(move || {
                go.recv().unwrap();
                Client::connect(addr).get("/hello?last").status
            });
            let mut read = Vec::new();
            loop {
                let mut line = String::new();
                assert!(
                    server.stdout.read_line(&mut line).unwrap() > 0,
                    "{mode}: end"
                );
                if read.len() == 100 {
                    read_some.send(()).unwrap();
                }
                let done = line.contains("/hello?last");
                read.push(line);
                if done {
                    break;
                }
            }
            assert_eq!(last.join().unwrap(), 200);
            let said = server.stderr_line();
            assert!(said.contains("written again ("), "{mode}: {said}");
            server.signal(libc::SIGTERM);
            let (code, rest, stderr, _) = server.wait();
            assert_eq!(code, Some(0), "{mode}: {stderr}");
            // Every line whole; with those dropped, one for each request.
            read.extend(rest.lines().map(|line| format!("{line}\n")));
            for line in &read {
                assert!(
                    line.starts_with("127.0.0.1 - - [") && line.ends_with("\" 200 13\n"),
                    "{mode}: {line:?}"
                );
            }
            let dropped: usize = [said.as_str(), stderr.as_str()]
                .iter()
                .flat_map(|text| {
                    text.split(" lines dropped)").filter_map(|part| {
                        part.rsplit('(')
                            .next()
                            .and_then(|n| n.parse::<usize>().ok())
                    })
                })
                .sum();
            assert!(dropped > 0, "{mode}");
            assert_eq!(read.len() + dropped, SENT + 1, "{mode}: {said} {stderr}");
        });
    }
}

/// The cores this process may run on (not the CPU time a cgroup allows it: see
/// [`auto_loops_follow_a_cgroups_cpu_limit`]).
fn core_count() -> usize {
    core_affinity::get_core_ids().map_or(1, |cores| cores.len())
}

/// The cores this process may run on, as /proc says (`0-1`).
fn allowed_cores(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:"));
    line.unwrap().split_whitespace().nth(1).unwrap().to_string()
}

/// Under a cgroup's CPU limit of fewer cores than it may run on (`docker run --cpus`, a
/// Kubernetes pod's `limits.cpu` without the static CPU manager), `--cores auto` runs a loop
/// (ring) per whole CPU of the limit, unpinned; `--cores N` still pins, and without a limit
/// `auto` is a loop per core. Needs root, and at least two cores to limit one of.
#[test]
fn auto_loops_follow_a_cgroups_cpu_limit() {
    bounded(60, || {
        let cores = core_count();
        assert!(
            cores >= 2,
            "needs at least 2 cores to run under a limit of fewer"
        );
        let limit =
            Cgroup::new(Limit::cpus(cores as u64 - 1)).unwrap_or_else(|err| panic!("{err}"));
        let ours = allowed_cores("self");
        let fewer = cores - 1;
        for (mode, what) in [("reactor", "loop"), ("uring", "ring")] {
            if !common::runnable_name(mode) {
                continue;
            }
            let plural = |n: usize| match n {
                1 => format!("{mode}, 1 {what}"),
                n => format!("{mode}, {n} {what}s"),
            };
            let args = ["--bind", "127.0.0.1:0", "--mode", mode, "--demo", "--quiet"];
            let server = Running::start_in(&limit, &args, &plural(fewer));
            assert_eq!(server.client().get("/hello").text(), "Hello, World!");
            // Every thread may run on every core this test may: none is pinned.
            let pid = server.child.id();
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
                let task = task.unwrap().file_name();
                let task = format!("{pid}/task/{}", task.to_string_lossy());
                assert_eq!(allowed_cores(&task), ours, "{mode}: thread {task}");
            }
            server.signal(libc::SIGTERM);
            let (code, _, stderr, _) = server.wait();
            assert_eq!(code, Some(0), "{stderr}");

            // Asked for by number, loops are pinned still, limit or not.
            let args = [&args[..], &["--cores", "1"]].concat();
            let server = Running::start_in(&limit, &args, &plural(1));
            assert_eq!(server.client().get("/hello").text(), "Hello, World!");
            let pinned = allowed_cores(&server.child.id().to_string());
            assert_ne!(pinned, ours, "{mode}");
            server.signal(libc::SIGTERM);
            assert_eq!(server.wait().0, Some(0));

            // Without the limit: a loop per core.
            let server = Running::start(&args[..6], &plural(cores));
            assert_eq!(server.client().get("/hello").text(), "Hello, World!");
            server.signal(libc::SIGTERM);
            assert_eq!(server.wait().0, Some(0));
        }
    });
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let (code, out, err) = run(&["--no-such-flag"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_one_line_error(&err, "--no-such-flag");

    let (code, _, err) = run(&["--bind", "not-an-address"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "not-an-address");

    // A port alone, or an IPv6 address out of brackets: each told what to write instead.
    let (code, _, err) = run(&["--bind", "8080"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "127.0.0.1:8080 for this machine, 0.0.0.0:8080");
    let (code, _, err) = run(&["--bind", "::1:8080"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "an IPv6 address goes in brackets");

    let (code, _, err) = run(&["/definitely/not/a/dir"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "/definitely/not/a/dir");

    let (code, _, err) = run(&["Cargo.toml"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "Cargo.toml");

    let too_many = (core_count() + 1).to_string();
    let (code, _, err) = run(&["--bind", "127.0.0.1:0", "--cores", &too_many]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "--no-pin");

    let (code, _, err) = run(&["--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "--bind 127.0.0.1:0 is given twice");

    for (flag, value) in [
        ("--cores", "0"),
        ("--cores", "1025"),
        ("--threads", "10001"),
        // Times: more than 0 (but keep-alive's, where 0 turns it off), at most a day, and not
        // so small that they round to nothing.
        ("--header-timeout", "0"),
        ("--send-timeout", "86400.5"),
        ("--keep-alive-timeout", "1e-12"),
        ("--keep-alive-timeout", "NaN"),
    ] {
        let (code, _, err) = run(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}");
        assert_one_line_error(&err, flag);
    }

    let (code, _, err) = run(&["--header-timeout", "soon"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "--header-timeout");

    // A log asked for and silenced in one command line: said, not lost. Stdout named
    // explicitly is a log asked for too.
    for log in ["/tmp/access.log", "-"] {
        let (code, _, err) = run(&["--quiet", "--access-log", log]);
        assert_eq!(code, Some(2));
        assert_one_line_error(&err, "--quiet");
    }

    // A required argument missing: named, on the one line.
    let (code, _, err) = run(&["--tls-cert", "cert.pem"]);
    assert_eq!(code, Some(2));
    assert_one_line_error(&err, "--tls-key");
}

#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = run(&["--bind", &addr]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_one_line_error(&err, &addr);
    // The second of two addresses taken: the same, in every mode.
    for (mode, _) in every_mode() {
        let args = ["--bind", "127.0.0.2:0", "--bind", &addr, "--mode", mode];
        let (code, out, err) = run(&args);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{mode}");
        assert_one_line_error(&err, &format!("cannot listen on {addr}"));
    }
}

/// An access log file that cannot be opened: one line naming it, exit 1, before any listening
/// line (it used to start, print the listening line, then fail with "No such file or directory").
#[test]
fn an_access_log_that_cannot_be_opened_exits_1_with_one_line() {
    bounded(30, || {
        for mode in ["reactor", "uring", "threaded", "blocking", "fork"] {
            if !common::runnable_name(mode) {
                continue;
            }
            let path = "/nonexistent-dir/access.log";
            let args = [
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--access-log",
                path,
            ];
            let (code, out, err) = run(&args);
            assert_eq!((code, out.as_str()), (Some(1), ""), "{mode}: {err}");
            assert_one_line_error(&err, path);
        }
    });
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(err.is_empty());
    for flag in [
        "--bind",
        "--mode",
        "--cores",
        "--no-pin",
        "--threads",
        "--demo",
        "--max-connections",
        "--max-header-bytes",
        "--max-body-bytes",
        "--header-timeout",
        "--body-timeout",
        "--body-min-rate",
        "--keep-alive-timeout",
        "--access-log",
        "--quiet",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

/// SIGUSR1 reopens the access log file, as logrotate's `postrotate` expects: lines from before
/// the rotation stay in the rotated file, lines after it go to the new one, none is lost or
/// written twice; in every mode, and on a connection kept alive across the rotation too (in
/// fork mode its child has a copy of the file of its own: the parent passes SIGUSR1 on). Not in
/// blocking mode, which would serve nobody else while that connection is open.
#[test]
fn sigusr1_reopens_the_access_log() {
    bounded(60, || {
        for (mode, how) in every_mode() {
            let dir = common::tempdir(&format!("log-rotation-{mode}"));
            let log = dir.join("access.log");
            let rotated = dir.join("access.log.1");
            let server = logging_mode(log.to_str().unwrap(), mode, how, &[]);
            let request = |client: &mut common::Client, n: usize| {
                let response = client.get(&format!("/hello?n={n}"));
                assert_eq!(response.status, 200);
            };
            // Kept open across the rotation, where another connection can be served meanwhile.
            let mut kept = (mode != "blocking").then(|| server.client());
            let mut client = server.client();
            for n in 0..10 {
                match &mut kept {
                    Some(kept) if n % 2 == 0 => request(kept, n),
                    _ => request(&mut client, n),
                }
            }
            drop(client);
            std::fs::rename(&log, &rotated).unwrap();
            server.signal(libc::SIGUSR1);
            // A loop interrupted by the signal reopens at once; the others at their next turn,
            // before they record anything.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut client = server.client();
            while !log.exists() {
                assert!(Instant::now() < deadline, "{mode}: no new log file");
                // A probe (not counted below) wakes a loop or worker that has not looked yet.
                request(&mut client, 1000);
            }
            for n in 10..20 {
                match &mut kept {
                    Some(kept) if n % 2 == 0 => request(kept, n),
                    _ => request(&mut client, n),
                }
            }
            drop(client);
            drop(kept);
            server.stop(mode);
            let old = std::fs::read_to_string(&rotated).unwrap();
            let new = std::fs::read_to_string(&log).unwrap();
            let numbers = |text: &str| -> Vec<usize> {
                text.lines()
                    .filter_map(|line| line.split("/hello?n=").nth(1))
                    .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
                    .filter(|&n| n != 1000)
                    .collect()
            };
            // Each file in order of the requests: lines from different loops, threads or
            // processes reach it in the order they are flushed.
            let (mut old, mut new) = (numbers(&old), numbers(&new));
            old.sort();
            new.sort();
            assert_eq!(old, (0..10).collect::<Vec<_>>(), "{mode}: rotated file");
            assert_eq!(new, (10..20).collect::<Vec<_>>(), "{mode}: new file");
        }
    });
}

/// While a server waits, with no traffic at all, its access log is written and let go, in every
/// mode: a request's line appears within about a second of its answer, a refused connection's
/// 503 too; and once logrotate has renamed the file and sent SIGUSR1, no descriptor of the
/// server names the rotated file any more (deleted, its space comes back). Until stop 75 a
/// thread of the blocking modes kept its lines until its next connection, threaded mode's
/// acceptor and fork mode's parent kept their 503s until exit, and a loop that SIGUSR1 did not
/// reach, or a thread waiting for a connection, kept the rotated file open until it had traffic.
#[test]
fn the_log_is_written_and_let_go_while_the_server_waits() {
    bounded(90, || {
        for (mode, how) in every_mode() {
            let dir = common::tempdir(&format!("log-waits-{mode}"));
            let log = dir.join("access.log");
            let rotated = dir.join("access.log.1");
            let log_arg = log.to_str().unwrap();
            let server = logging_mode(log_arg, mode, how, &["--max-connections", "1"]);
            let mut held = server.client();
            assert_eq!(held.get("/hello?n=1").status, 200, "{mode}");
            // Blocking mode serves one connection at a time and refuses none.
            let refused = (mode != "blocking").then(|| {
                let mut refused = server.client();
                assert_eq!(refused.get("/hello?n=2").status, 503, "{mode}");
                refused
            });
            drop((held, refused));
            let logged = || std::fs::read_to_string(&log).unwrap_or_default();
            let written = common::eventually(Duration::from_secs(3), || {
                let text = logged();
                text.contains("/hello?n=1 ") && (mode == "blocking" || text.contains("\" 503 "))
            });
            assert!(written, "{mode}: {:?}", logged());

            std::fs::rename(&log, &rotated).unwrap();
            server.signal(libc::SIGUSR1);
            let let_go = common::eventually(Duration::from_secs(3), || {
                server.descriptors_on(&rotated) == 0
            });
            let held = server.descriptors_on(&rotated);
            assert!(let_go, "{mode}: {held} descriptors on the rotated file");
            server.stop(mode);
        }
    });
}

/// A reopen that fails (the log's directory moved away) is said once for the server, not once
/// per loop, and the loops write on to the file they had.
#[test]
fn a_failed_reopen_is_said_once() {
    bounded(60, || {
        for (mode, how) in every_mode().filter(|(mode, _)| ["reactor", "uring"].contains(mode)) {
            let dir = common::tempdir(&format!("log-reopen-{mode}"));
            let logs = dir.join("logs");
            std::fs::create_dir(&logs).unwrap();
            let log = logs.join("access.log");
            let server = logging_mode(log.to_str().unwrap(), mode, how, &[]);
            // Both loops have the file open (they open it as they start, after the listening
            // line) before it moves.
            let opened =
                common::eventually(Duration::from_secs(3), || server.descriptors_on(&log) == 2);
            assert!(
                opened,
                "{mode}: {} descriptors on the log",
                server.descriptors_on(&log)
            );
            let moved = dir.join("moved");
            std::fs::rename(&logs, &moved).unwrap();
            server.signal(libc::SIGUSR1);
            assert_eq!(server.client().get("/hello?after").status, 200);
            let kept = moved.join("access.log");
            let written = common::eventually(Duration::from_secs(3), || {
                std::fs::read_to_string(&kept).is_ok_and(|text| text.contains("/hello?after "))
            });
            assert!(written, "{mode}: the line went to the file it had");
            let stderr = server.stop(mode);
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{mode}: {stderr}");
            assert!(lines[0].contains("cannot reopen"), "{mode}: {stderr}");
        }
    });
}

/// A log whose directory is moved away (no SIGUSR1) costs lines, never a request, in every
/// mode. Until stop 75 fork mode's children, which open the log as they start, failed, and every
/// connection was reset unanswered, with no word; a uring ring that opened it after the move
/// stopped the server.
#[test]
fn a_log_that_cannot_be_opened_costs_no_request() {
    bounded(60, || {
        for (mode, how) in every_mode() {
            let dir = common::tempdir(&format!("log-moved-{mode}"));
            let logs = dir.join("logs");
            std::fs::create_dir(&logs).unwrap();
            let server = logging_mode(logs.join("access.log").to_str().unwrap(), mode, how, &[]);
            std::fs::rename(&logs, dir.join("moved")).unwrap();
            for n in 0..5 {
                let response = server.client().get(&format!("/hello?n={n}"));
                assert_eq!(response.status, 200, "{mode}");
            }
            let stderr = server.stop(mode);
            assert!(
                stderr.lines().all(|line| line.contains("access log: ")),
                "{stderr}"
            );
        }
    });
}

/// An access log that is a FIFO: with no reader, one line and exit 1 (it hung at start, silent,
/// waiting for one); with a reader, every line reaches it, in the modes whose threads let go of
/// a regular file while they wait (they keep a FIFO: its reader would see its end).
#[test]
fn a_fifo_access_log_is_written_or_refused() {
    use std::os::unix::fs::OpenOptionsExt;
    bounded(60, || {
        let dir = common::tempdir("log-fifo");
        let fifo = dir.join("access.fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let fifo_arg = fifo.to_str().unwrap();
        let (code, out, err) = run(&["--bind", "127.0.0.1:0", "--access-log", fifo_arg]);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
        assert_one_line_error(&err, "a FIFO with no reader");

        for (mode, how) in [
            ("threaded", "threaded, 4 threads"),
            ("blocking", "blocking, 1 thread"),
            ("reactor", "reactor, 2 loops"),
        ] {
            // The reader, opened without waiting for a writer.
            let mut reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
            let server = logging_mode(fifo_arg, mode, how, &[]);
            for n in 0..3 {
                let mut client = server.client();
                assert_eq!(client.get(&format!("/hello?n={n}")).status, 200);
            }
            let mut text = Vec::new();
            let read = common::eventually(Duration::from_secs(5), || {
                let mut bytes = [0; 4096];
                if let Ok(n) = reader.read(&mut bytes) {
                    text.extend_from_slice(&bytes[..n]);
                }
                text.iter().filter(|&&byte| byte == b'\n').count() >= 3
            });
            let text = String::from_utf8_lossy(&text).into_owned();
            assert!(read, "{mode}: {text:?}");
            for n in 0..3 {
                assert!(text.contains(&format!("/hello?n={n} ")), "{mode}: {text}");
            }
            server.stop(mode);
        }
    });
}

/// A loop or ring that cannot be made (here: out of descriptors, 64 loops under a limit of 200)
/// fails the start in one line, exit 1, and before the listening line: a script that waits for
/// that line must never see it from a server that is not serving.
#[test]
fn a_loop_that_cannot_be_made_fails_the_start_before_the_listening_line() {
    bounded(30, || {
        for (mode, what) in [("reactor", "event loop"), ("uring", "ring")] {
            if !common::runnable_name(mode) {
                continue;
            }
            let mut command = Command::new(BIN);
            command.args(["--mode", mode, "--bind", "127.0.0.1:0", "--cores", "64"]);
            command.args(["--no-pin", "--quiet"]);
            limit_descriptors(&mut command, 200, 200);
            let output = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{mode}: {stderr}");
            assert_eq!(String::from_utf8_lossy(&output.stdout), "", "{mode}");
            assert_one_line_error(&stderr, &format!("cannot make {what} "));
            assert!(stderr.contains("of 64: Too many open files"), "{stderr}");
        }
    });
}

/// Where io_uring is refused (here by a seccomp filter, as Docker's default profile refuses it),
/// `--mode uring` says so in one line and exits 1; the other modes do not care.
#[test]
fn uring_refused_by_seccomp_is_one_line() {
    use std::os::unix::process::CommandExt;
    bounded(30, || {
        let mut command = Command::new(BIN);
        command.args(["--mode", "uring", "--bind", "127.0.0.1:0", "--demo"]);
        // SAFETY: runs in the child between fork and exec, and only calls prctl.
        unsafe { command.pre_exec(deny_io_uring_setup) };
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_one_line_error(&stderr, "io_uring is not available here");
        assert!(stderr.contains("--mode reactor"), "{stderr}");
    });
}

/// Installs a seccomp filter that fails io_uring_setup with EPERM and allows everything else.
fn deny_io_uring_setup() -> std::io::Result<()> {
    const IO_URING_SETUP: u32 = 425; // the same number on every architecture
    let statement = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // A = seccomp_data.nr
        statement((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0),
        // if A == io_uring_setup, fall through to the refusal; else skip it
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        statement(
            (libc::BPF_RET | libc::BPF_K) as u16,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        statement(
            (libc::BPF_RET | libc::BPF_K) as u16,
            libc::SECCOMP_RET_ALLOW,
        ),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with valid arguments; `program` outlives the call, which copies it.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
