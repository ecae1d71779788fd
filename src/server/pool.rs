//! The handler pool: threads that run the handlers which may block, so that no event loop ever
//! waits on one.
//!
//! A loop asks its handler, for each request, whether answering it may block
//! (`Handler::may_block`). If so, the connection hands the request over (`http::Offload`): its
//! head and body are copied into a [`Job`] (the copy counted against `--max-buffer-bytes`, as
//! the connection keeps its own bytes meanwhile) and queued here, and the connection waits. A pool
//! thread takes the job, parses the head again, calls the handler, and sends the response back
//! to the loop that owns the connection, through that loop's [`Inbox`]: a channel, and the
//! loop's `mio::Waker` to wake its `poll`. The loop then gives the response to the connection
//! (`Conn::completed`), which queues it in its turn.
//!
//! nginx's `thread_pool` and libuv's work queue have the same shape: a bounded queue in, a done
//! list per loop out, one wake-up per batch. The queue is bounded ([`QUEUE_PER_THREAD`] jobs a
//! thread): past it a request gets 503 at once rather than wait behind thousands of others.
//!
//! The threads start with the first job, not with the server. A process with one thread skips
//! glibc's multi-thread bookkeeping on every system call (see `Signals`), so a server whose
//! handlers never block keeps its loops as cheap as before.

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use super::LoopEnv;
use crate::app::Handler;
use crate::http::{
    BUF_SIZE, BufferBudget, Charge, Handover, Offload, Request, Response, Status, beyond_pooled,
    header_storage, parse_again,
};
use crate::metrics::Metrics;

/// Jobs that may wait in the queue, per pool thread.
pub const QUEUE_PER_THREAD: usize = 16;
/// The pool threads' nice value (the loops keep 0): when a loop and a pool thread both want a
/// core, the scheduler gives the loop about ten times the share.
const POOL_NICE: libc::c_int = 10;

/// Which connection a response is for: its slab key and generation in its loop.
pub(crate) type Ticket = (usize, u32);

/// One request, owned, on its way to a pool thread.
struct Job {
    head: Vec<u8>,
    body: Vec<u8>,
    ticket: Ticket,
    reply: Arc<Outbox>,
    /// [`QUEUED`], then [`TAKEN`] by a thread or [`WITHDRAWN`] by its loop, whichever comes
    /// first: the two sides settle it with one compare-and-swap each.
    state: Arc<AtomicU8>,
    /// What the copies of head and body take of the buffer budget (`--max-buffer-bytes`) beyond
    /// one pooled buffer, given back when the job is dropped: the connection keeps its own
    /// bytes until the answer comes, so a request on the pool is held twice.
    _charge: Option<Charge>,
}

/// Waiting in the queue.
const QUEUED: u8 = 0;
/// A thread runs its handler.
const TAKEN: u8 = 1;
/// Given up on by its loop before any thread took it (its client has had 504, or is gone): no
/// thread runs it, so no thread is held by an answer nobody will read.
const WITHDRAWN: u8 = 2;

/// A finished job, on its way back to its loop.
pub(crate) struct Completion {
    pub ticket: Ticket,
    pub response: Response,
}

/// How a pool thread wakes the loop it answered: the reactor's `mio::Waker`, the uring
/// driver's eventfd.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        // Fails only if the eventfd's counter is full: the loop is woken anyway.
        let _ = mio::Waker::wake(self);
    }
}

/// The sending side of a loop's inbox, shared by the jobs of that loop.
struct Outbox {
    sender: Sender<Completion>,
    waker: Arc<dyn Wake>,
}

pub(crate) struct HandlerPool {
    handler: Arc<dyn Handler>,
    threads: usize,
    /// The cores the process may use, read before any loop pinned itself: a pool thread must
    /// not inherit the pinning of the loop that starts it, or all the pool's work would land on
    /// that one loop's core.
    cores: Option<libc::cpu_set_t>,
    /// The bounded queue, made (and the threads started) by the first job.
    jobs: OnceLock<SyncSender<Job>>,
    /// Threads whose handler overran the handler timeout and has not returned yet.
    stuck: AtomicUsize,
}

impl HandlerPool {
    /// A pool of `threads` threads (`threads` > 0) running `handler`. No thread starts yet.
    pub fn new(handler: Arc<dyn Handler>, threads: usize) -> Self {
        HandlerPool {
            handler,
            threads,
            cores: allowed_cores(),
            jobs: OnceLock::new(),
            stuck: AtomicUsize::new(0),
        }
    }

    fn jobs(&self) -> &SyncSender<Job> {
        self.jobs.get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel::<Job>(self.threads * QUEUE_PER_THREAD);
            let receiver = Arc::new(Mutex::new(receiver));
            for index in 0..self.threads {
                let receiver = receiver.clone();
                let handler = self.handler.clone();
                let cores = self.cores;
                let spawned = thread::Builder::new()
                    .name(format!("handler-{index}"))
                    .spawn(move || {
                        if let Some(cores) = cores {
                            // SAFETY: sets this thread's own affinity from a mask read by
                            // sched_getaffinity; the pointer and size describe that mask.
                            unsafe {
                                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &cores);
                            }
                        }
                        // Below the loops: a loop woken by a socket must not wait behind work
                        // that can. On Linux the nice value is per thread; `who` 0 is this one.
                        // SAFETY: a plain system call on the calling thread.
                        unsafe {
                            libc::setpriority(libc::PRIO_PROCESS, 0, POOL_NICE);
                        }
                        work(&receiver, &*handler)
                    });
                if let Err(err) = spawned {
                    // Fewer threads serve the queue; with none, jobs wait for the timeout.
                    eprintln!("reactor-httpd: cannot start a handler thread: {err}");
                }
            }
            sender
        })
    }
}

/// This thread's allowed cores, if the kernel says.
fn allowed_cores() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled in by sched_getaffinity, which
    // writes at most `size` bytes to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

// ANCHOR: work
/// A pool thread: take a job, answer it, send the answer home, wake the loop; until the server
/// is gone (the queue's sender dropped).
fn work(jobs: &Mutex<Receiver<Job>>, handler: &dyn Handler) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        let taken = job
            .state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire);
        if taken.is_err() {
            continue; // withdrawn: its loop expects no answer
        }
        let mut storage = header_storage();
        let response = match parse_again(&job.head, &job.body, &mut storage) {
            Ok((request, _)) => {
                // As on the loop: a panic is this request's 500, not the thread's end.
                panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&request)))
                    .unwrap_or_else(|_| Response::error(Status::INTERNAL_SERVER_ERROR))
            }
            // It parsed on the loop, from the same bytes.
            Err(status) => Response::error(status),
        };
        let completion = Completion {
            ticket: job.ticket,
            response,
        };
        // Sent first, then the wake: the loop empties its inbox after every wake-up, so a
        // completion is never left behind. (Wake-ups coalesce: one per batch is enough.)
        let sent = job.reply.sender.send(completion);
        if sent.is_ok() {
            job.reply.waker.wake();
        }
    }
}
// ANCHOR_END: work

/// A loop's end of the pool: where its jobs' answers arrive, and which of its requests are
/// known to be stuck.
pub(crate) struct Inbox {
    receiver: Receiver<Completion>,
    outbox: Arc<Outbox>,
    /// Tickets answered 504 whose handler is still running.
    stuck: HashSet<Ticket>,
    /// The jobs of this loop that no answer has come back for yet, by ticket: what
    /// [`Inbox::withdraw`] needs to reach one still in the queue.
    pending: HashMap<Ticket, Arc<AtomicU8>>,
}

impl Inbox {
    /// `waker` is the loop's own (one per `Poll` or ring): a completion wakes it like a
    /// shutdown does.
    pub fn new(waker: Arc<dyn Wake>) -> Self {
        let (sender, receiver) = mpsc::channel();
        Inbox {
            receiver,
            outbox: Arc::new(Outbox { sender, waker }),
            stuck: HashSet::new(),
            pending: HashMap::new(),
        }
    }

    /// The responses that have come back, none of them for a request that was given up on.
    pub fn take(&mut self, pool: &HandlerPool) -> Vec<Completion> {
        let mut done = Vec::new();
        while let Ok(completion) = self.receiver.try_recv() {
            self.pending.remove(&completion.ticket);
            if self.stuck.remove(&completion.ticket) {
                let left = pool.stuck.fetch_sub(1, Ordering::Relaxed) - 1;
                eprintln!("reactor-httpd: a stuck handler returned ({left} pool threads stuck)");
                continue;
            }
            done.push(completion);
        }
        done
    }

    /// The request of `ticket` ran past the handler timeout (its client got 504). Still in the
    /// queue, it is withdrawn and never runs; else its thread is counted as stuck until the
    /// handler returns.
    pub fn gave_up(&mut self, pool: &HandlerPool, ticket: Ticket, waited: Duration) {
        if self.withdraw(ticket) {
            eprintln!(
                "reactor-httpd: a request waited {waited:.0?} for a pool thread: 504 sent, its handler will not run ({} of {} pool threads stuck)",
                pool.stuck.load(Ordering::Relaxed),
                pool.threads
            );
            return;
        }
        if self.stuck.insert(ticket) {
            let stuck = pool.stuck.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!(
                "reactor-httpd: a handler has not answered in {waited:.0?}: 504 sent ({stuck} of {} pool threads stuck)",
                pool.threads
            );
        }
    }

    /// Takes the job of `ticket` out of the pool's hands if no thread has taken it yet (it then
    /// never runs, and no answer comes back for it); says whether it did. Called when the
    /// request is given up on: timed out, or its connection closed.
    pub fn withdraw(&mut self, ticket: Ticket) -> bool {
        self.pending.remove(&ticket).is_some_and(|state| {
            let withdrawn =
                state.compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire);
            withdrawn.is_ok()
        })
    }
}

/// A loop's way into the pool: the pool, the loop's inbox, and the connection being driven
/// (the reactor sets `ticket` before each call into a connection).
pub(crate) struct PoolOffer {
    pub pool: Arc<HandlerPool>,
    pub inbox: Inbox,
    pub ticket: Ticket,
    buffers: Arc<BufferBudget>,
    /// The loop's counters (this runs on the loop, their one writer).
    metrics: Option<Metrics>,
}

impl PoolOffer {
    /// The way into `pool` of the loop `env` is for, its answers coming back through `inbox`;
    /// the copies it makes count against the server's buffer budget.
    pub fn new(pool: Arc<HandlerPool>, inbox: Inbox, env: &LoopEnv) -> Self {
        PoolOffer {
            pool,
            inbox,
            ticket: (0, 0),
            buffers: env.shared.limits.buffers.clone(),
            metrics: env.metrics.clone(),
        }
    }
}

impl Offload for PoolOffer {
    fn hand_over(&mut self, request: &Request<'_>, head: &[u8]) -> Handover {
        // A copy larger than a pooled buffer (a body, mostly) must fit in the budget.
        let copied = head.len() + request.body.len();
        let charge = if copied > BUF_SIZE {
            // The connection holds as much again: a request that could not be held twice with
            // nothing else held is too large for this server (413).
            let beyond = beyond_pooled(copied);
            if beyond.saturating_mul(2) > self.buffers.limit() {
                return Handover::Refused(Status::PAYLOAD_TOO_LARGE);
            }
            let mut charge = Charge::new(&self.buffers);
            if !charge.try_grow(beyond) {
                if let Some(metrics) = &self.metrics {
                    metrics.over_budget();
                }
                return Handover::Refused(Status::SERVICE_UNAVAILABLE);
            }
            Some(charge)
        } else {
            None
        };
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            head: head.to_vec(),
            body: request.body.to_vec(),
            ticket: self.ticket,
            reply: self.inbox.outbox.clone(),
            state: state.clone(),
            _charge: charge,
        };
        match self.pool.jobs().try_send(job) {
            Ok(()) => {
                self.inbox.pending.insert(self.ticket, state);
                Handover::Away
            }
            // Full, or no thread could start: a quick 503 beats a long wait.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Handover::Refused(Status::SERVICE_UNAVAILABLE)
            }
        }
    }
}
