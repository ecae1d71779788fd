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
//!
//! A new entry is pushed no further off than the keep-alive timeout (the heap's `horizon`),
//! even when the deadline is later. Every connection that is answered ends up waiting on that
//! timeout, and its deadline then moves earlier than a header deadline armed at accept (10 s
//! against 5, by default): the header entry would go stale, and every idle connection would
//! hold two entries instead of one. An entry that comes due before its connection's deadline
//! is re-armed, as any other; the cost is one more look at a connection whose head is slower
//! than the keep-alive timeout.

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
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Armed, u32, u32)>>,
    /// How far off a new entry may be: the keep-alive timeout (see the module doc).
    horizon: Duration,
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
    /// Timers whose new entries are at most `horizon` off: the keep-alive timeout. (At least a
    /// tenth of a second, so that a zero timeout, which a library user may set, cannot bring
    /// entries due every millisecond.)
    pub fn new(horizon: Duration) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            horizon: horizon.max(Duration::from_millis(100)),
        }
    }

    /// Makes sure a timer fires no later than `deadline` for `key`. `armed` is the connection's
    /// record of its earliest entry in the heap; `now` the loop's clock.
    #[inline]
    pub fn arm(&mut self, key: TimerKey, armed: &mut Armed, deadline: Option<Millis>, now: Millis) {
        if let Some(deadline) = deadline
            && (*armed == Armed::NONE || Armed::of(deadline) < *armed)
        {
            let at = Armed::of(deadline.min(now.deadline_after(self.horizon)));
            // A slab key is below the connection limit, far below 2^32.
            debug_assert!(u32::try_from(key.0).is_ok());
            self.heap.push(Reverse((at, key.0 as u32, key.1)));
            *armed = at;
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
        let mut timers = Timers::new(Duration::from_secs(60));
        let mut armed = Armed::NONE;
        let arm = |timers: &mut Timers, armed: &mut Armed, secs| {
            timers.arm((1, 0), armed, Some(t0.after(Duration::from_secs(secs))), t0)
        };
        arm(&mut timers, &mut armed, 5);
        arm(&mut timers, &mut armed, 9);
        assert_eq!(timers.len(), 1);
        arm(&mut timers, &mut armed, 2);
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
        let mut timers = Timers::new(Duration::from_secs(5));
        assert_eq!(sleep_for(&timers, &clock, [None]), None);
        let mut armed = Armed::NONE;
        timers.arm(
            (1, 0),
            &mut armed,
            Some(now.after(Duration::from_millis(40))),
            now,
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

    /// A header deadline further off than the keep-alive timeout is armed at the horizon, so the
    /// keep-alive deadline that follows the first answer needs no second entry; the early entry,
    /// once due, is re-armed for the real deadline.
    #[test]
    fn entries_go_no_further_than_the_horizon() {
        let t0 = Millis(1000);
        let secs = Duration::from_secs;
        let mut timers = Timers::new(secs(5));
        let mut armed = Armed::NONE;
        // Accepted: the header deadline, 10 s off, is armed at 5 s.
        timers.arm((1, 0), &mut armed, Some(t0.deadline_after(secs(10))), t0);
        assert_eq!(armed, Armed::of(t0.deadline_after(secs(5))));
        // Answered in the same millisecond: keep-alive for 5 s, no new entry.
        timers.arm((1, 0), &mut armed, Some(t0.deadline_after(secs(5))), t0);
        assert_eq!(timers.len(), 1);
        // Answered a little later: still none (the deadline moved later).
        let t1 = t0.after(Duration::from_millis(3));
        timers.arm((1, 0), &mut armed, Some(t1.deadline_after(secs(5))), t1);
        assert_eq!(timers.len(), 1);
        // The entry comes due before the deadline: the driver re-arms for the real one.
        let due = t0.deadline_after(secs(5));
        assert_eq!(timers.pop_due(due), Some((armed, (1, 0))));
        let mut armed = Armed::NONE;
        timers.arm((1, 0), &mut armed, Some(t1.deadline_after(secs(5))), due);
        assert_eq!(armed, Armed::of(t1.deadline_after(secs(5))));
        // A horizon longer than the deadline changes nothing.
        let mut long = Timers::new(secs(600));
        let mut armed = Armed::NONE;
        long.arm((2, 0), &mut armed, Some(t0.deadline_after(secs(10))), t0);
        assert_eq!(armed, Armed::of(t0.deadline_after(secs(10))));
    }
}
