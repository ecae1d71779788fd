//! The request target and the Host field: what RFC 9112 3.2 and RFC 3986 3.2 allow, and nothing
//! else.
//!
//! `parse.rs` hands every request target and Host value here. A target splits into its path and
//! query (origin form, `/a?b`), or its authority, path and query (absolute form,
//! `http://host:8080/a?b`), or stands alone (`*` for OPTIONS, `host:port` for CONNECT). An
//! authority is a uri-host (a registered name, an IPv4 address, or an IPv6 or future address in
//! brackets) and an optional port. Anything else is refused: two parsers that read the host
//! differently route the same request to different places.

use core::net::Ipv6Addr;

use super::response::Status;

/// A request target taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path, still percent-encoded. Starts with `/`, except `*` (OPTIONS) and the authority
    /// itself (CONNECT).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The authority an absolute-form or authority-form target names: it is the request's host
    /// (RFC 9112 3.2.2), whatever the Host field says.
    pub authority: Option<&'a str>,
}

/// Splits a request target, refusing (400) what RFC 9112 3.2 does not allow: a fragment, a byte
/// outside visible ASCII, a form the method may not use, an empty or malformed authority, a
/// scheme other than `http`.
// Inlined where it is called (the hot path's `interpret`, and the head scanner's cold check of a
// request line): with two callers the compiler kept it out of line, 42 instructions more a
// request under callgrind.
#[inline(always)]
pub fn split_target<'a>(method: &str, target: &'a str) -> Result<Target<'a>, Status> {
    let bad = Err(Status::BAD_REQUEST);
    // One pass over the bytes: every one visible ASCII (httparse lets some others through), no
    // fragment (a client never sends one), and where the query starts. A table lookup a byte:
    // it runs on every request.
    let bytes = target.as_bytes();
    let plain = |from: usize, class: u8| {
        (bytes[from..].iter())
            .position(|&b| !is(class, b))
            .map_or(bytes.len(), |n| from + n)
    };
    let path_end = plain(0, PATH_PLAIN);
    let (before_query, query) = match bytes.get(path_end) {
        None => (target, None),
        Some(b'?') => match bytes.get(plain(path_end + 1, QUERY_PLAIN)) {
            None => (&target[..path_end], Some(&target[path_end + 1..])),
            Some(_) => return bad,
        },
        Some(_) => return bad,
    };
    if method == "CONNECT" {
        // Authority form, and only for CONNECT (RFC 9112 3.2.3): `host:port`, the port required.
        return match valid_authority(target.as_bytes(), Port::Required) {
            true => Ok(Target {
                path: target,
                query: None,
                authority: Some(target),
            }),
            false => bad,
        };
    }
    if before_query.starts_with('/') {
        return Ok(Target {
            path: before_query,
            query,
            authority: None,
        });
    }
    if target == "*" {
        return match method {
            "OPTIONS" => Ok(Target {
                path: "*",
                query: None,
                authority: None,
            }),
            _ => bad,
        };
    }
    // Absolute form (RFC 9112 3.2.2): `http://authority[/path][?query]`, or `https://`: the
    // two schemes HTTP serves (RFC 9110 4.2), case-insensitive. Either is taken on either kind of
    // connection, as nginx and h11 take them: the scheme chooses no resource here.
    let Some(rest) = ["http://", "https://"].into_iter().find_map(|scheme| {
        before_query
            .get(..scheme.len())
            .filter(|start| start.eq_ignore_ascii_case(scheme))
            .map(|_| &before_query[scheme.len()..])
    }) else {
        return bad;
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if !valid_authority(authority.as_bytes(), Port::Optional) {
        return bad;
    }
    Ok(Target {
        path,
        query,
        authority: Some(authority),
    })
}

/// A Host field value (surrounding whitespace already removed) as text, if it is valid:
/// `uri-host [":" port]` (RFC 9110 7.2).
// Inlined for the same reason as `split_target`.
#[inline(always)]
pub fn valid_host(value: &[u8]) -> Option<&str> {
    if !valid_authority(value, Port::Optional) {
        return None;
    }
    // SAFETY: `valid_authority` accepts printable ASCII only (`reg_name_len`, `valid_port`,
    // and the IP literal, whose text must parse as an address), and ASCII is UTF-8. The checked
    // conversion cost more than the whole validation, on every request.
    Some(unsafe { std::str::from_utf8_unchecked(value) })
}

/// The byte a percent-escape's two hex digits stand for (RFC 3986 2.1).
pub fn unescape(high: u8, low: u8) -> Option<u8> {
    let hex = |digit: u8| (digit as char).to_digit(16).map(|value| value as u8);
    Some(hex(high)? << 4 | hex(low)?)
}

/// `text` with its percent-escapes decoded; `None` if one is malformed.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        decoded.push(match byte {
            b'%' => unescape(bytes.next()?, bytes.next()?)?,
            _ => byte,
        });
    }
    Some(decoded)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Optional,
    Required,
}

/// `uri-host [":" port]`, with no userinfo: RFC 3986 3.2.2-3.2.3, plus what nginx refuses in a
/// name (`..`, an empty name once one trailing dot is dropped) and a comma (a Host is one
/// value, never a list).
#[inline(always)]
fn valid_authority(authority: &[u8], port: Port) -> bool {
    let (host_ok, rest) = match authority {
        [b'[', inner @ ..] => match inner.iter().position(|&b| b == b']') {
            Some(close) => (valid_ip_literal(&inner[..close]), &inner[close + 1..]),
            None => return false,
        },
        _ => match reg_name_len(authority) {
            // Not empty, and not one dot alone (empty once the trailing dot is dropped).
            Some(len) => (len > 0 && authority[..len] != *b".", &authority[len..]),
            None => return false,
        },
    };
    host_ok
        && match rest {
            [] => port == Port::Optional,
            [b':', digits @ ..] => valid_port(digits, port),
            _ => false,
        }
}

/// `*DIGIT` up to 65535; empty only where the port is optional (RFC 3986 allows `host:`).
fn valid_port(digits: &[u8], port: Port) -> bool {
    if digits.is_empty() {
        return port == Port::Optional;
    }
    let mut value = 0u32;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return false;
        }
        value = value * 10 + u32::from(digit - b'0');
        if value > 65535 {
            return false;
        }
    }
    true
}

/// The length of the reg-name that starts `authority`, up to a `:` or the end:
/// `*( unreserved / pct-encoded / sub-delims )` (which covers IPv4 addresses too), less the
/// comma, with no empty label between dots. `None` at the first byte that cannot be in one.
/// A table lookup a byte: it runs on every request.
fn reg_name_len(authority: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < authority.len() {
        let byte = authority[at];
        if !is(REG_NAME_PLAIN, byte) {
            match byte {
                b'.' if at == 0 || authority[at - 1] != b'.' => {}
                b':' => return Some(at),
                b'%' => return escaped(authority, at),
                _ => return None,
            }
        }
        at += 1;
    }
    Some(at)
}

/// A percent-escape at `at`, then the rest of the name.
#[cold]
fn escaped(authority: &[u8], at: usize) -> Option<usize> {
    match authority.get(at + 1..at + 3) {
        Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
            reg_name_len(&authority[at + 3..]).map(|len| at + 3 + len)
        }
        _ => None,
    }
}

/// Inside the brackets: an IPv6 address, or `v` HEXDIG+ `.` (unreserved / sub-delims / `:`)+.
fn valid_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let dot = rest.iter().position(|&b| b == b'.');
        return match dot {
            Some(dot) if dot > 0 => {
                let (version, address) = (&rest[..dot], &rest[dot + 1..]);
                version.iter().all(u8::is_ascii_hexdigit)
                    && !address.is_empty()
                    && address
                        .iter()
                        .all(|&b| b == b':' || b == b',' || is(REG_NAME, b))
            }
            _ => false,
        };
    }
    // core's parser takes exactly RFC 4291's text forms (no zone, no brackets).
    std::str::from_utf8(inner).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}

/// Byte classes, one bit each, looked up in one table.
const REG_NAME: u8 = 1;
const TCHAR: u8 = 2;
/// A reg-name byte that needs no second look (not `.`, which may not double, nor `%`).
const REG_NAME_PLAIN: u8 = 4;
/// Visible ASCII but `?` and `#`: a path goes on.
const PATH_PLAIN: u8 = 8;
/// Visible ASCII but `#`: a query goes on.
const QUERY_PLAIN: u8 = 16;

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let alphanumeric = b.is_ascii_alphanumeric();
        // unreserved and sub-delims, without "," (see `valid_authority`).
        if alphanumeric
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || matches!(
                b,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b';' | b'='
            )
        {
            table[byte] |= REG_NAME;
            if b != b'.' {
                table[byte] |= REG_NAME_PLAIN;
            }
        }
        if b >= 0x21 && b <= 0x7e && b != b'#' {
            table[byte] |= QUERY_PLAIN;
            if b != b'?' {
                table[byte] |= PATH_PLAIN;
            }
        }
        // token characters (RFC 9110 5.6.2).
        if alphanumeric
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            table[byte] |= TCHAR;
        }
        byte += 1;
    }
    table
}

static CLASSES: [u8; 256] = classes();

fn is(class: u8, byte: u8) -> bool {
    CLASSES[usize::from(byte)] & class != 0
}

/// Whether `byte` may appear in a token (a method, a field name, a chunk extension's name).
pub fn is_tchar(byte: u8) -> bool {
    is(TCHAR, byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let good = [
            "a",
            "example.com",
            "example.com.",
            "example.com:80",
            "example.com:",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "[2001:db8::ffff:1.2.3.4]",
            "[v1.fe80::a+en1]",
            "ex%41mple",
            "a-b_c~d!$&'()*+;=",
            ".example.com",
            "localhost:65535",
            "h:00080",
        ];
        for host in good {
            assert_eq!(valid_host(host.as_bytes()), Some(host), "{host:?}");
        }
        let bad = [
            "",
            ".",
            "..",
            "user@127.0.0.1:8080",
            "127.0.0.1:8080/path",
            "a, b",
            "a,b",
            "example.com:80:80",
            "example.com:123456",
            "example.com:65536",
            "example.com:8o",
            "..example.com",
            "example..com",
            "example.com..",
            "exa/mple",
            "exa\\mple",
            "exa mple",
            "exa\tmple",
            "[::1",
            "[::1]]",
            "[::1]..",
            "[::1]x",
            "[a::1/2]",
            "[::1%25eth0]",
            "[]",
            "[v1.]",
            "[v.a]",
            "[vg.a]",
            "[1.2.3.4]",
            "ex%4",
            "ex%zz",
            "a?b",
            "a#b",
            "caf\u{e9}",
        ];
        for host in bad {
            assert_eq!(valid_host(host.as_bytes()), None, "{host:?}");
        }
    }

    /// `authority path ?query`, with `-` for what is absent.
    fn split(method: &str, target: &str) -> Result<String, Status> {
        split_target(method, target).map(|t| {
            let query = t.query.map_or("-".to_string(), |q| format!("?{q}"));
            format!("{} {} {query}", t.authority.unwrap_or("-"), t.path)
        })
    }

    #[test]
    fn targets() {
        let good = [
            ("GET", "/a/b?x=1&y", "- /a/b ?x=1&y"),
            ("GET", "/?", "- / ?"),
            ("GET", "/a?b?c", "- /a ?b?c"),
            ("GET", "http://h/a?q", "h /a ?q"),
            ("GET", "HTTP://h:8/", "h:8 / -"),
            ("GET", "http://h", "h / -"),
            ("GET", "http://h?q", "h / ?q"),
            ("GET", "http://[::1]:80/x", "[::1]:80 /x -"),
            ("GET", "https://a/b", "a /b -"),
            ("GET", "HTTPS://a:443", "a:443 / -"),
            ("OPTIONS", "*", "- * -"),
            (
                "CONNECT",
                "example.com:443",
                "example.com:443 example.com:443 -",
            ),
            ("CONNECT", "[::1]:443", "[::1]:443 [::1]:443 -"),
        ];
        for (method, target, expected) in good {
            assert_eq!(
                split(method, target),
                Ok(expected.to_string()),
                "{target:?}"
            );
        }
        let bad = [
            ("GET", "/a#frag"),
            ("GET", "/a?b#frag"),
            ("GET", "a"),
            ("GET", "*"),
            ("POST", "*"),
            ("GET", "ftp://a/b"),
            ("GET", "httpx://a/b"),
            ("GET", "https:/a/b"),
            ("GET", "https://"),
            ("GET", "http:///"),
            ("GET", "http://"),
            ("GET", "http://u@h/"),
            ("GET", "http://h:99999/"),
            ("GET", "http:/h/"),
            ("GET", "t:80"),
            ("GET", "/caf\u{e9}"),
            ("GET", "/a\x7fb"),
            ("CONNECT", "/"),
            ("CONNECT", "*"),
            ("CONNECT", "example.com"),
            ("CONNECT", "example.com:"),
            ("CONNECT", "http://example.com:443/"),
            ("CONNECT", "u@example.com:443"),
        ];
        for (method, target) in bad {
            assert_eq!(
                split(method, target),
                Err(Status::BAD_REQUEST),
                "{method} {target:?}"
            );
        }
    }

    #[test]
    fn token_characters() {
        let tokens: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        assert_eq!(tokens.len(), 26 * 2 + 10 + 15);
        for b in b"()<>@,;:\\\"/[]?={} \t\x7f\x00" {
            assert!(!is_tchar(*b), "{b}");
        }
    }
}
