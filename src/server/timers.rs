//! Per-loop timers: a min-heap of deadlines, re-armed lazily.
//!
//! Every connection has one deadline at a time (header, body, keep-alive, send or linger; see
//! `http::Conn::deadline`), and it moves on almost every request. Pushing a heap entry per move
//! would cost a log-time insert per request and leave a trail of stale entries. Instead the heap
//! holds, per connection, an entry no later than its deadline: when a deadline moves later (the
//! usual case: keep-alive traffic) nothing happens; when that entry comes due, the loop checks the
//! connection's real deadline and either fires it or re-arms for it. Only a deadline that moves
//! earlier needs a new entry. The loop sleeps in `poll` until the earliest entry, so no connection
//! is scanned unless its timer may have fired.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Identifies a connection across slab-key reuse: (slab key, generation).
pub(crate) type TimerKey = (usize, u32);

// ANCHOR: timers
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    /// Makes sure a timer fires no later than `deadline` for `key`. `armed` is the connection's
    /// record of its earliest entry in the heap.
    #[inline]
    pub fn arm(&mut self, key: TimerKey, armed: &mut Option<Instant>, deadline: Option<Instant>) {
        if let Some(deadline) = deadline
            && armed.is_none_or(|at| deadline < at)
        {
            self.heap.push(Reverse((deadline, key)));
            *armed = Some(deadline);
        }
    }

    /// The earliest entry, for the poll timeout.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns an entry due at `now`, if any: (when it was due, whose).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}
// ANCHOR_END: timers

/// The earliest of `first` and `others`, any of which may be absent: what a loop sleeps until.
pub(crate) fn earliest(
    first: Option<Instant>,
    others: impl IntoIterator<Item = Option<Instant>>,
) -> Option<Instant> {
    others
        .into_iter()
        .fold(first, |earliest, at| match (earliest, at) {
            (Some(earliest), Some(at)) => Some(earliest.min(at)),
            (earliest, at) => earliest.or(at),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_deadlines_push_nothing_earlier_ones_do() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut armed = None;
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(5)));
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(9)));
        assert_eq!(timers.len(), 1);
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.len(), 2);
        assert_eq!(armed, Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(3)),
            Some((t0 + Duration::from_secs(2), (1, 0)))
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3)), None);
    }
}
