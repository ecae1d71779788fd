//! The access log: one Common Log Format line per response, buffered per loop.
//!
//! The connection appends a line to its loop's [`AccessLog`] when it queues a response (no I/O),
//! or, for a body sent after its head (a file, ranges, a listing, a body compressed as it is
//! sent), when that body ends or the connection does, since only then is it known how much of
//! it went ([`AccessLog::begin`]). The driver writes
//! the buffer out when [`AccessLog::flush_due`] says so (once a second, or when it is large),
//! and at shutdown. So logging costs a formatted line per request and one write per
//! second, never a write per request.
//!
//! SIGUSR1 asks every log to reopen its file (logrotate's `postrotate`): the signal only bumps
//! [`REOPEN_GENERATION`] (and wakes every event loop: `Shutdown::wake_loops`); each loop notices
//! at its next turn ([`AccessLog::reopen_if_asked`]),
//! writes the lines it holds to the file it has (the rotated one: they were recorded before),
//! and opens the path anew. No line is lost or written twice. A thread of the blocking modes
//! writes its lines and closes its file before it waits for a connection ([`AccessLog::park`]).
//!
//! A log that cannot be written (a full disk, a closed pipe) does not stop the serving: its lines
//! are dropped, and the trouble is said on stderr once for the whole server, however many loops,
//! workers or forked children log: when it begins, when it ends, and at exit if it has not
//! ([`LogTrouble`]).
//!
//! Nor does a log whose reader has stopped reading: a pipe (`docker logs` behind a stalled log
//! driver, `reactor-httpd | slow-program`), a socket (journald) or a terminal. A write to a full
//! pipe waits until there is room, and until stop 82 the loop waited with it: once the pipe's
//! 64 KiB were full, the server answered nothing more (about 900 requests in, measured). Such a
//! log is written a line-ended piece of at most `PIPE_BUF` bytes at a time, each once `poll` says
//! it fits, which for a pipe means it is written whole, at once, and never interleaved with
//! another loop's lines. A loop's flush writes what fits now; the rest waits in the buffer. Past
//! [`HELD_MOST`] held, the loop waits for the reader as a plain `write` would (a reader that is
//! slow but reads slows the server, and no line is lost), as long as it makes room for a piece
//! within [`STALLED_AFTER`]; a reader that does not has stopped, and from then on, until it
//! reads again, lines past the megabyte are dropped at once and counted, as above. A thread
//! about to wait for its next connection holds no lines while it waits: it waits the same way,
//! and drops and counts what a stopped reader leaves. A regular file never makes a writer wait
//! for a reader, and is written as before, the buffer at once.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::AccessLogTarget;
use crate::http::Clock;
use crate::server::io_util::SharedMapped;

/// Flush at least this often while lines are waiting.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Flush early past this many buffered bytes, to bound memory under load.
const FLUSH_BYTES: usize = 64 * 1024;
/// A log whose reader does not keep up holds at most this much; lines past it are dropped.
pub const HELD_MOST: usize = 1024 * 1024;
/// How soon a flush that could not write everything is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How long a flush may wait for a reader that does not keep up: for each piece to fit, and in
/// all.
#[derive(Clone, Copy)]
struct Patience {
    piece: Duration,
    total: Duration,
}

/// A loop's flush, once a second: what fits now.
const NO_WAITING: Patience = Patience {
    piece: Duration::ZERO,
    total: Duration::ZERO,
};
/// A log that holds a megabyte (in a loop), or a thread about to wait for its next connection:
/// waits for its reader as a plain `write` would, as long as the reader makes room for a piece
/// within [`STALLED_AFTER`]; one that does not has stopped ([`AccessLog::stalled`]).
const BACKPRESSURE: Patience = Patience {
    piece: STALLED_AFTER,
    total: Duration::MAX,
};
const STALLED_AFTER: Duration = Duration::from_millis(100);
/// A log at its end (the process's): at most half a second, within the stop's 5 s.
const LAST_PATIENCE: Patience = Patience {
    piece: Duration::from_millis(500),
    total: Duration::from_millis(500),
};

/// Bumped by SIGUSR1 (an atomic add, safe in a signal handler): every log whose generation is
/// older reopens its file.
pub static REOPEN_GENERATION: AtomicUsize = AtomicUsize::new(0);

/// Makes SIGUSR1 ask the logs to reopen (see the module's comment), in every mode.
pub fn reopen_on_sigusr1() -> io::Result<()> {
    // SAFETY: the action is one atomic add, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGUSR1, || {
            REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
        })?;
    }
    Ok(())
}

enum Sink {
    Stdout,
    /// The file (`None` while parked: [`AccessLog::park`]) and its path.
    File(Option<File>, PathBuf),
}

pub struct AccessLog {
    sink: Sink,
    /// The [`REOPEN_GENERATION`] this log's file was opened at.
    generation: usize,
    buf: Vec<u8>,
    /// When the oldest buffered line must be written by; `None` while the buffer is empty.
    due: Option<Instant>,
    /// The last flush left lines its reader had no room for: the next is on a timer, not early.
    behind: bool,
    /// Its reader made no room for a piece within [`STALLED_AFTER`]: until it makes some, lines
    /// past the megabyte are dropped at once rather than waited for.
    stalled: bool,
    /// Whether the server's logs can be written, shared with every other log of the server.
    trouble: Arc<LogTrouble>,
}

/// Whether a server's access log can be written, and how many lines were dropped since it last
/// could be: one for the whole server, shared by every log in it (a loop's, a worker thread's, a
/// forked child's), so that the trouble is said once for the server and not once per log. Until
/// stop 75 each log kept its own: in threaded mode, with a worker per connection, a full disk was
/// said 56 times and 56 counts were printed at exit, and in fork mode twice per connection.
///
/// It lives in an anonymous shared mapping, made before any child is forked, so the children of
/// fork mode share it too (as they share the buffer budget's counts). It says that the log is
/// still not written, with the lines dropped in all, when the last log of the server is gone (a
/// forked child's copy is never dropped: it leaves with `_exit`).
pub struct LogTrouble(SharedMapped<TroubleWords>);

struct TroubleWords {
    dropping: AtomicBool,
    dropped: AtomicU64,
    /// The [`REOPEN_GENERATION`] (plus one) whose failed reopen was said last.
    reopen_said: AtomicUsize,
}

impl LogTrouble {
    /// A server's: nothing dropped yet.
    pub fn new() -> io::Result<Arc<LogTrouble>> {
        let words = TroubleWords {
            dropping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            reopen_said: AtomicUsize::new(0),
        };
        Ok(Arc::new(LogTrouble(SharedMapped::new(words)?)))
    }

    fn words(&self) -> &TroubleWords {
        &self.0
    }

    /// What to say of a flush of `lines` lines that ended in `result`: something only when the
    /// server's log stops or starts being written.
    fn flushed(&self, result: io::Result<()>, lines: u64) -> Option<String> {
        let words = self.words();
        match result {
            Ok(()) => {
                if !words.dropping.load(Ordering::Relaxed)
                    || !words.dropping.swap(false, Ordering::AcqRel)
                {
                    return None;
                }
                let dropped = words.dropped.swap(0, Ordering::AcqRel);
                Some(format!("written again ({dropped} lines dropped)"))
            }
            Err(err) => {
                words.dropped.fetch_add(lines, Ordering::AcqRel);
                let began = !words.dropping.swap(true, Ordering::AcqRel);
                began.then(|| format!("{err}; lines are dropped until it can be written"))
            }
        }
    }

    /// `lines` dropped because the log's reader does not keep up: what to say, when that
    /// begins.
    fn held_back(&self, lines: u64) -> Option<String> {
        let words = self.words();
        words.dropped.fetch_add(lines, Ordering::AcqRel);
        let began = !words.dropping.swap(true, Ordering::AcqRel);
        began.then(|| "its reader does not keep up; lines are dropped until it does".to_string())
    }

    /// Whether this log is the first of the server to fail the reopen SIGUSR1 number
    /// `generation` asked for, and so the one to say it.
    fn first_to_fail_reopen(&self, generation: usize) -> bool {
        let said = generation.wrapping_add(1);
        self.words().reopen_said.swap(said, Ordering::AcqRel) != said
    }
}

impl Drop for LogTrouble {
    fn drop(&mut self) {
        let words = self.words();
        if words.dropping.load(Ordering::Acquire) {
            let dropped = words.dropped.load(Ordering::Acquire);
            eprintln!(
                "reactor-httpd: access log: still not written at exit ({dropped} lines dropped)"
            );
        }
    }
}

/// What the log shows of a request, between the quotes where the Common Log Format has its
/// first line; `None` (shown as `-`) when no line came whole.
pub enum LoggedRequest<'a> {
    /// A request parsed: its method, target and version.
    Parsed {
        method: &'a str,
        target: &'a str,
        version: &'a str,
    },
    /// The first line of bytes refused, as they came, without its line end: a request refused
    /// for its head (a missing Host, a bad field) or for its very line, which then may not have
    /// a method, a target and a version to show. As nginx and Apache log it.
    Line(&'a [u8]),
}

/// A line begun and not yet ended ([`AccessLog::begin`]): it goes into the log only when ended.
#[derive(Debug)]
pub struct OpenLine(Vec<u8>);

impl AccessLog {
    /// Opens the log; `Ok(None)` when logging is off; an error if the file cannot be opened (at
    /// start, where that stops the server before it serves). Each loop opens the file in append
    /// mode, so whole buffers from different loops never interleave mid-line. `trouble` is the
    /// server's, shared by all its logs.
    pub fn open(
        target: &AccessLogTarget,
        trouble: &Arc<LogTrouble>,
    ) -> io::Result<Option<AccessLog>> {
        let file = opened(target).transpose()?;
        Ok(AccessLog::with(target, file, trouble))
    }

    /// Opens the log for a loop, a worker thread or a forked child, which serve whether it can
    /// be opened or not: one that cannot be opened now starts parked ([`AccessLog::park`]),
    /// tries again as it has lines, and at its flush says the trouble, once for the server.
    /// Until stop 75 a loop that could not open it failed: the server stopped (a uring ring
    /// opens it after the listening line), and in fork mode every child did, so once the log's
    /// directory was moved away every connection was reset unanswered, with no word.
    pub fn open_or_later(target: &AccessLogTarget, trouble: &Arc<LogTrouble>) -> Option<AccessLog> {
        let file = opened(target).and_then(Result::ok);
        AccessLog::with(target, file, trouble)
    }

    fn with(
        target: &AccessLogTarget,
        file: Option<File>,
        trouble: &Arc<LogTrouble>,
    ) -> Option<AccessLog> {
        let sink = match target {
            AccessLogTarget::Off => return None,
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(path) => Sink::File(file, path.clone()),
        };
        Some(AccessLog {
            sink,
            generation: REOPEN_GENERATION.load(Ordering::Relaxed),
            buf: Vec::with_capacity(4096),
            due: None,
            behind: false,
            stalled: false,
            trouble: trouble.clone(),
        })
    }

    /// Appends one line: `127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET / HTTP/1.1" 200 13`.
    pub fn record(
        &mut self,
        peer: IpAddr,
        clock: &Clock,
        request: Option<LoggedRequest<'_>>,
        status: u16,
        body_bytes: u64,
    ) {
        write_start(&mut self.buf, peer, clock, request, status);
        self.write_end(clock, body_bytes);
    }

    /// Begins the line of a response whose body is sent after its head, so that what of it went
    /// is known only at its end: everything but the size, kept apart until [`AccessLog::end`]. The
    /// date is the one the response was queued at, as for every other line.
    pub fn begin(
        &self,
        peer: IpAddr,
        clock: &Clock,
        request: Option<LoggedRequest<'_>>,
        status: u16,
    ) -> OpenLine {
        let mut start = Vec::with_capacity(128);
        write_start(&mut start, peer, clock, request, status);
        OpenLine(start)
    }

    /// Appends a line begun with [`AccessLog::begin`], now that its body's size is known.
    pub fn end(&mut self, line: OpenLine, clock: &Clock, body_bytes: u64) {
        self.buf.extend_from_slice(&line.0);
        self.write_end(clock, body_bytes);
    }

    /// The size (`-` for none, as the Common Log Format has it) and the end of the line.
    fn write_end(&mut self, clock: &Clock, body_bytes: u64) {
        self.unpark();
        let buf = &mut self.buf;
        if body_bytes == 0 {
            buf.push(b'-');
        } else {
            buf.extend_from_slice(itoa::Buffer::new().format(body_bytes).as_bytes());
        }
        buf.push(b'\n');
        if buf.len() > HELD_MOST {
            // The reader has not kept up with a megabyte: wait for it, as a plain `write`
            // would, unless it has stopped; then the line goes.
            self.flush_with_backpressure();
            if self.buf.len() > HELD_MOST {
                let buf = &mut self.buf;
                let start = buf[..buf.len() - 1].iter().rposition(|&b| b == b'\n');
                buf.truncate(start.map_or(0, |at| at + 1));
                if let Some(said) = self.trouble.held_back(1) {
                    say(&said);
                }
            }
        }
        if self.due.is_none() {
            self.due = Some(clock.now() + FLUSH_INTERVAL);
        }
        if self.buf.len() >= FLUSH_BYTES && !self.behind {
            self.due = Some(clock.now());
        }
    }

    /// When the buffered lines must be written, if there are any: drivers wake up for it.
    pub fn flush_due(&self) -> Option<Instant> {
        self.due
    }

    /// Writes the buffered lines. A log that cannot be written is not a reason to stop serving:
    /// the lines are dropped, and the trouble said once for the server when it begins and once
    /// when it ends (with how many lines it cost), not with every flush (under load that is many
    /// a second) nor by every log ([`LogTrouble`]).
    pub fn flush(&mut self) {
        self.flush_waiting(NO_WAITING);
    }

    /// Writes the buffered lines, waiting for a reader that makes room ([`BACKPRESSURE`]), not
    /// for one that has stopped.
    fn flush_with_backpressure(&mut self) {
        match self.stalled {
            false => self.flush_waiting(BACKPRESSURE),
            true => self.flush(),
        }
    }

    /// [`AccessLog::flush`], waiting as `patience` allows where the reader does not keep up;
    /// what is still not written then stays buffered, for the next flush.
    fn flush_waiting(&mut self, patience: Patience) {
        if self.buf.is_empty() {
            return;
        }
        let buf = &self.buf[..];
        let written = match &mut self.sink {
            Sink::Stdout => {
                // Whatever std buffered of stdout (the listening line) went out with it.
                // SAFETY: fd 1 is open for the life of the process; ManuallyDrop never closes it.
                let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDOUT_FILENO) });
                write_out(&mut out, buf, patience)
            }
            Sink::File(Some(file), _) => write_out(file, buf, patience),
            // Parked, and the path could not be opened when the lines were recorded.
            Sink::File(parked @ None, path) => {
                append(path).and_then(|file| write_out(parked.insert(file), buf, patience))
            }
        };
        if let Ok(went) = written {
            // Room made, or none within the wait for a piece: stopped (a loop's flush, which
            // does not wait, tells neither).
            if went > 0 {
                self.stalled = false;
            }
            if went < self.buf.len() && patience.piece > Duration::ZERO {
                self.stalled = true;
            }
        }
        // Written in part: the rest waits for the reader, and nothing has changed to say.
        let result = match written {
            Ok(went) if went < self.buf.len() => {
                self.buf.drain(..went);
                self.due = Some(Instant::now() + RETRY_AFTER);
                self.behind = true;
                return;
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        };
        if let Some(said) = self.trouble.flushed(result, self.lines()) {
            say(&said);
        }
        self.buf.clear();
        self.due = None;
        self.behind = false;
    }
}

/// Writes `buf` to `file`, all of it if `file` is a regular file; otherwise a line-ended piece of
/// at most `PIPE_BUF` bytes at a time while `poll` says one fits (waiting as `patience` allows).
/// Returns how many bytes were written.
fn write_out(file: &mut File, buf: &[u8], patience: Patience) -> io::Result<usize> {
    // Asked at each flush (one `fstat`): a log parked and opened again may be another file.
    if is_regular_file(file.as_raw_fd()) {
        return file.write_all(buf).map(|()| buf.len());
    }
    // No end for `BACKPRESSURE`'s.
    let until = Instant::now().checked_add(patience.total);
    let mut at = 0;
    while at < buf.len() {
        let left = until.map_or(Duration::MAX, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let wait = patience.piece.min(left);
        if !writable_within(file.as_raw_fd(), wait)? {
            break;
        }
        let end = piece_end(buf, at);
        file.write_all(&buf[at..end])?;
        at = end;
    }
    Ok(at)
}

/// Where the piece of `buf` that starts at `at` ends: all that is left if it is at most
/// `PIPE_BUF` bytes, else just after the last line end within `PIPE_BUF` bytes (or those bytes,
/// for a line longer than that).
fn piece_end(buf: &[u8], at: usize) -> usize {
    let most = (at + libc::PIPE_BUF).min(buf.len());
    if most == buf.len() {
        return most;
    }
    buf[at..most]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(most, |last| at + last + 1)
}

/// Whether `PIPE_BUF` bytes can be written to `fd` without waiting, waiting up to `wait` for it.
/// (For a pipe, `POLLOUT` means a page of it is free; for a Unix socket, three quarters of its
/// send buffer.)
fn writable_within(fd: RawFd, wait: Duration) -> io::Result<bool> {
    let mut polled = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let timeout = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        match unsafe { libc::poll(&mut polled, 1, timeout) } {
            0 => return Ok(false),
            n if n > 0 => {
                // POLLERR or POLLHUP (a reader gone): the write says what it is.
                return Ok(true);
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

fn is_regular_file(fd: RawFd) -> bool {
    // SAFETY: fstat writes one stat struct, which all-zero is a valid value of.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to it, for the duration of the call.
    unsafe { libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFREG }
}

/// Says `said` of the access log on stderr, if that can be written without waiting: stderr is
/// often the same stalled pipe as the log (a container's), and the loop must not wait on it.
fn say(said: &str) {
    if !is_regular_file(libc::STDERR_FILENO)
        && !writable_within(libc::STDERR_FILENO, Duration::ZERO).unwrap_or(false)
    {
        return;
    }
    eprintln!("reactor-httpd: access log: {said}");
}

impl AccessLog {
    /// If SIGUSR1 came since this log's file was opened: writes what is buffered to that file,
    /// then opens the path again (a new file, once logrotate has moved the old one). A path that
    /// cannot be opened keeps the old file, and says so once for the server.
    pub fn reopen_if_asked(&mut self) {
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.flush();
        // A parked log has nothing to reopen: it opens the path when it next has a line.
        if let Sink::File(Some(file), path) = &mut self.sink {
            match append(path) {
                Ok(reopened) => *file = reopened,
                Err(err) if self.trouble.first_to_fail_reopen(generation) => {
                    eprintln!(
                        "reactor-httpd: cannot reopen {}: {err}; writing on to the file it had",
                        path.display()
                    );
                }
                Err(_) => {}
            }
        }
    }
}

impl AccessLog {
    /// Writes the buffered lines now and lets go of the file until the next line is recorded:
    /// for a thread of the blocking modes about to wait for its next connection, or an acceptor
    /// that refused one, which may wait for hours. Until stop 75 such a thread kept its lines
    /// (`tail -f` showed nothing of a request served in threaded or blocking mode until that
    /// thread's next connection, and a 503 refused by the acceptor or by fork mode's parent
    /// until exit), and kept the file it had opened at start, rotated away and deleted, open.
    /// The file is opened again as the next line is recorded, so a line goes into the file that
    /// was the log when it was recorded, as for a log never parked. Costs an `open` per
    /// connection, in the modes whose price a connection is anyway (a thread's turn, a fork).
    /// A FIFO or a device is kept open: rotation is not theirs, and a FIFO's reader would see
    /// its end each time the last writer closed it.
    pub fn park(&mut self) {
        // A thread that waits holds no lines (chapter 2): those its reader has no room for go.
        self.flush_with_backpressure();
        self.drop_held();
        // Only a regular file: closing the last writer of a FIFO tells its reader the end.
        if let Sink::File(file, _) = &mut self.sink
            && file
                .as_ref()
                .and_then(|open| open.metadata().ok())
                .is_some_and(|meta| meta.is_file())
        {
            *file = None;
        }
    }

    /// Opens the file of a parked log again. One that cannot be opened is tried again at the
    /// flush, which says the trouble if it still cannot.
    fn unpark(&mut self) {
        if let Sink::File(parked @ None, path) = &mut self.sink
            && let Ok(file) = append(path)
        {
            *parked = Some(file);
        }
    }
}

/// The target's file opened for appending, if it is a file.
fn opened(target: &AccessLogTarget) -> Option<io::Result<File>> {
    match target {
        AccessLogTarget::File(path) => Some(append(path)),
        _ => None,
    }
}

/// Opens `path` for appending, creating it. Never waits: a FIFO with no reader fails at once
/// (ENXIO) instead of blocking the opening loop or thread until one comes (at start, the server
/// hung with no word). Writes wait as they always did: the flag is cleared once it is open.
fn append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENXIO) => io::Error::new(err.kind(), "a FIFO with no reader"),
            _ => err,
        })?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns; reads and then sets its status flags.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

impl Drop for AccessLog {
    /// The last lines: a reader that does not keep up is waited for, a little.
    fn drop(&mut self) {
        self.flush_waiting(LAST_PATIENCE);
        self.drop_held();
    }
}

impl AccessLog {
    /// How many lines are buffered.
    fn lines(&self) -> u64 {
        self.buf.iter().filter(|&&byte| byte == b'\n').count() as u64
    }

    /// Drops the lines still held (a reader that did not make room for them in time), counted.
    fn drop_held(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some(said) = self.trouble.held_back(self.lines()) {
            say(&said);
        }
        self.buf.clear();
        self.due = None;
        self.behind = false;
    }
}

/// A line without its size: `PEER - - [DATE] "REQUEST LINE" STATUS `.
fn write_start(
    buf: &mut Vec<u8>,
    peer: IpAddr,
    clock: &Clock,
    request: Option<LoggedRequest<'_>>,
    status: u16,
) {
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{peer} - - [");
    buf.extend_from_slice(clock.log_date());
    buf.extend_from_slice(b"] \"");
    match request {
        Some(LoggedRequest::Parsed {
            method,
            target,
            version,
        }) => {
            buf.extend_from_slice(method.as_bytes());
            buf.push(b' ');
            escape_into(buf, target.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(version.as_bytes());
        }
        Some(LoggedRequest::Line(line)) => escape_into(buf, line),
        None => buf.push(b'-'),
    }
    buf.extend_from_slice(b"\" ");
    buf.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    buf.push(b' ');
}

/// Copies a request target or line into the log, escaping what could break the line or its
/// quoting: control bytes, non-ASCII, `"` and `\`, as `\xHH`. Spaces stay (a target has none).
fn escape_into(buf: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        if (byte.is_ascii_graphic() || byte == b' ') && byte != b'"' && byte != b'\\' {
            buf.push(byte);
        } else {
            let _ = write!(buf, "\\x{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn trouble_is_said_when_it_begins_and_when_it_ends() {
        // Two logs' flushes, as two loops would make them: one trouble for the two.
        let trouble = LogTrouble::new().unwrap();
        let other = trouble.clone();
        let broken = || Err(io::Error::from_raw_os_error(libc::EPIPE));
        assert_eq!(trouble.flushed(Ok(()), 5), None);
        let said = trouble.flushed(broken(), 3).unwrap();
        assert!(said.starts_with("Broken pipe"), "{said}");
        assert_eq!(other.flushed(broken(), 4), None);
        assert_eq!(trouble.flushed(broken(), 2), None);
        let said = other.flushed(Ok(()), 1);
        assert_eq!(said.as_deref(), Some("written again (9 lines dropped)"));
        assert_eq!(trouble.flushed(Ok(()), 1), None);
        assert!(other.flushed(broken(), 1).is_some());
        assert_eq!(trouble.flushed(broken(), 1), None);
        // Nothing for its drop to say.
        trouble.words().dropping.store(false, Ordering::Relaxed);
    }

    /// A child forked after the trouble was made shares it: the parent sees what it dropped, and
    /// neither says the trouble a second time.
    #[test]
    fn a_forked_child_shares_the_trouble() {
        let trouble = LogTrouble::new().unwrap();
        let broken = || Err(io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(trouble.flushed(broken(), 2).is_some());
        // SAFETY: the child only touches atomics in the shared mapping and leaves with `_exit`:
        // nothing that could need a lock another thread of this test process held.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let said = trouble.flushed(broken(), 5);
            // SAFETY: ends the forked copy without running this process's destructors.
            unsafe { libc::_exit(if said.is_none() { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        let said = trouble.flushed(Ok(()), 1);
        assert_eq!(said.as_deref(), Some("written again (7 lines dropped)"));
    }

    /// A FIFO with no reader is refused at once, not waited on; with a reader, lines reach it.
    #[test]
    fn a_fifo_is_opened_without_waiting_for_a_reader() {
        let path = std::env::temp_dir().join(format!("access-log-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let target = AccessLogTarget::File(path.clone());
        let trouble = LogTrouble::new().unwrap();
        let refused = AccessLog::open(&target, &trouble)
            .err()
            .expect("no reader: refused");
        assert!(
            refused.to_string().contains("a FIFO with no reader"),
            "{refused}"
        );
        // A reader, opened without waiting for a writer.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut log = AccessLog::open(&target, &trouble).unwrap().unwrap();
        let clock = Clock::at(Instant::now(), UNIX_EPOCH + Duration::from_secs(784111777));
        log.record("192.0.2.1".parse().unwrap(), &clock, None, 400, 0);
        // Written as it is dropped. Read up to the line's end, not the FIFO's: a child forked
        // meanwhile by another test of this process holds a copy of the writer.
        drop(log);
        let mut line = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !line.ends_with(b"\n") && Instant::now() < deadline {
            let mut bytes = [0; 256];
            match std::io::Read::read(&mut &reader, &mut bytes) {
                Ok(n) => line.extend_from_slice(&bytes[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(err) => panic!("{err}"),
            }
        }
        let line = String::from_utf8_lossy(&line);
        assert!(line.starts_with("192.0.2.1 - - ["), "{line:?}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn formats_common_log_format_and_escapes() {
        let dir = std::env::temp_dir().join(format!("access-log-{}", std::process::id()));
        let target = AccessLogTarget::File(dir.clone());
        let mut log = AccessLog::open(&target, &LogTrouble::new().unwrap())
            .unwrap()
            .unwrap();
        let clock = Clock::at(Instant::now(), UNIX_EPOCH + Duration::from_secs(784111777));
        let request = LoggedRequest::Parsed {
            method: "GET",
            target: "/a\"b",
            version: "HTTP/1.1",
        };
        log.record("10.0.0.1".parse().unwrap(), &clock, Some(request), 200, 13);
        log.record("::1".parse().unwrap(), &clock, None, 400, 0);
        let line = LoggedRequest::Line(b"GET /x y\\\t\xff HTTP/1.1");
        log.record("::1".parse().unwrap(), &clock, Some(line), 400, 11);
        assert_eq!(log.flush_due(), Some(clock.now() + FLUSH_INTERVAL));
        log.flush();
        assert_eq!(log.flush_due(), None);
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            text,
            "10.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.1\" 200 13\n\
             ::1 - - [06/Nov/1994:08:49:37 +0000] \"-\" 400 -\n\
             ::1 - - [06/Nov/1994:08:49:37 +0000] \"GET /x y\\x5C\\x09\\xFF HTTP/1.1\" 400 11\n"
        );
    }

    #[test]
    fn reopens_when_asked_without_losing_or_repeating_a_line() {
        let dir = std::env::temp_dir().join(format!("access-log-reopen-{}", std::process::id()));
        let rotated = dir.with_extension("1");
        let mut log = AccessLog::open(
            &AccessLogTarget::File(dir.clone()),
            &LogTrouble::new().unwrap(),
        )
        .unwrap()
        .unwrap();
        let clock = Clock::new();
        let peer = "127.0.0.1".parse().unwrap();
        log.record(peer, &clock, None, 200, 1);
        log.reopen_if_asked(); // nothing asked: nothing happens
        std::fs::rename(&dir, &rotated).unwrap();
        REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
        log.reopen_if_asked();
        log.record(peer, &clock, None, 200, 2);
        log.flush();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(
            old.ends_with("200 1\n") && old.lines().count() == 1,
            "{old:?}"
        );
        assert!(
            new.ends_with("200 2\n") && new.lines().count() == 1,
            "{new:?}"
        );
    }

    #[test]
    fn off_opens_nothing() {
        assert!(
            AccessLog::open(&AccessLogTarget::Off, &LogTrouble::new().unwrap())
                .unwrap()
                .is_none()
        );
    }
}
