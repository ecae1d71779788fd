//! A cgroup of a test's own with a CPU or memory limit, to run the server as a container would
//! (`docker run --cpus`, `--memory`; a Kubernetes pod's `limits`). Needs root and a cgroup file
//! system it may write: a v1 hierarchy of the controller, or v2 with it delegated.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Made beside this process's own cgroup; removed when dropped (once what was put in it ended).
pub struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

/// A limit, as each version spells it: the file and its value.
pub struct Limit<'a> {
    pub controller: &'a str,
    pub v1: (&'a str, String),
    pub v2: (&'a str, String),
}

impl Limit<'_> {
    /// `cpus` CPUs' time in each 100 ms period.
    pub fn cpus(cpus: u64) -> Limit<'static> {
        let quota = cpus * 100_000;
        Limit {
            controller: "cpu",
            v1: ("cpu.cfs_quota_us", quota.to_string()),
            v2: ("cpu.max", format!("{quota} 100000")),
        }
    }

    /// `bytes` of memory, past which the kernel kills a process of the cgroup.
    pub fn memory(bytes: u64) -> Limit<'static> {
        Limit {
            controller: "memory",
            v1: ("memory.limit_in_bytes", bytes.to_string()),
            v2: ("memory.max", bytes.to_string()),
        }
    }
}

impl Cgroup {
    /// A new cgroup with `limit`, or why none could be made.
    pub fn new(limit: Limit<'_>) -> Result<Cgroup, String> {
        // Unique to this test, of the tests of this process that run at once.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "reactor-httpd-test-{}-{}-{}",
            limit.controller,
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        let own = read("/proc/self/cgroup")?;
        let mounts = read("/proc/self/mountinfo")?;
        let mut tried = Vec::new();
        for mount in mounts.lines() {
            // ID PARENT DEV ROOT POINT OPTIONS ... - TYPE SOURCE SUPER-OPTIONS
            let fields: Vec<&str> = mount.split(' ').collect();
            let Some(dash) = fields.iter().position(|&f| f == "-") else {
                continue;
            };
            let (root, point, kind) = (fields[3], fields[4], fields[dash + 1]);
            let options = fields.get(dash + 3).copied().unwrap_or("");
            let v2 = match kind {
                "cgroup" if options.split(',').any(|o| o == limit.controller) => false,
                "cgroup2" => true,
                _ => continue,
            };
            // ID:CONTROLLERS:PATH, v2's with no controllers.
            let path = own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let ours = match v2 {
                    true => controllers.is_empty(),
                    false => controllers.split(',').any(|c| c == limit.controller),
                };
                ours.then_some(path)
            });
            // The path as the mount shows it: from its root, which in a container without a
            // cgroup namespace is the container's cgroup (`/docker/ID`).
            let inside = path.and_then(|path| path.strip_prefix(root.trim_end_matches('/')));
            let Some(inside) = inside.filter(|i| i.is_empty() || i.starts_with('/')) else {
                continue;
            };
            let parent = Path::new(point).join(inside.trim_start_matches('/'));
            let dir = parent.join(&name);
            let (file, value) = if v2 { &limit.v2 } else { &limit.v1 };
            let made = std::fs::create_dir(&dir).and_then(|()| {
                if v2 {
                    // Asked of the parent; already so where it delegates the controller.
                    let enable = format!("+{}", limit.controller);
                    let _ = std::fs::write(parent.join("cgroup.subtree_control"), enable);
                }
                std::fs::write(dir.join(file), value)
            });
            match made {
                Ok(()) => return Ok(Cgroup { dir, v2 }),
                Err(err) => {
                    let _ = std::fs::remove_dir(&dir);
                    tried.push(format!("{}: {err}", dir.join(file).display()));
                }
            }
        }
        Err(format!(
            "needs root and a cgroup {} controller it may write; tried {}",
            limit.controller,
            match tried.is_empty() {
                true => "none: no such hierarchy is mounted".to_string(),
                false => tried.join("; "),
            }
        ))
    }

    /// Makes `command`'s process join this cgroup before it executes (so it keeps its pid).
    pub fn put_in(&self, command: &mut Command) {
        let procs = self.dir.join("cgroup.procs");
        let procs = CString::new(procs.as_os_str().as_bytes()).unwrap();
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on a
        // path made before the fork; nothing allocates.
        unsafe {
            command.pre_exec(move || {
                // "0": the process that writes.
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if wrote == 1 { Ok(()) } else { Err(err) }
            });
        }
    }

    /// How many times the kernel killed a process of this cgroup for want of memory.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("oom_kill "));
        line.and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill count in {file}: {text:?}"))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
