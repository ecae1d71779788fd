//! Hostile clients: slow ones, greedy ones, silent ones, ones that vanish, ones at the exact
//! edge of every limit. Each test checks the hostile client gets the contract's answer *and*
//! that an ordinary client, at the same time, is served as if nothing were happening.
//!
//! Pacing a slow client with `sleep` is the behaviour under test, not synchronisation: every
//! wait for the server is a blocking read with a timeout, and every test has a time bound.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::proc::{peak_rss_kib, rss_kib};
use common::{
    Client, TestServer, bounded, budget_comes_back, budget_config, buffered, config, declined,
    echo_upload, eventually, tempdir,
};
use reactor_httpd::config::{AccessLogTarget, Config, Limits, Mode};
use reactor_httpd::http::BufferBudget;

const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";

/// An ordinary client, on its own connection, gets its answer promptly.
fn bystander_served(server: &TestServer) {
    bystander_served_at(server.addr);
}

fn bystander_served_at(addr: std::net::SocketAddr) {
    let start = Instant::now();
    let mut client = Client::connect(addr);
    assert_eq!(client.request(HELLO).text(), "Hello, World!");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// Writes `bytes` one per `every` until the server answers (or closes); returns the time from
/// the first byte to the answer and the answer's status (`None` for a close without one).
fn dribble(client: &mut Client, bytes: &[u8], every: Duration) -> (Duration, Option<u16>) {
    let start = Instant::now();
    client.stream.set_nonblocking(true).unwrap();
    for &byte in bytes {
        if client.stream.write_all(&[byte]).is_err() {
            break;
        }
        // Wait `every`, unless the server answers first.
        client.stream.set_nonblocking(false).unwrap();
        client.stream.set_read_timeout(Some(every)).unwrap();
        let mut peek = [0; 1];
        let answered = client.stream.peek(&mut peek);
        client.stream.set_nonblocking(true).unwrap();
        match answered {
            Ok(_) => break, // data or EOF
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    client.stream.set_nonblocking(false).unwrap();
    client
        .stream
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .unwrap();
    let status = client.try_response().ok().map(|r| r.status);
    (start.elapsed(), status)
}

macro_rules! modes {
    ($($name:ident: [$($mode:ident),*];)*) => {
        $(mod $name {
            $(#[test]
            #[allow(non_snake_case)]
            fn $mode() {
                let mode = reactor_httpd::config::Mode::$mode;
                if super::common::runnable(mode) {
                    super::bounded(60, move || super::$name(mode));
                }
            })*
        })*
    };
}

modes! {
    // Blocking serves one connection at a time: a bystander would wait behind the hostile
    // client by design, so those modes run only where a bystander makes sense.
    slowloris_one_byte_a_second: [Reactor, Uring, Threaded, Fork];
    slow_post_body_times_out: [Reactor, Uring, Threaded, Blocking, Fork];
    a_body_that_keeps_coming_is_not_cut_off: [Reactor, Uring, Threaded, Blocking, Fork];
    pipelining_without_reading_stays_bounded: [Reactor, Uring, Threaded];
    silent_connections_time_out: [Reactor, Uring];
    flood_past_max_connections: [Reactor, Uring, Threaded];
    a_crowd_sending_at_once_is_served: [Reactor, Uring];
    resets_mid_request_and_mid_response: [Reactor, Uring, Threaded, Blocking, Fork];
    limits_exactly_and_one_over: [Reactor, Uring, Threaded, Blocking, Fork];
    refusals_are_logged_with_their_line: [Reactor, Uring, Threaded, Blocking, Fork];
    uploads_nobody_reads_hold_no_memory: [Reactor, Uring, Threaded, Blocking];
    slow_readers_of_a_listing_share_it: [Reactor, Uring, Threaded];
    bodies_arriving_together_stay_within_the_budget: [Reactor, Uring, Threaded, Fork];
    listings_held_by_slow_readers_count_against_the_budget: [Reactor, Uring, Threaded, Fork];
}

/// An upload slower than the body timeout but steady: 2 KiB every 200 ms (10 KiB/s, above the
/// default `--body-min-rate`) for twice the 2 s body timeout. Its timer gains time as the body
/// comes, so it is answered whole (until stop 73 it got 408 at 2 s, however fast it came).
fn a_body_that_keeps_coming_is_not_cut_off(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.body_timeout = Duration::from_secs(2);
    let server = TestServer::start(cfg);
    let mut client = server.connect();
    let body: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let start = Instant::now();
    for piece in body.chunks(2048) {
        thread::sleep(Duration::from_millis(200));
        client.send(piece);
    }
    let response = client.response();
    assert_eq!(response.status, 200, "{mode:?} after {:?}", start.elapsed());
    assert!(
        response.body == body,
        "{mode:?}: the body came back changed"
    );
    assert!(
        start.elapsed() > Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// Slowloris: a head at one byte a second never completes; the header timeout (3 s here)
/// answers 408 and closes, and everyone else is served meanwhile.
fn slowloris_one_byte_a_second(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.header_timeout = Duration::from_secs(3);
    let server = TestServer::start(cfg);
    let mut slow = server.connect();
    let head = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let addr = server.addr;
    let bystanders = thread::scope(|scope| {
        let worker = scope.spawn(move || {
            for _ in 0..4 {
                bystander_served_at(addr);
                thread::sleep(Duration::from_millis(500));
            }
        });
        let answer = dribble(&mut slow, head, Duration::from_secs(1));
        worker.join().is_ok().then_some(answer)
    });
    let (elapsed, status) = bystanders.expect("bystanders were served");
    assert_eq!(status, Some(408));
    assert!(
        elapsed > Duration::from_millis(2500) && elapsed < Duration::from_millis(5000),
        "{elapsed:?}"
    );
    slow.expect_close();
}

/// Slow POST: the head arrives at once, the body at one byte a second. A byte gains the body's
/// timer a millisecond at `--body-min-rate`'s default (1 KiB/s), so trickling does not keep it
/// alive: 408 at about 3 s.
fn slow_post_body_times_out(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.body_timeout = Duration::from_secs(3);
    let server = TestServer::start(cfg);
    let mut slow = server.connect();
    slow.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    let (elapsed, status) = dribble(&mut slow, &[b'x'; 100], Duration::from_secs(1));
    assert_eq!(status, Some(408));
    assert!(
        elapsed > Duration::from_millis(2500) && elapsed < Duration::from_millis(5000),
        "{elapsed:?}"
    );
    slow.expect_close();
    if mode != Mode::Blocking {
        bystander_served(&server);
    }
}

/// A client pipelines 200,000 requests (6.6 MB) and does not read. The server stops reading
/// once its unsent output passes its bound, so its memory stays flat (the kernel's socket
/// buffers hold the rest); when the client reads, every response arrives, in order.
fn pipelining_without_reading_stays_bounded(mode: Mode) {
    // 19 MB of requests: more than the kernel will buffer for the server's socket even where
    // receive buffers may grow to 32 MiB (net.ipv4.tcp_rmem; half of that holds data). At
    // 6 MB, buffers grown that far could take it all while the server read nothing more.
    const REQUESTS: usize = 600_000;
    let server = TestServer::subprocess(&config(mode), |_| {});
    let pid = server.pid().unwrap();
    let before = rss_kib(pid);
    let mut client = Client::connect_with_small_window(server.addr, 16 * 1024);
    let mut writer = client.stream.try_clone().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let sender = thread::spawn(move || {
        let batch = HELLO.repeat(1000);
        for _ in 0..REQUESTS / 1000 {
            writer.write_all(&batch).unwrap();
            progress.fetch_add(batch.len(), Ordering::SeqCst);
        }
    });
    // Wait until the writer is stuck: the server has stopped reading.
    let mut last = 0;
    let mut still = 0;
    while still < 5 {
        thread::sleep(Duration::from_millis(100));
        let now = written.load(Ordering::SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    assert!(
        last < REQUESTS * HELLO.len(),
        "the server read everything without being read from"
    );
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 4 * 1024, "server RSS grew {grown} KiB");
    bystander_served(&server);

    // Now read: every response, in order, and the writer finishes. The responses are all the
    // same length (the Date header is fixed-width), so check each starts where it should.
    let first = client.response();
    assert_eq!(first.text(), "Hello, World!");
    let one = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        first
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect::<String>()
    )
    .len()
        + first.body.len();
    let mut chunk = client.take_unread();
    let mut n = chunk.len();
    chunk.resize(256 * 1024, 0);
    let mut stream = client.stream;
    let mut offset = 0; // bytes received after the first response
    let total = (REQUESTS - 1) * one;
    loop {
        for (i, &byte) in chunk[..n].iter().enumerate() {
            // Each response starts with `H`, and its status line says 200.
            let at = (offset + i) % one;
            if at < 13 {
                assert_eq!(
                    byte,
                    b"HTTP/1.1 200 "[at],
                    "response {}",
                    (offset + i) / one
                );
            }
        }
        offset += n;
        if offset >= total {
            break;
        }
        n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {offset} of {total} bytes");
    }
    assert_eq!(offset, total);
    sender.join().unwrap();
}

/// Ten-megabyte uploads to what never reads a body (a static file, `/hello`), by length and
/// chunked, pipelined with the requests after them: each gets its answer (405), the requests
/// behind them theirs, and the server's memory never holds the bodies: its peak resident size
/// grows by less than one of them. (Kept whole, each would have taken 10 MB.)
fn uploads_nobody_reads_hold_no_memory(mode: Mode) {
    const BODY: usize = 10_000_000;
    let root = tempdir(&format!("unread-uploads-{mode:?}"));
    fs::write(root.join("file.txt"), "a file").unwrap();
    let cfg = Config {
        root: root.to_path_buf(),
        ..config(mode)
    };
    let server = TestServer::subprocess(&cfg, |_| {});
    let pid = server.pid().unwrap();
    let before = peak_rss_kib(pid);
    let mut stream = Vec::new();
    for target in ["/file.txt", "/hello"] {
        stream.extend(
            format!("POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n").bytes(),
        );
        stream.extend(std::iter::repeat_n(b'a', BODY));
        stream.extend(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").bytes());
        stream.extend(
            format!("PUT {target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                .bytes(),
        );
        for _ in 0..BODY / 10_000 {
            stream.extend(b"2710\r\n");
            stream.extend(std::iter::repeat_n(b'c', 10_000));
            stream.extend(b"\r\n");
        }
        stream.extend(b"0\r\n\r\n");
    }
    stream.extend(b"GET /file.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&stream).unwrap());
    let statuses: Vec<u16> = (0..7).map(|_| client.response().status).collect();
    assert_eq!(statuses, [405, 200, 405, 405, 200, 405, 200]);
    sender.join().unwrap();
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(grown < 4 * 1024, "the server's peak RSS grew {grown} KiB");
    bystander_served(&server);
}

/// A large listing asked for by many clients at once, each reading slowly: made once, and held
/// once between them. Forty connections with small windows ask for the listing of 20,000
/// entries (a page of about 2 MB) and read its head only; meanwhile the server's resident size
/// grows by less than three pages (kept each, forty would have taken 80 MB or so). Then each is
/// read whole, and all forty are the same page. (Twelve in threaded mode, whose sixteen workers
/// here are each held by one slow reader.)
fn slow_readers_of_a_listing_share_it(mode: Mode) {
    const ENTRIES: usize = 20_000;
    let readers = if mode == Mode::Threaded { 12 } else { 40 };
    let root = tempdir(&format!("shared-listing-{mode:?}"));
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..ENTRIES {
        fs::write(
            root.join(format!("many/entry-{i:06}-of-a-long-listing.txt")),
            "",
        )
        .unwrap();
    }
    let cfg = Config {
        root: root.to_path_buf(),
        ..config(mode)
    };
    let server = TestServer::subprocess(&cfg, |_| {});
    let pid = server.pid().unwrap();
    bystander_served(&server);
    let before = rss_kib(pid);
    let mut readers: Vec<(Client, usize)> = (0..readers)
        .map(|_| {
            let mut client = Client::connect_with_small_window(server.addr, 4096);
            client.send(b"GET /many/ HTTP/1.1\r\nHost: t\r\n\r\n");
            (client, 0)
        })
        .collect();
    for (client, length) in &mut readers {
        let head = client.head_response();
        assert_eq!(head.status, 200);
        *length = head.header("content-length").unwrap().parse().unwrap();
    }
    let page_kib = readers[0].1 / 1024;
    assert!(page_kib > 2000, "a page of {page_kib} KiB");
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 3 * page_kib,
        "the server's RSS grew {grown} KiB for pages of {page_kib} KiB"
    );
    let pages: Vec<Vec<u8>> = readers
        .into_iter()
        .map(|(mut client, length)| {
            let mut page = client.take_unread();
            let mut rest = vec![0; length - page.len()];
            client.stream.read_exact(&mut rest).unwrap();
            page.append(&mut rest);
            page
        })
        .collect();
    assert!(pages.iter().all(|page| *page == pages[0]));
    assert!(String::from_utf8_lossy(&pages[0]).contains("entry-019999-of-a-long-listing.txt"));
    bystander_served(&server);
}

/// A listing is shared only by clients that ask within a second of each other; one that asks
/// later gets a page of its own, so clients that ask a second apart and never read would each
/// hold a whole page (ten of a 15 MB listing, 1.1 s apart, took the server to 200 MB). So a page
/// counts against `--max-buffer-bytes` while any response holds it. Here the budget is 10.5 MB:
/// a client that reads nothing holds the 7 MB HTML page of 16,000 entries (more than its socket
/// and the server's can take); the JSON listing, a page of its own of about as much, gets 503
/// meanwhile, and the server goes on serving; once the client is gone, its page's share comes
/// back and the JSON listing is served whole.
fn listings_held_by_slow_readers_count_against_the_budget(mode: Mode) {
    const ENTRIES: usize = 16_000;
    const BUDGET: usize = 10_500_000;
    let root = tempdir(&format!("held-listing-{mode:?}"));
    fs::create_dir(root.join("many")).unwrap();
    let long = "of-a-long-listing-".repeat(9);
    for i in 0..ENTRIES {
        fs::write(root.join(format!("many/entry-{i:06}-{long}x.txt")), "").unwrap();
    }
    let cfg = Config {
        root: root.to_path_buf(),
        metrics_path: Some("/metrics".into()),
        limits: Limits {
            buffers: BufferBudget::new(BUDGET),
            ..Limits::default()
        },
        ..config(mode)
    };
    let server = TestServer::subprocess(&cfg, |_| {});
    let mut holder = Client::connect_with_small_window(server.addr, 4096);
    holder.send(b"GET /many/ HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = holder.head_response();
    assert_eq!(head.status, 200);
    let page: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(
        page > 6_000_000 && 2 * page > BUDGET,
        "a page of {page} bytes"
    );
    assert!(
        eventually(Duration::from_secs(10), || buffered(&server) >= page),
        "the page is not counted: {} held",
        buffered(&server)
    );
    let mut client = server.connect();
    let refused = client.get("/many/?format=json");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(declined(&server), 1);
    bystander_served(&server);
    drop(holder);
    assert!(
        eventually(Duration::from_secs(10), || buffered(&server) == 0),
        "the reader is gone, and the server still holds {}",
        buffered(&server)
    );
    let json = client.get("/many/?format=json");
    assert_eq!(json.status, 200);
    let entries: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(entries.as_array().map(Vec::len), Some(ENTRIES));
}

/// Connections that send nothing at all are closed at the header timeout, and do not stand in
/// anyone's way meanwhile.
fn silent_connections_time_out(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.header_timeout = Duration::from_secs(2);
    let server = TestServer::start(cfg);
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    bystander_served(&server);
    for stream in &mut silent {
        stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        let mut rest = Vec::new();
        // A 408 may precede the close; nothing else may.
        match stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 408 ")),
            Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset),
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed > Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    bystander_served(&server);
}

/// 300 clients at once against `--max-connections 50`: exactly 50 are served, the others get
/// 503 and a close, nobody hangs; when the 50 leave, the server admits again.
fn flood_past_max_connections(mode: Mode) {
    let mut cfg: Config = config(mode);
    cfg.max_connections = 50;
    cfg.threads = 64;
    let server = TestServer::start(cfg);
    let mut clients: Vec<Client> = (0..300).map(|_| server.connect()).collect();
    for client in &mut clients {
        client.send(HELLO);
    }
    let mut served = Vec::new();
    let mut refused = 0;
    for mut client in clients {
        let response = client.response();
        match response.status {
            200 => served.push(client),
            503 => {
                assert_eq!(response.header("connection"), Some("close"));
                refused += 1;
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!((served.len(), refused), (50, 250));
    // The admitted keep their connections: still served.
    for client in &mut served {
        assert_eq!(client.request(HELLO).status, 200);
    }
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = server.connect();
        if client.request(HELLO).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
    }
}

/// 3,000 clients that each send 8 KiB of a request head as they connect, found by the server
/// all at once: those whose heads end are answered, and a stop then ends the server. In uring
/// mode the receives of such a crowd ran out of provided buffers, and a receive armed again in
/// the same turn ran out again at once: a ring spun on those completions for good, answering
/// none of its connections, not even a stop.
fn a_crowd_sending_at_once_is_served(mode: Mode) {
    common::raise_fd_limit();
    let mut server = TestServer::subprocess(&config(mode), |_| {});
    let (addr, pid) = (server.addr, server.pid().expect("a process"));
    let signal = |signal| {
        // SAFETY: kill only signals our own child.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    };
    // The server stopped (SIGSTOP) while the crowd connects and sends, so that it finds all of
    // them at once, each with its bytes, when it goes on.
    signal(libc::SIGSTOP);
    let head = format!(
        "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n",
        "p".repeat(8_110)
    );
    let mut crowd: Vec<Client> = (0..3_000)
        .map(|_| {
            let mut client = Client::connect(addr);
            client.send(head.as_bytes());
            client
        })
        .collect();
    signal(libc::SIGCONT);
    for client in crowd.iter_mut().step_by(60) {
        client.send(b"\r\n");
    }
    for (n, client) in crowd.iter_mut().enumerate().step_by(60) {
        let answer = client.try_response().map(|response| response.status);
        assert_eq!(answer.ok(), Some(200), "{mode:?}: client {n}");
    }
    drop(crowd);
    bystander_served(&server);
    // A stop ends it (with status 0: `stop` checks), within the contract's 5 s.
    let took = server.stop();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Resets (RST, not FIN) mid-request and mid-response: the server drops the connection, frees
/// its slot and any open file, and keeps serving.
fn resets_mid_request_and_mid_response(mode: Mode) {
    let root = tempdir(&format!("resets-{mode:?}"));
    fs::write(root.join("big.bin"), vec![7u8; 8 << 20]).unwrap();
    let mut cfg = config(mode);
    cfg.root = root.to_path_buf();
    cfg.max_connections = 2;
    let server = TestServer::start(cfg);
    for round in 0..10 {
        let mut client = admit(&server);
        if round % 2 == 0 {
            client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\npart");
        } else {
            client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut some = [0; 4096];
            client.stream.read_exact(&mut some).unwrap();
        }
        client.reset();
    }
    // Both slots are free again: two clients are admitted at once.
    let mut one = admit(&server);
    if mode != Mode::Blocking {
        let mut two = admit(&server);
        assert_eq!(two.request(HELLO).status, 200);
    }
    assert_eq!(one.request(HELLO).status, 200);
}

/// Each limit, exactly met (served) and exceeded by one byte (refused): the request line
/// (8 KiB, line ending not counted), the whole head (`--max-header-bytes`, everything up to
/// and including the blank line), the number of header fields (100), and the body
/// (`--max-body-bytes`, by Content-Length and chunked).
fn limits_exactly_and_one_over(mode: Mode) {
    let mut cfg = config(mode);
    cfg.limits.max_header_bytes = 10_000;
    cfg.limits.max_body_bytes = 5_000;
    let server = TestServer::start(cfg);
    let line = |len: usize| format!("GET /{} HTTP/1.1\r\n", "a".repeat(len - 14));
    let head_of = |len: usize| {
        let start = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: ";
        format!("{start}{}\r\n\r\n", "p".repeat(len - start.len() - 4))
    };
    let fields = |n: usize| {
        let mut head = "GET /hello HTTP/1.1\r\nHost: t\r\n".to_string();
        for i in 1..n {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head + "\r\n"
    };
    let post = |len: usize| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n{}",
            "b".repeat(len)
        )
    };
    let chunked = |len: usize| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n{}\r\n0\r\n\r\n",
            "c".repeat(len)
        )
    };
    let cases: Vec<(&str, String, u16)> = vec![
        // A request line of 8192 bytes for a missing file: 404, not 414.
        ("request line at 8 KiB", line(8192) + "Host: t\r\n\r\n", 404),
        ("request line 1 over", line(8193) + "Host: t\r\n\r\n", 414),
        ("head at the limit", head_of(10_000), 200),
        ("head 1 over", head_of(10_001), 431),
        ("100 header fields", fields(100), 200),
        ("101 header fields", fields(101), 431),
        ("body at the limit", post(5_000), 200),
        ("body 1 over", post(5_001), 413),
        ("chunked body at the limit", chunked(5_000), 200),
        ("chunked body 1 over", chunked(5_001), 413),
    ];
    assert_eq!(line(8192).len(), 8192 + 2);
    assert_eq!(head_of(10_000).len(), 10_000);
    for (name, request, status) in cases {
        let mut client = server.connect();
        let _ = client.stream.write_all(request.as_bytes());
        let response = client
            .try_response()
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(response.status, status, "{name}");
        if status == 200 {
            assert_eq!(client.request(HELLO).status, 200, "{name}: kept alive");
        } else if status != 404 {
            assert_eq!(response.header("connection"), Some("close"), "{name}");
        }
    }
}

/// Connects and makes one request, retrying while the server answers 503 (it may not yet have
/// noticed that an earlier client left).
fn admit(server: &TestServer) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = server.connect();
        if client.request(HELLO).status == 200 {
            return client;
        }
        assert!(Instant::now() < deadline, "a slot was never freed");
    }
}

/// A refused request is logged with the line it sent, as it came (escaped where it would break
/// the log's quoting), as nginx and Apache log it; `-` when no line came whole within a request
/// line's limit.
fn refusals_are_logged_with_their_line(mode: Mode) {
    let logs = tempdir(&format!("refusal-log-{mode:?}"));
    let log = logs.join("access.log");
    let mut cfg = config(mode);
    cfg.access_log = AccessLogTarget::File(log.clone());
    let mut server = TestServer::start(cfg);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let refused: [(&[u8], u16, &str); 5] = [
        // No Host: a request line any log reader can parse.
        (
            b"GET /hello HTTP/1.1\r\n\r\n",
            400,
            "\"GET /hello HTTP/1.1\" 400 ",
        ),
        // A field with a space in its name, after an empty line the parser skips.
        (
            b"\r\nGET /x HTTP/1.1\r\nHost: t\r\nBad Name: y\r\n\r\n",
            400,
            "\"GET /x HTTP/1.1\" 400 ",
        ),
        // Not a request line: shown as it came, its quote and control bytes escaped.
        (
            b"GET /a\"b c HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            "\"GET /a\\x22b c HTTP/1.1\" 400 ",
        ),
        (
            b"\x16\x03\x01\x00\x05hello\n",
            400,
            "\"\\x16\\x03\\x01\\x00\\x05hello\" 400 ",
        ),
        // Longer than a request line may be: not copied into the log.
        (long.as_bytes(), 414, "\"-\" 414 "),
    ];
    for (bytes, status, _) in &refused {
        let mut client = Client::connect(server.addr);
        client.send(bytes);
        assert_eq!(client.response().status, *status, "{mode:?}");
        client.expect_close();
    }
    bystander_served(&server);
    server.stop();
    let lines = fs::read_to_string(&log).unwrap();
    for (_, _, logged) in &refused {
        let found = lines.lines().filter(|line| line.contains(logged)).count();
        assert_eq!(found, 1, "{mode:?}: {logged} in\n{lines}");
    }
    assert!(
        lines.contains("\"GET /hello HTTP/1.1\" 200 13"),
        "{mode:?}: {lines}"
    );
    assert_eq!(
        lines.lines().count(),
        refused.len() + 1,
        "{mode:?}: {lines}"
    );
}

/// Request bodies are kept whole for their handler, so many clients each sending one, slowly or
/// never to its end, would make the server hold one for each (100 connections sending 10 MB
/// each to /echo held 1 GB). `--max-buffer-bytes` bounds them together. Here it is 2.5 MB: one
/// connection sends most of a 2 MB body and the server holds it; eight more then send 600 KB of
/// theirs, and each is told 503 and closed when its buffer would pass what is left (none of
/// them can get to 600 KB), as is one that asks to send 1 MB with `Expect: 100-continue`, before
/// it sends a byte of it. The first then ends its body and gets it back whole; once the
/// connections are gone the server holds nothing, and another 2 MB body is echoed.
fn bodies_arriving_together_stay_within_the_budget(mode: Mode) {
    const BODY: usize = 2_000_000;
    const OTHERS: usize = 8;
    let server = TestServer::subprocess(&budget_config(mode, BODY, 2_500_000), |_| {});
    let (head, body) = echo_upload(BODY);
    let mut first = server.connect();
    first.send(head.as_bytes());
    first.send(&body[..BODY - 1000]);
    assert!(
        eventually(Duration::from_secs(10), || buffered(&server)
            > BODY - 100_000),
        "the first body is not held: {}",
        buffered(&server)
    );
    let others: Vec<_> = (0..OTHERS)
        .map(|_| {
            let client = server.connect();
            let mut writer = client.stream.try_clone().unwrap();
            let head = head.clone().into_bytes();
            let part = body[..600_000].to_vec();
            let sender = thread::spawn(move || {
                // The server may close before all of it is read.
                let _ = writer
                    .write_all(&head)
                    .and_then(|()| writer.write_all(&part));
            });
            (client, sender)
        })
        .collect();
    for (mut client, sender) in others {
        let response = client.response();
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("Connection"), Some("close"));
        client.expect_close();
        sender.join().unwrap();
    }
    assert!(buffered(&server) <= 2_500_000);
    // A client that waits for `100 Continue` is told before it sends a body that cannot fit.
    let mut waiting = server.connect();
    let response = waiting.request(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n",
    );
    assert_eq!(response.status, 503);
    assert_eq!(
        declined(&server),
        OTHERS + 1,
        "each refusal is counted once"
    );
    first.send(&body[BODY - 1000..]);
    let echoed = first.response();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "the first body came back changed");
    drop(first);
    budget_comes_back(&server, &head, &body, "the connections are gone");
    bystander_served(&server);
}
