//! The connection state machine: bytes in, bytes out, no sockets.
//!
//! A [`Conn`] is one HTTP/1.1 connection as seen by the protocol. Its driver (the reactor, a
//! blocking worker, a forked child) owns the socket and runs one loop:
//!
//! ```text
//! loop {
//!     match conn.want(&mut cx) {
//!         Want::Read            => read into conn.read_buf(..), then conn.received(n) (0 = EOF)
//!         Want::Write { bytes } => write some of them,          then conn.wrote(n)
//!         Want::SendFile(f)     => sendfile some of the region, then conn.sent_file(n)
//!         Want::HalfClose       => shutdown(Write)
//!         Want::Close           => close the socket; done
//!     }
//! }
//! ```
//!
//! (a non-blocking driver breaks out of that loop on WouldBlock and resumes on the next readiness
//! event.) Everything else happens inside `want`: finding request heads, decoding bodies, calling
//! the handler, serializing responses, keep-alive, pipelining, backpressure and timeouts. This is
//! the only place a connection's phase changes, so every driver behaves identically, and the
//! whole protocol can be tested by feeding byte strings in any split (see the tests below).
//!
//! The phases, in the order a request goes through them:
//!
//! ```text
//!   Head ──head parsed, body follows──▶ Body ──body complete──▶ (respond)
//!    ▲  └──head parsed, no body─────────────────────────────────▶ (respond)
//!    │                                                              │
//!    └────────────── keep-alive: the next request ◀─────────────────┤
//!                                                                   ▼
//!                     Closed ◀── Lingering ◀── Closing ◀── close after this response
//! ```
//!
//! Writing is not a phase of its own: responses queue in the output buffer, in request order,
//! while the next pipelined request is already being parsed. The output side only takes over when
//! it must: when a file body is waiting to be sent (its bytes must follow the head, and nothing
//! may overtake them), or when more than [`OUTPUT_HIGH_WATER`] bytes are queued, which is how a
//! client that sends requests but never reads responses is stopped from growing server memory.

use core::net::IpAddr;
use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::body::{ChunkedDecoder, Decoded};
use super::buf::{BUF_SIZE, BufPool, Charge, Input, beyond_pooled};
use super::date::{Clock, Millis};
use super::parse::{
    BodyLength, Framing, Head, HeadScan, Scanned, downgrade_later_minor, header_storage,
    leading_empty_lines, parse_again, parse_head, parse_whole_head,
};
use super::request::{Request, Version};
use super::response::{
    Body, FileBody, HeadCache, Persistence, Response, SharedBytes, Status, unvalidated_precondition,
};
use crate::access_log::{AccessLog, LoggedRequest, OpenLine};
use crate::app::Handler;
use crate::config::Limits;
use crate::metrics::{LoopMetrics, Timeout};

/// Past this many queued output bytes the connection stops taking requests until the client
/// reads. One response may be larger (a big echo); it just is not joined by others.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// After a server-side close with input possibly still arriving, how long to keep reading (and
/// discarding) it. Closing a socket with unread input makes the kernel send a reset, which can
/// destroy the error response the client has not read yet; nginx's `lingering_close` avoids that
/// the same way.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest file region whose head is held back to leave with it ([`Want::Write`]'s `more`).
/// Measured on loopback (docs/performance.md, stop 63): a 4 KiB file costs 15% less CPU with
/// its head held, a 64 KiB one 11% less; from 96 KiB on, holding the head made a file slower
/// (a 256 KiB file 3-4 times the CPU, at half the rate), and a head is a small share of a large
/// file's segments anyway.
pub const HELD_HEAD_FILE_MAX: u64 = 64 * 1024;

/// Everything a connection borrows from whoever drives it, for one call. Each event loop (or
/// worker thread) has one pool, clock, head cache and log; `handler` answers requests.
pub struct Context<'a> {
    pub limits: &'a Limits,
    pub clock: &'a Clock,
    pub pool: &'a mut BufPool,
    /// The loop's last response head, for reuse.
    pub heads: &'a mut HeadCache,
    pub log: Option<&'a mut AccessLog>,
    /// The client's address, for the access log.
    pub peer: IpAddr,
    /// The application. With an `offload`, the requests it [may
    /// block](Handler::may_block) on go there; without one, it answers every request where it is.
    /// Called through this one reference (one indirect call per request); the panic guard is
    /// [`Context::ask`].
    pub handler: &'a dyn Handler,
    /// Where requests whose handler may block go instead (the reactor's handler pool); `None`
    /// for drivers that call every handler where they are (a blocking thread may block).
    pub offload: Option<&'a mut dyn Offload>,
    /// The loop's counters, with `--metrics-path`.
    pub metrics: Option<&'a LoopMetrics>,
    /// The server's stop, as it is asked for (see [`StopSignal`]).
    pub stop: StopSignal<'a>,
}

impl Context<'_> {
    /// The handler's answer to `request`, or `None` when it may block and there is an
    /// `offload` to take it. A panic in the handler is that request's failure, not the loop's:
    /// it becomes a 500, and the loop goes on serving every other connection. The panic hook has
    /// already printed the message and its location, once, to stderr; the access log shows the
    /// 500. The connection's own state is untouched (the panic happened in the handler, not
    /// here), so it may stay open.
    #[inline(always)]
    fn ask(&self, request: &Request<'_>) -> Option<Response> {
        let (handler, offloads) = (self.handler, self.offload.is_some());
        panic::catch_unwind(AssertUnwindSafe(|| match offloads {
            true => handler.handle_unless_blocking(request),
            false => Some(handler.handle(request)),
        }))
        .unwrap_or_else(|_| {
            if let Some(metrics) = self.metrics {
                metrics.handler_panics.add(1);
            }
            Some(Response::error(Status::INTERNAL_SERVER_ERROR))
        })
    }

    /// Whether the handler reads `request`'s body. One that panics saying so is taken to: its
    /// `handle` then answers, or fails as a handler does.
    fn reads_body(&self, request: &Request<'_>) -> bool {
        panic::catch_unwind(AssertUnwindSafe(|| self.handler.reads_body(request))).unwrap_or(true)
    }

    /// Whether `request`, `len` bytes of head and body, could not be held even with nothing
    /// else in the buffer budget: once, or twice when it goes to the `offload`, which takes a
    /// copy along (see [`Offload::hand_over`]). Cold and out of line: inlined, it cost every
    /// `GET /hello` 4 instructions (callgrind), though no GET asks it.
    #[cold]
    #[inline(never)]
    fn could_never_hold(&self, request: &Request<'_>, len: usize) -> bool {
        let offloaded = self.offload.is_some()
            && panic::catch_unwind(AssertUnwindSafe(|| self.handler.may_block(request)))
                .unwrap_or(false);
        let copies = 1 + usize::from(offloaded);
        beyond_pooled(len).saturating_mul(copies) > self.limits.buffers.limit()
    }
}

// ANCHOR: offload
/// A place to answer requests off the event loop: the driver's thread pool. A request whose
/// handler may block (the context's handler declined it) is handed over, and the connection
/// [waits](Want::Wait) until the driver gives the response back with [`Conn::completed`].
/// Nothing here knows about threads: to the state machine it is one more thing to wait for,
/// like bytes.
pub trait Offload {
    /// Takes a request the handler declined to answer where it is. `head` is its head as
    /// received; `request.body` its whole body.
    fn hand_over(&mut self, request: &Request<'_>, head: &[u8]) -> Handover;
}

/// What became of a request handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// Taken: the response comes back through [`Conn::completed`].
    Away,
    /// No room (the pool's queue is full): answer this status now.
    Refused(Status),
}
// ANCHOR_END: offload

// ANCHOR: want
/// What the connection needs its driver to do next.
#[derive(Debug)]
pub enum Want<'a> {
    /// Read into [`Conn::read_buf`], then report with [`Conn::received`].
    Read,
    /// Write (a prefix of) these bytes, then report with [`Conn::wrote`]. `more`: a small file
    /// region (up to [`HELD_HEAD_FILE_MAX`]) follows them at once (a file's head, before its
    /// body), and a driver that sends it on a socket says so to the kernel (`MSG_MORE`), which
    /// then holds the head back to leave with the file's first bytes: one TCP segment for a
    /// small file, not two (15% less CPU per 4 KiB file, docs/performance.md). The send
    /// that carries the file's last bytes says nothing, and the kernel sends what it holds.
    Write { bytes: &'a [u8], more: bool },
    /// Send (a prefix of) this file region, then report with [`Conn::sent_file`].
    SendFile {
        file: &'a File,
        offset: u64,
        len: u64,
    },
    /// Shut down the write side of the socket (the client sees the end of the stream), then ask
    /// again: the connection reads and discards until the client closes or time runs out.
    HalfClose,
    /// Nothing to do until the response to an [offloaded](Offload) request comes back
    /// ([`Conn::completed`]) or the handler timeout passes. Only drivers with an `Offload` see it.
    Wait,
    /// Close the socket. The connection is finished.
    Close,
}
// ANCHOR_END: want

pub struct Conn {
    phase: Phase,
    input: Input,
    output: Output,
    /// When the current timer started. The deadline is computed only when a driver asks for it,
    /// since most timers (a send that completes at once) are replaced before anyone looks.
    timer_since: Millis,
    /// Which timeout governs the connection now.
    timer: Timer,
    /// The client closed its side: no more input will come.
    peer_closed: bool,
    /// The server is shutting down or handing over: finish what is in flight, then close.
    drain: Drain,
    /// Output went out since the last `want`: a stalled-send timer starts over.
    sent_since_want: bool,
    /// Bytes received since the last `want` (at most `u16::MAX`): a body's timer gains time by
    /// them ([`Conn::credit_body`]).
    arrived: u16,
    /// The last `want` said Read and nothing has happened since that could change its answer:
    /// the next `want` says Read again at once. (A driver asks at every readiness event, and
    /// the answer is nearly always the one it got last time.)
    awaiting_input: bool,
    /// What the buffers hold of the server's [`BufferBudget`](super::BufferBudget), once they
    /// have grown past their pooled size (`None` until then: the common connection never
    /// touches the budget).
    charge: Option<Box<Charge>>,
}

// ANCHOR: drain
/// How a connection ends when its server stops ([`Conn::drain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Serving as usual.
    No,
    /// Shutdown: the request in flight is answered with `Connection: close`; an idle connection
    /// closes at once.
    Now,
    /// Handover to a new process (a SIGHUP upgrade): every request already received is answered
    /// (pipelined ones too), the last with `Connection: close`; an idle connection waits up to
    /// [`HANDOVER_IDLE`] for one more request, answers it with `Connection: close`, and then
    /// closes. A client that sends as soon as it has its answer would otherwise meet a
    /// close racing its next request, which it would see as a reset or a lost request.
    Handover,
}

impl Drain {
    /// Whether a connection stays open after answering a request, with `more` bytes received
    /// behind it. On a handover, requests already sent (pipelined, or begun) are in flight
    /// too: each is answered, and the last says `Connection: close`.
    #[inline]
    fn keeps_open(self, more: bool) -> bool {
        match self {
            Drain::No => true,
            Drain::Now => false,
            Drain::Handover => more,
        }
    }
}

/// How long an idle connection waits for one more request once its server hands over.
pub const HANDOVER_IDLE: Duration = Duration::from_secs(1);
// ANCHOR_END: drain

/// A stop of the server, read at the moment each answer says whether the connection stays
/// open. A driver passes a stop on to its connections ([`Conn::drain`]) when it next looks: an
/// event loop, at the start of a turn. A request that comes whole later in a turn that began
/// before the stop would otherwise be answered with keep-alive and its connection closed just
/// after, as idle, losing the next request of a client that sends it at once. Read here, the
/// answer is the last one, as if the drain had been passed on already.
#[derive(Clone, Copy)]
pub struct StopSignal<'a> {
    asked: &'a AtomicBool,
    handover: &'a AtomicBool,
}

impl<'a> StopSignal<'a> {
    /// `asked` is set when a stop is asked for; `handover`, before it, when the stop is a
    /// handover to a new process.
    pub fn new(asked: &'a AtomicBool, handover: &'a AtomicBool) -> Self {
        StopSignal { asked, handover }
    }

    /// How the connection ends, by the stop asked for so far (`Drain::No` before one).
    #[inline(always)]
    fn drain(self) -> Drain {
        // Acquire: a handover flag set before the stop is seen with it.
        match self.asked.load(Ordering::Acquire) {
            false => Drain::No,
            true if self.handover.load(Ordering::Relaxed) => Drain::Handover,
            true => Drain::Now,
        }
    }
}

// ANCHOR: phase
enum Phase {
    /// Waiting for a request head, or part way through one. `started` once a request has begun
    /// (its first byte arrived, or the connection is new): until then the connection is idle
    /// between keep-alive requests.
    Head {
        scan: HeadScan,
        started: bool,
    },
    /// The head (the first `head_len` input bytes) is parsed; its body is arriving, kept after
    /// the head for the handler or, for a handler that does not read it, dropped as it comes.
    Body {
        head_len: usize,
        reader: BodyReader,
    },
    /// The request (the first `used` input bytes: its head, then `body_len` bytes of decoded
    /// body) was handed to the driver's pool; its response has not come back. The bytes stay
    /// in the input until it does, and nothing after them is read: the next response must not
    /// overtake this one.
    Pending {
        head_len: usize,
        body_len: usize,
        used: usize,
        /// The connection closes after the answer: its body was never asked for
        /// ([`Conn::answer_before_body`]).
        close: bool,
    },
    /// No more requests: send what is queued, then close. With `linger`, half-close first and
    /// discard input for a while, because the client may still be sending.
    Closing {
        linger: bool,
    },
    /// The write side is shut; discarding input until the client closes or the linger timer ends.
    Lingering,
    Closed,
}
// ANCHOR_END: phase

enum BodyReader {
    Length(u64),
    /// A body of known length the handler does not read: the bytes of it still to come.
    Unread(u64),
    /// Kept or dropped, as the decoder [keeps](ChunkedDecoder::keeps).
    Chunked(ChunkedDecoder),
}

/// Which timeout is running. Each phase has one; changing phase restarts the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Unset,
    /// A request head must complete in time (slowloris).
    Header,
    /// A request body must complete in time (slow POST).
    Body,
    /// Idle between requests.
    KeepAlive,
    /// Queued output must keep moving (a client that stopped reading).
    Send,
    Linger,
    /// An offloaded request's handler must answer in time (then 504).
    Handler,
}

/// Responses waiting to be sent: bytes first, then at most one file region.
#[derive(Default)]
struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Sent after `buf`: a file, or a body made as it goes. While it is here no further
    /// response is queued, which also keeps open file descriptors to one per connection at most.
    tail: Option<Box<Tail>>,
}

/// A response body that is not in the output buffer, and what its access log line waits for:
/// such a body may be large, and a client may leave midway, so its line is written when it ends
/// (whole, or cut short by the connection's end), with the bytes that reached the wire, as
/// nginx's `$body_bytes_sent` counts them.
struct Tail {
    body: TailBody,
    /// Bytes of the body queued so far: put into the output buffer (a piece, a part's lines,
    /// chunk framing) or sent from the file by the driver.
    queued: u64,
    /// The response's log line, begun when it was queued; `None` without an access log.
    line: Option<OpenLine>,
}

/// The kinds of [`Tail`].
enum TailBody {
    /// Sent by the driver with sendfile.
    File(FileBody),
    /// Pulled a piece at a time into the output buffer.
    Stream(StreamTail),
    /// Ranges of a file, each sent by the driver with sendfile, with the head of each part
    /// pulled into the output buffer before it.
    Parts(Box<super::Multipart>),
    /// Bytes shared with other responses, pulled into the output buffer a piece at a time from
    /// `at` on.
    Shared { bytes: Arc<SharedBytes>, at: usize },
    /// Every byte queued, the last of them still in the output buffer: the tail stays until
    /// they are written, so that its log line counts only bytes that went.
    Queued,
}

/// A body made as it is sent.
struct StreamTail {
    stream: Box<dyn super::BodyStream>,
    /// Framed as chunks; `false` to an HTTP/1.0 client, where the body ends with the connection.
    chunked: bool,
}

impl Tail {
    #[cold]
    fn new(body: TailBody, queued: u64) -> Option<Box<Tail>> {
        Some(Box::new(Tail {
            body,
            queued,
            line: None,
        }))
    }

    /// The body is over, whole or cut short, and `sent` of its bytes reached the wire: its log
    /// line can be written, and the bytes counted (as nginx's logging phase counts them).
    fn end(self, cx: &mut Context<'_>, sent: u64) {
        if let Some(metrics) = cx.metrics {
            metrics.bytes_sent.add(sent);
        }
        if let (Some(line), Some(log)) = (self.line, cx.log.as_deref_mut()) {
            log.end(line, cx.clock, sent);
        }
    }
}

/// One piece of a streamed body, read at most: what one pull may cost (a read and, for a
/// compressing stream, the compression of this much).
pub const STREAM_PIECE: usize = 16 * 1024;

impl Tail {
    fn file(&self) -> Option<&FileBody> {
        match &self.body {
            TailBody::File(file) => Some(file),
            TailBody::Parts(parts) => parts.current(),
            TailBody::Stream(..) | TailBody::Shared { .. } | TailBody::Queued => None,
        }
    }

    /// The file region the driver is sending, to advance by what it sent.
    fn file_mut(&mut self) -> Option<&mut FileBody> {
        match &mut self.body {
            TailBody::File(file) => Some(file),
            TailBody::Parts(parts) => Some(parts.current_mut()),
            TailBody::Stream(..) | TailBody::Shared { .. } | TailBody::Queued => None,
        }
    }
}

impl Output {
    /// A streamed tail: its next piece, framed as a chunk (unless the body ends with the
    /// connection), into the buffer; after its last, the last chunk. A multipart tail whose
    /// range is sent: the next part's lines, or the closing one. A shared body: its next piece.
    /// Once the last is written (a file's too), the response's log line. `None` if the tail is a
    /// file region for the driver to send; `Some(false)` if the body cannot be completed (it is
    /// dropped, and the connection must close rather than end it as if it were whole).
    fn pull(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        let whole = self.tail.as_deref_mut()?;
        if whole.file().is_some_and(|file| file.len > 0) {
            return None;
        }
        let buf = Self::buf_of(&mut self.buf, cx.pool);
        let start = buf.len();
        let ended = match &mut whole.body {
            TailBody::Stream(tail) => match Self::pull_stream(tail, buf) {
                Some(ended) => ended,
                None => {
                    self.end_tail(cx);
                    return Some(false);
                }
            },
            // Sent whole.
            TailBody::File(_) | TailBody::Queued => true,
            // The range before is sent: the next part's head, or the closing line.
            TailBody::Parts(parts) => !parts.advance(buf),
            TailBody::Shared { bytes, at } => {
                let end = bytes.len().min(*at + STREAM_PIECE);
                buf.extend_from_slice(&bytes[*at..end]);
                *at = end;
                end == bytes.len()
            }
        };
        whole.queued += (buf.len() - start) as u64;
        if ended && buf.len() > start {
            // The body's last bytes are in the buffer (a piece is pulled only into an empty
            // one): the tail ends once they are written.
            whole.body = TailBody::Queued;
        } else if ended {
            // Whole, every byte written.
            let tail = self.tail.take().expect("pulled from");
            let queued = tail.queued;
            tail.end(cx, queued);
        }
        Some(true)
    }

    /// A stream's next piece into `buf`; whether it was the last, or `None` if the body cannot
    /// be completed.
    fn pull_stream(tail: &mut StreamTail, buf: &mut Vec<u8>) -> Option<bool> {
        let start = buf.len();
        if tail.chunked {
            // The chunk size goes in front once known: eight hex digits, zero-padded (1*HEXDIG).
            buf.extend_from_slice(b"00000000\r\n");
        }
        let ended = match tail.stream.next_piece(buf) {
            Ok(0) => {
                buf.truncate(start);
                if tail.chunked {
                    buf.extend_from_slice(b"0\r\n\r\n");
                }
                true
            }
            Ok(n) => {
                if tail.chunked {
                    buf[start..start + 8].copy_from_slice(&hex8(n));
                    buf.extend_from_slice(b"\r\n");
                }
                false
            }
            Err(_) => {
                buf.truncate(start);
                return None;
            }
        };
        Some(ended)
    }

    /// Drops the tail, if any, cut short: its log line gets the bytes that reached the wire,
    /// those queued less those still in the buffer. (Pieces are pulled only into an empty
    /// buffer and a file is sent only from one, so what the buffer holds unwritten is the
    /// tail's last bytes, or the response's head if none of the body went.)
    fn end_tail(&mut self, cx: &mut Context<'_>) {
        if let Some(tail) = self.tail.take() {
            let unwritten = (self.buf.len() - self.written) as u64;
            let sent = tail.queued.saturating_sub(unwritten);
            tail.end(cx, sent);
        }
    }

    fn has_bytes(&self) -> bool {
        self.written < self.buf.len()
    }

    fn is_empty(&self) -> bool {
        !self.has_bytes() && self.tail.is_none()
    }

    fn buf(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        Self::buf_of(&mut self.buf, pool)
    }

    /// The output buffer, taken from the pool if the connection holds none.
    fn buf_of<'b>(buf: &'b mut Vec<u8>, pool: &mut BufPool) -> &'b mut Vec<u8> {
        if buf.capacity() == 0 {
            *buf = pool.take_output();
        }
        buf
    }

    /// Queues `response` (the handler's answer to a request, or an error when bytes were
    /// refused) and logs it.
    fn queue(
        &mut self,
        cx: &mut Context<'_>,
        answering: Answering<'_, '_>,
        response: &mut Response,
        head_method: bool,
        persistence: Persistence,
    ) {
        debug_assert!(self.tail.is_none(), "one tail at a time");
        let content_length = response.body.len();
        let buf = self.buf(cx.pool);
        let before = buf.len();
        cx.heads
            .write(buf, response, content_length, persistence, cx.clock);
        let head_len = buf.len() - before;
        let sends_body = !head_method && !response.status.forbids_body();
        let body_bytes = if sends_body { content_length } else { 0 };
        if sends_body {
            match std::mem::replace(&mut response.body, Body::Empty) {
                Body::Empty => {}
                Body::Static(bytes) => buf.extend_from_slice(bytes),
                Body::Bytes(bytes) => buf.extend_from_slice(&bytes),
                Body::Shared(bytes) => self.tail = Tail::new(TailBody::Shared { bytes, at: 0 }, 0),
                Body::File(file) if file.len > 0 => self.tail = Tail::new(TailBody::File(file), 0),
                Body::File(_) => {}
                Body::Parts(mut parts) => {
                    let before = buf.len();
                    parts.advance(buf);
                    let queued = (buf.len() - before) as u64;
                    self.tail = Tail::new(TailBody::Parts(parts), queued);
                }
                Body::Stream(stream) => {
                    let chunked = persistence != Persistence::CloseDelimited;
                    self.tail = Tail::new(TailBody::Stream(StreamTail { stream, chunked }), 0);
                }
            }
        }
        if let Some(metrics) = cx.metrics {
            metrics.responded(response.status.0, answering.is_request());
            // Counted when queued: the head, and a body made whole in memory. A body sent after
            // its head is counted when it ends, with what of it went (`Tail::end`).
            let body = if self.tail.is_some() { 0 } else { body_bytes };
            metrics.bytes_sent.add(head_len as u64 + body);
        }
        if let Some(log) = cx.log.as_deref_mut() {
            match self.tail.as_deref_mut() {
                None => log.record(
                    cx.peer,
                    cx.clock,
                    logged(answering),
                    response.status.0,
                    body_bytes,
                ),
                // A body not in the buffer is logged at its end, with what of it went
                // ([`Tail::end`]).
                Some(tail) => {
                    let status = response.status.0;
                    tail.line = Some(log.begin(cx.peer, cx.clock, logged(answering), status));
                }
            }
        }
    }

    /// Queues `response`, the answer to `request`; `open` is false if the server says the
    /// connection ends after it. Returns whether the connection stays open.
    fn respond(
        &mut self,
        cx: &mut Context<'_>,
        request: &Request<'_>,
        framing: Framing,
        open: bool,
        response: &mut Response,
    ) -> bool {
        // A streamed body has no length to announce; HTTP/1.0 has no chunks: it ends with the
        // connection.
        if framing.preconditions {
            check_preconditions(request, response);
        }
        let unframed =
            request.version == Version::Http10 && matches!(response.body, Body::Stream(_));
        let keep_alive = framing.keep_alive && open && !unframed;
        let persistence = match (keep_alive, request.version) {
            (false, _) if unframed => Persistence::CloseDelimited,
            (false, _) => Persistence::Close,
            (true, Version::Http10) => Persistence::KeepAlive,
            (true, Version::Http11) => Persistence::KeepAliveImplied,
        };
        self.queue(
            cx,
            Answering::Request(request),
            response,
            framing.head_method,
            persistence,
        );
        keep_alive
    }

    /// Queues `status` as the last answer of the connection. `head`: the request refused is a
    /// HEAD, so the answer has no content, though the connection ends with it (RFC 9110 9.3.2).
    fn queue_error(
        &mut self,
        cx: &mut Context<'_>,
        answering: Answering<'_, '_>,
        status: Status,
        head: bool,
    ) {
        let mut response = Response::error(status);
        self.queue(cx, answering, &mut response, head, Persistence::Close);
    }

    fn release(&mut self, pool: &mut BufPool) {
        if self.is_empty() && self.buf.capacity() > 0 {
            pool.give_output(std::mem::take(&mut self.buf));
            self.written = 0;
        }
    }
}

/// `If-Match` or `If-None-Match` against a response without an entity tag of its own (see
/// [`unvalidated_precondition`]). Out of line: rare, and `respond` stays small enough to be
/// inlined where every request passes.
#[cold]
#[inline(never)]
fn check_preconditions(request: &Request<'_>, response: &mut Response) {
    if let Some(status) = unvalidated_precondition(request, response) {
        response.failed_precondition(status);
    }
}

/// What a response answers, as the access log and the metrics see it.
#[derive(Clone, Copy)]
enum Answering<'a, 'r> {
    /// A request parsed.
    Request(&'a Request<'r>),
    /// Bytes refused before they made a request: the request's bytes as far as they came (none
    /// for a connection refused before it sent any).
    Refused(&'a [u8]),
}

impl Answering<'_, '_> {
    fn is_request(self) -> bool {
        matches!(self, Answering::Request(_))
    }
}

/// What the access log shows of what a response answers: a parsed request's parts, or the
/// first line of refused bytes if it came whole and is not too long to be a request line, else
/// nothing (`-`).
fn logged<'a>(answering: Answering<'a, '_>) -> Option<LoggedRequest<'a>> {
    match answering {
        Answering::Request(request) => Some(LoggedRequest::Parsed {
            method: request.method,
            target: request.target,
            version: request.version.as_str(),
        }),
        Answering::Refused(bytes) => {
            // Not empty: the empty lines before it are skipped.
            let line = super::first_line(&bytes[super::leading_empty_lines(bytes)..])?;
            (line.len() <= super::MAX_REQUEST_LINE).then_some(LoggedRequest::Line(line))
        }
    }
}

/// Whether the request that starts `request` (its bytes, as far as they came) is a HEAD, so that
/// a refusal of it has no content. The method comes first: whatever fault a head is refused
/// for, it asked for HEAD if it starts so.
fn is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

/// `n` as eight hex digits, zero-padded: a chunk's size, written in front of it once known.
fn hex8(n: usize) -> [u8; 8] {
    let mut digits = [b'0'; 8];
    for (at, digit) in digits.iter_mut().rev().enumerate() {
        *digit = b"0123456789abcdef"[(n >> (4 * at)) & 0xf];
    }
    digits
}

/// What one step of request processing achieved.
enum Step {
    /// Something changed (a request was answered, a phase entered): step again.
    Progress,
    /// Nothing more can happen until more bytes arrive.
    NeedData,
}

/// `want` without the borrowed slices, so the decision can be made with `&mut self`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Read,
    Write,
    SendFile,
    HalfClose,
    Wait,
    Close,
}

/// Whether the batch path ([`Conn::heads`]) may answer more than one request per step. Always,
/// except in tests that compare it with the general path.
#[cfg(not(test))]
#[inline(always)]
fn batching() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    /// Cleared by tests to run every request through the general path.
    pub(super) static BATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

#[cfg(test)]
fn batching() -> bool {
    BATCHING.with(std::cell::Cell::get)
}

impl Conn {
    /// A freshly accepted connection: its first request head is due within the header timeout.
    pub fn new(cx: &Context<'_>) -> Self {
        Conn {
            phase: Phase::Head {
                scan: HeadScan::default(),
                started: true,
            },
            input: Input::default(),
            output: Output::default(),
            timer_since: cx.clock.now_ms(),
            timer: Timer::Header,
            peer_closed: false,
            drain: Drain::No,
            sent_since_want: false,
            arrived: 0,
            awaiting_input: false,
            charge: None,
        }
    }

    /// A connection accepted only to be refused (over `--max-connections`): it answers `status`
    /// at once and closes without reading a request.
    pub fn refuse(status: Status, cx: &mut Context<'_>) -> Self {
        let mut conn = Conn::new(cx);
        conn.fail(status, &[], cx);
        conn
    }

    /// What the driver should do next. Answers every complete request that is buffered first.
    #[inline]
    pub fn want(&mut self, cx: &mut Context<'_>) -> Want<'_> {
        if self.awaiting_input {
            return Want::Read;
        }
        // Idle is the state after every response: nothing to parse, nothing to send. Said
        // without the general walk through the phases, since it is asked once per request.
        if self.is_idle() && self.drain != Drain::Now && !self.peer_closed {
            return self.await_request(cx);
        }
        self.decide(cx)
    }

    /// Idle: wait for the next request, holding no buffer.
    fn await_request(&mut self, cx: &mut Context<'_>) -> Want<'_> {
        self.arm_timer(Next::Read, cx);
        // Idle buffers go back to the loop's pool: an idle connection holds none.
        self.input.release(cx.pool);
        self.output.release(cx.pool);
        // Nothing is left to send (else the answer would not be Read): the buffers were either
        // given back or are the input's, which grows only within the budget. Only a share held
        // from before may have to come back.
        if self.charge.is_some() {
            self.settle_charge_cold(cx);
        }
        self.awaiting_input = true;
        Want::Read
    }

    fn decide(&mut self, cx: &mut Context<'_>) -> Want<'_> {
        let next = self.next(cx);
        if next == Next::Read {
            return self.await_request(cx);
        }
        self.arm_timer(next, cx);
        self.settle_charge(cx);
        match (next, self.output.tail.as_deref().and_then(Tail::file)) {
            (Next::Write, file) => Want::Write {
                bytes: &self.output.buf[self.output.written..],
                more: file.is_some_and(|file| (1..=HELD_HEAD_FILE_MAX).contains(&file.len)),
            },
            (Next::SendFile, Some(file)) => Want::SendFile {
                file: &file.file,
                offset: file.offset,
                len: file.len,
            },
            (Next::HalfClose, _) => Want::HalfClose,
            (Next::Wait, _) => Want::Wait,
            (Next::Read, _) => Want::Read,
            (Next::Close | Next::SendFile, _) => Want::Close,
        }
    }

    /// Room to read into, after [`Want::Read`].
    pub fn read_buf(&mut self, cx: &mut Context<'_>) -> &mut [u8] {
        // Takes a buffer, which the next `want` must give back if nothing arrives.
        self.awaiting_input = false;
        if self.input.is_full() {
            self.grow_unasked(cx);
        }
        self.input.spare(cx.pool)
    }

    /// A full input asked to read into: [`Conn::want`] grows it before it says Read, within the
    /// budget, so this is only a safeguard (counted against the budget, unasked, at the next
    /// `want`).
    #[cold]
    #[inline(never)]
    fn grow_unasked(&mut self, cx: &Context<'_>) {
        if let Some(size) = self.input.grown(self.read_cap(cx)) {
            self.input.grow(size);
        }
    }

    /// The most input the current request may occupy; never less than one pooled buffer.
    fn read_cap(&self, cx: &Context<'_>) -> usize {
        match &self.phase {
            Phase::Body {
                head_len,
                reader: BodyReader::Length(length),
            } => head_len + *length as usize,
            // A body dropped as it comes: a pooled buffer's worth at a time (more only for a head
            // that fills most of one).
            Phase::Body {
                head_len,
                reader: BodyReader::Unread(_),
            } => (head_len + BUF_SIZE / 2).max(BUF_SIZE),
            // A chunked body (if kept), its trailer section, and one read of framing.
            Phase::Body {
                head_len,
                reader: BodyReader::Chunked(decoder),
            } => {
                let body = match decoder.keeps() {
                    true => usize::try_from(cx.limits.max_body_bytes).unwrap_or(usize::MAX),
                    false => 0,
                };
                let rest = cx.limits.max_header_bytes + BUF_SIZE;
                head_len.saturating_add(body).saturating_add(rest)
            }
            _ => cx.limits.max_header_bytes + 1,
        }
    }

    /// What the buffers hold beyond their pooled size: what they take of the budget.
    fn beyond_pooled(&self) -> usize {
        beyond_pooled(self.input.capacity()) + beyond_pooled(self.output.buf.capacity())
    }

    /// Brings the budget up to date with what the buffers hold (output grows as responses are
    /// queued, and both shrink as buffers are freed), over its limit or not: output is never
    /// refused, its response being made already. Before every answer to a driver but the
    /// shortcut of [`Conn::want`], so that what the connection holds while the driver waits is
    /// counted. (Two comparisons for the common connection, whose buffers never grow.)
    #[inline(always)]
    fn settle_charge(&mut self, cx: &Context<'_>) {
        // The input grows only within the budget (`grow_input`); the output, unasked.
        if self.output.buf.capacity() > BUF_SIZE || self.charge.is_some() {
            self.settle_charge_cold(cx);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_charge_cold(&mut self, cx: &Context<'_>) {
        if self.beyond_pooled() == 0 {
            self.charge = None;
        } else {
            self.settled_charge(cx);
        }
    }

    /// The connection's share of the budget, made if need be, holding what its buffers hold now.
    fn settled_charge(&mut self, cx: &Context<'_>) -> &mut Charge {
        let held = self.beyond_pooled();
        let charge = (self.charge).get_or_insert_with(|| Box::new(Charge::new(&cx.limits.buffers)));
        charge.settle(held);
        charge
    }

    /// The input is full and must grow to `size` before more can be read (never past what the
    /// budget could give one connection alone): if the budget has room, it grows now. If not,
    /// the request gets 503 and the connection closes (the rest of what the client sends is read
    /// and dropped while it lingers); and if the buffer already holds all the budget could ever
    /// give it, the request is too large for this server: 413 for a body (a chunked one: one of
    /// known length was refused at its head), 431 for a head.
    #[cold]
    #[inline(never)]
    fn grow_input(&mut self, size: usize, cx: &mut Context<'_>) -> bool {
        let size = size.min(cx.limits.buffers.limit().saturating_add(BUF_SIZE));
        let status = if size > self.input.capacity() {
            let more = beyond_pooled(size) - beyond_pooled(self.input.capacity());
            if self.settled_charge(cx).try_grow(more) {
                self.input.grow(size);
                return true;
            }
            if let Some(metrics) = cx.metrics {
                metrics.over_budget();
            }
            Status::SERVICE_UNAVAILABLE
        } else if matches!(self.phase, Phase::Body { .. }) {
            Status::PAYLOAD_TOO_LARGE
        } else {
            Status::HEADERS_TOO_LARGE
        };
        let input = std::mem::take(&mut self.input);
        self.fail(status, input.data(), cx);
        // What the request held is let go at once (the next `want` settles the budget).
        drop(input);
        false
    }

    /// `n` bytes were read into [`Conn::read_buf`]; 0 means the client closed its side.
    pub fn received(&mut self, n: usize) {
        self.awaiting_input = false;
        if n == 0 {
            self.peer_closed = true;
        } else {
            self.input.filled(n);
            self.arrived = self
                .arrived
                .saturating_add(n.min(usize::from(u16::MAX)) as u16);
            if matches!(self.phase, Phase::Lingering) {
                self.input.consume(self.input.len());
            }
        }
    }

    /// `n` bytes of the last [`Want::Write`] were written.
    pub fn wrote(&mut self, n: usize) {
        self.awaiting_input = false;
        let output = &mut self.output;
        output.written += n;
        if output.written == output.buf.len() {
            output.buf.clear();
            output.written = 0;
        }
        self.sent_since_want |= n > 0;
    }

    /// `n` bytes of the last [`Want::SendFile`] were sent. 0 means the file ended before the
    /// promised length (it shrank): the response cannot be completed, so the connection closes
    /// rather than send bytes that are not the file.
    pub fn sent_file(&mut self, n: u64) {
        self.awaiting_input = false;
        let Some(tail) = self.output.tail.as_deref_mut() else {
            return;
        };
        let Some(file) = tail.file_mut() else {
            return;
        };
        if n == 0 {
            // The tail is logged as the connection closes (`Conn::closed`).
            self.phase = Phase::Closed;
            return;
        }
        let n = n.min(file.len);
        file.offset += n;
        file.len -= n;
        tail.queued += n;
        // A file sent whole ends, and a multipart body goes on with its next part, at the next
        // pull (`Output::pull`).
        self.sent_since_want = true;
    }

    // ANCHOR: deadline
    /// When the current timeout expires; `None` once closed.
    pub fn deadline(&self, limits: &Limits) -> Option<Millis> {
        let duration = match self.timer {
            Timer::Unset => return None,
            Timer::Header => limits.header_timeout,
            Timer::Body => limits.body_timeout,
            Timer::KeepAlive => limits.keep_alive_timeout,
            Timer::Send => limits.send_timeout,
            Timer::Linger => LINGER_TIMEOUT,
            Timer::Handler => limits.handler_timeout,
        };
        if self.waits_out_handover() {
            return Some(self.timer_since.deadline_after(duration.min(HANDOVER_IDLE)));
        }
        Some(self.timer_since.deadline_after(duration))
    }
    // ANCHOR_END: deadline

    /// The deadline passed: a request too slow to arrive gets 408; an idle, stalled or lingering
    /// connection is closed. Call [`Conn::want`] next.
    pub fn timed_out(&mut self, cx: &mut Context<'_>) {
        self.awaiting_input = false;
        let kind = match self.timer {
            Timer::Header => Some(Timeout::Header),
            Timer::Body => Some(Timeout::Body),
            Timer::KeepAlive => Some(Timeout::KeepAlive),
            Timer::Send => Some(Timeout::Send),
            Timer::Handler => Some(Timeout::Handler),
            Timer::Unset | Timer::Linger => None,
        };
        if let (Some(metrics), Some(kind)) = (cx.metrics, kind) {
            metrics.timed_out(kind);
        }
        // An idle connection of a server handing over was only waiting in case a request came.
        let handed_over = self.waits_out_handover();
        let input = std::mem::take(&mut self.input);
        match self.timer {
            Timer::Header | Timer::Body if !self.output.has_bytes() && !handed_over => {
                self.fail(Status::REQUEST_TIMEOUT, input.data(), cx)
            }
            // The handler is stuck: the client gets 504, and a response that comes back later
            // is dropped (see `completed`).
            Timer::Handler => self.fail(Status::GATEWAY_TIMEOUT, input.data(), cx),
            _ => self.phase = Phase::Closed,
        }
        self.input = input;
        self.timer = Timer::Unset;
    }

    /// Whether the connection is closing without reading anything more: what is queued is its
    /// last output (no file or stream follows, only perhaps the end of one already queued), and
    /// no lingering read comes after it.
    pub fn reads_no_more(&self) -> bool {
        (self.output.tail.as_deref()).is_none_or(|tail| matches!(tail.body, TailBody::Queued))
            && match self.phase {
                Phase::Closed => true,
                Phase::Closing { linger } => !self.lingers(linger),
                _ => false,
            }
    }

    /// Whether a close asked to linger (`Phase::Closing { linger }`) does read on after its
    /// output: not once the client has closed its side.
    fn lingers(&self, linger: bool) -> bool {
        linger && !self.peer_closed
    }

    /// Whether the connection is closed, what it had not sent given up (a timeout).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether a request of this connection is away in the driver's pool.
    pub fn is_pending(&self) -> bool {
        matches!(self.phase, Phase::Pending { .. })
    }

    /// The response to the request handed away by [`Offload::hand_over`]: queued now, in its turn,
    /// and the requests buffered behind it are answered next. A response for a connection that
    /// stopped waiting (it timed out, 504) is dropped.
    pub fn completed(&mut self, mut response: Response, cx: &mut Context<'_>) {
        let Phase::Pending {
            head_len,
            body_len,
            used,
            close,
        } = self.phase
        else {
            return;
        };
        self.awaiting_input = false;
        let input = std::mem::take(&mut self.input);
        let data = input.data();
        let mut storage = header_storage();
        // Parsed again from the bytes that stayed in the input.
        let (head, body) = (&data[..head_len], &data[head_len..head_len + body_len]);
        let used = match parse_again(head, body, &mut storage) {
            Ok((request, framing)) => {
                let open = !close && self.keeps_open(data.len() > used, cx);
                let keep_alive = self
                    .output
                    .respond(cx, &request, framing, open, &mut response);
                self.after_request(data, used, keep_alive, framing.keep_alive || close)
            }
            Err(status) => {
                self.fail(status, data, cx);
                0
            }
        };
        self.input = input;
        self.input.consume(used);
    }

    /// The connection is gone, and about to be dropped: a body sent after its head (a file, a
    /// streamed body), cut short (the client left, a write failed, the file shrank), still owes
    /// the access log its line, with the bytes that went until then; so does a request begun
    /// and never answered ([`Conn::log_cut_off`]).
    pub fn closed(&mut self, cx: &mut Context<'_>) {
        self.end(false, cx);
    }

    /// As [`Conn::closed`], when it is the server's stop that ends the connection, at the end
    /// of its drain time: a request it cuts off is the server's doing (503), whatever its
    /// client did meanwhile.
    pub fn cut_off(&mut self, cx: &mut Context<'_>) {
        self.end(true, cx);
    }

    fn end(&mut self, by_stop: bool, cx: &mut Context<'_>) {
        self.output.end_tail(cx);
        self.log_cut_off(by_stop, cx);
        self.phase = Phase::Closed;
    }

    /// The connection ends with a request begun that will never be answered: its access log
    /// line, with no bytes sent, as nginx writes one. A request whose head or body was still
    /// coming: 400 when the client ended it (closed or reset it part way, as a failed upload
    /// does). A request whole, its handler still running on the pool: 499, nginx's "client
    /// closed request". Either: 503 when the server's stop ended it (`by_stop`), at the end of
    /// its drain time. Without it, an upload that never arrived whole left no trace in the log. A
    /// connection closed before a byte of a request (empty lines between requests are no
    /// request) leaves none, as in nginx.
    #[cold]
    #[inline(never)]
    fn log_cut_off(&mut self, by_stop: bool, cx: &mut Context<'_>) {
        // 499 is only ever logged, never sent: it is no status of HTTP's.
        let client = match self.phase {
            Phase::Body { .. } => Status::BAD_REQUEST.0,
            Phase::Head { .. }
                if super::leading_empty_lines(self.input.data()) < self.input.len() =>
            {
                Status::BAD_REQUEST.0
            }
            Phase::Pending { .. } => 499,
            _ => return,
        };
        let Some(log) = cx.log.as_deref_mut() else {
            return;
        };
        // The client's doing, even during a stop, unless the stop's end is what ends it: a
        // reset a loop reads in the turn that begins its drain is still a reset (until stop 85,
        // the drain decided, and such a request was logged 503).
        let status = match by_stop {
            true => Status::SERVICE_UNAVAILABLE.0,
            false => client,
        };
        let request = logged(Answering::Refused(self.input.data()));
        log.record(cx.peer, cx.clock, request, status, 0);
    }

    /// Whether the connection stays open after the answer it is about to queue, with `more`
    /// bytes received behind its request: by its drain, or else by a stop asked for since its
    /// driver last looked ([`StopSignal`]); never with keep-alive off (`--keep-alive-timeout 0`).
    #[inline(always)]
    fn keeps_open(&self, more: bool, cx: &Context<'_>) -> bool {
        match self.drain {
            Drain::No => cx.stop.drain(),
            how => how,
        }
        .keeps_open(more)
            && !cx.limits.keep_alive_timeout.is_zero()
    }

    /// The server is stopping (`Drain::Now`) or handing over (`Drain::Handover`): finish the
    /// request in flight, if any, then close.
    pub fn drain(&mut self, how: Drain) {
        self.awaiting_input = false;
        self.drain = how;
        // Bytes already received are a request begun before the stop, looked at yet or not: a
        // driver may hand them over just before it passes the drain on.
        if how == Drain::Now
            && !self.input.is_empty()
            && let Phase::Head { started, .. } = &mut self.phase
        {
            *started = true;
        }
    }

    /// Idle on a server that is handing over: waiting only for a last request, for a while.
    fn waits_out_handover(&self) -> bool {
        self.drain == Drain::Handover && self.is_idle()
    }

    /// Nothing received that is not answered, nothing waiting to be sent: closing the connection
    /// now would lose nothing. (Blocking drivers wake such connections at shutdown.)
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head { .. }) && self.input.is_empty() && self.output.is_empty()
    }

    /// Response bytes queued and not yet written (a file body being sent not counted): what a
    /// client that does not read makes the connection hold.
    pub fn unsent(&self) -> usize {
        self.output.buf.len() - self.output.written
    }

    /// Whether the connection holds input or output buffers (an idle one should not).
    pub fn holds_buffers(&self) -> bool {
        self.input.holds_buffer() || self.output.buf.capacity() > 0
    }

    fn next(&mut self, cx: &mut Context<'_>) -> Next {
        loop {
            let has_bytes = self.output.has_bytes();
            let tail_waiting = self.output.tail.is_some();
            // ANCHOR: backpressure
            match self.phase {
                Phase::Closed => return Next::Close,
                // Output takes over when nothing may overtake it, or when enough is queued.
                _ if has_bytes && (tail_waiting || self.output.buf.len() >= OUTPUT_HIGH_WATER) => {
                    return Next::Write;
                }
                // ANCHOR_END: backpressure
                _ if tail_waiting => match self.output.pull(cx) {
                    // A file: the driver sends it.
                    None => return Next::SendFile,
                    Some(true) => {}
                    // The body cannot be completed: close rather than end it as if it were.
                    Some(false) => self.phase = Phase::Closed,
                },
                Phase::Lingering if self.peer_closed => self.phase = Phase::Closed,
                Phase::Lingering => return Next::Read,
                Phase::Closing { .. } if has_bytes => return Next::Write,
                Phase::Closing { linger } => {
                    if self.lingers(linger) {
                        self.phase = Phase::Lingering;
                        self.input.consume(self.input.len());
                        return Next::HalfClose;
                    }
                    self.phase = Phase::Closed;
                }
                Phase::Head { started, .. }
                    if self.drain == Drain::Now && (!started || self.input.is_empty()) =>
                {
                    self.phase = Phase::Closing { linger: false };
                }
                Phase::Pending { .. } if has_bytes => return Next::Write,
                Phase::Pending { .. } => return Next::Wait,
                Phase::Head { .. } | Phase::Body { .. } => match self.step(cx) {
                    Step::Progress => {}
                    Step::NeedData if has_bytes => return Next::Write,
                    // Nothing more will come to complete what is buffered.
                    Step::NeedData if self.peer_closed => {
                        self.log_cut_off(false, cx);
                        self.phase = Phase::Closed;
                    }
                    Step::NeedData => match self.input.grown(self.read_cap(cx)) {
                        None => return Next::Read,
                        Some(size) if self.grow_input(size, cx) => return Next::Read,
                        Some(_) => {}
                    },
                },
            }
        }
    }

    /// Advances request processing as far as the buffered input allows.
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        // Nothing buffered between requests: the state after every answer. Nothing can change,
        // so skip the set-up below (about 150 of 2,650 instructions per request, measured with
        // benches/callgrind-per-request.sh, when each request comes in its own read).
        if self.input.is_empty() && matches!(self.phase, Phase::Head { .. }) {
            return Step::NeedData;
        }
        // A request being answered borrows the input bytes while the rest of the connection
        // changes; so the input is taken out for the duration of the step.
        let mut input = std::mem::take(&mut self.input);
        let step = self.step_with(&mut input, cx);
        self.input = input;
        step
    }

    fn step_with(&mut self, input: &mut Input, cx: &mut Context<'_>) -> Step {
        let max_header_bytes = cx.limits.max_header_bytes;
        match &mut self.phase {
            Phase::Head { .. } => self.heads(input, cx),
            Phase::Body {
                head_len,
                reader: BodyReader::Length(length),
            } => {
                let (head_len, length) = (*head_len, *length as usize);
                if input.len() < head_len + length {
                    return Step::NeedData;
                }
                let used = self.finish(input.data(), head_len, length, head_len + length, cx);
                input.consume(used);
                Step::Progress
            }
            Phase::Body {
                head_len,
                reader: BodyReader::Unread(left),
            } => {
                // Drop what has come of the body; keep what follows it (a pipelined request).
                let head_len = *head_len;
                let here = input.len() - head_len;
                let dropped = here.min(usize::try_from(*left).unwrap_or(usize::MAX));
                input.data_mut().copy_within(head_len + dropped.., head_len);
                input.truncate(input.len() - dropped);
                *left -= dropped as u64;
                if *left > 0 {
                    return Step::NeedData;
                }
                let used = self.finish(input.data(), head_len, 0, head_len, cx);
                input.consume(used);
                Step::Progress
            }
            Phase::Body {
                head_len,
                reader: BodyReader::Chunked(decoder),
            } => {
                let head_len = *head_len;
                let body = &mut input.data_mut()[head_len..];
                match decoder.decode(body, cx.limits.max_body_bytes, max_header_bytes) {
                    Ok(Decoded::NeedData) => {
                        // Framing already read is spent: drop it (and the body, if unread).
                        let kept = decoder.discard_framing(body);
                        input.truncate(head_len + kept);
                        Step::NeedData
                    }
                    Ok(Decoded::Done) => {
                        let (body_len, raw_len) = (decoder.body_len(), decoder.raw_len());
                        let used =
                            self.finish(input.data(), head_len, body_len, head_len + raw_len, cx);
                        input.consume(used);
                        Step::Progress
                    }
                    Err(status) => {
                        self.fail(status, input.data(), cx);
                        Step::Progress
                    }
                }
            }
            Phase::Pending { .. } | Phase::Closing { .. } | Phase::Lingering | Phase::Closed => {
                Step::NeedData
            }
        }
    }

    // ANCHOR: heads
    /// Request heads, as many as the input holds: the batch path. Pipelined requests without
    /// bodies are answered one after another here, without going back through [`Conn::next`]
    /// for each: the walk through the phases, and taking the input out and putting it back,
    /// are done once per batch. The batch ends at anything else: a body to read, a head not
    /// complete, a file or stream to send (nothing may overtake it), output past its high
    /// water mark, a response away on the pool, or the connection closing.
    fn heads(&mut self, input: &mut Input, cx: &mut Context<'_>) -> Step {
        let mut answered = false;
        loop {
            if let Step::NeedData = self.head(input, cx) {
                return if answered {
                    Step::Progress
                } else {
                    Step::NeedData
                };
            }
            answered = true;
            let fresh = matches!(&self.phase, Phase::Head { scan, .. } if scan.is_fresh());
            if !(fresh && batching())
                || input.is_empty()
                || self.output.tail.is_some()
                || self.output.buf.len() >= OUTPUT_HIGH_WATER
            {
                return Step::Progress;
            }
        }
    }
    // ANCHOR_END: heads

    /// One request head: parsed (and answered, if it has no body) once it is complete.
    #[inline(always)]
    fn head(&mut self, input: &mut Input, cx: &mut Context<'_>) -> Step {
        let max_header_bytes = cx.limits.max_header_bytes;
        let Phase::Head { scan, started } = &mut self.phase else {
            return Step::NeedData;
        };
        // Two stores for header fields, one per path: uninitialized, they cost nothing.
        let (mut storage, mut fallback_storage) = (header_storage(), header_storage());
        let parsed = if scan.is_fresh() {
            input.consume(leading_empty_lines(input.data()));
            // A lone CR may be the first half of one more empty line: wait for what
            // follows rather than scan it as the start of a request. (Found by the
            // `conn` fuzz target: split between CR and LF, a leading empty line turned a
            // valid request into a 400.)
            if input.is_empty() || input.data() == b"\r" {
                return Step::NeedData;
            }
            if !*started {
                *started = true;
                self.timer = Timer::Unset; // the header timer starts now
            }
            parse_whole_head(input.data(), &mut storage, max_header_bytes)
        } else {
            None
        };
        // Each path hands its result over directly: a request is large to copy.
        let used = match &parsed {
            Some(head) => self.on_parsed(input.data(), head, cx),
            None => match scan.scan(input.data(), max_header_bytes) {
                Ok(Scanned::NeedData) => return Step::NeedData,
                Ok(Scanned::Complete(len)) => {
                    // HTTP/1.2 and the like, read as 1.1 (the one path that edits input).
                    downgrade_later_minor(&mut input.data_mut()[..len]);
                    let data = input.data();
                    let head = parse_head(&data[..len], &mut fallback_storage)
                        .map(|(request, framing)| (request, framing, len));
                    self.on_parsed(data, &head, cx)
                }
                Err(status) => {
                    self.fail(status, input.data(), cx);
                    0
                }
            },
        };
        input.consume(used);
        Step::Progress
    }

    /// A head was parsed from the start of `data`, or refused. Returns the input bytes used.
    fn on_parsed(
        &mut self,
        data: &[u8],
        head: &Result<Head<'_>, Status>,
        cx: &mut Context<'_>,
    ) -> usize {
        // Matched by reference: moving the request out would copy it, and the copy's loads
        // would wait on the stores that just wrote it.
        match head {
            Ok((request, framing, head_len)) => {
                self.on_head(data, request, *framing, *head_len, cx)
            }
            Err(status) => {
                self.fail(*status, data, cx);
                0
            }
        }
    }

    /// A complete head of `head_len` bytes starts `data`: answer it now if it has no body (or
    /// the whole body is here already), otherwise move on to reading the body. Returns the input
    /// bytes the request used, to be consumed.
    fn on_head(
        &mut self,
        data: &[u8],
        request: &Request<'_>,
        framing: Framing,
        head_len: usize,
        cx: &mut Context<'_>,
    ) -> usize {
        let length = match framing.body {
            BodyLength::None => {
                return self.answer(data, request, framing, head_len, head_len, false, cx);
            }
            BodyLength::Length(length) if length > cx.limits.max_body_bytes => {
                // Refused before a byte of the body is read, 100-continue or not.
                return self.refuse_body(request, framing, Status::PAYLOAD_TOO_LARGE, cx);
            }
            BodyLength::Length(length) => length as usize,
            BodyLength::Chunked => 0,
        };
        let body_here = framing.body != BodyLength::Chunked && data.len() >= head_len + length;
        if body_here && !framing.expect_continue {
            // The common small POST: head and body arrived together; no second parse.
            let request = Request {
                body: &data[head_len..head_len + length],
                ..*request
            };
            return self.answer(
                data,
                &request,
                framing,
                head_len,
                head_len + length,
                false,
                cx,
            );
        }
        let reads_body = cx.reads_body(request);
        // A body kept for its handler that could not fit in the buffer budget even with nothing
        // else held (twice, for one copied to the handler pool) is larger than this server can
        // take (RFC 9110 15.5.14): 413, as over `--max-body-bytes`, before it is read. (The pool
        // says so too, once the body is whole; said only there, a body that could never fit was
        // 503 instead whenever what others held left too little room to read it.)
        if reads_body && cx.could_never_hold(request, head_len + length) {
            return self.refuse_body(request, framing, Status::PAYLOAD_TOO_LARGE, cx);
        }
        if framing.expect_continue {
            if !reads_body {
                return self.answer_before_body(data, request, framing, head_len, cx);
            }
            // A body that would not fit in what is left of the buffer budget now is refused
            // before the client sends it (were it sent, it would be refused on its way).
            if !cx.limits.buffers.has_room(beyond_pooled(head_len + length)) {
                if let Some(metrics) = cx.metrics {
                    metrics.over_budget();
                }
                return self.refuse_body(request, framing, Status::SERVICE_UNAVAILABLE, cx);
            }
            // The client waits for this before sending the body. Always sent, even if the body
            // is already here, so the output does not depend on how the input was split.
            self.output
                .buf(cx.pool)
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        // A body its handler does not read is dropped as it arrives, so that however large it
        // is it holds no memory. Framing and limits are checked alike, and the bytes sent back
        // are the same.
        let reader = match (framing.body, reads_body) {
            (BodyLength::Chunked, true) => BodyReader::Chunked(ChunkedDecoder::new()),
            (BodyLength::Chunked, false) => BodyReader::Chunked(ChunkedDecoder::dropping()),
            (_, true) => BodyReader::Length(length as u64),
            (_, false) => BodyReader::Unread(length as u64),
        };
        self.phase = Phase::Body { head_len, reader };
        self.timer = Timer::Unset; // the body timer starts now
        0
    }

    /// Refuses a request before a byte of its body is read: its status, and close (lingering:
    /// the body may come anyway).
    #[cold]
    #[inline(never)]
    fn refuse_body(
        &mut self,
        request: &Request<'_>,
        framing: Framing,
        status: Status,
        cx: &mut Context<'_>,
    ) -> usize {
        self.output
            .queue_error(cx, Answering::Request(request), status, framing.head_method);
        self.phase = Phase::Closing { linger: true };
        0
    }

    /// A client waits for `100 Continue` before sending a body that the handler would not read:
    /// the answer does not depend on it, so it is sent now instead (RFC 9110 10.1.1: a final
    /// status "if that status can be determined by examining just the method, target URI, and
    /// header fields"), and the body is never asked for. `curl -T` of a large file to a static
    /// path gets its 405 at once rather than after the upload. The connection closes after the
    /// answer, saying so (the client may send the body anyway, or not at all: only a close ends
    /// the doubt), and lingers, discarding what the client still sends. The same whether or
    /// not some of the body came with the head, so the output does not depend on the split.
    #[cold]
    #[inline(never)]
    fn answer_before_body(
        &mut self,
        data: &[u8],
        request: &Request<'_>,
        framing: Framing,
        head_len: usize,
        cx: &mut Context<'_>,
    ) -> usize {
        let request = Request {
            body: &[],
            ..*request
        };
        self.answer(data, &request, framing, head_len, head_len, true, cx)
    }

    /// The body is complete: `body_len` decoded bytes after the head, the request `total` bytes
    /// long in all. Parse the head again (it was parsed when it arrived, but the buffer may have
    /// moved since) and answer. Returns the input bytes used.
    fn finish(
        &mut self,
        data: &[u8],
        head_len: usize,
        body_len: usize,
        total: usize,
        cx: &mut Context<'_>,
    ) -> usize {
        let mut storage = header_storage();
        let (head, body) = (&data[..head_len], &data[head_len..head_len + body_len]);
        let Ok((request, framing)) = parse_again(head, body, &mut storage) else {
            self.fail(Status::BAD_REQUEST, head, cx);
            return 0;
        };
        self.answer(data, &request, framing, head_len, total, false, cx)
    }

    /// A whole request (`head_len` bytes of head, its body in `request.body`, `used` input
    /// bytes in all) is here: answer it, or hand it to the driver's pool and wait. Returns the
    /// input bytes to consume (none while the request is away: they stay until its answer).
    /// `close`: the connection closes after this answer whatever the request asked
    /// ([`Conn::answer_before_body`]). (Inlined into its callers: as a call of its own it cost 25
    /// instructions per request; and so its arguments, constants at most call sites, cost
    /// nothing to pass.)
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        data: &[u8],
        request: &Request<'_>,
        framing: Framing,
        head_len: usize,
        used: usize,
        close: bool,
        cx: &mut Context<'_>,
    ) -> usize {
        let mut answer = if framing.known_method {
            cx.ask(request)
        } else {
            // No handler is asked about a method nobody here implements (RFC 9110 15.6.2). Its
            // framing was understood, so the connection goes on.
            Some(Response::error(Status::NOT_IMPLEMENTED))
        };
        // The response stays where the handler put it, and is queued from there.
        let response = match &mut answer {
            Some(response) => response,
            // It may block: to the pool.
            None => answer.insert(match cx.offload.as_deref_mut() {
                Some(offload) => match offload.hand_over(request, &data[..head_len]) {
                    Handover::Away => {
                        self.phase = Phase::Pending {
                            head_len,
                            body_len: request.body.len(),
                            used,
                            close,
                        };
                        self.timer = Timer::Unset; // the handler timer starts now
                        return 0;
                    }
                    Handover::Refused(status) => Response::error(status),
                },
                // Declined with nowhere to go: a driver that gave a declining handler and
                // no pool.
                None => Response::error(Status::INTERNAL_SERVER_ERROR),
            }),
        };
        let open = !close && self.keeps_open(data.len() > used, cx);
        let keep_alive = self.output.respond(cx, request, framing, open, response);
        // The queue took the body (unless it sends none): see `Body::discard`.
        if let Some(Response { body, .. }) = answer {
            body.discard();
        }
        self.after_request(data, used, keep_alive, framing.keep_alive || close)
    }

    /// The request (the first `used` bytes of `data`) is answered: on to the next, or to
    /// closing (`keep_alive` false). `asked_keep_alive`: the client meant to go on. Returns
    /// `used`.
    fn after_request(
        &mut self,
        data: &[u8],
        used: usize,
        keep_alive: bool,
        asked_keep_alive: bool,
    ) -> usize {
        self.timer = Timer::Unset;
        self.phase = if keep_alive {
            Phase::Head {
                scan: HeadScan::default(),
                started: false,
            }
        } else {
            // The client may still be sending: bytes after the last request are here, or the
            // server closes a connection the client meant to keep (a stop, a response that
            // must end with the connection), on which it may be pipelining. Then linger, so
            // that what it sends next does not meet a reset (RFC 9112 9.6). A client that
            // asked to close sends nothing more (9.6 again).
            Phase::Closing {
                linger: data.len() > used || asked_keep_alive,
            }
        };
        used
    }

    /// Answers with an error status and closes: the input can no longer be trusted to say where
    /// the next request begins. `request`: the bytes of the request refused, as far as they came
    /// (none for a connection refused before it sent any); a HEAD's refusal has no content.
    fn fail(&mut self, status: Status, request: &[u8], cx: &mut Context<'_>) {
        self.output
            .queue_error(cx, Answering::Refused(request), status, is_head(request));
        self.phase = Phase::Closing { linger: true };
    }

    /// Starts the timer the connection's state calls for, unless it is already running.
    fn arm_timer(&mut self, next: Next, cx: &Context<'_>) {
        let timer = match next {
            Next::Close => Timer::Unset,
            Next::Write | Next::SendFile => Timer::Send,
            Next::HalfClose => Timer::Linger,
            Next::Wait => Timer::Handler,
            Next::Read => match self.phase {
                Phase::Lingering => Timer::Linger,
                Phase::Head { started: false, .. } => Timer::KeepAlive,
                Phase::Body { .. } => Timer::Body,
                _ => Timer::Header,
            },
        };
        // A send timer restarts whenever output moves; a body's gains time as the body comes;
        // the others run from when they started.
        if timer != self.timer || (timer == Timer::Send && self.sent_since_want) {
            self.timer = timer;
            self.timer_since = cx.clock.now_ms();
        } else if timer == Timer::Body && self.arrived > 0 {
            self.credit_body(cx);
        }
        self.arrived = 0;
        self.sent_since_want = false;
    }

    // ANCHOR: credit_body
    /// Bytes of the body came: its timer runs from a second later for every `body_min_rate` of
    /// them, but from no later than now, so that a client cannot bank time by sending fast and
    /// then stall for longer than the body timeout.
    #[cold]
    fn credit_body(&mut self, cx: &Context<'_>) {
        // A rate of 0: the body gains nothing, and must come whole within the timeout.
        let rate = u64::from(cx.limits.body_min_rate);
        if let Some(gained) = (u64::from(self.arrived) * 1000).checked_div(rate) {
            let since = self.timer_since.0.saturating_add(gained);
            self.timer_since = Millis(since.min(cx.clock.now_ms().0));
        }
    }
    // ANCHOR_END: credit_body
}

#[doc(hidden)]
pub mod memory;
#[cfg(test)]
mod tests;
