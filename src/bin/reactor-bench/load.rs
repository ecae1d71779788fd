//! The load generator: keep-alive HTTP/1.1 clients on mio event loops, one loop per thread.
//!
//! Closed loop by default: each connection sends its next request (or batch of `--pipeline`
//! requests) as soon as the previous answers are in, so the server sets the pace. With `--rate`
//! the load is open: each connection sends on a fixed schedule, and latency is measured from
//! when a request was *meant* to go out. A server that stalls then shows its stall in the
//! latency of every request that should have been sent meanwhile, instead of hiding it by
//! slowing the client down ("coordinated omission", which wrk2 corrects the same way).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::report::Report;

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header: `host:port` as written in the URL.
    pub host: String,
    pub path: String,
    /// `https://`: every connection speaks TLS (rustls; the certificate is not checked, as wrk
    /// does not check it: this is a load generator, not a browser).
    pub tls: bool,
}

/// Reads `http://host[:port][/path][?query]` or `https://...` (the scheme in any case, as RFC
/// 3986 has it; a host may be an `[IPv6]` address; a fragment is not sent).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, default_port, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, 80, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, 443, rest),
        _ => {
            return Err(format!(
                "{url}: only http:// and https:// URLs are supported"
            ));
        }
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{url}: a user name or password in the URL is not supported"
        ));
    }
    // The port is what follows the last colon, unless that colon is inside `[...]`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => (authority, ""),
    };
    let port = match port {
        "" => default_port,
        port => port
            .parse::<u16>()
            .map_err(|_| format!("{url}: {port} is not a port (0 to 65535)"))?,
    };
    let addr = format!("{host}:{port}")
        .to_socket_addrs()
        .map_err(|err| format!("{url}: {err}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok(Target {
        addr,
        host: authority.to_string(),
        path,
        tls,
    })
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct Load {
    pub target: Target,
    pub connections: usize,
    pub duration: Duration,
    pub pipeline: usize,
    pub threads: usize,
    /// Requests per second in all, on a fixed schedule; `None` for closed loop.
    pub rate: Option<f64>,
    /// Connections besides `connections` that each make one request (`Connection: close`) and
    /// then connect anew: a stream of new connections. They share the rate.
    pub fresh: usize,
    pub timeout: Duration,
    /// Pin the load threads to this core.
    pub pin: Option<core_affinity::CoreId>,
    /// Called by each load thread just before its measurement window opens (`false`) and just
    /// after it closes (`true`), so a caller can sample the server exactly over the window.
    pub on_window: Option<WindowHook>,
}

#[derive(Clone)]
pub struct WindowHook(pub Arc<dyn Fn(bool) + Send + Sync>);

impl std::fmt::Debug for WindowHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowHook")
    }
}

/// How long a worker waits for all its connections to be established and answered once before
/// it starts the measurement window anyway (a server that serves fewer connections at a time
/// than the load opens never answers them all): as long as the run, within these bounds.
const WARM_UP_LIMITS: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(2));

/// Runs the load for its duration and returns what was measured, all threads merged.
///
/// Each thread first opens all its connections and has one request answered on each (not
/// measured), and only then starts its window: a thousand handshakes, and a fresh server's first
/// request on each connection, would otherwise count as the latency of the run.
pub fn run(load: &Load) -> io::Result<Report> {
    let threads = load.threads.clamp(1, load.connections.max(1));
    let mut workers = Vec::new();
    let split = |count: usize, index: usize| count / threads + usize::from(index < count % threads);
    for index in 0..threads {
        // Connections split as evenly as they go.
        let (connections, fresh) = (split(load.connections, index), split(load.fresh, index));
        let rate = load.rate.map(|rate| {
            rate * (connections + fresh) as f64 / (load.connections + load.fresh) as f64
        });
        let load = load.clone();
        workers.push(thread::spawn(move || {
            if let Some(core) = load.pin {
                core_affinity::set_for_current(core);
            }
            Worker::new(&load, connections, fresh, rate)?.run()
        }));
    }
    let mut report = Report::new();
    for worker in workers {
        let part = worker
            .join()
            .map_err(|_| io::Error::other("load thread panicked"))??;
        report.merge(&part);
    }
    Ok(report)
}

/// Reads responses off a byte stream: status and framing from the head, then the body skipped
/// by its framing (a length, chunks, or the end of the connection), without keeping it.
#[derive(Default)]
struct ResponseReader {
    /// A head that has not all arrived yet.
    head: Vec<u8>,
    /// Where in its body the response being read is.
    body: Body,
    status: u16,
    close: bool,
}

/// Where in a response's body the reader is.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Body {
    /// No body under way: a head comes next.
    #[default]
    None,
    /// Body bytes still to skip (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, at one of its lines or in a chunk's data.
    Chunked(Chunked),
    /// No `Content-Length`: the body runs until the connection closes.
    UntilClose,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Chunked {
    /// A chunk-size line (with any extensions): its hex size so far, how many digits it has,
    /// and whether they have ended (at an extension or the CR).
    Size {
        size: u64,
        digits: usize,
        ended: bool,
    },
    /// A chunk's data still to skip.
    Data(u64),
    /// The CRLF after a chunk's data (its CR skipped; a bare LF taken for one).
    DataEnd,
    /// The trailer section after the last chunk: whether the current line has a byte in it.
    Trailer { line: bool },
}

/// A complete response: its status, and whether the server will close after it.
struct Answer {
    status: u16,
    close: bool,
}

impl ResponseReader {
    /// Consumes `data`, calling `answered` for each complete response.
    fn feed(&mut self, mut data: &[u8], mut answered: impl FnMut(Answer)) -> Result<(), ()> {
        while !data.is_empty() {
            match self.body {
                Body::UntilClose => return Ok(()),
                Body::Length(left) => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    if n < left {
                        self.body = Body::Length(left - n);
                    } else {
                        self.body = Body::None;
                        answered(self.answer());
                    }
                    continue;
                }
                Body::Chunked(at) => {
                    let (used, next) = step_chunked(at, data)?;
                    data = &data[used..];
                    match next {
                        Some(next) => self.body = Body::Chunked(next),
                        None => {
                            self.body = Body::None;
                            answered(self.answer());
                        }
                    }
                    continue;
                }
                Body::None => {}
            }
            // A head: parse it in place if it arrived whole, else gather it first.
            let used = if self.head.is_empty() {
                match self.parse_head(data)? {
                    Some(len) => len,
                    None => {
                        self.head.extend_from_slice(data);
                        return Ok(());
                    }
                }
            } else {
                let before = self.head.len();
                self.head.extend_from_slice(data);
                let head = std::mem::take(&mut self.head);
                match self.parse_head(&head)? {
                    Some(len) => len - before,
                    None => {
                        self.head = head;
                        if self.head.len() > 64 * 1024 {
                            return Err(());
                        }
                        return Ok(());
                    }
                }
            };
            data = &data[used..];
            if self.body == Body::None && self.status >= 200 {
                answered(self.answer());
            }
        }
        Ok(())
    }

    /// The connection has ended: the response whose body ran until then is complete (the
    /// only one the end can complete).
    fn end(&mut self) -> Option<Answer> {
        (self.body == Body::UntilClose).then(|| {
            self.body = Body::None;
            Answer {
                status: self.status,
                close: true,
            }
        })
    }

    fn answer(&self) -> Answer {
        Answer {
            status: self.status,
            close: self.close,
        }
    }

    /// Parses a response head at the start of `bytes`; the head's length once complete.
    fn parse_head(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        // Room for the fields most answers have, on the stack; more only for one that has more.
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut more;
        let mut response = httparse::Response::new(&mut fields);
        let mut parsed = response.parse(bytes);
        if parsed == Err(httparse::Error::TooManyHeaders) {
            more = vec![httparse::EMPTY_HEADER; 1024];
            response = httparse::Response::new(&mut more);
            parsed = response.parse(bytes);
        }
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(()),
        };
        let status = response.code.unwrap_or(0);
        let mut length = None;
        let mut chunked = false;
        let mut close = response.version == Some(0);
        for field in response.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    (std::str::from_utf8(field.value).ok())
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or(())?,
                );
            } else if field.name.eq_ignore_ascii_case("connection") {
                let mut tokens = field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
                close = tokens.any(|token| token.eq_ignore_ascii_case(b"close"));
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding is the framing (RFC 9112 §6.3): chunked, or else the body
                // runs until the close.
                let last = field
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or_default();
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                length = None;
            }
        }
        let bodiless = status < 200 || status == 204 || status == 304;
        self.status = status;
        self.close = close;
        self.body = match (bodiless, chunked, length) {
            (true, _, _) | (false, false, Some(0)) => Body::None,
            (false, true, _) => Body::Chunked(Chunked::size_line()),
            (false, false, Some(left)) => Body::Length(left),
            (false, false, None) => Body::UntilClose,
        };
        Ok(Some(len))
    }
}

/// Reads chunked framing at `at` from the start of `data`: how many bytes it took, and where
/// it is then (`None`: the body, trailers and all, has ended). Lenient where a client may be
/// (extensions and trailers skipped unread, a bare LF taken for CRLF), strict where the framing
/// would be in doubt: a size with no digits or too large, anything but CRLF after a chunk.
fn step_chunked(at: Chunked, data: &[u8]) -> Result<(usize, Option<Chunked>), ()> {
    match at {
        Chunked::Data(left) => {
            let n = (data.len() as u64).min(left);
            let next = if n == left {
                Chunked::DataEnd
            } else {
                Chunked::Data(left - n)
            };
            Ok((n as usize, Some(next)))
        }
        Chunked::DataEnd => match data[0] {
            b'\r' => Ok((1, Some(Chunked::DataEnd))),
            b'\n' => Ok((1, Some(Chunked::size_line()))),
            _ => Err(()),
        },
        Chunked::Size {
            mut size,
            mut digits,
            mut ended,
        } => {
            for (i, &byte) in data.iter().enumerate() {
                if byte == b'\n' {
                    return match (digits, size) {
                        (0, _) => Err(()),
                        (_, 0) => Ok((i + 1, Some(Chunked::Trailer { line: false }))),
                        (_, size) => Ok((i + 1, Some(Chunked::Data(size)))),
                    };
                }
                match (ended, (byte as char).to_digit(16)) {
                    (false, Some(digit)) => {
                        size = (size.checked_mul(16))
                            .and_then(|s| s.checked_add(u64::from(digit)))
                            .ok_or(())?;
                        digits += 1;
                    }
                    // An extension, or the CR: skipped (nothing of a line is kept).
                    _ => ended = true,
                }
            }
            let next = Chunked::Size {
                size,
                digits,
                ended,
            };
            Ok((data.len(), Some(next)))
        }
        Chunked::Trailer { mut line } => {
            for (i, &byte) in data.iter().enumerate() {
                match byte {
                    b'\n' if !line => return Ok((i + 1, None)),
                    b'\n' => line = false,
                    b'\r' => {}
                    _ => line = true,
                }
            }
            Ok((data.len(), Some(Chunked::Trailer { line })))
        }
    }
}

impl Chunked {
    /// At the start of a chunk-size line.
    fn size_line() -> Chunked {
        Chunked::Size {
            size: 0,
            digits: 0,
            ended: false,
        }
    }
}

/// One client connection.
struct Client {
    stream: Option<TcpStream>,
    connected: bool,
    /// Bytes of the current batch not yet written.
    unwritten: usize,
    /// Responses still expected for the current batch.
    outstanding: usize,
    /// When the current batch was (meant to be) sent.
    sent_at: Instant,
    /// Rate mode: when the next request is due.
    due: Instant,
    /// Its warm-up request has been answered.
    warmed: bool,
    /// One request per connection (`Connection: close`), then a new connection.
    fresh: bool,
    /// With `https://`: the TLS state under the HTTP bytes.
    tls: Option<ClientConnection>,
    reader: ResponseReader,
}

struct Worker {
    poll: Poll,
    target: SocketAddr,
    /// With `https://`: what each connection's TLS is made with, and the name it asks for.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Decrypted bytes of the last read.
    plain: Vec<u8>,
    clients: Vec<Client>,
    /// The batch every kept-alive client sends: `pipeline` copies of the request.
    batch: Vec<u8>,
    /// What a fresh client sends: the request, with `Connection: close`.
    closing: Vec<u8>,
    pipeline: usize,
    /// Rate mode: each connection sends one request per `interval`.
    interval: Option<Duration>,
    timeout: Duration,
    /// Sends (rate mode) and reconnects that wait for a time, soonest first.
    scheduled: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connections are still being opened, each sending one request that is not measured.
    warming: bool,
    /// Connections whose warm-up request has been answered.
    warmed: usize,
    on_window: Option<WindowHook>,
    duration: Duration,
    /// The measurement window; during the warm-up, `end` is when the warm-up gives up.
    start: Instant,
    end: Instant,
    report: Report,
    scratch: Vec<u8>,
}

impl Worker {
    fn new(load: &Load, connections: usize, fresh: usize, rate: Option<f64>) -> io::Result<Worker> {
        let start = Instant::now();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            load.target.path, load.target.host
        );
        let closing = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            load.target.path, load.target.host
        );
        let all = connections + fresh;
        let interval = rate.map(|rate| Duration::from_secs_f64(all as f64 / rate.max(1e-3)));
        let mut worker = Worker {
            poll: Poll::new()?,
            target: load.target.addr,
            tls: load.target.tls.then(|| tls_client(&load.target)),
            plain: Vec::with_capacity(64 * 1024),
            clients: Vec::with_capacity(all),
            batch: request.repeat(load.pipeline).into_bytes(),
            closing: closing.into_bytes(),
            pipeline: load.pipeline,
            interval,
            timeout: load.timeout,
            scheduled: BinaryHeap::new(),
            warming: true,
            warmed: 0,
            on_window: load.on_window.clone(),
            duration: load.duration,
            start,
            end: start + load.duration.clamp(WARM_UP_LIMITS.0, WARM_UP_LIMITS.1),
            report: Report::new(),
            scratch: vec![0; 64 * 1024],
        };
        for index in 0..all {
            worker.clients.push(Client {
                fresh: index >= connections,
                tls: None,
                stream: None,
                connected: false,
                unwritten: 0,
                outstanding: 0,
                sent_at: start,
                due: start,
                warmed: false,
                reader: ResponseReader::default(),
            });
            worker.connect(index);
        }
        Ok(worker)
    }

    /// Ends the warm-up: the window starts now, and every connection sends its first measured
    /// request, or in rate mode is scheduled to, connection i of n at i/n of an interval.
    fn start_window(&mut self) {
        if let Some(WindowHook(hook)) = &self.on_window {
            hook(false);
        }
        let now = Instant::now();
        self.warming = false;
        self.start = now;
        self.end = now + self.duration;
        let count = self.clients.len();
        for index in 0..count {
            let offset = self.interval.map_or(Duration::ZERO, |every| {
                every.mul_f64(index as f64 / count as f64)
            });
            self.clients[index].due = now + offset;
            self.clients[index].sent_at = now;
            self.send_if_due(index, now);
        }
    }

    fn run(mut self) -> io::Result<Report> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = self.start;
        loop {
            let now = Instant::now();
            if self.warming && (now >= self.end || self.warmed == self.clients.len()) {
                self.start_window();
                continue;
            }
            if now >= self.end {
                break;
            }
            let wake = self
                .scheduled
                .peek()
                .map_or(self.end, |Reverse((at, _))| *at)
                .min(self.end);
            // epoll sleeps in whole milliseconds, rounded up: sleep the whole milliseconds, and
            // poll without sleeping through the rest, so a scheduled send is not late by up to
            // a millisecond that would count as latency. (The load has a core of its own.)
            let wait = wake
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            let timeout = Duration::from_millis(wait.as_millis() as u64);
            if let Err(err) = self.poll.poll(&mut events, Some(timeout)) {
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                self.on_event(event.token().0, now);
            }
            while let Some(Reverse((at, index))) = self.scheduled.peek().copied() {
                if at > now {
                    break;
                }
                self.scheduled.pop();
                if self.clients[index].stream.is_none() {
                    self.connect(index);
                } else {
                    self.send_if_due(index, now);
                }
            }
            if now >= next_sweep {
                for index in self.overdue(now, self.timeout) {
                    self.report.errors.timeout += 1;
                    self.reconnect(index);
                }
                next_sweep = now + Duration::from_millis(100);
            }
        }
        // A run shorter than the timeout cannot time a request out in the sweep: against a
        // server that serves one connection at a time, a 1 s run reported its other
        // connections, unanswered from the first instant to the last, as nothing at all (no
        // error; a p99 from the one connection served). A request unanswered for the whole
        // window has waited as long as this run can see: it counts as timed out.
        let limit = self.timeout.min(self.end - self.start);
        self.report.errors.timeout += self.overdue(Instant::now(), limit).len() as u64;
        if let Some(WindowHook(hook)) = &self.on_window {
            hook(true);
        }
        self.report.elapsed = self.end - self.start;
        Ok(self.report)
    }

    fn connect(&mut self, index: usize) {
        let client = &mut self.clients[index];
        client.connected = false;
        client.outstanding = 0;
        client.unwritten = 0;
        client.reader = ResponseReader::default();
        client.tls = self.tls.as_ref().map(|(config, name)| {
            ClientConnection::new(config.clone(), name.clone()).expect("a valid client config")
        });
        match TcpStream::connect(self.target) {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(index), interest)
                    .is_ok()
                {
                    client.stream = Some(stream);
                    return;
                }
                self.report.errors.connect += 1;
            }
            Err(err) => self.report.errors.connect_failed(&err),
        }
        // Try again shortly rather than spin on a server that is not there.
        self.clients[index].stream = None;
        self.scheduled
            .push(Reverse((Instant::now() + Duration::from_millis(10), index)));
    }

    /// Drops the connection and opens a new one.
    fn reconnect(&mut self, index: usize) {
        if let Some(mut stream) = self.clients[index].stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.connect(index);
    }

    fn on_event(&mut self, index: usize, now: Instant) {
        let Some(client) = self.clients.get_mut(index) else {
            return;
        };
        let Some(stream) = &client.stream else {
            return;
        };
        if !client.connected {
            // A non-blocking connect completes when the socket turns writable, or fails with an
            // error pending on it.
            let pending = match stream.take_error() {
                Ok(None) => None,
                Ok(Some(err)) | Err(err) => Some(err),
            };
            match (stream.peer_addr(), pending) {
                (Ok(_), None) => client.connected = true,
                (Err(err), None) if err.kind() == io::ErrorKind::NotConnected => return,
                (Ok(_), Some(err)) | (Err(_), Some(err)) | (Err(err), None) => {
                    self.report.errors.connect_failed(&err);
                    self.clients[index].stream = None;
                    self.scheduled
                        .push(Reverse((now + Duration::from_millis(10), index)));
                    return;
                }
            }
            self.send_if_due(index, now);
        }
        if !self.read(index) {
            return;
        }
        self.flush(index);
    }

    // ANCHOR: send_if_due
    /// Starts the next batch if the connection is free and, in rate mode, it is due.
    fn send_if_due(&mut self, index: usize, now: Instant) {
        let interval = self.interval;
        let client = &mut self.clients[index];
        // Past the window nothing more is sent: an answer read then is not counted, and a
        // request sent after it would be one more the server answered and the report did not.
        if now >= self.end || !client.connected || client.outstanding > 0 {
            return;
        }
        if self.warming {
            // One request per connection before measuring: a fresh server's first request on
            // each connection allocates its buffers and faults in pages, and with a thousand
            // connections those first requests would be a whole percentile of the run.
            if client.warmed {
                return;
            }
            client.sent_at = Instant::now();
        } else if let Some(every) = interval {
            if client.due > now {
                self.scheduled.push(Reverse((client.due, index)));
                return;
            }
            // Measured from when it should have gone, however late it goes.
            client.sent_at = client.due;
            client.due += every;
        } else {
            // Now, not at the `now` the turn began: a request sent late in a turn (after a
            // thousand other connections' events) would be charged for the turn's work.
            client.sent_at = Instant::now();
        }
        let (outstanding, batch) = if client.fresh {
            (1, &self.closing)
        } else {
            (self.pipeline, &self.batch)
        };
        client.outstanding = outstanding;
        client.unwritten = batch.len();
        self.flush(index);
    }
    // ANCHOR_END: send_if_due

    /// Writes what is left of the batch; a full socket resumes on the next writable event.
    fn flush(&mut self, index: usize) {
        let batch = if self.clients[index].fresh {
            &self.closing
        } else {
            &self.batch
        };
        let client = &mut self.clients[index];
        let Some(stream) = &mut client.stream else {
            return;
        };
        if let Some(tls) = &mut client.tls {
            // The batch goes into rustls whole (it buffers plaintext until the handshake is
            // done); the socket takes its ciphertext as it can.
            if client.unwritten > 0 {
                let from = batch.len() - client.unwritten;
                let _ = tls.writer().write_all(&batch[from..]);
                client.unwritten = 0;
            }
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        self.report.errors.read_failed(&err);
                        self.reconnect(index);
                        return;
                    }
                }
            }
            return;
        }
        while client.unwritten > 0 {
            let from = batch.len() - client.unwritten;
            match stream.write(&batch[from..]) {
                Ok(n) => client.unwritten -= n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.report.errors.read_failed(&err);
                    self.reconnect(index);
                    return;
                }
            }
        }
    }

    /// Reads until WouldBlock; returns false if the connection was replaced.
    fn read(&mut self, index: usize) -> bool {
        loop {
            let client = &mut self.clients[index];
            let Some(stream) = &mut client.stream else {
                return false;
            };
            let n = stream.read(&mut self.scratch);
            // The moment the answer is in: not the `now` its turn began, which is before the
            // request was even sent when the answer comes within the turn that sent it (read
            // again at once, the next request's answer can be in by then, when the server runs
            // as the request is written). Until stop 75 those answers counted as taking 0 µs:
            // with two connections to a server with a loop on the load's core, most of them did,
            // and the report said p50 1 µs.
            let now = Instant::now();
            let n = match n {
                Ok(0) => {
                    // A body delimited by the end of the connection is complete now; any other
                    // request of ours still unanswered is lost (`settle`).
                    let answer = client.reader.end();
                    if let Some(answer) = &answer {
                        let counting = !self.warming && now < self.end;
                        record(&mut self.report, counting, answer, now, client.sent_at);
                    }
                    self.settle(index, usize::from(answer.is_some()), true, now);
                    return false;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.report.errors.read_failed(&err);
                    self.reconnect(index);
                    return false;
                }
            };
            let counting = !self.warming && now < self.end;
            if counting {
                self.report.bytes += n as u64;
            }
            let data = match &mut client.tls {
                None => &self.scratch[..n],
                Some(tls) => {
                    if decrypt(tls, &self.scratch[..n], &mut self.plain).is_err() {
                        self.report.errors.read += 1;
                        self.reconnect(index);
                        return false;
                    }
                    &self.plain[..]
                }
            };
            let (report, sent_at) = (&mut self.report, client.sent_at);
            let mut answers = 0;
            let mut closing = false;
            let fed = client.reader.feed(data, |answer| {
                answers += 1;
                closing |= answer.close;
                record(report, counting, &answer, now, sent_at);
            });
            if fed.is_err() {
                self.report.errors.read += 1;
                self.reconnect(index);
                return false;
            }
            if !self.settle(index, answers, closing, now) {
                return false;
            }
        }
    }

    /// After `answers` came on connection `index` (and, if `closing`, its end): the requests
    /// still outstanding, the warm-up, and the next batch; a connection that ends, or answered
    /// more than was asked, is replaced. Returns false if it was.
    fn settle(&mut self, index: usize, answers: usize, closing: bool, now: Instant) -> bool {
        let client = &mut self.clients[index];
        if answers > client.outstanding {
            self.report.errors.read += 1;
            self.reconnect(index);
            return false;
        }
        client.outstanding -= answers;
        let done = answers > 0 && client.outstanding == 0;
        if done && self.warming && !client.warmed {
            client.warmed = true;
            self.warmed += 1;
        }
        if closing {
            if client.outstanding > 0 {
                // The server closes with requests of ours unanswered.
                self.report.errors.read += 1;
            }
            self.reconnect(index);
            return false;
        }
        if done && !self.warming {
            self.send_if_due(index, now);
        }
        true
    }

    /// The connections with a request (or a connect) unanswered for `limit` or longer: by the
    /// timeout, given up on (or, at the end of the run, counted).
    fn overdue(&self, now: Instant, limit: Duration) -> Vec<usize> {
        (self.clients.iter().enumerate())
            .filter(|(_, client)| {
                let waiting =
                    client.outstanding > 0 || (client.stream.is_some() && !client.connected);
                waiting && now.saturating_duration_since(client.sent_at.max(self.start)) >= limit
            })
            .map(|(index, _)| index)
            .collect()
    }
}

/// Counts `answer`, read at `now` for a batch sent at `sent_at`, if the window is `counting`.
fn record(report: &mut Report, counting: bool, answer: &Answer, now: Instant, sent_at: Instant) {
    if counting {
        report.responses += 1;
        if !(200..400).contains(&answer.status) {
            report.errors.status += 1;
        }
        let us = now.saturating_duration_since(sent_at).as_micros() as u64;
        let _ = report.latency.record(us.max(1));
    }
}

/// Feeds ciphertext to rustls and collects what it decrypts into `plain` (cleared first).
fn decrypt(
    tls: &mut ClientConnection,
    mut ciphertext: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), ()> {
    plain.clear();
    while !ciphertext.is_empty() {
        tls.read_tls(&mut ciphertext).map_err(drop)?;
        tls.process_new_packets().map_err(drop)?;
    }
    let mut chunk = [0; 16 * 1024];
    loop {
        match tls.reader().read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => plain.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(()),
        }
    }
}

/// The TLS client every connection of a worker is made from: HTTP/1.1 over TLS 1.2 or 1.3,
/// session resumption as rustls does by default, and no certificate check (see `Target::tls`).
fn tls_client(target: &Target) -> (Arc<ClientConfig>, ServerName<'static>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = target
        .host
        .rsplit_once(':')
        .map_or(target.host.as_str(), |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::from(target.addr.ip()));
    (Arc::new(config), name)
}

/// Accepts any certificate (the signatures are still checked, so the handshake costs the
/// server what it would with a checking client).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let target = parse_url("http://127.0.0.1:8080/hello?x=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (target.host.as_str(), target.path.as_str()),
            ("127.0.0.1:8080", "/hello?x=1")
        );
        assert_eq!(parse_url("http://127.0.0.1:9").unwrap().path, "/");
        assert!(parse_url("https://127.0.0.1:8443/").unwrap().tls);
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http:///x").is_err());
        // The scheme in any case; a query straight after the authority; no fragment.
        let target = parse_url("HTTP://127.0.0.1:8080?x=1#top").unwrap();
        assert_eq!(
            (target.host.as_str(), target.path.as_str()),
            ("127.0.0.1:8080", "/?x=1")
        );
        assert!(parse_url("HTTPS://127.0.0.1/").unwrap().tls);
        let target = parse_url("http://[::1]:8080/a").unwrap();
        assert_eq!(target.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(target.host, "[::1]:8080");
        assert_eq!(parse_url("http://[::1]/").unwrap().addr.port(), 80);
        assert_eq!(parse_url("http://127.0.0.1:/").unwrap().addr.port(), 80);
        let refused = |url| parse_url(url).unwrap_err();
        assert!(refused("http://127.0.0.1:99999/").contains("99999 is not a port"));
        assert!(refused("http://u:p@127.0.0.1:1/").contains("user name or password"));
    }

    #[test]
    fn reads_responses_in_any_split() {
        let stream =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        for step in [stream.len(), 1, 7] {
            let mut reader = ResponseReader::default();
            let mut seen = Vec::new();
            for piece in stream.chunks(step) {
                reader
                    .feed(piece, |a| seen.push((a.status, a.close)))
                    .unwrap();
            }
            assert_eq!(
                seen,
                vec![(200, false), (404, false), (204, false), (500, true)],
                "step {step}"
            );
        }
        let mut reader = ResponseReader::default();
        assert!(reader.feed(b"garbage\r\n\r\n", |_| {}).is_err());
    }

    /// Chunked bodies (extensions, trailers, a bare LF, a chunk split anywhere), a body that
    /// runs to the close, and more fields than a small array holds. Until stop 85 the first and
    /// last were read errors, every one, and the second counted an error per answer in the
    /// warm-up, which it never finished.
    #[test]
    fn reads_every_framing() {
        let fields: String = (0..60).map(|i| format!("X-Field-{i}: v\r\n")).collect();
        let stream = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n\
             HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             3\nabc\n0;x\nTrailer: 1\r\nMore: 2\n\r\n\
             HTTP/1.1 202 Accepted\r\n{fields}Content-Length: 2\r\n\r\nok\
             HTTP/1.1 203 X\r\nConnection: keep-alive, close\r\n\r\nto the end"
        );
        for step in [stream.len(), 1, 2, 7] {
            let mut reader = ResponseReader::default();
            let mut seen = Vec::new();
            for piece in stream.as_bytes().chunks(step) {
                reader
                    .feed(piece, |a| seen.push((a.status, a.close)))
                    .unwrap();
            }
            assert_eq!(seen, vec![(200, false), (201, false), (202, false)]);
            let end = reader.end().map(|a| (a.status, a.close));
            assert_eq!(end, Some((203, true)), "step {step}");
            assert!(reader.end().is_none());
        }
        // The end completes nothing else: a body owed by its length is lost.
        let mut reader = ResponseReader::default();
        reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", |_| {})
            .unwrap();
        assert!(reader.end().is_none());
        // Framing in doubt: a size with no digits or past 64 bits, bytes after a chunk's data,
        // a length that is no number.
        for bad in [
            "Transfer-Encoding: chunked\r\n\r\n;x\r\n",
            "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            "Transfer-Encoding: chunked\r\n\r\n1\r\naXY\r\n",
            "Content-Length: x\r\n\r\n",
        ] {
            let mut reader = ResponseReader::default();
            let response = format!("HTTP/1.1 200 OK\r\n{bad}");
            assert!(reader.feed(response.as_bytes(), |_| {}).is_err(), "{bad}");
        }
    }
}
