//! The listing of a directory that has no `index.html`: an HTML page, or JSON for a client
//! that prefers it (`Accept: application/json`, or `?format=json`).
//!
//! Directories first, then files, each sorted by name; hidden names, and any other name a
//! request cannot fetch, left out; every name HTML-escaped where it is shown and
//! percent-encoded where it is linked, so no file name can inject markup or a different link.
//! The listing is built in memory: a directory of 100,000 entries makes a page of about 10 MB
//! (see the note on issue 3 for its time). So it is made once for all who ask at about the same
//! time ([`Listings`]): a hundred clients that ask for it and read slowly (or not at all, until
//! the send timeout) hold one page between them, not a hundred. Clients that ask a second or
//! more apart get pages of their own, so each page counts against the buffer budget
//! (`--max-buffer-bytes`) while any response holds it ([`SharedBytes`]).

use std::ffi::CStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::resolve::{Opened, Root, as_path, child, is_servable_name};
use crate::http::{Civil, SharedBytes, from_unix_time};

pub struct Entry {
    name: Vec<u8>,
    is_dir: bool,
    /// The entry is itself a symbolic link (its other fields are its target's).
    is_symlink: bool,
    len: u64,
    modified: Option<SystemTime>,
    /// Its status change time: when anything the listing shows of it last changed.
    changed: SystemTime,
}

/// A file's status change time (`st_ctime`): it moves on every change of its contents or of its
/// status (a size, a date set back with `touch -d`, a rename of it), never backwards.
fn status_changed(metadata: &fs::Metadata) -> SystemTime {
    let nanos = u32::try_from(metadata.ctime_nsec()).unwrap_or(0);
    from_unix_time(metadata.ctime(), nanos)
}

/// When the listing of `entries`, the entries of the directory whose status is `dir`, last
/// changed: the latest status change of the directory (an entry added, removed or renamed) and
/// of each entry shown (a file written, a date set). Its `Last-Modified`.
pub fn last_changed(entries: &[Entry], dir: &fs::Metadata) -> SystemTime {
    (entries.iter())
        .map(|entry| entry.changed)
        .fold(status_changed(dir), SystemTime::max)
}

/// The entries of the directory `dir`, at `relative` beneath `root`, as they are listed:
/// directories first, then files, each sorted by name. Only what a request for it would serve
/// is listed: regular files and directories, under names a request can fetch. Hidden names,
/// FIFOs, sockets and devices are left out, and so is a symbolic link unless it resolves within
/// ROOT, as a request resolves it (a link out of ROOT would show the size and date of a file
/// the server never serves).
pub fn entries(root: &Root, relative: &CStr, dir: &File) -> io::Result<Vec<Entry>> {
    // Read the directory that was opened, not whatever the path names by now; by its path only
    // where there is no /proc.
    let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let reader =
        fs::read_dir(&by_fd).or_else(|_| fs::read_dir(root.path().join(as_path(relative))))?;
    let mut entries = Vec::new();
    for entry in reader {
        let entry = entry?;
        let name = entry.file_name().as_bytes().to_vec();
        // A name no request can fetch is not offered as a link.
        if !is_servable_name(&name) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        // A link is followed as a request for it would be: beneath ROOT, or not at all (a link
        // to a directory then lists as one). Anything else by its own metadata.
        let metadata = if kind.is_symlink() {
            let opened = child(relative, &name).map(|path| root.open(&path));
            match opened {
                Some(Ok(Opened::File(_, metadata) | Opened::Dir(_, metadata))) => metadata,
                _ => continue,
            }
        } else {
            match entry.metadata() {
                Ok(metadata) if metadata.is_file() || metadata.is_dir() => metadata,
                _ => continue,
            }
        };
        entries.push(Entry {
            name,
            is_dir: metadata.is_dir(),
            is_symlink: kind.is_symlink(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
            changed: status_changed(&metadata),
        });
    }
    entries.sort_unstable_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

/// The HTML page listing `entries` as they appear at `title` (the decoded URL path, ending in
/// `/`). It reads on a phone too: a viewport, a little CSS, the dates column dropped when narrow.
pub fn html(entries: &[Entry], title: &str, at_root: bool) -> Vec<u8> {
    let mut html = Vec::with_capacity(512 + entries.len() * 128);
    let title = escape_html(title.as_bytes());
    html.extend_from_slice(
        b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
          <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Index of ",
    );
    html.extend_from_slice(title.as_bytes());
    html.extend_from_slice(b"</title><style>");
    html.extend_from_slice(STYLE.as_bytes());
    html.extend_from_slice(b"</style></head>\n<body><h1>Index of ");
    html.extend_from_slice(title.as_bytes());
    html.extend_from_slice(
        b"</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n",
    );
    if !at_root {
        html.extend_from_slice(b"<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let size = if entry.is_dir {
            "-".to_string()
        } else {
            entry.len.to_string()
        };
        let modified = entry
            .modified
            .map(|at| Civil::of(at).http_date_string())
            .unwrap_or_default();
        let row = format!(
            "<tr><td><a href=\"{}{slash}\">{}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>\n",
            percent_encode(&entry.name),
            escape_html(&entry.name),
        );
        html.extend_from_slice(row.as_bytes());
    }
    html.extend_from_slice(b"</table>\n</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;line-height:1.4}\
h1{font-size:1.3em;word-break:break-all}table{border-collapse:collapse;width:100%;max-width:60em}\
th,td{text-align:left;padding:.25em 1.5em .25em 0;vertical-align:top}\
td:nth-child(2),th:nth-child(2){text-align:right}a{word-break:break-all}\
@media(max-width:600px){td:nth-child(3),th:nth-child(3){display:none}}";

/// The listing as JSON, in the HTML listing's order:
/// `[{"mtime":"…","name":…,"size":…,"type":"file|dir|symlink","url":…},…]`. `size` is null for
/// a directory, `mtime` (RFC 3339, UTC) null when unknown; a name that is not UTF-8 has its bad
/// bytes replaced, and `url` (the link, percent-encoded) still names it. Written straight into
/// the page, a field at a time: a tree of `serde_json::Value`s first took about 500 bytes an
/// entry, 50 MB for 100,000, which the thread's allocator then kept.
pub fn json(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + entries.len() * 128);
    out.push(b'[');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"mtime\":");
        match entry.modified {
            Some(at) => json_string(&mut out, &rfc3339(at)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"name\":");
        json_string(&mut out, &String::from_utf8_lossy(&entry.name));
        out.extend_from_slice(b",\"size\":");
        match entry.is_dir {
            true => out.extend_from_slice(b"null"),
            false => out.extend_from_slice(entry.len.to_string().as_bytes()),
        }
        let kind: &[u8] = match (entry.is_symlink, entry.is_dir) {
            (true, _) => b"symlink",
            (false, true) => b"dir",
            (false, false) => b"file",
        };
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(kind);
        out.extend_from_slice(b"\",\"url\":\"");
        // Percent-encoded: nothing in it needs escaping in a JSON string.
        out.extend_from_slice(percent_encode(&entry.name).as_bytes());
        if entry.is_dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]\n");
    out
}

/// `text` as a JSON string, escaped as JSON requires.
fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("a string written to a Vec");
}

/// `2026-12-02T04:04:27Z`.
fn rfc3339(at: SystemTime) -> String {
    let Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        ..
    } = Civil::of(at);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// How long a listing made may be given again, to a client that asks for the same page of the
/// same directory while another is still being sent it: what it shows of its entries (sizes,
/// dates) may be this much older than the request.
pub const SHARED_FOR: Duration = Duration::from_secs(1);

/// The listings being sent, each shared by every response that shows the same page: the same
/// directory (device and inode), unchanged since (its modification time: an entry added,
/// removed or renamed changes it), under the same title, in the same format, begun less than
/// [`SHARED_FOR`] ago. A request for a page that is being made waits for it rather than make
/// another. Held weakly: a page lives only while a response holds it, so an idle server holds
/// none, and a page is never given again once every client has it. (An `Arc` of a
/// [`SharedBytes`], which holds a `Vec`, rather than of a slice: a weak reference keeps its
/// allocation, which is then a few words, not the page.)
#[derive(Default)]
pub struct Listings(Mutex<Vec<Arc<Slot>>>);

/// What a page shows, as far as sharing it goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PageKey {
    pub dev: u64,
    pub ino: u64,
    /// The directory's modification time, seconds and nanoseconds.
    pub modified: (i64, i64),
    pub title: String,
    pub json: bool,
}

/// One page, being made or made.
struct Slot {
    key: PageKey,
    /// When the directory began to be read for it.
    at: Instant,
    /// Set once made (`None` if making it failed).
    page: OnceLock<Option<Kept>>,
}

/// A page made, as its slot keeps it: held weakly, with its validators.
struct Kept {
    bytes: Weak<SharedBytes>,
    tag: Arc<str>,
    changed: SystemTime,
}

impl Slot {
    /// Whether the page may still be given, at `now`: begun less than [`SHARED_FOR`] ago, and
    /// being made or held by some response.
    fn is_live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < SHARED_FOR
            && (self.page.get()).is_none_or(|page| {
                page.as_ref()
                    .is_some_and(|kept| kept.bytes.strong_count() > 0)
            })
    }
}

/// A page, as responses are given it: its bytes and its validators.
pub struct Page {
    pub bytes: Arc<SharedBytes>,
    /// A strong entity tag made of the page's bytes ([`entity_tag`]): the same page, the same
    /// tag, in every loop and every process, whenever it is made.
    pub tag: Arc<str>,
    /// When what it shows last changed ([`last_changed`]): its `Last-Modified`.
    pub changed: SystemTime,
}

impl Page {
    /// What `make` made (the page, and when what it shows last changed), tagged.
    fn made(make: impl FnOnce() -> io::Result<(SharedBytes, SystemTime)>) -> io::Result<Page> {
        let (bytes, changed) = make()?;
        Ok(Page {
            tag: entity_tag(&bytes).into(),
            bytes: Arc::new(bytes),
            changed,
        })
    }

    fn kept(&self) -> Kept {
        Kept {
            bytes: Arc::downgrade(&self.bytes),
            tag: self.tag.clone(),
            changed: self.changed,
        }
    }
}

impl Kept {
    fn page(&self) -> Option<Page> {
        Some(Page {
            bytes: self.bytes.upgrade()?,
            tag: self.tag.clone(),
            changed: self.changed,
        })
    }
}

/// `"<length>-<hash>"`, in hex: the page's length and its 64-bit FNV-1a hash. Made of the bytes
/// themselves, so it changes exactly when the page does, and is the same for the same page in
/// every process (a hash seeded per process, as std's `RandomState` is, would give a browser a
/// new tag from each loop). The 11 MB page of 100,000 entries takes 13 ms, a few percent of the
/// time it takes to make.
pub fn entity_tag(page: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = (page.iter()).fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("\"{:x}-{hash:016x}\"", page.len())
}

impl Listings {
    /// The page for `key`: one begun since `now - SHARED_FOR` and still held (waiting for it
    /// if it is being made), or else the one `make` makes now (with the time what it shows
    /// last changed), for others to share.
    pub fn get_or_make(
        &self,
        key: PageKey,
        now: Instant,
        make: impl FnOnce() -> io::Result<(SharedBytes, SystemTime)>,
    ) -> io::Result<Page> {
        let slot = self.slot(key, now);
        let mut make = Some(make);
        let mut made = None;
        let kept = slot.page.get_or_init(|| {
            let make = make.take().expect("an initializer runs once");
            let page = Page::made(make);
            let kept = page.as_ref().ok().map(Page::kept);
            made = Some(page);
            kept
        });
        if let Some(page) = made {
            return page;
        }
        // Made by another request: shared, unless every response holding it has let go since
        // (or making it failed); then made here, for this request alone.
        let make = make.expect("taken only by the initializer, which then sets `made`");
        match kept.as_ref().and_then(Kept::page) {
            Some(page) => Ok(page),
            None => Page::made(make),
        }
    }

    /// The slot that serves `key` now, found or begun; stale and let-go slots are forgotten.
    fn slot(&self, key: PageKey, now: Instant) -> Arc<Slot> {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots
            .iter()
            .find(|slot| slot.key == key && slot.is_live(now))
        {
            return slot.clone();
        }
        slots.retain(|slot| slot.is_live(now));
        let slot = Arc::new(Slot {
            key,
            at: now,
            page: OnceLock::new(),
        });
        slots.push(slot.clone());
        slot
    }

    /// Pages remembered, held, being made or neither.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Text safe to place in HTML, from bytes that may not be UTF-8. A control character (a file
/// may be named with a newline or an escape in it) is shown by its picture (U+2400 on: `␊`,
/// `␛`, `␡`), or as U+FFFD for the C1 range: raw, HTML would fold it into a space or take it
/// as a parse error, and the name shown would not be the name linked.
pub fn escape_html(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\0'..='\x1f' => out.extend(char::from_u32(0x2400 + c as u32)),
            '\x7f' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}' => out.push(char::REPLACEMENT_CHARACTER),
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

    /// A page is shared while it is held and fresh, for the same key only; one that nobody holds,
    /// or made too long ago, is made again, and what is remembered does not grow.
    #[test]
    fn listings_are_shared_while_held_and_fresh() {
        let listings = Listings::default();
        let key = |title: &str, json| PageKey {
            dev: 1,
            ino: 2,
            modified: (3, 4),
            title: title.into(),
            json,
        };
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            let page = format!("page {}", made.get()).into_bytes();
            Ok((SharedBytes::new(page), SystemTime::UNIX_EPOCH))
        };
        let start = Instant::now();
        let first = listings
            .get_or_make(key("/a/", false), start, make)
            .unwrap();
        let again = listings
            .get_or_make(key("/a/", false), start + SHARED_FOR / 2, make)
            .unwrap();
        assert!(Arc::ptr_eq(&first.bytes, &again.bytes));
        assert_eq!(first.tag, again.tag);
        assert_eq!(made.get(), 1);
        // Another title, another format, another state of the directory: pages of their own.
        let json = listings.get_or_make(key("/a/", true), start, make).unwrap();
        let other = listings
            .get_or_make(key("/b/", false), start, make)
            .unwrap();
        let changed = PageKey {
            modified: (3, 5),
            ..key("/a/", false)
        };
        let newer = listings.get_or_make(changed, start, make).unwrap();
        assert_eq!(made.get(), 4);
        assert!(!Arc::ptr_eq(&json.bytes, &first.bytes));
        assert!(!Arc::ptr_eq(&other.bytes, &first.bytes));
        assert!(!Arc::ptr_eq(&newer.bytes, &first.bytes));
        assert_ne!(newer.tag, first.tag, "another page, another tag");
        // Too old to give again, though still held: made anew, and replaces the old.
        let later = start + SHARED_FOR;
        let fresh = listings
            .get_or_make(key("/a/", false), later, make)
            .unwrap();
        assert!(!Arc::ptr_eq(&fresh.bytes, &first.bytes));
        assert_eq!(&**fresh.bytes, b"page 5");
        // Held by nobody: made again.
        drop(fresh);
        let remade = listings
            .get_or_make(key("/a/", false), later, make)
            .unwrap();
        assert_eq!(&**remade.bytes, b"page 6");
        // The stale and the unheld are forgotten as pages are made.
        drop((first, again, json, other, newer));
        let last = listings
            .get_or_make(key("/c/", false), later + SHARED_FOR, make)
            .unwrap();
        assert_eq!(listings.remembered(), 1);
        drop((remade, last));
        // A page that cannot be made is an error, and is not given to the next request.
        let failed = listings.get_or_make(key("/d/", false), later, || {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        });
        assert!(failed.is_err());
        let made_after = listings
            .get_or_make(key("/d/", false), later, make)
            .unwrap();
        assert_eq!(&**made_after.bytes, b"page 8");
        assert_eq!(listings.remembered(), 1);
    }

    /// A request for a page being made waits for it, and makes none of its own.
    #[test]
    fn a_page_being_made_is_waited_for() {
        let listings = Listings::default();
        let key = PageKey {
            dev: 1,
            ino: 2,
            modified: (3, 4),
            title: "/".into(),
            json: false,
        };
        let now = Instant::now();
        let (started, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            let maker = scope.spawn(|| {
                listings.get_or_make(key.clone(), now, || {
                    started.wait();
                    go.wait();
                    Ok((SharedBytes::new(b"page".to_vec()), SystemTime::UNIX_EPOCH))
                })
            });
            started.wait();
            let waiter = scope
                .spawn(|| listings.get_or_make(key.clone(), now, || panic!("made a second time")));
            go.wait();
            let (made, waited) = (maker.join().unwrap(), waiter.join().unwrap());
            assert!(Arc::ptr_eq(&made.unwrap().bytes, &waited.unwrap().bytes));
        });
    }

    /// A page's tag is its bytes': the same page made twice has the same tag, and a page that
    /// differs in one byte, or only in length, another.
    #[test]
    fn entity_tags_are_made_of_the_bytes() {
        // FNV-1a's published value for "a".
        assert_eq!(entity_tag(b"a"), "\"1-af63dc4c8601ec8c\"");
        assert_eq!(entity_tag(b""), "\"0-cbf29ce484222325\"");
        let page = b"<tr><td>a.txt</td><td>5</td></tr>".to_vec();
        assert_eq!(entity_tag(&page), entity_tag(&page.clone()));
        let mut other = page.clone();
        other[20] = b'6';
        assert_ne!(entity_tag(&page), entity_tag(&other));
        assert_ne!(entity_tag(b"\0"), entity_tag(b"\0\0"));
    }

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            escape_html(b"<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape_html(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
        assert_eq!(
            escape_html(b"a\nb\x1b[31mc\td\x7f\x00\xc2\x85"),
            "a\u{240a}b\u{241b}[31mc\u{2409}d\u{2421}\u{2400}\u{fffd}"
        );
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
        std::os::unix::fs::symlink("alpha.txt", dir.join("link")).unwrap();
        let opened = File::open(&dir).unwrap();
        let root = Root::new(&dir).unwrap();
        let entries = entries(&root, c".", &opened).unwrap();
        let html = String::from_utf8(html(&entries, "/x/", false)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json(&entries)).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        // The same entries, in the same order, as JSON.
        let names: Vec<&str> = (json.as_array().unwrap().iter())
            .map(|item| item["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "zeta-dir",
                "<img src=x onerror=\"alert(1)\">.html",
                "alpha.txt",
                "link"
            ]
        );
        assert_eq!(json[0]["type"], "dir");
        assert!(json[0]["size"].is_null());
        assert_eq!(json[2]["type"], "file");
        assert_eq!(json[2]["size"], 5);
        assert_eq!(json[3]["type"], "symlink");
        assert!(json[2]["mtime"].as_str().unwrap().ends_with('Z'));
        assert!(html.contains("name=\"viewport\""));

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

    /// Only what a request would serve is listed: no link out of ROOT (straight, through `..`,
    /// to /etc), no link loop, no FIFO, and no link to one; links that stay inside are listed
    /// with their targets' size and kind.
    #[test]
    fn lists_only_what_is_served() {
        let base = std::env::temp_dir().join(format!("listing-traps-{}", std::process::id()));
        let path = super::super::resolve::trap_tree(&base).unwrap();
        let fifo = std::ffi::CString::new(path.join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("pipe", path.join("pipe-link")).unwrap();
        std::os::unix::fs::symlink("dir/sub", path.join("dir-link")).unwrap();
        let root = Root::new(&path).unwrap();
        let listed = |relative: &str| {
            let opened = File::open(path.join(relative)).unwrap();
            let relative = std::ffi::CString::new(relative).unwrap();
            let found = entries(&root, &relative, &opened).unwrap();
            (found.iter())
                .map(|entry| {
                    let name = String::from_utf8_lossy(&entry.name).into_owned();
                    (name, entry.is_dir, entry.is_symlink, entry.len)
                })
                .collect::<Vec<_>>()
        };
        let at_root = listed(".");
        let in_dir = listed("dir/");
        fs::remove_dir_all(&base).unwrap();
        let names: Vec<&str> = at_root.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(names, ["dir", "dir-link", "a b.txt", "file.txt", "in-link"]);
        assert!(
            at_root[1].1 && at_root[1].2,
            "a link to a directory inside is one"
        );
        assert_eq!(
            at_root[4],
            ("in-link".into(), false, true, 4),
            "deep.txt's 4 bytes"
        );
        let names: Vec<&str> = in_dir.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(names, ["sub"], "dir/up-link leads out of ROOT");
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use std::time::Duration;

    /// The page is the one `serde_json` makes of the same items as `Value`s, byte for byte.
    #[test]
    fn json_is_what_serde_json_writes() {
        let entry = |name: &[u8], is_dir, is_symlink, modified| Entry {
            name: name.to_vec(),
            is_dir,
            is_symlink,
            len: 1234,
            modified,
            changed: SystemTime::UNIX_EPOCH,
        };
        let at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_841_067));
        let entries = [
            entry(b"dir", true, false, at),
            entry(b"a \"quoted\" \\ name\n\x01\x7f", false, false, None),
            entry(b"caf\xc3\xa9 \xff.txt", false, true, at),
            entry(b"<&>", false, false, at),
        ];
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                let kind = match (entry.is_symlink, entry.is_dir) {
                    (true, _) => "symlink",
                    (false, true) => "dir",
                    (false, false) => "file",
                };
                let slash = if entry.is_dir { "/" } else { "" };
                serde_json::json!({
                    "name": String::from_utf8_lossy(&entry.name),
                    "url": format!("{}{slash}", percent_encode(&entry.name)),
                    "type": kind,
                    "size": (!entry.is_dir).then_some(entry.len),
                    "mtime": entry.modified.map(rfc3339),
                })
            })
            .collect();
        let mut expected = serde_json::to_vec(&items).unwrap();
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8(json(&entries)).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        assert_eq!(json(&[]), b"[]\n");
    }

    #[test]
    fn rfc3339_dates() {
        let at = |secs| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_841_067), "2026-11-28T04:44:27Z");
    }
}
