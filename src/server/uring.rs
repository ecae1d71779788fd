//! The uring driver: one io_uring per core, each with its own listener and its own slab of
//! connections, driving the same `http::Conn` as the reactor. Completion, not readiness.
//!
//! The reactor asks the kernel "which sockets are ready?" and then makes the calls itself (read,
//! write, sendfile), one system call each. Here the loop hands the kernel whole operations, with
//! their buffers, and the kernel reports each one done. One `io_uring_enter` per turn submits
//! everything the turn queued and reaps whatever finished meanwhile:
//!
//! ```text
//!   submit queued operations, wait (timeout = earliest timer)      one io_uring_enter
//!   for each completion:
//!     ├─ accept (multishot)  → a new connection: arm its receive
//!     ├─ receive (multishot) → the kernel filled one of the loop's provided buffers: feed the
//!     │                        bytes to the connection, give the buffer back, drive it
//!     ├─ send                → the connection's output went out (or part of it): drive it
//!     ├─ file read / splice  → a piece of a file is in the connection's buffer or pipe: send it
//!     ├─ eventfd (multishot) → shutdown requested, or responses back from the handler pool
//!     └─ signal socket       → (first ring only) SIGINT/TERM/QUIT, SIGHUP's upgrade
//!   fire due timers, flush the access log once a second
//! ```
//!
//! Driving a connection means what it means in the reactor (`http::Conn::want`, until it has to
//! wait), except that waiting is the normal end: `Want::Write` queues a send and stops, and the
//! next step happens when the send's completion arrives.
//!
//! # Who owns which memory
//!
//! This is where io_uring programs corrupt memory: the kernel owns a buffer from the submission
//! of an operation until its completion, and nothing in the type system says so. The rules here:
//!
//! - **Receives** write only into the provided-buffer ring ([`BufRing`]). A buffer is the
//!   kernel's from when it is published in the ring until a completion names it; it is then the
//!   loop's until it is given back, which happens in the same turn, after its bytes were copied.
//!   So an idle connection holds no receive buffer at all, as in the reactor.
//! - **Sends** read straight from the connection's output buffer (a heap allocation inside
//!   `http::Conn` or `TlsConn`). While a send is in flight (`Out::Send`) the loop calls nothing
//!   on that connection but `deadline`, `is_pending` and `reads_no_more`, which only read:
//!   anything else could append to the buffer and move it. Bytes received meanwhile wait in the
//!   connection's backlog; a response from the handler pool, a drain or a timeout wait in flags.
//!   Moving the `Connection` itself (the slab grows) moves only the buffer's pointer, not its
//!   bytes.
//! - **Files** under 64 KiB are read into a buffer the driver owns (`FilePiece`, boxed, in the
//!   connection's `Extra`: moving that moves only the pointer too), then sent from it: the same
//!   rule, with `Out::FileRead` and `Out::FileSend`. Larger ones are spliced, file
//!   to pipe to socket (`Out::ToPipe`, `Out::FromPipe`), a megabyte at a time: no memory of
//!   ours is involved, only descriptors the connection keeps open until the completion.
//! - **Registrations** of accepted sockets in the ring's table of registered files (sends name
//!   a socket by its slot there, not by descriptor) read the descriptor through a pointer, when
//!   the kernel runs them during the submission: it waits in [`Staged`], which does not move and
//!   is reused only once a submission has taken every queued entry.
//! - **Closing** a connection cancels its operations and keeps its slab entry, its `Extra`, its
//!   buffers and its socket until the completion of every one of them has arrived
//!   (`Connection::in_flight`); only then is the entry removed and the socket closed (by the
//!   ring: `close_in_ring`, with its registered slot emptied first: `unregister_in_ring`). A
//!   cancellation is itself asynchronous: the operation may still complete normally, and is
//!   waited for either way.
//! - **At exit** the loop cancels everything and waits for the completions (bounded); what the
//!   kernel still holds after that is leaked on purpose, never freed under it.
//!
//! Nothing in a completion is trusted to be for a live connection without its generation
//! matching, though by the rules above no completion can arrive for a removed entry.

use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

use super::pool::{Inbox, PoolOffer, Wake};
use super::reactor::REFUSING_MAX;
use super::timers::{Armed, Timers};
use super::upgrade::Upgrade;
use super::{LoopEnv, Shared, Shutdown, Signals, io_util};
use crate::http::{Context, Drain, Response, Status, Want};
use crate::metrics::LoopMetrics;
use crate::session::Session;

/// Submission queue entries per ring: one turn may queue more (they are submitted as the queue
/// fills).
const SQ_ENTRIES: u32 = 512;
/// Completion queue entries per ring. Past this the kernel keeps completions on an overflow
/// list (never drops them) until the loop reaps.
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers per ring, and the size of each.
const RECV_BUFFERS: u16 = 1024;
const RECV_BUFFER_LEN: usize = 4096;
/// Buffers published to the kernel at the start; doubled each time it runs out (ENOBUFS). Only
/// published buffers are ever touched, so memory grows with the load, not with the ring. One:
/// the kernel takes published buffers in ring order, so each one published is touched sooner or
/// later even by a load that never needs two at once (with four, `benches/idle-memory.sh` saw
/// 12 KiB more than the reactor's; the doublings to a busy load's size cost a few re-armed
/// receives, once).
const RECV_POSTED_START: u16 = 1;
/// The buffer group of the receive buffers (one group per ring).
const BUF_GROUP: u16 = 0;
/// Bytes a connection may hold received but not yet taken by `http::Conn`: a client sending
/// while its responses wait, or its request is on the pool, is stopped by TCP as it is in the
/// reactor. Where the kernel can (Linux 6.17), each arming of a connection's multishot receive
/// ends after this many bytes, and is armed again only once they are taken. Without that, a
/// multishot receive takes whatever the socket holds (hundreds of KiB from a client pipelining
/// without reading) before a cancel can stop it; the receive is then cancelled once the
/// connection holds more than this, which bounds the next burst, not this one.
const BACKLOG_MAX: usize = 16 * 1024;
const _: () = assert!(
    BACKLOG_MAX <= u32::MAX as usize,
    "a receive's limit is a u32"
);
/// A file goes out in pieces of this size: read into a buffer of the loop's, then sent.
const FILE_PIECE: usize = 64 * 1024;
/// Files of at least this many bytes are spliced (file to pipe to socket) rather than read and
/// sent; `REACTOR_HTTPD_URING_SPLICE_AT` overrides it (for measuring one way against the other).
const SPLICE_AT_LEAST: u64 = 64 * 1024;
/// Bytes spliced into the pipe at a time: the capacity each pipe is given (a pipe holds
/// references to page-cache pages, not copies; an unprivileged process may ask for up to
/// `fs.pipe-max-size`, 1 MiB by default). Each splice is a trip through the kernel's worker
/// threads, so fewer, larger pieces are much cheaper.
const PIPE_PIECE: u64 = 1024 * 1024;
/// Slots in a ring's table of registered files: sockets a send names by index, not descriptor.
/// Connections whose slab key is past it are named by descriptor.
const FIXED_FILES_MAX: usize = 65_536;
/// Sockets put in the table in one submission at most (see [`Staged`]).
const STAGED: usize = 256;
/// At exit, how long to wait for the kernel to finish with cancelled operations.
const QUIESCE_WITHIN: Duration = Duration::from_secs(2);
/// At a stop, how long the ring may keep waiting for bytes already in idle connections'
/// sockets to be delivered (`deliver_arrived`); they came within one more wait in every case
/// seen.
const DELIVER_WITHIN: Duration = Duration::from_millis(20);

// ANCHOR: user_data
/// What a completion is for: the top byte of its `user_data`. Connection operations carry the
/// slab key in the low 32 bits and 24 bits of the generation above it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Op {
    /// Multishot accept on listener `key`.
    Accept = 1,
    /// Multishot receive into the provided buffers.
    Recv,
    /// A send from the connection's output buffer.
    Send,
    /// A read of a file piece into the connection's file buffer.
    FileRead,
    /// A send of a file piece from the connection's file buffer.
    FileSend,
    /// The ring's eventfd (multishot poll): shutdown, or responses from the handler pool.
    Wake,
    /// The signal socket (multishot poll; first ring only).
    Signals,
    /// The new process's readiness socket during an upgrade (one-shot poll).
    Upgrade,
    /// A cancellation: its completion says only whether it found its target.
    Cancel,
    /// A splice of a file piece into the connection's pipe.
    FileToPipe,
    /// A splice from the connection's pipe to its socket.
    PipeToSocket,
    /// A connection's socket closed (its completion says nothing we act on).
    Close,
    /// A connection's socket put in the ring's table of registered files: a completion only
    /// if that failed.
    Register,
}

const GENERATION_MASK: u32 = 0xff_ffff;

fn user_data(op: Op, key: usize, generation: u32) -> u64 {
    (op as u64) << 56 | u64::from(generation & GENERATION_MASK) << 32 | key as u64
}

fn decode(data: u64) -> (Option<Op>, usize, u32) {
    let op = match (data >> 56) as u8 {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::FileRead,
        5 => Op::FileSend,
        6 => Op::Wake,
        7 => Op::Signals,
        8 => Op::Upgrade,
        9 => Op::Cancel,
        10 => Op::FileToPipe,
        11 => Op::PipeToSocket,
        12 => Op::Close,
        13 => Op::Register,
        _ => return (None, 0, 0),
    };
    (
        Some(op),
        (data & 0xffff_ffff) as usize,
        (data >> 32) as u32 & GENERATION_MASK,
    )
}
// ANCHOR_END: user_data

/// Checks at start that this kernel, in this sandbox, gives us what the driver needs (a ring
/// with the flags below, provided-buffer rings, multishot receive): one line if not.
pub(crate) fn available() -> Result<(), String> {
    probed().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// What [`probe`] found, asked once per process: an error to show, or the limit each arming of
/// a connection's receive is given ([`recv_limit`]).
///
/// On a thread of its own: when a ring is closed, the kernel finishes with the threads that used
/// it by interrupting them once (task work), and a socket read with a timeout on the caller's
/// thread (an application embedding the server) would see that as EINTR.
fn probed() -> &'static Result<Option<u32>, String> {
    static PROBED: std::sync::OnceLock<Result<Option<u32>, String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(|| {
        thread::spawn(probe)
            .join()
            .unwrap_or_else(|_| Err("io_uring probe panicked".into()))
    })
}

fn probe() -> Result<Option<u32>, String> {
    let explain = |err: io::Error| {
        format!(
            "io_uring is not available here ({err}): --mode uring needs Linux 6.1 or later, with io_uring not disabled by kernel.io_uring_disabled or a seccomp filter (as in Docker's default profile); use --mode reactor"
        )
    };
    let mut ring = new_ring().map_err(explain)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(explain)?;
    for code in [
        opcode::AcceptMulti::CODE,
        opcode::RecvMulti::CODE,
        opcode::Send::CODE,
        opcode::Read::CODE,
        opcode::PollAdd::CODE,
        opcode::AsyncCancel::CODE,
        opcode::Close::CODE,
    ] {
        if !probe.is_supported(code) {
            return Err(explain(io::Error::other(format!(
                "operation {code} not supported"
            ))));
        }
    }
    let bufs = BufRing::new(&ring, 2, 2, 2).map_err(explain)?;
    let limit = takes_recv_limit(&mut ring)
        .unwrap_or(false)
        .then_some(BACKLOG_MAX as u32);
    drop(ring);
    drop(bufs);
    Ok(limit)
}

/// Whether the kernel ends a multishot receive at a limit (Linux 6.17); older kernels refuse
/// the field (EINVAL). Asked of a receive on a socket whose peer has closed: it completes at
/// once, with the end of input if the limit is taken. `ring` has provided buffers registered.
fn takes_recv_limit(ring: &mut IoUring) -> io::Result<bool> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    drop(theirs);
    let entry = recv_multi(ours.as_raw_fd(), Some(1));
    // SAFETY: the receive writes only into the provided buffers, which outlive the ring.
    unsafe { push(ring, &entry) };
    ring.submit_and_wait(1)?;
    let result = ring.completion().next().map(|cqe| cqe.result());
    Ok(result.is_some_and(|result| result >= 0))
}

// ANCHOR: new_ring
/// A ring for one loop thread. SINGLE_ISSUER and DEFER_TASKRUN: only this thread submits, and
/// the kernel's completion work for it is done when it enters the kernel to wait, not in
/// interrupts or at random points of the loop; which is also what lets one `io_uring_enter` per
/// turn do everything.
fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .setup_submit_all()
        .build(SQ_ENTRIES)
}
// ANCHOR_END: new_ring

// ANCHOR: buf_ring
/// The provided-buffer ring: receive buffers the kernel picks from as data arrives, so that no
/// buffer is tied to a connection that is waiting for input.
///
/// The ring itself is a circle of `slots` entries (address, length, buffer id) shared with the
/// kernel: the kernel takes from its head, the loop adds at the tail. Buffers not published wait
/// in `free`, most recently used on top, and only up to `target` are published at a time, so
/// the pages touched are those of the buffers the load needs, not all of them.
struct BufRing {
    /// The shared entries (mmap'd: page-aligned, as the kernel requires).
    entries: NonNull<BufRingEntry>,
    slots: u16,
    /// The tail as the loop has written it; published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// Buffers published and not yet taken by the kernel.
    posted: u16,
    target: u16,
    free: Vec<u16>,
    /// `slots` buffers of `len` bytes (mmap'd: pages untouched until used).
    memory: NonNull<u8>,
    len: usize,
}

impl BufRing {
    /// Maps and registers a ring of `slots` buffers of `len` bytes, `posted` of them published.
    fn new(ring: &IoUring, slots: u16, len: usize, posted: u16) -> io::Result<BufRing> {
        debug_assert!(slots.is_power_of_two());
        let entries =
            io_util::map_anonymous(usize::from(slots) * size_of::<BufRingEntry>(), false)?.cast();
        let memory = match io_util::map_anonymous(usize::from(slots) * len, false) {
            Ok(memory) => memory,
            Err(err) => {
                io_util::unmap(
                    entries.cast(),
                    usize::from(slots) * size_of::<BufRingEntry>(),
                );
                return Err(err);
            }
        };
        let mut bufs = BufRing {
            entries,
            slots,
            tail: 0,
            posted: 0,
            target: posted.min(slots),
            free: (0..slots).rev().collect(),
            memory,
            len,
        };
        // SAFETY: `entries` stays mapped until this BufRing is dropped, which the loop does only
        // after the ring is gone or has nothing in flight (see the module doc).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                slots,
                BUF_GROUP,
                0,
            )?;
        }
        bufs.publish();
        Ok(bufs)
    }

    /// The `n` bytes the kernel put in buffer `id`. The buffer is the loop's from the completion
    /// that named it until [`BufRing::give_back`]; nothing writes it meanwhile.
    fn bytes(&self, id: u16, n: usize) -> &'static [u8] {
        let n = n.min(self.len);
        // SAFETY: `id` < slots (the kernel returns ids the loop published), the mapping lives as
        // long as the loop, and the kernel does not write a buffer it has handed back until it
        // is published again, which happens only after the caller is done with these bytes.
        unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(usize::from(id) * self.len), n)
        }
    }

    /// The kernel took one buffer (a completion named it).
    fn taken(&mut self) {
        self.posted = self.posted.saturating_sub(1);
    }

    fn give_back(&mut self, id: u16) {
        self.free.push(id);
    }

    /// The kernel found no buffer: publish more from now on.
    fn ran_out(&mut self) {
        self.target = self.target.saturating_mul(2).min(self.slots);
    }

    /// Publishes free buffers, most recently used first, up to the target; then the new tail,
    /// with release ordering so the kernel sees the entries before the tail that covers them.
    fn publish(&mut self) {
        if self.posted >= self.target || self.free.is_empty() {
            return;
        }
        let mask = self.slots - 1;
        while self.posted < self.target
            && let Some(id) = self.free.pop()
        {
            // SAFETY: the slot index is masked into the mapped array; the kernel reads entries
            // only between its head and the published tail, and this one is past the tail.
            let entry = unsafe { &mut *self.entries.as_ptr().add(usize::from(self.tail & mask)) };
            entry.set_addr(self.memory.as_ptr() as u64 + (usize::from(id) * self.len) as u64);
            entry.set_len(self.len as u32);
            entry.set_bid(id);
            self.tail = self.tail.wrapping_add(1);
            self.posted += 1;
        }
        // SAFETY: the tail field is a properly aligned u16 inside the mapped first entry,
        // shared with the kernel, so it is written atomically.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        io_util::unmap(
            self.entries.cast(),
            usize::from(self.slots) * size_of::<BufRingEntry>(),
        );
        io_util::unmap(self.memory, usize::from(self.slots) * self.len);
    }
}

// ANCHOR_END: buf_ring

/// The ring's wake-up: an eventfd the ring polls, written by the handler pool and by shutdown.
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: a plain system call; the descriptor it returns is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Resets the counter, so the next write is a new event.
    fn reset(&self) {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a local u64 from a descriptor this struct owns.
        unsafe {
            libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8);
        }
    }
}

impl Wake for EventFd {
    fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a local u64 to a descriptor this struct owns. Fails only
        // when the counter is full, in which case the ring is woken anyway.
        unsafe {
            libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }
}

/// The receive operation of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Recv {
    /// None in flight.
    Off,
    /// A multishot receive is armed.
    Armed,
    /// Armed, and cancelled: its last completion has not arrived yet.
    Cancelling,
    /// None in flight: the last ended for want of a buffer (ENOBUFS). Armed again at the start
    /// of the next turn (`rearm_starved`), once the buffers given back this turn are published:
    /// armed at once, it ended at once the same way, and a turn whose completions each queued
    /// another never ended (one ring spun for good on a crowd of connections that each sent
    /// 8 KiB at once, serving none of them, not even a stop).
    Starved,
}

/// The output operation of a connection: at most one at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Out {
    Idle,
    /// Sending from the connection's output buffer: nothing may touch the connection.
    Send,
    /// Reading a file piece into `FilePiece::buf`.
    FileRead,
    /// Sending `FilePiece::buf[start..end]`.
    FileSend,
    /// Splicing a file piece into `Pipe`.
    ToPipe,
    /// Splicing what `Pipe` holds to the socket.
    FromPipe,
}

impl Out {
    /// The operation in flight, to cancel.
    fn op(self) -> Option<Op> {
        match self {
            Out::Idle => None,
            Out::Send => Some(Op::Send),
            Out::FileRead => Some(Op::FileRead),
            Out::FileSend => Some(Op::FileSend),
            Out::ToPipe => Some(Op::FileToPipe),
            Out::FromPipe => Some(Op::PipeToSocket),
        }
    }
}

/// A pipe for splicing a large file to a connection without copying it through user space:
/// file to pipe, pipe to socket (io_uring has no sendfile). `held` bytes are in it.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new descriptors into `fds`, owned from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are new descriptors nobody else owns.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
                held: 0,
            }
        };
        // SAFETY: fcntl on a descriptor this pipe owns. Refused past the system's limit: the
        // pipe keeps its default (64 KiB) and pieces are as large as it takes.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_PIECE as libc::c_int,
            );
        }
        Ok(pipe)
    }
}

/// A piece of a file on its way: read into `buf`, `buf[start..end]` not yet sent.
///
/// The read and the send of its first part go to the kernel together, linked: the send starts
/// when the read has filled the buffer, in the same turn. A short read breaks the link (the send
/// completes as cancelled) and the piece is sent as it is. Both completions are awaited
/// (`pending`) before anything is decided, in whatever order they arrive.
struct FilePiece {
    /// Exactly as large as the piece; never read by the loop (only its address is used), so it
    /// need not be initialised.
    buf: Box<[MaybeUninit<u8>]>,
    start: usize,
    end: usize,
    /// Completions of the linked pair still to come.
    pending: u8,
    read: i32,
    sent: i32,
}

/// What a connection holds only now and then, kept in `Extras` beside the connections.
#[derive(Default)]
struct Extra {
    /// Bytes received before `http::Conn` could take them; `backlog[taken..]` are left.
    backlog: Vec<u8>,
    taken: usize,
    file: Option<FilePiece>,
    /// Kept while the connection sends large files, dropped when it next waits for a request.
    pipe: Option<Pipe>,
    /// A response from the handler pool that came while a send was in flight.
    deferred: Option<Response>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.taken == self.backlog.len()
            && self.file.is_none()
            && self.pipe.is_none()
            && self.deferred.is_none()
    }
}

/// Which `Extra` in the ring's `Extras` is a connection's: its slab key plus one.
type ExtraKey = NonZeroU32;

/// The `Extra`s of a ring's connections, in a slab of their own: a connection that has none
/// (an idle one) pays 4 bytes for the possibility where a `Box` would cost 8, and its slab entry
/// stays as small as the reactor's (`a_connection_entry_is_small`).
///
/// The slab moves its entries when it grows. That is safe for the kernel's sake because no
/// operation points into an `Extra` itself: a file piece's bytes are in their own box, and
/// pipes are descriptors.
#[derive(Default)]
struct Extras(Slab<Extra>);

/// The slab key an `ExtraKey` names.
fn slab_key(key: ExtraKey) -> usize {
    key.get() as usize - 1
}

impl Extras {
    fn get(&self, key: Option<ExtraKey>) -> Option<&Extra> {
        key.and_then(|key| self.0.get(slab_key(key)))
    }

    fn get_mut(&mut self, key: Option<ExtraKey>) -> Option<&mut Extra> {
        key.and_then(|key| self.0.get_mut(slab_key(key)))
    }

    /// The connection's `Extra`, made empty if it has none yet.
    fn make(&mut self, key: &mut Option<ExtraKey>) -> &mut Extra {
        let at = match *key {
            Some(at) => slab_key(at),
            None => {
                let at = self.0.insert(Extra::default());
                // There are never more `Extra`s than connections, whose keys fit in 32 bits
                // (`user_data`): the conversion cannot fail.
                *key = u32::try_from(at + 1).ok().and_then(NonZeroU32::new);
                at
            }
        };
        &mut self.0[at]
    }

    /// Gives the connection's `Extra` up once nothing is in it.
    fn tidy(&mut self, key: &mut Option<ExtraKey>) {
        if self.get(*key).is_some_and(Extra::is_empty) {
            self.release(key);
        }
    }

    /// Gives the connection's `Extra` up, whatever is in it (the connection is gone).
    fn release(&mut self, key: &mut Option<ExtraKey>) {
        if let Some(at) = key.take() {
            self.0.remove(slab_key(at));
        }
    }

    /// Keeps received bytes `http::Conn` did not take.
    fn hold(&mut self, key: &mut Option<ExtraKey>, bytes: &[u8]) {
        let extra = self.make(key);
        if extra.taken == extra.backlog.len() {
            extra.backlog.clear();
            extra.taken = 0;
        }
        extra.backlog.extend_from_slice(bytes);
    }

    /// How many received bytes the connection holds that `http::Conn` has not taken.
    fn held(&self, key: Option<ExtraKey>) -> usize {
        self.get(key)
            .map_or(0, |extra| extra.backlog.len() - extra.taken)
    }
}

/// Yes-or-no facts about a connection, a bit each, so that they take one byte of its slab
/// entry rather than six.
#[derive(Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// The client closed its side (a receive completed with 0 bytes).
    const EOF: u8 = 1;
    /// The socket failed (reset): nothing more can be read or sent.
    const FAILED: u8 = 1 << 1;
    /// Its deadline passed while an operation was in flight: time it out once that is back.
    const OVERDUE: u8 = 1 << 2;
    /// The drain under way has been applied to it.
    const DRAINED: u8 = 1 << 3;
    /// Being closed: waiting for the completions of its operations.
    const CLOSING: u8 = 1 << 4;
    /// Counted in `Shared::open` (a connection being refused with 503 is not).
    const COUNTED: u8 = 1 << 5;
    /// Its socket is in the ring's registered-file table, at its slab key: sends name it there.
    const FIXED: u8 = 1 << 6;
    /// At a stop, while the kernel delivers what has arrived (`begin_drain`): it takes no step,
    /// and bytes received are held for it, not read.
    const HELD: u8 = 1 << 7;

    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    fn set(&mut self, flag: u8) {
        self.0 |= flag;
    }

    /// Clears `flag`, saying whether it was set.
    fn take(&mut self, flag: u8) -> bool {
        let was = self.has(flag);
        self.0 &= !flag;
        was
    }
}

/// One accepted socket and its protocol state.
struct Connection<S> {
    conn: S,
    socket: OwnedFd,
    /// See the reactor's: tells this connection from earlier ones with the same slab key.
    generation: u32,
    peer: IpAddr,
    recv: Recv,
    out: Out,
    flags: Flags,
    /// Its earliest entry in the timer heap.
    timer: Armed,
    extra: Option<ExtraKey>,
}

impl<S> Connection<S> {
    /// Operations of this connection the kernel holds.
    fn in_flight(&self) -> bool {
        matches!(self.recv, Recv::Armed | Recv::Cancelling) || self.out != Out::Idle
    }
}

/// Makes sure the timer heap holds an entry no later than the connection's deadline (see
/// `Timers`).
fn arm_timer<S: Session>(
    timers: &mut Timers,
    env: &LoopEnv,
    key: usize,
    connection: &mut Connection<S>,
) {
    let deadline = connection.conn.deadline(&env.shared.limits);
    timers.arm(
        (key, connection.generation),
        &mut connection.timer,
        deadline,
        env.clock.now_ms(),
    );
}

/// A connection's operation completed: the connection with slab key `key`, if it is the one the
/// operation was for (its generation matches the low bits `user_data` keeps of it). A free
/// function, so that the ring's other fields (`extras`) can be borrowed beside it.
fn find<S>(
    connections: &mut Slab<Connection<S>>,
    key: usize,
    generation: u32,
) -> Option<&mut Connection<S>> {
    connections
        .get_mut(key)
        .filter(|connection| connection.generation & GENERATION_MASK == generation)
}

/// How a drive ended.
enum Step {
    /// Waiting for a completion, the pool or a timer.
    Wait,
    Close,
}

/// Queues an operation, submitting what is queued first if the submission queue is full.
///
/// # Safety
/// Whatever memory `entry` points to must stay valid, and unused by anything else, until its
/// completion (see the module doc for how each operation keeps to this).
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: passed on to the caller.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        // Full: hand the queue to the kernel now. Only an error in the kernel's own bookkeeping
        // fails this; the entries are taken either way, or the next push tries again.
        if ring.submit().is_err() {
            thread::yield_now();
        }
    }
}

/// Gives the connection what it has received and not yet taken, as much as it has room for:
/// its backlog's bytes first, then `incoming` (a completion's, advanced past what it took).
/// How many bytes it took; `None` when there were none to give.
#[inline(always)]
fn give_held<S: Session>(
    conn: &mut S,
    cx: &mut Context<'_>,
    extra: Option<&mut Extra>,
    incoming: &mut &[u8],
) -> Option<usize> {
    let held = extra.filter(|extra| extra.taken < extra.backlog.len());
    let source: &[u8] = match &held {
        Some(extra) => &extra.backlog[extra.taken..],
        None => incoming,
    };
    if source.is_empty() {
        return None;
    }
    let buf = conn.read_buf(cx);
    let n = buf.len().min(source.len());
    buf[..n].copy_from_slice(&source[..n]);
    if n > 0 {
        conn.received(n);
    }
    match held {
        Some(extra) => extra.taken += n,
        None => *incoming = &incoming[n..],
    }
    Some(n)
}

/// Arms the connection's multishot receive, unless it is armed (or being cancelled).
fn arm_recv(
    ring: &mut IoUring,
    recv: &mut Recv,
    fd: RawFd,
    key: usize,
    generation: u32,
    limit: Option<u32>,
) {
    if *recv == Recv::Off {
        *recv = Recv::Armed;
        let entry = recv_multi(fd, limit).user_data(user_data(Op::Recv, key, generation));
        // SAFETY: receives write only into provided buffers (`BufRing`).
        unsafe { push(ring, &entry) };
    }
}

/// A multishot receive on `fd` into the provided buffers, which the kernel ends once it has
/// received `limit` bytes in all, if a limit is given.
fn recv_multi(fd: RawFd, limit: Option<u32>) -> squeue::Entry {
    let entry = opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP).build();
    let Some(limit) = limit else {
        return entry;
    };
    // The limit is the entry's `optlen`, which the io-uring crate does not set: four bytes at
    // offset 44 of the kernel's `struct io_uring_sqe` (shared with `splice_fd_in` and
    // `file_index`), a layout fixed by the kernel's ABI.
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the 64-byte `struct io_uring_sqe`, plain
    // integers with no padding, every byte set when it was built; any bytes make a valid one.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[OPTLEN..OPTLEN + 4].copy_from_slice(&limit.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// The limit each arming of a connection's receive is given: [`BACKLOG_MAX`], if this kernel
/// ends a multishot receive at a limit (see [`probed`]).
fn recv_limit() -> Option<u32> {
    probed().as_ref().ok().copied().flatten()
}

/// Cancels the connection's receive, if one is armed. Its last completion says it is over
/// (`Recv::Off`).
fn cancel_recv<S>(ring: &mut IoUring, key: usize, connection: &mut Connection<S>) {
    if connection.recv == Recv::Armed {
        connection.recv = Recv::Cancelling;
        cancel(ring, user_data(Op::Recv, key, connection.generation));
    }
}

/// A connection holding more received bytes than it may stops receiving until they are taken
/// (`drive` re-arms the receive when the connection wants to read and has none held). Whether it
/// holds more than it may.
fn limit_backlog<S>(
    ring: &mut IoUring,
    extras: &Extras,
    key: usize,
    connection: &mut Connection<S>,
) -> bool {
    let over = extras.held(connection.extra) > BACKLOG_MAX;
    if over {
        cancel_recv(ring, key, connection);
    }
    over
}

/// Cancels the connection's output operation (both of a linked read and send).
fn cancel_out<S>(ring: &mut IoUring, key: usize, connection: &Connection<S>) {
    let generation = connection.generation;
    if let Some(op) = connection.out.op() {
        cancel(ring, user_data(op, key, generation));
    }
    if connection.out == Out::FileRead {
        cancel(ring, user_data(Op::FileSend, key, generation));
    }
}

/// Closes a socket as one more operation of this turn's submission, not a system call of its
/// own. A socket has no flush, so the kernel closes it inline, during the submission; and a
/// close that succeeds posts no completion (`SKIP_SUCCESS`), which would only wake the ring for
/// nothing. (A shutdown, by contrast, io_uring always hands to a worker thread: `drive` makes
/// that a plain call.)
fn close_in_ring(ring: &mut IoUring, socket: OwnedFd) {
    let entry = opcode::Close::new(types::Fd(socket.into_raw_fd()))
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(user_data(Op::Close, 0, 0));
    // SAFETY: a close points at no memory. The descriptor is the kernel's from here: its number
    // stays taken until the close runs, and nothing of ours names it again.
    unsafe { push(ring, &entry) };
}

/// Empties slot `key` of the ring's table of registered files, in this turn's submission, so
/// that the socket there closes with its descriptor (the table holds a reference of its own),
/// and the slot is empty before a later connection's socket is put there. Queued before that
/// socket's registration, it runs before it: a submission runs its operations in order.
fn unregister_in_ring(ring: &mut IoUring, key: usize) {
    let entry = opcode::Close::new(types::Fixed(key as u32))
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(user_data(Op::Close, 0, 0));
    // SAFETY: a close points at no memory.
    unsafe { push(ring, &entry) };
}

// ANCHOR: registered_files
/// A connection's socket as a send names it: by descriptor, or by its slot in the ring's table
/// of registered files. A descriptor is looked up in the process's file table for every
/// operation (`fget` and `fput`: two atomic operations on a process with threads); a slot is an
/// index into the ring's own table, taken once when the connection is accepted.
#[derive(Clone, Copy)]
enum Socket {
    Fd(RawFd),
    Fixed(u32),
}

impl Socket {
    fn of<S>(key: usize, connection: &Connection<S>) -> Socket {
        match connection.flags.has(Flags::FIXED) {
            true => Socket::Fixed(key as u32),
            false => Socket::Fd(connection.socket.as_raw_fd()),
        }
    }

    /// A splice of `len` bytes from the pipe `from`.
    fn splice_from(self, from: RawFd, len: u32) -> squeue::Entry {
        let from = types::Fd(from);
        match self {
            Socket::Fd(fd) => opcode::Splice::new(from, -1, types::Fd(fd), -1, len),
            Socket::Fixed(slot) => opcode::Splice::new(from, -1, types::Fixed(slot), -1, len),
        }
        .build()
    }

    /// A send of `len` bytes at `at`, without SIGPIPE; `more` as for [`io_util::send`].
    fn send(self, at: *const u8, len: usize, more: bool) -> squeue::Entry {
        let len = len as u32;
        match self {
            Socket::Fd(fd) => opcode::Send::new(types::Fd(fd), at, len),
            Socket::Fixed(slot) => opcode::Send::new(types::Fixed(slot), at, len),
        }
        .flags(io_util::send_flags(more))
        .build()
    }
}

/// Descriptors on their way into the table of registered files. A registration
/// (`IORING_OP_FILES_UPDATE`) carries a pointer to the descriptor, which the kernel reads when it
/// runs the operation: inline, during the `io_uring_enter` that submits it (it never waits, so
/// it is never handed to a worker). An accepted socket's descriptor lives in its `Connection`,
/// which moves when the slab grows; so it is copied here, where it stays put until a
/// submission has taken every queued entry (the queue empty again), and only then is the array
/// used anew.
struct Staged {
    fds: Box<[RawFd; STAGED]>,
    len: usize,
}
// ANCHOR_END: registered_files

/// Cancels the operation `target`. The cancellation's own completion is posted only when it
/// failed (`SKIP_SUCCESS`), and nothing waits on it either way: the cancelled operation's last
/// completion is what says it is over.
fn cancel(ring: &mut IoUring, target: u64) {
    let entry = opcode::AsyncCancel::new(target)
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(user_data(Op::Cancel, 0, 0));
    // SAFETY: a cancellation points at no memory.
    unsafe { push(ring, &entry) };
}

// ANCHOR: spawn_rings
/// Runs one ring per set of listeners until shutdown, like the reactor's loops: the first on the
/// calling thread, the others each on a thread of its own, each pinned to its core if given.
/// Each ring is made on the thread that will use it (a SINGLE_ISSUER ring belongs to the thread
/// that made it), and none serves before every one is made: one that cannot be fails the start,
/// before the listening line, and the others end without having served. Once all are made, the
/// listening line is printed and an upgrade's old process told (`announce_ready`), then all
/// serve (`StartGate`).
pub(crate) fn run<S: Session>(
    listeners: Vec<(Vec<TcpListener>, Option<core_affinity::CoreId>)>,
    setup: S::Setup,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    mut signals: Option<(Signals, Option<Upgrade>)>,
) -> io::Result<()> {
    let count = listeners.len();
    let mut groups = listeners.into_iter();
    let Some((first_own, first_pin)) = groups.next() else {
        return Err(io::Error::other("no listener to serve"));
    };
    let (ready, built) = mpsc::channel::<Result<(), io::Error>>();
    let mut threads = Vec::new();
    let mut gate = super::StartGate::default();
    for (index, (own, pin)) in groups.enumerate() {
        let start = gate.waiter();
        let (setup, shared, shutdown, ready) = (
            setup.clone(),
            shared.clone(),
            shutdown.clone(),
            ready.clone(),
        );
        let thread = thread::Builder::new()
            .name(format!("ring-{}", index + 1))
            .spawn(move || {
                if let Some(core) = pin {
                    core_affinity::set_for_current(core);
                }
                let made = Ring::<S>::new(own, setup, &shared, &shutdown, None)
                    .map_err(super::cannot_make("ring", index + 2, count));
                match made {
                    Ok(mut ring) => {
                        let _ = ready.send(Ok(()));
                        // Not held while waiting: should another ring's thread die before its
                        // word, `built` then says so instead of waiting for it.
                        drop(ready);
                        match start.wait() {
                            true => ring.run_to_end(),
                            // Dropped as it is: it never ran (see `Drop for Ring`).
                            false => Ok(()),
                        }
                    }
                    Err(err) => {
                        let _ = ready.send(Err(io::Error::new(err.kind(), err.to_string())));
                        Err(err)
                    }
                }
            })?;
        threads.push(thread);
    }
    drop(ready);
    if let Some(core) = first_pin {
        core_affinity::set_for_current(core);
    }
    let mut first = Ring::<S>::new(first_own, setup, &shared, &shutdown, signals.take())
        .map_err(super::cannot_make("ring", 1, count));
    for _ in 0..threads.len() {
        let made = built.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "a ring's thread ended before its ring was made",
            ))
        });
        if let Err(err) = made
            && first.is_ok()
        {
            first = Err(err);
        }
    }
    let result = match first {
        Ok(mut first) => {
            // Every ring is made: the listening line, the old process of an upgrade told; then
            // every ring serves.
            shared.announce_ready();
            gate.open();
            first.run_to_end()
        }
        Err(err) => {
            drop(gate);
            shutdown.trigger();
            Err(err)
        }
    };
    super::join_all(threads, "ring", result)
}
// ANCHOR_END: spawn_rings

struct Ring<S: Session> {
    ring: IoUring,
    /// Unmapped by `drop`, after the kernel let go of it (or never, if `leaked`).
    bufs: ManuallyDrop<BufRing>,
    /// The kernel may still hold memory of this ring's (`quiesce` ran out of time).
    leaked: bool,
    setup: S::Setup,
    /// Each closed once its accept has reported its end after shutdown began.
    listeners: Vec<Option<TcpListener>>,
    /// Shutdown began: accepts are cancelled and never armed again.
    accepts_closed: bool,
    /// Which listeners have their multishot accept armed.
    accepting: Vec<bool>,
    connections: Slab<Connection<S>>,
    /// What some of the connections hold beside (see `Extras`).
    extras: Extras,
    next_generation: u32,
    refusing: usize,
    timers: Timers,
    env: LoopEnv,
    accept_paused_until: Option<Instant>,
    accept_trouble: io_util::AcceptTrouble,
    wake: Arc<EventFd>,
    shutdown: Shutdown,
    /// How connections drain, once shutdown began.
    draining: Option<Drain>,
    drain_deadline: Option<Instant>,
    signals: Option<(Signals, Option<Upgrade>)>,
    upgrade_due: Option<Instant>,
    /// The readiness socket polled, while an upgrade is under way.
    upgrade_polled: bool,
    /// Files (what is left of them) of this many bytes or more are spliced.
    splice_at: u64,
    /// Bytes each arming of a receive may take, where the kernel can end it there.
    recv_limit: Option<u32>,
    /// Completions reaped in one turn (kept to reuse its allocation).
    reaped: Vec<(u64, i32, u32)>,
    /// Connections whose receive ended for want of a buffer ([`Recv::Starved`]), by key and
    /// generation.
    starved: Vec<(usize, u32)>,
    /// Slots in the table of registered files (0: none, the kernel refused one).
    fixed_slots: usize,
    staged: Staged,
}

impl<S: Session> Ring<S> {
    fn new(
        listeners: Vec<TcpListener>,
        setup: S::Setup,
        shared: &Arc<Shared>,
        shutdown: &Shutdown,
        signals: Option<(Signals, Option<Upgrade>)>,
    ) -> io::Result<Self> {
        let ring = new_ring()?;
        let bufs = BufRing::new(&ring, RECV_BUFFERS, RECV_BUFFER_LEN, RECV_POSTED_START)?;
        // A slot for every connection this ring may hold, each empty until a socket is put
        // there, and no more than the process may open (the kernel refuses a larger table).
        // Refused all the same: every socket is named by descriptor.
        // `REACTOR_HTTPD_URING_FIXED_FILES` caps the slots (0: none), for measuring one way
        // against the other, and for tests of both.
        let wanted = std::env::var("REACTOR_HTTPD_URING_FIXED_FILES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(usize::MAX)
            .min(shared.max_connections.saturating_add(REFUSING_MAX))
            .min(FIXED_FILES_MAX)
            .min(io_util::descriptor_limit());
        let fixed_slots = match wanted > 0
            && ring
                .submitter()
                .register_files_sparse(wanted as u32)
                .is_ok()
        {
            true => wanted,
            false => 0,
        };
        let wake = Arc::new(EventFd::new()?);
        let waker = wake.clone();
        shutdown.on_trigger_or_wake(move || waker.wake());
        let mut env = LoopEnv::new(shared.clone());
        let offer =
            (shared.pool.clone()).map(|pool| PoolOffer::new(pool, Inbox::new(wake.clone()), &env));
        env.offload = offer;
        let accepting = vec![false; listeners.len()];
        let listeners = listeners.into_iter().map(Some).collect();
        let mut this = Ring {
            ring,
            bufs: ManuallyDrop::new(bufs),
            leaked: false,
            setup,
            listeners,
            accepts_closed: false,
            accepting,
            connections: Slab::new(),
            extras: Extras::default(),
            next_generation: 0,
            refusing: 0,
            timers: Timers::new(shared.limits.keep_alive_timeout),
            env,
            accept_paused_until: None,
            accept_trouble: io_util::AcceptTrouble::default(),
            wake,
            shutdown: shutdown.clone(),
            draining: None,
            drain_deadline: None,
            signals,
            upgrade_due: None,
            upgrade_polled: false,
            splice_at: std::env::var("REACTOR_HTTPD_URING_SPLICE_AT")
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(SPLICE_AT_LEAST),
            recv_limit: recv_limit(),
            reaped: Vec::with_capacity(CQ_ENTRIES as usize),
            starved: Vec::new(),
            fixed_slots,
            staged: Staged {
                fds: Box::new([-1; STAGED]),
                len: 0,
            },
        };
        this.arm_accepts();
        this.poll(this.wake.0.as_raw_fd(), Op::Wake, true);
        if let Some((signals, _)) = &this.signals {
            this.poll(signals.fd(), Op::Signals, true);
        }
        // Submitted now, so the listeners are being accepted from by the time the upgrade's old
        // process is told to stop.
        this.ring.submit()?;
        Ok(this)
    }

    /// Runs the ring; if it fails or panics, the other rings are told to stop too.
    fn run_to_end(&mut self) -> io::Result<()> {
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.run()))
            .unwrap_or_else(|_| Err(io::Error::other("ring panicked")));
        if result.is_err() {
            self.shutdown.trigger();
        }
        self.quiesce();
        result
    }

    // ANCHOR: event_loop
    fn run(&mut self) -> io::Result<()> {
        loop {
            let timeout = self.wait_timeout();
            self.rearm_starved();
            self.enter(timeout)?;
            // Before any line of this turn is recorded: those go to the new file.
            self.env.reopen_log_if_asked();
            self.env.clock.tick();
            // As in the reactor: a stop that came while the ring waited is begun before this
            // turn's completions are handled, so that a request they bring is answered as the
            // last, with `Connection: close`. (A stop wakes every ring, this one too: one that
            // this turn brings, by a signal or a handover, is begun at the start of the next.)
            if self.shutdown.is_triggered() && self.drain_deadline.is_none() {
                self.begin_drain();
            }
            self.reap();
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
                self.arm_accepts();
            }
            self.env.flush_log_if_due();
            // Done once every connection is closed and every accept has reported its end: a
            // ring closed with an accept still armed could take a connection nobody serves.
            if let Some(deadline) = self.drain_deadline
                && ((self.connections.is_empty() && !self.accepting.contains(&true))
                    || self.env.clock.now() >= deadline)
            {
                // Those still open are cut off: what they owe the access log is written first.
                // (Only a streamed body's state is dropped here, which no operation reads.)
                let open = self.connections.iter_mut();
                (self.env).cut_off(open.map(|(key, c)| ((key, c.generation), c.peer, &mut c.conn)));
                return Ok(());
            }
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: enter
    /// Publishes the receive buffers given back, submits everything queued, and waits for at
    /// least one completion or the timeout: one system call.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.bufs.publish();
        let submitter = self.ring.submitter();
        let entered = match timeout {
            None => submitter.submit_and_wait(1),
            Some(timeout) => {
                let timespec = Timespec::from(timeout);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&timespec))
            }
        };
        if self.ring.submission().is_empty() {
            self.staged.len = 0; // every registration queued has run
        }
        match entered {
            Ok(_) => Ok(()),
            Err(err) => match err.raw_os_error() {
                // The timeout; a signal (SIGUSR1 may have asked for a new log file); completions
                // waiting on the overflow list, to be reaped first.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(err),
            },
        }
    }
    // ANCHOR_END: enter

    /// Arms again the receives that ran out of buffers last turn, once the buffers given back
    /// since are published (the doubled target, too): the connection's drive arms it, if it
    /// still wants to read.
    fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        self.bufs.publish();
        for (key, generation) in std::mem::take(&mut self.starved) {
            if let Some(connection) = find(&mut self.connections, key, generation)
                && connection.recv == Recv::Starved
            {
                connection.recv = Recv::Off;
                self.drive(key, &[]);
            }
        }
    }

    /// Sleeps until the earliest thing that has a time (see the reactor's `poll_timeout`).
    fn wait_timeout(&self) -> Option<Duration> {
        let others = [
            self.accept_paused_until,
            self.drain_deadline,
            self.upgrade_due,
        ];
        self.env.sleep_for(&self.timers, others)
    }

    /// Takes every completion waiting and handles each.
    fn reap(&mut self) {
        let mut reaped = std::mem::take(&mut self.reaped);
        loop {
            reaped.clear();
            reaped.extend(
                self.ring
                    .completion()
                    .map(|entry| (entry.user_data(), entry.result(), entry.flags())),
            );
            if reaped.is_empty() {
                break;
            }
            for &(data, result, flags) in &reaped {
                self.complete(data, result, flags);
            }
        }
        self.reaped = reaped;
    }

    // ANCHOR: complete
    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (op, key, generation) = decode(data);
        let more = cqueue::more(flags);
        match op {
            Some(Op::Accept) => self.on_accept(key, result, more),
            Some(Op::Recv) => self.on_recv(key, generation, result, flags),
            Some(Op::Send) => self.on_send(key, generation, result),
            Some(op @ (Op::FileRead | Op::FileSend)) => self.on_file(op, key, generation, result),
            Some(Op::FileToPipe) => self.on_to_pipe(key, generation, result),
            Some(Op::PipeToSocket) => self.on_from_pipe(key, generation, result),
            Some(Op::Wake) => {
                self.wake.reset();
                if !more && self.draining.is_none() {
                    self.poll(self.wake.0.as_raw_fd(), Op::Wake, true);
                }
                self.take_completions();
            }
            Some(Op::Signals) => {
                if !more && let Some((signals, _)) = &self.signals {
                    let fd = signals.fd();
                    self.poll(fd, Op::Signals, true);
                }
                self.on_signals();
            }
            Some(Op::Upgrade) => {
                self.upgrade_polled = false;
                self.check_upgrade();
            }
            // Only a failure completes (`SKIP_SUCCESS`), before anything sent on the socket: it
            // is named by descriptor instead.
            Some(Op::Register) => {
                if let Some(connection) = self.connections.get_mut(key)
                    && connection.generation == generation
                {
                    connection.flags.take(Flags::FIXED);
                }
            }
            Some(Op::Cancel | Op::Close) | None => {}
        }
    }
    // ANCHOR_END: complete

    fn poll(&mut self, fd: RawFd, op: Op, multi: bool) {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(multi)
            .build()
            .user_data(user_data(op, 0, 0));
        // SAFETY: a poll points at no memory; the descriptor outlives it (it is cancelled or
        // the ring is gone first).
        unsafe { push(&mut self.ring, &entry) };
    }

    // ANCHOR: accept
    fn arm_accepts(&mut self) {
        if self.accepts_closed {
            return;
        }
        for index in 0..self.listeners.len() {
            if let Some(listener) = &self.listeners[index]
                && !self.accepting[index]
            {
                self.accepting[index] = true;
                // Accepted sockets are blocking (the ring waits for them, not the loop) and
                // close on exec (an upgrade's new process must not inherit them).
                let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(user_data(Op::Accept, index, 0));
                // SAFETY: a multishot accept without an address points at no memory.
                unsafe { push(&mut self.ring, &entry) };
            }
        }
    }

    /// Cancels the multishot accepts (closing a listener would not stop an accept the kernel
    /// holds); each reports its end with a last completion.
    fn cancel_accepts(&mut self) {
        for index in 0..self.accepting.len() {
            if self.accepting[index] {
                cancel(&mut self.ring, user_data(Op::Accept, index, 0));
            }
        }
    }

    fn on_accept(&mut self, index: usize, result: i32, more: bool) {
        if !more && let Some(accepting) = self.accepting.get_mut(index) {
            *accepting = false;
        }
        if result >= 0 {
            // SAFETY: the kernel made this descriptor for us; nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(result) };
            self.accept_trouble.accepted();
            self.admit(socket);
        } else {
            let err = io::Error::from_raw_os_error(-result);
            match -result {
                libc::ECANCELED => {}
                _ if io_util::is_transient_accept_error(&err) => {
                    io_util::count_accept_error(self.env.metrics.as_deref(), false);
                }
                _ => {
                    // Out of descriptors or memory (or worse): the connection stays queued.
                    // Accepting again at once would fail again; give closing connections time.
                    io_util::count_accept_error(self.env.metrics.as_deref(), true);
                    self.accept_trouble.failed(&err);
                    self.accept_paused_until = Some(self.env.clock.now() + io_util::ACCEPT_BACKOFF);
                }
            }
        }
        if !more && self.accepts_closed {
            self.last_accepts(index);
        } else if !more && self.accept_paused_until.is_none() {
            self.arm_accepts();
        }
    }

    /// A listener's accept has ended for good (shutdown): close the listener. On a handover,
    /// first take what is queued on it. The kernel wakes one accept per connection (accepts
    /// wait exclusively), and the wake-up may have gone to this process's accept as it was
    /// being cancelled: the new process's accept was not woken, and nobody else would take it.
    fn last_accepts(&mut self, index: usize) {
        let Some(listener) = self.listeners.get_mut(index).and_then(Option::take) else {
            return;
        };
        if self.draining == Some(Drain::Handover) {
            while let Ok((stream, _)) = listener.accept() {
                self.admit(OwnedFd::from(stream));
            }
        }
    }
    // ANCHOR_END: accept

    /// Takes an accepted socket into the slab, or refuses it with 503 when the server is full.
    fn admit(&mut self, socket: OwnedFd) {
        // A multishot accept reports no address. Only the access log reads it: ask for it (a
        // system call) only if there is one.
        let peer = match self.env.log {
            Some(_) => socket2::SockRef::from(&socket)
                .peer_addr()
                .ok()
                .and_then(|addr| addr.as_socket())
                .map(|addr| addr.ip()),
            None => None,
        }
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let shared = &self.env.shared;
        let counted = shared.open.fetch_add(1, Ordering::Relaxed) < shared.max_connections;
        if !counted {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            self.count(|metrics| metrics.refused.add(1));
            if self.refusing >= REFUSING_MAX {
                return; // dropped: closed without an answer
            }
            self.refusing += 1;
        }
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        let setup = &self.setup;
        let conn = self.env.with_context(peer, |cx| {
            if counted {
                S::open(setup, cx)
            } else {
                S::refuse(setup, Status::SERVICE_UNAVAILABLE, cx)
            }
        });
        entry.insert(Connection {
            conn,
            socket,
            generation,
            peer,
            recv: Recv::Off,
            out: Out::Idle,
            flags: Flags(if counted { Flags::COUNTED } else { 0 }),
            timer: Armed::NONE,
            extra: None,
        });
        if counted {
            self.count(|metrics| metrics.accepted.add(1));
            self.register(key);
        }
        // The first `want` is Read: this arms the receive (and the header timer).
        self.drive(key, &[]);
    }

    /// Puts a new connection's socket in the table of registered files, at its slab key, in
    /// this turn's submission: its sends will name it there. Queued before anything else of the
    /// connection's, it runs before any of it. (A refused connection's one send is not worth
    /// it.)
    fn register(&mut self, key: usize) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if key >= self.fixed_slots {
            return;
        }
        if self.staged.len == STAGED {
            // Hand the queue to the kernel until it has taken every entry: the registrations
            // in it have run, and the array is free again.
            while !self.ring.submission().is_empty() {
                if self.ring.submit().is_err() {
                    thread::yield_now();
                }
            }
            self.staged.len = 0;
        }
        let at = &mut self.staged.fds[self.staged.len];
        *at = connection.socket.as_raw_fd();
        self.staged.len += 1;
        let entry = opcode::FilesUpdate::new(at, 1)
            .offset(key as i32)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data(Op::Register, key, connection.generation));
        connection.flags.set(Flags::FIXED);
        // SAFETY: the descriptor read is in `staged`, unchanged until a submission has taken
        // this entry (see `Staged`).
        unsafe { push(&mut self.ring, &entry) };
    }

    // ANCHOR: on_recv
    fn on_recv(&mut self, key: usize, generation: u32, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        if buffer.is_some() {
            self.bufs.taken();
        }
        let more = cqueue::more(flags);
        if result == -libc::ENOBUFS {
            self.bufs.ran_out();
        }
        let Some(connection) = find(&mut self.connections, key, generation) else {
            if let Some(id) = buffer {
                self.bufs.give_back(id);
            }
            return;
        };
        if !more {
            connection.recv = match result == -libc::ENOBUFS {
                true => {
                    self.starved.push((key, generation));
                    Recv::Starved
                }
                false => Recv::Off,
            };
        }
        match result {
            0 => connection.flags.set(Flags::EOF),
            // Out of buffers (re-armed next turn: `rearm_starved`), or cancelled by the loop.
            n if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            n if n < 0 => connection.flags.set(Flags::FAILED),
            _ => {}
        }
        let bytes = match buffer {
            Some(id) if result > 0 => self.bufs.bytes(id, result as usize),
            _ => &[],
        };
        // The bytes are copied into the connection (or its backlog) before the buffer is given
        // back.
        self.drive(key, bytes);
        if let Some(id) = buffer {
            self.bufs.give_back(id);
        }
    }
    // ANCHOR_END: on_recv

    // ANCHOR: on_send
    fn on_send(&mut self, key: usize, generation: u32, result: i32) {
        let Some(connection) = find(&mut self.connections, key, generation) else {
            return;
        };
        connection.out = Out::Idle;
        // Only now may the connection be touched again.
        if result >= 0 && !connection.flags.has(Flags::CLOSING) {
            connection.conn.wrote(result as usize);
        } else if result < 0 && result != -libc::ECANCELED {
            connection.flags.set(Flags::FAILED);
        }
        self.drive(key, &[]);
    }
    // ANCHOR_END: on_send

    // ANCHOR: on_file
    /// A completion of a piece's linked read and send, or of a later send of its rest.
    fn on_file(&mut self, op: Op, key: usize, generation: u32, result: i32) {
        let Some(connection) = find(&mut self.connections, key, generation) else {
            return;
        };
        let Some(piece) = self
            .extras
            .get_mut(connection.extra)
            .and_then(|extra| extra.file.as_mut())
        else {
            // Cannot happen (the piece lives until both completions are in); if it did, the
            // connection must not stay marked busy for ever.
            connection.out = Out::Idle;
            self.drive(key, &[]);
            return;
        };
        if connection.out == Out::FileRead {
            // One of the linked pair: wait for the other.
            match op {
                Op::FileRead => piece.read = result,
                _ => piece.sent = result,
            }
            piece.pending -= 1;
            if piece.pending > 0 {
                return;
            }
            if piece.read > 0 {
                piece.end = piece.read as usize;
            }
            // The send ran only if the read was whole; a short read cancelled it.
            let (read, sent) = match (piece.read, piece.sent) {
                (read, sent) if read > 0 && sent == -libc::ECANCELED => (read, 0),
                pair => pair,
            };
            connection.out = Out::Idle;
            self.file_progress(key, read, sent);
        } else {
            connection.out = Out::Idle;
            self.file_progress(key, 1, result);
        }
    }
    // ANCHOR_END: on_file

    /// `sent` bytes of the piece went out (or the send failed); `read` says whether the piece
    /// exists (> 0), the file ended early (0), or the read failed (< 0).
    fn file_progress(&mut self, key: usize, read: i32, sent: i32) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if !connection.flags.has(Flags::CLOSING) {
            if read > 0 && sent >= 0 {
                // (0 sent is the linked send that a short read cancelled, not the end of the
                // file: the connection hears of progress only.)
                if sent > 0 {
                    connection.conn.sent_file(sent as u64);
                }
                let extra = self.extras.get_mut(connection.extra);
                let more = extra
                    .and_then(|extra| extra.file.as_mut())
                    .is_some_and(|piece| {
                        piece.start += sent as usize;
                        piece.start < piece.end
                    });
                if more && !connection.flags.has(Flags::OVERDUE) {
                    self.send_file_piece(key);
                    return;
                }
            } else if read == 0 {
                // The file ended early: the connection decides (it cannot keep its promise of
                // a length, and closes).
                connection.conn.sent_file(0);
            } else if (read < 0 && read != -libc::ECANCELED)
                || (sent < 0 && sent != -libc::ECANCELED)
            {
                connection.flags.set(Flags::FAILED);
            }
        }
        if let Some(extra) = self.extras.get_mut(connection.extra) {
            extra.file = None;
        }
        self.drive(key, &[]);
    }

    /// A file piece is in the pipe: splice it on to the socket.
    fn on_to_pipe(&mut self, key: usize, generation: u32, result: i32) {
        let Some(connection) = find(&mut self.connections, key, generation) else {
            return;
        };
        connection.out = Out::Idle;
        if result > 0
            && !connection.flags.has(Flags::CLOSING)
            && !connection.flags.has(Flags::OVERDUE)
        {
            if let Some(pipe) = self
                .extras
                .get_mut(connection.extra)
                .and_then(|extra| extra.pipe.as_mut())
            {
                pipe.held = result as usize;
            }
            self.splice_to_socket(key);
            return;
        }
        match result {
            // The file ended early (see `file_progress`).
            0 if !connection.flags.has(Flags::CLOSING) => connection.conn.sent_file(0),
            n if n < 0 && n != -libc::ECANCELED => connection.flags.set(Flags::FAILED),
            _ => {}
        }
        self.drive(key, &[]);
    }

    fn on_from_pipe(&mut self, key: usize, generation: u32, result: i32) {
        let Some(connection) = find(&mut self.connections, key, generation) else {
            return;
        };
        connection.out = Out::Idle;
        let Some(pipe) = self
            .extras
            .get_mut(connection.extra)
            .and_then(|extra| extra.pipe.as_mut())
        else {
            self.drive(key, &[]); // cannot happen; never leave the connection waiting on nothing
            return;
        };
        if result >= 0 && !connection.flags.has(Flags::CLOSING) {
            pipe.held = pipe.held.saturating_sub(result as usize);
            connection.conn.sent_file(result as u64);
            if pipe.held > 0 && !connection.flags.has(Flags::OVERDUE) {
                self.splice_to_socket(key);
                return;
            }
        } else if result < 0 && result != -libc::ECANCELED {
            connection.flags.set(Flags::FAILED);
        }
        if let Some(extra) = self.extras.get_mut(connection.extra)
            && extra.pipe.as_ref().is_some_and(|pipe| pipe.held > 0)
        {
            // Bytes left in it would go out with the next file: the pipe goes instead (and
            // the connection is about to close anyway, for it stopped mid-file).
            extra.pipe = None;
        }
        self.drive(key, &[]);
    }

    fn splice_to_socket(&mut self, key: usize) {
        self.submit_out(key, Out::FromPipe, |socket, extra| {
            let pipe = extra.pipe.as_ref()?;
            // SAFETY (of the push): a splice points at no memory of ours; pipe and socket stay
            // open in the connection until it completes.
            Some(socket.splice_from(pipe.read.as_raw_fd(), pipe.held as u32))
        });
    }

    /// Sends the rest of the connection's file piece.
    fn send_file_piece(&mut self, key: usize) {
        self.submit_out(key, Out::FileSend, |socket, extra| {
            let piece = extra.file.as_ref()?;
            let rest = &piece.buf[piece.start..piece.end];
            // SAFETY (of the push): the piece's buffer is the driver's, boxed (its bytes do not
            // move with the connection), and neither freed nor written until this send
            // completes (`Out::FileSend`).
            Some(socket.send(rest.as_ptr().cast(), rest.len(), false))
        });
    }

    /// Queues the connection's next output operation, made by `build` from its socket and what
    /// it holds, and marks the connection busy with it.
    fn submit_out(
        &mut self,
        key: usize,
        out: Out,
        build: impl FnOnce(Socket, &Extra) -> Option<squeue::Entry>,
    ) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let socket = Socket::of(key, connection);
        let Some((entry, op)) = self
            .extras
            .get(connection.extra)
            .and_then(|extra| build(socket, extra))
            .zip(out.op())
        else {
            // Nothing to send from (cannot happen): let the connection say what it wants next
            // rather than wait on an operation never submitted.
            self.drive(key, &[]);
            return;
        };
        connection.out = out;
        let entry = entry.user_data(user_data(op, key, connection.generation));
        // SAFETY: see the callers: the memory each operation uses is the connection's, kept
        // until its completion by `out`.
        unsafe { push(&mut self.ring, &entry) };
    }

    // ANCHOR: drive
    /// Does what the connection asks until it has to wait for a completion. `incoming` are bytes
    /// just received; what the connection cannot take yet is kept in its backlog.
    fn drive(&mut self, key: usize, mut incoming: &[u8]) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.out != Out::Idle || connection.flags.has(Flags::CLOSING | Flags::HELD) {
            // Not to be driven now: being closed, its memory held by an operation, or held at a
            // stop (`hold` sees to each).
            self.hold(key, incoming);
            return;
        }
        let generation = connection.generation;
        let fd = connection.socket.as_raw_fd();
        let socket = Socket::of(key, connection);
        let now = self.env.clock.now_ms();
        let draining = self.draining;
        // Its deadline passed (found by `fire_timers`, perhaps while an operation was in flight).
        let time_out = connection.flags.take(Flags::OVERDUE)
            && connection
                .conn
                .deadline(&self.env.shared.limits)
                .is_some_and(|at| at <= now);
        if let Some(offload) = &mut self.env.offload {
            if time_out && connection.conn.is_pending() {
                let waited = self.env.shared.limits.handler_timeout;
                offload
                    .inbox
                    .gave_up(&offload.pool, (key, generation), waited);
            }
            offload.ticket = (key, generation);
        }
        let ring = &mut self.ring;
        let extras = &mut self.extras;
        let splice_at = self.splice_at;
        let recv_limit = self.recv_limit;
        let step = self.env.with_context(connection.peer, |cx| {
            let conn = &mut connection.conn;
            // What waited while an operation was in flight, in the order it happened.
            if let Some(response) = extras
                .get_mut(connection.extra)
                .and_then(|extra| extra.deferred.take())
            {
                conn.completed(response, cx);
            }
            if let Some(how) = draining
                && !connection.flags.has(Flags::DRAINED)
            {
                connection.flags.set(Flags::DRAINED);
                // Bytes held for an idle connection at a stop (`begin_drain`) are a request
                // begun: given to it first, so that the drain answers it as the last.
                if conn.is_idle() {
                    give_held(conn, cx, extras.get_mut(connection.extra), &mut incoming);
                }
                conn.drain(how);
            }
            if time_out {
                conn.timed_out(cx);
            }
            loop {
                match conn.want(cx) {
                    Want::Read => {
                        // Bytes already here first: the backlog's, then this completion's.
                        match give_held(conn, cx, extras.get_mut(connection.extra), &mut incoming) {
                            Some(0) => break Step::Wait, // cannot happen: Read means room
                            Some(_) => continue,
                            None => {}
                        }
                        if connection.flags.has(Flags::EOF) {
                            conn.received(0);
                            continue;
                        }
                        // Waiting for a request: a pipe kept for files is not needed now.
                        if let Some(extra) = extras.get_mut(connection.extra) {
                            extra.pipe = None;
                        }
                        if connection.flags.has(Flags::FAILED) {
                            break Step::Close; // reset by the client: nothing to answer
                        }
                        arm_recv(ring, &mut connection.recv, fd, key, generation, recv_limit);
                        break Step::Wait;
                    }
                    Want::Write { bytes, more } => {
                        if connection.flags.has(Flags::FAILED) {
                            break Step::Close;
                        }
                        let entry = socket
                            .send(bytes.as_ptr(), bytes.len(), more)
                            .user_data(user_data(Op::Send, key, generation));
                        connection.out = Out::Send;
                        // SAFETY: `bytes` is the connection's output buffer, on the heap; with
                        // `Out::Send` set nothing calls into the connection (which alone may
                        // change or free it) until this send completes.
                        unsafe { push(ring, &entry) };
                        // ANCHOR: last_send
                        // Its last bytes (`Connection: close`, say): the receive is cancelled
                        // in the same submission, rather than in a turn of its own once the
                        // send is back; one `io_uring_enter` fewer per connection. Early is
                        // harmless: the connection reads nothing more, and were it to want to,
                        // `Want::Read` arms a new receive.
                        if conn.reads_no_more() {
                            cancel_recv(ring, key, connection);
                        }
                        // ANCHOR_END: last_send
                        break Step::Wait;
                    }
                    Want::SendFile { file, offset, len } => {
                        if connection.flags.has(Flags::FAILED) {
                            break Step::Close;
                        }
                        if len >= splice_at {
                            let extra = extras.make(&mut connection.extra);
                            if extra.pipe.is_none() {
                                extra.pipe = Pipe::new().ok();
                            }
                            if let Some(pipe) = &extra.pipe {
                                let piece = len.min(PIPE_PIECE) as u32;
                                let entry = opcode::Splice::new(
                                    types::Fd(file.as_raw_fd()),
                                    offset as i64,
                                    types::Fd(pipe.write.as_raw_fd()),
                                    -1,
                                    piece,
                                )
                                .build()
                                .user_data(user_data(
                                    Op::FileToPipe,
                                    key,
                                    generation,
                                ));
                                connection.out = Out::ToPipe;
                                // SAFETY: a splice points at no memory of ours; the file and
                                // the pipe stay open in the connection until it completes.
                                unsafe { push(ring, &entry) };
                                break Step::Wait;
                            }
                            // No pipe (out of descriptors): the piece goes the other way.
                        }
                        let want = len.min(FILE_PIECE as u64) as usize;
                        let mut buf = Box::new_uninit_slice(want);
                        let at = buf.as_mut_ptr().cast::<u8>();
                        let read = opcode::Read::new(types::Fd(file.as_raw_fd()), at, want as u32)
                            .offset(offset)
                            .build()
                            .flags(squeue::Flags::IO_LINK)
                            .user_data(user_data(Op::FileRead, key, generation));
                        let send = socket.send(at, want, false).user_data(user_data(
                            Op::FileSend,
                            key,
                            generation,
                        ));
                        extras.make(&mut connection.extra).file = Some(FilePiece {
                            buf,
                            start: 0,
                            end: 0,
                            pending: 2,
                            read: 0,
                            sent: 0,
                        });
                        connection.out = Out::FileRead;
                        // SAFETY: the buffer is boxed (its bytes do not move when the
                        // `Extras` slab does) and kept in the connection's `Extra`, untouched
                        // until both completions are in (`Out::FileRead`); the file stays open
                        // in the connection, which nothing touches meanwhile either. The
                        // send reads only what the read wrote: it runs only if the read
                        // filled the whole buffer.
                        unsafe {
                            push(ring, &read);
                            push(ring, &send);
                        }
                        break Step::Wait;
                    }
                    Want::HalfClose => {
                        // SAFETY: a plain system call on the connection's own socket.
                        unsafe {
                            libc::shutdown(fd, libc::SHUT_WR);
                        }
                    }
                    // A request is on the pool: its answer will wake the ring, unless the
                    // client reset the connection meanwhile (then the job is withdrawn if
                    // no thread has taken it; an end of stream is no reset, as in `reactor`).
                    Want::Wait if connection.flags.has(Flags::FAILED) => break Step::Close,
                    Want::Wait => break Step::Wait,
                    Want::Close => break Step::Close,
                }
            }
        });
        if !incoming.is_empty() {
            self.extras.hold(&mut connection.extra, incoming);
        }
        match step {
            Step::Close => self.close(key),
            Step::Wait => {
                self.extras.tidy(&mut connection.extra);
                arm_timer(&mut self.timers, &self.env, key, connection);
                limit_backlog(&mut self.ring, &self.extras, key, connection);
            }
        }
    }
    // ANCHOR_END: drive

    /// Bytes for a connection that cannot take them now: an operation holds its memory, or a
    /// stop is collecting what has arrived before any connection answers (`begin_drain`). They
    /// are held, and nothing else is touched; except that, collecting, a receive that has ended
    /// (out of buffers) is armed again while the connection holds no more than it may: what
    /// arrives after it would wait in the socket while the drain closed the connection.
    #[cold]
    fn hold(&mut self, key: usize, incoming: &[u8]) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.flags.has(Flags::CLOSING) {
            self.finish_if_done(key);
            return;
        }
        if !incoming.is_empty() {
            self.extras.hold(&mut connection.extra, incoming);
        }
        if !limit_backlog(&mut self.ring, &self.extras, key, connection)
            && connection.flags.has(Flags::HELD)
            && connection.out == Out::Idle
            && !connection.flags.has(Flags::EOF)
            && !connection.flags.has(Flags::FAILED)
        {
            let (fd, generation) = (connection.socket.as_raw_fd(), connection.generation);
            arm_recv(
                &mut self.ring,
                &mut connection.recv,
                fd,
                key,
                generation,
                self.recv_limit,
            );
        }
    }

    // ANCHOR: close
    /// Closes a connection: at once if the kernel holds nothing of it, else once the
    /// completions of its cancelled operations are in.
    fn close(&mut self, key: usize) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if !connection.flags.has(Flags::CLOSING) {
            connection.flags.set(Flags::CLOSING);
            cancel_recv(&mut self.ring, key, connection);
            cancel_out(&mut self.ring, key, connection);
        }
        self.finish_if_done(key);
    }

    fn finish_if_done(&mut self, key: usize) {
        if self
            .connections
            .get(key)
            .is_none_or(|connection| connection.in_flight())
        {
            return;
        }
        // Nothing of it is the kernel's any more: its buffers and socket can go.
        let mut connection = self.connections.remove(key);
        let ticket = (key, connection.generation);
        (self.env).close(ticket, connection.peer, &mut connection.conn);
        self.extras.release(&mut connection.extra);
        if connection.flags.has(Flags::FIXED) {
            unregister_in_ring(&mut self.ring, key);
        }
        // Closed over unread input, a socket is reset, and what of the last response is still
        // in its send queue is lost: read out what is waiting first, as the reactor does. (The
        // receive was cancelled with the last response's first send, `last_send`, so a request
        // the client had sent behind it stays in the socket; at a stop, a 6 MiB answer lost its
        // last megabytes in 1 run of 10 of the test that does this.) Nothing of the kernel's
        // uses the socket now.
        io_util::discard_unread(connection.socket.as_raw_fd());
        close_in_ring(&mut self.ring, connection.socket);
        if connection.flags.has(Flags::COUNTED) {
            self.count(|metrics| metrics.closed.add(1));
            self.env.shared.open.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.refusing -= 1;
        }
    }
    // ANCHOR_END: close

    // ANCHOR: fire_timers
    /// Fires every timer that is due. A connection with an operation in flight is marked
    /// overdue and its operation cancelled: it is timed out when the completion is back.
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
            if connection
                .conn
                .deadline(&self.env.shared.limits)
                .is_none_or(|deadline| deadline > now)
            {
                arm_timer(&mut self.timers, &self.env, key, connection);
                continue;
            }
            connection.flags.set(Flags::OVERDUE);
            if connection.out == Out::Idle {
                self.drive(key, &[]);
            } else {
                cancel_out(&mut self.ring, key, connection);
            }
        }
    }
    // ANCHOR_END: fire_timers

    /// Gives each response back from the pool to its connection (see the reactor's).
    fn take_completions(&mut self) {
        let Some(offload) = &mut self.env.offload else {
            return;
        };
        for completion in offload.inbox.take(&offload.pool) {
            let (key, generation) = completion.ticket;
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            if connection.generation != generation || connection.flags.has(Flags::CLOSING) {
                continue;
            }
            self.extras.make(&mut connection.extra).deferred = Some(completion.response);
            self.drive(key, &[]);
        }
    }

    fn count(&self, what: impl FnOnce(&LoopMetrics)) {
        if let Some(metrics) = &self.env.metrics {
            what(metrics);
        }
    }

    // ANCHOR: begin_drain
    /// Shutdown: stop accepting, close idle connections, let the others finish (see the
    /// reactor's). Accepting stops by cancelling the multishot accepts: closing a listener
    /// would not stop an accept the kernel holds.
    fn begin_drain(&mut self) {
        // A stop signal only sets the flag: the first loop to see it runs the wake-ups (every
        // loop woken, the process's exit bounded); for the others, and after a handover or a
        // stop asked for in code, this does nothing.
        self.shutdown.trigger();
        let how = self.shutdown.drain_kind();
        self.drain_deadline = Some(self.env.clock.now() + self.shutdown.grace());
        let stop = how != Drain::Handover;
        // First: an accept cancelled here must not be armed again when its last completion
        // comes in.
        self.accepts_closed = true;
        self.cancel_accepts();
        if stop {
            // Connections the kernel already completed are in flight too: take them (the
            // listeners are non-blocking) before closing the listeners resets them.
            for index in 0..self.listeners.len() {
                while let Some(Ok((stream, _))) =
                    self.listeners[index].as_ref().map(TcpListener::accept)
                {
                    self.admit(OwnedFd::from(stream));
                }
            }
            // Bytes that arrived are in flight too: delivered before idle connections close, and
            // held, not answered, until all are in. A connection answered now would say
            // keep-alive and then be closed by the drain; and the completions of one wait come
            // in any order, so a connection's send done could close it, idle, before its
            // receive's completion in the same batch brought a request. Held, every such
            // request is given to its connection just before the drain (`drive`), which answers
            // it as the last.
            for (_, connection) in self.connections.iter_mut() {
                connection.flags.set(Flags::HELD);
            }
            self.deliver_arrived();
            for (_, connection) in self.connections.iter_mut() {
                connection.flags.take(Flags::HELD);
            }
        }
        self.draining = Some(how);
        // Listeners whose accept is not armed (paused) are done with; the others are closed by
        // `last_accepts`.
        for index in 0..self.listeners.len() {
            if !self.accepting[index] {
                self.listeners[index] = None;
            }
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.drive(key, &[]);
        }
    }
    // ANCHOR_END: begin_drain

    /// At a stop: has the kernel deliver, through the armed receives, the bytes that have
    /// arrived on idle connections, so that a request begun is in flight and not closed under.
    /// A wait of zero runs the ring's deferred work, and one such wait was once thought enough;
    /// but with two rings a test found the sockets of 25 of 160 idle connections still holding
    /// a request's first bytes after it, each then closed without an answer, and the next wait
    /// delivered them. So it waits again while an idle connection with its receive armed has
    /// bytes in its socket, for at most [`DELIVER_WITHIN`].
    fn deliver_arrived(&mut self) {
        let until = Instant::now() + DELIVER_WITHIN;
        loop {
            self.rearm_starved();
            let _ = self.enter(Some(Duration::ZERO));
            self.reap();
            let undelivered = self.connections.iter().any(|(_, connection)| {
                matches!(connection.recv, Recv::Armed | Recv::Starved)
                    && connection.conn.is_idle()
                    && io_util::unread_bytes(connection.socket.as_raw_fd()) > 0
            });
            if !undelivered || Instant::now() >= until {
                return;
            }
        }
    }

    /// At the end: cancels what the kernel still holds and waits for it to let go, so no
    /// buffer is freed while the kernel may write into it. What it has not let go of within
    /// [`QUIESCE_WITHIN`] is leaked, not freed.
    fn quiesce(&mut self) {
        self.draining.get_or_insert(Drain::Now);
        self.accepts_closed = true;
        self.cancel_accepts();
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key);
        }
        let until = Instant::now() + QUIESCE_WITHIN;
        while !self.connections.is_empty() || self.accepting.contains(&true) {
            let now = Instant::now();
            if now >= until || self.enter(Some(until - now)).is_err() {
                break;
            }
            self.env.clock.tick();
            self.reap();
        }
        if !self.connections.is_empty() {
            eprintln!(
                "reactor-httpd: {} connections still held by the kernel at exit; their memory is left to the process's end",
                self.connections.len()
            );
            std::mem::forget(std::mem::take(&mut self.connections));
            std::mem::forget(std::mem::take(&mut self.extras));
            self.leaked = true;
        }
        // The last connections' closes are queued: run them now.
        let _ = self.ring.submit();
    }

    /// The signal socket is readable (first ring only).
    fn on_signals(&mut self) {
        let (started, due) = super::upgrade::on_signals(&mut self.signals, &self.shutdown);
        if let Some(fd) = started {
            self.poll(fd, Op::Upgrade, false);
            self.upgrade_polled = true;
        }
        self.upgrade_due = due;
    }

    /// The new process's readiness socket is readable, or its time is up.
    fn check_upgrade(&mut self) {
        self.upgrade_due = super::upgrade::check(&mut self.signals, &self.shutdown);
        if self.upgrade_due.is_none() && self.upgrade_polled {
            // Over either way: the poll must not outlive the socket it watches.
            self.upgrade_polled = false;
            cancel(&mut self.ring, user_data(Op::Upgrade, 0, 0));
        }
    }
}

impl<S: Session> Drop for Ring<S> {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // Nothing in flight holds a receive buffer: `quiesce` waited for every connection (a
        // ring that never ran has only its accepts and polls, which hold none).
        let _ = self.ring.submitter().unregister_buf_ring(BUF_GROUP);
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.bufs) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// What an idle connection costs the uring beyond its `http::Conn` (see
    /// `an_idle_connection_is_small`): its slab entry. benches/idle-memory.sh measures the whole.
    #[test]
    fn a_connection_entry_is_small() {
        let size = size_of::<super::Connection<crate::http::Conn>>();
        // The reactor's, in a release build: an idle connection costs the same in both drivers.
        assert!(size <= 176, "the uring's Connection grew to {size} bytes");
    }

    /// The kernel's `(major, minor)` version, from uname.
    fn kernel_version() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let mut next = || parts.next().and_then(|part| part.parse().ok()).unwrap_or(0);
        (next(), next())
    }

    /// A receive armed with the limit ends once it has taken that much, however much the
    /// socket holds: a client that pipelines without reading fills the socket, not the server.
    #[test]
    fn a_receive_ends_at_its_limit() {
        use std::io::Write;
        if super::available().is_err() {
            eprintln!("skipped: io_uring is not available here");
            return;
        }
        let Some(limit) = super::recv_limit() else {
            // Linux 6.17 brought the limit; before it, the kernel refuses the field.
            assert!(
                kernel_version() < (6, 17),
                "Linux {:?} should take a receive's limit",
                kernel_version()
            );
            eprintln!("skipped: this kernel (before 6.17) has no limit on a multishot receive");
            return;
        };
        let limit = limit as usize;
        let mut ring = super::new_ring().unwrap();
        let bufs = super::BufRing::new(&ring, 64, super::RECV_BUFFER_LEN, 64).unwrap();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // Four times the limit waits in the socket before the receive is armed.
        // Then the end of input, which ends a receive that has no limit (and bounds the test).
        let sent = vec![b'x'; 4 * limit];
        theirs.write_all(&sent).unwrap();
        drop(theirs);
        let entry = super::recv_multi(ours.as_raw_fd(), Some(limit as u32)).user_data(7);
        // SAFETY: the receive writes only into the provided buffers, which outlive the ring.
        unsafe { super::push(&mut ring, &entry) };
        let (mut taken, mut ended) = (0, false);
        while !ended {
            ring.submit_and_wait(1).unwrap();
            for cqe in ring.completion() {
                assert!(cqe.result() >= 0, "receive failed: {}", cqe.result());
                taken += cqe.result() as usize;
                ended = !io_uring::cqueue::more(cqe.flags());
            }
        }
        assert!(
            (limit..limit + super::RECV_BUFFER_LEN).contains(&taken),
            "took {taken} bytes for a limit of {limit}"
        );
        drop(ring);
        drop(bufs);
    }
}
