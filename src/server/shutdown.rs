//! The shutdown handle: one flag, and a way to wake every loop or thread that waits.
//!
//! SIGINT and SIGTERM trigger it (see [`Signals`]); so does a SIGHUP upgrade once the new process
//! serves, as a *handover* (see `upgrade.rs`); tests trigger it directly. Each driver registers a
//! wake-up (the reactor: its `mio::Waker`) so that a loop asleep in `poll` notices at once.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use libc::c_int;
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::low_level::pipe;

/// How long in-flight requests get to finish after a shutdown is requested. The contract says
/// the process exits within 5 s; this leaves a margin.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);

/// How long the old process of an upgrade gives its responses in flight (a long download) to
/// finish. Nobody waits for it to exit, so it may take longer than a stop; a client that stalls
/// is cut by `--send-timeout` anyway.
pub const HANDOVER_GRACE: Duration = Duration::from_secs(60);

type Wake = Box<dyn Fn() + Send + Sync>;

#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Shared as an `Arc` so a signal handler can set it directly (the fork mode's parent).
    requested: Arc<AtomicBool>,
    /// Set (before `requested`) when a new process has taken the listening sockets over. An
    /// `Arc` for the same reason as `requested`: a forked child's signal handler sets it.
    handover: Arc<AtomicBool>,
    wakers: Mutex<Vec<Wake>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks the server to stop: it stops accepting, finishes what is in flight, and returns.
    /// Only the first call does anything: the wake-ups run once.
    pub fn trigger(&self) {
        if self.inner.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        let wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for wake in wakers.iter() {
            wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// A new process serves on our listening sockets: stop as [`Shutdown::trigger`] does, but
    /// leave the connections queued on them to it (they are its now), and give idle
    /// connections a last request (see `http::Drain::Handover`).
    pub fn hand_over(&self) {
        self.inner.handover.store(true, Ordering::SeqCst);
        self.trigger();
    }

    /// Whether the shutdown is a handover to a new process.
    pub fn is_handover(&self) -> bool {
        self.inner.handover.load(Ordering::SeqCst)
    }

    /// How long what is in flight may take to finish once triggered.
    pub fn grace(&self) -> Duration {
        if self.is_handover() {
            HANDOVER_GRACE
        } else {
            DRAIN_GRACE
        }
    }

    /// How idle connections end: at once on a stop, after one more request on a handover.
    pub fn drain_kind(&self) -> crate::http::Drain {
        if self.is_handover() {
            crate::http::Drain::Handover
        } else {
            crate::http::Drain::Now
        }
    }

    /// The flag itself, for a signal handler to set. Setting it wakes nobody: only for a driver
    /// whose wait any signal interrupts.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.inner.requested.clone()
    }

    /// The handover flag, for a signal handler to set (before the shutdown flag): only for a
    /// forked child, whose parent tells it of a handover with SIGHUP.
    pub(crate) fn handover_flag(&self) -> Arc<AtomicBool> {
        self.inner.handover.clone()
    }

    /// Registers how to wake a waiting loop. Called at once if shutdown was already requested.
    pub(crate) fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_triggered() {
            wake();
        }
        wakers.push(Box::new(wake));
    }
}

/// SIGINT, SIGTERM and SIGHUP, delivered as bytes on a socket: signal-hook's handler writes one
/// byte per signal into one end (the self-pipe pattern), and whoever holds the other end handles
/// the signal in ordinary code, where taking a lock or starting a process is allowed. Which
/// signal came is told by a flag each kind sets first.
///
/// The reactor polls that end like any other socket, so no thread is started for signals. With
/// one loop, which then runs on the main thread, the process stays single-threaded, and glibc
/// skips the thread-cancellation bookkeeping it wraps around every blocking system call once a
/// second thread exists: 143 fewer instructions per request (of 2,141) under
/// `benches/callgrind-per-request.sh`.
pub struct Signals {
    read: UnixStream,
    stop: Arc<AtomicBool>,
    upgrade: Arc<AtomicBool>,
}

/// What [`Signals::take`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Received {
    /// SIGINT or SIGTERM.
    pub stop: bool,
    /// SIGHUP.
    pub upgrade: bool,
}

impl Signals {
    /// Installs the handlers. From now on SIGINT, SIGTERM and SIGHUP no longer end the process:
    /// they only set a flag and write to the socket.
    pub fn install() -> io::Result<Signals> {
        let (stop, upgrade) = (Arc::new(AtomicBool::new(false)), Arc::default());
        // Installed for the rest of the process's life: the registrations are not kept. Each
        // flag is registered before the byte, so it is set by the time the byte is read.
        signal_hook::flag::register(SIGINT, stop.clone())?;
        signal_hook::flag::register(SIGTERM, stop.clone())?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&upgrade))?;
        let (read, _registered) = self_pipe(&[SIGINT, SIGTERM, SIGHUP])?;
        read.set_nonblocking(true)?;
        Ok(Signals {
            read,
            stop,
            upgrade,
        })
    }

    /// The descriptor to poll (non-blocking); when it is readable, call [`Signals::take`].
    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empties the socket (so the next signal is a new event) and says which signals came.
    pub(crate) fn take(&self) -> Received {
        Signals::drain(&self.read);
        Received {
            stop: self.stop.swap(false, Ordering::SeqCst),
            upgrade: self.upgrade.swap(false, Ordering::SeqCst),
        }
    }

    /// Empties a readable signal socket (non-blocking), so the next signal is a new event.
    pub(crate) fn drain(mut stream: impl Read) {
        let mut bytes = [0; 64];
        while matches!(stream.read(&mut bytes), Ok(n) if n > 0) {}
    }

    /// For the blocking modes, which have no loop to poll it in: a thread waits for signals,
    /// triggers `shutdown` on a stop, and runs an upgrade on SIGHUP, watching the new process's
    /// readiness with the signals. (They run several threads anyway.)
    pub(crate) fn watch_in_thread(
        self,
        shutdown: Shutdown,
        mut upgrade: Option<super::upgrade::Upgrade>,
    ) -> io::Result<()> {
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut watching: Option<RawFd> = None;
                while !shutdown.is_triggered() {
                    let deadline = upgrade.as_ref().and_then(|upgrade| upgrade.deadline());
                    match watching {
                        Some(ready) => wait_readable(&[self.fd(), ready], deadline),
                        None => wait_readable(&[self.fd()], deadline),
                    }
                    let received = self.take();
                    if received.stop {
                        shutdown.trigger();
                    }
                    let Some(upgrade) = upgrade.as_mut() else {
                        continue;
                    };
                    if received.upgrade {
                        watching = upgrade.start(&shutdown).or(watching);
                    }
                    if upgrade.is_starting() {
                        upgrade.check(&shutdown);
                    }
                    if !upgrade.is_starting() {
                        watching = None;
                    }
                }
            })
            .map(drop)
    }
}

/// Waits until one of `fds` is readable, or `until` passes (`None`: no time limit). An
/// interrupted wait simply returns: callers look again.
pub(crate) fn wait_readable(fds: &[RawFd], until: Option<std::time::Instant>) {
    let mut polled: Vec<libc::pollfd> = (fds.iter())
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = until.map_or(-1, |at| {
        let left = at.saturating_duration_since(std::time::Instant::now());
        left.as_millis().min(i32::MAX as u128) as i32
    });
    // SAFETY: `polled` is a valid array of its length for the call.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
}

/// The self-pipe: a socket pair, with signal-hook's handler writing one byte into one end each
/// time one of `signals` arrives. Returns the other end (blocking) and the registrations.
pub(crate) fn self_pipe(signals: &[c_int]) -> io::Result<(UnixStream, Vec<SigId>)> {
    let (read, write) = UnixStream::pair()?;
    // The handler must never block: a full socket already has a wake-up waiting.
    write.set_nonblocking(true)?;
    let registered = signals
        .iter()
        .map(|&signal| pipe::register(signal, write.try_clone()?))
        .collect::<io::Result<_>>()?;
    Ok((read, registered))
}
