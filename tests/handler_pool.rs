//! The reactor's handler pool, over real sockets: handlers that block run off the loop, and the
//! loop keeps serving everyone else; responses still leave in request order; clients that
//! vanish, a full queue, a panic, a stuck handler and a shutdown are each handled. And the
//! lesson it exists for: with `--handler-threads 0` one slow handler stalls its whole loop.

mod common;

use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, TestServer, bounded, config};
use reactor_httpd::app::{Handler, StaticFiles};
use reactor_httpd::config::{Config, Cores, Limits, Mode};
use reactor_httpd::http::{Body, BufferBudget, Request, Response, Status};

/// One loop (reactor or uring), `threads` pool threads.
fn one_loop(mode: Mode, threads: usize) -> Config {
    Config {
        cores: Cores::Count(1),
        handler_threads: Some(threads),
        ..config(mode)
    }
}

/// `GET /hello` on `client`, and how long it took.
fn timed_hello(client: &mut Client) -> Duration {
    let start = Instant::now();
    let response = client.get("/hello");
    assert_eq!(response.text(), "Hello, World!");
    start.elapsed()
}

/// A handler whose `/block` says when it starts (on `started`, with its target) and returns
/// when told (on `release`), as `/block-upload` does with the request's body, or panics for
/// `/panic`; it says all three may block. Everything else is answered at
/// once, on the loop.
struct Gate {
    started: Mutex<Sender<String>>,
    release: Mutex<Receiver<()>>,
}

impl Gate {
    /// Says `request` has started, then waits to be told to go on (for at most 10 s).
    fn wait_for_release(&self, request: &Request<'_>) {
        let _ = self
            .started
            .lock()
            .unwrap()
            .send(request.target.to_string());
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
    }
}

impl Handler for Gate {
    fn handle(&self, request: &Request<'_>) -> Response {
        match request.path {
            "/block" => {
                self.wait_for_release(request);
                Response::text(Status::OK, "released")
            }
            "/block-upload" => {
                self.wait_for_release(request);
                Response::new(Status::OK).with_body(Body::Bytes(request.body.to_vec()))
            }
            "/panic" => panic!("a pool handler panicked, on purpose"),
            _ => Response::text(Status::OK, "Hello, World!"),
        }
    }

    fn may_block(&self, request: &Request<'_>) -> bool {
        matches!(request.path, "/block" | "/block-upload" | "/panic")
    }
}

/// Sends `GET target` (a `/block`, for a [`Gate`]) on `client`.
fn send_block(client: &mut Client, target: &str) {
    client.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
}

/// The target of the next `/block` a [`Gate`] starts, as it says on `started`.
fn next_started(started: &Receiver<String>) -> String {
    started
        .recv_timeout(Duration::from_secs(5))
        .expect("no handler started")
}

/// A [`Gate`], the receiver of its "started" and the sender of its "release".
fn gate() -> (Gate, Receiver<String>, Sender<()>) {
    let (started, started_rx) = mpsc::channel();
    let (release_tx, release) = mpsc::channel();
    let gate = Gate {
        started: Mutex::new(started),
        release: Mutex::new(release),
    };
    (gate, started_rx, release_tx)
}

/// A server with a [`Gate`]: returns it, the receiver of "started", the sender of "release".
fn gated(config: Config) -> (TestServer, Receiver<String>, Sender<()>) {
    let (gate, started, release) = gate();
    let server = TestServer::with_handler(config, Arc::new(gate));
    (server, started, release)
}

/// 50 concurrent `/sleep?ms=200` on one loop with 8 pool threads take about
/// ceil(50 / 8) x 200 ms, and all the while `/hello` on another connection is answered at once.
fn sleeps_run_on_the_pool_while_the_loop_serves_others(mode: Mode) {
    bounded(60, move || {
        let server = TestServer::start(one_loop(mode, 8));
        let addr = server.addr;
        let start = Instant::now();
        let sleepers: Vec<_> = (0..50)
            .map(|_| {
                thread::spawn(move || {
                    let response = Client::connect(addr).get("/sleep?ms=200");
                    assert_eq!(response.text(), "slept 200 ms");
                })
            })
            .collect();
        let mut hello = server.connect();
        let mut slowest = Duration::ZERO;
        let mut hellos = 0;
        while sleepers.iter().any(|s| !s.is_finished()) {
            slowest = slowest.max(timed_hello(&mut hello));
            hellos += 1;
        }
        for sleeper in sleepers {
            sleeper.join().unwrap();
        }
        let took = start.elapsed();
        // 7 rounds of 200 ms; the lower bound shows the pool has 8 threads, not more.
        assert!(took >= Duration::from_millis(1300), "{took:?}");
        assert!(took < Duration::from_millis(4000), "{took:?}");
        assert!(hellos > 50, "{hellos} hellos");
        // A loop that ran the sleeps itself would hold /hello for 200 ms at a time.
        assert!(
            slowest < Duration::from_millis(100),
            "a /hello took {slowest:?}"
        );
    });
}

/// The lesson: with every handler on the loop, one that blocks stalls every other connection
/// of that loop for as long as it blocks.
fn without_a_pool_one_blocking_handler_stalls_the_loop(mode: Mode) {
    bounded(30, move || {
        let (server, started, release) = gated(one_loop(mode, 0));
        let mut blocked = server.connect();
        send_block(&mut blocked, "/block");
        next_started(&started);
        let mut other = server.connect();
        other.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        // Nothing comes back while the handler holds the loop...
        other
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            other.try_response().is_err(),
            "answered while the loop was blocked"
        );
        // ...and everything does once it lets go.
        other
            .stream
            .set_read_timeout(Some(common::IO_TIMEOUT))
            .unwrap();
        release.send(()).unwrap();
        assert_eq!(blocked.response().text(), "released");
        assert_eq!(other.response().text(), "Hello, World!");
    });
}

/// The same blocking handler on the pool: the other connection is answered at once.
fn with_a_pool_the_blocking_handler_stalls_nobody(mode: Mode) {
    bounded(30, move || {
        let (server, started, release) = gated(one_loop(mode, 2));
        let mut blocked = server.connect();
        send_block(&mut blocked, "/block");
        next_started(&started);
        let mut other = server.connect();
        assert!(timed_hello(&mut other) < Duration::from_millis(100));
        release.send(()).unwrap();
        assert_eq!(blocked.response().text(), "released");
    });
}

/// Pipelined behind a request on the pool, a request answered on the loop still gets its answer
/// second.
fn pipelined_responses_keep_their_order(mode: Mode) {
    bounded(30, move || {
        let server = TestServer::start(one_loop(mode, 2));
        let mut client = server.connect();
        client.send(
            b"GET /sleep?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /compute?kib=1 HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(client.response().text(), "slept 150 ms");
        assert_eq!(client.response().text(), "Hello, World!");
        assert_eq!(client.response().text(), "2233e5feed8da91d\n");
        assert_eq!(client.response().text(), "abc");
        // And the connection goes on.
        assert_eq!(client.get("/hello").text(), "Hello, World!");
    });
}

/// A client that leaves while its request is on the pool: its connection is cleaned up when
/// the answer comes back (the one connection `--max-connections 1` allows is free again).
fn a_client_that_vanishes_while_its_request_is_on_the_pool(mode: Mode) {
    bounded(30, move || {
        let (server, started, release) = gated(Config {
            max_connections: 1,
            ..one_loop(mode, 2)
        });
        let mut leaving = server.connect();
        send_block(&mut leaving, "/block");
        next_started(&started);
        drop(leaving);
        // Its connection is still counted while its request is away.
        assert_eq!(status_on_a_new_connection(&server), Some(503));
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match status_on_a_new_connection(&server) {
                Some(200) => break,
                _ if Instant::now() < deadline => thread::yield_now(),
                status => panic!("still refused after the answer came back: {status:?}"),
            }
        }
    });
}

/// The status of `GET /hello` on a new connection; a server that refuses may answer (503) and
/// close before the request is even written.
fn status_on_a_new_connection(server: &TestServer) -> Option<u16> {
    let mut client = server.connect();
    let _ = client
        .stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    client.try_response().ok().map(|response| response.status)
}

/// One pool thread and a queue of 16: of 20 slow requests at once, 17 are taken (one running,
/// sixteen waiting) and 3 get 503 at once; the refused connections stay usable.
fn a_full_queue_answers_503(mode: Mode) {
    bounded(60, move || {
        let (server, started, release) = gated(one_loop(mode, 1));
        let mut clients: Vec<Client> = (0..20).map(|_| server.connect()).collect();
        send_block(&mut clients[0], "/block");
        next_started(&started);
        for client in &mut clients[1..] {
            send_block(client, "/block");
        }
        // The refusals come at once, while the one thread is still held.
        let mut refused = [false; 20];
        for (i, client) in clients.iter_mut().enumerate().skip(1) {
            client
                .stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if let Ok(response) = client.try_response() {
                assert_eq!(response.status, 503);
                refused[i] = true;
            }
            client
                .stream
                .set_read_timeout(Some(common::IO_TIMEOUT))
                .unwrap();
        }
        assert_eq!(refused.iter().filter(|&&r| r).count(), 3);
        for _ in 0..17 {
            release.send(()).unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            if refused[i] {
                // Refused, and still usable.
                assert_eq!(client.get("/hello").status, 200);
            } else {
                assert_eq!(client.response().text(), "released");
            }
        }
    });
}

/// A handler that panics on the pool: that request gets 500, the connection and the pool go on.
fn a_panic_on_the_pool_is_a_500(mode: Mode) {
    bounded(30, move || {
        let (server, _started, release) = gated(one_loop(mode, 1));
        let mut client = server.connect();
        assert_eq!(client.get("/panic").status, 500);
        assert_eq!(client.get("/hello").status, 200);
        release.send(()).unwrap();
        send_block(&mut client, "/block");
        assert_eq!(client.response().text(), "released");
    });
}

/// A handler that never answers in time: its client gets 504 after `--handler-timeout`, and
/// the connection closes; the loop serves others meanwhile.
fn a_stuck_handler_gets_its_client_a_504(mode: Mode) {
    bounded(30, move || {
        let mut config = one_loop(mode, 1);
        config.limits.handler_timeout = Duration::from_millis(300);
        let (server, started, release) = gated(config);
        let mut client = server.connect();
        let start = Instant::now();
        send_block(&mut client, "/block");
        next_started(&started);
        assert!(timed_hello(&mut server.connect()) < Duration::from_millis(100));
        let response = client.response();
        assert_eq!(response.status, 504);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(response.header("connection"), Some("close"));
        client.expect_close();
        // The late answer is dropped; the thread is free again afterwards.
        release.send(()).unwrap();
        let mut next = server.connect();
        send_block(&mut next, "/block");
        next_started(&started);
        release.send(()).unwrap();
        assert_eq!(next.response().text(), "released");
    });
}

/// Requests that time out while still waiting in the queue are withdrawn: their clients get
/// 504, and no pool thread runs them afterwards. Once the one thread is free it runs the next
/// request at once, rather than first working through answers nobody will read.
fn a_request_timed_out_in_the_queue_never_runs(mode: Mode) {
    bounded(30, move || {
        let mut config = one_loop(mode, 1);
        config.limits.handler_timeout = Duration::from_millis(300);
        let (server, started, release) = gated(config);
        let mut running = server.connect();
        send_block(&mut running, "/block?running");
        let first = next_started(&started);
        assert_eq!(first, "/block?running");
        let mut queued: Vec<Client> = (0..3)
            .map(|i| {
                let mut client = server.connect();
                send_block(&mut client, &format!("/block?queued{i}"));
                client
            })
            .collect();
        for client in std::iter::once(&mut running).chain(&mut queued) {
            assert_eq!(client.response().status, 504);
        }
        // The running handler returns; the thread takes the next job that was not withdrawn.
        release.send(()).unwrap();
        let mut next = server.connect();
        send_block(&mut next, "/block?next");
        let second = next_started(&started);
        assert_eq!(second, "/block?next", "a withdrawn request ran");
        release.send(()).unwrap();
        assert_eq!(next.response().text(), "released");
    });
}

/// A client that resets its connection while its request waits in the queue is gone: the
/// request is withdrawn and no pool thread runs it. A client that only ends its side of the
/// stream after its request may still be waiting for the answer, and gets it.
fn a_request_reset_in_the_queue_never_runs(mode: Mode) {
    bounded(30, move || {
        let (server, started, release) = gated(one_loop(mode, 1));
        let mut running = server.connect();
        send_block(&mut running, "/block?running");
        assert_eq!(next_started(&started), "/block?running");
        let mut gone = server.connect();
        send_block(&mut gone, "/block?gone");
        let mut waiting = server.connect();
        send_block(&mut waiting, "/block?waiting");
        waiting.half_close();
        // The one loop reads in order of arrival: once a later request is answered, both are
        // queued (and, the second time, the reset has been seen too).
        let mut probe = server.connect();
        assert_eq!(probe.get("/hello").status, 200);
        gone.reset();
        assert_eq!(probe.get("/hello").status, 200);
        release.send(()).unwrap();
        assert_eq!(running.response().text(), "released");
        let next = next_started(&started);
        assert_eq!(next, "/block?waiting", "the reset request ran");
        release.send(()).unwrap();
        assert_eq!(waiting.response().text(), "released");
    });
}

/// A [`Gate`] ahead of the static files of `root`: `/block` blocks as the gate's does, every
/// other path is the files'.
struct GateBeforeFiles {
    gate: Gate,
    files: StaticFiles,
}

impl Handler for GateBeforeFiles {
    fn handle(&self, request: &Request<'_>) -> Response {
        match request.path {
            "/block" => self.gate.handle(request),
            _ => self.files.handle(request),
        }
    }

    fn handle_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        match request.path {
            "/block" => None,
            _ => self.files.handle_unless_blocking(request),
        }
    }
}

/// A directory's listing reads the whole directory (0.2 s for 100,000 entries), so it waits on
/// the pool like any request that may block: with the one thread held and the queue full, a
/// listing gets 503 at once, while a file, a redirect and a directory's `index.html` are still
/// answered on the loop. Once the pool is free the listing is served; with no pool, on the loop.
fn a_directory_listing_runs_on_the_pool(mode: Mode) {
    bounded(30, move || {
        let root = common::tempdir(&format!("pool-listing-{mode:?}"));
        std::fs::create_dir(root.join("listed")).unwrap();
        std::fs::write(root.join("listed/a.txt"), "a").unwrap();
        std::fs::create_dir(root.join("indexed")).unwrap();
        std::fs::write(root.join("indexed/index.html"), "the index").unwrap();
        std::fs::write(root.join("file.txt"), "a file").unwrap();
        let server_with = |threads| {
            let (gate, started, release) = gate();
            let files = StaticFiles::new(&root).unwrap();
            let handler = Arc::new(GateBeforeFiles { gate, files });
            let server = TestServer::with_handler(one_loop(mode, threads), handler);
            (server, started, release)
        };

        let (server, started, release) = server_with(1);
        // One thread, and a queue of 16 a thread.
        let mut running = server.connect();
        send_block(&mut running, "/block");
        next_started(&started);
        let mut queued: Vec<Client> = (0..16)
            .map(|_| {
                let mut client = server.connect();
                send_block(&mut client, "/block");
                client
            })
            .collect();
        // The one loop reads in order of arrival: once a later request is answered, the queue
        // holds all sixteen.
        let mut client = server.connect();
        assert_eq!(client.get("/file.txt").text(), "a file");
        assert_eq!(client.get("/listed/").status, 503);
        assert_eq!(client.get("/indexed/").text(), "the index");
        let redirect = client.get("/listed");
        assert_eq!(redirect.status, 301);
        assert_eq!(redirect.header("location"), Some("/listed/"));
        for _ in 0..17 {
            release.send(()).unwrap();
        }
        for waiting in std::iter::once(&mut running).chain(&mut queued) {
            assert_eq!(waiting.response().text(), "released");
        }
        let listing = client.get("/listed/");
        assert_eq!(listing.status, 200);
        assert!(listing.text().contains("a.txt"), "{}", listing.text());
        drop(server);

        let (server, _started, _release) = server_with(0);
        let listing = server.connect().get("/listed/");
        assert_eq!(listing.status, 200);
        assert!(listing.text().contains("a.txt"), "{}", listing.text());
    });
}

/// Shutdown with a request on the pool: the server waits for its answer, sends it (with
/// `Connection: close`), and only then returns.
fn shutdown_waits_for_pool_work_in_flight(mode: Mode) {
    bounded(30, move || {
        let (mut server, started, release) = gated(one_loop(mode, 1));
        let mut client = server.connect();
        send_block(&mut client, "/block");
        next_started(&started);
        server.trigger_shutdown();
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            release.send(()).unwrap();
        });
        let response = client.response();
        assert_eq!(response.text(), "released");
        assert_eq!(response.header("connection"), Some("close"));
        client.expect_close();
        server.stop();
        releaser.join().unwrap();
    });
}

/// The same routes in the binary, in every mode: the blocking modes call them inline.
#[test]
fn sleep_and_compute_in_every_mode() {
    bounded(60, || {
        for mode in common::modes() {
            let server = TestServer::start(config(mode));
            let mut client = server.connect();
            assert_eq!(client.get("/sleep?ms=20").text(), "slept 20 ms", "{mode:?}");
            assert_eq!(client.get("/compute?kib=1").text(), "2233e5feed8da91d\n");
            assert_eq!(client.get("/sleep?ms=10001").status, 400);
            assert_eq!(client.get("/compute?kib=0").status, 400);
        }
    });
}

/// A request handed to the pool takes a copy of its body along (the connection keeps its own
/// until the answer comes), and the copy counts against `--max-buffer-bytes` too: under 3 MB,
/// a 1 MB body on the pool holds about 2 MB, a second connection's 1 MB body fits in its
/// connection but not on the pool, and gets 503 at once. Released, the first gets its body back,
/// and a third is served as the first was; a 1.6 MB body, which could not be held twice even
/// alone, gets 413 on its head (until stop 77 only once it was read, and 503 instead when the
/// third's buffers had not yet been given back).
fn a_body_copied_to_the_pool_counts_against_the_budget(mode: Mode) {
    bounded(60, move || {
        const BODY: usize = 1_000_000;
        let config = Config {
            limits: Limits {
                buffers: BufferBudget::new(3_000_000),
                ..Limits::default()
            },
            metrics_path: Some("/metrics".into()),
            ..one_loop(mode, 2)
        };
        let (server, started, release) = gated(config);
        let body: Vec<u8> = (0..BODY).map(|at| (at % 251) as u8).collect();
        let upload = |client: &mut Client| {
            let head =
                format!("POST /block-upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
            client.send(head.as_bytes());
            client.send(&body);
        };
        let mut first = server.connect();
        upload(&mut first);
        assert_eq!(next_started(&started), "/block-upload");
        let mut second = server.connect();
        upload(&mut second);
        assert_eq!(second.response().status, 503);
        let metrics = server.connect().get("/metrics").text();
        let refused = common::metric(&metrics, "reactor_httpd_buffer_refused_total{loop=\"0\"}");
        assert_eq!(refused, Some(1), "{metrics}");
        release.send(()).unwrap();
        let echoed = first.response();
        assert_eq!(echoed.status, 200);
        assert!(echoed.body == body, "the first body came back changed");
        let mut third = server.connect();
        upload(&mut third);
        assert_eq!(next_started(&started), "/block-upload");
        release.send(()).unwrap();
        assert!(
            third.response().body == body,
            "the third body came back changed"
        );
        // One that could not be held twice even alone is too large: said on its head, before
        // the body is sent, whatever others hold at the time.
        let mut fourth = server.connect();
        let large = 1_600_000;
        let head =
            format!("POST /block-upload HTTP/1.1\r\nHost: t\r\nContent-Length: {large}\r\n\r\n");
        fourth.send(head.as_bytes());
        assert_eq!(fourth.response().status, 413);
    });
}

/// The pool serves both event-loop drivers the same way.
macro_rules! loop_modes {
    ($($mode:ident: $value:expr;)*) => {$(
        mod $mode {
            #[test]
            fn sleeps_run_on_the_pool_while_the_loop_serves_others() {
                if super::common::runnable($value) {
                    super::sleeps_run_on_the_pool_while_the_loop_serves_others($value);
                }
            }
            #[test]
            fn without_a_pool_one_blocking_handler_stalls_the_loop() {
                if super::common::runnable($value) {
                    super::without_a_pool_one_blocking_handler_stalls_the_loop($value);
                }
            }
            #[test]
            fn with_a_pool_the_blocking_handler_stalls_nobody() {
                if super::common::runnable($value) {
                    super::with_a_pool_the_blocking_handler_stalls_nobody($value);
                }
            }
            #[test]
            fn pipelined_responses_keep_their_order() {
                if super::common::runnable($value) {
                    super::pipelined_responses_keep_their_order($value);
                }
            }
            #[test]
            fn a_client_that_vanishes_while_its_request_is_on_the_pool() {
                if super::common::runnable($value) {
                    super::a_client_that_vanishes_while_its_request_is_on_the_pool($value);
                }
            }
            #[test]
            fn a_body_copied_to_the_pool_counts_against_the_budget() {
                if super::common::runnable($value) {
                    super::a_body_copied_to_the_pool_counts_against_the_budget($value);
                }
            }
            #[test]
            fn a_full_queue_answers_503() {
                if super::common::runnable($value) {
                    super::a_full_queue_answers_503($value);
                }
            }
            #[test]
            fn a_panic_on_the_pool_is_a_500() {
                if super::common::runnable($value) {
                    super::a_panic_on_the_pool_is_a_500($value);
                }
            }
            #[test]
            fn a_stuck_handler_gets_its_client_a_504() {
                if super::common::runnable($value) {
                    super::a_stuck_handler_gets_its_client_a_504($value);
                }
            }
            #[test]
            fn a_request_timed_out_in_the_queue_never_runs() {
                if super::common::runnable($value) {
                    super::a_request_timed_out_in_the_queue_never_runs($value);
                }
            }
            #[test]
            fn a_request_reset_in_the_queue_never_runs() {
                if super::common::runnable($value) {
                    super::a_request_reset_in_the_queue_never_runs($value);
                }
            }
            #[test]
            fn a_directory_listing_runs_on_the_pool() {
                if super::common::runnable($value) {
                    super::a_directory_listing_runs_on_the_pool($value);
                }
            }
            #[test]
            fn shutdown_waits_for_pool_work_in_flight() {
                if super::common::runnable($value) {
                    super::shutdown_waits_for_pool_work_in_flight($value);
                }
            }
        }
    )*};
}

loop_modes! {
    reactor: reactor_httpd::config::Mode::Reactor;
    uring: reactor_httpd::config::Mode::Uring;
}
