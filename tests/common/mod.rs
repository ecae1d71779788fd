//! Helpers for black-box tests: a real server on 127.0.0.1 port 0, started in-process, and a raw
//! client that reads responses off a `TcpStream` exactly as they arrive.
#![allow(dead_code)] // each test file uses its own subset

pub mod cgroup;
pub mod upgrading;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown as HalfClose, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reactor_httpd::app::{self, Handler};
use reactor_httpd::config::{AccessLogTarget, Config, Cores, Mode};
use reactor_httpd::server::{Server, Shutdown};
use reactor_httpd::tls::TlsSource;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Every mode, for tests that run in each.
pub const MODES: [Mode; 5] = [
    Mode::Reactor,
    Mode::Uring,
    Mode::Threaded,
    Mode::Blocking,
    Mode::Fork,
];

/// Whether tests of `mode` can run here: false only for `Mode::Uring` where io_uring is not
/// available (an old kernel, `kernel.io_uring_disabled`, a seccomp filter as in Docker's
/// default profile). The reason is printed each time a test is skipped for it.
pub fn runnable(mode: Mode) -> bool {
    if mode != Mode::Uring {
        return true;
    }
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match CHECKED.get_or_init(reactor_httpd::server::uring_available) {
        Ok(()) => true,
        Err(reason) => {
            // Straight to stderr: the test harness hides what `eprintln!` prints in a test
            // that passes, and a skip must be seen.
            let _ = writeln!(io::stderr(), "skipped in uring mode: {reason}");
            false
        }
    }
}

/// [`MODES`] that can run here (see [`runnable`]).
pub fn modes() -> impl Iterator<Item = Mode> {
    MODES.into_iter().filter(|&mode| runnable(mode))
}

/// Runs `benches/<script>` (a python3 script that starts the binary in the mode it is given and
/// probes it over raw sockets) with `env` in every mode at once, within 120 s, and asserts that
/// each run succeeds and prints `verdict`.
pub fn script_passes_in_every_mode(
    script: &'static str,
    env: &'static [(&'static str, &'static str)],
    verdict: &'static str,
) {
    bounded(120, move || {
        let script = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
        thread::scope(|scope| {
            let runs: Vec<_> = modes()
                .map(|mode| {
                    let script = &script;
                    scope.spawn(move || {
                        let output = Command::new("python3")
                            .arg(script)
                            .arg(mode.name())
                            .env("BIN", env!("CARGO_BIN_EXE_reactor-httpd"))
                            .envs(env.iter().copied())
                            .output()
                            .unwrap_or_else(|err| panic!("python3 is needed: {err}"));
                        (mode, output)
                    })
                })
                .collect();
            for run in runs {
                let (mode, output) = run.join().unwrap();
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "{}: {stdout}{}",
                    mode.name(),
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(stdout.contains(verdict), "{}: {stdout}", mode.name());
            }
        });
    });
}

/// Runs `check` in every mode that can run here ([`modes`]), each on a thread of its own, all
/// at once (outside tools that take seconds a mode, run side by side); a panic in any fails the
/// caller once all are done.
pub fn in_every_mode_at_once(check: impl Fn(Mode) + Sync) {
    thread::scope(|scope| {
        for mode in modes() {
            let check = &check;
            scope.spawn(move || check(mode));
        }
    });
}

/// Runs curl as `setup` gives it its arguments (`.ci/run` installs curl), and returns what it
/// wrote to standard output once it has succeeded; without curl, the test fails saying so.
pub fn curl(setup: impl FnOnce(&mut Command) -> &mut Command) -> Vec<u8> {
    let output = setup(&mut Command::new("curl"))
        .output()
        .unwrap_or_else(|err| panic!("curl is needed (apt-get install curl): {err}"));
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A small site for the outside linters (tests/redbot.rs, tests/httpolice.rs): `notes.txt` (30
/// KiB of text), `app.js` (the same text) with a gzip sibling, `data.bin` (20,000 random
/// bytes) and `dir/a.txt`.
pub fn linted_site(root: &std::path::Path) {
    let text: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i}: {}\n", i * 7919 % 10007).into_bytes())
        .collect();
    std::fs::write(root.join("notes.txt"), &text).unwrap();
    std::fs::write(root.join("app.js"), &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&text).unwrap();
    std::fs::write(root.join("app.js.gz"), gz.finish().unwrap()).unwrap();
    let mut rng = Rng::seeded(7);
    let data: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
    std::fs::write(root.join("data.bin"), data).unwrap();
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/a.txt"), b"a\n").unwrap();
}

/// The same for modes by name, as the binary's `--mode` takes them.
pub fn runnable_name(name: &str) -> bool {
    name != "uring" || runnable(Mode::Uring)
}

/// No single read or write in a test waits longer than this: a hang fails instead of stalling.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The value of `series` (a name, with its labels if it has any) in a Prometheus text
/// exposition, if it is there.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// A demo server's configuration in `mode` for bodies of up to `body` bytes, its buffers sharing
/// `budget` (`--max-buffer-bytes`), with metrics at /metrics to watch them by.
pub fn budget_config(mode: Mode, body: usize, budget: usize) -> Config {
    Config {
        metrics_path: Some("/metrics".into()),
        limits: reactor_httpd::config::Limits {
            max_body_bytes: body as u64,
            buffers: reactor_httpd::http::BufferBudget::new(budget),
            ..Default::default()
        },
        ..config(mode)
    }
}

/// What the server's connections hold beyond their first 8 KiB each, as its metrics say.
pub fn buffered(server: &TestServer) -> usize {
    let text = server.connect().get("/metrics").text();
    let held = metric(&text, "reactor_httpd_buffered_bytes");
    held.expect("the buffered_bytes gauge") as usize
}

/// How many times the server's buffer budget has had no room, as its metrics say.
pub fn declined(server: &TestServer) -> usize {
    let text = server.connect().get("/metrics").text();
    let declined = metric(&text, "reactor_httpd_buffer_declined_total");
    declined.expect("the buffer_declined_total counter") as usize
}

/// The head of a `POST /echo` of `len` bytes, and a body of that length.
pub fn echo_upload(len: usize) -> (String, Vec<u8>) {
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n");
    (head, (0..len).map(|at| (at % 251) as u8).collect())
}

/// Once `gone` (what held the buffers) has let go: the server's gauge comes back to 0 within
/// 10 s, and the upload `head` and `body` ([`echo_upload`]) are echoed whole.
pub fn budget_comes_back(server: &TestServer, head: &str, body: &[u8], gone: &str) {
    assert!(
        eventually(Duration::from_secs(10), || buffered(server) == 0),
        "{gone}, and the server still holds {}",
        buffered(server)
    );
    let mut client = server.connect();
    client.send(head.as_bytes());
    client.send(body);
    let echoed = client.response();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "the body came back changed");
}

/// The sizes an access log's lines containing `request` (say `"GET /a HTTP/1.1" 200 `) end
/// with, in the order written.
pub fn logged_sizes(log: &str, request: &str) -> Vec<String> {
    (log.lines())
        .filter(|line| line.contains(request))
        .map(|line| line.rsplit(' ').next().unwrap().to_string())
        .collect()
}

/// Waits until `condition` holds, checking every 10 ms, for at most `limit`.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Runs `test` on its own thread and fails if it takes longer than `secs`.
pub fn bounded<T: Send + 'static>(secs: u64, test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    let runner = thread::spawn(move || {
        let _ = done.send(test());
    });
    match result.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test exceeded its {secs} s bound"),
        // The test panicked: re-raise its panic here.
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("sent nothing but returned"),
        },
    }
}

/// A configuration for tests: port 0, demo routes, no log, two unpinned loops.
pub fn config(mode: Mode) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        mode,
        cores: Cores::Count(2),
        pin: false,
        threads: 16,
        demo: true,
        access_log: AccessLogTarget::Off,
        ..Config::default()
    }
}

/// A server under test, on port 0. In-process on its own thread, except in fork mode, whose
/// parent must be single-threaded: that runs the binary. Dropping it shuts it down and waits.
pub struct TestServer {
    pub addr: SocketAddr,
    running: Running,
}

enum Running {
    Thread {
        shutdown: Shutdown,
        done: Option<mpsc::Receiver<io::Result<()>>>,
    },
    Process(Option<Child>),
}

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        if config.mode == Mode::Fork {
            return TestServer::process(&config);
        }
        let handler = app::build(&config).expect("open ROOT");
        TestServer::with_handler(config, handler)
    }

    /// An in-process server with a handler of the test's own (not for fork mode).
    pub fn with_handler(config: Config, handler: Arc<dyn Handler>) -> TestServer {
        assert_ne!(config.mode, Mode::Fork, "fork mode runs the binary");
        raise_fd_limit();
        let server = Server::bind(&config, handler).expect("bind");
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let (done, result) = mpsc::channel();
        thread::spawn(move || {
            let _ = done.send(server.run());
        });
        TestServer {
            addr,
            running: Running::Thread {
                shutdown,
                done: Some(result),
            },
        }
    }

    /// The binary, run with flags saying what `config` says.
    fn process(config: &Config) -> TestServer {
        TestServer::subprocess(config, |_| {})
    }

    /// The binary in its own process, with flags saying what `config` says; `setup` may add to
    /// the command (lower a limit, capture stderr) before it runs.
    pub fn subprocess(config: &Config, setup: impl FnOnce(&mut Command)) -> TestServer {
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let limits = &config.limits;
        let mut command = Command::new(env!("CARGO_BIN_EXE_reactor-httpd"));
        command
            // A service manager the tests run under is not the server's (see `notify.rs`).
            .env_remove("NOTIFY_SOCKET")
            .args(["--bind", "127.0.0.1:0", "--mode", config.mode.name()])
            .args(["--max-buffer-bytes", &limits.buffers.limit().to_string()])
            .args(["--max-connections", &config.max_connections.to_string()])
            .args(["--max-header-bytes", &limits.max_header_bytes.to_string()])
            .args(["--max-body-bytes", &limits.max_body_bytes.to_string()])
            .args(["--header-timeout", &secs(limits.header_timeout)])
            .args(["--body-timeout", &secs(limits.body_timeout)])
            .args(["--body-min-rate", &limits.body_min_rate.to_string()])
            .args(["--keep-alive-timeout", &secs(limits.keep_alive_timeout)])
            .args(["--send-timeout", &secs(limits.send_timeout)])
            .args(["--threads", &config.threads.to_string()])
            .args(["--handler-timeout", &secs(limits.handler_timeout)])
            .arg(&config.root)
            .stdout(Stdio::piped());
        // The log to a file when the test asks for one; never to stdout, which carries the
        // listening line.
        match &config.access_log {
            AccessLogTarget::File(path) => command.arg("--access-log").arg(path),
            AccessLogTarget::Off | AccessLogTarget::Stdout => command.arg("--quiet"),
        };
        if let Cores::Count(n) = config.cores {
            command.args(["--cores", &n.to_string()]);
        }
        if !config.pin {
            command.arg("--no-pin");
        }
        if let Some(path) = &config.metrics_path {
            command.args(["--metrics-path", path]);
        }
        if let Some(threads) = config.handler_threads {
            command.args(["--handler-threads", &threads.to_string()]);
        }
        if config.demo {
            command.arg("--demo");
        }
        for (name, value) in &config.headers {
            command.args(["--header", &format!("{name}: {value}")]);
        }
        if !config.precompressed {
            command.arg("--no-precompressed");
        }
        if config.compress {
            command.arg("--compress");
        }
        match &config.tls {
            Some(TlsSource::Files { cert, key }) => {
                command
                    .arg("--tls-cert")
                    .arg(cert)
                    .arg("--tls-key")
                    .arg(key);
            }
            Some(TlsSource::SelfSigned) => {
                command.arg("--tls-self-signed");
            }
            None => {}
        }
        setup(&mut command);
        let mut child = command.spawn().expect("run reactor-httpd");
        let addr =
            listening_addr(&mut child).unwrap_or_else(|line| panic!("listening line {line:?}"));
        TestServer {
            addr,
            running: Running::Process(Some(child)),
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The process id serving (the fork parent); `None` in-process.
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Process(Some(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// The server process, to read its stderr or /proc entries; `None` in-process.
    pub fn child(&mut self) -> Option<&mut Child> {
        match &mut self.running {
            Running::Process(child) => child.as_mut(),
            Running::Thread { .. } => None,
        }
    }

    /// Asks the server to shut down (SIGTERM for a process), without waiting.
    pub fn trigger_shutdown(&self) {
        match &self.running {
            Running::Thread { shutdown, .. } => shutdown.trigger(),
            Running::Process(Some(child)) => {
                // SAFETY: kill only signals our own child.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            }
            Running::Process(None) => {}
        }
    }

    /// Shuts down and waits for the server to finish (a process must exit 0); returns how long
    /// that took.
    pub fn stop(&mut self) -> Duration {
        let start = Instant::now();
        self.trigger_shutdown();
        match &mut self.running {
            Running::Thread { done, .. } => {
                if let Some(done) = done.take() {
                    let result = done
                        .recv_timeout(Duration::from_secs(10))
                        .expect("server did not stop within 10 s");
                    result.expect("server run failed");
                }
            }
            Running::Process(child) => {
                if let Some(mut child) = child.take() {
                    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
                    assert_eq!(status.and_then(|s| s.code()), Some(0), "server exit");
                }
            }
        }
        start.elapsed()
    }
}

/// The address in a server process's listening line (`listening on http://ADDR (...)`), the
/// first line of its piped stdout; `Err` with the line when there is none.
pub fn listening_addr(child: &mut Child) -> Result<SocketAddr, String> {
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout piped")).read_line(&mut line);
    line.split("://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|addr| addr.parse().ok())
        .ok_or(line)
}

/// Waits for a child to exit, killing it if it takes longer than `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if thread::panicking() {
            self.trigger_shutdown();
            if let Running::Process(Some(child)) = &mut self.running {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else {
            self.stop();
        }
    }
}

/// Makes `command`'s process start with these limits of open descriptors.
pub fn limit_descriptors(command: &mut Command, soft: u64, hard: u64) {
    // SAFETY: between fork and exec only setrlimit runs, a plain system call on a struct owned
    // by this closure.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Tests open many sockets; lift the soft descriptor limit to the hard one.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP client. It keeps bytes read past one response for the next, so pipelined
/// responses can be read one by one.
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client with a receive buffer of about `bytes`, so the server's sends block early.
    pub fn connect_with_small_window(addr: SocketAddr, bytes: usize) -> Client {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        socket.connect(&addr.into()).expect("connect");
        Client::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client::wrap(stream)
    }

    pub fn half_close(&self) {
        self.stream.shutdown(HalfClose::Write).unwrap();
    }

    /// Closes with RST: SO_LINGER with a zero timeout discards unsent data and resets.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
}

impl<S: Read + Write> Client<S> {
    /// A client on any byte stream (a TLS stream, say), its timeouts already set.
    pub fn wrap(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends `bytes` and reads one response.
    pub fn request(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// Reads one complete response (the body by its Content-Length).
    pub fn response(&mut self) -> Response {
        self.try_response().expect("read response")
    }

    /// Like [`Client::response`], for a response to HEAD (no body follows its Content-Length).
    pub fn head_response(&mut self) -> Response {
        self.read_response(true).expect("read response")
    }

    pub fn try_response(&mut self) -> io::Result<Response> {
        self.read_response(false)
    }

    pub fn try_head_response(&mut self) -> io::Result<Response> {
        self.read_response(true)
    }

    /// Bytes received but not yet part of a complete response.
    pub fn unread(&self) -> usize {
        self.buf.len()
    }

    /// Puts bytes back in front of what is still to be read.
    pub fn push_back(&mut self, bytes: &[u8]) {
        let mut joined = bytes.to_vec();
        joined.append(&mut self.buf);
        self.buf = joined;
    }

    /// Takes the bytes received but not yet read as responses, to read the rest raw.
    pub fn take_unread(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// A chunked body, undone: the bytes of its chunks. Read after `head_response`, which stops
    /// at the head of a response that has no Content-Length.
    pub fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.take_through(b"\r\n");
            let line = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(line.trim(), 16).expect("a chunk size");
            let chunk = self.take_exact(size + 2);
            assert_eq!(&chunk[size..], b"\r\n", "a chunk ends with CRLF");
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// Everything left until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    return std::mem::take(&mut self.buf);
                }
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The next bytes up to and including `end`.
    fn take_through(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            self.fill().expect("read");
        }
    }

    /// The next `n` bytes.
    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().expect("read");
        }
        self.buf.drain(..n).collect()
    }

    fn read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let head_len = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            other => panic!(
                "malformed response head {other:?}: {:?}",
                String::from_utf8_lossy(&self.buf[..head_len])
            ),
        }
        let status = parsed.code.unwrap();
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("numeric Content-Length"))
            .unwrap_or(0);
        let body_len = if head_only || status < 200 || status == 204 || status == 304 {
            0
        } else {
            length
        };
        while self.buf.len() < head_len + body_len {
            self.fill()?;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Waits for the server to close the connection (after any bytes still buffered); returns
    /// how long that took. Fails if bytes that are not an end arrive, or nothing within 10 s.
    pub fn expect_close(&mut self) -> Duration {
        let start = Instant::now();
        assert!(
            self.buf.is_empty(),
            "unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut byte = [0; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("expected a close, got data"),
            Err(err) => panic!("expected a close, got {err}"),
        }
        start.elapsed()
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What /proc says about a server process.
pub mod proc {
    use std::fs;

    /// Resident memory, in KiB.
    pub fn rss_kib(pid: u32) -> usize {
        status_kib(pid, "VmRSS:")
    }

    /// The most resident memory the process has had, in KiB.
    pub fn peak_rss_kib(pid: u32) -> usize {
        status_kib(pid, "VmHWM:")
    }

    fn status_kib(pid: u32, field: &str) -> usize {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn open_fds(pid: u32) -> usize {
        fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
    }

    /// utime + stime of the whole process, in clock ticks (100 a second on Linux).
    pub fn cpu_ticks(pid: u32) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

/// A fresh, empty directory under the system's temporary directory, unique to this process
/// and `name`, removed with all it holds when the `TempDir` is dropped. Declare it before the
/// servers that use it, so that they are dropped (and stopped) first.
pub fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("reactor-httpd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A directory from `tempdir`: a `Path` that removes itself when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Keeps the directory until the test process exits, for a fixture held in a `static`
    /// (which is never dropped).
    pub fn until_exit(self) -> std::path::PathBuf {
        static AT_EXIT: std::sync::Mutex<Vec<std::path::PathBuf>> =
            std::sync::Mutex::new(Vec::new());
        extern "C" fn remove_all() {
            if let Ok(dirs) = AT_EXIT.lock() {
                for dir in dirs.iter() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        let dir = self.0.clone();
        std::mem::forget(self);
        let mut dirs = AT_EXIT.lock().unwrap();
        if dirs.is_empty() {
            // SAFETY: `remove_all` is an `extern "C" fn()` that never unwinds, as atexit asks.
            unsafe { libc::atexit(remove_all) };
        }
        dirs.push(dir.clone());
        dir
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment variable `name` read as a number (how many streams, which seed), or
/// `default` when it is unset. Decimal, or hex after `0x` as the tests print their seeds. A
/// value that is neither fails the test: ignored, it would have run the default instead.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    let Ok(value) = std::env::var(name) else {
        return default;
    };
    let decimal = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16)
            .ok()
            .map(|n| n.to_string()),
        None => Some(value.clone()),
    };
    decimal
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("{name}={value}: not a number (decimal, or hex after 0x)"))
}

/// xorshift64*: small, seeded, the same on every machine (for generated test input).
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; nearby seeds are spread apart (xorshift needs a state other
    /// than 0).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A self-signed certificate (rcgen) and its key, written as PEM files.
pub struct SelfSigned {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub der: CertificateDer<'static>,
}

/// A certificate for `names` (host names or IP addresses), written as `cert.pem` and `key.pem`
/// in `dir`.
pub fn self_signed(dir: &std::path::Path, names: &[&str]) -> SelfSigned {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    SelfSigned {
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

/// A TLS client (rustls with ring, ALPN `http/1.1`) that trusts `cert` and nothing else.
pub fn client_trusting(
    cert: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// TLS over `tcp` (its timeouts set), the server expected to prove it is `name` (a host name or
/// an IP address).
pub fn tls_over_as(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: &str,
) -> Client<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    Client::wrap(rustls::StreamOwned::new(conn, tcp))
}

/// A body in `coding` (a `Content-Encoding`; `None`: none), decoded.
pub fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap();
        }
        Some("zstd") => out = zstd::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// The `multipart/byteranges` body that `ranges` (`(first, last)`, inclusive) of `file` make,
/// each part of type `part_type`, separated by `boundary`: written out from RFC 9110 14.6 and
/// RFC 2046 5.1.1.
pub fn multipart(
    file: &[u8],
    part_type: &str,
    ranges: &[(usize, usize)],
    boundary: &str,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, &(first, last)) in ranges.iter().enumerate() {
        if index > 0 {
            body.extend_from_slice(b"\r\n");
        }
        let len = file.len();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {part_type}\r\n\
                 Content-Range: bytes {first}-{last}/{len}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&file[first..=last]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The boundary a `multipart/byteranges` response says it uses.
pub fn boundary(response: &Response) -> String {
    let content_type = response.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    assert!(
        (1..=70).contains(&boundary.len()) && boundary.bytes().all(|b| b.is_ascii_alphanumeric()),
        "RFC 2046 5.1.1: {boundary}"
    );
    boundary.to_string()
}
