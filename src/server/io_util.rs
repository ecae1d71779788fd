//! The few system-call details every driver shares: sendfile, and which accept errors mean what.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::metrics::LoopMetrics;

/// Linux sends at most this much per sendfile call.
const SENDFILE_MAX: u64 = 0x7fff_f000;

// ANCHOR: sendfile
/// Sends up to `len` bytes of `file` from `offset` straight to the socket, without copying them
/// through user space. Returns how many were sent; 0 means the file ended before `offset + len`.
pub(crate) fn sendfile(socket: RawFd, file: &File, offset: u64, len: u64) -> io::Result<u64> {
    let mut offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    let count = len.min(SENDFILE_MAX) as usize;
    // SAFETY: both descriptors are open for the duration of the call (the socket and file are
    // borrowed by the caller), and `offset` is a valid, exclusively borrowed off_t.
    let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut offset, count) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as u64)
    }
}
// ANCHOR_END: sendfile

// ANCHOR: send
/// Sends `bytes` on a socket, without SIGPIPE. `more` ([`Want::Write`](crate::http::Want)'s):
/// what follows at once is the file these bytes are the head of, so the kernel may hold a short
/// segment back for it (`MSG_MORE`) rather than send the head alone.
pub(crate) fn send(socket: RawFd, bytes: &[u8], more: bool) -> io::Result<usize> {
    send_with(socket, bytes, send_flags(more))
}

/// [`send`] that never waits, on a blocking socket too (`MSG_DONTWAIT`): a blocking driver
/// waits for room itself, until the connection's send deadline (`blocking::drive`).
pub(crate) fn send_now(socket: RawFd, bytes: &[u8], more: bool) -> io::Result<usize> {
    send_with(socket, bytes, send_flags(more) | libc::MSG_DONTWAIT)
}

fn send_with(socket: RawFd, bytes: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the socket is open for the duration of the call (borrowed by the caller), and the
    // kernel only reads `bytes.len()` bytes from `bytes`.
    let sent = unsafe { libc::send(socket, bytes.as_ptr().cast(), bytes.len(), flags) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// The flags of a send: never SIGPIPE (a closed peer is an error, not a signal), and `more`.
pub(crate) fn send_flags(more: bool) -> libc::c_int {
    libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 }
}
// ANCHOR_END: send

/// At most this much unread input is read and dropped before a close (`discard_unread`).
const DISCARD_MAX: usize = 1 << 20;

/// Reads and drops what input is waiting on a socket about to be closed, up to
/// [`DISCARD_MAX`], without waiting (blocking socket or not): closed over unread bytes, a
/// socket is reset instead of ending with a FIN after its queued output, and the output is
/// lost.
pub(crate) fn discard_unread(socket: RawFd) {
    let mut scratch = [0u8; 16 * 1024];
    let mut read = 0;
    while read < DISCARD_MAX {
        // SAFETY: recv writes at most `scratch.len()` bytes into `scratch`.
        let n = unsafe {
            libc::recv(
                socket,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return,
            n if n > 0 => read += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return, // EAGAIN: nothing more is waiting
        }
    }
}

/// Errors that concern one connection that failed while queued (it was reset or aborted before
/// accept took it): accept the next one.
pub(crate) fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) || err.raw_os_error() == Some(libc::EPROTO)
}

/// The process or system is out of descriptors or memory: accepting again at once would fail
/// again.
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// After an accept (or, in fork mode, a fork) fails for lack of descriptors, processes or
/// memory: wait this long before trying again, instead of spinning on a failure that will repeat
/// until closing connections free something.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// An accept that failed, in the loop's metrics: an error, and a pause if accepting stops for a
/// while (out of descriptors or memory).
pub(crate) fn count_accept_error(metrics: Option<&LoopMetrics>, paused: bool) {
    if let Some(metrics) = metrics {
        metrics.accept_errors.add(1);
        if paused {
            metrics.accept_pauses.add(1);
        }
    }
}

/// Reports accept failures once per episode: the first failure, then how long it lasted when
/// an accept succeeds again. Retrying every 100 ms through a descriptor shortage would
/// otherwise print ten lines a second for as long as it lasts.
#[derive(Default)]
pub(crate) struct AcceptTrouble {
    since: Option<Instant>,
}

impl AcceptTrouble {
    pub fn failed(&mut self, err: &io::Error) {
        if self.since.is_none() {
            eprintln!("reactor-httpd: accept: {err}; pausing accepts");
            self.since = Some(Instant::now());
        }
    }

    pub fn accepted(&mut self) {
        if let Some(since) = self.since.take() {
            let seconds = since.elapsed().as_secs_f64();
            eprintln!("reactor-httpd: accepting again after {seconds:.1} s");
        }
    }
}

/// Anonymous, zero-filled pages, `shared` with the children this process forks after (or else
/// private to it).
pub(crate) fn map_anonymous(len: usize, shared: bool) -> io::Result<NonNull<u8>> {
    let sharing = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: a fresh anonymous mapping, placed by the kernel; no existing memory is touched.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            sharing | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(at.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// A `T` in anonymous memory mapped shared: a child forked after it was made reads and writes
/// the same physical pages as its parent and every other child (fork mode's stop, its metrics,
/// the access log's trouble). For a `T` of atomics: it is never dropped, its pages are unmapped.
/// A child's copy is its own, and stays mapped (it leaves with `_exit`).
pub(crate) struct SharedMapped<T: Send + Sync>(NonNull<T>);

// SAFETY: the value is only ever reached through `&T`, and `T` is `Sync`; the pointer itself
// never changes.
unsafe impl<T: Send + Sync> Send for SharedMapped<T> {}
unsafe impl<T: Send + Sync> Sync for SharedMapped<T> {}

impl<T: Send + Sync> SharedMapped<T> {
    pub(crate) fn new(value: T) -> io::Result<Self> {
        const { assert!(!std::mem::needs_drop::<T>() && align_of::<T>() <= 4096) };
        let at = map_anonymous(size_of::<T>(), true)?.cast::<T>();
        // SAFETY: the mapping is page-aligned (enough for `T`, above), as large as a `T`,
        // writable, and ours alone until this returns.
        unsafe { at.write(value) };
        Ok(SharedMapped(at))
    }
}

impl<T: Send + Sync> std::ops::Deref for SharedMapped<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: written in `new`, and mapped until `drop`, which takes `&mut self`.
        unsafe { self.0.as_ref() }
    }
}

impl<T: Send + Sync> Drop for SharedMapped<T> {
    fn drop(&mut self) {
        // Nothing borrows it past `self`; `T` needs no drop.
        unmap(self.0.cast(), size_of::<T>());
    }
}

/// Unmaps what [`map_anonymous`] mapped.
pub(crate) fn unmap(at: NonNull<u8>, len: usize) {
    // SAFETY: `at` and `len` describe a mapping made by `map_anonymous` and no longer used.
    unsafe {
        libc::munmap(at.as_ptr().cast(), len);
    }
}

/// Bytes received on a socket and not yet read (FIONREAD); 0 if unknown.
pub(crate) fn unread_bytes(fd: RawFd) -> libc::c_int {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } < 0 {
        return 0;
    }
    unread
}

/// Reaps every child that has exited, without blocking: `each` gets its pid and wait status.
/// Returns once none that has exited is left (others may still run).
pub(crate) fn reap_exited(mut each: impl FnMut(libc::pid_t, libc::c_int)) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status to a local; WNOHANG keeps it from blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            each(pid, status);
        } else if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            return; // 0: children remain, none exited; -1 ECHILD: no children
        }
    }
}

/// Raises this process's soft limit of open descriptors (`RLIMIT_NOFILE`) to its hard limit, as
/// the Go runtime does for every program. The soft limit is commonly 1024, kept that low only
/// for programs that still use `select(2)` (systemd's default is 1024 soft, 524,288 hard, and
/// `systemd.exec(5)` asks programs that need more to raise it themselves); at 1024 a server
/// runs out near a thousand connections, however high `--max-connections` is, and the rest wait
/// in the backlog. Left as it is if it cannot be raised. Returns the soft limit then in force.
pub fn raise_descriptor_limit() -> usize {
    if let Some(limit) = descriptor_limits()
        && limit.rlim_cur < limit.rlim_max
    {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through the pointer, which is valid for the call.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
    descriptor_limit()
}

/// How many descriptors this process may have open (`RLIMIT_NOFILE`, soft); 1024 if unknown.
pub(crate) fn descriptor_limit() -> usize {
    descriptor_limits().map_or(1024, |limit| {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    })
}

/// This process's `RLIMIT_NOFILE`, soft and hard; `None` if it cannot be read.
fn descriptor_limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is valid for the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}
