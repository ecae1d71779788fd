//! The shutdown handle: one flag, and a way to wake every loop or thread that waits.
//!
//! SIGINT, SIGTERM and SIGQUIT trigger it (see [`Signals`]); so does a SIGHUP upgrade once the new
//! process serves, as a *handover* (see `upgrade.rs`); tests trigger it directly. Each driver
//! registers a wake-up (the reactor: its `mio::Waker`) so that a loop asleep in `poll` notices at
//! once.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use libc::c_int;
use signal_hook::SigId;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::low_level::pipe;

use super::io_util::SharedMapped;

/// How long in-flight requests get to finish after a shutdown is requested. The contract says
/// the process exits within 5 s; this leaves a margin.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);

/// How long the old process of an upgrade gives its responses in flight (a long download) to
/// finish. Nobody waits for it to exit, so it may take longer than a stop; a client that stalls
/// is cut by `--send-timeout` anyway.
pub const HANDOVER_GRACE: Duration = Duration::from_secs(60);

/// The signals that stop the server gracefully: Ctrl-C, `kill` and `docker stop` (SIGINT,
/// SIGTERM), and SIGQUIT, which nginx takes for its graceful stop (its official container image
/// sets `STOPSIGNAL SIGQUIT`, and Ctrl-\\ sends it): left to its default, SIGQUIT would end the
/// process at once, dropping every response in flight, and dump a core.
pub(crate) const STOP_SIGNALS: [c_int; 3] = [SIGINT, SIGTERM, SIGQUIT];

type Wake = Arc<dyn Fn() + Send + Sync>;

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
    /// Set when the drain time is up ([`Shutdown::end`]).
    ended: AtomicBool,
    /// Run once at the stop, and dropped ([`Shutdown::trigger`]).
    wakers: Mutex<Vec<Wake>>,
    /// The event loops' wake-ups (also in `wakers`), for [`Shutdown::wake_loops`].
    loops: Mutex<Vec<Wake>>,
    /// Fork mode: the stop as the parent tells it to its children (see [`Told`]).
    told: OnceLock<Told>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks the server to stop: it stops accepting, finishes what is in flight, and returns.
    /// Each wake-up runs once: here, or when it is registered if the stop came first. The flag
    /// may be set already, by a signal handler ([`Shutdown::flag`]): the wake-ups run all the
    /// same.
    pub fn trigger(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *lock(&self.inner.wakers));
        for wake in wakers {
            wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst) || self.told_by_parent()
    }

    /// In a forked child: whether the parent has told the stop through shared memory; if so,
    /// takes it as this copy's own, as the signal that follows would.
    fn told_by_parent(&self) -> bool {
        let Some(told) = self.inner.told.get() else {
            return false;
        };
        match told.word().load(Ordering::SeqCst) {
            Told::NOTHING => false,
            word => {
                // Handover first, as a child's SIGHUP sets them.
                if word & !Told::ENDED == Told::HANDOVER {
                    self.inner.handover.store(true, Ordering::SeqCst);
                }
                self.inner.requested.store(true, Ordering::SeqCst);
                true
            }
        }
    }

    /// Fork mode, in the parent before its first child: a stop will be told to the children
    /// in memory they share with it too, as well as by a signal (see [`Told`]).
    pub(crate) fn share_with_children(&self) -> io::Result<()> {
        if self.inner.told.get().is_none() {
            let _ = self.inner.told.set(Told::new()?);
        }
        Ok(())
    }

    /// Fork mode, in the parent once it stops, before it signals a child: tells every child at
    /// once, a stop or a handover.
    pub(crate) fn tell_children(&self) {
        if let Some(told) = self.inner.told.get() {
            let word = if self.is_handover() {
                Told::HANDOVER
            } else {
                Told::STOP
            };
            told.word().store(word, Ordering::SeqCst);
        }
    }

    /// The drain time is up: every connection still open is to end now ([`Shutdown::is_ended`]).
    /// Said by the blocking modes' timer before it shuts their sockets, and by fork mode's parent
    /// before it signals the children still serving, who see it in the byte they share.
    pub(crate) fn end(&self) {
        self.inner.ended.store(true, Ordering::SeqCst);
        if let Some(told) = self.inner.told.get() {
            told.word().fetch_or(Told::ENDED, Ordering::SeqCst);
        }
    }

    /// Whether the drain time is up ([`Shutdown::end`]), here or, in a forked child, in the
    /// parent. A blocking driver then ends its connection itself, so that what the connection
    /// owes the access log is written (a download cut short, a request never answered), and
    /// tells the end from a client's close.
    pub(crate) fn is_ended(&self) -> bool {
        self.inner.ended.load(Ordering::SeqCst)
            || (self.inner.told.get())
                .is_some_and(|told| told.word().load(Ordering::SeqCst) & Told::ENDED != 0)
    }

    /// A new process serves on our listening sockets: stop as [`Shutdown::trigger`] does, but
    /// leave the connections queued on them to it (they are its now), and give idle
    /// connections a last request (see `http::Drain::Handover`).
    pub fn hand_over(&self) {
        self.inner.handover.store(true, Ordering::SeqCst);
        self.trigger();
    }

    /// The stop as each answer reads it: the flag a stop sets, and the one a handover sets
    /// before it.
    pub(crate) fn signal(&self) -> crate::http::StopSignal<'_> {
        crate::http::StopSignal::new(&self.inner.requested, &self.inner.handover)
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
    /// whose wait any signal interrupts, or beside a [`Signals`] whose taker then calls
    /// [`Shutdown::trigger`] (so that every answer reads the stop from the moment it came).
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.inner.requested.clone()
    }

    /// The handover flag, for a signal handler to set (before the shutdown flag): only for a
    /// forked child, whose parent tells it of a handover with SIGHUP.
    pub(crate) fn handover_flag(&self) -> Arc<AtomicBool> {
        self.inner.handover.clone()
    }

    /// Registers how to wake a waiting loop: called once, at the stop, or at once if it was
    /// already requested.
    pub(crate) fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = lock(&self.inner.wakers);
        match self.is_triggered() {
            true => wake(),
            false => wakers.push(Arc::new(wake)),
        }
    }

    /// Registers how to wake an event loop asleep in its poll: at a stop, as
    /// [`Shutdown::on_trigger`], and whenever [`Shutdown::wake_loops`] is called.
    pub(crate) fn on_trigger_or_wake(&self, wake: impl Fn() + Send + Sync + 'static) {
        let wake: Wake = Arc::new(wake);
        lock(&self.inner.loops).push(wake.clone());
        self.on_trigger(move || wake());
    }

    /// Wakes every event loop, stopping nothing: each looks at the start of its next turn at
    /// what a signal changed. SIGUSR1 reaches one loop (the one that polls the signal socket);
    /// the others would reopen the access log only at their next event, and a loop without
    /// traffic would keep the rotated file open, deleted or not, for as long as it had none.
    pub(crate) fn wake_loops(&self) {
        for wake in lock(&self.inner.loops).iter() {
            wake();
        }
    }
}

fn lock(wakers: &Mutex<Vec<Wake>>) -> std::sync::MutexGuard<'_, Vec<Wake>> {
    wakers.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stop as fork mode's parent tells it to its children: a byte in memory mapped shared,
/// which every child sees the moment it is set. The parent sets it before it signals any
/// child, and a child looks at it before every step (`Shutdown::is_triggered`). The signal
/// alone was not enough: it wakes a child that waits, but the parent sends one `kill` per
/// child, and the child woken by the first may run on the parent's core before the second. A
/// client that saw its idle connection closed by the stop, and then sent the rest of a request
/// on another, had it answered with keep-alive by a child still unaware of the stop (over TLS,
/// in 15 of 300 runs of the test that does this; none in 500 since), and a next request sent
/// there was cut off. Now the signal only wakes; the stop itself is in the byte.
struct Told(SharedMapped<AtomicU8>);

impl Told {
    const NOTHING: u8 = 0;
    const STOP: u8 = 1;
    const HANDOVER: u8 = 2;
    /// Set on top of either once the drain time is up.
    const ENDED: u8 = 0x80;

    fn new() -> io::Result<Told> {
        Ok(Told(SharedMapped::new(AtomicU8::new(Told::NOTHING))?))
    }

    fn word(&self) -> &AtomicU8 {
        &self.0
    }
}

/// The [`STOP_SIGNALS`], SIGHUP and SIGUSR1, delivered as bytes on a socket: signal-hook's handler
/// writes one byte per signal into one end (the self-pipe pattern), and whoever holds the other end
/// handles the signal in ordinary code, where taking a lock or starting a process is allowed. Which
/// signal came is told by a flag each kind sets first: a stop, by the shutdown's own flag
/// ([`Shutdown::flag`], registered by `Server::stop_on_signals` before these), which the first
/// loop or thread to see it acts on; the others by flags of their own.
///
/// The reactor polls that end like any other socket, so no thread is started for signals. With
/// one loop, which then runs on the main thread, the process stays single-threaded, and glibc
/// skips the thread-cancellation bookkeeping it wraps around every blocking system call once a
/// second thread exists: 143 fewer instructions per request (of 2,141) under
/// `benches/callgrind-per-request.sh`.
pub struct Signals {
    read: UnixStream,
    upgrade: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    /// SIGCHLD, taken only as PID 1 (see [`Signals::install`]).
    child: Arc<AtomicBool>,
}

/// What [`Signals::take`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Received {
    /// SIGHUP.
    pub upgrade: bool,
    /// SIGUSR1 (after `access_log::REOPEN_GENERATION` was bumped).
    pub reopen: bool,
    /// SIGCHLD, as PID 1: a process ended, maybe one this server never started.
    pub child: bool,
}

impl Signals {
    /// Installs the handlers. From now on the [`STOP_SIGNALS`], SIGHUP and SIGUSR1 no longer end
    /// the process: they only set a flag and write to the socket. (The flags' handlers must be
    /// registered before: handlers run in the order registered, and a flag must be set by the
    /// time its byte is read. The stop's is the shutdown's; SIGUSR1's own handler asks the logs
    /// to reopen.)
    pub fn install() -> io::Result<Signals> {
        let (upgrade, reopen, child) = (Arc::default(), Arc::default(), Arc::default());
        // Installed for the rest of the process's life: the registrations are not kept.
        signal_hook::flag::register(SIGHUP, Arc::clone(&upgrade))?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&reopen))?;
        let mut taken = [&STOP_SIGNALS[..], &[SIGHUP, SIGUSR1]].concat();
        // As the first process of a PID namespace (a container's), this process inherits every
        // orphan in it (a `docker exec`'s background job, say), and must reap them or they stay
        // as zombies: as init does. (The fork mode's parent reaps every child anyway.)
        if super::keeper::is_first_process() {
            signal_hook::flag::register(SIGCHLD, Arc::clone(&child))?;
            taken.push(SIGCHLD);
        }
        let (read, _registered) = self_pipe(&taken)?;
        read.set_nonblocking(true)?;
        Ok(Signals {
            read,
            upgrade,
            reopen,
            child,
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
            upgrade: self.upgrade.swap(false, Ordering::SeqCst),
            reopen: self.reopen.swap(false, Ordering::SeqCst),
            child: self.child.swap(false, Ordering::SeqCst),
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
                    if received.child {
                        super::upgrade::reap_all(upgrade.as_mut());
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
                // A stop: its signal's handler set the shutdown's flag, which ended the loop;
                // the wake-ups run now, if no one ran them yet (a handover has).
                shutdown.trigger();
            })
            .map(drop)
    }
}

/// Waits until one of `fds` is readable, or `until` passes (`None`: no time limit). An
/// interrupted wait simply returns: callers look again.
pub(crate) fn wait_readable(fds: &[RawFd], until: Option<std::time::Instant>) {
    wait_for(fds, libc::POLLIN, until);
}

/// Waits until one of `fds` has one of `events` (or an error or hang-up, which `poll` always
/// reports), or `until` passes. Returns whether one had.
pub(crate) fn wait_for(
    fds: &[RawFd],
    events: libc::c_short,
    until: Option<std::time::Instant>,
) -> bool {
    let mut polled: Vec<libc::pollfd> = (fds.iter())
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let timeout = until.map_or(-1, |at| {
        let left = at.saturating_duration_since(std::time::Instant::now());
        left.as_millis().min(i32::MAX as u128) as i32
    });
    // SAFETY: `polled` is a valid array of its length for the call.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) > 0 }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A stop a signal handler sets (the flag alone) is a stop at once, for every loop that
    /// looks; its wake-ups still run, each once, whoever triggers first, and one registered after
    /// the stop runs at once and only then.
    #[test]
    fn a_stop_set_by_a_signal_handler_wakes_each_once() {
        let shutdown = Shutdown::new();
        let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let count = counts[0].clone();
        shutdown.on_trigger(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        // The handler: nothing woken yet, but the stop is read.
        shutdown.flag().store(true, Ordering::SeqCst);
        assert!(shutdown.is_triggered());
        assert_eq!(counts[0].load(Ordering::SeqCst), 0);
        let count = counts[1].clone();
        shutdown.on_trigger(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(counts[1].load(Ordering::SeqCst), 1);
        // The loop that takes the signal, and any loop that begins its drain first.
        for _ in 0..3 {
            shutdown.trigger();
        }
        let counted: Vec<usize> = (counts.iter()).map(|c| c.load(Ordering::SeqCst)).collect();
        assert_eq!(counted, [1, 1]);
    }

    /// A child forked after `share_with_children` sees a stop its parent tells, and whether it
    /// is a handover, with no signal sent: through the shared byte alone.
    #[test]
    fn a_forked_child_sees_the_stop_its_parent_tells() {
        for handover in [false, true] {
            let shutdown = Shutdown::new();
            shutdown.share_with_children().unwrap();
            // SAFETY: the child only reads atomics, reads the clock and leaves with `_exit`:
            // nothing that could need a lock another thread of this test process held.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                let start = Instant::now();
                let code = loop {
                    if shutdown.is_triggered() {
                        break if shutdown.is_handover() { 2 } else { 1 };
                    }
                    if start.elapsed() > Duration::from_secs(10) {
                        break 0;
                    }
                    std::hint::spin_loop();
                };
                // SAFETY: ends the forked copy without running this process's destructors.
                unsafe { libc::_exit(code) };
            }
            if handover {
                shutdown.hand_over();
            } else {
                shutdown.trigger();
            }
            shutdown.tell_children();
            let mut status = 0;
            // SAFETY: waits for our own child, writing its status into `status`.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status));
            let expected = if handover { 2 } else { 1 };
            assert_eq!(libc::WEXITSTATUS(status), expected, "handover: {handover}");
        }
    }
}
