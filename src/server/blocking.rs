//! One connection at a time, on blocking sockets: the tutorials' first server, done right.
//!
//! [`serve_connection`] is the driver loop of `http/conn.rs` with blocking calls: each `Want`
//! becomes one read, write or sendfile that waits until it can be done. There is no timer heap:
//! the socket's receive timeout (SO_RCVTIMEO) wakes a read that waits too long, and a write
//! that finds the socket full waits in `poll` for room, until the connection's deadline
//! ([`SocketTimeouts::wait_for_room`]). The threaded mode serves each of its connections with
//! this same function, on a worker thread, and the fork mode in a child process.
//!
//! A blocking server cannot wait for shutdown and for a client at once, so a thread parked in
//! `read` on an idle keep-alive connection is woken by shutting down the socket's read side
//! ([`Active`]). The acceptor waits in `poll` for its listener or a wake-up socket, then
//! accepts without blocking: the listener may be shared with another process (an upgrade's),
//! which may take the connection first, and a shutdown of the listener's read side would end
//! that process's accepting too.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown as HalfClose, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use slab::Slab;

use super::shutdown::{DRAIN_GRACE, wait_for, wait_readable};
use super::{LoopEnv, Shared, Shutdown, io_util};
use crate::http::{Context, HANDOVER_IDLE, Millis, Status, Want};
use crate::metrics::LoopMetrics;
use crate::session::Session;

/// A blocking wait may end this much after its deadline: the socket timeout is only shortened
/// when the deadline moves earlier by more than this, which spares a setsockopt per request.
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// `--mode blocking`: accept a connection, serve it until it closes, accept the next.
pub(crate) fn run<S: Session>(
    listeners: Vec<TcpListener>,
    setup: S::Setup,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let active = Active::new(&shutdown)?;
    shared.announce_ready();
    let mut env = LoopEnv::waiting(shared);
    let mut acceptor = Acceptor::new(listeners);
    while let Some((stream, peer)) = acceptor.accept(&active, &shutdown, env.metrics.as_deref())? {
        serve_counted::<S>(stream, peer, &setup, &mut env, &active, &shutdown, None);
    }
    for (stream, peer) in acceptor.backlog(&shutdown, Instant::now()) {
        serve_counted::<S>(stream, peer, &setup, &mut env, &active, &shutdown, None);
    }
    Ok(())
}

/// [`serve_connection`], counted in the loop's metrics as a connection accepted, then closed;
/// `open`, the server's count of open connections (threaded mode), goes down before the
/// metrics say closed, so that a client who reads them never finds the server fuller than they
/// say. (Fork mode's parent counts its children's connections itself: it sees them all.) The
/// thread then waits for its next connection, for as long as that takes: its log lines are
/// written first, and its log file let go (`AccessLog::park`).
pub(crate) fn serve_counted<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    setup: &S::Setup,
    env: &mut LoopEnv,
    active: &Active,
    shutdown: &Shutdown,
    open: Option<&AtomicUsize>,
) {
    if let Some(metrics) = &env.metrics {
        metrics.accepted.add(1);
    }
    serve_connection::<S>(stream, peer, setup, env, active, shutdown);
    env.park_log();
    if let Some(open) = open {
        open.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(metrics) = &env.metrics {
        metrics.closed.add(1);
    }
}

/// The listening sockets of the blocking modes (one, unless more were passed in), taken in
/// turn: connections queued on one cannot keep another's waiting.
pub(crate) struct Acceptor {
    listeners: Vec<TcpListener>,
    /// The listener tried first next time.
    next: usize,
}

impl Acceptor {
    pub(crate) fn new(listeners: Vec<TcpListener>) -> Acceptor {
        assert!(!listeners.is_empty(), "an acceptor needs a listener");
        Acceptor { listeners, next: 0 }
    }

    /// The next connection, or `None` once shutdown began. Retries what is worth retrying.
    pub(crate) fn accept(
        &mut self,
        active: &Active,
        shutdown: &Shutdown,
        metrics: Option<&LoopMetrics>,
    ) -> io::Result<Option<(TcpStream, IpAddr)>> {
        let mut trouble = io_util::AcceptTrouble::default();
        loop {
            if shutdown.is_triggered() {
                return Ok(None);
            }
            active.wait_for_connection(&self.listeners);
            if shutdown.is_triggered() {
                return Ok(None);
            }
            match self.accept_any() {
                // Accepted sockets do not inherit O_NONBLOCK on Linux: they block, as served.
                Ok((stream, peer)) => {
                    trouble.accepted();
                    return Ok(Some((stream, peer.ip())));
                }
                // Someone else took it (another process on a shared listener), or a wake-up.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if io_util::is_transient_accept_error(&err) => {
                    io_util::count_accept_error(metrics, false);
                }
                Err(err) if io_util::is_resource_exhaustion(&err) => {
                    io_util::count_accept_error(metrics, true);
                    trouble.failed(&err);
                    thread::sleep(io_util::ACCEPT_BACKOFF);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One `accept` on each listener in turn, starting after the one that answered last, until
    /// one has a connection (or an error); WouldBlock if none has.
    fn accept_any(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let count = self.listeners.len();
        for turn in 0..count {
            let index = (self.next + turn) % count;
            match self.listeners[index].accept() {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                answer => {
                    self.next = (index + 1) % count;
                    return answer;
                }
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// After shutdown: the connections the kernel had already accepted, on every listener,
    /// taken without waiting for more, while the drain time lasts. Their requests are in flight
    /// too (the reactor takes them the same way before closing its listeners). None on a
    /// handover: they are the new process's.
    pub(crate) fn backlog<'a>(
        &'a self,
        shutdown: &Shutdown,
        since: Instant,
    ) -> impl Iterator<Item = (TcpStream, IpAddr)> + 'a {
        let take = !shutdown.is_handover();
        let mut listeners = self.listeners.iter().filter(move |_| take);
        let mut listener = listeners.next();
        std::iter::from_fn(move || {
            while let Some(current) = listener
                && since.elapsed() < DRAIN_GRACE
            {
                match current.accept() {
                    // Accepted sockets do not inherit O_NONBLOCK on Linux: they block, as served.
                    Ok((stream, peer)) => return Some((stream, peer.ip())),
                    Err(err) if io_util::is_transient_accept_error(&err) => {}
                    // This one's queue is empty (or it failed): the next listener's.
                    Err(_) => listener = listeners.next(),
                }
            }
            None
        })
    }
}

// ANCHOR: serve_connection
/// Serves one connection until it closes.
pub(crate) fn serve_connection<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    setup: &S::Setup,
    env: &mut LoopEnv,
    active: &Active,
    shutdown: &Shutdown,
) {
    env.clock.tick();
    let conn = env.with_context(peer, |cx| S::open(setup, cx));
    drive(stream, peer, conn, env, active, shutdown);
}

/// Drives one connection's session (`S::open`'s, or `S::refuse`'s) until it closes.
fn drive<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    mut conn: S,
    env: &mut LoopEnv,
    active: &Active,
    shutdown: &Shutdown,
) {
    let slot = active.register(&stream);
    let mut timeouts = SocketTimeouts::new(&stream);
    let fd = stream.as_raw_fd();
    let mut stream = &stream;
    // Whether the stop's end, not the client or an error, ended the connection.
    let mut cut = false;
    loop {
        env.clock.tick();
        env.flush_log_if_due();
        // Mark idle before looking at the flag: shutdown sets the flag before it looks for idle
        // connections, so one of the two always sees the other.
        let idle = conn.is_idle();
        slot.set_idle(idle);
        // A stop closes an idle connection at once, so first let it read a request that has
        // already arrived. (A handover lets an idle connection read one more anyway.)
        if shutdown.is_triggered()
            && (shutdown.is_handover() || !(idle && io_util::unread_bytes(stream.as_raw_fd()) > 0))
        {
            conn.drain(shutdown.drain_kind());
        }
        // The drain time is up (the blocking modes shut the socket then; a fork mode child's
        // parent signals it, ending any wait): the connection ends here, and `cut_off` writes
        // what it owes the access log.
        if shutdown.is_ended() {
            cut = true;
            break;
        }
        let now = env.clock.now();
        let log_due = env.log.as_ref().and_then(|log| log.flush_due());
        let done = env.with_context(peer, |cx| match conn.want(cx) {
            Want::Read => {
                timeouts.blocking();
                // Wake no later than the connection's deadline, or the next log flush.
                let deadline = conn.deadline(cx.limits).map(Millis::instant);
                let wake = [deadline, log_due].into_iter().flatten().min();
                timeouts.read_until(wake, now);
                // Between requests, the next one's first bytes are waited for where a stop can
                // see them, in the socket, and taken only once the connection is marked busy.
                // Read at once, they could be taken in the instant before the mark, and a stop
                // would then shut the read side of a connection that looks idle with nothing
                // unread (`Active::wake_idle`), under a request begun.
                let ready = if idle {
                    arrived(stream).map(|()| slot.set_idle(false))
                } else {
                    Ok(())
                };
                let read = ready.and_then(|()| stream.read(conn.read_buf(cx)));
                match read {
                    // The socket's read side shut by the end of a stop's drain time: the server
                    // ends the connection, not the client (the access log tells them apart), at
                    // the top of the loop.
                    Ok(0) if shutdown.is_ended() => {}
                    Ok(n) => conn.received(n),
                    Err(err) if is_timeout(&err) => {
                        if deadline.is_some_and(|at| Instant::now() >= at) {
                            conn.timed_out(cx);
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return true,
                }
                false
            }
            Want::Write { bytes, more } => {
                match timeouts.send(|| io_util::send_now(fd, bytes, more)) {
                    Ok(n) => {
                        conn.wrote(n);
                        false
                    }
                    Err(err) => timeouts.wait_for_room(err, &mut conn, cx, log_due),
                }
            }
            Want::SendFile { file, offset, len } => {
                timeouts.nonblocking();
                match timeouts.send(|| io_util::sendfile(fd, file, offset, len)) {
                    Ok(n) => {
                        conn.sent_file(n);
                        false
                    }
                    Err(err) => timeouts.wait_for_room(err, &mut conn, cx, log_due),
                }
            }
            Want::HalfClose => {
                let _ = stream.shutdown(HalfClose::Write);
                false
            }
            // Only a driver with a handler pool is asked to wait; this one calls handlers
            // where it stands (a blocking thread may block), so it never hands one away.
            Want::Wait | Want::Close => true,
        });
        if done {
            break;
        }
        slot.set_idle(false);
    }
    env.with_context(peer, |cx| match cut {
        true => conn.cut_off(cx),
        false => conn.closed(cx),
    });
    // Closed over unread input, a socket is reset, and what of the last response is still
    // queued to send is lost. A client may have sent its next request behind the one answered
    // last (at a stop, in fork mode, a response in flight lost megabytes this way): read out what
    // is waiting first, as the reactor does.
    io_util::discard_unread(stream.as_raw_fd());
}
// ANCHOR_END: serve_connection

/// Waits until something can be read from `stream` (bytes, or its end), and leaves it there.
fn arrived(stream: &TcpStream) -> io::Result<()> {
    let mut byte = 0u8;
    // SAFETY: recv writes at most one byte, into `byte`.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What [`refuse`] did with a connection.
pub(crate) enum Refusal<S> {
    /// Answered (or, where it could not be, closed): nothing is left to do.
    Done,
    /// The answer needs a conversation first (a TLS handshake): for a thread that may wait on
    /// the client, [`serve_refusal`]. The socket is blocking again.
    Needs(TcpStream, S),
}

/// Refuses a connection over `--max-connections` with 503 without blocking: one non-blocking
/// write of the answer, then close. (Blocking modes cannot afford to linger on it.) Over TLS,
/// the answer comes after a handshake: that session is handed back to be served by a thread
/// that may wait (threaded mode's refusing threads, fork mode's refusing children), or closed.
pub(crate) fn refuse<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    setup: &S::Setup,
    env: &mut LoopEnv,
) -> Refusal<S> {
    if let Some(metrics) = &env.metrics {
        metrics.refused.add(1);
    }
    if stream.set_nonblocking(true).is_err() {
        return Refusal::Done;
    }
    let (conn, wrote) = env.with_context(peer, |cx| {
        let mut conn = S::refuse(setup, Status::SERVICE_UNAVAILABLE, cx);
        let wrote = match conn.want(cx) {
            Want::Write { bytes, .. } => {
                let _ = (&stream).write(bytes);
                true
            }
            _ => false,
        };
        (conn, wrote)
    });
    let refusal = if !wrote && stream.set_nonblocking(false).is_ok() {
        Refusal::Needs(stream, conn)
    } else {
        let _ = stream.shutdown(HalfClose::Write);
        // Read what the client already sent, so closing does not reset the connection.
        io_util::discard_unread(stream.as_raw_fd());
        Refusal::Done
    };
    // The acceptor goes back to waiting, for as long as that takes: the line (made with the
    // refusal) is written now.
    env.park_log();
    refusal
}

/// Drives a refusal that needs a conversation ([`Refusal::Needs`]) to its end, as a connection
/// is served: within the header timeout for the handshake and the send timeout for the answer.
pub(crate) fn serve_refusal<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    conn: S,
    env: &mut LoopEnv,
    active: &Active,
    shutdown: &Shutdown,
) {
    env.clock.tick();
    drive(stream, peer, conn, env, active, shutdown);
    env.park_log();
}

/// The socket's read timeout and blocking mode, set only when they must change.
struct SocketTimeouts<'a> {
    stream: &'a TcpStream,
    read: Option<Duration>,
    /// Set for sendfile, which takes no flags: it must return when the socket is full, not wait
    /// (see [`SocketTimeouts::wait_for_room`]). Reads block, bounded by the read timeout.
    nonblocking: bool,
    /// The last write found the socket full, and `poll` has not said since that it has room.
    full: bool,
}

impl<'a> SocketTimeouts<'a> {
    fn new(stream: &'a TcpStream) -> Self {
        SocketTimeouts {
            stream,
            read: None,
            nonblocking: false,
            full: false,
        }
    }

    /// For reads, which wait in the socket (a file's response sent, the next request's).
    fn blocking(&mut self) {
        if self.nonblocking {
            let _ = self.stream.set_nonblocking(false);
            self.nonblocking = false;
        }
    }

    /// For sendfile (once per response with a file).
    fn nonblocking(&mut self) {
        if !self.nonblocking {
            let _ = self.stream.set_nonblocking(true);
            self.nonblocking = true;
        }
    }

    /// A write, unless the socket was full at the last one and has not said since that it has
    /// room (see [`SocketTimeouts::wait_for_room`]).
    fn send<T>(&self, write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        match self.full {
            true => Err(io::ErrorKind::WouldBlock.into()),
            false => write(),
        }
    }

    /// A write that did not go: if the socket had no room, waits until it has, or until the
    /// connection's send deadline or the next log flush, whichever comes first; the next turn
    /// does what is due (the write, the timeout, the flush). The reactor waits for writability
    /// the same way, so a client that stops reading is given up on `--send-timeout` after the
    /// socket last took something, in every mode. (SO_SNDTIMEO cannot do it: a blocking send
    /// that moved a few bytes in that time returns them and the wait starts over, and the
    /// kernel takes a few bytes now and then from a client that reads nothing; sendfile goes
    /// on waiting through it. Nor is a write tried before `poll` says there is room: it would
    /// take those few bytes.) Returns whether the connection is done.
    fn wait_for_room<S: Session>(
        &mut self,
        err: io::Error,
        conn: &mut S,
        cx: &mut Context<'_>,
        log_due: Option<Instant>,
    ) -> bool {
        match err.kind() {
            io::ErrorKind::Interrupted => false,
            io::ErrorKind::WouldBlock => {
                let deadline = conn.deadline(cx.limits).map(Millis::instant);
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    self.full = false;
                    conn.timed_out(cx);
                } else {
                    let wake = [deadline, log_due].into_iter().flatten().min();
                    self.full = !wait_for(&[self.stream.as_raw_fd()], libc::POLLOUT, wake);
                }
                false
            }
            // The client is gone (or a stop shut the socket).
            _ => true,
        }
    }

    /// Makes the next read wait no later than `wake`.
    fn read_until(&mut self, wake: Option<Instant>, now: Instant) {
        let Some(wake) = wake else { return };
        let wanted = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        // A longer timeout than needed would oversleep; a slightly shorter one only wakes the
        // loop a little early, which it handles by checking the deadline.
        if self
            .read
            .is_none_or(|set| wanted + TIMEOUT_SLACK < set || wanted > set * 2)
        {
            let _ = self.stream.set_read_timeout(Some(wanted));
            self.read = Some(wanted);
        }
    }
}

/// The connections being served by blocking drivers, so that shutdown can wake the threads
/// waiting on idle ones, and end the rest once the drain time is up; and the acceptor's wake-up.
pub(crate) struct Active {
    slots: Mutex<Slab<(RawFd, Arc<AtomicBool>)>>,
    /// A byte written into `wake.1` makes `wake.0` readable for good: the acceptor's `poll`
    /// returns, and sees the shutdown.
    wake: (UnixStream, UnixStream),
}

impl Active {
    /// A registry whose connections (and the acceptor's wait) are woken on shutdown.
    pub fn new(shutdown: &Shutdown) -> io::Result<Arc<Active>> {
        let active = Arc::new(Active {
            slots: Mutex::default(),
            wake: UnixStream::pair()?,
        });
        let on_shutdown = active.clone();
        let triggered = shutdown.clone();
        shutdown.on_trigger(move || {
            let _ = (&on_shutdown.wake.1).write(&[1]);
            let active = on_shutdown.clone();
            let (handover, mut grace) = (triggered.is_handover(), triggered.grace());
            if !handover {
                active.wake_idle();
            }
            // On a handover, idle connections first get their chance at one more request.
            // Requests in flight get the drain time to finish; then their sockets are shut.
            let ending = triggered.clone();
            thread::spawn(move || {
                if handover {
                    thread::sleep(HANDOVER_IDLE);
                    active.wake_idle();
                    grace -= HANDOVER_IDLE;
                }
                thread::sleep(grace);
                ending.end();
                active.end_all();
            });
        });
        Ok(active)
    }

    /// Waits until one of `listeners` has a connection to accept, or a shutdown wakes the
    /// acceptor.
    fn wait_for_connection(&self, listeners: &[TcpListener]) {
        let fds: Vec<RawFd> = (listeners.iter().map(AsRawFd::as_raw_fd))
            .chain([self.wake.0.as_raw_fd()])
            .collect();
        wait_readable(&fds, None);
    }

    fn register(&self, stream: &TcpStream) -> Slot<'_> {
        let idle = Arc::new(AtomicBool::new(false));
        let key = self.lock().insert((stream.as_raw_fd(), idle.clone()));
        Slot {
            active: self,
            key,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slab<(RawFd, Arc<AtomicBool>)>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the wait of every thread reading an idle connection: its read returns 0, and the
    /// connection closes. A connection whose next request has already arrived, unread, is not
    /// idle: shutting its read side would cut that request short. Its thread takes such bytes
    /// only after marking itself busy (`arrived`), so they are looked for first: once they are
    /// gone from the socket, the mark is there to see.
    fn wake_idle(&self) {
        for (_, (fd, idle)) in self.lock().iter() {
            if io_util::unread_bytes(*fd) == 0 && idle.load(Ordering::SeqCst) {
                // SAFETY: the fd stays open while registered: a slot is removed (under this lock)
                // before its stream is dropped.
                unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
            }
        }
    }

    /// Ends every connection still open: the drain time is up.
    fn end_all(&self) {
        for (_, (fd, _)) in self.lock().iter() {
            // SAFETY: as in `wake_idle`.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
    }
}

/// One registered connection; unregisters when dropped (before its stream closes).
struct Slot<'a> {
    active: &'a Active,
    key: usize,
    idle: Arc<AtomicBool>,
}

impl Slot<'_> {
    fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.active.lock().remove(self.key);
    }
}
