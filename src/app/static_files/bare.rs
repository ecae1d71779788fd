//! Files known to have no precompressed sibling, so that serving one again does not look,
//! three times, for names that are not there.
//!
//! `x`'s siblings `x.br`, `x.zst` and `x.gz` are entries of `x`'s directory, and most files have
//! none: each look is then a failed stat, and the three cost about an eighth of a small file's
//! CPU (docs/performance.md, stop 64). A directory's modification and change times move
//! whenever an entry is made, removed or renamed in it. So once all three are found absent, the
//! file is remembered with its directory's [`Stamp`] (device, inode, both times), read *before*
//! they were looked for; while one stat of the directory reads the same stamp, no sibling has
//! appeared since. The device and inode also tell a directory replaced, a symlink on the path
//! pointed elsewhere, or a mount over it: the path then names another directory.
//!
//! A stamp counts only once it is settled: unchanged for [`SETTLED`]. A filesystem's clock
//! ticks coarsely (a few milliseconds; two seconds on FAT), and an entry made within the tick
//! of the change a stamp records would leave the stamp as it was. A file whose directory changed
//! more recently is looked for on every request, as before.
//!
//! Only absence is remembered: a sibling that is there is opened every time, and one that is
//! there but cannot be served (unreadable, a directory, a dangling link) is not absence. Each
//! thread (a loop, a worker) keeps its own memory, so nothing is locked on the way; past
//! [`CAPACITY`] files it forgets them all at once and starts again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ScratchPath;
use super::negotiate::Coding;
use super::resolve::Root;

/// How long a directory must have been unchanged before its stamp stands for its entries.
pub const SETTLED: Duration = Duration::from_secs(2);
/// Files remembered per thread.
pub const CAPACITY: usize = 1024;

/// What a directory's status says of its entries: the same stamp, the same entries (once
/// [settled](Stamp::settled)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    device: u64,
    inode: u64,
    /// Seconds and nanoseconds since the epoch.
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of the directory that holds `relative` (ROOT, for a name without a slash).
    fn of_parent(root: &Root, relative: &CStr) -> Option<Stamp> {
        let bytes = relative.to_bytes();
        let stat = match bytes.iter().rposition(|&byte| byte == b'/') {
            None => root.stat_dir(None)?,
            Some(slash) => root.stat_dir(Some(ScratchPath::new().join(&[&bytes[..slash]])?))?,
        };
        Some(Stamp {
            device: stat.st_dev,
            inode: stat.st_ino,
            modified: (stat.st_mtime, stat.st_mtime_nsec),
            changed: (stat.st_ctime, stat.st_ctime_nsec),
        })
    }

    /// Whether the directory had been unchanged for [`SETTLED`] at `now`. (A time in the
    /// future, a clock set wrong, never settles.)
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let (seconds, nanos) = self.modified.max(self.changed);
        let latest = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let now = i128::try_from(now.as_nanos()).unwrap_or(i128::MAX);
        now - latest >= SETTLED.as_nanos() as i128
    }
}

/// Each [`super::StaticFiles`] has a number of its own, so that two sites served by one thread
/// (tests do that) never answer for each other's paths.
pub fn next_site() -> u64 {
    static SITES: AtomicU64 = AtomicU64::new(0);
    SITES.fetch_add(1, Ordering::Relaxed)
}

type Memory = HashMap<Box<[u8]>, (u64, Stamp)>;

thread_local! {
    /// A file's path beneath ROOT -> (its site, its directory's stamp when all its siblings
    /// were found absent).
    static BARE: RefCell<Memory> = RefCell::new(HashMap::new());
}

/// One request's dealings with a file's siblings: whether it needs to look at all, and, when it
/// looks, what it finds.
pub struct Look<'a> {
    site: u64,
    /// The directory the request is served from.
    root: &'a Root,
    relative: &'a CStr,
    state: State,
}

enum State {
    /// Not asked yet.
    Unasked,
    /// Known to have none: nothing to look for.
    Bare,
    /// To be looked for. `stamp`: the directory's, when it is settled (otherwise nothing found
    /// can be remembered); `absent`: the codings found absent so far, one bit each.
    Looking { stamp: Option<Stamp>, absent: u8 },
}

const ALL_ABSENT: u8 = (1 << Coding::ALL.len()) - 1;

impl<'a> Look<'a> {
    pub fn new(site: u64, root: &'a Root, relative: &'a CStr) -> Look<'a> {
        Look {
            site,
            root,
            relative,
            state: State::Unasked,
        }
    }

    /// The file's path beneath ROOT.
    pub fn relative(&self) -> &'a CStr {
        self.relative
    }

    /// The directory the request is served from: where the file's siblings are.
    pub fn root(&self) -> &'a Root {
        self.root
    }

    // ANCHOR: bare
    /// Whether the file is known to have no sibling. Asked before the first look: it reads the
    /// directory's stamp then, so that what is found after can be remembered with it.
    pub fn bare(&mut self) -> bool {
        if let State::Unasked = self.state {
            self.state = match Stamp::of_parent(self.root, self.relative) {
                Some(stamp) if recalls(self.site, self.relative, &stamp) => State::Bare,
                stamp => State::Looking {
                    stamp: stamp.filter(|stamp| stamp.settled(SystemTime::now())),
                    absent: 0,
                },
            };
        }
        matches!(self.state, State::Bare)
    }
    // ANCHOR_END: bare

    /// Whether what is found can be remembered: only then is it worth telling a sibling that
    /// is not there from one that is there but cannot be opened.
    pub fn remembering(&self) -> bool {
        matches!(self.state, State::Looking { stamp: Some(_), .. })
    }

    /// `coding`'s sibling is not there.
    pub fn absent(&mut self, coding: Coding) {
        if let State::Looking { absent, .. } = &mut self.state {
            *absent |= 1 << coding as u8;
        }
    }

    /// The looking is over: a file whose every sibling was found absent, in a settled
    /// directory, is remembered.
    pub fn done(self) {
        if let State::Looking {
            stamp: Some(stamp),
            absent: ALL_ABSENT,
        } = self.state
        {
            remember(self.site, self.relative, stamp);
        }
    }
}

fn recalls(site: u64, relative: &CStr, stamp: &Stamp) -> bool {
    BARE.with_borrow(|bare| {
        bare.get(relative.to_bytes())
            .is_some_and(|(of, then)| *of == site && then == stamp)
    })
}

fn remember(site: u64, relative: &CStr, stamp: Stamp) {
    BARE.with_borrow_mut(|bare| {
        if bare.len() >= CAPACITY && !bare.contains_key(relative.to_bytes()) {
            bare.clear();
        }
        bare.insert(relative.to_bytes().into(), (site, stamp));
    });
}

/// Remembers `relative` as bare with its directory's stamp as it is now, settled or not: for
/// tests of what is done with the memory.
#[cfg(test)]
pub fn remember_as_now(site: u64, root: &Root, relative: &CStr) {
    remember(site, relative, Stamp::of_parent(root, relative).unwrap());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(modified: (i64, i64), changed: (i64, i64)) -> Stamp {
        Stamp {
            device: 1,
            inode: 2,
            modified,
            changed,
        }
    }

    #[test]
    fn settled_after_two_seconds_of_either_time() {
        let at = |seconds, nanos| UNIX_EPOCH + Duration::new(seconds, nanos);
        let quiet = stamp((100, 0), (100, 500));
        assert!(!quiet.settled(at(101, 0)));
        assert!(!quiet.settled(at(102, 499)));
        assert!(quiet.settled(at(102, 500)));
        // The later of the two counts.
        assert!(!stamp((100, 0), (101, 0)).settled(at(102, 500)));
        assert!(!stamp((101, 0), (100, 0)).settled(at(102, 500)));
        // A directory dated in the future, or before the epoch, or a clock before it.
        assert!(!stamp((200, 0), (200, 0)).settled(at(102, 0)));
        assert!(stamp((-5, 0), (-5, 0)).settled(at(0, 0)));
        assert!(!quiet.settled(UNIX_EPOCH - Duration::from_secs(1)));
    }

    #[test]
    fn remembered_for_its_site_and_stamp_only() {
        let (site, other) = (next_site(), next_site());
        let quiet = stamp((100, 0), (100, 0));
        assert!(!recalls(site, c"a/b.css", &quiet));
        remember(site, c"a/b.css", quiet);
        assert!(recalls(site, c"a/b.css", &quiet));
        assert!(!recalls(other, c"a/b.css", &quiet));
        assert!(!recalls(site, c"a/b.css", &stamp((100, 0), (100, 1))));
        assert!(!recalls(site, c"a/c.css", &quiet));
        // Full, it forgets everything before it takes another.
        for n in 0..CAPACITY {
            remember(
                site,
                &std::ffi::CString::new(format!("f{n}")).unwrap(),
                quiet,
            );
        }
        assert!(!recalls(site, c"a/b.css", &quiet));
        assert!(BARE.with_borrow(|bare| bare.len()) <= CAPACITY);
    }

    /// What a look decides, over a real directory: a file whose siblings were all absent in a
    /// settled directory is bare from then on, until the directory changes.
    #[test]
    fn a_look_remembers_only_a_whole_absence_in_a_settled_directory() {
        let base = std::env::temp_dir().join(format!("bare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("d")).unwrap();
        std::fs::write(base.join("d/x.css"), "x").unwrap();
        let root = Root::new(&base).unwrap();
        let site = next_site();
        let relative = c"d/x.css";

        // Made a moment ago: not settled, so nothing is remembered.
        let mut look = Look::new(site, &root, relative);
        assert!(!look.bare());
        assert!(!look.remembering());
        Coding::ALL.iter().for_each(|&coding| look.absent(coding));
        look.done();
        assert!(!Look::new(site, &root, relative).bare());

        // Settled (remembered here as the stamp it had two seconds ago would be).
        let now = Stamp::of_parent(&root, relative).unwrap();
        remember(site, relative, now);
        assert!(Look::new(site, &root, relative).bare());
        // Another directory in its place (as a deploy that renames a new tree in does): another
        // inode, so another stamp, whatever the clocks say. (A sibling made in the same
        // directory moves its times: tests/content.rs checks that over HTTP, once settled.)
        std::fs::rename(base.join("d"), base.join("old")).unwrap();
        std::fs::create_dir(base.join("d")).unwrap();
        std::fs::write(base.join("d/x.css"), "x").unwrap();
        assert_ne!(Stamp::of_parent(&root, relative), Some(now));
        assert!(!Look::new(site, &root, relative).bare());
        // And ROOT's own files are stamped by ROOT.
        assert_eq!(
            Stamp::of_parent(&root, c"x.css").map(|stamp| stamp.inode),
            Some(
                std::fs::metadata(&base)
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap()
            )
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
