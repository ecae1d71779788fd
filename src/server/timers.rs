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
use std::time::{Duration, Instant};

/// Identifies a connection across slab-key reuse: (slab key, generation).
pub(crate) type TimerKey = (usize, u32);

// ANCHOR: timers
/// The heap holds one entry per connection, so its entries are kept small: a deadline as
/// milliseconds after the loop started (rounded up: a timer fires up to a millisecond late, never
/// early) and the connection's key, 16 bytes where an `Instant` and a `usize` key took 32. With
/// ten thousand idle connections that is 160 KB.
pub(crate) struct Timers {
    /// What deadlines are counted from.
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Armed, u32, u32)>>,
}

/// A connection's record of its earliest entry in the heap (its deadline, as the heap keeps it),
/// or none: 8 bytes in every connection, where an `Option<Instant>` takes 16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Armed(u64);

impl Armed {
    pub const NONE: Armed = Armed(0);
}

impl Default for Timers {
    fn default() -> Self {
        Timers::new(Instant::now())
    }
}

impl Timers {
    pub fn new(epoch: Instant) -> Self {
        Timers {
            epoch,
            heap: BinaryHeap::new(),
        }
    }

    /// `at` in whole milliseconds after the epoch, rounded up, plus one (0 is "none").
    #[inline]
    fn stamp(&self, at: Instant) -> Armed {
        let since = at.saturating_duration_since(self.epoch);
        let ms = since.as_secs() * 1000 + u64::from(since.subsec_nanos().div_ceil(1_000_000));
        Armed(ms + 1)
    }

    fn instant(&self, armed: Armed) -> Instant {
        self.epoch + Duration::from_millis(armed.0 - 1)
    }

    /// Makes sure a timer fires no later than `deadline` for `key`. `armed` is the connection's
    /// record of its earliest entry in the heap.
    #[inline]
    pub fn arm(&mut self, key: TimerKey, armed: &mut Armed, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            let at = self.stamp(deadline);
            if *armed == Armed::NONE || at < *armed {
                // A slab key is below the connection limit, far below 2^32.
                debug_assert!(u32::try_from(key.0).is_ok());
                self.heap.push(Reverse((at, key.0 as u32, key.1)));
                *armed = at;
            }
        }
    }

    /// The earliest entry, for the poll timeout.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, ..))| self.instant(*at))
    }

    /// Removes and returns an entry due at `now`, if any: (the entry, as the connection that
    /// armed it recorded it; whose).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Armed, TimerKey)> {
        match self.heap.peek() {
            Some(Reverse((at, ..))) if self.instant(*at) <= now => {
                let Reverse((at, key, generation)) = self.heap.pop()?;
                Some((at, (key as usize, generation)))
            }
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
        let mut timers = Timers::new(t0);
        let mut armed = Armed::NONE;
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(5)));
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(9)));
        assert_eq!(timers.len(), 1);
        timers.arm((1, 0), &mut armed, Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(3)),
            Some((armed, (1, 0)))
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3)), None);
    }

    /// Deadlines are kept to the millisecond, rounded up: never due before they are, and due
    /// within a millisecond after; days of uptime later as well.
    #[test]
    fn never_early_at_most_a_millisecond_late() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        for offset in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(7),
            Duration::from_secs(60 * 86_400) + Duration::from_nanos(999_999_999),
        ] {
            let deadline = t0 + offset;
            let mut armed = Armed::NONE;
            timers.arm((3, 7), &mut armed, Some(deadline));
            let fires = timers.next().unwrap();
            assert!(fires >= deadline && fires - deadline < Duration::from_millis(1));
            if offset > Duration::ZERO {
                assert_eq!(timers.pop_due(deadline - Duration::from_nanos(1)), None);
            }
            assert_eq!(timers.pop_due(fires), Some((armed, (3, 7))));
        }
    }
}
