//! An in-memory driver: a [`Conn`] fed from byte slices, its output collected in a `Vec`.
//!
//! The socket drivers in `server/` move bytes between a socket and a `Conn`; this one moves
//! them between slices and a buffer, under the test's control: any split of the input, a
//! client that stops reading (`stalled`, or after `room` bytes), a clock moved by hand. The
//! unit tests and the fuzz targets (`fuzz/`) drive the state machine through it, so they
//! exercise exactly the calls the real drivers make.

use core::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::{Conn, Context, Offload, StopSignal, Want};
use crate::access_log::AccessLog;
use crate::app::Handler;
use crate::config::Limits;
use crate::http::{BufPool, Clock, HeadCache, Millis, Request, Response, Status};

/// A handler written as a function of the request.
pub type Respond = dyn Fn(&Request<'_>) -> Response + Send + Sync;

/// A [`Respond`] function as a [`Handler`].
struct FnHandler(&'static Respond);

impl Handler for FnHandler {
    fn handle(&self, request: &Request<'_>) -> Response {
        (self.0)(request)
    }
}

/// What a driver lends a `Conn` on each call, owned here: a loop's limits, clock, buffer pool and
/// head cache, and the handler. [`MemoryEnv::cx`] borrows only this, so a `Conn` kept beside it
/// stays usable while the context is alive. (The criterion bench drives a `Conn` with one too.)
pub struct MemoryEnv {
    pub limits: Limits,
    pub clock: Clock,
    pub pool: BufPool,
    pub heads: HeadCache,
    /// Answers requests; with an `offload`, those it [may block](Handler::may_block) on go there.
    pub handler: Box<dyn Handler>,
    /// Where requests may be handed away (a test's stand-in for the reactor's pool).
    pub offload: Option<Box<dyn Offload>>,
    /// A stop asked of the server, as a test sets it (see [`StopSignal`]).
    pub stop_asked: AtomicBool,
    /// Set with `stop_asked` (before it) for a handover to a new process.
    pub handover_asked: AtomicBool,
    /// Where the connection's access log lines go: nowhere unless a test opens a log.
    pub log: Option<AccessLog>,
}

impl MemoryEnv {
    /// An environment whose `handler` answers every request.
    pub fn new(limits: Limits, handler: &'static Respond) -> Self {
        Self::serving(limits, FnHandler(handler))
    }

    /// An environment that serves `handler`.
    pub fn serving(limits: Limits, handler: impl Handler) -> Self {
        MemoryEnv {
            limits,
            clock: clock_at(Instant::now()),
            pool: BufPool::new(),
            heads: HeadCache::default(),
            handler: Box::new(handler),
            offload: None,
            stop_asked: AtomicBool::new(false),
            handover_asked: AtomicBool::new(false),
            log: None,
        }
    }

    /// The context for one call into `Conn`, from a client on the loopback address.
    pub fn cx(&mut self) -> Context<'_> {
        Context {
            limits: &self.limits,
            clock: &self.clock,
            pool: &mut self.pool,
            heads: &mut self.heads,
            log: self.log.as_mut(),
            peer: IpAddr::from([127, 0, 0, 1]),
            handler: &*self.handler,
            offload: match &mut self.offload {
                Some(offload) => Some(offload.as_mut()),
                None => None,
            },
            metrics: None,
            stop: StopSignal::new(&self.stop_asked, &self.handover_asked),
        }
    }
}

/// A clock that reads `now`, on a fixed wall-clock date, so response heads do not vary.
fn clock_at(now: Instant) -> Clock {
    Clock::at(now, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

pub struct MemoryConn {
    pub env: MemoryEnv,
    pub conn: Conn,
    pub out: Vec<u8>,
    /// The client does not read: writes make no progress.
    pub stalled: bool,
    /// Bytes the client still reads; then it reads no more, as if `stalled`.
    pub room: usize,
    pub half_closed: bool,
    pub closed: bool,
    /// Writes said to be followed at once by a file (`Want::Write`'s `more`): each was, or
    /// `feed` panics.
    pub held_for_file: usize,
}

impl MemoryConn {
    pub fn with(limits: Limits, handler: &'static Respond) -> Self {
        Self::in_env(MemoryEnv::new(limits, handler))
    }

    /// A connection served by `handler`.
    pub fn serving(limits: Limits, handler: impl Handler) -> Self {
        Self::in_env(MemoryEnv::serving(limits, handler))
    }

    fn in_env(mut env: MemoryEnv) -> Self {
        let conn = Conn::new(&env.cx());
        MemoryConn {
            env,
            conn,
            out: Vec::new(),
            stalled: false,
            room: usize::MAX,
            half_closed: false,
            closed: false,
            held_for_file: 0,
        }
    }

    // ANCHOR: memory_feed
    /// Offers `input`; returns how many bytes the connection took.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        let mut file_next = false;
        while !self.closed {
            let mut cx = self.env.cx();
            let want = self.conn.want(&mut cx);
            if std::mem::take(&mut file_next) {
                assert!(
                    matches!(want, Want::SendFile { .. }),
                    "a head said to come before a file came before {want:?}"
                );
            }
            match want {
                Want::Read => {
                    if taken == input.len() {
                        break;
                    }
                    let buf = self.conn.read_buf(&mut cx);
                    let n = buf.len().min(input.len() - taken);
                    assert!(n > 0, "asked to read with no room");
                    buf[..n].copy_from_slice(&input[taken..taken + n]);
                    self.conn.received(n);
                    taken += n;
                }
                Want::Write { bytes, more } => {
                    let n = bytes.len().min(self.room);
                    if self.stalled || n == 0 {
                        break;
                    }
                    self.out.extend_from_slice(&bytes[..n]);
                    file_next = more && n == bytes.len();
                    self.room -= n;
                    self.conn.wrote(n);
                    self.held_for_file += usize::from(file_next);
                }
                Want::SendFile { file, offset, len } => {
                    let mut chunk = vec![0; len.min(4096).min(self.room as u64) as usize];
                    if self.stalled || chunk.is_empty() {
                        break;
                    }
                    let n = file.read_at(&mut chunk, offset).unwrap();
                    self.out.extend_from_slice(&chunk[..n]);
                    self.room -= n;
                    self.conn.sent_file(n as u64);
                }
                Want::HalfClose => self.half_closed = true,
                // An offloaded request's answer comes through `Conn::completed`.
                Want::Wait => break,
                Want::Close => self.closed = true,
            }
        }
        taken
    }
    // ANCHOR_END: memory_feed

    /// The client closes its side.
    pub fn eof(&mut self) {
        if !self.closed {
            let mut cx = self.env.cx();
            if let Want::Read = self.conn.want(&mut cx) {
                self.conn.received(0);
            }
            self.feed(b"");
        }
    }

    /// Moves the clock `secs` on and fires the timer if it is due.
    pub fn advance(&mut self, secs: f64) {
        let later = self.env.clock.now() + Duration::from_secs_f64(secs);
        self.env.clock = clock_at(later);
        if self
            .conn
            .deadline(&self.env.limits)
            .is_some_and(|deadline| deadline <= Millis::of(later))
        {
            let mut cx = self.env.cx();
            self.conn.timed_out(&mut cx);
        }
        self.feed(b"");
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// Runs `input` through a fresh connection split at the given sizes (cycled), as successive
/// reads; returns the output and whether the connection closed.
pub fn run_split(handler: &'static Respond, input: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
    run_split_on(MemoryConn::with(Limits::default(), handler), input, sizes)
}

/// [`run_split`] through `conn`, a fresh connection.
pub fn run_split_on(mut conn: MemoryConn, input: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= input.len() || conn.closed {
            break;
        }
        let end = (at + size.max(1)).min(input.len());
        at += conn.feed(&input[at..end]);
    }
    (conn.out, conn.closed)
}

/// One response read back: status, headers (names lowercased), body.
pub type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

/// Splits a response stream into responses, checking each is well-formed.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<Parsed> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        let head_len = match response.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "malformed response {other:?} in {:?}",
                String::from_utf8_lossy(bytes)
            ),
        };
        assert_eq!(response.version, Some(1));
        let status = response.code.unwrap();
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if status >= 200 {
            assert_eq!(header("server").as_deref(), Some("reactor-httpd"));
            assert!(header("date").is_some());
        }
        let length: usize = match header("content-length") {
            Some(length) => length.parse().unwrap(),
            None => {
                assert!(
                    status < 200 || status == 204 || status == 304,
                    "no length on {status}"
                );
                0
            }
        };
        bytes = &bytes[head_len..];
        // A handler's response says what it answers (`X-Method`, as `numbered` does); one
        // without is the server's own refusal, whose body is `Response::error`'s text, or none
        // if it refused a HEAD.
        let refusal_body = format!("{status} {}\n", Status(status).reason());
        let body_len = match header("x-method").as_deref() {
            Some("HEAD") => 0,
            None if status >= 400 && !bytes.starts_with(refusal_body.as_bytes()) => 0,
            _ => length,
        };
        assert!(bytes.len() >= body_len, "truncated body");
        responses.push((status, headers, bytes[..body_len].to_vec()));
        bytes = &bytes[body_len..];
    }
    responses
}

std::thread_local! {
    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A handler for the fuzz targets that numbers its calls (`X-Call`, from 1 after
/// [`reset_calls`]), so [`check_responses`] can tell the order the responses left in. `/big`
/// answers 100,000 bytes; everything else a line naming the request.
pub fn numbered(request: &Request<'_>) -> Response {
    numbered_showing(request, Some(request.body.len()))
}

/// [`numbered`], for a body whose length is shown or not.
fn numbered_showing(request: &Request<'_>, body_len: Option<usize>) -> Response {
    let n = CALLS.with(|calls| {
        calls.set(calls.get() + 1);
        calls.get()
    });
    let body = match (request.path, body_len) {
        ("/big", _) => "x".repeat(100_000),
        (_, Some(len)) => format!("{} {} {len}", request.method, request.path),
        (_, None) => format!("{} {}", request.method, request.path),
    };
    Response::text(Status::OK, body)
        .with_header("X-Call", n.to_string())
        // `parse_responses` reads a HEAD response's body length from this.
        .with_header("X-Method", request.method.to_string())
}

/// [`numbered`] without the body's length, saying whether it reads bodies (the fuzz target
/// and a proptest check that the two give the same bytes: a body dropped unread changes nothing
/// sent, but for a request waiting for `100 Continue`, answered at once instead).
pub struct NumberedIgnoringBody {
    pub reads_body: bool,
}

impl Handler for NumberedIgnoringBody {
    fn handle(&self, request: &Request<'_>) -> Response {
        numbered_showing(request, None)
    }

    fn reads_body(&self, _request: &Request<'_>) -> bool {
        self.reads_body
    }
}

/// Starts [`numbered`]'s count again.
pub fn reset_calls() {
    CALLS.with(|calls| calls.set(0));
}

/// Checks a response stream from a connection answered by [`numbered`]: well-formed responses,
/// in the order the handler was called, and none after a `Connection: close`.
///
/// A 304 or 412 stands for a call too: a precondition (`If-None-Match: *`, `If-Match`) replaced
/// the handler's answer, and with it its `X-Call`. Every other response without one is the
/// server's own (an error), for which the handler was not called.
pub fn check_responses(stream: &[u8]) {
    let responses = parse_responses(stream);
    let mut last_call = 0;
    for (i, (status, headers, _)) in responses.iter().enumerate() {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        match header("x-call") {
            Some(call) => {
                let call: u64 = call.parse().expect("X-Call is a number");
                assert_eq!(call, last_call + 1, "responses out of order");
                last_call = call;
            }
            None if matches!(status, 304 | 412) => last_call += 1,
            None => {}
        }
        if header("connection") == Some("close") {
            assert_eq!(i, responses.len() - 1, "a response after Connection: close");
        }
    }
}
