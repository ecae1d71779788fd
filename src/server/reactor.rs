//! The reactor: one mio event loop per core, each with its own listener and its own slab of
//! connections. Nothing is shared between loops but the handler (read-only) and a connection
//! count (one atomic add per accept), so the hot path takes no lock.
//!
//! One loop, one turn:
//!
//! ```text
//!   poll(timeout = earliest timer)          sleep until a socket is ready or a timer is due
//!     ├─ listener ready  → accept until WouldBlock, register each socket for READABLE
//!     ├─ socket ready    → drive(connection): read / write / sendfile until WouldBlock
//!     │                    (or 64 KiB written: the rest in the next turn),
//!     │                    as http::Conn asks
//!     ├─ signal socket   → (first loop only) SIGINT/TERM/QUIT: trigger the shutdown;
//!     │                    SIGHUP: start the upgrade, and watch for the new process to serve
//!     └─ waker           → shutdown requested, or responses back from the handler pool:
//!                          give each to its connection and drive it
//!   fire due timers, flush the access log once a second
//! ```
//!
//! A handler that may block never runs here: the connection hands its request to the handler
//! pool (`pool.rs`) and waits (`Want::Wait`), and the loop serves everyone else meanwhile.
//!
//! mio is edge-triggered: readiness is reported once, when it changes, not while it lasts. So a
//! socket must be read until it has nothing left and written until it takes nothing more, or no
//! further event will come and the connection hangs. `drive` does exactly that, with one shortcut
//! borrowed from nginx: a read that returns less than it asked for has emptied the socket, so
//! the extra read that would only say WouldBlock is skipped; new data brings a new event.
//!
//! Everything HTTP lives in `http::Conn`; this file only moves bytes and keeps time.

use std::io::{self, Read};
use std::net::{IpAddr, Shutdown as HalfClose};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::pool::{Inbox, PoolOffer};
use super::timers::{Armed, Timers};
use super::upgrade::Upgrade;
use super::{LoopEnv, Shared, Shutdown, Signals, io_util};
use crate::http::{Context, Drain, Status, Want};
use crate::metrics::LoopMetrics;
use crate::session::Session;

/// Tokens at the top of the range (a generation of `u32::MAX` is never used); connection tokens
/// are `generation << 32 | slab key`.
const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// The new process's readiness socket, while an upgrade is under way.
const UPGRADE: Token = Token(usize::MAX - 2);
/// The loop's listeners: `LISTENERS - index`.
const LISTENERS: usize = usize::MAX - 3;
/// Every token at or above this one is one of the above.
const RESERVED: usize = (u32::MAX as usize) << 32;
/// Readiness events taken per `poll`.
const EVENTS_PER_POLL: usize = 1024;
/// Bytes one connection may write in one turn of the loop before the others get theirs: a
/// large body to a fast client (a file, a body compressed as it goes) would otherwise keep the
/// loop to itself until it is all sent. The connection goes on in the next turn.
const TURN_BUDGET: usize = 64 * 1024;
/// Connections accepted past `--max-connections` only to answer 503, per loop. Beyond this
/// they are closed without an answer, so a flood cannot grow the slab.
pub(crate) const REFUSING_MAX: usize = 256;

// ANCHOR: spawn_loops
/// Runs one event loop per set of listeners until shutdown: the first on the calling thread,
/// the others each on a thread of its own; each pinned to its core if given. The first loop also
/// polls the signal socket, and runs SIGHUP's upgrade. So one loop means one thread in the whole
/// process (see `Signals` for why that matters). No loop serves before every one is made and the
/// start announced (the listening line): a loop that cannot be made fails the start before it.
pub(crate) fn run<S: Session>(
    listeners: Vec<(Vec<std::net::TcpListener>, Option<core_affinity::CoreId>)>,
    setup: S::Setup,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    mut signals: Option<(Signals, Option<Upgrade>)>,
) -> io::Result<()> {
    let mut loops = Vec::new();
    let count = listeners.len();
    for (index, (own, pin)) in listeners.into_iter().enumerate() {
        let event_loop =
            EventLoop::<S>::new(own, setup.clone(), &shared, &shutdown, signals.take())
                .map_err(super::cannot_make("event loop", index + 1, count))?;
        loops.push((event_loop, pin));
    }
    let mut loops = loops.into_iter();
    let Some((mut first, first_pin)) = loops.next() else {
        return Err(io::Error::other("no listener to serve"));
    };
    let mut threads = Vec::new();
    let mut gate = super::StartGate::default();
    for (index, (mut event_loop, pin)) in loops.enumerate() {
        let start = gate.waiter();
        let thread = thread::Builder::new()
            .name(format!("loop-{}", index + 1))
            .spawn(move || {
                if let Some(core) = pin {
                    core_affinity::set_for_current(core);
                }
                match start.wait() {
                    true => event_loop.run_to_end(),
                    false => Ok(()), // the start failed: it never served
                }
            })
            .map_err(super::cannot_make("event loop", index + 2, count))?;
        threads.push(thread);
    }
    // Pinned only after the others were started: a thread starts with its creator's pinning.
    if let Some(core) = first_pin {
        core_affinity::set_for_current(core);
    }
    // Every loop has its sockets registered: the listening line, and an upgrade's old process
    // may stop now; then every loop serves. (What arrives before the first poll waits in the
    // sockets' queues, and is reported by it.)
    shared.announce_ready();
    gate.open();
    let result = first.run_to_end();
    super::join_all(threads, "event loop", result)
}
// ANCHOR_END: spawn_loops

/// One accepted socket and its protocol state (`http::Conn`, or TLS under it).
struct Connection<S> {
    stream: TcpStream,
    conn: S,
    /// Distinguishes this connection from earlier ones that had the same slab key: an event or
    /// timer for a closed connection must not act on its successor. (nginx keeps an "instance"
    /// bit in the epoll data for the same reason.)
    generation: u32,
    peer: IpAddr,
    /// The last read emptied the socket (or found its end): nothing to read until the next
    /// readable event. Also what a close asks before it closes (`EventLoop::close`).
    drained: bool,
    /// The client closed its side (EPOLLRDHUP): read until EOF, no short-read shortcut.
    read_closed: bool,
    /// WRITABLE interest is registered: only while output waits on a full socket.
    writable: bool,
    /// Counted in `Shared::open` (a connection being refused with 503 is not).
    counted: bool,
    /// The earliest deadline this connection has in the timer heap.
    timer: Armed,
}

impl<S: Session> Connection<S> {
    /// One read into the connection, which has asked for input, noting whether the socket is
    /// now empty (`drained`). WouldBlock is such a note; any other error is the caller's.
    #[inline(always)]
    fn read_once(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let buf = self.conn.read_buf(cx);
        let asked = buf.len();
        match (&self.stream).read(buf) {
            Ok(n) => {
                self.conn.received(n);
                // nginx's trick: a short read emptied the socket. (And after the end of the
                // client's stream nothing more can come.)
                self.drained = n == 0 || (n < asked && !self.read_closed);
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.drained = true;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Makes sure the loop's timer heap holds an entry no later than this connection's deadline.
    /// (Runs after every `drive`; not inlined it cost 20 more instructions per request.)
    #[inline]
    fn arm_timer(&mut self, key: usize, timers: &mut Timers, env: &LoopEnv) {
        let deadline = self.conn.deadline(&env.shared.limits);
        let now = env.clock.now_ms();
        timers.arm((key, self.generation), &mut self.timer, deadline, now);
    }
}

struct EventLoop<S: Session> {
    poll: Poll,
    /// What each new connection's session is made with.
    setup: S::Setup,
    /// Emptied once shutdown began: closing them stops accepting.
    listeners: Vec<TcpListener>,
    connections: Slab<Connection<S>>,
    next_generation: u32,
    refusing: usize,
    timers: Timers,
    /// This loop's own clock, buffer pool and log: per-loop, so never locked or shared.
    env: LoopEnv,
    /// Set after EMFILE on accept: accept again at this time.
    accept_paused_until: Option<Instant>,
    accept_trouble: io_util::AcceptTrouble,
    shutdown: Shutdown,
    /// When draining must end, once shutdown began.
    drain_deadline: Option<Instant>,
    /// The signal socket, polled by the first loop only, and SIGHUP's upgrade.
    signals: Option<(Signals, Option<Upgrade>)>,
    /// When the upgrade under way is called off, if one is (kept here: asked every turn).
    upgrade_due: Option<Instant>,
    /// Connections that used their turn's budget with more to send: driven again next turn.
    /// (Their sockets may stay writable, so no event would come for them.)
    again: Vec<(usize, u32)>,
}

impl<S: Session> EventLoop<S> {
    fn new(
        listeners: Vec<std::net::TcpListener>,
        setup: S::Setup,
        shared: &Arc<Shared>,
        shutdown: &Shutdown,
        signals: Option<(Signals, Option<Upgrade>)>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut own = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            // Non-blocking already (see `Server::bind`); from_std assumes it.
            let mut listener = TcpListener::from_std(listener);
            poll.registry().register(
                &mut listener,
                Token(LISTENERS - index),
                Interest::READABLE,
            )?;
            own.push(listener);
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake = waker.clone();
        shutdown.on_trigger_or_wake(move || {
            let _ = wake.wake();
        });
        // The pool answers into this loop's inbox and wakes it with the same waker (one per
        // `Poll`).
        let mut env = LoopEnv::new(shared.clone());
        let offer =
            (shared.pool.clone()).map(|pool| PoolOffer::new(pool, Inbox::new(waker.clone()), &env));
        env.offload = offer;
        if let Some((signals, _)) = &signals {
            poll.registry()
                .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)?;
        }
        Ok(EventLoop {
            poll,
            setup,
            listeners: own,
            connections: Slab::new(),
            next_generation: 0,
            refusing: 0,
            timers: Timers::new(shared.limits.keep_alive_timeout),
            env,
            accept_paused_until: None,
            accept_trouble: io_util::AcceptTrouble::default(),
            shutdown: shutdown.clone(),
            drain_deadline: None,
            signals,
            upgrade_due: None,
            again: Vec::new(),
        })
    }

    /// Runs the loop; if it fails (its poll broke) or panics, the other loops are told to stop
    /// too, rather than serve on without it.
    fn run_to_end(&mut self) -> io::Result<()> {
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.run()))
            .unwrap_or_else(|_| Err(io::Error::other("event loop panicked")));
        if result.is_err() {
            self.shutdown.trigger();
        }
        result
    }

    // ANCHOR: event_loop
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            let timeout = self.poll_timeout();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    // A signal: SIGUSR1 may have asked for a new log file.
                    self.env.reopen_log_if_asked();
                    continue;
                }
                return Err(err);
            }
            // Before any line of this turn is recorded: those go to the new file.
            self.env.reopen_log_if_asked();
            // One clock read per wake-up serves every event in the batch.
            self.env.clock.tick();
            // A stop is begun before the events of a turn are handled: another loop may have
            // drained already and a client seen its close, so a request that comes now is
            // answered as the last (`Connection: close`), not as usual. (A stop asked for
            // during a turn, by this loop's signal socket or anyone, wakes every loop, this one
            // too: it is begun at the start of the next.)
            if self.shutdown.is_triggered() && self.drain_deadline.is_none() {
                self.begin_drain();
            }
            for event in events.iter() {
                match event.token() {
                    token if token.0 < RESERVED => self.on_ready(token, event),
                    // Shutdown was checked above; the pool's answers are taken here.
                    WAKER => self.take_completions(),
                    SIGNALS => self.on_signals(),
                    UPGRADE => self.check_upgrade(),
                    _ => self.accept_all(),
                }
            }
            self.drive_again();
            self.fire_timers();
            if self
                .upgrade_due
                .is_some_and(|at| at <= self.env.clock.now())
            {
                self.check_upgrade();
            }
            if self
                .accept_paused_until
                .is_some_and(|at| at <= self.env.clock.now())
            {
                self.accept_paused_until = None;
                // Connections may have queued while paused, with no new event to announce them.
                self.accept_all();
            }
            self.env.flush_log_if_due();
            if let Some(deadline) = self.drain_deadline
                && (self.connections.is_empty() || self.env.clock.now() >= deadline)
            {
                // Those still open are cut off: what they owe the access log is written first.
                let open = self.connections.iter_mut();
                (self.env).cut_off(open.map(|(key, c)| ((key, c.generation), c.peer, &mut c.conn)));
                return Ok(());
            }
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: poll_timeout
    /// Sleep until the earliest thing that has a time: a connection timer, the end of an accept
    /// back-off, a log flush, the end of draining. `None` sleeps until an event. Measured from the
    /// clock read at the start of this turn, as nginx does: a timer may fire as late as one
    /// turn's work, and the turn saves a clock read.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO); // connections wait for their next turn
        }
        let others = [
            self.accept_paused_until,
            self.drain_deadline,
            self.upgrade_due,
        ];
        self.env.sleep_for(&self.timers, others)
    }
    // ANCHOR_END: poll_timeout

    // ANCHOR: accept_all
    /// Accepts until each listener's queue is empty (edge-triggered: the event will not repeat).
    fn accept_all(&mut self) {
        for index in 0..self.listeners.len() {
            self.accept_from(index);
        }
    }

    fn accept_from(&mut self, index: usize) {
        loop {
            if self.accept_paused_until.is_some() {
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_trouble.accepted();
                    self.admit(stream, peer.ip());
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if io_util::is_transient_accept_error(&err) => {
                    io_util::count_accept_error(self.env.metrics.as_deref(), false);
                    continue;
                }
                Err(err) => {
                    // Out of descriptors or memory (or worse): the connection stays in the
                    // backlog. Retrying at once would spin at full CPU; give closing
                    // connections time to free some.
                    io_util::count_accept_error(self.env.metrics.as_deref(), true);
                    self.accept_trouble.failed(&err);
                    self.accept_paused_until = Some(self.env.clock.now() + io_util::ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }
    // ANCHOR_END: accept_all

    /// Takes an accepted socket into the slab, or refuses it with 503 when the server is full.
    fn admit(&mut self, mut stream: TcpStream, peer: IpAddr) {
        let shared = &self.env.shared;
        let counted = shared.open.fetch_add(1, Ordering::Relaxed) < shared.max_connections;
        if !counted {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            if let Some(metrics) = &self.env.metrics {
                metrics.refused.add(1);
            }
            if self.refusing >= REFUSING_MAX {
                return; // dropped: closed without an answer
            }
            self.refusing += 1;
        }
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let generation = self.next_generation;
        // Skip the top generation so no token can collide with LISTENER or WAKER.
        self.next_generation = self.next_generation.wrapping_add(1) % u32::MAX;
        let token = Token((generation as usize) << 32 | key);
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            self.forget(counted);
            return;
        }
        let setup = &self.setup;
        let conn = self.env.with_context(peer, |cx| {
            if counted {
                S::open(setup, cx)
            } else {
                S::refuse(setup, Status::SERVICE_UNAVAILABLE, cx)
            }
        });
        entry.insert(Connection {
            stream,
            conn,
            generation,
            peer,
            drained: false,
            read_closed: false,
            writable: false,
            counted,
            timer: Armed::NONE,
        });
        if counted {
            self.count(|metrics| metrics.accepted.add(1));
            // Wait for the request to arrive: registering a socket that already has data queues
            // an event, so nothing is missed.
            self.arm_timer(key);
        } else {
            self.drive(key);
        }
    }

    // ANCHOR: on_ready
    fn on_ready(&mut self, token: Token, event: &Event) {
        let key = token.0 & 0xffff_ffff;
        let generation = (token.0 >> 32) as u32;
        // A stale event: its connection was closed earlier in this batch and the key reused.
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.generation != generation {
            return;
        }
        // Reset by the client while its request is on the pool: nothing can reach it, and the
        // job is withdrawn if no thread has taken it yet. (An end of the client's stream is
        // not taken so: a client may half-close and still wait for its answer.)
        if event.is_error() && connection.conn.is_pending() {
            self.close(key);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            connection.drained = false;
        }
        connection.read_closed |= event.is_read_closed();
        self.drive(key);
    }
    // ANCHOR_END: on_ready

    // ANCHOR: drive
    /// Does what the connection asks until the socket would block, or the connection closes.
    fn drive(&mut self, key: usize) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        // Set when the socket cannot take more output: wait for WRITABLE.
        let mut blocked_on_write = false;
        // Bytes written in this turn; past TURN_BUDGET the others go first.
        let mut budget = TURN_BUDGET;
        let mut turn_over = false;
        // A request handed to the pool is tagged with this connection.
        if let Some(offload) = &mut self.env.offload {
            offload.ticket = (key, connection.generation);
        }
        let alive = self.env.with_context(connection.peer, |cx| {
            loop {
                let conn = &mut connection.conn;
                let stream = &connection.stream;
                match conn.want(cx) {
                    Want::Read => {
                        if connection.drained {
                            break true;
                        }
                        match connection.read_once(cx) {
                            Ok(()) => {}
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => break false, // reset by the client: nothing to answer
                        }
                    }
                    Want::Write { bytes, more } => {
                        match io_util::send(stream.as_raw_fd(), bytes, more) {
                            Ok(n) => {
                                conn.wrote(n);
                                budget = budget.saturating_sub(n);
                                if budget == 0 {
                                    turn_over = true;
                                    break true;
                                }
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                                blocked_on_write = true;
                                break true;
                            }
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => break false,
                        }
                    }
                    Want::SendFile { file, offset, len } => {
                        match io_util::sendfile(stream.as_raw_fd(), file, offset, len) {
                            Ok(n) => {
                                conn.sent_file(n);
                                budget = budget.saturating_sub(n as usize);
                                if budget == 0 {
                                    turn_over = true;
                                    break true;
                                }
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                                blocked_on_write = true;
                                break true;
                            }
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => break false,
                        }
                    }
                    Want::HalfClose => {
                        let _ = stream.shutdown(HalfClose::Write);
                    }
                    // A request is on the pool: its answer will wake the loop.
                    Want::Wait => break true,
                    Want::Close => break false,
                }
            }
        });
        if !alive {
            self.close(key);
            return;
        }
        if turn_over {
            self.again.push((key, connection.generation));
        }
        // WRITABLE interest only while output is blocked: an always-writable socket would
        // otherwise wake the loop for nothing.
        if blocked_on_write != connection.writable {
            let interest = if blocked_on_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token((connection.generation as usize) << 32 | key);
            if self
                .poll
                .registry()
                .reregister(&mut connection.stream, token, interest)
                .is_err()
            {
                self.close(key);
                return;
            }
            connection.writable = blocked_on_write;
        }
        // Here rather than by `arm_timer`: the connection is in hand, no second slab lookup.
        connection.arm_timer(key, &mut self.timers, &self.env);
    }
    // ANCHOR_END: drive

    fn arm_timer(&mut self, key: usize) {
        if let Some(connection) = self.connections.get_mut(key) {
            connection.arm_timer(key, &mut self.timers, &self.env);
        }
    }

    /// Drives the connections whose turn ran out last time (unless closed since).
    #[inline]
    fn drive_again(&mut self) {
        if self.again.is_empty() {
            return;
        }
        self.drive_again_now();
    }

    #[cold]
    fn drive_again_now(&mut self) {
        for (key, generation) in std::mem::take(&mut self.again) {
            if self
                .connections
                .get(key)
                .is_some_and(|connection| connection.generation == generation)
            {
                self.drive(key);
            }
        }
    }

    // ANCHOR: fire_timers
    /// Fires every timer that is due. Entries whose connection is gone, or that a later entry
    /// replaced, are dropped; entries for a deadline that has since moved later are re-armed.
    fn fire_timers(&mut self) {
        let now = self.env.clock.now_ms();
        while let Some((at, (key, generation))) = self.timers.pop_due(now) {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            if connection.generation != generation || connection.timer != at {
                continue;
            }
            connection.timer = Armed::NONE;
            let deadline = connection.conn.deadline(&self.env.shared.limits);
            if deadline.is_some_and(|deadline| deadline <= now) {
                if connection.conn.is_pending()
                    && let Some(offload) = &mut self.env.offload
                {
                    let waited = self.env.shared.limits.handler_timeout;
                    offload
                        .inbox
                        .gave_up(&offload.pool, (key, generation), waited);
                }
                let conn = &mut connection.conn;
                self.env
                    .with_context(connection.peer, |cx| conn.timed_out(cx));
                self.drive(key);
            } else {
                self.arm_timer(key);
            }
        }
    }
    // ANCHOR_END: fire_timers

    // ANCHOR: take_completions
    /// Gives each response back from the pool to its connection, and drives it: the response
    /// is queued in its turn, and the requests that waited behind it are answered. A response
    /// for a connection that is gone (its client left, and the slab key may serve another
    /// connection by now: the generation tells) is dropped.
    fn take_completions(&mut self) {
        let Some(offload) = &mut self.env.offload else {
            return;
        };
        for completion in offload.inbox.take(&offload.pool) {
            let (key, generation) = completion.ticket;
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            if connection.generation != generation {
                continue;
            }
            let conn = &mut connection.conn;
            self.env.with_context(connection.peer, |cx| {
                conn.completed(completion.response, cx)
            });
            self.drive(key);
        }
    }
    // ANCHOR_END: take_completions

    /// Counts something, with `--metrics-path`.
    fn count(&self, what: impl FnOnce(&LoopMetrics)) {
        if let Some(metrics) = &self.env.metrics {
            what(metrics);
        }
    }

    fn close(&mut self, key: usize) {
        // Dropping the stream closes the socket, which also removes it from epoll.
        let mut connection = self.connections.remove(key);
        let ticket = (key, connection.generation);
        (self.env).close(ticket, connection.peer, &mut connection.conn);
        // Closing a socket with unread input makes Linux answer with a reset at once, throwing
        // away what of the last response is still in the send queue. Input the connection did
        // not read (a client that sent its next request before reading a long answer, and then
        // met a shutdown) is read and dropped first, as the other drivers do.
        if !connection.drained {
            io_util::discard_unread(connection.stream.as_raw_fd());
        }
        if connection.counted {
            self.count(|metrics| metrics.closed.add(1));
        }
        self.forget(connection.counted);
    }

    /// A connection is gone: give back its place in the count it was in.
    fn forget(&mut self, counted: bool) {
        if counted {
            self.env.shared.open.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.refusing -= 1;
        }
    }

    // ANCHOR: begin_drain
    /// Shutdown: stop accepting, close idle connections, let the others finish. On a handover
    /// the listeners are only closed here: the sockets live on in the new process, with what is
    /// queued on them. (Accepting their queues first, as a stop does, would take connections
    /// the new process is ready for, to serve them here with `Connection: close`.)
    fn begin_drain(&mut self) {
        // A stop signal only sets the flag: the first loop to see it runs the wake-ups (every
        // loop woken, the process's exit bounded); for the others, and after a handover or a
        // stop asked for in code, this does nothing.
        self.shutdown.trigger();
        let how = self.shutdown.drain_kind();
        self.drain_deadline = Some(self.env.clock.now() + self.shutdown.grace());
        let stop = how != Drain::Handover;
        if stop {
            // Connections the kernel already completed are in flight too: take them before
            // closing the listeners, which would reset them.
            self.accept_all();
        }
        self.listeners.clear();
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        if stop {
            // First take whatever has already arrived on every idle connection: a request whose
            // bytes are here is in flight, even if no event announced it yet. Only then mark
            // them all draining and drive them (idle ones close, the others answer with
            // `Connection: close`): done one connection at a time, a close seen by one client
            // could come before another connection's read. The bytes are read, not answered:
            // answered before the drain, a request taken here would get keep-alive and then a
            // close. (On a handover idle connections keep reading, so no pass is needed.)
            for &key in &keys {
                self.take_arrived(key);
            }
        }
        for (_, connection) in self.connections.iter_mut() {
            connection.conn.drain(how);
        }
        for key in keys {
            self.drive(key);
        }
    }
    // ANCHOR_END: begin_drain

    /// At a stop: reads once what has arrived on an idle connection into it, without acting
    /// on it (see `begin_drain`).
    fn take_arrived(&mut self, key: usize) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if !connection.conn.is_idle() {
            return;
        }
        self.env.with_context(connection.peer, |cx| {
            if matches!(connection.conn.want(cx), Want::Read) && connection.read_once(cx).is_err() {
                // Met again, and handled, by the drive that follows.
                connection.drained = false;
            }
        });
    }

    /// The signal socket is readable (first loop only).
    fn on_signals(&mut self) {
        let (started, due) = super::upgrade::on_signals(&mut self.signals, &self.shutdown);
        if let Some(fd) = started
            && let Err(err) = watch(&self.poll, fd)
        {
            eprintln!("reactor-httpd: cannot watch the new process: {err}");
        }
        self.upgrade_due = due;
    }

    /// The new process's readiness socket is readable, or its time is up. Closing the socket
    /// (when the upgrade ends either way) takes it out of the epoll set.
    fn check_upgrade(&mut self) {
        self.upgrade_due = super::upgrade::check(&mut self.signals, &self.shutdown);
    }
}

fn watch(poll: &Poll, fd: RawFd) -> io::Result<()> {
    poll.registry()
        .register(&mut SourceFd(&fd), UPGRADE, Interest::READABLE)
}

#[cfg(test)]
mod tests {
    /// What an idle connection costs the reactor beyond its `http::Conn` (see
    /// `an_idle_connection_is_small`): its slab entry. benches/idle-memory.sh measures the whole.
    #[test]
    fn a_connection_entry_is_small() {
        let size = size_of::<super::Connection<crate::http::Conn>>();
        // In debug builds mio keeps a selector id in every registered source, for its own checks.
        let limit = if cfg!(debug_assertions) { 192 } else { 176 };
        assert!(
            size <= limit,
            "the reactor's Connection grew to {size} bytes"
        );
    }
}
