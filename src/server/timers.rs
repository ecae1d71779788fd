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

use crate::http::{Clock, Millis};

/// Identifies a connection across slab-key reuse: (slab key, generation).
pub(crate) type TimerKey = (usize, u32);

// ANCHOR: timers
/// The heap holds one entry per connection, so its entries are kept small: a deadline in
/// milliseconds and the connection's key, 16 bytes where an `Instant` and a `usize` key took 32.
/// With ten thousand idle connections that is 160 KB.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Armed, u32, u32)>>,
}

/// A connection's record of its earliest entry in the heap (that entry's deadline), or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Armed(u64);

impl Armed {
    pub const NONE: Armed = Armed(0);

    fn of(deadline: Millis) -> Armed {
        Armed(deadline.0.saturating_add(1))
    }

    fn deadline(self) -> Millis {
        Millis(self.0 - 1)
    }
}

impl Timers {
    /// Makes sure a timer fires no later than `deadline` for `key`. `armed` is the connection's
    /// record of its earliest entry in the heap.
    #[inline]
    pub fn arm(&mut self, key: TimerKey, armed: &mut Armed, deadline: Option<Millis>) {
        if let Some(deadline) = deadline {
            let at = Armed::of(deadline);
            if *armed == Armed::NONE || at < *armed {
                // A slab key is below the connection limit, far below 2^32.
                debug_assert!(u32::try_from(key.0).is_ok());
                self.heap.push(Reverse((at, key.0 as u32, key.1)));
                *armed = at;
            }
        }
    }

    /// Removes and returns an entry due at `now`, if any: (the entry, as the connection that
    /// armed it recorded it; whose).
    pub fn pop_due(&mut self, now: Millis) -> Option<(Armed, TimerKey)> {
        match self.heap.peek() {
            Some(Reverse((at, ..))) if at.deadline() <= now => {
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

/// How long a loop may sleep: until its earliest timer, or the earliest of `others` (any of
/// which may be absent), counted from the clock's reading at the start of the turn. `None`:
/// until an event. The timers' part is integer arithmetic on milliseconds: it runs every turn.
pub(crate) fn sleep_for<const N: usize>(
    timers: &Timers,
    clock: &Clock,
    others: [Option<Instant>; N],
) -> Option<Duration> {
    let mut sleep = (timers.heap.peek())
        .map(|Reverse((at, ..))| at.deadline().0.saturating_sub(clock.now_ms().0))
        .map(Duration::from_millis);
    // The earliest of `others`, then one subtraction. Written as a loop that computed a
    // duration for each present one, this cost about 50 more instructions a turn
    // (`benches/callgrind-per-request.sh`), and as an iterator chain (`chain`, `flatten`,
    // `min`) 60 more than that.
    let earliest = others
        .into_iter()
        .fold(None, |earliest, at| match (earliest, at) {
            (Some(a), Some(b)) => Some(Instant::min(a, b)),
            (a, b) => a.or(b),
        });
    if let Some(at) = earliest {
        let wait = at.saturating_duration_since(clock.now());
        sleep = Some(sleep.map_or(wait, |sleep| sleep.min(wait)));
    }
    sleep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_deadlines_push_nothing_earlier_ones_do() {
        let t0 = Millis(1000);
        let mut timers = Timers::default();
        let mut armed = Armed::NONE;
        timers.arm((1, 0), &mut armed, Some(t0.after(Duration::from_secs(5))));
        timers.arm((1, 0), &mut armed, Some(t0.after(Duration::from_secs(9))));
        assert_eq!(timers.len(), 1);
        timers.arm((1, 0), &mut armed, Some(t0.after(Duration::from_secs(2))));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.pop_due(Millis(2999)), None);
        assert_eq!(timers.pop_due(Millis(3000)), Some((armed, (1, 0))));
        assert_eq!(timers.pop_due(Millis(4000)), None);
        let (_, (key, _)) = timers.pop_due(Millis(6000)).unwrap();
        assert_eq!(key, 1);
    }

    #[test]
    fn sleeps_until_the_earliest_timer_or_other_deadline() {
        let clock = Clock::new();
        let now = clock.now_ms();
        let mut timers = Timers::default();
        assert_eq!(sleep_for(&timers, &clock, [None]), None);
        let mut armed = Armed::NONE;
        timers.arm(
            (1, 0),
            &mut armed,
            Some(now.after(Duration::from_millis(40))),
        );
        assert_eq!(
            sleep_for(&timers, &clock, [None]),
            Some(Duration::from_millis(40))
        );
        let soon = clock.now() + Duration::from_millis(15);
        let slept = sleep_for(&timers, &clock, [None, Some(soon)]);
        assert_eq!(slept, Some(Duration::from_millis(15)));
        let past = Some(clock.now() - Duration::from_millis(5));
        assert_eq!(sleep_for(&timers, &clock, [past]), Some(Duration::ZERO));
    }
}
