//! Connection buffers, and the per-loop pool they are lent from.
//!
//! A connection needs an input and an output buffer only while it has bytes in flight. An idle
//! keep-alive connection gives both back to its loop's [`BufPool`], so ten thousand idle
//! connections cost ten thousand small structs, not ten thousand pairs of buffers.

/// The size of a pooled buffer: one read asks for this much.
pub const BUF_SIZE: usize = 8 * 1024;
/// Buffers kept for reuse, per kind; more than this are freed.
const POOL_KEEP: usize = 64;

/// Free buffers, owned by one event loop (or one worker thread): no locking.
#[derive(Default)]
pub struct BufPool {
    /// Input buffers are kept at full length (zeroed once), so a read can target them directly.
    inputs: Vec<Vec<u8>>,
    /// Output buffers are kept empty, with their capacity.
    outputs: Vec<Vec<u8>>,
}

impl BufPool {
    pub fn new() -> Self {
        BufPool::default()
    }

    pub(crate) fn take_input(&mut self) -> Vec<u8> {
        self.inputs.pop().unwrap_or_else(|| vec![0; BUF_SIZE])
    }

    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        self.outputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }

    /// Buffers that grew for a large request or response are freed rather than kept, so one big
    /// upload does not pin memory in the pool.
    pub(crate) fn give_input(&mut self, buf: Vec<u8>) {
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

/// Received bytes not yet consumed: `buf[start..end]`. Requests are parsed (and chunked bodies
/// decoded) in place, so the bytes a handler sees are the bytes that were read.
#[derive(Default)]
pub(crate) struct Input {
    buf: Vec<u8>,
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

    /// Drops the first `n` unconsumed bytes.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Keeps only the first `len` unconsumed bytes.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len());
        self.end = self.start + len;
    }

    /// Room to read into, enough that the unconsumed bytes can grow to `cap` in all (but at
    /// least one pooled buffer's worth). Never empty while `len() < cap`.
    pub fn spare(&mut self, pool: &mut BufPool, cap: usize) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = pool.take_input();
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() && self.len() < cap {
            // Grow geometrically, up to what the current request may need: memory follows the
            // bytes that actually arrive, not the Content-Length a client claims.
            let grown = (self.buf.len() * 2).clamp(BUF_SIZE, cap.max(BUF_SIZE));
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into the slice [`Input::spare`] returned.
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// The buffer's size: what the connection's input holds in memory.
    #[cfg(test)]
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
        let spare = input.spare(&mut pool, BUF_SIZE);
        assert_eq!(spare.len(), BUF_SIZE);
        spare[..5].copy_from_slice(b"hello");
        input.filled(5);
        input.consume(2);
        assert_eq!(input.data(), b"llo");
        // Fill to the end, then ask again: the unconsumed bytes move to the front.
        let n = input.spare(&mut pool, BUF_SIZE).len();
        input.filled(n);
        assert_eq!(input.spare(&mut pool, BUF_SIZE).len(), 2);
        assert_eq!(&input.data()[..3], b"llo");
    }

    #[test]
    fn grows_up_to_the_cap_and_no_further() {
        let mut pool = BufPool::new();
        let mut input = Input::default();
        let cap = BUF_SIZE * 3;
        let mut total = 0;
        loop {
            let n = input.spare(&mut pool, cap).len();
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
        input.spare(&mut pool, BUF_SIZE);
        input.filled(3);
        input.release(&mut pool);
        assert!(input.holds_buffer(), "bytes in flight keep the buffer");
        input.consume(3);
        input.release(&mut pool);
        assert!(!input.holds_buffer());
        assert_eq!(pool.pooled(), (1, 0));

        let n = input.spare(&mut pool, BUF_SIZE * 4).len();
        input.filled(n);
        input.spare(&mut pool, BUF_SIZE * 4);
        input.consume(input.len());
        input.release(&mut pool);
        assert_eq!(pool.pooled(), (0, 0), "a grown buffer is not pooled");
    }
}
