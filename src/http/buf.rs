//! Connection buffers, and the per-loop pool they are lent from.
//!
//! A connection needs an input and an output buffer only while it has bytes in flight. An idle
//! keep-alive connection gives both back to its loop's [`BufPool`], so ten thousand idle
//! connections cost ten thousand small structs, not ten thousand pairs of buffers.
//!
//! A buffer grows past its pooled size only for a large request or response, and all such
//! growth of a server's connections, together, is bounded by its [`BufferBudget`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The size of a pooled buffer: one read asks for this much.
pub const BUF_SIZE: usize = 8 * 1024;
/// Buffers kept for reuse, per kind; more than this are freed.
const POOL_KEEP: usize = 64;

/// Free buffers, owned by one event loop (or one worker thread): no locking.
#[derive(Default)]
pub struct BufPool {
    /// Input buffers are kept at full length (zeroed once), so a read can target them directly.
    inputs: Vec<Box<[u8]>>,
    /// Output buffers are kept empty, with their capacity.
    outputs: Vec<Vec<u8>>,
}

impl BufPool {
    pub fn new() -> Self {
        BufPool::default()
    }

    pub(crate) fn take_input(&mut self) -> Box<[u8]> {
        self.inputs
            .pop()
            .unwrap_or_else(|| vec![0; BUF_SIZE].into_boxed_slice())
    }

    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        self.outputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }

    /// Buffers that grew for a large request or response are freed rather than kept, so one big
    /// upload does not pin memory in the pool.
    pub(crate) fn give_input(&mut self, buf: Box<[u8]>) {
        if buf.len() == BUF_SIZE && self.inputs.len() < POOL_KEEP {
            self.inputs.push(buf);
        }
    }

    pub(crate) fn give_output(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == BUF_SIZE && self.outputs.len() < POOL_KEEP {
            buf.clear();
            self.outputs.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn pooled(&self) -> (usize, usize) {
        (self.inputs.len(), self.outputs.len())
    }
}

/// `--max-buffer-bytes`: what the buffers of all of a server's connections may hold, together,
/// beyond one pooled buffer ([`BUF_SIZE`]) each of input and of output. A request body is kept
/// whole for its handler, so without this a client could make the server hold
/// `--max-body-bytes` for each connection it opens (a hundred connections sending 10 MiB each,
/// and never its last byte, held 1 GB). A connection whose input would grow past what is left
/// gets 503 and is closed ([`Conn`](super::Conn)), or 413 if its body could not fit even with
/// nothing else held; output is counted but never refused (its response is already made), so
/// that what it holds counts against the requests that come next; so is the copy of a request
/// handed to the handler pool. Shared by every loop and thread of a server (a fork-mode child,
/// a process of its own, has its own).
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    held: AtomicUsize,
    /// How many times it had no room for what was asked.
    declined: AtomicU64,
}

impl BufferBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(BufferBudget {
            limit,
            held: AtomicUsize::new(0),
            declined: AtomicU64::new(0),
        })
    }

    /// The most all buffers may hold beyond their first [`BUF_SIZE`].
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What they hold beyond it now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// What is left under the limit now.
    pub fn left(&self) -> usize {
        self.limit.saturating_sub(self.held())
    }

    /// How many times it has had no room for what was asked: a request refused (a body, the
    /// pool's copy of one, a listing) or a file sent without the coding first asked for.
    pub fn declined(&self) -> u64 {
        self.declined.load(Ordering::Relaxed)
    }

    /// Whether `n` more bytes would fit under the limit now, taking none (counted as declined if
    /// not: asked by a client that waits for `100 Continue` before it sends a body).
    pub(crate) fn has_room(&self, n: usize) -> bool {
        let room = n <= self.left();
        if !room {
            self.declined.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    /// Takes `n` more bytes if they fit under the limit.
    fn try_take(&self, n: usize) -> bool {
        let fits = |held: usize| held.checked_add(n).filter(|&total| total <= self.limit);
        let taken = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits)
            .is_ok();
        if !taken {
            self.declined.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes `n` more bytes, over the limit or not.
    fn take(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// What one connection's buffers (or one request's copy on the handler pool) hold of a
/// [`BufferBudget`], given back when it is dropped: however a connection ends, its share
/// returns. Made only for buffers that grew: a connection whose buffers never do holds none,
/// and no reference to the budget.
pub(crate) struct Charge {
    budget: Arc<BufferBudget>,
    held: usize,
}

impl Charge {
    pub fn new(budget: &Arc<BufferBudget>) -> Self {
        Charge {
            budget: budget.clone(),
            held: 0,
        }
    }

    /// Holds `n` more if the budget has them.
    pub fn try_grow(&mut self, n: usize) -> bool {
        let taken = self.budget.try_take(n);
        if taken {
            self.held += n;
        }
        taken
    }

    /// Holds exactly `held` from now on, taking more over the limit or not.
    pub fn settle(&mut self, held: usize) {
        if held > self.held {
            self.budget.take(held - self.held);
        } else {
            self.budget.give(self.held - held);
        }
        self.held = held;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

/// Grows a buffer kept at its full length to exactly `size`, zeroed, keeping its bytes: through a
/// `Vec`, whose growth the allocator may do in place (a large block is remapped, not copied).
pub(crate) fn grow(buf: &mut Box<[u8]>, size: usize) {
    let mut grown = std::mem::take(buf).into_vec();
    grown.reserve_exact(size.saturating_sub(grown.len()));
    grown.resize(size, 0);
    *buf = grown.into_boxed_slice();
}

/// What a buffer of `size` bytes holds beyond a pooled one.
pub(crate) fn beyond_pooled(size: usize) -> usize {
    size.saturating_sub(BUF_SIZE)
}

/// Received bytes not yet consumed: `buf[start..end]`. Requests are parsed (and chunked bodies
/// decoded) in place, so the bytes a handler sees are the bytes that were read.
#[derive(Default)]
pub(crate) struct Input {
    /// Kept at its full length, so a boxed slice (a pointer and a length: a `Vec` would add its
    /// capacity, 8 bytes more for every connection).
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Input {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops the first `n` unconsumed bytes. A buffer that grew for a large request is freed
    /// once it holds nothing, rather than kept until the connection is idle (its response may
    /// take long to send).
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > BUF_SIZE {
                self.buf = Box::default();
            }
        }
    }

    /// Keeps only the first `len` unconsumed bytes.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len());
        self.end = self.start + len;
    }

    /// Room to read into (empty only if the buffer is full: see [`Input::grown`]).
    pub fn spare(&mut self, pool: &mut BufPool) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = pool.take_input();
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Whether the buffer is full of unconsumed bytes: no room to read into until it grows.
    #[inline]
    pub fn is_full(&self) -> bool {
        !self.buf.is_empty() && self.len() == self.buf.len()
    }

    /// The size the buffer must grow to before more can be read, if it is full of unconsumed
    /// bytes and they may grow to `cap`: geometrically, up to what the current request may need,
    /// so memory follows the bytes that actually arrive, not the Content-Length a client claims.
    pub fn grown(&self, cap: usize) -> Option<usize> {
        (self.is_full() && self.len() < cap)
            .then(|| (self.buf.len() * 2).clamp(BUF_SIZE, cap.max(BUF_SIZE)))
    }

    /// Grows the buffer to `size` ([`Input::grown`]'s).
    pub fn grow(&mut self, size: usize) {
        grow(&mut self.buf, size);
    }

    /// `n` bytes were read into the slice [`Input::spare`] returned.
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// The buffer's size: what the connection's input holds in memory.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Returns the buffer to the pool if it holds nothing.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.buf.is_empty() {
            pool.give_input(std::mem::take(&mut self.buf));
        }
    }

    /// Whether a buffer is held (for tests of the idle-memory rule).
    pub fn holds_buffer(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_land_after_unconsumed_bytes_and_compact() {
        let mut pool = BufPool::new();
        let mut input = Input::default();
        let spare = input.spare(&mut pool);
        assert_eq!(spare.len(), BUF_SIZE);
        spare[..5].copy_from_slice(b"hello");
        input.filled(5);
        input.consume(2);
        assert_eq!(input.data(), b"llo");
        // Fill to the end, then ask again: the unconsumed bytes move to the front.
        let n = input.spare(&mut pool).len();
        input.filled(n);
        assert_eq!(input.spare(&mut pool).len(), 2);
        assert_eq!(&input.data()[..3], b"llo");
    }

    #[test]
    fn grows_up_to_the_cap_and_no_further() {
        let mut pool = BufPool::new();
        let mut input = Input::default();
        let cap = BUF_SIZE * 3;
        let mut total = 0;
        loop {
            if let Some(size) = input.grown(cap) {
                input.grow(size);
            }
            let n = input.spare(&mut pool).len();
            if n == 0 {
                break;
            }
            input.filled(n);
            total += n;
        }
        assert!(total >= cap, "{total}");
        assert!(total <= cap * 2);
    }

    #[test]
    fn empty_buffers_go_back_to_the_pool_and_big_ones_are_freed() {
        let mut pool = BufPool::new();
        let mut input = Input::default();
        input.spare(&mut pool);
        input.filled(3);
        input.release(&mut pool);
        assert!(input.holds_buffer(), "bytes in flight keep the buffer");
        input.consume(3);
        input.release(&mut pool);
        assert!(!input.holds_buffer());
        assert_eq!(pool.pooled(), (1, 0));

        let n = input.spare(&mut pool).len();
        input.filled(n);
        input.grow(input.grown(BUF_SIZE * 4).unwrap());
        input.consume(input.len());
        assert!(!input.holds_buffer(), "a grown buffer is freed once empty");
        input.release(&mut pool);
        assert_eq!(pool.pooled(), (0, 0), "a grown buffer is not pooled");
    }
}
