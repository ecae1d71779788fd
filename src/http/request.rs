//! The request a handler sees: method, target, version, headers and the whole body.
//!
//! Everything borrows from the connection's input buffer, where the bytes arrived, so handing a
//! request to a handler copies nothing. `parse.rs` builds it; `app/` reads it.

use std::borrow::Cow;

/// The protocol version of a request. Only these two reach a handler: others get 505.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target exactly as sent: `/a%20b?x=1`, or `http://host/a` in absolute form.
    pub target: &'a str,
    /// The path of the target, still percent-encoded: `/a%20b`. Always starts with `/`,
    /// except for the asterisk form (`*`, OPTIONS only) and the authority form
    /// (`example.com:443`, CONNECT only), where it is the whole target.
    pub path: &'a str,
    /// What follows the `?`, if anything did.
    pub query: Option<&'a str>,
    /// The host the request is for, `uri-host[:port]`, already validated: the authority of an
    /// absolute-form target if it has one (RFC 9112 3.2.2), else the Host field. `None` only for
    /// an HTTP/1.0 request without either.
    pub host: Option<&'a str>,
    pub version: Version,
    pub headers: Headers<'a>,
    /// The decoded body: Content-Length bytes, or the chunks joined. Empty when there is none.
    pub body: &'a [u8],
}

/// The header fields of a request, in the order sent. Names compare case-insensitively, and a
/// name may appear several times.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    fields: &'a [httparse::Header<'a>],
}

impl<'a> Headers<'a> {
    pub fn new(fields: &'a [httparse::Header<'a>]) -> Self {
        Headers { fields }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    /// The first value of `name` as text, without surrounding whitespace; `None` if absent or
    /// not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every value of `name` as one comma-separated list, as text: a list sent in several fields
    /// is one list (RFC 9110 5.3). Borrowed when there is one field; `None` when there is none.
    pub fn get_list(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get_all(name)
            .fold(None, |list, value| Some(join_list(list, value)))
    }

    /// Whether any value of `name`, read as a comma-separated list, holds `token`
    /// (case-insensitive): `Connection: keep-alive, Upgrade` has the token `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|value| list_has_token(value, token))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        self.fields.iter().map(|h| (h.name, h.value))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Whether the field name `name` is `lower` (lower-case letters and `-`, at least 4 bytes, and
/// as long as `name`), ignoring case: a word at a time, not a byte at a time (it runs for every
/// field of every request). Setting bit 5 of each byte lower-cases a letter and leaves `-`
/// alone; among the bytes a field name may hold (tchar, which httparse has checked), only an
/// upper-case letter becomes a lower-case one that way, so the comparison is exact.
#[inline(always)]
pub(crate) fn name_is(name: &str, lower: &[u8]) -> bool {
    let name = name.as_bytes();
    debug_assert!(lower.len() >= 4 && lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    if name.len() != lower.len() {
        return false;
    }
    let n = name.len();
    if n < 8 {
        let word =
            |s: &[u8], at: usize| u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]);
        // Two words that overlap when n < 8 cover every byte.
        return (word(name, 0) | 0x2020_2020) == word(lower, 0)
            && (word(name, n - 4) | 0x2020_2020) == word(lower, n - 4);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let mut at = 0;
    while at + 8 < n {
        if (word(name, at) | 0x2020_2020_2020_2020) != word(lower, at) {
            return false;
        }
        at += 8;
    }
    (word(name, n - 8) | 0x2020_2020_2020_2020) == word(lower, n - 8)
}

/// The value of an `If-Match` or `If-None-Match` field: `"*" / #entity-tag` (RFC 9110 13.1.1,
/// 13.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityTags<'a> {
    /// `*`: any current representation.
    Any,
    /// One or more entity-tags (`"xyzzy"`, `W/"xyzzy"`), each checked well-formed.
    List(&'a str),
}

impl<'a> EntityTags<'a> {
    /// `value` read as `*` or a list of entity-tags; `None` if it is neither: a `*` inside a
    /// list, a tag without its quotes, nothing but commas. Such a field names no representation,
    /// so it never matches one: an `If-Match` with it fails, an `If-None-Match` holds (as nginx
    /// reads them). A comma inside a tag's quotes is part of the tag, not a separator.
    pub fn parse(value: &'a str) -> Option<Self> {
        let value = trim_ows(value);
        if value == "*" {
            return Some(EntityTags::Any);
        }
        let mut rest = value;
        let mut tags = 0;
        while let Some(next) = next_entity_tag(rest) {
            (_, rest) = next?;
            tags += 1;
        }
        (tags > 0).then_some(EntityTags::List(value))
    }

    /// Whether `*`, or any tag of the list for which `matches` says so.
    pub fn any(self, matches: impl FnMut(&str) -> bool) -> bool {
        match self {
            EntityTags::Any => true,
            EntityTags::List(mut rest) => std::iter::from_fn(|| {
                let (tag, after) = next_entity_tag(rest)??;
                rest = after;
                Some(tag)
            })
            .any(matches),
        }
    }
}

/// The first entity-tag of `list` (`[ "W/" ] DQUOTE *etagc DQUOTE`, RFC 9110 8.8.3) and the
/// rest of the list after it, empty elements skipped (5.6.1); `None` at the end of the list,
/// `Some(None)` where it is malformed.
fn next_entity_tag(list: &str) -> Option<Option<(&str, &str)>> {
    // Byte loops, not `str` patterns or memchr: every revalidation of a static file reads its
    // tags twice (the whole list is checked, then searched), and for a tag of a dozen bytes
    // those cost several times as much as the bytes themselves.
    let bytes = list.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b','))?;
    // After the weak tag's `W/`, if it has one.
    let open = start + 2 * usize::from(bytes[start..].starts_with(b"W/"));
    if bytes.get(open) != Some(&b'"') {
        return Some(None);
    }
    // The tag runs to the first byte that is not etagc (%x21 / %x23-7E / obs-text: any byte
    // but controls, SP, DQUOTE and DEL), which must be its closing DQUOTE.
    let opaque = &bytes[open + 1..];
    let Some(len) = opaque
        .iter()
        .position(|&b| b <= b' ' || b == b'"' || b == 0x7f)
    else {
        return Some(None);
    };
    if opaque[len] != b'"' {
        return Some(None);
    }
    let end = open + 1 + len + 1;
    let after = bytes[end..].iter().find(|&&b| b != b' ' && b != b'\t');
    Some(matches!(after, None | Some(b',')).then(|| (&list[start..end], &list[end..])))
}

/// `value` without the optional whitespace (spaces and tabs, RFC 9110 5.6.3) around it. (A
/// closure, not the `[' ', '\t']` pattern, which cost several times as much on a short value.)
pub fn trim_ows(value: &str) -> &str {
    value.trim_matches(|c| c == ' ' || c == '\t')
}

/// `list` with one more field's `value` (as text: bytes that are not UTF-8 replaced) after a
/// comma: the fields of one name are one list (RFC 9110 5.3). Borrowed while there is one field.
pub(crate) fn join_list<'a>(list: Option<Cow<'a, str>>, value: &'a [u8]) -> Cow<'a, str> {
    let value = String::from_utf8_lossy(value);
    match list {
        None => value,
        Some(list) => Cow::Owned(format!("{list}, {value}")),
    }
}

pub(crate) fn list_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn name_is_matches_any_case_and_nothing_else() {
        let names = [
            "host",
            "expect",
            "connection",
            "content-length",
            "transfer-encoding",
        ];
        for lower in names {
            assert!(name_is(lower, lower.as_bytes()));
            assert!(name_is(&lower.to_ascii_uppercase(), lower.as_bytes()));
            // Every single-byte change to another token byte is a different name.
            for at in 0..lower.len() {
                for b in (0u8..=255).filter(|&b| crate::http::is_tchar(b)) {
                    let mut other = lower.as_bytes().to_vec();
                    other[at] = b;
                    let same = other[at].eq_ignore_ascii_case(&lower.as_bytes()[at]);
                    let other = String::from_utf8(other).unwrap();
                    assert_eq!(
                        name_is(&other, lower.as_bytes()),
                        same,
                        "{other} vs {lower}"
                    );
                }
            }
            assert!(!name_is(&lower[1..], lower.as_bytes()));
        }
    }

    #[test]
    fn names_are_case_insensitive_and_repeatable() {
        let fields = [h("Accept", "text/html"), h("X-Tag", "a"), h("x-tag", "b")];
        let headers = Headers::new(&fields);
        assert_eq!(headers.get("accept"), Some(&b"text/html"[..]));
        assert_eq!(headers.get("ACCEPT"), Some(&b"text/html"[..]));
        let tags: Vec<_> = headers.get_all("X-TAG").collect();
        assert_eq!(tags, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(headers.get("missing"), None);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn tokens_are_found_in_lists_across_fields() {
        let fields = [
            h("Connection", "Upgrade"),
            h("connection", " foo ,Keep-Alive"),
        ];
        let headers = Headers::new(&fields);
        assert!(headers.has_token("connection", "keep-alive"));
        assert!(headers.has_token("connection", "upgrade"));
        assert!(!headers.has_token("connection", "close"));
        assert!(!headers.has_token("connection", "keep"));
    }

    #[test]
    fn get_str_trims_and_rejects_non_utf8() {
        let fields = [
            httparse::Header {
                name: "A",
                value: b" x ",
            },
            httparse::Header {
                name: "B",
                value: b"\xff",
            },
        ];
        let headers = Headers::new(&fields);
        assert_eq!(headers.get_str("a"), Some("x"));
        assert_eq!(headers.get_str("b"), None);
    }

    #[test]
    fn entity_tag_lists() {
        use EntityTags::{Any, List};
        let tags = |value| {
            let mut seen = Vec::new();
            EntityTags::parse(value).map(|tags| {
                tags.any(|tag| {
                    seen.push(tag.to_string());
                    false
                })
            });
            seen
        };
        assert_eq!(EntityTags::parse("*"), Some(Any));
        assert_eq!(EntityTags::parse(" *\t"), Some(Any));
        assert_eq!(EntityTags::parse("\"a\""), Some(List("\"a\"")));
        assert_eq!(tags("\"a\", W/\"b\" ,\"\""), ["\"a\"", "W/\"b\"", "\"\""]);
        // Empty elements are skipped (RFC 9110 5.6.1); a comma in quotes is part of the tag.
        assert_eq!(tags(", \"a,b\",, \"c\","), ["\"a,b\"", "\"c\""]);
        for malformed in [
            "",
            ",",
            "*, \"a\"",
            "\"a\", *",
            "**",
            "a",
            "\"a",
            "\"a\"b",
            "\"a\" \"b\"",
            "w/\"a\"",
            "W/ \"a\"",
            "\"a b\"",
            "\"a\u{7f}\"",
        ] {
            assert_eq!(EntityTags::parse(malformed), None, "{malformed:?}");
        }
        assert!(EntityTags::parse("*").unwrap().any(|_| false));
        let list = EntityTags::parse("\"a\", \"b\"").unwrap();
        assert!(list.any(|tag| tag == "\"b\""));
        assert!(!list.any(|tag| tag == "\"c\""));
    }

    #[test]
    fn a_list_across_fields() {
        let fields = [
            h("If-Match", "\"a\""),
            h("Host", "x"),
            h("if-match", "\"b\""),
        ];
        let headers = Headers::new(&fields);
        assert_eq!(
            headers.get_list("if-match").as_deref(),
            Some("\"a\", \"b\"")
        );
        assert_eq!(headers.get_list("host").as_deref(), Some("x"));
        assert!(matches!(headers.get_list("host"), Some(Cow::Borrowed(_))));
        assert_eq!(headers.get_list("if-none-match"), None);
    }
}
