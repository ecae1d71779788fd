//! Conditional and range requests against a file's validators (RFC 9110 13 and 14), as pure
//! functions of header values, so each rule is tested on its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file's validators: what `ETag` and `Last-Modified` are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validators {
    pub len: u64,
    /// Modification time, whole seconds since the epoch (HTTP dates have no finer grain).
    pub mtime: u64,
    /// The content coding of a precompressed sibling: its entity tag says it, so a tag never
    /// names two representations.
    pub coding: Option<&'static str>,
}

impl Validators {
    pub fn new(len: u64, modified: SystemTime) -> Self {
        let mtime = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Validators {
            len,
            mtime,
            coding: None,
        }
    }

    /// The validators of a sibling holding content coding `coding`.
    pub fn coded(self, coding: &'static str) -> Self {
        Validators {
            coding: Some(coding),
            ..self
        }
    }

    /// `"<mtime>-<size>"` in hex, as nginx makes it; `"<mtime>-<size>-<coding>"` for a sibling.
    pub fn etag(&self) -> String {
        match self.coding {
            None => format!("\"{:x}-{:x}\"", self.mtime, self.len),
            Some(coding) => format!("\"{:x}-{:x}-{coding}\"", self.mtime, self.len),
        }
    }

    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.mtime))
    }

    /// Whether a conditional GET or HEAD should get 304: `If-None-Match` decides if present
    /// (a list, or `*`, compared weakly); otherwise `If-Modified-Since`.
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(tags) = if_none_match {
            let ours = self.etag();
            return tags
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || strip_weak(tag) == strip_weak(&ours));
        }
        if_modified_since
            .and_then(|date| httpdate::parse_http_date(date).ok())
            .is_some_and(|since| {
                since
                    .duration_since(UNIX_EPOCH)
                    .is_ok_and(|at| self.mtime <= at.as_secs())
            })
    }

    /// Whether `If-Range` lets a Range apply: it must name the current representation exactly,
    /// by strong entity tag or by the very date it was last modified.
    pub fn if_range_holds(&self, if_range: Option<&str>) -> bool {
        let Some(value) = if_range.map(str::trim) else {
            return true;
        };
        if value.starts_with('"') {
            value == self.etag()
        } else if value.starts_with("W/") {
            false // weak tags never match for ranges
        } else {
            httpdate::parse_http_date(value)
                .ok()
                .and_then(|date| date.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|date| date.as_secs() == self.mtime)
        }
    }
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The part of a file a GET asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole file, 200: no Range, one we ignore, or several ranges (answered whole).
    Whole,
    /// Bytes `start..=end`, 206.
    Range { start: u64, end: u64 },
    /// No byte of the file is in the range, 416.
    Unsatisfiable,
}

/// Reads a `Range` header against a file of `len` bytes. One range of `bytes=a-b`, `a-` or `-n`
/// is served; a range past the end is clipped. Several ranges get the whole file (a multipart
/// answer would cost more than it saves), and so does anything malformed, which RFC 9110 14.2
/// allows a server to ignore. A zero-length file is always sent whole.
pub fn parse_range(range: Option<&str>, len: u64) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    let Some((unit, set)) = range.trim().split_once('=') else {
        return Part::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || len == 0 {
        return Part::Whole;
    }
    let mut specs = set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Part::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Part::Whole;
    };
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())?
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Part::Unsatisfiable,
            Some(n) => Part::Range {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Part::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start >= len => Part::Unsatisfiable,
            Some(start) => Part::Range {
                start,
                end: len - 1,
            },
            None => Part::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Part::Whole,
            (Some(start), Some(_)) if start >= len => Part::Unsatisfiable,
            (Some(start), Some(end)) => Part::Range {
                start,
                end: end.min(len - 1),
            },
            _ => Part::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("BYTES = 5-6", Part::Range { start: 5, end: 6 }),
            ("bytes=100-", Part::Unsatisfiable),
            ("bytes=100-200", Part::Unsatisfiable),
            ("bytes=-0", Part::Unsatisfiable),
            ("bytes=0-1,5-6", Part::Whole),
            ("bytes=9-1", Part::Whole),
            ("bytes=a-b", Part::Whole),
            ("bytes=-", Part::Whole),
            ("bytes=+1-2", Part::Whole),
            ("bytes=1-2-3", Part::Whole),
            ("items=0-5", Part::Whole),
            ("bytes", Part::Whole),
            ("bytes=99999999999999999999999-", Part::Whole),
        ];
        for &(header, expected) in cases {
            assert_eq!(parse_range(Some(header), 100), expected, "{header}");
        }
        assert_eq!(parse_range(None, 100), Part::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Part::Whole);
    }

    fn file() -> Validators {
        Validators::new(1234, UNIX_EPOCH + Duration::from_secs(784111777))
    }

    #[test]
    fn validators_format() {
        assert_eq!(file().etag(), "\"2ebc98a1-4d2\"");
        assert_eq!(file().last_modified(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn conditionals() {
        let f = file();
        let etag = f.etag();
        assert!(f.not_modified(Some(&etag), None));
        assert!(f.not_modified(Some(&format!("W/{etag}")), None));
        assert!(f.not_modified(Some(&format!("\"other\", {etag}")), None));
        assert!(f.not_modified(Some("*"), None));
        assert!(!f.not_modified(Some("\"other\""), None));
        assert!(f.not_modified(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")));
        assert!(f.not_modified(None, Some("Mon, 07 Nov 1994 08:49:37 GMT")));
        assert!(!f.not_modified(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")));
        assert!(!f.not_modified(None, Some("yesterday")));
        // If-None-Match wins over If-Modified-Since, both ways.
        assert!(!f.not_modified(Some("\"other\""), Some("Mon, 07 Nov 1994 08:49:37 GMT")));
        assert!(f.not_modified(Some(&etag), Some("Sat, 01 Jan 1994 00:00:00 GMT")));
        assert!(!f.not_modified(None, None));
    }

    #[test]
    fn if_range() {
        let f = file();
        assert!(f.if_range_holds(None));
        assert!(f.if_range_holds(Some(&f.etag())));
        assert!(!f.if_range_holds(Some(&format!("W/{}", f.etag()))));
        assert!(!f.if_range_holds(Some("\"other\"")));
        assert!(f.if_range_holds(Some("Sun, 06 Nov 1994 08:49:37 GMT")));
        assert!(!f.if_range_holds(Some("Sun, 06 Nov 1994 08:49:38 GMT")));
        assert!(!f.if_range_holds(Some("garbage")));
    }
}
