//! Every limit, timeout and choice the server runs with, with its default, in one place.
//!
//! `main.rs` fills a [`Config`] from the command line; the drivers in `server/` read it, and hand
//! the HTTP core only the part it needs, [`Limits`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http::BufferBudget;

/// How connections are driven. Every mode runs the same HTTP code (`http::Conn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One mio event loop per core, each with its own SO_REUSEPORT listener.
    Reactor,
    /// One acceptor thread feeding a bounded queue drained by a pool of blocking workers.
    Threaded,
    /// One connection at a time, on one thread.
    Blocking,
    /// A single-threaded parent that forks a child per connection.
    Fork,
    /// One io_uring per core, each with its own SO_REUSEPORT listener: completion, not readiness.
    Uring,
}

impl Mode {
    /// Event-loop modes: one loop per core, each with its own listener and a handler pool.
    pub fn has_loops(self) -> bool {
        matches!(self, Mode::Reactor | Mode::Uring)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Reactor => "reactor",
            Mode::Threaded => "threaded",
            Mode::Blocking => "blocking",
            Mode::Fork => "fork",
            Mode::Uring => "uring",
        }
    }
}

/// The handler pool's default size: this many threads per event loop. A blocking handler holds
/// its thread while it waits, so the pool is sized for waiting, not for the cores: with 2 loops,
/// 16 threads wait on 16 slow requests at once.
pub const HANDLER_THREADS_PER_LOOP: usize = 8;

/// How many event loops reactor mode runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cores {
    /// One per core this process may run on.
    Auto,
    Count(usize),
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
    Off,
}

/// What the HTTP core enforces on every connection, whatever drives it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request line plus headers; beyond it 431.
    pub max_header_bytes: usize,
    /// Request body; beyond it 413.
    pub max_body_bytes: u64,
    /// From the first byte of a request (or from accept) to the end of its head; then 408.
    pub header_timeout: Duration,
    /// From the end of a request head to the end of its body; then 408. Each byte of the body
    /// that arrives moves the deadline on by `1 / body_min_rate` s, to no later than this long
    /// from now: a body that keeps coming at that rate never runs out of time, one that stops
    /// for this long does, and so does one that crawls below the rate for long enough.
    pub body_timeout: Duration,
    /// Bytes a second of a request body that keep its timeout from running down (Apache's
    /// `MinRate`); 0: the whole body must arrive within `body_timeout` of its head.
    pub body_min_rate: u32,
    /// An idle keep-alive connection is closed, silently, after this. Zero: keep-alive off,
    /// every response says `Connection: close`.
    pub keep_alive_timeout: Duration,
    /// A response that makes no progress for this long (the client stopped reading) is abandoned.
    pub send_timeout: Duration,
    /// A request on the handler pool that has not been answered in this time gets 504.
    pub handler_timeout: Duration,
    /// What all connections' buffers may hold beyond their first 8 KiB each; a request that
    /// needs more gets 503, or 413 if it could not fit even alone (`--max-buffer-bytes`).
    pub buffers: Arc<BufferBudget>,
}

/// `--max-buffer-bytes` unless given: a hundred bodies of the default `--max-body-bytes`.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 1 << 30;

/// `--max-connections` unless given, where memory does not ask for fewer
/// (`server::resources::default_max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
            keep_alive_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(30),
            buffers: BufferBudget::new(DEFAULT_MAX_BUFFER_BYTES),
        }
    }
}

/// The whole server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on; the listening line names it.
    pub bind: SocketAddr,
    /// More addresses, each listened on as `bind` is (`--bind` given more than once: IPv4 and
    /// IPv6, say, as nginx's `listen 80; listen [::]:80;`).
    pub also_bind: Vec<SocketAddr>,
    /// `--bind` was given: with sockets passed in (socket activation) they and the addresses
    /// must name each other.
    pub bind_given: bool,
    /// Join a port other sockets of this user already listen on (SO_REUSEPORT), instead of
    /// refusing an address in use.
    pub reuse_port: bool,
    pub mode: Mode,
    pub cores: Cores,
    /// Pin each event loop to its own core.
    pub pin: bool,
    /// Worker threads in threaded mode.
    pub threads: usize,
    /// Reactor mode: threads that run the handlers that may block; `None` = the default,
    /// [`HANDLER_THREADS_PER_LOOP`] per loop; 0 = every handler on its loop.
    pub handler_threads: Option<usize>,
    /// Mount the demo routes ahead of the static files.
    pub demo: bool,
    /// The directory served.
    pub root: PathBuf,
    /// Open connections per server; past it, 503 and close.
    pub max_connections: usize,
    pub limits: Limits,
    pub access_log: AccessLogTarget,
    /// Answer GET on this path with the Prometheus text of the per-loop counters.
    pub metrics_path: Option<String>,
    /// Serve HTTPS with this certificate.
    pub tls: Option<crate::tls::TlsSource>,
    /// `--header 'Name: value'`: fields added to every response.
    pub headers: Vec<(String, String)>,
    /// Serve `x.br`, `x.zst` or `x.gz` for `x` when the client accepts it.
    pub precompressed: bool,
    /// Compress compressible files of 1 KiB or more as they are sent.
    pub compress: bool,
}

impl Config {
    /// Every address to listen on: `bind`, then `also_bind`.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.bind).chain(self.also_bind.iter().copied())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            also_bind: Vec::new(),
            bind_given: false,
            reuse_port: false,
            mode: Mode::Reactor,
            cores: Cores::Auto,
            pin: true,
            threads: 64,
            handler_threads: None,
            demo: false,
            root: PathBuf::from("."),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            limits: Limits::default(),
            access_log: AccessLogTarget::Stdout,
            metrics_path: None,
            tls: None,
            headers: Vec::new(),
            precompressed: true,
            compress: false,
        }
    }
}
