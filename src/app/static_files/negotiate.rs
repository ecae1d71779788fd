//! Content codings by `Accept-Encoding` (RFC 9110 12.5.3), for precompressed siblings: `x.br`,
//! `x.zst` or `x.gz` served for `x`. A pure function of the header value, tested on its own.

/// A content coding a sibling file can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// In the order ties are broken: smallest files first.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// Its name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The sibling's file name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// Whether a file name is itself a coded sibling (it is then served as it is).
    pub fn names_sibling(name: &[u8]) -> bool {
        Coding::ALL
            .iter()
            .any(|coding| name.ends_with(coding.suffix().as_bytes()))
    }
}

/// The codings to try, most wanted first: at most the three there are, kept inline (a request
/// needs no allocation for them). Derefs to a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    codings: [Coding; 3],
    len: usize,
}

impl std::ops::Deref for Wanted {
    type Target = [Coding];
    fn deref(&self) -> &[Coding] {
        &self.codings[..self.len]
    }
}

/// The codings to try, most wanted first: those the client accepts (q above 0) and prefers at
/// least as much as no coding at all. Without the header, none: a client that says nothing gets
/// the file as it is, as from nginx.
pub fn wanted(accept_encoding: Option<&str>) -> Wanted {
    let mut wanted = Wanted {
        codings: Coding::ALL,
        len: 0,
    };
    let Some(value) = accept_encoding else {
        return wanted;
    };
    // Thousandths; None: not listed.
    let mut listed: [Option<u16>; 3] = [None; 3];
    let (mut identity, mut any) = (None, None);
    // Split and trimmed as bytes (OWS is spaces and tabs): `str::split` with a char pattern
    // cost ~100 instructions a piece, more than all the rest of a small file's negotiation.
    for entry in value.as_bytes().split(|&byte| byte == b',') {
        let mut parts = entry.split(|&byte| byte == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        if token.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let (name, value) = split_once(param, b'=').unwrap_or((param, b""));
            if name.trim_ascii().eq_ignore_ascii_case(b"q") {
                q = qvalue(value.trim_ascii());
            }
        }
        // A malformed weight makes the entry meaningless: it is ignored.
        let Some(q) = q else { continue };
        let slot = if token.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else if token == b"*" {
            &mut any
        } else if let Some(index) = Coding::ALL.iter().position(|coding| {
            token.eq_ignore_ascii_case(coding.token().as_bytes())
                || (*coding == Coding::Gzip && token.eq_ignore_ascii_case(b"x-gzip"))
        }) {
            &mut listed[index]
        } else {
            continue; // a coding we have no sibling for
        };
        *slot = Some(q);
    }
    // No coding at all: as weighted when named (or by `*`), else acceptable but preferred
    // least, so that any coding the client names wins over it.
    let plain = identity.or(any).unwrap_or(0);
    let mut weighed = [(0, Coding::Br); 3];
    let acceptable = (Coding::ALL.iter().zip(listed))
        .filter_map(|(&coding, q)| q.or(any).map(|q| (q, coding)))
        .filter(|&(q, _)| q > 0 && q >= plain);
    for (slot, entry) in weighed.iter_mut().zip(acceptable) {
        *slot = entry;
        wanted.len += 1;
    }
    // Stable (an insertion sort for so few, no allocation): equal weights keep the order of `ALL`.
    weighed[..wanted.len].sort_by_key(|&(q, _)| std::cmp::Reverse(q));
    for (slot, (_, coding)) in wanted.codings.iter_mut().zip(weighed) {
        *slot = coding;
    }
    wanted
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = split_once(text, b'.').unwrap_or((text, b""));
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Padded with zeros to three digits: `0.5` is 500.
    let digits = fraction.iter().chain(std::iter::repeat(&b'0')).take(3);
    let thousandths = digits.fold(0, |n, digit| n * 10 + u16::from(digit - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `bytes` around the first `separator`, if there is one.
fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::Coding::{Br, Gzip, Zstd};
    use super::*;

    #[test]
    fn the_negotiation_table() {
        let cases: &[(Option<&str>, &[Coding])] = &[
            (None, &[]),
            (Some(""), &[]),
            (Some("gzip"), &[Gzip]),
            (Some("gzip, deflate, br, zstd"), &[Br, Zstd, Gzip]),
            (Some("gzip;q=1.0, br;q=0.5"), &[Gzip, Br]),
            (Some("br;q=0"), &[]),
            (Some("br;q=0, *"), &[Zstd, Gzip]),
            (Some("*"), &[Br, Zstd, Gzip]),
            (Some("*;q=0.5, gzip"), &[Gzip, Br, Zstd]),
            (Some("gzip;q=0.5, identity"), &[]),
            (Some("gzip;q=0.5, identity;q=0.5"), &[Gzip]),
            (Some("gzip, identity;q=0"), &[Gzip]),
            (Some("GZIP, X-Gzip"), &[Gzip]),
            (Some("x-gzip"), &[Gzip]),
            (Some("compress, deflate"), &[]),
            (Some("gzip;q=2"), &[]),
            (Some("gzip;q=0.0001"), &[]),
            (Some("gzip;q=0.001"), &[Gzip]),
            (Some(" br ; q=0.8 , gzip ; q=0.9 "), &[Gzip, Br]),
            (Some("zstd;q=0.9, br;q=0.9"), &[Br, Zstd]),
            (Some("br\t;\tQ=0.5,\tgzip"), &[Gzip, Br]),
            (Some("gzip;q=0.5;level=1, br;q"), &[Gzip]),
        ];
        for (header, expected) in cases {
            assert_eq!(*wanted(*header), **expected, "{header:?}");
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.125"), Some(125));
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"1.5"), None);
        assert_eq!(qvalue(b".5"), None);
        assert_eq!(qvalue(b"0.1234"), None);
        assert_eq!(qvalue(b"x"), None);
    }

    #[test]
    fn coded_names() {
        assert!(Coding::names_sibling(b"app.js.br"));
        assert!(Coding::names_sibling(b"a.tar.gz"));
        assert!(!Coding::names_sibling(b"app.js"));
    }
}
