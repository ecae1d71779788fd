//! Connection buffers, and the per-loop pool they are lent from.
//!
//! A connection needs an input and an output buffer only while it has bytes in flight. An idle
//! keep-alive connection gives both back to its loop's [`BufPool`], so ten thousand idle
//! connections cost ten thousand small structs, not ten thousand pairs of buffers.
//!
//! A buffer grows past its pooled size only for a large request or response, and all such
//! growth of a server's connections, together, is bounded by its [`BufferBudget`].

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::server::io_util::{map_anonymous, unmap};

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
/// handed to the handler pool. Shared by every loop and thread of a server, and in fork mode by
/// every child (see [`BufferBudget::share_with_children`]).
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    /// The counts, while this process alone keeps them.
    own: Counts,
    /// Fork mode: the counts, in memory every child shares, and each child's part of them.
    across: OnceLock<AcrossProcesses>,
    /// In a fork-mode child: its slot in `across` ([`NOT_A_CHILD`] elsewhere).
    child: AtomicUsize,
}

#[derive(Debug, Default)]
struct Counts {
    /// What all buffers hold beyond their first [`BUF_SIZE`].
    held: AtomicUsize,
    /// How many times there was no room for what was asked.
    declined: AtomicU64,
}

const NOT_A_CHILD: usize = usize::MAX;

impl BufferBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(BufferBudget {
            limit,
            own: Counts::default(),
            across: OnceLock::new(),
            child: AtomicUsize::new(NOT_A_CHILD),
        })
    }

    fn counts(&self) -> &Counts {
        self.across.get().map_or(&self.own, AcrossProcesses::counts)
    }

    /// Fork mode, in the parent before its first fork: moves the counts into memory shared with
    /// the children it forks after, so that what every child's connection holds counts against
    /// one limit, as every other mode's connections do, and makes a slot for each of up to
    /// `children` children to count its own part in (see [`BufferBudget::serve_as_child`]).
    /// Returns how many slots there are: those made by an earlier call, if there was one.
    pub(crate) fn share_with_children(&self, children: usize) -> io::Result<usize> {
        if self.across.get().is_none() {
            let across = AcrossProcesses::new(children)?;
            // What this process already holds moves over with it (nothing, as fork mode starts).
            let counts = across.counts();
            counts
                .held
                .store(self.own.held.load(Ordering::Relaxed), Ordering::Relaxed);
            let declined = self.own.declined.load(Ordering::Relaxed);
            counts.declined.store(declined, Ordering::Relaxed);
            let _ = self.across.set(across);
        }
        Ok(self.across.get().map_or(0, |across| across.slots))
    }

    /// In a child just forked, before it serves: counts what it takes and gives back in `slot`
    /// as well, the slot its parent chose for it and will read once it has exited.
    pub(crate) fn serve_as_child(&self, slot: usize) {
        debug_assert!(self.across.get().is_some_and(|across| slot < across.slots));
        self.child.store(slot, Ordering::Relaxed);
    }

    /// In the parent, once the child counting in `slot` has exited: takes back whatever it still
    /// held, so a child that died holding a body (killed, or out of memory) takes none of the
    /// budget with it, and empties the slot for the next child.
    pub(crate) fn child_exited(&self, slot: usize) {
        if let Some(across) = self.across.get() {
            let left = across.slot(slot).swap(0, Ordering::Relaxed);
            let release = |held: usize| Some(held.saturating_sub(left));
            let _ =
                (self.counts().held).fetch_update(Ordering::Relaxed, Ordering::Relaxed, release);
        }
    }

    /// This process's own part of the counts, if it is a fork-mode child.
    fn child_part(&self) -> Option<&AtomicUsize> {
        let slot = self.child.load(Ordering::Relaxed);
        if slot == NOT_A_CHILD {
            return None;
        }
        self.across.get().map(|across| across.slot(slot))
    }

    /// The most all buffers may hold beyond their first [`BUF_SIZE`].
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What they hold beyond it now.
    pub fn held(&self) -> usize {
        self.counts().held.load(Ordering::Relaxed)
    }

    /// What is left under the limit now.
    pub fn left(&self) -> usize {
        self.limit.saturating_sub(self.held())
    }

    /// How many times it has had no room for what was asked: a request refused (a body, the
    /// pool's copy of one, a listing) or a file sent without the coding first asked for.
    pub fn declined(&self) -> u64 {
        self.counts().declined.load(Ordering::Relaxed)
    }

    /// Whether `n` more bytes would fit under the limit now, taking none (counted as declined if
    /// not: asked by a client that waits for `100 Continue` before it sends a body).
    pub(crate) fn has_room(&self, n: usize) -> bool {
        let room = n <= self.left();
        if !room {
            self.counts().declined.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    /// Takes `n` more bytes if they fit under the limit.
    fn try_take(&self, n: usize) -> bool {
        let counts = self.counts();
        let fits = |held: usize| held.checked_add(n).filter(|&total| total <= self.limit);
        let taken = (counts.held)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits)
            .is_ok();
        if taken {
            self.count_child_part(n, true);
        } else {
            counts.declined.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes `n` more bytes, over the limit or not.
    fn take(&self, n: usize) {
        self.counts().held.fetch_add(n, Ordering::Relaxed);
        self.count_child_part(n, true);
    }

    fn give(&self, n: usize) {
        self.count_child_part(n, false);
        self.counts().held.fetch_sub(n, Ordering::Relaxed);
    }

    /// A fork-mode child counts its own part after taking and before giving back, so that if it
    /// dies between the two counts, its part is short of what the total holds for it (a leak of
    /// that one step's bytes), never beyond it (the parent would take back more than it took).
    fn count_child_part(&self, n: usize, taken: bool) {
        if let Some(part) = self.child_part() {
            if taken {
                part.fetch_add(n, Ordering::Relaxed);
            } else {
                part.fetch_sub(n, Ordering::Relaxed);
            }
        }
    }
}

/// A budget's counts in a mapping shared (anonymous, `MAP_SHARED`) with the children forked
/// after it was made, followed by one slot per child: every child writes the same physical
/// pages, with atomic operations, as the threads of one process would.
#[derive(Debug)]
struct AcrossProcesses {
    at: NonNull<u8>,
    /// How many children's slots follow the counts.
    slots: usize,
}

// SAFETY: the mapping is only ever read and written through shared references to atomics; the
// pointer itself never changes.
unsafe impl Send for AcrossProcesses {}
unsafe impl Sync for AcrossProcesses {}

impl AcrossProcesses {
    /// Where the slots start: past the counts, on a cache line of their own.
    const SLOTS_AT: usize = 128;

    fn new(slots: usize) -> io::Result<Self> {
        let at = map_anonymous(Self::len(slots), true)?;
        // Zero-filled pages are zero counts: `Counts` and `AtomicUsize` are plain integers.
        Ok(AcrossProcesses { at, slots })
    }

    fn len(slots: usize) -> usize {
        Self::SLOTS_AT + slots * size_of::<AtomicUsize>()
    }

    fn counts(&self) -> &Counts {
        const { assert!(size_of::<Counts>() <= Self::SLOTS_AT) };
        // SAFETY: the mapping is page-aligned, zero-filled (zero counts) and at least
        // `SLOTS_AT` long, and stays mapped until `drop`, which takes `&mut self`.
        unsafe { self.at.cast::<Counts>().as_ref() }
    }

    fn slot(&self, slot: usize) -> &AtomicUsize {
        assert!(slot < self.slots, "slot {slot} of {}", self.slots);
        // SAFETY: within the mapping (checked just above), aligned (`SLOTS_AT` and the page are
        // multiples of 8), zero-filled or written only as an `AtomicUsize`; mapped until `drop`.
        unsafe {
            let at = self
                .at
                .add(Self::SLOTS_AT + slot * size_of::<AtomicUsize>());
            at.cast::<AtomicUsize>().as_ref()
        }
    }
}

impl Drop for AcrossProcesses {
    fn drop(&mut self) {
        // Nothing borrows it past `self`. A child's copy is its own, and is never dropped (it
        // leaves with `_exit`).
        unmap(self.at, Self::len(self.slots));
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

    /// Fork mode's budget: a child's takes count in the total its parent sees, and what a child
    /// still held when it exited is taken back when the parent says so, from that child's slot
    /// alone.
    #[test]
    fn a_child_counts_in_the_shared_total_and_its_part_comes_back_when_it_exits() {
        let budget = BufferBudget::new(10_000);
        assert!(budget.try_take(100), "the parent's own");
        assert_eq!(budget.share_with_children(4).unwrap(), 4);
        assert_eq!(budget.share_with_children(8).unwrap(), 4, "made once");
        assert_eq!(budget.held(), 100, "what was held moves over");
        for (slot, holds) in [(1, 4_000), (3, 2_500)] {
            // SAFETY: the child only updates atomics in memory already mapped and leaves with
            // `_exit`: nothing that could need a lock another thread of this process held.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                budget.serve_as_child(slot);
                let took = budget.try_take(holds + 500);
                budget.give(500);
                // SAFETY: ends the forked copy without running this process's destructors.
                unsafe { libc::_exit(if took { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child, writing its status into `status`.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
        assert_eq!(
            budget.held(),
            100 + 4_000 + 2_500,
            "the children's takes, seen here"
        );
        assert!(
            !budget.try_take(4_000),
            "the limit is the children's and the parent's"
        );
        assert_eq!(budget.declined(), 1);
        budget.child_exited(3);
        assert_eq!(budget.held(), 100 + 4_000);
        budget.child_exited(1);
        assert_eq!(budget.held(), 100, "the parent's own is still held");
        budget.child_exited(1);
        assert_eq!(budget.held(), 100, "a slot is emptied once taken back");
        budget.give(100);
        assert_eq!(budget.held(), 0);
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
