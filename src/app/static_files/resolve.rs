//! URL path -> an open file or directory beneath ROOT, or the reason there is none.
//!
//! Two steps, each refusing on its own. [`decode_path`] turns the percent-encoded path into
//! segments, once, and refuses anything that could climb out or hide: `..` and every other name
//! starting with `.`, NUL, encoded slashes, backslashes. [`Root::open`] then opens the result
//! relative to ROOT with `openat2(RESOLVE_BENEATH)`: the kernel itself refuses any resolution
//! that would leave ROOT, symlinks included, atomically (no window between checking a path and
//! opening it). A symlink that stays inside ROOT works. Where `openat2` is unavailable (Linux
//! before 5.6, some sandboxes) the path is canonicalized and checked against ROOT instead.

use std::cell::RefCell;
use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::http::unescape;

/// Why a path names nothing that can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path is not valid percent-encoding: 400.
    BadRequest,
    /// Nothing servable there, or a path that tries to leave ROOT or name a hidden file: 404.
    NotFound,
    /// The file exists but the server may not read it: 403.
    Forbidden,
    /// Out of file descriptors or memory, for now: 503.
    Unavailable,
    /// Anything else the filesystem reports (an I/O error): 500.
    Failed,
}

/// A decoded path, as the kernel takes it: its segments joined by `/`, NUL-terminated (`.` for
/// ROOT itself), and whether it ended with `/` (a directory asked for as one). Built in one
/// buffer, so that a request's path costs one allocation, not one per segment and more to join.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedPath {
    /// With its NUL; a `Vec`, as a `CString` would give back its spare capacity (a `realloc`).
    relative: Vec<u8>,
    pub trailing_slash: bool,
}

impl DecodedPath {
    /// The path relative to ROOT. A trailing slash is kept, so that opening `file.txt/` fails as
    /// it should (ENOTDIR).
    pub fn relative(&self) -> &CStr {
        // Always the whole buffer: it ends with its only NUL.
        CStr::from_bytes_until_nul(&self.relative).unwrap_or_default()
    }

    /// The decoded segments, in order; none for ROOT.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        let joined = if self.is_root() {
            &[][..]
        } else {
            self.relative().to_bytes()
        };
        joined
            .split(|&byte| byte == b'/')
            .filter(|segment| !segment.is_empty())
    }

    /// The last segment: the file's name (empty for ROOT).
    pub fn name(&self) -> &[u8] {
        self.segments().next_back().unwrap_or_default()
    }

    /// Whether the path names ROOT itself (no segment can be `.`: names starting with `.` are
    /// refused).
    pub fn is_root(&self) -> bool {
        self.relative == b".\0"
    }
}

/// Percent-decodes `path` (the request's path, starting with `/`) once, and splits it into
/// segments, refusing what must never reach the filesystem.
pub fn decode_path(path: &str) -> Result<DecodedPath, Refusal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refusal::NotFound); // `*`, or nothing like a path
    };
    // Room for the NUL, and for the `.` of ROOT.
    let mut joined = Vec::with_capacity(rest.len() + 2);
    let mut segment_start = 0;
    let mut bytes = rest.bytes();
    while let Some(byte) = bytes.next() {
        let decoded = match byte {
            b'/' => {
                // Empty segments (`//`) are skipped, as nginx merges slashes.
                if joined.len() > segment_start {
                    joined.push(b'/');
                    segment_start = joined.len();
                }
                continue;
            }
            b'%' => {
                let (Some(high), Some(low)) = (bytes.next(), bytes.next()) else {
                    return Err(Refusal::BadRequest);
                };
                let decoded = unescape(high, low).ok_or(Refusal::BadRequest)?;
                // An encoded slash would join segments the client was not allowed to name.
                if decoded == b'/' {
                    return Err(Refusal::NotFound);
                }
                decoded
            }
            _ => byte,
        };
        if decoded == 0 {
            return Err(Refusal::NotFound);
        }
        joined.push(decoded);
    }
    let trailing_slash = joined.len() == segment_start && !rest.is_empty();
    // Judged on the decoded bytes, before ROOT becomes `.`: `DecodedPath::segments` cannot
    // tell a decoded `.` segment from ROOT (`/.` would list ROOT; `refuses_hostile_paths`).
    let segments = joined.split(|&byte| byte == b'/');
    if !segments
        .filter(|segment| !segment.is_empty())
        .all(is_servable_name)
    {
        return Err(Refusal::NotFound);
    }
    if joined.is_empty() {
        joined.push(b'.');
    }
    // The only NUL: a decoded one was refused above.
    joined.push(0);
    Ok(DecodedPath {
        relative: joined,
        trailing_slash,
    })
}

/// Whether a file name (one path segment, decoded) may be served, and so listed: not `.`, `..`
/// or any other name starting with `.`, and no backslash (a path separator to some clients
/// and to some servers a proxy may sit in front of).
pub fn is_servable_name(name: &[u8]) -> bool {
    name.first() != Some(&b'.') && !name.contains(&b'\\')
}

/// What a path names, opened.
#[derive(Debug)]
pub enum Opened {
    File(File, Metadata),
    Dir(File, Metadata),
}

/// The served directory, opened; every lookup is relative to it. ([`DocumentRoot`] opens
/// another when the path ROOT was named by comes to name another directory.)
#[derive(Debug)]
pub struct Root {
    /// The canonical path: what "inside ROOT" means for the fallback, and for tests.
    path: PathBuf,
    /// An `O_PATH` descriptor of ROOT, the anchor of every `openat2`.
    fd: OwnedFd,
    /// Its device and inode: which directory it is.
    identity: (u64, u64),
    /// Cleared the first time `openat2` turns out to be unavailable.
    beneath: AtomicBool,
}

impl Root {
    pub fn new(path: &Path) -> io::Result<Root> {
        let path = path.canonicalize()?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&path)?;
        let metadata = dir.metadata()?;
        Ok(Root {
            path,
            fd: dir.into(),
            identity: (metadata.dev(), metadata.ino()),
            beneath: AtomicBool::new(true),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // ANCHOR: open_beneath
    /// Opens `relative` (from [`DecodedPath::relative`]) beneath ROOT. Only regular files and
    /// directories are served.
    pub fn open(&self, relative: &CStr) -> Result<Opened, Refusal> {
        let file = self.open_beneath(relative).map_err(refusal)?;
        let metadata = file.metadata().map_err(refusal)?;
        if metadata.is_file() {
            Ok(Opened::File(file, metadata))
        } else if metadata.is_dir() {
            Ok(Opened::Dir(file, metadata))
        } else {
            Err(Refusal::NotFound) // devices, sockets, FIFOs
        }
    }
    // ANCHOR_END: open_beneath

    /// Whether `relative` may name something beneath ROOT: false only when one `fstatat` (which
    /// opens nothing and does not follow a final symlink) finds no such name. A stat that fails
    /// costs little more than half an open that fails, which sets up an open file before it
    /// looks (161 against 287 ns here), so a caller that mostly asks about names that are not
    /// there asks this first. It decides nothing by itself: what it finds is then opened by
    /// [`Root::open`], beneath ROOT. (Its path is resolved without `RESOLVE_BENEATH`, so a name
    /// reached through a link out of ROOT may be "maybe there"; `open` then refuses it.)
    pub fn may_exist(&self, relative: &CStr) -> bool {
        match self.stat_at(relative, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => true,
            Err(err) => !matches!(
                err.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG)
            ),
        }
    }

    /// The status of directory `dir` beneath ROOT (ROOT itself for `None`), following symlinks
    /// as an open would; `None` if it cannot be had. It serves no content: [`super::bare`] reads
    /// a directory's identity and times from it, to tell whether its entries have changed.
    pub fn stat_dir(&self, dir: Option<&CStr>) -> Option<libc::stat> {
        match dir {
            Some(dir) => self.stat_at(dir, 0),
            None => self.stat_at(c"", libc::AT_EMPTY_PATH),
        }
        .ok()
    }

    /// `fstatat` of `path` from ROOT's descriptor (not beneath it: see the callers).
    fn stat_at(&self, path: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the descriptor is open, the path is a NUL-terminated string, and `stat` is
        // room for the one struct the kernel writes, read only when it says it wrote it.
        let done =
            unsafe { libc::fstatat(self.fd.as_raw_fd(), path.as_ptr(), stat.as_mut_ptr(), flags) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat returned 0, so it filled `stat` in.
        Ok(unsafe { stat.assume_init() })
    }

    fn open_beneath(&self, relative: &CStr) -> io::Result<File> {
        if self.beneath.load(Ordering::Relaxed) {
            match openat2_beneath(&self.fd, relative) {
                Err(err) if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    // No openat2 here (too old a kernel, or a seccomp filter): fall back, for
                    // good. (EPERM from a real file is EACCES, not EPERM, for open.)
                    self.beneath.store(false, Ordering::Relaxed);
                }
                result => return result,
            }
        }
        self.open_canonical(relative)
    }

    /// The fallback: resolve every symlink in user space and check the result is inside ROOT.
    fn open_canonical(&self, relative: &CStr) -> io::Result<File> {
        let canonical = self.path.join(as_path(relative)).canonicalize()?;
        if !canonical.starts_with(&self.path) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OPEN_FLAGS)
            .open(canonical)
    }
}

/// ROOT as it was named, followed when the name comes to mean another directory: a deploy that
/// switches a link (`current -> releases/42`), or a build that removes the directory and makes
/// it anew (`rm -rf dist && npm run build`). nginx and `python -m http.server` look the path up
/// with every request, so they follow at once; a [`Root`] held for good would serve the old
/// directory, or 404 for everything once it is removed, until a restart.
///
/// Looking the name up again costs a `stat` of a whole path, so each thread does it at most
/// once a second, and keeps the [`Root`] it found in a memory of its own (no lock, and no
/// shared counter bounced between the loops' cores on every request). Threads that find the
/// same new directory share one `Root` (one descriptor); the old one is closed when the last
/// thread lets it go. A request keeps the `Root` it began with to its end, so its file, its
/// siblings and its listing all come from one directory.
pub struct DocumentRoot {
    /// The name, made absolute (links on it not resolved): what is looked up again.
    named: PathBuf,
    /// The directory the name meant when last opened by any thread.
    latest: Mutex<Arc<Root>>,
    /// This root's number in each thread's memory.
    id: u64,
}

/// A thread's hold on the [`Root`] it serves from: cloned with every request without touching
/// the `Arc`'s count, which all threads share (an atomic add on a cache line bounced between the
/// loops' cores, twice a request).
#[allow(clippy::redundant_allocation)]
pub type HeldRoot = Rc<Arc<Root>>;

/// A thread's `Root` for a [`DocumentRoot`], and the second (of the coarse monotonic clock) in
/// which it last looked at its name.
struct Held {
    id: u64,
    root: HeldRoot,
    looked: i64,
}

/// Roots remembered per thread; past it, all are forgotten (a server has one; tests make many).
const HELD_MAX: usize = 8;

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

impl DocumentRoot {
    /// Opens `path` (an error if it is not a directory that can be opened).
    pub fn new(path: &Path) -> io::Result<DocumentRoot> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let named = std::path::absolute(path)?;
        let root = Root::new(&named)?;
        Ok(DocumentRoot {
            named,
            latest: Mutex::new(Arc::new(root)),
            id: IDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The directory ROOT names, as this thread last found it, at most a second ago.
    pub fn current(&self) -> HeldRoot {
        self.current_at(coarse_second())
    }

    // ANCHOR: document_root
    /// [`Self::current`], in `second` of some clock: the name is looked up again when it
    /// differs from the one this thread last looked in.
    fn current_at(&self, second: i64) -> HeldRoot {
        HELD.with_borrow_mut(|held| {
            if let Some(mine) = held.iter_mut().find(|mine| mine.id == self.id) {
                if mine.looked != second {
                    mine.looked = second;
                    if let Some(moved) = self.moved(&mine.root) {
                        mine.root = Rc::new(moved);
                    }
                }
                return Rc::clone(&mine.root);
            }
            if held.len() >= HELD_MAX {
                held.clear();
            }
            let latest = Arc::clone(&self.latest.lock().unwrap_or_else(PoisonError::into_inner));
            let root = Rc::new(self.moved(&latest).unwrap_or(latest));
            held.push(Held {
                id: self.id,
                root: Rc::clone(&root),
                looked: second,
            });
            root
        })
    }

    /// The directory the name means now, if it is another than `root`; `None` also when the
    /// name means nothing that can be opened just now (a link being replaced, a directory
    /// between its removal and its remaking): `root` serves on meanwhile.
    fn moved(&self, root: &Root) -> Option<Arc<Root>> {
        let now = std::fs::metadata(&self.named).ok()?;
        if (now.dev(), now.ino()) == root.identity {
            return None;
        }
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.identity != (now.dev(), now.ino()) {
            *latest = Arc::new(Root::new(&self.named).ok()?);
        }
        Some(Arc::clone(&latest))
    }
    // ANCHOR_END: document_root
}

/// The seconds of `CLOCK_MONOTONIC_COARSE`: a read of the kernel's last tick (no clock
/// hardware read), enough to tell one second from the next.
fn coarse_second() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the one the kernel writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec
}

/// A path as the kernel takes it, as a `Path`.
pub fn as_path(path: &CStr) -> &Path {
    Path::new(OsStr::from_bytes(path.to_bytes()))
}

/// `dir/name` (`./name` in ROOT), NUL-terminated; `None` if `name` holds a NUL.
pub fn child(dir: &CStr, name: &[u8]) -> Option<CString> {
    let dir = dir.to_bytes();
    let mut path = Vec::with_capacity(dir.len() + name.len() + 2);
    path.extend_from_slice(dir);
    if !dir.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    CString::new(path).ok()
}

/// Read-only; non-blocking so that a FIFO in ROOT cannot stall a loop (regular files ignore it).
const OPEN_FLAGS: libc::c_int = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

// ANCHOR: openat2
fn openat2_beneath(root: &OwnedFd, relative: &CStr) -> io::Result<File> {
    // SAFETY: open_how is plain data; zeroed is a valid value, then the fields we use are set.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | OPEN_FLAGS) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the descriptor is open, the path is a NUL-terminated string, and `how` is a valid
    // open_how whose size is passed; the kernel only reads them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            relative.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as libc::c_int) })
}
// ANCHOR_END: openat2

/// What an error from opening means for the client.
pub fn refusal(err: io::Error) -> Refusal {
    match err.raw_os_error() {
        // Missing, not a directory, escaping ROOT (EXDEV), a symlink loop, too long.
        Some(
            libc::ENOENT
            | libc::ENOTDIR
            | libc::EXDEV
            | libc::ELOOP
            | libc::ENAMETOOLONG
            | libc::EINVAL,
        ) => Refusal::NotFound,
        Some(libc::EACCES | libc::EPERM) => Refusal::Forbidden,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => Refusal::Unavailable,
        _ => Refusal::Failed,
    }
}

/// Builds, in a fresh `base`, a ROOT (`base/root`, returned) laid with the traps a resolver must
/// not fall into: a secret beside ROOT, links to it, to `..` and to /etc, a link loop, a hidden
/// file; and a link that stays inside, which must work. For the tests and the fuzz target.
#[doc(hidden)]
pub fn trap_tree(base: &Path) -> io::Result<PathBuf> {
    use std::fs;
    use std::os::unix::fs::symlink;
    let _ = fs::remove_dir_all(base);
    let root = base.join("root");
    fs::create_dir_all(root.join("dir/sub"))?;
    fs::write(base.join("secret.txt"), "outside")?;
    fs::write(root.join("file.txt"), "inside")?;
    fs::write(root.join(".hidden"), "hidden")?;
    fs::write(root.join("dir/sub/deep.txt"), "deep")?;
    fs::write(root.join("a b.txt"), "space")?;
    symlink(base.join("secret.txt"), root.join("out-link"))?;
    symlink("../..", root.join("dir/up-link"))?;
    symlink("/etc", root.join("etc-link"))?;
    symlink("dir/sub/deep.txt", root.join("in-link"))?;
    symlink("loop", root.join("loop"))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ROOT with a file, a hidden file, a directory and symlinks, next to a secret outside it.
    struct Tree {
        base: PathBuf,
        root: Root,
    }

    impl Tree {
        fn new(tag: &str) -> Tree {
            let base = std::env::temp_dir().join(format!("resolve-{tag}-{}", std::process::id()));
            let root = Root::new(&trap_tree(&base).unwrap()).unwrap();
            Tree { base, root }
        }

        /// Resolves a URL path and reads what it names: file contents, or `dir`.
        fn get(&self, url: &str) -> Result<String, Refusal> {
            let decoded = decode_path(url)?;
            match self.root.open(decoded.relative())? {
                Opened::File(file, _) => Ok(std::io::read_to_string(file).unwrap()),
                Opened::Dir(..) => Ok("dir".into()),
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    #[test]
    fn serves_what_is_inside() {
        let tree = Tree::new("inside");
        for (url, expected) in [
            ("/file.txt", "inside"),
            ("/", "dir"),
            ("/dir", "dir"),
            ("/dir/", "dir"),
            ("//dir//sub//deep.txt", "deep"),
            ("/dir/sub/deep.txt", "deep"),
            ("/a%20b.txt", "space"),
            ("/a b.txt", "space"),
            ("/%66ile.txt", "inside"),
            ("/in-link", "deep"),
        ] {
            assert_eq!(tree.get(url).as_deref(), Ok(expected), "{url}");
        }
    }

    /// The hostile table: every one of these is refused, and none reads the secret.
    #[test]
    fn refuses_hostile_paths() {
        let tree = Tree::new("hostile");
        let not_found = [
            "/../secret.txt",
            "/..",
            "/../",
            "/.",
            "/dir/.",
            "/%2e",
            "/dir/../../secret.txt",
            "/dir/../file.txt",
            "/./file.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/%2e./secret.txt",
            "/.%2e/secret.txt",
            "/dir/%2e%2e/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/..%2Fsecret.txt",
            "/dir%2f..%2f..%2fsecret.txt",
            "/%2fetc/passwd",
            "/..\\secret.txt",
            "/..%5csecret.txt",
            "/..%5Csecret.txt",
            "/dir\\..\\..\\secret.txt",
            "/file.txt%00.png",
            "/%00",
            "/.hidden",
            "/%2ehidden",
            "/dir/.sub",
            "/out-link",
            "/etc-link/passwd",
            "/etc-link",
            "/dir/up-link/secret.txt",
            "/dir/up-link",
            "/loop",
            "/missing.txt",
            "/file.txt/",
            "/file.txt/x",
            "*",
            "",
            "relative/path",
            "/%252e%252e/secret.txt", // decoded once: a literal "%2e%2e" name, which does not exist
        ];
        assert!(not_found.len() >= 30);
        for url in not_found {
            assert_eq!(tree.get(url), Err(Refusal::NotFound), "{url}");
        }
        for url in ["/%", "/%2", "/%zz", "/a%g0", "/file.txt%"] {
            assert_eq!(tree.get(url), Err(Refusal::BadRequest), "{url}");
        }
    }

    #[test]
    fn the_fallback_refuses_the_same() {
        let tree = Tree::new("fallback");
        tree.root.beneath.store(false, Ordering::Relaxed);
        assert_eq!(tree.get("/file.txt").as_deref(), Ok("inside"));
        assert_eq!(tree.get("/in-link").as_deref(), Ok("deep"));
        for url in [
            "/out-link",
            "/etc-link/passwd",
            "/dir/up-link/secret.txt",
            "/loop",
        ] {
            assert_eq!(tree.get(url), Err(Refusal::NotFound), "{url}");
        }
    }

    /// The stat asked before an open says "not there" only of what is not there, and "maybe"
    /// of what `open` then refuses: a link out of ROOT, a path through one.
    #[test]
    fn may_exist_is_false_only_where_nothing_is() {
        let tree = Tree::new("may-exist");
        for (relative, maybe, opens) in [
            ("file.txt", true, true),
            ("dir", true, true),
            ("in-link", true, true),
            ("missing.txt", false, false),
            ("dir/missing.txt", false, false),
            ("file.txt/x", false, false),
            ("out-link", true, false),
            ("dir/up-link/secret.txt", true, false),
            ("loop", true, false),
        ] {
            let path = CString::new(relative).unwrap();
            assert_eq!(tree.root.may_exist(&path), maybe, "{relative}");
            assert_eq!(tree.root.open(&path).is_ok(), opens, "{relative}");
        }
    }

    #[test]
    fn errors_map_to_statuses() {
        let refusal_of = |errno| refusal(io::Error::from_raw_os_error(errno));
        assert_eq!(refusal_of(libc::EACCES), Refusal::Forbidden);
        assert_eq!(refusal_of(libc::EMFILE), Refusal::Unavailable);
        assert_eq!(refusal_of(libc::EXDEV), Refusal::NotFound);
        assert_eq!(refusal_of(libc::EIO), Refusal::Failed);
    }

    #[test]
    fn decoding_keeps_the_trailing_slash_and_skips_empty_segments() {
        let decoded = decode_path("/a//b/").unwrap();
        assert_eq!(decoded.segments().collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(decoded.relative(), c"a/b/");
        assert_eq!(decoded.name(), b"b");
        assert!(decoded.trailing_slash);
        let file = decode_path("//a/b.txt").unwrap();
        assert_eq!((file.relative(), file.name()), (c"a/b.txt", &b"b.txt"[..]));
        assert!(!file.trailing_slash && !file.is_root());
        for root in ["/", "//"] {
            let decoded = decode_path(root).unwrap();
            assert_eq!(decoded.relative(), c".");
            assert!(decoded.is_root() && decoded.segments().next().is_none());
            assert_eq!(decoded.name(), b"");
            assert_eq!(decoded.trailing_slash, root == "//");
        }
        assert_eq!(
            decode_path("/%C3%A9")
                .unwrap()
                .segments()
                .collect::<Vec<_>>(),
            ["é".as_bytes()]
        );
        // A bad escape after a hidden name is still a bad request, as before any name is judged.
        assert_eq!(decode_path("/.hidden/%zz"), Err(Refusal::BadRequest));
        assert_eq!(decode_path("/a/.hidden/b"), Err(Refusal::NotFound));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the path, what opens is inside ROOT: checked on the open descriptor itself.
        #[test]
        fn nothing_resolves_outside_root(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("..".to_string()), Just("%2e%2e".to_string()), Just(".".to_string()),
                    Just("dir".to_string()), Just("sub".to_string()), Just("up-link".to_string()),
                    Just("out-link".to_string()), Just("etc-link".to_string()), Just("in-link".to_string()),
                    Just("secret.txt".to_string()), Just("%2f".to_string()), Just("%5c".to_string()),
                    Just("".to_string()), "[a-z%./\\\\]{1,6}",
                ],
                0..8,
            ),
        ) {
            let tree = Tree::new("prop");
            let url = format!("/{}", parts.join("/"));
            if let Ok(decoded) = decode_path(&url)
                && let Ok(Opened::File(file, _) | Opened::Dir(file, _)) = tree.root.open(decoded.relative())
            {
                let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
                prop_assert!(real.starts_with(tree.root.path()), "{url} opened {}", real.display());
                // What opens was never "not there" to the stat asked first.
                prop_assert!(tree.root.may_exist(decoded.relative()), "{url}");
            }
        }
    }

    /// What a root serves: the contents of its `v.txt`.
    fn served(root: &Root) -> String {
        match root.open(c"v.txt") {
            Ok(Opened::File(file, _)) => std::io::read_to_string(file).unwrap(),
            _ => "nothing".into(),
        }
    }

    #[test]
    fn a_root_is_followed_where_its_name_leads() {
        let base = std::env::temp_dir().join(format!("resolve-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for (release, text) in [("r1", "one"), ("r2", "two")] {
            std::fs::create_dir_all(base.join(release)).unwrap();
            std::fs::write(base.join(release).join("v.txt"), text).unwrap();
        }
        let current = base.join("current");
        let point = |release: &str| {
            // As deploys switch a link: a new one made aside, renamed over the old.
            let aside = base.join("current.new");
            std::os::unix::fs::symlink(base.join(release), &aside).unwrap();
            std::fs::rename(&aside, &current).unwrap();
        };
        point("r1");
        let document = DocumentRoot::new(&current).unwrap();
        assert_eq!(served(&document.current_at(1)), "one");

        // Switched: seen from the next second on, not within the second already looked in.
        point("r2");
        assert_eq!(served(&document.current_at(1)), "one");
        let now = document.current_at(2);
        assert_eq!(served(&now), "two");
        assert_eq!(now.path(), base.join("r2").canonicalize().unwrap());

        // Another thread that looks finds the same directory, and shares its `Root`.
        let mine = Arc::clone(&now);
        let theirs = std::thread::scope(|scope| {
            scope
                .spawn(|| Arc::clone(&document.current_at(2)))
                .join()
                .unwrap()
        });
        assert!(Arc::ptr_eq(&mine, &theirs));
        drop((now, theirs));

        // Named nothing for a while (a link replaced by removing it first): the old serves on.
        std::fs::remove_file(&current).unwrap();
        assert_eq!(served(&document.current_at(3)), "two");

        // Removed and made anew at the same path: the new directory, though its name is the
        // same.
        std::fs::remove_dir_all(base.join("r2")).unwrap();
        std::fs::create_dir(base.join("r2")).unwrap();
        std::fs::write(base.join("r2/v.txt"), "three").unwrap();
        assert_eq!(served(&document.current_at(4)), "nothing");
        point("r2");
        assert_eq!(served(&document.current_at(5)), "three");
        // The directories let go are closed: only this thread's and the latest hold the new one,
        // and nothing holds the old ones (the other thread ended).
        assert_eq!(Arc::strong_count(&mine), 1);
        assert_eq!(Arc::strong_count(&document.current_at(5)), 2);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
