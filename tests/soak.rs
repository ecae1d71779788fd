//! The soak test: minutes of mixed, partly hostile load against `--cores 2`, every response
//! checked, then the server's memory and descriptors compared with where they started.
//!
//! The one-minute runs (the reactor and the ring in plain HTTP, the reactor over TLS) run in
//! CI. The ten-minute runs are ignored by default:
//! `cargo test --release --test soak -- --ignored --nocapture`.
//!
//! Eight client threads each loop over the scenarios below until the time is up. A scenario
//! that sees anything but the exact expected answer fails the test with what it saw. Over TLS
//! every connection is a TLS one (half of the clients resume sessions, half make a full
//! handshake each time), so the same scenarios also soak rustls's buffers and the handshakes.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use common::proc::{open_fds, rss_kib};
use common::{Client, IO_TIMEOUT, TestServer, config, tempdir};
use reactor_httpd::config::{Cores, Mode};
use reactor_httpd::tls::TlsSource;

const CLIENTS: usize = 8;
const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
/// The static files: (name, size). Contents are `pattern(size)`.
const FILES: [(&str, usize); 3] = [
    ("small.txt", 1000),
    ("medium.bin", 100_000),
    ("large.bin", 3 << 20),
];
/// Served compressed as it is sent (`--compress`): text, and large enough that its compressed
/// body is many pieces.
const TEXT: &str = "text.txt";
/// Entries of the directory `many/`, listed by [`listings`].
const LISTED: usize = 2000;

const MINUTE: Duration = Duration::from_secs(60);
const TEN_MINUTES: Duration = Duration::from_secs(600);

#[test]
fn soak_one_minute() {
    soak(MINUTE, Mode::Reactor, Wire::Plain);
}

/// The io_uring driver through the same minute.
#[test]
fn soak_one_minute_uring() {
    if common::runnable(Mode::Uring) {
        soak(MINUTE, Mode::Uring, Wire::Plain);
    }
}

/// Every connection a TLS one.
#[test]
fn soak_one_minute_tls() {
    soak(MINUTE, Mode::Reactor, Wire::Tls);
}

#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes() {
    soak(TEN_MINUTES, Mode::Reactor, Wire::Plain);
}

#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes_uring() {
    if common::runnable(Mode::Uring) {
        soak(TEN_MINUTES, Mode::Uring, Wire::Plain);
    }
}

#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes_tls() {
    soak(TEN_MINUTES, Mode::Reactor, Wire::Tls);
}

#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes_uring_tls() {
    if common::runnable(Mode::Uring) {
        soak(TEN_MINUTES, Mode::Uring, Wire::Tls);
    }
}

/// A thread per connection, from a pool of workers fed by one acceptor.
#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes_threaded() {
    soak(TEN_MINUTES, Mode::Threaded, Wire::Plain);
}

/// A process per connection: the parent's descriptors and memory over hundreds of thousands of
/// children (each child's own end with it).
#[test]
#[ignore = "ten minutes; run it before a release"]
fn soak_ten_minutes_fork() {
    soak(TEN_MINUTES, Mode::Fork, Wire::Plain);
}

/// What the clients' connections are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Plain,
    Tls,
}

/// A client's connection: TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// How one client thread connects: to where, and with which TLS client (`None`: plain).
struct Dialer {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
}

impl Dialer {
    fn connect(&self) -> Client<Stream> {
        self.over(TcpStream::connect(self.addr).expect("connect"))
    }

    /// With a receive buffer of about `bytes`, so the server's sends block early.
    fn connect_with_small_window(&self, bytes: usize) -> Client<Stream> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        socket.connect(&self.addr.into()).expect("connect");
        self.over(socket.into())
    }

    fn over(&self, tcp: TcpStream) -> Client<Stream> {
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client::wrap(match &self.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = ClientConnection::new(config.clone(), name).unwrap();
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        })
    }
}

/// A certificate for localhost, written where the server reads it, and two TLS clients that
/// trust it and nothing else: one that resumes sessions and one that never does.
fn tls_setup(dir: &Path) -> (TlsSource, [Arc<ClientConfig>; 2]) {
    let made = common::self_signed(dir, &["localhost"]);
    let client = |resume: bool| {
        let mut config = common::client_trusting(made.der.clone(), rustls::DEFAULT_VERSIONS);
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(config)
    };
    let clients = [client(true), client(false)];
    let source = TlsSource::Files {
        cert: made.cert,
        key: made.key,
    };
    (source, clients)
}

#[derive(Default, Debug)]
struct Counts {
    requests: u64,
    /// Deliberate: malformed requests answered 400, connections dropped or reset mid-way.
    hostile: u64,
    scenarios: u64,
}

fn soak(length: Duration, mode: Mode, wire: Wire) {
    let dir = tempdir(&format!("soak-{mode:?}-{wire:?}"));
    let root = dir.join("www");
    fs::create_dir(&root).unwrap();
    for (name, size) in FILES {
        fs::write(root.join(name), pattern(size)).unwrap();
    }
    fs::write(root.join(TEXT), text()).unwrap();
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..LISTED {
        fs::write(root.join(format!("many/entry-{i:04}.txt")), "").unwrap();
    }
    let mut cfg = config(mode);
    cfg.root = root.clone();
    cfg.metrics_path = Some("/metrics".into());
    cfg.cores = Cores::Count(2);
    cfg.compress = true;
    let tls_clients = match wire {
        Wire::Plain => [None, None],
        Wire::Tls => {
            let (source, clients) = tls_setup(&dir);
            cfg.tls = Some(source);
            clients.map(Some)
        }
    };
    let mut server = TestServer::subprocess(&cfg, |command| {
        command.stderr(Stdio::piped());
    });
    let pid = server.pid().unwrap();
    let dialers = tls_clients.map(|tls| Dialer {
        addr: server.addr,
        tls,
    });
    // Warm up before taking the baseline: buffer pools, the first pages of each file, and what
    // the allocator keeps of the peak of eight clients at once (several compressors alive
    // together hold a few MiB, which the allocator does not give back), by running every client
    // through every scenario a few times.
    run_clients(&dialers, |turns| turns < 3 * SCENARIOS.len());
    // The warm-up's own clients may still be closing: the baseline is what remains once they
    // are gone.
    let settle = Instant::now() + Duration::from_secs(2);
    let mut fds_start = open_fds(pid);
    while Instant::now() < settle {
        thread::sleep(Duration::from_millis(50));
        fds_start = fds_start.min(open_fds(pid));
    }
    let rss_start = rss_kib(pid);

    let deadline = Instant::now() + length;
    let totals = run_clients(&dialers, |_| Instant::now() < deadline);

    // Every client has gone: the server's descriptors return to the baseline once it has
    // noticed the last close.
    let settle = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > fds_start && Instant::now() < settle {
        thread::sleep(Duration::from_millis(50));
    }
    let (rss_end, fds_end) = (rss_kib(pid), open_fds(pid));
    eprintln!(
        "soak {:?} {mode:?} {wire:?}: {} scenarios, {} requests ({:.0}/s), {} hostile; RSS {} -> {} KiB, fds {} -> {}",
        length,
        totals.scenarios,
        totals.requests,
        totals.requests as f64 / length.as_secs_f64(),
        totals.hostile,
        rss_start,
        rss_end,
        fds_start,
        fds_end
    );
    assert!(
        fds_end <= fds_start,
        "descriptors leaked: {fds_start} -> {fds_end}"
    );
    // And what their buffers held of `--max-buffer-bytes` is all back (in fork mode too, where
    // the children share its counts).
    let buffered = || {
        let text = dialers[0].connect().get("/metrics").text();
        common::metric(&text, "reactor_httpd_buffered_bytes").expect("the buffered_bytes gauge")
    };
    assert!(
        common::eventually(Duration::from_secs(5), || buffered() == 0),
        "the buffers still hold {} of the budget",
        buffered()
    );
    // Buffers go back to per-loop pools and the allocator keeps some pages: a few MiB of
    // growth is the pools' working set, not a leak. A leak would grow with the run's length.
    assert!(
        rss_end <= rss_start + 8 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB"
    );
    assert!(totals.requests > 1000, "{totals:?}");

    let mut stderr = server.child().unwrap().stderr.take().unwrap();
    server.stop();
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.is_empty(), "the server logged: {log}");
}

/// Runs [`CLIENTS`] client threads, each through the scenarios in turn on fresh connections
/// (half of them with each dialer) for as long as `going` says, given how many it has run.
fn run_clients(dialers: &[Dialer; 2], going: impl Fn(usize) -> bool + Sync) -> Counts {
    let totals = Mutex::new(Counts::default());
    thread::scope(|scope| {
        for id in 0..CLIENTS {
            let (totals, going) = (&totals, &going);
            let dialer = &dialers[id % 2];
            scope.spawn(move || {
                let mut counts = Counts::default();
                while going(counts.scenarios as usize) {
                    let scenario = SCENARIOS[(id + counts.scenarios as usize) % SCENARIOS.len()];
                    scenario(dialer, &mut dialer.connect(), &mut counts);
                    counts.scenarios += 1;
                }
                let mut totals = totals.lock().unwrap();
                totals.requests += counts.requests;
                totals.hostile += counts.hostile;
                totals.scenarios += counts.scenarios;
            });
        }
    });
    totals.into_inner().unwrap()
}

/// One scenario on a fresh connection; `dialer` makes any other it needs, of the same kind.
type Scenario = fn(&Dialer, &mut Client<Stream>, &mut Counts);

const SCENARIOS: [Scenario; 17] = [
    keep_alive_hellos,
    whole_files,
    ranges,
    pipelined,
    slow_reader,
    malformed,
    gone_mid_request,
    gone_mid_response,
    chunked_echo,
    compressed,
    gone_mid_compressed,
    unread_uploads,
    gone_mid_unread_upload,
    listings,
    gone_mid_listing,
    large_echoes,
    gone_mid_large_echo,
];

fn keep_alive_hellos(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    for _ in 0..20 {
        assert_eq!(client.request(HELLO).text(), "Hello, World!");
        counts.requests += 1;
    }
}

fn whole_files(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    for (name, size) in FILES {
        let response = client.get(&format!("/{name}"));
        assert_eq!(response.status, 200, "{name}");
        assert!(response.body == pattern(size), "{name}: wrong bytes");
        counts.requests += 1;
    }
}

fn ranges(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let whole = pattern(100_000);
    for (range, from, to) in [
        ("0-99", 0, 100),
        ("99000-", 99_000, 100_000),
        ("-10", 99_990, 100_000),
    ] {
        let response = client.request(
            format!("GET /medium.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={range}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(response.status, 206, "{range}");
        assert!(response.body == whole[from..to], "{range}: wrong bytes");
        counts.requests += 1;
    }
    // All three at once: one multipart body.
    let response = client
        .request(b"GET /medium.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99,99000-,-10\r\n\r\n");
    assert_eq!(response.status, 206);
    let parts = [(0, 99), (99_000, 99_999), (99_990, 99_999)];
    let expected = common::multipart(
        &whole,
        "application/octet-stream",
        &parts,
        &common::boundary(&response),
    );
    assert!(response.body == expected, "the parts: wrong bytes");
    counts.requests += 1;
}

fn pipelined(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let mut batch = HELLO.repeat(30);
    batch.extend_from_slice(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    client.send(&batch);
    for _ in 0..30 {
        assert_eq!(client.response().text(), "Hello, World!");
    }
    assert!(client.response().body == pattern(1000));
    counts.requests += 31;
}

/// Reads a 3 MiB file 16 KiB at a time through a small receive window, so the server's
/// sendfile stops and resumes hundreds of times.
fn slow_reader(dialer: &Dialer, _: &mut Client<Stream>, counts: &mut Counts) {
    let mut slow = dialer.connect_with_small_window(16 * 1024);
    slow.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut received = Vec::with_capacity(3 << 20);
    let mut chunk = vec![0; 16 * 1024];
    let expected = pattern(3 << 20);
    // The head first, then the body in small reads with pauses.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        slow.stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 "));
    while received.len() < expected.len() {
        let want = chunk.len().min(expected.len() - received.len());
        let n = slow.stream.read(&mut chunk[..want]).unwrap();
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&chunk[..n]);
        if received.len() % (256 * 1024) < n {
            thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(received == expected, "wrong bytes");
    counts.requests += 1;
}

fn malformed(dialer: &Dialer, _: &mut Client<Stream>, counts: &mut Counts) {
    let bad: [&[u8]; 3] = [
        b"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
    ];
    for bytes in bad {
        let mut fresh = dialer.connect();
        let response = fresh.request(bytes);
        assert_eq!(response.status, 400);
        assert_eq!(response.header("connection"), Some("close"));
        counts.hostile += 1;
    }
}

fn gone_mid_request(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nonly some");
    counts.hostile += 1;
}

fn gone_mid_response(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    client.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut some = [0; 8192];
    client.stream.read_exact(&mut some).unwrap();
    // Half of these end with a reset rather than a close.
    if counts.hostile % 2 == 0 {
        socket2::SockRef::from(client.stream.tcp())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    counts.hostile += 1;
}

fn chunked_echo(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut expected = Vec::new();
    for size in [1usize, 100, 5000] {
        let piece = pattern(size);
        request.extend_from_slice(format!("{size:x};ext=1\r\n").as_bytes());
        request.extend_from_slice(&piece);
        request.extend_from_slice(b"\r\n");
        expected.extend_from_slice(&piece);
    }
    request.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    // Sent in awkward pieces.
    for piece in request.chunks(777) {
        client.stream.write_all(piece).unwrap();
    }
    assert!(client.response().body == expected);
    counts.requests += 1;
}

/// Uploads to what does not read them (a file, `/hello`), by length and chunked, in awkward
/// pieces, each dropped as it comes: 405 each, and the connection goes on.
fn unread_uploads(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let body = pattern(300_000);
    let request = two_uploads(&format!("POST /{TEXT}"), "PUT /hello", &body, 7000, b"");
    for piece in request.chunks(777) {
        client.stream.write_all(piece).unwrap();
    }
    assert_eq!(client.response().status, 405);
    assert_eq!(client.response().status, 405);
    assert_eq!(client.request(HELLO).text(), "Hello, World!");
    counts.requests += 3;
}

/// `body` twice: by length with request line `by_length` (method and target), then chunked in
/// chunks of `chunk` with `chunked`'s; `after` follows each.
fn two_uploads(by_length: &str, chunked: &str, body: &[u8], chunk: usize, after: &[u8]) -> Vec<u8> {
    let length = body.len();
    let mut request =
        format!("{by_length} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(after);
    let head = format!("{chunked} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    request.extend_from_slice(head.as_bytes());
    for piece in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request.extend_from_slice(after);
    request
}

/// Gone part way through an upload being dropped unread.
fn gone_mid_unread_upload(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let mut request =
        format!("POST /{TEXT} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n").into_bytes();
    request.extend_from_slice(&pattern(50_000));
    client.send(&request);
    counts.hostile += 1;
}

/// Bodies a handler reads, large enough that the connection's input grows (and its output, for
/// the echo): by length and chunked, in awkward pieces, each echoed whole, a request behind each.
/// What the buffers held beyond their first 8 KiB comes back (checked at the end of the soak).
fn large_echoes(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let body = pattern(300_000);
    let request = two_uploads("POST /echo", "POST /echo", &body, 70_000, HELLO);
    for piece in request.chunks(50_021) {
        client.stream.write_all(piece).unwrap();
    }
    for _ in 0..2 {
        let echoed = client.response();
        assert_eq!(echoed.status, 200);
        assert!(echoed.body == body, "an echo came back changed");
        assert_eq!(client.response().text(), "Hello, World!");
        counts.requests += 2;
    }
}

/// A large body a handler would read, two thirds sent, then the client is gone (half of the
/// time with a reset).
fn gone_mid_large_echo(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let mut request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n".to_vec();
    request.extend_from_slice(&pattern(200_000));
    client.send(&request);
    if counts.hostile % 2 == 0 {
        socket2::SockRef::from(client.stream.tcp())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    counts.hostile += 1;
}

/// A directory's listing, as HTML and as JSON (a page shared with the clients that ask for it at
/// the same time), whole, as it is or compressed in each coding in turn; then an upload to what
/// reads no body, waiting for `100 Continue`: its 405 comes at once instead, and the connection
/// closes.
fn listings(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let coding = [None, Some("gzip"), Some("br"), Some("zstd")][counts.requests as usize % 4];
    let accept = coding.map_or(String::new(), |coding| {
        format!("Accept-Encoding: {coding}\r\n")
    });
    for target in ["/many/", "/many/?format=json"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{accept}\r\n");
        let mut page = client.request(request.as_bytes());
        assert_eq!(page.status, 200, "{target}");
        assert_eq!(page.header("content-encoding"), coding, "{target}");
        if coding.is_some() {
            page.body = common::decode(coding, &client.chunked_body());
        }
        let text = page.text();
        let last = format!("entry-{:04}.txt", LISTED - 1);
        assert!(
            text.contains("entry-0000.txt") && text.contains(&last),
            "{target}: whole"
        );
    }
    client.send(b"PUT /hello HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n");
    let refused = client.response();
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("connection"), Some("close"));
    client.expect_close();
    counts.requests += 3;
}

/// Gone after the head of a listing, its page part way (every other time compressed, the
/// encoder mid-way).
fn gone_mid_listing(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let accept = ["", "Accept-Encoding: gzip\r\n"][counts.hostile as usize % 2];
    client.send(format!("GET /many/ HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes());
    assert_eq!(client.head_response().status, 200);
    counts.hostile += 1;
}

/// The text file, compressed in each coding in turn, every piece of it checked once decoded.
fn compressed(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    let coding = ["gzip", "br", "zstd"][counts.requests as usize % 3];
    client.send(
        format!("GET /{TEXT} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n").as_bytes(),
    );
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some(coding));
    let decoded = common::decode(Some(coding), &client.chunked_body());
    assert!(decoded == text(), "{coding}: wrong bytes once decoded");
    // The connection goes on after a chunked body.
    assert_eq!(client.request(HELLO).text(), "Hello, World!");
    counts.requests += 2;
}

/// Gone after the first bytes of a compressed body, with the encoder mid-way.
fn gone_mid_compressed(_: &Dialer, client: &mut Client<Stream>, counts: &mut Counts) {
    client
        .send(format!("GET /{TEXT} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n").as_bytes());
    assert_eq!(client.head_response().status, 200);
    counts.hostile += 1;
}

/// About 400 KiB of text: compressible, and many pieces of a compressed body.
fn text() -> &'static [u8] {
    static TEXT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        (0..10_000)
            .flat_map(|i| {
                format!("line {i:05}: the quick brown fox {}\n", i * 7919 % 100_003).into_bytes()
            })
            .collect()
    })
}

/// Bytes that differ at every position modulo 251, so a misplaced range or a resumed send at
/// the wrong offset shows.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}
