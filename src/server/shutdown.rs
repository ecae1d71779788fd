//! The shutdown handle: one flag, and a way to wake every loop or thread that waits.
//!
//! SIGINT and SIGTERM trigger it (see [`Signals`]); tests trigger it directly. Each driver
//! registers a wake-up (the reactor: its `mio::Waker`) so that a loop asleep in `poll` notices at
//! once.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use libc::c_int;
use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level::pipe;

/// How long in-flight requests get to finish after a shutdown is requested. The contract says
/// the process exits within 5 s; this leaves a margin.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);

type Wake = Box<dyn Fn() + Send + Sync>;

#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Shared as an `Arc` so a signal handler can set it directly (the fork mode's parent).
    requested: Arc<AtomicBool>,
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

    /// The flag itself, for a signal handler to set. Setting it wakes nobody: only for a driver
    /// whose wait any signal interrupts.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.inner.requested.clone()
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

/// SIGINT and SIGTERM, delivered as bytes on a socket: signal-hook's handler writes one byte per
/// signal into one end (the self-pipe pattern), and whoever holds the other end handles the
/// signal in ordinary code, where taking a lock is allowed.
///
/// The reactor polls that end like any other socket, so no thread is started for signals. With
/// one loop, which then runs on the main thread, the process stays single-threaded, and glibc
/// skips the thread-cancellation bookkeeping it wraps around every blocking system call once a
/// second thread exists: 143 fewer instructions per request (of 2,141) under
/// `benches/callgrind-per-request.sh`.
pub struct Signals {
    read: UnixStream,
}

impl Signals {
    /// Installs the handlers. From now on SIGINT and SIGTERM no longer end the process: they
    /// only write to the socket.
    pub fn install() -> io::Result<Signals> {
        // Installed for the rest of the process's life: the registrations are not kept.
        let (read, _registered) = self_pipe(&[SIGINT, SIGTERM])?;
        Ok(Signals { read })
    }

    /// The end to poll, non-blocking, for an event loop; it must call [`Signals::drain`] on it
    /// when it is readable, and then trigger the shutdown.
    pub(crate) fn into_stream(self) -> io::Result<UnixStream> {
        self.read.set_nonblocking(true)?;
        Ok(self.read)
    }

    /// Empties a readable signal socket (non-blocking), so the next signal is a new event.
    pub(crate) fn drain(mut stream: impl Read) {
        let mut bytes = [0; 64];
        while matches!(stream.read(&mut bytes), Ok(n) if n > 0) {}
    }

    /// For the blocking modes, which have no loop to poll it in: a thread waits for a signal and
    /// triggers `shutdown`. (They run several threads anyway.)
    pub(crate) fn watch_in_thread(mut self, shutdown: Shutdown) -> io::Result<()> {
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if self.read.read(&mut [0]).is_ok() {
                    shutdown.trigger();
                }
            })
            .map(drop)
    }
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
