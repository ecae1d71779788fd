//! The HTML listing of a directory that has no `index.html`.
//!
//! Directories first, then files, each sorted by name; hidden names left out; every name
//! HTML-escaped where it is shown and percent-encoded where it is linked, so no file name can
//! inject markup or a different link. The listing is built in memory: a directory of 100,000
//! entries makes a page of about 10 MB (see the note on issue 3 for its time).

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

struct Entry {
    name: Vec<u8>,
    is_dir: bool,
    len: u64,
    modified: Option<SystemTime>,
}

/// Renders the listing of `dir` (opened beneath ROOT; `path_for_fallback` names it for systems
/// without /proc) as it appears at `title` (the decoded URL path, ending in `/`).
pub fn render(
    dir: &File,
    path_for_fallback: &Path,
    title: &str,
    at_root: bool,
) -> io::Result<Vec<u8>> {
    // Read the directory that was opened, not whatever the path names by now.
    let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let reader = fs::read_dir(&by_fd).or_else(|_| fs::read_dir(path_for_fallback))?;
    let mut entries = Vec::new();
    for entry in reader {
        let entry = entry?;
        let name = entry.file_name().as_bytes().to_vec();
        if name.first() == Some(&b'.') {
            continue;
        }
        // Follow symlinks, so a link to a directory lists as one; a dangling link is left out.
        let Ok(metadata) = fs::metadata(entry.path()) else {
            continue;
        };
        entries.push(Entry {
            name,
            is_dir: metadata.is_dir(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        });
    }
    entries.sort_unstable_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));

    let mut html = Vec::with_capacity(512 + entries.len() * 128);
    let title = escape_html(title.as_bytes());
    html.extend_from_slice(
        b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ",
    );
    html.extend_from_slice(title.as_bytes());
    html.extend_from_slice(
        b"</title><style>td{padding:0 1.5em 0 0}</style></head>\n<body><h1>Index of ",
    );
    html.extend_from_slice(title.as_bytes());
    html.extend_from_slice(
        b"</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n",
    );
    if !at_root {
        html.extend_from_slice(b"<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    for entry in &entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let size = if entry.is_dir {
            "-".to_string()
        } else {
            entry.len.to_string()
        };
        let modified = entry
            .modified
            .map(httpdate::fmt_http_date)
            .unwrap_or_default();
        let row = format!(
            "<tr><td><a href=\"{}{slash}\">{}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>\n",
            percent_encode(&entry.name),
            escape_html(&entry.name),
        );
        html.extend_from_slice(row.as_bytes());
    }
    html.extend_from_slice(b"</table>\n</body></html>\n");
    Ok(html)
}

/// Text safe to place in HTML, from bytes that may not be UTF-8.
pub fn escape_html(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a name for use as one path segment: everything but the unreserved
/// characters of RFC 3986 is escaped.
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &byte in name {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            escape_html(b"<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape_html(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
        assert_eq!(percent_encode(b"a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
        assert_eq!(percent_encode("é".as_bytes()), "%C3%A9");
        assert_eq!(percent_encode(b"safe-._~09AZ"), "safe-._~09AZ");
    }

    #[test]
    fn lists_directories_first_hides_dotfiles_and_escapes() {
        let dir = std::env::temp_dir().join(format!("listing-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("zeta-dir")).unwrap();
        fs::write(dir.join("alpha.txt"), "12345").unwrap();
        fs::write(dir.join("<img src=x onerror=\"alert(1)\">.html"), "").unwrap();
        fs::write(dir.join(".secret"), "").unwrap();
        let opened = File::open(&dir).unwrap();
        let html = String::from_utf8(render(&opened, &dir, "/x/", false).unwrap()).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        let zeta = html.find("href=\"zeta-dir/\"").unwrap();
        let bold = html
            .find("href=\"%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E.html\"")
            .unwrap();
        let alpha = html.find("href=\"alpha.txt\"").unwrap();
        assert!(
            zeta < bold && bold < alpha,
            "directories first, then by name"
        );
        assert!(html.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.html</a>"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("secret"));
        assert!(html.contains("<td>5</td>"));
        assert!(html.contains("href=\"../\""));
        assert!(html.contains("<title>Index of /x/</title>"));
    }
}
