//! What moves bytes between sockets and `http::Conn`: one module per concurrency model.
//!
//! Every driver runs the same loop around `Conn::want` (see `http/conn.rs`); they differ only in
//! how they wait. `reactor.rs` waits on many sockets at once with mio; `blocking.rs` waits on one
//! socket at a time, on one thread; `threaded.rs` runs that blocking loop on a pool of threads;
//! `fork.rs` runs it in a child process per connection; `uring.rs` is the reactor's twin on
//! completions (io_uring) instead of readiness. `pool.rs` is the loops' handler pool, where the
//! handlers that may block run, away from the loops.
//! The HTTP rules are all in `http/`; nothing here decides a status code.
//!
//! [`Server::bind`] makes the listening sockets (so the port is known, even port 0, before
//! anything runs) and [`Server::run`] serves until its [`Shutdown`] handle is triggered.

mod activation;
mod blocking;
mod fork;
pub(crate) mod io_util;
mod keeper;
mod listener;
mod notify;
mod pool;
mod reactor;
pub mod resources;
mod shutdown;
mod threaded;
mod timers;
mod upgrade;
mod uring;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use signal_hook::consts::SIGHUP;

pub use io_util::raise_descriptor_limit;
pub use keeper::{keep_if_handed_over, run_if_keeper};
use shutdown::STOP_SIGNALS;
pub(crate) use shutdown::Signals;
pub use shutdown::{DRAIN_GRACE, HANDOVER_GRACE, Shutdown};
pub use upgrade::READY_WITHIN;

/// Whether `--mode uring` can run here (Linux 6.1 or later, io_uring not disabled by sysctl or a
/// seccomp filter); if not, the one line the server would print.
pub fn uring_available() -> Result<(), String> {
    uring::available()
}

use crate::access_log::{AccessLog, LogTrouble};
use crate::app::Handler;
use crate::config::{AccessLogTarget, Config, Cores, HANDLER_THREADS_PER_LOOP, Limits, Mode};
use crate::http::{
    Body, BufPool, Clock, Conn, Context, HeadCache, Offload, Request, Response, Status,
};
use crate::metrics::{Metrics, Registry};
use crate::session::Session;
use crate::tls::{self, SelfSigned, TlsConn, TlsSource};

/// After the drain time, how long the binary waits for a stop to finish before it exits anyway
/// (see [`Server::stop_on_signals`]): the contract's 5 s, less the 4 s drain, with room.
const EXIT_MARGIN: Duration = Duration::from_millis(500);

/// Why the server could not start. `Usage` is the user's to fix (exit 2); `Io` is the system's
/// (exit 1).
#[derive(Debug)]
pub enum StartError {
    Usage(String),
    Io(String),
}

impl std::error::Error for StartError {}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Usage(message) | StartError::Io(message) => f.write_str(message),
        }
    }
}

/// What all loops and workers of one server share: read-only settings, the handler, the
/// reactor's handler pool, and the count of open connections.
pub(crate) struct Shared {
    pub handler: Arc<dyn Handler>,
    /// Reactor mode with `--handler-threads` above 0: where handlers that may block run.
    pub pool: Option<Arc<pool::HandlerPool>>,
    /// With `--metrics-path`: every loop's (or worker's) counters.
    pub metrics: Option<Arc<Registry>>,
    pub limits: Limits,
    pub access_log: AccessLogTarget,
    /// Whether the access log can be written: one for every log of the server, forked children's
    /// too (see `access_log::LogTrouble`).
    pub log_trouble: Arc<LogTrouble>,
    /// The access log opened at start to see that it can be, for the first loop or thread to
    /// write through: closed before the others opened theirs, it would tell a FIFO's reader the
    /// end.
    pub log_checked: Mutex<Option<AccessLog>>,
    pub max_connections: usize,
    pub open: AtomicUsize,
    /// `--header`: added to every response.
    pub headers: Arc<[(String, String)]>,
    /// The server's stop, which each answer looks at (see `http::StopSignal`).
    pub shutdown: Shutdown,
    /// Called once, when every loop (thread, ring) is set up and serving begins: the binary
    /// prints its listening line here (`Server::when_ready`), so that a failure to set up comes
    /// before it and not after.
    pub ready: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Shared {
    /// Every loop is set up: `when_ready`'s call, then an upgrade's old process is told.
    pub(crate) fn announce_ready(&self) {
        let ready = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(ready) = ready {
            ready();
        }
        upgrade::announce_ready();
    }
}

/// What one event loop or worker thread owns for the connections it drives: a clock, a buffer
/// pool, a head cache and an access log of its own, so none of them is ever locked; and, for a
/// reactor loop with a handler pool, its way into the pool.
pub(crate) struct LoopEnv {
    pub clock: Clock,
    pub pool: BufPool,
    pub heads: HeadCache,
    pub log: Option<AccessLog>,
    pub shared: Arc<Shared>,
    pub offload: Option<pool::PoolOffer>,
    /// This loop's counters, with `--metrics-path`; it is their only writer (but in fork mode,
    /// where the parent and its children share one set).
    pub metrics: Option<Metrics>,
}

impl LoopEnv {
    /// Never fails: a log that cannot be opened now is tried again later (see
    /// `AccessLog::open_or_later`).
    pub fn new(shared: Arc<Shared>) -> Self {
        let checked = (shared.log_checked.lock()).map_or(None, |mut checked| checked.take());
        let log =
            checked.or_else(|| AccessLog::open_or_later(&shared.access_log, &shared.log_trouble));
        LoopEnv {
            clock: Clock::new(),
            pool: BufPool::new(),
            heads: HeadCache::with_headers(shared.headers.clone()),
            log,
            metrics: shared.metrics.as_ref().map(|registry| registry.register()),
            shared,
            offload: None,
        }
    }

    /// The environment of a thread that waits for connections in blocking calls (a worker, an
    /// acceptor, the fork parent): its log holds no file while it waits (`AccessLog::park`).
    pub fn waiting(shared: Arc<Shared>) -> Self {
        let mut env = LoopEnv::new(shared);
        env.park_log();
        env
    }

    /// Runs `f` with the context a connection from `peer` needs for one call into `http::Conn`.
    pub fn with_context<R>(&mut self, peer: IpAddr, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let mut cx = Context {
            limits: &self.shared.limits,
            clock: &self.clock,
            pool: &mut self.pool,
            heads: &mut self.heads,
            log: self.log.as_mut(),
            peer,
            handler: &*self.shared.handler,
            offload: self
                .offload
                .as_mut()
                .map(|offload| offload as &mut dyn Offload),
            metrics: self.metrics.as_deref(),
            stop: self.shared.shutdown.signal(),
        };
        f(&mut cx)
    }

    /// Tells a connection it is closed (it writes what it owes the access log), and withdraws
    /// its request from the handler pool if no thread has taken it yet: nobody is left to read
    /// the answer. `ticket` is the connection's slab key and generation. Returns whether a
    /// thread had taken it: its handler runs on (or has just answered) for nobody.
    pub fn close<S: Session>(&mut self, ticket: pool::Ticket, peer: IpAddr, conn: &mut S) -> bool {
        self.end(ticket, peer, conn, S::closed)
    }

    /// [`LoopEnv::close`], or the stop's cut at the end of its drain time (`how`).
    fn end<S: Session>(
        &mut self,
        ticket: pool::Ticket,
        peer: IpAddr,
        conn: &mut S,
        how: fn(&mut S, &mut Context<'_>),
    ) -> bool {
        let running = conn.is_pending()
            && self
                .offload
                .as_mut()
                .is_some_and(|offload| !offload.inbox.withdraw(ticket));
        self.with_context(peer, |cx| how(conn, cx));
        running
    }

    /// The end of a stop's drain time: the connections still `open` are closed (each writes
    /// what it owes the access log), and those whose request a handler on the pool still holds
    /// are said, as the threaded mode says the handler it leaves.
    pub fn cut_off<'c, S: Session + 'c>(
        &mut self,
        open: impl Iterator<Item = (pool::Ticket, IpAddr, &'c mut S)>,
    ) {
        let mut running = 0;
        for (ticket, peer, conn) in open {
            running += usize::from(self.end(ticket, peer, conn, S::cut_off));
        }
        if running > 0 {
            let requests = if running == 1 { "request" } else { "requests" };
            eprintln!(
                "reactor-httpd: {running} {requests} still in a handler at the end of the stop; closed unanswered"
            );
        }
    }

    /// How long the loop may sleep: until its earliest timer, its access log's next flush, or
    /// the earliest of `others` (an accept back-off's end, draining's end, an upgrade's).
    pub(crate) fn sleep_for(
        &self,
        timers: &timers::Timers,
        others: [Option<Instant>; 3],
    ) -> Option<Duration> {
        let log_due = self.log.as_ref().and_then(AccessLog::flush_due);
        let [a, b, c] = others;
        timers::sleep_for(timers, &self.clock, [a, b, c, log_due])
    }

    /// Writes the access log if a flush is due; reopens its file first if SIGUSR1 asked.
    pub fn flush_log_if_due(&mut self) {
        self.reopen_log_if_asked();
        if let Some(log) = &mut self.log
            && log.flush_due().is_some_and(|at| at <= self.clock.now())
        {
            log.flush();
        }
    }

    /// Writes the access log's lines now and closes its file until the next line: for a thread
    /// about to wait for a connection (see `AccessLog::park`).
    pub fn park_log(&mut self) {
        if let Some(log) = &mut self.log {
            log.park();
        }
    }

    /// Reopens the access log file if SIGUSR1 came since it was opened.
    #[inline]
    pub fn reopen_log_if_asked(&mut self) {
        if let Some(log) = &mut self.log {
            log.reopen_if_asked();
        }
    }
}

/// A server with its sockets bound, ready to run.
pub struct Server {
    mode: Mode,
    threads: usize,
    listeners: Listeners,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    signals: Option<Signals>,
    /// SIGHUP's upgrade, once signals are taken.
    upgrade: Option<upgrade::Upgrade>,
    /// The fork mode's SIGHUP flag (its parent takes its signals itself).
    fork_hangup: Option<Arc<AtomicBool>>,
    /// With `--tls-cert`/`--tls-key` or `--tls-self-signed`: HTTPS.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// With `--tls-self-signed`, the certificate served.
    self_signed: Option<SelfSigned>,
}

/// The listening sockets a mode runs with, all non-blocking.
enum Listeners {
    /// Reactor: the listeners of each loop (one, unless more sockets were passed in than there
    /// are loops), and the core each loop is pinned to.
    PerLoop(Vec<(Vec<TcpListener>, Option<core_affinity::CoreId>)>),
    /// The other modes: every listener (one, unless more sockets were passed in), taken in turn
    /// by their one acceptor.
    OneAcceptor(Vec<TcpListener>),
}

impl Listeners {
    fn all(&self) -> Vec<&TcpListener> {
        match self {
            Listeners::PerLoop(group) => group.iter().flat_map(|(own, _)| own).collect(),
            Listeners::OneAcceptor(listeners) => listeners.iter().collect(),
        }
    }
}

impl Server {
    /// Binds the listening sockets for `config.mode`; `handler` answers every request.
    pub fn bind(config: &Config, handler: Arc<dyn Handler>) -> Result<Server, StartError> {
        if config.mode == Mode::Uring {
            uring::available().map_err(StartError::Io)?;
        }
        let pins = if config.mode.has_loops() {
            loop_pins(config)?
        } else {
            Vec::new()
        };
        // Sockets handed over by the old process of an upgrade, or else by systemd.
        let passed = match upgrade::inherited_listeners().map_err(StartError::Usage)? {
            Some(passed) => Some(passed),
            None => activation::passed_listeners().map_err(StartError::Usage)?,
        };
        // A self-signed certificate is the old process's, after an upgrade: clients keep trusting
        // the one they were shown.
        let (tls, self_signed) = match &config.tls {
            Some(source) => {
                let inherited = match source {
                    TlsSource::SelfSigned => {
                        upgrade::inherited_self_signed().map_err(StartError::Io)?
                    }
                    TlsSource::Files { .. } => None,
                };
                let (config, self_signed) =
                    tls::server_config(source, inherited).map_err(StartError::Usage)?;
                (Some(config), self_signed)
            }
            None => (None, None),
        };
        // The log file is opened now, so that one that cannot be is said in one line before the
        // listening line; the first loop writes through this one, the others open their own (one
        // that cannot, later, drops its lines and says so once for the server).
        let log_trouble = LogTrouble::new().map_err(|err| StartError::Io(err.to_string()))?;
        let mut log_checked = None;
        if let AccessLogTarget::File(path) = &config.access_log {
            log_checked = AccessLog::open(&config.access_log, &log_trouble).map_err(|err| {
                StartError::Io(format!(
                    "cannot open the access log {}: {err}",
                    path.display()
                ))
            })?;
        }
        let pool_threads =
            (config.handler_threads).unwrap_or(HANDLER_THREADS_PER_LOOP * pins.len().max(1));
        let pool = (config.mode.has_loops() && pool_threads > 0)
            .then(|| Arc::new(pool::HandlerPool::new(handler.clone(), pool_threads)));
        let metrics = config.metrics_path.as_ref().map(|_| {
            let across_processes = config.mode == Mode::Fork;
            let buffers = config.limits.buffers.clone();
            let mode = config.mode.name();
            let max = config.max_connections;
            Arc::new(Registry::new(mode, across_processes, buffers, max))
        });
        let handler = match (&config.metrics_path, &metrics) {
            (Some(path), Some(registry)) => Arc::new(MetricsRoute {
                path: path.clone(),
                registry: registry.clone(),
                inner: handler,
            }) as Arc<dyn Handler>,
            _ => handler,
        };
        let shared = Arc::new(Shared {
            handler,
            pool,
            metrics,
            limits: config.limits.clone(),
            access_log: config.access_log.clone(),
            log_trouble,
            log_checked: Mutex::new(log_checked),
            max_connections: config.max_connections,
            open: AtomicUsize::new(0),
            headers: config.headers.clone().into(),
            shutdown: Shutdown::new(),
            ready: Mutex::new(None),
        });
        let bind_error =
            |addr| move |err| StartError::Io(format!("cannot listen on {addr}: {err}"));
        // Every listener is non-blocking, in every mode: the reactor and the fork parent wait in
        // mio, and the blocking modes wait for a connection or a shutdown with poll. A listener
        // shared with another process (an upgrade's) shares this flag with it, so no mode may
        // ever change it.
        let listeners = match (passed, config.mode) {
            (Some(passed), mode) => inherited(passed, mode, pins, config)?,
            (None, mode) if mode.has_loops() => {
                // Each loop its own socket on every address.
                let mut group: Vec<Vec<TcpListener>> = pins.iter().map(|_| Vec::new()).collect();
                for addr in config.addresses() {
                    let sockets = listener::bind_group(addr, pins.len(), true, config.reuse_port)
                        .map_err(bind_error(addr))?;
                    for (own, socket) in group.iter_mut().zip(sockets) {
                        own.push(socket);
                    }
                }
                Listeners::PerLoop(group.into_iter().zip(pins).collect())
            }
            (None, _) => Listeners::OneAcceptor(
                config
                    .addresses()
                    .map(|addr| {
                        listener::bind(addr, config.reuse_port, true).map_err(bind_error(addr))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        // Responses are written whole (and a file's head and body are two sends): Nagle must not
        // hold back a last segment until the client's delayed ACK. Set on the listeners, once:
        // Linux gives every accepted socket its listener's TCP options, which spares a system
        // call per connection.
        let all = listeners.all();
        for listener in &all {
            socket2::SockRef::from(*listener)
                .set_tcp_nodelay(true)
                .map_err(|err| StartError::Io(format!("cannot set TCP_NODELAY: {err}")))?;
        }
        let addr = all[0]
            .local_addr()
            .map_err(|err| StartError::Io(err.to_string()))?;
        Ok(Server {
            mode: config.mode,
            threads: config.threads,
            listeners,
            addr,
            shutdown: shared.shutdown.clone(),
            shared,
            signals: None,
            upgrade: None,
            fork_hangup: None,
            tls,
            self_signed,
        })
    }

    /// Makes SIGINT, SIGTERM and SIGQUIT ([`STOP_SIGNALS`]) trigger the shutdown, SIGHUP
    /// upgrade the server (this binary, as resolved now, is started again with these arguments
    /// and takes the listening sockets over: see `upgrade.rs`), and SIGUSR1 reopen the access
    /// log. For the binary; tests use the handle. The fork mode's parent takes its signals
    /// itself.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        // First: the signal socket's byte must find the request to reopen already made.
        crate::access_log::reopen_on_sigusr1()?;
        // A stop is the shutdown's flag from the moment the signal comes, so that every answer
        // given after it says `Connection: close`, on every loop and worker. Until stop 85 the
        // loops that do not take the signals (the second reactor loop, a ring other than the
        // first) read the stop only once the first loop had taken it, and in that instant could
        // answer with keep-alive a client whose connection the stop then closed. The first loop
        // (or the blocking modes' signal thread) to see the flag triggers the shutdown, which
        // wakes everyone once; the signal socket's byte only wakes the first loop.
        for signal in STOP_SIGNALS {
            signal_hook::flag::register(signal, self.shutdown.flag())?;
        }
        if self.mode == Mode::Fork {
            // Only flags: the parent sets up its wake-ups itself. A forked child inherits these
            // handlers, which set its own copy of the flags.
            let hangup = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(SIGHUP, hangup.clone())?;
            self.fork_hangup = Some(hangup);
        } else {
            self.signals = Some(Signals::install()?);
            // A stop is bounded for the binary: a handler that has not returned by the end of
            // the drain time (one that blocks, called inline by a blocking mode's worker, or
            // running on the pool) does not keep the process. By then every connection is
            // closed, so nothing else is lost. (The fork mode's parent leaves at the end of
            // the drain time by itself.)
            let stopping = self.shutdown.clone();
            self.shutdown.on_trigger(move || {
                let bound = stopping.grace() + EXIT_MARGIN;
                std::thread::spawn(move || {
                    std::thread::sleep(bound);
                    eprintln!(
                        "reactor-httpd: a handler is still running {bound:.1?} after the stop; exiting without it"
                    );
                    // PID 1 that has handed over keeps its namespace instead (this returns
                    // only if it cannot).
                    keeper::keep_if_handed_over();
                    // SAFETY: _exit ends the process at once. Not `exit`: the main thread
                    // may be returning, and so calling `exit` itself, at this very moment.
                    unsafe { libc::_exit(0) };
                });
            });
        }
        self.upgrade = Some(upgrade::Upgrade::for_this_process(
            &self.listeners.all(),
            &self.shutdown,
            self.self_signed.clone(),
        )?);
        Ok(())
    }

    /// `ready` is called once, when every loop (thread, ring) is set up, just before serving
    /// begins; if setting up fails, `run` returns the error and `ready` is never called.
    pub fn when_ready(&self, ready: impl FnOnce() + Send + 'static) {
        let mut slot = self
            .shared
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(Box::new(ready));
    }

    /// The SHA-256 fingerprint of the certificate made with `--tls-self-signed`.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.self_signed.as_ref().map(SelfSigned::fingerprint)
    }

    /// The address actually bound (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Triggering it makes [`Server::run`] stop accepting, finish in-flight requests and return.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The one line printed at start: `listening on http://127.0.0.1:8080 (reactor, 2 loops)`.
    pub fn listening_line(&self) -> String {
        let loops = match &self.listeners {
            Listeners::PerLoop(group) => group.len(),
            Listeners::OneAcceptor(_) => 1,
        };
        let how = match self.mode {
            Mode::Reactor => plural(loops, "loop"),
            Mode::Uring => plural(loops, "ring"),
            Mode::Threaded => plural(self.threads, "thread"),
            Mode::Blocking => plural(1, "thread"),
            Mode::Fork => "1 process per connection".into(),
        };
        format!(
            "listening on {} ({}, {how})",
            self.url(self.addr),
            self.mode.name()
        )
    }

    /// The addresses listened on besides the one the listening line names (`--bind` given more
    /// than once, or more sockets passed in), as URLs, each once.
    pub fn other_urls(&self) -> Vec<String> {
        let mut seen = vec![self.addr];
        for listener in self.listeners.all() {
            if let Ok(addr) = listener.local_addr()
                && !seen.contains(&addr)
            {
                seen.push(addr);
            }
        }
        seen[1..].iter().map(|addr| self.url(*addr)).collect()
    }

    fn url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// Serves until shutdown; returns once in-flight requests are done (at most
    /// [`DRAIN_GRACE`] after the trigger, [`HANDOVER_GRACE`] after a handover).
    pub fn run(mut self) -> io::Result<()> {
        // The reactor's first loop polls the signal socket; the blocking modes give it a thread;
        // the fork parent takes its own.
        if matches!(self.mode, Mode::Threaded | Mode::Blocking)
            && let Some(signals) = self.signals.take()
        {
            signals.watch_in_thread(self.shutdown.clone(), self.upgrade.take())?;
        }
        // The drivers are generic over the session: compiled once for plain HTTP, once with
        // TLS under it.
        match self.tls.take() {
            None => self.serve::<Conn>(()),
            Some(config) => self.serve::<TlsConn>(config),
        }
    }

    fn serve<S: Session>(self, setup: S::Setup) -> io::Result<()> {
        let (shared, shutdown, upgrade) = (self.shared, self.shutdown, self.upgrade);
        match (self.mode, self.listeners) {
            (Mode::Reactor, Listeners::PerLoop(group)) => {
                let signals = self.signals.map(|signals| (signals, upgrade));
                reactor::run::<S>(group, setup, shared, shutdown, signals)
            }
            (Mode::Uring, Listeners::PerLoop(group)) => {
                let signals = self.signals.map(|signals| (signals, upgrade));
                uring::run::<S>(group, setup, shared, shutdown, signals)
            }
            (Mode::Threaded, Listeners::OneAcceptor(listeners)) => {
                threaded::run::<S>(listeners, setup, self.threads, shared, shutdown)
            }
            (Mode::Blocking, Listeners::OneAcceptor(listeners)) => {
                blocking::run::<S>(listeners, setup, shared, shutdown)
            }
            (Mode::Fork, Listeners::OneAcceptor(listeners)) => {
                let upgrade = upgrade.zip(self.fork_hangup);
                fork::run::<S>(listeners, setup, shared, shutdown, upgrade)
            }
            _ => Err(io::Error::other("listeners do not match the mode")),
        }
    }
}

/// `--metrics-path`: answers that path with every loop's counters, and passes everything else to
/// the application.
struct MetricsRoute {
    path: String,
    registry: Arc<Registry>,
    inner: Arc<dyn Handler>,
}

impl Handler for MetricsRoute {
    fn handle(&self, request: &Request<'_>) -> Response {
        if request.path != self.path {
            return self.inner.handle(request);
        }
        match request.method {
            "GET" | "HEAD" => Response::new(Status::OK)
                .with_content_type("text/plain; version=0.0.4; charset=utf-8")
                .with_body(Body::Bytes(self.registry.render().into_bytes())),
            _ => crate::app::other_method(request, "GET, HEAD, OPTIONS"),
        }
    }

    fn may_block(&self, request: &Request<'_>) -> bool {
        request.path != self.path && self.inner.may_block(request)
    }

    fn reads_body(&self, request: &Request<'_>) -> bool {
        request.path != self.path && self.inner.reads_body(request)
    }

    fn handle_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        if request.path != self.path {
            return self.inner.handle_unless_blocking(request);
        }
        Some(self.handle(request))
    }
}

/// The listeners for `mode` from sockets passed in (by an upgrade's old process, or by socket
/// activation) instead of bound here. An explicit `--bind` must name what was passed (port 0
/// matches any port). Every socket is served: one nobody accepts from would hold its
/// connections forever. The modes without loops take them all in their one acceptor. The
/// reactor's loops split the sockets of each address among them when there are as many as
/// loops or more (an upgrade from the same flags; `ReusePort=yes` and one `ListenStream=` per
/// loop), a loop taking several when there are more; with fewer, the loops share them round
/// the loops, each loop with its own descriptor of a shared socket, accepting until it would
/// block: one connection goes to whichever loop's `accept` takes it first, never to two. So
/// with an IPv4 and an IPv6 socket passed, every loop serves both.
fn inherited(
    passed: Vec<TcpListener>,
    mode: Mode,
    pins: Vec<Option<core_affinity::CoreId>>,
    config: &Config,
) -> Result<Listeners, StartError> {
    let io = |err: io::Error| StartError::Io(format!("cannot use the sockets passed: {err}"));
    // The sockets of each address, in the order the addresses were first passed.
    let mut by_address: Vec<(SocketAddr, Vec<TcpListener>)> = Vec::new();
    let names = |bind: SocketAddr, addr: SocketAddr| {
        addr == bind || (bind.port() == 0 && addr.ip() == bind.ip())
    };
    for listener in passed {
        let addr = listener.local_addr().map_err(io)?;
        if config.bind_given && !config.addresses().any(|bind| names(bind, addr)) {
            let binds: Vec<String> = config.addresses().map(|bind| bind.to_string()).collect();
            return Err(StartError::Usage(format!(
                "--bind {} contradicts the socket passed in ({addr})",
                binds.join(", ")
            )));
        }
        listener.set_nonblocking(true).map_err(io)?;
        match by_address.iter_mut().find(|(seen, _)| *seen == addr) {
            Some((_, sockets)) => sockets.push(listener),
            None => by_address.push((addr, vec![listener])),
        }
    }
    if config.bind_given
        && let Some(bind) = config
            .addresses()
            .find(|bind| !by_address.iter().any(|(addr, _)| names(*bind, *addr)))
    {
        return Err(StartError::Usage(format!(
            "--bind {bind} names no socket passed in"
        )));
    }
    if !mode.has_loops() {
        let all = by_address.into_iter().flat_map(|(_, sockets)| sockets);
        return Ok(Listeners::OneAcceptor(all.collect()));
    }
    let loops = pins.len();
    let mut group: Vec<Vec<TcpListener>> = (0..loops).map(|_| Vec::new()).collect();
    for (_, sockets) in by_address {
        if sockets.len() >= loops {
            for (index, listener) in sockets.into_iter().enumerate() {
                group[index % loops].push(listener);
            }
        } else {
            for (index, own) in group.iter_mut().enumerate() {
                own.push(sockets[index % sockets.len()].try_clone().map_err(io)?);
            }
        }
    }
    Ok(Listeners::PerLoop(group.into_iter().zip(pins).collect()))
}

/// Waits for every thread; the first error (`result`'s, or a thread's, or a panic, named after
/// `what` the threads are) is the outcome.
fn join_all(
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
    what: &str,
    mut result: io::Result<()>,
) -> io::Result<()> {
    for thread in threads {
        let outcome = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other(format!("{what} panicked"))));
        result = result.and(outcome);
    }
    result
}

/// Holds the threads of the loops (rings) back until every loop is made and the start is
/// announced, so that none serves (and logs a line to stdout ahead of the listening line) before.
/// Dropped without [`StartGate::open`], it tells them the start failed.
#[derive(Default)]
pub(crate) struct StartGate(Vec<std::sync::mpsc::Sender<()>>);

/// One thread's side of the [`StartGate`].
pub(crate) struct StartWait(std::sync::mpsc::Receiver<()>);

impl StartGate {
    pub(crate) fn waiter(&mut self) -> StartWait {
        let (go, wait) = std::sync::mpsc::channel();
        self.0.push(go);
        StartWait(wait)
    }

    pub(crate) fn open(self) {
        for go in &self.0 {
            let _ = go.send(());
        }
    }
}

impl StartWait {
    /// Whether to serve: `false` if the start failed.
    pub(crate) fn wait(self) -> bool {
        self.0.recv().is_ok()
    }
}

/// An error in making the `index`th (from 1) of `count` loops, rings or threads, said so: the
/// start fails with it, before the listening line.
pub(crate) fn cannot_make(
    what: &str,
    index: usize,
    count: usize,
) -> impl FnOnce(io::Error) -> io::Error {
    move |err| {
        io::Error::new(
            err.kind(),
            format!("cannot make {what} {index} of {count}: {err}"),
        )
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// How many event loops to run, and the core each is pinned to. The allowed cores are asked for
/// once, before anything is pinned: once a thread is pinned, it only sees its own core.
fn loop_pins(config: &Config) -> Result<Vec<Option<core_affinity::CoreId>>, StartError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (loops, pin) = match config.cores {
        Cores::Auto => auto_loops(cores.len(), resources::cpu_time_allowed()),
        Cores::Count(0) => return Err(StartError::Usage("--cores must be at least 1".into())),
        Cores::Count(n) => (n, true),
    };
    if !(config.pin && pin) {
        return Ok(vec![None; loops]);
    }
    if loops > cores.len() {
        return Err(StartError::Usage(format!(
            "--cores {loops}, but this process may only use {} (add --no-pin to run more loops than cores)",
            plural(cores.len(), "core")
        )));
    }
    Ok(cores.into_iter().take(loops).map(Some).collect())
}

/// `--cores auto`: how many loops, and whether to pin them, for a process that may run on
/// `cores` cores and, in all, for as much CPU time as `cpu_time` whole cores have (fewer than
/// `cores` under a cgroup's CPU limit: a container's `--cpus`, a Kubernetes pod's
/// `limits.cpu`).
///
/// A loop per core, pinned, unless the CPU time is less: then as many loops as it has whole
/// cores, unpinned. More loops than that would only use the limit up sooner: they run at once,
/// spend a period's allowance in a fraction of it, and then every one of them waits for the
/// next period (100 ms by default), answering nothing meanwhile. And unpinned, because such a
/// limit counts time, not cores: the first cores of the list are everyone's first cores, and
/// other containers' loops pinned there would share them while the rest stood idle.
fn auto_loops(cores: usize, cpu_time: Option<usize>) -> (usize, bool) {
    match cpu_time {
        // With no core list from the kernel, one loop, which nothing pins.
        _ if cores == 0 => (1, false),
        Some(whole) if whole < cores => (whole.max(1), false),
        _ => (cores, true),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, RawFd};

    use super::*;

    #[test]
    fn auto_loops_follow_the_cpu_time_a_cgroup_allows() {
        // No limit, or one of at least the cores: a loop per core, pinned.
        assert_eq!(auto_loops(16, None), (16, true));
        assert_eq!(auto_loops(16, Some(16)), (16, true));
        assert_eq!(auto_loops(2, Some(2)), (2, true));
        // A limit of 2 CPUs on 16 cores (a pod's limits.cpu: "2.5" reads 2): two, unpinned.
        assert_eq!(auto_loops(16, Some(2)), (2, false));
        // Less than one CPU (std says 1 then, never 0): one loop.
        assert_eq!(auto_loops(4, Some(1)), (1, false));
        assert_eq!(auto_loops(4, Some(0)), (1, false));
        // A process the kernel lists no cores for still gets a loop, unpinned.
        assert_eq!(auto_loops(0, None), (1, false));
    }

    /// The addresses each loop accepts on, sorted.
    fn addresses(listeners: &Listeners) -> Vec<Vec<SocketAddr>> {
        let Listeners::PerLoop(group) = listeners else {
            panic!("not per loop");
        };
        (group.iter())
            .map(|(own, _)| {
                let mut addrs: Vec<_> = own.iter().map(|l| l.local_addr().unwrap()).collect();
                addrs.sort();
                addrs
            })
            .collect()
    }

    /// `count` sockets listening on one loopback address, sharing its port.
    fn sockets_on_one_address(count: usize) -> Vec<TcpListener> {
        let first = ([127, 0, 0, 1], 0).into();
        listener::bind_group(first, count, true, true).unwrap()
    }

    #[test]
    fn every_loop_serves_every_address_passed() {
        let two_loops = || vec![None, None];
        let config = Config::default();
        // Two addresses, one socket each: both loops take both (a descriptor of each).
        let (a, b) = (sockets_on_one_address(1), sockets_on_one_address(1));
        let (a_addr, b_addr) = (a[0].local_addr().unwrap(), b[0].local_addr().unwrap());
        let mut both = vec![a_addr, b_addr];
        both.sort();
        let passed = a.into_iter().chain(b).collect();
        let listeners = inherited(passed, Mode::Reactor, two_loops(), &config).unwrap();
        assert_eq!(addresses(&listeners), vec![both.clone(), both.clone()]);
        // One address with a socket per loop (an upgrade's), and another with one: the first
        // is split, one socket a loop; the second shared.
        let (a, b) = (sockets_on_one_address(2), sockets_on_one_address(1));
        let (a_addr, b_addr) = (a[0].local_addr().unwrap(), b[0].local_addr().unwrap());
        let fds: Vec<RawFd> = a.iter().map(AsRawFd::as_raw_fd).collect();
        let passed = a.into_iter().chain(b).collect();
        let listeners = inherited(passed, Mode::Reactor, two_loops(), &config).unwrap();
        let mut pair = vec![a_addr, b_addr];
        pair.sort();
        assert_eq!(addresses(&listeners), vec![pair.clone(), pair]);
        let Listeners::PerLoop(group) = &listeners else {
            unreachable!()
        };
        assert_eq!(group[0].0[0].as_raw_fd(), fds[0]);
        assert_eq!(group[1].0[0].as_raw_fd(), fds[1]);
        // Three sockets on one address, two loops: the first loop takes two.
        let listeners = inherited(
            sockets_on_one_address(3),
            Mode::Reactor,
            two_loops(),
            &config,
        )
        .unwrap();
        assert_eq!(
            addresses(&listeners)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [2, 1]
        );
        // The other modes take every socket passed.
        let passed = sockets_on_one_address(1)
            .into_iter()
            .chain(sockets_on_one_address(1))
            .collect();
        let Listeners::OneAcceptor(all) =
            inherited(passed, Mode::Threaded, two_loops(), &config).unwrap()
        else {
            panic!("not one acceptor");
        };
        assert_eq!(all.len(), 2);
    }
}
