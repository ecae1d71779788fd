//! The loop's clock: the current instant for timers, and the `Date` header and access-log time,
//! formatted once a second rather than once per request.
//!
//! Each event loop (or worker thread) owns one [`Clock`] and calls [`Clock::tick`] once per
//! wake-up, as nginx's `ngx_time_update` does. It is never shared between threads: a cache that
//! several threads rewrite in place is a data race, however harmless it looks.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ANCHOR: millis
/// A moment on the monotonic clock, in whole milliseconds since the process first asked
/// (rounded down). Connections keep their timers in these: 8 bytes where an `Instant` takes 16,
/// and a deadline is an integer addition, compared as an integer with the loop's current
/// `Millis` (one clock conversion per wake-up, in [`Clock::tick`], not one per request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

/// `Millis(0)`, as an `Instant` and as a reading of `CLOCK_MONOTONIC` (the clock `Instant`
/// reads on Linux), taken together when the process first asks.
struct Epoch {
    instant: Instant,
    nanos: u64,
}

fn epoch() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| Epoch {
        instant: Instant::now(),
        nanos: monotonic_nanos(),
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds, read directly: the reading behind `Instant::now`, without
/// the conversions around it and the `Instant` to `Millis` arithmetic after (about 30
/// instructions per wake-up of a loop, by benches/callgrind-per-request.sh).
fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points at one. It
    // cannot fail for CLOCK_MONOTONIC with a valid pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Millis {
    /// `at`, rounded down to the millisecond.
    pub fn of(at: Instant) -> Millis {
        let since = at.saturating_duration_since(epoch().instant);
        Millis(since.as_secs() * 1000 + u64::from(since.subsec_millis()))
    }

    /// Now, read from the monotonic clock. (It may differ from `Millis::of(Instant::now())` by
    /// the few nanoseconds between the two readings of the epoch: by a millisecond at most,
    /// and rarely.)
    fn now() -> Millis {
        let epoch = epoch();
        Millis(monotonic_nanos().saturating_sub(epoch.nanos) / 1_000_000)
    }

    pub fn instant(self) -> Instant {
        epoch().instant + Duration::from_millis(self.0)
    }

    /// `duration` later (whole milliseconds of it).
    #[inline]
    pub fn after(self, duration: Duration) -> Millis {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(ms))
    }

    /// The first reading by which `duration` has surely passed since a moment read as `self`:
    /// a timeout's deadline. A reading rounds down, so the moment may have come up to a
    /// millisecond after it; without the millisecond added here, a timeout could fire that much
    /// before its whole duration had passed.
    #[inline]
    pub fn deadline_after(self, duration: Duration) -> Millis {
        self.after(duration).after(Duration::from_millis(1))
    }
}
// ANCHOR_END: millis

pub struct Clock {
    /// Now, as of the last tick: timers compare with it as an integer.
    now_ms: Millis,
    /// When the wall-clock second will have changed, on the monotonic clock: until then the
    /// formatted dates stay valid, and a tick costs one monotonic clock read.
    next_second: Millis,
    /// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate, always 29 bytes).
    http_date: [u8; 29],
    /// `06/Nov/1994:08:49:37 +0000`, the Common Log Format time.
    log_date: [u8; 26],
    /// The wall-clock second both dates show, counted from the Unix epoch.
    unix_second: u64,
}

impl Clock {
    pub fn new() -> Self {
        Clock::at(Instant::now(), SystemTime::now())
    }

    /// A clock reading `wall` at the monotonic instant `now` (tests use a fixed date).
    pub fn at(now: Instant, wall: SystemTime) -> Self {
        let mut clock = Clock {
            now_ms: Millis::of(now),
            next_second: Millis::of(now),
            http_date: [b' '; 29],
            log_date: [b' '; 26],
            unix_second: 0,
        };
        clock.set_wall(wall);
        clock
    }

    /// Reads the monotonic clock; re-formats the dates only when a new second has begun.
    pub fn tick(&mut self) {
        self.now_ms = Millis::now();
        if self.now_ms >= self.next_second {
            self.set_wall(SystemTime::now());
        }
    }

    /// Now, as of the last tick (to the millisecond, rounded down).
    pub fn now(&self) -> Instant {
        self.now_ms.instant()
    }

    /// [`Clock::now`] in milliseconds, for timers.
    pub fn now_ms(&self) -> Millis {
        self.now_ms
    }

    pub fn http_date(&self) -> &[u8; 29] {
        &self.http_date
    }

    pub fn log_date(&self) -> &[u8] {
        &self.log_date
    }

    /// The wall-clock second the dates show: a new value means new dates.
    pub fn unix_second(&self) -> u64 {
        self.unix_second
    }

    fn set_wall(&mut self, wall: SystemTime) {
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.unix_second = since_epoch.as_secs();
        self.http_date = Civil::of_secs(self.unix_second).http_date();
        // Same fields, CLF order: "Sun, 06 Nov 1994 08:49:37 GMT" -> "06/Nov/1994:08:49:37 +0000".
        let d = &self.http_date;
        let parts: [&[u8]; 8] = [
            &d[5..7],
            b"/",
            &d[8..11],
            b"/",
            &d[12..16],
            b":",
            &d[17..25],
            b" +0000",
        ];
        let mut at = 0;
        for part in parts {
            self.log_date[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        // The second changes within 1,000 ms less the sub-second part, counted from a moment
        // somewhere in the millisecond `now_ms` names: one more millisecond makes it certain.
        let left = 1_000 - u64::from(since_epoch.subsec_millis());
        self.next_second = Millis(self.now_ms.0 + left + 1);
    }
}

/// `at` in whole seconds since the epoch, rounded down; 0 for a moment before it. The one rule
/// for a file's dates in this server: its `Last-Modified` and its listing entry both count a
/// date before 1970 as the epoch (its entity tag has [`unix_time`]).
pub fn unix_seconds(at: SystemTime) -> u64 {
    shown_seconds(unix_time(at))
}

/// The whole seconds of a [`unix_time`] as a file's dates show them: 0 before the epoch.
/// (Apart from [`unix_seconds`] for a caller that has the `unix_time` already: the tag and the
/// dates of a file read its time once.)
pub fn shown_seconds((seconds, _): (i64, u32)) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

/// `at` as whole seconds since the epoch, rounded down (toward the past, so negative before
/// it), and the nanoseconds into that second: a file's time as its entity tag writes it. Both
/// parts count there: a file rewritten within one second (its `Last-Modified` the same) must
/// still get another tag, and so must two versions of a file dated before 1970 (its dates show
/// them both as the epoch).
pub fn unix_time(at: SystemTime) -> (i64, u32) {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => (
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-whole, 0),
                // 0.25 s before the epoch is 0.75 s into the second that starts 1 s before it.
                nanos => (-whole - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

/// The moment a [`unix_time`] names (as a `struct timespec` does, a file's `st_ctime` and
/// `st_ctime_nsec` among them): `nanos` into the second that starts `seconds` after the epoch,
/// counted forward even before it (-1 s and 250,000,000 ns is 0.75 s before the epoch).
pub fn from_unix_time(seconds: i64, nanos: u32) -> SystemTime {
    let second = match seconds >= 0 {
        true => UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs()),
        false => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    };
    second + Duration::from_nanos(u64::from(nanos))
}

/// The last second a four-digit year can show: 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

/// A moment as the UTC calendar reads it (proleptic Gregorian), for the dates this server writes:
/// `Date`, `Last-Modified`, the access log, directory listings. From whole seconds since the epoch;
/// a moment before the epoch reads as the epoch (a file's modification time can be any number, and
/// a date before 1970 is no validator a client could have had from us: `Validators::mtime` counts
/// it as 0 too, while its entity tag keeps the time), one after 9999 as its last second (HTTP dates
/// have four digits of year). Written here because httpdate's formatter panics on a moment before
/// 1970 or after 9999 (a directory holding a file so dated could not be listed), and formats
/// through `fmt`, on every static file's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 0 for Sunday.
    pub weekday: u8,
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

impl Civil {
    pub fn of_secs(secs: u64) -> Civil {
        let secs = secs.min(LAST_SECOND);
        let (days, rest) = (secs / 86_400, secs % 86_400);
        // Days since 1970-01-01 to a date (Howard Hinnant's `civil_from_days`), counted from
        // 0000-03-01 so that a leap day ends its year; all unsigned, as no day precedes 1970.
        let z = days + 719_468;
        let (era, doe) = (z / 146_097, z % 146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        // Every value below fits its type: the year is at most 9999 by the cap above.
        Civil {
            year: (yoe + era * 400 + u64::from(month <= 2)) as u16,
            month: month as u8,
            day: (doy - (153 * mp + 2) / 5 + 1) as u8,
            hour: (rest / 3_600) as u8,
            minute: (rest % 3_600 / 60) as u8,
            second: (rest % 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u8,
        }
    }

    /// `at`, to the second (rounded down).
    pub fn of(at: SystemTime) -> Civil {
        Civil::of_secs(unix_seconds(at))
    }

    /// The IMF-fixdate (RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn http_date(&self) -> [u8; 29] {
        let mut out = *b"Sun, 00 Jan 0000 00:00:00 GMT";
        out[..3].copy_from_slice(WEEKDAYS[usize::from(self.weekday)]);
        two_digits(&mut out[5..7], self.day);
        out[8..11].copy_from_slice(MONTHS[usize::from(self.month - 1)]);
        two_digits(&mut out[12..14], (self.year / 100) as u8);
        two_digits(&mut out[14..16], (self.year % 100) as u8);
        two_digits(&mut out[17..19], self.hour);
        two_digits(&mut out[20..22], self.minute);
        two_digits(&mut out[23..25], self.second);
        out
    }

    /// [`Civil::http_date`] as a `String` (a header's value).
    pub fn http_date_string(&self) -> String {
        // Always ASCII, so never the default; checked rather than assumed, for a few
        // instructions.
        String::from_utf8(self.http_date().to_vec()).unwrap_or_default()
    }
}

/// `n` (below 100) as two ASCII digits.
fn two_digits(out: &mut [u8], n: u8) {
    out[0] = b'0' + n / 10;
    out[1] = b'0' + n % 10;
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_unix_time` undoes `unix_time`, before the epoch too, where the nanoseconds still
    /// count forward into their second.
    #[test]
    fn unix_times_go_both_ways() {
        assert_eq!(
            from_unix_time(-1, 250_000_000),
            UNIX_EPOCH - Duration::from_millis(750)
        );
        for at in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_795_841_067, 123_456_789),
            UNIX_EPOCH - Duration::new(0, 1),
            UNIX_EPOCH - Duration::new(315_619_200, 999_999_999),
            UNIX_EPOCH - Duration::from_secs(86_400),
        ] {
            let (seconds, nanos) = unix_time(at);
            assert_eq!(from_unix_time(seconds, nanos), at, "{at:?}");
        }
    }

    #[test]
    fn formats_both_dates() {
        let clock = Clock::at(
            Instant::now(),
            UNIX_EPOCH + Duration::from_millis(784_111_777_250),
        );
        assert_eq!(clock.http_date(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(clock.log_date(), b"06/Nov/1994:08:49:37 +0000");
    }

    #[test]
    fn refreshes_at_the_next_wall_second_not_before() {
        let start = Instant::now();
        let clock = Clock::at(start, UNIX_EPOCH + Duration::from_millis(784_111_777_250));
        assert_eq!(clock.next_second, Millis(Millis::of(start).0 + 751));
    }

    #[test]
    fn millis_round_down_and_add() {
        let at = Instant::now() + Duration::from_micros(2_500_700);
        let ms = Millis::of(at);
        assert!(ms.instant() <= at && at - ms.instant() < Duration::from_millis(1));
        assert_eq!(ms.after(Duration::from_secs(5)), Millis(ms.0 + 5000));
        assert_eq!(ms.after(Duration::MAX), Millis(u64::MAX));
    }

    /// A deadline is never reached before its whole duration has passed, however late in its
    /// millisecond the timer started.
    #[test]
    fn deadlines_are_never_early() {
        let duration = Duration::from_millis(300);
        for micros in [0, 1, 500, 999] {
            let start = Millis(1_000_000).instant() + Duration::from_micros(micros);
            let deadline = Millis::of(start).deadline_after(duration);
            let just_before = start + duration - Duration::from_nanos(1);
            assert!(Millis::of(just_before) < deadline, "{micros} µs in");
            assert!(Millis::of(start + duration + Duration::from_millis(1)) >= deadline);
        }
    }

    /// httpdate (which reads and writes the same format) agrees on every date it can write:
    /// the first and last seconds of days around leap days and centuries, and a spread of
    /// moments between 1970 and 9999.
    #[test]
    fn civil_dates_read_as_httpdate_writes_them() {
        let mut moments = vec![0, 59, 86_399, 86_400, 784_111_777, LAST_SECOND];
        for (y, m, d) in [
            (2000, 2, 29),
            (2000, 3, 1),
            (2100, 2, 28),
            (2100, 3, 1),
            (2400, 2, 29),
        ] {
            // Days from 1970-01-01 to y-m-d, by counting (the test's own arithmetic).
            let leap = |y: u64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let mut days: u64 = (1970..y).map(|y| if leap(y) { 366 } else { 365 }).sum();
            let lengths = [
                31,
                if leap(y) { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
            ];
            days += lengths[..m - 1].iter().sum::<u64>() + (d - 1);
            moments.extend([days * 86_400, days * 86_400 + 86_399]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            // xorshift: moments all over the range, the same ones every run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            moments.push(x % (LAST_SECOND + 1));
        }
        for secs in moments {
            let ours = Civil::of_secs(secs).http_date();
            let theirs = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(std::str::from_utf8(&ours).unwrap(), theirs, "{secs}");
        }
    }

    #[test]
    fn civil_dates_stop_at_both_ends() {
        let epoch = "Thu, 01 Jan 1970 00:00:00 GMT";
        let before = UNIX_EPOCH - Duration::from_secs(315_619_200);
        assert_eq!(Civil::of(before).http_date_string(), epoch);
        assert_eq!(Civil::of_secs(0).http_date_string(), epoch);
        let last = "Fri, 31 Dec 9999 23:59:59 GMT";
        assert_eq!(Civil::of_secs(LAST_SECOND).http_date_string(), last);
        assert_eq!(Civil::of_secs(LAST_SECOND + 1).http_date_string(), last);
        assert_eq!(Civil::of_secs(u64::MAX).http_date_string(), last);
    }

    #[test]
    fn tick_keeps_a_valid_date() {
        let mut clock = Clock::new();
        let before = clock.now();
        clock.tick();
        assert!(clock.now() >= before);
        assert!(httpdate::parse_http_date(std::str::from_utf8(clock.http_date()).unwrap()).is_ok());
    }
}
