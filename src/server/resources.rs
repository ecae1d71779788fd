//! What this process may use of the machine, for the defaults that depend on it: CPU time for
//! `--cores auto` (see `auto_loops` in `server/mod.rs`), memory for `--max-buffer-bytes` and
//! `--max-connections`.
//!
//! In a container the machine is not the limit: `docker run --cpus 2 --memory 512m`, or a
//! Kubernetes pod's `limits`, let the process see every core and all the memory of the machine,
//! and its cgroup counts what it uses against the limits. Past the memory limit the kernel kills
//! the process (every connection lost), so the buffer budget, which exists to answer 503
//! instead, must fit under it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::{DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_CONNECTIONS, Mode};

/// The CPU time this process may use, in whole cores: std reads the cgroup's limit (v1 or v2,
/// the lowest along its path), rounds it down, and takes the smaller of it and the cores the
/// process may run on; `None` when it cannot tell.
pub fn cpu_time_allowed() -> Option<usize> {
    std::thread::available_parallelism().ok().map(usize::from)
}

/// `--max-buffer-bytes` unless given: 1 GiB, or a quarter of the memory this process may use
/// where that is less than 4 GiB (its cgroup's limit, or else the machine's memory).
///
/// A quarter, because the budget is a limit on what is asked for, not on what is held at every
/// instant: a handler's response is counted once it is made, never refused, so a connection
/// whose body is echoed holds body and answer together for a moment, and in threaded or fork
/// mode all of them at once. And the rest is for what the budget does not count: the
/// connections' first buffers, TLS state, fork mode's children, the allocator's slack.
pub fn default_max_buffer_bytes() -> usize {
    budget_for(memory_allowed())
}

/// `--max-connections` unless given: 10,000, or fewer where half the memory this process may use
/// would not hold that many connections each holding the most the buffer budget does not count
/// ([`uncounted_per_connection`]). Without it, ten thousand clients that each send most of a
/// request head and wait got the server killed under a 64 MiB limit (each of its loops'
/// connections then holds an 8 KiB input buffer, 78 MiB in all); with it, those past the limit
/// get 503, as past any `--max-connections`. Half, with the budget's quarter: three quarters of
/// the memory at most between them, the rest for the program itself, its threads' stacks and
/// the allocator's slack.
pub fn default_max_connections(mode: Mode, tls: bool) -> usize {
    connections_for(memory_allowed(), uncounted_per_connection(mode, tls))
}

/// The memory this process may use: its cgroup's limit, or else the machine's. Read once, for
/// both defaults (a SIGHUP upgrade's new process reads it again).
fn memory_allowed() -> Option<u64> {
    static ALLOWED: OnceLock<Option<u64>> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        [memory_limit(), machine_memory()]
            .into_iter()
            .flatten()
            .min()
    })
}

/// The most one open connection holds that the buffer budget does not count, as measured (a
/// memory cgroup's usage, less the server's before, over a few thousand connections that each
/// sent most of a request head), rounded up; `None` where open connections do not each hold
/// memory of their own.
///
/// - reactor and uring: an input and an output buffer of 8 KiB, the socket's state (about 10 KiB
///   a connection measured with the input buffer alone): 20 KiB.
/// - with TLS, rustls's buffers too: a partial record of 16 KiB waiting to be whole, and a record
///   being sent (about 19 KiB a connection measured during handshakes alone): 48 KiB.
/// - fork: a process per connection, its own pages, page tables and kernel stack (about 222 KiB
///   measured): 256 KiB.
/// - threaded and blocking: what they hold is their threads', whose number is fixed; a
///   connection waiting for one holds nothing but its socket.
fn uncounted_per_connection(mode: Mode, tls: bool) -> Option<u64> {
    match mode {
        Mode::Reactor | Mode::Uring if tls => Some(48 << 10),
        Mode::Reactor | Mode::Uring => Some(20 << 10),
        Mode::Fork => Some(256 << 10),
        Mode::Threaded | Mode::Blocking => None,
    }
}

fn connections_for(memory: Option<u64>, per_connection: Option<u64>) -> usize {
    let (Some(memory), Some(per_connection)) = (memory, per_connection) else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let fit = memory / 2 / per_connection;
    usize::try_from(fit).map_or(DEFAULT_MAX_CONNECTIONS, |fit| {
        fit.clamp(1, DEFAULT_MAX_CONNECTIONS)
    })
}

fn budget_for(memory: Option<u64>) -> usize {
    let quarter = memory.map_or(u64::MAX, |bytes| bytes / 4);
    usize::try_from(quarter).map_or(DEFAULT_MAX_BUFFER_BYTES, |quarter| {
        quarter.min(DEFAULT_MAX_BUFFER_BYTES)
    })
}

/// The machine's memory (sysinfo's total RAM).
fn machine_memory() -> Option<u64> {
    // SAFETY: sysinfo fills the struct it is given; all-zero is a valid value of it.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a sysinfo struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    // `c_ulong`: 64 bits here, 32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let total = u64::from(info.totalram);
    total.checked_mul(u64::from(info.mem_unit))
}

/// The memory limit of this process's cgroup, if it has one: the lowest along its path, from
/// cgroup v2's `memory.max`, or v1's `hierarchical_memory_limit`.
pub fn memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    memory_limit_from(&cgroups, &mounts, |path| std::fs::read_to_string(path).ok())
}

/// [`memory_limit`], from the texts of `/proc/self/cgroup` and `/proc/self/mountinfo`, reading
/// the cgroup file system through `read`.
fn memory_limit_from(
    cgroups: &str,
    mounts: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<u64> {
    // A line of /proc/self/cgroup: `ID:CONTROLLERS:PATH` (v2: `0::PATH`).
    let path_with = |controller: &str| {
        cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let named = match controller {
                "" => controllers.is_empty(),
                _ => controllers.split(',').any(|c| c == controller),
            };
            named.then_some(path)
        })
    };
    for line in mounts.lines() {
        let Some(mount) = Mount::parse(line) else {
            continue;
        };
        let limit = match mount.kind {
            // A v1 hierarchy with the memory controller: memory.stat gives the limit that holds
            // once every ancestor's is counted.
            "cgroup" if mount.options.split(',').any(|o| o == "memory") => {
                let dir = path_with("memory").and_then(|path| mount.dir_of(path));
                let stat = dir.and_then(|dir| read(&dir.join("memory.stat")));
                stat.and_then(|stat| {
                    stat.lines()
                        .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                        .and_then(|value| value.trim().parse().ok())
                })
            }
            // v2: memory.max of the cgroup and of each ancestor up to the mount, the lowest (a
            // hierarchy without the memory controller has none of them).
            "cgroup2" => path_with("")
                .and_then(|path| mount.dir_of(path))
                .and_then(|dir| {
                    dir.ancestors()
                        .take_while(|dir| dir.starts_with(&mount.point))
                        .filter_map(|dir| read(&dir.join("memory.max")))
                        .filter_map(|max| max.trim().parse::<u64>().ok())
                        .min()
                }),
            _ => None,
        };
        // v1 says "no limit" with a number near 2^63 (the largest count of pages).
        if let Some(limit) = limit.filter(|&limit| limit < 1 << 62) {
            return Some(limit);
        }
    }
    None
}

/// A line of /proc/self/mountinfo, the fields used here:
/// `ID PARENT DEV ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS`.
struct Mount<'a> {
    /// The directory of the file system mounted here (in a container, the container's cgroup).
    root: &'a str,
    point: PathBuf,
    kind: &'a str,
    options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|&field| field == "-")?;
        Some(Mount {
            root: fields.get(3)?,
            point: PathBuf::from(fields.get(4)?),
            kind: fields.get(dash + 1)?,
            options: fields.get(dash + 3)?,
        })
    }

    /// Where the cgroup at `path` (as /proc/self/cgroup names it) is under this mount, if it is.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let inside = match self.root {
            "/" => path,
            root => path.strip_prefix(root)?,
        };
        // `/docker/abcd` is not under `/docker/abc`.
        if !(inside.is_empty() || inside.starts_with('/')) {
            return None;
        }
        Some(self.point.join(inside.trim_start_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn files(list: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> + use<> {
        let map: HashMap<PathBuf, String> = (list.iter())
            .map(|(path, text)| (PathBuf::from(path), text.to_string()))
            .collect();
        move |path| map.get(path).cloned()
    }

    #[test]
    fn a_v2_limit_is_the_lowest_on_the_path() {
        let cgroups = "0::/kubepods/pod1/ctr\n";
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let read = files(&[
            ("/sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n"),
            ("/sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
            ("/sys/fs/cgroup/kubepods/memory.max", "8589934592\n"),
        ]);
        assert_eq!(memory_limit_from(cgroups, mounts, read), Some(512 << 20));
    }

    #[test]
    fn a_v2_container_sees_its_own_cgroup_at_the_mount() {
        // A cgroup namespace: the container's cgroup is "/" and is what is mounted.
        let mounts = "30 23 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let read = files(&[("/sys/fs/cgroup/memory.max", "268435456\n")]);
        assert_eq!(memory_limit_from("0::/\n", mounts, read), Some(256 << 20));
        let none = files(&[("/sys/fs/cgroup/memory.max", "max\n")]);
        assert_eq!(memory_limit_from("0::/\n", mounts, none), None);
    }

    #[test]
    fn a_v1_limit_comes_from_memory_stat_under_the_mounts_root() {
        // Docker without a cgroup namespace: the mount's root is the container's cgroup.
        let cgroups = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
        let mounts = "\
            41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
            35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let read = files(&[(
            "/sys/fs/cgroup/memory/memory.stat",
            "cache 0\nhierarchical_memory_limit 1073741824\nhierarchical_memsw_limit 9\n",
        )]);
        assert_eq!(memory_limit_from(cgroups, mounts, read), Some(GIB));
    }

    #[test]
    fn v1_says_no_limit_with_a_huge_number() {
        let cgroups = "4:memory:/\n";
        let mounts = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let stat = "hierarchical_memory_limit 9223372036854771712\n";
        let read = files(&[("/sys/fs/cgroup/memory/memory.stat", stat)]);
        assert_eq!(memory_limit_from(cgroups, mounts, read), None);
    }

    #[test]
    fn a_cgroup_outside_the_mount_is_not_read() {
        let stat = "hierarchical_memory_limit 1073741824\n";
        let read = files(&[("/sys/fs/cgroup/memory/memory.stat", stat)]);
        for root in ["/other", "/docker/ab"] {
            let mounts =
                format!("35 31 0:32 {root} /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory");
            assert_eq!(
                memory_limit_from("4:memory:/docker/abc\n", &mounts, &read),
                None
            );
        }
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_memory_up_to_a_gibibyte() {
        assert_eq!(budget_for(None), DEFAULT_MAX_BUFFER_BYTES);
        assert_eq!(budget_for(Some(24 * GIB)), DEFAULT_MAX_BUFFER_BYTES);
        assert_eq!(budget_for(Some(4 * GIB)), DEFAULT_MAX_BUFFER_BYTES);
        assert_eq!(budget_for(Some(2 * GIB)), 512 << 20);
        assert_eq!(budget_for(Some(256 << 20)), 64 << 20);
    }

    #[test]
    fn connections_are_what_half_the_memory_holds_up_to_ten_thousand() {
        let at = |memory, mode, tls| connections_for(memory, uncounted_per_connection(mode, tls));
        for mode in [Mode::Reactor, Mode::Uring, Mode::Threaded, Mode::Fork] {
            assert_eq!(at(None, mode, false), 10_000, "no limit known");
            assert_eq!(at(Some(24 * GIB), mode, true), 10_000, "this machine's");
        }
        assert_eq!(at(Some(64 << 20), Mode::Reactor, false), 1_638);
        assert_eq!(at(Some(64 << 20), Mode::Uring, true), 682);
        assert_eq!(at(Some(256 << 20), Mode::Reactor, false), 6_553);
        assert_eq!(at(Some(256 << 20), Mode::Fork, false), 512);
        assert_eq!(at(Some(GIB), Mode::Reactor, true), 10_000);
        for mode in [Mode::Threaded, Mode::Blocking] {
            assert_eq!(at(Some(64 << 20), mode, true), 10_000, "threads hold it");
        }
        assert_eq!(at(Some(1 << 20), Mode::Fork, false), 2);
        assert_eq!(at(Some(4096), Mode::Fork, false), 1, "never none");
    }
}
