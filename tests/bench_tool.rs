//! reactor-bench against servers whose behaviour the test controls.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestServer, bounded, config, limit_descriptors};
use reactor_httpd::app::Handler;
use reactor_httpd::config::{Cores, Mode};
use reactor_httpd::http::{Request, Response, Status};

const BENCH: &str = env!("CARGO_BIN_EXE_reactor-bench");

/// Counts requests; answers `status`; stalls once, for `stall`, at request number `stall_at`.
struct Scripted {
    count: AtomicU64,
    status: Status,
    stall_at: u64,
    stall: Duration,
}

impl Handler for Scripted {
    fn handle(&self, _request: &Request<'_>) -> Response {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.stall_at {
            std::thread::sleep(self.stall);
        }
        Response::text(self.status, "ok")
    }
}

fn scripted_server(status: Status, stall_at: u64, stall: Duration) -> (TestServer, Arc<Scripted>) {
    let handler = Arc::new(Scripted {
        count: AtomicU64::new(0),
        status,
        stall_at,
        stall,
    });
    let mut cfg = config(Mode::Reactor);
    cfg.cores = Cores::Count(1);
    (TestServer::with_handler(cfg, handler.clone()), handler)
}

/// Runs reactor-bench with `args` against `server`; returns its JSON output.
fn bench(server: &TestServer, args: &[&str]) -> String {
    bench_url(&format!("http://{}/x", server.addr), args)
}

/// Runs reactor-bench with `args` against `url`; returns its JSON output.
fn bench_url(url: &str, args: &[&str]) -> String {
    let output = run_ok(Command::new(BENCH).arg(url).args(args).arg("--json"));
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `command`, which must succeed (its stderr is the failure message).
fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A number from the flat JSON the tool prints: the value after `"key":`.
fn field(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {json}"));
    let rest = &json[at + key.len() + 3..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn counts_what_the_server_counted() {
    bounded(30, || {
        let (server, handler) = scripted_server(Status::OK, 0, Duration::ZERO);
        let json = bench(&server, &["-c", "10", "-d", "2"]);
        let counted = field(&json, "requests") as u64;
        let served = handler.count.load(Ordering::SeqCst);
        assert!(counted > 1000, "{json}");
        // The server also answered one unmeasured warm-up request per connection, may have
        // answered after the window closed what was in flight then (one per connection), and
        // requests whose connection failed are not counted.
        let lost = field(&json, "read") + field(&json, "timeout");
        assert!(
            served >= counted + 10 && served <= counted + 20 + lost as u64,
            "bench {counted}, server {served}: {json}"
        );
        assert_eq!(field(&json, "status"), 0.0);
        assert!((field(&json, "requests_per_s") - counted as f64 / 2.0).abs() < 1.0);

        let json = bench(&server, &["-c", "4", "-d", "1", "--pipeline", "8"]);
        assert!(field(&json, "requests") > 1000.0);
        assert_eq!(field(&json, "read"), 0.0);
    });
}

/// An answer is timed from its request's sending to its reading, both as they happen: never 0.
/// Until stop 75 both ends were the time its turn of the event loop began, and an answer read in
/// the turn that sent its request (the server, with a loop on the load's core, can answer while
/// the request is being written) was timed at 0 µs: with two connections to a server with a loop
/// pinned on each core, most answers were, and the report said p50 1 µs. No round trip through
/// a server over loopback takes under 5 µs.
#[test]
fn answers_are_timed_as_they_come() {
    bounded(60, || {
        let mut cfg = config(Mode::Reactor);
        cfg.cores = Cores::Auto;
        cfg.pin = true;
        let server = TestServer::start(cfg);
        for _ in 0..3 {
            let url = format!("http://{}/hello", server.addr);
            let json = bench_url(&url, &["--connections", "2", "--duration", "1"]);
            assert!(field(&json, "requests") > 0.0, "{json}");
            assert_eq!(field(&json, "status"), 0.0, "{json}");
            let p50 = field(&json, "p50");
            assert!(p50 >= 5.0, "p50 {p50} µs: {json}");
        }
    });
}

/// More threads than connections: the extra threads are not started, and the report's first
/// line says how many ran (it said the number asked for).
#[test]
fn the_report_says_the_threads_that_ran() {
    bounded(30, || {
        let (server, _) = scripted_server(Status::OK, 0, Duration::ZERO);
        let output = run_ok(
            Command::new(BENCH)
                .arg(format!("http://{}/x", server.addr))
                .args(["--connections", "2", "--threads", "4", "--duration", "1"]),
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains("2 connections, 2 thread(s)"), "{text}");
    });
}

#[test]
fn error_statuses_are_counted() {
    bounded(30, || {
        let (server, _) = scripted_server(Status::INTERNAL_SERVER_ERROR, 0, Duration::ZERO);
        let json = bench(&server, &["-c", "5", "-d", "1"]);
        let requests = field(&json, "requests");
        assert!(requests > 100.0);
        assert_eq!(field(&json, "status"), requests, "{json}");
    });
}

#[test]
fn connection_failures_are_counted() {
    bounded(30, || {
        // A port with nothing listening.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let output = Command::new(BENCH)
            .args([&format!("http://{free}/"), "-c", "2", "-d", "0.5", "--json"])
            .output()
            .unwrap();
        let json = String::from_utf8(output.stdout).unwrap();
        assert_eq!(field(&json, "requests"), 0.0);
        assert!(field(&json, "connect") > 0.0, "{json}");
        // Nothing measured: the report, and exit 1 with one line saying so.
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.starts_with("reactor-bench: no response in ") && stderr.lines().count() == 1,
            "{stderr}"
        );
    });
}

/// A server that serves one connection at a time, under a run shorter than the timeout: the
/// connections it never serves have waited the whole run, and count as timed out. Until stop 85
/// they counted as nothing, and a 1 s `compare` showed the blocking server's 100 connections
/// with no error and the p99 of the one it served.
#[test]
fn connections_never_served_in_a_short_run_are_timeouts() {
    bounded(30, || {
        let server = TestServer::start(config(Mode::Blocking));
        let url = format!("http://{}/hello", server.addr);
        let json = bench_url(&url, &["-c", "4", "-d", "0.5"]);
        assert!(field(&json, "requests") > 100.0, "{json}");
        assert_eq!(field(&json, "timeout"), 3.0, "{json}");
    });
}

/// A server of another kind, on a raw socket: each connection's answers come chunked (a chunk
/// extension, a trailer, each piece written on its own), and its fifth has no length and ends
/// with the connection, as an HTTP/1.0 server's or a CGI's does. Every one is an answer, none an
/// error: until stop 85 reactor-bench took every chunked answer for a read error (wrk reads
/// them), and counted one per close-delimited answer while it warmed up.
#[test]
fn chunked_and_close_delimited_answers_are_answers() {
    bounded(30, || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        let count = answered.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                std::thread::spawn(move || answer_raw(stream, &count));
            }
        });
        let json = bench_url(&format!("http://{addr}/"), &["-c", "4", "-d", "1"]);
        let requests = field(&json, "requests");
        assert!(requests > 100.0, "{json}");
        for error in ["connect", "read", "status", "timeout"] {
            assert_eq!(field(&json, error), 0.0, "{error}: {json}");
        }
        // Each answer was counted once: the server answered at most the measured requests, the
        // warm-up's one per connection and what was in flight at the end, one per connection.
        let served = answered.load(Ordering::SeqCst) as f64;
        assert!(
            served >= requests && served <= requests + 8.0,
            "{served}: {json}"
        );
    });
}

/// Serves one connection for `chunked_and_close_delimited_answers_are_answers`.
fn answer_raw(mut stream: std::net::TcpStream, count: &AtomicU64) {
    use std::io::{Read, Write};
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    for number in 1.. {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        count.fetch_add(1, Ordering::SeqCst);
        let pieces: &[&[u8]] = if number % 5 == 0 {
            &[
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                b"to the end",
            ]
        } else {
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5;ext=1\r\nhel",
                b"lo\r\n",
                b"0\r\nTrailer-Field: x\r\n",
                b"\r\n",
            ]
        };
        for piece in pieces {
            if stream.write_all(piece).is_err() {
                return;
            }
        }
        if number % 5 == 0 {
            return;
        }
    }
}

/// More connections than the process may open descriptors for, even at its hard limit: one
/// line and exit 1, before any load. Until stop 85 each connect past the limit failed with
/// EMFILE and was tried again every 10 ms, and the run overran its duration many times over.
#[test]
fn more_connections_than_descriptors_is_said_up_front() {
    bounded(30, || {
        let (server, _) = scripted_server(Status::OK, 0, Duration::ZERO);
        let mut command = Command::new(BENCH);
        command
            .arg(format!("http://{}/x", server.addr))
            .args(["-c", "500", "-d", "5"]);
        limit_descriptors(&mut command, 100, 100);
        let started = std::time::Instant::now();
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(started.elapsed() < Duration::from_secs(2));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.starts_with("reactor-bench: 500 connections need 516 descriptors")
                && stderr.contains("may open 100")
                && stderr.lines().count() == 1,
            "{stderr}"
        );
    });
}

/// A server that stalls for 300 ms. Closed loop, only the requests in flight see it (the
/// client stops sending meanwhile); on a fixed schedule, every request that was due during
/// the stall counts its wait.
#[test]
fn a_stall_shows_in_rate_mode() {
    bounded(60, || {
        let stall = Duration::from_millis(300);
        let (server, _) = scripted_server(Status::OK, 500, stall);
        let json = bench(&server, &["-c", "10", "-d", "2", "--rate", "1000"]);
        let p90 = field(&json, "p90");
        assert!(
            p90 >= 30_000.0,
            "rate mode p90 {p90} µs should show the stall: {json}"
        );
        assert!(field(&json, "max") >= 250_000.0, "{json}");

        let (server, _) = scripted_server(Status::OK, 500, stall);
        let json = bench(&server, &["-c", "10", "-d", "2"]);
        assert!(
            field(&json, "p99") < 30_000.0,
            "closed loop hides the stall: {json}"
        );
        assert!(field(&json, "max") >= 250_000.0, "{json}");
    });
}

#[test]
fn compare_writes_a_table_and_plots() {
    bounded(120, || {
        let out = std::env::temp_dir().join(format!("compare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut command = Command::new(BENCH);
        command
            .args([
                "compare",
                "--modes",
                "reactor,threaded,blocking",
                "--connections",
                "1,4",
            ])
            .args([
                "--duration",
                "0.3",
                "--threads",
                "2",
                "--rate",
                "500",
                "--out",
            ])
            .arg(&out)
            .args(["--server", env!("CARGO_BIN_EXE_reactor-httpd")]);
        let output = run_ok(&mut command);
        let table = String::from_utf8(output.stdout).unwrap();
        let rows = table
            .lines()
            .filter(|line| {
                line.starts_with("| reactor")
                    || line.starts_with("| threaded")
                    || line.starts_with("| blocking")
            })
            .count();
        assert_eq!(rows, 3 * 2 * 2, "{table}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("[12/12]"));
        assert_eq!(
            std::fs::read_to_string(out.join("results.md")).unwrap(),
            table
        );
        for plot in [
            "hello-requests.svg",
            "hello-p99.svg",
            "file-requests.svg",
            "file-p99.svg",
        ] {
            let svg = std::fs::read_to_string(out.join(plot)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("reactor") && svg.contains("blocking"),
                "{plot}"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    });
}

/// `--paths` and the `reactor-no-pool` mode: with the pool, four connections' 20 ms sleeps
/// overlap; without it they queue behind each other on the one loop, four times slower.
#[test]
fn compare_shows_what_the_pool_is_for() {
    bounded(120, || {
        let out = std::env::temp_dir().join(format!("compare-pool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut command = Command::new(BENCH);
        command
            .args(["compare", "--modes", "reactor,reactor-no-pool"])
            .args(["--connections", "4", "--paths", "/sleep?ms=20"])
            // The median of three: one half-second run can lose a fifth of itself to a stall of
            // the machine (CI once read 104/s with the pool, p99 194 ms).
            .args(["--runs", "3"])
            .args([
                "--duration",
                "0.5",
                "--rate",
                "40",
                "--handler-threads",
                "4",
            ])
            .arg("--out")
            .arg(&out)
            .args(["--server", env!("CARGO_BIN_EXE_reactor-httpd")]);
        let output = run_ok(&mut command);
        let table = String::from_utf8(output.stdout).unwrap();
        let rate = |mode: &str| -> f64 {
            let row = table
                .lines()
                .find(|line| line.starts_with(&format!("| {mode} |")))
                .unwrap_or_else(|| panic!("no {mode} row in {table}"));
            row.split('|').nth(3).unwrap().trim().parse().unwrap()
        };
        let (pool, no_pool) = (rate("reactor"), rate("reactor-no-pool"));
        // About 200/s against 50/s.
        assert!(pool > 2.5 * no_pool, "{pool} vs {no_pool}\n{table}");
        assert!(no_pool < 60.0, "{no_pool}\n{table}");
        assert!(out.join("sleep-ms-20-requests.svg").exists());
        std::fs::remove_dir_all(&out).unwrap();
    });
}
