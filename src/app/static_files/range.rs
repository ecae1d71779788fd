//! Conditional and range requests against a file's validators (RFC 9110 13 and 14), as pure
//! functions of header values, so each rule is tested on its own.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::{EntityTags, decimal, shown_seconds, trim_ows, unix_seconds, unix_time};

/// A file's validators: what `ETag` and `Last-Modified` are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validators {
    pub len: u64,
    /// Modification time as the entity tag writes it ([`unix_time`]): seconds, signed, and
    /// nanoseconds into the second (a file rewritten within one second, its size the same, must
    /// not keep its tag). Its dates have [`Validators::mtime`].
    stamp: (i64, u32),
    /// The content coding of a precompressed sibling: its entity tag says it, so a tag never
    /// names two representations.
    pub coding: Option<&'static str>,
}

impl Validators {
    pub fn new(len: u64, modified: SystemTime) -> Self {
        Validators {
            len,
            stamp: unix_time(modified),
            coding: None,
        }
    }

    /// Modification time in whole seconds since the epoch (HTTP dates have no finer grain); 0
    /// for a time before it, as `Last-Modified` and the listings show it.
    pub fn mtime(&self) -> u64 {
        shown_seconds(self.stamp)
    }

    /// The validators of a sibling holding content coding `coding`.
    pub fn coded(self, coding: &'static str) -> Self {
        Validators {
            coding: Some(coding),
            ..self
        }
    }

    /// `"<mtime>-<size>"` in hex, as nginx makes it, with the nanoseconds into the second after
    /// a dot when there are any (`"<mtime>.<nanos>-<size>"`: nginx's tag stays the same when a
    /// file is rewritten within a second at the same size, and a browser is then told its old
    /// copy is current); a time before 1970 with a minus sign, as nginx's `%xT` writes it;
    /// `"...-<coding>"` for a sibling. (Written digit by digit into one allocation of the right
    /// size: `format!` cost five times as much. Made once a response: [`Validators::evaluate`]
    /// compares with it, then the `ETag` field takes it.)
    pub fn etag(&self) -> String {
        let coding = self.coding.unwrap_or_default();
        let (seconds, nanos) = self.stamp;
        // Quotes, a sign, then numbers of at most 16, 8 and 16 digits and the coding, each after
        // a separator but the first.
        let mut tag = String::with_capacity(2 + 1 + 16 + (1 + 8) + (1 + 16) + (1 + coding.len()));
        tag.push('"');
        if seconds < 0 {
            tag.push('-');
        }
        push_hex(&mut tag, seconds.unsigned_abs());
        if nanos > 0 {
            tag.push('.');
            push_hex(&mut tag, u64::from(nanos));
        }
        tag.push('-');
        push_hex(&mut tag, self.len);
        if !coding.is_empty() {
            tag.push('-');
            tag.push_str(coding);
        }
        tag.push('"');
        tag
    }

    /// What the preconditions of a GET or HEAD of this file ask for, in RFC 9110 13.2.2's
    /// order: `If-Match`, else `If-Unmodified-Since`, failing gives 412; then `If-None-Match`,
    /// else `If-Modified-Since`, holding gives 304. `weak`: the entity tag we send is weak (an
    /// encoding made on the fly), which `If-Match`'s strong comparison never matches. `now` is
    /// the server's clock: an `If-Modified-Since` later than it cannot be a date the client
    /// had from us (RFC 2616 14.25 called it invalid, and Apache ignores it), unless it is the
    /// file's own `Last-Modified`, as for a file dated in the future. `ours` is
    /// [`Validators::etag`] (without the `W/` of a weak one).
    pub fn evaluate(
        &self,
        conditions: &Conditions<'_>,
        ours: &str,
        weak: bool,
        now: SystemTime,
    ) -> Outcome {
        if let Some(tags) = &conditions.if_match {
            // Strong comparison (13.1.1): neither tag weak, the same opaque tag. A malformed
            // value (see `EntityTags`) holds for nothing.
            let held =
                EntityTags::parse(tags).is_some_and(|tags| tags.any(|tag| !weak && tag == ours));
            if !held {
                return Outcome::PreconditionFailed;
            }
        } else if let Some(since) = conditions.if_unmodified_since.and_then(seconds) {
            if self.mtime() > since {
                return Outcome::PreconditionFailed;
            }
        }
        if let Some(tags) = &conditions.if_none_match {
            // Weak comparison (13.1.2): a match means the client has it. A malformed value
            // matches nothing, and If-Modified-Since is still not asked (13.1.3). First what a
            // browser sends, the one tag it was given: equal to ours, it is a well-formed list
            // of one tag that matches, and the list need not be read (twice) to know it.
            let only = strip_weak(trim_ows(tags));
            let matched = only == ours
                || EntityTags::parse(tags)
                    .is_some_and(|tags| tags.any(|tag| strip_weak(tag) == ours));
            return match matched {
                true => Outcome::NotModified,
                false => Outcome::Send,
            };
        }
        let now = unix_seconds(now);
        match conditions.if_modified_since.and_then(seconds) {
            Some(since) if self.mtime() <= since && (since <= now || since == self.mtime()) => {
                Outcome::NotModified
            }
            _ => Outcome::Send,
        }
    }

    /// Whether `If-Range` lets a Range apply: it must name the current representation exactly,
    /// by strong entity tag or by the very date it was last modified, and a date only if it
    /// can be a strong validator (RFC 9110 13.1.5: the condition MUST be false otherwise). A
    /// `Last-Modified` is strong only if the file was last changed at least a second before
    /// the response that carried it (8.8.2.2), and that response came before `now`: so while
    /// `now` is within a second of the change, any copy of the date a client holds is weak.
    /// (Then the file may have been rewritten within that second after the client's copy was
    /// made, its date the same: its new bytes would be spliced onto the old ones. Apache asks
    /// for a minute; the entity tag, which has the nanoseconds, needs no such rule.)
    pub fn if_range_holds(&self, if_range: Option<&str>, now: SystemTime) -> bool {
        let Some(value) = if_range.map(str::trim) else {
            return true;
        };
        if value.starts_with('"') {
            value == self.etag()
        } else if value.starts_with("W/") {
            false // weak tags never match for ranges
        } else {
            let (seconds_then, nanos) = self.stamp;
            let settled = unix_time(now) >= (seconds_then.saturating_add(1), nanos);
            seconds(value) == Some(self.mtime()) && settled
        }
    }
}

/// `n` in lowercase hex, without leading zeros (`0` for zero), as `{:x}` writes it. The digits
/// are made in a word on the stack and appended at once: pushed one `char` at a time, each paid
/// for a capacity check and a UTF-8 length, and a tag has some thirty.
fn push_hex(out: &mut String, n: u64) {
    let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut text = [0u8; 16];
    for (at, slot) in text[..digits].iter_mut().rev().enumerate() {
        *slot = b"0123456789abcdef"[(n >> (4 * at)) as usize & 0xf];
    }
    // SAFETY: every byte pushed is an ASCII hex digit from the table above, so the string stays
    // UTF-8.
    unsafe { out.as_mut_vec() }.extend_from_slice(&text[..digits]);
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// An HTTP-date as whole seconds since the epoch; `None` for anything else, which the
/// conditions that take a date ignore (RFC 9110 13.1.3, 13.1.4).
fn seconds(date: &str) -> Option<u64> {
    let date = httpdate::parse_http_date(date).ok()?;
    date.duration_since(UNIX_EPOCH).ok().map(|at| at.as_secs())
}

/// The conditional header fields of a request (RFC 9110 13.1), and the Range that If-Range
/// governs. A list may arrive in several fields, joined here into one; a date field sent more
/// than once is a list of dates, which is no date, and is left out. `If-Range` and `Range` are
/// their first field's value, trimmed.
#[derive(Clone, Debug, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<Cow<'a, str>>,
    pub if_unmodified_since: Option<&'a str>,
    pub if_none_match: Option<Cow<'a, str>>,
    pub if_modified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub range: Option<&'a str>,
}

/// What the preconditions decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer as if there were none (200, or 206 for a range).
    Send,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: the client asked for a state of the file it is not in.
    PreconditionFailed,
}

/// The part of a file a GET asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole file, 200: no Range, or one we ignore.
    Whole,
    /// Bytes `start..=end`, 206.
    Range { start: u64, end: u64 },
    /// Two or more ranges, each `(start, end)` inclusive, in the order asked: 206 with a
    /// `multipart/byteranges` body (RFC 9110 14.6).
    Ranges(Vec<(u64, u64)>),
    /// No byte of the file is in any range asked for, 416.
    Unsatisfiable,
}

/// More ranges than this in one Range field: the field is ignored (the whole file is sent).
/// Each part costs a head of its own; Apache's default limit is 200, nginx has none.
pub const MAX_RANGES: usize = 100;

/// Reads a `Range` header against a file of `len` bytes: `bytes=` and a list of `a-b`, `a-`
/// or `-n`. A range past the end is clipped, one wholly past it is left out, and if none is
/// left the answer is 416. One range left is a 206 of that range; several are one 206 with a
/// part for each, in the order asked. Ignored (the whole file), as RFC 9110 14.2 allows: a
/// malformed field, an invalid range in it (`5-2`), more than [`MAX_RANGES`], and ranges that
/// add up to more than the file (overlaps, which would send bytes more than once: the denial
/// of service of CVE-2011-3192; nginx and Go's net/http refuse them the same way). A
/// zero-length file is always sent whole.
pub fn parse_range(range: Option<&str>, len: u64) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    let Some((unit, set)) = range.trim().split_once('=') else {
        return Part::Whole;
    };
    // `range-unit "="` with nothing between (14.1.1): `bytes = 0-0` is malformed, as nginx and
    // Apache read it too.
    if !unit.eq_ignore_ascii_case("bytes") || len == 0 {
        return Part::Whole;
    }
    let mut ranges = Vec::new();
    let mut specs = 0;
    // Empty list elements are allowed and mean nothing (RFC 9110 5.6.1).
    for spec in set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
    {
        specs += 1;
        if specs > MAX_RANGES {
            return Part::Whole;
        }
        match one_range(spec, len) {
            Spec::Satisfiable(start, end) => ranges.push((start, end)),
            Spec::Unsatisfiable => {}
            Spec::Invalid => return Part::Whole,
        }
    }
    let total = ranges.iter().fold(0u64, |sum, &(start, end)| {
        sum.saturating_add(end - start + 1)
    });
    match ranges.as_slice() {
        _ if specs == 0 => Part::Whole,
        [] => Part::Unsatisfiable,
        &[(start, end)] => Part::Range { start, end },
        _ if total > len => Part::Whole,
        _ => Part::Ranges(ranges),
    }
}

/// One range of a Range field, read against a file of `len` bytes (more than 0).
enum Spec {
    /// `start..=end`, clipped to the file.
    Satisfiable(u64, u64),
    /// Wholly past the end, or an empty suffix (`-0`).
    Unsatisfiable,
    /// Not a range: the whole field is ignored.
    Invalid,
}

fn one_range(spec: &str, len: u64) -> Spec {
    let Some((first, last)) = spec.split_once('-') else {
        return Spec::Invalid;
    };
    // `1*DIGIT`, however long (RFC 9110 14.1.1 sets no limit): a position past `u64::MAX` is
    // past the end of any file, so it reads as `u64::MAX`, which clips and compares the same.
    let number = |text: &str| decimal(text.as_bytes());
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Spec::Unsatisfiable,
            Some(n) => Spec::Satisfiable(len.saturating_sub(n), len - 1),
            None => Spec::Invalid,
        },
        (start, "") => match number(start) {
            Some(start) if start >= len => Spec::Unsatisfiable,
            Some(start) => Spec::Satisfiable(start, len - 1),
            None => Spec::Invalid,
        },
        (start_text, end_text) => match (number(start_text), number(end_text)) {
            // A last position before the first makes the range invalid (14.1.1): ignored.
            // Compared as written, since two long ones both read as `u64::MAX`.
            (Some(_), Some(_)) if decimal_order(start_text, end_text).is_gt() => Spec::Invalid,
            (Some(start), Some(_)) if start >= len => Spec::Unsatisfiable,
            (Some(start), Some(end)) => Spec::Satisfiable(start, end.min(len - 1)),
            _ => Spec::Invalid,
        },
    }
}

/// The order of two decimal numbers written as ASCII digits, of any length.
fn decimal_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn ranges() {
        let cases: &[(&str, Part)] = &[
            ("bytes=0-9", Part::Range { start: 0, end: 9 }),
            ("bytes=10-19", Part::Range { start: 10, end: 19 }),
            ("bytes=90-", Part::Range { start: 90, end: 99 }),
            ("bytes=-10", Part::Range { start: 90, end: 99 }),
            ("bytes=-1000", Part::Range { start: 0, end: 99 }),
            ("bytes=50-1000", Part::Range { start: 50, end: 99 }),
            ("bytes=99-99", Part::Range { start: 99, end: 99 }),
            ("BYTES=5-6", Part::Range { start: 5, end: 6 }),
            ("bytes=100-", Part::Unsatisfiable),
            ("bytes=100-200", Part::Unsatisfiable),
            ("bytes=-0", Part::Unsatisfiable),
            ("bytes=0-1,5-6", Part::Ranges(vec![(0, 1), (5, 6)])),
            // In the order asked, clipped; a range wholly past the end is left out.
            (
                "bytes=-5, 0-0,,90-200",
                Part::Ranges(vec![(95, 99), (0, 0), (90, 99)]),
            ),
            ("bytes=0-1, 100-", Part::Range { start: 0, end: 1 }),
            ("bytes=100-, 200-300, -0", Part::Unsatisfiable),
            // One invalid range, or overlaps that add up to more than the file: ignored.
            ("bytes=0-1, 9-1", Part::Whole),
            ("bytes=0-1, x", Part::Whole),
            ("bytes=0-59, 40-99", Part::Whole),
            ("bytes=0-49, 40-89", Part::Ranges(vec![(0, 49), (40, 89)])),
            ("bytes=,", Part::Whole),
            ("bytes=9-1", Part::Whole),
            ("bytes=a-b", Part::Whole),
            ("bytes=-", Part::Whole),
            ("bytes=+1-2", Part::Whole),
            ("bytes=1-2-3", Part::Whole),
            ("items=0-5", Part::Whole),
            ("bytes", Part::Whole),
            // Nothing between the unit and `=`; after it, as around commas, spaces are allowed.
            ("bytes = 0-0", Part::Whole),
            ("bytes =0-0", Part::Whole),
            ("bytes= 0-0", Part::Range { start: 0, end: 0 }),
            // Positions too large for any integer type are still positions: past the end.
            ("bytes=99999999999999999999999-", Part::Unsatisfiable),
            ("bytes=18446744073709551616-", Part::Unsatisfiable),
            (
                "bytes=0-99999999999999999999999",
                Part::Range { start: 0, end: 99 },
            ),
            (
                "bytes=99-18446744073709551616",
                Part::Range { start: 99, end: 99 },
            ),
            (
                "bytes=-99999999999999999999999",
                Part::Range { start: 0, end: 99 },
            ),
            (
                "bytes=00000000000000000000000000005-6",
                Part::Range { start: 5, end: 6 },
            ),
            (
                "bytes=99999999999999999999999-99999999999999999999998",
                Part::Whole,
            ),
            (
                "bytes=99999999999999999999998-99999999999999999999999",
                Part::Unsatisfiable,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_range(Some(header), 100), expected, "{header}");
        }
        assert_eq!(parse_range(None, 100), Part::Whole);
        let at_most = vec!["0-0"; MAX_RANGES].join(",");
        let past = vec!["0-0"; MAX_RANGES + 1].join(",");
        let parts = |header: &str| parse_range(Some(&format!("bytes={header}")), 1 << 20);
        assert_eq!(parts(&at_most), Part::Ranges(vec![(0, 0); MAX_RANGES]));
        assert_eq!(parts(&past), Part::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Part::Whole);
    }

    fn file() -> Validators {
        Validators::new(1234, UNIX_EPOCH + Duration::from_secs(784111777))
    }

    #[test]
    fn validators_format() {
        assert_eq!(file().etag(), "\"2ebc98a1-4d2\"");
        for (mtime, len) in [
            (0, 0),
            (1, 15),
            (16, 255),
            (i64::MAX as u64, u64::MAX),
            (0x7f, 0x1000),
        ] {
            let tag = Validators {
                len,
                stamp: (mtime as i64, 0),
                coding: None,
            };
            assert_eq!(tag.etag(), format!("\"{mtime:x}-{len:x}\""));
            assert_eq!(tag.coded("br").etag(), format!("\"{mtime:x}-{len:x}-br\""));
        }
        // Every count of digits, and the numbers either side of each.
        for shift in 0..64 {
            for n in [(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1] {
                let mut text = String::new();
                push_hex(&mut text, n);
                assert_eq!(text, format!("{n:x}"));
            }
        }
    }

    /// A file rewritten within one second, at the same size, has the same `Last-Modified`, but
    /// must not keep its entity tag: a browser revalidating with `If-None-Match` would be told
    /// that its old copy is current. The nanoseconds into the second tell the versions apart.
    #[test]
    fn a_file_rewritten_within_a_second_gets_another_tag() {
        let at = |nanos: u32| Validators::new(10, UNIX_EPOCH + Duration::new(784111777, nanos));
        let (first, second) = (at(27_911_763), at(27_911_764));
        assert_eq!(first.mtime(), second.mtime());
        assert_eq!(first.etag(), "\"2ebc98a1.1a9e653-a\"");
        assert_ne!(first.etag(), second.etag());
        assert_eq!(at(999_999_999).etag(), "\"2ebc98a1.3b9ac9ff-a\"");
        assert_eq!(
            at(999_999_999).coded("gzip").etag(),
            "\"2ebc98a1.3b9ac9ff-a-gzip\""
        );
        // A whole second (a filesystem that keeps no finer time): nginx's tag exactly.
        assert_eq!(at(0).etag(), "\"2ebc98a1-a\"");
        let tags: std::collections::HashSet<String> =
            (0..1_000).map(|step| at(step * 999_999).etag()).collect();
        assert_eq!(tags.len(), 1_000);
    }

    /// Before 1970 every date reads as the epoch, but the entity tag keeps the time apart (with
    /// a minus sign, as nginx writes a negative `time_t` in hex): two versions of a file dated
    /// before 1970 must not share a tag, or a client would get a 304 for the other.
    #[test]
    fn a_file_dated_before_1970_keeps_its_time_in_the_tag() {
        let before = |seconds: u64, nanos: u32| {
            Validators::new(3, UNIX_EPOCH - Duration::new(seconds, nanos))
        };
        let (a, b) = (before(86_400, 0), before(2 * 86_400, 0));
        assert_eq!((a.mtime(), b.mtime()), (0, 0));
        assert_eq!(a.etag(), "\"-15180-3\"");
        assert_ne!(a.etag(), b.etag());
        // A quarter second before the epoch is three quarters into the second before it.
        assert_eq!(before(0, 250_000_000).etag(), "\"-1.2cb41780-3\"");
        assert_ne!(before(0, 250_000_000).etag(), before(0, 500_000_000).etag());
        assert_eq!(before(1, 0).etag(), "\"-1-3\"");
        assert_eq!(Validators::new(3, UNIX_EPOCH).etag(), "\"0-3\"");
        // The oldest time a `SystemTime` may hold still makes a tag.
        let oldest = Validators::new(3, UNIX_EPOCH - Duration::from_secs(i64::MAX as u64));
        assert_eq!(oldest.etag(), "\"-7fffffffffffffff-3\"");
    }

    /// The file's clock reads a day after its modification.
    fn evaluate(f: &Validators, fields: [Option<&str>; 4], weak: bool) -> Outcome {
        let [
            if_match,
            if_unmodified_since,
            if_none_match,
            if_modified_since,
        ] = fields;
        let conditions = Conditions {
            if_match: if_match.map(Cow::Borrowed),
            if_unmodified_since,
            if_none_match: if_none_match.map(Cow::Borrowed),
            if_modified_since,
            ..Conditions::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(f.mtime() + 86_400);
        f.evaluate(&conditions, &f.etag(), weak, now)
    }

    #[test]
    fn not_modified() {
        use Outcome::*;
        let f = file();
        let etag = f.etag();
        let inm = |tags: &str| evaluate(&f, [None, None, Some(tags), None], false);
        let ims = |date: &str| evaluate(&f, [None, None, None, Some(date)], false);
        assert_eq!(inm(&etag), NotModified);
        assert_eq!(inm(&format!("W/{etag}")), NotModified);
        assert_eq!(inm(&format!("\"other\", {etag}")), NotModified);
        // The tag alone (a browser's), around whitespace, is read without the list; what only
        // looks like it is read as a list, and is malformed.
        assert_eq!(inm(&format!(" {etag}\t")), NotModified);
        assert_eq!(inm(&format!("{etag},")), NotModified);
        assert_eq!(inm(&format!("W/ {etag}")), Send);
        assert_eq!(inm(&format!("w/{etag}")), Send);
        assert_eq!(inm(&etag[..etag.len() - 1]), Send);
        assert_eq!(inm("*"), NotModified);
        assert_eq!(inm("\"other\""), Send);
        // Unquoted is not an entity tag.
        assert_eq!(inm(etag.trim_matches('"')), Send);
        // A `*` is the whole value or malformed; a malformed value matches nothing, and
        // If-Modified-Since is still not asked.
        assert_eq!(inm("*, \"other\""), Send);
        assert_eq!(inm(&format!("*, {etag}")), Send);
        assert_eq!(inm(&format!("{etag}, garbage")), Send);
        let date = "Mon, 07 Nov 1994 08:49:37 GMT";
        assert_eq!(
            evaluate(&f, [None, None, Some("*,a"), Some(date)], false),
            Send
        );
        assert_eq!(ims("Sun, 06 Nov 1994 08:49:37 GMT"), NotModified);
        assert_eq!(ims("Mon, 07 Nov 1994 08:49:37 GMT"), NotModified);
        assert_eq!(ims("Sun, 06 Nov 1994 08:49:36 GMT"), Send);
        assert_eq!(ims("yesterday"), Send);
        // Later than the server's clock: not a date it sent, so no date at all.
        assert_eq!(ims("Tue, 08 Nov 1994 08:49:37 GMT"), Send);
        assert_eq!(ims("Thu, 01 Jan 2099 00:00:00 GMT"), Send);
        // If-None-Match wins over If-Modified-Since, both ways.
        let both =
            |tags: &str, date: &str| evaluate(&f, [None, None, Some(tags), Some(date)], false);
        assert_eq!(both("\"other\"", "Mon, 07 Nov 1994 08:49:37 GMT"), Send);
        assert_eq!(both(&etag, "Sat, 01 Jan 1994 00:00:00 GMT"), NotModified);
        assert_eq!(evaluate(&f, [None; 4], false), Send);
    }

    #[test]
    fn a_file_dated_in_the_future_still_validates_its_own_date() {
        let f = file();
        let now = UNIX_EPOCH + Duration::from_secs(f.mtime() - 60);
        let conditions = Conditions {
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..Conditions::default()
        };
        assert_eq!(
            f.evaluate(&conditions, &f.etag(), false, now),
            Outcome::NotModified
        );
        let later = Conditions {
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:38 GMT"),
            ..Conditions::default()
        };
        assert_eq!(f.evaluate(&later, &f.etag(), false, now), Outcome::Send);
    }

    #[test]
    fn preconditions_fail_with_412_first() {
        use Outcome::*;
        let f = file();
        let etag = f.etag();
        let im = |tags: &str, weak| evaluate(&f, [Some(tags), None, None, None], weak);
        assert_eq!(im(&etag, false), Send);
        assert_eq!(im(&format!("\"other\", {etag}"), false), Send);
        assert_eq!(im("*", false), Send);
        assert_eq!(im("*", true), Send);
        assert_eq!(im("\"other\"", false), PreconditionFailed);
        // Malformed: holds for nothing, not even with the file's own tag in it.
        assert_eq!(im("*, \"other\"", false), PreconditionFailed);
        assert_eq!(im(&format!("{etag}, garbage"), false), PreconditionFailed);
        // Strong comparison: a weak tag on either side never matches.
        assert_eq!(im(&format!("W/{etag}"), false), PreconditionFailed);
        assert_eq!(im(&etag, true), PreconditionFailed);
        let ius = |date: &str| evaluate(&f, [None, Some(date), None, None], false);
        assert_eq!(ius("Sun, 06 Nov 1994 08:49:37 GMT"), Send);
        assert_eq!(ius("Sun, 06 Nov 1994 08:49:36 GMT"), PreconditionFailed);
        assert_eq!(ius("not a date"), Send);
        // If-Match present: If-Unmodified-Since is not evaluated (RFC 9110 13.2.2).
        let stale = "Sat, 01 Jan 1994 00:00:00 GMT";
        assert_eq!(
            evaluate(&f, [Some(&etag), Some(stale), None, None], false),
            Send
        );
        // A failed precondition wins over a 304 the other fields would give.
        let failed = evaluate(&f, [Some("\"other\""), None, Some(&etag), None], false);
        assert_eq!(failed, PreconditionFailed);
        let failed = evaluate(&f, [None, Some(stale), None, Some(stale)], false);
        assert_eq!(failed, PreconditionFailed);
        // Both kinds holding: then If-None-Match decides.
        assert_eq!(
            evaluate(&f, [Some("*"), None, Some(&etag), None], false),
            NotModified
        );
    }

    #[test]
    fn if_range() {
        let f = file();
        let later = SystemTime::now();
        assert!(f.if_range_holds(None, later));
        assert!(f.if_range_holds(Some(&f.etag()), later));
        assert!(!f.if_range_holds(Some(&format!("W/{}", f.etag())), later));
        assert!(!f.if_range_holds(Some("\"other\""), later));
        assert!(f.if_range_holds(Some("Sun, 06 Nov 1994 08:49:37 GMT"), later));
        assert!(!f.if_range_holds(Some("Sun, 06 Nov 1994 08:49:38 GMT"), later));
        assert!(!f.if_range_holds(Some("garbage"), later));
        // Changed at .25 s into its second: its date is strong from 1.25 s on, not before (the
        // file may have been rewritten, its date the same, after a client's copy was made).
        let changed = UNIX_EPOCH + Duration::from_millis(784_111_777_250);
        let f = Validators::new(1234, changed);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        for (after, holds) in [
            (0, false),
            (900, false),
            (999, false),
            (1000, true),
            (5000, true),
        ] {
            let now = changed + Duration::from_millis(after);
            assert_eq!(f.if_range_holds(Some(date), now), holds, "{after} ms after");
            // The tag tells the versions apart: it holds at once.
            assert!(f.if_range_holds(Some(&f.etag()), now), "{after} ms after");
        }
        // A file dated in the future: its date is not strong yet.
        let ahead = Validators::new(1234, later + Duration::from_secs(3600));
        let shown = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(ahead.mtime()));
        assert!(!ahead.if_range_holds(Some(&shown), later));
    }

    /// One range as numbers, to be written into a field and read back.
    #[derive(Clone, Debug)]
    enum Asked {
        FromTo(u64, u64),
        From(u64),
        Suffix(u64),
    }

    /// `u64::MAX` stands for a position too long to read: written with more digits than fit.
    fn written(n: u64) -> String {
        match n {
            u64::MAX => "123456789012345678901234567890".into(),
            n => n.to_string(),
        }
    }

    /// What RFC 9110 14 and the rules above make of the ranges, worked out on the numbers.
    fn expected(asked: &[Asked], len: u64) -> Part {
        if len == 0 || asked.is_empty() || asked.len() > MAX_RANGES {
            return Part::Whole;
        }
        let mut kept = Vec::new();
        for range in asked {
            let (start, end) = match *range {
                Asked::FromTo(first, last) if first > last => return Part::Whole,
                Asked::FromTo(first, last) => (first, last.min(len - 1)),
                Asked::From(first) => (first, len - 1),
                Asked::Suffix(0) => continue,
                Asked::Suffix(n) => (len.saturating_sub(n), len - 1),
            };
            if start < len {
                kept.push((start, end));
            }
        }
        let total: u64 = kept.iter().map(|(start, end)| end - start + 1).sum();
        match kept[..] {
            [] => Part::Unsatisfiable,
            [(start, end)] => Part::Range { start, end },
            _ if total > len => Part::Whole,
            _ => Part::Ranges(kept),
        }
    }

    fn asked() -> impl Strategy<Value = Asked> {
        let n = || prop_oneof![8 => 0u64..40, 1 => Just(u64::MAX)];
        prop_oneof![
            (n(), n()).prop_map(|(first, last)| Asked::FromTo(first, last)),
            n().prop_map(Asked::From),
            n().prop_map(Asked::Suffix),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Any list of ranges, written with the spacing and empty elements a list may have,
        /// reads as the numbers it names.
        #[test]
        fn a_range_field_reads_as_the_ranges_it_names(
            asked in prop_oneof![
                proptest::collection::vec(asked(), 0..6),
                // About MAX_RANGES short ones, which a large file can hold all of.
                proptest::collection::vec(
                    (0u64..40, 0u64..3).prop_map(|(first, more)| Asked::FromTo(first, first + more)),
                    98..103,
                ),
            ],
            len in prop_oneof![0u64..30, Just(10_000u64)],
            separator in prop_oneof![Just(","), Just(", "), Just(" , "), Just(",,")],
            unit in prop_oneof![Just("bytes="), Just("Bytes="), Just(" bytes="), Just("bytes= ")],
        ) {
            let field = format!("{unit}{}", asked.iter().map(|range| match *range {
                Asked::FromTo(first, last) => format!("{}-{}", written(first), written(last)),
                Asked::From(first) => format!("{}-", written(first)),
                Asked::Suffix(n) => format!("-{}", written(n)),
            }).collect::<Vec<_>>().join(separator));
            prop_assert_eq!(parse_range(Some(&field), len), expected(&asked, len), "{}", field);
        }

        /// Whatever the field, what comes back lies inside the file, and several ranges never
        /// add up to more than it: what `Multipart::new` requires.
        #[test]
        fn any_range_field_stays_inside_the_file(
            field in "[bBytes= 0-9,-]{0,40}",
            len in 0u64..50,
        ) {
            match parse_range(Some(&field), len) {
                Part::Whole => {}
                Part::Unsatisfiable => prop_assert!(len > 0),
                Part::Range { start, end } => prop_assert!(start <= end && end < len),
                Part::Ranges(ranges) => {
                    prop_assert!((2..=MAX_RANGES).contains(&ranges.len()));
                    prop_assert!(ranges.iter().all(|&(start, end)| start <= end && end < len));
                    let total: u64 = ranges.iter().map(|(start, end)| end - start + 1).sum();
                    prop_assert!(total <= len);
                }
            }
        }
    }
}
